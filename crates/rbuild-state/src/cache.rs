//! The cache index: a step's key → the layer it produced. The solver asks a [`CacheStore`]
//! and never knows where entries live; [`LocalCache`], files under the state directory, is
//! the first implementation, and an importer or exporter of a remote cache is another.

use crate::StateDir;
use rbuild_core::Digest;
use rbuild_image::LayerBlob;
use rbuild_store::Store;

/// Where the layers that steps produced are remembered, by step key.
pub trait CacheStore: Sync {
    /// The layer `key` produced, if it is remembered and its blob is still usable.
    fn get(&self, key: &Digest) -> Option<LayerBlob>;
    /// Remembers that `key` produced `blob` (best effort: a failure is a later miss).
    fn put(&self, key: &Digest, blob: &LayerBlob);
}

/// The cache index in the state directory, `cache/<key>`, over the state's blob store.
pub struct LocalCache<'a> {
    state: &'a StateDir,
    store: &'a Store,
}

impl<'a> LocalCache<'a> {
    /// The index of `state`, whose layers are blobs of `store`.
    pub fn new(state: &'a StateDir, store: &'a Store) -> LocalCache<'a> {
        LocalCache { state, store }
    }
}

impl CacheStore for LocalCache<'_> {
    /// A hit needs the blob to still be in the store with its recorded size (a blob cut
    /// short by a system crash before the build's final sync is a miss).
    fn get(&self, key: &Digest) -> Option<LayerBlob> {
        let data = std::fs::read(self.state.cache_entry(key)).ok()?;
        let blob: LayerBlob = serde_json::from_slice(&data).ok()?;
        (self.store.blob_size(&blob.digest) == Some(blob.size)).then_some(blob)
    }

    /// Written aside and renamed, so a reader never sees half an entry.
    fn put(&self, key: &Digest, blob: &LayerBlob) {
        let dest = self.state.cache_entry(key);
        let Ok(data) = serde_json::to_vec(blob) else {
            return;
        };
        let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
        let ok = std::fs::create_dir_all(self.state.cache_index()).is_ok()
            && std::fs::write(&tmp, data).is_ok()
            && std::fs::rename(&tmp, &dest).is_ok();
        if !ok {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(key = %key, "could not record cache entry");
        }
    }
}
