//! Reading the files a configuration names (the config itself, a CA bundle) within a size
//! bound.

use std::io::Read as _;
use std::path::Path;

/// The contents of the regular file at `path`, refusing anything that is not a regular
/// file (a FIFO would block the open, `/dev/zero` would never end) or is larger than
/// `limit` bytes, with an [`std::io::ErrorKind::InvalidInput`] error that says which.
///
/// ```
/// use gateway_model::read_bounded;
///
/// let dir = std::env::temp_dir().join(format!("read-bounded-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("small.toml");
/// std::fs::write(&path, "x = 1\n").unwrap();
/// assert_eq!(read_bounded(&path, 64).unwrap(), b"x = 1\n");
/// assert!(read_bounded(&path, 3).unwrap_err().to_string().contains("larger than 3 bytes"));
/// assert!(read_bounded(&dir, 64).unwrap_err().to_string().contains("not a regular file"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    if !std::fs::metadata(path)?.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(refuse(format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}
