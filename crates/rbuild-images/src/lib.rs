//! The local image store: named images over rbuild's content-addressed blob store.
//!
//! A name (`docker.io/library/app:latest`) points at one descriptor — an image index for
//! a multi-platform image, kept whole, or a single manifest. Each name is one small JSON
//! file under `<state>/images/`, written to a temporary file and renamed into place, so
//! concurrent rbuild processes and a `kill -9` at any point leave every name either at its
//! old or at its new image. Blobs are only ever written through the verified blob store.
//!
//! [`walk`] reads images (platforms, configs, the blobs an image needs), [`fsck`] checks
//! every name's closure, [`archive`] loads OCI and Docker archives, [`save`] writes them.

pub mod archive;
pub mod fsck;
mod pass;
mod refs;
pub mod save;
pub mod walk;

pub use pass::Pass;
pub use refs::{ImageRecord, ImageStore, Target};

use rbuild_core::{Digest, Platform, ReferenceError};
use std::path::PathBuf;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImagesError {
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// Writing an archive failed.
    #[error(transparent)]
    Export(#[from] rbuild_export::ExportError),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] rbuild_state::StateError),
    /// An image name that is not a valid reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// No image of that name (or id) is in the store.
    #[error("no such image: {0}")]
    NotFound(String),
    /// An image id prefix that matches several images.
    #[error("image id {0} is ambiguous: it matches {1}")]
    Ambiguous(String, String),
    /// A stored document (index, manifest, config) is not what it should be.
    #[error("{what} {digest}: {detail}")]
    Malformed {
        /// Which kind of document.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        detail: String,
    },
    /// The image has no manifest for the requested platform.
    #[error("{image} has no image for platform {platform} (it has: {available})")]
    NoPlatform {
        /// The image.
        image: String,
        /// The platform asked for.
        platform: Platform,
        /// The platforms it has.
        available: String,
    },
    /// A walk over an image hit its budget (depth, entries, bytes).
    #[error(transparent)]
    Limit(#[from] rbuild_core::walk::WalkLimit),
    /// An archive that cannot be loaded.
    #[error("{path}: {detail}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> ImagesError + 'a {
    move |source| ImagesError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A stored document that is not what it should be.
pub(crate) fn malformed(what: &'static str, digest: &Digest, detail: impl ToString) -> ImagesError {
    ImagesError::Malformed {
        what,
        digest: digest.clone(),
        detail: detail.to_string(),
    }
}
