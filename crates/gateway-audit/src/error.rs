//! `AuditError`: why an audit sink could not take, write or deliver an entry.

use std::path::PathBuf;

use gateway_model::endpoint::UrlError;

use crate::webhook::secret::SecretError;

/// Why an audit sink failed. Never contains the webhook secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file-system operation on an audit file, rotated file or spool failed.
    #[error("could not {action} `{path}`: {source}")]
    Io {
        /// What was being done, such as "append to" or "rotate".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another sink (another process, or another router of this one) writes this audit
    /// file or spool: each replica needs its own.
    #[error(
        "`{path}` is in use by another audit sink (its lock `{lock}` is held): give each replica its own audit file and spool directory"
    )]
    InUse {
        /// The audit file or spool directory.
        path: PathBuf,
        /// The lock file held.
        lock: PathBuf,
    },
    /// Syncing the audit file to disk failed; the entry reached the OS but may not be durable.
    #[error("could not sync `{path}` to disk: {message}")]
    Sync {
        /// The file concerned.
        path: PathBuf,
        /// The OS error, as text.
        message: String,
    },
    /// An entry could not be encoded as JSON.
    #[error("could not encode audit entry {id} as JSON: {source}")]
    Encode {
        /// The entry's id.
        id: uuid::Uuid,
        /// The encoder's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The webhook URL is refused (not https and not loopback, or malformed).
    #[error("webhook URL refused: {0}")]
    Url(#[from] UrlError),
    /// The webhook signing secret is missing or malformed.
    #[error("webhook secret: {0}")]
    Secret(#[from] SecretError),
    /// The TLS client configuration could not be built.
    #[error("could not build the webhook TLS client: {reason}")]
    Tls {
        /// What went wrong.
        reason: String,
    },
    /// The sink needs a Tokio runtime and none is current.
    #[error("the {sink} audit sink needs a Tokio runtime; start it from within one")]
    NoRuntime {
        /// Which sink.
        sink: &'static str,
    },
    /// A background thread could not be started.
    #[error("could not start the {sink} audit sink's background thread: {source}")]
    Thread {
        /// Which sink.
        sink: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A background task of the sink failed.
    #[error("a background task of the {sink} audit sink failed: {reason}")]
    Task {
        /// Which sink.
        sink: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The sink was shut down; it takes no more entries.
    #[error("the {sink} audit sink is shut down")]
    Closed {
        /// Which sink.
        sink: &'static str,
    },
    /// A flush or shutdown deadline, or an entry's wait for its sync, passed with entries
    /// still pending (they are not lost: they stay queued or written, and shutdown spools
    /// what it can).
    #[error("the {sink} audit sink's deadline passed with {pending} entries pending")]
    Timeout {
        /// Which sink.
        sink: &'static str,
        /// Entries neither delivered nor durably stored when the deadline passed.
        pending: u64,
    },
    /// The entry was refused at once: this many bytes of earlier entries still wait to be
    /// written (the file has stopped taking writes), and holding more would only grow.
    #[error(
        "the {sink} audit sink refused an entry: {queued_bytes} bytes of earlier entries \
         still wait to be written"
    )]
    Backlog {
        /// Which sink.
        sink: &'static str,
        /// The bytes waiting.
        queued_bytes: usize,
    },
    /// The entry was dropped: the webhook queue was full and the spool could not take it.
    #[error("audit entry {id} dropped: {reason}")]
    Dropped {
        /// The entry's id.
        id: uuid::Uuid,
        /// Why the spool could not take it.
        reason: String,
    },
    /// Entries the sink had accepted were lost with no caller told at the time: the
    /// webhook's delivery task could not spool them, or keep one the receiver refused as
    /// too large, or the spool could not take one whose caller had gone (the spool or its
    /// `rejected/` directory full or failing); or a fan-out's sink refused one whose
    /// caller had gone. The log says why. Reported once, by the next flush or shutdown
    /// (a fan-out's, by the first that has no other failure to report).
    #[error("the {sink} audit sink lost {entries} entries with no caller told (the log says why)")]
    Lost {
        /// Which sink.
        sink: &'static str,
        /// How many entries.
        entries: u64,
    },
    /// Some sinks of a fan-out failed (the others recorded the entry).
    #[error("{failed} of {total} audit sinks failed; first: {first}")]
    Partial {
        /// How many sinks failed.
        failed: usize,
        /// How many sinks there are.
        total: usize,
        /// The first failure.
        first: Box<AuditError>,
    },
}

impl AuditError {
    /// Whether a setting must change before this can work (a path naming the wrong kind
    /// of file, a file or directory this process may not write, one another sink holds,
    /// a bad URL or secret), as opposed to a failure that may pass by itself (a full
    /// disk, no file descriptor left, a failed sync).
    ///
    /// ```
    /// use std::io::{Error, ErrorKind};
    /// use gateway_audit::{AuditError, JsonlSink};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let err = JsonlSink::open_with(dir.path(), Default::default()).unwrap_err();
    /// assert!(err.is_setting(), "a directory where the file should be: {err}");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_setting(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            Self::Io { source, .. } => {
                matches!(
                    source.kind(),
                    ErrorKind::PermissionDenied
                        | ErrorKind::ReadOnlyFilesystem
                        | ErrorKind::IsADirectory
                        | ErrorKind::NotADirectory
                        | ErrorKind::InvalidInput
                        | ErrorKind::InvalidFilename
                ) || is_link_refused(source)
            }
            Self::InUse { .. } | Self::Url(_) | Self::Secret(_) | Self::Tls { .. } => true,
            Self::Partial { first, .. } => first.is_setting(),
            _ => false,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Whether `error` is a link refused where a file of the sink's own was expected (a lock
/// file opened with `O_NOFOLLOW`): `ELOOP`, which std cannot name on stable Rust.
fn is_link_refused(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}
