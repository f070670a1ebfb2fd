//! The sandbox helper: the program re-executed with [`INIT_ARG`] in fresh mount, pid,
//! ipc, uts (and net) namespaces. Its first child is pid 1 of the step's pid
//! namespace: it builds the root filesystem, pivots into it and supervises the
//! step's command as a tiny init.

mod mounts;

use crate::binfmt::elf_architecture;
use crate::confine::Confinement;
use crate::idmap::{IdMaps, describe_map, id_maps, is_mapped};
use crate::mounts::{Kind, ensure, fd_path, mkdir_in, open_in_root, symlink_in, touch_in};
use crate::plan::{DEFAULT_PATH, env_value, find_in_path, overlay_data, shorten, step_env};
use crate::run::{
    EMPTY_LOWER_DIR, ErrorKind, ExitStatus, HOSTNAME_FILE, HOSTS_FILE, INIT_ARG, Mount, Network,
    RESOLV_FILE, ROOT_DIR, Report, Rootfs, WireSpec,
};
use crate::user::{ResolvedUser, resolve_user};
use mounts::{
    bind_etc_files, loopback_up, mask_paths, mount_dev, mount_extra, mount_proc, mount_rootfs,
    mount_sys, pivot_into,
};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};
use rbuild_core::Platform;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

type Failure = (ErrorKind, String);

/// The `linux32` execution domain (`uname -m` reports the 32-bit machine).
const PER_LINUX32: libc::c_ulong = 0x0008;

fn setup_err(context: &str) -> impl FnOnce(std::io::Error) -> Failure + '_ {
    move |e| (ErrorKind::Setup, format!("{context}: {e}"))
}

fn nix_err(context: &str) -> impl FnOnce(nix::Error) -> Failure + '_ {
    move |e| (ErrorKind::Setup, format!("{context}: {e}"))
}

/// Writes JSON-line reports to the pipe `run` reads after the step ends.
struct Reporter(RawFd);

impl Reporter {
    fn send(&self, report: &Report) {
        let Ok(mut line) = serde_json::to_vec(report) else {
            return;
        };
        line.push(b'\n');
        let mut rest = line.as_slice();
        while !rest.is_empty() {
            // SAFETY: writing a valid buffer to a descriptor we hold.
            let n = unsafe { libc::write(self.0, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                return;
            }
            rest = &rest[n as usize..];
        }
    }

    fn error(&self, (kind, message): Failure) {
        self.send(&Report::Error { kind, message });
    }

    fn log(&self, message: String) {
        self.send(&Report::Log { message });
    }
}

/// Entry point of the sandbox helper; the program's `main` calls it first thing when
/// `argv[1] == INIT_ARG`. Never returns.
pub fn init_main() -> ! {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).map(|a| a.as_bytes()) != Some(INIT_ARG.as_bytes()) || args.len() != 3 {
        eprintln!("rbuild: {INIT_ARG} expects exactly one argument (the step description's pipe)");
        std::process::exit(125);
    }
    let spec = match read_spec(&args[2]) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("rbuild: cannot read the step description: {e}");
            std::process::exit(125);
        }
    };
    // Keep the report pipe out of the step's command.
    // SAFETY: plain fcntl on a descriptor number.
    unsafe { libc::fcntl(spec.report_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let reporter = Reporter(spec.report_fd);
    std::process::exit(outer(&spec, &reporter))
}

/// Reads the step description from the pipe whose descriptor number is `arg`, to its end.
fn read_spec(arg: &std::ffi::OsStr) -> Result<WireSpec, String> {
    let fd: RawFd = arg
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|fd| *fd > 2)
        .ok_or_else(|| format!("{arg:?} is not a descriptor number"))?;
    // SAFETY: `run` hands the helper this descriptor and nothing else owns it here.
    let mut pipe =
        std::fs::File::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut pipe, &mut json).map_err(|e| e.to_string())?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

extern "C" fn kill_everything(sig: libc::c_int) {
    // SAFETY: kill and _exit are async-signal-safe; as pid 1, kill(-1) reaches every
    // other process of the step's pid namespace.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
        libc::_exit(128 + sig);
    }
}

fn install(handler: extern "C" fn(libc::c_int)) {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handlers only call async-signal-safe functions.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// The helper outside the new pid namespace: fork pid 1, forward signals, pass its status up.
fn outer(spec: &WireSpec, reporter: &Reporter) -> i32 {
    if let Err(e) = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        reporter.error((
            ErrorKind::Setup,
            format!("make the step's mount tree private: {e}"),
        ));
        return 125;
    }
    // SAFETY: the helper is single-threaded.
    match unsafe { fork() } {
        Err(e) => {
            reporter.error((ErrorKind::Setup, format!("fork the step's init: {e}")));
            125
        }
        Ok(ForkResult::Child) => {
            // Die with the helper, taking the whole pid namespace along.
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            std::process::exit(pid1(spec, reporter))
        }
        Ok(ForkResult::Parent { child }) => {
            FORWARD_TO.store(child.as_raw(), Ordering::SeqCst);
            install(forward_signal);
            wait_for(child)
        }
    }
}

fn wait_for(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 125,
        }
    }
}

/// Everything pid 1 worked out before starting the command.
struct Prepared {
    argv: Vec<CString>,
    env: Vec<CString>,
    path_var: String,
    user: ResolvedUser,
    set_groups: bool,
    cwd: String,
    confinement: Confinement,
}

/// Pid 1 of the step's pid namespace.
fn pid1(spec: &WireSpec, reporter: &Reporter) -> i32 {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    match setup(spec, reporter) {
        Ok(prepared) => {
            // The step runs as the same user as pid 1; with pid 1 not dumpable, it cannot
            // read pid 1's memory or /proc/1/environ even where ptrace rules would allow it.
            let _ = nix::sys::prctl::set_dumpable(false);
            supervise(spec, &prepared, reporter)
        }
        Err(failure) => {
            reporter.error(failure);
            125
        }
    }
}

fn setup(spec: &WireSpec, reporter: &Reporter) -> Result<Prepared, Failure> {
    let root_path = spec.scratch_dir.join(ROOT_DIR);
    mount_rootfs(spec, &root_path)?;
    let root = nix::fcntl::open(
        &root_path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(nix_err("open the step's root"))?;
    let mut created = Vec::new();
    mount_proc(&root, &root_path, &mut created)?;
    mount_dev(&root, &root_path, &mut created, reporter)?;
    mount_sys(&root, &root_path, &mut created, reporter)?;
    bind_etc_files(spec, &root, &root_path, &mut created)?;
    mask_paths(&root)?;
    mount_extra(&spec.mounts, &root, &root_path, &mut created)?;
    reporter.send(&Report::Created { paths: created });
    if spec.network == Network::None
        && let Err(e) = loopback_up()
    {
        reporter.log(format!("cannot bring the loopback interface up: {e}"));
    }
    if !spec.hostname.is_empty() {
        nix::unistd::sethostname(&spec.hostname).map_err(nix_err("set the hostname"))?;
    }
    pivot_into(&root_path)?;
    prepare_command(spec)
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, Failure> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_str()).map_err(|_| {
                (
                    ErrorKind::Setup,
                    "a NUL byte in the command or environment".to_string(),
                )
            })
        })
        .collect()
}

fn prepare_command(spec: &WireSpec) -> Result<Prepared, Failure> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok();
    let group = std::fs::read_to_string("/etc/group").ok();
    let user = resolve_user(&spec.user, passwd.as_deref(), group.as_deref())
        .map_err(|e| (ErrorKind::User, e))?;
    let maps = id_maps().map_err(|e| (ErrorKind::Setup, e.to_string()))?;
    check_mapped(&spec.user, &user, &maps, &spec.host_user)?;
    let set_groups = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "allow")
        .unwrap_or(false);
    std::fs::create_dir_all(&spec.cwd).map_err(|e| {
        (
            ErrorKind::Setup,
            format!("create the working directory {}: {e}", spec.cwd),
        )
    })?;
    let env = step_env(&spec.env, &user.home);
    let path_var = env_value(&env, "PATH").unwrap_or(DEFAULT_PATH).to_string();
    Ok(Prepared {
        argv: cstrings(&spec.argv)?,
        env: cstrings(&env)?,
        path_var,
        user,
        set_groups,
        cwd: spec.cwd.clone(),
        confinement: Confinement::new(spec.security)
            .map_err(|e| (ErrorKind::Setup, e.to_string()))?,
    })
}

/// Fails clearly when the step's user or group has no id in the build's user namespace.
fn check_mapped(
    spec_user: &str,
    user: &ResolvedUser,
    maps: &IdMaps,
    host_user: &str,
) -> Result<(), Failure> {
    let hint = if maps.is_full() {
        "the build's user namespace maps container ids 0-65536 only".to_string()
    } else {
        format!(
            "without subordinate ids a rootless build can run steps only as root; to get the full range, add {host_user}:100000:65536 to /etc/subuid and /etc/subgid (any free range of 65536 ids) and install uidmap (apt-get install uidmap)"
        )
    };
    let shown = if spec_user.is_empty() {
        "root"
    } else {
        spec_user
    };
    if !is_mapped(&maps.uid, user.uid) {
        return Err((
            ErrorKind::User,
            format!(
                "user {shown} (uid {}) is not mapped in the build's user namespace (uid map {}); {hint}",
                user.uid,
                describe_map(&maps.uid)
            ),
        ));
    }
    if !is_mapped(&maps.gid, user.gid) {
        return Err((
            ErrorKind::User,
            format!(
                "group {} of user {shown} is not mapped in the build's user namespace (gid map {}); {hint}",
                user.gid,
                describe_map(&maps.gid)
            ),
        ));
    }
    Ok(())
}

/// Starts the command and reaps every process until it ends; returns pid 1's exit code.
fn supervise(spec: &WireSpec, prepared: &Prepared, reporter: &Reporter) -> i32 {
    install(kill_everything);
    // SAFETY: pid 1 is single-threaded.
    let child = match unsafe { fork() } {
        Err(e) => {
            reporter.error((ErrorKind::Setup, format!("fork the step's command: {e}")));
            return 125;
        }
        Ok(ForkResult::Child) => {
            let failure = exec_command(spec, prepared);
            reporter.error(failure);
            // SAFETY: leave without running exit handlers of pid 1's copy.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                reporter.send(&Report::Exited {
                    status: ExitStatus::Code(code),
                });
                return code;
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                reporter.send(&Report::Exited {
                    status: ExitStatus::Signal(sig as i32),
                });
                return 128 + sig as i32;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                reporter.error((ErrorKind::Setup, format!("lost the step's command: {e}")));
                return 125;
            }
        }
    }
}

/// Resets what the helper changed in its process state so the command starts clean.
fn reset_process_state() {
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: restoring default dispositions.
            let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
    let _ = nix::unistd::setsid();
    // SAFETY: marks every descriptor above stderr close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// In the command's process: become the user, enter the working dir, exec. Returns only on failure.
fn exec_command(spec: &WireSpec, p: &Prepared) -> Failure {
    reset_process_state();
    // SAFETY: makes the terminal on stdin this new session's controlling terminal.
    if spec.tty && unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } == -1 {
        return (
            ErrorKind::Setup,
            format!(
                "make the terminal the controlling terminal: {}",
                std::io::Error::last_os_error()
            ),
        );
    }
    if spec.linux32 {
        // SAFETY: personality only changes this process's execution domain.
        if unsafe { libc::personality(PER_LINUX32) } == -1 {
            return (
                ErrorKind::Setup,
                format!(
                    "set the linux32 personality: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
    }
    if let Err(e) = p.confinement.before_user_change() {
        return (ErrorKind::Setup, e.to_string());
    }
    if let Err(failure) = become_user(p) {
        return failure;
    }
    if let Err(e) = nix::unistd::chdir(p.cwd.as_str()) {
        return (
            ErrorKind::Setup,
            format!("enter the working directory {}: {e}", p.cwd),
        );
    }
    let name = spec.argv[0].as_str();
    let Some(path) = find_in_path(name, &p.path_var, is_executable) else {
        return (
            ErrorKind::Exec,
            format!(
                "exec: {:?}: executable file not found in $PATH ({})",
                shorten(name),
                shorten(&p.path_var)
            ),
        );
    };
    let Ok(cpath) = CString::new(path.as_os_str().as_bytes()) else {
        return (
            ErrorKind::Exec,
            format!("exec {:?}: invalid path", shorten(name)),
        );
    };
    if let Err(e) = p.confinement.before_exec(p.user.uid) {
        return (ErrorKind::Setup, e.to_string());
    }
    let err = match nix::unistd::execve(&cpath, &p.argv, &p.env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    (
        ErrorKind::Exec,
        exec_failure_message(&path, err, &spec.platform, spec.emulated),
    )
}

fn become_user(p: &Prepared) -> Result<(), Failure> {
    let u = &p.user;
    if p.set_groups {
        let groups: Vec<Gid> = u.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).map_err(|e| {
            (
                ErrorKind::User,
                format!("set supplementary groups {:?}: {e}", u.groups),
            )
        })?;
    }
    nix::unistd::setgid(Gid::from_raw(u.gid))
        .map_err(|e| (ErrorKind::User, format!("setgid({}): {e}", u.gid)))?;
    nix::unistd::setuid(Uid::from_raw(u.uid))
        .map_err(|e| (ErrorKind::User, format!("setuid({}): {e}", u.uid)))
}

fn is_executable(path: &Path) -> bool {
    path.is_file() && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// A message that says why exec failed, naming the binary's architecture on ENOEXEC.
fn exec_failure_message(path: &Path, err: nix::Error, platform: &str, emulated: bool) -> String {
    let shown = shorten(&path.to_string_lossy());
    match err {
        nix::errno::Errno::ENOEXEC => {
            let mut header = [0u8; 64];
            let read = std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read(&mut f, &mut header));
            match read.ok().and_then(|n| elf_architecture(&header[..n])) {
                Some(arch) => {
                    let binary = Platform::new("linux", arch, None);
                    let how = if emulated {
                        "is emulated"
                    } else {
                        "runs natively"
                    };
                    format!(
                        "exec format error: {shown} is a {binary} binary and no emulator is registered for it (the step's platform {platform} {how})"
                    )
                }
                None => format!(
                    "exec format error: {shown} is neither a binary for this platform nor a script with a #! line"
                ),
            }
        }
        nix::errno::Errno::ENOENT => {
            format!(
                "exec {shown}: no such file or directory (is its #! interpreter or ELF loader missing?)"
            )
        }
        other => format!("exec {shown}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmapped_users_get_a_clear_error() {
        let maps = IdMaps::single(1000, 1000);
        let nobody = ResolvedUser {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            home: "/".into(),
        };
        let (kind, msg) = check_mapped("nobody", &nobody, &maps, "alice").unwrap_err();
        assert!(matches!(kind, ErrorKind::User));
        assert!(
            msg.starts_with("user nobody (uid 65534) is not mapped"),
            "{msg}"
        );
        assert!(
            msg.contains("add alice:100000:65536 to /etc/subuid and /etc/subgid")
                && msg.contains("install uidmap"),
            "{msg}"
        );
        let root = ResolvedUser {
            uid: 0,
            gid: 0,
            groups: vec![0],
            home: "/root".into(),
        };
        assert!(check_mapped("", &root, &maps, "alice").is_ok());
        let full = IdMaps::with_subids(
            1000,
            1000,
            Some(crate::idmap::SubidRange {
                start: 100000,
                count: 65536,
            }),
            Some(crate::idmap::SubidRange {
                start: 100000,
                count: 65536,
            }),
        );
        assert!(check_mapped("nobody", &nobody, &full, "alice").is_ok());
        let high = ResolvedUser {
            uid: 70000,
            gid: 0,
            groups: vec![0],
            home: "/".into(),
        };
        let (_, msg) = check_mapped("70000", &high, &full, "alice").unwrap_err();
        assert!(msg.ends_with("maps container ids 0-65536 only"), "{msg}");
        let odd_group = ResolvedUser {
            uid: 0,
            gid: 5,
            groups: vec![5],
            home: "/root".into(),
        };
        assert!(
            check_mapped("0:5", &odd_group, &maps, "alice")
                .unwrap_err()
                .1
                .starts_with("group 5")
        );
    }
}
