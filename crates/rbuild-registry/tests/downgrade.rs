//! An HTTPS registry (a TLS server on 127.0.0.1, unverified as an `insecure` registry)
//! that points the client at plain HTTP, by a redirect or by a token realm: refused, and
//! the plain-HTTP listener never hears from the client.

use rbuild_core::{Digest, Reference};
use rbuild_registry::{Config, Registry, RegistryError};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A self-signed certificate and its key for 127.0.0.1 (openssl CLI).
fn certificate(dir: &Path) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = CertificateDer::from_pem_file(dir.join("cert.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap()
}

/// A plain-HTTP listener counting its connections.
fn plain_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (port, count)
}

/// A TLS server answering every request with `answer(path)`.
fn tls_server(dir: &Path, answer: impl Fn(&str) -> String + Send + Sync + 'static) -> u16 {
    let config = Arc::new(certificate(dir));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(&mut tls);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            let _ = tls.write_all(answer(&path).as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

fn response(status: &str, headers: &str) -> String {
    format!("HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n")
}

/// Fetches a blob of `127.0.0.1:port/a/b` as an insecure (unverified TLS) registry; the
/// error that must come.
fn fetch_blob_error(port: u16) -> RegistryError {
    let registry = format!("127.0.0.1:{port}");
    let mut config = Config::default();
    config.allow_insecure(&registry);
    let reference: Reference = format!("{registry}/a/b:v1").parse().unwrap();
    let digest = Digest::sha256(b"blob");
    Registry::new(config)
        .small_blob(&reference, &digest)
        .expect_err("the plain-HTTP detour is refused")
}

#[test]
fn a_redirect_from_https_to_plain_http_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, heard) = plain_listener();
    let port = tls_server(dir.path(), move |path| {
        if path == "/v2/" {
            return response("200 OK", "");
        }
        response(
            "307 Temporary Redirect",
            &format!("Location: http://127.0.0.1:{plain}/blob\r\n"),
        )
    });
    let err = fetch_blob_error(port);
    let text = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(text.contains("plain HTTP"), "{text}");
    assert_eq!(
        heard.load(Ordering::SeqCst),
        0,
        "nothing went to plain HTTP"
    );
}

#[test]
fn a_plain_http_token_realm_of_an_https_registry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, heard) = plain_listener();
    let port = tls_server(dir.path(), move |_| {
        response(
            "401 Unauthorized",
            &format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{plain}/token\"\r\n"),
        )
    });
    let err = fetch_blob_error(port);
    assert!(matches!(err, RegistryError::Downgrade { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("http://127.0.0.1:{plain}/token"))
    );
    assert_eq!(
        heard.load(Ordering::SeqCst),
        0,
        "nothing went to plain HTTP"
    );
}
