//! One bound on making a connection, TCP and TLS together: `HttpConnector`'s own timeout
//! covers the TCP connect only, and a gateway (or a middlebox) that stalls the TLS
//! handshake would otherwise hold the connect, and its file descriptor, for good (hyper-util
//! finishes a connect a call gave up on in the background).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use tower_service::Service;

/// The error a bounded connect reports.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `C`, whose every connect must finish within `limit`.
#[derive(Clone)]
pub(crate) struct ConnectTimeout<C> {
    inner: C,
    limit: Duration,
}

impl<C> ConnectTimeout<C> {
    pub(crate) fn new(inner: C, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

/// A connect that took longer than its bound.
#[derive(Debug, thiserror::Error)]
#[error("the connection (TCP and TLS) was not made within {0:?}")]
pub(crate) struct ConnectTimedOut(Duration);

impl<C> Service<Uri> for ConnectTimeout<C>
where
    C: Service<Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
    C::Response: 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (connecting, limit) = (self.inner.call(uri), self.limit);
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(ConnectTimedOut(limit).into()),
            }
        })
    }
}
