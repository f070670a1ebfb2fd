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

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recv,
    recvmsg, send, sendmsg, socketpair,
};
use std::ffi::{CStr, CString};
use std::io;
use std::io::{IoSlice, IoSliceMut};
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
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
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
    file_type(fd) == Some(libc::S_IFSOCK)
}

/// The `S_IFMT` bits of an open descriptor.
fn file_type(fd: RawFd) -> Option<u32> {
    // SAFETY: only inspected for the call; the descriptor stays open and owned elsewhere.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    nix::sys::stat::fstat(fd)
        .ok()
        .map(|st| st.st_mode & libc::S_IFMT)
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
            match recv(sock.as_raw_fd(), &mut answer, MsgFlags::empty())? {
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
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        sock,
        &[IoSlice::new(msg)],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
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
        let _ = send(
            sock.as_raw_fd(),
            &errno.to_ne_bytes(),
            MsgFlags::MSG_NOSIGNAL,
        );
    }
}

/// One request: its bytes and the descriptor that came with it. `None` at end of stream.
/// A truncated request, or one with other than exactly one descriptor, comes back with no
/// descriptor (and is refused).
fn receive_request(sock: RawFd) -> io::Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; HEADER + NAME_MAX + 1];
    // Room for a few descriptors, so that extra ones are received (and closed) rather
    // than truncated.
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let (n, truncated, mut fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: descriptors just received are owned by nobody else here.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let truncated = msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        (msg.bytes, truncated, fds)
    };
    if n == 0 {
        return Ok(None);
    }
    if truncated || fds.len() != 1 {
        return Ok(Some((Vec::new(), None)));
    }
    buf.truncate(n);
    Ok(Some((buf, fds.pop())))
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
    file_type(fd) == Some(libc::S_IFDIR)
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
        let n = recv(inner.as_raw_fd(), &mut answer, MsgFlags::empty()).unwrap();
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
