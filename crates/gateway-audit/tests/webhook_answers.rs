//! Answers the webhook sink must read right, from real receivers on loopback: a 2xx
//! whose body never finishes is one delivery, not a retry.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway_audit::AuditSink;
use gateway_audit::webhook::{WebhookOptions, WebhookSecret, WebhookSink};
use gateway_model::WebhookConfig;
use http::header::CONTENT_LENGTH;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

#[path = "support/entries.rs"]
mod entries;

const SECRET: &str = "whsec_dGVzdCBrZXkgZm9yIHRoZSBhdWRpdCB3ZWJob29r";

/// A receiver that answers every POST 200 with a 1 MB `Content-Length`, sends one byte
/// of the body, and then nothing more while the test runs.
struct StallingReceiver {
    url: String,
    requests: Arc<AtomicU64>,
    /// The bodies' senders, kept so the bodies stay open (stalled, not ended).
    _held: Arc<Mutex<Vec<Sender<Bytes, Infallible>>>>,
}

async fn stall(
    request: Request<Incoming>,
    requests: Arc<AtomicU64>,
    held: Arc<Mutex<Vec<Sender<Bytes, Infallible>>>>,
) -> Result<Response<Channel<Bytes, Infallible>>, hyper::Error> {
    request.into_body().collect().await?;
    requests.fetch_add(1, Ordering::SeqCst);
    let (mut tx, body) = Channel::new(1);
    tx.send_data(Bytes::from_static(b"{")).await.unwrap();
    held.lock().unwrap().push(tx);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_LENGTH, "1000000")
        .body(body)
        .unwrap())
}

impl StallingReceiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/audit", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicU64::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (count, keep) = (Arc::clone(&requests), Arc::clone(&held));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (count, keep) = (Arc::clone(&count), Arc::clone(&keep));
                let service = service_fn(move |request| {
                    stall(request, Arc::clone(&count), Arc::clone(&keep))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            url,
            requests,
            _held: held,
        }
    }
}

/// The status decides, once the head is in: the body is read only so the connection
/// can be reused, and its stalling past the request timeout neither fails the delivery
/// nor sends the message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_whose_body_stalls_is_delivered_once() {
    let receiver = StallingReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = WebhookConfig {
        url: receiver.url.clone(),
        secret_env: "AUDIT_WEBHOOK_SECRET".into(),
        spool_dir: dir.path().join("spool"),
        batch_size: 10,
        queue_capacity: 100,
        request_timeout_ms: 10_000,
        max_spool_bytes: 1 << 30,
    };
    let options = WebhookOptions {
        retry_base: Duration::from_millis(10),
        request_timeout: Duration::from_millis(300),
        ..WebhookOptions::default()
    };
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let sink = WebhookSink::start_with(&config, secret, options).unwrap();
    sink.record(&entries::entry(0)).await.unwrap();
    // Settled once the POST is judged: delivered, or failed and spooled.
    let deadline = Instant::now() + Duration::from_secs(10);
    sink.flush(deadline).await.unwrap();
    let report = sink.report();
    assert_eq!(
        (report.delivered, report.retried, report.spooled),
        (1, 0, 0),
        "{report:?}"
    );
    sink.shutdown(deadline).await.unwrap();
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 1);
}
