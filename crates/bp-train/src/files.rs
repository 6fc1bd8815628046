//! Files from a hostile world: inputs opened only when they are regular files and read up to a
//! bound, outputs checked before any work is done.
//!
//! A path may name a FIFO, whose reader waits forever for a writer; a device such as `/dev/zero`,
//! which never ends; a directory; a symbolic link, to any of these or to nothing. Inputs are
//! therefore opened by [`open_regular`] and read by [`read_regular`], which refuse anything that is
//! not a regular file (the open itself cannot block: it does not wait for a FIFO's writer) and
//! stop at a limit. Outputs go through one rule, [`check_output`]: a path that names a directory
//! or a special file, a file the user may not write, or a directory that is missing or cannot take
//! a new file, is refused. [`write_atomic`](crate::write_atomic) and the `--metrics` file of
//! [`train`](crate::train) apply it when they write; the `bp-train` command applies it to every
//! output before it loads any data.
//!
//! What a path is ([`FileKind`]), where a chain of links leads ([`link_target`]) and the open of a
//! regular file ([`open_regular`]) are bp-data's, which opens the data files the same way, so that
//! both crates call a path what it is in the same words.
//!
//! The errors are [`io::Error`]s whose messages say what is wrong with the path, as `it is a FIFO,
//! not a regular file`: the caller names the path (`cannot read the model file m.safetensors: it
//! is a FIFO, not a regular file`). A path reached through a symbolic link is named in full
//! (`its link target /data/m.safetensors is a directory`).

use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bp_data::open_nonblocking;
pub use bp_data::{FileKind, link_target, open_regular};

/// `n` bytes, with the size in MiB or GiB where that is shorter to read.
fn bytes_text(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if n >= GIB {
        format!("{n} bytes ({:.1} GiB)", n as f64 / GIB as f64)
    } else if n >= MIB {
        format!("{n} bytes ({:.1} MiB)", n as f64 / MIB as f64)
    } else {
        format!("{n} bytes")
    }
}

/// Reads a whole regular file (see [`open_regular`]) of at most `limit` bytes. A file whose size
/// is over the limit is refused before anything is read; one that grows past it while it is read
/// (or that says it is empty and is not, as some system files do) is refused at the limit.
///
/// # Errors
///
/// As [`open_regular`]; `it is N bytes, more than the M bytes read from such a file` or `it holds
/// more than the M bytes read from such a file` (kind
/// [`FileTooLarge`](io::ErrorKind::FileTooLarge)); a failed read; memory that cannot be had for
/// the file's bytes (kind [`OutOfMemory`](io::ErrorKind::OutOfMemory)).
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    let too_large = |is: String| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{is} the {} read from such a file", bytes_text(limit)),
        )
    };
    if len > limit {
        return Err(too_large(format!("it is {}, more than", bytes_text(len))));
    }
    let mut bytes = Vec::new();
    let capacity = usize::try_from(len).unwrap_or(usize::MAX);
    bytes.try_reserve_exact(capacity).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("there is not enough memory to hold its {}", bytes_text(len)),
        )
    })?;
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large("it holds more than".to_owned()));
    }
    Ok(bytes)
}

/// How an output file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteMode {
    /// Replaced whole by a new file renamed over it ([`write_atomic`](crate::write_atomic)): the
    /// directory must take a new file.
    Replace,
    /// Written in place (the `--metrics` file, which grows a line per epoch): a file that exists
    /// is truncated and written; the directory must take a new file only if it does not.
    InPlace,
}

/// An output path, checked: where the bytes will go and what is there now.
#[derive(Debug)]
pub(crate) struct Output {
    /// The file written: the path, or the final target of the links it is.
    pub target: PathBuf,
    /// The directory of `target`.
    pub dir: PathBuf,
    /// The file there now, if any (a regular file the user may write).
    pub existing: Option<Metadata>,
}

/// The directory a file path is in (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that `path` can be written as `mode` says, without writing it: see [`check_output`].
/// With `probe`, a file is created in the directory (unnamed where the system allows, else removed
/// at once) when the write will need one, which is the only sure test that it can be (permission
/// bits do not tell it for root, nor for a read-only file system).
pub(crate) fn prepare_output(path: &Path, mode: WriteMode, probe: bool) -> io::Result<Output> {
    let ends_in_slash = path
        .as_os_str()
        .as_encoded_bytes()
        .last()
        .is_some_and(|&b| b == b'/' || (cfg!(windows) && b == b'\\'));
    if ends_in_slash || path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it names a directory, not a file",
        ));
    }
    let target = link_target(path)?;
    let it = if target == path {
        "it".to_owned()
    } else {
        format!("its link target {}", target.display())
    };
    if target.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            format!("{it} names a directory, not a file"),
        ));
    }
    let dir = parent_dir(&target);
    let existing = match fs::symlink_metadata(&target) {
        Ok(meta) if !meta.is_file() => {
            return Err(FileKind::from_metadata(&meta).not_a_file_error(&it));
        }
        Ok(meta) => {
            // Opening for writing, without truncating, is the permission check that holds for
            // every user, root included, and for read-only file systems.
            open_nonblocking(OpenOptions::new().write(true), &target)
                .map_err(|e| io::Error::new(e.kind(), format!("{it} cannot be written ({e})")))?;
            Some(meta)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(dir_error(&dir, e)),
    };
    match fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(meta) => {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!(
                    "{} {}",
                    dir.display(),
                    FileKind::from_metadata(&meta).not_a_dir_clause()
                ),
            ));
        }
        Err(e) => return Err(dir_error(&dir, e)),
    }
    if probe && (mode == WriteMode::Replace || existing.is_none()) {
        // An unnamed file where the system has them (Linux's O_TMPFILE): nothing to see or to
        // leave behind, even if the process is killed; elsewhere one removed at once.
        tempfile::tempfile_in(&dir).map_err(|e| cannot_create_in(&dir, e))?;
    }
    Ok(Output {
        target,
        dir,
        existing,
    })
}

/// What is wrong with the directory an output goes in.
fn dir_error(dir: &Path, e: io::Error) -> io::Error {
    let message = match e.kind() {
        io::ErrorKind::NotFound => format!("the directory {} does not exist", dir.display()),
        io::ErrorKind::NotADirectory => format!("{} is not a directory", dir.display()),
        _ => format!("the directory {} cannot be used ({e})", dir.display()),
    };
    io::Error::new(e.kind(), message)
}

/// A new temporary file `.<name>.<random>.tmp` in `dir`, created as [`File::create`] would
/// create it (mode `0666` less the umask, on unix).
pub(crate) fn temp_file_in(dir: &Path, name: &OsStr) -> io::Result<tempfile::NamedTempFile> {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    builder
        .tempfile_in(dir)
        .map_err(|e| cannot_create_in(dir, e))
}

/// The error for a directory in which no file can be created.
fn cannot_create_in(dir: &Path, e: io::Error) -> io::Error {
    // tempfile adds ` at path "..."` (the temporary file's) to the system's reason.
    let text = e.to_string();
    let reason = text.split(" at path ").next().unwrap_or(&text);
    io::Error::new(
        e.kind(),
        format!(
            "cannot create a file in the directory {} ({reason})",
            dir.display()
        ),
    )
}

/// Checks, before any work, that an output file can be written as `mode` says. The rule, the same
/// for every output:
///
/// - the path names a file, not a directory; a symbolic link (or a chain of them) is followed to
///   the file it finally names, which is the one written (the links stay);
/// - a file already there is a regular file (not a FIFO, a device, a socket or a directory) that
///   the user may write (for root, whom permission bits do not stop, it is tried);
/// - its directory exists and, where a new file is needed, a file can be created in it (tried:
///   an unnamed temporary file is made in it on Linux; elsewhere one is created and removed).
///
/// # Errors
///
/// The first rule broken, as an [`io::Error`] saying what is wrong: `it is a FIFO, not a regular
/// file`, `it is a directory`, `it cannot be written (Permission denied ...)`, `the directory d
/// does not exist`, `cannot create a file in the directory d (Permission denied ...)`, ...
///
/// ```
/// use bp_train::files::{WriteMode, check_output};
///
/// let dir = tempfile::tempdir()?;
/// check_output(&dir.path().join("model.safetensors"), WriteMode::Replace)?;
/// let err = check_output(dir.path(), WriteMode::Replace).unwrap_err();
/// assert_eq!(err.to_string(), "it is a directory");
/// let err = check_output(&dir.path().join("no/m.safetensors"), WriteMode::Replace).unwrap_err();
/// assert!(err.to_string().ends_with("/no does not exist"));
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 0); // nothing was left behind
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn check_output(path: &Path, mode: WriteMode) -> io::Result<()> {
    prepare_output(path, mode, true).map(drop)
}

/// Creates or truncates an output file to be written in place ([`WriteMode::InPlace`]), after
/// [`check_output`]'s rule: through symbolic links, a regular file only (the open does not block
/// on a FIFO, and the file is truncated only once it is known to be regular), its permissions
/// kept.
///
/// # Errors
///
/// As [`check_output`], and the system's errors of opening and truncating.
pub fn create_in_place(path: &Path) -> io::Result<File> {
    let out = prepare_output(path, WriteMode::InPlace, false)?;
    let file = open_nonblocking(OpenOptions::new().write(true).create(true), &out.target)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileKind::from_metadata(&meta).not_a_file_error("it"));
    }
    file.set_len(0)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_bytes_and_binary_units() {
        assert_eq!(bytes_text(1000), "1000 bytes");
        assert_eq!(bytes_text(3 << 20), "3145728 bytes (3.0 MiB)");
        assert_eq!(bytes_text(1 << 30), "1073741824 bytes (1.0 GiB)");
    }

    #[test]
    fn a_path_ending_in_a_slash_or_dots_names_a_directory() {
        for p in ["out/", ".", "..", "/"] {
            let err = check_output(Path::new(p), WriteMode::Replace).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::IsADirectory, "{p}");
            assert_eq!(err.to_string(), "it names a directory, not a file", "{p}");
        }
    }

    #[test]
    fn the_metrics_file_is_truncated_only_when_regular() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        fs::write(&path, "old contents").unwrap();
        drop(create_in_place(&path).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"");
        let err = create_in_place(dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "it is a directory");
    }
}
