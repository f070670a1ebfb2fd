mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::{TarBuilder, xattr};
use rbuild_snapshot::{SnapshotError, unpack_layer};
use tar::EntryType;

fn mode(p: &std::path::Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn unpacks_every_entry_type() {
    let long_name = format!("etc/{}", "n".repeat(120));
    let mut tb = TarBuilder::new();
    tb.dir("./", 0o755, 0, 0, 10)
        .dir("etc/", 0o750, 1, 2, 1000)
        .file("etc/passwd", 0o644, 0, 0, 2000, b"root:x:0:0\n")
        .symlink("etc/link", "/etc/passwd")
        .hardlink("etc/hard", "etc/passwd")
        .file(&long_name, 0o600, 0, 0, 2000, b"long")
        .file("bin/su", 0o4755, 0, 0, 2000, b"su")
        .dir("tmp/", 0o1777, 0, 0, 3000)
        .node("dev/null", EntryType::Char, 1, 3)
        .node("dev/sda", EntryType::Block, 8, 0)
        .node("run/fifo", EntryType::Fifo, 0, 0)
        .pax(&[
            ("SCHILY.xattr.user.test", b"hello"),
            (
                "SCHILY.xattr.security.capability",
                &[1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            ("SCHILY.xattr.user.overlay.redirect", b"/evil"),
            ("mtime", b"1700000000.5"),
            ("uid", b"3000000"),
        ])
        .file("bin/ping", 0o755, 0, 0, 2000, b"ping")
        .dir("usr/", 0o755, 0, 0, 4000)
        .file("usr/.wh.gone", 0o644, 0, 0, 4500, b"")
        .dir("var/", 0o755, 0, 0, 5000)
        .file("var/.wh..wh..opq", 0o644, 0, 0, 5000, b"")
        .file("var/kept", 0o644, 0, 0, 5000, b"k");
    let tar = tb.finish();

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path();
    let stats = unpack_layer(tar.as_slice(), dest).unwrap();

    assert_eq!(stats.files, 5);
    assert_eq!(stats.dirs, 5);
    assert_eq!(stats.symlinks, 1);
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(stats.devices, 2);
    assert_eq!(stats.fifos, 1);
    assert_eq!(stats.whiteouts, 1);
    assert_eq!(stats.opaque_dirs, 1);

    let etc = fs::symlink_metadata(dest.join("etc")).unwrap();
    assert!(etc.is_dir());
    assert_eq!(etc.mode() & 0o7777, 0o750);
    assert_eq!((etc.uid(), etc.gid()), (1, 2));
    assert_eq!(etc.mtime(), 1000, "dir mtime set after its contents");
    assert_eq!(fs::symlink_metadata(dest).unwrap().mtime(), 10);

    let passwd = fs::symlink_metadata(dest.join("etc/passwd")).unwrap();
    assert_eq!(fs::read(dest.join("etc/passwd")).unwrap(), b"root:x:0:0\n");
    assert_eq!(passwd.mtime(), 2000);
    assert_eq!(passwd.mode() & 0o7777, 0o644);
    assert_eq!(
        fs::read_link(dest.join("etc/link")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    assert_eq!(
        fs::symlink_metadata(dest.join("etc/hard")).unwrap().ino(),
        passwd.ino()
    );
    assert_eq!(fs::read(dest.join(&long_name)).unwrap(), b"long");

    assert_eq!(mode(&dest.join("bin/su")), 0o4755);
    assert_eq!(mode(&dest.join("tmp")), 0o1777);
    assert_eq!(mode(&dest.join("bin")), 0o755, "implicit parents are 0755");

    let null = fs::symlink_metadata(dest.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    let sda = fs::symlink_metadata(dest.join("dev/sda")).unwrap();
    assert!(sda.file_type().is_block_device());
    assert_eq!(sda.rdev(), libc::makedev(8, 0));
    assert!(
        fs::symlink_metadata(dest.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    let ping = dest.join("bin/ping");
    assert_eq!(xattr(&ping, "user.test").as_deref(), Some(&b"hello"[..]));
    assert!(xattr(&ping, "security.capability").is_some());
    assert_eq!(
        xattr(&ping, "user.overlay.redirect"),
        None,
        "overlay xattrs are never unpacked"
    );
    let ping_meta = fs::symlink_metadata(&ping).unwrap();
    assert_eq!(ping_meta.mtime(), 1_700_000_000);
    assert_eq!(ping_meta.mtime_nsec(), 500_000_000);
    assert_eq!(ping_meta.uid(), 3_000_000, "pax uid applied");

    let gone = fs::symlink_metadata(dest.join("usr/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert_eq!(gone.mtime(), 4500);
    assert!(!dest.join("usr/.wh.gone").exists());

    assert_eq!(
        xattr(&dest.join("var"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dest.join("var/.wh..wh..opq").exists());
    assert!(dest.join("var/kept").exists());
}

#[test]
fn later_entries_replace_earlier_ones() {
    let mut tb = TarBuilder::new();
    tb.file("a", 0o644, 0, 0, 1, b"file")
        .dir("a/", 0o755, 0, 0, 1)
        .file("a/b", 0o644, 0, 0, 1, b"b")
        .symlink("c", "/nowhere")
        .file("c", 0o644, 0, 0, 1, b"regular now");
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    assert!(dir.path().join("a").is_dir());
    assert_eq!(fs::read(dir.path().join("a/b")).unwrap(), b"b");
    let c = fs::symlink_metadata(dir.path().join("c")).unwrap();
    assert!(c.is_file());
}

fn expect_unsafe(tar: Vec<u8>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let err = unpack_layer(tar.as_slice(), &dest).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::UnsafePath { .. } | SnapshotError::BadHardlink { .. }
        ),
        "unexpected error {err}"
    );
    root
}

#[test]
fn refuses_dotdot_escape() {
    let mut tb = TarBuilder::new();
    tb.raw_file(b"../x", b"pwned");
    let root = expect_unsafe(tb.finish());
    assert!(!root.path().join("x").exists());

    let mut tb = TarBuilder::new();
    tb.raw_file(b"a/../../x", b"pwned");
    let root = expect_unsafe(tb.finish());
    assert!(!root.path().join("x").exists());
}

#[test]
fn refuses_absolute_paths() {
    let mut tb = TarBuilder::new();
    tb.raw_file(b"/abs", b"pwned");
    expect_unsafe(tb.finish());
}

#[test]
fn refuses_writing_through_symlinks() {
    let outside = tempfile::tempdir().unwrap();
    let mut tb = TarBuilder::new();
    tb.symlink("evil", outside.path().to_str().unwrap()).file(
        "evil/pwned",
        0o644,
        0,
        0,
        1,
        b"pwned",
    );
    expect_unsafe(tb.finish());
    assert!(!outside.path().join("pwned").exists());

    let mut tb = TarBuilder::new();
    tb.symlink("up", "..")
        .file("up/pwned", 0o644, 0, 0, 1, b"x");
    let root = expect_unsafe(tb.finish());
    assert!(!root.path().join("pwned").exists());

    // A directory entry through a symlink, and an opaque marker through one, are refused too.
    let mut tb = TarBuilder::new();
    tb.symlink("evil", outside.path().to_str().unwrap())
        .dir("evil/sub/", 0o755, 0, 0, 1);
    expect_unsafe(tb.finish());
    assert!(!outside.path().join("sub").exists());
}

#[test]
fn refuses_hardlinks_out_of_the_layer() {
    let mut tb = TarBuilder::new();
    tb.hardlink("h", "../../../etc/passwd");
    expect_unsafe(tb.finish());

    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"s").unwrap();
    let mut tb = TarBuilder::new();
    tb.symlink("evil", outside.path().to_str().unwrap())
        .hardlink("h", "evil/secret");
    expect_unsafe(tb.finish());
}

#[test]
fn refuses_a_symlink_replacing_a_file_then_write_through() {
    // After "a" becomes a symlink to the outside, "a" written again as a file replaces the link
    // and does not write through it.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    fs::write(&target, b"original").unwrap();
    let mut tb = TarBuilder::new();
    tb.symlink("a", target.to_str().unwrap())
        .file("a", 0o644, 0, 0, 1, b"replaced");
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"original");
    assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"replaced");
}

#[test]
fn refuses_pax_sparse() {
    let mut tb = TarBuilder::new();
    tb.pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"sparse"),
        ("GNU.sparse.realsize", b"4096"),
    ])
    .file("GNUSparseFile.0/sparse", 0o644, 0, 0, 1, b"");
    let dir = tempfile::tempdir().unwrap();
    let err = unpack_layer(tb.finish().as_slice(), dir.path()).unwrap_err();
    assert!(
        matches!(err, SnapshotError::UnsupportedEntry { .. }),
        "{err}"
    );
}

#[test]
fn whiteout_and_entry_of_the_same_name_in_one_layer() {
    let mut tb = TarBuilder::new();
    tb.file(".wh.d", 0, 0, 0, 1, b"")
        .dir("d/", 0o755, 0, 0, 1)
        .file("d/new", 0o644, 0, 0, 1, b"n")
        .dir("e/", 0o755, 0, 0, 1)
        .file(".wh.e", 0, 0, 0, 1, b"")
        .file("f", 0o644, 0, 0, 1, b"f")
        .file(".wh.f", 0, 0, 0, 1, b"");
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    for d in ["d", "e"] {
        let p = dir.path().join(d);
        assert!(p.is_dir(), "{d} stays a directory");
        assert_eq!(
            xattr(&p, "user.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "{d} opaque"
        );
    }
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"f");
}
