//! Data sets made to hurt the loader: decompression bombs (small gzip'd files declaring gigabytes),
//! headers that contradict each other, data files that are directories, FIFOs, devices or dangling
//! links, a data directory that is not one, and a test set loaded without its training set.
//!
//! Every case must end in the right `DataError`, at once: a bomb is refused from its header, before
//! anything is allocated for its data (so the tests also check that the loader returned quickly),
//! and a FIFO is never opened for a blocking read (so the tests that make one fail after a timeout
//! instead of hanging).

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bp_data::{
    Compression, DataError, FileKind, IdxFile, IdxType, Limits, MnistOptions, Split, load_mnist,
    load_mnist_split, read_idx, write_idx,
};
use common::{TempDir, gzip};
use ndarray::{Array1, Array3};

const MIB: u64 = 1 << 20;

/// How long a refusal from the headers may take. Reading a bomb's gigabyte of zeros and converting
/// it takes seconds; checking four headers takes milliseconds.
const FAST: Duration = Duration::from_secs(2);

/// The usual names, all gzip'd.
const GZ: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// An IDX header: magic with the type code and rank, then the dimensions.
fn header(code: u8, dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, code, u8::try_from(dims.len()).unwrap()];
    for d in dims {
        h.extend(d.to_be_bytes());
    }
    h
}

/// One gzip member holding 1 MiB of zeros (about 1 KB), made once.
fn mib_of_zeros() -> &'static [u8] {
    static MEMBER: OnceLock<Vec<u8>> = OnceLock::new();
    MEMBER.get_or_init(|| gzip(&vec![0; MIB as usize]))
}

/// A complete, valid gzip'd IDX file: `header` then `zeros` zero bytes, as concatenated gzip members
/// (which gzip and the loader read as one stream), about 1 KB per MiB of zeros.
fn gz_bomb(header: &[u8], zeros: u64) -> Vec<u8> {
    let mut out = gzip(header);
    for _ in 0..zeros / MIB {
        out.extend_from_slice(mib_of_zeros());
    }
    if !zeros.is_multiple_of(MIB) {
        out.extend(gzip(&vec![0; (zeros % MIB) as usize]));
    }
    out
}

/// A sound 8x8 data set: `n_train` and `n_test` images, labels cycling through 0-9.
fn write_sound(dir: &Path, n_train: usize, n_test: usize) {
    let images = |n| Array3::from_shape_fn((n, 8, 8), |(i, r, c)| ((i + r * 8 + c) % 256) as u8);
    let labels = |n| Array1::from_shape_fn(n, |i| (i % 10) as u8);
    write_idx(dir.join(GZ[0]), &images(n_train), Compression::Gzip).unwrap();
    write_idx(dir.join(GZ[1]), &labels(n_train), Compression::Gzip).unwrap();
    write_idx(dir.join(GZ[2]), &images(n_test), Compression::Gzip).unwrap();
    write_idx(dir.join(GZ[3]), &labels(n_test), Compression::Gzip).unwrap();
}

/// Runs `f`, failing the test if it took longer than [`FAST`].
#[track_caller]
fn fast<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < FAST, "took {took:?}: the data was read, not refused");
    out
}

/// Runs `f` on another thread and fails the test if it does not return within 10 s: a loader that
/// blocks on a FIFO fails the test instead of hanging it.
#[track_caller]
fn within_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the loader blocked (on a FIFO?) instead of returning")
}

/// Makes a FIFO at `path`.
#[allow(unsafe_code)]
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn f32_default(dir: &Path) -> Result<bp_data::Mnist<f32>, DataError> {
    load_mnist::<f32>(dir, &MnistOptions::default())
}

// ---- Decompression bombs and the memory limit ----

/// The bomb: a 1 MB gzip'd file declaring 16,777,216 images of 8x8, 1 GiB of pixels, exactly
/// at the IDX reader's own 1 GiB limit, so that only the converted size tells: 4 GiB as f32.
#[test]
fn a_gigabyte_of_images_in_a_megabyte_of_gzip_is_refused_from_its_header() {
    let dir = TempDir::new("bomb-images");
    write_sound(dir.path(), 20, 10);
    let n: u32 = 1 << 24;
    let bomb = gz_bomb(&header(0x08, &[n, 8, 8]), 64 * u64::from(n));
    assert!(bomb.len() < 2_000_000, "a small file: {} bytes", bomb.len());
    std::fs::write(dir.join(GZ[0]), &bomb).unwrap();
    let labels = gz_bomb(&header(0x08, &[n]), u64::from(n));
    std::fs::write(dir.join(GZ[1]), &labels).unwrap();

    let err = fast(|| f32_default(dir.path())).unwrap_err();
    // 4 GiB of f32 pixels, 128 MiB of usize labels, the test set's 10 images and labels, and the
    // largest file's 1 GiB of bytes.
    let bytes = 4096 * MIB + 128 * MIB + (10 * 64 * 4 + 10 * 8) + 1024 * MIB;
    let DataError::DataTooLarge {
        file,
        images,
        image_shape,
        elem,
        bytes: got,
        limit,
    } = &err
    else {
        panic!("expected DataTooLarge, got {err:?}");
    };
    assert_eq!(file, &dir.join(GZ[0]));
    assert_eq!((*images, *image_shape, *elem), (1 << 24, (8, 8), "f32"));
    assert_eq!((*got, *limit), (bytes, 1 << 30));
    assert_eq!(
        err.to_string(),
        format!(
            "{} declares 16777216 images of 8x8: as f32 the data would take 5248 MiB, more than \
             the limit of 1024 MiB; raise the limit with --max-data-mib 5249",
            dir.join(GZ[0]).display()
        )
    );

    // The same in f64: twice the pixels' size.
    let err = fast(|| load_mnist::<f64>(dir.path(), &MnistOptions::default())).unwrap_err();
    assert!(
        matches!(&err, DataError::DataTooLarge { elem: "f64", bytes: b, .. }
            if *b == 8192 * MIB + 128 * MIB + (10 * 64 * 8 + 10 * 8) + 1024 * MIB),
        "{err:?}"
    );
    assert!(err.to_string().ends_with("--max-data-mib 9345"), "{err}");
}

/// The label bomb: a 1 MB gzip'd file declaring 10⁹ labels beside 20 images. The headers
/// already disagree, so the count mismatch is reported without reading a byte of either.
#[test]
fn a_billion_labels_beside_twenty_images_is_a_count_mismatch_from_the_headers() {
    let dir = TempDir::new("bomb-labels");
    write_sound(dir.path(), 20, 10);
    let bomb = gz_bomb(&header(0x08, &[1_000_000_000]), 1_000_000_000);
    assert!(bomb.len() < 2_000_000, "a small file: {} bytes", bomb.len());
    std::fs::write(dir.join(GZ[1]), &bomb).unwrap();
    let err = fast(|| f32_default(dir.path())).unwrap_err();
    assert!(
        matches!(
            &err,
            DataError::CountMismatch { images: 20, labels: 1_000_000_000, labels_file, .. }
                if labels_file == &dir.join(GZ[1])
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(&format!(
            "holds 20 images but {} holds 1000000000 labels",
            dir.join(GZ[1]).display()
        )),
        "{err}"
    );

    // The same in the test split, the training files sound.
    write_sound(dir.path(), 20, 10);
    std::fs::write(dir.join(GZ[3]), &bomb).unwrap();
    let err = fast(|| f32_default(dir.path())).unwrap_err();
    assert!(
        matches!(
            &err,
            DataError::CountMismatch {
                images: 10,
                labels: 1_000_000_000,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Images and labels that agree on a huge count, with images of one pixel: the labels, as `usize`
/// indices, are most of the memory, and count against the limit too.
#[test]
fn labels_count_against_the_limit_too() {
    let dir = TempDir::new("bomb-1x1");
    write_idx(
        dir.join(GZ[2]),
        &Array3::<u8>::zeros((2, 1, 1)),
        Compression::Gzip,
    )
    .unwrap();
    write_idx(
        dir.join(GZ[3]),
        &Array1::from(vec![0u8, 1]),
        Compression::Gzip,
    )
    .unwrap();
    let n: u32 = 100_000_000;
    std::fs::write(
        dir.join(GZ[0]),
        gz_bomb(&header(0x08, &[n, 1, 1]), u64::from(n)),
    )
    .unwrap();
    std::fs::write(dir.join(GZ[1]), gz_bomb(&header(0x08, &[n]), u64::from(n))).unwrap();
    // 400 MB of f32 pixels alone would fit in 1 GiB; with 800 MB of labels it does not.
    let err = fast(|| f32_default(dir.path())).unwrap_err();
    let want = 100_000_000 * (4 + 8) + 2 * (4 + 8) + 100_000_000;
    assert!(
        matches!(&err, DataError::DataTooLarge { images: 100_000_000, image_shape: (1, 1), bytes, .. }
            if *bytes == want),
        "{err:?}"
    );
}

/// The limit is exactly what the message says: at the figure the data loads, a byte below it is
/// refused, and the suggested `--max-data-mib` is enough.
#[test]
fn the_limit_is_the_figure_in_the_message() {
    let dir = TempDir::new("limit-edge");
    write_sound(dir.path(), 3000, 500);
    // Pixels as f32, labels as usize, and the largest file's bytes (the training images).
    let need = 3500 * 64 * 4 + 3500 * 8 + 3000 * 64;
    let opts = |max_bytes| MnistOptions {
        max_bytes,
        ..MnistOptions::default()
    };
    let m = load_mnist::<f32>(dir.path(), &opts(need)).unwrap();
    assert_eq!((m.train_len(), m.test_len()), (3000, 500));
    let err = load_mnist::<f32>(dir.path(), &opts(need - 1)).unwrap_err();
    assert!(
        matches!(&err, DataError::DataTooLarge { bytes, limit, images: 3000, .. }
            if *bytes == need && *limit == need - 1),
        "{err:?}"
    );
    let err = load_mnist::<f32>(dir.path(), &opts(MIB)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} declares 3000 images of 8x8: as f32 the data would take 1.1 MiB, more than the \
             limit of 1 MiB; raise the limit with --max-data-mib 2",
            dir.join(GZ[0]).display()
        )
    );
    assert!(load_mnist::<f32>(dir.path(), &opts(2 * MIB)).is_ok());
    // One-hot rows of 10 f64 instead of indices: 80 bytes a label instead of 8.
    let one_hot = MnistOptions {
        one_hot_label: true,
        ..opts(3500 * 64 * 8 + 3500 * 80 + 3000 * 64)
    };
    assert!(load_mnist::<f64>(dir.path(), &one_hot).is_ok());
    let one_less = MnistOptions {
        max_bytes: one_hot.max_bytes - 1,
        ..one_hot
    };
    assert!(matches!(
        load_mnist::<f64>(dir.path(), &one_less),
        Err(DataError::DataTooLarge { elem: "f64", .. })
    ));
}

/// A class count so large that one-hot rows could not be allocated is refused by the same limit,
/// rather than aborting in the allocator.
#[test]
fn an_absurd_class_count_with_one_hot_labels_is_refused() {
    let dir = TempDir::new("absurd-classes");
    write_sound(dir.path(), 20, 10);
    let opts = MnistOptions {
        one_hot_label: true,
        num_classes: Some(1 << 40),
        ..MnistOptions::default()
    };
    let err = fast(|| load_mnist::<f32>(dir.path(), &opts)).unwrap_err();
    assert!(
        matches!(&err, DataError::DataTooLarge { images: 20, .. }),
        "{err:?}"
    );
}

/// A header declaring far more than the file holds is refused from the header too: for a gzip'd
/// file the data would come out truncated, so getting `DataTooLarge` shows nothing was read first.
#[test]
fn a_bomb_header_alone_is_refused_before_its_missing_data_is_noticed() {
    let dir = TempDir::new("bomb-header");
    write_sound(dir.path(), 20, 10);
    // The test set: a header declaring 2^27 images of 8x8 (8 GiB) and 100 bytes of data.
    let mut bytes = header(0x08, &[1 << 27, 8, 8]);
    bytes.extend([0; 100]);
    std::fs::write(dir.join(GZ[2]), gzip(&bytes)).unwrap();
    std::fs::write(dir.join(GZ[3]), gzip(&header(0x08, &[1 << 27]))).unwrap();
    let err = fast(|| f32_default(dir.path())).unwrap_err();
    assert!(
        matches!(&err, DataError::DataTooLarge { file, images, image_shape: (8, 8), .. }
            if file == &dir.join(GZ[2]) && *images == 1 << 27),
        "{err:?}"
    );
    // Raw, the file's length shows the data is not there, before the limit is even considered.
    std::fs::remove_file(dir.join(GZ[2])).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), &bytes).unwrap();
    let err = fast(|| f32_default(dir.path())).unwrap_err();
    assert!(
        matches!(&err, DataError::DeclaredExceedsData { declared, present: 100, .. }
            if *declared == 1 << 33),
        "{err:?}"
    );
}

/// The four headers are checked against each other before any data is read: with a training file
/// whose data is corrupt, a disagreement between the headers is what is reported.
#[test]
fn headers_are_cross_checked_before_any_data_is_read() {
    let dir = TempDir::new("cross");
    write_sound(dir.path(), 20, 10);
    // Training images: a sound header, then gzip garbage where the data should be.
    let mut corrupt = gzip(&header(0x08, &[20, 8, 8]));
    corrupt.extend([0x1f, 0x8b, 8, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    std::fs::write(dir.join(GZ[0]), &corrupt).unwrap();
    // Read alone, the file is corrupt.
    assert!(matches!(
        read_idx(dir.join(GZ[0])),
        Err(DataError::Gzip { .. })
    ));

    // Test images of another size.
    write_idx(
        dir.join(GZ[2]),
        &Array3::<u8>::zeros((10, 9, 8)),
        Compression::Gzip,
    )
    .unwrap();
    let err = f32_default(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            DataError::ImageSizeMismatch {
                train_size: (8, 8),
                test_size: (9, 8),
                ..
            }
        ),
        "{err:?}"
    );

    // Test labels of another element type, or rank, or count.
    write_sound(dir.path(), 20, 10);
    std::fs::write(dir.join(GZ[0]), &corrupt).unwrap();
    write_idx(
        dir.join(GZ[3]),
        &Array1::<i16>::zeros(10),
        Compression::Gzip,
    )
    .unwrap();
    let err = f32_default(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DataError::UnexpectedType { expected: IdxType::U8, found: IdxType::I16, file }
            if file == &dir.join(GZ[3])),
        "{err:?}"
    );
    write_idx(
        dir.join(GZ[3]),
        &ndarray::Array2::<u8>::zeros((10, 1)),
        Compression::Gzip,
    )
    .unwrap();
    assert!(matches!(
        f32_default(dir.path()),
        Err(DataError::UnexpectedRank { expected: 1, .. })
    ));
    write_idx(dir.join(GZ[3]), &Array1::<u8>::zeros(11), Compression::Gzip).unwrap();
    assert!(matches!(
        f32_default(dir.path()),
        Err(DataError::CountMismatch {
            images: 10,
            labels: 11,
            ..
        })
    ));

    // With the headers in agreement, the corrupt data is found and named.
    write_idx(dir.join(GZ[3]), &Array1::<u8>::zeros(10), Compression::Gzip).unwrap();
    let err = f32_default(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DataError::Gzip { file, .. } if file == &dir.join(GZ[0])),
        "{err:?}"
    );
}

/// An opened file's header is known before its data is read; a bomb's header costs nothing.
#[test]
fn an_idx_file_declares_before_it_is_read() {
    let dir = TempDir::new("idx-file");
    let path = dir.join("bomb.gz");
    std::fs::write(&path, gz_bomb(&header(0x0D, &[1 << 28]), 1 << 30)).unwrap();
    let file = fast(|| IdxFile::open(&path, &Limits::default())).unwrap();
    assert_eq!(file.elem_type(), IdxType::F32);
    assert_eq!(file.shape(), &[1 << 28]);
    assert_eq!(file.data_bytes(), 1 << 30);
    assert!(file.is_gzip());
    assert_eq!(file.path(), path);
    drop(file);
    // Over the reader's own limit, it is refused at opening.
    let err = IdxFile::open(&path, &Limits { max_bytes: 1 << 29 }).unwrap_err();
    assert!(matches!(
        err,
        DataError::TooLarge {
            bytes: 1_073_741_824,
            limit: 536_870_912,
            ..
        }
    ));
}

// ---- Data files that are not regular files ----

/// Each of the four files, in turn, is a directory, a FIFO, a dangling link or a device: the error
/// says what it is, names it, and comes at once.
#[test]
fn data_files_that_are_not_files_say_what_they_are() {
    for (i, name) in GZ.iter().enumerate() {
        let dir = TempDir::new(&format!("special-{i}"));
        write_sound(dir.path(), 20, 10);
        let path = dir.join(name);
        let load = {
            let dir = dir.path().to_path_buf();
            move || f32_default(&dir).unwrap_err()
        };
        let cases: [(&str, FileKind, String); 4] = [
            (
                "directory",
                FileKind::Directory,
                "is a directory".to_owned(),
            ),
            (
                "fifo",
                FileKind::Fifo,
                "is a FIFO, not a regular file".to_owned(),
            ),
            (
                "dangling",
                FileKind::DanglingLink {
                    target: dir.join("nowhere.gz"),
                },
                format!(
                    "is a symbolic link to {}, which does not exist",
                    dir.join("nowhere.gz").display()
                ),
            ),
            (
                "device",
                FileKind::CharDevice,
                "is a character device, not a regular file".to_owned(),
            ),
        ];
        for (what, kind, clause) in cases {
            std::fs::remove_file(&path)
                .or_else(|_| std::fs::remove_dir(&path))
                .unwrap();
            match what {
                "directory" => std::fs::create_dir(&path).unwrap(),
                "fifo" => mkfifo(&path),
                "dangling" => std::os::unix::fs::symlink("nowhere.gz", &path).unwrap(),
                _ => std::os::unix::fs::symlink("/dev/zero", &path).unwrap(),
            }
            let err = within_timeout(load.clone());
            assert!(
                matches!(&err, DataError::NotAFile { file, kind: k } if file == &path && k == &kind),
                "{name} as a {what}: {err:?}"
            );
            assert_eq!(err.to_string(), format!("{} {clause}", path.display()));
        }
    }
}

/// A name that is not a regular file does not hide a later spelling that is; a link to a regular
/// file is read through.
#[test]
fn a_regular_file_under_another_spelling_is_still_found() {
    let dir = TempDir::new("spellings");
    write_sound(dir.path(), 20, 10);
    // The test labels move to the raw dotted spelling; the first spelling becomes a directory.
    let labels = Array1::from_shape_fn(10, |i| (i % 10) as u8);
    std::fs::remove_file(dir.join(GZ[3])).unwrap();
    std::fs::create_dir(dir.join(GZ[3])).unwrap();
    write_idx(
        dir.join("t10k-labels.idx1-ubyte"),
        &labels,
        Compression::None,
    )
    .unwrap();
    // The training images are a link to a file elsewhere.
    let elsewhere = TempDir::new("spellings-target");
    std::fs::rename(dir.join(GZ[0]), elsewhere.join("images.gz")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("images.gz"), dir.join(GZ[0])).unwrap();
    let m = within_timeout({
        let dir = dir.path().to_path_buf();
        move || f32_default(&dir)
    })
    .unwrap();
    assert_eq!((m.train_len(), m.test_len()), (20, 10));
    assert_eq!(m.t_test.as_index().unwrap()[..3], [0, 1, 2]);
}

/// `read_idx` and the checksum list open regular files only, too.
#[test]
fn single_files_and_the_checksum_list_are_not_waited_on() {
    let dir = TempDir::new("single");
    let fifo = dir.join("fifo.idx");
    mkfifo(&fifo);
    let err = within_timeout({
        let fifo = fifo.clone();
        move || read_idx(&fifo).unwrap_err()
    });
    assert!(matches!(
        err,
        DataError::NotAFile {
            kind: FileKind::Fifo,
            ..
        }
    ));
    assert!(matches!(
        read_idx(dir.path()),
        Err(DataError::NotAFile {
            kind: FileKind::Directory,
            ..
        })
    ));
    assert!(matches!(
        read_idx("/dev/zero"),
        Err(DataError::NotAFile {
            kind: FileKind::CharDevice,
            ..
        })
    ));

    write_sound(dir.path(), 20, 10);
    mkfifo(&dir.join("SHA256SUMS"));
    let err = within_timeout({
        let dir = dir.path().to_path_buf();
        move || {
            let opts = MnistOptions {
                verify_checksums: true,
                ..MnistOptions::default()
            };
            load_mnist::<f32>(&dir, &opts).unwrap_err()
        }
    });
    assert!(
        matches!(&err, DataError::NotAFile { file, kind: FileKind::Fifo } if file.ends_with("SHA256SUMS")),
        "{err:?}"
    );
}

// ---- The data directory ----

#[test]
fn a_data_directory_that_is_not_one_says_what_it_is() {
    let tmp = TempDir::new("data-dir");
    let file = tmp.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let fifo = tmp.join("a-fifo");
    mkfifo(&fifo);
    let dangling = tmp.join("a-link");
    std::os::unix::fs::symlink("gone", &dangling).unwrap();
    let cases: [(PathBuf, FileKind, String); 4] = [
        (
            file.clone(),
            FileKind::Regular,
            "is a file, not a directory".into(),
        ),
        (
            tmp.join("missing"),
            FileKind::Missing,
            "does not exist".into(),
        ),
        (fifo, FileKind::Fifo, "is a FIFO, not a directory".into()),
        (
            dangling,
            FileKind::DanglingLink {
                target: tmp.join("gone"),
            },
            format!(
                "is a symbolic link to {}, which does not exist",
                tmp.join("gone").display()
            ),
        ),
    ];
    for (path, kind, clause) in cases {
        for split in [None, Some(Split::Test)] {
            let err = within_timeout({
                let path = path.clone();
                move || match split {
                    None => f32_default(&path).map(drop).unwrap_err(),
                    Some(s) => load_mnist_split::<f32>(&path, s, &MnistOptions::default())
                        .map(drop)
                        .unwrap_err(),
                }
            });
            assert!(
                matches!(&err, DataError::NotADirectory { dir, kind: k } if dir == &path && k == &kind),
                "{}: {err:?}",
                path.display()
            );
            assert_eq!(
                err.to_string(),
                format!("the data directory {} {clause}", path.display())
            );
        }
    }
    // A link to a directory is a directory.
    let real = TempDir::new("data-dir-real");
    write_sound(real.path(), 20, 10);
    let link = tmp.join("link-to-data");
    std::os::unix::fs::symlink(real.path(), &link).unwrap();
    assert_eq!(f32_default(&link).unwrap().train_len(), 20);
}

// ---- One split ----

/// The test set loads from a directory that holds only the test files, or whose training files are
/// broken in any way: only the two test files are looked at.
#[test]
fn the_test_split_needs_only_the_test_files() {
    let dir = TempDir::new("split");
    write_sound(dir.path(), 20, 10);
    std::fs::remove_file(dir.join(GZ[0])).unwrap();
    std::fs::remove_file(dir.join(GZ[1])).unwrap();
    let test = load_mnist_split::<f32>(dir.path(), Split::Test, &MnistOptions::default()).unwrap();
    assert_eq!(test.x.shape(), &[10, 64]);
    assert_eq!(test.x[[1, 0]], 1.0 / 255.0);
    assert_eq!(test.t.as_index().unwrap(), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(
        (test.len(), test.num_classes, test.image_shape),
        (10, 10, (8, 8))
    );
    // Both splits need the training files.
    assert!(matches!(
        f32_default(dir.path()),
        Err(DataError::MnistFileNotFound {
            what: "training images",
            ..
        })
    ));
    assert!(matches!(
        load_mnist_split::<f32>(dir.path(), Split::Train, &MnistOptions::default()),
        Err(DataError::MnistFileNotFound {
            what: "training images",
            ..
        })
    ));

    // Broken training files: garbage, a bomb, a FIFO.
    std::fs::write(dir.join(GZ[0]), b"<html>not found</html>").unwrap();
    std::fs::write(
        dir.join(GZ[1]),
        gz_bomb(&header(0x08, &[1_000_000_000]), 1_000_000_000),
    )
    .unwrap();
    let load_test = {
        let dir = dir.path().to_path_buf();
        move || load_mnist_split::<f32>(&dir, Split::Test, &MnistOptions::default())
    };
    assert_eq!(fast(load_test.clone()).unwrap().len(), 10);
    assert!(matches!(
        f32_default(dir.path()),
        Err(DataError::BadMagic { .. })
    ));
    std::fs::remove_file(dir.join(GZ[0])).unwrap();
    mkfifo(&dir.join(GZ[0]));
    assert_eq!(within_timeout(load_test).unwrap().len(), 10);
}

/// One split's class count and checks are its own: inferred from its labels alone, labels out of
/// range refused, its bomb refused, its two files alone verified against the checksum list.
#[test]
fn one_split_is_checked_as_the_whole_set_is() {
    let dir = TempDir::new("split-checks");
    write_sound(dir.path(), 20, 10);
    // Test labels 0 and 2 only: inferred, class 1 is empty in the test labels.
    write_idx(
        dir.join(GZ[3]),
        &Array1::from_shape_fn(10, |i| if i % 2 == 0 { 0u8 } else { 2 }),
        Compression::Gzip,
    )
    .unwrap();
    let infer = MnistOptions {
        num_classes: None,
        ..MnistOptions::default()
    };
    let err = load_mnist_split::<f32>(dir.path(), Split::Test, &infer).unwrap_err();
    assert!(
        matches!(
            &err,
            DataError::EmptyClasses {
                searched: "test labels",
                label: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(
        "but class 1 has no example in the test labels; if the data really has 3 classes"
    ));
    // Told the count, as eval tells the model's: 2 is out of range for 2 classes.
    let two = MnistOptions {
        num_classes: Some(2),
        ..MnistOptions::default()
    };
    assert!(matches!(
        load_mnist_split::<f32>(dir.path(), Split::Test, &two),
        Err(DataError::LabelOutOfRange {
            index: 1,
            label: 2,
            num_classes: 2,
            ..
        })
    ));
    // The training split infers its own 10 classes.
    let train = load_mnist_split::<f64>(dir.path(), Split::Train, &infer).unwrap();
    assert_eq!((train.len(), train.num_classes), (20, 10));

    // Only the test files are verified: a list naming them alone passes.
    let sums: String = GZ[2..]
        .iter()
        .map(|name| {
            format!(
                "{}  {name}\n",
                bp_data::sha256_file(dir.join(name)).unwrap()
            )
        })
        .collect();
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
    let verify = MnistOptions {
        verify_checksums: true,
        num_classes: Some(3),
        ..MnistOptions::default()
    };
    assert!(load_mnist_split::<f32>(dir.path(), Split::Test, &verify).is_ok());
    assert!(matches!(
        load_mnist::<f32>(dir.path(), &verify),
        Err(DataError::ChecksumNotListed { .. })
    ));

    // A bomb in the test split is refused when it alone is loaded.
    let n: u32 = 1 << 24;
    std::fs::write(
        dir.join(GZ[2]),
        gz_bomb(&header(0x08, &[n, 8, 8]), 64 * u64::from(n)),
    )
    .unwrap();
    std::fs::write(dir.join(GZ[3]), gz_bomb(&header(0x08, &[n]), u64::from(n))).unwrap();
    let err = fast(|| load_mnist_split::<f32>(dir.path(), Split::Test, &two)).unwrap_err();
    assert!(
        matches!(&err, DataError::DataTooLarge { file, images, .. }
            if file == &dir.join(GZ[2]) && *images == 1 << 24),
        "{err:?}"
    );
}
