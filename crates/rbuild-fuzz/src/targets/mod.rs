//! The fuzz targets. Each is a `fn(&[u8]) -> u64` that panics when a property fails.

mod dockerfile;
mod oci;
mod tar;
mod words;

pub use self::dockerfile::dockerfile_parse;
pub use self::oci::oci_json;
pub use self::tar::{fix_tar_checksums, shutdown_tar_worker, tar_unpack};
pub use self::words::word_expand;

use crate::Target;

/// The targets `--list` shows, in that order.
pub(crate) static ALL: &[Target] = &[
    Target {
        name: "tar-unpack",
        about: "unpack_layer into a sandbox dir (nothing may land outside), then write_layer_tar round trip",
        run: tar_unpack,
        dictionary: self::tar::DICTIONARY,
        max_len: 64 * 1024,
        block: 512,
    },
    Target {
        name: "dockerfile-parse",
        about: "Dockerfile parser, debug JSON, diagnostics, then lowering and lint checks",
        run: dockerfile_parse,
        dictionary: self::dockerfile::DICTIONARY,
        max_len: 16 * 1024,
        block: 1,
    },
    Target {
        name: "word-expand",
        about: "BuildKit word expansion (Expander) with arbitrary words, variables and escapes",
        run: word_expand,
        dictionary: self::words::DICTIONARY,
        max_len: 4 * 1024,
        block: 1,
    },
    Target {
        name: "oci-json",
        about: "OCI index/manifest/image config readers, Digest/Platform/--build-context parsing",
        run: oci_json,
        dictionary: self::oci::DICTIONARY,
        max_len: 16 * 1024,
        block: 1,
    },
];
