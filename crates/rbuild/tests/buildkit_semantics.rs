//! Filesystem results that must be what BuildKit (v0.32, built-in Dockerfile frontend)
//! gives for the same Dockerfile. The expected trees were recorded from BuildKit builds of
//! these exact Dockerfiles and are written out here.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn mtime(p: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

/// Builds `dockerfile` over a context made by `setup`, into `-o type=local`; the build
/// must succeed.
fn build_local(
    dockerfile: &str,
    setup: impl FnOnce(&Path),
) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, out) = build_local_output(dockerfile, setup);
    (tmp, out.unwrap_or_else(|stderr| panic!("{stderr}")))
}

fn source_tree(ctx: &Path) {
    fs::create_dir_all(ctx.join("src/sub/deeper")).unwrap();
    fs::write(ctx.join("src/a"), "a\n").unwrap();
    fs::write(ctx.join("src/b"), "top\n").unwrap();
    fs::write(ctx.join("src/sub/b"), "deep\n").unwrap();
    fs::write(ctx.join("src/sub/deeper/c"), "d2\n").unwrap();
    fs::write(ctx.join("src/x.txt"), "X\n").unwrap();
    fs::write(ctx.join("src/[lit].txt"), "L\n").unwrap();
    for d in ["src", "src/sub"] {
        fs::set_permissions(ctx.join(d), fs::Permissions::from_mode(0o775)).unwrap();
    }
}

#[test]
fn a_copied_directory_creates_its_destination_0755_and_keeps_modes_below() {
    let (_t, out) = build_local(
        "FROM busybox\nCOPY src /newdir\nCOPY src/ /newdir2/\nCOPY --chmod=700 src /newdir3\n",
        source_tree,
    );
    assert_eq!(mode(&out.join("newdir")), 0o755);
    assert_eq!(mode(&out.join("newdir2")), 0o755);
    assert_eq!(
        mode(&out.join("newdir/sub")),
        0o775,
        "directories below keep their mode"
    );
    assert_eq!(
        mode(&out.join("newdir3")),
        0o700,
        "--chmod applies to the destination too"
    );
    assert_eq!(mode(&out.join("newdir3/a")), 0o700);
    assert_eq!(mode(&out.join("newdir3/sub")), 0o700);
}

#[test]
fn wildcards_follow_buildkit() {
    let (_t, out) = build_local(
        "FROM busybox\n\
         COPY src/nomatch* src/a /w1/\n\
         COPY src/**/b /w6/\n\
         COPY src/**/c /w9/\n\
         COPY src/[[]lit].txt /w3/\n\
         COPY src/*.txt /w5\n\
         COPY src/*.txt /w4/\n",
        source_tree,
    );
    // A wildcard matching nothing is fine beside a source that matches.
    assert_eq!(read(&out.join("w1/a")), "a\n");
    assert_eq!(fs::read_dir(out.join("w1")).unwrap().count(), 1);
    // `**` is Go's filepath.Match: one path component, like `*`.
    assert_eq!(read(&out.join("w6/b")), "deep\n");
    assert_eq!(fs::read_dir(out.join("w6")).unwrap().count(), 1);
    // Matching nothing at all copies nothing and is no error (the destination is not made).
    assert!(!out.join("w9").exists());
    // `[[]` matches a literal bracket.
    assert_eq!(read(&out.join("w3/[lit].txt")), "L\n");
    // One wildcard source matching several files, destination without a slash: each is
    // copied to it in turn, the last match wins.
    assert_eq!(read(&out.join("w5")), "X\n");
    let mut w4: Vec<_> = fs::read_dir(out.join("w4"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    w4.sort();
    assert_eq!(w4, ["[lit].txt", "x.txt"]);
}

#[test]
fn an_empty_source_copies_the_context_root() {
    let (_t, out) = build_local("FROM busybox\nCOPY \"\" /ctxroot/\n", |ctx| {
        fs::write(ctx.join("f"), "f\n").unwrap();
    });
    assert_eq!(read(&out.join("ctxroot/f")), "f\n");
    assert!(out.join("ctxroot/Dockerfile").is_file());
}

#[test]
fn unknown_user_and_group_names_resolve_to_root() {
    let (_t, out) = build_local(
        "FROM busybox\nUSER daemon\nWORKDIR /home/daemon-work\nUSER root\nCOPY --chown=nosuch:nosuch f /chowned\n",
        |ctx| fs::write(ctx.join("f"), "f\n").unwrap(),
    );
    let w = fs::metadata(out.join("home/daemon-work")).unwrap();
    assert_eq!((w.uid(), w.gid(), w.mode() & 0o7777), (0, 0, 0o755));
    let c = fs::metadata(out.join("chowned")).unwrap();
    assert_eq!((c.uid(), c.gid()), (0, 0));
}

#[test]
fn base_directory_and_symlink_mtimes_are_kept() {
    let (_t, out) = build_local(
        "FROM busybox AS s\nCOPY d /d\nFROM busybox\nRUN touch -r /bin /t-bin\nCOPY d /ctx\nCOPY --from=s /d /from\n",
        |ctx| {
            fs::create_dir(ctx.join("d")).unwrap();
            std::os::unix::fs::symlink("target", ctx.join("d/link")).unwrap();
            let c =
                std::ffi::CString::new(ctx.join("d/link").as_os_str().as_encoded_bytes()).unwrap();
            let t = libc::timespec {
                tv_sec: 1_577_836_800,
                tv_nsec: 0,
            };
            // SAFETY: valid path and a two-element array.
            let rc = unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    [t, t].as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            assert_eq!(rc, 0);
        },
    );
    assert_eq!(
        mtime(&out.join("t-bin")),
        mtime(&out.join("bin")),
        "the base's /bin mtime"
    );
    assert_eq!(mtime(&out.join("ctx/link")).0, 1_577_836_800);
    assert_eq!(mtime(&out.join("from/link")).0, 1_577_836_800);
}

#[test]
fn workdir_keeps_its_trailing_slash_in_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nWORKDIR /a/b/\n",
        &[],
    );
    let dest = tmp.path().join("out.tar");
    assert!(
        build(&tmp.path().join("state"), &ctx, "linux/amd64", &dest, &[])
            .status
            .success()
    );
    let l = OciLayout::open_tar(&dest);
    let config = l.config(&l.manifest_for("linux/amd64"));
    assert_eq!(config["config"]["WorkingDir"], "/a/b/");
}
