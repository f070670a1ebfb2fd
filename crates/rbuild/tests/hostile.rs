//! The hostile-input corpus (`testdata/hostile/*.case`) through every entry point that reads
//! an untrusted tree: base-layer unpack, `COPY --from` of the stage built on it, `ADD` of the
//! same tar, and the `type=local` exporter — as root and as an unprivileged user. After every
//! build a sentinel tree beside the state directory must be exactly what it was.

mod common;
mod hostile_corpus;
mod sentinel;

use common::*;
use hostile_corpus::{Case, Expect};
use sentinel::{Setup, as_root_and_rootless, snapshot};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

fn assert_outcome(case: &str, what: &str, expect: &Expect, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{case} ({what}): rbuild panicked:\n{stderr}"
    );
    match expect {
        Expect::Ok => assert!(
            out.status.success(),
            "{case} ({what}): expected success:\n{stderr}"
        ),
        Expect::Error(text) => {
            assert!(!out.status.success(), "{case} ({what}): expected an error");
            assert!(
                stderr.to_lowercase().contains(&text.to_lowercase()),
                "{case} ({what}): expected an error containing {text:?}:\n{stderr}"
            );
            assert_eq!(out.status.code(), Some(1), "{case} ({what}): exit code");
        }
        Expect::Skip => {}
    }
}

fn check_tree(case: &Case, root: &Path, rootless: bool) {
    for c in &case.checks {
        let p = root.join(&c.path);
        let meta = fs::symlink_metadata(&p);
        let ctx = format!("{}: check {} {} {}", case.name, c.path, c.what, c.arg);
        match c.what.as_str() {
            "absent" => assert!(meta.is_err(), "{ctx}"),
            "dir" => assert!(meta.unwrap().is_dir(), "{ctx}"),
            "file" => assert_eq!(fs::read_to_string(&p).unwrap(), c.arg, "{ctx}"),
            "symlink" => assert_eq!(fs::read_link(&p).unwrap(), PathBuf::from(&c.arg), "{ctx}"),
            "size" => assert_eq!(meta.unwrap().len(), c.arg.parse::<u64>().unwrap(), "{ctx}"),
            "mode" => assert_eq!(
                meta.unwrap().mode() & 0o7777,
                u32::from_str_radix(&c.arg, 8).unwrap(),
                "{ctx}"
            ),
            "device" if rootless => assert!(meta.is_err(), "{ctx}: skipped rootless"),
            "device" => {
                let m = meta.unwrap();
                let want: Vec<u32> = c
                    .arg
                    .split(' ')
                    .skip(1)
                    .map(|n| n.parse().unwrap())
                    .collect();
                let kind = c.arg.split(' ').next().unwrap();
                let is_kind = match kind {
                    "char" => m.file_type().is_char_device(),
                    _ => m.file_type().is_block_device(),
                };
                assert!(is_kind, "{ctx}: not a {kind} device");
                assert_eq!(m.rdev(), libc::makedev(want[0], want[1]), "{ctx}");
            }
            other => panic!("{ctx}: unknown check {other}"),
        }
    }
}

fn run_corpus(rootless: bool) {
    let setup = Setup::new(rootless);
    let (base, sentinel, runner) = (setup.base(), &setup.sentinel, &setup.runner);
    let cases = hostile_corpus::load(&repo().join("testdata/hostile"), sentinel);
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let before = snapshot(sentinel);
    for case in &cases {
        let dir = base.join("cases").join(&case.name);
        let layout = dir.join("layout");
        hostile_corpus::write_layout(case, &layout);
        let ctx = context(
            &dir.join("ctx"),
            "FROM base AS b\nCOPY marker /marker\nFROM busybox\nCOPY --from=b / /from/\n",
            &[("marker", "m")],
        );
        let out = runner.build(&ctx, &layout, &dir.join("out-b"), &["--target", "b"]);
        assert_outcome(&case.name, "base", &case.expect, &out);
        assert_eq!(
            snapshot(sentinel),
            before,
            "{}: the sentinel changed (base)",
            case.name
        );
        if case.expect == Expect::Ok {
            check_tree(case, &dir.join("out-b"), rootless);
            let out = runner.build(&ctx, &layout, &dir.join("out-from"), &[]);
            assert_outcome(&case.name, "COPY --from", &Expect::Ok, &out);
            check_tree(case, &dir.join("out-from/from"), rootless);
            assert_eq!(
                snapshot(sentinel),
                before,
                "{}: the sentinel changed (COPY --from)",
                case.name
            );
        }
        if case.add != Expect::Skip {
            let add = context(&dir.join("add"), "FROM busybox\nADD layer.tar /dst/\n", &[]);
            fs::write(
                add.join("layer.tar"),
                hostile_corpus::tar_bytes(&case.layers[0]),
            )
            .unwrap();
            let out = runner.build(&add, &layout, &dir.join("out-add"), &[]);
            assert_outcome(&case.name, "ADD", &case.add, &out);
            assert_eq!(
                snapshot(sentinel),
                before,
                "{}: the sentinel changed (ADD)",
                case.name
            );
        }
    }
    let victim = fs::metadata(sentinel.join("victim")).unwrap();
    assert_eq!(victim.mode() & 0o7777, 0o600);
}

as_root_and_rootless!(hostile_corpus_as_root, hostile_corpus_rootless, run_corpus);

/// The chmod reproduction from two COPY sources of the context: `a/x` a 0777 directory,
/// `b/x` a symlink to a host file.
fn two_copy_sources(rootless: bool) {
    let setup = Setup::new(rootless);
    let (base, sentinel, runner) = (setup.base(), &setup.sentinel, &setup.runner);
    let ctx = context(
        &base.join("ctx"),
        "FROM busybox\nCOPY a b /dst/\n",
        &[("a/x/f", "f")],
    );
    fs::set_permissions(ctx.join("a/x"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::create_dir(ctx.join("b")).unwrap();
    std::os::unix::fs::symlink(sentinel.join("victim"), ctx.join("b/x")).unwrap();
    let before = snapshot(sentinel);
    let out = runner.build(&ctx, &base.join("busybox"), &base.join("out"), &[]);
    assert!(out.status.success());
    assert_eq!(snapshot(sentinel), before, "the sentinel changed");
    assert_eq!(
        fs::read_link(base.join("out/dst/x")).unwrap(),
        sentinel.join("victim")
    );
}

as_root_and_rootless!(
    two_copy_sources_cannot_chmod_a_host_file_as_root,
    two_copy_sources_cannot_chmod_a_host_file_rootless,
    two_copy_sources
);
