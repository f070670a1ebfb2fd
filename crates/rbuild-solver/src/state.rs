//! The state directory (`--root`): the one type that knows its layout. Every path below
//! the state directory is joined here; the solver, the exporters and `prune` ask it.

use rbuild_core::Digest;
use std::fs;
use std::path::{Path, PathBuf};

/// A state-directory operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct StateError {
    /// The path it failed on.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl StateError {
    fn at(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |source| StateError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A held lock on the state directory (released on drop).
pub type StateLock = nix::fcntl::Flock<fs::File>;

/// rbuild's state directory and its layout:
///
/// | path | what |
/// |---|---|
/// | `store/` | the blob store |
/// | `layers/<diff-id>/` | unpacked layers |
/// | `cache/<key>` | cache index entries |
/// | `urls/<sha256 of url>.json` | the last download of each `ADD` URL (validators, blob) |
/// | `tmp/` | per-step work directories |
/// | `run/` | the build's private binfmt_misc mount |
/// | `cache-mounts/` | `RUN --mount=type=cache` directories |
/// | `lock` | the state lock |
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// What `prune` removes: everything but `run/` and `lock`.
const PRUNABLE: &[&str] = &[CACHE, CACHE_MOUNTS, LAYERS, STORE, TMP, URLS];

const STORE: &str = "store";
const LAYERS: &str = "layers";
const CACHE: &str = "cache";
const URLS: &str = "urls";
const TMP: &str = "tmp";
const RUN: &str = "run";
const CACHE_MOUNTS: &str = "cache-mounts";
const LOCK: &str = "lock";

impl StateDir {
    /// Creates (if needed) and opens the state directory at `root`, resolving symlinks.
    ///
    /// `layers/` and `tmp/` are kept private (0700): as root they may hold device nodes
    /// from base images, which no other user may reach.
    pub fn create(root: &Path) -> Result<StateDir, StateError> {
        fs::create_dir_all(root).map_err(StateError::at(root))?;
        let root = root.canonicalize().map_err(StateError::at(root))?;
        for private in [LAYERS, TMP] {
            private_dir(&root.join(private))?;
        }
        Ok(StateDir { root })
    }

    /// A state directory at `root`, taken as it is (no I/O).
    pub fn at(root: PathBuf) -> StateDir {
        StateDir { root }
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob store's directory.
    pub fn store(&self) -> PathBuf {
        self.root.join(STORE)
    }

    /// The directory of unpacked layers.
    pub fn layers(&self) -> PathBuf {
        self.root.join(LAYERS)
    }

    /// The unpacked directory of the layer with diff id `diff_id`.
    pub fn layer(&self, diff_id: &Digest) -> PathBuf {
        self.layers().join(diff_id.hex())
    }

    /// The cache index directory.
    pub fn cache_index(&self) -> PathBuf {
        self.root.join(CACHE)
    }

    /// The cache index entry of a step key.
    pub fn cache_entry(&self, key: &Digest) -> PathBuf {
        self.cache_index().join(key.hex())
    }

    /// The record of the last download of `url` (its ETag, Last-Modified and blob).
    pub fn url_record(&self, url: &str) -> PathBuf {
        let name = Digest::sha256(url.as_bytes());
        self.root.join(URLS).join(format!("{}.json", name.hex()))
    }

    /// The directory of temporary step directories.
    pub fn tmp(&self) -> PathBuf {
        self.root.join(TMP)
    }

    /// A fresh temporary directory under `tmp/` (removed on drop).
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, StateError> {
        let tmp = self.tmp();
        fs::create_dir_all(&tmp).map_err(StateError::at(&tmp))?;
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp)
            .map_err(StateError::at(&tmp))
    }

    /// The directory of the build's private binfmt_misc mount (created).
    pub fn run_dir(&self) -> Result<PathBuf, StateError> {
        let dir = self.root.join(RUN);
        fs::create_dir_all(&dir).map_err(StateError::at(&dir))?;
        Ok(dir)
    }

    /// The directory of `RUN --mount=type=cache` directories.
    pub fn cache_mounts(&self) -> PathBuf {
        self.root.join(CACHE_MOUNTS)
    }

    /// The cache mount directory named by `name` (a hex digest of its id).
    pub fn cache_mount(&self, name: &str) -> PathBuf {
        self.cache_mounts().join(name)
    }

    /// What `prune` removes: the whole cache, or only the cache mounts.
    pub fn prunable(&self, only_cache_mounts: bool) -> Vec<PathBuf> {
        let names: &[&str] = if only_cache_mounts {
            &[CACHE_MOUNTS]
        } else {
            PRUNABLE
        };
        names.iter().map(|n| self.root.join(n)).collect()
    }

    fn lock_file(&self) -> Result<fs::File, StateError> {
        let path = self.root.join(LOCK);
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StateError::at(&path))
    }

    fn lock_error(&self, e: nix::Error) -> StateError {
        StateError {
            path: self.root.join(LOCK),
            source: e.into(),
        }
    }

    /// Locks the state directory for this process alone (for `prune`); `waiting` is called
    /// first when another build holds it.
    pub fn lock_exclusive(&self, waiting: impl FnOnce()) -> Result<StateLock, StateError> {
        use nix::fcntl::{Flock, FlockArg};
        match Flock::lock(self.lock_file()?, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(l),
            Err((file, _)) => {
                waiting();
                Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| self.lock_error(e))
            }
        }
    }

    /// Takes a build's shared lock; when no other build is running, first removes what a
    /// killed build left in `tmp/`.
    pub fn lock_for_build(&self) -> Result<StateLock, StateError> {
        use nix::fcntl::{Flock, FlockArg};
        match Flock::lock(self.lock_file()?, FlockArg::LockExclusiveNonblock) {
            Ok(alone) => {
                self.clean_tmp();
                alone
                    .relock(FlockArg::LockShared)
                    .map_err(|e| self.lock_error(e))?;
                Ok(alone)
            }
            Err((file, _)) => {
                Flock::lock(file, FlockArg::LockShared).map_err(|(_, e)| self.lock_error(e))
            }
        }
    }

    /// Removes step directories left by a build that was killed (no other build holds the
    /// state directory, so none of them is in use).
    fn clean_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.tmp()) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            make_work_dir_removable(&p);
            let _ = fs::remove_dir_all(&p);
        }
    }
}

/// Creates `dir` (if needed) with mode 0700, or makes an existing one 0700, and asks the
/// filesystem to spread the directories made in it ([`spread_subdirectories`]).
fn private_dir(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(StateError::at(dir))?;
        }
        Err(e) => return Err(StateError::at(dir)(e)),
    }
    spread_subdirectories(dir);
    Ok(())
}

/// `FS_TOPDIR_FL`: "top of a directory hierarchy" (`chattr +T`).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks `dir` as the top of directory hierarchies (`chattr +T`), so that ext4 places each
/// directory made in it (a layer's tree, a step's work directory) in a block group of its
/// own choosing instead of the parent's. On ext4 without a journal, the inode allocator
/// skips every inode freed in the last minutes, reading its inode-table block each time: in
/// a group where a previous tree was just deleted, creating a file costs ~0.5 ms instead of
/// ~10 µs. Best effort: filesystems without the flag ignore it.
fn spread_subdirectories(dir: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(file) = fs::File::open(dir) else {
        return;
    };
    let get = nix::request_code_read!(b'f', 1, std::mem::size_of::<libc::c_long>());
    let set = nix::request_code_write!(b'f', 2, std::mem::size_of::<libc::c_long>());
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one int through a valid pointer.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), get as _, &mut flags) != 0 || flags & FS_TOPDIR_FL != 0 {
            return;
        }
        flags |= FS_TOPDIR_FL;
        let _ = libc::ioctl(file.as_raw_fd(), set as _, &flags);
    }
}

/// overlayfs leaves `<step>/work/work` with mode 000; make it deletable for a rootless
/// caller.
pub(crate) fn make_work_dir_removable(step_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(
        step_dir.join("work/work"),
        fs::Permissions::from_mode(0o700),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_below_the_root() {
        let s = StateDir::at("/s".into());
        let d = Digest::sha256(b"x");
        assert_eq!(s.layer(&d), Path::new("/s/layers").join(d.hex()));
        assert_eq!(s.cache_entry(&d), Path::new("/s/cache").join(d.hex()));
        assert_eq!(s.prunable(true), vec![PathBuf::from("/s/cache-mounts")]);
        assert!(!s.prunable(false).contains(&PathBuf::from("/s/lock")));
    }
}
