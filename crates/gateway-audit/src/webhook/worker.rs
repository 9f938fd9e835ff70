//! The webhook sink's background task: groups entries into messages, signs and POSTs
//! them; spools them when delivery fails; replays the spool in order when the receiver
//! is back.
//!
//! Two modes. With an empty spool, messages are formed straight from the in-memory
//! queue; a failed POST spools its message as it is and starts the backlog mode. With a
//! backlog, queued entries are moved to the spool first (so order is kept and the queue
//! stays free), then the oldest segment is replayed message by message, waiting with
//! backoff after each failure. A message, once formed, is never regrouped: later entries
//! go into later messages. A segment is deleted once all its messages are delivered.

use std::sync::Arc;

use bytes::Bytes;
use gateway_telemetry::AuditEvent;
use http::StatusCode;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::webhook::backoff::Backoff;
use crate::webhook::batch::Message;
use crate::webhook::delivery_report::Lane;
use crate::webhook::post::{DeliveryError, HttpClient, post, verdict};
use crate::webhook::segment_read::{SegmentFile, read_segment};
use crate::webhook::spool::{Record, Segment, into_messages, rewrite_segment};
use crate::webhook::spool_write::{lock, spool_records};
use crate::webhook::{MAX_REQUEST_TIMEOUT, Shared};
use crate::{AuditError, EncodedEntry};

/// Most queued entries moved to the spool per append.
const DRAIN_CHUNK: usize = 4096;

struct Replay {
    segment: Segment,
    messages: Vec<Message>,
    next: usize,
}

pub(crate) struct Worker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: HttpClient,
    pub(crate) rx: mpsc::Receiver<EncodedEntry>,
    pub(crate) shutdown: watch::Receiver<Option<Instant>>,
    pub(crate) backoff: Backoff,
    next_attempt: Option<Instant>,
    replay: Option<Replay>,
    /// Once shutdown is asked: stop delivering at this instant, then spool the rest.
    stop_at: Option<Instant>,
    shutdown_gone: bool,
    senders_gone: bool,
}

impl Worker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        client: HttpClient,
        rx: mpsc::Receiver<EncodedEntry>,
        shutdown: watch::Receiver<Option<Instant>>,
    ) -> Self {
        let backoff = Backoff::new(shared.options.retry_base, shared.options.retry_max);
        Self {
            shared,
            client,
            rx,
            shutdown,
            backoff,
            next_attempt: None,
            replay: None,
            stop_at: None,
            shutdown_gone: false,
            senders_gone: false,
        }
    }

    /// Reads the shutdown signal: half the time left goes to delivery, half to spooling.
    fn observe_shutdown(&mut self) {
        if self.stop_at.is_none()
            && let Some(deadline) = *self.shutdown.borrow_and_update()
        {
            let now = Instant::now();
            self.stop_at = Some(now + deadline.saturating_duration_since(now) / 2);
        }
    }

    fn stopping(&self) -> bool {
        self.stop_at.is_some() || self.senders_gone
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.observe_shutdown();
            if self.stop_at.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            let backlog = self.replay.is_some() || self.shared.counters.spool_bytes() > 0;
            if backlog {
                if self.stopping() {
                    // What is on disk waits for the next start.
                    break;
                }
                self.drain_queue_to_spool().await;
                if let Some(at) = self.next_attempt
                    && Instant::now() < at
                {
                    self.wait_spooling(at).await;
                    continue;
                }
                self.replay_one_message().await;
                continue;
            }
            let Some(batch) = self.next_batch().await else {
                if self.stopping() || self.rx.is_closed() {
                    break;
                }
                continue;
            };
            let message = Message::of(&batch);
            drop(batch);
            let n = message.entries();
            match self.post_until_stop(&message).await {
                Ok(()) => {
                    self.shared.counters.add(AuditEvent::Delivered, n);
                    self.shared.counters.settle(Lane::Queue, n);
                    self.backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(error = %e, entries = n, "audit webhook delivery failed; spooling");
                    self.shared.counters.add(AuditEvent::Retried, n);
                    self.next_attempt = Some(self.backoff.next_attempt());
                    self.spool(vec![Record::Message(message)]).await;
                }
            }
        }
        self.finish().await;
    }

    /// The next batch from the queue: waits for the first entry unless stopping.
    async fn next_batch(&mut self) -> Option<Vec<EncodedEntry>> {
        let batch_size = self.shared.batch_size;
        let first = if self.stopping() {
            self.rx.try_recv().ok()?
        } else {
            tokio::select! {
                entry = self.rx.recv() => {
                    if entry.is_none() {
                        self.senders_gone = true;
                    }
                    entry?
                }
                changed = self.shutdown.changed(), if !self.shutdown_gone => {
                    if changed.is_err() {
                        self.shutdown_gone = true;
                    }
                    return None;
                }
            }
        };
        let mut batch = Vec::with_capacity(batch_size.min(self.rx.len() + 1));
        batch.push(first);
        while batch.len() < batch_size {
            match self.rx.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// POSTs a message, giving up at the request timeout or when shutdown's delivery time
    /// ends if no answer's head came by then; the status decides (see [`verdict`]).
    async fn post_until_stop(&mut self, message: &Message) -> Result<(), DeliveryError> {
        let timeout = self.shared.options.request_timeout.min(MAX_REQUEST_TIMEOUT);
        let request_deadline = Instant::now() + timeout;
        let cutoff = |stop_at: Option<Instant>| {
            stop_at.map_or(request_deadline, |s| s.min(request_deadline))
        };
        let attempt = post(&self.client, &self.shared, message);
        tokio::pin!(attempt);
        let response = loop {
            let until = cutoff(self.stop_at);
            tokio::select! {
                result = &mut attempt => break result?,
                () = tokio::time::sleep_until(until) => return Err(DeliveryError::Timeout),
                changed = self.shutdown.changed(), if self.stop_at.is_none() && !self.shutdown_gone => {
                    if changed.is_err() {
                        self.shutdown_gone = true;
                    } else if let Some(deadline) = *self.shutdown.borrow_and_update() {
                        let now = Instant::now();
                        self.stop_at = Some(now + deadline.saturating_duration_since(now) / 2);
                    }
                }
            }
        };
        verdict(response).await
    }

    /// Writes records to the spool (on the blocking pool) and settles their entries;
    /// failures are counted as dropped and logged there.
    async fn spool(&self, records: Vec<Record>) {
        let _ = spool_records(&self.shared, records, Lane::Queue).await;
    }

    /// Moves whatever is queued into the spool, keeping order.
    async fn drain_queue_to_spool(&mut self) {
        loop {
            let mut chunk = Vec::new();
            while chunk.len() < DRAIN_CHUNK {
                match self.rx.try_recv() {
                    Ok(entry) => chunk.push(Record::Entry(entry)),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.senders_gone = true;
                        break;
                    }
                }
            }
            let full = chunk.len() == DRAIN_CHUNK;
            if !chunk.is_empty() {
                self.spool(chunk).await;
            }
            if !full {
                return;
            }
        }
    }

    /// Waits until `at` (or shutdown), spooling entries as they arrive.
    async fn wait_spooling(&mut self, at: Instant) {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(at) => return,
                changed = self.shutdown.changed(), if !self.shutdown_gone => {
                    if changed.is_err() {
                        self.shutdown_gone = true;
                    }
                    return;
                }
                entry = self.rx.recv(), if !self.senders_gone => {
                    let Some(entry) = entry else {
                        self.senders_gone = true;
                        return;
                    };
                    self.spool(vec![Record::Entry(entry)]).await;
                    self.drain_queue_to_spool().await;
                }
            }
        }
    }

    /// Sends the next message of the oldest spool segment.
    async fn replay_one_message(&mut self) {
        if self.replay.is_none() {
            match self.load_oldest().await {
                Ok(Some(replay)) => self.replay = Some(replay),
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the audit spool; will retry");
                    self.next_attempt = Some(self.backoff.next_attempt());
                    return;
                }
            }
        }
        let Some(replay) = self.replay.take() else {
            return;
        };
        let Some(message) = replay.messages.get(replay.next) else {
            self.remove_segment(replay.segment).await;
            return;
        };
        let n = message.entries();
        let result = self.post_until_stop(message).await;
        match result {
            Ok(()) => {
                self.shared.counters.add(AuditEvent::Delivered, n);
                self.shared.counters.add(AuditEvent::Replayed, n);
                self.backoff.reset();
                self.next_attempt = None;
                self.advance(replay).await;
            }
            Err(DeliveryError::Status(StatusCode::PAYLOAD_TOO_LARGE)) => {
                self.shared.counters.add(AuditEvent::Retried, n);
                self.too_large(replay).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, entries = n, "audit webhook replay failed; backing off");
                self.shared.counters.add(AuditEvent::Retried, n);
                self.next_attempt = Some(self.backoff.next_attempt());
                self.replay = Some(replay);
            }
        }
    }

    /// Moves past the message just sent, removing the segment after its last one.
    async fn advance(&mut self, mut replay: Replay) {
        replay.next += 1;
        if replay.next >= replay.messages.len() {
            self.remove_segment(replay.segment).await;
        } else {
            self.replay = Some(replay);
        }
    }

    /// The receiver refused `replay`'s next message as too large (413), which sending
    /// it again would not change: a message of several entries is replaced by one
    /// message per entry, sent at once; a single entry is set aside in the spool's
    /// `rejected/` directory so the entries behind it are not held up forever.
    async fn too_large(&mut self, mut replay: Replay) {
        let Some(message) = replay.messages.get(replay.next).cloned() else {
            return;
        };
        let n = message.entries();
        if n > 1
            && let Some(singles) = message.split()
        {
            tracing::warn!(
                entries = n,
                "the audit webhook receiver refused a message as too large (413); \
                 sending its entries one per message"
            );
            replay.messages.splice(replay.next..=replay.next, singles);
            self.replay = Some(replay);
            return;
        }
        let shared = Arc::clone(&self.shared);
        let kept = tokio::task::spawn_blocking(move || lock(&shared).set_aside(&message))
            .await
            .unwrap_or_else(|e| {
                Err(AuditError::Task {
                    sink: "webhook",
                    reason: format!("setting a refused message aside failed: {e}"),
                })
            });
        match kept {
            Ok(Some(path)) => {
                tracing::error!(
                    entries = n,
                    path = %path.display(),
                    "the audit webhook receiver refused an entry as too large (413); \
                     it is kept in the spool's rejected/ directory and not sent again"
                );
                self.shared.counters.add(AuditEvent::Rejected, n);
                self.next_attempt = None;
                self.advance(replay).await;
            }
            Ok(None) => {
                tracing::error!(
                    entries = n,
                    "the audit webhook receiver refused an entry as too large (413), and \
                     the spool's rejected/ directory is full (its cap is max_spool_bytes): \
                     the entry is dropped"
                );
                self.shared.counters.add(AuditEvent::Dropped, n);
                self.shared.counters.drop_unreported(n);
                self.next_attempt = None;
                self.advance(replay).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not set a refused audit message aside; will retry");
                self.next_attempt = Some(self.backoff.next_attempt());
                self.replay = Some(replay);
            }
        }
    }

    /// Loads the oldest segment as messages; empty or fully corrupt ones are removed on
    /// the way.
    async fn load_oldest(&mut self) -> Result<Option<Replay>, AuditError> {
        loop {
            let shared = Arc::clone(&self.shared);
            let loaded = tokio::task::spawn_blocking(move || load_segment(&shared))
                .await
                .unwrap_or_else(|e| {
                    Err(AuditError::Task {
                        sink: "webhook",
                        reason: format!("spool reader failed: {e}"),
                    })
                })?;
            let Some((segment, messages)) = loaded else {
                return Ok(None);
            };
            if !messages.is_empty() {
                return Ok(Some(Replay {
                    segment,
                    messages,
                    next: 0,
                }));
            }
            self.remove_segment(segment).await;
        }
    }

    async fn remove_segment(&self, segment: Segment) {
        let shared = Arc::clone(&self.shared);
        let removed = tokio::task::spawn_blocking(move || {
            let mut spool = lock(&shared);
            let result = spool.remove(segment);
            shared.counters.set_spool_bytes(spool.total_bytes());
            result
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::error!(error = %e, "could not remove a replayed audit spool segment");
        }
    }

    /// Stops taking entries and spools whatever is still queued.
    async fn finish(&mut self) {
        self.rx.close();
        loop {
            let mut chunk = Vec::new();
            while chunk.len() < DRAIN_CHUNK {
                match self.rx.try_recv() {
                    Ok(entry) => chunk.push(Record::Entry(entry)),
                    Err(_) => break,
                }
            }
            if chunk.is_empty() {
                return;
            }
            self.spool(chunk).await;
        }
    }
}

/// Reads the oldest segment (blocking) as messages.
///
/// Loose entries are formed into messages here, before their first attempt, and the
/// segment is rewritten as those messages so that a restart resends the same ids and
/// bodies. If the rewrite fails the messages are still sent; only a restart could then
/// form them anew. Unreadable lines are counted dropped and kept in `rejected/` first.
fn load_segment(shared: &Shared) -> Result<Option<(Segment, Vec<Message>)>, AuditError> {
    let (segment, path, read) = loop {
        let (segment, path, bound) = {
            let mut spool = lock(shared);
            let Some(segment) = spool.oldest()? else {
                return Ok(None);
            };
            (segment, spool.path_of(segment.index), spool.read_bound())
        };
        match read_segment(&path, bound)? {
            SegmentFile::Read(read) => break (segment, path, read),
            // Replaced or grown since the spool was listed: never read.
            SegmentFile::Unfit(suffix) => {
                let mut spool = lock(shared);
                spool.set_aside_unread(segment, suffix);
                shared.counters.set_spool_bytes(spool.total_bytes());
            }
        }
    };
    if read.corrupt > 0 {
        set_aside_unreadable(shared, segment.index, &read.unreadable, read.corrupt);
    }
    let (messages, formed) = into_messages(read.records, shared.batch_size);
    if (formed || read.corrupt > 0) && !messages.is_empty() {
        match rewrite_segment(&path, &messages) {
            Ok(bytes) => {
                let mut spool = lock(shared);
                spool.resize(segment.index, bytes);
                shared.counters.set_spool_bytes(spool.total_bytes());
            }
            Err(e) => {
                tracing::error!(error = %e, "could not store formed webhook messages in the spool");
            }
        }
    }
    Ok(Some((segment, messages)))
}

/// Keeps the unreadable `lines` of segment `index` (holding about `corrupt` entries) in
/// `rejected/`, logs where, and counts their entries dropped: they are not sent.
fn set_aside_unreadable(shared: &Shared, index: u64, lines: &[Bytes], corrupt: u64) {
    match lock(shared).set_aside_unreadable(index, lines) {
        Ok(Some(path)) => tracing::error!(
            corrupt,
            segment = index,
            path = %path.display(),
            "unreadable lines in the audit spool (not audit entries this router wrote) are \
             not sent; they are kept in the spool's rejected/ directory"
        ),
        Ok(None) => tracing::error!(
            corrupt,
            segment = index,
            "unreadable lines in the audit spool are not sent, and the spool's rejected/ \
             directory is too full to keep them"
        ),
        Err(e) => tracing::error!(
            corrupt,
            segment = index,
            error = %e,
            "unreadable lines in the audit spool are not sent, and could not be kept either"
        ),
    }
    shared.counters.add(AuditEvent::Dropped, corrupt);
}
