//! A small in-memory registry (the part of the distribution API a push and a pull use) on
//! 127.0.0.1, with a second listener on another port ("elsewhere") that upload `Location`s
//! and blob redirects may point at, and switches for hostile or broken behaviour. Every
//! request is recorded with the listener it reached and its `Authorization` header.

#![allow(dead_code)]

use super::http::{Request, accept};
use crate::common::sha256_hex;
use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which requests need credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auth {
    /// None do.
    #[default]
    None,
    /// Everything on the main listener, `/v2/` included, demands Basic auth.
    Basic,
    /// `/v2/` answers 200 without a challenge; everything else demands Basic auth.
    BasicSilentV2,
}

/// How the registry behaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Who must authenticate.
    pub auth: Auth,
    /// Upload `Location`s point at the other listener (an absolute URL on another port).
    pub uploads_elsewhere: bool,
    /// The other listener answers uploads with a 401 whose Bearer challenge names a token
    /// realm on itself (which hands out a token to anyone).
    pub elsewhere_challenges: bool,
    /// Blob GETs are redirected (307) to the other listener.
    pub blobs_elsewhere: bool,
    /// Starting an upload is answered with this status and body.
    pub upload_error: Option<(u16, Vec<u8>)>,
    /// How long a 401 is held back (lets concurrent unauthenticated requests overlap).
    pub delay_401: Duration,
    /// Requests are read and never answered.
    pub silent: bool,
    /// Manifest GETs send their headers, then one byte every 200 ms.
    pub trickle_manifests: bool,
}

/// One request as the registry saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `METHOD target`.
    pub line: String,
    /// Whether it reached the other listener.
    pub elsewhere: bool,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    blobs: HashMap<String, Vec<u8>>,
    uploads: HashMap<u64, Vec<u8>>,
    manifests: HashMap<String, (String, Vec<u8>)>,
    next_upload: u64,
    held: Vec<TcpStream>,
}

/// A running fake registry (its threads end with the test process).
pub struct FakeRegistry {
    /// The main listener's port.
    pub port: u16,
    /// The other listener's port.
    pub other_port: u16,
    behaviour: Behaviour,
    state: Arc<Mutex<State>>,
}

/// The `Authorization` value the registry accepts: Basic `alice:secret`.
pub fn expected_basic() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:secret")
    )
}

impl FakeRegistry {
    /// Starts both listeners.
    pub fn start(behaviour: Behaviour) -> FakeRegistry {
        let main = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let reg = FakeRegistry {
            port: main.local_addr().unwrap().port(),
            other_port: other.local_addr().unwrap().port(),
            behaviour,
            state: Arc::new(Mutex::new(State::default())),
        };
        for (listener, elsewhere) in [(main, false), (other, true)] {
            let server = reg.handle();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let server = server.clone();
                    std::thread::spawn(move || {
                        let _ = server.serve(conn, elsewhere);
                    });
                }
            });
        }
        reg
    }

    fn handle(&self) -> Arc<Server> {
        Arc::new(Server {
            port: self.port,
            other_port: self.other_port,
            behaviour: self.behaviour.clone(),
            state: self.state.clone(),
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The manifest stored under `repo` and `reference` (tag or digest).
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap();
        st.manifests
            .get(&format!("{repo}:{reference}"))
            .map(|(_, b)| b.clone())
    }

    /// The blobs stored (hex digests), each verified against its digest on upload.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut out: Vec<String> = self.state.lock().unwrap().blobs.keys().cloned().collect();
        out.sort();
        out
    }
}

struct Server {
    port: u16,
    other_port: u16,
    behaviour: Behaviour,
    state: Arc<Mutex<State>>,
}

/// An answer: status, headers, body.
struct Answer(u16, Vec<(String, String)>, Vec<u8>);

impl Answer {
    fn status(code: u16) -> Answer {
        Answer(code, Vec::new(), Vec::new())
    }

    fn with(mut self, k: &str, v: impl Into<String>) -> Answer {
        self.1.push((k.into(), v.into()));
        self
    }

    fn body(mut self, b: Vec<u8>) -> Answer {
        self.2 = b;
        self
    }
}

impl Server {
    fn serve(&self, conn: TcpStream, elsewhere: bool) -> std::io::Result<()> {
        let Some((req, mut client)) = accept(conn)? else {
            return Ok(());
        };
        self.state.lock().unwrap().seen.push(Seen {
            line: format!("{} {}", req.method, req.path),
            elsewhere,
            authorization: req.header("authorization"),
        });
        if self.behaviour.silent {
            self.state.lock().unwrap().held.push(client);
            return Ok(());
        }
        if self.behaviour.trickle_manifests && req.path.contains("/manifests/") {
            return trickle(client);
        }
        let answer = self.answer(&req, elsewhere);
        if answer.0 == 401 {
            std::thread::sleep(self.behaviour.delay_401);
        }
        write_answer(&mut client, &req, &answer)
    }

    fn needs_auth(&self, req: &Request, elsewhere: bool) -> bool {
        let authorised = req.header("authorization") == Some(expected_basic());
        match self.behaviour.auth {
            _ if elsewhere || authorised => false,
            Auth::None => false,
            Auth::Basic => true,
            Auth::BasicSilentV2 => req.path != "/v2/",
        }
    }

    fn answer(&self, req: &Request, elsewhere: bool) -> Answer {
        if self.needs_auth(req, elsewhere) {
            return Answer::status(401)
                .with("WWW-Authenticate", "Basic realm=\"fake\"")
                .with("Content-Type", "application/json")
                .body(
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                        .to_vec(),
                );
        }
        let path = req.path.clone();
        if path == "/v2/" {
            return Answer::status(200).body(b"{}".to_vec());
        }
        if elsewhere && self.behaviour.elsewhere_challenges {
            return self.foreign_challenge(&path);
        }
        if let Some(id) = path.strip_prefix("/upload/") {
            return self.upload(req, id, "elsewhere");
        }
        if let Some(d) = path.strip_prefix("/blobs/") {
            return self.blob(req, d.trim_start_matches("sha256:"));
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return Answer::status(404);
        };
        if let Some((repo, id)) = rest.split_once("/blobs/uploads/") {
            if id.is_empty() {
                return self.start_upload(req, repo, elsewhere);
            }
            return self.upload(req, id, repo);
        }
        if let Some((_, digest)) = rest.split_once("/blobs/") {
            let hex = digest.trim_start_matches("sha256:").to_string();
            if self.behaviour.blobs_elsewhere && req.method == "GET" {
                let to = format!("http://127.0.0.1:{}/blobs/sha256:{hex}", self.other_port);
                return Answer::status(307).with("Location", to);
            }
            return self.blob(req, &hex);
        }
        if let Some((repo, reference)) = rest.split_once("/manifests/") {
            return self.manifest(req, repo, reference);
        }
        Answer::status(404)
    }

    /// The other listener posing as a registry of its own: a Bearer challenge, and a token
    /// realm that gives out tokens.
    fn foreign_challenge(&self, path: &str) -> Answer {
        if path == "/token" {
            return Answer::status(200).body(br#"{"token":"stolen"}"#.to_vec());
        }
        let realm = format!("http://127.0.0.1:{}/token", self.other_port);
        Answer::status(401).with("WWW-Authenticate", format!("Bearer realm=\"{realm}\""))
    }

    fn start_upload(&self, req: &Request, repo: &str, elsewhere: bool) -> Answer {
        if let Some((code, body)) = &self.behaviour.upload_error {
            return Answer::status(*code).body(body.clone());
        }
        let mut st = self.state.lock().unwrap();
        st.next_upload += 1;
        let id = st.next_upload;
        st.uploads.insert(id, Vec::new());
        let _ = req;
        let location = if self.behaviour.uploads_elsewhere || elsewhere {
            format!("http://127.0.0.1:{}/upload/{id}", self.other_port)
        } else {
            format!("/v2/{repo}/blobs/uploads/{id}")
        };
        Answer::status(202).with("Location", location)
    }

    fn upload(&self, req: &Request, id: &str, repo: &str) -> Answer {
        let Ok(id) = id.parse::<u64>() else {
            return Answer::status(404);
        };
        let mut st = self.state.lock().unwrap();
        let Some(data) = st.uploads.get_mut(&id) else {
            return Answer::status(404);
        };
        data.extend_from_slice(&req.body);
        let location = req.path.clone();
        if req.method == "PATCH" {
            return Answer::status(202).with("Location", location);
        }
        let data = st.uploads.remove(&id).unwrap_or_default();
        let want = req.query_value("digest").unwrap_or_default();
        let hex = sha256_hex(&data);
        if want != format!("sha256:{hex}") {
            return Answer::status(400).body(b"digest mismatch".to_vec());
        }
        st.blobs.insert(hex.clone(), data);
        Answer::status(201).with("Location", format!("/v2/{repo}/blobs/sha256:{hex}"))
    }

    fn blob(&self, req: &Request, hex: &str) -> Answer {
        let st = self.state.lock().unwrap();
        let Some(data) = st.blobs.get(hex) else {
            return Answer::status(404);
        };
        let answer = Answer::status(200).with("Docker-Content-Digest", format!("sha256:{hex}"));
        if req.method == "HEAD" {
            return answer.with("Content-Length", data.len().to_string());
        }
        answer.body(data.clone())
    }

    fn manifest(&self, req: &Request, repo: &str, reference: &str) -> Answer {
        let mut st = self.state.lock().unwrap();
        if req.method == "PUT" {
            let digest = format!("sha256:{}", sha256_hex(&req.body));
            let mt = req.header("content-type").unwrap_or_default();
            for r in [reference, digest.as_str()] {
                st.manifests
                    .insert(format!("{repo}:{r}"), (mt.clone(), req.body.clone()));
            }
            return Answer::status(201).with("Docker-Content-Digest", digest);
        }
        let Some((mt, body)) = st.manifests.get(&format!("{repo}:{reference}")) else {
            return Answer::status(404);
        };
        let digest = format!("sha256:{}", sha256_hex(body));
        let answer = Answer::status(200)
            .with("Content-Type", mt.clone())
            .with("Docker-Content-Digest", digest);
        if req.method == "HEAD" {
            return answer.with("Content-Length", body.len().to_string());
        }
        answer.body(body.clone())
    }
}

fn write_answer(client: &mut TcpStream, req: &Request, a: &Answer) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", a.0);
    for (k, v) in &a.1 {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !a.1.iter().any(|(k, _)| k == "Content-Length") {
        head.push_str(&format!("Content-Length: {}\r\n", a.2.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    client.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        client.write_all(&a.2)?;
    }
    client.flush()
}

/// Headers promising 4096 bytes, then one byte every 200 ms until the client goes away.
fn trickle(mut client: TcpStream) -> std::io::Result<()> {
    client.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n",
    )?;
    for _ in 0..4096 {
        client.write_all(b" ")?;
        client.flush()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
