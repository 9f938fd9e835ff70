//! Writing output files whole or not at all: a file other tools read (a schema, a man
//! page, a metrics snapshot) is never left cut short by a full disk or a signal.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Replaces the file at `path` with `bytes`: written and synced under a new temporary
/// name beside it, then renamed over it. On failure the old file, if any, is as it was.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("out.json");
/// gateway_cli::replace::file(&path, b"{}\n")?;
/// assert_eq!(std::fs::read(&path)?, b"{}\n");
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let (temporary, mut out) =
        new_file(dir, &name).with_context(|| format!("writing {}", path.display()))?;
    let written = out
        .write_all(bytes)
        .and_then(|()| out.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// Runs `write` into a new directory inside `dir` (so on the same file system), then
/// moves each file it wrote into `dir`, replacing any of the same name. If `write`
/// fails nothing in `dir` has changed; a failure while moving (rare: a rename within
/// one directory) can leave the files moved before it.
pub fn files_in(dir: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let staging = new_directory(dir, "staging")
        .with_context(|| format!("creating a directory in {}", dir.display()))?;
    let moved = write(&staging).and_then(|()| {
        for item in std::fs::read_dir(&staging)? {
            let item = item?;
            File::open(item.path())?.sync_all()?;
            std::fs::rename(item.path(), dir.join(item.file_name()))?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved.with_context(|| format!("writing into {}", dir.display()))
}

/// A temporary name in `dir` for `name`, random so that no other writer (another
/// process, a link planted there) shares it: `.{name}.{random}.tmp`.
fn temporary_name(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.{:016x}.tmp", fastrand::u64(..)))
}

/// A file created anew in `dir` under a temporary name for `name`.
fn new_file(dir: &Path, name: &str) -> std::io::Result<(PathBuf, File)> {
    retry_taken(|| {
        let path = temporary_name(dir, name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, file))
    })
}

/// A directory created anew in `dir` under a temporary name for `name`.
fn new_directory(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    retry_taken(|| {
        let path = temporary_name(dir, name);
        std::fs::create_dir(&path)?;
        Ok(path)
    })
}

/// Runs `create` until it does not find its name taken, five times at most.
fn retry_taken<T>(mut create: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut tries = 0;
    loop {
        match create() {
            Err(e) if e.kind() == ErrorKind::AlreadyExists && tries < 4 => tries += 1,
            other => return other,
        }
    }
}
