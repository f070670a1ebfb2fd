//! The raw system calls behind [`crate::Root`] and [`crate::Target`].

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// The empty path, for `AT_EMPTY_PATH` calls on a descriptor itself.
pub(crate) const EMPTY: &CStr = c"";

pub(crate) fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a nul byte"))
}

/// Turns a -1 return into the errno as an `io::Error`.
pub(crate) fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory with read access, so that `*at` calls, `futimens` and `readdir` work on
/// its descriptor.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: valid nul-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    owned(fd)
}

/// `openat2(dir, rel, O_DIRECTORY)` following no symlink and no `..`, and never leaving `dir`.
pub(crate) fn open_beneath(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    match openat2(dir, rel, libc::O_RDONLY | libc::O_DIRECTORY, resolve) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            openat2(dir, rel, libc::O_PATH | libc::O_DIRECTORY, resolve)
        }
        other => other,
    }
}

/// `openat2(2)`, retried on the EAGAIN the kernel returns when a rename raced the lookup.
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    openat2_mode(dir, rel, flags, resolve, 0)
}

/// [`openat2`] with the mode a created file gets.
pub(crate) fn openat2_mode(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: libc::c_int,
    resolve: u64,
    mode: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(rel.as_os_str())?;
    // SAFETY: open_how is plain data; zero is a valid value for every field.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = mode;
    how.resolve = resolve;
    for _ in 0..64 {
        // SAFETY: valid pointers and the size of the struct passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            return owned(fd as libc::c_int);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`.
pub(crate) fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: valid descriptor and nul-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    owned(fd)
}

/// `fstatat` without following a final symlink (`AT_EMPTY_PATH` for the descriptor itself).
pub(crate) fn lstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut flags = libc::AT_SYMLINK_NOFOLLOW;
    if name.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    // SAFETY: an all-zero stat is valid; the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, name and out pointer.
    cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// `fchmodat2(dir, name, mode, AT_SYMLINK_NOFOLLOW)`: a symlink is refused with EOPNOTSUPP
/// instead of its target being changed. Kernels before 6.6 lack the call; there the entry is
/// opened with `O_PATH | O_NOFOLLOW`, checked not to be a symlink, and changed through
/// `/proc/self/fd`, which names exactly that inode.
pub(crate) fn chmod_nofollow(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    let mut flags = libc::AT_SYMLINK_NOFOLLOW;
    if name.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    // SAFETY: valid descriptor and name; fchmodat2 takes (int, const char *, mode_t, int).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            mode as libc::mode_t,
            flags,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    let fd = openat(dir, name, libc::O_PATH, 0)?;
    let st = lstatat(fd_borrow(&fd), EMPTY)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    let proc = proc_path(&fd)?;
    // SAFETY: valid nul-terminated path.
    cvt(unsafe { libc::chmod(proc.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn chown_nofollow(
    dir: BorrowedFd<'_>,
    name: &CStr,
    uid: u32,
    gid: u32,
) -> io::Result<()> {
    let mut flags = libc::AT_SYMLINK_NOFOLLOW;
    if name.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    // SAFETY: valid descriptor and name.
    cvt(unsafe { libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid, gid, flags) }).map(drop)
}

/// `utimensat(dir, name, [t, t], AT_SYMLINK_NOFOLLOW)`; `futimens` for the descriptor itself.
pub(crate) fn set_times_nofollow(
    dir: BorrowedFd<'_>,
    name: &CStr,
    sec: i64,
    nsec: u32,
) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec.min(999_999_999) as libc::c_long,
    };
    let times = [ts, ts];
    if name.is_empty() {
        // SAFETY: valid descriptor and a two-element array.
        return cvt(unsafe { libc::futimens(dir.as_raw_fd(), times.as_ptr()) }).map(drop);
    }
    // SAFETY: valid descriptor, name and a two-element array.
    cvt(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// The `/proc/self/fd/N` path of a descriptor.
pub(crate) fn proc_path(fd: &OwnedFd) -> io::Result<CString> {
    cstr(OsStr::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

pub(crate) fn fd_borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}

/// The names in a directory (without `.` and `..`), read through a duplicate of `dir`.
pub(crate) fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // SAFETY: dup of a valid descriptor; the duplicate is handed to fdopendir, which owns it.
    let dup = cvt(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: dup is a fresh descriptor we own.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so dup is still ours to close.
        unsafe { libc::close(dup) };
        return Err(err);
    }
    // SAFETY: a fresh stream starts at the beginning only after a rewind (the duplicate
    // shares the offset of `dir`).
    unsafe { libc::rewinddir(stream) };
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; clearing it tells end of stream from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: a valid open stream.
        let ent = unsafe { libc::readdir64(stream) };
        if ent.is_null() {
            let errno = io::Error::last_os_error();
            break match errno.raw_os_error() {
                Some(0) | None => Ok(()),
                _ => Err(errno),
            };
        }
        // SAFETY: d_name is a nul-terminated array inside the entry readdir returned.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(OsString::from_vec(bytes.to_vec()));
        }
    };
    // SAFETY: the stream is open and closed once.
    unsafe { libc::closedir(stream) };
    result.map(|()| names)
}
