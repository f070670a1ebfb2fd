mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use common::{chmod, set_mtime};
use rbuild_snapshot::{
    Chmod, CopyOptions, CopySource, LayerStack, SnapshotError, SymbolicMode, copy, expand_sources,
};

struct Fixture {
    _tmp: tempfile::TempDir,
    ctx: PathBuf,
    image: LayerStack,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(ctx.join("dir/sub")).unwrap();
    fs::write(ctx.join("file.txt"), b"file").unwrap();
    chmod(&ctx.join("file.txt"), 0o640);
    set_mtime(&ctx.join("file.txt"), 1234);
    std::os::unix::fs::chown(ctx.join("file.txt"), Some(77), Some(88)).unwrap();
    fs::write(ctx.join("dir/a"), b"a").unwrap();
    fs::write(ctx.join("dir/sub/b"), b"b").unwrap();
    symlink("a", ctx.join("dir/link")).unwrap();
    chmod(&ctx.join("dir"), 0o750);
    set_mtime(&ctx.join("dir"), 999);
    fs::write(ctx.join("w1.txt"), b"1").unwrap();
    fs::write(ctx.join("w2.txt"), b"2").unwrap();
    symlink("file.txt", ctx.join("l")).unwrap();
    symlink("/etc", ctx.join("esc")).unwrap();

    let layer = tmp.path().join("image");
    fs::create_dir_all(layer.join("usr")).unwrap();
    symlink("/opt", layer.join("usr/local")).unwrap();
    fs::create_dir_all(layer.join("opt")).unwrap();
    chmod(&layer.join("opt"), 0o750);
    std::os::unix::fs::chown(layer.join("opt"), Some(7), Some(8)).unwrap();
    set_mtime(&layer.join("opt"), 4242);
    fs::create_dir_all(layer.join("app")).unwrap();
    chmod(&layer.join("app"), 0o700);
    std::os::unix::fs::chown(layer.join("app"), Some(3), Some(4)).unwrap();
    set_mtime(&layer.join("app"), 777);
    fs::create_dir_all(layer.join("etc")).unwrap();
    fs::write(layer.join("etc/conf"), b"conf").unwrap();

    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    Fixture {
        ctx,
        image: LayerStack::new(vec![layer]),
        out,
        _tmp: tmp,
    }
}

fn run(f: &Fixture, srcs: &[&str], dest: &str, opts: &CopyOptions) -> Result<(), SnapshotError> {
    let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
    copy(
        CopySource::Context(&f.ctx),
        &srcs,
        dest,
        &f.image,
        &f.out,
        opts,
    )
    .map(|_| ())
}

fn meta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

#[test]
fn file_into_new_dir_keeps_mode_and_mtime_and_becomes_root_owned() {
    let f = fixture();
    run(&f, &["file.txt"], "/newdir/", &CopyOptions::default()).unwrap();
    let m = meta(&f.out.join("newdir/file.txt"));
    assert_eq!(fs::read(f.out.join("newdir/file.txt")).unwrap(), b"file");
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(m.mtime(), 1234);
    assert_eq!((m.uid(), m.gid()), (0, 0));
    let d = meta(&f.out.join("newdir"));
    assert_eq!(d.mode() & 0o7777, 0o755);
    assert_eq!((d.uid(), d.gid()), (0, 0));
}

#[test]
fn file_to_a_file_name_and_into_an_existing_dir() {
    let f = fixture();
    run(&f, &["file.txt"], "/etc/renamed", &CopyOptions::default()).unwrap();
    assert_eq!(fs::read(f.out.join("etc/renamed")).unwrap(), b"file");
    // /app exists in the image: no trailing slash needed.
    run(&f, &["file.txt"], "/app", &CopyOptions::default()).unwrap();
    assert_eq!(fs::read(f.out.join("app/file.txt")).unwrap(), b"file");
}

#[test]
fn dir_copies_its_contents_and_carries_the_existing_dest_dir() {
    let f = fixture();
    run(&f, &["dir"], "/app/", &CopyOptions::default()).unwrap();
    assert_eq!(fs::read(f.out.join("app/a")).unwrap(), b"a");
    assert_eq!(fs::read(f.out.join("app/sub/b")).unwrap(), b"b");
    assert!(!f.out.join("app/dir").exists());
    assert_eq!(
        fs::read_link(f.out.join("app/link")).unwrap(),
        Path::new("a")
    );
    let app = meta(&f.out.join("app"));
    assert_eq!(app.mode() & 0o7777, 0o700, "metadata from the image");
    assert_eq!((app.uid(), app.gid()), (3, 4));
    assert_eq!(app.mtime(), 777);
}

#[test]
fn dir_into_a_new_dest_takes_the_source_dir_mtime_and_mode_0755() {
    let f = fixture();
    run(&f, &["dir"], "/fresh", &CopyOptions::default()).unwrap();
    let m = meta(&f.out.join("fresh"));
    assert_eq!(
        m.mode() & 0o7777,
        0o755,
        "BuildKit makes the destination 0755"
    );
    assert_eq!(m.mtime(), 999);
    assert_eq!(fs::read(f.out.join("fresh/sub/b")).unwrap(), b"b");
}

#[test]
fn wildcards_match_like_go() {
    let f = fixture();
    run(&f, &["w?.txt"], "/w/", &CopyOptions::default()).unwrap();
    assert_eq!(fs::read(f.out.join("w/w1.txt")).unwrap(), b"1");
    assert_eq!(fs::read(f.out.join("w/w2.txt")).unwrap(), b"2");
    let f = fixture();
    run(&f, &["d*/s[u]b"], "/x/", &CopyOptions::default()).unwrap();
    assert_eq!(fs::read(f.out.join("x/b")).unwrap(), b"b");
}

#[test]
fn several_sources_need_a_slash() {
    let f = fixture();
    // One wildcard source is one source: its matches go to `/w` in turn, the last wins.
    run(&f, &["w*.txt"], "/w", &CopyOptions::default()).unwrap();
    assert_eq!(fs::read(f.out.join("w")).unwrap(), b"2");
    let f = fixture();
    let err = run(&f, &["w1.txt", "w2.txt"], "/w", &CopyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "When using COPY with more than one source file, the destination must be a directory and end with a /"
    );
    run(&f, &["w1.txt", "w2.txt"], "/w/", &CopyOptions::default()).unwrap();
    assert!(f.out.join("w/w2.txt").exists());
}

#[test]
fn missing_sources_are_named() {
    let f = fixture();
    let err = run(&f, &["nope.txt"], "/x/", &CopyOptions::default()).unwrap_err();
    assert!(matches!(&err, SnapshotError::SourceNotFound { pattern } if pattern == "nope.txt"));
    assert!(err.to_string().contains("nope.txt"));
    // A wildcard that matches nothing copies nothing (BuildKit's AllowEmptyWildcard).
    run(&f, &["nope*"], "/x/", &CopyOptions::default()).unwrap();
    assert!(!f.out.join("x").exists());
}

#[test]
fn sources_cannot_leave_the_context() {
    let f = fixture();
    fs::write(f.ctx.parent().unwrap().join("secret"), b"s").unwrap();
    let err = run(&f, &["../secret"], "/x/", &CopyOptions::default()).unwrap_err();
    assert!(matches!(err, SnapshotError::SourceNotFound { .. }));
    // "esc" -> /etc is re-rooted in the context, which has no etc/.
    let err = run(&f, &["esc/passwd"], "/x/", &CopyOptions::default()).unwrap_err();
    assert!(matches!(err, SnapshotError::SourceNotFound { .. }));
}

#[test]
fn the_source_symlink_itself_is_followed() {
    let f = fixture();
    run(&f, &["l"], "/copied", &CopyOptions::default()).unwrap();
    let m = meta(&f.out.join("copied"));
    assert!(m.is_file());
    assert_eq!(fs::read(f.out.join("copied")).unwrap(), b"file");
}

#[test]
fn destination_symlinks_resolve_inside_the_image() {
    let f = fixture();
    run(
        &f,
        &["file.txt"],
        "/usr/local/bin/",
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read(f.out.join("opt/bin/file.txt")).unwrap(), b"file");
    assert!(!f.out.join("usr").exists());
    let opt = meta(&f.out.join("opt"));
    assert_eq!(opt.mode() & 0o7777, 0o750);
    assert_eq!((opt.uid(), opt.gid()), (7, 8));
    assert_eq!(opt.mtime(), 4242);
}

#[test]
fn chown_and_chmod_apply_to_copied_files_and_new_parents() {
    let f = fixture();
    let opts = CopyOptions {
        chown: Some((1000, 1001)),
        chmod: Some(Chmod::Octal(0o600)),
        workdir: "/srv".to_string(),
        ..Default::default()
    };
    run(&f, &["dir"], "data/", &opts).unwrap();
    let a = meta(&f.out.join("srv/data/a"));
    assert_eq!((a.uid(), a.gid()), (1000, 1001));
    assert_eq!(a.mode() & 0o7777, 0o600);
    let sub = meta(&f.out.join("srv/data/sub"));
    assert_eq!(sub.mode() & 0o7777, 0o600);
    let srv = meta(&f.out.join("srv"));
    assert_eq!(srv.mode() & 0o7777, 0o755);
    assert_eq!((srv.uid(), srv.gid()), (1000, 1001));
}

#[test]
fn copy_from_a_stack_keeps_ids_and_sees_merged_view() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (top, bottom) = (tmp.path().join("top"), tmp.path().join("bottom"));
    fs::create_dir_all(bottom.join("build")).unwrap();
    fs::write(bottom.join("build/bin"), b"binary").unwrap();
    fs::write(bottom.join("build/deleted"), b"gone").unwrap();
    std::os::unix::fs::chown(bottom.join("build/bin"), Some(42), Some(43)).unwrap();
    fs::create_dir_all(top.join("build")).unwrap();
    common::whiteout(&top.join("build/deleted"));
    let stage = LayerStack::new(vec![top, bottom]);
    let srcs = vec!["/build".to_string()];
    copy(
        CopySource::Stack(&stage),
        &srcs,
        "/app/",
        &f.image,
        &f.out,
        &CopyOptions::default(),
    )
    .unwrap();
    let bin = meta(&f.out.join("app/bin"));
    assert_eq!((bin.uid(), bin.gid()), (42, 43));
    assert!(!f.out.join("app/deleted").exists());
}

#[test]
fn copy_onto_an_image_file_path_through_it_fails() {
    let f = fixture();
    let err = run(&f, &["file.txt"], "/etc/conf/", &CopyOptions::default()).unwrap_err();
    assert!(
        matches!(err, SnapshotError::DestNotDirectory { .. }),
        "{err}"
    );
}

#[test]
fn symbolic_chmod_changes_each_files_own_mode() {
    let f = fixture();
    chmod(&f.ctx.join("dir/a"), 0o744);
    chmod(&f.ctx.join("dir/sub/b"), 0o666);
    let opts = CopyOptions {
        chmod: Some(Chmod::Symbolic(SymbolicMode::parse("go-w,a+X").unwrap())),
        ..Default::default()
    };
    run(&f, &["dir", "file.txt"], "/data/", &opts).unwrap();
    let mode = |p: &str| meta(&f.out.join(p)).mode() & 0o7777;
    assert_eq!(mode("data/a"), 0o755, "executable file gets X");
    assert_eq!(
        mode("data/sub/b"),
        0o644,
        "plain file: no X, group/other lose w"
    );
    assert_eq!(mode("data/file.txt"), 0o640);
    assert_eq!(mode("data/sub"), 0o755, "directories get X");
    assert_eq!(
        mode("data"),
        0o755,
        "the directory receiving dir's contents: 0755 through the chmod"
    );
}

#[test]
fn exclude_drops_matching_entries_with_dockerignore_rules() {
    let f = fixture();
    fs::write(f.ctx.join("dir/sub/c.md"), b"c").unwrap();
    fs::write(f.ctx.join("dir/top.md"), b"t").unwrap();
    let opts = CopyOptions {
        exclude: vec!["**/*.md".to_string(), "sub/b".into()],
        ..Default::default()
    };
    run(&f, &["dir"], "/d/", &opts).unwrap();
    assert!(f.out.join("d/a").exists());
    assert!(f.out.join("d/sub").is_dir());
    assert!(!f.out.join("d/sub/b").exists());
    assert!(!f.out.join("d/sub/c.md").exists());
    assert!(!f.out.join("d/top.md").exists());

    // Wildcard matches are tested by their own name, as in `COPY --exclude=*.txt hom* /d/`.
    let g = fixture();
    let opts = CopyOptions {
        exclude: vec!["w2*".to_string()],
        ..Default::default()
    };
    run(&g, &["w*.txt"], "/w/", &opts).unwrap();
    assert!(g.out.join("w/w1.txt").exists());
    assert!(!g.out.join("w/w2.txt").exists());

    let h = fixture();
    let opts = CopyOptions {
        exclude: vec!["[".to_string()],
        ..Default::default()
    };
    let err = run(&h, &["dir"], "/d/", &opts).unwrap_err();
    assert!(matches!(err, SnapshotError::BadPattern { .. }), "{err}");
}

#[test]
fn parents_keep_source_paths_and_pivot_at_dot() {
    let f = fixture();
    let opts = CopyOptions {
        parents: true,
        ..Default::default()
    };
    run(&f, &["dir/sub/b", "dir/a", "w1.txt"], "/p", &opts).unwrap();
    assert_eq!(fs::read(f.out.join("p/dir/sub/b")).unwrap(), b"b");
    assert_eq!(fs::read(f.out.join("p/dir/a")).unwrap(), b"a");
    assert_eq!(fs::read(f.out.join("p/w1.txt")).unwrap(), b"1");
    let dir = meta(&f.out.join("p/dir"));
    assert_eq!(
        dir.mode() & 0o7777,
        0o750,
        "kept parents come from the source"
    );
    assert_eq!(dir.mtime(), 999);

    let g = fixture();
    run(&g, &["./dir/./sub/b", "dir/./s*"], "/q/", &opts).unwrap();
    assert_eq!(fs::read(g.out.join("q/sub/b")).unwrap(), b"b");
    assert!(!g.out.join("q/dir").exists());

    let h = fixture();
    run(&h, &["d*/sub"], "/r/", &opts).unwrap();
    assert_eq!(fs::read(h.out.join("r/dir/sub/b")).unwrap(), b"b");
    assert!(!h.out.join("r/dir/a").exists());

    let i = fixture();
    let opts = CopyOptions {
        parents: true,
        exclude: vec!["dir/sub".to_string()],
        ..Default::default()
    };
    run(&i, &["dir"], "/s/", &opts).unwrap();
    assert!(i.out.join("s/dir/a").exists());
    assert!(!i.out.join("s/dir/sub").exists());
}

#[test]
fn expand_sources_lists_wildcard_matches_less_excludes() {
    let f = fixture();
    fs::write(f.ctx.join("w[3].txt"), b"3").unwrap();
    let mut got = expand_sources(&f.ctx, "w*.txt", &["w2.txt".to_string()]).unwrap();
    got.sort();
    assert_eq!(got, vec!["w1.txt".to_string(), "w\\[3].txt".into()]);
    assert_eq!(
        expand_sources(&f.ctx, "dir/sub/b", &[]).unwrap(),
        vec!["dir/sub/b".to_string()]
    );
}
