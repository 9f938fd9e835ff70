//! Waiting for the signals that stop a long-running command.

/// The stop signals, SIGTERM and Ctrl-C (SIGINT), listened for from the moment this is
/// made, so that a second signal is seen however soon it follows the first.
pub struct StopSignals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    /// Starts listening.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = signal(SignalKind::terminate())
                .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
                .inspect_err(|e| {
                    crate::console::warn(format_args!(
                        "cannot listen for SIGTERM ({e}): only Ctrl-C stops this gracefully"
                    ));
                })
                .ok();
            Self { streams }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves on the next SIGTERM or Ctrl-C.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((term, interrupt)) = &mut self.streams {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl Default for StopSignals {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    StopSignals::new().next().await;
}
