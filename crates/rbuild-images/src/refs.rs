//! Names → descriptors, one file per name.

use crate::{ImagesError, io_err, malformed};
use rbuild_core::walk::Budget;
use rbuild_core::{Digest, Reference, media_type};
use rbuild_state::{StateDir, TempKind};
use rbuild_store::Store;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The descriptor a name points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `application/vnd.oci.image.index.v1+json`, a manifest type, or Docker's equivalents.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size.
    pub size: u64,
}

impl Target {
    /// Whether the target is an index (manifest list).
    pub fn is_index(&self) -> bool {
        is_index_type(&self.media_type)
    }
}

/// Whether a media type is an image index or Docker manifest list.
pub fn is_index_type(mt: &str) -> bool {
    mt == media_type::OCI_INDEX || mt == media_type::DOCKER_MANIFEST_LIST
}

/// One named image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The full name, e.g. `docker.io/library/app:latest`.
    pub name: String,
    /// What it points at.
    pub target: Target,
    /// When the name was last set (Unix seconds).
    pub updated: i64,
}

impl ImageRecord {
    /// The name as a reference.
    pub fn reference(&self) -> Result<Reference, ImagesError> {
        Ok(Reference::parse(&self.name)?)
    }
}

/// A record file and what reading it gave.
pub type RecordFile = (PathBuf, Result<ImageRecord, ImagesError>);

/// The image store of one state directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    state: StateDir,
    blobs: Store,
}

impl ImageStore {
    /// The image store of the state directory `state`, over its blob store `blobs`.
    pub fn open(state: &StateDir, blobs: Store) -> Result<ImageStore, ImagesError> {
        let s = ImageStore {
            state: state.clone(),
            blobs,
        };
        for d in [state.images(), state.tmp()] {
            fs::create_dir_all(&d).map_err(io_err("create", &d))?;
        }
        Ok(s)
    }

    /// The blob store underneath.
    pub fn blobs(&self) -> &Store {
        &self.blobs
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    fn refs_dir(&self) -> PathBuf {
        self.state.images()
    }

    /// The file of a name: the sha256 of the full name, so no name can form a path.
    fn ref_path(&self, name: &str) -> PathBuf {
        self.refs_dir()
            .join(format!("{}.json", Digest::sha256(name.as_bytes()).hex()))
    }

    /// Points `name` (tag form) at `target`, whose blobs must all be in the store. The
    /// file is written beside and renamed into place.
    pub fn set(&self, name: &Reference, target: &Target) -> Result<ImageRecord, ImagesError> {
        if !self.blobs.contains(&target.digest) {
            return Err(rbuild_store::StoreError::Missing(target.digest.clone()).into());
        }
        let name = name.with_tag(name.tag().unwrap_or("latest"));
        let record = ImageRecord {
            name: name.to_string(),
            target: target.clone(),
            updated: now(),
        };
        let data = serde_json::to_vec_pretty(&record).map_err(|e| ImagesError::Malformed {
            what: "image record",
            digest: target.digest.clone(),
            detail: e.to_string(),
        })?;
        let dest = self.ref_path(&record.name);
        let mut tmp = self.state.temp_file(TempKind::ImageName)?;
        tmp.write_all(&data)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io_err("write", tmp.path()))?;
        tmp.persist(&dest).map_err(|e| ImagesError::Io {
            op: "rename into",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(record)
    }

    /// The record of a tag, if present.
    pub fn get(&self, name: &Reference) -> Result<Option<ImageRecord>, ImagesError> {
        let full = name.with_tag(name.tag().unwrap_or("latest"));
        let path = self.ref_path(&full.to_string());
        match fs::read(&path) {
            Ok(data) => Ok(Some(parse_record(&path, &data)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Removes a tag; returns whether it existed.
    pub fn remove(&self, name: &Reference) -> Result<Option<ImageRecord>, ImagesError> {
        let Some(record) = self.get(name)? else {
            return Ok(None);
        };
        let path = self.ref_path(&record.name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(record)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Every named image, sorted by name. Unreadable record files are reported by
    /// [`crate::fsck`] and skipped here.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImagesError> {
        Ok(self
            .record_files()?
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .collect())
    }

    /// Every record file and what reading it gave, sorted by name.
    pub fn record_files(&self) -> Result<Vec<RecordFile>, ImagesError> {
        let dir = self.refs_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let path = entry.map_err(io_err("read", &dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let parsed = fs::read(&path)
                .map_err(io_err("read", &path))
                .and_then(|d| parse_record(&path, &d));
            out.push((path, parsed));
        }
        out.sort_by(|a, b| match (&a.1, &b.1) {
            (Ok(x), Ok(y)) => x.name.cmp(&y.name),
            _ => a.0.cmp(&b.0),
        });
        Ok(out)
    }

    /// Finds an image by name (`app`, `app:1`), by `name@digest` or by image id (a prefix
    /// of at least 4 hex digits of the digest a name points at, with or without `sha256:`).
    pub fn resolve(&self, text: &str) -> Result<Target, ImagesError> {
        if let Ok(reference) = Reference::parse(text) {
            if let Some(digest) = reference.digest() {
                return self.target_of_digest(digest);
            }
            if let Some(r) = self.get(&reference)? {
                return Ok(r.target);
            }
        }
        if let Ok(digest) = text.parse::<Digest>()
            && self.blobs.contains(&digest)
        {
            return self.target_of_digest(&digest);
        }
        self.resolve_id(text)?
            .ok_or_else(|| ImagesError::NotFound(text.to_string()))
    }

    fn resolve_id(&self, text: &str) -> Result<Option<Target>, ImagesError> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if hex.len() < 4 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut found: Vec<Target> = Vec::new();
        for r in self.list()? {
            if r.target.digest.hex().starts_with(hex) && !found.contains(&r.target) {
                found.push(r.target);
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(ImagesError::Ambiguous(
                text.to_string(),
                found
                    .iter()
                    .map(|t| t.digest.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// The descriptor of a stored index or manifest blob, its media type read from it (a
    /// blob larger than a manifest may be is refused unread).
    pub fn target_of_digest(&self, digest: &Digest) -> Result<Target, ImagesError> {
        let path = std::slice::from_ref(digest);
        let data = self.blobs.read_document(&mut Budget::new(), path)?;
        let media_type = media_type_of(digest, &data)?;
        Ok(Target {
            media_type,
            digest: digest.clone(),
            size: data.len() as u64,
        })
    }

    /// The names pointing at `digest`.
    pub fn names_of(&self, digest: &Digest) -> Result<Vec<String>, ImagesError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| &r.target.digest == digest)
            .map(|r| r.name)
            .collect())
    }
}

fn parse_record(path: &Path, data: &[u8]) -> Result<ImageRecord, ImagesError> {
    serde_json::from_slice(data).map_err(|e| ImagesError::Archive {
        path: path.to_path_buf(),
        detail: format!("unreadable image record: {e}"),
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The media type of a stored index or manifest: its `mediaType`, or what its keys say.
pub fn media_type_of(digest: &Digest, data: &[u8]) -> Result<String, ImagesError> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| malformed("document", digest, e))?;
    if let Some(mt) = value.get("mediaType").and_then(|m| m.as_str()) {
        return Ok(mt.to_string());
    }
    if value.get("manifests").is_some() {
        Ok(media_type::OCI_INDEX.into())
    } else if value.get("config").is_some() {
        Ok(media_type::OCI_MANIFEST.into())
    } else {
        Err(malformed(
            "document",
            digest,
            "neither an image index nor a manifest",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ImageStore, Target) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Store::open(&dir.path().join("store")).unwrap();
        let (digest, size) = blobs
            .put_bytes(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#)
            .unwrap();
        let images = ImageStore::open(&StateDir::at(dir.path().to_path_buf()), blobs).unwrap();
        let target = Target {
            media_type: media_type::OCI_INDEX.into(),
            digest,
            size,
        };
        (dir, images, target)
    }

    #[test]
    fn names_are_set_found_listed_and_removed() {
        let (_dir, images, target) = store();
        let app = Reference::parse("app").unwrap();
        images.set(&app, &target).unwrap();
        images
            .set(&Reference::parse("me/app:2").unwrap(), &target)
            .unwrap();
        assert_eq!(images.resolve("app:latest").unwrap(), target);
        assert_eq!(images.resolve(&target.digest.hex()[..8]).unwrap(), target);
        let names: Vec<String> = images.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            ["docker.io/library/app:latest", "docker.io/me/app:2"]
        );
        assert!(images.remove(&app).unwrap().is_some());
        assert!(matches!(
            images.resolve("app"),
            Err(ImagesError::NotFound(_))
        ));
    }

    #[test]
    fn a_name_needs_its_blob() {
        let (_dir, images, mut target) = store();
        target.digest = Digest::sha256(b"absent");
        assert!(
            images
                .set(&Reference::parse("x").unwrap(), &target)
                .is_err()
        );
    }
}
