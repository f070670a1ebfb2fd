//! Path operations inside a directory tree whose contents are untrusted: a layer directory, a
//! COPY destination, a build context, a rootfs.
//!
//! A hostile layer, archive or context can put a symlink where a directory used to be, so any
//! path-following call (`chmod`, `chown`, `utimes`, `setxattr`, `open`, …) on a path inside such
//! a tree may act on a host file instead. This crate is the one place that touches such paths:
//!
//! - [`Root`] holds a descriptor of the tree's top directory;
//! - [`Root::at`] resolves the parent directories of a relative path with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so no symlink and no `..` is followed on
//!   the way, and returns a [`Target`]: that parent's descriptor and the final name;
//! - every [`Target`] operation acts on the final name with a `*at` call that does not follow a
//!   final symlink (`fchmodat2(AT_SYMLINK_NOFOLLOW)`, `fchownat(AT_SYMLINK_NOFOLLOW)`,
//!   `utimensat(AT_SYMLINK_NOFOLLOW)`, `openat(O_NOFOLLOW)`, `linkat` without `AT_SYMLINK_FOLLOW`,
//!   …), or on a descriptor opened that way.
//!
//! - [`Root::at_in_root`] and its siblings resolve parents as a chroot would
//!   (`RESOLVE_IN_ROOT`): symlinks are followed but can never lead out of the tree; the final
//!   name is still acted on without following it.
//!
//! So whatever a tree contains and in whatever order its entries arrive, nothing outside it is
//! read, written or changed through these calls.

pub mod devices;
mod inroot;
mod sys;
mod target;

pub use target::{FileKind, Stat, Target};

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// A directory tree whose contents are untrusted, held open by a descriptor.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens the top directory of a tree. The path itself is rbuild's choice (a state
    /// directory, the build context the user named), so a symlink naming it is followed.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = sys::open_dir(path)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path the tree was opened at, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor of the top directory.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The host path of `rel` inside the tree, for messages only: never pass it to a
    /// path-following call.
    pub fn display(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Resolves everything but the last component of `rel` (relative, no `..`), refusing any
    /// symlink on the way, and returns the final entry as a [`Target`]. An empty `rel` names
    /// the top directory itself.
    pub fn at(&self, rel: &Path) -> io::Result<Target<'_>> {
        let (parent, name) = split(rel)?;
        let dir = if parent.as_os_str().is_empty() {
            None
        } else {
            Some(sys::open_beneath(self.fd.as_fd(), &parent)?)
        };
        Target::new(self, dir, name)
    }

    /// Like [`Root::at`] with the path given as components.
    pub fn at_components<S: AsRef<OsStr>>(&self, comps: &[S]) -> io::Result<Target<'_>> {
        let rel: PathBuf = comps.iter().map(|c| c.as_ref()).collect();
        self.at(&rel)
    }

    /// Opens the directory `rel` (no symlink followed anywhere) as a tree of its own.
    pub fn open_subdir(&self, rel: &Path) -> io::Result<Root> {
        let fd = if rel.as_os_str().is_empty() {
            self.fd.try_clone()?
        } else {
            sys::open_beneath(self.fd.as_fd(), rel)?
        };
        Ok(Root {
            fd,
            path: self.path.join(rel),
        })
    }

    /// Creates every missing directory of `rel` with `mode` (before the umask), refusing a
    /// component that exists and is not a directory (a symlink included).
    pub fn create_dir_all(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let mut done = PathBuf::new();
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                return Err(bad_path(rel));
            };
            done.push(name);
            let target = self.at(&done)?;
            match target.stat()? {
                Some(st) if st.kind == FileKind::Dir => {}
                Some(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
                None => target.mkdir(mode)?,
            }
        }
        Ok(())
    }
}

/// Splits a relative path into its parent and final name; `..`, `/` and prefixes are refused,
/// `.` components are dropped.
fn split(rel: &Path) -> io::Result<(PathBuf, Option<&OsStr>)> {
    let mut names = Vec::new();
    for comp in rel.components() {
        match comp {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => return Err(bad_path(rel)),
        }
    }
    let Some(last) = names.pop() else {
        return Ok((PathBuf::new(), None));
    };
    Ok((names.iter().collect(), Some(last)))
}

fn bad_path(rel: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is not a plain relative path", rel.display()),
    )
}

/// `openat2(root, rel, flags)` resolving `rel` inside `root` as if it were `/`: symlinks are
/// followed but can never lead out (`RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`). This is how
/// a path *inside a container* is meant (a mount target, a `WORKDIR`), unlike [`Root::at`],
/// which refuses symlinks altogether. `O_CREAT` creates files with mode 0644.
pub fn open_in_root(root: BorrowedFd<'_>, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
    let mode = if flags & libc::O_CREAT != 0 { 0o644 } else { 0 };
    sys::openat2_mode(
        root,
        rel,
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        mode,
    )
}

/// Whether an error means a symlink (or a non-directory) stood where a directory was needed.
pub fn is_symlink_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENOTDIR)
    )
}
