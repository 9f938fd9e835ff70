//! A real webhook receiver: a hyper 1.x server on 127.0.0.1 that checks every signature,
//! deduplicates entries by id, keeps every signed message (`webhook-id` and body) it was
//! sent, and can fail, stop listening and come back on the same port.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gateway_audit::webhook::{
    DEFAULT_TOLERANCE, HEADER_ID, WebhookBatch, WebhookSecret, verify_headers,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

/// How the receiver answers a correctly signed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200, entries recorded.
    Accept,
    /// This status, entries not recorded.
    Fail(StatusCode),
    /// Accept this many more requests, then fail with this status.
    AcceptThenFail(u64, StatusCode),
    /// 413 for a body longer than this many bytes, 200 otherwise.
    RefuseOver(usize),
}

/// What the receiver saw.
pub struct State {
    secret: WebhookSecret,
    mode: Mutex<Mode>,
    ids: Mutex<HashSet<Uuid>>,
    /// Every correctly signed request, refused or not: its `webhook-id` and body, in order.
    messages: Mutex<Vec<(String, Bytes)>>,
    pub entries_received: AtomicU64,
    pub requests: AtomicU64,
    pub failed_requests: AtomicU64,
    pub bad_signatures: AtomicU64,
    changed: watch::Sender<u64>,
}

impl State {
    pub fn unique(&self) -> usize {
        self.ids.lock().unwrap().len()
    }

    pub fn ids(&self) -> HashSet<Uuid> {
        self.ids.lock().unwrap().clone()
    }

    /// The `webhook-id` and body of every correctly signed request, in arrival order.
    pub fn messages(&self) -> Vec<(String, Bytes)> {
        self.messages.lock().unwrap().clone()
    }

    /// How to answer the next correctly signed request (counting `AcceptThenFail` down).
    fn answer(&self) -> Mode {
        let mut mode = self.mode.lock().unwrap();
        match *mode {
            Mode::AcceptThenFail(n, status) if n > 0 => {
                *mode = Mode::AcceptThenFail(n - 1, status);
                Mode::Accept
            }
            Mode::AcceptThenFail(_, status) => Mode::Fail(status),
            other => other,
        }
    }

    /// Keeps the message's id and body, then says how to answer it.
    fn answer_recording(&self, headers: &http::HeaderMap, body: &Bytes) -> Mode {
        let id = headers.get(HEADER_ID).and_then(|v| v.to_str().ok());
        let id = id.unwrap_or_default().to_owned();
        self.messages.lock().unwrap().push((id, body.clone()));
        match self.answer() {
            Mode::RefuseOver(limit) if body.len() > limit => {
                Mode::Fail(StatusCode::PAYLOAD_TOO_LARGE)
            }
            Mode::RefuseOver(_) => Mode::Accept,
            other => other,
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        self.requests.fetch_add(1, Ordering::SeqCst);
        let verified = verify_headers(
            &self.secret,
            &parts.headers,
            &body,
            SystemTime::now(),
            DEFAULT_TOLERANCE,
        );
        let status = if verified.is_err() {
            self.bad_signatures.fetch_add(1, Ordering::SeqCst);
            StatusCode::UNAUTHORIZED
        } else if let Mode::Fail(status) = self.answer_recording(&parts.headers, &body) {
            self.failed_requests.fetch_add(1, Ordering::SeqCst);
            status
        } else {
            match WebhookBatch::parse(&body) {
                Ok(batch) => {
                    let mut ids = self.ids.lock().unwrap();
                    for entry in &batch.entries {
                        ids.insert(entry.id);
                    }
                    self.entries_received
                        .fetch_add(batch.entries.len() as u64, Ordering::SeqCst);
                    StatusCode::OK
                }
                Err(_) => StatusCode::BAD_REQUEST,
            }
        };
        self.changed.send_modify(|v| *v += 1);
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
            .unwrap()
    }
}

/// The receiver; dropping it stops the server.
pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    server: Option<JoinHandle<()>>,
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, hyper::Error>(state.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
    }
}

impl Receiver {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start(secret: WebhookSecret) -> Self {
        let state = Arc::new(State {
            secret,
            mode: Mutex::new(Mode::Accept),
            ids: Mutex::new(HashSet::new()),
            messages: Mutex::new(Vec::new()),
            entries_received: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failed_requests: AtomicU64::new(0),
            bad_signatures: AtomicU64::new(0),
            changed: watch::Sender::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        Self {
            addr,
            state,
            server: Some(server),
        }
    }

    /// The webhook URL.
    pub fn url(&self) -> String {
        format!("http://{}/audit", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Stops listening and closes every connection: connections are refused from now on.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        assert!(self.server.is_none(), "already running");
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.server = Some(tokio::spawn(serve(listener, Arc::clone(&self.state))));
    }

    /// Waits until `done` holds, checking after every request; panics after `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&State) -> bool) {
        let mut changes = self.state.changed.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                changes.borrow_and_update();
                if done(&self.state) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(
            waited.is_ok() && done(&self.state),
            "timed out after {timeout:?} waiting for {what}: {} unique ids, {} requests",
            self.state.unique(),
            self.state.requests.load(Ordering::SeqCst)
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
