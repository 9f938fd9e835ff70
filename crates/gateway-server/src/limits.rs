//! The per-connection bounds the accept loop enforces.

use std::time::Duration;

/// How long a connection may take, and how many may be open at once.
///
/// ```
/// use gateway_server::ConnectionLimits;
///
/// let limits = ConnectionLimits::default();
/// assert!(limits.max_connections >= 2_000, "room for 2,000 concurrent callers");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of a request to the end of its headers (more than zero).
    pub header_read_timeout: Duration,
    /// From the end of a request's headers to the end of its body (enforced by the
    /// service while it reads the body; see [`crate::read_body`]; more than zero).
    pub body_read_timeout: Duration,
    /// How long a connection with no request in flight, no answer being taken and no
    /// bytes arriving stays open (more than zero).
    pub idle_timeout: Duration,
    /// Connections open at once; one more is answered 503 and closed at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// 10 s for headers, 30 s for a body, 60 s idle, 4,096 connections.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: usize::try_from(gateway_model::DEFAULT_MAX_CONNECTIONS)
                .unwrap_or(usize::MAX),
        }
    }
}

impl ConnectionLimits {
    /// Refuses a zero timeout, which would close every connection at its first byte
    /// (and make its watchdog spin while a request is in flight).
    pub(crate) fn check(&self) -> std::io::Result<()> {
        for (name, timeout) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if timeout.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("ConnectionLimits::{name} must be more than zero"),
                ));
            }
        }
        Ok(())
    }
}
