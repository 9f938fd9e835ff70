//! Which file a path names, against a file held open: how the sink notices its file was
//! removed or replaced under it (on Unix, by device and inode; elsewhere `std` has no
//! such numbers, and the path is not followed).

use std::fs::File;
use std::path::Path;

/// Whether `path` names a file other than `current`, or none.
#[cfg(unix)]
pub(super) fn names_another_file(path: &Path, current: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let identity = |meta: &std::fs::Metadata| (meta.dev(), meta.ino());
    match std::fs::metadata(path) {
        Ok(at_path) => current
            .metadata()
            .is_ok_and(|ours| identity(&ours) != identity(&at_path)),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
        ),
    }
}

/// Whether `path` names a file other than `current`, or none: never known here.
#[cfg(not(unix))]
pub(super) fn names_another_file(_path: &Path, _current: &File) -> bool {
    false
}
