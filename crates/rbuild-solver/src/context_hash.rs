//! The content hash of what a COPY reads from a build context: a Merkle hash of the named
//! files, links and trees, computed through directory descriptors (no path is walked twice)
//! and with the subdirectories of the first directory that has several hashed on several
//! threads (each thread then walks its subtrees alone, so threads never multiply).
//!
//! A file's hash is the sha256 of its bytes, a link's of its target; a directory's hash
//! covers each entry in name order as (name, mode, entry hash), so the result does not
//! depend on the order threads finish in.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use rbuild_core::Digest;
use sha2::{Digest as _, Sha256};

/// Most threads hashing the subdirectories of one directory.
const MAX_THREADS: usize = 4;

/// A content hash of the named paths below `root` (each a file, link or whole tree), in
/// the order given.
pub fn hash_paths(root: &Path, rels: &[PathBuf]) -> io::Result<Digest> {
    let root_fd = open_dir_at(None, root.as_os_str())?;
    let mut h = Sha256::new();
    for rel in rels {
        let (parent, name) = split(rel);
        let dir = match parent {
            Some(p) => open_dir_at(Some(root_fd.as_fd()), p.as_os_str())?,
            None => root_fd.try_clone()?,
        };
        let name = name.unwrap_or_else(|| OsStr::new("."));
        let st = stat_at(dir.as_fd(), name)?;
        let entry = entry_hash(dir.as_fd(), name, &st, Threads::Allowed)?;
        update_entry(&mut h, rel.as_os_str(), &st, &entry);
    }
    Ok(Digest::from_sha256_bytes(&h.finalize()))
}

/// `rel`'s parent (if any) and final name (`None` for `.` or an empty path).
fn split(rel: &Path) -> (Option<&Path>, Option<&OsStr>) {
    let name = rel.file_name();
    let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
    (parent, name)
}

fn update_entry(h: &mut Sha256, name: &OsStr, st: &FileStat, entry: &[u8; 32]) {
    h.update(name.as_bytes());
    h.update([0]);
    h.update(st.st_mode.to_le_bytes());
    h.update(entry);
    h.update([0xff]);
}

/// Whether a directory's subdirectories may be hashed on threads of their own: only at the
/// first level that has several, so that nested directories never multiply threads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Threads {
    Allowed,
    Not,
}

/// The hash of one entry of `dir`: its content, link target or tree.
fn entry_hash(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &FileStat,
    threads: Threads,
) -> io::Result<[u8; 32]> {
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let mut h = Sha256::new();
    if kind == SFlag::S_IFDIR {
        return dir_hash(&open_dir_at(Some(dir), name)?, threads);
    } else if kind == SFlag::S_IFLNK {
        h.update(readlinkat(dir, name)?.as_bytes());
    } else if kind == SFlag::S_IFREG {
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut file = std::fs::File::from(fd);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().into())
}

/// The hash of a directory: its entries in name order, subdirectories on several threads.
fn dir_hash(dir: &OwnedFd, threads: Threads) -> io::Result<[u8; 32]> {
    let mut entries = read_names(dir)?;
    entries.sort();
    let stats = entries
        .iter()
        .map(|n| stat_at(dir.as_fd(), n))
        .collect::<io::Result<Vec<_>>>()?;
    let hashes = hash_entries(dir.as_fd(), &entries, &stats, threads)?;
    let mut h = Sha256::new();
    for ((name, st), entry) in entries.iter().zip(&stats).zip(&hashes) {
        update_entry(&mut h, name, st, entry);
    }
    Ok(h.finalize().into())
}

/// Every entry's hash, in order; several threads when there are several subdirectories and
/// `threads` allows them (their own subdirectories are then hashed on the same thread).
fn hash_entries(
    dir: BorrowedFd<'_>,
    names: &[OsString],
    stats: &[FileStat],
    allowed: Threads,
) -> io::Result<Vec<[u8; 32]>> {
    let subdirs = stats
        .iter()
        .filter(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits())
        .count();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(subdirs);
    if threads < 2 || allowed == Threads::Not {
        return names
            .iter()
            .zip(stats)
            .map(|(n, st)| entry_hash(dir, n, st, allowed))
            .collect();
    }
    let next = AtomicUsize::new(0);
    let work = || -> io::Result<Vec<(usize, [u8; 32])>> {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(name) = names.get(i) else {
                return Ok(done);
            };
            done.push((i, entry_hash(dir, name, &stats[i], Threads::Not)?));
        }
    };
    let mut out = vec![[0u8; 32]; names.len()];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        for handle in handles {
            let done = handle
                .join()
                .map_err(|_| io::Error::other("a context hashing thread panicked"))??;
            for (i, hash) in done {
                out[i] = hash;
            }
        }
        Ok(out)
    })
}

fn read_names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut d = nix::dir::Dir::from_fd(dir.try_clone()?)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            names.push(name.to_os_string());
        }
    }
    Ok(names)
}

fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<FileStat> {
    Ok(fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?)
}

/// Opens a directory below `dir` (or the path itself, following links: the context root is
/// the user's choice) without following a final link below it.
fn open_dir_at(dir: Option<BorrowedFd<'_>>, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = match dir {
        Some(d) => openat(d, name, flags | OFlag::O_NOFOLLOW, Mode::empty())?,
        None => {
            let file = std::fs::File::open(name)?;
            OwnedFd::from(file)
        }
    };
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for d in 0..6 {
            let sub = dir.path().join(format!("t/d{d}/deep"));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join("f"), format!("{d}")).unwrap();
        }
        symlink("d0", dir.path().join("t/link")).unwrap();
        dir
    }

    #[test]
    fn every_file_mode_and_link_target_counts_and_nothing_else() {
        let dir = tree();
        let named = [PathBuf::from("t")];
        let first = hash_paths(dir.path(), &named).unwrap();
        assert_eq!(
            first,
            hash_paths(dir.path(), &named).unwrap(),
            "stable across threads"
        );
        let changes: [&dyn Fn(&Path); 3] = [
            &|p| std::fs::write(p.join("t/d5/deep/f"), "changed").unwrap(),
            &|p| {
                let f = p.join("t/d3/deep/f");
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap()
            },
            &|p| {
                std::fs::remove_file(p.join("t/link")).unwrap();
                symlink("d1", p.join("t/link")).unwrap()
            },
        ];
        for change in changes {
            let dir = tree();
            change(dir.path());
            assert_ne!(first, hash_paths(dir.path(), &named).unwrap());
        }
        // Another tree with the same contents (different times and inodes) hashes the same.
        assert_eq!(first, hash_paths(tree().path(), &named).unwrap());
    }

    #[test]
    fn the_context_root_itself_can_be_named() {
        let dir = tree();
        let all = hash_paths(dir.path(), &[PathBuf::from(".")]).unwrap();
        std::fs::write(dir.path().join("new"), "x").unwrap();
        assert_ne!(all, hash_paths(dir.path(), &[PathBuf::from(".")]).unwrap());
    }
}
