//! The small promises of the command line: flags refused before anything is built, contexts
//! named through symlinks, output files made with the caller's umask, leftovers of killed
//! exports removed, warnings without colour codes when stderr is no terminal.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn refused(args: &[&str], needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(&tmp.path().join("ctx"), "FROM busybox\n", &[]);
    let out = run(rbuild(&tmp.path().join("state"))
        .arg("build")
        .args(args)
        .arg(&ctx));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "clap's usage error: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!tmp.path().join("state").exists(), "nothing was started");
}

#[test]
fn bad_platforms_and_build_args_are_refused_at_flag_parsing() {
    refused(
        &["--platform", "linux/amd64,,linux/arm64"],
        "empty platform",
    );
    refused(
        &["--platform", "bogus/arch"],
        "unsupported operating system",
    );
    refused(&["--platform", "linux/bogus"], "unknown architecture");
    refused(&["--build-arg", "=v"], "needs a name");
}

#[test]
fn a_context_and_a_named_context_given_as_symlinks_work() {
    let tmp = tempfile::tempdir().unwrap();
    let real = context(
        &tmp.path().join("real"),
        "FROM busybox\nCOPY f /f\nCOPY --from=extra g /g\n",
        &[("f", "from the context\n")],
    );
    let extra = tmp.path().join("extra-real");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(extra.join("g"), "from the named context\n").unwrap();
    std::os::unix::fs::symlink(&real, tmp.path().join("ctx-link")).unwrap();
    std::os::unix::fs::symlink(&extra, tmp.path().join("extra-link")).unwrap();
    let dest = tmp.path().join("out");
    let out = run(&mut build_command(
        &tmp.path().join("state"),
        &tmp.path().join("ctx-link"),
        "linux/amd64",
        None,
        &[
            "--build-context",
            &format!("extra={}", tmp.path().join("extra-link").display()),
            "-o",
            &format!("type=local,dest={}", dest.display()),
        ],
    ));
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(dest.join("f")).unwrap(),
        "from the context\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("g")).unwrap(),
        "from the named context\n"
    );
}

/// Runs `cmd` under `umask` (through sh, so the umask is the child's).
fn with_umask(umask: &str, cmd: &Command) -> Command {
    let mut sh = Command::new("sh");
    let mut line = format!("umask {umask}; exec");
    line.push_str(&format!(" '{}'", cmd.get_program().to_string_lossy()));
    for a in cmd.get_args() {
        line.push_str(&format!(" '{}'", a.to_string_lossy()));
    }
    sh.arg("-c").arg(line);
    sh
}

#[test]
fn output_archives_follow_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(&tmp.path().join("ctx"), "FROM busybox\n", &[]);
    for (umask, file_mode, dir_mode) in [("022", 0o644, 0o755), ("027", 0o640, 0o750)] {
        let oci = tmp.path().join(format!("out-{umask}.tar"));
        let local = tmp.path().join(format!("local-{umask}"));
        let b = build_command(
            &tmp.path().join("state"),
            &ctx,
            "linux/amd64",
            Some(&oci),
            &[],
        );
        assert!(run(&mut with_umask(umask, &b)).status.success());
        assert_eq!(
            std::fs::metadata(&oci).unwrap().mode() & 0o777,
            file_mode,
            "umask {umask}"
        );
        let b = build_command(
            &tmp.path().join("state"),
            &ctx,
            "linux/amd64",
            None,
            &["-o", &format!("type=local,dest={}", local.display())],
        );
        assert!(run(&mut with_umask(umask, &b)).status.success());
        assert_eq!(
            std::fs::metadata(&local).unwrap().mode() & 0o777,
            dir_mode,
            "umask {umask}"
        );
    }
}

#[test]
fn leftovers_of_a_killed_export_are_removed_by_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(&tmp.path().join("ctx"), "FROM busybox\n", &[]);
    // The pid of a process that has exited: what a `kill -9`ed export leaves behind.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale_file = tmp
        .path()
        .join(format!(".out.tar.{dead}.AbCdEf.rbuild-tmp"));
    std::fs::write(&stale_file, vec![0u8; 4096]).unwrap();
    let stale_dir = tmp
        .path()
        .join(format!(".out.tar.{dead}.XyZ123.rbuild-tmp"));
    std::fs::create_dir(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("index.json"), "{}").unwrap();
    // A live process's temporary is left alone.
    let live = tmp
        .path()
        .join(format!(".out.tar.{}.LiVe00.rbuild-tmp", std::process::id()));
    std::fs::write(&live, "busy").unwrap();
    let dest = tmp.path().join("out.tar");
    let out = build(&tmp.path().join("state"), &ctx, "linux/amd64", &dest, &[]);
    assert!(out.status.success());
    assert!(dest.is_file());
    assert!(
        !stale_file.exists() && !stale_dir.exists(),
        "the stale temporaries are gone"
    );
    assert!(live.exists(), "a running export's temporary stays");
}

#[test]
fn warnings_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    // A base whose file has an owner the build cannot represent is reported by a warning.
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nCOPY --chown=4294967295 f /f\n",
        &[("f", "x")],
    );
    let out = run(&mut build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        None,
        &["--progress=plain"],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be represented"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no escape sequences: {stderr:?}"
    );
}

#[test]
fn several_outputs_are_written_by_one_build() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nCOPY f /f\n",
        &[("f", "x\n")],
    );
    let (oci, local, docker) = (
        tmp.path().join("a.tar"),
        tmp.path().join("dir"),
        tmp.path().join("d.tar"),
    );
    let out = run(&mut build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        Some(&oci),
        &[
            "-o",
            &format!("type=local,dest={}", local.display()),
            "-o",
            &format!("type=docker,dest={}", docker.display()),
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(local.join("f")).unwrap(), "x\n");
    let l = OciLayout::open_tar(&oci);
    assert!(l.file(&l.manifest_for("linux/amd64"), "f").is_some());
    assert!(docker.is_file());
    // Different compressions in one build cannot be honoured: refused before building.
    let clash = run(&mut build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        Some(&oci),
        &[
            "-o",
            &format!(
                "type=oci,dest={},compression=zstd",
                tmp.path().join("z.tar").display()
            ),
        ],
    ));
    assert!(!clash.status.success());
    assert!(
        String::from_utf8_lossy(&clash.stderr).contains("different layer compressions"),
        "{}",
        String::from_utf8_lossy(&clash.stderr)
    );
}

#[test]
fn platform_split_false_merges_the_platforms_into_one_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nARG TARGETARCH\nRUN echo $TARGETARCH > /only-$TARGETARCH\n",
        &[],
    );
    let dest = tmp.path().join("out");
    let out = run(&mut build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64,linux/arm64",
        None,
        &[
            "-o",
            &format!("type=local,dest={},platform-split=false", dest.display()),
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("only-amd64")).unwrap(),
        "amd64\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("only-arm64")).unwrap(),
        "arm64\n"
    );
    assert!(!dest.join("linux_amd64").exists());
}

#[test]
fn annotations_go_where_buildx_puts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(&tmp.path().join("ctx"), "FROM busybox\n", &[]);
    let dest = tmp.path().join("out.tar");
    let o = format!(
        "type=oci,dest={},annotation-index.org.example.o=3,annotation-manifest[linux/amd64].org.example.only=amd",
        dest.display()
    );
    let out = run(&mut build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64,linux/arm64",
        None,
        &[
            "-o",
            &o,
            "--annotation",
            "org.opencontainers.image.title=app",
            "--annotation",
            "index:org.example.idx=1",
            "--annotation",
            "manifest-descriptor:org.example.d=2",
            "--annotation",
            "manifest[linux/arm64]:org.example.arch=arm",
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = OciLayout::open_tar(&dest);
    let amd64 = l.json(&l.manifest_for("linux/amd64"));
    let arm64 = l.json(&l.manifest_for("linux/arm64"));
    assert_eq!(
        amd64["annotations"]["org.opencontainers.image.title"],
        "app"
    );
    assert_eq!(amd64["annotations"]["org.example.only"], "amd");
    assert!(amd64["annotations"].get("org.example.arch").is_none());
    assert_eq!(arm64["annotations"]["org.example.arch"], "arm");
    let root = l.index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let index = l.json(&root);
    assert_eq!(index["annotations"]["org.example.idx"], "1");
    assert_eq!(index["annotations"]["org.example.o"], "3");
    for m in index["manifests"].as_array().unwrap() {
        assert_eq!(m["annotations"]["org.example.d"], "2");
    }
    let bad = run(&mut build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        None,
        &["--annotation", "bogus:k=v"],
    ));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("annotation"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
