//! Where base images and named contexts come from: the `--build-context` map and the
//! build context directory. Resolved images are memoised per (reference, platform).

use rbuild_core::{Digest, Platform};
use rbuild_graph::BaseResolver;
use rbuild_image::ImageConfig;
use rbuild_registry::RegistryError;
use rbuild_source::{NamedContext, ResolvedImage, UrlFetch, UrlRecord, UrlRequest};
use rbuild_store::Store;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One memoised content hash, filled by the first worker that asks for it.
type ContentHash = std::sync::Arc<Mutex<Option<Digest>>>;

/// Pulls the base images no named context or local image provides (a registry client);
/// its errors reach the CLI as they are.
pub trait RemoteImages: Send + Sync {
    /// The image `reference` for `platform`, its blobs put in `store`.
    fn pull(
        &self,
        reference: &str,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, Box<RegistryError>>;
}

/// Downloads `ADD` URLs into the store (the registry crate's HTTP client); its errors reach
/// the CLI as they are.
pub trait UrlDownloads: Send + Sync {
    /// Downloads (or revalidates) what `req` asks for.
    fn fetch(&self, req: &UrlRequest, store: &Store) -> Result<UrlFetch, Box<RegistryError>>;
}

/// One memoised URL download, filled by the first worker that asks for it.
type UrlMemo = std::sync::Arc<Mutex<Option<UrlRecord>>>;

/// Where `FROM` images that no `--build-context` binds come from: the local image
/// store, later a registry.
pub trait ImageSource: Send + Sync + std::fmt::Debug {
    /// The image `reference` for `platform`, its blobs in `store`; `Ok(None)` when this
    /// source does not have it.
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
        store: &Store,
    ) -> Result<Option<ResolvedImage>, Box<dyn std::error::Error + Send + Sync>>;
}

/// Why an image reference could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The layout named for it could not be read.
    #[error(transparent)]
    Source(#[from] rbuild_source::SourceError),
    /// It names a directory context.
    #[error(
        "{reference:?} names the directory build context {}, which cannot be a base image",
        dir.display()
    )]
    DirectoryContext {
        /// The reference.
        reference: String,
        /// The directory.
        dir: PathBuf,
    },
    /// Its registry could not provide it.
    #[error("{}", not_pulled(.reference, .platform, .named, .source))]
    Registry {
        /// The reference.
        reference: String,
        /// The platform asked for (as written, to keep the error small).
        platform: String,
        /// The named contexts the build was given.
        named: Vec<String>,
        /// What the registry answered.
        #[source]
        source: Box<RegistryError>,
    },
    /// The local image store failed to read it.
    #[error("{reference:?} from the local image store: {source}")]
    ImageStore {
        /// The reference.
        reference: String,
        /// What went wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Nothing provides it.
    #[error("{}", not_found(.reference, .platform, .named, *.searched_store))]
    NotFound {
        /// The reference.
        reference: String,
        /// The platform asked for.
        platform: Platform,
        /// The named contexts the build was given.
        named: Vec<String>,
        /// Whether the local image store was searched too.
        searched_store: bool,
    },
}

/// The build's inputs outside the Dockerfile.
pub struct Sources {
    context: PathBuf,
    named: BTreeMap<String, NamedContext>,
    resolved: Mutex<HashMap<(String, Platform), ResolvedImage>>,
    images: Option<Box<dyn ImageSource>>,
    remote: Option<Box<dyn RemoteImages>>,
    hashes: Mutex<HashMap<(PathBuf, Vec<PathBuf>), ContentHash>>,
    fetcher: Option<Box<dyn UrlDownloads>>,
    urls: Mutex<HashMap<String, UrlMemo>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("context", &self.context)
            .field("named", &self.named)
            .field("images", &self.images)
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

impl Sources {
    /// Sources for a build whose context directory is `context`.
    pub fn new(context: PathBuf, named: BTreeMap<String, NamedContext>) -> Sources {
        Sources {
            context,
            named,
            resolved: Mutex::new(HashMap::new()),
            images: None,
            remote: None,
            hashes: Mutex::new(HashMap::new()),
            fetcher: None,
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// The same sources, downloading `ADD` URLs through `fetcher`.
    pub fn with_url_fetcher(mut self, fetcher: Box<dyn UrlDownloads>) -> Sources {
        self.fetcher = Some(fetcher);
        self
    }

    /// Downloads through the URL fetcher; `None` when the build has none.
    pub(crate) fn fetch_url(
        &self,
        req: &UrlRequest,
        store: &Store,
    ) -> Option<Result<UrlFetch, Box<RegistryError>>> {
        self.fetcher.as_ref().map(|f| f.fetch(req, store))
    }

    /// The download of `url` made in this build, resolving it with `resolve` on first
    /// use (the other platforms' workers wait for it rather than download it again).
    pub(crate) fn url<E>(
        &self,
        url: &str,
        resolve: impl FnOnce() -> Result<UrlRecord, E>,
    ) -> Result<UrlRecord, E> {
        let cell = {
            let mut memo = self.urls.lock().unwrap_or_else(|e| e.into_inner());
            memo.entry(url.to_string()).or_default().clone()
        };
        let mut slot = cell.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let record = resolve()?;
        *slot = Some(record.clone());
        Ok(record)
    }

    /// The same sources, looking up images no build context binds in `images`.
    pub fn with_images(mut self, images: Box<dyn ImageSource>) -> Sources {
        self.images = Some(images);
        self
    }

    /// Resolves references no named context or local image provides through `remote`
    /// (a registry).
    pub fn with_remote(mut self, remote: Box<dyn RemoteImages>) -> Sources {
        self.remote = Some(remote);
        self
    }

    /// Every base image resolved so far: reference, platform, manifest digest.
    pub fn resolved_bases(&self) -> Vec<(String, Platform, rbuild_core::Digest)> {
        let mut out: Vec<_> = self
            .memo()
            .iter()
            .map(|((r, p), img)| (r.clone(), p.clone(), img.manifest_digest.clone()))
            .collect();
        out.sort();
        out
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Platform), ResolvedImage>> {
        // A panic while holding the lock cannot leave the map inconsistent (plain inserts).
        self.resolved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The build context directory.
    pub fn context(&self) -> &Path {
        &self.context
    }

    /// The content hash of the named paths below a context directory `dir`, memoised for
    /// the build (context directories do not change while it runs).
    pub(crate) fn content_hash(&self, dir: &Path, rels: &[PathBuf]) -> std::io::Result<Digest> {
        let key = (dir.to_path_buf(), rels.to_vec());
        let cell = {
            let mut memo = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
            memo.entry(key).or_default().clone()
        };
        // Held while hashing: the other platforms' workers asking for the same paths wait
        // for this result instead of hashing the same files at the same time.
        let mut slot = cell.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let digest = crate::cache::hash_paths(dir, rels)?;
        *slot = Some(digest.clone());
        Ok(digest)
    }

    /// The named context a reference stands for, trying the forms users write
    /// (`busybox`, `busybox:latest`, `docker.io/library/busybox`).
    pub fn named(&self, reference: &str) -> Option<&NamedContext> {
        candidates(reference)
            .iter()
            .find_map(|c| self.named.get(c.as_str()))
    }

    /// Resolves an image reference for a platform (memoised), with its blobs imported.
    pub fn image(
        &self,
        reference: &str,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, ResolveError> {
        let key = (reference.to_string(), platform.clone());
        if let Some(r) = self.memo().get(&key) {
            return Ok(r.clone());
        }
        let resolved = match self.named(reference) {
            Some(NamedContext::OciLayout { path, reference: r }) => {
                rbuild_source::resolve_layout(path, r, platform, store)?
            }
            Some(NamedContext::Dir(p)) => {
                return Err(ResolveError::DirectoryContext {
                    reference: reference.to_string(),
                    dir: p.clone(),
                });
            }
            None => match self.local_image(reference, platform, store)? {
                Some(r) => r,
                None => match &self.remote {
                    Some(remote) => remote.pull(reference, platform, store).map_err(|source| {
                        ResolveError::Registry {
                            reference: reference.to_string(),
                            platform: platform.to_string(),
                            named: self.named.keys().cloned().collect(),
                            source,
                        }
                    })?,
                    None => return Err(self.not_found(reference, platform)),
                },
            },
        };
        self.memo().insert(key, resolved.clone());
        Ok(resolved)
    }

    /// The image from the local image store, when one is attached and has it.
    fn local_image(
        &self,
        reference: &str,
        platform: &Platform,
        store: &Store,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        let Some(images) = &self.images else {
            return Ok(None);
        };
        images
            .resolve(reference, platform, store)
            .map_err(|source| ResolveError::ImageStore {
                reference: reference.to_string(),
                source,
            })
    }

    fn not_found(&self, reference: &str, platform: &Platform) -> ResolveError {
        ResolveError::NotFound {
            reference: reference.to_string(),
            platform: platform.clone(),
            named: self.named.keys().cloned().collect(),
            searched_store: self.images.is_some(),
        }
    }

    /// A `BaseResolver` for lowering that imports what it resolves into `store`.
    pub fn resolver<'a>(&'a self, store: &'a Store) -> impl BaseResolver + 'a {
        StoreResolver {
            sources: self,
            store,
        }
    }
}

struct StoreResolver<'a> {
    sources: &'a Sources,
    store: &'a Store,
}

impl BaseResolver for StoreResolver<'_> {
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, rbuild_graph::ResolveFailure> {
        self.sources
            .image(reference, platform, self.store)
            .map(|r| r.config)
            .map_err(Into::into)
    }
}

/// The message of [`ResolveError::NotFound`]: where rbuild looked and how to provide it.
/// Why a base image is missing when its registry failed: where rbuild looked, the
/// registry's answer, what to do.
fn not_pulled(reference: &str, platform: &str, named: &[String], source: &RegistryError) -> String {
    format!(
        "base image {reference:?} for {platform} was not found. rbuild looked in:\n  \
         - build contexts (--build-context NAME=oci-layout://PATH): {}\n  \
         - registries: {}\n\
         Provide it with --build-context {}=oci-layout://PATH[:TAG], or make the registry reachable",
        if named.is_empty() {
            "none given".to_string()
        } else {
            named.join(", ")
        },
        rbuild_core::text::error_chain(source),
        reference.split('@').next().unwrap_or(reference)
    )
}

fn not_found(reference: &str, platform: &Platform, named: &[String], store: bool) -> String {
    format!(
        "base image {reference:?} for {platform} was not found. rbuild looked in:\n  \
         - build contexts (--build-context NAME=oci-layout://PATH): {}\n  \
         - earlier stages of this Dockerfile named {reference:?}: none\n  \
         {}\
         - registries: not contacted (this build uses only local sources)\n\
         Provide it with --build-context {}=oci-layout://PATH[:TAG]",
        if named.is_empty() {
            "none given".to_string()
        } else {
            named.join(", ")
        },
        if store {
            "- the local image store (rbuild images): not there\n  "
        } else {
            ""
        },
        reference.split(['@']).next().unwrap_or(reference),
    )
}

fn candidates(reference: &str) -> Vec<String> {
    let mut out = vec![reference.to_string()];
    let short = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    out.push(short.to_string());
    for r in [reference, short] {
        if let Some(base) = r.strip_suffix(":latest") {
            out.push(base.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_forms_find_named_contexts() {
        let mut named = BTreeMap::new();
        named.insert("busybox".to_string(), NamedContext::Dir("/x".into()));
        let s = Sources::new(".".into(), named);
        assert!(s.named("busybox").is_some());
        assert!(s.named("busybox:latest").is_some());
        assert!(s.named("docker.io/library/busybox:latest").is_some());
        assert!(s.named("alpine").is_none());
        assert!(s.named("busybox:1.36").is_none());
    }
}
