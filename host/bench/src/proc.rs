//! Child processes that die with the benchmark, and what `/proc` says
//! about a process's memory and CPU time.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

/// A child process, killed when dropped (on every exit path of the
/// benchmark, errors and panics included). Its output goes to a log file.
#[derive(Debug)]
pub(crate) struct Child {
    name: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts `command` with its stdout and stderr in `log`.
    pub(crate) fn spawn(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Child> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        Ok(Child {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error, with the end of its log, if the process has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Resident set size (`VmRSS`), in KiB.
    pub(crate) fn rss_kib(&self) -> anyhow::Result<u64> {
        status_kib(self.pid(), "VmRSS:")
    }

    /// User plus system CPU time so far, all threads.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        let cpu = cpu_times(&format!("/proc/{}/stat", self.pid()))?;
        Ok(cpu.user + cpu.system)
    }

    /// User and system CPU time so far, all threads.
    pub(crate) fn cpu_times(&self) -> anyhow::Result<CpuTimes> {
        cpu_times(&format!("/proc/{}/stat", self.pid()))
    }

    /// Asks the process to stop as Ctrl-C would (SIGINT: the gateway says
    /// goodbye to its devices and closes its database), waits up to
    /// `grace`, then kills it.
    pub(crate) async fn stop(mut self, grace: Duration) {
        let interrupted = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if interrupted {
            let deadline = std::time::Instant::now() + grace;
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Drop kills.
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a log file.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A `kB` field of `/proc/<pid>/status`.
pub(crate) fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// CPU time of a process, in user space and in the kernel.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTimes {
    pub(crate) user: Duration,
    pub(crate) system: Duration,
}

/// utime and stime of a `/proc/.../stat` file.
fn cpu_times(path: &str) -> anyhow::Result<CpuTimes> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected {path}"))?;
    // After the name: state (3), ppid (4), ... utime (14), stime (15).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected {path}"))
    };
    let per_second = clock_ticks();
    let duration = |ticks: u64| {
        Duration::from_secs(ticks / per_second)
            + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
    };
    Ok(CpuTimes {
        user: duration(ticks(11)?),
        system: duration(ticks(12)?),
    })
}

/// This process's CPU time so far.
pub(crate) fn self_cpu() -> anyhow::Result<Duration> {
    let cpu = cpu_times("/proc/self/stat")?;
    Ok(cpu.user + cpu.system)
}

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`; 100 on
/// every Linux this runs on).
pub(crate) fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

/// The soft limit of open files of this process (inherited by children).
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The 1-minute load average.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() -> anyhow::Result<()> {
        assert!(status_kib(std::process::id(), "VmRSS:")? > 0);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(self_cpu()? > Duration::ZERO);
        assert!(open_files_limit().is_some_and(|n| n > 0));
        Ok(())
    }
}
