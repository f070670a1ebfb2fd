//! rbuild-dockerfile.
