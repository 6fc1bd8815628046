//! Files replaced whole or not at all.

use std::fs::{File, Metadata};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::files::{WriteMode, prepare_output, temp_file_in};

/// Writes a file atomically: `write` fills a new temporary file in the same directory as the file
/// (a [`tempfile::NamedTempFile`] named `.<file name>.<random>.tmp`), which is flushed and synced
/// to disk and then renamed over it; the directory is synced too where the system allows. If
/// anything fails — `write` included — the temporary file is removed and the file is left as it
/// was: a reader sees the old file or the new one, never a part of either. (A process killed
/// mid-write leaves its temporary file behind, and still never a damaged file.)
///
/// The path is checked first by the rule of [`check_output`](crate::files::check_output), and
/// what is there is respected:
///
/// - a symbolic link (or a chain of them) is written through: the file it finally names is
///   replaced, atomically, by a temporary file in that file's directory, and the link stays;
/// - a path that exists and is not a regular file (a directory, a FIFO, a device, a socket) is
///   refused, and nothing is written;
/// - a file the user may not write is refused; a file that is replaced keeps its permissions (and,
///   where the system allows, its owner and group); a new file is created as
///   [`File::create`] would (mode `0666` less the umask, on unix).
///
/// A file with several hard links is replaced under the one name written; its other names keep
/// the old contents, as with any atomic replacement.
///
/// # Errors
///
/// The refusals of [`check_output`](crate::files::check_output) (their messages say what is wrong:
/// `it is a FIFO, not a regular file`, `the directory d does not exist`; the caller names the
/// path), then the first error of creating, writing, syncing or renaming, or `write`'s own.
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
    let out = prepare_output(path, WriteMode::Replace, false)?;
    let name = out
        .target
        .file_name()
        .expect("prepare_output checked that the target names a file");
    let temp = temp_file_in(&out.dir, name)?;
    let mut buffered = BufWriter::new(temp);
    write(&mut buffered)?;
    let temp = buffered
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    if let Some(old) = &out.existing {
        keep_owner_and_permissions(temp.as_file(), old)?;
    }
    temp.as_file().sync_all()?;
    temp.persist(&out.target).map_err(|e| e.error)?;
    sync_dir(&out.dir);
    Ok(())
}

/// Gives the new file the old one's permissions, and on unix its owner and group where the
/// system allows it (root may; another user may keep only their own and their groups').
fn keep_owner_and_permissions(new: &File, old: &Metadata) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Best effort: a user who may write a file of someone else's cannot give it away.
        let _ = std::os::unix::fs::fchown(new, Some(old.uid()), Some(old.gid()));
    }
    new.set_permissions(old.permissions())
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
