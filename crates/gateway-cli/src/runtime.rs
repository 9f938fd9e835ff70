//! The async runtime, with its worker count from `TOKIO_WORKER_THREADS` checked first.
//!
//! tokio reads that variable itself when no count is set, and panics on a value that is
//! not a positive number. The command line reads it instead, refuses a bad value with a
//! usage error that names it, and always hands tokio an explicit count.
//!
//! ```
//! use gateway_cli::runtime::worker_threads;
//!
//! assert_eq!(worker_threads(Some("2".as_ref())).unwrap(), Some(2));
//! assert_eq!(worker_threads(None).unwrap(), None);
//! assert!(worker_threads(Some("0".as_ref())).is_err());
//! ```

use std::ffi::OsStr;
use std::num::NonZeroUsize;

/// The env var that sets the runtime's worker threads (tokio's own name for it).
pub const WORKER_THREADS_ENV: &str = "TOKIO_WORKER_THREADS";

/// The most worker threads accepted: far past any core count this runs on.
pub const MAX_WORKER_THREADS: usize = 1024;

/// A `TOKIO_WORKER_THREADS` value that is not a whole number from 1 to
/// [`MAX_WORKER_THREADS`].
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid {WORKER_THREADS_ENV} `{value}`: it must be a whole number from 1 to {MAX_WORKER_THREADS} (unset: one per core)"
)]
pub struct WorkerThreadsError {
    /// The value as given (lossily decoded if it is not UTF-8).
    pub value: String,
}

/// The worker count a `TOKIO_WORKER_THREADS` value asks for; `None` when it is unset.
pub fn worker_threads(value: Option<&OsStr>) -> Result<Option<usize>, WorkerThreadsError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let refuse = || WorkerThreadsError {
        value: value.to_string_lossy().into_owned(),
    };
    let count: usize = value
        .to_str()
        .ok_or_else(refuse)?
        .trim()
        .parse()
        .map_err(|_| refuse())?;
    if (1..=MAX_WORKER_THREADS).contains(&count) {
        Ok(Some(count))
    } else {
        Err(refuse())
    }
}

/// Why the runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `TOKIO_WORKER_THREADS` is not a valid count.
    #[error(transparent)]
    WorkerThreads(#[from] WorkerThreadsError),
    /// The OS refused what tokio needs (threads, an epoll instance).
    #[error("cannot start the async runtime: {0}")]
    Start(#[source] std::io::Error),
}

/// A multi-thread runtime with every driver on, and `TOKIO_WORKER_THREADS` workers
/// (checked), else one per core.
pub fn build() -> Result<tokio::runtime::Runtime, RuntimeError> {
    let workers = worker_threads(std::env::var_os(WORKER_THREADS_ENV).as_deref())?
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(RuntimeError::Start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_numbers_from_one_to_the_bound_are_taken() {
        for (given, expected) in [("1", 1), ("16", 16), (" 4 ", 4), ("1024", 1024)] {
            assert_eq!(
                worker_threads(Some(given.as_ref())).unwrap(),
                Some(expected)
            );
        }
        for bad in [
            "",
            "0",
            "-1",
            "1025",
            "2.5",
            "two",
            "99999999999999999999999",
        ] {
            let err = worker_threads(Some(bad.as_ref())).unwrap_err();
            assert_eq!(err.value, bad);
            assert!(
                err.to_string().contains(WORKER_THREADS_ENV),
                "names the variable: {err}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_refused_not_a_panic() {
        use std::os::unix::ffi::OsStrExt;
        let err = worker_threads(Some(OsStr::from_bytes(b"\xff2"))).unwrap_err();
        assert_eq!(err.value, "\u{fffd}2");
    }
}
