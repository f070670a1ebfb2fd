//! Re-executing the program once inside the build's user and mount namespace.
//!
//! The original process stays outside as a small waiter: it writes the id maps,
//! forwards termination signals and exits with the inner process's status.

use crate::error::{SandboxError, sys};
use crate::idmap::{IdMaps, format_map};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// Environment variable set in the re-executed process so it knows it is inside.
pub const IN_USERNS_ENV: &str = "RBUILD_IN_USERNS";

/// Enters the build namespace with the default maps for the caller
/// ([`IdMaps::for_current_user`]). See [`enter_build_namespace_with`].
pub fn enter_build_namespace() -> Result<(), SandboxError> {
    enter_build_namespace_with(&IdMaps::for_current_user())
}

/// Re-executes this program inside a new user + mount namespace with `maps`, unless
/// it already runs there (`RBUILD_IN_USERNS=1`), in which case it returns `Ok`.
///
/// Must be called while the process is single-threaded. On success it never returns
/// in the original process: that one waits for the re-executed program and exits
/// with its status (128+n when killed by signal n). It returns an error only when the
/// namespace cannot be created or the maps cannot be written.
pub fn enter_build_namespace_with(maps: &IdMaps) -> Result<(), SandboxError> {
    if std::env::var(IN_USERNS_ENV).as_deref() == Ok("1") {
        rbuild_fsroot::devices::adopt_inner_end();
        return Ok(());
    }
    let argv = current_argv()?;
    let devices = device_socket();
    let envp = inner_env(devices.as_ref().map(|(_, inner)| inner.as_raw_fd()));
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let parent = nix::unistd::getpid();
    // SAFETY: the caller guarantees a single-threaded process, so the child may
    // allocate and run ordinary Rust code before exec.
    match unsafe { fork() }.map_err(sys("fork the build namespace process"))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(go_w);
            if let Some((_, inner)) = &devices {
                keep_across_exec(inner);
            }
            child_enter(parent, ready_w, go_r, &argv, &envp)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(go_r);
            let outer = devices.map(|(outer, _inner)| outer);
            parent_setup(child, maps, ready_r, go_w)?;
            if let Some(outer) = outer {
                std::thread::spawn(move || rbuild_fsroot::devices::serve(outer));
            }
            forward_and_wait(child)
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("create a pipe"))
}

fn current_argv() -> Result<Vec<CString>, SandboxError> {
    std::env::args_os()
        .map(|a| {
            CString::new(a.as_bytes())
                .map_err(|_| SandboxError::InvalidSpec("argument contains a NUL byte".into()))
        })
        .collect()
}

/// The socket through which the inner process has device nodes created: only when rbuild
/// runs as root, since no one else could create them outside either.
fn device_socket() -> Option<(OwnedFd, OwnedFd)> {
    if !nix::unistd::getuid().is_root() {
        return None;
    }
    rbuild_fsroot::devices::socket_pair()
        .map_err(|e| tracing::debug!("no device socket: {e}"))
        .ok()
}

/// Clears close-on-exec on the descriptor the re-executed program adopts.
fn keep_across_exec(fd: &OwnedFd) {
    // SAFETY: plain fcntl on an open descriptor.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
}

fn inner_env(device_fd: Option<RawFd>) -> Vec<CString> {
    use rbuild_fsroot::devices::DEVICE_SOCKET_ENV;
    std::env::vars_os()
        .filter(|(k, _)| k != IN_USERNS_ENV && k != DEVICE_SOCKET_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .chain(CString::new(format!("{IN_USERNS_ENV}=1")).ok())
        .chain(device_fd.and_then(|fd| CString::new(format!("{DEVICE_SOCKET_ENV}={fd}")).ok()))
        .collect()
}

/// Runs in the forked child: unshare, report, wait for the maps, become root, exec.
fn child_enter(parent: Pid, ready: OwnedFd, go: OwnedFd, argv: &[CString], envp: &[CString]) -> ! {
    let mut ready = File::from(ready);
    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS) {
        let _ = ready.write_all(format!("unshare user and mount namespaces: {e}").as_bytes());
        exit_now(1);
    }
    let _ = ready.write_all(b"ok");
    drop(ready);
    let mut answer = Vec::new();
    let _ = File::from(go).read_to_end(&mut answer);
    if answer != b"go" {
        exit_now(1);
    }
    if let Err(e) = become_root_and_exec(parent, argv, envp) {
        eprintln!("rbuild: cannot enter the build namespace: {e}");
        exit_now(1);
    }
    exit_now(1)
}

fn become_root_and_exec(
    parent: Pid,
    argv: &[CString],
    envp: &[CString],
) -> Result<(), SandboxError> {
    let root_gid = nix::unistd::Gid::from_raw(0);
    let root_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(sys("setresgid(0)"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(sys("setresuid(0)"))?;
    // A change of credentials clears the parent-death signal, so set it afterwards.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(sys("set the parent-death signal"))?;
    if nix::unistd::getppid() != parent {
        exit_now(1);
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make the mount tree private"))?;
    let exe = CString::new("/proc/self/exe").unwrap_or_default();
    let err = nix::unistd::execve(&exe, argv, envp).unwrap_err();
    Err(SandboxError::io("re-execute /proc/self/exe", err))
}

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit only ends the process.
    unsafe { libc::_exit(code) }
}

/// Runs in the original process: wait for the child's namespace, write the maps, let it go.
fn parent_setup(
    child: Pid,
    maps: &IdMaps,
    ready: OwnedFd,
    go: OwnedFd,
) -> Result<(), SandboxError> {
    let mut answer = String::new();
    let _ = File::from(ready).read_to_string(&mut answer);
    if answer != "ok" {
        let _ = waitpid(child, None);
        let reason = if answer.is_empty() {
            "the child exited early".to_string()
        } else {
            answer
        };
        return Err(SandboxError::Setup(format!(
            "cannot create the build namespace: {reason}"
        )));
    }
    if let Err(e) = write_maps(child, maps) {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(e);
    }
    File::from(go)
        .write_all(b"go")
        .map_err(sys("release the build namespace process"))
}

/// Writes `maps` for `child`: directly when allowed, through newuidmap/newgidmap otherwise.
fn write_maps(child: Pid, maps: &IdMaps) -> Result<(), SandboxError> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    tracing::debug!(uid = %format_map(&maps.uid).trim(), gid = %format_map(&maps.gid).trim(), "writing id maps");
    if maps.writable_directly_by(uid, gid) {
        let proc_dir = format!("/proc/{child}");
        if uid != 0 {
            std::fs::write(format!("{proc_dir}/setgroups"), "deny")
                .map_err(sys("write setgroups"))?;
        }
        std::fs::write(format!("{proc_dir}/uid_map"), format_map(&maps.uid))
            .map_err(sys("write uid_map"))?;
        std::fs::write(format!("{proc_dir}/gid_map"), format_map(&maps.gid))
            .map_err(sys("write gid_map"))?;
        return Ok(());
    }
    let proc_dir = format!("/proc/{child}");
    if let Err(e) = run_map_helper("newuidmap", child, &maps.uid) {
        tracing::warn!("{e}; mapping only container root onto uid {uid}");
        std::fs::write(format!("{proc_dir}/uid_map"), format!("0 {uid} 1\n"))
            .map_err(sys("write uid_map"))?;
    }
    if let Err(e) = run_map_helper("newgidmap", child, &maps.gid) {
        tracing::warn!("{e}; mapping only container root onto gid {gid}");
        std::fs::write(format!("{proc_dir}/setgroups"), "deny").map_err(sys("write setgroups"))?;
        std::fs::write(format!("{proc_dir}/gid_map"), format!("0 {gid} 1\n"))
            .map_err(sys("write gid_map"))?;
    }
    Ok(())
}

fn run_map_helper(helper: &str, child: Pid, maps: &[crate::IdMap]) -> Result<(), SandboxError> {
    let path = crate::idmap::map_helper(helper).ok_or_else(|| {
        SandboxError::Setup(format!(
            "{helper} not found (install it with: apt-get install uidmap)"
        ))
    })?;
    let mut cmd = Command::new(path);
    cmd.arg(child.to_string());
    for m in maps {
        cmd.args([
            m.container.to_string(),
            m.host.to_string(),
            m.count.to_string(),
        ]);
    }
    let out = cmd.output().map_err(sys(format!(
        "run {helper} (install it with: apt-get install uidmap)"
    )))?;
    if !out.status.success() {
        return Err(SandboxError::Setup(format!(
            "{helper} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Forwards SIGINT/SIGTERM/SIGHUP to `child`, waits for it and exits with its status.
fn forward_and_wait(child: Pid) -> ! {
    CHILD.store(child.as_raw(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(forward_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only calls kill.
        let _ = unsafe { sigaction(sig, &action) };
    }
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => std::process::exit(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("rbuild: lost the build namespace process: {e}");
                std::process::exit(1)
            }
        }
    }
}
