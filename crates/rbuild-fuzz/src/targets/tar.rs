//! `tar-unpack`: [`rbuild_snapshot::unpack_layer`] on arbitrary tar streams, then the
//! layer-tar writer round trip.
//!
//! Header checksums are recomputed before unpacking ([`fix_tar_checksums`]), otherwise
//! almost every mutation would only test the checksum check.
//!
//! Every input is unpacked into `box/dest` of a fresh per-input directory `box/`, beside a
//! sentinel directory `box/sentinel/` and an outer sentinel `outer/` one level up. After
//! the unpack nothing may have appeared, changed or gained a hard link outside `box/dest`.
//! The work runs on one worker thread that, where it may (`CAP_SYS_CHROOT`), unshares its
//! filesystem attributes and chroots into the scratch directory, so even an unpacker that
//! followed an absolute path or `..` would write into the scratch directory — where the
//! check sees it — and never into the host's files.
//!
//! When the unpack succeeds, `write_layer_tar` turns `dest` into a layer tar again; that tar
//! must unpack, and writing the second unpack must give the same bytes (a fixed point).

use rbuild_snapshot::{DiffOptions, SnapshotError, unpack_layer, write_layer_tar};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, MutexGuard};

/// Tar header fields, type flags, PAX keywords and hostile path pieces.
pub(crate) static DICTIONARY: &[&[u8]] = &[
    b"../",
    b"..",
    b"/",
    b"./",
    b"//",
    b"/etc/passwd",
    b"sentinel/keep",
    b"../sentinel/keep",
    b"../../outer/keep",
    b"a/",
    b"a/b",
    b".wh.",
    b".wh..wh..opq",
    b".wh..wh.plnk",
    b"ustar\0",
    b"ustar  \0",
    b"00",
    b"0000644\0",
    b"0000755\0",
    b"0004755\0",
    b"0000000\0",
    b"00000000012\0",
    b"77777777777\0",
    b"\x80\0\0\0\0\0\0\0\0\0\0\x01",
    b"0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"5",
    b"6",
    b"7",
    b"x",
    b"g",
    b"L",
    b"K",
    b"S",
    b"D",
    b"M",
    b"V",
    b"\0",
    b"path=",
    b"linkpath=",
    b"size=",
    b"mtime=",
    b"uid=",
    b"gid=",
    b"SCHILY.xattr.user.x=",
    b"SCHILY.xattr.trusted.overlay.opaque=",
    b"SCHILY.xattr.security.capability=",
    b"GNU.sparse.",
    b"30 path=../../outer/pax-escape\n",
    b"16 path=a/./b/\n",
    b"20 linkpath=/etc/x\n",
    b"12 size=99\n",
    b"18 mtime=1.999999\n",
];

/// Recomputes the checksum of every header block so that mutated headers reach the code
/// behind the checksum check. Walks the stream by the header size fields (octal or base-256)
/// and stops at the first block whose size it cannot read.
pub fn fix_tar_checksums(data: &mut [u8]) {
    let mut off = 0usize;
    while let Some(header) = data.get_mut(off..off + 512) {
        if header.iter().all(|&b| b == 0) {
            off += 512;
            continue;
        }
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        let field = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(&field.as_bytes()[..8]);
        let Some(size) = header_size(&header[124..136]) else {
            return;
        };
        let Some(next) = size
            .checked_add(511)
            .map(|s| s / 512 * 512)
            .and_then(|s| s.checked_add(512))
            .and_then(|s| s.checked_add(off as u64))
            .and_then(|s| usize::try_from(s).ok())
        else {
            return;
        };
        off = next;
    }
}

fn header_size(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// Runs one input (on the worker thread; see the module docs).
pub fn tar_unpack(data: &[u8]) -> u64 {
    let mut input = data.to_vec();
    fix_tar_checksums(&mut input);
    let mut worker = worker();
    let Some(w) = worker.as_mut() else {
        unreachable!("worker() starts the worker");
    };
    if w.tx.send(Job::Run(input)).is_err() {
        panic!("harness: the unpack worker is gone");
    }
    match w.rx.recv() {
        Ok(Ok(fp)) => fp,
        Ok(Err(message)) => panic!("{message}"),
        Err(_) => panic!("harness: the unpack worker is gone"),
    }
}

/// Stops the unpack worker (if one runs) and removes its scratch directory.
pub fn shutdown_tar_worker() {
    let mut worker = worker_slot();
    if let Some(w) = worker.take() {
        let _ = w.tx.send(Job::Stop);
        let _ = w.thread.join();
        drop(w.scratch);
    }
}

enum Job {
    Run(Vec<u8>),
    Stop,
}

struct Worker {
    tx: Sender<Job>,
    rx: Receiver<Result<u64, String>>,
    thread: std::thread::JoinHandle<()>,
    scratch: tempfile::TempDir,
}

static WORKER: Mutex<Option<Worker>> = Mutex::new(None);

fn worker_slot() -> MutexGuard<'static, Option<Worker>> {
    WORKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker() -> MutexGuard<'static, Option<Worker>> {
    let mut slot = worker_slot();
    if slot.is_none() {
        let scratch = match tempfile::Builder::new()
            .prefix("rbuild-fuzz-tar.")
            .tempdir()
        {
            Ok(d) => d,
            Err(e) => panic!("harness: cannot create a temp dir: {e}"),
        };
        let (tx, jobs) = channel();
        let (results, rx) = channel();
        let root = scratch.path().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("tar-unpack".into())
            .stack_size(8 << 20)
            .spawn(move || worker_main(&root, &jobs, &results));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => panic!("harness: cannot start the unpack worker: {e}"),
        };
        *slot = Some(Worker {
            tx,
            rx,
            thread,
            scratch,
        });
    }
    slot
}

/// Confines the calling thread to `root`: its own root directory, working directory and
/// umask, then chroot. Returns false (and changes nothing) where that is not permitted.
fn jail_thread(root: &Path) -> bool {
    let Ok(path) = CString::new(root.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: unshare(CLONE_FS) only detaches this thread's fs attributes (root, cwd, umask)
    // from the other threads; chroot/chdir take a valid NUL-terminated path.
    unsafe {
        if libc::unshare(libc::CLONE_FS) != 0 {
            return false;
        }
        if libc::chroot(path.as_ptr()) != 0 {
            return false;
        }
        libc::chdir(c"/".as_ptr()) == 0
    }
}

fn worker_main(root: &Path, jobs: &Receiver<Job>, results: &Sender<Result<u64, String>>) {
    let base = if jail_thread(root) {
        PathBuf::from("/")
    } else {
        eprintln!(
            "tar-unpack: cannot chroot (not root?); unpacking unconfined in {}",
            root.display()
        );
        root.to_path_buf()
    };
    let outer = base.join("outer");
    if let Err(e) = make_sentinel(&outer) {
        let _ = results.send(Err(format!(
            "harness: cannot create {}: {e}",
            outer.display()
        )));
        return;
    }
    let outer_before = snapshot(&outer);
    while let Ok(Job::Run(input)) = jobs.recv() {
        let run = std::panic::catch_unwind(|| one_input(&base, &input, &outer, &outer_before));
        let result = match run {
            Ok(r) => r,
            Err(payload) => Err(crate::runner::panic_text(payload.as_ref())),
        };
        if results.send(result).is_err() {
            return;
        }
    }
}

fn make_sentinel(dir: &Path) -> std::io::Result<()> {
    fs::create_dir(dir)?;
    fs::write(dir.join("keep"), b"sentinel\n")?;
    fs::set_permissions(dir.join("keep"), fs::Permissions::from_mode(0o644))?;
    fs::create_dir(dir.join("sub"))?;
    symlink("keep", dir.join("link"))
}

/// What a directory tree looks like: per relative path, type, mode, size, link count,
/// mtime, and symlink target or content.
type Tree = BTreeMap<PathBuf, (u32, u64, u64, i64, Vec<u8>)>;

fn snapshot(dir: &Path) -> Result<Tree, String> {
    let mut tree = Tree::new();
    walk(dir, Path::new(""), &mut tree).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(tree)
}

fn walk(dir: &Path, rel: &Path, tree: &mut Tree) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(dir.join(rel))?;
    let body = if meta.file_type().is_symlink() {
        fs::read_link(dir.join(rel))?
            .as_os_str()
            .as_bytes()
            .to_vec()
    } else if meta.is_file() {
        fs::read(dir.join(rel))?
    } else {
        Vec::new()
    };
    tree.insert(
        rel.to_path_buf(),
        (meta.mode(), meta.size(), meta.nlink(), meta.mtime(), body),
    );
    if meta.is_dir() {
        for entry in fs::read_dir(dir.join(rel))? {
            walk(dir, &rel.join(entry?.file_name()), tree)?;
        }
    }
    Ok(())
}

fn names(dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| format!("harness: list {}: {e}", dir.display()))? {
        let e = e.map_err(|e| format!("harness: list {}: {e}", dir.display()))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(out)
}

/// Removes `dir`, first making every directory in it writable and searchable (a layer may
/// have left modes that stop a non-root owner from emptying it).
fn force_remove(dir: &Path) -> Result<(), String> {
    if fs::symlink_metadata(dir).is_err() || fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    fn open_up(d: &Path) {
        let _ = fs::set_permissions(d, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    open_up(&e.path());
                }
            }
        }
    }
    open_up(dir);
    fs::remove_dir_all(dir).map_err(|e| format!("harness: cannot remove {}: {e}", dir.display()))
}

fn one_input(
    base: &Path,
    input: &[u8],
    outer: &Path,
    outer_before: &Result<Tree, String>,
) -> Result<u64, String> {
    let boxdir = base.join("box");
    force_remove(&boxdir)?;
    let dest = boxdir.join("dest");
    let sentinel = boxdir.join("sentinel");
    fs::create_dir_all(&dest).map_err(|e| format!("harness: mkdir {}: {e}", dest.display()))?;
    make_sentinel(&sentinel).map_err(|e| format!("harness: sentinel: {e}"))?;
    let before = snapshot(&sentinel);

    let unpacked = unpack_layer(input, &dest);

    let check_outside = |extra: &[&str]| -> Result<(), String> {
        let mut expect_box: Vec<String> = ["dest", "sentinel"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        expect_box.sort();
        let found = names(&boxdir)?;
        if found != expect_box {
            return Err(format!(
                "unpack wrote outside its destination: the sandbox now holds {found:?}"
            ));
        }
        let found = names(base)?;
        if found != ["box", "outer"] {
            return Err(format!(
                "unpack wrote outside its destination: the scratch root now holds {found:?}"
            ));
        }
        if snapshot(&sentinel) != before {
            return Err("unpack changed the sentinel directory beside its destination".into());
        }
        if &snapshot(outer) != outer_before {
            return Err("unpack changed the sentinel directory outside the sandbox".into());
        }
        Ok(())
    };
    check_outside(&[])?;

    let stats = match unpacked {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return Ok(crate::fingerprint((0u8, error_kind(&e))));
        }
    };
    let shape = (
        stats.files.min(4),
        stats.dirs.min(4),
        stats.symlinks.min(4),
        stats.hardlinks.min(4),
        stats.whiteouts.min(4),
        stats.opaque_dirs.min(2),
        stats.skipped.min(2),
        stats.devices.min(2) + stats.fifos.min(2),
    );

    // Round trip through the layer-tar writer, in memory: only for trees that fit (sparse
    // entries can unpack to far more bytes than the input holds).
    if tree_bytes(&dest) > ROUND_TRIP_MAX_BYTES {
        return Ok(crate::fingerprint((2u8, shape)));
    }
    let opts = DiffOptions::default();
    let mut first = Vec::new();
    if let Err(e) = write_layer_tar(&dest, &[], &mut first, &opts) {
        return Ok(crate::fingerprint((1u8, shape, error_kind(&e))));
    }
    let again = boxdir.join("again");
    fs::create_dir(&again).map_err(|e| format!("harness: mkdir {}: {e}", again.display()))?;
    if let Err(e) = unpack_layer(&first[..], &again) {
        return Err(format!(
            "a layer tar written from an unpacked layer does not unpack: {e}"
        ));
    }
    check_outside(&["again"])?;
    let mut second = Vec::new();
    if let Err(e) = write_layer_tar(&again, &[], &mut second, &opts) {
        return Err(format!(
            "writing the re-unpacked layer fails where the first write worked: {e}"
        ));
    }
    if first != second {
        return Err(format!(
            "layer tar round trip is not a fixed point: {} vs {} bytes, first difference at byte {}",
            first.len(),
            second.len(),
            first
                .iter()
                .zip(&second)
                .position(|(a, b)| a != b)
                .unwrap_or(first.len().min(second.len()))
        ));
    }
    Ok(crate::fingerprint((2u8, shape)))
}

fn error_kind(e: &SnapshotError) -> String {
    match e {
        SnapshotError::UnsafePath { reason, .. } => format!("unsafe:{reason}"),
        SnapshotError::Io { op, source, .. } => format!("io:{op}:{:?}", source.kind()),
        SnapshotError::TarRead(err) => format!("read:{:?}", err.kind()),
        other => format!("{:?}", std::mem::discriminant(other)),
    }
}

/// Largest unpacked tree the in-memory round trip takes.
const ROUND_TRIP_MAX_BYTES: u64 = 64 << 20;

/// The bytes of the regular files below `dir` (links not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_bytes(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}
