//! Thin wrappers over the syscalls std does not offer: xattrs, mknod, no-follow timestamps, and
//! best-effort ownership changes.

use std::ffi::CString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{IoContext, SnapshotError};

/// The xattr that marks an overlay directory opaque when mounted with `userxattr`.
pub(crate) const OPAQUE_XATTR: &str = "user.overlay.opaque";

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a nul byte"))
}

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a nul byte",
        )
    })
}

/// Whether a file is an overlay whiteout: a character device with device number 0:0.
pub(crate) fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Reads one xattr without following a final symlink; `None` when it is not set.
pub(crate) fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = cpath(path)?;
    let n = cname(name)?;
    loop {
        // SAFETY: valid nul-terminated strings; a null buffer with size 0 asks for the length.
        let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
                _ => Err(err),
            };
        }
        let mut buf = vec![0u8; len as usize];
        // SAFETY: buf has exactly buf.len() writable bytes.
        let got =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(err);
        }
        buf.truncate(got as usize);
        return Ok(Some(buf));
    }
}

/// Lists the xattr names of a file without following a final symlink.
pub(crate) fn list_xattrs(path: &Path) -> io::Result<Vec<String>> {
    let p = cpath(path)?;
    loop {
        // SAFETY: valid nul-terminated string; a null buffer with size 0 asks for the length.
        let len = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(err),
            };
        }
        let mut buf = vec![0u8; len as usize];
        // SAFETY: buf has exactly buf.len() writable bytes.
        let got = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(err);
        }
        buf.truncate(got as usize);
        return Ok(buf
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect());
    }
}

/// Sets one xattr without following a final symlink.
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cname(name)?;
    // SAFETY: valid nul-terminated strings and a value slice of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The xattrs that belong in a layer: file capabilities and user xattrs other than overlay's own.
pub(crate) fn is_layer_xattr(name: &str) -> bool {
    name == "security.capability" || (name.starts_with("user.") && !is_overlay_xattr(name))
}

/// Whether an xattr is overlayfs bookkeeping (never copied in or out of layers).
pub(crate) fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("user.overlay.") || name.starts_with("trusted.overlay.")
}

/// Reads the layer-relevant xattrs of a file, sorted by name.
pub(crate) fn layer_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, SnapshotError> {
    let mut names = list_xattrs(path).ctx("list xattrs of", path)?;
    names.retain(|n| is_layer_xattr(n));
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if let Some(value) = get_xattr(path, &name).ctx("read xattr of", path)? {
            out.push((name, value));
        }
    }
    Ok(out)
}

/// Creates a device node or fifo. `kind` is `libc::S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
pub(crate) fn mknod(path: &Path, kind: u32, perm: u32, major: u32, minor: u32) -> io::Result<()> {
    let p = cpath(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: valid nul-terminated path.
    let rc = unsafe { libc::mknod(p.as_ptr(), (kind | (perm & 0o7777)) as libc::mode_t, dev) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates an overlay whiteout (a 0:0 character device) at `path`.
pub(crate) fn make_whiteout(path: &Path) -> io::Result<()> {
    mknod(path, libc::S_IFCHR, 0, 0, 0)
}

/// Sets atime and mtime of a path without following a final symlink.
pub(crate) fn set_times(path: &Path, sec: i64, nsec: u32) -> io::Result<()> {
    let p = cpath(path)?;
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec.min(999_999_999) as libc::c_long,
    };
    let times = [ts, ts];
    // SAFETY: valid path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets permission bits (including setuid/setgid/sticky) of a path that is not a symlink.
pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
}

/// Changes ownership without following symlinks, tolerating the id-mapping limits of a rootless
/// user namespace (only uid 0 mapped): such failures are logged once and otherwise ignored.
#[derive(Debug, Default)]
pub(crate) struct Chowner {
    warned: bool,
}

impl Chowner {
    /// Sets the owner of `path`; EPERM and EINVAL are tolerated.
    pub(crate) fn lchown(&mut self, path: &Path, uid: u32, gid: u32) -> Result<(), SnapshotError> {
        match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EINVAL)) => {
                if !self.warned {
                    self.warned = true;
                    tracing::debug!(
                        path = %path.display(), uid, gid, error = %e,
                        "cannot set file owner (unmapped id?), keeping the current owner"
                    );
                }
                Ok(())
            }
            Err(e) => Err(SnapshotError::io("chown", path, e)),
        }
    }
}

/// Splits a device number into (major, minor).
pub(crate) fn dev_parts(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}
