//! Files replaced whole or not at all.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Writes a file atomically: `write` fills a new temporary file in the same directory as `path`
/// (a [`tempfile::NamedTempFile`] named `.<file name>.<random>.tmp`), which is flushed and synced
/// to disk and then renamed over `path`; the directory is synced too where the system allows. If
/// anything fails — `write` included — the temporary file is removed and `path` is left as it
/// was: a reader sees the old file or the new one, never a part of either. (A process killed
/// mid-write leaves its temporary file behind, and still never a damaged `path`.)
///
/// # Errors
///
/// The first error of creating, writing, syncing or renaming, or `write`'s own.
///
/// ```
/// use std::io::Write;
///
/// let dir = std::env::temp_dir().join(format!("bp-atomic-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("out.txt");
/// bp_train::write_atomic(&path, |w| w.write_all(b"old"))?;
/// let err = bp_train::write_atomic(&path, |w| {
///     w.write_all(b"half of the new")?;
///     Err(std::io::Error::other("disk full"))
/// });
/// assert!(err.is_err());
/// assert_eq!(std::fs::read(&path)?, b"old");
/// assert_eq!(std::fs::read_dir(&dir)?.count(), 1); // no temporary file left
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let mut out = BufWriter::new(temp);
    write(&mut out)?;
    let temp = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename in `dir` durable where the system supports syncing a directory; elsewhere (or if
/// it fails) the rename is still atomic, only perhaps not yet on disk.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_written_and_an_old_one_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        write_atomic(&path, |w| w.write_all(b"first")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_atomic(&path, |w| w.write_all(b"second, longer")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_or_a_directory_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no").join("such.bin");
        assert_eq!(
            write_atomic(&missing, |w| w.write_all(b"x"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        assert!(write_atomic(dir.path(), |w| w.write_all(b"x")).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
