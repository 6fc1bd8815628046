//! IDX reading and writing: golden fixtures and round-trip properties.

#[allow(dead_code)]
mod common;

use bp_data::{
    Compression, IdxArray, IdxType, Limits, read_idx, read_idx_as, read_idx_from, write_idx,
};
use common::{TempDir, Trickle, encode, gzip, random_idx, same_bits};
use ndarray::{ArrayD, IxDyn, array};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

fn from_bytes(bytes: &[u8]) -> IdxArray {
    read_idx_from(bytes, "fixture", &Limits::default()).expect("fixture is valid IDX")
}

fn arr<T>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("fixture shape matches its data")
}

/// Hand-written files, one per element type and rank 1 to 3, with the arrays they hold.
fn golden() -> Vec<(Vec<u8>, IdxArray)> {
    vec![
        (
            // u8, rank 1: 0, 127, 255.
            vec![0, 0, 0x08, 1, 0, 0, 0, 3, 0, 127, 255],
            arr(&[3], vec![0u8, 127, 255]).into(),
        ),
        (
            // i8, rank 2, (2, 2): -128, -1, 0, 127.
            vec![
                0, 0, 0x09, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0x80, 0xFF, 0x00, 0x7F,
            ],
            arr(&[2, 2], vec![-128i8, -1, 0, 127]).into(),
        ),
        (
            // i16, rank 3, (1, 2, 1): 258, -2.
            vec![
                0, 0, 0x0B, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0x01, 0x02, 0xFF, 0xFE,
            ],
            arr(&[1, 2, 1], vec![258i16, -2]).into(),
        ),
        (
            // i32, rank 2, (1, 2): 16909060, i32::MIN.
            vec![
                0, 0, 0x0C, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0x01, 0x02, 0x03, 0x04, 0x80, 0, 0, 0,
            ],
            arr(&[1, 2], vec![16_909_060i32, i32::MIN]).into(),
        ),
        (
            // f32, rank 1: 0.5, -inf, 3.0.
            vec![
                0, 0, 0x0D, 1, 0, 0, 0, 3, 0x3F, 0, 0, 0, 0xFF, 0x80, 0, 0, 0x40, 0x40, 0, 0,
            ],
            arr(&[3], vec![0.5f32, f32::NEG_INFINITY, 3.0]).into(),
        ),
        (
            // f64, rank 3, (2, 1, 1): -0.25, 1e300.
            vec![
                0, 0, 0x0E, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0xBF, 0xD0, 0, 0, 0, 0, 0, 0,
                0x7E, 0x37, 0xE4, 0x3C, 0x88, 0x00, 0x75, 0x9C,
            ],
            arr(&[2, 1, 1], vec![-0.25f64, 1e300]).into(),
        ),
    ]
}

#[test]
fn golden_fixtures_read_raw_and_gzip() {
    for (bytes, expected) in golden() {
        let what = expected.elem_type();
        assert_eq!(from_bytes(&bytes), expected, "raw {what}");
        assert_eq!(from_bytes(&gzip(&bytes)), expected, "gzip {what}");
    }
}

#[test]
fn golden_fixtures_are_what_the_writer_writes() {
    for (bytes, idx) in golden() {
        assert_eq!(
            encode(&idx, Compression::None),
            bytes,
            "{}",
            idx.elem_type()
        );
        let gz = encode(&idx, Compression::Gzip);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(from_bytes(&gz), idx);
    }
}

#[test]
fn golden_fixtures_read_from_files_by_content_not_name() {
    let dir = TempDir::new("golden-files");
    for (i, (bytes, expected)) in golden().into_iter().enumerate() {
        // The gzip'd copy is named .idx and the raw one .gz: names do not matter.
        let raw = dir.join(&format!("{i}.gz"));
        let gz = dir.join(&format!("{i}.idx"));
        std::fs::write(&raw, &bytes).unwrap();
        std::fs::write(&gz, gzip(&bytes)).unwrap();
        assert_eq!(read_idx(&raw).unwrap(), expected);
        assert_eq!(read_idx(&gz).unwrap(), expected);
    }
}

#[test]
fn multi_member_gzip_reads_as_one_stream() {
    for (bytes, expected) in golden() {
        for cut in [1, 4, 9, bytes.len() - 1] {
            let mut two = gzip(&bytes[..cut]);
            two.extend(gzip(&bytes[cut..]));
            assert_eq!(from_bytes(&two), expected, "cut at {cut}");
        }
        // An empty member in between changes nothing either.
        let mut three = gzip(&bytes[..5]);
        three.extend(gzip(&[]));
        three.extend(gzip(&bytes[5..]));
        assert_eq!(from_bytes(&three), expected);
    }
}

#[test]
fn write_then_read_files_round_trips() {
    let dir = TempDir::new("write-files");
    let images = array![[[0u8, 1], [2, 3]], [[252, 253], [254, 255]]];
    for compression in [Compression::None, Compression::Gzip] {
        let path = dir.join("images");
        write_idx(&path, &images, compression).unwrap();
        assert_eq!(
            read_idx_as::<u8>(&path, 3).unwrap(),
            images.clone().into_dyn()
        );
    }
    // Views and non-standard layouts are written in logical (C) order.
    let wide = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let path = dir.join("slice");
    write_idx(&path, &wide.slice(ndarray::s![.., ..;2]), Compression::None).unwrap();
    assert_eq!(
        read_idx_as::<f32>(&path, 2).unwrap(),
        array![[1.0f32, 3.0], [4.0, 6.0]].into_dyn()
    );
}

/// Property: any type and shape survives write -> read, raw or gzip'd, bit for bit; and reading one
/// byte at a time (with interruptions) gives the same as reading at once.
#[test]
fn random_round_trips_and_one_byte_reads() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    for case in 0..300 {
        let idx = random_idx(&mut rng, 4, 6);
        for compression in [Compression::None, Compression::Gzip] {
            let bytes = encode(&idx, compression);
            let at_once = read_idx_from(&bytes[..], "at once", &Limits::default()).unwrap();
            assert!(
                same_bits(&at_once, &idx),
                "case {case}: {:?} {:?} {compression:?}",
                idx.elem_type(),
                idx.shape()
            );
            let trickled =
                read_idx_from(Trickle::new(&bytes[..]), "trickle", &Limits::default()).unwrap();
            assert!(same_bits(&trickled, &at_once), "case {case}: trickle");
        }
    }
}

/// Property: one byte at a time gives the same errors as all at once, on damaged input too.
#[test]
fn one_byte_reads_fail_the_same_way() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    for _ in 0..40 {
        let idx = random_idx(&mut rng, 3, 4);
        for compression in [Compression::None, Compression::Gzip] {
            let bytes = encode(&idx, compression);
            for k in 0..bytes.len() {
                let at_once = read_idx_from(&bytes[..k], "x", &Limits::default()).unwrap_err();
                let trickled =
                    read_idx_from(Trickle::new(&bytes[..k]), "x", &Limits::default()).unwrap_err();
                assert_eq!(at_once.to_string(), trickled.to_string(), "cut at {k}");
            }
        }
    }
}

#[test]
fn file_and_reader_paths_agree() {
    let dir = TempDir::new("paths-agree");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    for i in 0..30 {
        let idx = random_idx(&mut rng, 3, 5);
        let compression = if i % 2 == 0 {
            Compression::None
        } else {
            Compression::Gzip
        };
        let path = dir.join(&format!("{i}.idx"));
        idx.write(&path, compression).unwrap();
        let from_file = read_idx(&path).unwrap();
        let from_reader = read_idx_from(
            std::fs::File::open(&path).unwrap(),
            &path,
            &Limits::default(),
        )
        .unwrap();
        assert!(same_bits(&from_file, &idx));
        assert!(same_bits(&from_reader, &idx));
    }
}

#[test]
fn every_type_round_trips_through_into_array() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    for elem in IdxType::ALL {
        let idx = common::random_of(&mut rng, elem, &[2, 3]);
        let back = from_bytes(&encode(&idx, Compression::Gzip));
        assert_eq!(back.elem_type(), elem);
        assert_eq!(back.shape(), &[2, 3]);
        assert_eq!(back.ndim(), 2);
        assert_eq!(back.len(), 6);
        assert!(same_bits(&back, &idx));
    }
}

#[test]
fn a_limit_exactly_at_the_size_reads() {
    let bytes = encode(&arr(&[4, 2], vec![1i16; 8]).into(), Compression::None);
    assert!(read_idx_from(&bytes[..], "x", &Limits { max_bytes: 16 }).is_ok());
    assert!(read_idx_from(&bytes[..], "x", &Limits { max_bytes: 15 }).is_err());
}
