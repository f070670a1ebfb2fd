//! The registry client's errors: one type, kept typed up to the CLI.

use rbuild_core::text::sanitize;
use rbuild_core::{Digest, Platform, ReferenceError};
use std::path::PathBuf;

/// Errors of registry operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The reference could not be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The connection failed (after retries).
    #[error("{registry}: {what}: {}", http_text(.source))]
    Http {
        /// The registry.
        registry: String,
        /// The request.
        what: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A request ran out of time (see [`crate::timeouts::Timeouts`]).
    #[error("{registry}: {what}: timed out: {limits}")]
    TimedOut {
        /// The registry.
        registry: String,
        /// The request.
        what: String,
        /// The limits, in words.
        limits: String,
    },
    /// An HTTPS registry handed out a plain-HTTP URL (upload location, token realm).
    #[error(
        "{registry} is reached over HTTPS but sent rbuild to plain HTTP ({url}); refused, so nothing travels unencrypted"
    )]
    Downgrade {
        /// The registry.
        registry: String,
        /// The URL it named (sanitised).
        url: String,
    },
    /// The registry answered with a status rbuild did not expect.
    #[error("{registry}: {what}: {status}{}", if .detail.is_empty() { String::new() } else { format!(" ({})", .detail) })]
    Status {
        /// The registry.
        registry: String,
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error message, if it gave one.
        detail: String,
    },
    /// 401/403: access denied, with where credentials came from and what to do.
    #[error(
        "{registry}: access to repository {repository} denied ({status}{}); {credentials}; run `rbuild login {registry}` with an account that may {action} it",
        if .detail.is_empty() { String::new() } else { format!(": {}", .detail) }
    )]
    Denied {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// 401 or 403.
        status: u16,
        /// What the credentials lookup found ("no credentials found in …" / "used credentials from …").
        credentials: String,
        /// "pull" or "push".
        action: String,
        /// The registry's message.
        detail: String,
    },
    /// Plain HTTP was needed but is not allowed for this registry.
    #[error(
        "{registry} answers only plain HTTP, which rbuild uses only for loopback and insecure registries; allow it with `[registry.\"{registry}\"] insecure = true` in {config}, or the output option registry.insecure=true"
    )]
    InsecureRefused {
        /// The registry.
        registry: String,
        /// The config file to edit.
        config: String,
    },
    /// TLS set-up failed (certificates in certs.d, roots).
    #[error("TLS for {registry}: {detail}")]
    Tls {
        /// The registry.
        registry: String,
        /// What failed.
        detail: String,
    },
    /// The manifest or blob does not exist.
    #[error("{reference}: {what} not found")]
    NotFound {
        /// The image.
        reference: String,
        /// What was asked for.
        what: String,
    },
    /// A Docker schema 1 manifest (deprecated, unsigned content rbuild does not read).
    #[error(
        "{reference} is a Docker schema 1 manifest, which rbuild does not support; push the image again with a current client (schema 2 or OCI)"
    )]
    Schema1 {
        /// The image.
        reference: String,
    },
    /// A manifest of a media type rbuild does not read.
    #[error("{reference}: unsupported manifest media type {:?}", sanitize(.media_type))]
    MediaType {
        /// The image.
        reference: String,
        /// The type.
        media_type: String,
    },
    /// A response is larger than rbuild accepts (manifests, tokens).
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A URL download was answered with a status other than 2xx.
    #[error("downloading {url}: the server answered {status}")]
    UrlStatus {
        /// The URL.
        url: String,
        /// The HTTP status, with its reason.
        status: String,
    },
    /// A URL that cannot be downloaded.
    #[error("cannot download {url:?}: {detail}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// Content does not hash to its digest.
    #[error("{what}: digest mismatch: expected {expected}, got {found}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what came.
        found: Digest,
    },
    /// Content has another length than its descriptor says.
    #[error("{what}: expected {expected} bytes, got {found}")]
    SizeMismatch {
        /// What was fetched.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// What came.
        found: u64,
    },
    /// A manifest, index, config or token response is malformed.
    #[error("{what}: {detail}")]
    Malformed {
        /// Which document.
        what: String,
        /// The parser's message.
        detail: String,
    },
    /// No image for the requested platform in an index.
    #[error("{image} has no image for platform {platform} (it has: {})", sanitize(.available))]
    NoPlatform {
        /// The image.
        image: String,
        /// The platform asked for.
        platform: Platform,
        /// The platforms it has.
        available: String,
    },
    /// A walk over a registry's index graph hit its budget (depth, entries, bytes).
    #[error(transparent)]
    Limit(#[from] rbuild_core::walk::WalkLimit),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// A local file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A credential store or helper failed.
    #[error("credentials for {registry}: {detail}")]
    Credentials {
        /// The registry.
        registry: String,
        /// What failed.
        detail: String,
    },
    /// rbuild's config file is malformed.
    #[error("{path}: {detail}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
}

/// A transport error in words: timeouts say so, whatever phase they hit.
fn http_text(source: &reqwest::Error) -> String {
    if source.is_timeout() {
        return "timed out (see --registry-timeout and --registry-total-timeout)".into();
    }
    sanitize(&source.to_string())
}

impl RegistryError {
    /// An I/O error on `path`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> RegistryError {
        let path = path.into();
        move |source| RegistryError::Io { op, path, source }
    }

    /// A malformed document.
    pub(crate) fn malformed(what: impl Into<String>, detail: impl ToString) -> RegistryError {
        RegistryError::Malformed {
            what: what.into(),
            detail: sanitize(&detail.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_in_messages_is_sanitised() {
        let hostile = "x\u{1b}]0;pwned\u{7}\u{1b}[2J\ry";
        let errors = [
            RegistryError::NoPlatform {
                image: "img".into(),
                platform: Platform::new("linux", "amd64", None),
                available: hostile.into(),
            },
            RegistryError::MediaType {
                reference: "img".into(),
                media_type: hostile.into(),
            },
            RegistryError::malformed("manifest", hostile),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.contains("xy"), "{text}");
            assert!(!text.contains(['\u{1b}', '\u{7}', '\r']), "{text:?}");
        }
    }
}
