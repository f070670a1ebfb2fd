//! `-o type=local` and `-o type=tar`: the final filesystem of each platform's image, made
//! from the unpacked layer directories (overlay semantics, so deletions are honoured).

use anyhow::{Context, Result, bail};
use rbuild_core::Digest;
use rbuild_export::BuiltImage;
use rbuild_image::ImageConfig;
use rbuild_snapshot::{CopyOptions, CopySource, LayerStack};
use rbuild_solver::StateDir;
use rbuild_store::Store;
use std::path::{Path, PathBuf};

/// Writes each platform's filesystem under `dest` (directly when there is one platform,
/// in `os_arch[_variant]` subdirectories otherwise). `dest` must not exist or be empty;
/// it appears complete or not at all.
pub fn write_local(
    state: &StateDir,
    store: &Store,
    image: &BuiltImage,
    dest: &Path,
    split: bool,
) -> Result<()> {
    if dest.exists() && std::fs::read_dir(dest)?.next().is_some() {
        bail!("destination {} exists and is not empty", dest.display());
    }
    let tmp = rbuild_export::temp_dir_beside(dest)?;
    materialise(state, store, image, tmp.path(), split)?;
    if dest.exists() {
        std::fs::remove_dir(dest)?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, dest).with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(())
}

/// Writes the same tree as [`write_local`] as one tar archive at `dest` (atomically).
pub fn write_tar(
    state: &StateDir,
    store: &Store,
    image: &BuiltImage,
    dest: &Path,
    split: bool,
) -> Result<()> {
    let work = state.temp_dir(rbuild_solver::TempKind::Rootfs)?;
    materialise(state, store, image, work.path(), split)?;
    let out = rbuild_export::temp_file_beside(dest)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(out.as_file()));
    tar.follow_symlinks(false);
    tar.append_dir_all(".", work.path())
        .context("writing the rootfs tar")?;
    tar.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    out.persist(dest)
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

/// Copies each platform's filesystem into `out`: into `os_arch[_variant]/` subdirectories
/// when there are several and `split` is set (buildx's `platform-split`), else all into
/// `out` itself, a later platform's files replacing an earlier one's.
fn materialise(
    state: &StateDir,
    store: &Store,
    image: &BuiltImage,
    out: &Path,
    split: bool,
) -> Result<()> {
    let several = split && image.manifests.len() > 1;
    for m in &image.manifests {
        let target = if several {
            let name = m.platform.to_string().replace('/', "_");
            let dir = out.join(name);
            std::fs::create_dir(&dir)?;
            dir
        } else {
            out.to_path_buf()
        };
        let stack = LayerStack::new(layer_dirs(state, store, &m.digest)?);
        let opts = CopyOptions {
            workdir: "/".into(),
            ..Default::default()
        };
        rbuild_snapshot::copy(
            CopySource::Stack(&stack),
            &["/".into()],
            "/",
            &LayerStack::new(Vec::new()),
            &target,
            &opts,
        )
        .with_context(|| format!("writing the {} filesystem", m.platform))?;
    }
    Ok(())
}

/// The unpacked directories of a manifest's layers, top-most first.
fn layer_dirs(state: &StateDir, store: &Store, manifest: &Digest) -> Result<Vec<PathBuf>> {
    let m: serde_json::Value = serde_json::from_slice(&store.read_verified(manifest)?)?;
    let cfg_digest: Digest = m["config"]["digest"].as_str().unwrap_or_default().parse()?;
    let config = ImageConfig::from_json(&store.read_verified(&cfg_digest)?)?;
    let mut dirs = Vec::new();
    for d in config.rootfs.diff_ids.iter().rev() {
        let dir = state.layer(d);
        if !dir.is_dir() {
            bail!("layer {d} is not unpacked in {}", state.root().display());
        }
        dirs.push(dir);
    }
    // Duplicates and layers below a root-opaque one drop out, as in every stack.
    Ok(rbuild_solver::visible_lowers(dirs))
}
