//! Every way an IDX file can be wrong gives its own error, naming the file; no damage makes the reader
//! panic.

#[allow(dead_code)]
mod common;

use std::error::Error as _;
use std::io;

use bp_data::{
    Compression, DataError, IdxType, Limits, read_idx, read_idx_as, read_idx_from, read_idx_with,
    write_idx, write_idx_to,
};
use common::{TempDir, encode, gzip, random_idx};
use ndarray::{Array2, arr0, array};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const NAME: &str = "damaged.idx";

/// Reads `bytes` as a reader named [`NAME`], checking that the message names it.
fn read(bytes: &[u8]) -> DataError {
    let err = read_idx_from(bytes, NAME, &Limits::default()).expect_err("input is malformed");
    assert!(
        err.to_string().contains(NAME),
        "message does not name the file: {err}"
    );
    err
}

/// Writes `bytes` to a file and reads it by path, checking that the message names the file.
fn read_file(dir: &TempDir, bytes: &[u8]) -> DataError {
    let path = dir.join(NAME);
    std::fs::write(&path, bytes).unwrap();
    let err = read_idx(&path).expect_err("file is malformed");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "message does not name the file: {err}"
    );
    err
}

/// A valid u8 file of shape (2, 3).
fn valid() -> Vec<u8> {
    vec![0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]
}

#[test]
fn missing_file() {
    let dir = TempDir::new("missing");
    let path = dir.join("nope.idx");
    let err = read_idx(&path).unwrap_err();
    let DataError::Io { action, source, .. } = &err else {
        panic!("expected Io, got {err:?}");
    };
    assert_eq!(*action, "open");
    assert_eq!(source.kind(), io::ErrorKind::NotFound);
    assert!(err.source().is_some());
    assert_eq!(err.to_string(), format!("cannot open {}", path.display()));
}

#[test]
fn empty() {
    assert!(matches!(read(&[]), DataError::Empty { .. }));
    assert!(matches!(read(&gzip(&[])), DataError::Empty { .. }));
    let dir = TempDir::new("empty");
    assert!(matches!(read_file(&dir, &[]), DataError::Empty { .. }));
}

#[test]
fn short_magic() {
    for len in 1..4 {
        assert!(matches!(read(&valid()[..len]), DataError::ShortMagic { len: l, .. } if l == len));
        assert!(matches!(
            read(&gzip(&valid()[..len])),
            DataError::ShortMagic { len: l, .. } if l == len
        ));
    }
    assert_eq!(
        read(&[0, 0]).to_string(),
        "damaged.idx is 2 byte(s) long: too short for the 4-byte IDX magic number"
    );
}

#[test]
fn bad_magic_with_hints() {
    let cases: [(&[u8], &str); 5] = [
        (b"<!DOCTYPE html><html>", "HTML"),
        (b"PK\x03\x04rest of a zip", "zip"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x00", ""),
        (b"7 2 1 0 4", "text"),
        (&[0x00, 0x01, 0x08, 0x01], ""),
    ];
    for (bytes, hint) in cases {
        let err = read(bytes);
        assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
        assert!(err.to_string().contains(hint), "{err}");
    }
    // Gzip'd twice: the outer layer is removed, the inner one is not IDX.
    let err = read(&gzip(&gzip(&valid())));
    assert!(matches!(
        err,
        DataError::BadMagic {
            magic: [0x1f, 0x8b, _, _],
            ..
        }
    ));
    assert!(err.to_string().contains("compressed twice"), "{err}");
}

#[test]
fn unknown_type() {
    for code in [0x00, 0x07, 0x0A, 0x0F, 0xFF] {
        let mut bytes = valid();
        bytes[2] = code;
        assert!(matches!(read(&bytes), DataError::UnknownType { code: c, .. } if c == code));
    }
    let mut bytes = valid();
    bytes[2] = 0x0A;
    assert!(
        read(&bytes)
            .to_string()
            .contains("unknown IDX element type 0x0a")
    );
}

#[test]
fn zero_rank() {
    assert!(matches!(read(&[0, 0, 0x08, 0]), DataError::ZeroRank { .. }));
    assert!(matches!(
        read(&[0, 0, 0x08, 0, 1, 2]),
        DataError::ZeroRank { .. }
    ));
}

#[test]
fn dims_cut_short() {
    for cut in 4..12 {
        let err = read(&valid()[..cut]);
        assert!(
            matches!(err, DataError::DimsTruncated { rank: 2, got, .. } if got == cut - 4),
            "{err:?}"
        );
    }
    // 255 dimensions declared, none present.
    assert!(matches!(
        read(&[0, 0, 0x0E, 255]),
        DataError::DimsTruncated {
            rank: 255,
            got: 0,
            ..
        }
    ));
}

#[test]
fn size_overflow() {
    // (u32::MAX)^3 bytes cannot be counted in 64 bits.
    let mut bytes = vec![0, 0, 0x08, 3];
    bytes.extend([0xFF; 12]);
    let err = read(&bytes);
    assert!(
        matches!(&err, DataError::SizeOverflow { shape, elem: IdxType::U8, .. }
        if shape == &[u32::MAX; 3])
    );
    // 255 dimensions of 2: 2^255 elements.
    let mut bytes = vec![0, 0, 0x0D, 255];
    for _ in 0..255 {
        bytes.extend([0, 0, 0, 2]);
    }
    assert!(matches!(
        read(&bytes),
        DataError::SizeOverflow {
            elem: IdxType::F32,
            ..
        }
    ));
    // Zero elements, but the other dimensions could not be addressed.
    let mut bytes = vec![0, 0, 0x08, 4, 0, 0, 0, 0];
    bytes.extend([0xFF; 12]);
    assert!(matches!(read(&bytes), DataError::SizeOverflow { .. }));
}

#[test]
fn larger_than_the_limit() {
    // f64, 65536 x 2048: 1 GiB exactly is allowed by the default limit, so ask for one more row.
    let header = [0, 0, 0x0E, 2, 0, 1, 0, 1, 0, 0, 0x08, 0];
    let err = read(&header);
    assert!(
        matches!(err, DataError::TooLarge { bytes, limit: 1_073_741_824, elem: IdxType::F64, .. }
            if bytes == 65_537 * 2048 * 8),
        "{err:?}"
    );
    // A gzip'd header declaring it is refused the same way, before any data is read.
    assert!(matches!(read(&gzip(&header)), DataError::TooLarge { .. }));
    // A tighter limit.
    let err = read_idx_from(&valid()[..], NAME, &Limits { max_bytes: 5 }).unwrap_err();
    assert!(matches!(
        err,
        DataError::TooLarge {
            bytes: 6,
            limit: 5,
            ..
        }
    ));
    let dir = TempDir::new("limit");
    std::fs::write(dir.join("v.idx"), valid()).unwrap();
    let err = read_idx_with(dir.join("v.idx"), &Limits { max_bytes: 5 }).unwrap_err();
    assert!(matches!(err, DataError::TooLarge { .. }));
}

#[test]
fn raw_file_declaring_more_than_it_holds() {
    let dir = TempDir::new("declared");
    // Within the limit but far beyond the file: refused from the file's size, before allocating.
    let mut bytes = vec![0, 0, 0x08, 1, 0x10, 0, 0, 0];
    bytes.extend([7; 10]);
    let err = read_file(&dir, &bytes);
    assert!(
        matches!(
            err,
            DataError::DeclaredExceedsData {
                declared: 0x1000_0000,
                present: 10,
                ..
            }
        ),
        "{err:?}"
    );
    // One byte short.
    let v = valid();
    let err = read_file(&dir, &v[..v.len() - 1]);
    assert!(matches!(
        err,
        DataError::DeclaredExceedsData {
            declared: 6,
            present: 5,
            ..
        }
    ));
}

#[test]
fn truncated_data() {
    let v = valid();
    let err = read(&v[..v.len() - 2]);
    assert!(matches!(
        err,
        DataError::Truncated {
            expected: 6,
            got: 4,
            ..
        }
    ));
    // Gzip'd: the gzip stream is complete, the IDX inside it is short.
    let err = read(&gzip(&v[..v.len() - 1]));
    assert!(matches!(
        err,
        DataError::Truncated {
            expected: 6,
            got: 5,
            ..
        }
    ));
    // A header declaring 256 MiB with 10 bytes behind it, read without knowing the length.
    let mut bytes = vec![0, 0, 0x08, 1, 0x10, 0, 0, 0];
    bytes.extend([7; 10]);
    assert!(matches!(read(&bytes), DataError::Truncated { got: 10, .. }));
    assert!(matches!(
        read(&gzip(&bytes)),
        DataError::Truncated { got: 10, .. }
    ));
}

#[test]
fn trailing_data() {
    let dir = TempDir::new("trailing");
    let mut bytes = valid();
    bytes.extend([0, 0, 0]);
    let err = read(&bytes);
    assert!(matches!(
        err,
        DataError::TrailingData {
            expected: 6,
            extra: 3,
            more: false,
            ..
        }
    ));
    assert!(matches!(
        read(&gzip(&bytes)),
        DataError::TrailingData {
            expected: 6,
            extra: 3,
            ..
        }
    ));
    assert!(matches!(
        read_file(&dir, &bytes),
        DataError::TrailingData {
            expected: 6,
            extra: 3,
            more: false,
            ..
        }
    ));
    // A second copy of the file after the first.
    let mut twice = valid();
    twice.extend(valid());
    assert!(matches!(
        read(&twice),
        DataError::TrailingData { extra: 18, .. }
    ));
}

#[test]
fn corrupt_or_cut_gzip() {
    let gz = gzip(&valid());
    let n = gz.len();
    // CRC-32 or length in the trailer wrong.
    for i in n - 8..n {
        let mut bad = gz.clone();
        bad[i] ^= 0x01;
        let err = read(&bad);
        assert!(matches!(err, DataError::Gzip { .. }), "byte {i}: {err:?}");
        assert!(err.source().is_some());
    }
    // Cut anywhere after the magic.
    for cut in 2..n {
        assert!(
            matches!(read(&gz[..cut]), DataError::Gzip { .. }),
            "cut at {cut}"
        );
    }
    // Bytes after the gzip member that are not another member.
    let mut bad = gz.clone();
    bad.extend(b"junk");
    assert!(matches!(read(&bad), DataError::Gzip { .. }));
    // An unknown compression method in the header.
    let mut bad = gz.clone();
    bad[2] = 7;
    assert!(matches!(read(&bad), DataError::Gzip { .. }));
    let dir = TempDir::new("gzip");
    assert!(matches!(
        read_file(&dir, &gz[..n - 3]),
        DataError::Gzip { .. }
    ));
}

#[test]
fn unexpected_type_or_rank() {
    let dir = TempDir::new("typed");
    let path = dir.join("labels.idx");
    write_idx(&path, &array![1i32, 2, 3], Compression::None).unwrap();
    let err = read_idx_as::<u8>(&path, 1).unwrap_err();
    assert!(matches!(
        err,
        DataError::UnexpectedType {
            expected: IdxType::U8,
            found: IdxType::I32,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "{} holds i32 elements, but u8 were expected",
            path.display()
        )
    );
    let err = read_idx_as::<i32>(&path, 3).unwrap_err();
    assert!(matches!(&err, DataError::UnexpectedRank { expected: 3, shape, .. } if shape == &[3]));
    assert!(
        err.to_string()
            .contains("shape [3] (1 dimension(s)), but 3")
    );
}

#[test]
fn unwritable_arrays() {
    let mut out = Vec::new();
    let err = write_idx_to(&mut out, "scalar.idx", &arr0(5u8), Compression::None).unwrap_err();
    assert!(matches!(err, DataError::RankNotWritable { rank: 0, .. }));
    assert!(err.to_string().contains("scalar.idx"));
    // No elements, so no memory, but a dimension IDX cannot hold.
    #[cfg(target_pointer_width = "64")]
    {
        let wide = Array2::<f32>::zeros((0, (1 << 32) + 1));
        let err = write_idx_to(&mut out, "wide.idx", &wide, Compression::Gzip).unwrap_err();
        assert!(matches!(
            err,
            DataError::DimNotWritable {
                axis: 1,
                size: 4_294_967_297,
                ..
            }
        ));
    }
    assert!(out.is_empty(), "nothing is written for an unwritable array");
    let dir = TempDir::new("unwritable");
    let path = dir.join("no-such-dir").join("x.idx");
    let err = write_idx(&path, &array![1u8], Compression::None).unwrap_err();
    assert!(matches!(
        err,
        DataError::Io {
            action: "create",
            ..
        }
    ));
}

/// A writer that fails after `room` bytes.
struct Full {
    room: usize,
}

impl io::Write for Full {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_errors_name_the_destination() {
    let big = Array2::<f64>::zeros((100, 100));
    for compression in [Compression::None, Compression::Gzip] {
        let err = write_idx_to(Full { room: 10 }, "out.idx", &big, compression).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Io {
                    action: "write",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "cannot write out.idx");
    }
}

/// A reader that fails with a real I/O error after some bytes.
struct Failing<'a> {
    data: &'a [u8],
}

impl io::Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            return Err(io::Error::other("device gone"));
        }
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn read_errors_are_io_errors_for_raw_and_gzip_errors_for_gzip() {
    let v = valid();
    for cut in 0..v.len() {
        let err = read_idx_from(Failing { data: &v[..cut] }, NAME, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, DataError::Io { action: "read", .. }),
            "cut {cut}: {err:?}"
        );
    }
    let gz = gzip(&v);
    let err = read_idx_from(
        Failing {
            data: &gz[..gz.len() / 2],
        },
        NAME,
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
}

/// Property: a valid file with one mutation is always an error, never a panic.
///
/// Mutations: cut at every length, one to three bytes appended, the type byte set to every value,
/// each dimension set to 0 and to `u32::MAX`.
#[test]
fn mutations_are_errors() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let dir = TempDir::new("mutations");
    let path = dir.join("m.idx");
    let by_file = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        read_idx(&path)
    };
    for case in 0..60 {
        let idx = random_idx(&mut rng, 4, 5);
        let raw = encode(&idx, Compression::None);
        let rank = idx.ndim();
        let check = |bytes: &[u8], what: &str| {
            assert!(
                read_idx_from(bytes, NAME, &Limits::default()).is_err(),
                "case {case}: {what}"
            );
            assert!(
                read_idx_from(&gzip(bytes)[..], NAME, &Limits::default()).is_err(),
                "{what}"
            );
        };
        for k in 0..raw.len() {
            check(&raw[..k], &format!("cut at {k}"));
        }
        for extra in 1..=3 {
            let mut longer = raw.clone();
            longer.extend((0..extra).map(|_| rng.random::<u8>()));
            check(&longer, &format!("{extra} appended"));
            assert!(by_file(&longer).is_err());
        }
        for code in 0..=255u8 {
            let mut bytes = raw.clone();
            bytes[2] = code;
            match IdxType::from_code(code) {
                // Same element size: a valid file of another type, with the same shape.
                Some(t) if t.size() == idx.elem_type().size() => {
                    let other = read_idx_from(&bytes[..], NAME, &Limits::default()).unwrap();
                    assert_eq!((other.elem_type(), other.shape()), (t, idx.shape()));
                }
                _ => check(&bytes, &format!("type byte {code:#04x}")),
            }
        }
        for axis in 0..rank {
            for dim in [0u32, u32::MAX] {
                let mut bytes = raw.clone();
                bytes[4 + 4 * axis..8 + 4 * axis].copy_from_slice(&dim.to_be_bytes());
                check(&bytes, &format!("dim {axis} set to {dim}"));
                assert!(by_file(&bytes).is_err());
            }
        }
        assert!(by_file(&raw[..raw.len() - 1]).is_err());
    }
}

/// Property: any single byte set to any value, raw or inside gzip, never panics; and damage to a gzip
/// trailer is always caught.
#[test]
fn any_byte_changed_never_panics() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
    for _ in 0..4 {
        let idx = random_idx(&mut rng, 3, 3);
        let raw = encode(&idx, Compression::None);
        let gz = encode(&idx, Compression::Gzip);
        for bytes in [&raw, &gz] {
            for i in 0..bytes.len() {
                for value in 0..=255u8 {
                    let mut mutated = bytes.clone();
                    mutated[i] = value;
                    let result = read_idx_from(&mutated[..], NAME, &Limits::default());
                    if bytes == &gz && i >= gz.len() - 8 && value != gz[i] {
                        assert!(
                            matches!(result, Err(DataError::Gzip { .. })),
                            "trailer byte {i}"
                        );
                    }
                }
            }
        }
    }
}
