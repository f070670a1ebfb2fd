mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use common::{TarBuilder, chmod, set_mtime, set_xattr, whiteout, xattr};
use rbuild_snapshot::{DiffOptions, LayerStack, unpack_layer, write_layer_tar};

/// One entry as read back from a layer tar.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn read_back(tar: &[u8]) -> Vec<Seen> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        let h = e.header();
        assert_eq!(h.username_bytes(), Some(&b""[..]), "uname must be empty");
        assert_eq!(h.groupname_bytes(), Some(&b""[..]), "gname must be empty");
        let kind = h.entry_type().as_byte() as char;
        let (mode, uid, gid, mtime) = (
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
        );
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Seen {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            link,
            data,
            xattrs,
        });
    }
    out
}

fn seen(path: &str, kind: char, mode: u32, ids: (u64, u64), mtime: u64) -> Seen {
    Seen {
        path: path.to_string(),
        kind,
        mode,
        uid: ids.0,
        gid: ids.1,
        mtime,
        link: None,
        data: Vec::new(),
        xattrs: Vec::new(),
    }
}

fn base_layer(dir: &Path) {
    let mut tb = TarBuilder::new();
    tb.dir("etc/", 0o755, 0, 0, 100)
        .file("etc/keep", 0o644, 0, 0, 100, b"keep")
        .file("etc/modify", 0o644, 0, 0, 100, b"old")
        .file("etc/remove", 0o644, 0, 0, 100, b"bye")
        .dir("var/", 0o755, 0, 0, 100)
        .dir("var/cache/", 0o755, 0, 0, 100)
        .file("var/cache/old", 0o644, 0, 0, 100, b"stale");
    unpack_layer(tb.finish().as_slice(), dir).unwrap();
}

/// Builds an upper dir the way overlayfs would after a RUN step over `base_layer`.
fn upper_dir(u: &Path) -> String {
    fs::create_dir(u.join("etc")).unwrap();
    chmod(&u.join("etc"), 0o755);
    fs::write(u.join("etc/new"), b"new").unwrap();
    chmod(&u.join("etc/new"), 0o600);
    std::os::unix::fs::chown(u.join("etc/new"), Some(5), Some(6)).unwrap();
    fs::write(u.join("etc/modify"), b"changed").unwrap();
    chmod(&u.join("etc/modify"), 0o644);
    set_mtime(&u.join("etc/modify"), 1500);
    whiteout(&u.join("etc/remove"));
    set_mtime(&u.join("etc/remove"), 1600);
    fs::write(u.join("etc/hosts"), b"").unwrap();
    set_mtime(&u.join("etc/hosts"), 1000);

    fs::create_dir_all(u.join("var/cache")).unwrap();
    chmod(&u.join("var"), 0o700);
    chmod(&u.join("var/cache"), 0o755);
    set_xattr(&u.join("var/cache"), "user.overlay.opaque", b"y");
    fs::write(u.join("var/cache/fresh"), b"fresh").unwrap();
    chmod(&u.join("var/cache/fresh"), 0o644);

    symlink("etc/new", u.join("link")).unwrap();
    fs::write(u.join("h1"), b"same inode").unwrap();
    chmod(&u.join("h1"), 0o644);
    fs::hard_link(u.join("h1"), u.join("h2")).unwrap();

    let long = "a".repeat(110);
    fs::create_dir(u.join("long")).unwrap();
    chmod(&u.join("long"), 0o755);
    fs::write(u.join("long").join(&long), b"long").unwrap();
    chmod(&u.join("long").join(&long), 0o644);

    fs::write(u.join("suid"), b"#!").unwrap();
    chmod(&u.join("suid"), 0o4755);
    set_xattr(&u.join("suid"), "user.note", b"hi");
    set_xattr(&u.join("suid"), "user.overlay.origin", b"internal");

    fs::create_dir(u.join("proc")).unwrap();

    // Every mtime in the upper is 5000 unless set above; the clamp (2000) applies to them.
    for p in [
        "etc",
        "etc/new",
        "var",
        "var/cache",
        "var/cache/fresh",
        "link",
        "h1",
        "long",
        "suid",
    ] {
        set_mtime(&u.join(p), 5000);
    }
    set_mtime(&u.join("long").join(&long), 5000);
    format!("long/{long}")
}

fn options() -> DiffOptions {
    DiffOptions {
        clamp_mtime: Some(2000),
        exclude: vec![PathBuf::from("/proc"), PathBuf::from("etc/hosts")],
    }
}

#[test]
fn round_trip_through_a_layer_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let l1 = tmp.path().join("l1");
    let u = tmp.path().join("upper");
    fs::create_dir(&l1).unwrap();
    fs::create_dir(&u).unwrap();
    base_layer(&l1);
    let long = upper_dir(&u);

    let mut tar = Vec::new();
    let stats = write_layer_tar(&u, std::slice::from_ref(&l1), &mut tar, &options()).unwrap();
    assert_eq!(
        stats.unchanged_dirs, 1,
        "etc/ is unchanged apart from its children"
    );
    assert_eq!(stats.whiteouts, 1);
    assert_eq!(stats.opaque_dirs, 1);
    assert_eq!(stats.hardlinks, 1);

    let got = read_back(&tar);
    let want = vec![
        Seen {
            data: b"changed".to_vec(),
            ..seen("etc/modify", '0', 0o644, (0, 0), 1500)
        },
        Seen {
            data: b"new".to_vec(),
            ..seen("etc/new", '0', 0o600, (5, 6), 2000)
        },
        seen("etc/.wh.remove", '0', 0, (0, 0), 1600),
        Seen {
            data: b"same inode".to_vec(),
            ..seen("h1", '0', 0o644, (0, 0), 2000)
        },
        Seen {
            link: Some("h1".into()),
            ..seen("h2", '1', 0o644, (0, 0), 2000)
        },
        Seen {
            link: Some("etc/new".into()),
            ..seen("link", '2', 0o777, (0, 0), 2000)
        },
        seen("long/", '5', 0o755, (0, 0), 2000),
        Seen {
            data: b"long".to_vec(),
            ..seen(&long, '0', 0o644, (0, 0), 2000)
        },
        Seen {
            data: b"#!".to_vec(),
            xattrs: vec![("user.note".into(), b"hi".to_vec())],
            ..seen("suid", '0', 0o4755, (0, 0), 2000)
        },
        seen("var/", '5', 0o700, (0, 0), 2000),
        seen("var/cache/", '5', 0o755, (0, 0), 2000),
        seen("var/cache/.wh..wh..opq", '0', 0, (0, 0), 2000),
        Seen {
            data: b"fresh".to_vec(),
            ..seen("var/cache/fresh", '0', 0o644, (0, 0), 2000)
        },
    ];
    assert_eq!(got, want);

    // Stacking the unpacked diff on the base shows the upper's view.
    let l2 = tmp.path().join("l2");
    fs::create_dir(&l2).unwrap();
    unpack_layer(tar.as_slice(), &l2).unwrap();
    let stack = LayerStack::new(vec![l2.clone(), l1.clone()]);
    assert_eq!(stack.read_dir("/etc").unwrap(), ["keep", "modify", "new"]);
    assert_eq!(stack.read_dir("/var/cache").unwrap(), ["fresh"]);
    let modify = stack.lookup("/etc/modify").unwrap().unwrap();
    assert_eq!(fs::read(&modify.host_path).unwrap(), b"changed");
    assert!(stack.lookup("/etc/remove").unwrap().is_none());
    assert_eq!(
        xattr(&l2.join("var/cache"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    let h1 = fs::metadata(l2.join("h1")).unwrap();
    assert_eq!(h1.ino(), fs::metadata(l2.join("h2")).unwrap().ino());
    assert!(!l2.join("proc").exists());
}

#[test]
fn same_upper_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let l1 = tmp.path().join("l1");
    let u = tmp.path().join("upper");
    fs::create_dir(&l1).unwrap();
    fs::create_dir(&u).unwrap();
    base_layer(&l1);
    upper_dir(&u);
    let mut a = Vec::new();
    let mut b = Vec::new();
    write_layer_tar(&u, std::slice::from_ref(&l1), &mut a, &options()).unwrap();
    // Touching atimes and listing order must not matter.
    let _ = fs::read(u.join("etc/new")).unwrap();
    write_layer_tar(&u, &[l1], &mut b, &options()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len() % 512, 0);
}

#[test]
fn without_lowers_every_dir_is_emitted_and_big_ids_use_pax() {
    let tmp = tempfile::tempdir().unwrap();
    let u = tmp.path();
    fs::create_dir(u.join("d")).unwrap();
    fs::write(u.join("d/f"), b"x").unwrap();
    std::os::unix::fs::chown(u.join("d/f"), Some(3_000_000), Some(4_000_000)).unwrap();
    let target = "t".repeat(150);
    symlink(&target, u.join("d/s")).unwrap();
    let mut tar = Vec::new();
    write_layer_tar(u, &[], &mut tar, &DiffOptions::default()).unwrap();
    let got = read_back(&tar);
    let names: Vec<_> = got.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(names, ["d/", "d/f", "d/s"]);
    assert_eq!((got[1].uid, got[1].gid), (3_000_000, 4_000_000));
    assert_eq!(got[2].link.as_deref(), Some(target.as_str()));
}
