//! Images as values: the image config (with Docker's extension fields kept), layer blobs
//! compressed and digested in one streaming pass, and manifest / index assembly with one
//! canonical JSON writer so the same image always has the same digest.

mod annotations;
mod layer;
mod manifest;
mod media;
mod pgzip;

pub use annotations::{Annotation, AnnotationTarget, Annotations, BadAnnotation};
pub use layer::{Compression, LayerBlob, LayerWriter};
pub use manifest::{
    ImageManifestBlob, IndexEntry, descriptor, oci_platform, write_index, write_manifest,
};
pub use media::MediaTypes;
pub use rbuild_core::config::{ContainerConfig, HealthConfig, History, ImageConfig, RootFs};

/// Errors of image assembly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// Writing a layer stream failed.
    #[error("writing layer: {0}")]
    Io(#[from] std::io::Error),
    /// JSON (de)serialisation failed.
    #[error("image json: {0}")]
    Json(#[from] serde_json::Error),
    /// An OCI structure could not be built or parsed.
    #[error("oci structure: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
    /// A layer's compression has no media type in the family the image is written with.
    #[error(
        "layer {digest} is {media_type}, which {family} cannot describe (Docker's media types have no zstd layer: use compression=gzip or uncompressed with force-compression=true, or oci-mediatypes=true)"
    )]
    LayerMediaType {
        /// The layer blob.
        digest: rbuild_core::Digest,
        /// Its stored media type.
        media_type: String,
        /// The family asked for.
        family: MediaTypes,
    },
}
