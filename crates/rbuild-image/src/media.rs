//! The two families of media types an image can be written with: OCI's (the default) and
//! Docker's schema 2 (`oci-mediatypes=false`). Layers keep their bytes and digest either
//! way; only the descriptors' `mediaType` changes.

use crate::ImageError;
use rbuild_core::{Digest, LayerCodec, media_type as mt};

/// Which media types manifests, indexes, configs and layer descriptors carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaTypes {
    /// OCI image spec types (`oci-mediatypes=true`, BuildKit's default for every exporter).
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2 types (`oci-mediatypes=false`).
    Docker,
}

impl MediaTypes {
    /// `oci-mediatypes=true|false` as a choice.
    pub fn from_oci_flag(oci: bool) -> MediaTypes {
        if oci {
            MediaTypes::Oci
        } else {
            MediaTypes::Docker
        }
    }

    /// The family of a stored manifest or index type (OCI for anything not Docker's).
    pub fn of(media_type: &str) -> MediaTypes {
        match media_type {
            mt::DOCKER_MANIFEST | mt::DOCKER_MANIFEST_LIST => MediaTypes::Docker,
            _ => MediaTypes::Oci,
        }
    }

    /// The type of a per-platform image manifest.
    pub fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => mt::OCI_MANIFEST,
            MediaTypes::Docker => mt::DOCKER_MANIFEST,
        }
    }

    /// The type of an index over per-platform manifests (a manifest list for Docker).
    pub fn index(self) -> &'static str {
        match self {
            MediaTypes::Oci => mt::OCI_INDEX,
            MediaTypes::Docker => mt::DOCKER_MANIFEST_LIST,
        }
    }

    /// The type of an image config.
    pub fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => mt::OCI_CONFIG,
            MediaTypes::Docker => mt::DOCKER_CONFIG,
        }
    }

    /// The layer type for `codec`; `None` where the family has none (Docker has no zstd).
    pub fn layer(self, codec: LayerCodec) -> Option<&'static str> {
        match (self, codec) {
            (MediaTypes::Oci, LayerCodec::Tar) => Some(mt::OCI_LAYER_TAR),
            (MediaTypes::Oci, LayerCodec::Gzip) => Some(mt::OCI_LAYER_GZIP),
            (MediaTypes::Oci, LayerCodec::Zstd) => Some(mt::OCI_LAYER_ZSTD),
            (MediaTypes::Docker, LayerCodec::Tar) => Some(mt::DOCKER_LAYER_TAR),
            (MediaTypes::Docker, LayerCodec::Gzip) => Some(mt::DOCKER_LAYER_GZIP),
            (MediaTypes::Docker, LayerCodec::Zstd) => None,
        }
    }

    /// The type a layer stored as `media_type` gets in a manifest of this family: the same
    /// codec under this family's name. Non-distributable (foreign) layers keep their type.
    pub fn retype_layer(self, digest: &Digest, media_type: &str) -> Result<String, ImageError> {
        if is_non_distributable(media_type) {
            return Ok(media_type.to_string());
        }
        let unsupported = || ImageError::LayerMediaType {
            digest: digest.clone(),
            media_type: media_type.to_string(),
            family: self,
        };
        let codec = LayerCodec::from_media_type(media_type).ok_or_else(unsupported)?;
        self.layer(codec)
            .map(str::to_string)
            .ok_or_else(unsupported)
    }
}

impl std::fmt::Display for MediaTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MediaTypes::Oci => "OCI media types",
            MediaTypes::Docker => "Docker media types (oci-mediatypes=false)",
        })
    }
}

/// Whether a layer type marks a non-distributable (foreign) layer.
fn is_non_distributable(media_type: &str) -> bool {
    matches!(
        media_type,
        mt::DOCKER_FOREIGN_LAYER_GZIP
            | mt::OCI_NONDIST_LAYER_TAR
            | mt::OCI_NONDIST_LAYER_GZIP
            | mt::OCI_NONDIST_LAYER_ZSTD
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_keep_their_codec_across_families() {
        let d = Digest::sha256(b"x");
        let docker = MediaTypes::Docker;
        assert_eq!(
            docker.retype_layer(&d, mt::OCI_LAYER_GZIP).unwrap(),
            mt::DOCKER_LAYER_GZIP
        );
        assert_eq!(
            docker.retype_layer(&d, mt::OCI_LAYER_TAR).unwrap(),
            mt::DOCKER_LAYER_TAR
        );
        assert_eq!(
            MediaTypes::Oci
                .retype_layer(&d, mt::DOCKER_LAYER_GZIP)
                .unwrap(),
            mt::OCI_LAYER_GZIP
        );
        assert_eq!(
            docker
                .retype_layer(&d, mt::DOCKER_FOREIGN_LAYER_GZIP)
                .unwrap(),
            mt::DOCKER_FOREIGN_LAYER_GZIP
        );
        let err = docker.retype_layer(&d, mt::OCI_LAYER_ZSTD).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
        assert!(MediaTypes::Oci.retype_layer(&d, "text/plain").is_err());
    }
}
