//! Where base images and named contexts come from: the `--build-context` map and the
//! build context directory. Resolved images are memoised per (reference, platform).

use rbuild_core::Platform;
use rbuild_graph::BaseResolver;
use rbuild_image::ImageConfig;
use rbuild_source::{NamedContext, ResolvedImage};
use rbuild_store::Store;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Resolves an image reference no named context provides (a registry pull).
pub type RemoteResolver =
    dyn Fn(&str, &Platform, &Store) -> Result<ResolvedImage, String> + Send + Sync;

/// The build's inputs outside the Dockerfile.
pub struct Sources {
    context: PathBuf,
    named: BTreeMap<String, NamedContext>,
    resolved: Mutex<HashMap<(String, Platform), ResolvedImage>>,
    remote: Option<Box<RemoteResolver>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("context", &self.context)
            .field("named", &self.named)
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
            remote: None,
        }
    }

    /// Resolves references no named context provides through `remote` (a registry).
    pub fn with_remote(mut self, remote: Box<RemoteResolver>) -> Sources {
        self.remote = Some(remote);
        self
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Platform), ResolvedImage>> {
        // A panic while holding the lock cannot leave the map inconsistent (plain inserts).
        self.resolved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The build context directory.
    pub fn context(&self) -> &Path {
        &self.context
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
    ) -> Result<ResolvedImage, String> {
        let key = (reference.to_string(), platform.clone());
        if let Some(r) = self.memo().get(&key) {
            return Ok(r.clone());
        }
        let resolved = match self.named(reference) {
            Some(NamedContext::OciLayout { path, reference: r }) => {
                rbuild_source::resolve_layout(path, r, platform, store)
                    .map_err(|e| e.to_string())?
            }
            Some(NamedContext::Dir(p)) => {
                return Err(format!(
                    "{reference:?} names the directory build context {}, which cannot be a base image",
                    p.display()
                ));
            }
            None => match &self.remote {
                Some(remote) => remote(reference, platform, store)?,
                None => return Err(self.not_found(reference, platform)),
            },
        };
        if !platform.matches(&resolved.platform) {
            tracing::warn!(
                "base image {reference} is {} but {platform} was requested",
                resolved.platform
            );
        }
        self.memo().insert(key, resolved.clone());
        Ok(resolved)
    }

    fn not_found(&self, reference: &str, platform: &Platform) -> String {
        let names: Vec<&str> = self.named.keys().map(String::as_str).collect();
        format!(
            "base image {reference:?} for {platform} was not found. rbuild looked in:\n  \
             - build contexts (--build-context NAME=oci-layout://PATH): {}\n  \
             - earlier stages of this Dockerfile named {reference:?}: none\n  \
             - registries: not contacted (this build uses only local sources)\n\
             Provide it with --build-context {}=oci-layout://PATH[:TAG]",
            if names.is_empty() {
                "none given".to_string()
            } else {
                names.join(", ")
            },
            reference.split(['@']).next().unwrap_or(reference),
        )
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
    fn resolve(&mut self, reference: &str, platform: &Platform) -> Result<ImageConfig, String> {
        self.sources
            .image(reference, platform, self.store)
            .map(|r| r.config)
    }
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
