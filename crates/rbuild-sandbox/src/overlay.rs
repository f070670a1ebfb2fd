//! An overlay mounted in the build namespace itself, for steps that change a stage's tree
//! without running a command in it (ADD of a local archive).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::SandboxError;
use crate::plan::overlay_data;

/// An overlay (`lower` top-most first, `upper`, `work`) mounted on a directory; unmounted
/// when dropped. `upper` then holds the changes made through the mount, in overlay format.
#[derive(Debug)]
pub struct OverlayMount {
    target: PathBuf,
}

impl OverlayMount {
    /// Mounts the overlay on the empty directory `target`. With no lower layers, `empty`
    /// (an empty directory) stands in for them.
    pub fn new(
        lower: &[PathBuf],
        empty: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<OverlayMount, SandboxError> {
        let lower = if lower.is_empty() {
            vec![empty.to_path_buf()]
        } else {
            lower.to_vec()
        };
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as usize;
        // Relative layer paths would need a chdir, which the other threads of the build
        // would see: when absolute options do not fit in a page, the layers are given one
        // by one through the new mount API instead.
        let data = match overlay_data(&lower, upper, work, page) {
            Ok(d) if d.chdir.is_none() => d,
            _ => {
                mount_layer_by_layer(&lower, upper, work, target).map_err(|source| {
                    SandboxError::Io {
                        context: format!(
                            "mount an overlay of {} layers on {}",
                            lower.len(),
                            target.display()
                        ),
                        source,
                    }
                })?;
                return Ok(OverlayMount {
                    target: target.to_path_buf(),
                });
            }
        };
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.options.as_str()),
        )
        .map_err(|e| SandboxError::Io {
            context: format!("mount an overlay on {}", target.display()),
            source: e.into(),
        })?;
        Ok(OverlayMount {
            target: target.to_path_buf(),
        })
    }

    /// Where the merged tree is.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

/// Mounts the overlay with `fsopen`/`fsconfig`, one `lowerdir+` per layer (Linux 6.8+), so
/// the number of layers is not bounded by the page-sized mount options.
pub(crate) fn mount_layer_by_layer(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let cstr = |s: &[u8]| std::ffi::CString::new(s).map_err(std::io::Error::other);
    let check = |rc: libc::c_long| {
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    let fstype = cstr(b"overlay")?;
    // SAFETY: fsopen takes a NUL-terminated name and flags; the result is a new descriptor.
    let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: the descriptor was just created and is owned here.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    let set = |key: &str, value: Option<&Path>| -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let key = cstr(key.as_bytes())?;
        let value = value.map(|v| cstr(v.as_os_str().as_bytes())).transpose()?;
        let (cmd, ptr) = match &value {
            Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
            None => (FSCONFIG_SET_FLAG, std::ptr::null()),
        };
        // SAFETY: valid descriptor, NUL-terminated key and value (or null for a flag).
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                key.as_ptr(),
                ptr,
                0,
            )
        })
        .map(drop)
    };
    for layer in lower {
        set("lowerdir+", Some(layer))?;
    }
    set("upperdir", Some(upper))?;
    set("workdir", Some(work))?;
    set("userxattr", None)?;
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })?;
    // SAFETY: fsmount of a created context; the result is a new descriptor.
    let mnt =
        check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })?;
    // SAFETY: the descriptor was just created and is owned here.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let empty = cstr(b"")?;
    let to = cstr(std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()))?;
    // SAFETY: valid descriptors and NUL-terminated paths.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.target, MntFlags::MNT_DETACH) {
            tracing::warn!(target = %self.target.display(), error = %e, "unmounting overlay");
        }
    }
}
