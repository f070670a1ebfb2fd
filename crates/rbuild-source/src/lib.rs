//! rbuild-source.
