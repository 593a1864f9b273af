//! The processes of a test: started with their output in log files,
//! stopped with SIGINT (graceful) or SIGKILL, and always killed when
//! dropped, so that a failing test leaves nothing running.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL) if it still runs when dropped.
#[derive(Debug)]
pub(crate) struct Process {
    name: String,
    child: Child,
}

/// Opens `path` for appending: a process started again adds to its log.
fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

impl Process {
    /// Starts `command` with its standard output appended to `stdout` and
    /// its standard error to `stderr` (which may be the same file).
    pub(crate) fn spawn(
        name: &str,
        command: &mut Command,
        stdout: &Path,
        stderr: &Path,
    ) -> Process {
        let child = command
            .stdin(Stdio::null())
            .stdout(append(stdout))
            .stderr(append(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Process {
            name: name.to_owned(),
            child,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether it still runs; reaps it if it exited.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (a name `kill` knows: `STOP`, `CONT`, ...).
    pub(crate) fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {}", self.name);
    }

    /// SIGKILL, as a crash would: no goodbye, nothing flushed.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGINT (Ctrl-C): a graceful stop. Killed after `grace`; returns
    /// whether it stopped by itself.
    pub(crate) fn interrupt(&mut self, grace: Duration) -> bool {
        self.signal("INT");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
    }
}

/// A log file of the test: its path and what is printed of it on failure.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    pub(crate) label: String,
    pub(crate) path: PathBuf,
}

impl Log {
    /// The last `lines` lines, or why they cannot be read.
    pub(crate) fn tail(&self, lines: usize) -> String {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("({}: {e})", self.path.display()),
        }
    }
}
