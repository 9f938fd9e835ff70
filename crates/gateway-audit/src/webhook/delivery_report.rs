//! `DeliveryReport`: what the webhook sink has done with the entries it accepted.

use std::sync::atomic::{AtomicU64, Ordering};

use gateway_telemetry::{AuditCounters, AuditEvent};
use metrics::Gauge;
use tokio::sync::watch;

/// Counts of what the webhook sink did with entries, readable at any time.
///
/// An entry is *delivered* once a receiver answered 2xx to a batch holding it (entries
/// may be delivered more than once; receivers deduplicate by id). *Retried* counts
/// entries of failed attempts (each failed POST adds its batch size). *Spooled* counts
/// entries written to the spool; *replayed* those delivered out of it. *Dropped* counts
/// entries truly lost: the spool, or `rejected/` for an entry refused as too large, was
/// full or failing, or a spooled line was corrupt.
/// *Rejected* counts entries the receiver refused as too large (413) on their own: they
/// are kept in the spool's `rejected/` directory, not sent again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Entries taken by `record`.
    pub accepted: u64,
    /// Entries acknowledged (2xx) by the receiver, replayed ones included.
    pub delivered: u64,
    /// Entries in failed delivery attempts.
    pub retried: u64,
    /// Entries written to the spool.
    pub spooled: u64,
    /// Entries delivered out of the spool.
    pub replayed: u64,
    /// Entries lost (spool or `rejected/` full or failing, corrupt spool line).
    pub dropped: u64,
    /// Entries refused as too large on their own and set aside in `rejected/`.
    pub rejected: u64,
    /// Entries accepted but not yet delivered or spooled (in memory).
    pub in_memory: u64,
    /// Bytes waiting in the spool.
    pub spool_bytes: u64,
}

/// Where an entry went when `record` took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The in-memory queue, which the delivery task settles in order.
    Queue,
    /// Straight to the spool, on the caller's task (the queue was full).
    Direct,
}

/// How many entries of each [`Lane`] are no longer the sink's to lose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Queued entries settled: always the first this many queued, as the task goes in
    /// order.
    pub(crate) queue: u64,
    /// Entries spooled straight away and settled.
    pub(crate) direct: u64,
}

impl Settled {
    fn total(self) -> u64 {
        self.queue.saturating_add(self.direct)
    }

    /// Whether everything `taken` counts has settled.
    pub(crate) fn covers(self, taken: Settled) -> bool {
        self.queue >= taken.queue && self.direct >= taken.direct
    }

    /// How many of `taken` have not settled yet.
    pub(crate) fn short_of(self, taken: Settled) -> u64 {
        taken
            .queue
            .saturating_sub(self.queue)
            .saturating_add(taken.direct.saturating_sub(self.direct))
    }
}

#[derive(Debug)]
pub(crate) struct DeliveryCounters {
    accepted: AtomicU64,
    /// Entries taken by each lane (the queue's counted under the sender's lock, in the
    /// queue's order).
    queued: AtomicU64,
    direct: AtomicU64,
    /// Queued entries the delivery task dropped (the spool full or failing) that no
    /// flush or shutdown has reported yet: their callers were told nothing.
    unreported_drops: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    spool_bytes: AtomicU64,
    /// `spool_bytes` as the metrics show it.
    spool_gauge: Gauge,
    /// Entries delivered from memory, spooled or dropped: no longer the sink's to lose.
    settled: watch::Sender<Settled>,
    metrics: AuditCounters,
}

impl DeliveryCounters {
    pub(crate) fn new(spool_bytes: u64) -> Self {
        Self {
            accepted: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            direct: AtomicU64::new(0),
            unreported_drops: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(spool_bytes),
            spool_gauge: gateway_telemetry::webhook_spool_bytes_gauge(spool_bytes),
            settled: watch::Sender::new(Settled::default()),
            metrics: AuditCounters::new(),
        }
    }

    pub(crate) fn accept(&self) -> u64 {
        self.accepted.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Counts an accepted entry as taken by `lane`.
    pub(crate) fn take(&self, lane: Lane) {
        let counter = match lane {
            Lane::Queue => &self.queued,
            Lane::Direct => &self.direct,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }

    /// The entries taken so far, by lane: a flush waits until they have all settled.
    pub(crate) fn taken(&self) -> Settled {
        Settled {
            queue: self.queued.load(Ordering::SeqCst),
            direct: self.direct.load(Ordering::SeqCst),
        }
    }

    /// Counts entries dropped that no caller was told of, for the next flush to report.
    pub(crate) fn drop_unreported(&self, n: u64) {
        self.unreported_drops.fetch_add(n, Ordering::SeqCst);
    }

    /// The entries dropped since the last call that no caller was told of.
    pub(crate) fn take_unreported_drops(&self) -> u64 {
        self.unreported_drops.swap(0, Ordering::SeqCst)
    }

    pub(crate) fn add(&self, event: AuditEvent, n: u64) {
        let counter = match event {
            AuditEvent::Delivered => &self.delivered,
            AuditEvent::Retried => &self.retried,
            AuditEvent::Spooled => &self.spooled,
            AuditEvent::Replayed => &self.replayed,
            AuditEvent::Dropped => &self.dropped,
            AuditEvent::Rejected => &self.rejected,
            AuditEvent::Written | AuditEvent::Failed => return,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        self.metrics.add(event, n);
    }

    pub(crate) fn spool_bytes(&self) -> u64 {
        self.spool_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_spool_bytes(&self, bytes: u64) {
        self.spool_bytes.store(bytes, Ordering::Relaxed);
        self.spool_gauge.set(bytes as f64);
    }

    /// Marks `n` accepted entries of `lane` as delivered, spooled or dropped.
    pub(crate) fn settle(&self, lane: Lane, n: u64) {
        if n > 0 {
            self.settled.send_modify(|s| match lane {
                Lane::Queue => s.queue = s.queue.saturating_add(n),
                Lane::Direct => s.direct = s.direct.saturating_add(n),
            });
        }
    }

    pub(crate) fn settled(&self) -> watch::Receiver<Settled> {
        self.settled.subscribe()
    }

    pub(crate) fn report(&self) -> DeliveryReport {
        let settled = self.settled.borrow().total();
        let accepted = self.accepted();
        DeliveryReport {
            accepted,
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            spooled: self.spooled.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            in_memory: accepted.saturating_sub(settled),
            spool_bytes: self.spool_bytes.load(Ordering::Relaxed),
        }
    }
}
