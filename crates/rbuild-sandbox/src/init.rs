//! The sandbox helper: the program re-executed with [`INIT_ARG`] in fresh mount, pid,
//! ipc, uts (and net) namespaces. Its first child is pid 1 of the step's pid
//! namespace: it builds the root filesystem, pivots into it and supervises the
//! step's command as a tiny init.

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

fn mount_rootfs(spec: &WireSpec, root_path: &Path) -> Result<(), Failure> {
    match &spec.rootfs {
        Rootfs::Overlay { lower, upper, work } => {
            let lower = if lower.is_empty() {
                vec![spec.scratch_dir.join(EMPTY_LOWER_DIR)]
            } else {
                lower.clone()
            };
            let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .unwrap_or(4096) as usize;
            let Ok(data) = overlay_data(&lower, upper, work, page) else {
                return crate::overlay::mount_layer_by_layer(&lower, upper, work, root_path)
                    .map_err(|e| {
                        (
                            ErrorKind::Setup,
                            format!("mount an overlay of {} layers: {e}", lower.len()),
                        )
                    });
            };
            if let Some(dir) = &data.chdir {
                nix::unistd::chdir(dir).map_err(nix_err("enter the layers' directory"))?;
            }
            let result = mount(
                Some("overlay"),
                root_path,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.options.as_str()),
            );
            let _ = nix::unistd::chdir("/");
            result.map_err(|e| {
                (
                    ErrorKind::Setup,
                    format!(
                        "mount the overlay ({}) on {}: {e}",
                        data.options,
                        root_path.display()
                    ),
                )
            })
        }
        Rootfs::Dir(dir) => bind_rootfs_nodev(dir, root_path),
    }
}

/// Binds a directory as the rootfs, without device access: device nodes in it (from base
/// layers, as root) must not be openable by the step, as on an overlay mounted in the
/// build namespace.
fn bind_rootfs_nodev(dir: &Path, root_path: &Path) -> Result<(), Failure> {
    let fail = |what: &str, e: nix::Error| {
        (
            ErrorKind::Setup,
            format!("{what} {} on {}: {e}", dir.display(), root_path.display()),
        )
    };
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(dir), root_path, None::<&str>, bind, None::<&str>).map_err(|e| fail("bind", e))?;
    let nodev = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV | locked_flags(dir);
    mount(None::<&str>, root_path, None::<&str>, nodev, None::<&str>)
        .map_err(|e| fail("remount nodev", e))
}

fn mount_proc(root: &OwnedFd, root_path: &Path, created: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let target = ensure(root, root_path, Path::new("proc"), Kind::Dir, created)
        .map_err(setup_err("create /proc"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("proc"),
        &fd_path(&target),
        Some("proc"),
        flags,
        None::<&str>,
    )
    .map_err(nix_err("mount /proc"))
}

fn mount_dev(
    root: &OwnedFd,
    root_path: &Path,
    created: &mut Vec<PathBuf>,
    reporter: &Reporter,
) -> Result<(), Failure> {
    let target = ensure(root, root_path, Path::new("dev"), Kind::Dir, created)
        .map_err(setup_err("create /dev"))?;
    mount(
        Some("tmpfs"),
        &fd_path(&target),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(nix_err("mount a tmpfs on /dev"))?;
    let dev = open_in_root(
        root.as_fd(),
        Path::new("dev"),
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .map_err(setup_err("open /dev"))?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let node = touch_in(&dev, name).map_err(setup_err("create a device mountpoint"))?;
        let source = format!("/dev/{name}");
        mount(
            Some(source.as_str()),
            &fd_path(&node),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| (ErrorKind::Setup, format!("bind {source}: {e}")))?;
    }
    let pts = mkdir_in(&dev, "pts").map_err(setup_err("create /dev/pts"))?;
    let pts_flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    match mount(
        Some("devpts"),
        &fd_path(&pts),
        Some("devpts"),
        pts_flags,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ) {
        Ok(()) => symlink_in(&dev, "pts/ptmx", "ptmx").map_err(setup_err("link /dev/ptmx"))?,
        Err(e) => reporter.log(format!("no /dev/pts: {e}")),
    }
    let shm = mkdir_in(&dev, "shm").map_err(setup_err("create /dev/shm"))?;
    mount(
        Some("shm"),
        &fd_path(&shm),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )
    .map_err(nix_err("mount /dev/shm"))?;
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        symlink_in(&dev, target, name).map_err(setup_err("link /dev/fd"))?;
    }
    Ok(())
}

/// Mount flags a bind remount must keep, because the kernel locks them on mounts
/// inherited from a more privileged namespace.
fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

fn mount_sys(
    root: &OwnedFd,
    root_path: &Path,
    created: &mut Vec<PathBuf>,
    reporter: &Reporter,
) -> Result<(), Failure> {
    let target = ensure(root, root_path, Path::new("sys"), Kind::Dir, created)
        .map_err(setup_err("create /sys"))?;
    if let Err(e) = mount(
        Some("/sys"),
        &fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        reporter.log(format!("no /sys: binding the host's failed: {e}"));
        return Ok(());
    }
    let sys = open_in_root(
        root.as_fd(),
        Path::new("sys"),
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .map_err(setup_err("open /sys"))?;
    if let Err(e) = make_readonly(&sys) {
        reporter.log(format!("no /sys: cannot make it read-only: {e}"));
        let _ = umount2(&fd_path(&sys), MntFlags::MNT_DETACH);
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Makes the mount `fd` refers to, and every mount below it, read-only; falls back to a
/// remount of the top mount alone on kernels without mount_setattr(2).
fn make_readonly(fd: &OwnedFd) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid descriptor, an empty NUL-terminated path and the struct's size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    let path = fd_path(fd);
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&path);
    mount(None::<&str>, &path, None::<&str>, flags, None::<&str>).map_err(std::io::Error::from)
}

/// Paths hidden from the step, as runc's and containerd's default spec hides them: a
/// directory under an empty read-only tmpfs, a file under `/dev/null`.
pub(crate) const MASKED_PATHS: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "sys/firmware",
    "sys/devices/virtual/powercap",
    "proc/scsi",
];

/// Paths the step sees read-only, as in runc's and containerd's default spec.
pub(crate) const READONLY_PATHS: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// Opens `rel` in the root without creating it; `None` when it does not exist.
fn open_existing(root: &OwnedFd, rel: &str) -> Result<Option<OwnedFd>, Failure> {
    match open_in_root(root.as_fd(), Path::new(rel), libc::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err((ErrorKind::Setup, format!("open /{rel}: {e}"))),
    }
}

fn mask_paths(root: &OwnedFd) -> Result<(), Failure> {
    for rel in MASKED_PATHS {
        let Some(fd) = open_existing(root, rel)? else {
            continue;
        };
        let is_dir = nix::sys::stat::fstat(&fd)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .map_err(|e| (ErrorKind::Setup, format!("stat /{rel}: {e}")))?;
        let result = if is_dir {
            mount(
                Some("tmpfs"),
                &fd_path(&fd),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0"),
            )
        } else {
            mount(
                Some("/dev/null"),
                &fd_path(&fd),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        result.map_err(|e| (ErrorKind::Setup, format!("mask /{rel}: {e}")))?;
    }
    for rel in READONLY_PATHS {
        let Some(fd) = open_existing(root, rel)? else {
            continue;
        };
        let path = fd_path(&fd);
        mount(
            Some(&path),
            &path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| (ErrorKind::Setup, format!("bind /{rel} onto itself: {e}")))?;
        let Some(mounted) = open_existing(root, rel)? else {
            continue;
        };
        make_readonly(&mounted)
            .map_err(|e| (ErrorKind::Setup, format!("make /{rel} read-only: {e}")))?;
    }
    Ok(())
}

/// Makes the step's extra mounts, in order, creating missing mountpoints.
fn mount_extra(
    mounts: &[Mount],
    root: &OwnedFd,
    root_path: &Path,
    created: &mut Vec<PathBuf>,
) -> Result<(), Failure> {
    for m in mounts {
        let target = m.target();
        let rel = Path::new(target.trim_start_matches('/'));
        match m {
            Mount::Bind {
                source, readonly, ..
            } => {
                let kind = if source.is_dir() {
                    Kind::Dir
                } else {
                    Kind::File
                };
                let fd = ensure(root, root_path, rel, kind, created)
                    .map_err(|e| (ErrorKind::Setup, format!("create {target}: {e}")))?;
                mount(
                    Some(source.as_path()),
                    &fd_path(&fd),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| {
                    (
                        ErrorKind::Setup,
                        format!("bind {} on {target}: {e}", source.display()),
                    )
                })?;
                if *readonly {
                    let mounted = open_in_root(root.as_fd(), rel, libc::O_PATH)
                        .map_err(|e| (ErrorKind::Setup, format!("open {target}: {e}")))?;
                    make_readonly(&mounted)
                        .map_err(|e| (ErrorKind::Setup, format!("make {target} read-only: {e}")))?;
                }
            }
            Mount::Tmpfs { size, .. } => {
                let fd = ensure(root, root_path, rel, Kind::Dir, created)
                    .map_err(|e| (ErrorKind::Setup, format!("create {target}: {e}")))?;
                let data = size.map(|n| format!("size={n}"));
                mount(
                    Some("tmpfs"),
                    &fd_path(&fd),
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    data.as_deref(),
                )
                .map_err(|e| (ErrorKind::Setup, format!("mount a tmpfs on {target}: {e}")))?;
            }
        }
    }
    Ok(())
}

fn bind_etc_files(
    spec: &WireSpec,
    root: &OwnedFd,
    root_path: &Path,
    created: &mut Vec<PathBuf>,
) -> Result<(), Failure> {
    for (inside, file) in [
        ("etc/hosts", HOSTS_FILE),
        ("etc/resolv.conf", RESOLV_FILE),
        ("etc/hostname", HOSTNAME_FILE),
    ] {
        if file == HOSTNAME_FILE && spec.hostname.is_empty() {
            continue;
        }
        let target = ensure(root, root_path, Path::new(inside), Kind::File, created)
            .map_err(|e| (ErrorKind::Setup, format!("create /{inside}: {e}")))?;
        let source = spec.scratch_dir.join(file);
        mount(
            Some(source.as_path()),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| (ErrorKind::Setup, format!("bind /{inside}: {e}")))?;
    }
    Ok(())
}

fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain socket and two ioctls on a zeroed, NUL-terminated ifreq.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut result = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if result == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(sock);
        if result != 0 { Err(err) } else { Ok(()) }
    }
}

fn pivot_into(root_path: &Path) -> Result<(), Failure> {
    nix::unistd::chdir(root_path).map_err(nix_err("enter the step's root"))?;
    nix::unistd::pivot_root(".", ".").map_err(nix_err("pivot_root into the step's root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(nix_err("detach the old root"))?;
    nix::unistd::chdir("/").map_err(nix_err("enter /"))
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
