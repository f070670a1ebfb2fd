//! `image load`: OCI layout archives and Docker archives (what `docker save` and
//! `podman save` write, in either format) into the store.
//!
//! Archives are untrusted. Entry names are never used as paths: every regular file goes
//! through a verified blob write (a `blobs/sha256/<hex>` entry must hash to its name),
//! the JSON documents are read into memory with a size cap, and a name is set only when
//! every blob its image needs is present with the size its descriptor gives.

use crate::{ImageStore, ImagesError, Target, walk};
use rbuild_core::walk::Budget;
use rbuild_core::{Digest, Reference, media_type};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// One image an archive held.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The names it was given (full form), possibly none.
    pub names: Vec<String>,
    /// What they point at.
    pub target: Target,
}

const META_FILES: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];
const META_LIMIT: u64 = 16 << 20;

/// What reading an archive gave: its small JSON documents, every other regular file as
/// a stored blob, and its links.
#[derive(Default)]
struct Contents {
    meta: BTreeMap<String, Vec<u8>>,
    files: BTreeMap<String, (Digest, u64)>,
    links: BTreeMap<String, String>,
}

/// Loads every image of the archive at `path` and names it as the archive says.
pub fn load(images: &ImageStore, path: &Path) -> Result<Vec<Loaded>, ImagesError> {
    let contents = read_archive(images, path)?;
    let mut budget = Budget::new();
    let loaded = if let Some(index) = contents.meta.get("index.json") {
        from_oci_index(path, index, contents.meta.get("manifest.json"), &mut budget)?
    } else if let Some(manifest) = contents.meta.get("manifest.json") {
        from_docker_manifest(images, path, &contents, manifest)?
    } else {
        return Err(bad(
            path,
            "neither index.json nor manifest.json: not an OCI or Docker image archive",
        ));
    };
    for l in &loaded {
        check_complete(images, path, &l.target, &mut budget)?;
    }
    for l in &loaded {
        for n in &l.names {
            images.set(&Reference::parse(n)?, &l.target)?;
        }
    }
    Ok(loaded)
}

fn bad(path: &Path, detail: impl ToString) -> ImagesError {
    ImagesError::Archive {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Opens the archive, gunzipping it when it is compressed.
fn open(path: &Path) -> Result<Box<dyn Read>, ImagesError> {
    let file = std::fs::File::open(path).map_err(crate::io_err("open", path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader.fill_buf().map_err(crate::io_err("read", path))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)));
    }
    Ok(Box::new(reader))
}

fn read_archive(images: &ImageStore, path: &Path) -> Result<Contents, ImagesError> {
    let mut archive = tar::Archive::new(open(path)?);
    let mut contents = Contents::default();
    let entries = archive.entries().map_err(|e| bad(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(path, e))?;
        let name = entry_name(&entry.path_bytes());
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let base = if kind.is_symlink() {
                    parent(&name)
                } else {
                    String::new()
                };
                if let Some(t) = join_inside(&base, &String::from_utf8_lossy(&target)) {
                    contents.links.insert(name, t);
                }
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        if META_FILES.contains(&name.as_str()) {
            contents
                .meta
                .insert(name.clone(), read_meta(path, &name, &mut entry)?);
            continue;
        }
        let expected = name
            .strip_prefix("blobs/sha256/")
            .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok());
        let mut w = images.blobs().writer()?;
        std::io::copy(&mut entry, &mut w).map_err(|e| bad(path, format!("{name}: {e}")))?;
        let (digest, size) = w.commit(expected.as_ref()).map_err(|e| match e {
            rbuild_store::StoreError::DigestMismatch { .. } => bad(path, format!("{name}: {e}")),
            other => other.into(),
        })?;
        contents.files.insert(name, (digest, size));
    }
    Ok(contents)
}

fn read_meta(path: &Path, name: &str, entry: &mut impl Read) -> Result<Vec<u8>, ImagesError> {
    let mut data = Vec::new();
    entry
        .take(META_LIMIT + 1)
        .read_to_end(&mut data)
        .map_err(|e| bad(path, format!("{name}: {e}")))?;
    if data.len() as u64 > META_LIMIT {
        return Err(bad(
            path,
            format!("{name} is larger than {META_LIMIT} bytes"),
        ));
    }
    Ok(data)
}

/// An entry's name, normalised: no leading `./` or `/`, no `.` components. Used only as
/// a key, never as a path.
fn entry_name(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    join_inside("", &text).unwrap_or_default()
}

fn parent(name: &str) -> String {
    name.rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// `rel` taken from `base` inside the archive; `None` when it climbs out of it.
fn join_inside(base: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<String> = if rel.starts_with('/') {
        Vec::new()
    } else {
        base.split('/')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()
    };
    for c in PathBuf::from(rel).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.join("/"))
}

fn json(path: &Path, what: &str, data: &[u8]) -> Result<Value, ImagesError> {
    serde_json::from_slice(data).map_err(|e| bad(path, format!("{what}: {e}")))
}

/// The images of an OCI layout's `index.json`, named by their annotations (or, in
/// archives `docker save` writes, by `manifest.json`'s `RepoTags`).
fn from_oci_index(
    path: &Path,
    index: &[u8],
    docker_manifest: Option<&Vec<u8>>,
    budget: &mut Budget,
) -> Result<Vec<Loaded>, ImagesError> {
    let index = json(path, "index.json", index)?;
    let docker_tags = docker_manifest
        .map(|m| json(path, "manifest.json", m))
        .transpose()?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| bad(path, "index.json has no manifests"))?;
    budget
        .entries(&[], manifests.len())
        .map_err(|e| bad(path, format!("index.json: {e}")))?;
    let mut out: Vec<Loaded> = Vec::new();
    let mut found: HashMap<(Digest, u64, String), usize> = HashMap::new();
    for (i, d) in manifests.iter().enumerate() {
        let target = descriptor(path, d)?;
        let mut names = annotation_names(d);
        if names.is_empty()
            && let Some(tags) = docker_tags
                .as_ref()
                .and_then(|m| m[i]["RepoTags"].as_array())
        {
            names = tags.iter().filter_map(|t| full_name(t.as_str()?)).collect();
        }
        let key = (
            target.digest.clone(),
            target.size,
            target.media_type.clone(),
        );
        match found.get(&key).and_then(|&at| out.get_mut(at)) {
            Some(l) => l.names.extend(names),
            None => {
                found.insert(key, out.len());
                out.push(Loaded { names, target });
            }
        }
    }
    Ok(out)
}

fn descriptor(path: &Path, d: &Value) -> Result<Target, ImagesError> {
    let digest = d["digest"]
        .as_str()
        .and_then(|s| s.parse::<Digest>().ok())
        .ok_or_else(|| bad(path, format!("descriptor without a valid digest: {d}")))?;
    Ok(Target {
        media_type: d["mediaType"]
            .as_str()
            .unwrap_or(media_type::OCI_MANIFEST)
            .to_string(),
        digest,
        size: d["size"].as_u64().unwrap_or(0),
    })
}

/// Names from `io.containerd.image.name`, or a full name in `org.opencontainers.image.ref.name`.
fn annotation_names(d: &Value) -> Vec<String> {
    let a = &d["annotations"];
    let pick = a["io.containerd.image.name"].as_str().or_else(|| {
        a["org.opencontainers.image.ref.name"]
            .as_str()
            .filter(|n| n.contains('/') || n.contains(':'))
    });
    pick.and_then(full_name).into_iter().collect()
}

fn full_name(text: &str) -> Option<String> {
    Reference::parse(text)
        .ok()
        .filter(|r| r.digest().is_none())
        .map(|r| r.to_string())
}

/// The images of a Docker archive's `manifest.json` (config, layer files, RepoTags),
/// each given an OCI manifest written to the store.
fn from_docker_manifest(
    images: &ImageStore,
    path: &Path,
    contents: &Contents,
    manifest: &[u8],
) -> Result<Vec<Loaded>, ImagesError> {
    let entries = json(path, "manifest.json", manifest)?;
    let entries = entries
        .as_array()
        .ok_or_else(|| bad(path, "manifest.json is not a list"))?;
    let mut out = Vec::new();
    for e in entries {
        let config = file(path, contents, e["Config"].as_str().unwrap_or_default())?;
        let mut layers = Vec::new();
        for l in e["Layers"].as_array().into_iter().flatten() {
            let (digest, size) = file(path, contents, l.as_str().unwrap_or_default())?;
            let mt = sniff_layer(images, &digest)?;
            layers.push(
                serde_json::json!({"mediaType": mt, "digest": digest.to_string(), "size": size}),
            );
        }
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config.0.to_string(), "size": config.1},
            "layers": layers,
        });
        let data = serde_json::to_vec(&m).map_err(|e| bad(path, e))?;
        let (digest, size) = images.blobs().put_bytes(&data)?;
        let names = e["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| full_name(t.as_str()?))
            .collect();
        out.push(Loaded {
            names,
            target: Target {
                media_type: media_type::OCI_MANIFEST.into(),
                digest,
                size,
            },
        });
    }
    Ok(out)
}

/// The stored blob of an archive file named in `manifest.json`, following links.
fn file(path: &Path, contents: &Contents, name: &str) -> Result<(Digest, u64), ImagesError> {
    let mut name = entry_name(name.as_bytes());
    for _ in 0..16 {
        if let Some(f) = contents.files.get(&name) {
            return Ok(f.clone());
        }
        match contents.links.get(&name) {
            Some(t) => name = t.clone(),
            None => break,
        }
    }
    Err(bad(
        path,
        format!("manifest.json names {name:?}, which the archive does not hold"),
    ))
}

/// A layer's media type from its first bytes (Docker archives do not say).
fn sniff_layer(images: &ImageStore, digest: &Digest) -> Result<&'static str, ImagesError> {
    let mut head = [0u8; 4];
    let mut f = images.blobs().open_blob(digest)?;
    let n = f.read(&mut head).unwrap_or(0);
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => media_type::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => media_type::OCI_LAYER_ZSTD,
        _ => media_type::OCI_LAYER_TAR,
    })
}

/// Every blob the image needs is in the store with its descriptor's size. `budget` is
/// the archive's: what an earlier image of it walked is not read again.
fn check_complete(
    images: &ImageStore,
    path: &Path,
    target: &Target,
    budget: &mut Budget,
) -> Result<(), ImagesError> {
    let needed = walk::closure_in(images.blobs(), target, budget).map_err(|e| bad(path, e))?;
    for n in needed {
        match images.blobs().blob_size(&n.digest) {
            Some(s) if s == n.size => {}
            Some(s) => {
                return Err(bad(
                    path,
                    format!(
                        "{} {} has {s} bytes, its descriptor says {}",
                        n.kind, n.digest, n.size
                    ),
                ));
            }
            None => {
                return Err(bad(
                    path,
                    format!("the archive lacks {} {}", n.kind, n.digest),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Written raw so names like `../x` reach the reader as they are.
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn setup() -> (tempfile::TempDir, ImageStore) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let blobs = rbuild_store::Store::open(&state.join("store")).unwrap();
        let images = ImageStore::open(&rbuild_state::StateDir::at(state.clone()), blobs).unwrap();
        (dir, images)
    }

    #[test]
    fn hostile_archives_write_nothing_outside_the_store() {
        let (dir, images) = setup();
        let wrong = format!("blobs/sha256/{}", Digest::sha256(b"other").hex());
        let archive = dir.path().join("evil.tar");
        std::fs::write(
            &archive,
            tar_of(&[
                ("../../escaped", b"x"),
                ("/abs-escaped", b"y"),
                (&wrong, b"data"),
            ]),
        )
        .unwrap();
        let err = load(&images, &archive).unwrap_err().to_string();
        assert!(err.contains("digest mismatch"), "{err}");
        for p in ["escaped", "abs-escaped", "state/escaped"] {
            assert!(!dir.path().join(p).exists(), "{p}");
        }
        assert!(!Path::new("/abs-escaped").exists());
        assert!(images.list().unwrap().is_empty());
    }

    #[test]
    fn an_index_naming_absent_blobs_sets_no_name() {
        let (dir, images) = setup();
        let missing = Digest::sha256(b"absent manifest");
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{missing}","size":3,"annotations":{{"io.containerd.image.name":"docker.io/library/x:1"}}}}]}}"#
        );
        let archive = dir.path().join("partial.tar");
        std::fs::write(&archive, tar_of(&[("index.json", index.as_bytes())])).unwrap();
        assert!(load(&images, &archive).is_err());
        assert!(images.list().unwrap().is_empty());
    }

    #[test]
    fn names_never_leave_the_archive() {
        assert_eq!(entry_name(b"./blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(entry_name(b"/index.json"), "index.json");
        assert_eq!(
            join_inside("a/b", "../c/layer.tar").as_deref(),
            Some("a/c/layer.tar")
        );
        assert_eq!(join_inside("a", "../../x"), None);
    }
}
