//! Mountpoints inside the step's root filesystem, reached through file descriptors
//! resolved with `openat2(RESOLVE_IN_ROOT)` so that symlinks in the rootfs can never
//! lead a mount or a created file out of it.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Whether a mountpoint is a directory or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

/// `openat2(dir, path, flags)` resolving inside `dir` as if it were `/` (see
/// [`rbuild_fsroot::open_in_root`]).
pub(crate) fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    rbuild_fsroot::open_in_root(root, path, flags)
}

/// The `/proc/self/fd/N` path that names `fd`, for mount(2) sources and targets.
pub(crate) fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    nix::sys::stat::mkdirat(dir, name, nix::sys::stat::Mode::from_bits_truncate(0o755))
        .map_err(io::Error::from)
}

fn create_file_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let flags = nix::fcntl::OFlag::O_CREAT
        | nix::fcntl::OFlag::O_EXCL
        | nix::fcntl::OFlag::O_WRONLY
        | nix::fcntl::OFlag::O_NOFOLLOW
        | nix::fcntl::OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(
        dir,
        name,
        flags,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )?;
    drop(fd);
    Ok(())
}

/// Opens the mountpoint `rel` inside `root` (an `O_PATH` descriptor), creating it and
/// any missing parents. Every path created is pushed to `created` relative to the root.
/// `root_path` is the root's path in this mount namespace, used to name files created
/// through a dangling symlink. A dangling symlink on the way to a directory is followed
/// inside the root, as the kernel would resolve it there.
pub(crate) fn ensure(
    root: &OwnedFd,
    root_path: &Path,
    rel: &Path,
    kind: Kind,
    created: &mut Vec<PathBuf>,
) -> io::Result<OwnedFd> {
    let mut rel = rel.to_path_buf();
    for _ in 0..40 {
        match ensure_once(root, root_path, &rel, kind, created)? {
            Ensured::Done(fd) => return Ok(fd),
            Ensured::Follow(next) => rel = next,
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

enum Ensured {
    Done(OwnedFd),
    /// A dangling symlink was met: retry with this path.
    Follow(PathBuf),
}

/// Where a symlink `link` found in directory `parent` leads, followed by `rest`,
/// resolved lexically inside the root (`..` stops at the root).
pub(crate) fn follow_link(parent: &Path, link: &Path, rest: &[&OsStr]) -> PathBuf {
    let mut parts: Vec<&OsStr> = if link.is_absolute() {
        Vec::new()
    } else {
        parent
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect()
    };
    for c in link.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.extend_from_slice(rest);
    parts.iter().collect()
}

fn ensure_once(
    root: &OwnedFd,
    root_path: &Path,
    rel: &Path,
    kind: Kind,
    created: &mut Vec<PathBuf>,
) -> io::Result<Ensured> {
    let parts: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut prefix = PathBuf::new();
    for (i, name) in parts.iter().enumerate() {
        let parent = prefix.clone();
        prefix.push(name);
        let last = i + 1 == parts.len();
        match open_in_root(root.as_fd(), &prefix, libc::O_PATH) {
            Ok(fd) if last => return Ok(Ensured::Done(fd)),
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let parent_dir = if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent.clone()
        };
        let parent_fd = open_in_root(root.as_fd(), &parent_dir, libc::O_PATH | libc::O_DIRECTORY)?;
        let made = if last && kind == Kind::File {
            create_file_at(parent_fd.as_fd(), name)
        } else {
            mkdirat(parent_fd.as_fd(), name)
        };
        match made {
            Ok(()) => created.push(prefix.clone()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && last && kind == Kind::File => {
                // A dangling symlink: create its target, resolved inside the root.
                let fd = open_in_root(root.as_fd(), &prefix, libc::O_CREAT | libc::O_WRONLY)?;
                if let Ok(real) = std::fs::read_link(fd_path(&fd))
                    && let Ok(inner) = real.strip_prefix(root_path)
                {
                    created.push(inner.to_path_buf());
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let link = nix::fcntl::readlinkat(parent_fd.as_fd(), *name).map_err(|_| e)?;
                let next = follow_link(&parent, Path::new(&link), &parts[i + 1..]);
                return Ok(Ensured::Follow(next));
            }
            Err(e) => return Err(e),
        }
    }
    if parts.is_empty() {
        return open_in_root(root.as_fd(), Path::new("."), libc::O_PATH).map(Ensured::Done);
    }
    open_in_root(root.as_fd(), &prefix, libc::O_PATH).map(Ensured::Done)
}

/// Creates an empty file `name` in the directory `dir` (ours, so no symlink can be there).
pub(crate) fn touch_in(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    create_file_at(dir.as_fd(), OsStr::new(name))?;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok(fd)
}

/// Creates a directory `name` in `dir` and opens it.
pub(crate) fn mkdir_in(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    mkdirat(dir.as_fd(), OsStr::new(name))?;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        nix::fcntl::OFlag::O_PATH
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok(fd)
}

/// Creates a symlink `name` -> `target` in `dir`.
pub(crate) fn symlink_in(dir: &OwnedFd, target: &str, name: &str) -> io::Result<()> {
    nix::unistd::symlinkat(target, dir.as_fd(), name).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_followed_inside_the_root() {
        let rest = [OsStr::new("inner")];
        assert_eq!(
            follow_link(Path::new("a/b"), Path::new("../../../../x"), &rest),
            PathBuf::from("x/inner")
        );
        assert_eq!(
            follow_link(Path::new("a/b"), Path::new("/etc/y"), &[]),
            PathBuf::from("etc/y")
        );
        assert_eq!(
            follow_link(Path::new("a"), Path::new("./c/../d"), &rest),
            PathBuf::from("a/d/inner")
        );
    }
}
