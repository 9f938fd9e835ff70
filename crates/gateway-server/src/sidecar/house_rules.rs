//! What every answer of the service goes through: request ids in and out, the access
//! log, the HTTP metrics and the house rules (a usable `Host`; the shape of answers), as
//! one tower stack around the paths.
//!
//! The stack is composed statically around the finished axum router rather than added
//! with `Router::layer`, which boxes every layer's future on every request: each of those
//! boxes lives as long as the call, so at 2,000 calls in flight they cost megabytes
//! (BENCHMARKS.md).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::Router as Paths;
use http::header::HeaderValue;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use super::App;
use super::context::{X_REQUEST_ID, has_usable_request_id};
use super::reply::{Reply, error, with_retry_after};

/// Every path label of the HTTP metrics.
pub(crate) const PATH_LABELS: &[&str] = &[
    "/v1/route",
    "/metrics",
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/models",
    "/v1/models/{model}",
    "other",
];

/// `paths` with request ids in and out, the access log, the HTTP metrics and the house
/// rules: a service hyper can serve.
pub(crate) fn around(
    paths: Paths,
    app: App,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Reply,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let stack = ServiceBuilder::new()
        .map_request(drop_unusable_request_id::<Incoming>)
        .layer(SetRequestIdLayer::new(
            X_REQUEST_ID.clone(),
            MakeRequestUuid,
        ))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(HouseRulesLayer { app })
        .service(paths);
    hyper_util::service::TowerToHyperService::new(stack)
}

/// A caller request id the audit trail could not keep (too long, not printable, given
/// twice) is replaced by one made up, so the id echoed is always the one audited.
fn drop_unusable_request_id<B>(mut request: Request<B>) -> Request<B> {
    if request.headers().contains_key(&X_REQUEST_ID) && !has_usable_request_id(request.headers()) {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

/// The most characters of a request's path the access log keeps.
const MAX_LOGGED_PATH_CHARS: usize = 256;

/// Puts [`HouseRules`] around a service.
#[derive(Clone)]
struct HouseRulesLayer {
    app: App,
}

impl<S> Layer<S> for HouseRulesLayer {
    type Service = HouseRules<S>;

    fn layer(&self, inner: S) -> HouseRules<S> {
        HouseRules {
            inner,
            app: self.app.clone(),
        }
    }
}

/// One access-log line per request (method, path, status, latency, request id; never a
/// body) and the HTTP metrics, around the house rules ([`conventions`]). Nothing is
/// copied for the line unless the access log is on.
#[derive(Clone)]
struct HouseRules<S> {
    inner: S,
    app: App,
}

impl<S, B> Service<Request<B>> for HouseRules<S>
where
    S: Service<Request<B>, Response = Reply, Error = Infallible>,
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let label = path_label(path);
        let openai = super::openai::owns(path);
        let served = has_one_usable_host(&request);
        let logged = tracing::enabled!(target: "genesys_router::access", tracing::Level::INFO)
            .then(|| {
                // Copied, not cloned: a header value shares the connection's read buffer.
                let id = header_str(request.headers().get(&X_REQUEST_ID)).to_owned();
                // A path is as long as hyper lets a request line be: logged, it is cut.
                let mut path = path.to_owned();
                gateway_model::cut_to(&mut path, MAX_LOGGED_PATH_CHARS);
                (request.method().clone(), path, id)
            });
        // Without a usable `Host` the paths never see the request: it is refused, once its
        // body (if any) is dropped as it arrives, so the refusal reaches the client.
        let (inner, drain) = if served {
            (Some(self.inner.call(request)), None)
        } else {
            let app = self.app.clone();
            let drain: Drain = Box::pin(async move { app.discard_body(request).await });
            (None, Some(drain))
        };
        Answer {
            inner,
            drain,
            openai,
            entry: Entry {
                app: self.app.clone(),
                started: Instant::now(),
                label,
                logged,
            },
            answered: false,
        }
    }
}

/// A refused request's body being dropped (boxed: only refusals make one).
type Drain = Pin<Box<dyn Future<Output = ()> + Send>>;

/// nginx's status for a request whose caller hung up before it was answered.
const CLIENT_CLOSED_REQUEST: u16 = 499;

pin_project_lite::pin_project! {
    /// A request's answer under the house rules: [`HouseRules`]' future. Dropped before
    /// it answered (the caller hung up), it records the request as a 499.
    struct Answer<F> {
        #[pin]
        inner: Option<F>,
        // The refused request's body being dropped, before its refusal.
        drain: Option<Drain>,
        openai: bool,
        entry: Entry,
        answered: bool,
    }

    impl<F> PinnedDrop for Answer<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.answered {
                this.entry.record(CLIENT_CLOSED_REQUEST, "", "");
            }
        }
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Reply, Infallible>>,
{
    type Output = Result<Reply, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = if let Some(inner) = this.inner.as_pin_mut() {
            let Ok(response) = ready!(inner.poll(cx));
            response
        } else {
            if let Some(drain) = this.drain.as_mut() {
                ready!(drain.as_mut().poll(cx));
                *this.drain = None;
            }
            bad_host(*this.openai)
        };
        let response = conventions(*this.openai, response);
        *this.answered = true;
        // A handler that answers with an id of its own (the body's) logs that one.
        if let (Some((_, _, logged_id)), Some(id)) = (
            this.entry.logged.as_mut(),
            response.headers().get(&X_REQUEST_ID),
        ) {
            header_str(Some(id)).clone_into(logged_id);
        }
        this.entry.record(
            response.status().as_u16(),
            header_str(response.headers().get(&super::ROUTE_HEADER)),
            header_str(response.headers().get(&super::MODEL_HEADER)),
        );
        Poll::Ready(Ok(response))
    }
}

/// What the HTTP metrics and the access log take from a request.
struct Entry {
    app: App,
    started: Instant,
    label: &'static str,
    logged: Option<(Method, String, String)>,
}

impl Entry {
    /// Counts the request as answered `status` and writes its access-log line, if on.
    fn record(&mut self, status: u16, route: &str, model: &str) {
        let elapsed = self.started.elapsed();
        self.app.http_metrics.record(self.label, status, elapsed);
        if let Some((method, path, request_id)) = self.logged.take() {
            let latency_ms = elapsed.as_secs_f64() * 1_000.0;
            tracing::info!(
                target: "genesys_router::access",
                %method, %path, status, latency_ms, route, model,
                // Quoted, like `route` and `model`: a caller's id may hold spaces.
                request_id = request_id.as_str(),
                "request"
            );
        }
    }
}

/// Whether `request` may be served as RFC 9112 (section 3.2) asks of a server: an
/// HTTP/1.1 request carries exactly one `Host`, empty or a valid authority. Other
/// versions name their target otherwise and pass.
fn has_one_usable_host<B>(request: &Request<B>) -> bool {
    if request.version() != http::Version::HTTP_11 {
        return true;
    }
    let mut hosts = request.headers().get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => {
            host.is_empty() || http::uri::Authority::try_from(host.as_bytes()).is_ok()
        }
        _ => false,
    }
}

/// The 400 for an HTTP/1.1 request without exactly one usable `Host`.
fn bad_host(openai: bool) -> Reply {
    const MESSAGE: &str = "an HTTP/1.1 request needs exactly one valid Host header";
    if openai {
        super::openai::bad_host(MESSAGE)
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "router.host.invalid",
            MESSAGE,
            None,
        )
    }
}

/// Gives axum's own answers (405 with `Allow`, extractor rejections) the sidecar's error
/// body, and every 429 and 503 a `Retry-After`.
fn conventions(openai: bool, response: Reply) -> Reply {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.headers().get(http::header::CONTENT_TYPE).is_none()
    {
        let allow = response.headers().get(http::header::ALLOW).cloned();
        let mut reply = if openai {
            super::openai::method_not_allowed()
        } else {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "router.method.not.allowed",
                "method not allowed",
                None,
            )
        };
        if let Some(allow) = allow {
            reply.headers_mut().insert(http::header::ALLOW, allow);
        }
        return reply;
    }
    with_retry_after(response)
}

/// A header's text, or "" (for the access log).
fn header_str(value: Option<&HeaderValue>) -> &str {
    value.and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// A bounded metric label for a path: one of [`PATH_LABELS`].
fn path_label(path: &str) -> &'static str {
    match PATH_LABELS.iter().find(|label| **label == path) {
        Some(label) => label,
        None if path.starts_with("/v1/models/") => "/v1/models/{model}",
        None => "other",
    }
}
