//! The accept loop: a connection cap, per-connection timeouts, and a two-step shutdown
//! (stop accepting and drain; then close what is left).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

use crate::ConnectionLimits;
use crate::activity::{Activity, Tracked, WatchedIo};

/// What a connection over the cap is told before it is closed: this head, a made-up
/// `x-request-id` (as every answer carries one), and [`OVER_CAPACITY_BODY`].
const OVER_CAPACITY_HEAD: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-type: application/json\r\ncontent-length: 192\r\nconnection: close\r\n";

/// The request is not read, so the body has both error shapes: the sidecar's (`status`,
/// `code`, `message`) and OpenAI's (`error`), for a caller of either door.
const OVER_CAPACITY_BODY: &[u8] = b"{\"status\":503,\"code\":\"router.too.many.connections\",\"message\":\"too many connections\",\
\"error\":{\"message\":\"too many connections\",\"type\":\"server_error\",\"param\":null,\"code\":\"too_many_connections\"}}";

/// How long to back off after `accept` fails (out of descriptors, say), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long an idle HTTP/2 connection is given to send its GOAWAY and close (hyper's
/// graceful shutdown waits for a PING's answer) before it is dropped, unless a request
/// that raced the GOAWAY is still being answered.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// An accept loop serving one listener; see [`Server::serve`].
///
/// ```
/// use std::convert::Infallible;
/// use gateway_server::{ConnectionLimits, Server};
/// use http::Response;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let service = hyper::service::service_fn(|_req| async {
///     Ok::<_, Infallible>(Response::new(http_body_util::Full::new(bytes::Bytes::from("ok"))))
/// });
/// let server = Server::serve(listener, ConnectionLimits::default(), service)?;
/// println!("listening on {}", server.local_addr());
/// server.stop_accepting();
/// server.drained().await;
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    close: watch::Sender<bool>,
    connections: TaskTracker,
    slots: Arc<Semaphore>,
    max_connections: usize,
}

/// The signals a connection task watches.
#[derive(Clone)]
struct Signals {
    /// Finish the request in flight, then close (graceful shutdown).
    drain: watch::Receiver<bool>,
    /// Close now.
    close: watch::Receiver<bool>,
}

impl Server {
    /// Serves `service` on every connection `listener` accepts, within `limits`; an
    /// `InvalidInput` error if a timeout of `limits` is zero.
    pub fn serve<S, B>(
        listener: TcpListener,
        limits: ConnectionLimits,
        service: S,
    ) -> std::io::Result<Self>
    where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        limits.check()?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let (close, close_rx) = watch::channel(false);
        let connections = TaskTracker::new();
        let signals = Signals {
            drain: stop_rx.clone(),
            close: close_rx,
        };
        // Tokio's semaphore holds at most `MAX_PERMITS`; more would panic.
        let max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        let slots = Arc::new(Semaphore::new(max_connections));
        connections.spawn(accept_loop(
            listener,
            limits,
            service,
            stop_rx,
            signals,
            (connections.clone(), Arc::clone(&slots)),
        ));
        Ok(Self {
            addr,
            stop,
            close,
            connections,
            slots,
            max_connections,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }

    /// Stops accepting and asks every connection to close after its request in flight.
    pub fn stop_accepting(&self) {
        let _ = self.stop.send(true);
    }

    /// Resolves when the listener is closed and every connection has ended (after
    /// [`Server::stop_accepting`] or [`Server::close_all`]).
    pub async fn drained(&self) {
        // The accept loop itself is a task of the tracker, so this also waits for it.
        self.connections.close();
        self.connections.wait().await;
    }

    /// Closes every connection still open, whatever it is doing.
    pub fn close_all(&self) {
        let _ = self.stop.send(true);
        let _ = self.close.send(true);
    }
}

async fn accept_loop<S, B>(
    listener: TcpListener,
    limits: ConnectionLimits,
    service: S,
    mut stop: watch::Receiver<bool>,
    signals: Signals,
    (connections, slots): (TaskTracker, Arc<Semaphore>),
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = Arc::new(builder());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            refuse(&stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = Arc::clone(&builder);
        let service = service.clone();
        let signals = signals.clone();
        connections.spawn(async move {
            connection(&builder, stream, service, limits, signals).await;
            drop(permit);
        });
    }
}

/// hyper-util's HTTP/1.1-and-HTTP/2 builder, with hyper's own header timer left off:
/// [`Activity`] keeps the header, idle and connection bounds.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(256);
    builder
}

/// Tells a connection over the cap why, without waiting on it, and closes it.
fn refuse(stream: &TcpStream) {
    // A best-effort write into an empty socket buffer; whatever does not fit is dropped.
    let id = format!("x-request-id: {}\r\n\r\n", uuid::Uuid::new_v4());
    let answer = [OVER_CAPACITY_HEAD, id.as_bytes(), OVER_CAPACITY_BODY].concat();
    let _ = stream.try_write(&answer);
    tracing::debug!("connection refused: at the connection cap");
}

async fn connection<S, B>(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    service: S,
    limits: ConnectionLimits,
    mut signals: Signals,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Activity::new();
    let io = TokioIo::new(WatchedIo::new(stream, Arc::clone(&activity)));
    let conn = builder.serve_connection(io, Tracked::new(service, Arc::clone(&activity)));
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = signals.drain.wait_for(|d| *d), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = signals.close.wait_for(|c| *c) => return,
            () = activity.expired(&limits) => break,
        }
    }
    tracing::debug!("closing a connection: idle, or headers too slow");
    if activity.is_multiplexed() {
        // An HTTP/2 client is told with a GOAWAY, so that it does not send a request
        // into a connection that is going away.
        if !draining {
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = signals.close.wait_for(|c| *c) => return,
            () = tokio::time::sleep(GOAWAY_GRACE) => {}
        }
        // A request that raced the GOAWAY was taken, and the GOAWAY told its client so:
        // it is answered (within its own deadlines) unless the server closes everything,
        // or the connection then sits idle again (a client that takes no more bytes).
        if activity.has_requests_in_flight() {
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = signals.close.wait_for(|c| *c) => {}
                () = activity.expired(&limits) => {}
            }
        }
    }
}
