//! The spool's file opens. The spool directory may hold files this sink did not write
//! (a link to a secret, a FIFO, a segment grown since it was listed): a file is read
//! only if it is a regular file, never through a link, and never past a bound.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::path::Path;

/// What [`read_within`] found at a path.
pub(crate) enum Contents {
    /// The whole file.
    Bytes(Vec<u8>),
    /// More bytes than the bound: not read past it.
    Oversized,
    /// Not a regular file (a link, a FIFO, a directory): not read.
    NotAFile,
}

impl Contents {
    /// The name the spool sets an unfit file aside under (`{index}.{suffix}`), or `None`
    /// for bytes to read.
    pub(crate) fn unfit(&self) -> Option<&'static str> {
        match self {
            Contents::Bytes(_) => None,
            Contents::Oversized => Some("oversized"),
            Contents::NotAFile => Some("not-a-file"),
        }
    }
}

/// Reads the regular file at `path` if it holds at most `limit` bytes.
pub(crate) fn read_within(path: &Path, limit: u64) -> std::io::Result<Contents> {
    let file = match open_for_reading(path) {
        Ok(file) => file,
        Err(e) if refused_as_a_link(&e) => return Ok(Contents::NotAFile),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(Contents::NotAFile);
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Ok(Contents::Oversized);
    }
    Ok(Contents::Bytes(bytes))
}

/// Opens `path` to append to, created if missing; a link there is refused.
pub(crate) fn append_to(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    no_follow(&mut options, 0);
    options.open(path)
}

fn open_for_reading(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    // Without O_NONBLOCK, opening a FIFO waits for a writer that may never come.
    #[cfg(unix)]
    no_follow(&mut options, libc::O_NONBLOCK);
    #[cfg(not(unix))]
    no_follow(&mut options, 0);
    options.open(path)
}

/// Makes `options` refuse a link as the path's last component, with `flags` added.
#[cfg_attr(not(unix), allow(unused_variables))]
fn no_follow(options: &mut OpenOptions, flags: i32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW | flags);
    }
}

/// Whether `error` is `O_NOFOLLOW`'s refusal of a link (`ELOOP`).
fn refused_as_a_link(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        error.kind() == std::io::ErrorKind::InvalidInput
    }
}

/// Whether a directory listing's `entry` is a regular file itself, not a link to one.
pub(crate) fn is_regular(entry: &std::fs::DirEntry) -> std::io::Result<bool> {
    // `DirEntry::file_type` does not follow a link.
    entry.file_type().map(|kind| kind.is_file())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_within_the_bound_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"0123456789").unwrap();
        assert!(
            matches!(read_within(&file, 10).unwrap(), Contents::Bytes(b) if b == b"0123456789")
        );
        assert!(matches!(
            read_within(&file, 9).unwrap(),
            Contents::Oversized
        ));

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            read_within(&link, 10).unwrap(),
            Contents::NotAFile
        ));
        assert!(
            append_to(&link).is_err(),
            "nothing is appended through a link"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"0123456789");

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Opened without waiting for a writer, and not read.
            assert!(matches!(
                read_within(&fifo, 10).unwrap(),
                Contents::NotAFile
            ));
        }
        assert!(matches!(
            read_within(dir.path(), 10),
            Ok(Contents::NotAFile) | Err(_)
        ));
    }
}
