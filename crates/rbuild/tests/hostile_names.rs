//! Names from outside are data, never host paths: `ADD <url>` names made of encoded `/`
//! and `..`, as root and as an unprivileged user. A sentinel tree beside the state
//! directory must be exactly what it was after every build.

mod common;
mod sentinel;

use common::*;
use sentinel::{Runner, make_sentinel, snapshot};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

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
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
    let uid = if rootless { ensure_test_user() } else { 0 };
    let sentinel = base.join("sentinel");
    make_sentinel(&sentinel, uid);
    let runner = Runner::new(base, rootless);
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
    let before = snapshot(&sentinel);
    let out = runner.build(&ctx, &base.join("busybox"), &base.join("out"), &[]);
    assert_eq!(snapshot(&sentinel), before, "the sentinel changed");
    assert!(out.status.success(), "{}", stderr(&out));
    let got = |p: &str| fs::read_to_string(base.join("out").join(p)).unwrap();
    assert_eq!(got("abs/victim"), format!("path={abs}\n"));
    assert!(got("climb/victim").starts_with("path=/x/..%2F"));
    assert!(got("dots/download").starts_with("path="));
    assert!(got("dotfile/download").starts_with("path="));
    let m = fs::metadata(base.join("out/abs/victim")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o600, 0));
}

#[test]
fn url_names_stay_inside_the_destination_as_root() {
    if !precondition(is_root(), "runs as root (CI does)") {
        return;
    }
    url_names_stay_inside(false);
}

#[test]
fn url_names_stay_inside_the_destination_rootless() {
    if !precondition(is_root(), "needs root to create its user") {
        return;
    }
    url_names_stay_inside(true);
}

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
