//! Device nodes created by the process outside the build's user namespace.
//!
//! rbuild does its work inside its own user namespace, even when started as root, and no
//! process there may create a character or block device (`mknod` needs `CAP_MKNOD` in the
//! initial user namespace). When rbuild runs as root, the process that stays outside keeps a
//! socket to the inner one and serves exactly one request on it: "create this device node in
//! this directory". The inner side sends the directory as a descriptor it opened through
//! [`crate::Root`] (so the request can only name an entry in a tree rbuild resolved safely),
//! plus a single name component, a kind (character or block only), permission bits and a
//! device number. The outer side checks all of these, calls `mknodat` and answers with an
//! errno. Nothing else crosses the socket.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

/// Environment variable naming the inner side's descriptor of the device socket.
pub const DEVICE_SOCKET_ENV: &str = "RBUILD_DEVICE_SOCKET_FD";

/// Longest name accepted in a request (NAME_MAX).
const NAME_MAX: usize = 255;
/// Request header: kind, permission bits, major, minor.
const HEADER: usize = 4 * size_of::<u32>();

static CLIENT: OnceLock<Option<Mutex<OwnedFd>>> = OnceLock::new();

/// Creates the connected socket pair: `(outer, inner)`. Both ends are close-on-exec; the
/// caller clears that flag on the inner end in the child it execs.
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Takes the inner end named by [`DEVICE_SOCKET_ENV`], if the outer process passed one, so
/// that [`mknod_outside`] can use it. Call once, early, while single-threaded.
pub fn adopt_inner_end() {
    CLIENT.get_or_init(|| {
        let fd: RawFd = std::env::var(DEVICE_SOCKET_ENV).ok()?.parse().ok()?;
        if fd < 3 || !is_socket(fd) {
            return None;
        }
        // SAFETY: the descriptor was handed to this process for this purpose and nothing
        // else in it claims it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain fcntl on an open descriptor; steps must not inherit it.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        Some(Mutex::new(owned))
    });
}

fn is_socket(fd: RawFd) -> bool {
    // SAFETY: fstat writes into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0) && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
}

/// Asks the outer process to create the device node `name` in `dir`. `None` when there is
/// no outer process to ask (rbuild was not started as root).
pub(crate) fn mknod_outside(
    dir: BorrowedFd<'_>,
    name: &CStr,
    kind: u32,
    perm: u32,
    dev: (u32, u32),
) -> Option<io::Result<()>> {
    let client = CLIENT.get()?.as_ref()?;
    let sock = client.lock().unwrap_or_else(|e| e.into_inner());
    let mut msg = Vec::with_capacity(HEADER + name.to_bytes().len());
    for v in [kind, perm & 0o7777, dev.0, dev.1] {
        msg.extend_from_slice(&v.to_ne_bytes());
    }
    msg.extend_from_slice(name.to_bytes());
    Some(
        send_request(sock.as_raw_fd(), &msg, dir.as_raw_fd()).and_then(|()| {
            let mut answer = [0u8; 4];
            // SAFETY: reading into a 4-byte buffer.
            let n = unsafe { libc::recv(sock.as_raw_fd(), answer.as_mut_ptr().cast(), 4, 0) };
            match n {
                4 => match i32::from_ne_bytes(answer) {
                    0 => Ok(()),
                    errno => Err(io::Error::from_raw_os_error(errno)),
                },
                _ => Err(io::Error::other("the device socket closed")),
            }
        }),
    )
}

fn send_request(sock: RawFd, msg: &[u8], fd: RawFd) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = space as _;
    // SAFETY: the control buffer has room for one header carrying one descriptor.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    // SAFETY: `hdr` describes valid buffers.
    if unsafe { libc::sendmsg(sock, &hdr, libc::MSG_NOSIGNAL) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Serves device-node requests on the outer end until the inner process closes it. Runs in
/// the process outside the build namespace, on a thread of its own.
pub fn serve(sock: OwnedFd) {
    loop {
        let (msg, dir) = match receive_request(sock.as_raw_fd()) {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let errno = match handle(&msg, dir.as_ref()) {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
        };
        let answer = errno.to_ne_bytes();
        // SAFETY: sending a 4-byte buffer.
        unsafe {
            libc::send(
                sock.as_raw_fd(),
                answer.as_ptr().cast(),
                4,
                libc::MSG_NOSIGNAL,
            )
        };
    }
}

/// One request: its bytes and the descriptor that came with it. `None` at end of stream.
fn receive_request(sock: RawFd) -> io::Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; HEADER + NAME_MAX + 1];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size; room for a few descriptors so that extra
    // ones are received (and closed) rather than truncated.
    let space = unsafe { libc::CMSG_SPACE(4 * size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; the buffers outlive recvmsg.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = space as _;
    // SAFETY: `hdr` describes valid buffers.
    let n = unsafe { libc::recvmsg(sock, &mut hdr, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 {
        return Ok(None);
    }
    let fds = received_fds(&hdr);
    buf.truncate(n as usize);
    // Exactly one descriptor is expected; any other count makes the request invalid.
    let dir = if fds.len() == 1 {
        fds.into_iter().next()
    } else {
        None
    };
    if hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Ok(Some((Vec::new(), None)));
    }
    Ok(Some((buf, dir)))
}

fn received_fds(hdr: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: walking the control messages recvmsg filled in, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    fds
}

/// Checks a request and creates the node.
fn handle(msg: &[u8], dir: Option<&OwnedFd>) -> io::Result<()> {
    let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
    let dir = dir.ok_or_else(invalid)?;
    if msg.len() <= HEADER || !is_directory(dir.as_raw_fd()) {
        return Err(invalid());
    }
    let word = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&msg[i * 4..i * 4 + 4]);
        u32::from_ne_bytes(b)
    };
    let (kind, perm, major, minor) = (word(0), word(1), word(2), word(3));
    let name = valid_name(&msg[HEADER..]).ok_or_else(invalid)?;
    if kind != libc::S_IFCHR && kind != libc::S_IFBLK {
        return Err(invalid());
    }
    // SAFETY: a directory descriptor and a single-component name; mknodat never follows a
    // final symlink (an existing entry of any kind makes it fail with EEXIST).
    let rc = unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            name.as_ptr(),
            (kind | (perm & 0o7777)) as libc::mode_t,
            libc::makedev(major, minor),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A single path component: not empty, not `.` or `..`, no `/` and no NUL.
fn valid_name(bytes: &[u8]) -> Option<CString> {
    let ok = !bytes.is_empty()
        && bytes.len() <= NAME_MAX
        && bytes != b"."
        && bytes != b".."
        && !bytes.contains(&b'/');
    if !ok {
        return None;
    }
    CString::new(bytes).ok()
}

fn is_directory(fd: RawFd) -> bool {
    // SAFETY: fstat writes into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0) && (st.st_mode & libc::S_IFMT) == libc::S_IFDIR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_components() {
        assert!(valid_name(b"null").is_some());
        for bad in [&b""[..], b".", b"..", b"a/b", b"/x", b"a\0b"] {
            assert!(valid_name(bad).is_none(), "{bad:?}");
        }
        assert!(valid_name(&[b'x'; 256]).is_none());
    }

    #[test]
    fn requests_other_than_devices_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fd = crate::sys::open_dir(dir.path()).unwrap();
        let mut msg = Vec::new();
        for v in [libc::S_IFREG, 0o644, 0, 0] {
            msg.extend_from_slice(&v.to_ne_bytes());
        }
        msg.extend_from_slice(b"file");
        let err = handle(&msg, Some(&fd)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert!(!dir.path().join("file").exists());
        assert_eq!(
            handle(&msg, None).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
    }

    #[test]
    fn a_served_request_creates_the_node_when_permitted() {
        let (outer, inner) = socket_pair().unwrap();
        let server = std::thread::spawn(move || serve(outer));
        let dir = tempfile::tempdir().unwrap();
        let fd = crate::sys::open_dir(dir.path()).unwrap();
        let mut msg = Vec::new();
        for v in [libc::S_IFCHR, 0o600, 1, 3] {
            msg.extend_from_slice(&v.to_ne_bytes());
        }
        msg.extend_from_slice(b"null");
        send_request(inner.as_raw_fd(), &msg, fd.as_raw_fd()).unwrap();
        let mut answer = [0u8; 4];
        // SAFETY: reading into a 4-byte buffer.
        let n = unsafe { libc::recv(inner.as_raw_fd(), answer.as_mut_ptr().cast(), 4, 0) };
        assert_eq!(n, 4);
        let errno = i32::from_ne_bytes(answer);
        use std::os::unix::fs::FileTypeExt;
        let made = std::fs::symlink_metadata(dir.path().join("null"));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(errno, 0);
            assert!(made.unwrap().file_type().is_char_device());
        } else {
            assert_eq!(errno, libc::EPERM);
            assert!(made.is_err());
        }
        drop(inner);
        server.join().unwrap();
    }
}
