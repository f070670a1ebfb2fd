//! rbuild-sandbox.
