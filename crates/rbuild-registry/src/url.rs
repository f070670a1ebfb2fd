//! Downloads of `ADD http(s)://…` sources into the store, on the registry client's HTTP
//! stack (TLS roots and certs.d, timeouts, retries, at most 5 redirects). Plain HTTP is
//! allowed for any host, as BuildKit allows it for ADD. A stored earlier download makes
//! the request conditional, and a 304 keeps it.

use crate::config::Config;
use crate::error::RegistryError;
use crate::retry::Retry;
use futures_util::StreamExt;
use rbuild_source::{UrlFetch, UrlRecord, UrlRequest};
use rbuild_store::{Store, StoreError};
use reqwest::{Response, StatusCode, header};
use std::io::Write;

/// Fetches `req.url` into `store`: the body is streamed into a blob while it is hashed;
/// a status other than 2xx (or 304 to a conditional request) fails naming the URL.
pub async fn fetch(
    config: &Config,
    store: &Store,
    req: &UrlRequest<'_>,
) -> Result<UrlFetch, RegistryError> {
    let host = host_of(req.url)?;
    let verify = config.settings(&host).insecure != Some(true);
    let client = crate::transport::url_client(&host, verify, &config.timeouts)?;
    let resp = Retry::from_env()
        .run(req.url, "GET", || {
            let mut get = client.get(req.url);
            if let Some(known) = req.known {
                if let Some(etag) = &known.etag {
                    get = get.header(header::IF_NONE_MATCH, etag);
                }
                if let Some(lm) = &known.last_modified {
                    get = get.header(header::IF_MODIFIED_SINCE, lm);
                }
            }
            get
        })
        .await?;
    match resp.status() {
        StatusCode::NOT_MODIFIED if req.known.is_some() => Ok(UrlFetch::NotModified),
        s if s.is_success() => save(store, req, resp).await.map(UrlFetch::Stored),
        s => Err(RegistryError::UrlStatus {
            url: req.url.to_string(),
            status: s.to_string(),
        }),
    }
}

/// The `host[:port]` of a URL (the name certs.d and the config know it by).
fn host_of(url: &str) -> Result<String, RegistryError> {
    let bad = |detail: String| RegistryError::BadUrl {
        url: url.to_string(),
        detail,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| bad("it names no host".into()))?;
    Ok(match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// Streams the body into a store blob; checks it against `req.expected` before the blob
/// is committed.
async fn save(
    store: &Store,
    req: &UrlRequest<'_>,
    resp: Response,
) -> Result<UrlRecord, RegistryError> {
    let header_of = |name: header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header_of(header::ETAG);
    let last_modified = header_of(header::LAST_MODIFIED);
    let mut writer = store.writer()?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Http {
            registry: req.url.to_string(),
            what: "GET".into(),
            source,
        })?;
        writer
            .write_all(&chunk)
            .map_err(RegistryError::io("write", store.tmp_dir()))?;
    }
    let (digest, size) = writer.commit(req.expected).map_err(|e| match e {
        StoreError::DigestMismatch { expected, found } => RegistryError::DigestMismatch {
            what: format!("download of {}", req.url),
            expected,
            found,
        },
        e => e.into(),
    })?;
    Ok(UrlRecord {
        url: req.url.to_string(),
        etag,
        last_modified,
        digest,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_keep_their_port() {
        assert_eq!(
            host_of("http://127.0.0.1:8080/x").unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(host_of("https://example.com/x?y").unwrap(), "example.com");
        assert!(host_of("not a url").is_err());
    }
}
