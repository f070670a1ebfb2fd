//! Layer directories under `<state>/layers/<diff-id>`: the unpacked form of every layer,
//! stacked as overlay lower directories. A directory appears under its final name only
//! when complete (unpacked or committed in a temporary directory, then renamed).

use crate::{LayerError, SolveError, Solver, StateDir, TempKind};
use rbuild_core::LayerCodec;
use rbuild_image::{LayerBlob, LayerWriter};
use rbuild_snapshot::{DiffOptions, SnapshotError};
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SolveError + '_ {
    move |e| SolveError::Io(path.to_path_buf(), e)
}

/// A fresh temporary directory under the state directory (removed on drop).
pub fn temp_dir(state: &StateDir, kind: TempKind) -> Result<tempfile::TempDir, SolveError> {
    Ok(state.temp_dir(kind)?)
}

/// The error of a layer blob, naming its digest and media type.
fn layer_error(blob: &LayerBlob, reason: LayerError) -> SolveError {
    SolveError::Layer {
        digest: blob.digest.clone(),
        media_type: blob.media_type.clone(),
        reason: Box::new(reason),
    }
}

/// The uncompressed tar stream of `blob`, read from `raw`, decoded as its media type says.
fn decoded<'a>(blob: &LayerBlob, raw: impl Read + 'a) -> Result<Box<dyn Read + 'a>, SolveError> {
    let codec = LayerCodec::from_media_type(&blob.media_type)
        .ok_or_else(|| layer_error(blob, LayerError::UnsupportedMediaType))?;
    let file = BufReader::with_capacity(1 << 20, raw);
    Ok(match codec {
        LayerCodec::Tar => Box::new(file),
        LayerCodec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        LayerCodec::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(file)
                .map_err(|e| layer_error(blob, LayerError::Unpack(SnapshotError::TarRead(e))))?,
        ),
    })
}

/// Returns the unpacked directory of `blob`, unpacking it from the store if needed. The blob
/// is decompressed as its media type says; errors name the layer.
pub fn ensure_unpacked(solver: &Solver, blob: &LayerBlob) -> Result<PathBuf, SolveError> {
    ensure_unpacked_with(solver, blob, None)
}

/// [`ensure_unpacked`], reporting the bytes of the blob read while unpacking as byte
/// progress of `vertex`.
pub fn ensure_unpacked_with(
    solver: &Solver,
    blob: &LayerBlob,
    vertex: Option<rbuild_progress::VertexId>,
) -> Result<PathBuf, SolveError> {
    unpack_into_state(solver.state, solver.store, blob, solver.events, vertex)
}

/// [`ensure_unpacked`] for callers without a solver (`rbuild run`): the unpacked directory
/// of `blob` under `state`, unpacked from `store` if needed. Byte progress goes to
/// `events` as statuses of `vertex` when given; device nodes that could not be created
/// are a warning (on `vertex`, if any).
pub fn unpack_into_state(
    state: &StateDir,
    store: &rbuild_store::Store,
    blob: &LayerBlob,
    events: &dyn rbuild_progress::EventSink,
    vertex: Option<rbuild_progress::VertexId>,
) -> Result<PathBuf, SolveError> {
    let dest = state.layer(&blob.diff_id);
    if dest.is_dir() {
        return Ok(dest);
    }
    let layer_err = |reason: LayerError| layer_error(blob, reason);
    if LayerCodec::from_media_type(&blob.media_type).is_none() {
        return Err(layer_err(LayerError::UnsupportedMediaType));
    }
    let tmp = temp_dir(state, TempKind::Unpack)?;
    let target = tmp.path().join("layer");
    fs::create_dir(&target).map_err(io(&target))?;
    let meter = vertex.map(|v| {
        let id = format!("extracting {}", blob.digest);
        rbuild_progress::Meter::start(events, v, id, Some(blob.size))
    });
    let metered = rbuild_progress::MeteredRead::new(store.open_blob(&blob.digest)?, meter);
    let reader = decoded(blob, metered)?;
    let mut hashing = HashingReader::new(SpaceGuard::new(reader, state.root()));
    let unpacked = rbuild_snapshot::unpack_layer(&mut hashing, &target).and_then(|stats| {
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(SnapshotError::TarRead)
            .map(|_| stats)
    });
    let stats = match unpacked {
        Ok(stats) => stats,
        Err(e) => return Err(layer_err(hashing.inner.explain(e))),
    };
    let found = hashing.digest();
    if found != blob.diff_id {
        return Err(layer_err(LayerError::DiffId {
            expected: blob.diff_id.clone(),
            found,
        }));
    }
    let noted = [
        stats.skipped_devices.warning(),
        stats.unmapped_owners.warning(),
    ];
    for w in noted.into_iter().flatten() {
        warn(events, vertex, format!("layer {}: {w}", blob.digest));
    }
    if stats.root_opaque {
        mark_root_opaque(&target)?;
    }
    place(&target, &dest)?;
    Ok(dest)
}

/// `force-compression=true`: `blob` stored again with the build's compression (same
/// diff id, new blob digest), unless it already has its codec (under any family's name:
/// a Docker gzip layer is an OCI gzip layer with another descriptor).
pub fn recompress(solver: &Solver, blob: &LayerBlob) -> Result<LayerBlob, SolveError> {
    if LayerCodec::from_media_type(&blob.media_type) == Some(solver.compression.codec()) {
        return Ok(blob.clone());
    }
    let layer_err = |reason: LayerError| layer_error(blob, reason);
    let mut reader = decoded(blob, solver.store.open_blob(&blob.digest)?)?;
    let mut writer = LayerWriter::new(solver.store, solver.compression)?;
    std::io::copy(&mut reader, &mut writer)
        .map_err(|e| layer_err(LayerError::Unpack(SnapshotError::TarRead(e))))?;
    let out = writer.finish()?;
    if out.diff_id != blob.diff_id {
        return Err(layer_err(LayerError::DiffId {
            expected: blob.diff_id.clone(),
            found: out.diff_id,
        }));
    }
    Ok(out)
}

/// The xattr that marks a layer directory whose layer hides everything below it.
const OPAQUE_XATTR: &str = "user.overlay.opaque";

/// Records that a layer had `.wh..wh..opq` at its root, so that stacking it drops the layers
/// below (see [`visible_lowers`]).
fn mark_root_opaque(dir: &Path) -> Result<(), SolveError> {
    rbuild_fsroot::Root::open(dir)
        .and_then(|root| root.at(Path::new(""))?.set_xattr(OPAQUE_XATTR, b"y"))
        .map_err(io(dir))
}

/// Layer directories (top-most first) as a stack sees them: a layer whose root is opaque
/// hides every layer below it, as the OCI layer spec says of a root `.wh..wh..opq`.
pub fn visible_lowers(dirs: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        if out.contains(&dir) {
            continue;
        }
        let opaque = root_is_opaque(&dir);
        out.push(dir);
        if opaque {
            break;
        }
    }
    out
}

fn root_is_opaque(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: valid nul-terminated strings and a buffer of the given size.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// Stops a decompressing reader before it fills the state directory's file system (a
/// "gzip bomb" layer): every 16 MiB it checks the free space, and refuses to go below the
/// larger of 16 MiB and 1% of the file system.
struct SpaceGuard<R> {
    inner: R,
    state: PathBuf,
    read: u64,
    next_check: u64,
    tripped: Option<u64>,
}

const SPACE_CHECK_EVERY: u64 = 16 << 20;

impl<R: Read> SpaceGuard<R> {
    fn new(inner: R, state: &Path) -> Self {
        SpaceGuard {
            inner,
            state: state.to_path_buf(),
            read: 0,
            next_check: SPACE_CHECK_EVERY,
            tripped: None,
        }
    }

    /// Free bytes, and the reserve that must stay free.
    fn space(&self) -> Option<(u64, u64)> {
        let st = nix::sys::statvfs::statvfs(&self.state).ok()?;
        let frsize = st.fragment_size();
        let free = st.blocks_available() as u64 * frsize;
        let total = st.blocks() as u64 * frsize;
        Some((free, (total / 100).max(16 << 20)))
    }

    /// The layer error an unpack failure stands for: running out of space gets its own.
    fn explain(&self, e: SnapshotError) -> LayerError {
        let enospc = match &e {
            SnapshotError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            SnapshotError::TarRead(source) => source.raw_os_error() == Some(libc::ENOSPC),
            _ => false,
        };
        if self.tripped.is_some() || enospc {
            let free = self.space().map(|(f, _)| f).unwrap_or(0);
            return LayerError::NoSpace {
                written: self.read,
                state: self.state.clone(),
                free,
            };
        }
        LayerError::Unpack(e)
    }
}

impl<R: Read> Read for SpaceGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read >= self.next_check {
            self.next_check = self.read + SPACE_CHECK_EVERY;
            if let Some((free, reserve)) = self.space()
                && free < reserve
            {
                self.tripped = Some(free);
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Moves a finished layer directory into place; another build may have placed the same
/// layer first, which is fine.
fn place(from: &Path, dest: &Path) -> Result<(), SolveError> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    match fs::rename(from, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.is_dir() => Ok(()),
        Err(e) => Err(SolveError::Io(dest.to_path_buf(), e)),
    }
}

/// Turns a step's change directory into a layer blob and keeps the directory as the
/// layer's unpacked form.
pub fn commit(
    solver: &Solver,
    changes: &Path,
    lowers: &[PathBuf],
) -> Result<(LayerBlob, PathBuf), SolveError> {
    let mut writer = LayerWriter::new(solver.store, solver.compression)?;
    let opts = DiffOptions {
        clamp_mtime: solver
            .source_date_epoch
            .filter(|_| solver.rewrite_timestamp),
        exclude: Vec::new(),
    };
    rbuild_snapshot::write_layer_tar(changes, lowers, &mut writer, &opts)?;
    let blob = writer.finish()?;
    let dest = solver.state.layer(&blob.diff_id);
    if dest.is_dir() {
        return Ok((blob, dest));
    }
    place(changes, &dest)?;
    Ok((blob, dest))
}

struct HashingReader<R> {
    inner: R,
    hasher: rbuild_core::Sha256Writer<std::io::Sink>,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: rbuild_core::Sha256Writer::new(std::io::sink()),
        }
    }

    fn digest(self) -> rbuild_core::Digest {
        self.hasher.finish().1
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        std::io::Write::write_all(&mut self.hasher, &buf[..n])?;
        Ok(n)
    }
}

/// Sends `text` (outside text: sanitised here) as a warning about `vertex`.
pub(crate) fn warn(
    events: &dyn rbuild_progress::EventSink,
    vertex: Option<rbuild_progress::VertexId>,
    text: String,
) {
    events.event(&rbuild_progress::Event::Warning(
        &rbuild_progress::Warning {
            vertex,
            short: rbuild_core::text::sanitize(&text),
            detail: Vec::new(),
            url: None,
        },
    ));
}
