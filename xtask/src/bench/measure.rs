//! Running one builder command: wall time and the peak RSS of its process tree
//! (`wait4`'s `ru_maxrss`: the largest process among the child and the descendants it
//! waited for), and the peak RSS of a daemon (`VmHWM`, reset through `clear_refs`).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::report::Sample;
use crate::util;

/// Runs `cmd` with stdin closed and stdout and stderr appended to `log`; fails with the
/// log's last lines when the command exits nonzero.
pub fn run_measured(cmd: &mut Command, log: &Path) -> Result<Sample> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", util::show(cmd)))?;
    let (status, rss_kib) = wait_with_rusage(child.id())?;
    let wall = start.elapsed();
    drop(child);
    if status != 0 {
        bail!(
            "{} failed ({}):\n{}",
            util::show(cmd),
            describe_status(status),
            log_tail(log, 15)
        );
    }
    Ok(Sample {
        wall,
        rss_kib: Some(rss_kib),
    })
}

/// Waits for the child `pid`, returning its raw wait status and `ru_maxrss` (KiB).
fn wait_with_rusage(pid: u32) -> Result<(i32, u64)> {
    let pid = libc::pid_t::try_from(pid).context("child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types; `pid` is our
        // child, which nothing else waits for (its `Child` handle is never waited on).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
    let rss = u64::try_from(usage.ru_maxrss).unwrap_or(0);
    Ok((status, rss))
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    }
}

/// The last `n` lines of a log file (empty when it cannot be read).
pub fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    last_lines(&String::from_utf8_lossy(&text), n)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running daemon whose peak RSS can be reset and read (needs root or the same user).
#[derive(Debug, Clone, Copy)]
pub struct DaemonPeak {
    pid: u32,
}

impl DaemonPeak {
    /// The one process named `comm`, when there is exactly one and its peak can be reset.
    pub fn find(comm: &str) -> Option<DaemonPeak> {
        let mut found = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() == comm)
            });
        let pid = found.next()?;
        if found.next().is_some() {
            return None;
        }
        let daemon = DaemonPeak { pid };
        daemon.reset().then_some(daemon)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resets the peak RSS to the current RSS; whether that worked.
    pub fn reset(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    /// The peak RSS since the last reset, in KiB.
    pub fn peak_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        vm_hwm_kib(&status)
    }
}

/// The `VmHWM:` value of a `/proc/PID/status` text, in KiB.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Adds two samples: the wall times, and the larger of the peaks.
pub fn combine(a: Sample, b: Sample) -> Sample {
    Sample {
        wall: a.wall + b.wall,
        rss_kib: max_option(a.rss_kib, b.rss_kib),
    }
}

/// The larger of two optional values.
pub fn max_option(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn measures_a_child_and_reports_failures_with_the_log() {
        let tmp = util::TempDir::new("bench-measure").unwrap();
        let log = tmp.path().join("log");
        let sample = run_measured(Command::new("sh").args(["-c", "echo hi"]), &log).unwrap();
        assert!(sample.rss_kib.is_some_and(|k| k > 0));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "hi\n");
        let err = run_measured(
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
            &log,
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("exit status 3"), "{text}");
        assert!(text.contains("oops"), "{text}");
    }

    #[test]
    fn peak_rss_from_proc_status() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(1234));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
    }

    #[test]
    fn combined_samples_add_time_and_keep_the_larger_peak() {
        let a = Sample {
            wall: Duration::from_millis(100),
            rss_kib: Some(5),
        };
        let b = Sample {
            wall: Duration::from_millis(50),
            rss_kib: None,
        };
        let c = combine(a, b);
        assert_eq!(c.wall, Duration::from_millis(150));
        assert_eq!(c.rss_kib, Some(5));
        assert_eq!(max_option(Some(3), Some(9)), Some(9));
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
    }
}
