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
