//! The files a command writes, checked before it loads or trains anything: each output by the
//! library's one rule ([`check_output`]: a file, not a directory or a special file, that may be
//! written, in a directory that exists and takes a new file), then every output against the other
//! outputs and the inputs, so that no two of them are the same file.
//!
//! Two paths are the same file when they lead to the same file: for a file that exists, the same
//! device and inode (through symbolic links, `./` and `../` spellings, and hard links); for one that
//! does not exist yet, the same name in the same directory, once the links to it and the directory
//! are resolved.

use std::fs;
use std::path::{Path, PathBuf};

use bp_train::files::{WriteMode, check_output, link_target};

use crate::cli::EvalArgs;
use crate::run::RunConfig;

/// A file a command reads or writes, and what names it on the command line.
#[derive(Clone, Debug)]
pub struct Named<'a> {
    /// The flag (`--save`), or what the file is (`the data file`).
    pub name: &'static str,
    /// The path, as given.
    pub path: &'a Path,
    /// How the file is written, if it is an output; `None` for an input.
    pub output: Option<WriteMode>,
}

impl<'a> Named<'a> {
    fn output(name: &'static str, path: &'a Path, mode: WriteMode) -> Self {
        Named {
            name,
            path,
            output: Some(mode),
        }
    }

    fn input(name: &'static str, path: &'a Path) -> Self {
        Named {
            name,
            path,
            output: None,
        }
    }
}

/// The outputs and inputs of a training run: `--save`, `--plot`, `--metrics`, and the data files.
pub fn check_train(config: &RunConfig, plot: Option<&Path>) -> Result<(), String> {
    let data = data_files(&config.data_dir);
    let mut files = Vec::new();
    if let Some(save) = &config.save {
        files.push(Named::output("--save", &save.path, WriteMode::Replace));
    }
    if let Some(plot) = plot {
        files.push(Named::output("--plot", plot, WriteMode::Replace));
    }
    if let Some(metrics) = &config.train.metrics {
        files.push(Named::output("--metrics", metrics, WriteMode::InPlace));
    }
    files.extend(data.iter().map(|p| Named::input("the data file", p)));
    check_files(&files)
}

/// The outputs and inputs of `eval`: `--predictions`, `--model` and the data files.
pub fn check_eval(args: &EvalArgs, data_dir: &Path) -> Result<(), String> {
    let Some(predictions) = &args.predictions else {
        return Ok(());
    };
    let data = data_files(data_dir);
    let mut files = vec![
        Named::output("--predictions", predictions, WriteMode::Replace),
        Named::input("--model", &args.model),
    ];
    files.extend(data.iter().map(|p| Named::input("the data file", p)));
    check_files(&files)
}

/// Checks each output by [`check_output`], then that no output is the same file as another output
/// or an input; the message of the first problem, on one line, naming the flags and the paths.
pub fn check_files(files: &[Named<'_>]) -> Result<(), String> {
    for f in files {
        if let Some(mode) = f.output {
            check_output(f.path, mode)
                .map_err(|e| format!("{} {}: {e}", f.name, f.path.display()))?;
        }
    }
    let resolved: Vec<Option<Resolved>> = files.iter().map(|f| resolve(f.path)).collect();
    for (i, a) in files.iter().enumerate() {
        for (j, b) in files.iter().enumerate().skip(i + 1) {
            if a.output.is_none() && b.output.is_none() {
                continue; // two inputs may well be one file
            }
            let (Some(ra), Some(rb)) = (&resolved[i], &resolved[j]) else {
                continue;
            };
            if ra.id == rb.id {
                let advice = if a.output.is_some() && b.output.is_some() {
                    "give each output a file of its own"
                } else {
                    "an output may not overwrite an input"
                };
                return Err(format!(
                    "{} {} and {} {} name the same file ({}); {advice}",
                    a.name,
                    a.path.display(),
                    b.name,
                    b.path.display(),
                    ra.shown.display()
                ));
            }
        }
    }
    Ok(())
}

/// What makes two paths the same file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FileId {
    /// A file that exists: its device and inode (on unix; elsewhere its canonical path).
    #[cfg_attr(not(unix), allow(dead_code))]
    Inode(u64, u64),
    /// A file that does not exist yet: the canonical path it will be created at.
    Location(PathBuf),
}

/// A path resolved to a [`FileId`], with the path to show for it.
#[derive(Clone, Debug)]
struct Resolved {
    id: FileId,
    shown: PathBuf,
}

/// The file a path names, if that can be found out (a path whose directory is missing cannot be
/// the same file as another: the output check refuses it first).
fn resolve(path: &Path) -> Option<Resolved> {
    if let Ok(meta) = fs::metadata(path) {
        let shown = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            FileId::Inode(meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let id = {
            let _ = meta;
            FileId::Location(shown.clone())
        };
        return Some(Resolved { id, shown });
    }
    // Not there yet (a dangling link too): where it will be created.
    let target = link_target(path).ok()?;
    let name = target.file_name()?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let shown = fs::canonicalize(dir).ok()?.join(name);
    Some(Resolved {
        id: FileId::Location(shown.clone()),
        shown,
    })
}

/// The data files in `dir` that exist, under every name bp-data's loader takes for them
/// (`train-images-idx3-ubyte[.gz]`, `train-images.idx3-ubyte[.gz]`, and so on for the four files).
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (stem, idx) in [
        ("train-images", "idx3"),
        ("train-labels", "idx1"),
        ("t10k-images", "idx3"),
        ("t10k-labels", "idx1"),
    ] {
        for sep in ["-", "."] {
            for ext in [".gz", ""] {
                let path = dir.join(format!("{stem}{sep}{idx}-ubyte{ext}"));
                if fs::metadata(&path).is_ok() {
                    files.push(path);
                }
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_new_file_spelt_two_ways_is_one_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let a = dir.path().join("m.safetensors");
        let b = dir.path().join("sub/../m.safetensors");
        let c = dir.path().join("sub/m.safetensors");
        let files = [
            Named::output("--save", &a, WriteMode::Replace),
            Named::output("--plot", &c, WriteMode::Replace),
            Named::output("--metrics", &b, WriteMode::InPlace),
        ];
        let msg = check_files(&files).unwrap_err();
        assert_eq!(
            msg,
            format!(
                "--save {} and --metrics {} name the same file ({}); give each output a file of \
                 its own",
                a.display(),
                b.display(),
                fs::canonicalize(dir.path())
                    .unwrap()
                    .join("m.safetensors")
                    .display()
            )
        );
        assert!(check_files(&files[..2]).is_ok());
        // Nothing was created by the checks.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn data_files_are_found_under_every_name_the_loader_takes() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "train-images-idx3-ubyte.gz",
            "t10k-labels.idx1-ubyte",
            "other",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(
            data_files(dir.path()),
            [
                dir.path().join("train-images-idx3-ubyte.gz"),
                dir.path().join("t10k-labels.idx1-ubyte")
            ]
        );
    }
}
