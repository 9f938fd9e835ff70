//! Room in the process's file-descriptor limit for the connections it accepts.

/// Descriptors kept free for everything but accepted connections and the sockets to the
/// gateway: the listeners, the login host's, the webhook's and Redis's sockets, the
/// audit files, the runtime.
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
    /// `limits.max_connections` to the room it leaves, less the router's
    /// `upstream_connections` and the metrics listener's
    /// [`MAX_METRICS_CONNECTIONS`](crate::sidecar::MAX_METRICS_CONNECTIONS) when there is
    /// one (at least 1); returns the new cap if it had to be lowered.
    pub fn fit_open_file_limit(&mut self) -> Option<usize> {
        self.fit_into(raise_for_connections()?)
    }

    /// As [`fit_open_file_limit`](Self::fit_open_file_limit), in `room` descriptors.
    fn fit_into(&mut self, room: u64) -> Option<usize> {
        let metrics = if self.metrics_listen.is_some() {
            crate::sidecar::MAX_METRICS_CONNECTIONS
        } else {
            0
        };
        let taken = metrics.saturating_add(self.upstream_connections);
        let room = room.saturating_sub(u64::try_from(taken).unwrap_or(u64::MAX));
        if u64::try_from(self.limits.max_connections).unwrap_or(u64::MAX) <= room {
            return None;
        }
        self.limits.max_connections = usize::try_from(room).unwrap_or(usize::MAX).max(1);
        Some(self.limits.max_connections)
    }
}

#[cfg(test)]
mod tests {
    use crate::SidecarOptions;

    #[test]
    fn the_upstream_sockets_and_the_metrics_listener_are_left_room() {
        let mut options = SidecarOptions {
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            upstream_connections: 2_000,
            ..SidecarOptions::default()
        };
        options.limits.max_connections = 4_096;
        // 4,096 descriptors less the 256 reserved: 3,840 of room.
        assert_eq!(options.fit_into(3_840), Some(3_840 - 2_000 - 64));
        assert_eq!(options.limits.max_connections, 1_776);
        assert_eq!(options.fit_into(3_840), None, "it fits now");
        options.upstream_connections = 10_000;
        assert_eq!(options.fit_into(3_840), Some(1), "at least one");
    }
}
