//! rbuild-export.
