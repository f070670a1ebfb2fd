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

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// An uncompressed layer tar: a directory `dev/` with the character device `dev/null`
/// (1:3), a file `hello`, and a file `owned` whose owner 2000000:2000000 no
/// subordinate id range of a rootless build maps.
fn layer_with_a_device() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut dir, "dev/", std::io::empty()).unwrap();
    let mut dev = header(tar::EntryType::Char, 0o666, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    b.append_data(&mut dev, "dev/null", std::io::empty())
        .unwrap();
    let mut file = header(tar::EntryType::Regular, 0o644, 3);
    b.append_data(&mut file, "hello", &b"hi\n"[..]).unwrap();
    let mut owned = header(tar::EntryType::Regular, 0o644, 0);
    owned.set_uid(2_000_000);
    owned.set_gid(2_000_000);
    b.append_data(&mut owned, "owned", std::io::empty())
        .unwrap();
    b.into_inner().unwrap()
}

#[test]
fn rootless_unpack_warnings_are_events_on_the_from_step() {
    assert!(is_root(), "this test creates a user and must run as root");
    ensure_test_user();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let bin = base.join("rbuild");
    copy_rbuild_to(&bin);
    single_layer_layout(&base.join("layout"), &layer_with_a_device());
    context(
        &base.join("ctx"),
        "FROM base\nCOPY f /f\n",
        &[("f", "file\n")],
    );
    std::fs::create_dir(base.join("home")).unwrap();
    run_ok(
        std::process::Command::new("chown")
            .arg("-R")
            .arg(format!("{TEST_USER}:{TEST_USER}"))
            .arg(base),
    );
    let out = run(as_test_user(&bin, &base.join("home"))
        .arg("--root")
        .arg(base.join("state"))
        .args(["build", "--platform", "linux/amd64", "--progress=rawjson"])
        .arg("--build-context")
        .arg(format!(
            "base=oci-layout://{}",
            base.join("layout").display()
        ))
        .arg("-o")
        .arg(format!("type=oci,dest={}", base.join("out.tar").display()))
        .arg(base.join("ctx")));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let (names, warnings) = rawjson(&stderr);
    let from = names
        .iter()
        .find(|(_, n)| n == "[linux/amd64 1/2] FROM base")
        .map(|(d, _)| d.clone());
    assert!(from.is_some(), "{names:?}");
    for expected in [
        "skipped 1 device node(s), creating devices is not permitted here: dev/null",
        "1 entr(y/ies) kept owner 0:0, their owner cannot be represented here (unmapped id): /owned (2000000:2000000)",
    ] {
        let found: Vec<_> = warnings
            .iter()
            .filter(|w| w.1.ends_with(expected))
            .collect();
        assert_eq!(found.len(), 1, "{expected}: {warnings:?}");
        assert_eq!(found[0].0, from, "{expected}: on the FROM step");
    }
}

#[test]
fn unrepresentable_copy_owner_is_a_warning_event_on_its_copy_step() {
    let tmp = tempfile::tempdir().unwrap();
    // chown(2) reads 4294967295 as "unchanged": no build can give a file that owner.
    let dockerfile = "FROM busybox\nCOPY --chown=4294967295 f /f\n";
    let stderr = build_with(tmp.path(), dockerfile, "rawjson");
    let (names, warnings) = rawjson(&stderr);
    let expected = "1 entr(y/ies) kept owner 0:0, their owner cannot be represented here (unmapped id): /f (4294967295:4294967295)";
    let found: Vec<_> = warnings.iter().filter(|w| w.1 == expected).collect();
    assert_eq!(found.len(), 1, "{warnings:?}");
    let vertex = found[0].0.as_ref().expect("the warning names its step");
    let name = names.iter().find(|(d, _)| d == vertex).map(|(_, n)| n);
    assert_eq!(
        name.map(String::as_str),
        Some("[linux/amd64 2/2] COPY --chown=4294967295 f /f")
    );
}

/// A `--build-arg` no ARG consumes is one warning event of the build (no step), in
/// rawjson as in plain output — not a log line.
#[test]
fn an_unused_build_arg_is_a_warning_event() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM scratch\nCOPY f /f\n",
        &[("f", "x")],
    );
    let warning = "build arg \"UNUSED\" was never consumed by an ARG";
    for progress in ["rawjson", "plain"] {
        let out = run(&mut build_command(
            &tmp.path().join(format!("state-{progress}")),
            &ctx,
            "linux/amd64",
            Some(&tmp.path().join(format!("{progress}.tar"))),
            &[&format!("--progress={progress}"), "--build-arg", "UNUSED=1"],
        ));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{stderr}");
        if progress == "rawjson" {
            let (_, warnings) = rawjson(&stderr);
            let found: Vec<_> = warnings.iter().filter(|w| w.1 == warning).collect();
            assert_eq!(found, [&(None, warning.to_string())], "{warnings:?}");
        } else {
            let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("UNUSED")).collect();
            assert_eq!(lines, [format!("WARNING: {warning}")], "{stderr}");
        }
    }
}
