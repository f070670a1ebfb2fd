//! A registry of fixed content on 127.0.0.1 (plain HTTP, one request per connection): it
//! serves the manifests and blobs a test gives it, counts every GET by path, and answers
//! 404 once it has answered `max_gets` GETs, so a client that multiplies requests fails
//! fast instead of running on.

use super::http::accept;
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the registry serves and what it saw.
#[derive(Default)]
pub struct Content {
    /// Manifests by digest or tag: media type and bytes.
    pub manifests: BTreeMap<String, (String, Vec<u8>)>,
    /// Blobs by digest.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// GETs answered per path.
    pub gets: BTreeMap<String, u32>,
    /// GETs answered in all.
    pub total_gets: u32,
    /// GETs after which every GET is answered 404.
    pub max_gets: u32,
}

/// A running registry of fixed content.
pub struct ServedRegistry {
    /// Its port.
    pub port: u16,
    /// Its content and counts.
    pub content: Arc<Mutex<Content>>,
}

impl ServedRegistry {
    /// Starts serving `content`.
    pub fn start(content: Content) -> ServedRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let content = Arc::new(Mutex::new(content));
        let shared = content.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = answer(conn, &shared);
            }
        });
        ServedRegistry { port, content }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// GETs per path so far.
    pub fn gets(&self) -> BTreeMap<String, u32> {
        self.content.lock().unwrap().gets.clone()
    }
}

fn answer(conn: TcpStream, content: &Mutex<Content>) -> std::io::Result<()> {
    let Some((req, mut client)) = accept(conn)? else {
        return Ok(());
    };
    let (method, path) = (
        req.method.as_str(),
        req.line.split(' ').nth(1).unwrap_or(""),
    );
    let (status, headers, body) = respond(method, path, &mut content.lock().unwrap());
    let head = format!(
        "HTTP/1.1 {status}\r\n{headers}Docker-Distribution-API-Version: registry/2.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes())?;
    if method != "HEAD" {
        client.write_all(&body)?;
    }
    Ok(())
}

fn respond(method: &str, path: &str, c: &mut Content) -> (&'static str, String, Vec<u8>) {
    const NOT_FOUND: &str = "404 Not Found";
    if method == "GET" {
        *c.gets.entry(path.to_string()).or_default() += 1;
        c.total_gets += 1;
        if c.total_gets > c.max_gets {
            return (NOT_FOUND, String::new(), Vec::new());
        }
    }
    if path == "/v2/" {
        return ("200 OK", String::new(), b"{}".to_vec());
    }
    if let Some((_, reference)) = path.split_once("/manifests/") {
        return match c.manifests.get(reference) {
            Some((mt, data)) => {
                let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)));
                let headers = format!("Content-Type: {mt}\r\nDocker-Content-Digest: {digest}\r\n");
                ("200 OK", headers, data.clone())
            }
            None => (NOT_FOUND, String::new(), Vec::new()),
        };
    }
    if let Some((_, digest)) = path.split_once("/blobs/")
        && let Some(data) = c.blobs.get(digest)
    {
        return ("200 OK", String::new(), data.clone());
    }
    (NOT_FOUND, String::new(), Vec::new())
}
