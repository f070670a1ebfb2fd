//! rbuild's registry settings: `$RBUILD_CONFIG`, else `$XDG_CONFIG_HOME/rbuild/config.toml`
//! (`~/.config/rbuild/config.toml`), else `/etc/rbuild/config.toml`; the first that exists.
//!
//! ```toml
//! [registry."docker.io"]
//! mirrors = ["mirror.internal:5000"]   # tried in order
//! mirror-fallback = true               # then the registry itself (default true)
//!
//! [registry."build.internal:5000"]
//! insecure = true                      # plain HTTP / unverified TLS allowed
//!                                      # (false: TLS required even on loopback)
//! ```

use crate::error::RegistryError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Settings for one registry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegistrySettings {
    /// `true`: plain HTTP and unverified TLS are allowed. `false`: HTTPS with verified
    /// certificates only, even for loopback addresses. Unset: plain HTTP only for loopback.
    #[serde(default)]
    pub insecure: Option<bool>,
    /// Mirrors (host[:port]) tried in order for pulls.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Whether the registry itself is tried when every mirror failed.
    #[serde(default = "yes")]
    pub mirror_fallback: bool,
}

fn yes() -> bool {
    true
}

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per-registry settings, keyed by host[:port] (`docker.io` for Docker Hub).
    #[serde(default)]
    pub registry: BTreeMap<String, RegistrySettings>,
    /// The file it came from (or would come from), for messages.
    #[serde(skip)]
    pub path: PathBuf,
    /// How long requests may take (set from the command line, not the file).
    #[serde(skip)]
    pub timeouts: crate::timeouts::Timeouts,
}

impl Config {
    /// Reads the first config file that exists (an empty config when none does).
    pub fn load() -> Result<Config, RegistryError> {
        let candidates = config_paths();
        for p in &candidates {
            if p.is_file() {
                return Config::read(p);
            }
        }
        Ok(Config {
            path: candidates.into_iter().next().unwrap_or_default(),
            ..Config::default()
        })
    }

    /// Reads one config file.
    pub fn read(path: &Path) -> Result<Config, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(RegistryError::io("read", path))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| RegistryError::Config {
            path: path.into(),
            detail: e.to_string(),
        })?;
        c.path = path.into();
        Ok(c)
    }

    /// The settings of `registry` (defaults when it has none).
    pub fn settings(&self, registry: &str) -> RegistrySettings {
        self.registry
            .get(registry)
            .cloned()
            .unwrap_or(RegistrySettings {
                mirror_fallback: true,
                ..RegistrySettings::default()
            })
    }

    /// Marks `registry` insecure (buildx's `registry.insecure=true`).
    pub fn allow_insecure(&mut self, registry: &str) {
        self.registry
            .entry(registry.to_string())
            .or_insert_with(|| RegistrySettings {
                mirror_fallback: true,
                ..RegistrySettings::default()
            })
            .insecure = Some(true);
    }
}

/// Where the config file is looked for, in order.
pub fn config_paths() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("RBUILD_CONFIG").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        out.push(PathBuf::from(x).join("rbuild/config.toml"));
    } else if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        out.push(PathBuf::from(h).join(".config/rbuild/config.toml"));
    }
    out.push(PathBuf::from("/etc/rbuild/config.toml"));
    out
}

/// Whether `registry` (host[:port]) is a loopback address, where Docker allows plain HTTP.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_part(registry);
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The host of `host[:port]` (IPv6 brackets removed).
fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[registry.\"docker.io\"]\nmirrors = [\"m:5000\"]\n[registry.\"r:1\"]\ninsecure = true\nmirror-fallback = false\n",
        )
        .unwrap();
        let c = Config::read(&p).unwrap();
        let hub = c.settings("docker.io");
        assert_eq!(hub.mirrors, vec!["m:5000"]);
        assert!(hub.mirror_fallback);
        assert_eq!(hub.insecure, None);
        assert_eq!(c.settings("r:1").insecure, Some(true));
        assert!(!c.settings("r:1").mirror_fallback);
        assert!(c.settings("other").mirror_fallback);
        std::fs::write(&p, "[registry.x]\nbogus = 1\n").unwrap();
        assert!(Config::read(&p).is_err());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("example.com:5000"));
        assert!(!is_loopback("10.0.0.1"));
    }
}
