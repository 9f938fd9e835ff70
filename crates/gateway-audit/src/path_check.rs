//! Checks, creating nothing, that a sink could later create what a config names.

use std::io::{Error, ErrorKind};
use std::path::Path;

use crate::AuditError;

/// What the path must be once it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// A regular file to append to, rotate, sync and read back: not a directory, and not
    /// a device, pipe or socket (`/dev/null` would take the trail and keep nothing).
    File,
    /// A directory to keep files in.
    Directory,
}

/// `Ok` if `path` is already what `want` says (a file this process may append to), or
/// is absent and its nearest existing ancestor is a directory to create it (and its
/// missing parents) in.
pub(crate) fn creatable(path: &Path, want: Want) -> Result<(), AuditError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() && want == Want::File => {
            let is_dir = Error::new(ErrorKind::IsADirectory, "it is a directory");
            return Err(AuditError::io("open", path, is_dir));
        }
        Ok(meta) if !meta.is_file() && want == Want::File => {
            let special = Error::new(
                ErrorKind::InvalidInput,
                "it is not a regular file but a device, pipe or socket; the audit trail is \
                 appended, rotated, synced and read back, so it must be a file",
            );
            return Err(AuditError::io("open", path, special));
        }
        Ok(meta) if !meta.is_dir() && want == Want::Directory => {
            let not_dir = Error::new(ErrorKind::NotADirectory, "it is not a directory");
            return Err(AuditError::io("create directory", path, not_dir));
        }
        // A file the sink could not append to (read-only, another user's): opened as the
        // sink opens it, without creating or writing anything.
        Ok(_) if want == Want::File => {
            return std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(path)
                .map(drop)
                .map_err(|e| AuditError::io("open for appending", path, e));
        }
        Ok(_) => return Ok(()),
        // Under a file: the ancestors say which one.
        Err(e) if !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Err(AuditError::io("inspect", path, e));
        }
        Err(_) => {}
    }
    for ancestor in path.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            break;
        }
        match std::fs::metadata(ancestor) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                let why = format!("`{}` is not a directory", ancestor.display());
                let not_dir = Error::new(ErrorKind::NotADirectory, why);
                let action = match want {
                    Want::File => "create the directory of",
                    Want::Directory => "create directory",
                };
                return Err(AuditError::io(action, path, not_dir));
            }
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
            Err(e) => return Err(AuditError::io("inspect", ancestor, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_may_be_absent_or_a_file_but_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        assert!(creatable(&file, Want::File).is_ok(), "absent");
        assert!(creatable(&dir.path().join("a/b/audit.jsonl"), Want::File).is_ok());
        std::fs::write(&file, b"").unwrap();
        assert!(creatable(&file, Want::File).is_ok(), "present");
        let err = creatable(dir.path(), Want::File).unwrap_err().to_string();
        assert!(err.contains("it is a directory"), "{err}");
        let err = creatable(Path::new("/dev/null"), Want::File)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let err = creatable(&file.join("x/audit.jsonl"), Want::File)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a directory"), "{err}");
        assert!(
            err.contains("audit.jsonl` is not"),
            "names the file in the way: {err}"
        );
    }

    #[test]
    fn a_directory_may_be_absent_or_a_directory_but_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(creatable(dir.path(), Want::Directory).is_ok(), "present");
        assert!(creatable(&dir.path().join("a/spool"), Want::Directory).is_ok());
        let file = dir.path().join("spool");
        std::fs::write(&file, b"").unwrap();
        let err = creatable(&file, Want::Directory).unwrap_err().to_string();
        assert!(err.contains("it is not a directory"), "{err}");
        let err = creatable(&file.join("deeper"), Want::Directory)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spool` is not a directory"),
            "names the file in the way: {err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_this_process_cannot_append_to_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        std::fs::write(&file, b"kept\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
        let appendable = |path: &Path| std::fs::OpenOptions::new().append(true).open(path).is_ok();
        if !appendable(&file) {
            let err = creatable(&file, Want::File).unwrap_err().to_string();
            assert!(err.contains("open for appending"), "{err}");
            assert_eq!(std::fs::read(&file).unwrap(), b"kept\n", "nothing written");
            return;
        }
        // Root may write a read-only file; a read-only sysfs attribute it may not.
        let attribute = Path::new("/sys/devices/system/cpu/online");
        if attribute.is_file() && !appendable(attribute) {
            let err = creatable(attribute, Want::File).unwrap_err().to_string();
            assert!(err.contains("open for appending"), "{err}");
        } else {
            eprintln!("skipped: this process may append to any file here");
        }
    }
}
