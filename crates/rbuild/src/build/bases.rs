//! `FROM` images from the local image store, with `--pull` and the lock file
//! (`<Dockerfile>.lock`: every base reference → index digest and per-platform manifest
//! digest). `--build-context` bindings come first and are not handled here.

use anyhow::{Context, Result};
use rbuild_core::{Digest, Platform, Reference};
use rbuild_images::{ImageStore, Target};
use rbuild_source::ResolvedImage;
use rbuild_store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `--pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// Use the store; pull what it lacks.
    Missing,
    /// Always ask the registry.
    Always,
    /// Only the store.
    Never,
}

impl Pull {
    /// The policy `--pull=VALUE` names.
    pub fn parse(value: &str) -> Pull {
        match value {
            "always" => Pull::Always,
            "never" => Pull::Never,
            _ => Pull::Missing,
        }
    }
}

/// One pinned reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The digest the reference resolved to (an index for multi-platform images).
    pub digest: Option<Digest>,
    /// Per platform, the manifest used.
    pub platforms: BTreeMap<String, Digest>,
}

/// The lock file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Format version (1).
    pub version: u32,
    /// Reference as the FROM line gives it (after ARG expansion) → what it resolved to.
    pub images: BTreeMap<String, Pin>,
}

/// The lock file of a Dockerfile: `<Dockerfile>.lock` beside it.
pub fn lock_path(dockerfile: &Path) -> PathBuf {
    let mut name = dockerfile
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "Dockerfile".into());
    name.push(".lock");
    dockerfile.with_file_name(name)
}

/// Reads a lock file; `None` when it does not exist.
pub fn read_lock(path: &Path) -> Result<Option<LockFile>> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(
            serde_json::from_slice(&data).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a lock file beside and renames it into place.
pub fn write_lock(path: &Path, lock: &LockFile) -> Result<()> {
    let tmp = rbuild_export::temp_file_beside(path)?;
    let mut data = serde_json::to_vec_pretty(lock)?;
    data.push(b'\n');
    std::fs::write(tmp.path(), data).with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The store as a source of `FROM` images, recording what it resolved.
#[derive(Debug)]
pub struct StoreSource {
    images: ImageStore,
    pull: Pull,
    lock: Option<(PathBuf, LockFile)>,
    locked: bool,
    resolved: Mutex<BTreeMap<String, Pin>>,
}

impl StoreSource {
    /// A source over `images` with the build's pull policy and lock file (`locked`:
    /// refuse what the lock does not pin).
    pub fn new(
        images: ImageStore,
        pull: Pull,
        lock: Option<(PathBuf, LockFile)>,
        locked: bool,
    ) -> StoreSource {
        StoreSource {
            images,
            pull,
            lock,
            locked,
            resolved: Mutex::new(BTreeMap::new()),
        }
    }

    /// What the build resolved through the store, as a lock file.
    pub fn resolved(&self) -> LockFile {
        LockFile {
            version: 1,
            images: self.resolved.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }

    fn pin(&self, reference: &str) -> Option<&Pin> {
        self.lock
            .as_ref()
            .and_then(|(_, l)| l.images.get(reference))
    }

    /// The stored image `reference` names (pinned digest first), or why there is none.
    fn target(&self, reference: &str, name: &Reference) -> Result<Option<Target>, String> {
        if let Some(digest) = self.pin(reference).and_then(|p| p.digest.as_ref()) {
            let lock = self.lock.as_ref().map(|(p, _)| p.display().to_string());
            return self.images.target_of_digest(digest).map(Some).map_err(|e| {
                format!(
                    "{reference} is pinned to {digest} by {}, which the local image store lacks ({e}); load it (rbuild image load) or re-pin with --lock",
                    lock.unwrap_or_default()
                )
            });
        }
        if self.locked {
            let lock = self
                .lock
                .as_ref()
                .map(|(p, _)| p.display().to_string())
                .unwrap_or_else(|| "the lock file (there is none)".into());
            return Err(format!(
                "--locked: base image {reference} is not pinned in {lock}; run rbuild build --lock to pin it"
            ));
        }
        if let Some(d) = name.digest() {
            return match self.images.target_of_digest(d) {
                Ok(t) => Ok(Some(t)),
                Err(_) => self.missing(reference),
            };
        }
        // --pull=always: the registry's current image, not the stored one.
        if self.pull == Pull::Always {
            return Ok(None);
        }
        match self.images.get(name).map_err(|e| e.to_string())? {
            Some(r) => Ok(Some(r.target)),
            None => self.missing(reference),
        }
    }

    fn missing(&self, reference: &str) -> Result<Option<Target>, String> {
        if self.pull == Pull::Never {
            return Err(format!(
                "base image {reference} is not in the local image store and --pull=never forbids pulling it; load it first (rbuild image load -i FILE) or bind it with --build-context"
            ));
        }
        Ok(None)
    }

    fn record(&self, reference: &str, target: &Target, platform: &Platform, manifest: &Digest) {
        if let Ok(mut m) = self.resolved.lock() {
            let pin = m.entry(reference.to_string()).or_default();
            pin.digest = Some(target.digest.clone());
            pin.platforms.insert(platform.to_string(), manifest.clone());
        }
    }
}

/// Hands a shared [`StoreSource`] to the solver's sources.
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<StoreSource>);

impl rbuild_solver::ImageSource for Shared {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
        store: &Store,
    ) -> Result<Option<ResolvedImage>, Box<dyn std::error::Error + Send + Sync>> {
        let s = &self.0;
        let name = Reference::parse(reference).map_err(|e| e.to_string())?;
        let Some(target) = s.target(reference, &name)? else {
            return Ok(None);
        };
        let source = format!("{} (local image store)", name.familiar());
        let resolved = rbuild_source::resolve_stored(
            store,
            (&target.media_type, &target.digest, target.size),
            platform,
            source,
        )
        .map_err(|e| e.to_string())?;
        if let Some(pinned) = s
            .pin(reference)
            .and_then(|p| p.platforms.get(&platform.to_string()))
            && pinned != &resolved.manifest_digest
        {
            return Err(format!(
                "{reference} for {platform}: the lock file pins manifest {pinned}, but its pinned index gives {}",
                resolved.manifest_digest
            )
            .into());
        }
        s.record(reference, &target, platform, &resolved.manifest_digest);
        Ok(Some(resolved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_dockerfile() {
        assert_eq!(
            lock_path(Path::new("/x/Dockerfile")),
            PathBuf::from("/x/Dockerfile.lock")
        );
        assert_eq!(
            lock_path(Path::new("app.Dockerfile")),
            PathBuf::from("app.Dockerfile.lock")
        );
    }
}
