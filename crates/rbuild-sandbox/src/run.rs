//! The caller's side of a step: describe it, start the sandbox helper process in
//! fresh namespaces, stream its output and collect its outcome.

use crate::binfmt::{Emulation, PlatformSupport};
use crate::confine::Security;
use crate::error::{SandboxError, sys};
use nix::sched::CloneFlags;
use rbuild_core::Platform;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `argv[1]` with which the program re-executes itself as the sandbox helper; the
/// program's `main` must hand over to [`crate::init_main`] when it sees it.
pub const INIT_ARG: &str = "__rbuild-sandbox-init";

/// The root filesystem a step runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rootfs {
    /// An overlay: read-only `lower` layers (top-most first; empty means an empty
    /// base), the step's writable `upper` dir and overlayfs' `work` dir (same filesystem).
    Overlay {
        /// Read-only layers, top-most first.
        lower: Vec<PathBuf>,
        /// Where the step's changes land.
        upper: PathBuf,
        /// Overlayfs' scratch directory, on the same filesystem as `upper`.
        work: PathBuf,
    },
    /// A plain directory used (and changed) in place.
    Dir(PathBuf),
}

/// The network a step sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// The host's network namespace.
    Host,
    /// A fresh network namespace with only a loopback interface.
    None,
}

/// An extra mount of a step (`RUN --mount`), made after `/proc`, `/dev`, `/sys` and the
/// `/etc` files, in the order given, so a later mount may sit inside an earlier one.
/// Missing mountpoints are created inside the rootfs and reported in
/// [`RunOutcome::created_paths`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    /// A host file or directory (recursively) bound at `target`.
    Bind {
        /// The host path (in the build namespace); a file gets a file mountpoint, a
        /// directory a directory one.
        source: PathBuf,
        /// Where inside the rootfs; relative targets are taken from the working directory.
        target: String,
        /// Whether the step sees it (and everything mounted below it) read-only.
        readonly: bool,
    },
    /// A fresh, empty tmpfs at `target`, gone when the step ends.
    Tmpfs {
        /// Where inside the rootfs; relative targets are taken from the working directory.
        target: String,
        /// Size limit in bytes; `None` uses the kernel's default (half of RAM).
        size: Option<u64>,
    },
}

impl Mount {
    /// The mount's target as given.
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. } | Mount::Tmpfs { target, .. } => target,
        }
    }
}

/// Everything needed to run one step's process.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// The command; `argv[0]` without a slash is looked up in the step's `PATH`.
    pub argv: Vec<String>,
    /// The environment, `K=V` each; `PATH` and `HOME` are added when missing.
    pub env: Vec<String>,
    /// Working directory inside the rootfs, created (owned by root) if missing.
    pub cwd: String,
    /// `""`, `name`, `uid`, `name:group` or `uid:gid`, resolved in the rootfs.
    pub user: String,
    /// The step's hostname (also written to `/etc/hostname`); empty keeps the host's.
    pub hostname: String,
    /// Contents of the step's `/etc/hosts`.
    pub hosts: String,
    /// Contents of the step's `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// Network namespace choice.
    pub network: Network,
    /// The platform of the rootfs's binaries.
    pub platform: Platform,
    /// A per-step directory for mountpoints and generated files; must not be inside the rootfs.
    pub scratch_dir: PathBuf,
    /// Extra mounts (`RUN --mount`), made in this order.
    pub mounts: Vec<Mount>,
    /// Capabilities, `no_new_privs` and seccomp of the step's process.
    pub security: Security,
}

/// How the step's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Whether the step succeeded (exit code 0).
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

/// What a step left behind besides its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// How the process ended.
    pub status: ExitStatus,
    /// Mountpoints created because the rootfs lacked them (e.g. `etc/hosts`, `proc`),
    /// relative to the rootfs root, parents before children. Remove them from the
    /// step's changes (in reverse order) when they are still empty.
    pub created_paths: Vec<PathBuf>,
}

/// The step as handed to the helper process.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireSpec {
    pub rootfs: Rootfs,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub hostname: String,
    pub network: Network,
    pub platform: String,
    pub emulated: bool,
    pub linux32: bool,
    pub scratch_dir: PathBuf,
    /// The extra mounts, with targets made absolute and clean.
    pub mounts: Vec<Mount>,
    /// The host user the build runs as, for hints in error messages.
    pub host_user: String,
    pub report_fd: i32,
    pub security: Security,
    /// Whether the command's standard streams are a terminal it should control.
    #[serde(default)]
    pub tty: bool,
}

/// What the helper reports on its report pipe, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Report {
    Created { paths: Vec<PathBuf> },
    Log { message: String },
    Error { kind: ErrorKind, message: String },
    Exited { status: ExitStatus },
}

/// Which stage of the helper failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    Setup,
    User,
    Exec,
}

/// Files in the scratch dir the helper bind-mounts into the step.
pub(crate) const HOSTS_FILE: &str = "hosts";
pub(crate) const RESOLV_FILE: &str = "resolv.conf";
pub(crate) const HOSTNAME_FILE: &str = "hostname";
pub(crate) const ROOT_DIR: &str = "root";
pub(crate) const EMPTY_LOWER_DIR: &str = "empty-lower";

/// Runs one step's process to completion, handing its combined stdout and stderr to
/// `on_output` as it arrives. A non-zero exit is an `Ok` outcome; failing to set the
/// step up, to become its user or to execute its command is an error.
///
/// The calling thread must stay alive until this returns (the helper dies with it).
pub fn run(
    spec: &RunSpec,
    emulation: &Emulation,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<RunOutcome, SandboxError> {
    let (out_r, out_w) = cloexec_pipe()?;
    let out_w2 = out_w
        .try_clone()
        .map_err(sys("duplicate the output pipe"))?;
    let stdio = [Stdio::null(), Stdio::from(out_w), Stdio::from(out_w2)];
    let running = start(spec, emulation, stdio, false)?;
    pump_output(out_r, on_output)?;
    running.finish()
}

/// Where an attached process's standard streams go (`rbuild run`): the caller's own
/// descriptors, or a terminal the command then controls.
#[derive(Debug)]
pub struct Attach {
    /// Standard input; `None` is `/dev/null`.
    pub stdin: Option<OwnedFd>,
    /// Standard output.
    pub stdout: OwnedFd,
    /// Standard error.
    pub stderr: OwnedFd,
    /// Whether the streams are a pseudo-terminal's slave side, to become the command's
    /// controlling terminal.
    pub tty: bool,
}

/// Runs one process like [`run`], with its standard streams attached to `attach`
/// instead of collected. Returns when the process has ended.
pub fn run_attached(
    spec: &RunSpec,
    emulation: &Emulation,
    attach: Attach,
) -> Result<RunOutcome, SandboxError> {
    let stdin = attach.stdin.map_or_else(Stdio::null, Stdio::from);
    let stdio = [
        stdin,
        Stdio::from(attach.stdout),
        Stdio::from(attach.stderr),
    ];
    start(spec, emulation, stdio, attach.tty)?.finish()
}

/// A started helper: wait for it with [`Running::finish`].
struct Running {
    child: std::process::Child,
    /// Reads the report pipe while the step runs, so the helper never blocks writing
    /// a report however long it is.
    reports: std::thread::JoinHandle<std::io::Result<Vec<u8>>>,
}

/// The most report bytes kept; the rest is read and dropped.
const MAX_REPORT_BYTES: u64 = 16 << 20;

impl Running {
    fn finish(mut self) -> Result<RunOutcome, SandboxError> {
        let helper_status = self
            .child
            .wait()
            .map_err(sys("wait for the sandbox helper"))?;
        let reports = self
            .reports
            .join()
            .map_err(|_| SandboxError::Helper("the report reader panicked".into()))?
            .map_err(sys("read the sandbox helper's report"))?;
        outcome(&String::from_utf8_lossy(&reports), helper_status)
    }
}

/// Reads the report pipe to its end on a thread of its own, keeping the first
/// `MAX_REPORT_BYTES`.
fn read_reports(report_r: OwnedFd) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut pipe = std::fs::File::from(report_r);
        let mut kept = Vec::new();
        (&mut pipe).take(MAX_REPORT_BYTES).read_to_end(&mut kept)?;
        std::io::copy(&mut pipe, &mut std::io::sink())?;
        Ok(kept)
    })
}

/// Validates the spec, writes its scratch files and starts the helper with `stdio`.
fn start(
    spec: &RunSpec,
    emulation: &Emulation,
    stdio: [Stdio; 3],
    tty: bool,
) -> Result<Running, SandboxError> {
    validate(spec)?;
    let (emulated, linux32) = execution_mode(&spec.platform, emulation)?;
    let cwd = if spec.cwd.is_empty() {
        "/".to_string()
    } else {
        spec.cwd.clone()
    };
    let mounts = resolve_mounts(&spec.mounts, &cwd)?;
    write_scratch_files(spec)?;
    let (report_r, report_w) = cloexec_pipe()?;
    let wire = WireSpec {
        rootfs: spec.rootfs.clone(),
        argv: spec.argv.clone(),
        env: emulated_env(spec, emulated),
        cwd,
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        network: spec.network,
        platform: spec.platform.to_string(),
        emulated,
        linux32,
        scratch_dir: spec.scratch_dir.clone(),
        mounts,
        host_user: host_user(),
        report_fd: report_w.as_raw_fd(),
        security: spec.security,
        tty,
    };
    let json = serde_json::to_vec(&wire).map_err(|e| SandboxError::Helper(e.to_string()))?;
    let (spec_r, spec_w) = cloexec_pipe()?;
    let child = spawn_helper(&spec_r, spec.network, stdio, &report_w)?;
    drop(report_w);
    drop(spec_r);
    send_spec(spec_w, &json);
    Ok(Running {
        child,
        reports: read_reports(report_r),
    })
}

/// The step's environment, plus `QEMU_CPU` for emulated ARM variants older than v7.
fn emulated_env(spec: &RunSpec, emulated: bool) -> Vec<String> {
    let mut env = spec.env.clone();
    if let Some(cpu) = crate::binfmt::emulated_cpu(&spec.platform).filter(|_| emulated)
        && crate::plan::env_value(&env, "QEMU_CPU").is_none()
    {
        env.push(format!("QEMU_CPU={cpu}"));
    }
    env
}

/// The mounts with clean absolute targets, checked: no target is the root itself and
/// every bind source exists.
fn resolve_mounts(mounts: &[Mount], cwd: &str) -> Result<Vec<Mount>, SandboxError> {
    mounts
        .iter()
        .map(|m| {
            let target = crate::plan::mount_target(cwd, m.target()).ok_or_else(|| {
                SandboxError::InvalidSpec(format!(
                    "mount target {:?} is the root directory or contains a NUL byte",
                    m.target()
                ))
            })?;
            Ok(match m {
                Mount::Bind {
                    source, readonly, ..
                } => {
                    std::fs::metadata(source).map_err(|e| {
                        SandboxError::InvalidSpec(format!(
                            "mount source {} for {target}: {e}",
                            source.display()
                        ))
                    })?;
                    Mount::Bind {
                        source: source.clone(),
                        target,
                        readonly: *readonly,
                    }
                }
                Mount::Tmpfs { size, .. } => Mount::Tmpfs {
                    target,
                    size: *size,
                },
            })
        })
        .collect()
}

/// The name (or number) of the host user that container root is, for hints.
fn host_user() -> String {
    let uid = crate::idmap::id_maps()
        .ok()
        .and_then(|maps| maps.uid.iter().find(|m| m.container == 0).map(|m| m.host))
        .unwrap_or_else(|| nix::unistd::getuid().as_raw());
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn validate(spec: &RunSpec) -> Result<(), SandboxError> {
    if spec.argv.is_empty() {
        return Err(SandboxError::InvalidSpec("empty command".into()));
    }
    if !spec.cwd.is_empty() && !spec.cwd.starts_with('/') {
        return Err(SandboxError::InvalidSpec(format!(
            "working directory {:?} is not absolute",
            spec.cwd
        )));
    }
    if !spec.scratch_dir.is_absolute() {
        return Err(SandboxError::InvalidSpec(format!(
            "scratch dir {} is not absolute",
            spec.scratch_dir.display()
        )));
    }
    let strings = spec
        .argv
        .iter()
        .chain(&spec.env)
        .chain([&spec.cwd, &spec.user, &spec.hostname]);
    if strings.into_iter().any(|s| s.contains('\0')) {
        return Err(SandboxError::InvalidSpec(
            "a NUL byte in the command, environment or user".into(),
        ));
    }
    Ok(())
}

/// Whether the step runs under emulation, and whether it needs the linux32 personality.
fn execution_mode(
    platform: &Platform,
    emulation: &Emulation,
) -> Result<(bool, bool), SandboxError> {
    let host = Platform::host();
    match emulation.support(platform) {
        Some(PlatformSupport::Native) => Ok((false, platform.needs_linux32_on(&host))),
        Some(PlatformSupport::Emulated { .. }) => Ok((true, false)),
        None if platform.runs_natively_on(&host) => Ok((false, platform.needs_linux32_on(&host))),
        None => Err(SandboxError::NotPrepared(platform.to_string())),
    }
}

fn write_scratch_files(spec: &RunSpec) -> Result<(), SandboxError> {
    let dir = &spec.scratch_dir;
    std::fs::create_dir_all(dir.join(ROOT_DIR))
        .map_err(sys(format!("create {}", dir.display())))?;
    let hostname = if spec.hostname.is_empty() {
        String::new()
    } else {
        format!("{}\n", spec.hostname)
    };
    for (name, text) in [
        (HOSTS_FILE, &spec.hosts),
        (RESOLV_FILE, &spec.resolv_conf),
        (HOSTNAME_FILE, &hostname),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(sys(format!("write {}", path.display())))?;
    }
    if matches!(&spec.rootfs, Rootfs::Overlay { lower, .. } if lower.is_empty()) {
        let empty = dir.join(EMPTY_LOWER_DIR);
        std::fs::create_dir_all(&empty).map_err(sys(format!("create {}", empty.display())))?;
    }
    Ok(())
}

fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("create a pipe"))
}

fn namespace_flags(network: Network) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// Writes the step description into the helper's spec pipe. A helper that died before
/// reading it reports nothing, which [`outcome`] turns into an error, so a failed write
/// needs no handling of its own.
fn send_spec(spec_w: OwnedFd, json: &[u8]) {
    if let Err(e) = std::fs::File::from(spec_w).write_all(json) {
        tracing::debug!("the sandbox helper did not read the step description: {e}");
    }
}

/// Starts the helper in new namespaces. It gets no environment at all: nothing of the
/// caller's environment may be visible to the step (pid 1 is this helper's child, and
/// `/proc/1/environ` shows what the helper was started with). The step description comes
/// through the pipe `spec_r`, whose descriptor number is the helper's only argument.
fn spawn_helper(
    spec_r: &OwnedFd,
    network: Network,
    [stdin, stdout, stderr]: [Stdio; 3],
    report_w: &OwnedFd,
) -> Result<std::process::Child, SandboxError> {
    let report_fd = report_w.as_raw_fd();
    let spec_fd = spec_r.as_raw_fd();
    let flags = namespace_flags(network);
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(INIT_ARG)
        .arg(spec_fd.to_string())
        .env_clear()
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: only async-signal-safe system calls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for fd in [report_fd, spec_fd] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            nix::sched::unshare(flags)?;
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(sys("start the sandbox helper in new namespaces"))
}

fn pump_output(out_r: OwnedFd, on_output: &mut dyn FnMut(&[u8])) -> Result<(), SandboxError> {
    let mut reader = std::fs::File::from(out_r);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => on_output(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SandboxError::io("read the step's output", e)),
        }
    }
}

/// Turns the helper's reports (and its own exit status as a fallback) into the outcome.
pub(crate) fn outcome(
    reports: &str,
    helper: std::process::ExitStatus,
) -> Result<RunOutcome, SandboxError> {
    let mut created_paths = Vec::new();
    let mut status = None;
    for line in reports.lines().filter(|l| !l.trim().is_empty()) {
        let report: Report = serde_json::from_str(line)
            .map_err(|e| SandboxError::Helper(format!("unreadable report {line:?}: {e}")))?;
        match report {
            Report::Created { paths } => created_paths = paths,
            Report::Log { message } => tracing::debug!("sandbox: {message}"),
            Report::Error { kind, message } => {
                return Err(match kind {
                    ErrorKind::Setup => SandboxError::Setup(message),
                    ErrorKind::User => SandboxError::User(message),
                    ErrorKind::Exec => SandboxError::Exec(message),
                });
            }
            Report::Exited { status: s } => status = Some(s),
        }
    }
    let status = match status {
        Some(s) => s,
        None => {
            use std::os::unix::process::ExitStatusExt;
            if let Some(code) = helper.code()
                && [libc::SIGINT, libc::SIGTERM, libc::SIGHUP].contains(&(code - 128))
            {
                return Err(SandboxError::Interrupted(code - 128));
            }
            return Err(SandboxError::Helper(
                match (helper.code(), helper.signal()) {
                    (_, Some(sig)) => format!("killed by signal {sig} before the step ended"),
                    (Some(code), _) => {
                        format!("exited with status {code} without reporting the step's end")
                    }
                    _ => "ended without reporting".into(),
                },
            ));
        }
    };
    Ok(RunOutcome {
        status,
        created_paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn ok_status() -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(0)
    }

    #[test]
    fn reports_become_an_outcome() {
        let text = "{\"type\":\"created\",\"paths\":[\"proc\",\"etc/hosts\"]}\n{\"type\":\"exited\",\"status\":{\"Code\":3}}\n";
        let out = outcome(text, ok_status()).unwrap();
        assert_eq!(out.status, ExitStatus::Code(3));
        assert_eq!(
            out.created_paths,
            vec![PathBuf::from("proc"), PathBuf::from("etc/hosts")]
        );
    }

    #[test]
    fn an_error_report_wins() {
        let text = "{\"type\":\"error\",\"kind\":\"user\",\"message\":\"unable to find user ghost\"}\n{\"type\":\"exited\",\"status\":{\"Code\":125}}\n";
        let err = outcome(text, ok_status()).unwrap_err();
        assert!(matches!(err, SandboxError::User(m) if m == "unable to find user ghost"));
    }

    #[test]
    fn silence_is_a_helper_error() {
        let err = outcome("", std::process::ExitStatus::from_raw(9)).unwrap_err();
        assert!(err.to_string().contains("signal 9"), "{err}");
    }

    #[test]
    fn an_interrupted_helper_says_so() {
        let err = outcome("", std::process::ExitStatus::from_raw(130 << 8)).unwrap_err();
        assert!(matches!(err, SandboxError::Interrupted(2)), "{err}");
    }

    #[test]
    fn network_none_adds_a_network_namespace() {
        assert!(namespace_flags(Network::None).contains(CloneFlags::CLONE_NEWNET));
        assert!(!namespace_flags(Network::Host).contains(CloneFlags::CLONE_NEWNET));
    }

    #[test]
    fn foreign_platforms_must_be_prepared() {
        let host = Platform::host();
        let foreign: Platform = if host.architecture() == "arm64" {
            "linux/amd64"
        } else {
            "linux/arm64"
        }
        .parse()
        .unwrap();
        let err = execution_mode(&foreign, &Emulation::native_only()).unwrap_err();
        assert!(matches!(err, SandboxError::NotPrepared(_)));
        assert_eq!(
            execution_mode(&host, &Emulation::native_only()).unwrap(),
            (false, false)
        );
    }
}
