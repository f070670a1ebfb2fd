//! Huge names and Dockerfiles through the real binary: a command name too long for any
//! pipe buffer fails with a short message, and a signal stops lowering and linting.

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Far beyond anything rbuild should need: a process still running then is hung.
const HUNG_AFTER: Duration = Duration::from_secs(600);

/// Waits for `child` with a generous outer bound; kills it and fails when it never ends.
fn wait_bounded(mut child: Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + HUNG_AFTER;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} never returned");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `cmd` with its stdout and stderr in files `WHAT.stdout`/`WHAT.stderr` of `dir`.
fn spawn_to_files(
    cmd: &mut Command,
    dir: &Path,
    what: &str,
) -> (std::process::Child, std::path::PathBuf, std::path::PathBuf) {
    let out_path = dir.join(format!("{what}.stdout"));
    let err_path = dir.join(format!("{what}.stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn rbuild");
    (child, out_path, err_path)
}

/// Runs `cmd` to its end (bounded as [`wait_bounded`]), its streams in files under `dir`.
fn output_bounded(cmd: &mut Command, dir: &Path, what: &str) -> Output {
    let (child, out_path, err_path) = spawn_to_files(cmd, dir, what);
    let status = wait_bounded(child, what);
    Output {
        status,
        stdout: std::fs::read(&out_path).expect("stdout"),
        stderr: std::fs::read(&err_path).expect("stderr"),
    }
}

/// The error of `text` that says the command was not found (from `exec: ` on: a build
/// prefixes the instruction): it must be short and name the command by its first
/// characters and its length.
fn assert_short_not_found(text: &str, name: &str) {
    let message = text
        .lines()
        .filter(|l| l.contains("executable file not found in $PATH"))
        .find_map(|l| l.find("exec: \"").map(|at| &l[at..]))
        .unwrap_or_else(|| {
            panic!(
                "no \"not found\" error in:\n{}",
                &text[..text.len().min(4000)]
            )
        });
    assert!(message.len() < 2_000, "message of {} bytes", message.len());
    let shown = format!("exec: \"{}… ({} bytes)\"", &name[..256], name.len());
    assert!(message.starts_with(&shown), "{message}");
}

#[test]
fn run_of_a_missing_command_with_a_huge_name_fails_with_a_short_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let name = "a".repeat(70_000);
    let ctx = context(
        &tmp.path().join("ctx"),
        &format!("FROM busybox\nRUN [\"{name}\"]\n"),
        &[],
    );
    let state = tmp.path().join("state");
    let out = output_bounded(
        &mut build_command(&state, &ctx, "linux/amd64", None, &[]),
        tmp.path(),
        "build",
    );
    assert!(!out.status.success());
    assert_short_not_found(&stderr(&out), &name);
}

#[test]
fn rbuild_run_of_a_missing_command_with_a_huge_name_fails_with_a_short_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = context(&tmp.path().join("ctx"), "FROM busybox\n", &[]);
    let state = tmp.path().join("state");
    run_ok(&mut build_command(
        &state,
        &ctx,
        "linux/amd64",
        None,
        &["--load", "-t", "huge-name:1"],
    ));
    let name = "b".repeat(70_000);
    let out = output_bounded(
        rbuild(&state).args(["run", "--rm", "huge-name:1", &name]),
        tmp.path(),
        "run",
    );
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_short_not_found(&stderr(&out), &name);
}

/// A Dockerfile whose first stage has `lines` ENV lines and whose last stage starts from
/// `base` and copies from the first, so lowering reaches `base` only after them all.
fn huge_dockerfile(lines: usize, base: &str) -> String {
    let mut text = String::from("FROM scratch AS big\n");
    for i in 0..lines {
        text.push_str(&format!("ENV V{i}=value-{i}\n"));
    }
    text.push_str(&format!("FROM {base}\nCOPY --from=big / /\n"));
    text
}

/// The process rbuild re-executed itself as (inside the build namespace): the one child
/// of `outer`.
fn inner_process(outer: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Whether `pid` has a handler for SIGTERM (its `SigCgt` mask has bit 15).
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

/// Starts `cmd`, waits until the build process inside the namespace handles signals
/// (before it reads the Dockerfile), sends SIGTERM to the command and returns what it
/// printed and how it ended.
fn terminate_once_started(cmd: &mut Command, dir: &Path, what: &str) -> Output {
    let (child, out_path, err_path) = spawn_to_files(cmd, dir, what);
    let deadline = Instant::now() + HUNG_AFTER;
    // The outer process forwards signals to the inner one once it handles them.
    while !(catches_sigterm(child.id()) && inner_process(child.id()).is_some_and(catches_sigterm)) {
        assert!(Instant::now() < deadline, "{what}: never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = wait_bounded(child, what);
    Output {
        status,
        stdout: std::fs::read(&out_path).expect("stdout"),
        stderr: std::fs::read(&err_path).expect("stderr"),
    }
}

fn assert_interrupted(out: &Output) {
    assert_eq!(out.status.code(), Some(143), "{}", stderr(out));
    assert!(
        stderr(out).contains("error: build interrupted; partial results were discarded"),
        "{}",
        stderr(out)
    );
}

#[test]
fn sigterm_stops_check_of_a_huge_dockerfile() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = context(
        &tmp.path().join("ctx"),
        &huge_dockerfile(200_000, "scratch"),
        &[],
    );
    let mut cmd = rbuild(&tmp.path().join("state"));
    cmd.args(["build", "--check"]).arg(&ctx);
    let out = terminate_once_started(&mut cmd, tmp.path(), "check");
    assert_interrupted(&out);
    assert!(!stdout(&out).contains("Check complete"), "{}", stdout(&out));
}

#[test]
fn sigterm_stops_lowering_of_a_huge_dockerfile_before_its_later_stages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A registry that never answers: a connection to it means lowering went on past the
    // first stage after the signal.
    let registry = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    registry.set_nonblocking(true).expect("nonblocking");
    let port = registry.local_addr().expect("address").port();
    let ctx = context(
        &tmp.path().join("ctx"),
        &huge_dockerfile(200_000, &format!("127.0.0.1:{port}/never/pulled:1")),
        &[],
    );
    let dest = tmp.path().join("out.tar");
    let mut cmd = build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        Some(&dest),
        &[],
    );
    let out = terminate_once_started(&mut cmd, tmp.path(), "build");
    assert_interrupted(&out);
    assert!(
        registry.accept().is_err(),
        "the base of the last stage was looked up after SIGTERM"
    );
    assert!(!dest.exists());
}
