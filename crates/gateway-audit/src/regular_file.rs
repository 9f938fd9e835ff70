//! Opening the files a sink keeps beside its data (spool segments, `rejected/` files,
//! lock files) only as regular files: never through a link, and never waiting on a FIFO.
//! A spool directory may hold files this sink did not write (a link to a secret, a
//! FIFO, a segment grown since it was listed); each is refused or read within a bound.
//! On other systems than unix there is no `O_NOFOLLOW`: links are not refused there.

use std::fs::{File, OpenOptions};
use std::io::{Error, ErrorKind, Read as _, Seek as _, SeekFrom};
use std::path::Path;

/// What [`read_within`] found at a path.
pub(crate) enum Contents {
    /// The whole file.
    Bytes(Vec<u8>),
    /// More bytes than the bound: not read past it.
    Oversized,
    /// Not a regular file (a link, a FIFO, a socket, a directory), or gone: not read.
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
    let mut options = OpenOptions::new();
    options.read(true);
    let file = match open_regular(&mut options, path) {
        Ok(file) => file,
        Err(e) if is_unfit(&e) => return Ok(Contents::NotAFile),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Ok(Contents::Oversized);
    }
    Ok(Contents::Bytes(bytes))
}

/// Opens the regular file `path` to append to (and read), created if missing.
pub(crate) fn append_to(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true);
    open_regular(&mut options, path)
}

/// Whether `file` (opened to read) ends with half a line: a write cut short by a crash
/// or a full disk. The next line appended would otherwise be glued to it.
pub(crate) fn ends_mid_line(file: &File) -> std::io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    let mut reader = file;
    reader.seek(SeekFrom::End(-1))?;
    reader.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Opens the regular file `path` to lock, created if missing and never truncated.
pub(crate) fn lock_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    open_regular(&mut options, path)
}

/// Creates the directory `dir` (and its parents) if missing, and checks that it is a
/// directory itself, not a link to one elsewhere.
pub(crate) fn own_directory(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if std::fs::symlink_metadata(dir)?.is_dir() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidInput,
            "not a directory but a link to one",
        ))
    }
}

/// Whether a directory listing's `entry` is a regular file itself, not a link to one.
pub(crate) fn is_regular(entry: &std::fs::DirEntry) -> std::io::Result<bool> {
    // `DirEntry::file_type` does not follow a link.
    entry.file_type().map(|kind| kind.is_file())
}

/// Opens `path` with `options`, refusing a link as its last component, without waiting
/// for a FIFO's other end, and only if what it opened is a regular file.
fn open_regular(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(file)
}

/// Whether `error` says the path holds no regular file to read: a link (`ELOOP`, or
/// `EMLINK` on the BSDs), a socket or device (`ENXIO`), not a regular file, or gone.
fn is_unfit(error: &Error) -> bool {
    #[cfg(unix)]
    if matches!(
        error.raw_os_error(),
        Some(libc::ELOOP | libc::EMLINK | libc::ENXIO)
    ) {
        return true;
    }
    matches!(error.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound)
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
        assert!(lock_file(&link).is_err(), "nor locked through one");
        assert_eq!(std::fs::read(&file).unwrap(), b"0123456789");

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Opened without waiting for the other end, and refused.
            assert!(matches!(
                read_within(&fifo, 10).unwrap(),
                Contents::NotAFile
            ));
            assert!(append_to(&fifo).is_err());
            assert!(lock_file(&fifo).is_err());
        }
        assert!(matches!(
            read_within(dir.path(), 10),
            Ok(Contents::NotAFile) | Err(_)
        ));
        assert!(matches!(
            read_within(&dir.path().join("gone"), 10).unwrap(),
            Contents::NotAFile
        ));

        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(dir.path(), &linked_dir).unwrap();
        assert!(own_directory(&linked_dir).is_err());
        assert!(own_directory(&dir.path().join("a/b")).is_ok());
    }
}
