//! Reading stored images: an index's platforms, a platform's manifest, config and
//! layers, and every blob an image needs; every walk within a [`Budget`].

use crate::refs::is_index_type;
pub use crate::refs::media_type_of;
use crate::{ImagesError, Target, malformed};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use rbuild_core::walk::Budget;
use rbuild_core::{Digest, Platform};
use rbuild_image::{ImageConfig, LayerBlob};
use rbuild_store::Store;

/// One platform's image inside a (possibly multi-platform) image.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// The platform, as the index (or the config) says.
    pub platform: Platform,
    /// The platform's manifest.
    pub manifest: Target,
    /// The config blob's digest.
    pub config_digest: Digest,
    /// The config.
    pub config: ImageConfig,
    /// The layers, bottom first, with the config's diff ids.
    pub layers: Vec<LayerBlob>,
}

impl PlatformImage {
    /// Bytes of config and layers.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// A descriptor's digest, parsed.
pub fn digest_of(d: &Descriptor, within: &Digest) -> Result<Digest, ImagesError> {
    d.digest()
        .to_string()
        .parse()
        .map_err(|e| malformed("descriptor in", within, e))
}

pub(crate) fn target_of(d: &Descriptor, within: &Digest) -> Result<Target, ImagesError> {
    Ok(Target {
        media_type: d.media_type().to_string(),
        digest: digest_of(d, within)?,
        size: d.size(),
    })
}

/// Reads a stored index (verified, at most [`rbuild_core::walk::MAX_DOCUMENT`] bytes).
pub fn read_index(store: &Store, digest: &Digest) -> Result<ImageIndex, ImagesError> {
    read_index_in(store, &mut Budget::new(), std::slice::from_ref(digest))
}

/// Reads a stored manifest (verified, at most [`rbuild_core::walk::MAX_DOCUMENT`] bytes).
pub fn read_manifest(store: &Store, digest: &Digest) -> Result<ImageManifest, ImagesError> {
    read_manifest_in(store, &mut Budget::new(), std::slice::from_ref(digest))
}

/// The index at the end of `path`, its bytes and entries counted in `budget`.
pub(crate) fn read_index_in(
    store: &Store,
    budget: &mut Budget,
    path: &[Digest],
) -> Result<ImageIndex, ImagesError> {
    let data = store.read_document(budget, path)?;
    let index: ImageIndex =
        serde_json::from_slice(&data).map_err(|e| malformed("image index", &last(path), e))?;
    budget.entries(path, index.manifests().len())?;
    Ok(index)
}

/// The manifest at the end of `path`, its bytes and entries counted in `budget`.
fn read_manifest_in(
    store: &Store,
    budget: &mut Budget,
    path: &[Digest],
) -> Result<ImageManifest, ImagesError> {
    let data = store.read_document(budget, path)?;
    let m: ImageManifest =
        serde_json::from_slice(&data).map_err(|e| malformed("manifest", &last(path), e))?;
    budget.entries(path, 1 + m.layers().len())?;
    Ok(m)
}

/// The document a walk path ends at (for messages).
fn last(path: &[Digest]) -> Digest {
    path.last().cloned().unwrap_or_else(|| Digest::sha256(b""))
}

/// Every platform manifest of an image, in index order (nested indexes flattened, each
/// manifest once; attestation manifests, whose platform is `unknown/unknown`, left out).
/// The walk is bounded by [`Budget`]'s limits (a [`crate::Pass`] of one image).
pub fn platforms(store: &Store, target: &Target) -> Result<Vec<(Platform, Target)>, ImagesError> {
    crate::Pass::new(store).platforms(target)
}

/// Every platform's image of `target` ([`platforms`], then each manifest, config and
/// layers), all read in one bounded walk (a [`crate::Pass`] of one image).
pub fn platform_images(store: &Store, target: &Target) -> Result<Vec<PlatformImage>, ImagesError> {
    crate::Pass::new(store).platform_images(target)
}

/// The platform's image, or the only one when `platform` is `None` and there is one.
pub fn select(
    store: &Store,
    target: &Target,
    platform: &Platform,
    name: &str,
) -> Result<PlatformImage, ImagesError> {
    let all = platforms(store, target)?;
    let (p, t) = pick(&all, platform, name)?;
    manifest_image(store, t, Some(p))
}

/// The entry of `all` that `platform` matches; an error naming `image` and what it has
/// otherwise.
pub(crate) fn pick<'a>(
    all: &'a [(Platform, Target)],
    platform: &Platform,
    image: &str,
) -> Result<&'a (Platform, Target), ImagesError> {
    all.iter()
        .find(|(p, _)| platform.matches(p))
        .ok_or_else(|| ImagesError::NoPlatform {
            image: image.to_string(),
            platform: platform.clone(),
            available: all
                .iter()
                .map(|(p, _)| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Reads a manifest, its config and layers. The platform is the index's when given,
/// the config's otherwise.
pub fn manifest_image(
    store: &Store,
    manifest: &Target,
    platform: Option<&Platform>,
) -> Result<PlatformImage, ImagesError> {
    let path = [manifest.digest.clone()];
    manifest_image_in(store, manifest, platform, &mut Budget::new(), &path)
}

/// [`manifest_image`] for the manifest at the end of `path`, counted in `budget` (the
/// config too: it is read whole).
pub(crate) fn manifest_image_in(
    store: &Store,
    manifest: &Target,
    platform: Option<&Platform>,
    budget: &mut Budget,
    path: &[Digest],
) -> Result<PlatformImage, ImagesError> {
    let m = read_manifest_in(store, budget, path)?;
    let config_digest = digest_of(m.config(), &manifest.digest)?;
    let mut config_path = path.to_vec();
    config_path.push(config_digest.clone());
    let config = ImageConfig::from_json(&store.read_config(budget, &config_path)?)
        .map_err(|e| malformed("image config", &config_digest, e))?;
    if config.rootfs.diff_ids.len() != m.layers().len() {
        return Err(malformed(
            "image config",
            &config_digest,
            format!(
                "{} diff ids for {} layers",
                config.rootfs.diff_ids.len(),
                m.layers().len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (d, diff_id) in m.layers().iter().zip(&config.rootfs.diff_ids) {
        layers.push(LayerBlob {
            digest: digest_of(d, &manifest.digest)?,
            diff_id: diff_id.clone(),
            size: d.size(),
            media_type: d.media_type().to_string(),
        });
    }
    let platform = platform.cloned().unwrap_or_else(|| {
        Platform::new(&config.os, &config.architecture, config.variant.as_deref())
    });
    Ok(PlatformImage {
        platform,
        manifest: manifest.clone(),
        config_digest,
        config,
        layers,
    })
}

/// One blob an image needs and the size its descriptor gives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Needed {
    /// The blob.
    pub digest: Digest,
    /// Its size as the referring descriptor says.
    pub size: u64,
    /// `index`, `manifest`, `config` or `layer`.
    pub kind: &'static str,
}

/// Every blob the image needs (indexes, manifests, configs, layers), reading the
/// documents on the way (verified), each once, in one bounded walk. Stops at the first
/// document it cannot read.
pub fn closure(store: &Store, target: &Target) -> Result<Vec<Needed>, ImagesError> {
    closure_in(store, target, &mut Budget::new())
}

/// [`closure`] as one root of a pass over several images ([`Budget::next_root`]): what
/// an earlier root of the pass already walked is not read again, though every descriptor
/// naming it is listed (with its size).
pub fn closure_in(
    store: &Store,
    target: &Target,
    budget: &mut Budget,
) -> Result<Vec<Needed>, ImagesError> {
    budget.next_root();
    let mut out = vec![needed(target)];
    let mut todo = Vec::new();
    if let Some(root) = budget.enter(&[], &target.digest)? {
        todo.push((target.clone(), root));
    }
    while let Some((t, path)) = todo.pop() {
        if is_index_type(&t.media_type) {
            for d in read_index_in(store, budget, &path)?.manifests() {
                let child = target_of(d, &t.digest)?;
                out.push(needed(&child));
                if let Some(p) = budget.enter(&path, &child.digest)? {
                    todo.push((child, p));
                }
            }
        } else {
            out.extend(manifest_blobs(store, budget, &path)?);
        }
    }
    Ok(out)
}

/// The config and layers of the manifest at the end of `path`.
pub(crate) fn manifest_blobs(
    store: &Store,
    budget: &mut Budget,
    path: &[Digest],
) -> Result<Vec<Needed>, ImagesError> {
    let within = last(path);
    let m = read_manifest_in(store, budget, path)?;
    let mut out = vec![Needed {
        digest: digest_of(m.config(), &within)?,
        size: m.config().size(),
        kind: "config",
    }];
    for l in m.layers() {
        out.push(Needed {
            digest: digest_of(l, &within)?,
            size: l.size(),
            kind: "layer",
        });
    }
    Ok(out)
}

pub(crate) fn needed(t: &Target) -> Needed {
    Needed {
        digest: t.digest.clone(),
        size: t.size,
        kind: if t.is_index() { "index" } else { "manifest" },
    }
}
