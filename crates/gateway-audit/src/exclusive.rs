//! One writer per audit file and per spool: a lock file beside the one or inside the other,
//! held while the sink lives. Two sinks on one path (two replicas on a shared volume,
//! say) would rotate each other's files away, or replay and rewrite each other's
//! segments; the second is refused when it opens instead.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::AuditError;

/// An exclusive lock on a lock file, released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct ExclusiveUse {
    _lock: Option<File>,
}

impl ExclusiveUse {
    /// Takes the lock file `lock` for `guarded` (the file or directory it stands for); a
    /// file system that cannot lock is used without one, with a warning. Locks exclude
    /// only where the file system enforces them across its clients (a local disk does;
    /// a network file system may not).
    pub(crate) fn claim(lock: PathBuf, guarded: &Path) -> Result<Self, AuditError> {
        let file = crate::regular_file::lock_file(&lock)
            .map_err(|e| AuditError::io("open the lock file", &lock, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _lock: Some(file) }),
            Err(TryLockError::WouldBlock) => Err(AuditError::InUse {
                path: guarded.to_owned(),
                lock,
            }),
            // No lock to be had here (ENOSYS, ENOLCK without a lock daemon, EOPNOTSUPP on
            // some FUSE mounts): the trail is kept as before, with a warning.
            Err(TryLockError::Error(e)) => {
                tracing::warn!(path = %guarded.display(), error = %e, "this file system cannot lock files: nothing stops a second process from writing the same audit trail");
                Ok(Self { _lock: None })
            }
        }
    }
}

/// The lock file of an audit file: its name with `.lock` appended.
pub(crate) fn lock_beside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let guarded = dir.path().join("audit.jsonl");
        let first = ExclusiveUse::claim(lock_beside(&guarded), &guarded).unwrap();
        let err = ExclusiveUse::claim(lock_beside(&guarded), &guarded).unwrap_err();
        assert!(matches!(err, AuditError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("audit.jsonl"), "{err}");
        drop(first);
        ExclusiveUse::claim(lock_beside(&guarded), &guarded).unwrap();
    }
}
