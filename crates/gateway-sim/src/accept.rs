//! The accept loop: one task per connection, each bounded by the connection timeout, and
//! at most so many at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::record::LiveCounters;
use crate::service;
use crate::state::State;

/// How long shutdown waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What bounds the connections served.
pub(crate) struct Limits {
    /// The connection timeout, if any.
    pub(crate) timeout: Option<Duration>,
    /// How many are served at once.
    pub(crate) max_connections: usize,
}

/// Accepts connections until shutdown, then drains them.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout = limits.timeout;
    let builder = connection_builder(timeout);
    let graceful = GracefulShutdown::new();
    // Past tokio's own bound the semaphore would panic: a cap that large is no cap.
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    loop {
        // A slot first: at the cap, new connections wait in the kernel's queue.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            _ = shutdown.wait_for(|down| *down) => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|down| *down) => break,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors, say: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        LiveCounters::bump(&state.counters.connections);
        let connection = Connection {
            state: Arc::clone(&state),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            timeout,
            down: shutdown.clone(),
        };
        let served = connection.serve(stream, tls.clone());
        tokio::spawn(async move {
            served.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// hyper's connection settings: the timeout, when there is one, bounds both versions.
fn connection_builder(timeout: Option<Duration>) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if let Some(timeout) = timeout {
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout);
        // A peer that vanished without a word stops answering pings.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(timeout)
            .keep_alive_timeout(timeout);
    }
    builder
}

/// What serving one accepted connection needs.
struct Connection {
    state: Arc<State>,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    timeout: Option<Duration>,
    down: watch::Receiver<bool>,
}

impl Connection {
    /// Serves `stream` (over TLS if `tls`) until it ends, times out or the simulator stops.
    async fn serve(self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let Self {
            state,
            builder,
            watcher,
            timeout,
            down,
        } = self;
        let served = Arc::new(AtomicBool::new(false));
        let service = {
            let served = Arc::clone(&served);
            service_fn(move |req| {
                served.store(true, Ordering::Relaxed);
                service::handle(Arc::clone(&state), req)
            })
        };
        let Some(acceptor) = tls else {
            // The version is told from the first bytes: wait for them first.
            let mut first = [0_u8; 1];
            if let Some(Ok(1)) = within(timeout, down, stream.peek(&mut first)).await {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                until_served_or_late(watcher.watch(conn), &served, timeout).await;
            }
            return;
        };
        if let Some(Ok(stream)) = within(timeout, down, acceptor.accept(stream)).await {
            // ALPN said which version: serving only that one starts HTTP/1.1's header
            // timer at once, instead of after the version is sniffed.
            let builder = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => builder.http2_only(),
                Some(_) => builder.http1_only(),
                None => builder,
            };
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            until_served_or_late(watcher.watch(conn), &served, timeout).await;
        }
    }
}

/// Runs `conn` to its end, or drops it (closing the socket) if `timeout` passes before
/// its first request arrived: a peer stalled inside the HTTP/2 preface or the version
/// sniff is bounded too, which hyper's own HTTP/1.1 header timer does not cover.
async fn until_served_or_late<F: Future>(conn: F, served: &AtomicBool, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        conn.await;
        return;
    };
    tokio::pin!(conn);
    tokio::select! {
        _ = &mut conn => return,
        () = tokio::time::sleep(timeout) => {}
    }
    if served.load(Ordering::Relaxed) {
        conn.await;
    }
}

/// What `wait` gives, or `None` if `timeout` (when there is one) passes or the simulator
/// shuts down first.
async fn within<T>(
    timeout: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
    wait: impl Future<Output = T>,
) -> Option<T> {
    let bounded = async {
        match timeout {
            Some(timeout) => tokio::time::timeout(timeout, wait).await.ok(),
            None => Some(wait.await),
        }
    };
    tokio::select! {
        done = bounded => done,
        _ = shutdown.wait_for(|down| *down) => None,
    }
}
