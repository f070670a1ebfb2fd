//! Warnings a user should see travel through the build's event stream, so every
//! `--progress` mode shows them in its own form (rawjson: a `warnings` entry on the
//! step's vertex; plain: a `WARNING:` line), never as a log line beside it.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::Value;
use std::path::Path;

const CHOWN_UNKNOWN: &str = "FROM busybox
COPY --chown=nosuchuser f /f
";

const CHOWN_WARNING: &str = "user \"nosuchuser\" is not in the image's /etc/passwd; using uid 0";

fn b64(v: &Value) -> String {
    let text = v.as_str().unwrap_or_else(|| panic!("a string: {v}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// Builds `dockerfile` (with a file `f` in the context) with `--progress=progress`;
/// returns its stderr.
fn build_with(tmp: &Path, dockerfile: &str, progress: &str) -> String {
    let ctx = context(&tmp.join("ctx"), dockerfile, &[("f", "file\n")]);
    let out = run(&mut build_command(
        &tmp.join("state"),
        &ctx,
        "linux/amd64",
        Some(&tmp.join("out.tar")),
        &[&format!("--progress={progress}")],
    ));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// A warning of the rawjson stream: the digest of its vertex, if any, and its message.
type JsonWarning = (Option<String>, String);

/// The rawjson lines of `stderr` (each must be JSON): the vertices' names by digest and
/// the warnings.
fn rawjson(stderr: &str) -> (Vec<(String, String)>, Vec<JsonWarning>) {
    let mut names = Vec::new();
    let mut warnings = Vec::new();
    for line in stderr.lines() {
        let obj: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a rawjson line ({e}): {line}"));
        for v in obj["vertexes"].as_array().into_iter().flatten() {
            let d = v["digest"].as_str().unwrap().to_string();
            names.push((d, v["name"].as_str().unwrap().to_string()));
        }
        for w in obj["warnings"].as_array().into_iter().flatten() {
            let vertex = w["vertex"].as_str().map(str::to_string);
            warnings.push((vertex, b64(&w["short"])));
        }
    }
    (names, warnings)
}

#[test]
fn unknown_chown_user_is_a_warning_event_on_its_copy_step() {
    let tmp = tempfile::tempdir().unwrap();
    let stderr = build_with(tmp.path(), CHOWN_UNKNOWN, "rawjson");
    let (names, warnings) = rawjson(&stderr);
    let found: Vec<_> = warnings.iter().filter(|w| w.1 == CHOWN_WARNING).collect();
    assert_eq!(found.len(), 1, "{warnings:?}");
    let vertex = found[0].0.as_ref().expect("the warning names its step");
    let name = names.iter().find(|(d, _)| d == vertex).map(|(_, n)| n);
    assert_eq!(
        name.map(String::as_str),
        Some("[linux/amd64 2/2] COPY --chown=nosuchuser f /f")
    );
}

#[test]
fn unknown_chown_user_is_a_warning_line_in_plain_output() {
    let tmp = tempfile::tempdir().unwrap();
    let stderr = build_with(tmp.path(), CHOWN_UNKNOWN, "plain");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("nosuchuser\" is not in"))
        .collect();
    assert_eq!(lines, [format!("WARNING: {CHOWN_WARNING}")], "{stderr}");
}
