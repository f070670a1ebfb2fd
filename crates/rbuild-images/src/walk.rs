//! Reading stored images: an index's platforms, a platform's manifest, config and
//! layers, and every blob an image needs.

use crate::refs::is_index_type;
use crate::{ImagesError, Target};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use rbuild_core::{Digest, Platform, media_type};
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

/// The media type of a stored index or manifest: its `mediaType`, or what its keys say.
pub fn media_type_of(digest: &Digest, data: &[u8]) -> Result<String, ImagesError> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| malformed("document", digest, e))?;
    if let Some(mt) = value.get("mediaType").and_then(|m| m.as_str()) {
        return Ok(mt.to_string());
    }
    if value.get("manifests").is_some() {
        Ok(media_type::OCI_INDEX.into())
    } else if value.get("config").is_some() {
        Ok(media_type::OCI_MANIFEST.into())
    } else {
        Err(malformed(
            "document",
            digest,
            "neither an image index nor a manifest",
        ))
    }
}

fn malformed(what: &'static str, digest: &Digest, detail: impl ToString) -> ImagesError {
    ImagesError::Malformed {
        what,
        digest: digest.clone(),
        detail: detail.to_string(),
    }
}

/// A descriptor's digest, parsed.
pub fn digest_of(d: &Descriptor, within: &Digest) -> Result<Digest, ImagesError> {
    d.digest()
        .to_string()
        .parse()
        .map_err(|e| malformed("descriptor in", within, e))
}

fn target_of(d: &Descriptor, within: &Digest) -> Result<Target, ImagesError> {
    Ok(Target {
        media_type: d.media_type().to_string(),
        digest: digest_of(d, within)?,
        size: d.size(),
    })
}

/// Reads a stored index (verified).
pub fn read_index(store: &Store, digest: &Digest) -> Result<ImageIndex, ImagesError> {
    serde_json::from_slice(&store.read_verified(digest)?)
        .map_err(|e| malformed("image index", digest, e))
}

/// Reads a stored manifest (verified).
pub fn read_manifest(store: &Store, digest: &Digest) -> Result<ImageManifest, ImagesError> {
    serde_json::from_slice(&store.read_verified(digest)?)
        .map_err(|e| malformed("manifest", digest, e))
}

/// Every platform manifest of an image, in index order (nested indexes flattened;
/// attestation manifests, whose platform is `unknown/unknown`, left out).
pub fn platforms(store: &Store, target: &Target) -> Result<Vec<(Platform, Target)>, ImagesError> {
    let mut out = Vec::new();
    collect_platforms(store, target, &mut out, 0)?;
    Ok(out)
}

fn collect_platforms(
    store: &Store,
    target: &Target,
    out: &mut Vec<(Platform, Target)>,
    depth: usize,
) -> Result<(), ImagesError> {
    if depth > 8 {
        return Err(malformed(
            "image index",
            &target.digest,
            "indexes nested too deep",
        ));
    }
    if !target.is_index() {
        let image = manifest_image(store, target, None)?;
        out.push((image.platform, target.clone()));
        return Ok(());
    }
    let index = read_index(store, &target.digest)?;
    for d in index.manifests() {
        let t = target_of(d, &target.digest)?;
        if is_index_type(&t.media_type) {
            collect_platforms(store, &t, out, depth + 1)?;
            continue;
        }
        let platform = match d.platform() {
            Some(p) => Platform::new(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            ),
            None => manifest_image(store, &t, None)?.platform,
        };
        if platform.os() == "unknown" {
            continue;
        }
        out.push((platform, t));
    }
    Ok(())
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
    let m = read_manifest(store, &manifest.digest)?;
    let config_digest = digest_of(m.config(), &manifest.digest)?;
    let config = ImageConfig::from_json(&store.read_verified(&config_digest)?)
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
/// documents on the way (verified). Stops at the first document it cannot read.
pub fn closure(store: &Store, target: &Target) -> Result<Vec<Needed>, ImagesError> {
    let mut out = Vec::new();
    let mut todo = vec![target.clone()];
    while let Some(t) = todo.pop() {
        if out.iter().any(|n: &Needed| n.digest == t.digest) || out.len() > 100_000 {
            continue;
        }
        if is_index_type(&t.media_type) {
            out.push(needed(&t, "index"));
            for d in read_index(store, &t.digest)?.manifests() {
                todo.push(target_of(d, &t.digest)?);
            }
        } else {
            out.push(needed(&t, "manifest"));
            let m = read_manifest(store, &t.digest)?;
            out.push(Needed {
                digest: digest_of(m.config(), &t.digest)?,
                size: m.config().size(),
                kind: "config",
            });
            for l in m.layers() {
                out.push(Needed {
                    digest: digest_of(l, &t.digest)?,
                    size: l.size(),
                    kind: "layer",
                });
            }
        }
    }
    Ok(out)
}

fn needed(t: &Target, kind: &'static str) -> Needed {
    Needed {
        digest: t.digest.clone(),
        size: t.size,
        kind,
    }
}
