//! SHA-256 checksums, and checksum lists in the format of `sha256sum`.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::DataError;
use crate::open::open_data_file;

/// The largest checksum list read; a real one is a few hundred bytes.
const MAX_SUMS_BYTES: u64 = 1 << 20;

/// The SHA-256 of a file's bytes, as 64 lowercase hex digits.
///
/// ```
/// let path = std::env::temp_dir().join(format!("bp-data-doc-sha-{}", std::process::id()));
/// std::fs::write(&path, b"abc")?;
/// assert_eq!(
///     bp_data::sha256_file(&path)?,
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String, DataError> {
    let path = path.as_ref();
    let io_error = |action: &'static str| {
        move |source| DataError::Io {
            file: path.to_path_buf(),
            action,
            source,
        }
    };
    let (file, _) = open_data_file(path)?;
    sha256_reader(file).map_err(io_error("read"))
}

/// The SHA-256 of everything `reader` yields, as 64 lowercase hex digits. `io::copy` does the reading
/// (retrying `Interrupted`); writing into the hasher cannot fail, so every error is the reader's.
fn sha256_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = HashWriter(Sha256::new());
    io::copy(&mut reader, &mut hasher)?;
    Ok(hex(&hasher.0.finalize()))
}

/// Feeds the bytes written to it into the hasher: sha2 0.11 (digest 0.11) no longer implements
/// `io::Write` for its hashers, and this is all of what the `digest-io` crate would add here.
struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks each file against the checksum list `sums`, which lists files by name in the format of
/// `sha256sum` (`<hex>  <name>`, or `<hex> *<name>`) or of `sha256sum --tag`
/// (`SHA256 (<name>) = <hex>`). Files are looked up by their file name.
///
/// Errors with [`DataError::ChecksumMismatch`] for a file whose checksum differs,
/// [`DataError::ChecksumNotListed`] for one the list does not name, and
/// [`DataError::BadChecksumLine`] for a malformed list.
///
/// ```
/// use bp_data::{DataError, verify_sha256sums};
///
/// let dir = std::env::temp_dir().join(format!("bp-data-doc-sums-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// std::fs::write(dir.join("abc.txt"), b"abc")?;
/// std::fs::write(
///     dir.join("SHA256SUMS"),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  abc.txt\n",
/// )?;
/// verify_sha256sums(dir.join("SHA256SUMS"), &[dir.join("abc.txt")])?;
///
/// std::fs::write(dir.join("abc.txt"), b"abd")?;
/// let err = verify_sha256sums(dir.join("SHA256SUMS"), &[dir.join("abc.txt")]).unwrap_err();
/// assert!(matches!(err, DataError::ChecksumMismatch { .. }));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify_sha256sums<P: AsRef<Path>>(
    sums: impl AsRef<Path>,
    files: &[P],
) -> Result<(), DataError> {
    let sums = sums.as_ref();
    let listed = read_sums(sums)?;
    for file in files {
        let file = file.as_ref();
        let name = file.file_name();
        let expected = listed
            .iter()
            .find(|(_, listed_name)| name.is_some() && Path::new(listed_name).file_name() == name)
            .map(|(hex, _)| hex)
            .ok_or_else(|| DataError::ChecksumNotListed {
                file: file.to_path_buf(),
                sums: sums.to_path_buf(),
            })?;
        let actual = sha256_file(file)?;
        if &actual != expected {
            return Err(DataError::ChecksumMismatch {
                file: file.to_path_buf(),
                sums: sums.to_path_buf(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

/// The (lowercase hex, name) pairs of a checksum list.
fn read_sums(sums: &Path) -> Result<Vec<(String, String)>, DataError> {
    let io_error = |action: &'static str| {
        move |source| DataError::Io {
            file: sums.to_path_buf(),
            action,
            source,
        }
    };
    let (file, _) = open_data_file(sums)?;
    let mut bytes = Vec::new();
    file.take(MAX_SUMS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error("read"))?;
    if bytes.len() as u64 > MAX_SUMS_BYTES {
        return Err(DataError::ChecksumListTooLarge {
            sums: sums.to_path_buf(),
            limit: MAX_SUMS_BYTES,
        });
    }
    let mut listed = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let bad = || DataError::BadChecksumLine {
            sums: sums.to_path_buf(),
            line: i + 1,
        };
        let line = std::str::from_utf8(line).map_err(|_| bad())?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        listed.push(parse_sums_line(line).ok_or_else(bad)?);
    }
    Ok(listed)
}

/// One line of `sha256sum` or `sha256sum --tag` output.
fn parse_sums_line(line: &str) -> Option<(String, String)> {
    let (hex, name) = if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (name, hex) = rest.rsplit_once(") = ")?;
        (hex, name)
    } else {
        let hex = line.get(..64)?;
        let rest = line.get(64..)?;
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))?;
        (hex, name)
    };
    let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty();
    valid.then(|| (hex.to_ascii_lowercase(), name.to_owned()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_kind::FileKind;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    /// Yields one byte per call, with `Interrupted` before every other byte.
    struct Trickle<'a> {
        bytes: &'a [u8],
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.bytes.len()).min(1);
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn hashes_a_reader_in_pieces_through_interruptions() {
        let trickle = Trickle {
            bytes: b"abc",
            interrupt: false,
        };
        assert_eq!(sha256_reader(trickle).unwrap(), ABC);
        // Longer than io::copy's buffer, so the hasher is fed in several writes: SHA-256 of a million
        // 'a's, the FIPS 180-2 test vector.
        let million = vec![b'a'; 1_000_000];
        assert_eq!(
            sha256_reader(&million[..]).unwrap(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        assert_eq!(
            sha256_reader(io::empty()).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_read_error_is_returned() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = sha256_reader(Broken).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    #[test]
    fn file_errors_say_whether_open_or_read_failed() {
        let dir = std::env::temp_dir();
        let missing = dir.join(format!("bp-data-no-such-file-{}", std::process::id()));
        assert!(matches!(
            sha256_file(&missing),
            Err(DataError::Io { action: "open", file, .. }) if file == missing
        ));
        // A directory is not opened, nor is a FIFO (which would wait for a writer).
        assert!(matches!(
            sha256_file(&dir),
            Err(DataError::NotAFile { file, kind: FileKind::Directory }) if file == dir
        ));
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn parses_both_sha256sum_formats() {
        let plain = format!("{ABC}  train.gz");
        assert_eq!(
            parse_sums_line(&plain),
            Some((ABC.to_owned(), "train.gz".to_owned()))
        );
        let binary = format!("{} *a b.gz", ABC.to_uppercase());
        assert_eq!(
            parse_sums_line(&binary),
            Some((ABC.to_owned(), "a b.gz".to_owned()))
        );
        let tag = format!("SHA256 (x).gz) = {ABC}");
        assert_eq!(
            parse_sums_line(&tag),
            Some((ABC.to_owned(), "x).gz".to_owned()))
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(parse_sums_line("abc  file"), None);
        assert_eq!(parse_sums_line(&format!("{ABC} file")), None);
        assert_eq!(parse_sums_line(&format!("{ABC}  ")), None);
        assert_eq!(parse_sums_line(&format!("{}g  file", &ABC[..63])), None);
        assert_eq!(parse_sums_line("SHA256 (file) = 00"), None);
        assert_eq!(parse_sums_line("é"), None);
    }
}
