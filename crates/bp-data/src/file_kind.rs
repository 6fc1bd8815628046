//! What a path names, and the one way files from outside are opened: only regular files, without
//! blocking. A FIFO would block the reader until something writes to it, a device such as
//! `/dev/zero` never ends, and a directory or a dangling link deserves to be called by its name
//! rather than "missing". bp-train's `files` module opens model files and images, and checks its
//! outputs, with the same functions.

use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// What a path names, for messages: "is a directory", "is a FIFO", "is a symbolic link to
/// `target`, which does not exist", ...
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
    /// A FIFO, a named or unnamed pipe: reading it waits for a writer.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device, such as `/dev/zero`.
    CharDevice,
    /// A block device, such as a disk.
    BlockDevice,
    /// A symbolic link itself, as [`from_metadata`](FileKind::from_metadata) finds in the metadata
    /// of a link that was not followed ([`fs::symlink_metadata`]); [`of`](FileKind::of) follows
    /// links.
    SymbolicLink,
    /// A symbolic link whose target (after any further links) does not exist.
    DanglingLink {
        /// The missing path the links lead to.
        target: PathBuf,
    },
    /// Something else, or a path whose kind cannot be found out (a link loop, no permission to look).
    Other,
}

/// The most symbolic links followed from one path, as Linux's own limit.
const MAX_LINKS: usize = 40;

impl FileKind {
    /// What `path` names, following symbolic links. A link that leads to nothing is a
    /// [`DanglingLink`](FileKind::DanglingLink) (found by [`link_target`]); a loop of links is
    /// [`Other`](FileKind::Other).
    pub fn of(path: impl AsRef<Path>) -> FileKind {
        let path = path.as_ref();
        match fs::metadata(path) {
            Ok(meta) => FileKind::from_metadata(&meta),
            Err(err) if err.kind() == io::ErrorKind::NotFound => match fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => match link_target(path) {
                    Ok(target) => FileKind::DanglingLink { target },
                    Err(_) => FileKind::Other,
                },
                Ok(_) => FileKind::Other,
                Err(_) => FileKind::Missing,
            },
            Err(_) => FileKind::Other,
        }
    }

    /// The kind of file that `meta` describes: that of a path after its links ([`fs::metadata`],
    /// [`File::metadata`]), or a [`SymbolicLink`](FileKind::SymbolicLink) itself
    /// ([`fs::symlink_metadata`]).
    pub fn from_metadata(meta: &Metadata) -> FileKind {
        let ft = meta.file_type();
        if ft.is_file() {
            return FileKind::Regular;
        }
        if ft.is_dir() {
            return FileKind::Directory;
        }
        if ft.is_symlink() {
            return FileKind::SymbolicLink;
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

    /// What this is, said of a path that should be a regular file: `is a FIFO, not a regular
    /// file`, `is a character device, not a regular file`; a directory, a missing path, a dangling
    /// link and a path of unknown kind as they are (`is a directory`, `does not exist`, `is a
    /// symbolic link to d/gone.gz, which does not exist`, `is not a regular file`).
    ///
    /// ```
    /// use bp_data::FileKind;
    ///
    /// assert_eq!(FileKind::Fifo.not_a_file_clause(), "is a FIFO, not a regular file");
    /// assert_eq!(FileKind::Directory.not_a_file_clause(), "is a directory");
    /// ```
    pub fn not_a_file_clause(&self) -> String {
        match self {
            FileKind::Fifo
            | FileKind::Socket
            | FileKind::CharDevice
            | FileKind::BlockDevice
            | FileKind::SymbolicLink => format!("{self}, not a regular file"),
            FileKind::Missing
            | FileKind::Regular
            | FileKind::Directory
            | FileKind::DanglingLink { .. }
            | FileKind::Other => self.to_string(),
        }
    }

    /// What this is, said of a path that should be a directory: `is a file, not a directory`,
    /// `does not exist`, `is not a directory` (a path of unknown kind).
    pub fn not_a_dir_clause(&self) -> String {
        match self {
            FileKind::DanglingLink { .. } | FileKind::Missing => self.to_string(),
            FileKind::Other => "is not a directory".to_owned(),
            _ => format!("{self}, not a directory"),
        }
    }

    /// The error for a path that should be a regular file and is this instead, `subject` naming
    /// the path in the message: `it is a FIFO, not a regular file`, `its link target /d/m is a
    /// directory` (the caller says which path `it` is). Its [`kind`](io::Error::kind) is
    /// [`IsADirectory`](io::ErrorKind::IsADirectory) for a directory,
    /// [`NotFound`](io::ErrorKind::NotFound) for a missing path or a dangling link, and
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) otherwise.
    ///
    /// ```
    /// use bp_data::FileKind;
    ///
    /// let err = FileKind::CharDevice.not_a_file_error("it");
    /// assert_eq!(err.to_string(), "it is a character device, not a regular file");
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn not_a_file_error(&self, subject: &str) -> io::Error {
        let kind = match self {
            FileKind::Directory => io::ErrorKind::IsADirectory,
            FileKind::Missing | FileKind::DanglingLink { .. } => io::ErrorKind::NotFound,
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, format!("{subject} {}", self.not_a_file_clause()))
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileKind::Missing => f.write_str("does not exist"),
            FileKind::Regular => f.write_str("is a file"),
            FileKind::Directory => f.write_str("is a directory"),
            FileKind::Fifo => f.write_str("is a FIFO"),
            FileKind::Socket => f.write_str("is a socket"),
            FileKind::CharDevice => f.write_str("is a character device"),
            FileKind::BlockDevice => f.write_str("is a block device"),
            FileKind::SymbolicLink => f.write_str("is a symbolic link"),
            FileKind::DanglingLink { target } => write!(
                f,
                "is a symbolic link to {}, which does not exist",
                target.display()
            ),
            FileKind::Other => f.write_str("is not a regular file"),
        }
    }
}

/// The file a path finally names, following symbolic links (a chain of them too, each relative
/// to the directory of the link that holds it) until a path that is not a link: it may not exist
/// (a dangling link names the file it would create). The path's directories are not resolved.
///
/// ```
/// let dir = std::env::temp_dir();
/// assert_eq!(bp_data::link_target(&dir.join("plain"))?, dir.join("plain"));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// A loop of links, or a chain longer than 40 (`it is a loop of symbolic links (or a chain of more
/// than 40)`, kind [`InvalidInput`](io::ErrorKind::InvalidInput)); an error reading a link.
pub fn link_target(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is a loop of symbolic links (or a chain of more than {MAX_LINKS})"),
    ))
}

/// Opens `path` with `options`, and on Unix with `O_NONBLOCK`, so that the open of a FIFO does not
/// wait for the other end (reads and writes of regular files are unaffected by the flag).
///
/// # Errors
///
/// The system's errors of opening.
pub fn open_nonblocking(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Why [`open_checked`] did not open a file.
pub(crate) enum Refused {
    /// It is not a regular file.
    NotAFile(FileKind),
    /// The system's error of opening (a missing file, no permission, a loop of links) or of
    /// looking at the opened file.
    Io(io::Error),
}

/// Opens `path` for reading if it is a regular file (or a link to one), and only then.
///
/// The kind is checked before opening, and again on the opened file, which is opened without
/// blocking: a path swapped for a FIFO in between cannot make it wait for a writer. A missing path,
/// or one whose kind cannot be found out, is left for the open to say why.
pub(crate) fn open_checked(path: &Path) -> Result<(File, Metadata), Refused> {
    match FileKind::of(path) {
        FileKind::Regular | FileKind::Missing | FileKind::Other => {}
        kind => return Err(Refused::NotAFile(kind)),
    }
    let file = open_nonblocking(OpenOptions::new().read(true), path).map_err(Refused::Io)?;
    let meta = file.metadata().map_err(Refused::Io)?;
    match FileKind::from_metadata(&meta) {
        FileKind::Regular => Ok((file, meta)),
        kind => Err(Refused::NotAFile(kind)),
    }
}

/// Opens a file for reading if it is a regular file (a symbolic link to one included), and only
/// then.
///
/// What the path names is looked at before it is opened, and the open file again (the path might
/// have changed in between); the open cannot block.
///
/// ```
/// let err = bp_data::open_regular(&std::env::temp_dir()).unwrap_err();
/// assert_eq!(err.to_string(), "it is a directory");
/// ```
///
/// # Errors
///
/// [`FileKind::not_a_file_error`] of what the path is instead, naming it `it`: `it is a FIFO, not
/// a regular file`, `it is a directory`, `it is a symbolic link to X, which does not exist`; and
/// the system's errors (a missing file, no permission, a loop of links).
pub fn open_regular(path: &Path) -> io::Result<File> {
    match open_checked(path) {
        Ok((file, _)) => Ok(file),
        Err(Refused::NotAFile(kind)) => Err(kind.not_a_file_error("it")),
        Err(Refused::Io(err)) => Err(err),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bp-data-file-kind-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Makes a FIFO at `path`.
    #[cfg(unix)]
    #[allow(unsafe_code)]
    pub(crate) fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn kinds_are_named() {
        assert_eq!(FileKind::Missing.to_string(), "does not exist");
        assert_eq!(FileKind::Regular.to_string(), "is a file");
        assert_eq!(FileKind::Fifo.to_string(), "is a FIFO");
        assert_eq!(FileKind::CharDevice.to_string(), "is a character device");
        assert_eq!(FileKind::SymbolicLink.to_string(), "is a symbolic link");
        assert_eq!(
            FileKind::DanglingLink {
                target: PathBuf::from("/x/gone.gz")
            }
            .to_string(),
            "is a symbolic link to /x/gone.gz, which does not exist"
        );
    }

    #[test]
    fn what_is_not_a_file_is_said_one_way() {
        let cases = [
            (
                FileKind::Fifo,
                "it is a FIFO, not a regular file",
                io::ErrorKind::InvalidInput,
            ),
            (
                FileKind::Socket,
                "it is a socket, not a regular file",
                io::ErrorKind::InvalidInput,
            ),
            (
                FileKind::Directory,
                "it is a directory",
                io::ErrorKind::IsADirectory,
            ),
            (
                FileKind::DanglingLink {
                    target: PathBuf::from("gone.png"),
                },
                "it is a symbolic link to gone.png, which does not exist",
                io::ErrorKind::NotFound,
            ),
            (
                FileKind::Other,
                "it is not a regular file",
                io::ErrorKind::InvalidInput,
            ),
        ];
        for (kind, message, error_kind) in cases {
            let err = kind.not_a_file_error("it");
            assert_eq!(err.to_string(), message);
            assert_eq!(err.kind(), error_kind, "{message}");
        }
        assert_eq!(
            FileKind::Fifo.not_a_dir_clause(),
            "is a FIFO, not a directory"
        );
        assert_eq!(FileKind::Other.not_a_dir_clause(), "is not a directory");
    }

    #[test]
    fn a_chain_of_links_is_followed_to_the_file_it_names() {
        let dir = scratch("chain");
        fs::create_dir(dir.join("sub")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink("sub/b", dir.join("a")).unwrap();
            symlink("c", dir.join("sub/b")).unwrap(); // relative to sub/
            assert_eq!(link_target(&dir.join("a")).unwrap(), dir.join("sub/c"));
            symlink("loop2", dir.join("loop1")).unwrap();
            symlink("loop1", dir.join("loop2")).unwrap();
            let err = link_target(&dir.join("loop1")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(
                err.to_string(),
                "it is a loop of symbolic links (or a chain of more than 40)"
            );
            // A chain of 40 links is followed; one of 41 is not.
            for i in 0..41 {
                symlink(format!("chain{}", i + 1), dir.join(format!("chain{i}"))).unwrap();
            }
            assert_eq!(
                link_target(&dir.join("chain1")).unwrap(),
                dir.join("chain41")
            );
            assert!(link_target(&dir.join("chain0")).is_err());
        }
        assert_eq!(link_target(&dir.join("plain")).unwrap(), dir.join("plain"));
        fs::remove_dir_all(&dir).unwrap();
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
        assert_eq!(
            FileKind::from_metadata(&fs::symlink_metadata(dir.join("to-real")).unwrap()),
            FileKind::SymbolicLink
        );
        // A loop is no dangling link; it cannot be opened either, and says so as an open error.
        assert_eq!(FileKind::of(dir.join("loop-a")), FileKind::Other);
        assert!(matches!(
            open_checked(&dir.join("loop-a")),
            Err(Refused::Io(_))
        ));
        assert_eq!(
            open_regular(&dir.join("loop-a"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(FileKind::of("/dev/null"), FileKind::CharDevice);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_opened() {
        let dir = scratch("open");
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        fs::write(dir.join("f"), b"abc").unwrap();
        // The same refusals as io errors, the path called `it`.
        let message = |path: &Path| open_regular(path).unwrap_err().to_string();
        assert_eq!(message(&fifo), "it is a FIFO, not a regular file");
        assert_eq!(message(&dir), "it is a directory");
        assert_eq!(
            message(Path::new("/dev/zero")),
            "it is a character device, not a regular file"
        );
        assert_eq!(
            open_regular(&dir.join("none")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            open_regular(&dir.join("f"))
                .unwrap()
                .metadata()
                .unwrap()
                .len(),
            3
        );
        // The FIFO can also be opened without blocking (and is then refused) when the check before
        // opening is skipped, as when the path changes in between.
        let opened = open_nonblocking(OpenOptions::new().read(true), &fifo).unwrap();
        assert_eq!(
            FileKind::from_metadata(&opened.metadata().unwrap()),
            FileKind::Fifo
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
