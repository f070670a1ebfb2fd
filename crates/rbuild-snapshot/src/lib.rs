//! rbuild-snapshot.
