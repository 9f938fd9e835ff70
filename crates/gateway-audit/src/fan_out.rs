//! `FanOut`: one audit sink that writes every entry to several.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use tokio::time::Instant;

use crate::{AuditError, AuditFuture, AuditSink, EncodedEntry};

/// Writes every entry to each of its sinks, encoding it once.
///
/// Every sink is handed the entry at once (in the first poll); a failing or slow sink
/// does not stop the others, and the result names how many failed. An entry a sink
/// refused while its caller went before hearing of it fails the next flush or shutdown
/// ([`AuditError::Lost`]).
#[derive(Clone, Default)]
pub struct FanOut {
    sinks: Vec<Arc<dyn AuditSink>>,
    /// Entries a sink refused whose caller went before hearing of it.
    untold: Arc<AtomicU64>,
}

/// What a fan-out's sinks answered for one entry, until its caller reads it: dropped
/// unread (the caller went) with a refusal no sink's own flush reports (an entry dropped,
/// refused for a backlog or by a closed sink; a failed write or sync is reported by the
/// sink's flush), the entry counts as lost untold.
struct Gathered<'a> {
    results: Vec<Option<Result<(), AuditError>>>,
    untold: &'a AtomicU64,
    read: bool,
}

impl Gathered<'_> {
    /// The failures, read by the caller.
    fn errors(mut self) -> Vec<AuditError> {
        self.read = true;
        std::mem::take(&mut self.results)
            .into_iter()
            .flatten()
            .filter_map(Result::err)
            .collect()
    }
}

impl Drop for Gathered<'_> {
    fn drop(&mut self) {
        let unreported = |result: &Result<(), AuditError>| {
            matches!(
                result,
                Err(AuditError::Dropped { .. }
                    | AuditError::Backlog { .. }
                    | AuditError::Closed { .. })
            )
        };
        if !self.read && self.results.iter().flatten().any(unreported) {
            self.untold.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl FanOut {
    /// A fan-out over `sinks`.
    pub fn new(sinks: Vec<Arc<dyn AuditSink>>) -> Self {
        Self {
            sinks,
            untold: Arc::default(),
        }
    }

    /// What a flush or shutdown whose sinks answered `errors` reports: their failure, or
    /// else the entries lost untold since the last one (kept for the next while a
    /// sink's failure is reported instead).
    fn with_untold(&self, errors: Vec<AuditError>) -> Result<(), AuditError> {
        let entries = self.untold.swap(0, Ordering::SeqCst);
        match (self.combine(errors), entries) {
            (Ok(()), 0) => Ok(()),
            (Ok(()), entries) => Err(AuditError::Lost {
                sink: "fan-out",
                entries,
            }),
            (failed, entries) => {
                self.untold.fetch_add(entries, Ordering::SeqCst);
                failed
            }
        }
    }

    /// Adds a sink.
    #[must_use]
    pub fn with(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// The sinks, in write order.
    pub fn sinks(&self) -> &[Arc<dyn AuditSink>] {
        &self.sinks
    }

    fn combine(&self, errors: Vec<AuditError>) -> Result<(), AuditError> {
        let failed = errors.len();
        let mut errors = errors.into_iter();
        match (errors.next(), failed) {
            (None, _) => Ok(()),
            (Some(only), 1) if self.sinks.len() == 1 => Err(only),
            (Some(first), _) => Err(AuditError::Partial {
                failed,
                total: self.sinks.len(),
                first: Box::new(first),
            }),
        }
    }
}

impl AuditSink for FanOut {
    fn name(&self) -> &'static str {
        "fan-out"
    }

    /// Hands `entry` to every sink in the first poll, then waits for them all: a caller
    /// that drops the future after that (a cancelled call) has still reached each sink,
    /// where waiting for one sink before asking the next would have skipped the rest.
    fn record_encoded<'a>(&'a self, entry: &'a EncodedEntry) -> AuditFuture<'a> {
        if let [only] = &self.sinks[..] {
            return only.record_encoded(entry);
        }
        let mut pending: Vec<_> = self
            .sinks
            .iter()
            .map(|sink| Some(sink.record_encoded(entry)))
            .collect();
        let mut gathered = Gathered {
            results: std::iter::repeat_with(|| None)
                .take(pending.len())
                .collect(),
            untold: &self.untold,
            read: false,
        };
        Box::pin(async move {
            std::future::poll_fn(|cx| {
                let mut done = true;
                for (slot, result) in pending.iter_mut().zip(&mut gathered.results) {
                    if let Some(future) = slot {
                        match future.as_mut().poll(cx) {
                            Poll::Ready(outcome) => {
                                *result = Some(outcome);
                                *slot = None;
                            }
                            Poll::Pending => done = false,
                        }
                    }
                }
                if done { Poll::Ready(()) } else { Poll::Pending }
            })
            .await;
            self.combine(gathered.errors())
        })
    }

    fn flush(&self, deadline: Instant) -> AuditFuture<'_> {
        Box::pin(async move {
            let mut errors = Vec::new();
            for sink in &self.sinks {
                if let Err(e) = sink.flush(deadline).await {
                    errors.push(e);
                }
            }
            self.with_untold(errors)
        })
    }

    fn shutdown(&self, deadline: Instant) -> AuditFuture<'_> {
        Box::pin(async move {
            let mut errors = Vec::new();
            for sink in &self.sinks {
                if let Err(e) = sink.shutdown(deadline).await {
                    errors.push(e);
                }
            }
            self.with_untold(errors)
        })
    }
}

impl fmt::Debug for FanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("untold", &self.untold.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::test_entry::encoded;
    use crate::{JsonlOptions, JsonlSink};

    /// A sink that notes each entry it is handed and then never finishes.
    #[derive(Default)]
    struct Hanging(Mutex<Vec<uuid::Uuid>>);

    impl AuditSink for Hanging {
        fn name(&self) -> &'static str {
            "hanging"
        }

        fn record_encoded<'a>(&'a self, entry: &'a EncodedEntry) -> AuditFuture<'a> {
            self.0.lock().unwrap().push(entry.id());
            Box::pin(std::future::pending())
        }

        fn flush(&self, _: Instant) -> AuditFuture<'_> {
            Box::pin(std::future::ready(Ok(())))
        }

        fn shutdown(&self, _: Instant) -> AuditFuture<'_> {
            Box::pin(std::future::ready(Ok(())))
        }
    }

    /// A call cancelled while a slow sink writes its entry has still handed the entry to
    /// every other sink: here a real JSONL file behind a sink that never finishes.
    #[tokio::test]
    async fn an_entry_dropped_after_the_first_poll_reaches_every_sink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let jsonl = Arc::new(JsonlSink::open_with(&path, JsonlOptions::default()).unwrap());
        let hanging = Arc::new(Hanging::default());
        let fan = FanOut::new(vec![hanging.clone(), jsonl.clone()]);
        let entry = encoded(1);

        // One poll, then the future is dropped (tokio's timeout polls it first).
        let cut = tokio::time::timeout(Duration::ZERO, fan.record_encoded(&entry)).await;
        assert!(cut.is_err(), "the hanging sink keeps it pending");
        assert_eq!(*hanging.0.lock().unwrap(), [entry.id()]);
        jsonl
            .flush(Instant::now() + Duration::from_secs(10))
            .await
            .unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written, entry.line(), "the JSONL sink got the entry too");
    }

    /// A sink that refuses every entry at once.
    struct Refusing;

    impl AuditSink for Refusing {
        fn name(&self) -> &'static str {
            "refusing"
        }

        fn record_encoded<'a>(&'a self, _: &'a EncodedEntry) -> AuditFuture<'a> {
            Box::pin(std::future::ready(Err(AuditError::Closed {
                sink: "refusing",
            })))
        }

        fn flush(&self, _: Instant) -> AuditFuture<'_> {
            Box::pin(std::future::ready(Ok(())))
        }

        fn shutdown(&self, _: Instant) -> AuditFuture<'_> {
            Box::pin(std::future::ready(Ok(())))
        }
    }

    /// Regression: a sink's failure, gathered while another sink was still writing, went
    /// nowhere when the caller went before the last sink finished: no caller heard of it,
    /// and no flush reported it. It now fails the next flush, once.
    #[tokio::test]
    async fn a_failure_gathered_for_a_caller_gone_fails_the_next_flush() {
        let fan = FanOut::new(vec![Arc::new(Refusing), Arc::new(Hanging::default())]);
        let soon = || Instant::now() + Duration::from_secs(10);
        let entry = encoded(1);
        let cut = tokio::time::timeout(Duration::ZERO, fan.record_encoded(&entry)).await;
        assert!(cut.is_err(), "the hanging sink keeps it pending");
        let err = fan.flush(soon()).await.unwrap_err();
        assert!(matches!(err, AuditError::Lost { entries: 1, .. }), "{err}");
        fan.flush(soon()).await.unwrap();

        // A caller that reads the failure is told: nothing is left for a flush.
        let fan = FanOut::new(vec![Arc::new(Refusing), Arc::new(Refusing)]);
        assert!(fan.record_encoded(&encoded(2)).await.is_err());
        fan.shutdown(soon()).await.unwrap();
    }
}
