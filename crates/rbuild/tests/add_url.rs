//! `ADD http(s)://URL DEST` and `ADD --checksum=…`, against a small HTTP/1.1 server of the
//! test's own on 127.0.0.1: the file BuildKit's http source makes (named after the URL's
//! last path component, mode 0600, mtime `Last-Modified`, never extracted), checksum
//! pinning, revalidation of a warm rebuild (`If-None-Match` answered 304) and failures.

mod common;

use common::*;
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `Sun, 06 Nov 1994 08:49:37 GMT` in seconds since the epoch.
const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const LAST_MODIFIED_SECS: i64 = 784_111_777;

/// A resource the server has: body, ETag and whether it sends [`LAST_MODIFIED`].
#[derive(Clone)]
struct Resource {
    body: Vec<u8>,
    etag: String,
    dated: bool,
}

/// One request the server saw: path, lower-cased headers, the status it answered.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HashMap<String, String>,
    status: u16,
}

#[derive(Default)]
struct State {
    resources: HashMap<String, Resource>,
    seen: Vec<Seen>,
}

/// The test's HTTP server: `/redirect` answers 302 to `/files/hello.txt`, a known path its
/// resource (304 when `If-None-Match` names its ETag), anything else 404.
struct Server {
    addr: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &shared);
            }
        });
        let s = Server { addr, state };
        s.set("/files/hello.txt", b"hello\n", "\"v1\"");
        s
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, path: &str, body: &[u8], etag: &str) {
        self.put(path, body, etag, true);
    }

    /// A resource served without `Last-Modified`.
    fn set_undated(&self, path: &str, body: &[u8], etag: &str) {
        self.put(path, body, etag, false);
    }

    fn put(&self, path: &str, body: &[u8], etag: &str, dated: bool) {
        let r = Resource {
            body: body.to_vec(),
            etag: etag.to_string(),
            dated,
        };
        self.state
            .lock()
            .unwrap()
            .resources
            .insert(path.to_string(), r);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

/// Answers one request (the connection is closed after it).
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut st = state.lock().unwrap();
    let plain = path.split('?').next().unwrap_or_default();
    let (status, extra, body) = match (plain, st.resources.get(plain)) {
        ("/redirect", _) => (302, "Location: /files/hello.txt\r\n".to_string(), vec![]),
        (_, Some(r)) => {
            let date = if r.dated {
                format!("Last-Modified: {LAST_MODIFIED}\r\n")
            } else {
                String::new()
            };
            let tags = format!("ETag: {}\r\n{date}", r.etag);
            if headers.get("if-none-match") == Some(&r.etag) {
                (304, tags, vec![])
            } else {
                (200, tags, r.body.clone())
            }
        }
        _ => (404, String::new(), b"not here\n".to_vec()),
    };
    st.seen.push(Seen {
        path: path.clone(),
        headers,
        status,
    });
    drop(st);
    let reason = match status {
        200 => "OK",
        302 => "Found",
        304 => "Not Modified",
        _ => "Not Found",
    };
    let mut out = stream;
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = out.write_all(head.as_bytes());
    if status != 304 {
        let _ = out.write_all(&body);
    }
}

/// Builds `dockerfile` with `state` into a `type=local` directory; the directory, or
/// stderr when the build fails. stderr is returned either way.
fn build_local(state: &Path, dir: &Path, dockerfile: &str) -> (Result<PathBuf, String>, String) {
    let ctx = context(&dir.join("ctx"), dockerfile, &[("local.txt", "local\n")]);
    let dest = dir.join("out");
    let _ = fs::remove_dir_all(&dest);
    let out = run(&mut build_command(
        state,
        &ctx,
        "linux/amd64",
        None,
        &[
            "--progress=plain",
            "-o",
            &format!("type=local,dest={}", dest.display()),
        ],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        (Ok(dest), stderr)
    } else {
        (Err(stderr.clone()), stderr)
    }
}

/// Mode bits and mtime of a file.
fn mode_mtime(p: &Path) -> (u32, i64) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.mtime())
}

#[test]
fn a_url_becomes_a_file_named_after_its_path_with_mode_0600_and_last_modified() {
    if !busybox_ready() {
        return;
    }
    let srv = Server::start();
    let tgz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    srv.set("/files/a.tar.gz", &tgz, "\"gz\"");
    let tmp = tempfile::tempdir().unwrap();
    let hello = srv.url("/files/hello.txt");
    let df = format!(
        "FROM busybox\nADD {hello}?q=1 /dl/\nADD {hello} /named\nADD --chmod=755 {hello} /exec/\nADD {} /redir/\nADD {} local.txt /mixed/\n",
        srv.url("/redirect"),
        srv.url("/files/a.tar.gz"),
    );
    let (out, stderr) = build_local(&tmp.path().join("state"), tmp.path(), &df);
    let out = out.unwrap();
    let file = out.join("dl/hello.txt");
    assert_eq!(fs::read(&file).unwrap(), b"hello\n");
    assert_eq!(mode_mtime(&file), (0o600, LAST_MODIFIED_SECS));
    // DEST without a trailing slash (and not a directory) is the file itself.
    assert_eq!(fs::read(out.join("named")).unwrap(), b"hello\n");
    assert_eq!(mode_mtime(&out.join("named")).0, 0o600);
    assert_eq!(mode_mtime(&out.join("exec/hello.txt")).0, 0o755);
    // The name comes from the URL asked for, not from where the redirect led.
    assert_eq!(fs::read(out.join("redir/redirect")).unwrap(), b"hello\n");
    // A remote archive is not extracted; local sources of the same ADD are copied too.
    assert_eq!(fs::read(out.join("mixed/a.tar.gz")).unwrap(), tgz);
    assert_eq!(fs::read(out.join("mixed/local.txt")).unwrap(), b"local\n");
    assert!(
        stderr.contains(&format!("[internal] download {hello}")),
        "{stderr}"
    );
    let seen = srv.seen();
    assert!(
        seen.iter()
            .any(|s| s.path == "/redirect" && s.status == 302),
        "{seen:?}"
    );
}

#[test]
fn a_checksum_pins_the_content() {
    if !busybox_ready() {
        return;
    }
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let hello = srv.url("/files/hello.txt");
    let right = format!("sha256:{}", sha256_hex(b"hello\n"));
    let df = format!("FROM busybox\nADD --checksum={right} {hello} /x/\n");
    let (out, _) = build_local(&state, tmp.path(), &df);
    assert_eq!(
        fs::read(out.unwrap().join("x/hello.txt")).unwrap(),
        b"hello\n"
    );

    let wrong = format!("sha256:{}", sha256_hex(b"something else"));
    let df = format!("FROM busybox\nADD --checksum={wrong} {hello} /y/\n");
    let (out, stderr) = build_local(&state, &tmp.path().join("w"), &df);
    let err = out.unwrap_err();
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(err.contains(&wrong) && err.contains(&right), "{err}");
    assert!(err.contains(&hello), "{err}");
    assert!(!tmp.path().join("w/out").exists(), "{stderr}");
}

#[test]
fn a_warm_rebuild_revalidates_and_a_changed_resource_reruns_the_step() {
    if !busybox_ready() {
        return;
    }
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let hello = srv.url("/files/hello.txt");
    let df = format!("FROM busybox\nADD {hello} /dl/\n");
    let (out, _) = build_local(&state, tmp.path(), &df);
    assert_eq!(
        fs::read(out.unwrap().join("dl/hello.txt")).unwrap(),
        b"hello\n"
    );
    assert_eq!(srv.seen().len(), 1);

    let (out, stderr) = build_local(&state, tmp.path(), &df);
    assert_eq!(
        fs::read(out.unwrap().join("dl/hello.txt")).unwrap(),
        b"hello\n"
    );
    assert_eq!(cached_steps(&stderr).len(), 1, "{stderr}");
    let seen = srv.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[1].headers.get("if-none-match").map(String::as_str),
        Some("\"v1\"")
    );
    assert_eq!(
        seen[1].headers.get("if-modified-since").map(String::as_str),
        Some(LAST_MODIFIED)
    );
    assert_eq!(seen[1].status, 304);

    srv.set("/files/hello.txt", b"hello again\n", "\"v2\"");
    let (out, stderr) = build_local(&state, tmp.path(), &df);
    assert_eq!(
        fs::read(out.unwrap().join("dl/hello.txt")).unwrap(),
        b"hello again\n"
    );
    assert!(cached_steps(&stderr).is_empty(), "{stderr}");
    assert_eq!(srv.seen()[2].status, 200);
}

#[test]
fn a_missing_resource_fails_naming_the_url_and_status() {
    if !busybox_ready() {
        return;
    }
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let missing = srv.url("/nope.txt");
    let df = format!("FROM busybox\nADD {missing} /x/\n");
    let (out, _) = build_local(&tmp.path().join("state"), tmp.path(), &df);
    let err = out.unwrap_err();
    assert!(err.contains(&missing), "{err}");
    assert!(err.contains("404 Not Found"), "{err}");
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn urls_without_a_name_or_a_date_get_buildkits_name_and_the_epoch() {
    // Recorded from BuildKit v0.32 over a server sending no Last-Modified: `__unnamed__`
    // for a URL whose path has no last component, `dir` for `/dir/`, mtime 0, mode 0600.
    if !busybox_ready() {
        return;
    }
    let srv = Server::start();
    srv.set_undated("/", b"root\n", "\"r\"");
    srv.set_undated("/files/dir/", b"dir\n", "\"d\"");
    let tmp = tempfile::tempdir().unwrap();
    let df = format!(
        "FROM busybox\nADD {} /u/\nADD {} /d/\n",
        srv.url("/"),
        srv.url("/files/dir/")
    );
    let (out, stderr) = build_local(&tmp.path().join("state"), tmp.path(), &df);
    let out = out.unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    assert_eq!(fs::read(out.join("u/__unnamed__")).unwrap(), b"root\n");
    assert_eq!(mode_mtime(&out.join("u/__unnamed__")), (0o600, 0));
    assert_eq!(fs::read(out.join("d/dir")).unwrap(), b"dir\n");
    assert_eq!(mode_mtime(&out.join("d/dir")), (0o600, 0));
}
