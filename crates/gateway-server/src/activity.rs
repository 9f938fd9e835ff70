//! What a connection is doing, so the accept loop can close the ones that do nothing.
//!
//! hyper's own header-read timer (1.12) also runs while a keep-alive connection waits
//! for its next request, so it cannot tell "slow headers" from "idle"; and it has no
//! idle timeout of its own. [`Activity`] tells them apart: the I/O wrapper notes when
//! bytes arrive, the service wrapper notes when a request is in flight.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ConnectionLimits;

/// No partial request is pending.
const NONE: u64 = u64::MAX;

/// How an HTTP/2 connection begins (RFC 9113 §3.4): hyper-util serves HTTP/2 only after
/// all of it, and HTTP/1.1 otherwise (where `PRI` is a method like any other).
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One connection's activity, in milliseconds since it was accepted.
#[derive(Debug)]
pub(crate) struct Activity {
    accepted: Instant,
    /// The last time bytes arrived, bytes of an answer left (HTTP/1.1), or a request ended.
    last_ms: AtomicU64,
    /// When the first byte of a request arrived whose headers are not complete yet.
    partial_since_ms: AtomicU64,
    /// The last time bytes of an answer left (HTTP/1.1): a request pipelined behind an
    /// answer is read only once the answer is written, so its header clock starts no
    /// earlier than that.
    sent_ms: AtomicU64,
    /// Requests handed to the service and not answered yet.
    in_flight: AtomicUsize,
    /// Answers whose body is still being written: idle from the last of their bytes
    /// taken (their frames, and over HTTP/1.1 their bytes written), not from the start
    /// of a request pipelined behind them, which is read only once they end.
    writing: AtomicUsize,
    /// Wakes the watchdog when a deadline moves earlier (a request's first byte).
    changed: Notify,
    /// The connection speaks HTTP/2: frames between requests (PING, SETTINGS,
    /// `WINDOW_UPDATE`) are not the start of a request, and only a finished request or
    /// a frame of an answer taken counts as activity, so a stream whose headers stall
    /// is bounded by the idle timeout (h2 bounds a header block's size, not its time).
    multiplexed: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            accepted: Instant::now(),
            last_ms: AtomicU64::new(0),
            partial_since_ms: AtomicU64::new(NONE),
            sent_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            changed: Notify::new(),
            multiplexed: AtomicBool::new(false),
        })
    }

    /// Whether a request is being answered, or its answer written.
    pub(crate) fn has_requests_in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0 || self.writing.load(Ordering::Acquire) > 0
    }

    /// Whether the connection speaks HTTP/2 (it began with the preface).
    pub(crate) fn is_multiplexed(&self) -> bool {
        self.multiplexed.load(Ordering::Acquire)
    }

    /// The connection began with the HTTP/2 preface: its bytes no longer start a header
    /// clock, and it is idle from its last finished request.
    fn speaks_http2(&self) {
        self.multiplexed.store(true, Ordering::Release);
        self.partial_since_ms.store(NONE, Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        saturating_add(self.accepted, Duration::from_millis(ms))
    }

    fn bytes_arrived(&self) {
        if self.is_multiplexed() {
            return;
        }
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            // Only the first byte of a request starts its header clock.
            let started = self
                .partial_since_ms
                .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
            if started {
                self.changed.notify_one();
            }
        }
    }

    /// Bytes of an answer left: over HTTP/1.1 a slow reader still taking them is not
    /// idle, so an answer is not cut short while it is being read. (Over HTTP/2 the
    /// server's writes include PING and SETTINGS acknowledgements, which a client could
    /// provoke to hold a connection: only finished requests and the frames of an answer
    /// taken from its body count there.)
    fn bytes_sent(&self) {
        if self.is_multiplexed() {
            return;
        }
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        self.sent_ms.store(now, Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.partial_since_ms.store(NONE, Ordering::Release);
    }

    fn request_ended(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn answer_started(&self) {
        self.writing.fetch_add(1, Ordering::AcqRel);
    }

    /// A frame of an answer's body was taken: the client is reading it.
    fn answer_progress(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The last answer being written ended: a request pipelined behind it is read from
    /// now on, so its header clock starts now.
    fn answer_ended(&self) {
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if self.writing.fetch_sub(1, Ordering::AcqRel) == 1 {
            let partial = self.partial_since_ms.load(Ordering::Acquire);
            // Unless the request started meanwhile (and cleared its clock). Only then is
            // the watchdog woken: its deadline may now be a header clock's, earlier than
            // the idle one it sleeps on; an answer that ends with nothing behind it wakes
            // no one (the watchdog finds a later deadline when it wakes).
            if partial != NONE
                && self
                    .partial_since_ms
                    .compare_exchange(partial, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                self.changed.notify_one();
            }
        }
    }

    /// When the connection is to be closed as it stands, if it is.
    fn close_at(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let partial = self.partial_since_ms.load(Ordering::Acquire);
        let writing = self.writing.load(Ordering::Acquire) > 0;
        Some(if partial == NONE || writing {
            saturating_add(
                self.at(self.last_ms.load(Ordering::Relaxed)),
                limits.idle_timeout,
            )
        } else {
            let sent = self.sent_ms.load(Ordering::Relaxed);
            saturating_add(self.at(partial.max(sent)), limits.header_read_timeout)
        })
    }

    /// Resolves when the connection has been idle, or slow with its headers, too long.
    pub(crate) async fn expired(&self, limits: &ConnectionLimits) {
        loop {
            match self.close_at(limits) {
                Some(at) if Instant::now() >= at => return,
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
                // A request is being served: it has its own deadlines; look again later.
                None => {
                    tokio::time::sleep(limits.idle_timeout.min(limits.header_read_timeout)).await;
                }
            }
        }
    }
}

/// `base + d`, saturating far in the future (never at `base`, which would close the
/// connection at once): the timeouts come from config, which is outside input.
fn saturating_add(base: Instant, d: Duration) -> Instant {
    gateway_transport::clock::later(base, d)
}

/// An accepted stream that reports arriving bytes to its [`Activity`].
#[derive(Debug)]
pub(crate) struct WatchedIo<T> {
    inner: T,
    activity: Arc<Activity>,
    /// How many of the connection's first bytes matched the HTTP/2 preface; `None` once
    /// one did not (or the whole preface came), so later reads skip the check.
    preface_matched: Option<usize>,
}

impl<T> WatchedIo<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            preface_matched: Some(0),
        }
    }

    /// Compares the connection's first bytes with the HTTP/2 preface, until the whole
    /// preface has come or a byte differs.
    fn match_preface(&mut self, matched: usize, arrived: &[u8]) {
        let rest = &HTTP2_PREFACE[matched..];
        let take = arrived.len().min(rest.len());
        self.preface_matched = if arrived[..take] != rest[..take] {
            None
        } else if take == rest.len() {
            self.activity.speaks_http2();
            None
        } else {
            Some(matched + take)
        };
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            if let Some(matched) = self.preface_matched {
                self.match_preface(matched, &buf.filled()[before..]);
            }
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_sent();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_sent();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A service that tells the connection's [`Activity`] while a request is in flight.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

/// Marks a request as ended when its answer is ready, or when hyper drops it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<WatchedBody<B>>;
    type Error = S::Error;
    type Future = TrackedAnswer<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        let guard = InFlight(Arc::clone(&self.activity));
        TrackedAnswer {
            answer: self.inner.call(req),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer that marks the request as ended when it is ready (or dropped).
    pub(crate) struct TrackedAnswer<F> {
        #[pin]
        answer: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedAnswer<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<WatchedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.answer.poll(cx));
        // Counted as written before the request stops being in flight (the guard drops
        // after the body is made).
        let guard = this.guard.take();
        let answer = answer.map(|response| {
            response.map(|body| match &guard {
                Some(InFlight(activity)) => WatchedBody::new(body, activity),
                // Polled again after it was ready: hyper does not.
                None => WatchedBody::unwatched(body),
            })
        });
        drop(guard);
        Poll::Ready(answer)
    }
}

pin_project_lite::pin_project! {
    /// An answer's body that tells the connection's [`Activity`] while it is written:
    /// each frame taken is progress, and its end (or drop) ends the answer.
    pub(crate) struct WatchedBody<B> {
        #[pin]
        inner: B,
        writing: Option<Writing>,
    }
}

/// One answer being written, ended when dropped.
struct Writing(Arc<Activity>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.answer_ended();
    }
}

impl<B> WatchedBody<B> {
    fn new(inner: B, activity: &Arc<Activity>) -> Self {
        activity.answer_started();
        Self {
            inner,
            writing: Some(Writing(Arc::clone(activity))),
        }
    }

    fn unwatched(inner: B) -> Self {
        Self {
            inner,
            writing: None,
        }
    }
}

impl<B: Body> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                if let Some(Writing(activity)) = this.writing {
                    activity.answer_progress();
                }
            }
            Poll::Ready(None | Some(Err(_))) => {
                this.writing.take();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
