//! rbuild-image.
