//! `FanOut`: one audit sink that writes every entry to several.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use crate::{AuditError, AuditFuture, AuditSink, EncodedEntry};

/// Writes every entry to each of its sinks, in order, encoding it once.
///
/// A failing sink does not stop the others; the result names how many failed.
#[derive(Clone, Default)]
pub struct FanOut {
    sinks: Vec<Arc<dyn AuditSink>>,
}

impl FanOut {
    /// A fan-out over `sinks`.
    pub fn new(sinks: Vec<Arc<dyn AuditSink>>) -> Self {
        Self { sinks }
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

    fn record_encoded<'a>(&'a self, entry: &'a EncodedEntry) -> AuditFuture<'a> {
        Box::pin(async move {
            let mut errors = Vec::new();
            for sink in &self.sinks {
                if let Err(e) = sink.record_encoded(entry).await {
                    errors.push(e);
                }
            }
            self.combine(errors)
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
            self.combine(errors)
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
            self.combine(errors)
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
            .finish()
    }
}
