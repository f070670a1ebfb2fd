//! Thin wrappers over the syscalls std does not offer for reading xattrs, and best-effort
//! ownership changes. Every write inside a tree goes through `rbuild-fsroot`.

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

/// Changes ownership without following symlinks. An id the user namespace cannot represent
/// (outside the mapped range in a rootless build, or `4294967295`, which chown(2) reads as
/// "unchanged") leaves the entry owned by 0:0; that is recorded in `unmapped` for the
/// caller's warning.
#[derive(Debug)]
pub(crate) struct Chowner {
    pub(crate) unmapped: crate::UnmappedOwners,
    /// The top of the tree, so that recorded paths are the tree's, not the host's.
    top: std::path::PathBuf,
}

impl Chowner {
    /// A chowner for entries of the tree at `top`.
    pub(crate) fn within(top: &Path) -> Chowner {
        Chowner {
            unmapped: Default::default(),
            top: top.to_path_buf(),
        }
    }

    /// Sets the owner of the entry itself (a symlink's own owner, never its target's).
    pub(crate) fn chown(
        &mut self,
        target: &rbuild_fsroot::Target<'_>,
        uid: u32,
        gid: u32,
    ) -> Result<(), SnapshotError> {
        let result = if uid == u32::MAX || gid == u32::MAX {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        } else {
            target.chown(uid, gid)
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EINVAL)) => {
                let host = target.display();
                let inside = host.strip_prefix(&self.top).unwrap_or(&host);
                let path = Path::new("/").join(inside);
                self.unmapped.note(&path.display().to_string(), uid, gid);
                Ok(())
            }
            Err(e) => Err(SnapshotError::io("chown", target.display(), e)),
        }
    }
}

/// Splits a device number into (major, minor).
pub(crate) fn dev_parts(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}
