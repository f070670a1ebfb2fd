//! `image save`: stored images into one OCI archive (every requested platform), or a
//! Docker archive of one platform.

use crate::{ImageStore, ImagesError, Target, walk};
use rbuild_core::{Platform, Reference};
use rbuild_export::BuiltImage;
use rbuild_image::{ImageManifestBlob, IndexEntry, MediaTypes, write_index};
use std::path::Path;

/// The archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout archive (`podman load`, `skopeo oci-archive:`).
    Oci,
    /// Docker's archive (`docker load`): one platform.
    Docker,
}

/// One image to save: what the user named and the names it gets in the archive.
#[derive(Debug, Clone)]
pub struct SaveItem {
    /// The image.
    pub target: Target,
    /// Full names (`docker.io/library/app:latest`) it carries in the archive.
    pub names: Vec<String>,
    /// The platforms to keep of this image; empty: those [`save`] is given.
    pub platforms: Vec<Platform>,
}

/// Resolves what the user named (`app`, `app:1`, an image id) for saving.
pub fn item(images: &ImageStore, text: &str) -> Result<SaveItem, ImagesError> {
    let target = images.resolve(text)?;
    let names = match Reference::parse(text) {
        Ok(r) if r.digest().is_none() => vec![r.to_string()],
        _ => images.names_of(&target.digest)?,
    };
    Ok(SaveItem {
        target,
        names,
        platforms: Vec::new(),
    })
}

/// Writes `items` to `dest`; with `platforms` given, each image keeps only those
/// platforms (every one must exist).
pub fn save(
    images: &ImageStore,
    items: &[SaveItem],
    platforms: &[Platform],
    format: Format,
    dest: &Path,
) -> Result<(), ImagesError> {
    match format {
        Format::Oci => {
            let mut roots = Vec::new();
            for it in items {
                roots.push((root_for(images, it, platforms)?, it.names.clone()));
            }
            rbuild_export::write_layout_tar(images.blobs(), &roots, dest, None, &mut |_, _| {})?;
        }
        Format::Docker => save_docker(images, items, platforms, dest)?,
    }
    Ok(())
}

fn save_docker(
    images: &ImageStore,
    items: &[SaveItem],
    platforms: &[Platform],
    dest: &Path,
) -> Result<(), ImagesError> {
    let [it] = items else {
        return Err(archive_err(dest, "--format docker-archive holds one image"));
    };
    let platform = match platforms {
        [] => None,
        [p] => Some(p.clone()),
        _ => {
            return Err(archive_err(
                dest,
                "--format docker-archive holds one platform",
            ));
        }
    };
    let all = walk::platforms(images.blobs(), &it.target)?;
    let chosen = match (&platform, all.as_slice()) {
        (None, [only]) => only.clone(),
        (None, _) => find(&all, &Platform::host(), it)?,
        (Some(p), _) => find(&all, p, it)?,
    };
    let image = BuiltImage {
        manifests: vec![ImageManifestBlob {
            digest: chosen.1.digest.clone(),
            size: chosen.1.size,
            platform: chosen.0.clone(),
        }],
        tags: it.names.clone(),
        annotations: Default::default(),
        media_types: MediaTypes::of(&chosen.1.media_type),
    };
    rbuild_export::write_docker_tar(images.blobs(), &image, dest)?;
    Ok(())
}

fn find(
    all: &[(Platform, Target)],
    platform: &Platform,
    it: &SaveItem,
) -> Result<(Platform, Target), ImagesError> {
    let image = it
        .names
        .first()
        .cloned()
        .unwrap_or_else(|| it.target.digest.to_string());
    crate::walk::pick(all, platform, &image).cloned()
}

/// The top-level descriptor of one saved image: the image as stored, or a new index over
/// the requested platforms (a manifest when one is requested).
fn root_for(
    images: &ImageStore,
    it: &SaveItem,
    platforms: &[Platform],
) -> Result<IndexEntry, ImagesError> {
    let platforms = if it.platforms.is_empty() {
        platforms
    } else {
        &it.platforms
    };
    if platforms.is_empty() {
        return Ok(IndexEntry {
            media_type: it.target.media_type.clone(),
            digest: it.target.digest.clone(),
            size: it.target.size,
            platform: None,
            annotations: Vec::new(),
        });
    }
    let all = walk::platforms(images.blobs(), &it.target)?;
    let mut entries = Vec::new();
    for p in platforms {
        let (platform, t) = find(&all, p, it)?;
        entries.push(IndexEntry {
            media_type: t.media_type,
            digest: t.digest,
            size: t.size,
            platform: Some(platform),
            annotations: Vec::new(),
        });
    }
    if let [single] = entries.as_slice() {
        return Ok(single.clone());
    }
    let (digest, size) = images.blobs().put_bytes(
        &write_index(&entries, &Default::default(), MediaTypes::Oci).map_err(|e| {
            ImagesError::Malformed {
                what: "image index for",
                digest: it.target.digest.clone(),
                detail: e.to_string(),
            }
        })?,
    )?;
    Ok(IndexEntry {
        media_type: rbuild_core::media_type::OCI_INDEX.into(),
        digest,
        size,
        platform: None,
        annotations: Vec::new(),
    })
}

fn archive_err(dest: &Path, detail: &str) -> ImagesError {
    ImagesError::Archive {
        path: dest.to_path_buf(),
        detail: detail.to_string(),
    }
}
