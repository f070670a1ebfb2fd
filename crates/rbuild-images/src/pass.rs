//! A pass over several images of one store (`images`, `system check`): each index's
//! platform list, each document's closure and each manifest's image is read once and kept,
//! so images that share a graph (many names, many roots over the same indexes) do not
//! read it again. Each image's own walk stays within a [`Budget`] (counted again per
//! image, kept lists included), so the work of a pass grows with what it reports and the
//! distinct documents it reads, never with how often they are named.

use crate::walk::{self, Needed, PlatformImage};
use crate::{ImagesError, Target};
use oci_spec::image::Descriptor;
use rbuild_core::walk::Budget;
use rbuild_core::{Digest, Platform};
use rbuild_store::Store;
use std::collections::{HashMap, HashSet};

/// What a pass has read so far.
pub struct Pass<'s> {
    store: &'s Store,
    budget: Budget,
    lists: HashMap<Digest, Vec<(Platform, Target)>>,
    closures: HashMap<Digest, Vec<Needed>>,
    images: HashMap<(Digest, Option<Platform>), PlatformImage>,
}

impl<'s> Pass<'s> {
    /// A pass over images of `store`.
    pub fn new(store: &'s Store) -> Pass<'s> {
        Pass {
            store,
            budget: Budget::new(),
            lists: HashMap::new(),
            closures: HashMap::new(),
            images: HashMap::new(),
        }
    }

    /// Every platform manifest of `target`, as [`walk::platforms`] gives them.
    pub fn platforms(&mut self, target: &Target) -> Result<Vec<(Platform, Target)>, ImagesError> {
        self.budget.next_root();
        let root = vec![target.digest.clone()];
        if target.is_index() {
            return self.list(target, &root);
        }
        let image = self.image(target, None, &root)?;
        Ok(vec![(image.platform, target.clone())])
    }

    /// Every platform's image of `target`, as [`walk::platform_images`] gives them.
    pub fn platform_images(&mut self, target: &Target) -> Result<Vec<PlatformImage>, ImagesError> {
        let all = self.platforms(target)?;
        let mut out = Vec::with_capacity(all.len());
        for (p, m) in &all {
            let path = [target.digest.clone(), m.digest.clone()];
            out.push(self.image(m, Some(p), &path)?);
        }
        Ok(out)
    }

    /// Every blob `target` needs, as [`walk::closure`] gives them (each descriptor's
    /// digest, size and kind once).
    pub fn closure(&mut self, target: &Target) -> Result<Vec<Needed>, ImagesError> {
        self.budget.next_root();
        let mut out = vec![walk::needed(target)];
        let root = vec![target.digest.clone()];
        out.extend(self.closure_of(target, &root)?);
        Ok(out)
    }

    /// The platforms of the index at the end of `path`, nested indexes flattened, each
    /// manifest once, attestations left out.
    fn list(
        &mut self,
        index: &Target,
        path: &[Digest],
    ) -> Result<Vec<(Platform, Target)>, ImagesError> {
        if let Some(kept) = self.lists.get(&index.digest) {
            let kept = kept.clone();
            self.budget.entries(path, kept.len())?;
            return Ok(kept);
        }
        let doc = walk::read_index_in(self.store, &mut self.budget, path)?;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for d in doc.manifests() {
            let t = walk::target_of(d, &index.digest)?;
            let child = self.budget.descend(path, &t.digest)?;
            let found = if t.is_index() {
                self.list(&t, &child)?
            } else {
                let platform = match entry_platform(d) {
                    Some(p) => p,
                    None => self.image(&t, None, &child)?.platform,
                };
                vec![(platform, t)]
            };
            for (p, m) in found {
                if p.os() != "unknown" && seen.insert(m.digest.clone()) {
                    out.push((p, m));
                }
            }
        }
        self.lists.insert(index.digest.clone(), out.clone());
        Ok(out)
    }

    /// What the document at the end of `path` needs below itself.
    fn closure_of(&mut self, doc: &Target, path: &[Digest]) -> Result<Vec<Needed>, ImagesError> {
        if let Some(kept) = self.closures.get(&doc.digest) {
            let kept = kept.clone();
            self.budget.entries(path, kept.len())?;
            return Ok(kept);
        }
        let mut out = Vec::new();
        if doc.is_index() {
            let index = walk::read_index_in(self.store, &mut self.budget, path)?;
            for d in index.manifests() {
                let t = walk::target_of(d, &doc.digest)?;
                let child = self.budget.descend(path, &t.digest)?;
                out.push(walk::needed(&t));
                out.extend(self.closure_of(&t, &child)?);
            }
        } else {
            out = walk::manifest_blobs(self.store, &mut self.budget, path)?;
        }
        let mut seen = HashSet::new();
        out.retain(|n| seen.insert((n.digest.clone(), n.size, n.kind)));
        self.closures.insert(doc.digest.clone(), out.clone());
        Ok(out)
    }

    /// The image of manifest `m` (for `platform`, or the config's).
    fn image(
        &mut self,
        m: &Target,
        platform: Option<&Platform>,
        path: &[Digest],
    ) -> Result<PlatformImage, ImagesError> {
        let key = (m.digest.clone(), platform.cloned());
        if let Some(kept) = self.images.get(&key) {
            return Ok(kept.clone());
        }
        let image = walk::manifest_image_in(self.store, m, platform, &mut self.budget, path)?;
        self.images.insert(key, image.clone());
        Ok(image)
    }
}

/// The platform an index entry gives.
fn entry_platform(d: &Descriptor) -> Option<Platform> {
    d.platform().as_ref().map(|p| {
        Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_core::media_type::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
    use serde_json::json;

    fn put(store: &Store, v: serde_json::Value) -> Target {
        let (digest, size) = store.put_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
        let media_type = v["mediaType"].as_str().unwrap_or(OCI_CONFIG).to_string();
        Target {
            media_type,
            digest,
            size,
        }
    }

    fn manifest(store: &Store, arch: &str) -> Target {
        let config = put(
            store,
            json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
        );
        put(
            store,
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                "config": {"mediaType": OCI_CONFIG, "digest": config.digest.to_string(), "size": config.size}}),
        )
    }

    fn entry(t: &Target, platform: Option<(&str, &str)>) -> serde_json::Value {
        let mut e =
            json!({"mediaType": t.media_type, "digest": t.digest.to_string(), "size": t.size});
        if let Some((os, arch)) = platform {
            e["platform"] = json!({"os": os, "architecture": arch});
        }
        e
    }

    #[test]
    fn nested_and_repeated_entries_list_each_platform_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (amd64, arm64, s390x) = (
            manifest(&store, "amd64"),
            manifest(&store, "arm64"),
            manifest(&store, "s390x"),
        );
        let attestation = manifest(&store, "unknown");
        let inner = put(
            &store,
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                entry(&amd64, Some(("linux", "amd64"))),
                entry(&arm64, None),
                entry(&attestation, Some(("unknown", "unknown"))),
            ]}),
        );
        let root = put(
            &store,
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                entry(&inner, None),
                entry(&amd64, Some(("linux", "amd64"))),
                entry(&inner, None),
                entry(&s390x, Some(("linux", "s390x"))),
            ]}),
        );
        let mut pass = Pass::new(&store);
        let listed: Vec<(String, Digest)> = pass
            .platforms(&root)
            .unwrap()
            .into_iter()
            .map(|(p, t)| (p.to_string(), t.digest))
            .collect();
        let want = vec![
            ("linux/amd64".to_string(), amd64.digest.clone()),
            ("linux/arm64".to_string(), arm64.digest.clone()),
            ("linux/s390x".to_string(), s390x.digest.clone()),
        ];
        assert_eq!(listed, want);
        let images = pass.platform_images(&inner).unwrap();
        let arches: Vec<_> = images
            .iter()
            .map(|i| i.config.architecture.clone())
            .collect();
        assert_eq!(arches, ["amd64", "arm64"]);
    }
}
