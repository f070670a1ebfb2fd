//! Huge names through the real binary: a command name too long for any pipe buffer
//! fails with a short message.

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

/// Runs `cmd` to its end (bounded as [`wait_bounded`]), its streams in files under `dir`.
fn output_bounded(cmd: &mut Command, dir: &Path, what: &str) -> Output {
    let out_path = dir.join(format!("{what}.stdout"));
    let err_path = dir.join(format!("{what}.stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn rbuild");
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
