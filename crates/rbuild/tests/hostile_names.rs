//! Names from outside are data, never host paths. Every code path that takes a name from
//! outside lands inside its own tree or refuses it:
//! - `ADD <url>` names made of encoded `/` and `..` (here, as root and rootless);
//! - archive member names (the hostile corpus, `tests/hostile.rs`, through base layers,
//!   `ADD` and `COPY --from`);
//! - `manifest.json` config and layer paths, `index.json` entries and `RepoTags` of an
//!   archive `image load` reads, and `index.json` entries of an `oci-layout://` context (here);
//! - `--root` (`tests/state_dir.rs`).
//!
//! `--iidfile`, `--metadata-file` and `-o dest=` are the user's own paths and may go anywhere.
//! A sentinel tree beside the state directory must be exactly what it was after each case.

mod common;
mod sentinel;

use common::*;
use sentinel::{Setup, as_root_and_rootless, make_sentinel, snapshot};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// A loopback HTTP server answering every GET with `path=<request path>\n`; its address.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let body = format!("path={path}\n");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let mut out = &stream;
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(body.as_bytes());
        }
    });
    addr
}

/// A path written with every `/` percent-encoded.
fn encoded(path: &Path) -> String {
    path.display().to_string().replace('/', "%2F")
}

/// `ADD` of URLs whose last component decodes to an absolute host path or climbs with
/// `..`: the files land inside the destination, named as BuildKit names them (recorded from
/// BuildKit v0.32: `/d/victim`, `/d/victim`, `/d/download`), and no host file changes.
fn url_names_stay_inside(rootless: bool) {
    let setup = Setup::new(rootless);
    let (base, sentinel, runner) = (setup.base(), &setup.sentinel, &setup.runner);
    let srv = echo_server();
    let abs = format!("/x/{}", encoded(&sentinel.join("victim")));
    let climb = format!(
        "/x/{}{}",
        "..%2F".repeat(12),
        encoded(&sentinel.join("victim")).trim_start_matches("%2F")
    );
    let df = format!(
        "FROM busybox\nADD http://{srv}{abs} /abs/\nADD http://{srv}{climb} /climb/\n\
         ADD http://{srv}/x/%2E%2E /dots/\nADD http://{srv}/x/.. /dotfile\n"
    );
    let ctx = context(&base.join("ctx"), &df, &[]);
    let before = snapshot(sentinel);
    let out = runner.build(&ctx, &base.join("busybox"), &base.join("out"), &[]);
    assert_eq!(snapshot(sentinel), before, "the sentinel changed");
    assert!(out.status.success(), "{}", stderr(&out));
    let got = |p: &str| fs::read_to_string(base.join("out").join(p)).unwrap();
    assert_eq!(got("abs/victim"), format!("path={abs}\n"));
    assert!(got("climb/victim").starts_with("path=/x/..%2F"));
    assert!(got("dots/download").starts_with("path="));
    assert!(got("dotfile/download").starts_with("path="));
    let m = fs::metadata(base.join("out/abs/victim")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o600, 0));
}

as_root_and_rootless!(
    url_names_stay_inside_the_destination_as_root,
    url_names_stay_inside_the_destination_rootless,
    url_names_stay_inside
);

/// A URL whose name holds a control character names nothing in the download's directory,
/// so the build fails as BuildKit's does (`"/a\nb": not found`), writing nothing.
#[test]
fn a_url_name_with_a_control_character_is_not_found() {
    if !busybox_ready() {
        return;
    }
    let srv = echo_server();
    let df = format!("FROM busybox\nADD http://{srv}/x/a%0Ab /d/\n");
    let (tmp, out) = build_local_output(&df, |_| {});
    let err = out.unwrap_err();
    assert!(
        err.contains("not found") || err.contains("no such file"),
        "{err}"
    );
    assert!(!tmp.path().join("out").exists());
}

/// A tar archive of `(name, content)` entries, names written as given.
fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// An index naming one manifest by `digest` (whatever text it is).
fn index_naming(digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": 8,
            "annotations": {"org.opencontainers.image.ref.name": "x"}
        }]
    }))
    .unwrap()
}

/// Whether any blob of the state directory's store holds `data`.
fn stored(state: &Path, data: &[u8]) -> bool {
    state
        .join("store/blobs/sha256")
        .join(sha256_hex(data))
        .exists()
}

/// `image load` of archives whose `manifest.json` paths and `index.json` digests name host
/// files (absolute, climbing) and whose `RepoTags` climb: each is refused or stays a name,
/// no host file is read into the store, none changes.
#[test]
fn archive_names_never_reach_host_files() {
    let tmp = tempfile::tempdir().unwrap();
    let sentinel = tmp.path().join("sentinel");
    make_sentinel(&sentinel, 0);
    let victim = sentinel.join("victim");
    let victim_text = fs::read(&victim).unwrap();
    let climb = format!("{}{}", "../".repeat(16), victim.display());
    let manifest = |config: &str, layer: &str| {
        serde_json::to_vec(&serde_json::json!([{
            "Config": config, "Layers": [layer], "RepoTags": ["../../../../tmp/evil:1"]
        }]))
        .unwrap()
    };
    let abs = victim.display().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "absolute",
            tar_of(&[("manifest.json", &manifest(&abs, &abs))]),
        ),
        (
            "climbing",
            tar_of(&[("manifest.json", &manifest(&climb, &climb))]),
        ),
        (
            "index digest",
            tar_of(&[("index.json", &index_naming(&format!("sha256:{climb}")))]),
        ),
        (
            "index digest as a blob path",
            tar_of(&[(
                "index.json",
                &index_naming("sha256:../../../../../../../../etc/passwd"),
            )]),
        ),
    ];
    let state = tmp.path().join("state");
    let before = snapshot(&sentinel);
    for (name, archive) in cases {
        let file = tmp.path().join(format!("{name}.tar"));
        fs::write(&file, archive).unwrap();
        let out = run(rbuild(&state).args(["image", "load", "-i"]).arg(&file));
        let err = stderr(&out);
        assert!(!out.status.success(), "{name}: loaded:\n{err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(err.contains(&file.display().to_string()), "{name}: {err}");
        assert_eq!(snapshot(&sentinel), before, "{name}: the sentinel changed");
        assert!(
            !stored(&state, &victim_text),
            "{name}: a host file was stored"
        );
    }
    assert!(!Path::new("/tmp/evil").exists());
}

/// An `oci-layout://` context whose `index.json` names a blob by a climbing "digest": the
/// build is refused before any file outside `blobs/` is read.
#[test]
fn a_layout_index_entry_never_names_a_host_file() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    fs::write(
        layout.join("index.json"),
        index_naming("sha256:../../../../../../../../etc/passwd"),
    )
    .unwrap();
    let ctx = context(&tmp.path().join("ctx"), "FROM base\n", &[]);
    let out = run(Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(tmp.path().join("state"))
        .args(["build", "--build-context"])
        .arg(format!("base=oci-layout://{}", layout.display()))
        .arg(&ctx));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("index.json") && err.contains("../../"),
        "{err}"
    );
    assert!(!stored(
        &tmp.path().join("state"),
        &fs::read("/etc/passwd").unwrap()
    ));
}

/// A copy of the busybox layout whose layer blob is replaced by `plant` (given the blob's
/// path); a build from it must fail naming the problem, having stored nothing of it.
fn layout_with_planted_layer(plant: impl FnOnce(&Path), expect: &str) {
    if !busybox_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(repo().join("testdata/images/busybox-amd64"))
            .arg(&layout),
    );
    let read = |d: &str| -> serde_json::Value {
        let hex = d.trim_start_matches("sha256:");
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index = read_index(&layout);
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = layout.join("blobs/sha256").join(&layer[7..]);
    fs::remove_file(&blob).unwrap();
    plant(&blob);
    let ctx = context(&tmp.path().join("ctx"), "FROM base\nRUN true\n", &[]);
    let state = tmp.path().join("state");
    let out = run(rbuild(&state)
        .args(["build", "--build-context"])
        .arg(format!("base=oci-layout://{}", layout.display()))
        .arg(&ctx));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(expect), "{err}");
    assert!(
        !state
            .join("store/blobs")
            .join(layer.replace(':', "/"))
            .exists()
    );
}

fn read_index(layout: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap()
}

/// An endless device, a FIFO or a file longer than its descriptor says, as a layer blob
/// of an `oci-layout://` context: refused before it is read (no disk filled, no hang).
#[test]
fn layout_blobs_that_are_not_what_they_say_are_refused_unread() {
    layout_with_planted_layer(
        |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
        "not a regular file",
    );
    layout_with_planted_layer(
        |p| {
            run_ok(Command::new("mkfifo").arg(p));
        },
        "not a regular file",
    );
    layout_with_planted_layer(|p| fs::write(p, vec![0u8; 4 << 20]).unwrap(), "size");
}

/// Escape sequences and control characters of a Dockerfile's text (in a step's name, in an
/// error quoting it) and of a URL name never reach the terminal. (What a step itself
/// prints is its output, passed through as BuildKit does.)
#[test]
fn dockerfile_text_reaches_the_terminal_without_control_sequences() {
    if !busybox_ready() {
        return;
    }
    let srv = echo_server();
    for df in [
        "FROM busybox\nRUN true # \u{1b}]0;PWNTITLE\u{7} \u{1b}[2J\nRUN exit 3 \u{1b}[31m\u{9b}2J\n"
            .to_string(),
        format!("FROM busybox\nADD http://{srv}/x/a%00b /d/\n"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = context(&tmp.path().join("ctx"), &df, &[]);
        let out = run(&mut build_command(
            &tmp.path().join("state"),
            &ctx,
            "linux/amd64",
            None,
            &["--progress=plain"],
        ));
        assert!(!out.status.success());
        let bad: Vec<&u8> = out
            .stderr
            .iter()
            .filter(|b| matches!(b, 0 | 0x07 | 0x1b))
            .collect();
        assert!(bad.is_empty(), "{:?}", String::from_utf8_lossy(&out.stderr));
        assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{9b}'));
    }
}
