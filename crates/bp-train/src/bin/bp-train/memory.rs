//! How much memory a run may use, and the check that refuses a run estimated to need more,
//! before anything is allocated (see [`bp_train::estimate_memory`]).
//!
//! On Linux the limit is the least of: the system's `MemAvailable` (`/proc/meminfo`), what the
//! process's address-space limit (`ulimit -v`, `/proc/self/limits`) leaves beyond what it has
//! mapped already (`VmSize`, `/proc/self/status`), and what the memory limits of its control group
//! and the groups above it leave (`memory.max` less `memory.current`, cgroup v2). Elsewhere there
//! is no limit unless `--max-memory-mib` sets one, which also replaces the detected limit.

use std::fmt;
use std::path::{Path, PathBuf};

use bp_train::{Bytes, MemoryEstimate, OptimizerKind};

/// A limit on the memory of a run, and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The bytes the run may use.
    pub bytes: u128,
    /// Where the limit comes from.
    pub source: Source,
}

/// Where a [`Limit`] comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--max-memory-mib`.
    Flag,
    /// The system's available memory.
    Available,
    /// The process's address-space limit, less what it has mapped.
    AddressSpace,
    /// The memory limit of a control group, less what the group uses.
    Cgroup(PathBuf),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = Bytes(self.bytes);
        match &self.source {
            Source::Flag => write!(f, "--max-memory-mib allows {bytes}"),
            Source::Available => write!(f, "this machine has {bytes} available"),
            Source::AddressSpace => write!(
                f,
                "the process's address-space limit (ulimit -v) leaves {bytes}"
            ),
            Source::Cgroup(dir) => write!(
                f,
                "the memory limit of the control group {} leaves {bytes}",
                dir.display()
            ),
        }
    }
}

impl Limit {
    /// The limit `--max-memory-mib` sets.
    pub fn from_mib(mib: u64) -> Limit {
        Limit {
            bytes: u128::from(mib) << 20,
            source: Source::Flag,
        }
    }

    /// The least of the limits this system sets (see the module documentation), or `None` if
    /// none can be read.
    pub fn detect() -> Option<Limit> {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let mut limits = Vec::new();
        if let Some(bytes) = read("/proc/meminfo").and_then(|t| kib_field(&t, "MemAvailable:")) {
            limits.push(Limit {
                bytes,
                source: Source::Available,
            });
        }
        if let (Some(limit), Some(mapped)) = (
            read("/proc/self/limits").and_then(|t| address_space_limit(&t)),
            read("/proc/self/status").and_then(|t| kib_field(&t, "VmSize:")),
        ) {
            limits.push(Limit {
                bytes: limit.saturating_sub(mapped),
                source: Source::AddressSpace,
            });
        }
        if let Some(group) = read("/proc/self/cgroup").and_then(|t| cgroup_path(&t)) {
            limits.extend(cgroup_limits(Path::new("/sys/fs/cgroup"), &group));
        }
        limits.into_iter().min_by_key(|l| l.bytes)
    }
}

/// A `Name:   1234 kB` line of `/proc/meminfo` or `/proc/self/status`, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u128> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut words = line[name.len()..].split_whitespace();
    let kib: u128 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then(|| kib.saturating_mul(1024))
}

/// The soft limit of `Max address space` in `/proc/self/limits`, or `None` if unlimited.
fn address_space_limit(text: &str) -> Option<u128> {
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The process's control group in the unified (v2) hierarchy, from `/proc/self/cgroup`: the
/// path of its `0::/path` line.
fn cgroup_path(text: &str) -> Option<PathBuf> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from(path.trim()))
}

/// What the memory limits of `group` and the groups above it leave, under the cgroup v2 mount
/// `root`: `memory.max` less `memory.current`, for each group that has a limit.
fn cgroup_limits(root: &Path, group: &Path) -> Vec<Limit> {
    let read = |dir: &Path, file: &str| -> Option<u128> {
        std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    group
        .ancestors()
        .filter_map(|g| {
            let dir = root.join(g.strip_prefix("/").unwrap_or(g));
            let max = read(&dir, "memory.max")?;
            let current = read(&dir, "memory.current").unwrap_or(0);
            Some(Limit {
                bytes: max.saturating_sub(current),
                source: Source::Cgroup(dir),
            })
        })
        .collect()
}

/// A count with thousands separated: `784,000,000,000`.
pub fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() * 4 / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Why a run was refused: what it needs, and the limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct TooBig {
    /// The estimate.
    pub estimate: MemoryEstimate,
    /// The batch size.
    pub batch_size: usize,
    /// The optimizer, whose state the estimate counts.
    pub optimizer: OptimizerKind,
    /// The element type's name.
    pub dtype: &'static str,
    /// The limit, or `None` if the run needs more than any allocation can be.
    pub limit: Option<Limit>,
}

impl TooBig {
    fn message(&self) -> String {
        let e = &self.estimate;
        let copies = self.optimizer.state_copies();
        let state = match copies {
            0 => String::new(),
            1 => format!(" and {}'s copy", self.optimizer.name()),
            n => format!(" and {}'s {n} copies", self.optimizer.name()),
        };
        let needs = format!(
            "the network and its buffers need about {} of memory: the network {} ({} {} \
             parameters with gradients{state}), activations {} (batches of {}), batch buffers \
             {}, data {}",
            Bytes(e.total()),
            Bytes(e.network),
            grouped(e.params as u128),
            self.dtype,
            Bytes(e.activations),
            grouped(self.batch_size as u128),
            Bytes(e.batches),
            Bytes(e.data),
        );
        match &self.limit {
            Some(
                limit @ Limit {
                    source: Source::Flag,
                    ..
                },
            ) => format!("{needs}; {limit}"),
            Some(limit) => format!("{needs}; {limit} (--max-memory-mib sets the limit)"),
            None => format!("{needs}, more than a process can address"),
        }
    }
}

/// Refuses a run whose estimate exceeds `limit` (`None`: no limit), or that no process could
/// hold whatever the limit (over `isize::MAX` bytes, the most one allocation can be).
pub fn check(
    estimate: MemoryEstimate,
    limit: Option<Limit>,
    batch_size: usize,
    optimizer: OptimizerKind,
    dtype: &'static str,
) -> Result<(), Box<TooBig>> {
    let total = estimate.total();
    let refused = if total > isize::MAX as u128 {
        Some(None)
    } else {
        limit.filter(|l| total > l.bytes).map(Some)
    };
    match refused {
        None => Ok(()),
        Some(limit) => Err(Box::new(TooBig {
            estimate,
            batch_size,
            optimizer,
            dtype,
            limit,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         3000000 kB\n\
                       MemAvailable:   22339452 kB\nBuffers:          12 kB\n";
        assert_eq!(kib_field(meminfo, "MemAvailable:"), Some(22_339_452 * 1024));
        assert_eq!(kib_field(meminfo, "SwapFree:"), None);
        assert_eq!(kib_field("MemAvailable: lots\n", "MemAvailable:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max stack size            8388608              unlimited            bytes     \n\
                      Max address space         1073741824           unlimited            bytes     \n";
        assert_eq!(address_space_limit(limits), Some(1 << 30));
        let unlimited = limits.replace("1073741824          ", "unlimited           ");
        assert_eq!(address_space_limit(&unlimited), None);
        assert_eq!(
            cgroup_path("0::/user.slice/session-1.scope\n"),
            Some(PathBuf::from("/user.slice/session-1.scope"))
        );
        assert_eq!(cgroup_path("1:name=systemd:/\n"), None);
    }

    #[test]
    fn control_groups_and_their_parents_limit_the_run() {
        let root = tempfile::tempdir().unwrap();
        let leaf = root.path().join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.path().join("a/memory.max"), "1073741824\n").unwrap();
        std::fs::write(root.path().join("a/memory.current"), "73741824\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        let limits = cgroup_limits(root.path(), Path::new("/a/b"));
        assert_eq!(
            limits,
            [Limit {
                bytes: 1_000_000_000,
                source: Source::Cgroup(root.path().join("a")),
            }]
        );
    }

    fn estimate(total_gib: u128) -> MemoryEstimate {
        MemoryEstimate {
            params: 795_000_000_010,
            network: total_gib << 30,
            activations: 0,
            batches: 1024,
            data: 0,
        }
    }

    #[test]
    fn a_run_over_the_limit_is_refused_with_its_figures() {
        let limit = Limit {
            bytes: 21 << 30,
            source: Source::Available,
        };
        assert!(
            check(
                estimate(20),
                Some(limit.clone()),
                100,
                OptimizerKind::Sgd,
                "f32"
            )
            .is_ok()
        );
        assert!(check(estimate(1 << 20), None, 100, OptimizerKind::Sgd, "f32").is_ok());
        let err = check(estimate(9000), Some(limit), 100, OptimizerKind::Adam, "f32").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the network and its buffers need about 8.8 TiB of memory: the network 8.8 TiB \
             (795,000,000,010 f32 parameters with gradients and adam's 2 copies), activations \
             0 bytes (batches of 100), batch buffers 1 KiB, data 0 bytes; this machine has 21 GiB \
             available (--max-memory-mib sets the limit)"
        );
        // Beyond what one allocation can be, no limit lets it through.
        let err = check(
            estimate(1 << 40),
            Some(Limit::from_mib(u64::MAX)),
            1,
            OptimizerKind::Momentum,
            "f64",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("data 0 bytes, more than a process can address"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("parameters with gradients and momentum's copy)")
        );
    }

    #[test]
    fn limits_say_where_they_come_from() {
        assert_eq!(
            Limit::from_mib(512).to_string(),
            "--max-memory-mib allows 512 MiB"
        );
        let limit = Limit {
            bytes: 800 << 20,
            source: Source::AddressSpace,
        };
        assert_eq!(
            limit.to_string(),
            "the process's address-space limit (ulimit -v) leaves 800 MiB"
        );
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(784_000_000_000), "784,000,000,000");
    }

    /// On Linux the available memory is found, and is some of the machine's.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_available_memory_is_found() {
        let limit = Limit::detect().expect("/proc/meminfo is readable");
        assert!(limit.bytes > 0 && limit.bytes < 1 << 60, "{limit}");
    }
}
