//! `bp-train serve` for the serve tests: a small MNIST model, and the server started on a free
//! port of this machine, bounded in memory, stopped by SIGINT as Ctrl-C would.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::bounded;

/// Trains the book's TwoLayerNet for one epoch of Adam on the shipped MNIST (a few seconds; about
/// 95% test accuracy) and saves it as `dir/model.safetensors`.
pub fn train_model(dir: &Path) -> PathBuf {
    let model = dir.join("model.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_bp-train"))
        .args([
            "--epochs",
            "1",
            "--optimizer",
            "adam",
            "--sampling",
            "shuffle",
        ])
        .args(["--quiet", "--save"])
        .arg(&model)
        .output()
        .expect("run bp-train");
    assert!(
        out.status.success(),
        "training failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    model
}

/// A running `bp-train serve`.
pub struct Server {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// What it printed to stdout before serving.
    pub banner: String,
    stderr: Option<JoinHandle<String>>,
}

/// The memory the server may map (`RLIMIT_AS`): room for its threads' stacks and allocator
/// arenas, far below the machine's.
const MEMORY: u64 = 4 << 30;

impl Server {
    /// Starts `bp-train serve --model MODEL --addr 127.0.0.1:0` with `extra` arguments and waits
    /// (at most 30 s) for the line that names the address it listens on.
    #[track_caller]
    pub fn start(model: &Path, extra: &[&str]) -> Server {
        let mut args = vec![
            "serve".to_owned(),
            "--model".to_owned(),
            model.to_str().expect("a UTF-8 path").to_owned(),
            "--addr".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut child = bounded::command(&args, MEMORY)
            .spawn()
            .expect("bp-train serve starts");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    banner.push_str(&line);
                    banner.push('\n');
                    if let Some(rest) = line.strip_prefix("serving on ") {
                        let addr = rest.split(':').take(2).collect::<Vec<_>>().join(":");
                        break addr.parse().expect("the address the server prints");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let err = stderr.join().unwrap_or_default();
                    panic!("bp-train serve did not start within 30 s:\n{banner}{err}");
                }
            }
        };
        Server {
            child,
            addr,
            banner,
            stderr: Some(stderr),
        }
    }

    /// The URL of `path` on the server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait for bp-train").is_none()
    }

    /// Sends SIGINT, as Ctrl-C does, and waits (at most 10 s) for the server to stop: its exit
    /// status and what it wrote to stderr.
    #[allow(unsafe_code)]
    #[track_caller]
    pub fn interrupt(mut self) -> (ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill has no memory effects; the pid is our own child's, not yet waited for.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0, "kill");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for bp-train") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("bp-train serve did not stop within 10 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = self
            .stderr
            .take()
            .expect("stderr is read once")
            .join()
            .expect("stderr reader");
        (status, stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
