//! `ADD archive.tar DEST` of a local archive: where its entries land when links stand in
//! the way, what they replace, and when it fails. The expected results were recorded from
//! BuildKit (v0.32, built-in Dockerfile frontend) building these same Dockerfiles over the
//! same archives and are written out here. BuildKit's unpack chroots into DEST, so links
//! (from the image or from the archive) are followed inside DEST: an absolute link means
//! DEST, `..` stops there, and nothing outside DEST is reached.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

/// One tar entry: path, kind, mode, uid, gid, mtime, and content or link target.
enum E<'a> {
    File(&'a str, u32, u64, &'a str),
    Dir(&'a str, u32, u64),
    Link(&'a str, &'a str, u64),
    Hard(&'a str, &'a str, u32, u32, u64),
}

fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&str, &[u8]) = match e {
            E::File(p, mode, mtime, text) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_mtime(*mtime);
                h.set_uid(1000);
                h.set_gid(1001);
                (p, text.as_bytes())
            }
            E::Dir(p, mode, mtime) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_mtime(*mtime);
                (p, b"")
            }
            E::Link(p, target, mtime) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(target).unwrap();
                h.set_mode(0o777);
                h.set_mtime(*mtime);
                (p, b"")
            }
            E::Hard(p, target, mode, id, mtime) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_link_name(target).unwrap();
                h.set_mode(*mode);
                h.set_uid((*id).into());
                h.set_gid((*id + 1).into());
                h.set_mtime(*mtime);
                (p, b"")
            }
        };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `kind mode mtime [target|content]` of an entry, for compact assertions.
fn describe(p: &Path) -> String {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let ft = m.file_type();
    let extra = if ft.is_symlink() {
        fs::read_link(p).unwrap().display().to_string()
    } else if ft.is_file() {
        fs::read_to_string(p).unwrap().trim_end().to_string()
    } else {
        String::new()
    };
    let kind = if ft.is_symlink() {
        "l"
    } else if ft.is_dir() {
        "d"
    } else {
        "f"
    };
    format!("{kind} {:o} {} {extra}", m.mode() & 0o7777, m.mtime())
        .trim_end()
        .to_string()
}

const BASE_TIME: i64 = 1_700_000_000;

/// Gives every entry below `dir` the mtime [`BASE_TIME`], links included.
fn set_base_times(dir: &Path) {
    run_ok(std::process::Command::new("find").arg(dir).args([
        "-exec",
        "touch",
        "-h",
        "-d",
        "@1700000000",
        "{}",
        "+",
    ]));
}

#[test]
fn links_in_the_destination_are_followed_inside_it() {
    let nodir = tar_of(&[E::File("link/file", 0o640, 1_600_000_000, "through")]);
    let withdir = tar_of(&[
        E::Dir("link/", 0o700, 1_500_000_000),
        E::File("link/file", 0o640, 1_600_000_000, "through"),
    ]);
    let (_t, out) = build_local_output(
        "FROM busybox\nCOPY base/ /\n\
         ADD nodir.tar /d1/\nADD nodir.tar /d2/\nADD nodir.tar /d3/\n\
         ADD nodir.tar /d4/\nADD nodir.tar /d5/\nADD withdir.tar /d6/\n",
        |ctx| {
            let b = ctx.join("base");
            for d in [
                "real", "d1/real", "d2/real", "d3/real", "d4/etc", "d5/etc", "d6/real",
            ] {
                fs::create_dir_all(b.join(d)).unwrap();
            }
            symlink("/real", b.join("d1/link")).unwrap();
            symlink("../real", b.join("d2/link")).unwrap();
            symlink("real", b.join("d3/link")).unwrap();
            symlink("/../../etc", b.join("d4/link")).unwrap();
            symlink("../../../../etc", b.join("d5/link")).unwrap();
            symlink("/real", b.join("d6/link")).unwrap();
            set_base_times(&b);
            fs::write(ctx.join("nodir.tar"), &nodir).unwrap();
            fs::write(ctx.join("withdir.tar"), &withdir).unwrap();
        },
    );
    let out = out.unwrap();
    // BuildKit: the link stays and the file lands where it points, with DEST as `/`:
    // `/real` is /d1/real (not /real), `../real` from /d2 is /d2/real, and links
    // climbing out (`/../../etc`, `../../../../etc`) stop at DEST.
    for (d, link) in [
        ("d1", "/real"),
        ("d2", "../real"),
        ("d3", "real"),
        ("d4", "/../../etc"),
        ("d5", "../../../../etc"),
    ] {
        assert_eq!(
            describe(&out.join(d).join("link")),
            format!("l 777 {BASE_TIME} {link}"),
            "{d}"
        );
        let real = if d == "d4" || d == "d5" {
            "etc"
        } else {
            "real"
        };
        assert_eq!(
            describe(&out.join(d).join(real).join("file")),
            "f 640 1600000000 through",
            "{d}"
        );
        let m = fs::metadata(out.join(d).join(real).join("file")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1001), "{d}");
    }
    assert!(!out.join("real/file").exists(), "nothing outside DEST");
    assert!(!out.join("etc/file").exists(), "nothing outside DEST");
    // With a `link/` directory entry the link is replaced by that directory.
    assert_eq!(describe(&out.join("d6/link")), "d 700 1500000000");
    assert_eq!(
        describe(&out.join("d6/link/file")),
        "f 640 1600000000 through"
    );
    assert_eq!(fs::read_dir(out.join("d6/real")).unwrap().count(), 0);
}

#[test]
fn links_made_by_the_archive_are_followed_inside_the_destination() {
    let made = tar_of(&[
        E::Dir("real/", 0o750, 1_500_000_000),
        E::Link("a", "/real", 1_400_000_000),
        E::File("a/file", 0o644, 1_600_000_000, "via-a"),
        E::Link("r", "../../real", 1_400_000_000),
        E::File("r/file2", 0o644, 1_600_000_000, "via-r"),
        E::Link("c", "real", 1_400_000_000),
        E::Dir("c/", 0o700, 1_300_000_000),
        E::File("c/file3", 0o644, 1_600_000_000, "via-c"),
    ]);
    let (_t, out) = build_local_output("FROM busybox\nADD made.tar /t2/\n", |ctx| {
        fs::write(ctx.join("made.tar"), &made).unwrap();
    });
    let out = out.unwrap();
    assert_eq!(describe(&out.join("t2/a")), "l 777 1400000000 /real");
    assert_eq!(describe(&out.join("t2/r")), "l 777 1400000000 ../../real");
    // Directory times are set last, so /t2/real keeps the archive's.
    assert_eq!(describe(&out.join("t2/real")), "d 750 1500000000");
    assert_eq!(
        describe(&out.join("t2/real/file")),
        "f 644 1600000000 via-a"
    );
    assert_eq!(
        describe(&out.join("t2/real/file2")),
        "f 644 1600000000 via-r"
    );
    assert_eq!(describe(&out.join("t2/c")), "d 700 1300000000");
    assert_eq!(describe(&out.join("t2/c/file3")), "f 644 1600000000 via-c");
    assert!(!out.join("real").exists());

    // A link to nothing: BuildKit fails with "open /a/file: no such file or directory".
    let dangling = tar_of(&[
        E::Link("a", "/missing", 1_400_000_000),
        E::File("a/file", 0o644, 1_600_000_000, "x"),
    ]);
    let (_t, err) = build_local_output("FROM busybox\nADD dangling.tar /t2/\n", |ctx| {
        fs::write(ctx.join("dangling.tar"), &dangling).unwrap();
    });
    let err = err.unwrap_err();
    assert!(
        err.contains("\"a/file\": open /a/file: No such file or directory"),
        "{err}"
    );
}

#[test]
fn entries_replace_what_stands_at_their_path() {
    let over = tar_of(&[
        E::File("file", 0o644, 1_600_000_000, "new"),
        E::File("dirempty", 0o644, 1_600_000_000, "was-empty-dir"),
        E::File("dirfull", 0o644, 1_600_000_000, "was-full-dir"),
        E::Dir("file2/", 0o711, 1_500_000_000),
        E::File("file2/inner", 0o644, 1_600_000_000, "inner"),
        E::Link("file3", "elsewhere", 1_600_000_000),
        E::File("sl", 0o644, 1_600_000_000, "over-symlink"),
        E::Dir("sld/", 0o700, 1_500_000_000),
        E::Hard("hl", "file", 0o600, 5, 1_234_567_890),
        E::Hard("hl2", "keep", 0o600, 5, 1_234_567_890),
    ]);
    let (_t, out) = build_local_output("FROM busybox\nCOPY base/ /\nADD over.tar /t3/\n", |ctx| {
        let b = ctx.join("base/t3");
        for d in ["dirempty", "dirfull", "dirtarget"] {
            fs::create_dir_all(b.join(d)).unwrap();
        }
        for (f, text) in [
            ("file", "old"),
            ("dirfull/x", "x"),
            ("file2", "f2"),
            ("file3", "f3"),
            ("target-file", "tgt"),
            ("keep", "keep"),
        ] {
            fs::write(b.join(f), text).unwrap();
        }
        symlink("target-file", b.join("sl")).unwrap();
        symlink("dirtarget", b.join("sld")).unwrap();
        set_base_times(&ctx.join("base"));
        fs::write(ctx.join("over.tar"), &over).unwrap();
    });
    let out = out.unwrap().join("t3");
    assert_eq!(
        describe(&out.join("dirempty")),
        "f 644 1600000000 was-empty-dir"
    );
    assert_eq!(
        describe(&out.join("dirfull")),
        "f 644 1600000000 was-full-dir"
    );
    assert_eq!(describe(&out.join("file2")), "d 711 1500000000");
    assert_eq!(describe(&out.join("file2/inner")), "f 644 1600000000 inner");
    assert_eq!(describe(&out.join("file3")), "l 777 1600000000 elsewhere");
    // A file over a link replaces the link; the link's target is untouched.
    assert_eq!(describe(&out.join("sl")), "f 644 1600000000 over-symlink");
    assert_eq!(
        describe(&out.join("target-file")),
        format!("f 644 {BASE_TIME} tgt")
    );
    // A directory entry over a link to a directory replaces the link.
    assert_eq!(describe(&out.join("sld")), "d 700 1500000000");
    assert_eq!(fs::read_dir(out.join("dirtarget")).unwrap().count(), 0);
    // A hard link's own header (mode, owner, mtime) lands on the inode it shares, for an
    // earlier entry and for a file the image had.
    for (a, b, text) in [("file", "hl", "new"), ("keep", "hl2", "keep")] {
        for p in [a, b] {
            assert_eq!(
                describe(&out.join(p)),
                format!("f 600 1234567890 {text}"),
                "{p}"
            );
            let m = fs::metadata(out.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid(), m.nlink()), (5, 6, 2), "{p}");
        }
    }
}

#[test]
fn a_destination_that_is_not_a_directory_fails() {
    let small = tar_of(&[E::File("x", 0o644, 1_600_000_000, "x")]);
    let setup = |ctx: &Path| {
        let b = ctx.join("base/t3");
        fs::create_dir_all(b.join("dirtarget")).unwrap();
        fs::write(b.join("file"), "old").unwrap();
        symlink("file", b.join("sl")).unwrap();
        symlink("dirtarget", b.join("sld")).unwrap();
        fs::write(ctx.join("small.tar"), &small).unwrap();
    };
    // BuildKit: "mkdir /t3/file: not a directory" (the same through a link to a file, and
    // for a path below a file).
    for dest in ["/t3/file", "/t3/file/", "/t3/sl", "/t3/file/x/y"] {
        let (_t, err) = build_local_output(
            &format!("FROM busybox\nCOPY base/ /\nADD small.tar {dest}\n"),
            setup,
        );
        let err = err.unwrap_err();
        assert!(err.contains("ADD destination: mkdir /t3/"), "{dest}: {err}");
        assert!(err.contains("Not a directory"), "{dest}: {err}");
    }
    // A link to a directory is followed.
    let (_t, out) =
        build_local_output("FROM busybox\nCOPY base/ /\nADD small.tar /t3/sld\n", setup);
    let out = out.unwrap();
    assert_eq!(describe(&out.join("t3/dirtarget/x")), "f 644 1600000000 x");
    assert!(
        fs::symlink_metadata(out.join("t3/sld"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn chown_and_chmod_do_not_apply_to_archive_contents() {
    let own = tar_of(&[
        E::Dir("d/", 0o750, 1_600_000_000),
        E::File("d/f", 0o640, 1_600_000_000, "f"),
    ]);
    let (_t, out) = build_local_output(
        "FROM busybox\nADD --chown=7:8 --chmod=700 own.tar /t/\n",
        |ctx| {
            fs::write(ctx.join("own.tar"), &own).unwrap();
        },
    );
    let out = out.unwrap();
    assert_eq!(describe(&out.join("t/d")), "d 750 1600000000");
    assert_eq!(describe(&out.join("t/d/f")), "f 640 1600000000 f");
    let m = fs::metadata(out.join("t/d/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
}

#[test]
fn a_directory_replaced_by_a_link_gets_its_times_through_the_link() {
    let tarball = tar_of(&[
        E::Dir("esc/", 0o777, 1_600_000_000),
        E::File("esc/inside", 0o644, 1_600_000_000, "x"),
        E::Link("esc", "/target", 1_600_000_000),
        E::File("target", 0o600, 1000, "t"),
    ]);
    let (_t, out) = build_local_output("FROM busybox\nADD t.tar /t/\n", |ctx| {
        fs::write(ctx.join("t.tar"), &tarball).unwrap();
    });
    let out = out.unwrap();
    // BuildKit sets directory times last, through what stands there then: /t/target gets
    // the directory's mtime but keeps its mode.
    assert_eq!(describe(&out.join("t/esc")), "l 777 1600000000 /target");
    assert_eq!(describe(&out.join("t/target")), "f 600 1600000000 t");
}

#[test]
fn a_stage_of_many_layers_runs_steps_and_takes_an_archive() {
    // 60 layers: more lower directories than fit in a page of overlay mount options, for
    // RUN (in the sandbox) and for ADD (in the build namespace).
    let mut dockerfile = String::from("FROM busybox\n");
    for i in 0..60 {
        dockerfile.push_str(&format!("RUN echo {i} > /layer{i}\n"));
    }
    dockerfile.push_str("ADD a.tar /dst/\n");
    let (_tmp, out) = build_local_output(&dockerfile, |ctx| {
        fs::write(
            ctx.join("a.tar"),
            tar_of(&[E::File("f", 0o640, 1_600_000_000, "from the archive")]),
        )
        .unwrap();
    });
    let out = out.unwrap();
    assert_eq!(
        describe(&out.join("dst/f")),
        "f 640 1600000000 from the archive"
    );
    assert_eq!(fs::read_to_string(out.join("layer0")).unwrap(), "0\n");
    assert_eq!(fs::read_to_string(out.join("layer59")).unwrap(), "59\n");
}

#[test]
fn a_destination_through_a_dangling_link_is_created_where_it_points() {
    // Recorded from BuildKit v0.32: `ADD links.tar /` (d -> /made/by/add, w/r -> ../rel/x,
    // both dangling), then `ADD a.tar /d/`, `ADD a.tar /w/r/` and `COPY c.txt /d/`: the
    // links stay, and the directories they name are made (0755) and receive the entries.
    let links = tar_of(&[
        E::Link("d", "/made/by/add", 1_600_000_000),
        E::Dir("w/", 0o755, 1_600_000_000),
        E::Link("w/r", "../rel/x", 1_600_000_000),
    ]);
    let archive = tar_of(&[
        E::Dir("sub/", 0o755, 1_600_000_000),
        E::File("sub/f", 0o644, 1_600_000_000, "hi"),
        E::File("t", 0o644, 1_600_000_000, "top"),
    ]);
    let (_t, out) = build_local_output(
        "FROM scratch\nADD links.tar /\nADD a.tar /d/\nADD a.tar /w/r/\nCOPY c.txt /d/\n",
        |ctx| {
            fs::write(ctx.join("links.tar"), &links).unwrap();
            fs::write(ctx.join("a.tar"), &archive).unwrap();
            fs::write(ctx.join("c.txt"), "c\n").unwrap();
        },
    );
    let out = out.unwrap();
    assert_eq!(describe(&out.join("d")), "l 777 1600000000 /made/by/add");
    assert_eq!(describe(&out.join("w/r")), "l 777 1600000000 ../rel/x");
    for dir in ["made", "made/by", "rel"] {
        assert!(describe(&out.join(dir)).starts_with("d 755 "), "{dir}");
    }
    for dest in ["made/by/add", "rel/x"] {
        let d = out.join(dest);
        assert!(describe(&d).starts_with("d 755 "), "{dest}");
        assert_eq!(describe(&d.join("sub/f")), "f 644 1600000000 hi", "{dest}");
        assert_eq!(describe(&d.join("t")), "f 644 1600000000 top", "{dest}");
    }
    assert_eq!(
        fs::read_to_string(out.join("made/by/add/c.txt")).unwrap(),
        "c\n"
    );
    assert!(!out.join("rel/x/c.txt").exists());
}
