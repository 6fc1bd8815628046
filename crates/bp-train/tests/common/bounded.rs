//! Runs of the `bp-train` binary bounded in memory and time, for the hostile-input tests: a
//! regression fails its test instead of eating the machine or hanging the suite.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished run printed, its exit status, and how long it took.
pub struct Run {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// `bp-train` with `args`, its address space limited to `memory` bytes (`RLIMIT_AS`), no standard
/// input, and its output piped.
#[allow(unsafe_code)]
pub fn command<S: AsRef<OsStr>>(args: &[S], memory: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bp-train"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure only calls setrlimit, which is async-signal-safe,
    // on a value on its own stack, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: memory as libc::rlim_t,
                rlim_max: memory as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    command
}

/// Runs `command` to its end; kills it after `timeout` and fails the test, naming `what`.
#[track_caller]
pub fn run(mut command: Command, timeout: Duration, what: &str) -> Run {
    let start = Instant::now();
    let mut child = command.spawn().expect("bp-train starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bp-train") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {timeout:?} (blocked on a FIFO?)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        status,
        code: status.code(),
        took: start.elapsed(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Makes a FIFO at `path`.
#[allow(unsafe_code)]
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}
