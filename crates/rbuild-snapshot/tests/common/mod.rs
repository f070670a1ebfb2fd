//! Helpers shared by the integration tests: a tar builder with full control over headers, and
//! small filesystem probes.
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::{EntryType, Header};

/// Builds layer tars entry by entry with explicit metadata.
pub struct TarBuilder {
    inner: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            inner: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, mtime: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_size(0);
        h
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u64, gid: u64, mtime: u64) -> &mut Self {
        let mut h = Self::header(EntryType::Directory, mode, uid, gid, mtime);
        self.inner.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Self::header(EntryType::Regular, mode, uid, gid, mtime);
        h.set_size(data.len() as u64);
        self.inner.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Symlink, 0o777, 0, 0, 100);
        self.inner.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Link, 0o644, 0, 0, 100);
        self.inner.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn node(&mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(kind, 0o660, 0, 0, 100);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.inner.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A PAX extended header applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while rest + len.to_string().len() != len {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        self.inner
            .append_data(&mut h, "PaxHeaders/x", data.as_slice())
            .unwrap();
        self
    }

    /// An entry whose name is written raw, bypassing the builder's own path checks.
    pub fn raw_file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let mut h = Self::header(EntryType::Regular, 0o644, 0, 0, 100);
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.inner.append(&h, data).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.inner.into_inner().unwrap()
    }
}

/// Reads an xattr without following symlinks.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

/// Sets an xattr without following symlinks.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr {name} on {}", path.display());
}

/// Creates an overlay whiteout (0:0 character device).
pub fn whiteout(path: &Path) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let rc = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
    assert_eq!(rc, 0, "mknod {}", path.display());
}

/// Sets the mtime (and atime) of a path without following symlinks.
pub fn set_mtime(path: &Path, sec: i64) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let ts = libc::timespec {
        tv_sec: sec,
        tv_nsec: 0,
    };
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            [ts, ts].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0);
}

/// Sets permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
