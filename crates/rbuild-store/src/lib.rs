//! rbuild-store.
