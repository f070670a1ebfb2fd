//! Value types every rbuild crate passes around: [`Platform`], [`Digest`], image
//! [`Reference`]s and the OCI media types. No I/O happens here.

pub mod config;
mod digest;
mod platform;
pub mod reference;
pub mod text;
mod time;
pub mod walk;

pub use digest::{Digest, DigestError, Sha256Writer};
pub use platform::{Platform, PlatformError};
pub use reference::{Reference, ReferenceError, ReferenceErrorKind};
pub use time::{rfc3339, rfc3339_nanos};

/// OCI media types rbuild reads and writes, named once so no crate spells them differently.
pub mod media_type {
    /// An OCI image index (one descriptor per platform).
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// A gzip-compressed OCI layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// An uncompressed OCI layer.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// A zstd-compressed OCI layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// A Docker schema 2 manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// A Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// A Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// A gzip-compressed Docker layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// An uncompressed Docker layer.
    pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// A Docker foreign (non-distributable) gzip layer (read for compatibility).
    pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    /// OCI non-distributable layers (deprecated by the spec, still found in the wild).
    pub const OCI_NONDIST_LAYER_TAR: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar";
    /// See [`OCI_NONDIST_LAYER_TAR`].
    pub const OCI_NONDIST_LAYER_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    /// See [`OCI_NONDIST_LAYER_TAR`].
    pub const OCI_NONDIST_LAYER_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
}

/// How a layer blob is compressed, as its media type says. Layers are decompressed by this
/// and nothing else: a media type rbuild does not know is refused, never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCodec {
    /// A plain tar.
    Tar,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl LayerCodec {
    /// The codec of a layer media type; `None` for a type that is not a layer rbuild reads.
    pub fn from_media_type(media_type: &str) -> Option<LayerCodec> {
        use media_type::*;
        match media_type {
            OCI_LAYER_TAR | DOCKER_LAYER_TAR | OCI_NONDIST_LAYER_TAR => Some(LayerCodec::Tar),
            OCI_LAYER_GZIP
            | DOCKER_LAYER_GZIP
            | DOCKER_FOREIGN_LAYER_GZIP
            | OCI_NONDIST_LAYER_GZIP => Some(LayerCodec::Gzip),
            OCI_LAYER_ZSTD | OCI_NONDIST_LAYER_ZSTD => Some(LayerCodec::Zstd),
            _ => None,
        }
    }
}
