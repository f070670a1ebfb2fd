//! The registry client against hostile or broken registries (an in-memory registry on
//! 127.0.0.1 with a second listener on another port): credentials stay with their origin,
//! server text is printed sanitised, silent and trickling servers time out, and Basic
//! auth works when `/v2/` does not challenge.

mod common;
mod registry_support;

use common::*;
use registry_support::fake::*;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// A test's private client environment: config.json with Basic credentials for `host`,
/// no rbuild config, no certs.d.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(host: &str) -> Env {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:secret");
        let config = serde_json::json!({"auths": {host: {"auth": auth}}});
        std::fs::write(
            dir.path().join("docker/config.json"),
            config.to_string().as_bytes(),
        )
        .unwrap();
        Env { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn rbuild(&self) -> Command {
        let mut c = rbuild(&self.path("state"));
        c.env("DOCKER_CONFIG", self.path("docker"))
            .env("RBUILD_CONFIG", self.path("rbuild.toml"))
            .env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .env("RBUILD_CERTS_D", self.path("certs.d"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("RBUILD_REGISTRY_TIMEOUT")
            .env_remove("RBUILD_REGISTRY_TOTAL_TIMEOUT")
            .env("RBUILD_REGISTRY_RETRIES", "1")
            .env("SOURCE_DATE_EPOCH", "1700000000");
        c
    }

    /// Builds a three-layer image from scratch and pushes it to `name`.
    fn push(&self, name: &str) -> Output {
        let ctx = context(
            &self.path("ctx"),
            "FROM scratch\nCOPY a /a\nCOPY b /b\nCOPY c /c\n",
            &[
                ("a", "first layer\n"),
                ("b", "second layer\n"),
                ("c", "third\n"),
            ],
        );
        run(self
            .rbuild()
            .args(["build", "--progress", "plain", "-t", name, "--push"])
            .arg(&ctx))
    }
}

/// The manifest's config and layer digests (hex).
fn manifest_blobs(manifest: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let mut out: Vec<String> = std::iter::once(&v["config"])
        .chain(v["layers"].as_array().unwrap())
        .map(|d| {
            d["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// The platform manifest an index names (or the manifest itself).
fn image_manifest(reg: &FakeRegistry, repo: &str, tag: &str) -> Vec<u8> {
    let root = reg.manifest(repo, tag).expect("the tag was pushed");
    let v: serde_json::Value = serde_json::from_slice(&root).unwrap();
    match v["manifests"][0]["digest"].as_str() {
        Some(d) => reg
            .manifest(repo, d)
            .expect("the index's manifest was pushed"),
        None => root,
    }
}

#[test]
fn upload_location_on_another_port_gets_no_credentials() {
    let reg = FakeRegistry::start(Behaviour {
        auth: Auth::Basic,
        uploads_elsewhere: true,
        ..Behaviour::default()
    });
    let env = Env::new(&reg.host());
    let out = env.push(&format!("{}/sec/img:v1", reg.host()));
    assert!(out.status.success(), "push failed: {}", stderr(&out));
    let seen = reg.seen();
    let elsewhere: Vec<&Seen> = seen.iter().filter(|s| s.elsewhere).collect();
    assert!(
        elsewhere
            .iter()
            .filter(|s| s.line.starts_with("PUT /upload/"))
            .count()
            >= 4,
        "the blobs were uploaded to the Location on the other port: {seen:#?}"
    );
    for s in &elsewhere {
        assert_eq!(
            s.authorization, None,
            "credentials sent to another origin: {s:?}"
        );
    }
    assert!(
        seen.iter()
            .any(|s| !s.elsewhere && s.authorization == Some(expected_basic())),
        "the registry itself got the credentials: {seen:#?}"
    );
    let manifest = image_manifest(&reg, "sec/img", "v1");
    assert_eq!(manifest_blobs(&manifest), reg.blob_digests());
}

#[test]
fn a_challenge_from_another_origin_gets_no_credentials() {
    let reg = FakeRegistry::start(Behaviour {
        auth: Auth::Basic,
        uploads_elsewhere: true,
        elsewhere_challenges: true,
        ..Behaviour::default()
    });
    let env = Env::new(&reg.host());
    let out = env.push(&format!("{}/sec/img:v1", reg.host()));
    assert!(
        !out.status.success(),
        "the other origin refused every upload"
    );
    assert!(
        stderr(&out).contains("denied (401)"),
        "the upload's refusal is reported: {}",
        stderr(&out)
    );
    let seen = reg.seen();
    let elsewhere: Vec<&Seen> = seen.iter().filter(|s| s.elsewhere).collect();
    assert!(
        elsewhere.iter().any(|s| s.line.starts_with("PUT /upload/")),
        "uploads went to the other port: {seen:#?}"
    );
    for s in &elsewhere {
        assert_eq!(
            s.authorization, None,
            "credentials sent to another origin: {s:?}"
        );
        assert_ne!(
            s.line, "GET /token",
            "the other origin's realm was asked: {s:?}"
        );
    }
}

#[test]
fn blob_redirect_to_another_port_gets_no_credentials() {
    let reg = FakeRegistry::start(Behaviour {
        auth: Auth::Basic,
        blobs_elsewhere: true,
        ..Behaviour::default()
    });
    let env = Env::new(&reg.host());
    let name = format!("{}/sec/pulled:v1", reg.host());
    let out = env.push(&name);
    assert!(out.status.success(), "push failed: {}", stderr(&out));
    let other = Env::new(&reg.host());
    let out = run(other.rbuild().args(["pull", &name]));
    assert!(out.status.success(), "pull failed: {}", stderr(&out));
    let seen = reg.seen();
    let redirected: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.elsewhere && s.line.starts_with("GET /blobs/"))
        .collect();
    assert_eq!(
        redirected.len(),
        4,
        "config and three layers came from the other port: {seen:#?}"
    );
    for s in redirected {
        assert_eq!(
            s.authorization, None,
            "credentials followed a redirect: {s:?}"
        );
    }
}

#[test]
fn basic_auth_without_v2_challenge_pushes_concurrently() {
    let reg = FakeRegistry::start(Behaviour {
        auth: Auth::BasicSilentV2,
        delay_401: Duration::from_millis(300),
        ..Behaviour::default()
    });
    let env = Env::new(&reg.host());
    let out = env.push(&format!("{}/sec/basic:v1", reg.host()));
    assert!(out.status.success(), "push failed: {}", stderr(&out));
    let manifest = image_manifest(&reg, "sec/basic", "v1");
    assert_eq!(manifest_blobs(&manifest), reg.blob_digests());
    assert_eq!(reg.blob_digests().len(), 4);
}

const HOSTILE: &[u8] = b"quota exceeded \x1b]0;pwned\x07\x1b[2J\rfor this repository";

#[test]
fn registry_error_bodies_are_printed_sanitised() {
    let json = serde_json::json!({"errors": [{
        "code": "DENIED\u{1b}[31m",
        "message": String::from_utf8_lossy(HOSTILE),
    }]});
    for body in [HOSTILE.to_vec(), json.to_string().into_bytes()] {
        let reg = FakeRegistry::start(Behaviour {
            upload_error: Some((400, body)),
            ..Behaviour::default()
        });
        let env = Env::new(&reg.host());
        let out = env.push(&format!("{}/sec/err:v1", reg.host()));
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("quota exceeded for this repository"),
            "the registry's message is shown: {err}"
        );
        for bad in [b'\x1b', b'\x07', b'\r'] {
            assert!(
                !out.stderr.contains(&bad),
                "byte {bad:#04x} reached stderr: {:?}",
                err
            );
        }
        assert!(!err.contains("pwned"), "the OSC payload is gone: {err}");
    }
}

/// Runs `cmd`, killing it if it has not finished after two minutes (the timeouts under
/// test are seconds; this only keeps a broken build from hanging the suite).
fn run_bounded(cmd: &mut Command) -> Output {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    let _ = guard.join();
    eprintln!("--- {cmd:?}\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn silent_registry_times_out() {
    let reg = FakeRegistry::start(Behaviour {
        silent: true,
        ..Behaviour::default()
    });
    let env = Env::new(&reg.host());
    let name = format!("{}/sec/silent:v1", reg.host());
    let out = run_bounded(
        env.rbuild()
            .args(["--registry-timeout", "1s", "pull", &name]),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("timed out") && err.contains("no data for 1s"),
        "the error says what timed out: {err}"
    );
}

#[test]
fn trickling_registry_hits_the_total_timeout() {
    let reg = FakeRegistry::start(Behaviour {
        trickle_manifests: true,
        ..Behaviour::default()
    });
    let env = Env::new(&reg.host());
    let name = format!("{}/sec/slow:v1", reg.host());
    let mut cmd = env.rbuild();
    cmd.env("RBUILD_REGISTRY_TOTAL_TIMEOUT", "2s")
        .args(["pull", &name]);
    let out = run_bounded(&mut cmd);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("timed out") && err.contains("--registry-total-timeout"),
        "the error says what timed out: {err}"
    );
}
