//! Cache keys and the cache index. A step's key hashes its parent's key and everything
//! that changes the step's result; the index maps a key to the layer it produced.

use crate::StateDir;
use rbuild_core::Digest;
use rbuild_image::LayerBlob;
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

/// Looks a key up; a hit needs the blob to still be in the store with its recorded size
/// (a blob cut short by a system crash before the build's final sync is a miss).
pub fn get(state: &StateDir, store: &rbuild_store::Store, key: &Digest) -> Option<LayerBlob> {
    let data = std::fs::read(state.cache_entry(key)).ok()?;
    let blob: LayerBlob = serde_json::from_slice(&data).ok()?;
    (store.blob_size(&blob.digest) == Some(blob.size)).then_some(blob)
}

/// Records the layer a key produced (atomically: write then rename).
pub fn put(state: &StateDir, key: &Digest, blob: &LayerBlob) {
    let dest = state.cache_entry(key);
    let Ok(data) = serde_json::to_vec(blob) else {
        return;
    };
    let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
    let ok = std::fs::create_dir_all(state.cache_index()).is_ok()
        && std::fs::write(&tmp, data).is_ok()
        && std::fs::rename(&tmp, &dest).is_ok();
    if !ok {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!(key = %key, "could not record cache entry");
    }
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
