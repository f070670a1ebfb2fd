//! The image config. rbuild keeps its own type (not oci-spec's) because the OCI type
//! drops Docker's extension fields (Healthcheck, OnBuild, Shell, ArgsEscaped) and unknown
//! keys; both must survive a base image → derived image round trip.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// An image config blob (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    /// When the image was created (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The MAINTAINER / author.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (GOARCH name).
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// CPU variant, e.g. v7.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Runtime defaults for containers of this image.
    #[serde(default)]
    pub config: ContainerConfig,
    /// The uncompressed layer digests, bottom first.
    pub rootfs: RootFs,
    /// One entry per Dockerfile step, with `empty_layer` for metadata-only steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Keys rbuild does not interpret, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `config` object of an image config, with Docker's extension fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// USER.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// EXPOSE, as `port/proto` keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Map<String, Value>>>,
    /// ENV, in declaration order, `K=V`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// VOLUME.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Map<String, Value>>>,
    /// WORKDIR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// LABEL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// STOPSIGNAL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// HEALTHCHECK (Docker extension, kept in OCI configs as BuildKit does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// ONBUILD triggers (Docker extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// SHELL (Docker extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Whether CMD/ENTRYPOINT were already escaped (Windows; kept for round trips).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// Keys rbuild does not interpret, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// HEALTHCHECK settings, durations in nanoseconds as Docker stores them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", cmd]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// --interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// --timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// --start-period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// --start-interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// --retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// The `rootfs` object: the layers' diff ids.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// sha256 of each uncompressed layer, bottom first.
    pub diff_ids: Vec<crate::Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    /// When the step ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction, as BuildKit writes it (e.g. `RUN /bin/sh -c make`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free-form comment (BuildKit writes `buildkit.dockerfile.v0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True for steps that changed only the config.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Serialises the config canonically (fixed field order, sorted maps).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parses a config blob, keeping unknown fields.
    pub fn from_json(data: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        serde_json::from_slice(data)
    }

    /// Sets (or replaces) one environment variable, keeping declaration order.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }

    /// Looks an environment variable up.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.config
            .env
            .iter()
            .flatten()
            .find_map(|e| e.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_extension_and_unknown_fields_survive_a_round_trip() {
        let src = br#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Healthcheck":{"Test":["CMD","true"],"Interval":1000},"OnBuild":["RUN x"],"Shell":["/bin/bash","-c"],"Custom":1},"rootfs":{"type":"layers","diff_ids":[]},"moby.buildkit.cache.v0":"x"}"#;
        let cfg = ImageConfig::from_json(src).unwrap();
        assert_eq!(
            cfg.config.on_build.as_deref(),
            Some(&["RUN x".to_string()][..])
        );
        let out = String::from_utf8(cfg.to_json().unwrap()).unwrap();
        assert!(out.contains(r#""Healthcheck":{"Test":["CMD","true"],"Interval":1000}"#));
        assert!(out.contains(r#""Custom":1"#));
        assert!(out.contains(r#""moby.buildkit.cache.v0":"x""#));
        assert!(out.contains(r#""Shell":["/bin/bash","-c"]"#));
    }

    #[test]
    fn set_env_replaces_in_place() {
        let mut cfg = ImageConfig::default();
        cfg.set_env("A", "1");
        cfg.set_env("B", "2");
        cfg.set_env("A", "3");
        assert_eq!(cfg.config.env.unwrap(), vec!["A=3", "B=2"]);
    }
}
