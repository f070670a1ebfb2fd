//! The step's root filesystem, as the sandbox helper builds it: the rootfs (overlay or
//! bind), /proc, /dev, /sys, read-only and masked paths, extra mounts, /etc files, the
//! loopback interface, and the pivot into it.

use super::*;

pub(super) fn mount_rootfs(spec: &WireSpec, root_path: &Path) -> Result<(), Failure> {
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

pub(super) fn mount_proc(
    root: &OwnedFd,
    root_path: &Path,
    created: &mut Vec<PathBuf>,
) -> Result<(), Failure> {
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

pub(super) fn mount_dev(
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

pub(super) fn mount_sys(
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

pub(super) fn mask_paths(root: &OwnedFd) -> Result<(), Failure> {
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
pub(super) fn mount_extra(
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

pub(super) fn bind_etc_files(
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

pub(super) fn loopback_up() -> std::io::Result<()> {
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

pub(super) fn pivot_into(root_path: &Path) -> Result<(), Failure> {
    nix::unistd::chdir(root_path).map_err(nix_err("enter the step's root"))?;
    nix::unistd::pivot_root(".", ".").map_err(nix_err("pivot_root into the step's root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(nix_err("detach the old root"))?;
    nix::unistd::chdir("/").map_err(nix_err("enter /"))
}
