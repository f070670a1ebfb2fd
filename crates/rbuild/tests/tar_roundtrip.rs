//! Every kind of tar entry through rbuild and back out: a base layer made here holds each
//! entry type and attribute, a build copies it, deletes and replaces some of it (whiteouts,
//! an opaque directory), and `umoci unpack` of the exported image must show every
//! attribute as the layer gave it.

mod common;

use common::*;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

const MTIME: u64 = 1_600_000_000;
/// A file capability (`cap_net_bind_service+ep`), as `setcap` stores it (version 2).
const CAP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(size);
    h.set_mtime(MTIME);
    h
}

/// The base layer: one entry of each kind with distinct attributes.
fn base_tar() -> Vec<u8> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, mut h: tar::Header, data: &[u8]) {
        b.append_data(&mut h, path, data).unwrap();
    }
    add(&mut b, "rt/", header(T::Directory, 0o755, 0, 0, 0), b"");
    add(
        &mut b,
        "rt/plain",
        header(T::Regular, 0o640, 1234, 5678, 5),
        b"plain",
    );
    add(
        &mut b,
        "rt/suid",
        header(T::Regular, 0o4755, 0, 0, 4),
        b"suid",
    );
    add(
        &mut b,
        "rt/sgid-dir/",
        header(T::Directory, 0o2775, 0, 50, 0),
        b"",
    );
    add(
        &mut b,
        "rt/sticky/",
        header(T::Directory, 0o1777, 0, 0, 0),
        b"",
    );
    let mut link = header(T::Symlink, 0o777, 7, 8, 0);
    link.set_link_name("plain").unwrap();
    add(&mut b, "rt/link", link, b"");
    let mut hard = header(T::Link, 0o640, 1234, 5678, 0);
    hard.set_link_name("rt/plain").unwrap();
    add(&mut b, "rt/hard", hard, b"");
    add(&mut b, "rt/fifo", header(T::Fifo, 0o600, 0, 0, 0), b"");
    let mut dev = header(T::Char, 0o666, 0, 0, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    add(&mut b, "rt/null", dev, b"");
    let mut block = header(T::Block, 0o640, 0, 6, 0);
    block.set_device_major(7).unwrap();
    block.set_device_minor(200).unwrap();
    add(&mut b, "rt/loop200", block, b"");
    add(&mut b, "rt/gone", header(T::Regular, 0o644, 0, 0, 1), b"g");
    add(&mut b, "rt/opq/", header(T::Directory, 0o755, 0, 0, 0), b"");
    add(
        &mut b,
        "rt/opq/old",
        header(T::Regular, 0o644, 0, 0, 3),
        b"old",
    );
    let long = format!("rt/{}/f", "d".repeat(120));
    add(&mut b, &long, header(T::Regular, 0o644, 0, 0, 4), b"long");
    // xattrs travel as PAX records before their entry.
    b.append_pax_extensions([
        ("SCHILY.xattr.security.capability", &CAP[..]),
        ("SCHILY.xattr.user.note", &b"hello"[..]),
    ])
    .unwrap();
    add(
        &mut b,
        "rt/capped",
        header(T::Regular, 0o755, 0, 0, 3),
        b"cap",
    );
    b.into_inner().unwrap()
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid strings and a buffer of the given size.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

#[test]
fn every_entry_type_and_attribute_survives_a_build_and_umoci() {
    if !precondition(
        is_root(),
        "devices and foreign owners need root (CI runs as root)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("special");
    single_layer_layout(&layout, &base_tar());
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM special AS s\n\
         FROM busybox\n\
         COPY --from=s /rt /rt\n\
         RUN rm /rt/gone && rm -rf /rt/opq && mkdir /rt/opq && echo new > /rt/opq/new\n\
         # A step cannot open a device node that came with a layer (the rootfs is nodev).\n\
         RUN if echo x 2>/dev/null > /rt/null; then exit 9; fi\n",
        &[],
    );
    let dest = tmp.path().join("out.tar");
    let out = build(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        &dest,
        &[
            "-t",
            "rt:latest",
            "--build-context",
            &format!("special=oci-layout://{}", layout.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The RUN layer holds a whiteout for /rt/gone and an opaque /rt/opq.
    let l = OciLayout::open_tar(&dest);
    let m = l.manifest_for("linux/amd64");
    let names: Vec<String> = l.layer_entries(&m).into_iter().map(|e| e.1).collect();
    assert!(names.iter().any(|n| n == "rt/.wh.gone"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "rt/opq/.wh..wh..opq"),
        "{names:?}"
    );

    let oci = tmp.path().join("oci");
    fs::create_dir(&oci).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&dest)
            .arg("-C")
            .arg(&oci),
    );
    let bundle = tmp.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", oci.display()))
            .arg(&bundle),
    );
    let rt = bundle.join("rootfs/rt");
    let meta = |p: &str| fs::symlink_metadata(rt.join(p)).unwrap();
    let attrs = |p: &str| {
        let m = meta(p);
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime() as u64)
    };
    assert_eq!(attrs("plain"), (0o640, 1234, 5678, MTIME));
    assert_eq!(fs::read(rt.join("plain")).unwrap(), b"plain");
    assert_eq!(attrs("suid"), (0o4755, 0, 0, MTIME));
    assert_eq!(attrs("sgid-dir"), (0o2775, 0, 50, MTIME));
    assert_eq!(attrs("sticky"), (0o1777, 0, 0, MTIME));
    let link = meta("link");
    assert!(link.file_type().is_symlink());
    assert_eq!((link.uid(), link.gid(), link.mtime() as u64), (7, 8, MTIME));
    assert_eq!(fs::read_link(rt.join("link")).unwrap(), Path::new("plain"));
    assert_eq!(
        meta("hard").ino(),
        meta("plain").ino(),
        "a hard link within the layer"
    );
    assert!(meta("fifo").file_type().is_fifo());
    assert_eq!(attrs("fifo").0, 0o600);
    // As root, device nodes are created (by the process outside the build namespace).
    let null = meta("null");
    assert!(null.file_type().is_char_device());
    assert_eq!((null.rdev(), attrs("null").0), (libc::makedev(1, 3), 0o666));
    let lp = meta("loop200");
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), libc::makedev(7, 200));
    assert_eq!((attrs("loop200").0, lp.uid(), lp.gid()), (0o640, 0, 6));
    assert!(!rt.join("gone").exists(), "the whiteout deleted it");
    let opq: Vec<_> = fs::read_dir(rt.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(opq, ["new"], "the opaque directory hides the old entry");
    assert_eq!(
        fs::read(rt.join(format!("{}/f", "d".repeat(120)))).unwrap(),
        b"long"
    );
    assert_eq!(
        xattr(&rt.join("capped"), "security.capability").as_deref(),
        Some(&CAP[..])
    );
    assert_eq!(
        xattr(&rt.join("capped"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
}
