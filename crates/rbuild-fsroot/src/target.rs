//! One entry inside a [`Root`]: its parent directory's descriptor and its final name, with the
//! operations that never follow the final name if it is a symlink.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::Root;
use crate::sys::{self, EMPTY, cvt};

/// The type of a file, from `lstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed here).
    Symlink,
    /// A character device (0:0 is an overlay whiteout).
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

/// What `lstat` says of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The file type.
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Device number of a device node.
    pub rdev: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Inode number.
    pub ino: u64,
    /// Link count.
    pub nlink: u64,
}

impl Stat {
    fn from_raw(st: &libc::stat) -> Stat {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFCHR => FileKind::Char,
            libc::S_IFBLK => FileKind::Block,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            _ => FileKind::File,
        };
        Stat {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            rdev: st.st_rdev,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as u32,
            ino: st.st_ino,
            nlink: st.st_nlink,
        }
    }

    /// Whether this is an overlay whiteout (a 0:0 character device).
    pub fn is_whiteout(&self) -> bool {
        self.kind == FileKind::Char && self.rdev == 0
    }
}

/// An entry of a [`Root`], reached without following any symlink.
#[derive(Debug)]
pub struct Target<'r> {
    root: &'r Root,
    /// The parent directory; `None` when it is the root itself.
    dir: Option<OwnedFd>,
    /// The final name; `None` for the root itself.
    name: Option<CString>,
    rel: PathBuf,
}

impl<'r> Target<'r> {
    pub(crate) fn new(
        root: &'r Root,
        dir: Option<OwnedFd>,
        name: Option<&OsStr>,
    ) -> io::Result<Target<'r>> {
        let cname = name.map(sys::cstr).transpose()?;
        let mut rel = PathBuf::new();
        if let Some(n) = name {
            rel.push(n);
        }
        Ok(Target {
            root,
            dir,
            name: cname,
            rel,
        })
    }

    /// Like [`Target::new`], with the whole relative path kept for messages.
    pub(crate) fn new_at(
        root: &'r Root,
        dir: Option<OwnedFd>,
        name: Option<&OsStr>,
        rel: &std::path::Path,
    ) -> io::Result<Target<'r>> {
        let mut t = Target::new(root, dir, name)?;
        t.rel = rel.to_path_buf();
        Ok(t)
    }

    fn dirfd(&self) -> BorrowedFd<'_> {
        match &self.dir {
            Some(fd) => fd.as_fd(),
            None => self.root.fd(),
        }
    }

    fn cname(&self) -> &CStr {
        self.name.as_deref().unwrap_or(EMPTY)
    }

    /// The final name (`None` for the root itself).
    pub fn name(&self) -> Option<&OsStr> {
        self.name.as_ref().map(|n| OsStr::from_bytes(n.to_bytes()))
    }

    /// The entry's host path, for messages only.
    pub fn display(&self) -> PathBuf {
        self.root.display(&self.rel)
    }

    /// `lstat`; `None` when nothing stands there.
    pub fn stat(&self) -> io::Result<Option<Stat>> {
        match sys::lstatat(self.dirfd(), self.cname()) {
            Ok(st) => Ok(Some(Stat::from_raw(&st))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a directory.
    pub fn mkdir(&self, mode: u32) -> io::Result<()> {
        let name = self.require_name()?;
        // SAFETY: valid descriptor and name.
        cvt(unsafe { libc::mkdirat(self.dirfd().as_raw_fd(), name.as_ptr(), mode) }).map(drop)
    }

    /// Creates a new regular file for writing (`O_EXCL`: nothing may stand there).
    pub fn create_file(&self, mode: u32) -> io::Result<File> {
        let name = self.require_name()?;
        let fd = sys::openat(
            self.dirfd(),
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            mode,
        )?;
        Ok(File::from(fd))
    }

    /// Opens an existing regular file for reading; anything else (a symlink, a device, a
    /// fifo) is refused without being opened for I/O.
    pub fn open_file(&self) -> io::Result<File> {
        let name = self.require_name()?;
        let fd = sys::openat(self.dirfd(), name, libc::O_PATH, 0)?;
        let st = sys::lstatat(fd.as_fd(), EMPTY)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let proc = sys::proc_path(&fd)?;
        // SAFETY: valid nul-terminated path; /proc/self/fd/N names exactly the inode above.
        let rd = unsafe {
            libc::open(
                proc.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
            )
        };
        let rd = cvt(rd)?;
        // SAFETY: a fresh descriptor we own.
        Ok(File::from(unsafe {
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(rd)
        }))
    }

    /// Creates a symlink pointing at `link` (stored as given, never resolved here).
    pub fn symlink(&self, link: &OsStr) -> io::Result<()> {
        let name = self.require_name()?;
        let l = sys::cstr(link)?;
        // SAFETY: valid descriptor and names.
        cvt(unsafe { libc::symlinkat(l.as_ptr(), self.dirfd().as_raw_fd(), name.as_ptr()) })
            .map(drop)
    }

    /// Makes this entry a hard link to `existing` (a symlink is linked as itself).
    pub fn hard_link_to(&self, existing: &Target<'_>) -> io::Result<()> {
        let name = self.require_name()?;
        let from = existing.require_name()?;
        // SAFETY: valid descriptors and names; flags 0 never follows `from`.
        cvt(unsafe {
            libc::linkat(
                existing.dirfd().as_raw_fd(),
                from.as_ptr(),
                self.dirfd().as_raw_fd(),
                name.as_ptr(),
                0,
            )
        })
        .map(drop)
    }

    /// Makes this entry a hard link to the file at `existing`, a path outside any untrusted
    /// tree (a file of the build context); a final symlink there is linked as itself.
    pub fn hard_link_to_path(&self, existing: &std::path::Path) -> io::Result<()> {
        let name = self.require_name()?;
        let from = sys::cstr(existing.as_os_str())?;
        // SAFETY: valid descriptors and names; flags 0 never follows `from`.
        cvt(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                self.dirfd().as_raw_fd(),
                name.as_ptr(),
                0,
            )
        })
        .map(drop)
    }

    /// Creates a device node or fifo; `kind` is `libc::S_IFCHR`, `S_IFBLK` or `S_IFIFO`. Inside
    /// the build namespace a device is created by the process outside it when rbuild runs as
    /// root ([`crate::devices`]); EPERM otherwise.
    pub fn mknod(&self, kind: u32, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        let name = self.require_name()?;
        let dev = libc::makedev(major, minor);
        // SAFETY: valid descriptor and name.
        let made = cvt(unsafe {
            libc::mknodat(
                self.dirfd().as_raw_fd(),
                name.as_ptr(),
                (kind | (perm & 0o7777)) as libc::mode_t,
                dev,
            )
        })
        .map(drop);
        let device = (kind == libc::S_IFCHR || kind == libc::S_IFBLK) && dev != 0;
        match made {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && device => {
                match crate::devices::mknod_outside(self.dirfd(), name, kind, perm, (major, minor))
                {
                    // The outer process's umask applied there: set the bits asked for.
                    Some(Ok(())) => self.chmod(perm),
                    Some(Err(outside)) => Err(outside),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// The target text of a symlink (the link itself, never what it names).
    pub fn read_link(&self) -> io::Result<OsString> {
        let name = self.require_name()?;
        let name = OsStr::from_bytes(name.to_bytes());
        nix::fcntl::readlinkat(self.dirfd(), name).map_err(io::Error::from)
    }

    /// Sets the permission bits (setuid, setgid and sticky included). A symlink is refused
    /// with EOPNOTSUPP: its target is never changed.
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        sys::chmod_nofollow(self.dirfd(), self.cname(), mode & 0o7777)
    }

    /// Sets the owner of the entry itself (a symlink's own owner, never its target's).
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        sys::chown_nofollow(self.dirfd(), self.cname(), uid, gid)
    }

    /// Sets atime and mtime of the entry itself.
    pub fn set_times(&self, sec: i64, nsec: u32) -> io::Result<()> {
        match &self.name {
            Some(_) => sys::set_times_nofollow(self.dirfd(), self.cname(), sec, nsec),
            None => sys::set_times_nofollow(self.root.fd(), EMPTY, sec, nsec),
        }
    }

    /// Sets one xattr on the entry itself. Symlinks carry none here (refused with EPERM).
    pub fn set_xattr(&self, name: &str, value: &[u8]) -> io::Result<()> {
        let n = sys::cstr(OsStr::new(name))?;
        self.with_inode_path(|p| {
            // SAFETY: valid strings and a value slice of the given length.
            cvt(unsafe {
                libc::setxattr(
                    p.as_ptr(),
                    n.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            })
            .map(drop)
        })
    }

    /// Removes a file, symlink or empty directory.
    pub fn remove(&self, is_dir: bool) -> io::Result<()> {
        let name = self.require_name()?;
        let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: valid descriptor and name.
        cvt(unsafe { libc::unlinkat(self.dirfd().as_raw_fd(), name.as_ptr(), flags) }).map(drop)
    }

    /// Removes whatever stands here, a whole directory tree included (never following a
    /// symlink inside it).
    pub fn remove_all(&self) -> io::Result<()> {
        match self.stat()? {
            None => Ok(()),
            Some(st) if st.kind == FileKind::Dir => {
                let sub = self.open_dir()?;
                sub.clear()?;
                drop(sub);
                self.remove(true)
            }
            Some(_) => self.remove(false),
        }
    }

    /// Removes whatever stands here unless it is a directory and `keep_dir` is set; returns
    /// whether a directory stays. What a new entry of a layer or a copy does to the old one.
    pub fn clear(&self, keep_dir: bool) -> io::Result<bool> {
        match self.stat()? {
            None => Ok(false),
            Some(st) if st.kind == FileKind::Dir && keep_dir => Ok(true),
            Some(_) => self.remove_all().map(|()| false),
        }
    }

    /// Renames this entry to `to` (both in trees rbuild owns; `to` is replaced if it exists).
    pub fn rename_to(&self, to: &Target<'_>) -> io::Result<()> {
        let from = self.require_name()?;
        let dest = to.require_name()?;
        // SAFETY: valid descriptors and names.
        cvt(unsafe {
            libc::renameat(
                self.dirfd().as_raw_fd(),
                from.as_ptr(),
                to.dirfd().as_raw_fd(),
                dest.as_ptr(),
            )
        })
        .map(drop)
    }

    /// Opens this directory (not following a symlink) as a tree of its own.
    pub fn open_dir(&self) -> io::Result<Root> {
        let fd = match &self.name {
            None => self.root.fd().try_clone_to_owned()?,
            Some(n) => sys::openat(self.dirfd(), n, libc::O_RDONLY | libc::O_DIRECTORY, 0)?,
        };
        Ok(Root::from_fd(fd, self.display()))
    }

    /// Runs `f` with a `/proc/self/fd/N` path naming exactly this entry's inode (opened with
    /// `O_PATH | O_NOFOLLOW`), for the calls that have no `*at` form. Symlinks are refused.
    fn with_inode_path<T>(&self, f: impl FnOnce(&CStr) -> io::Result<T>) -> io::Result<T> {
        let fd = match &self.name {
            Some(n) => sys::openat(self.dirfd(), n, libc::O_PATH, 0)?,
            None => self.root.fd().try_clone_to_owned()?,
        };
        let st = sys::lstatat(fd.as_fd(), EMPTY)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        let proc = sys::proc_path(&fd)?;
        f(&proc)
    }

    fn require_name(&self) -> io::Result<&CStr> {
        self.name.as_deref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the operation needs an entry below the root",
            )
        })
    }
}

impl Root {
    pub(crate) fn from_fd(fd: OwnedFd, path: PathBuf) -> Root {
        Root { fd, path }
    }

    /// The names in the top directory, without `.` and `..`.
    pub fn list(&self) -> io::Result<Vec<OsString>> {
        sys::read_dir_names(self.fd())
    }

    /// Removes everything inside the top directory (never following a symlink).
    pub fn clear(&self) -> io::Result<()> {
        for name in self.list()? {
            self.at(std::path::Path::new(&name))?.remove_all()?;
        }
        Ok(())
    }
}
