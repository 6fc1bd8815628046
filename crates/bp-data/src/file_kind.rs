//! What a path names, so that only regular files are opened: a FIFO would block the reader until
//! something writes to it, and a directory or a dangling link deserves to be called by its name
//! rather than "missing".

use std::fmt;
use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// What a path names when it is not what was asked for, for messages: "is a directory", "is a
/// FIFO (named pipe)", "is a symbolic link to a missing file, `target`", ...
///
/// ```
/// use bp_data::FileKind;
///
/// let dir = std::env::temp_dir();
/// assert_eq!(FileKind::of(&dir), FileKind::Directory);
/// assert_eq!(FileKind::Directory.to_string(), "is a directory");
/// assert_eq!(FileKind::of(dir.join("bp-data-surely-not-here")), FileKind::Missing);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// Nothing is there.
    Missing,
    /// A regular file (or a symbolic link to one).
    Regular,
    /// A directory (or a symbolic link to one).
    Directory,
    /// A FIFO, a named pipe: reading it waits for a writer.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device, such as `/dev/zero`.
    CharDevice,
    /// A block device, such as a disk.
    BlockDevice,
    /// A symbolic link whose target (after any further links) does not exist.
    DanglingLink {
        /// The missing path the links lead to.
        target: PathBuf,
    },
    /// Something else, or a path whose kind cannot be found out (a link loop, no permission to look).
    Other,
}

/// The most symbolic links followed to find where a dangling one leads (Linux's own limit is 40).
const MAX_LINKS: usize = 40;

impl FileKind {
    /// What `path` names, following symbolic links.
    pub fn of(path: impl AsRef<Path>) -> FileKind {
        let path = path.as_ref();
        match fs::metadata(path) {
            Ok(meta) => FileKind::from_metadata(&meta),
            Err(err) if err.kind() == io::ErrorKind::NotFound => match fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => FileKind::DanglingLink {
                    target: link_end(path),
                },
                Ok(_) => FileKind::Other,
                Err(_) => FileKind::Missing,
            },
            Err(_) => FileKind::Other,
        }
    }

    /// The kind of file that `meta` (of a path after its links) describes.
    pub fn from_metadata(meta: &Metadata) -> FileKind {
        let ft = meta.file_type();
        if ft.is_file() {
            return FileKind::Regular;
        }
        if ft.is_dir() {
            return FileKind::Directory;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if ft.is_fifo() {
                return FileKind::Fifo;
            }
            if ft.is_socket() {
                return FileKind::Socket;
            }
            if ft.is_char_device() {
                return FileKind::CharDevice;
            }
            if ft.is_block_device() {
                return FileKind::BlockDevice;
            }
        }
        FileKind::Other
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileKind::Missing => f.write_str("does not exist"),
            FileKind::Regular => f.write_str("is a file"),
            FileKind::Directory => f.write_str("is a directory"),
            FileKind::Fifo => f.write_str("is a FIFO (named pipe)"),
            FileKind::Socket => f.write_str("is a socket"),
            FileKind::CharDevice => f.write_str("is a character device"),
            FileKind::BlockDevice => f.write_str("is a block device"),
            FileKind::DanglingLink { target } => write!(
                f,
                "is a symbolic link to a missing file, {}",
                target.display()
            ),
            FileKind::Other => f.write_str("is not a regular file"),
        }
    }
}

/// Where the chain of symbolic links starting at `path` ends: the first path that is not a link
/// (or the last one read, after [`MAX_LINKS`]). Relative targets are taken from the link's directory.
fn link_end(path: &Path) -> PathBuf {
    let mut at = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let Ok(target) = fs::read_link(&at) else {
            break;
        };
        at = match at.parent() {
            Some(parent) if target.is_relative() => parent.join(target),
            _ => target,
        };
        if !fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            break;
        }
    }
    at
}

/// Opens `path` for reading if it is a regular file (or a link to one), and only then: anything else
/// is [`DataError::NotAFile`] saying what it is, and a missing file [`DataError::Io`] (`open`).
///
/// The kind is checked before opening, and again on the opened file, which is opened without
/// blocking (`O_NONBLOCK` on Unix): a path swapped for a FIFO in between cannot make it wait for a
/// writer.
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata), DataError> {
    let not_a_file = |kind| DataError::NotAFile {
        file: path.to_path_buf(),
        kind,
    };
    match FileKind::of(path) {
        FileKind::Regular | FileKind::Missing | FileKind::Other => {}
        kind => return Err(not_a_file(kind)),
    }
    let open_error = |source| DataError::Io {
        file: path.to_path_buf(),
        action: "open",
        source,
    };
    let file = open_nonblocking(path).map_err(open_error)?;
    let meta = file.metadata().map_err(|source| DataError::Io {
        file: path.to_path_buf(),
        action: "read",
        source,
    })?;
    match FileKind::from_metadata(&meta) {
        FileKind::Regular => Ok((file, meta)),
        kind => Err(not_a_file(kind)),
    }
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK makes opening a FIFO return at once; on a regular file it changes nothing.
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bp-data-file-kind-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Makes a FIFO at `path`.
    #[cfg(unix)]
    #[allow(unsafe_code)]
    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn kinds_are_named() {
        assert_eq!(FileKind::Missing.to_string(), "does not exist");
        assert_eq!(FileKind::Regular.to_string(), "is a file");
        assert_eq!(FileKind::Fifo.to_string(), "is a FIFO (named pipe)");
        assert_eq!(FileKind::CharDevice.to_string(), "is a character device");
        assert_eq!(
            FileKind::DanglingLink {
                target: PathBuf::from("/x/gone.gz")
            }
            .to_string(),
            "is a symbolic link to a missing file, /x/gone.gz"
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_are_followed_to_their_missing_end() {
        use std::os::unix::fs::symlink;
        let dir = scratch("links");
        fs::write(dir.join("real"), b"x").unwrap();
        symlink("real", dir.join("to-real")).unwrap();
        symlink("gone", dir.join("to-gone")).unwrap();
        symlink("to-gone", dir.join("to-to-gone")).unwrap();
        symlink("loop-b", dir.join("loop-a")).unwrap();
        symlink("loop-a", dir.join("loop-b")).unwrap();
        assert_eq!(FileKind::of(dir.join("real")), FileKind::Regular);
        assert_eq!(FileKind::of(dir.join("to-real")), FileKind::Regular);
        assert_eq!(FileKind::of(&dir), FileKind::Directory);
        assert_eq!(
            FileKind::of(dir.join("to-gone")),
            FileKind::DanglingLink {
                target: dir.join("gone")
            }
        );
        assert_eq!(
            FileKind::of(dir.join("to-to-gone")),
            FileKind::DanglingLink {
                target: dir.join("gone")
            }
        );
        // A loop is no dangling link; it cannot be opened either, and says so as an open error.
        assert_eq!(FileKind::of(dir.join("loop-a")), FileKind::Other);
        assert!(matches!(
            open_regular(&dir.join("loop-a")),
            Err(DataError::Io { action: "open", .. })
        ));
        assert_eq!(FileKind::of("/dev/null"), FileKind::CharDevice);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_opened() {
        let dir = scratch("open");
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        assert!(matches!(
            open_regular(&fifo),
            Err(DataError::NotAFile {
                kind: FileKind::Fifo,
                ..
            })
        ));
        assert!(matches!(
            open_regular(&dir),
            Err(DataError::NotAFile {
                kind: FileKind::Directory,
                ..
            })
        ));
        assert!(matches!(
            open_regular(Path::new("/dev/zero")),
            Err(DataError::NotAFile {
                kind: FileKind::CharDevice,
                ..
            })
        ));
        assert!(matches!(
            open_regular(&dir.join("none")),
            Err(DataError::Io { action: "open", .. })
        ));
        fs::write(dir.join("f"), b"abc").unwrap();
        let (_, meta) = open_regular(&dir.join("f")).unwrap();
        assert_eq!(meta.len(), 3);
        // The FIFO can also be opened without blocking (and is then refused) when the check before
        // opening is skipped, as when the path changes in between.
        let opened = open_nonblocking(&fifo).unwrap();
        assert_eq!(
            FileKind::from_metadata(&opened.metadata().unwrap()),
            FileKind::Fifo
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
