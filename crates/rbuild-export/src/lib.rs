//! Exporters: they take built images (manifests in the store) and write them where the
//! user asked. Output appears atomically: it is written beside the destination and
//! renamed into place, so an interrupted build leaves no half-written file.

use oci_spec::image::{ImageIndex, ImageManifest};
use rbuild_core::walk::Budget;
use rbuild_core::{Digest, media_type};
use rbuild_image::{ImageManifestBlob, IndexEntry, write_index};
use rbuild_store::Store;
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub mod rootfs;
pub use rootfs::{LayerDirs, RootfsError};

/// Errors of exporters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// Image assembly failed.
    #[error(transparent)]
    Image(#[from] rbuild_image::ImageError),
    /// Writing the output failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The output path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A stored manifest could not be read back.
    #[error("reading manifest {0}: {1}")]
    Manifest(Digest, String),
    /// The destination cannot be used.
    #[error("destination {0}: {1}")]
    Destination(PathBuf, String),
    /// A walk over the image hit its budget (depth, entries, bytes).
    #[error(transparent)]
    Limit(#[from] rbuild_core::walk::WalkLimit),
}

/// A finished build: one manifest per platform and the names it should carry.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Per-platform manifests, in the order the platforms were requested.
    pub manifests: Vec<ImageManifestBlob>,
    /// `-t` names, e.g. `hello:1`.
    pub tags: Vec<String>,
    /// `--annotation`s for the index, the manifests' descriptors and the layout's entry
    /// (the manifests' own are in the manifests already).
    pub annotations: rbuild_image::Annotations,
    /// The media types the manifests were written with; the index gets the same family.
    pub media_types: rbuild_image::MediaTypes,
}

/// The top-level descriptor of a built image: a manifest for one platform, an image
/// index over all manifests otherwise. The index blob is written to the store.
pub fn root_descriptor(store: &Store, image: &BuiltImage) -> Result<IndexEntry, ExportError> {
    use rbuild_image::AnnotationTarget as At;
    let ann = &image.annotations;
    let listed = |m: &rbuild_image::ImageManifestBlob| {
        ann.for_target(At::ManifestDescriptor, Some(&m.platform))
            .into_iter()
            .collect::<Vec<_>>()
    };
    if let [single] = image.manifests.as_slice() {
        let mut annotations = listed(single);
        annotations.extend(ann.for_target(At::IndexDescriptor, None));
        return Ok(IndexEntry {
            media_type: image.media_types.manifest().into(),
            digest: single.digest.clone(),
            size: single.size,
            platform: Some(single.platform.clone()),
            annotations,
        });
    }
    let entries: Vec<IndexEntry> = image
        .manifests
        .iter()
        .map(|m| IndexEntry {
            media_type: image.media_types.manifest().into(),
            digest: m.digest.clone(),
            size: m.size,
            platform: Some(m.platform.clone()),
            annotations: listed(m),
        })
        .collect();
    let index = write_index(
        &entries,
        &ann.for_target(At::Index, None),
        image.media_types,
    )?;
    let (digest, size) = store.put_bytes(&index)?;
    Ok(IndexEntry {
        media_type: image.media_types.index().into(),
        digest,
        size,
        platform: None,
        annotations: ann
            .for_target(At::IndexDescriptor, None)
            .into_iter()
            .collect(),
    })
}

/// Splits `name[:tag]` into the full containerd-style name and the tag (`latest` when absent).
pub fn split_tag(name: &str) -> (String, String) {
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (name, "latest"),
    };
    let first = repo.split('/').next().unwrap_or(repo);
    let has_host =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = match (has_host, repo.contains('/')) {
        (true, _) => repo.to_string(),
        (false, true) => format!("docker.io/{repo}"),
        (false, false) => format!("docker.io/library/{repo}"),
    };
    (format!("{full}:{tag}"), tag.to_string())
}

/// The `index.json` of an OCI layout holding `image`: one descriptor per tag (or one
/// untagged descriptor).
fn layout_index(root: &IndexEntry, tags: &[String]) -> Vec<u8> {
    layout_index_of(&[(root.clone(), tags.to_vec())])
}

/// The `index.json` of an OCI layout holding several images, each with its names.
fn layout_index_of(roots: &[(IndexEntry, Vec<String>)]) -> Vec<u8> {
    let descriptor = |root: &IndexEntry, annotations: Option<serde_json::Value>| {
        let mut d = serde_json::json!({
            "mediaType": root.media_type,
            "digest": root.digest.to_string(),
            "size": root.size,
        });
        if let (Some(p), Some(obj)) = (&root.platform, d.as_object_mut()) {
            let mut plat = serde_json::json!({"architecture": p.architecture(), "os": p.os()});
            if let (Some(v), Some(po)) = (p.variant(), plat.as_object_mut()) {
                po.insert("variant".into(), v.into());
            }
            obj.insert("platform".into(), plat);
        }
        if let (Some(a), Some(obj)) = (annotations, d.as_object_mut()) {
            obj.insert("annotations".into(), a);
        }
        d
    };
    let mut manifests: Vec<serde_json::Value> = Vec::new();
    for (root, tags) in roots {
        // The root's own annotations (`index-descriptor`), then the names, in key order.
        let own: std::collections::BTreeMap<String, String> =
            root.annotations.iter().cloned().collect();
        let with = |extra: &[(&str, String)]| {
            let mut all = own.clone();
            all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
            (!all.is_empty()).then(|| serde_json::json!(all))
        };
        if tags.is_empty() {
            manifests.push(descriptor(root, with(&[])));
        }
        for t in tags {
            let (full, tag) = split_tag(t);
            manifests.push(descriptor(
                root,
                with(&[
                    ("io.containerd.image.name", full),
                    ("org.opencontainers.image.ref.name", tag),
                ]),
            ));
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    serde_json::to_vec(&index).unwrap_or_default()
}

/// Every blob the image references (indexes, manifests, configs, layers), sorted: one
/// bounded walk ([`Budget`]) reading each index and manifest once.
fn reachable_blobs(store: &Store, root: &IndexEntry) -> Result<BTreeSet<Digest>, ExportError> {
    let mut budget = Budget::new();
    let mut out = BTreeSet::new();
    let mut todo = Vec::new();
    if let Some(path) = budget.enter(&[], &root.digest)? {
        todo.push((root.media_type.clone(), path));
    }
    while let Some((mt, path)) = todo.pop() {
        let Some(digest) = path.last().cloned() else {
            continue;
        };
        out.insert(digest.clone());
        let bad = |e: &dyn std::fmt::Display| ExportError::Manifest(digest.clone(), e.to_string());
        if mt == media_type::OCI_INDEX || mt == media_type::DOCKER_MANIFEST_LIST {
            let index: ImageIndex =
                serde_json::from_slice(&store.read_document(&mut budget, &path)?)
                    .map_err(|e| bad(&e))?;
            budget.entries(&path, index.manifests().len())?;
            for d in index.manifests() {
                let dg: Digest = d.digest().to_string().parse().map_err(|e| bad(&e))?;
                if let Some(child) = budget.enter(&path, &dg)? {
                    todo.push((d.media_type().to_string(), child));
                }
            }
        } else if mt == media_type::OCI_MANIFEST || mt == media_type::DOCKER_MANIFEST {
            let m: ImageManifest =
                serde_json::from_slice(&store.read_document(&mut budget, &path)?)
                    .map_err(|e| bad(&e))?;
            budget.entries(&path, 1 + m.layers().len())?;
            out.insert(
                m.config()
                    .digest()
                    .to_string()
                    .parse()
                    .map_err(|e| bad(&e))?,
            );
            for l in m.layers() {
                out.insert(l.digest().to_string().parse().map_err(|e| bad(&e))?);
            }
        }
    }
    Ok(out)
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Byte progress of writing an archive: called with the blob bytes written so far and
/// the blob bytes in all.
pub type OnBytes<'a> = &'a mut dyn FnMut(u64, u64);

/// Writes `image` as an OCI image layout tar archive at `dest` (atomically).
pub fn write_oci_tar(store: &Store, image: &BuiltImage, dest: &Path) -> Result<(), ExportError> {
    write_archive(store, image, dest, None, &mut |_, _| {})
}

/// [`write_oci_tar`], reporting byte progress to `on_bytes`.
pub fn write_oci_tar_with(
    store: &Store,
    image: &BuiltImage,
    dest: &Path,
    on_bytes: OnBytes<'_>,
) -> Result<(), ExportError> {
    write_archive(store, image, dest, None, on_bytes)
}

/// Writes `image` (one platform) as an archive `docker load` reads: an OCI layout plus the
/// `manifest.json` of Docker's image archive format, as BuildKit's docker exporter does.
pub fn write_docker_tar(store: &Store, image: &BuiltImage, dest: &Path) -> Result<(), ExportError> {
    write_docker_tar_with(store, image, dest, &mut |_, _| {})
}

/// [`write_docker_tar`], reporting byte progress to `on_bytes`.
pub fn write_docker_tar_with(
    store: &Store,
    image: &BuiltImage,
    dest: &Path,
    on_bytes: OnBytes<'_>,
) -> Result<(), ExportError> {
    let [single] = image.manifests.as_slice() else {
        return Err(ExportError::Destination(
            dest.into(),
            "type=docker holds one platform; use type=oci for several".into(),
        ));
    };
    let bad =
        |e: &dyn std::fmt::Display| ExportError::Manifest(single.digest.clone(), e.to_string());
    let path = std::slice::from_ref(&single.digest);
    let m: ImageManifest = serde_json::from_slice(&store.read_document(&mut Budget::new(), path)?)
        .map_err(|e| bad(&e))?;
    let path = |d: &oci_spec::image::Digest| format!("blobs/sha256/{}", d.digest());
    let tags: Vec<String> = image
        .tags
        .iter()
        .map(|t| {
            let (full, _) = split_tag(t);
            full.strip_prefix("docker.io/library/")
                .or_else(|| full.strip_prefix("docker.io/"))
                .unwrap_or(&full)
                .to_string()
        })
        .collect();
    let manifest_json = serde_json::json!([{
        "Config": path(m.config().digest()),
        "RepoTags": tags,
        "Layers": m.layers().iter().map(|l| path(l.digest())).collect::<Vec<_>>(),
    }]);
    let data = serde_json::to_vec(&manifest_json).map_err(|e| bad(&e))?;
    write_archive(store, image, dest, Some(&data), on_bytes)
}

fn write_archive(
    store: &Store,
    image: &BuiltImage,
    dest: &Path,
    docker_manifest: Option<&[u8]>,
    on_bytes: OnBytes<'_>,
) -> Result<(), ExportError> {
    let root = root_descriptor(store, image)?;
    write_layout_tar(
        store,
        &[(root, image.tags.clone())],
        dest,
        docker_manifest,
        on_bytes,
    )
}

/// Writes an OCI image layout tar archive at `dest` (atomically) holding several stored
/// images, each a top-level descriptor with its names (`name[:tag]`), and Docker's
/// `manifest.json` when given; `on_bytes` hears (written, total) blob bytes.
pub fn write_layout_tar(
    store: &Store,
    roots: &[(IndexEntry, Vec<String>)],
    dest: &Path,
    docker_manifest: Option<&[u8]>,
    on_bytes: OnBytes<'_>,
) -> Result<(), ExportError> {
    let mut blobs = BTreeSet::new();
    for (root, _) in roots {
        blobs.extend(reachable_blobs(store, root)?);
    }
    let index = layout_index_of(roots);
    let io_err = |source| ExportError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let tmp = temp_file_beside(dest)?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
    append_bytes(&mut tar, "oci-layout", OCI_LAYOUT).map_err(io_err)?;
    append_bytes(&mut tar, "index.json", &index).map_err(io_err)?;
    if let Some(m) = docker_manifest {
        append_bytes(&mut tar, "manifest.json", m).map_err(io_err)?;
    }
    append_dir(&mut tar, "blobs/").map_err(io_err)?;
    append_dir(&mut tar, "blobs/sha256/").map_err(io_err)?;
    let mut files = Vec::with_capacity(blobs.len());
    for d in &blobs {
        let file = store.open_blob(d)?;
        let len = file.metadata().map_err(io_err)?.len();
        files.push((d, file, len));
    }
    let total = files.iter().map(|(_, _, len)| len).sum();
    let mut written = 0;
    on_bytes(written, total);
    for (d, file, len) in files {
        let name = format!("blobs/sha256/{}", d.hex());
        let mut progress = |n: u64| {
            written += n;
            on_bytes(written, total);
        };
        append_blob(&mut tar, &name, file, len, &mut progress).map_err(io_err)?;
    }
    let buf = tar.into_inner().map_err(io_err)?;
    buf.into_inner()
        .map_err(|e| io_err(e.into_error()))?
        .sync_all()
        .map_err(io_err)?;
    tmp.persist(dest).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// Writes `image` as an OCI image layout directory at `dest` (which must not exist or be
/// empty; it appears complete or not at all).
pub fn write_oci_dir(store: &Store, image: &BuiltImage, dest: &Path) -> Result<(), ExportError> {
    let io_err = |source| ExportError::Io {
        path: dest.to_path_buf(),
        source,
    };
    if dest.exists() {
        let empty = fs::read_dir(dest).map_err(io_err)?.next().is_none();
        if !empty {
            return Err(ExportError::Destination(
                dest.into(),
                "exists and is not empty; remove it or choose another dest".into(),
            ));
        }
        fs::remove_dir(dest).map_err(io_err)?;
    }
    let root = root_descriptor(store, image)?;
    let blobs = reachable_blobs(store, &root)?;
    let tmp_dir = temp_dir_beside(dest)?;
    let tmp = tmp_dir.path();
    let blob_dir = tmp.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).map_err(io_err)?;
    fs::write(tmp.join("oci-layout"), OCI_LAYOUT).map_err(io_err)?;
    fs::write(tmp.join("index.json"), layout_index(&root, &image.tags)).map_err(io_err)?;
    for d in &blobs {
        let to = blob_dir.join(d.hex());
        if fs::hard_link(store.blob_path(d), &to).is_err() {
            fs::copy(store.blob_path(d), &to).map_err(io_err)?;
        }
    }
    let kept = tmp_dir.keep();
    fs::rename(&kept, dest).map_err(|e| {
        let _ = fs::remove_dir_all(&kept);
        io_err(e)
    })
}

/// The name prefix of rbuild's temporary files beside `dest`: `.<name>.<pid>.`.
fn temp_prefix(dest: &Path) -> String {
    format!(
        ".{}.{}.",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    )
}

/// The suffix every temporary output of rbuild carries.
const TEMP_SUFFIX: &str = ".rbuild-tmp";

/// Removes what exports to `dest` that were killed (`kill -9`, a crash) left beside it:
/// entries named `.<name>.<pid>.*.rbuild-tmp` whose process is gone.
pub fn remove_stale_temps(dest: &Path) {
    let dir = parent_dir(dest);
    let Some(name) = dest.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(TEMP_SUFFIX))
        else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if removed.is_ok() {
            tracing::info!(path = %path.display(), "removed the leftover of an interrupted export");
        }
    }
}

fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn parent_dir(dest: &Path) -> &Path {
    dest.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A temporary file beside `dest`, to be renamed onto it when complete. It is created with
/// mode 0666 less the umask, as the final file should be.
pub fn temp_file_beside(dest: &Path) -> Result<tempfile::NamedTempFile, ExportError> {
    temp_beside(dest, 0o666, |b, dir| b.tempfile_in(dir))
}

/// A temporary directory beside `dest`, to be renamed onto it when complete (mode 0777 less
/// the umask).
pub fn temp_dir_beside(dest: &Path) -> Result<tempfile::TempDir, ExportError> {
    temp_beside(dest, 0o777, |b, dir| b.tempdir_in(dir))
}

/// Makes the parent of `dest`, removes what killed exports left there, and creates a
/// temporary named `.<name>.<pid>.*.rbuild-tmp` with `mode` (less the umask).
fn temp_beside<T>(
    dest: &Path,
    mode: u32,
    create: impl FnOnce(&tempfile::Builder<'_, '_>, &Path) -> io::Result<T>,
) -> Result<T, ExportError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent_dir(dest);
    fs::create_dir_all(dir).map_err(|source| ExportError::Io {
        path: dir.into(),
        source,
    })?;
    remove_stale_temps(dest);
    let prefix = temp_prefix(dest);
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .permissions(fs::Permissions::from_mode(mode));
    create(&builder, dir).map_err(|source| ExportError::Io {
        path: dest.into(),
        source,
    })
}

fn file_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Starts writing back what has been written to `file` so far without waiting for it, so
/// that the final fsync overlaps with the copy instead of following it.
fn start_writeback(file: &fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range on an open descriptor; offset 0 and length 0 mean the whole
    // file, and SYNC_FILE_RANGE_WRITE only queues writeback.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Archives a stored blob: the header through the tar builder, the content copied by the
/// kernel from file to file (`copy_file_range`, through `io::copy`'s file specialisation)
/// in chunks, each reported to `progress`, then the padding to a 512-byte block.
fn append_blob(
    tar: &mut tar::Builder<BufWriter<&fs::File>>,
    name: &str,
    blob: fs::File,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    const CHUNK: u64 = 64 << 20;
    let mut h = file_header(tar::EntryType::Regular, 0o644, len);
    h.set_path(name)?;
    h.set_cksum();
    let out = tar.get_mut();
    out.write_all(h.as_bytes())?;
    out.flush()?;
    let mut file: &fs::File = out.get_ref();
    let mut copied = 0;
    while copied < len {
        let n = io::copy(
            &mut io::Read::take(&blob, CHUNK.min(len - copied)),
            &mut file,
        )?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} is shorter than its {len} bytes"),
            ));
        }
        copied += n;
        progress(n);
        start_writeback(file);
    }
    let pad = (512 - len % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize])
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = file_header(tar::EntryType::Regular, 0o644, data.len() as u64);
    tar.append_data(&mut h, name, data)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = file_header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, name, io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_like_containerd_names() {
        assert_eq!(
            split_tag("hello:1"),
            ("docker.io/library/hello:1".into(), "1".into())
        );
        assert_eq!(
            split_tag("me/app"),
            ("docker.io/me/app:latest".into(), "latest".into())
        );
        assert_eq!(
            split_tag("localhost:5000/a/b:2"),
            ("localhost:5000/a/b:2".into(), "2".into())
        );
    }

    #[test]
    fn failed_dir_export_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let missing = Digest::sha256(b"not stored");
        let image = BuiltImage {
            manifests: vec![ImageManifestBlob {
                digest: missing,
                size: 1,
                platform: "linux/amd64".parse().unwrap(),
            }],
            tags: vec![],
            annotations: Default::default(),
            media_types: Default::default(),
        };
        let dest = dir.path().join("out");
        assert!(write_oci_dir(&store, &image, &dest).is_err());
        assert!(!dest.exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("store")]);
    }

    /// A chain of `levels` stored indexes, each naming the next, above one manifest.
    fn stored_chain(store: &Store, levels: usize) -> IndexEntry {
        let put = |v: serde_json::Value| store.put_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
        let (config, config_size) = put(serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}}));
        let mut top = put(
            serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config.to_string(), "size": config_size},
            "layers": []}),
        );
        let mut mt = media_type::OCI_MANIFEST;
        for _ in 0..levels {
            top = put(
                serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX,
                "manifests": [{"mediaType": mt, "digest": top.0.to_string(), "size": top.1}]}),
            );
            mt = media_type::OCI_INDEX;
        }
        IndexEntry {
            media_type: media_type::OCI_INDEX.into(),
            digest: top.0,
            size: top.1,
            platform: None,
            annotations: Vec::new(),
        }
    }

    #[test]
    fn indexes_nested_too_deep_are_not_exported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let dest = dir.path().join("out.tar");
        let shallow = stored_chain(&store, 3);
        write_layout_tar(&store, &[(shallow, vec![])], &dest, None, &mut |_, _| {}).unwrap();
        assert_eq!(blob_count(&dest), 5, "3 indexes, a manifest, a config");
        fs::remove_file(&dest).unwrap();
        let deep = stored_chain(&store, 12);
        let err = write_layout_tar(
            &store,
            &[(deep.clone(), vec![])],
            &dest,
            None,
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("indexes nested more than 8 deep"), "{err}");
        assert!(err.contains(&format!("at {} > ", deep.digest)), "{err}");
        assert!(!dest.exists());
    }

    /// The blobs an archive holds.
    fn blob_count(path: &Path) -> usize {
        let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
        ar.entries()
            .unwrap()
            .flatten()
            .filter(|e| {
                e.header().entry_type().is_file() && e.path().unwrap().starts_with("blobs/sha256/")
            })
            .count()
    }
}
