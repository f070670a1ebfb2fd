//! Base image resolution: finds the image a `FROM` names, picks the manifest for the
//! stage's platform, and imports its config and layer blobs into the store (verified).

pub mod url;

pub use url::{UrlFetch, UrlRecord, UrlRequest};

use oci_spec::image::{ImageIndex, ImageManifest};
use rbuild_core::walk::{Budget, MAX_DOCUMENT, WalkLimit};
use rbuild_core::{Digest, Platform, media_type};
use rbuild_image::{ImageConfig, LayerBlob};
use rbuild_store::Store;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Errors while resolving a base image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// A layout file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document in a layout is malformed.
    #[error("{what} in {layout}: {detail}")]
    Malformed {
        /// Which document.
        what: String,
        /// The layout.
        layout: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// The reference names nothing in the layout.
    #[error("{layout} has no image {reference} (it has: {available})")]
    NotInLayout {
        /// The layout.
        layout: PathBuf,
        /// What was asked for.
        reference: String,
        /// What the layout offers.
        available: String,
    },
    /// No manifest for the requested platform.
    #[error("{image} has no image for platform {platform} (it has: {available})")]
    NoPlatform {
        /// The image.
        image: String,
        /// The platform asked for.
        platform: Platform,
        /// The platforms it has.
        available: String,
    },
    /// A `--build-context` value rbuild cannot use.
    #[error("build context {0:?}: {1}")]
    BadContext(String, String),
    /// A walk over the image's indexes hit its budget (depth, entries, bytes).
    #[error(transparent)]
    Limit(#[from] WalkLimit),
}

/// What a named `--build-context` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// `oci-layout://PATH[:TAG|@DIGEST]`.
    OciLayout {
        /// The layout directory.
        path: PathBuf,
        /// Which image in it.
        reference: LayoutRef,
    },
    /// A local directory (usable by `COPY --from=NAME`).
    Dir(PathBuf),
}

/// A tag or digest inside an OCI layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutRef {
    /// `org.opencontainers.image.ref.name` value; `None` takes the layout's only image
    /// (or `latest`).
    Tag(Option<String>),
    /// A manifest or index digest.
    Digest(Digest),
}

impl fmt::Display for NamedContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamedContext::OciLayout { path, reference } => {
                write!(f, "oci-layout://{}", path.display())?;
                match reference {
                    LayoutRef::Tag(Some(t)) => write!(f, ":{t}"),
                    LayoutRef::Tag(None) => Ok(()),
                    LayoutRef::Digest(d) => write!(f, "@{d}"),
                }
            }
            NamedContext::Dir(p) => write!(f, "{}", p.display()),
        }
    }
}

impl NamedContext {
    /// Parses the value part of `--build-context NAME=VALUE`.
    pub fn parse(value: &str) -> Result<NamedContext, SourceError> {
        if let Some(rest) = value.strip_prefix("oci-layout://") {
            return parse_layout(value, rest);
        }
        for scheme in ["docker-image://", "https://", "http://", "git@", "target:"] {
            if value.starts_with(scheme) {
                return Err(SourceError::BadContext(
                    value.into(),
                    format!(
                        "{scheme} build contexts are not supported; use oci-layout://PATH or a directory"
                    ),
                ));
            }
        }
        Ok(NamedContext::Dir(PathBuf::from(value)))
    }
}

fn parse_layout(value: &str, rest: &str) -> Result<NamedContext, SourceError> {
    let (path, reference) = if let Some((p, d)) = rest.rsplit_once('@') {
        let digest = d
            .parse()
            .map_err(|e| SourceError::BadContext(value.into(), format!("{e}")))?;
        (p, LayoutRef::Digest(digest))
    } else {
        match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') && !t.is_empty() => {
                (p, LayoutRef::Tag(Some(t.into())))
            }
            _ => (rest, LayoutRef::Tag(None)),
        }
    };
    if path.is_empty() {
        return Err(SourceError::BadContext(
            value.into(),
            "no layout path".into(),
        ));
    }
    Ok(NamedContext::OciLayout {
        path: PathBuf::from(path),
        reference,
    })
}

/// A base image resolved for one platform, with its blobs in the store.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Where it came from, for messages.
    pub source: String,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The image config.
    pub config: ImageConfig,
    /// Its layers, bottom first, matching `config.rootfs.diff_ids`.
    pub layers: Vec<LayerBlob>,
    /// The platform the image says it is for.
    pub platform: Platform,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Resolves an image in an OCI layout for `platform` and imports its blobs into `store`.
pub fn resolve_layout(
    layout: &Path,
    reference: &LayoutRef,
    platform: &Platform,
    store: &Store,
) -> Result<ResolvedImage, SourceError> {
    let index: ImageIndex = read_json(layout, &layout.join("index.json"), "index.json")?;
    let desc = pick_reference(layout, &index, reference)?;
    let source = format!(
        "{}",
        NamedContext::OciLayout {
            path: layout.into(),
            reference: reference.clone()
        }
    );
    let mut budget = Budget::new();
    let (_, path) = select_manifest(layout, desc, platform, &source, &mut budget)?;
    let manifest: ImageManifest = read_blob_json(layout, &mut budget, &path, "manifest")?;
    import_image(layout, &manifest, last(&path), store, source)
}

/// Resolves an image whose top-level descriptor (`media_type`, `digest`, `size`) is a blob
/// of `store` itself — an image of the local image store — for `platform`. `source` names
/// it in messages.
pub fn resolve_stored(
    store: &Store,
    (media_type, digest, size): (&str, &Digest, u64),
    platform: &Platform,
    source: String,
) -> Result<ResolvedImage, SourceError> {
    let root = store.root();
    let desc = oci_spec::image::DescriptorBuilder::default()
        .media_type(media_type)
        .digest(
            digest
                .to_string()
                .parse::<oci_spec::image::Digest>()
                .map_err(|e| SourceError::Malformed {
                    what: "descriptor".into(),
                    layout: root.into(),
                    detail: e.to_string(),
                })?,
        )
        .size(size)
        .build()
        .map_err(|e| SourceError::Malformed {
            what: "descriptor".into(),
            layout: root.into(),
            detail: e.to_string(),
        })?;
    let mut budget = Budget::new();
    let (_, path) = select_manifest(root, &desc, platform, &source, &mut budget)?;
    let manifest: ImageManifest = serde_json::from_slice(&store.read_document(&mut budget, &path)?)
        .map_err(|e| SourceError::Malformed {
            what: "manifest".into(),
            layout: root.into(),
            detail: e.to_string(),
        })?;
    import_image(root, &manifest, last(&path), store, source)
}

fn pick_reference<'a>(
    layout: &Path,
    index: &'a ImageIndex,
    reference: &LayoutRef,
) -> Result<&'a oci_spec::image::Descriptor, SourceError> {
    let name_of = |d: &oci_spec::image::Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME).cloned())
    };
    let found = match reference {
        LayoutRef::Digest(dg) => index
            .manifests()
            .iter()
            .find(|d| d.digest().to_string() == dg.to_string()),
        LayoutRef::Tag(Some(tag)) => index
            .manifests()
            .iter()
            .find(|d| name_of(d).as_deref() == Some(tag.as_str())),
        LayoutRef::Tag(None) if index.manifests().len() == 1 => index.manifests().first(),
        LayoutRef::Tag(None) => index
            .manifests()
            .iter()
            .find(|d| name_of(d).as_deref() == Some("latest")),
    };
    found.ok_or_else(|| SourceError::NotInLayout {
        layout: layout.into(),
        reference: match reference {
            LayoutRef::Digest(d) => d.to_string(),
            LayoutRef::Tag(t) => t.clone().unwrap_or_else(|| "latest".into()),
        },
        available: index
            .manifests()
            .iter()
            .map(|d| name_of(d).unwrap_or_else(|| d.digest().to_string()))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Follows (possibly nested) indexes down to the manifest for `platform`, within
/// `budget`: returns the manifest's descriptor and the digests from the root down to it.
fn select_manifest(
    layout: &Path,
    desc: &oci_spec::image::Descriptor,
    platform: &Platform,
    source: &str,
    budget: &mut Budget,
) -> Result<(oci_spec::image::Descriptor, Vec<Digest>), SourceError> {
    let root = parse_digest(layout, desc.digest().to_string())?;
    let mut path = budget.enter(&[], &root)?.unwrap_or_else(|| vec![root]);
    let mut current = desc.clone();
    loop {
        let mt = current.media_type().to_string();
        if mt != media_type::OCI_INDEX && mt != media_type::DOCKER_MANIFEST_LIST {
            return Ok((current, path));
        }
        let index: ImageIndex = read_blob_json(layout, budget, &path, "image index")?;
        budget.entries(&path, index.manifests().len())?;
        let next = pick_platform(&index, platform, source)?.clone();
        let digest = parse_digest(layout, next.digest().to_string())?;
        path = budget
            .enter(&path, &digest)?
            .ok_or_else(|| SourceError::Malformed {
                what: "image index".into(),
                layout: layout.into(),
                detail: format!("{digest} is named again below itself"),
            })?;
        current = next;
    }
}

/// The entry of `index` for `platform`.
fn pick_platform<'i>(
    index: &'i ImageIndex,
    platform: &Platform,
    source: &str,
) -> Result<&'i oci_spec::image::Descriptor, SourceError> {
    let mut available = Vec::new();
    for d in index.manifests() {
        let Some(p) = d.platform() else { continue };
        let candidate = Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        );
        if platform.matches(&candidate) {
            return Ok(d);
        }
        available.push(candidate.to_string());
    }
    Err(SourceError::NoPlatform {
        image: source.into(),
        platform: platform.clone(),
        available: available.join(", "),
    })
}

/// The digest a walk path ends at.
fn last(path: &[Digest]) -> Digest {
    path.last().cloned().unwrap_or_else(|| Digest::sha256(b""))
}

fn import_image(
    layout: &Path,
    manifest: &ImageManifest,
    manifest_digest: Digest,
    store: &Store,
    source: String,
) -> Result<ResolvedImage, SourceError> {
    let cfg_digest = parse_digest(layout, manifest.config().digest().to_string())?;
    store.import(
        &blob_path(layout, &cfg_digest),
        &cfg_digest,
        manifest.config().size(),
    )?;
    let config_bytes = store.read_verified(&cfg_digest)?;
    let config = ImageConfig::from_json(&config_bytes).map_err(|e| SourceError::Malformed {
        what: "image config".into(),
        layout: layout.into(),
        detail: e.to_string(),
    })?;
    if config.rootfs.diff_ids.len() != manifest.layers().len() {
        return Err(SourceError::Malformed {
            what: "image config".into(),
            layout: layout.into(),
            detail: format!(
                "{} layers but {} diff_ids",
                manifest.layers().len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (desc, diff_id) in manifest.layers().iter().zip(&config.rootfs.diff_ids) {
        let digest = parse_digest(layout, desc.digest().to_string())?;
        store.import(&blob_path(layout, &digest), &digest, desc.size())?;
        layers.push(LayerBlob {
            digest,
            diff_id: diff_id.clone(),
            size: desc.size(),
            media_type: desc.media_type().to_string(),
        });
    }
    let platform = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
    Ok(ResolvedImage {
        source,
        manifest_digest,
        config,
        layers,
        platform,
    })
}

fn blob_path(layout: &Path, d: &Digest) -> PathBuf {
    layout.join("blobs").join(d.algorithm()).join(d.hex())
}

fn parse_digest(layout: &Path, s: String) -> Result<Digest, SourceError> {
    s.parse()
        .map_err(|e: rbuild_core::DigestError| SourceError::Malformed {
            what: "descriptor".into(),
            layout: layout.into(),
            detail: e.to_string(),
        })
}

/// Reads a layout file of at most [`MAX_DOCUMENT`] bytes.
fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, SourceError> {
    let io = |source| SourceError::Io {
        path: path.into(),
        source,
    };
    let mut data = Vec::new();
    rbuild_store::open_regular(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut data))
        .map_err(io)?;
    if data.len() as u64 > limit {
        return Err(io(std::io::Error::other(format!(
            "larger than {limit} bytes"
        ))));
    }
    Ok(data)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    layout: &Path,
    data: &[u8],
    what: &str,
) -> Result<T, SourceError> {
    serde_json::from_slice(data).map_err(|e| SourceError::Malformed {
        what: what.into(),
        layout: layout.into(),
        detail: e.to_string(),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(
    layout: &Path,
    path: &Path,
    what: &str,
) -> Result<T, SourceError> {
    parse_json(layout, &read_small(path, MAX_DOCUMENT)?, what)
}

/// Reads the layout blob at the end of `path` (a walk from an image's root), its size
/// counted in `budget` before it is read.
fn read_blob_json<T: serde::de::DeserializeOwned>(
    layout: &Path,
    budget: &mut Budget,
    path: &[Digest],
    what: &str,
) -> Result<T, SourceError> {
    let file = blob_path(layout, &last(path));
    let size = std::fs::metadata(&file)
        .map_err(|source| SourceError::Io {
            path: file.clone(),
            source,
        })?
        .len();
    budget.document(path, size)?;
    parse_json(layout, &read_small(&file, budget.limits().document)?, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_context_values_parse() {
        let c = NamedContext::parse("oci-layout://testdata/images/busybox:latest").unwrap();
        assert_eq!(
            c,
            NamedContext::OciLayout {
                path: "testdata/images/busybox".into(),
                reference: LayoutRef::Tag(Some("latest".into()))
            }
        );
        let c = NamedContext::parse("oci-layout:///abs/x").unwrap();
        assert!(matches!(
            c,
            NamedContext::OciLayout {
                reference: LayoutRef::Tag(None),
                ..
            }
        ));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let c = NamedContext::parse(&format!("oci-layout://x@{d}")).unwrap();
        assert!(matches!(
            c,
            NamedContext::OciLayout {
                reference: LayoutRef::Digest(_),
                ..
            }
        ));
        assert!(NamedContext::parse("oci-layout://x@sha256:bad").is_err());
        assert!(NamedContext::parse("docker-image://alpine").is_err());
        assert_eq!(
            NamedContext::parse("./dir").unwrap(),
            NamedContext::Dir("./dir".into())
        );
    }

    /// An OCI layout at `dir` whose `latest` is a chain of `levels` indexes, each naming
    /// the next for linux/amd64, above one image without layers.
    fn chain_layout(dir: &Path, levels: usize) -> Digest {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |v: serde_json::Value| {
            let data = serde_json::to_vec(&v).unwrap();
            let d = Digest::sha256(&data);
            std::fs::write(blobs.join(d.hex()), &data).unwrap();
            (d, data.len())
        };
        let config = put(serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}}));
        let mut top = put(
            serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config.0.to_string(), "size": config.1},
            "layers": []}),
        );
        let mut mt = media_type::OCI_MANIFEST;
        for _ in 0..levels {
            top = put(
                serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX,
                "manifests": [{"mediaType": mt, "digest": top.0.to_string(), "size": top.1,
                    "platform": {"os": "linux", "architecture": "amd64"}}]}),
            );
            mt = media_type::OCI_INDEX;
        }
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": media_type::OCI_INDEX, "digest": top.0.to_string(), "size": top.1,
            "annotations": {REF_NAME: "latest"}}]});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        top.0
    }

    #[test]
    fn layouts_nested_too_deep_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let amd64 = Platform::new("linux", "amd64", None);
        let latest = LayoutRef::Tag(None);
        let shallow = tmp.path().join("shallow");
        chain_layout(&shallow, 3);
        let image = resolve_layout(&shallow, &latest, &amd64, &store).unwrap();
        assert_eq!(image.platform.to_string(), "linux/amd64");
        let deep = tmp.path().join("deep");
        let root = chain_layout(&deep, 12);
        let err = resolve_layout(&deep, &latest, &amd64, &store)
            .unwrap_err()
            .to_string();
        assert!(err.contains("indexes nested more than 8 deep"), "{err}");
        assert!(err.contains(&format!("at {root} > ")), "{err}");
    }
}
