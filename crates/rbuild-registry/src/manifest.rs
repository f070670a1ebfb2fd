//! Manifests and indexes as read from registries: only the descriptors rbuild follows are
//! parsed; the bytes are kept exactly as they came (their digest is over those bytes).

use crate::error::RegistryError;
use rbuild_core::{Digest, Platform, media_type};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The largest manifest or index rbuild reads (registries are untrusted): the one limit
/// every walk over an image graph has.
pub const MAX_MANIFEST: u64 = rbuild_core::walk::MAX_DOCUMENT;

/// The `Accept` header of manifest requests.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// Its media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform (index entries).
    #[serde(default)]
    pub platform: Option<PlatformJson>,
    /// Annotations.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The `platform` object of an index entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PlatformJson {
    /// `linux`.
    pub os: String,
    /// `amd64`.
    pub architecture: String,
    /// `v8`.
    #[serde(default)]
    pub variant: Option<String>,
}

impl PlatformJson {
    /// As rbuild's platform type.
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum Document {
    /// An OCI index or Docker manifest list.
    Index(Vec<Descriptor>),
    /// An OCI or Docker schema 2 image manifest.
    Manifest {
        /// The config blob.
        config: Descriptor,
        /// The layers, bottom first.
        layers: Vec<Descriptor>,
    },
}

/// Whether a media type names an index or manifest list.
pub fn is_index(mt: &str) -> bool {
    mt == media_type::OCI_INDEX || mt == media_type::DOCKER_MANIFEST_LIST
}

/// Parses `bytes` (served with `content_type`); returns the media type and the document.
/// Schema 1 and unknown types are refused.
pub fn parse(
    bytes: &[u8],
    content_type: &str,
    reference: &str,
) -> Result<(String, Document), RegistryError> {
    if content_type.contains("vnd.docker.distribution.manifest.v1+") {
        return Err(RegistryError::Schema1 {
            reference: reference.into(),
        });
    }
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::malformed(format!("manifest of {reference}"), e))?;
    if raw.schema_version == 1 {
        return Err(RegistryError::Schema1 {
            reference: reference.into(),
        });
    }
    let mt = raw
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| {
            Some(
                content_type
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            )
            .filter(|c| c.contains("vnd."))
        })
        .unwrap_or_else(|| {
            if raw.manifests.is_some() {
                media_type::OCI_INDEX.into()
            } else {
                media_type::OCI_MANIFEST.into()
            }
        });
    let doc = match mt.as_str() {
        m if is_index(m) => Document::Index(raw.manifests.unwrap_or_default()),
        media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => Document::Manifest {
            config: raw.config.ok_or_else(|| {
                RegistryError::malformed(format!("manifest of {reference}"), "no config descriptor")
            })?,
            layers: raw.layers.unwrap_or_default(),
        },
        other => {
            return Err(RegistryError::MediaType {
                reference: reference.into(),
                media_type: other.into(),
            });
        }
    };
    Ok((mt, doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn documents_are_classified() {
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D}","size":3,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            media_type::OCI_MANIFEST
        );
        let (mt, doc) = parse(idx.as_bytes(), "application/json", "x").unwrap();
        assert_eq!(mt, media_type::OCI_INDEX);
        let Document::Index(m) = doc else { panic!() };
        assert_eq!(
            m[0].platform.as_ref().unwrap().platform().to_string(),
            "linux/arm64"
        );
        let man =
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D}","size":0}},"layers":[]}}"#);
        let (mt, _) = parse(man.as_bytes(), media_type::DOCKER_MANIFEST, "x").unwrap();
        assert_eq!(mt, media_type::DOCKER_MANIFEST);
    }

    #[test]
    fn schema1_and_strangers_are_refused() {
        assert!(matches!(
            parse(
                br#"{"schemaVersion":1,"fsLayers":[]}"#,
                "application/json",
                "x"
            ),
            Err(RegistryError::Schema1 { .. })
        ));
        assert!(matches!(
            parse(
                b"{}",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                "x"
            ),
            Err(RegistryError::Schema1 { .. })
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, "", "x"),
            Err(RegistryError::MediaType { .. })
        ));
        assert!(
            parse(
                br#"{"schemaVersion":2,"config":{"digest":"sha256:00","size":1}}"#,
                "",
                "x"
            )
            .is_err()
        );
    }
}
