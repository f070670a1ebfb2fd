//! Paths meant as a chroot would see them: symlinks on the way are followed, but resolved
//! with the tree's top directory as `/`, so they never lead out of it. This is how a tar
//! entry of `ADD archive.tar /dst/` is placed: as BuildKit's unpack chrooted into `/dst`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys::{self, cvt};
use crate::{FileKind, Root, Target, split};

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
    /// tree (`mkdir -p` in a chroot): a dangling symlink on the way gets the directories it
    /// names made, as BuildKit's copy does. A component that is not a directory is refused
    /// with ENOTDIR; the error names the path that failed.
    pub fn mkdir_all_in_root(&self, rel: &Path, mode: u32) -> Result<(), (PathBuf, io::Error)> {
        let resolved = self
            .resolve_in_root(rel)
            .map_err(|e| (rel.to_path_buf(), e))?;
        let mut done = PathBuf::new();
        for comp in resolved.components() {
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
    /// `rel` with every symlink on the way replaced by what it names inside this tree (an
    /// absolute link means the top directory, `..` stops there), dangling links included:
    /// the path whose directories `mkdir -p` in a chroot makes. Components past the first
    /// missing one are taken as written. ELOOP after [`MAX_LINKS`] links.
    pub fn resolve_in_root(&self, rel: &Path) -> io::Result<PathBuf> {
        let mut todo: Vec<OsString> = components_of(rel.as_os_str()).rev().collect();
        let mut done: Vec<OsString> = Vec::new();
        let mut links = 0;
        let mut missing = false;
        while let Some(comp) = todo.pop() {
            if comp == ".." {
                done.pop();
                continue;
            }
            let path: PathBuf = done.iter().chain([&comp]).collect();
            let link = if missing { None } else { self.link_at(&path)? };
            match link {
                Some(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    if target.as_bytes().first() == Some(&b'/') {
                        done.clear();
                    }
                    todo.extend(components_of(&target).rev());
                }
                None => {
                    missing = missing || !self.exists(&path);
                    done.push(comp);
                }
            }
        }
        Ok(done.iter().collect())
    }

    /// The target of the symlink at `rel` (whose parents are real directories), if it is one.
    fn link_at(&self, rel: &Path) -> io::Result<Option<OsString>> {
        let target = match self.at(rel) {
            Ok(t) => t,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match target.stat()? {
            Some(st) if st.kind == FileKind::Symlink => target.read_link().map(Some),
            _ => Ok(None),
        }
    }

    fn exists(&self, rel: &Path) -> bool {
        self.at(rel)
            .and_then(|t| t.stat())
            .is_ok_and(|st| st.is_some())
    }
}

/// Most symlinks followed resolving one path (Linux's limit).
pub const MAX_LINKS: usize = 40;

/// The non-empty, non-`.` components of a path given as bytes (`..` kept).
fn components_of(path: &OsStr) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn dangling_links_resolve_inside_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path();
        std::fs::create_dir_all(top.join("w/real")).unwrap();
        symlink("/made/by/add", top.join("d")).unwrap();
        symlink("../rel/x", top.join("w/r")).unwrap();
        symlink("../../../../../../etc", top.join("up")).unwrap();
        symlink("real", top.join("w/here")).unwrap();
        symlink("loop", top.join("loop")).unwrap();
        let root = Root::open(top).unwrap();
        let resolve = |p: &str| root.resolve_in_root(Path::new(p));
        assert_eq!(resolve("d/x").unwrap(), Path::new("made/by/add/x"));
        assert_eq!(resolve("w/r").unwrap(), Path::new("rel/x"));
        assert_eq!(resolve("up/passwd").unwrap(), Path::new("etc/passwd"));
        assert_eq!(resolve("w/here/new/..").unwrap(), Path::new("w/real"));
        assert_eq!(
            resolve("loop").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        root.mkdir_all_in_root(Path::new("d/x"), 0o755).unwrap();
        assert!(top.join("made/by/add/x").is_dir());
        root.mkdir_all_in_root(Path::new("up"), 0o755).unwrap();
        assert!(top.join("etc").is_dir());
        assert!(
            std::fs::symlink_metadata(top.join("up"))
                .unwrap()
                .is_symlink()
        );
    }
}
