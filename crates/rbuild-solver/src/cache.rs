//! Cache keys. A step's key hashes its parent's key and everything that changes the
//! step's result; a [`crate::CacheStore`] maps a key to the layer it produced.

use rbuild_core::Digest;
use sha2::{Digest as _, Sha256};

/// The key of a step whose parent has key `parent` and whose inputs are `parts`.
pub fn chain(parent: &Digest, parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    h.update(parent.to_string().as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    Digest::from_sha256_bytes(&h.finalize())
}

pub use crate::context_hash::hash_paths;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_part() {
        let root = Digest::sha256(b"root");
        let a = chain(&root, &[b"a", b"b"]);
        assert_eq!(a, chain(&root, &[b"a", b"b"]));
        assert_ne!(a, chain(&root, &[b"ab"]));
        assert_ne!(a, chain(&Digest::sha256(b"other"), &[b"a", b"b"]));
    }

    #[test]
    fn path_hash_sees_only_the_named_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"1").unwrap();
        std::fs::write(dir.path().join("other"), b"x").unwrap();
        let named = [std::path::PathBuf::from("d")];
        let h1 = hash_paths(dir.path(), &named).unwrap();
        std::fs::write(dir.path().join("other"), b"y").unwrap();
        assert_eq!(h1, hash_paths(dir.path(), &named).unwrap());
        std::fs::write(dir.path().join("d/f"), b"2").unwrap();
        assert_ne!(h1, hash_paths(dir.path(), &named).unwrap());
    }
}
