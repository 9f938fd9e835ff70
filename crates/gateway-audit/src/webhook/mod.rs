//! The webhook audit sink: at-least-once delivery of signed messages, with a disk spool.
//!
//! - `record` puts the entry on a bounded in-memory queue (no I/O on the caller's task);
//!   when the queue is full it is appended to the spool instead (synced to disk).
//! - A background task POSTs messages of up to `batch_size` entries as
//!   `{"entries": [...]}` ([`WebhookBatch`]), signed per Standard Webhooks
//!   ([`sign`]; receivers check with [`verify_headers`]). A 2xx answer delivers the
//!   message as soon as its status arrives: the body is then read for at most 1 s and
//!   64 KiB, only so the connection can be reused, and how that goes changes nothing. Its `webhook-id` (`msg_` plus 32 hex digits derived from its entry ids) and
//!   its body are fixed when it is formed and stay so until it is delivered, through
//!   every retry and across restarts: each entry travels in one message only, and
//!   entries that arrive while a message waits go into later messages. Only the
//!   `webhook-timestamp` (and so the signature) is fresh on every attempt. Receivers may
//!   deduplicate on the `webhook-id` or on each entry's `id`
//!   ([`AuditEntry::id`](gateway_model::AuditEntry::id)).
//! - Any other answer, a connection error or a timeout spools the message as it is; the
//!   spool is then replayed in order, with exponential backoff and jitter between failed
//!   attempts, until the receiver answers 2xx. Entries spooled before any attempt are
//!   formed into messages when their segment is first replayed, and the segment is
//!   rewritten as those messages (a little larger) before they are sent; should that
//!   rewrite fail, the error is logged and only a restart could form them anew. Only 413
//!   is treated as final, because sending the same bytes again cannot change it: a
//!   message of several entries is sent again as one message per entry, and an entry
//!   refused on its own is set aside in the spool's `rejected/` directory (same line
//!   format, in a file named like a segment under an index no segment of this or a later
//!   run takes: moved back into the spool directory while no sink has it open, it
//!   overwrites nothing and is replayed by the next sink to open it) and counted
//!   `rejected`, so it does not hold up the entries behind it. `rejected/` has a cap of
//!   its own, as large as the spool's ([`WebhookOptions::max_spool_bytes`]): past it,
//!   such an entry is dropped. A misconfigured receiver
//!   (400, 401, 404...) keeps entries in the spool, logged, until it is fixed.
//!   Entries are dropped (and counted `dropped`) only when the spool is full
//!   ([`WebhookOptions::max_spool_bytes`]) or the disk fails, when `rejected/` is full
//!   or failing for an entry refused as too large, or when a spooled line is
//!   unreadable: cut short, or not an audit entry (JSON another program put there is
//!   never signed and sent); such lines are copied to `rejected/{index}.unreadable`.
//!   A file named like a segment but larger than [`WebhookOptions::segment_bytes`] plus
//!   64 MiB (more than the sink ever writes) is not read: it is moved to `rejected/` as
//!   `{index}.oversized`, logged, and stops counting against the spool's size. One that
//!   is not a regular file (a link, a FIFO) is not read either: it is moved there as
//!   `{index}.not-a-file`.
//! - A new sink over the same spool directory replays what an earlier one left. One sink
//!   at a time has a spool directory: it holds a lock on `spool.lock` there until it is
//!   dropped, and a second sink (another replica on a shared volume, say) is refused
//!   with [`AuditError::InUse`] rather than replaying and rewriting the same segments.
//! - One POST is in flight at a time, so throughput is about `batch_size` per round trip.
//! - `flush(deadline)` waits until every entry whose `record` returned before it is
//!   delivered or spooled (one still being recorded beside it may not be waited for).
//!   `shutdown(deadline)` stops taking entries, tries to deliver what is queued during
//!   the first half of the time left, and spools the rest. Either fails with
//!   [`AuditError::Lost`] when entries were dropped in the background since the last
//!   flush (queued ones the spool could not take, ones spilled to it whose caller's
//!   future was dropped meanwhile, or spooled ones, this run's or an earlier one's,
//!   refused as too large that `rejected/` could not keep: no caller was told when it
//!   happened); so once `shutdown` returns `Ok`, every entry queued since the last flush
//!   is delivered or on disk. Entries still in memory when the process
//!   dies without a shutdown are lost to the webhook (the JSONL file has them).

mod backoff;
mod batch;
mod delivery_report;
mod post;
pub(crate) mod secret;
mod segment_read;
mod signature;
mod spool;
mod spool_write;
mod worker;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_model::WebhookConfig;
use gateway_model::endpoint::check_url;
use http::Uri;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{AuditError, AuditFuture, AuditSink, EncodedEntry};

pub use batch::WebhookBatch;
pub use delivery_report::DeliveryReport;
pub use secret::{MAX_KEY_BYTES, MIN_KEY_BYTES, SECRET_PREFIX, SecretError, WebhookSecret};
pub use signature::{
    DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SignatureError, sign,
    unix_seconds, verify, verify_headers,
};

use delivery_report::{DeliveryCounters, Lane};
use post::build_client;
use spool::{Record, Spool};
use spool_write::spool_records;
use worker::Worker;

const SINK: &str = "webhook";

/// Webhook settings that are not part of [`WebhookConfig`].
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// First wait after a failed delivery.
    pub retry_base: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// Longest time one POST may take, connection included; at most
    /// [`MAX_REQUEST_TIMEOUT`] (a longer one counts as that).
    pub request_timeout: Duration,
    /// Spool size beyond which new entries are dropped (and counted); `rejected/` has a
    /// cap of the same size of its own.
    pub max_spool_bytes: u64,
    /// Size at which a spool segment file is closed and a new one started.
    pub segment_bytes: u64,
    /// Allow plain `http://` to hosts that are not loopback.
    pub allow_insecure_http: bool,
    /// TLS client settings; by default Mozilla's roots (`webpki-roots`) with `ring`. The
    /// router passes its gateway client's (`[tls] roots` and `extra_ca_file`).
    pub tls: Option<rustls::ClientConfig>,
}

/// The longest [`WebhookOptions::request_timeout`] honoured: one day.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(86_400);

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
            request_timeout: Duration::from_millis(
                gateway_model::DEFAULT_WEBHOOK_REQUEST_TIMEOUT_MS,
            ),
            max_spool_bytes: gateway_model::DEFAULT_WEBHOOK_MAX_SPOOL_BYTES,
            segment_bytes: 1 << 20,
            allow_insecure_http: false,
            tls: None,
        }
    }
}

impl WebhookOptions {
    /// The defaults, with the request timeout and spool cap `config` sets.
    pub fn from_config(config: &WebhookConfig) -> Self {
        Self {
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            max_spool_bytes: config.max_spool_bytes,
            ..Self::default()
        }
    }
}

/// State shared by the sink and its background task.
pub(crate) struct Shared {
    uri: Uri,
    secret: WebhookSecret,
    batch_size: usize,
    options: WebhookOptions,
    spool: Mutex<Spool>,
    counters: DeliveryCounters,
}

/// Delivers audit entries to a webhook at least once. See the [module docs](self).
pub struct WebhookSink {
    shared: Arc<Shared>,
    tx: mpsc::Sender<EncodedEntry>,
    shutdown: watch::Sender<Option<Instant>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Held while an entry is queued and counted, so the count follows the queue.
    send_order: Mutex<()>,
    closed: AtomicBool,
    spool_dir: PathBuf,
    queue_capacity: usize,
}

impl WebhookSink {
    /// Starts delivering to `config.url` (https, or http on loopback), signing with
    /// `secret` (read it with [`WebhookSecret::from_env`]`(&config.secret_env)`).
    ///
    /// Needs a Tokio runtime. Replays whatever an earlier sink left in `config.spool_dir`.
    pub fn start(config: &WebhookConfig, secret: WebhookSecret) -> Result<Self, AuditError> {
        Self::start_with(config, secret, WebhookOptions::from_config(config))
    }

    /// Checks, creating nothing, that [`start`](Self::start) could keep its spool in
    /// `dir`: it is a directory, or absent with a directory as its nearest existing
    /// ancestor (`check-config` reports what the sink would later fail on).
    ///
    /// ```
    /// use gateway_audit::webhook::WebhookSink;
    /// let dir = tempfile::tempdir()?;
    /// assert!(WebhookSink::check_spool_dir(&dir.path().join("new/spool")).is_ok());
    /// std::fs::write(dir.path().join("file"), b"")?;
    /// assert!(WebhookSink::check_spool_dir(&dir.path().join("file")).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn check_spool_dir(dir: &std::path::Path) -> Result<(), AuditError> {
        crate::path_check::creatable(dir, crate::path_check::Want::Directory)
    }

    /// [`start`](Self::start) with explicit [`WebhookOptions`].
    pub fn start_with(
        config: &WebhookConfig,
        secret: WebhookSecret,
        options: WebhookOptions,
    ) -> Result<Self, AuditError> {
        let uri = check_url(&config.url, options.allow_insecure_http)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| AuditError::NoRuntime { sink: SINK })?;
        let spool = Spool::open(
            &config.spool_dir,
            options.max_spool_bytes,
            options.segment_bytes,
        )?;
        let client = build_client(&options)?;
        let queue_capacity = usize::try_from(config.queue_capacity.max(1)).unwrap_or(usize::MAX);
        let (tx, rx) = mpsc::channel(queue_capacity);
        let (shutdown, shutdown_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            uri,
            secret,
            batch_size: usize::try_from(config.batch_size.max(1)).unwrap_or(usize::MAX),
            counters: DeliveryCounters::new(spool.total_bytes()),
            spool: Mutex::new(spool),
            options,
        });
        let worker = Worker::new(Arc::clone(&shared), client, rx, shutdown_rx);
        let handle = runtime.spawn(worker.run());
        Ok(Self {
            shared,
            tx,
            shutdown,
            worker: Mutex::new(Some(handle)),
            send_order: Mutex::new(()),
            closed: AtomicBool::new(false),
            spool_dir: config.spool_dir.clone(),
            queue_capacity,
        })
    }

    /// What has happened to the entries so far.
    pub fn report(&self) -> DeliveryReport {
        self.shared.counters.report()
    }

    /// The receiver's URL.
    pub fn url(&self) -> &Uri {
        &self.shared.uri
    }

    async fn record_entry(&self, entry: &EncodedEntry) -> Result<(), AuditError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed { sink: SINK });
        }
        self.shared.counters.accept();
        let entry = {
            // Counted under the lock, the queue's count follows its order: a flush then
            // waits for exactly the entries queued before it.
            let _order = self
                .send_order
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match self.tx.try_send(entry.clone()) {
                Ok(()) => {
                    self.shared.counters.take(Lane::Queue);
                    return Ok(());
                }
                Err(
                    mpsc::error::TrySendError::Full(entry)
                    | mpsc::error::TrySendError::Closed(entry),
                ) => entry,
            }
        };
        self.shared.counters.take(Lane::Direct);
        let id = entry.id();
        spool_records(&self.shared, vec![Record::Entry(entry)], Lane::Direct)
            .await
            .map_err(|reason| AuditError::Dropped { id, reason })
    }

    async fn flush_until(&self, deadline: Instant) -> Result<(), AuditError> {
        let target = self.shared.counters.taken();
        let mut settled = self.shared.counters.settled();
        let outcome = tokio::time::timeout_at(deadline, settled.wait_for(|s| s.covers(target)))
            .await
            .map(|waited| waited.is_ok());
        match outcome {
            Ok(true) => match self.shared.counters.take_unreported_drops() {
                0 => Ok(()),
                entries => Err(AuditError::Lost {
                    sink: SINK,
                    entries,
                }),
            },
            Ok(false) => Err(AuditError::Task {
                sink: SINK,
                reason: "the delivery task is gone".into(),
            }),
            Err(_) => Err(AuditError::Timeout {
                sink: SINK,
                pending: settled.borrow().short_of(target),
            }),
        }
    }

    async fn shutdown_until(&self, deadline: Instant) -> Result<(), AuditError> {
        self.closed.store(true, Ordering::Release);
        self.shutdown.send_replace(Some(deadline));
        let handle = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut handle) = handle {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(AuditError::Task {
                        sink: SINK,
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    // Still spooling: keep the handle so a later shutdown can wait again.
                    *self.worker.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
                    let report = self.report();
                    return Err(AuditError::Timeout {
                        sink: SINK,
                        pending: report.in_memory,
                    });
                }
            }
        }
        // Entries that raced with the shutdown went to the spool directly; wait for them.
        self.flush_until(deadline).await
    }
}

impl AuditSink for WebhookSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn record_encoded<'a>(&'a self, entry: &'a EncodedEntry) -> AuditFuture<'a> {
        Box::pin(self.record_entry(entry))
    }

    fn flush(&self, deadline: Instant) -> AuditFuture<'_> {
        Box::pin(self.flush_until(deadline))
    }

    fn shutdown(&self, deadline: Instant) -> AuditFuture<'_> {
        Box::pin(self.shutdown_until(deadline))
    }
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.shared.uri)
            .field("secret", &self.shared.secret)
            .field("batch_size", &self.shared.batch_size)
            .field("queue_capacity", &self.queue_capacity)
            .field("spool_dir", &self.spool_dir)
            .field("report", &self.report())
            .finish_non_exhaustive()
    }
}
