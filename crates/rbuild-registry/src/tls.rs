//! TLS settings per registry: the system's roots plus the CA and client certificates of
//! `certs.d/<host[:port]>/` (`*.crt` are CAs, `*.cert` + `*.key` a client identity), from
//! `/etc/containers/certs.d` and `/etc/docker/certs.d`, or the `:`-separated list in
//! `$RBUILD_CERTS_D`.

use crate::error::RegistryError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The certs.d base directories, in lookup order.
pub fn certs_d_dirs() -> Vec<PathBuf> {
    match std::env::var_os("RBUILD_CERTS_D") {
        Some(v) => std::env::split_paths(&v).collect(),
        None => vec![
            PathBuf::from("/etc/containers/certs.d"),
            PathBuf::from("/etc/docker/certs.d"),
        ],
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's root certificates, loaded once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!("system root certificates: {e}");
        }
        found.certs
    })
}

/// The rustls client configuration for `registry`; `verify = false` accepts any server
/// certificate (insecure registries only).
pub fn client_config(registry: &str, verify: bool) -> Result<ClientConfig, RegistryError> {
    let tls_err = |detail: String| RegistryError::Tls {
        registry: registry.into(),
        detail,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    let builder = if verify {
        let mut roots = RootCertStore::empty();
        let (_, _) = roots.add_parsable_certificates(system_roots().iter().cloned());
        for dir in registry_dirs(registry) {
            for ca in files_with(&dir, "crt") {
                add_ca(&mut roots, &ca).map_err(tls_err)?;
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    };
    let identity = registry_dirs(registry)
        .into_iter()
        .find_map(|d| client_identity(&d).transpose())
        .transpose()
        .map_err(tls_err)?;
    match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls_err(format!("client certificate: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// `<base>/<registry>/` for every certs.d base that has one.
fn registry_dirs(registry: &str) -> Vec<PathBuf> {
    certs_d_dirs()
        .into_iter()
        .map(|b| b.join(registry))
        .filter(|d| d.is_dir())
        .collect()
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

fn add_ca(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let certs = read_certs(path)?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// `X.cert` with its key `X.key`, as Docker pairs them.
fn client_identity(dir: &Path) -> Result<Option<Identity>, String> {
    if let Some(cert) = files_with(dir, "cert").into_iter().next() {
        let key = cert.with_extension("key");
        if !key.is_file() {
            return Err(format!(
                "{}: client certificate without its key {}",
                cert.display(),
                key.display()
            ));
        }
        let certs = read_certs(&cert)?;
        let key =
            PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
        return Ok(Some((certs, key)));
    }
    Ok(None)
}

/// Accepts every server certificate: for registries the user marked insecure.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
