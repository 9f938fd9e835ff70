//! Room in the process's file-descriptor limit for the connections it accepts.

/// Descriptors kept free for everything but accepted connections: the listeners, the
/// upstream pool, the audit files, the runtime.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft open-file limit as far as the hard limit allows and returns how many
/// connections fit in it (the limit less [`RESERVED_DESCRIPTORS`]), or `None` where the
/// platform has no such limit.
///
/// The default soft limit of 1,024 on many Linux machines is below the 2,000 callers a
/// sidecar should take; without room, `accept` fails and even `/healthz` goes unanswered.
pub fn raise_for_connections() -> Option<u64> {
    #[cfg(unix)]
    {
        let limit = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => limit,
            Err(e) => {
                tracing::warn!(error = %e, "could not raise the open-file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?.0
            }
        };
        Some(limit.saturating_sub(RESERVED_DESCRIPTORS))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

impl crate::SidecarOptions {
    /// Raises the open-file limit ([`raise_for_connections`]) and lowers
    /// `limits.max_connections` to the room it leaves, less the metrics listener's
    /// [`MAX_METRICS_CONNECTIONS`](crate::sidecar::MAX_METRICS_CONNECTIONS) when there is
    /// one (at least 1); returns the new cap if it had to be lowered.
    pub fn fit_open_file_limit(&mut self) -> Option<usize> {
        let metrics = if self.metrics_listen.is_some() {
            crate::sidecar::MAX_METRICS_CONNECTIONS
        } else {
            0
        };
        let room =
            raise_for_connections()?.saturating_sub(u64::try_from(metrics).unwrap_or(u64::MAX));
        if u64::try_from(self.limits.max_connections).unwrap_or(u64::MAX) <= room {
            return None;
        }
        self.limits.max_connections = usize::try_from(room).unwrap_or(usize::MAX).max(1);
        Some(self.limits.max_connections)
    }
}
