//! Writing output files whole or not at all: a file other tools read (a schema, a man
//! page, a metrics snapshot) is never left cut short by a full disk or a signal.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Replaces the file at `path` with `bytes`: written and synced under a temporary name
/// beside it, then renamed over it. On failure the old file, if any, is as it was.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("out.json");
/// gateway_cli::replace::file(&path, b"{}\n")?;
/// assert_eq!(std::fs::read(&path)?, b"{}\n");
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = temporary_beside(path);
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// Runs `write` into a new directory beside `dir`, then moves each file it wrote into
/// `dir`, replacing any of the same name. On failure nothing in `dir` has changed.
pub fn files_in(dir: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let staging = temporary_beside(dir);
    std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let moved = write(&staging).and_then(|()| {
        for item in std::fs::read_dir(&staging)? {
            let item = item?;
            std::fs::File::open(item.path())?.sync_all()?;
            std::fs::rename(item.path(), dir.join(item.file_name()))?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved.with_context(|| format!("writing into {}", dir.display()))
}

/// A name beside `path` that no other process writing there takes: `.{name}.{pid}.tmp`.
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}
