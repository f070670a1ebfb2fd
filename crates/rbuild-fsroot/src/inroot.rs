//! Paths meant as a chroot would see them: symlinks on the way are followed, but resolved
//! with the tree's top directory as `/`, so they never lead out of it. This is how a tar
//! entry of `ADD archive.tar /dst/` is placed: as BuildKit's unpack chrooted into `/dst`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sys::{self, cvt};
use crate::{Root, Target, split};

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

impl Root {
    /// Resolves the parents of `rel` (relative, no `..`) following symlinks inside this tree
    /// (an absolute link means the top directory, `..` stops there) and returns the final
    /// entry as a [`Target`], which is acted on without following it.
    pub fn at_in_root(&self, rel: &Path) -> io::Result<Target<'_>> {
        let (parent, name) = split(rel)?;
        let dir = if parent.as_os_str().is_empty() {
            None
        } else {
            Some(open_dir_in_root(self.fd(), &parent)?)
        };
        Target::new_at(self, dir, name, rel)
    }

    /// Opens the directory `rel`, following symlinks inside this tree, as a tree of its own.
    pub fn open_subdir_in_root(&self, rel: &Path) -> io::Result<Root> {
        let (parent, name) = split(rel)?;
        let fd = if name.is_none() && parent.as_os_str().is_empty() {
            self.fd().try_clone_to_owned()?
        } else {
            open_dir_in_root(self.fd(), rel)?
        };
        Ok(Root::from_fd(fd, self.display(rel)))
    }

    /// Creates the missing directories of `rel` with `mode`, following symlinks inside this
    /// tree (`mkdir -p` in a chroot). A component that is not a directory is refused with
    /// ENOTDIR, a dangling symlink with EEXIST; the error names the path that failed.
    pub fn mkdir_all_in_root(&self, rel: &Path, mode: u32) -> Result<(), (PathBuf, io::Error)> {
        let mut done = PathBuf::new();
        for comp in rel.components() {
            done.push(comp);
            match open_dir_in_root(self.fd(), &done) {
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err((done, e)),
            }
            let made = self.at_in_root(&done).and_then(|t| t.mkdir(mode));
            if let Err(e) = made {
                return Err((done, e));
            }
        }
        Ok(())
    }

    /// Sets atime and mtime of what `rel` names, a final symlink followed inside this tree.
    pub fn set_times_in_root(&self, rel: &Path, sec: i64, nsec: u32) -> io::Result<()> {
        let fd = sys::openat2(self.fd(), rel, libc::O_PATH, IN_ROOT)?;
        let proc = sys::proc_path(&fd)?;
        let ts = libc::timespec {
            tv_sec: sec as libc::time_t,
            tv_nsec: nsec.min(999_999_999) as libc::c_long,
        };
        let times = [ts, ts];
        // SAFETY: valid path and a two-element array; /proc/self/fd/N names exactly the
        // inode resolved above.
        cvt(unsafe { libc::utimensat(libc::AT_FDCWD, proc.as_ptr(), times.as_ptr(), 0) }).map(drop)
    }
}

/// `openat2(root, rel, O_DIRECTORY)` with `RESOLVE_IN_ROOT`.
fn open_dir_in_root(root: std::os::fd::BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    match sys::openat2(root, rel, libc::O_RDONLY | libc::O_DIRECTORY, IN_ROOT) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            sys::openat2(root.as_fd(), rel, libc::O_PATH | libc::O_DIRECTORY, IN_ROOT)
        }
        other => other,
    }
}
