//! The content-addressed blob store. Every blob is written through a temporary file in
//! the store's own `tmp/` directory, hashed while written, checked against the digest the
//! caller expects, and renamed to `blobs/<alg>/<hex>` only when complete. A crash at any
//! point leaves only stray temporary files, which the next [`Store::open`] removes.

use rbuild_core::walk::{Budget, WalkLimit};
use rbuild_core::{Digest, Sha256Writer};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A blob's content does not hash to the digest it was written or stored under.
    #[error("digest mismatch: expected {expected}, found {found}")]
    DigestMismatch {
        /// The digest that was expected.
        expected: Digest,
        /// The digest of the bytes actually seen.
        found: Digest,
    },
    /// A blob's length differs from its descriptor.
    #[error("size mismatch for {digest}: expected {expected} bytes, found {found}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Size actually written.
        found: u64,
    },
    /// The blob is not in the store.
    #[error("blob {0} is not in the store")]
    Missing(Digest),
    /// A walk over an image graph hit its budget.
    #[error(transparent)]
    Limit(#[from] WalkLimit),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A blob store rooted at one directory (`blobs/`, `tmp/`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root` and removes temporary files left by
    /// an interrupted writer.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [store.root.join("blobs/sha256"), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        store.remove_stale_temporaries();
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where blobs are written before they are committed (for messages).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn remove_stale_temporaries(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // A temporary file is stale when no live process holds its lock.
            if let Ok(file) = File::open(&path)
                && nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
                    .is_ok()
            {
                tracing::debug!(path = %path.display(), "removing stale temporary blob");
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Whether the blob is present.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Starts writing a new blob. Its temporary file is locked for as long as it is
    /// written, so [`Store::open`] in another process never removes it; a file that such
    /// a process removed between its creation and its locking is made anew.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        for _ in 0..16 {
            if let Some(w) = self.try_writer()? {
                return Ok(w);
            }
        }
        Err(StoreError::Io {
            op: "keep a temporary blob in",
            path: self.tmp_dir(),
            source: io::Error::other("it was removed again and again while being created"),
        })
    }

    /// A writer whose temporary file is locked and still in place; `None` when the file
    /// was removed before it could be locked.
    fn try_writer(&self) -> Result<Option<BlobWriter>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.tmp_dir())
            .map_err(io_err("create temporary blob in", &self.tmp_dir()))?;
        let lock_handle = tmp
            .as_file()
            .try_clone()
            .map_err(io_err("open", tmp.path()))?;
        let lock = nix::fcntl::Flock::lock(lock_handle, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| StoreError::Io {
                op: "lock",
                path: tmp.path().to_path_buf(),
                source: e.into(),
            })?;
        let ours = tmp
            .as_file()
            .metadata()
            .map_err(io_err("stat", tmp.path()))?;
        let in_place =
            fs::metadata(tmp.path()).is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev());
        if !in_place {
            return Ok(None);
        }
        let file = tmp.reopen().map_err(io_err("open", tmp.path()))?;
        Ok(Some(BlobWriter {
            store: self.clone(),
            tmp,
            _lock: Some(lock),
            inner: Sha256Writer::new(BufWriter::with_capacity(256 * 1024, file)),
        }))
    }

    /// Stores `data` as one blob and returns its digest and size.
    pub fn put_bytes(&self, data: &[u8]) -> Result<(Digest, u64), StoreError> {
        let digest = Digest::sha256(data);
        if self.contains(&digest) {
            return Ok((digest, data.len() as u64));
        }
        let mut w = self.writer()?;
        w.write_all(data)
            .map_err(io_err("write", &self.tmp_dir()))?;
        w.commit(Some(&digest))
    }

    /// Copies a blob from a foreign file (e.g. another OCI layout), verifying its digest
    /// and size while copying.
    pub fn import(&self, src: &Path, digest: &Digest, size: u64) -> Result<(), StoreError> {
        let mismatch = |found| StoreError::SizeMismatch {
            digest: digest.clone(),
            expected: size,
            found,
        };
        if self.contains(digest) {
            // The content is known; the descriptor must still describe it truthfully.
            let path = self.blob_path(digest);
            let found = fs::metadata(&path).map_err(io_err("stat", &path))?.len();
            return if found == size {
                Ok(())
            } else {
                Err(mismatch(found))
            };
        }
        let file = open_regular(src).map_err(io_err("open", src))?;
        let found = file.metadata().map_err(io_err("stat", src))?.len();
        if found != size {
            return Err(mismatch(found));
        }
        let mut w = self.writer()?;
        let copied = io::copy(&mut file.take(size + 1), &mut w).map_err(io_err("copy", src))?;
        if copied != size {
            // Dropping the writer removes its temporary file: nothing enters the store.
            return Err(mismatch(copied));
        }
        w.commit(Some(digest))?;
        Ok(())
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Missing(digest.clone()),
            _ => StoreError::Io {
                op: "open",
                path,
                source: e,
            },
        })
    }

    /// Reads a (small) blob whole and verifies its digest.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut data = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut data)
            .map_err(io_err("read", &self.blob_path(digest)))?;
        verified(digest, data)
    }

    /// Reads the manifest or index at the end of `path` (a walk from an image's root) whole,
    /// counted in `budget` and verified: a document larger than the budget allows is
    /// refused before it is read.
    pub fn read_document(
        &self,
        budget: &mut Budget,
        path: &[Digest],
    ) -> Result<Vec<u8>, StoreError> {
        self.read_in_walk(path, |size| budget.document(path, size))
    }

    /// Reads the image config at the end of `path` whole, counted in `budget` (toward its
    /// bytes, without the limit of one manifest) and verified.
    pub fn read_config(&self, budget: &mut Budget, path: &[Digest]) -> Result<Vec<u8>, StoreError> {
        self.read_in_walk(path, |size| budget.config(path, size))
    }

    /// Reads the blob at the end of `path` once `count` has accepted its size.
    fn read_in_walk(
        &self,
        path: &[Digest],
        count: impl FnOnce(u64) -> Result<(), WalkLimit>,
    ) -> Result<Vec<u8>, StoreError> {
        let Some(digest) = path.last() else {
            return Err(StoreError::Io {
                op: "read",
                path: self.root.clone(),
                source: io::Error::other("no blob to read"),
            });
        };
        tracing::debug!("reading document {digest}");
        let file = self.open_blob(digest)?;
        let at = self.blob_path(digest);
        let size = file.metadata().map_err(io_err("stat", &at))?.len();
        count(size)?;
        let mut data = Vec::new();
        file.take(size)
            .read_to_end(&mut data)
            .map_err(io_err("read", &at))?;
        verified(digest, data)
    }

    /// Flushes everything written to the store's filesystem to disk (one `syncfs` instead
    /// of an fsync per blob).
    pub fn sync(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.root).map_err(io_err("open", &self.root))?;
        nix::unistd::syncfs(&dir).map_err(|e| StoreError::Io {
            op: "sync",
            path: self.root.clone(),
            source: e.into(),
        })
    }

    /// The size of a stored blob, if present.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.blob_path(digest))
            .ok()
            .map(|m| m.len())
    }

    /// Re-hashes every blob and returns the ones whose content no longer matches their name.
    pub fn fsck(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.root.join("blobs/sha256");
        let mut bad = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let name = entry.file_name();
            let Ok(digest) = format!("sha256:{}", name.to_string_lossy()).parse::<Digest>() else {
                continue;
            };
            let mut w = Sha256Writer::new(io::sink());
            let mut f = File::open(entry.path()).map_err(io_err("open", &entry.path()))?;
            io::copy(&mut f, &mut w).map_err(io_err("read", &entry.path()))?;
            if w.finish().1 != digest {
                bad.push(digest);
            }
        }
        Ok(bad)
    }
}

/// A blob being written: bytes go to a temporary file and are hashed on the way.
pub struct BlobWriter {
    store: Store,
    tmp: tempfile::NamedTempFile,
    _lock: Option<nix::fcntl::Flock<File>>,
    inner: Sha256Writer<BufWriter<File>>,
}

impl BlobWriter {
    /// Finishes the blob: flushes, checks the digest against `expected` when given, and
    /// renames it into place. Returns the digest and size.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let (buf, digest, size) = self.inner.finish();
        let path = self.tmp.path().to_path_buf();
        let file = buf.into_inner().map_err(|e| StoreError::Io {
            op: "flush",
            path: path.clone(),
            source: e.into_error(),
        })?;
        // No fsync per blob: a build syncs the store's filesystem once at its end
        // (`Store::sync`), and users of a blob check its size or digest.
        drop(file);
        if let Some(expected) = expected
            && expected != &digest
        {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                found: digest,
            });
        }
        let dest = self.store.blob_path(&digest);
        self.tmp.persist(&dest).map_err(|e| StoreError::Io {
            op: "rename into",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a file of a foreign tree (an OCI layout's blob) for reading, refusing anything but
/// a regular file — a FIFO would block and a device never end — without blocking on it.
pub fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// `data` when it hashes to `digest`.
fn verified(digest: &Digest, data: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let found = Digest::sha256(&data);
    if &found != digest {
        return Err(StoreError::DigestMismatch {
            expected: digest.clone(),
            found,
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_named_by_digest_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (d, n) = store.put_bytes(b"hello").unwrap();
        assert_eq!(n, 5);
        assert_eq!(d, Digest::sha256(b"hello"));
        assert_eq!(fs::read(store.blob_path(&d)).unwrap(), b"hello");
        assert_eq!(store.read_verified(&d).unwrap(), b"hello");
        fs::write(store.blob_path(&d), b"tampered").unwrap();
        assert!(matches!(
            store.read_verified(&d),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert_eq!(store.fsck().unwrap(), vec![d]);
    }

    #[test]
    fn wrong_expected_digest_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"abc").unwrap();
        let wrong = Digest::sha256(b"xyz");
        assert!(w.commit(Some(&wrong)).is_err());
        assert!(!store.contains(&wrong));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn stale_temporaries_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        fs::write(dir.path().join("tmp/blob-stale"), b"x").unwrap();
        Store::open(dir.path()).unwrap();
        assert!(!dir.path().join("tmp/blob-stale").exists());
    }
}
