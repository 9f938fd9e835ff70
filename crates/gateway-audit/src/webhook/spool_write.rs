//! A write to the spool on the blocking pool, whose entries settle however it ends.

use std::sync::{Arc, MutexGuard, PoisonError};

use gateway_telemetry::AuditEvent;

use crate::webhook::Shared;
use crate::webhook::delivery_report::Lane;
use crate::webhook::spool::{Record, Spool};

/// A spool write's entries, settled when it is dropped, whatever becomes of the write:
/// made before the write is handed to the blocking pool, it is dropped there too if the
/// write never runs (a runtime shutting down drops blocking tasks not yet started).
/// Until the write has counted its entries, they are all taken for dropped. The entries
/// dropped are kept for the next flush to report unless their caller was
/// [`told`](Self::told): a caller whose future was dropped while the write ran never
/// is, since the runtime drops the write's outcome for it.
struct Written {
    shared: Arc<Shared>,
    lane: Lane,
    entries: u64,
    /// Whether the write counted its entries spooled or dropped.
    counted: bool,
    untold: u64,
}

impl Written {
    /// `entries` taken by `lane`, none written yet.
    fn pending(shared: Arc<Shared>, lane: Lane, entries: u64) -> Self {
        Self {
            shared,
            lane,
            entries,
            counted: false,
            untold: entries,
        }
    }

    /// The caller has heard of the entries dropped.
    fn told(mut self) {
        self.untold = 0;
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        let counters = &self.shared.counters;
        if !self.counted {
            counters.add(AuditEvent::Dropped, self.entries);
            tracing::error!(
                dropped = self.entries,
                "audit spool writer failed or never ran; entries dropped"
            );
        }
        counters.drop_unreported(self.untold);
        counters.settle(self.lane, self.entries);
    }
}

/// Appends `records` to the spool on the blocking pool, counts and settles their entries
/// (taken by `lane`). Returns why some could not be spooled, if any were not (they are
/// counted dropped; the next flush reports those whose caller was not told: queued
/// entries, and those of a caller gone while they were written).
pub(crate) async fn spool_records(
    shared: &Arc<Shared>,
    records: Vec<Record>,
    lane: Lane,
) -> Result<(), String> {
    // Everything, the counting included, happens in the blocking task: if the caller's
    // future is dropped while waiting, the entries are still spooled and settled, so a
    // later flush does not wait for them forever.
    let n = records.iter().map(Record::entries).sum::<u64>();
    let mut written = Written::pending(Arc::clone(shared), lane, n);
    let outcome = tokio::task::spawn_blocking(move || {
        let shared = Arc::clone(&written.shared);
        // A panic in the write comes back as its outcome, so the caller is told of it
        // (its entries counted dropped by `written`) and it is not reported twice.
        let appended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut spool = lock(&shared);
            let appended = spool.append(&records);
            shared.counters.set_spool_bytes(spool.total_bytes());
            appended
        }));
        let Ok(appended) = appended else {
            return (Err("the spool writer panicked".to_owned()), written);
        };
        written.counted = true;
        written.untold = appended.dropped;
        shared.counters.add(AuditEvent::Spooled, appended.written);
        shared.counters.add(AuditEvent::Dropped, appended.dropped);
        let result = match (appended.error, appended.dropped) {
            (Some(e), dropped) => {
                tracing::error!(error = %e, dropped, "audit spool write failed");
                Err(e.to_string())
            }
            (None, 0) => Ok(()),
            (None, dropped) => {
                tracing::error!(dropped, "audit spool is full; entries dropped");
                Err("the spool is full".to_owned())
            }
        };
        (result, written)
    })
    .await;
    match outcome {
        Ok((result, written)) => {
            // The delivery task tells no caller; a caller that reads this is told.
            if lane == Lane::Direct {
                written.told();
            }
            result
        }
        // The write never ran (a runtime shutting down drops blocking tasks not yet
        // started): its `Written` has counted and settled the entries, and, its caller
        // unknown to it, kept them for the next flush too.
        Err(e) => Err(format!("spool writer did not run: {e}")),
    }
}

/// The spool, also after a writer panicked holding it.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, Spool> {
    shared.spool.lock().unwrap_or_else(PoisonError::into_inner)
}
