//! Hostile files and paths: outputs that name one file, symbolic links, FIFOs, devices, sockets,
//! read-only files and directories, hard links, endless and oversized inputs, and a model file
//! whose header passes 65,535 bytes. Every file is made here, in temporary directories.
//!
//! The runs of `bp-train` are bounded: each child gets an address-space limit of 2 GiB
//! (`RLIMIT_AS`, set in `pre_exec`) and is killed after a timeout, so that a regression that reads
//! `/dev/zero` to the end or waits on a FIFO fails the test instead of eating the machine or
//! hanging. In-process reads that could block run on a thread that is given up after a timeout.
//!
//! Root is not stopped by permission bits: the read-only cases check what root gets (the write
//! goes through, the file keeps its mode) and, for every other user, the refusal.
#![cfg(unix)]
// libc's mkfifo, mknod, geteuid and setrlimit.
#![allow(unsafe_code)]

mod common;

use std::ffi::CString;
use std::fs;
use std::io::{self};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bp_core::parse_layers;
use bp_train::files::{WriteMode, check_output, read_regular};
use bp_train::model_file::{
    AnyModel, MAX_MODEL_BYTES, Model, ModelError, ModelInfo, save_model, to_bytes,
};
use bp_train::{NetOptions, Network, Stream, TwoLayerNet, rng, write_atomic};
use common::bounded::{self, Run, mkfifo};
use common::write_digits;
use ndarray::Array2;

/// The address space a `bp-train` run may take.
const MEMORY: u64 = 2 << 30;

/// How long a `bp-train` run may take (a debug build, on a busy 2-core machine).
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long an in-process read or write may take.
const IN_PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

impl Run {
    /// The one line of stderr of a failed run, checked to be one line.
    #[track_caller]
    fn error_line(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{}{}", self.stdout, self.stderr);
        assert_eq!(self.stderr.lines().count(), 1, "{}", self.stderr);
        self.stderr.trim_end()
    }
}

/// Runs `bp-train` in `dir` with bounded memory and time.
#[track_caller]
fn bp_train(dir: &Path, args: &[&str]) -> Run {
    let mut command = bounded::command(args, MEMORY);
    command.current_dir(dir);
    bounded::run(command, TIMEOUT, &format!("bp-train {args:?}"))
}

/// Runs `f` on a thread and gives up on it after [`IN_PROCESS_TIMEOUT`] (a read blocked on a FIFO
/// is left behind, and the test fails).
#[track_caller]
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(IN_PROCESS_TIMEOUT)
        .unwrap_or_else(|_| panic!("{what} did not return within {IN_PROCESS_TIMEOUT:?}"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// A character device that is `/dev/null`'s twin, made in `dir` (only root may): tests write over
/// it rather than over the real `/dev/null`, which a regression running as root would destroy.
fn null_device_in(dir: &Path) -> PathBuf {
    assert!(is_root());
    let path = dir.join("null");
    let dev = libc::makedev(1, 3);
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mknod(c_path(&path).as_ptr(), libc::S_IFCHR | 0o666, dev) },
        0,
        "{}",
        io::Error::last_os_error()
    );
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every name in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A small model for 8x8 images of 4 classes.
fn small_model(path: &Path) {
    let net = TwoLayerNet::<f32>::new(64, 8, 4, 0.5, &mut rng(3, Stream::Init));
    save_model(path, &net, &ModelInfo::new((8, 8))).unwrap();
}

/// A plain PGM image of 8x8: a light stroke on black.
fn good_image(path: &Path) {
    let mut text = String::from("P2 8 8 255\n");
    for r in 0..8 {
        for c in 0..8 {
            text.push_str(if c == 3 || r == 4 { "250 " } else { "0 " });
        }
        text.push('\n');
    }
    fs::write(path, text).unwrap();
}

/// The source of an error, as text: what the library says is wrong with the path.
fn cause(err: &dyn std::error::Error) -> String {
    err.source().map(ToString::to_string).unwrap_or_default()
}

// 1. Two outputs, or an output and an input, naming one file.

#[test]
fn outputs_naming_one_file_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let top = fs::canonicalize(tmp.path()).unwrap();
    let data = top.join("data");
    fs::create_dir(&data).unwrap();
    write_digits(&data, 40, 20, 4);
    let dir = top.join("work");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("old.safetensors"), b"the old model").unwrap();
    fs::write(dir.join("hard1"), b"one file, two names").unwrap();
    fs::hard_link(dir.join("hard1"), dir.join("hard2")).unwrap();
    symlink("old.safetensors", dir.join("link.safetensors")).unwrap();
    symlink("sub/new.safetensors", dir.join("dangling.safetensors")).unwrap();
    symlink("link.safetensors", dir.join("chain.safetensors")).unwrap();
    symlink(&data, dir.join("data-link")).unwrap();
    let model = dir.join("model.safetensors");
    small_model(&model);
    let before: Vec<(String, Vec<u8>)> = listing(&dir)
        .into_iter()
        .filter_map(|n| fs::read(dir.join(&n)).ok().map(|b| (n, b)))
        .collect();
    let d = s(&data);
    let images = data.join("train-images-idx3-ubyte.gz");
    let labels = data.join("t10k-labels-idx1-ubyte");
    let work = |name: &str| dir.join(name).display().to_string();
    // (working directory, arguments, the two names and paths the message gives, the file)
    let cases: Vec<(PathBuf, Vec<&str>, String, String)> = vec![
        (
            dir.clone(),
            vec![
                "--data-dir",
                d,
                "--save",
                "m.safetensors",
                "--plot",
                "m.safetensors",
            ],
            "--save m.safetensors and --plot m.safetensors".into(),
            work("m.safetensors"),
        ),
        (
            dir.join("sub"),
            vec![
                "--data-dir",
                d,
                "--save",
                "../m.safetensors",
                "--metrics",
                "./../m.safetensors",
            ],
            "--save ../m.safetensors and --metrics ./../m.safetensors".into(),
            work("m.safetensors"),
        ),
        (
            dir.clone(),
            vec![
                "--data-dir",
                d,
                "--plot",
                "sub/../c.svg",
                "--metrics",
                "./c.svg",
            ],
            "--plot sub/../c.svg and --metrics ./c.svg".into(),
            work("c.svg"),
        ),
        (
            dir.clone(),
            vec![
                "--data-dir",
                d,
                "--save",
                "old.safetensors",
                "--plot",
                "link.safetensors",
            ],
            "--save old.safetensors and --plot link.safetensors".into(),
            work("old.safetensors"),
        ),
        (
            dir.clone(),
            vec![
                "--data-dir",
                d,
                "--save",
                "chain.safetensors",
                "--metrics",
                "old.safetensors",
            ],
            "--save chain.safetensors and --metrics old.safetensors".into(),
            work("old.safetensors"),
        ),
        (
            dir.clone(),
            vec![
                "--data-dir",
                d,
                "--save",
                "dangling.safetensors",
                "--plot",
                "sub/new.safetensors",
            ],
            "--save dangling.safetensors and --plot sub/new.safetensors".into(),
            work("sub/new.safetensors"),
        ),
        (
            dir.clone(),
            vec!["--data-dir", d, "--save", "hard1", "--metrics", "hard2"],
            "--save hard1 and --metrics hard2".into(),
            work("hard1"),
        ),
        (
            dir.clone(),
            vec!["--data-dir", d, "--plot", s(&images)],
            format!("--plot {0} and the data file {0}", images.display()),
            images.display().to_string(),
        ),
        (
            dir.clone(),
            vec!["--data-dir", "data-link", "--metrics", s(&labels)],
            format!(
                "--metrics {} and the data file data-link/t10k-labels-idx1-ubyte",
                labels.display()
            ),
            labels.display().to_string(),
        ),
        (
            dir.clone(),
            vec![
                "eval",
                "--model",
                "model.safetensors",
                "--data-dir",
                d,
                "--predictions",
                "model.safetensors",
            ],
            "--predictions model.safetensors and --model model.safetensors".into(),
            work("model.safetensors"),
        ),
        (
            dir.join("sub"),
            vec![
                "eval",
                "--model",
                "../model.safetensors",
                "--data-dir",
                d,
                "--predictions",
                "../sub/../model.safetensors",
            ],
            "--predictions ../sub/../model.safetensors and --model ../model.safetensors".into(),
            work("model.safetensors"),
        ),
        (
            dir.clone(),
            vec![
                "eval",
                "--model",
                "model.safetensors",
                "--data-dir",
                d,
                "--predictions",
                s(&labels),
            ],
            format!("--predictions {0} and the data file {0}", labels.display()),
            labels.display().to_string(),
        ),
    ];
    for (cwd, args, names, file) in &cases {
        let run = bp_train(cwd, args);
        let advice = if names.contains("the data file") || names.contains("--model") {
            "an output may not overwrite an input"
        } else {
            "give each output a file of its own"
        };
        assert_eq!(
            run.error_line(2),
            format!("error: {names} name the same file ({file}); {advice}"),
            "{args:?}"
        );
        assert_eq!(run.stdout, "", "{args:?}: nothing is loaded or trained");
    }
    // Nothing was written, and nothing new created.
    let after: Vec<(String, Vec<u8>)> = listing(&dir)
        .into_iter()
        .filter_map(|n| fs::read(dir.join(&n)).ok().map(|b| (n, b)))
        .collect();
    assert_eq!(after, before);
    assert_eq!(listing(&dir.join("sub")), Vec::<String>::new());
    assert!(
        fs::symlink_metadata(dir.join("link.safetensors"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Distinct files, hard-linked data files and all, are fine; inputs may be the same file.
    let run = bp_train(
        &dir,
        &[
            "--data-dir",
            d,
            "--iters",
            "1",
            "--hidden",
            "4",
            "--quiet",
            "--save",
            "a.safetensors",
            "--plot",
            "sub/a.svg",
            "--metrics",
            "a.csv",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(dir.join("a.safetensors").is_file() && dir.join("sub/a.svg").is_file());
}

// 2. Atomic writes over links, special files, read-only files; permissions kept.

#[test]
fn an_atomic_write_goes_through_links_to_the_file_they_name() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    let links = tmp.path().join("links");
    fs::create_dir(&real).unwrap();
    fs::create_dir(&links).unwrap();
    let target = real.join("model.bin");
    fs::write(&target, b"old").unwrap();
    set_mode(&target, 0o640);
    symlink(&target, links.join("a")).unwrap();
    symlink("a", links.join("b")).unwrap(); // a chain: b -> a -> real/model.bin
    let written_in = |path: &Path, bytes: &'static [u8]| {
        let (real, links) = (real.clone(), links.clone());
        write_atomic(path, move |w| {
            // The temporary file is in the target's directory, not the link's.
            assert_eq!(listing(&links), ["a", "b"]);
            assert_eq!(listing(&real).len(), 2, "{:?}", listing(&real));
            w.write_all(bytes)
        })
    };
    written_in(&links.join("a"), b"through a link").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"through a link");
    assert_eq!(fs::read_link(links.join("a")).unwrap(), target);
    assert_eq!(mode(&target), 0o640, "the file keeps its mode");
    written_in(&links.join("b"), b"through a chain").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"through a chain");
    assert_eq!(fs::read_link(links.join("b")).unwrap(), Path::new("a"));
    assert_eq!(listing(&real), ["model.bin"]);
    assert_eq!(listing(&links), ["a", "b"]);

    // A dangling link: the file it names is created, and the link stays.
    symlink("../real/new.bin", links.join("dangling")).unwrap();
    write_atomic(&links.join("dangling"), |w| w.write_all(b"new")).unwrap();
    assert_eq!(fs::read(real.join("new.bin")).unwrap(), b"new");
    assert!(
        fs::symlink_metadata(links.join("dangling"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // ... unless its directory is missing.
    symlink("../nowhere/x.bin", links.join("lost")).unwrap();
    let err = write_atomic(&links.join("lost"), |w| w.write_all(b"x")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        format!(
            "the directory {} does not exist",
            links.join("../nowhere").display()
        )
    );
    // A loop of links.
    symlink("loop2", links.join("loop1")).unwrap();
    symlink("loop1", links.join("loop2")).unwrap();
    let err = write_atomic(&links.join("loop1"), |w| w.write_all(b"x")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "it is a loop of symbolic links (or a chain of more than 40)"
    );
    assert_eq!(listing(&real), ["model.bin", "new.bin"]);
}

#[test]
fn an_atomic_write_refuses_what_is_not_a_regular_file_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let socket = d.join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    fs::create_dir(d.join("dir")).unwrap();
    symlink("fifo", d.join("to-fifo")).unwrap();
    let mut cases = vec![
        (fifo.clone(), "it is a FIFO, not a regular file".to_owned()),
        (
            socket.clone(),
            "it is a socket, not a regular file".to_owned(),
        ),
        (d.join("dir"), "it is a directory".to_owned()),
        (
            d.join("to-fifo"),
            format!(
                "its link target {} is a FIFO, not a regular file",
                fifo.display()
            ),
        ),
    ];
    if is_root() {
        // Root could replace a device node: try one made here, never the real /dev/null.
        let null = null_device_in(d);
        cases.push((
            null,
            "it is a character device, not a regular file".to_owned(),
        ));
    } else {
        cases.push((
            PathBuf::from("/dev/null"),
            "it is a character device, not a regular file".to_owned(),
        ));
    }
    let before = listing(d);
    for (path, message) in cases {
        let p = path.clone();
        let err = within("write_atomic", move || {
            write_atomic(&p, |w| w.write_all(b"x")).unwrap_err()
        });
        assert_eq!(err.to_string(), message, "{}", path.display());
        // The library's check for the command line gives the same answer.
        let err = check_output(&path, WriteMode::InPlace).unwrap_err();
        assert_eq!(err.to_string(), message, "{}", path.display());
    }
    assert_eq!(listing(d), before, "no temporary file is left");
    let fifo_type = fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(fifo_type.is_fifo());
    if is_root() {
        assert!(
            fs::metadata(d.join("null"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
}

#[test]
fn a_read_only_file_or_directory_is_refused_except_for_root() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("read-only.bin");
    fs::write(&file, b"old").unwrap();
    set_mode(&file, 0o444);
    let result = write_atomic(&file, |w| w.write_all(b"new"));
    if is_root() {
        result.unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"new");
        assert_eq!(mode(&file), 0o444, "root's write keeps the file read-only");
    } else {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(
            err.to_string()
                .starts_with("it cannot be written (Permission denied")
        );
        assert_eq!(fs::read(&file).unwrap(), b"old");
        assert_eq!(mode(&file), 0o444);
    }

    let dir = tmp.path().join("read-only-dir");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("m.bin"), b"old").unwrap();
    set_mode(&dir, 0o555);
    for path in [dir.join("m.bin"), dir.join("new.bin")] {
        let result = write_atomic(&path, |w| w.write_all(b"new"));
        let checked = check_output(&path, WriteMode::Replace);
        if is_root() {
            result.unwrap();
            checked.unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"new");
        } else {
            for err in [result.unwrap_err(), checked.unwrap_err()] {
                assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
                assert!(
                    err.to_string().starts_with(&format!(
                        "cannot create a file in the directory {} (Permission denied",
                        dir.display()
                    )),
                    "{err}"
                );
            }
        }
    }
    // A file written in place (the metrics) needs no new file in its directory.
    check_output(&dir.join("m.bin"), WriteMode::InPlace).unwrap();
    set_mode(&dir, 0o755);
    assert_eq!(listing(&dir).len(), if is_root() { 2 } else { 1 });
}

#[test]
fn a_replaced_file_keeps_its_mode_and_a_hard_link_keeps_the_old_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("m.bin");
    for m in [0o600, 0o640, 0o755, 0o604] {
        fs::write(&file, b"old").unwrap();
        set_mode(&file, m);
        write_atomic(&file, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"new");
        assert_eq!(mode(&file), m);
    }
    let other = tmp.path().join("other-name.bin");
    fs::hard_link(&file, &other).unwrap();
    write_atomic(&file, |w| w.write_all(b"newer")).unwrap();
    assert_eq!(fs::read(&file).unwrap(), b"newer");
    assert_eq!(fs::read(&other).unwrap(), b"new", "as documented");
}

// 3. Outputs that cannot be written, found before the data is loaded.

#[test]
fn unwritable_outputs_are_refused_before_the_data_is_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let d = fs::canonicalize(tmp.path()).unwrap();
    mkfifo(&d.join("fifo"));
    fs::create_dir(d.join("sub")).unwrap();
    fs::write(d.join("file.txt"), b"a file").unwrap();
    fs::create_dir(d.join("ro")).unwrap();
    set_mode(&d.join("ro"), 0o555);
    fs::write(d.join("ro.safetensors"), b"read-only").unwrap();
    set_mode(&d.join("ro.safetensors"), 0o444);
    symlink("nodir/x.svg", d.join("dangling.svg")).unwrap();
    symlink("sub", d.join("dir-link")).unwrap();
    let null = if is_root() {
        null_device_in(&d)
    } else {
        PathBuf::from("/dev/null")
    };
    // No data directory: had the data been loaded first, the error would be about it.
    let no_data = ["--data-dir", "no-data"];
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--save", "nodir/m.safetensors"],
            "--save nodir/m.safetensors: the directory nodir does not exist".into(),
        ),
        (
            vec!["--plot", "sub"],
            "--plot sub: it is a directory".into(),
        ),
        (
            vec!["--plot", "sub/"],
            "--plot sub/: it names a directory, not a file".into(),
        ),
        (
            vec!["--save", "dir-link"],
            "--save dir-link: its link target sub is a directory".into(),
        ),
        (
            vec!["--metrics", "fifo"],
            "--metrics fifo: it is a FIFO, not a regular file".into(),
        ),
        (
            vec!["--save", s(&null)],
            format!(
                "--save {}: it is a character device, not a regular file",
                null.display()
            ),
        ),
        (
            vec!["--metrics", "file.txt/m.csv"],
            "--metrics file.txt/m.csv: file.txt is not a directory".into(),
        ),
        (
            vec!["--plot", "dangling.svg"],
            "--plot dangling.svg: the directory nodir does not exist".into(),
        ),
        (
            vec![
                "eval",
                "--model",
                "missing.safetensors",
                "--predictions",
                "sub",
            ],
            "--predictions sub: it is a directory".into(),
        ),
        (
            vec![
                "eval",
                "--model",
                "missing.safetensors",
                "--predictions",
                "fifo",
            ],
            "--predictions fifo: it is a FIFO, not a regular file".into(),
        ),
    ];
    for (flags, message) in &cases {
        let mut args = flags.clone();
        if args[0] != "eval" {
            args.extend(no_data);
        }
        let run = bp_train(&d, &args);
        assert_eq!(run.error_line(2), format!("error: {message}"), "{args:?}");
    }
    // Read-only: refused for a user, written by root (who then fails on the missing data).
    for (flag, path, refusal) in [
        (
            "--save",
            "ro/m.safetensors",
            "cannot create a file in the directory ro (Permission denied".to_owned(),
        ),
        (
            "--plot",
            "ro.safetensors",
            "it cannot be written (Permission denied".to_owned(),
        ),
        (
            "--metrics",
            "ro/m.csv",
            "cannot create a file in the directory ro (Permission denied".to_owned(),
        ),
    ] {
        let run = bp_train(&d, &[flag, path, "--data-dir", "no-data"]);
        if is_root() {
            // Past the output checks, to the data, which is missing.
            assert_ne!(run.code, Some(0));
            assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
            assert!(run.stderr.contains("no-data"), "{}", run.stderr);
            assert!(!run.stderr.contains(flag), "{}", run.stderr);
        } else {
            let line = run.error_line(2);
            assert!(
                line.starts_with(&format!("error: {flag} {path}: {refusal}")),
                "{line}"
            );
        }
    }
    set_mode(&d.join("ro"), 0o755);
    assert_eq!(
        listing(&d.join("ro")),
        Vec::<String>::new(),
        "the checks leave nothing"
    );
    assert_eq!(fs::read(d.join("ro.safetensors")).unwrap(), b"read-only");
    assert!(
        fs::symlink_metadata(d.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

// 4. Unbounded and oversized reads.

#[test]
fn endless_devices_and_oversized_files_are_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small_model(&d.join("m.safetensors"));
    good_image(&d.join("good.pgm"));
    // Sparse files one byte over the caps: refused by their size, before a byte is read.
    let big_model = fs::File::create(d.join("big.safetensors")).unwrap();
    big_model.set_len(MAX_MODEL_BYTES + 1).unwrap();
    let big_image = fs::File::create(d.join("big.pgm")).unwrap();
    big_image.set_len((1 << 30) + 1).unwrap();

    let run = bp_train(d, &["eval", "--model", "/dev/zero"]);
    assert_eq!(
        run.error_line(1),
        "error: cannot read the model file /dev/zero: it is a character device, not a regular file"
    );
    let run = bp_train(d, &["predict", "--model", "big.safetensors", "good.pgm"]);
    assert_eq!(
        run.error_line(1),
        format!(
            "error: cannot read the model file big.safetensors: it is {} bytes (16.1 GiB), more \
             than the {MAX_MODEL_BYTES} bytes (16.1 GiB) read from such a file",
            MAX_MODEL_BYTES + 1
        )
    );
    let run = bp_train(
        d,
        &[
            "predict",
            "--model",
            "m.safetensors",
            "/dev/zero",
            "/dev/urandom",
            "big.pgm",
            "good.pgm",
        ],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "error: cannot read the image /dev/zero: it is a character device, not a regular file",
            "error: cannot read the image /dev/urandom: it is a character device, not a regular file",
            "error: cannot read the image big.pgm: it is 1073741825 bytes (1.0 GiB), more than the \
             1073741824 bytes (1.0 GiB) read from such a file",
        ]
    );
    assert!(
        run.stdout.lines().any(|l| l.starts_with("good.pgm: ")),
        "{}",
        run.stdout
    );

    // In the library: the model cap, and a file that says it is empty but is not (as files in
    // /proc do) is cut at the limit.
    let err = Model::<f32>::load(d.join("big.safetensors")).unwrap_err();
    assert!(
        matches!(&err, ModelError::Read { source, .. } if source.kind() == io::ErrorKind::FileTooLarge)
    );
    assert_eq!(fs::metadata("/proc/self/status").unwrap().len(), 0);
    let err = read_regular(Path::new("/proc/self/status"), 16).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
    assert_eq!(
        err.to_string(),
        "it holds more than the 16 bytes read from such a file"
    );
    assert!(
        read_regular(Path::new("/proc/self/status"), 1 << 20)
            .unwrap()
            .starts_with(b"Name:")
    );
}

// 5. FIFOs and other special files as inputs.

#[test]
fn fifos_and_special_files_as_inputs_are_refused_at_once_and_the_other_images_classified() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small_model(&d.join("m.safetensors"));
    good_image(&d.join("good.pgm"));
    mkfifo(&d.join("fifo"));
    fs::create_dir(d.join("dir.png")).unwrap();
    symlink("nowhere.png", d.join("dangling.png")).unwrap();
    symlink("good.pgm", d.join("link.pgm")).unwrap();
    symlink("link.pgm", d.join("chain.pgm")).unwrap();
    symlink("fifo", d.join("fifo-link.png")).unwrap();
    fs::write(
        d.join("no-access.pgm"),
        fs::read(d.join("good.pgm")).unwrap(),
    )
    .unwrap();
    set_mode(&d.join("no-access.pgm"), 0o000);

    let run = bp_train(d, &["eval", "--model", "fifo"]);
    assert_eq!(
        run.error_line(1),
        "error: cannot read the model file fifo: it is a FIFO, not a regular file"
    );
    let run = bp_train(d, &["predict", "--model", "dir.png", "good.pgm"]);
    assert_eq!(
        run.error_line(1),
        "error: cannot read the model file dir.png: it is a directory"
    );
    let run = bp_train(
        d,
        &[
            "predict",
            "--model",
            "m.safetensors",
            "fifo",
            "good.pgm",
            "dir.png",
            "dangling.png",
            "chain.pgm",
            "fifo-link.png",
            "/dev/null",
            "no-access.pgm",
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let mut expected = vec![
        "error: cannot read the image fifo: it is a FIFO, not a regular file".to_owned(),
        "error: cannot read the image dir.png: it is a directory".to_owned(),
        "error: cannot read the image dangling.png: it is a symbolic link to nowhere.png, which \
         does not exist"
            .to_owned(),
        "error: cannot read the image fifo-link.png: it is a FIFO, not a regular file".to_owned(),
        "error: cannot read the image /dev/null: it is a character device, not a regular file"
            .to_owned(),
    ];
    if !is_root() {
        expected.push(
            "error: cannot read the image no-access.pgm: Permission denied (os error 13)"
                .to_owned(),
        );
    }
    assert_eq!(run.stderr.lines().collect::<Vec<_>>(), expected);
    let classified: Vec<&str> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split(':').next().unwrap())
        .collect();
    let mut want = vec!["good.pgm", "chain.pgm"];
    if is_root() {
        want.push("no-access.pgm");
    }
    assert_eq!(classified, want, "{}", run.stdout);
    assert!(
        fs::symlink_metadata(d.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // In the library, without waiting for a writer.
    let fifo = d.join("fifo");
    let err = within("Model::load of a FIFO", move || {
        AnyModel::load(&fifo).unwrap_err()
    });
    assert!(matches!(err, ModelError::Read { .. }));
    assert_eq!(cause(&err), "it is a FIFO, not a regular file");
    let fifo = d.join("fifo");
    let err = within("read_regular of a FIFO", move || {
        read_regular(&fifo, 100).unwrap_err()
    });
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

// 6. A model file whose header passes 65,535 bytes.

/// The length of a safetensors file's header.
fn header_len(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[test]
fn a_model_of_hundreds_of_layers_saves_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    for (block, blocks) in [
        ("affine 4, relu", 260),
        ("affine 4, batchnorm, relu, dropout 0.1", 130),
    ] {
        let list = format!("{}, affine 3", vec![block; blocks].join(", "));
        let layers = parse_layers(&list).unwrap();
        assert!(layers.len() >= 500, "{}", layers.len());
        let net = Network::<f64>::new(
            &[6],
            layers.clone(),
            NetOptions::default(),
            &mut rng(1, Stream::Init),
        )
        .unwrap();
        let info = ModelInfo::new((2, 3));
        let bytes = to_bytes(&net, &info);
        assert!(header_len(&bytes) > 65_535, "{}", header_len(&bytes));
        let path = tmp.path().join(format!("deep-{blocks}.safetensors"));
        save_model(&path, &net, &info).unwrap();
        assert_eq!(fs::read(&path).unwrap(), bytes);
        let model = Model::<f64>::load(&path).unwrap();
        assert_eq!(model.net.specs(), &layers[..]);
        assert_eq!(model.info, info);
        let x = Array2::from_shape_fn((5, 6), |(i, j)| (i * 6 + j) as f64 / 30.0).into_dyn();
        assert_eq!(model.net.predict(x.clone()), net.predict(x));
    }

    // And from the command line: a run of 501 layers saves its model, and eval reads it.
    let dir = tmp.path();
    write_digits(dir, 40, 20, 4);
    let list = format!("{}, affine 4", vec!["affine 4, relu"; 250].join(", "));
    let run = bp_train(
        dir,
        &[
            "--data-dir",
            ".",
            "--layers",
            &list,
            "--iters",
            "1",
            "--save",
            "deep.safetensors",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("saved deep.safetensors (epoch 1"),
        "{}",
        run.stdout
    );
    let bytes = fs::read(dir.join("deep.safetensors")).unwrap();
    assert!(header_len(&bytes) > 65_535);
    let run = bp_train(
        dir,
        &["eval", "--model", "deep.safetensors", "--data-dir", "."],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains(" of 20 correct)"), "{}", run.stdout);
}
