//! Opening a data file for this crate's readers.

use std::fs::{File, Metadata};
use std::path::Path;

use crate::error::DataError;
use crate::file_kind::{Refused, open_checked};

/// [`open_regular`](crate::open_regular) for this crate's readers, with the file's metadata: what is not a regular file
/// is [`DataError::NotAFile`] saying what it is, and a missing file [`DataError::Io`] (`open`).
pub(crate) fn open_data_file(path: &Path) -> Result<(File, Metadata), DataError> {
    open_checked(path).map_err(|refused| match refused {
        Refused::NotAFile(kind) => DataError::NotAFile {
            file: path.to_path_buf(),
            kind,
        },
        Refused::Io(source) => DataError::Io {
            file: path.to_path_buf(),
            action: "open",
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_kind::FileKind;
    use crate::file_kind::tests::{mkfifo, scratch};
    use std::fs;

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_opened_as_data_files() {
        let dir = scratch("open-data");
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        assert!(matches!(
            open_data_file(&fifo),
            Err(DataError::NotAFile {
                kind: FileKind::Fifo,
                ..
            })
        ));
        assert!(matches!(
            open_data_file(&dir),
            Err(DataError::NotAFile {
                kind: FileKind::Directory,
                ..
            })
        ));
        assert!(matches!(
            open_data_file(Path::new("/dev/zero")),
            Err(DataError::NotAFile {
                kind: FileKind::CharDevice,
                ..
            })
        ));
        assert!(matches!(
            open_data_file(&dir.join("none")),
            Err(DataError::Io { action: "open", .. })
        ));
        fs::write(dir.join("f"), b"abc").unwrap();
        let (_, meta) = open_data_file(&dir.join("f")).unwrap();
        assert_eq!(meta.len(), 3);
        fs::remove_dir_all(&dir).unwrap();
    }
}
