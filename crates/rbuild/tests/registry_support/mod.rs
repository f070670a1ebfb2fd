//! A real distribution registry (`docker-registry`) on 127.0.0.1 for the tests, started
//! with a config file written here, plus a small HTTP proxy in front of it that counts
//! upload bytes and injects faults.

#![allow(dead_code)]

pub mod fake;
pub mod http;
pub mod served;

use http::{Request, accept};

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the registry is set up.
#[derive(Default)]
pub struct Options {
    /// An htpasswd file: Basic auth.
    pub htpasswd: Option<PathBuf>,
    /// Server certificate and key: TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// More config (e.g. [`token_auth_config`]).
    pub extra: String,
}

/// A running `docker-registry`, stopped on drop.
pub struct Registry {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its log (access log included).
    pub log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts a registry; `None` when `docker-registry` is not installed.
    pub fn start(opts: Options) -> Option<Registry> {
        let bin = Path::new("/usr/bin/docker-registry");
        if !bin.exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-secret\n",
            dir.path().join("data").display()
        );
        if let Some((cert, key)) = &opts.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(h) = &opts.htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                h.display()
            ));
        }
        config.push_str(&opts.extra);
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.path().join("registry.log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&cfg)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let reg = Registry {
            port,
            log,
            child,
            _dir: dir,
        };
        reg.wait_ready();
        Some(reg)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "registry did not start: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The registry's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed CA and a server certificate for 127.0.0.1 signed by it (openssl CLI).
pub struct Certs {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
}

/// Makes [`Certs`] in `dir`.
pub fn make_certs(dir: &Path) -> Certs {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=rbuild test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
    Certs {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    }
}

/// Writes an htpasswd file (bcrypt) with one user.
pub fn htpasswd(path: &Path, user: &str, password: &str) {
    let hash = bcrypt::hash_with_result(password, 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(path, format!("{user}:{hash}\n")).unwrap();
}

/// Faults the proxy injects and what it counted.
#[derive(Debug, Default)]
pub struct ProxyState {
    /// Request lines seen.
    pub requests: Vec<String>,
    /// Requests of any kind whose connection is closed before any answer.
    pub drop_any: u32,
    /// Bytes of upload bodies (PATCH/PUT to blobs/uploads).
    pub upload_bytes: u64,
    /// Blob GETs whose connection is closed before any answer.
    pub drop_blob_gets: u32,
    /// Blob GETs whose body is cut off halfway.
    pub truncate_blob_gets: u32,
    /// Manifest GETs answered with 503 (`Retry-After: 1` on the first).
    pub fail_manifests_503: u32,
    /// A blob (hex digest) whose content is changed on the way.
    pub corrupt_blob: Option<String>,
    /// The `Range` headers of blob GETs, in order.
    pub blob_ranges: Vec<String>,
}

/// An HTTP/1.1 proxy on 127.0.0.1 forwarding to a registry, one request per connection.
pub struct Proxy {
    /// Its port.
    pub port: u16,
    /// Faults and counts.
    pub state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts a proxy for the registry at `upstream` (port).
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &st);
                });
            }
        });
        Proxy { port, state, stop }
    }

    /// Runs `f` on the state.
    pub fn with<T>(&self, f: impl FnOnce(&mut ProxyState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, upstream: u16, state: &Mutex<ProxyState>) -> std::io::Result<()> {
    let Some((req, mut client)) = accept(conn)? else {
        return Ok(());
    };
    if take(state, |st| &mut st.drop_any) {
        return client.shutdown(Shutdown::Both);
    }
    let mut parts = req.line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let is_blob_get = method == "GET" && path.contains("/blobs/sha256:");
    let (drop_it, truncate, fail, corrupt) = {
        let mut st = state.lock().unwrap();
        st.requests.push(req.line.clone());
        if is_blob_get {
            let range = req
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("range"));
            st.blob_ranges.extend(range.map(|(_, v)| v.clone()));
        }
        if path.contains("/blobs/uploads/") && (method == "PATCH" || method == "PUT") {
            st.upload_bytes += req.body.len() as u64;
        }
        let drop_it = is_blob_get && st.drop_blob_gets > 0;
        if drop_it {
            st.drop_blob_gets -= 1;
        }
        let truncate = !drop_it && is_blob_get && st.truncate_blob_gets > 0;
        if truncate {
            st.truncate_blob_gets -= 1;
        }
        let fail = method == "GET" && path.contains("/manifests/") && st.fail_manifests_503 > 0;
        let first_fail = fail && st.fail_manifests_503 == 1;
        if fail {
            st.fail_manifests_503 -= 1;
        }
        let corrupt = is_blob_get && st.corrupt_blob.as_deref().is_some_and(|h| path.contains(h));
        (drop_it, truncate, fail.then_some(first_fail), corrupt)
    };
    if drop_it {
        return client.shutdown(Shutdown::Both);
    }
    if let Some(with_retry_after) = fail {
        let extra = if with_retry_after {
            "Retry-After: 1\r\n"
        } else {
            ""
        };
        return client.write_all(
            format!("HTTP/1.1 503 Service Unavailable\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
    }
    let mut response = forward(&req, upstream)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    if corrupt && response.len() > head_end && response.starts_with(b"HTTP/1.1 200") {
        let last = response.len() - 1;
        response[last] ^= 0xff;
    }
    if truncate && response.len() > head_end + 2 {
        let cut = head_end + (response.len() - head_end) / 2;
        client.write_all(&response[..cut])?;
        return client.shutdown(Shutdown::Both);
    }
    client.write_all(&response)
}

/// Decrements the counter `field` picks if it is above zero; whether it was.
fn take(state: &Mutex<ProxyState>, field: impl FnOnce(&mut ProxyState) -> &mut u32) -> bool {
    let mut st = state.lock().unwrap();
    let n = field(&mut st);
    if *n > 0 {
        *n -= 1;
        true
    } else {
        false
    }
}

fn forward(req: &Request, upstream: u16) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut head = format!("{}\r\n", req.line);
    for (k, v) in &req.headers {
        let skip = ["connection", "content-length", "transfer-encoding"];
        if !skip.iter().any(|s| k.eq_ignore_ascii_case(s)) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    let has_body = !req.body.is_empty()
        || ["PUT", "PATCH", "POST"]
            .iter()
            .any(|m| req.line.starts_with(m));
    if has_body {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    let mut out = Vec::new();
    up.read_to_end(&mut out)?;
    Ok(out)
}

/// A token server for the registry's `auth: token` mode: JWTs (RS256, the signing
/// certificate in `x5c`) for the scopes asked, to `user:password` only.
pub struct TokenServer {
    /// Its port.
    pub port: u16,
    /// The query strings of the token requests, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// The signing certificate (the registry's rootcertbundle).
    pub cert: PathBuf,
    _dir: tempfile::TempDir,
}

/// The registry config fragment for token auth against `server`.
pub fn token_auth_config(server: &TokenServer) -> String {
    format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: rbuild-test-registry\n    issuer: rbuild-test-issuer\n    rootcertbundle: {}\n",
        server.port,
        server.cert.display()
    )
}

impl TokenServer {
    /// Starts a token server that accepts `user` / `password`.
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=token signer",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let der = Command::new("openssl")
            .args(["x509", "-in", "cert.pem", "-outform", "DER"])
            .current_dir(dir.path())
            .output()
            .unwrap()
            .stdout;
        use base64::Engine as _;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let (reqs, key) = (requests.clone(), dir.path().join("key.pem"));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = answer_token(conn, &reqs, &expected, &x5c, &key);
            }
        });
        TokenServer {
            port,
            requests,
            cert: dir.path().join("cert.pem"),
            _dir: dir,
        }
    }
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer_token(
    conn: TcpStream,
    reqs: &Mutex<Vec<String>>,
    expected: &str,
    x5c: &str,
    key: &Path,
) -> std::io::Result<()> {
    let Some((req, mut client)) = accept(conn)? else {
        return Ok(());
    };
    let query = req.query.clone();
    reqs.lock().unwrap().push(query.clone());
    let auth = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if auth != format!("Basic {expected}") {
        return client.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let access: Vec<serde_json::Value> = query_values(&query, "scope")
        .iter()
        .filter_map(|s| {
            let mut p = s.splitn(3, ':');
            let (t, n, a) = (p.next()?, p.next()?, p.next()?);
            Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "rbuild-test-issuer", "sub": "alice", "aud": "rbuild-test-registry",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let jwt = sign_jwt(
        &serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]}),
        &claims,
        key,
    );
    let body = serde_json::json!({"token": jwt, "expires_in": 300}).to_string();
    client.write_all(
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
    )
}

fn sign_jwt(header: &serde_json::Value, claims: &serde_json::Value, key: &Path) -> String {
    use base64::Engine as _;
    let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let sig = child.wait_with_output().unwrap().stdout;
    format!("{input}.{}", b64(&sig))
}
