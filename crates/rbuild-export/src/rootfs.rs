//! `-o type=local` and `-o type=tar`: the final filesystem of each platform's image, made
//! from the unpacked layer directories (overlay semantics, so deletions are honoured).
//! Only the build knows where those directories are, so it hands them in through
//! [`LayerDirs`].

use crate::{BuiltImage, ExportError};
use rbuild_core::Digest;
use rbuild_core::config::ImageConfig;
use rbuild_snapshot::{CopyOptions, CopySource, LayerStack, SnapshotError};
use rbuild_store::Store;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Errors of the `local` and `tar` exporters, kept typed up to the CLI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootfsError {
    /// The destination directory already holds something.
    #[error("destination {0} exists and is not empty")]
    NotEmpty(PathBuf),
    /// A stored manifest or config could not be read or parsed.
    #[error("reading {what} {digest}: {reason}")]
    Document {
        /// `manifest` or `config`.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// Why.
        reason: String,
    },
    /// A layer of the image has no unpacked directory.
    #[error("layer {diff_id} is not unpacked in {root}")]
    LayerMissing {
        /// The layer's diff id.
        diff_id: Digest,
        /// The state directory looked in.
        root: PathBuf,
    },
    /// The state directory could not give what was asked of it.
    #[error(transparent)]
    State(Box<dyn std::error::Error + Send + Sync>),
    /// Copying a platform's filesystem out of its layers failed.
    #[error("writing the {platform} filesystem: {source}")]
    Copy {
        /// The platform.
        platform: String,
        /// Why.
        #[source]
        source: SnapshotError,
    },
    /// Writing the output failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The output path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The store or the temporary output beside the destination failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
}

/// What the exporters need of the build's state: the unpacked layers and scratch space.
/// The CLI implements it over its state directory, so this crate links neither the state
/// nor the solver.
pub trait LayerDirs {
    /// The unpacked directories of the layers `diff_ids` (base first) as an overlay stack
    /// sees them: top-most first, duplicates and layers below a root-opaque one left out.
    fn stack(&self, diff_ids: &[Digest]) -> Result<Vec<PathBuf>, RootfsError>;

    /// A scratch directory on the state's file system, removed when dropped.
    fn scratch(&self) -> Result<tempfile::TempDir, RootfsError>;
}

/// Writes each platform's filesystem under `dest` (directly when there is one platform,
/// in `os_arch[_variant]` subdirectories otherwise). `dest` must not exist or be empty;
/// it appears complete or not at all.
pub fn write_local(
    layers: &dyn LayerDirs,
    store: &Store,
    image: &BuiltImage,
    dest: &Path,
    split: bool,
) -> Result<(), RootfsError> {
    if !is_empty_or_missing(dest)? {
        return Err(RootfsError::NotEmpty(dest.into()));
    }
    let tmp = crate::temp_dir_beside(dest)?;
    materialise(layers, store, image, tmp.path(), split)?;
    if dest.exists() {
        fs::remove_dir(dest).map_err(io_at(dest))?;
    }
    let kept = tmp.keep();
    fs::rename(&kept, dest).map_err(io_at(dest))
}

/// Writes the same tree as [`write_local`] as one tar archive at `dest` (atomically).
pub fn write_tar(
    layers: &dyn LayerDirs,
    store: &Store,
    image: &BuiltImage,
    dest: &Path,
    split: bool,
) -> Result<(), RootfsError> {
    let work = layers.scratch()?;
    materialise(layers, store, image, work.path(), split)?;
    let out = crate::temp_file_beside(dest)?;
    archive(work.path(), out.as_file()).map_err(io_at(dest))?;
    out.persist(dest).map_err(|e| io_at(dest)(e.error))?;
    Ok(())
}

/// Whether `dir` is missing or an empty directory.
fn is_empty_or_missing(dir: &Path) -> Result<bool, RootfsError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_at(dir)(e)),
    }
}

/// Writes the tree `dir` into `file` as a tar (links kept as links) and syncs it.
fn archive(dir: &Path, file: &fs::File) -> io::Result<()> {
    let mut tar = tar::Builder::new(io::BufWriter::new(file));
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir)?;
    tar.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
}

/// Copies each platform's filesystem into `out`: into `os_arch[_variant]/` subdirectories
/// when there are several and `split` is set (buildx's `platform-split`), else all into
/// `out` itself, a later platform's files replacing an earlier one's.
fn materialise(
    layers: &dyn LayerDirs,
    store: &Store,
    image: &BuiltImage,
    out: &Path,
    split: bool,
) -> Result<(), RootfsError> {
    let several = split && image.manifests.len() > 1;
    for m in &image.manifests {
        let target = if several {
            let dir = out.join(m.platform.to_string().replace('/', "_"));
            fs::create_dir(&dir).map_err(io_at(&dir))?;
            dir
        } else {
            out.to_path_buf()
        };
        let stack = LayerStack::new(layers.stack(&diff_ids(store, &m.digest)?)?);
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
        .map_err(|source| RootfsError::Copy {
            platform: m.platform.to_string(),
            source,
        })?;
    }
    Ok(())
}

/// The diff ids of a stored manifest's layers, base first (from its config).
fn diff_ids(store: &Store, manifest: &Digest) -> Result<Vec<Digest>, RootfsError> {
    let bad = |what, digest: &Digest| {
        let digest = digest.clone();
        move |reason: String| RootfsError::Document {
            what,
            digest,
            reason,
        }
    };
    let m: serde_json::Value = serde_json::from_slice(&store.read_verified(manifest)?)
        .map_err(|e| bad("manifest", manifest)(e.to_string()))?;
    let config: Digest = m["config"]["digest"]
        .as_str()
        .ok_or_else(|| "no config digest".to_string())
        .and_then(|s| s.parse().map_err(|e| format!("config digest: {e}")))
        .map_err(bad("manifest", manifest))?;
    let parsed = ImageConfig::from_json(&store.read_verified(&config)?)
        .map_err(|e| bad("config", &config)(e.to_string()))?;
    Ok(parsed.rootfs.diff_ids)
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_core::media_type;
    use rbuild_image::ImageManifestBlob;

    /// Layer directories `dirs[i]` for the layers `ids[i]`, scratch space in `scratch`.
    struct Dirs {
        ids: Vec<Digest>,
        dirs: Vec<PathBuf>,
        scratch: PathBuf,
    }

    impl LayerDirs for Dirs {
        fn stack(&self, diff_ids: &[Digest]) -> Result<Vec<PathBuf>, RootfsError> {
            let mut out = Vec::new();
            for d in diff_ids.iter().rev() {
                let i = self.ids.iter().position(|x| x == d);
                let dir = i.map(|i| self.dirs[i].clone());
                out.push(dir.ok_or_else(|| RootfsError::LayerMissing {
                    diff_id: d.clone(),
                    root: self.scratch.clone(),
                })?);
            }
            Ok(out)
        }

        fn scratch(&self) -> Result<tempfile::TempDir, RootfsError> {
            tempfile::tempdir_in(&self.scratch).map_err(|e| RootfsError::State(Box::new(e)))
        }
    }

    /// A stored manifest for `platform` whose config names `diff_ids`.
    fn stored_image(store: &Store, diff_ids: &[Digest], platform: &str) -> ImageManifestBlob {
        let put = |v: serde_json::Value| store.put_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
        let ids: Vec<String> = diff_ids.iter().map(|d| d.to_string()).collect();
        let (config, config_size) = put(serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ids}}));
        let (digest, size) = put(
            serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config.to_string(), "size": config_size},
            "layers": []}),
        );
        ImageManifestBlob {
            digest,
            size,
            platform: platform.parse().unwrap(),
        }
    }

    fn image(manifests: Vec<ImageManifestBlob>) -> BuiltImage {
        BuiltImage {
            manifests,
            tags: vec![],
            annotations: Default::default(),
            media_types: Default::default(),
        }
    }

    /// Two layers: the lower has `a` and `gone`, the upper adds `b` and deletes `gone`
    /// with an overlay whiteout (needs CAP_MKNOD: the tests run as root).
    fn two_layers(top: &Path) -> Dirs {
        let lower = top.join("lower");
        let upper = top.join("upper");
        fs::create_dir_all(&lower).unwrap();
        fs::create_dir_all(&upper).unwrap();
        fs::write(lower.join("a"), "lower a").unwrap();
        fs::write(lower.join("gone"), "deleted above").unwrap();
        fs::write(upper.join("b"), "upper b").unwrap();
        let c = std::ffi::CString::new(upper.join("gone").into_os_string().into_encoded_bytes())
            .unwrap();
        // SAFETY: a valid nul-terminated path; a 0:0 character device is a whiteout.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        Dirs {
            ids: vec![Digest::sha256(b"lower"), Digest::sha256(b"upper")],
            dirs: vec![lower, upper],
            scratch: top.to_path_buf(),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    /// A temporary directory with a store and two unpacked layers in it.
    fn fixture() -> (tempfile::TempDir, Store, Dirs) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let layers = two_layers(dir.path());
        (dir, store, layers)
    }

    #[test]
    fn local_export_merges_the_layers() {
        let (dir, store, layers) = fixture();
        let m = stored_image(&store, &layers.ids, "linux/amd64");
        let dest = dir.path().join("out");
        write_local(&layers, &store, &image(vec![m]), &dest, true).unwrap();
        assert_eq!(names(&dest), ["a", "b"]);
        assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "lower a");
        assert_eq!(fs::read_to_string(dest.join("b")).unwrap(), "upper b");
    }

    #[test]
    fn local_export_splits_platforms() {
        let (dir, store, layers) = fixture();
        let amd = stored_image(&store, &layers.ids, "linux/amd64");
        let arm = stored_image(&store, &layers.ids[..1], "linux/arm64");
        let dest = dir.path().join("out");
        write_local(&layers, &store, &image(vec![amd, arm]), &dest, true).unwrap();
        assert_eq!(names(&dest), ["linux_amd64", "linux_arm64"]);
        assert_eq!(names(&dest.join("linux_amd64")), ["a", "b"]);
        assert_eq!(names(&dest.join("linux_arm64")), ["a", "gone"]);
    }

    #[test]
    fn local_export_refuses_a_non_empty_destination() {
        let (dir, store, layers) = fixture();
        let m = stored_image(&store, &layers.ids, "linux/amd64");
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("mine"), "kept").unwrap();
        let err = write_local(&layers, &store, &image(vec![m]), &dest, true).unwrap_err();
        assert!(
            matches!(&err, RootfsError::NotEmpty(p) if p == &dest),
            "{err:?}"
        );
        assert_eq!(names(&dest), ["mine"]);
    }

    #[test]
    fn missing_layer_is_a_typed_error_and_leaves_nothing() {
        let (dir, store, layers) = fixture();
        let absent = Digest::sha256(b"never unpacked");
        let m = stored_image(&store, std::slice::from_ref(&absent), "linux/amd64");
        let dest = dir.path().join("out.tar");
        let err = write_tar(&layers, &store, &image(vec![m]), &dest, true).unwrap_err();
        assert!(
            matches!(&err, RootfsError::LayerMissing { diff_id, .. } if diff_id == &absent),
            "{err:?}"
        );
        assert_eq!(names(dir.path()), ["lower", "store", "upper"]);
    }

    #[test]
    fn tar_export_holds_the_merged_tree() {
        let (dir, store, layers) = fixture();
        let m = stored_image(&store, &layers.ids, "linux/amd64");
        let dest = dir.path().join("out.tar");
        write_tar(&layers, &store, &image(vec![m]), &dest, true).unwrap();
        let mut archive = tar::Archive::new(fs::File::open(&dest).unwrap());
        let mut files = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut text = String::new();
            io::Read::read_to_string(&mut e, &mut text).unwrap();
            files.push((path, text));
        }
        files.retain(|(p, _)| p != "." && p != "./");
        files.sort();
        assert_eq!(
            files,
            [
                ("a".to_string(), "lower a".to_string()),
                ("b".to_string(), "upper b".to_string())
            ]
        );
        assert_eq!(names(dir.path()), ["lower", "out.tar", "store", "upper"]);
    }
}
