//! How many prompt calls per second the simulator answers on this machine, with zero
//! latency, over keep-alive HTTP/1.1 connections from the same process.
//!
//! ```sh
//! cargo run --release -p gateway-sim --example throughput -- [connections] [seconds]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_model::GatewayPayload;
use gateway_sim::Sim;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);

    let sim = Sim::builder()
        .record_capacity(0)
        .start()
        .await
        .expect("start the simulator");
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let base = sim.base_url();

    let token_request = http::Request::post(format!("{base}/oauth/token"))
        .header("authorization", "Basic c2ltLWNsaWVudDpzaW0tc2VjcmV0")
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .expect("a valid request");
    let token_body = client
        .request(token_request)
        .await
        .expect("token")
        .into_body()
        .collect()
        .await
        .expect("body");
    let token: serde_json::Value = serde_json::from_slice(&token_body.to_bytes()).expect("json");
    let bearer = format!(
        "Bearer {}",
        token["access_token"].as_str().expect("a token")
    );
    let payload = GatewayPayload::builder("model-gen-4", "Summarize this transcript")
        .build()
        .expect("valid");
    let body = Bytes::from(serde_json::to_vec(&payload).expect("json"));

    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, done, body, bearer) =
                (client.clone(), done.clone(), body.clone(), bearer.clone());
            let url = format!("{base}/api/v2/ai/gateway/prompts");
            tokio::spawn(async move {
                while Instant::now() < stop {
                    let request = http::Request::post(&url)
                        .header("authorization", &bearer)
                        .header("content-type", "application/json")
                        .header("x-genesys-request-id", "throughput")
                        .body(Full::new(body.clone()))
                        .expect("a valid request");
                    let response = client.request(request).await.expect("an answer");
                    assert!(response.status().is_success());
                    response.into_body().collect().await.expect("a body");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "{n} prompt calls in {elapsed:.1} s over {connections} connections: {:.0} calls/s (client and simulator share this machine's {} cores)",
        n as f64 / elapsed,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    sim.shutdown().await;
}
