//! Pulling: manifests (bounded, verified), the platform's manifest from an index, and
//! blobs streamed into the store and verified on the way (nothing unverified enters it).

use crate::error::RegistryError;
use crate::manifest::{self, ACCEPT, Descriptor, Document, MAX_MANIFEST};
use crate::session::Session;
use crate::transport::{Host, Scope};
use futures_util::{StreamExt, TryStreamExt};
use rbuild_core::Reference;
use rbuild_core::walk::Budget;
use rbuild_core::{Digest, Platform};
use rbuild_image::{ImageConfig, LayerBlob};
use rbuild_source::ResolvedImage;
use rbuild_store::{Store, StoreError};
use reqwest::header;
use std::io::Write;
use std::sync::Arc;

/// Blobs downloaded at once.
pub const PARALLEL_BLOBS: usize = 4;

/// A manifest or index as the registry served it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The parsed document.
    pub document: Document,
}

/// Fetches the manifest `reference` (a tag or digest) of `repo`. By digest, the bytes must
/// hash to it; by tag, to the `Docker-Content-Digest` the registry sent, if any.
pub async fn fetch_manifest(
    host: &Host,
    repo: &str,
    reference: &str,
    expected: Option<&Digest>,
) -> Result<Fetched, RegistryError> {
    let scope = Scope::pull(repo);
    let url = host.url(&format!("/v2/{repo}/manifests/{reference}"));
    let what = format!("manifest {reference}");
    let resp = host
        .send(&what, &scope, |c| {
            c.get(&url).header(header::ACCEPT, ACCEPT)
        })
        .await?;
    let resp = host.check(&what, &scope, resp).await?;
    let content_type = header_str(&resp, header::CONTENT_TYPE);
    let served_digest = header_str(&resp, "docker-content-digest");
    let name = format!("{}/{repo}:{reference}", host.registry);
    let bytes = crate::read_limited(
        resp,
        MAX_MANIFEST,
        &format!("manifest of {name}"),
        &host.registry,
    )
    .await?;
    let digest = Digest::sha256(&bytes);
    let claimed = match expected {
        Some(d) => Some(d.clone()),
        None => served_digest.parse().ok(),
    };
    if let Some(want) = claimed
        && want != digest
    {
        return Err(RegistryError::DigestMismatch {
            what: format!("manifest of {name}"),
            expected: want,
            found: digest,
        });
    }
    let (media_type, document) = manifest::parse(&bytes, &content_type, &name)?;
    Ok(Fetched {
        bytes,
        media_type,
        digest,
        document,
    })
}

fn header_str(resp: &reqwest::Response, name: impl header::AsHeaderName) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Hears the bytes of a blob download: its digest, bytes so far, bytes in all.
pub type OnBlobBytes<'a> = &'a (dyn Fn(&Digest, u64, u64) + Sync);

/// An [`OnBlobBytes`] that hears nothing.
pub fn no_progress(_: &Digest, _: u64, _: u64) {}

/// Downloads blob `desc` of `repo` into the store unless it is there with the right size.
/// Bytes past the descriptor's size stop the download; a digest mismatch leaves nothing.
/// A body that breaks off is resumed where it stopped (`Range`), or fetched again from the
/// start when the registry answers a range with the whole blob.
pub async fn fetch_blob(
    host: &Host,
    repo: &str,
    desc: &Descriptor,
    store: &Store,
    on_bytes: OnBlobBytes<'_>,
) -> Result<(), RegistryError> {
    if store.blob_size(&desc.digest) == Some(desc.size) {
        return Ok(());
    }
    let attempts = crate::retry::Retry::from_env().attempts;
    let mut partial = Partial {
        writer: store.writer()?,
        written: 0,
    };
    let mut n = 0;
    loop {
        n += 1;
        match fetch_blob_body(host, repo, desc, store, &mut partial, on_bytes).await {
            Err(RegistryError::Http { source, .. })
                if n < attempts && crate::retry::transient(&source) =>
            {
                tracing::info!(
                    "{}: blob {} broke off after {} bytes ({source}), resuming",
                    host.registry,
                    desc.digest,
                    partial.written
                );
                tokio::time::sleep(crate::retry::Retry::from_env().delay(n)).await;
            }
            Err(e) => return Err(e),
            Ok(()) => return commit_blob(host, repo, desc, partial.writer),
        }
    }
}

/// A blob download so far: the store writer and the bytes it holds.
struct Partial {
    writer: rbuild_store::BlobWriter,
    written: u64,
}

/// Fetches the rest of a blob into `partial` (all of it when nothing is there yet).
async fn fetch_blob_body(
    host: &Host,
    repo: &str,
    desc: &Descriptor,
    store: &Store,
    partial: &mut Partial,
    on_bytes: OnBlobBytes<'_>,
) -> Result<(), RegistryError> {
    let scope = Scope::pull(repo);
    let url = host.url(&format!("/v2/{repo}/blobs/{}", desc.digest));
    let what = format!("blob {}", desc.digest);
    let from = partial.written;
    let resp = host
        .send(&what, &scope, |c| {
            let get = c.get(&url);
            if from > 0 {
                get.header(reqwest::header::RANGE, format!("bytes={from}-"))
            } else {
                get
            }
        })
        .await?;
    let resp = host.check(&what, &scope, resp).await?;
    if from > 0 && resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
        // The registry sent the whole blob again: start over.
        *partial = Partial {
            writer: store.writer()?,
            written: 0,
        };
    }
    let size_err = |found| RegistryError::SizeMismatch {
        what: format!("blob {} of {}/{repo}", desc.digest, host.registry),
        expected: desc.size,
        found,
    };
    if let Some(len) = resp.content_length()
        && partial.written + len != desc.size
    {
        return Err(size_err(partial.written + len));
    }
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Http {
            registry: host.registry.clone(),
            what: what.clone(),
            source,
        })?;
        if partial.written + chunk.len() as u64 > desc.size {
            return Err(size_err(partial.written + chunk.len() as u64));
        }
        partial
            .writer
            .write_all(&chunk)
            .map_err(RegistryError::io("write", store.tmp_dir()))?;
        partial.written += chunk.len() as u64;
        on_bytes(&desc.digest, partial.written, desc.size);
    }
    if partial.written != desc.size {
        return Err(size_err(partial.written));
    }
    Ok(())
}

/// Commits a complete download under its digest; a mismatch leaves nothing in the store.
fn commit_blob(
    host: &Host,
    repo: &str,
    desc: &Descriptor,
    writer: rbuild_store::BlobWriter,
) -> Result<(), RegistryError> {
    match writer.commit(Some(&desc.digest)) {
        Ok(_) => Ok(()),
        Err(StoreError::DigestMismatch { expected, found }) => Err(RegistryError::DigestMismatch {
            what: format!("blob of {}/{repo}", host.registry),
            expected,
            found,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Fetches blobs, [`PARALLEL_BLOBS`] at a time.
pub async fn fetch_blobs(
    host: &Host,
    repo: &str,
    descs: &[Descriptor],
    store: &Store,
    on_bytes: OnBlobBytes<'_>,
) -> Result<(), RegistryError> {
    futures_util::stream::iter(
        descs
            .iter()
            .map(|d| fetch_blob(host, repo, d, store, on_bytes)),
    )
    .buffer_unordered(PARALLEL_BLOBS)
    .try_collect::<Vec<()>>()
    .await
    .map(|_| ())
}

/// Stores a fetched manifest's bytes (they hash to its digest by construction).
fn keep(store: &Store, f: &Fetched) -> Result<(), RegistryError> {
    store.put_bytes(&f.bytes)?;
    Ok(())
}

/// The root manifest of `reference`, from the first of its mirrors (then itself) that
/// has it; returns the host it came from.
pub async fn fetch_root(
    session: &Session<'_>,
    reference: &Reference,
) -> Result<(Arc<Host>, Fetched), RegistryError> {
    let mut last = None;
    for registry in session.pull_order(reference.registry()) {
        let attempt = async {
            let host = session.host(&registry, reference.repository()).await?;
            let f = fetch_manifest(
                &host,
                reference.repository(),
                &reference.manifest_reference(),
                reference.digest(),
            )
            .await?;
            Ok::<_, RegistryError>((host, f))
        }
        .await;
        match attempt {
            Ok(found) => return Ok(found),
            Err(e) => {
                if registry != reference.registry() {
                    tracing::warn!("mirror {registry} of {}: {e}", reference.registry());
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::NotFound {
        reference: reference.to_string(),
        what: "manifest".into(),
    }))
}

/// Pulls the image `reference` for `platform`: follows indexes with the variant
/// fallbacks of [`Platform::matches`] (within a walk [`Budget`]), then fetches config and
/// layers into the store.
pub async fn pull_platform(
    session: &Session<'_>,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    on_bytes: OnBlobBytes<'_>,
) -> Result<ResolvedImage, RegistryError> {
    let (host, root) = fetch_root(session, reference).await?;
    let mut budget = Budget::new();
    let mut path = budget.enter(&[], &root.digest)?.unwrap_or_default();
    count(&mut budget, &path, &root)?;
    keep(store, &root)?;
    let repo = reference.repository();
    let mut current = root;
    while let Document::Index(entries) = &current.document {
        let desc = pick_platform(entries, platform, reference)?;
        let Some(next) = budget.enter(&path, &desc.digest)? else {
            return Err(RegistryError::malformed(
                format!("index of {reference}"),
                format!("{} names itself", desc.digest),
            ));
        };
        path = next;
        current = fetch_manifest(&host, repo, &desc.digest.to_string(), Some(&desc.digest)).await?;
        count(&mut budget, &path, &current)?;
        keep(store, &current)?;
    }
    let Document::Manifest { config, layers } = &current.document else {
        unreachable!("the loop leaves only manifests")
    };
    fetch_blob(&host, repo, config, store, &no_progress).await?;
    let config_bytes = store.read_verified(&config.digest)?;
    let image_config = ImageConfig::from_json(&config_bytes)
        .map_err(|e| RegistryError::malformed(format!("image config of {reference}"), e))?;
    if image_config.rootfs.diff_ids.len() != layers.len() {
        return Err(RegistryError::malformed(
            format!("image config of {reference}"),
            format!(
                "{} layers but {} diff_ids",
                layers.len(),
                image_config.rootfs.diff_ids.len()
            ),
        ));
    }
    fetch_blobs(&host, repo, layers, store, on_bytes).await?;
    Ok(resolved(reference, current.digest, image_config, layers))
}

fn resolved(
    reference: &Reference,
    manifest_digest: Digest,
    config: ImageConfig,
    layers: &[Descriptor],
) -> ResolvedImage {
    let blobs = layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(d, diff_id)| LayerBlob {
            digest: d.digest.clone(),
            diff_id: diff_id.clone(),
            size: d.size,
            media_type: d.media_type.clone(),
        })
        .collect();
    let platform = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
    ResolvedImage {
        source: reference.to_string(),
        manifest_digest,
        config,
        layers: blobs,
        platform,
    }
}

/// The index entry for `platform`, or an error listing the platforms the index has.
pub fn pick_platform<'d>(
    entries: &'d [Descriptor],
    platform: &Platform,
    reference: &Reference,
) -> Result<&'d Descriptor, RegistryError> {
    let mut available = Vec::new();
    for d in entries {
        let Some(p) = &d.platform else { continue };
        let candidate = p.platform();
        if platform.matches(&candidate) {
            return Ok(d);
        }
        if !available.contains(&candidate.to_string()) {
            available.push(candidate.to_string());
        }
    }
    Err(RegistryError::NoPlatform {
        image: reference.to_string(),
        platform: platform.clone(),
        available: available.join(", "),
    })
}

/// Counts a fetched document's bytes and descriptors in the walk's budget.
pub(crate) fn count(
    budget: &mut Budget,
    path: &[Digest],
    f: &Fetched,
) -> Result<(), RegistryError> {
    budget.document(path, f.bytes.len() as u64)?;
    let n = match &f.document {
        Document::Index(entries) => entries.len(),
        Document::Manifest { layers, .. } => 1 + layers.len(),
    };
    budget.entries(path, n)?;
    Ok(())
}

/// Pulls every platform of `reference` (root, manifests, configs, layers) into the store;
/// returns the root. One bounded walk: each manifest, index and blob is fetched once.
pub async fn pull_all(
    session: &Session<'_>,
    store: &Store,
    reference: &Reference,
) -> Result<Fetched, RegistryError> {
    let (host, root) = fetch_root(session, reference).await?;
    let mut budget = Budget::new();
    let root_path = budget.enter(&[], &root.digest)?.unwrap_or_default();
    count(&mut budget, &root_path, &root)?;
    keep(store, &root)?;
    let repo = reference.repository();
    let mut todo = vec![(root.clone(), root_path)];
    while let Some((f, path)) = todo.pop() {
        match &f.document {
            Document::Index(entries) => {
                for d in entries {
                    let Some(child_path) = budget.enter(&path, &d.digest)? else {
                        continue;
                    };
                    let child =
                        fetch_manifest(&host, repo, &d.digest.to_string(), Some(&d.digest)).await?;
                    count(&mut budget, &child_path, &child)?;
                    keep(store, &child)?;
                    todo.push((child, child_path));
                }
            }
            Document::Manifest { config, layers } => {
                let all: Vec<Descriptor> = std::iter::once(config)
                    .chain(layers)
                    .filter(|d| budget.mark(&d.digest))
                    .cloned()
                    .collect();
                fetch_blobs(&host, repo, &all, store, &no_progress).await?;
            }
        }
    }
    Ok(root)
}
