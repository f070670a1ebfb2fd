//! rbuild's registry client: the OCI distribution API and Docker Registry v2 for pulls
//! and pushes, Bearer/Basic auth with Docker's and podman's credential stores, TLS from
//! certs.d, insecure registries and mirrors from rbuild's config file.
//!
//! The API is blocking: each operation runs on a current-thread tokio runtime of its own
//! and leaves no thread behind (see [`session::block_on`]). Everything fetched is
//! verified against its digest before it enters the store.

pub mod challenge;
pub mod config;
pub mod copy;
pub mod credentials;
mod error;
pub mod login;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod retry;
pub mod session;
pub mod timeouts;
pub mod tls;
pub mod transport;
pub mod url;

pub use config::Config;
pub use credentials::Credential;
pub use error::RegistryError;
pub use pull::Fetched;
pub use push::{PushReport, Root};

use futures_util::StreamExt;
use rbuild_core::{Digest, Platform, Reference};
use rbuild_source::ResolvedImage;
use rbuild_store::Store;
use session::{Session, block_on};
use std::collections::HashMap;

/// Reads a response body whole, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    resp: reqwest::Response,
    limit: u64,
    what: &str,
    registry: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: what.into(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Http {
            registry: registry.into(),
            what: what.into(),
            source,
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The registry client: settings plus blocking operations.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    config: Config,
}

impl Registry {
    /// A client with these settings.
    pub fn new(config: Config) -> Registry {
        Registry { config }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Pulls `reference` for `platform` into `store`.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage, RegistryError> {
        self.pull_reporting(store, reference, platform, &pull::no_progress)
    }

    /// [`Registry::pull`], telling `on_bytes` how far each layer download has come.
    pub fn pull_reporting(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
        on_bytes: pull::OnBlobBytes<'_>,
    ) -> Result<ResolvedImage, RegistryError> {
        let session = Session::new(&self.config, None);
        block_on(pull::pull_platform(
            &session, store, reference, platform, on_bytes,
        ))
    }

    /// Pulls every platform of `reference` into `store`; returns the root document.
    pub fn pull_all(&self, store: &Store, reference: &Reference) -> Result<Fetched, RegistryError> {
        let session = Session::new(&self.config, None);
        block_on(pull::pull_all(&session, store, reference))
    }

    /// The root manifest or index of `reference`, exactly as served.
    pub fn manifest(&self, reference: &Reference) -> Result<Fetched, RegistryError> {
        let session = Session::new(&self.config, None);
        block_on(async { pull::fetch_root(&session, reference).await.map(|(_, f)| f) })
    }

    /// A manifest of `reference`'s repository by digest (e.g. an index entry).
    pub fn manifest_by_digest(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Fetched, RegistryError> {
        self.manifest(&reference.with_digest(digest.clone()))
    }

    /// A small blob (an image config) of `reference`'s repository, verified.
    pub fn small_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Vec<u8>, RegistryError> {
        let session = Session::new(&self.config, None);
        block_on(async {
            let host = session
                .host(reference.registry(), reference.repository())
                .await?;
            let scope = transport::Scope::pull(reference.repository());
            let url = host.url(&format!("/v2/{}/blobs/{digest}", reference.repository()));
            let what = format!("blob {digest}");
            let resp = host.send(&what, &scope, |c| c.get(&url)).await?;
            let resp = host.check(&what, &scope, resp).await?;
            let bytes =
                read_limited(resp, manifest::MAX_MANIFEST, &what, reference.registry()).await?;
            let found = Digest::sha256(&bytes);
            if &found != digest {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: digest.clone(),
                    found,
                });
            }
            Ok(bytes)
        })
    }

    /// Pushes `root` from `store` to every target.
    pub fn push(
        &self,
        store: &Store,
        root: &Root,
        targets: &[Reference],
        by_digest: bool,
        mount_hints: &HashMap<Digest, Reference>,
    ) -> Result<PushReport, RegistryError> {
        self.push_reporting(store, root, targets, by_digest, mount_hints, None)
    }

    /// [`Registry::push`], telling `on_upload` how far each blob upload has come.
    pub fn push_reporting(
        &self,
        store: &Store,
        root: &Root,
        targets: &[Reference],
        by_digest: bool,
        mount_hints: &HashMap<Digest, Reference>,
        on_upload: Option<push::OnUploadBytes>,
    ) -> Result<PushReport, RegistryError> {
        let mut session = Session::new(&self.config, None);
        if let Some(f) = on_upload {
            session = session.with_upload_progress(f);
        }
        block_on(push::push(
            &session,
            store,
            root,
            targets,
            by_digest,
            mount_hints,
        ))
    }

    /// Puts `index` (bytes of an OCI index) under every target, first copying each
    /// `(source, descriptor)` manifest into the target's repository (blobs mounted within a
    /// registry, downloaded through `store` across registries).
    pub fn put_index(
        &self,
        store: &Store,
        sources: &[(Reference, manifest::Descriptor)],
        index: &[u8],
        targets: &[Reference],
    ) -> Result<PushReport, RegistryError> {
        let session = Session::new(&self.config, None);
        block_on(async {
            let mut report = PushReport::default();
            let digest = Digest::sha256(index);
            for t in targets {
                for (src, desc) in sources {
                    report.add(&copy::copy_manifest(&session, store, src, desc, t).await?);
                }
                let host = session.host(t.registry(), t.repository()).await?;
                let reference = t.tag().map_or_else(|| digest.to_string(), str::to_string);
                push::put_manifest(
                    &host,
                    t.repository(),
                    &reference,
                    rbuild_core::media_type::OCI_INDEX,
                    index,
                    &digest,
                )
                .await?;
                report.manifests += 1;
            }
            Ok(report)
        })
    }

    /// Downloads an `ADD` URL into `store` (see [`url::fetch`]).
    pub fn fetch_url(
        &self,
        store: &Store,
        req: &rbuild_source::UrlRequest<'_>,
    ) -> Result<rbuild_source::UrlFetch, RegistryError> {
        block_on(url::fetch(&self.config, store, req))
    }

    /// Checks `credential` against `registry` (what `rbuild login` does before saving).
    pub fn verify_login(
        &self,
        registry: &str,
        credential: &Credential,
    ) -> Result<(), RegistryError> {
        let session = Session::new(
            &self.config,
            Some((registry.to_string(), credential.clone())),
        );
        block_on(async {
            let host = session.host(registry, "").await?;
            host.verify_login().await
        })
    }
}
