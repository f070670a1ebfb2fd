//! Cache keys and the cache index. A step's key hashes its parent's key and everything
//! that changes the step's result; the index maps a key to the layer it produced.

use crate::StateDir;
use rbuild_core::Digest;
use rbuild_image::LayerBlob;
use sha2::{Digest as _, Sha256};
use std::path::Path;

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

/// A content hash of the named paths below `root` (each a file, link or whole tree), in
/// the order given: what a COPY from the build context actually reads.
pub fn hash_paths(root: &Path, rels: &[std::path::PathBuf]) -> std::io::Result<Digest> {
    let mut h = Sha256::new();
    for rel in rels {
        hash_entry(root, rel, &mut h)?;
    }
    Ok(Digest::from_sha256_bytes(&h.finalize()))
}

fn hash_dir(root: &Path, rel: &Path, h: &mut Sha256) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        hash_entry(root, &rel.join(&name), h)?;
    }
    Ok(())
}

fn hash_entry(root: &Path, rel: &Path, h: &mut Sha256) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path)?;
    h.update(rel.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(meta.mode().to_le_bytes());
    if meta.is_dir() {
        hash_dir(root, rel, h)?;
    } else if meta.file_type().is_symlink() {
        h.update(std::fs::read_link(&path)?.as_os_str().as_encoded_bytes());
    } else if meta.is_file() {
        let mut f = std::fs::File::open(&path)?;
        let mut w = HashWriter(h);
        std::io::copy(&mut f, &mut w)?;
    }
    h.update([0xff]);
    Ok(())
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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
