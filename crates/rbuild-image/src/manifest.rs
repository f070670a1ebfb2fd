//! Manifests and indexes, built with oci-spec's types and written once, canonically.

use crate::{ImageError, LayerBlob, MediaTypes};
use oci_spec::image::{
    Arch, Descriptor, DescriptorBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder,
};
use rbuild_core::{Digest, Platform};
use rbuild_store::Store;
use std::collections::{BTreeMap, HashMap};

/// A descriptor for a blob.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Result<Descriptor, ImageError> {
    let digest: oci_spec::image::Digest = digest.to_string().parse()?;
    Ok(DescriptorBuilder::default()
        .media_type(MediaType::from(media_type))
        .digest(digest)
        .size(size)
        .build()?)
}

/// rbuild's platform as an OCI platform object.
pub fn oci_platform(p: &Platform) -> Result<oci_spec::image::Platform, ImageError> {
    let mut b = PlatformBuilder::default()
        .architecture(Arch::from(p.architecture()))
        .os(Os::from(p.os()));
    if let Some(v) = p.variant() {
        b = b.variant(v.to_string());
    }
    Ok(b.build()?)
}

/// A manifest that has been written to the store.
#[derive(Debug, Clone)]
pub struct ImageManifestBlob {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform it is for.
    pub platform: Platform,
}

/// Writes an image manifest for `config` (already stored) and `layers`, with `annotations`
/// (sorted, so the bytes are canonical), in the media types of `types`: each layer keeps
/// its blob and is named with `types`' type for its codec.
pub fn write_manifest(
    store: &Store,
    config: (&Digest, u64),
    layers: &[LayerBlob],
    platform: &Platform,
    annotations: &BTreeMap<String, String>,
    types: MediaTypes,
) -> Result<ImageManifestBlob, ImageError> {
    let layers = layers
        .iter()
        .map(|l| {
            let mt = types.retype_layer(&l.digest, &l.media_type)?;
            descriptor(&mt, &l.digest, l.size)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(types.manifest()))
        .config(descriptor(types.config(), config.0, config.1)?)
        .layers(layers)
        .build()?;
    let mut value = serde_json::to_value(&manifest)?;
    insert_annotations(&mut value, annotations);
    let (digest, size) = store.put_bytes(&serde_json::to_vec(&value)?)?;
    Ok(ImageManifestBlob {
        digest,
        size,
        platform: platform.clone(),
    })
}

/// One entry of an index: a manifest, its platform (if any) and annotations.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// The manifest or nested index.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The platform of a per-platform manifest.
    pub platform: Option<Platform>,
    /// Annotations such as `org.opencontainers.image.ref.name`.
    pub annotations: Vec<(String, String)>,
}

/// Adds `annotations` to a manifest or index document, in key order.
fn insert_annotations(doc: &mut serde_json::Value, annotations: &BTreeMap<String, String>) {
    if annotations.is_empty() {
        return;
    }
    if let Some(obj) = doc.as_object_mut() {
        let map: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        obj.insert("annotations".into(), serde_json::Value::Object(map));
    }
}

/// Serialises an image index (a manifest list for [`MediaTypes::Docker`]) over `entries`
/// with the index's own `annotations` (canonical bytes; not stored).
pub fn write_index(
    entries: &[IndexEntry],
    annotations: &BTreeMap<String, String>,
    types: MediaTypes,
) -> Result<Vec<u8>, ImageError> {
    let manifests = entries
        .iter()
        .map(|e| {
            let mut d = descriptor(&e.media_type, &e.digest, e.size)?;
            if let Some(p) = &e.platform {
                d.set_platform(Some(oci_platform(p)?));
            }
            if !e.annotations.is_empty() {
                d.set_annotations(Some(
                    e.annotations.iter().cloned().collect::<HashMap<_, _>>(),
                ));
            }
            Ok(d)
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(types.index()))
        .manifests(manifests)
        .build()?;
    // oci-spec keeps annotations in a HashMap: sort them so the bytes (and the digest)
    // never depend on hashing order.
    let mut value = serde_json::to_value(&index)?;
    insert_annotations(&mut value, annotations);
    if let Some(list) = value.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        for m in list {
            if let Some(a) = m.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                a.sort_keys();
            }
        }
    }
    Ok(serde_json::to_vec(&value)?)
}
