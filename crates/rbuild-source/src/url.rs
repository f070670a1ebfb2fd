//! URL sources (`ADD https://…`): what a download asks for and what it gives, shared by
//! the solver (which remembers validators) and the registry crate (which fetches).

use rbuild_core::Digest;

/// An earlier download of a URL: its validators and the blob it gave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UrlRecord {
    /// The URL.
    pub url: String,
    /// The `ETag` the server sent, if any.
    pub etag: Option<String>,
    /// The `Last-Modified` the server sent, if any.
    pub last_modified: Option<String>,
    /// The content digest (a blob of the store).
    pub digest: Digest,
    /// The content size.
    pub size: u64,
}

/// One download to make.
#[derive(Debug, Clone, Copy)]
pub struct UrlRequest<'a> {
    /// The URL.
    pub url: &'a str,
    /// An earlier download whose blob is still stored: the request is conditional
    /// (`If-None-Match` / `If-Modified-Since`).
    pub known: Option<&'a UrlRecord>,
    /// The digest the content must have (`--checksum`); a mismatch stores nothing.
    pub expected: Option<&'a Digest>,
}

/// What a download gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlFetch {
    /// 304: the known download is current.
    NotModified,
    /// The content, now a blob of the store.
    Stored(UrlRecord),
}
