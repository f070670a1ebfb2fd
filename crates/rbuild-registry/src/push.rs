//! Pushing an image from the store: per target repository, every blob (HEAD first, a
//! cross-repository mount when another repository of the registry has it, else a
//! monolithic or chunked upload), then the manifests, then the index / tags.

use crate::error::RegistryError;
use crate::manifest::{self, Descriptor, Document};
use crate::session::Session;
use crate::transport::{Host, Scope};
pub use crate::transport::{OnUploadBytes, UploadFn};
use futures_util::{StreamExt, TryStreamExt};
use rbuild_core::Digest;
use rbuild_core::Reference;
use rbuild_core::walk::Budget;
use rbuild_store::Store;
use reqwest::{StatusCode, header};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;

/// Blobs uploaded at once.
pub const PARALLEL_UPLOADS: usize = 3;

/// The top of what is pushed: a manifest or an index in the store.
#[derive(Debug, Clone)]
pub struct Root {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Bytes of blob content uploaded.
    pub uploaded_bytes: u64,
    /// Blobs the repository already had.
    pub present: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Manifests and indexes put.
    pub manifests: usize,
}

impl PushReport {
    /// Adds another report's counts.
    pub fn add(&mut self, o: &PushReport) {
        self.uploaded += o.uploaded;
        self.uploaded_bytes += o.uploaded_bytes;
        self.present += o.present;
        self.mounted += o.mounted;
        self.manifests += o.manifests;
    }
}

/// A manifest or index to put: media type, digest, exact bytes.
type Doc = (String, Digest, Vec<u8>);

/// The image's documents from the store, children before the indexes that name them (a
/// registry may refuse an index whose manifests it lacks), the root last, and every blob
/// (configs, layers) they name. One walk within a [`Budget`]: each digest is read once.
fn walk(store: &Store, root: &Root) -> Result<(Vec<Doc>, Vec<Descriptor>), RegistryError> {
    let mut budget = Budget::new();
    let mut found = Found::default();
    let path = budget.enter(&[], &root.digest)?.unwrap_or_default();
    visit(store, &mut budget, &path, &root.media_type, &mut found)?;
    Ok((found.docs, found.blobs))
}

/// What a push walk collects.
#[derive(Default)]
struct Found {
    docs: Vec<Doc>,
    blobs: Vec<Descriptor>,
}

/// Reads the document at the end of `path`, then (depth first) the documents it names;
/// the document itself is added after them. Recursion is bounded by the budget's depth.
fn visit(
    store: &Store,
    budget: &mut Budget,
    path: &[Digest],
    media_type: &str,
    found: &mut Found,
) -> Result<(), RegistryError> {
    let Some(digest) = path.last() else {
        return Ok(());
    };
    let bytes = store.read_document(budget, path)?;
    let (mt, doc) = manifest::parse(&bytes, media_type, &digest.to_string())?;
    match &doc {
        Document::Index(entries) => {
            budget.entries(path, entries.len())?;
            for d in entries {
                if let Some(child) = budget.enter(path, &d.digest)? {
                    visit(store, budget, &child, &d.media_type, found)?;
                }
            }
        }
        Document::Manifest { config, layers } => {
            budget.entries(path, 1 + layers.len())?;
            let new = std::iter::once(config)
                .chain(layers)
                .filter(|b| budget.mark(&b.digest));
            found.blobs.extend(new.cloned());
        }
    }
    found.docs.push((mt, digest.clone(), bytes));
    Ok(())
}

/// Pushes `root` to every target. Tags get the root; with `by_digest` (or a target with a
/// digest) it is put by digest only. Blobs already pushed to one target repository are
/// mounted into the next one on the same registry; `mount_hints` names other
/// repositories that may have them.
pub async fn push(
    session: &Session<'_>,
    store: &Store,
    root: &Root,
    targets: &[Reference],
    by_digest: bool,
    mount_hints: &HashMap<Digest, Reference>,
) -> Result<PushReport, RegistryError> {
    let (docs, blobs) = walk(store, root)?;
    let mut report = PushReport::default();
    let mut hints = mount_hints.clone();
    let mut done_repos: Vec<(String, String)> = Vec::new();
    for target in targets {
        let key = (
            target.registry().to_string(),
            target.repository().to_string(),
        );
        let host = session.host(target.registry(), target.repository()).await?;
        if !done_repos.contains(&key) {
            let r = push_blobs(&host, target, &blobs, store, &hints).await?;
            report.add(&r);
            for (mt, digest, bytes) in &docs[..docs.len() - 1] {
                put_manifest(
                    &host,
                    target.repository(),
                    &digest.to_string(),
                    mt,
                    bytes,
                    digest,
                )
                .await?;
                report.manifests += 1;
            }
            for b in &blobs {
                hints
                    .entry(b.digest.clone())
                    .or_insert_with(|| target.clone());
            }
            done_repos.push(key);
        }
        let (mt, digest, bytes) = &docs[docs.len() - 1];
        let reference = match (by_digest, target.digest(), target.tag()) {
            (false, None, Some(t)) => t.to_string(),
            (false, None, None) => "latest".into(),
            _ => digest.to_string(),
        };
        put_manifest(&host, target.repository(), &reference, mt, bytes, digest).await?;
        report.manifests += 1;
    }
    Ok(report)
}

async fn push_blobs(
    host: &Host,
    target: &Reference,
    blobs: &[Descriptor],
    store: &Store,
    hints: &HashMap<Digest, Reference>,
) -> Result<PushReport, RegistryError> {
    let total = Mutex::new(PushReport::default());
    futures_util::stream::iter(blobs.iter().map(|b| {
        let from = hints
            .get(&b.digest)
            .filter(|h| h.registry() == target.registry() && h.repository() != target.repository())
            .map(|h| h.repository().to_string());
        let total = &total;
        async move {
            let one = push_blob(host, target.repository(), b, store, from, None).await?;
            total.lock().unwrap_or_else(|e| e.into_inner()).add(&one);
            Ok::<(), RegistryError>(())
        }
    }))
    .buffer_unordered(PARALLEL_UPLOADS)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(total.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// One blob: HEAD, then mount from `from`, else upload from the store (fetching it first
/// from `fetch_from` when the store does not have it).
pub async fn push_blob(
    host: &Host,
    repo: &str,
    desc: &Descriptor,
    store: &Store,
    from: Option<String>,
    fetch_from: Option<(&Host, &str)>,
) -> Result<PushReport, RegistryError> {
    if blob_exists(host, repo, &desc.digest).await? {
        return Ok(PushReport {
            present: 1,
            ..PushReport::default()
        });
    }
    let scope = Scope {
        mount_from: from.clone(),
        ..Scope::push(repo)
    };
    let start = match &from {
        Some(src) => format!("/v2/{repo}/blobs/uploads/?mount={}&from={src}", desc.digest),
        None => format!("/v2/{repo}/blobs/uploads/"),
    };
    let url = host.url(&start);
    let what = format!("start upload of {}", desc.digest);
    let resp = host
        .send(&what, &scope, |c| {
            c.post(&url).header(header::CONTENT_LENGTH, "0")
        })
        .await?;
    if resp.status() == StatusCode::CREATED && from.is_some() {
        return Ok(PushReport {
            mounted: 1,
            ..PushReport::default()
        });
    }
    let resp = host.check(&what, &scope, resp).await?;
    let location = location(&resp, &what, &host.registry)?;
    if let Some((src_host, src_repo)) = fetch_from {
        crate::pull::fetch_blob(src_host, src_repo, desc, store, &crate::pull::no_progress).await?;
    }
    upload(host, &scope, &location, desc, store).await?;
    Ok(PushReport {
        uploaded: 1,
        uploaded_bytes: desc.size,
        ..PushReport::default()
    })
}

/// HEAD `/v2/<repo>/blobs/<digest>`.
pub async fn blob_exists(host: &Host, repo: &str, digest: &Digest) -> Result<bool, RegistryError> {
    let scope = Scope::push(repo);
    let url = host.url(&format!("/v2/{repo}/blobs/{digest}"));
    let what = format!("HEAD blob {digest}");
    let resp = host.send(&what, &scope, |c| c.head(&url)).await?;
    match resp.status().as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        _ => host.check(&what, &scope, resp).await.map(|_| false),
    }
}

fn location(resp: &reqwest::Response, what: &str, registry: &str) -> Result<String, RegistryError> {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| {
            RegistryError::malformed(format!("{registry}: {what}"), "no Location in the answer")
        })
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// The chunk size for chunked uploads: `RBUILD_REGISTRY_CHUNK_SIZE` bytes; unset means a
/// monolithic upload, streamed from the store.
fn chunk_size() -> Option<u64> {
    std::env::var("RBUILD_REGISTRY_CHUNK_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n: &u64| *n > 0)
}

async fn upload(
    host: &Host,
    scope: &Scope,
    location: &str,
    desc: &Descriptor,
    store: &Store,
) -> Result<(), RegistryError> {
    let what = format!("upload of {}", desc.digest);
    let path = store.blob_path(&desc.digest);
    let final_location = match chunk_size() {
        Some(n) if desc.size > n => upload_chunks(host, scope, location, desc, store, n).await?,
        _ => location.to_string(),
    };
    let url = host.url(&with_digest(&final_location, &desc.digest));
    let chunked = final_location != location;
    let resp = host
        .send(&what, scope, |c| {
            let rb = c
                .put(&url)
                .header(header::CONTENT_TYPE, "application/octet-stream");
            if chunked {
                return rb.header(header::CONTENT_LENGTH, "0");
            }
            match std::fs::File::open(&path) {
                Ok(f) => rb
                    .header(header::CONTENT_LENGTH, desc.size.to_string())
                    .body(upload_body(f, desc, host.on_upload.clone())),
                // Sent without a body: the registry refuses it and the error names the blob.
                Err(_) => rb,
            }
        })
        .await?;
    host.check(&what, scope, resp).await.map(|_| ())
}

/// The body of a monolithic upload: the stored file, counted on `on_upload` when given.
fn upload_body(
    file: std::fs::File,
    desc: &Descriptor,
    on_upload: Option<OnUploadBytes>,
) -> reqwest::Body {
    let file = tokio::fs::File::from_std(file);
    let Some(on_upload) = on_upload else {
        return reqwest::Body::from(file);
    };
    let (digest, size) = (desc.digest.clone(), desc.size);
    let chunks = futures_util::stream::unfold((file, 0u64), move |(mut file, sent)| {
        let (on_upload, digest) = (on_upload.clone(), digest.clone());
        async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    (on_upload.0)(&digest, sent, size);
                    Some((Ok::<_, std::io::Error>(buf), (file, sent)))
                }
                Err(e) => Some((Err(e), (file, sent))),
            }
        }
    });
    reqwest::Body::wrap_stream(chunks)
}

/// PATCHes the blob in chunks of `n` bytes; returns the Location for the closing PUT.
async fn upload_chunks(
    host: &Host,
    scope: &Scope,
    location: &str,
    desc: &Descriptor,
    store: &Store,
    n: u64,
) -> Result<String, RegistryError> {
    let mut file = store.open_blob(&desc.digest)?;
    let path = store.blob_path(&desc.digest);
    let mut location = location.to_string();
    let mut offset = 0u64;
    while offset < desc.size {
        let len = n.min(desc.size - offset);
        let mut chunk = vec![0u8; len as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut chunk))
            .map_err(RegistryError::io("read", &path))?;
        let url = host.url(&location);
        let what = format!("chunk {offset}-{} of {}", offset + len - 1, desc.digest);
        let resp = host
            .send(&what, scope, |c| {
                c.patch(&url)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(
                        header::CONTENT_RANGE,
                        format!("{offset}-{}", offset + len - 1),
                    )
                    .header(header::CONTENT_LENGTH, len.to_string())
                    .body(chunk.clone())
            })
            .await?;
        let resp = host.check(&what, scope, resp).await?;
        location = self::location(&resp, &what, &host.registry)?;
        offset += len;
    }
    Ok(location)
}

/// PUTs a manifest or index under `reference` (tag or digest) and checks the digest the
/// registry computed.
pub async fn put_manifest(
    host: &Host,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    digest: &Digest,
) -> Result<(), RegistryError> {
    let scope = Scope::push(repo);
    let url = host.url(&format!("/v2/{repo}/manifests/{reference}"));
    let what = format!("put manifest {reference}");
    let resp = host
        .send(&what, &scope, |c| {
            c.put(&url)
                .header(header::CONTENT_TYPE, media_type)
                .body(bytes.to_vec())
        })
        .await?;
    let resp = host.check(&what, &scope, resp).await?;
    let served = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Digest>().ok());
    if let Some(found) = served
        && &found != digest
    {
        return Err(RegistryError::DigestMismatch {
            what: format!(
                "{}/{repo}: manifest as stored by the registry",
                host.registry
            ),
            expected: digest.clone(),
            found,
        });
    }
    Ok(())
}
