//! Layer directories under `<state>/layers/<diff-id>`: the unpacked form of every layer,
//! stacked as overlay lower directories. A directory appears under its final name only
//! when complete (unpacked or committed in a temporary directory, then renamed).

use crate::{SolveError, Solver};
use rbuild_core::media_type;
use rbuild_image::{LayerBlob, LayerWriter};
use rbuild_snapshot::DiffOptions;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SolveError + '_ {
    move |e| SolveError::Io(path.to_path_buf(), e)
}

/// The directory of a layer, by diff id.
pub fn layer_dir(state: &Path, blob: &LayerBlob) -> PathBuf {
    state.join("layers").join(blob.diff_id.hex())
}

/// A fresh temporary directory under the state directory (removed on drop).
pub fn temp_dir(state: &Path, prefix: &str) -> Result<tempfile::TempDir, SolveError> {
    let tmp = state.join("tmp");
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&tmp)
        .map_err(io(&tmp))
}

/// Returns the unpacked directory of `blob`, unpacking it from the store if needed.
pub fn ensure_unpacked(solver: &Solver, blob: &LayerBlob) -> Result<PathBuf, SolveError> {
    let dest = layer_dir(solver.state, blob);
    if dest.is_dir() {
        return Ok(dest);
    }
    let tmp = temp_dir(solver.state, "unpack-")?;
    let target = tmp.path().join("layer");
    fs::create_dir(&target).map_err(io(&target))?;
    let file = BufReader::with_capacity(1 << 20, solver.store.open_blob(&blob.digest)?);
    let reader: Box<dyn Read> = match blob.media_type.as_str() {
        media_type::OCI_LAYER_TAR => Box::new(file),
        _ => Box::new(flate2::read::MultiGzDecoder::new(file)),
    };
    let mut hashing = HashingReader::new(reader);
    rbuild_snapshot::unpack_layer(&mut hashing, &target)?;
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io(&target))?;
    let found = hashing.digest();
    if found != blob.diff_id {
        return Err(rbuild_store::StoreError::DigestMismatch {
            expected: blob.diff_id.clone(),
            found,
        }
        .into());
    }
    place(&target, &dest)?;
    Ok(dest)
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
        clamp_mtime: solver.source_date_epoch,
        exclude: Vec::new(),
    };
    rbuild_snapshot::write_layer_tar(changes, lowers, &mut writer, &opts)?;
    let blob = writer.finish()?;
    let dest = layer_dir(solver.state, &blob);
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
