//! `rbuild login` / `logout`: credentials written to config.json as Docker writes them
//! (`auths.<key>.auth` = base64 of `user:password`, mode 0600, other keys kept), or handed
//! to the credential helper config.json names for the registry.

use crate::credentials::{self, Credential, config_key};
use crate::error::RegistryError;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where `store` put the credentials, for the message after a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// In config.json itself.
    File(PathBuf),
    /// Through `docker-credential-<name>`.
    Helper(String),
}

fn config_path() -> Result<PathBuf, RegistryError> {
    credentials::docker_config_path().ok_or_else(|| RegistryError::Credentials {
        registry: String::new(),
        detail: "neither $DOCKER_CONFIG nor $HOME is set: nowhere to keep credentials".into(),
    })
}

/// Saves `credential` for `registry`.
pub fn store(registry: &str, credential: &Credential) -> Result<Stored, RegistryError> {
    let path = config_path()?;
    let mut json = credentials::read_json(&path)?.unwrap_or_else(|| Value::Object(Map::new()));
    if let Some(helper) = credentials::helper_for(&json, registry) {
        credentials::helper_store(&helper, registry, credential)?;
        return Ok(Stored::Helper(helper));
    }
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credential.username, credential.secret));
    let obj = object(&mut json, &path)?;
    let auths = obj
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let auths = auths.as_object_mut().ok_or_else(|| RegistryError::Config {
        path: path.clone(),
        detail: "\"auths\" is not an object".into(),
    })?;
    auths.insert(config_key(registry), serde_json::json!({ "auth": auth }));
    write_config(&path, &json)?;
    Ok(Stored::File(path))
}

/// Removes the credentials of `registry`; returns whether there were any in config.json
/// (helpers are asked to erase in any case).
pub fn remove(registry: &str) -> Result<bool, RegistryError> {
    let path = config_path()?;
    let Some(mut json) = credentials::read_json(&path)? else {
        return Ok(false);
    };
    if let Some(helper) = credentials::helper_for(&json, registry) {
        credentials::helper_erase(&helper, registry)?;
    }
    let obj = object(&mut json, &path)?;
    let Some(auths) = obj.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let keys: Vec<String> = auths
        .keys()
        .filter(|k| credentials::registry_key_matches(k, registry))
        .cloned()
        .collect();
    for k in &keys {
        auths.remove(k);
    }
    if !keys.is_empty() {
        write_config(&path, &json)?;
    }
    Ok(!keys.is_empty())
}

fn object<'a>(
    json: &'a mut Value,
    path: &Path,
) -> Result<&'a mut Map<String, Value>, RegistryError> {
    json.as_object_mut().ok_or_else(|| RegistryError::Config {
        path: path.into(),
        detail: "not a JSON object".into(),
    })
}

/// Writes config.json beside itself and renames it into place, mode 0600.
fn write_config(path: &Path, json: &Value) -> Result<(), RegistryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(RegistryError::io("create", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(RegistryError::io("chmod", dir))?;
    }
    let mut text = serde_json::to_vec_pretty(json).map_err(|e| RegistryError::Config {
        path: path.into(),
        detail: e.to_string(),
    })?;
    text.push(b'\n');
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(RegistryError::io("create", &tmp))?;
    f.write_all(&text)
        .and_then(|_| f.sync_all())
        .map_err(RegistryError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(RegistryError::io("rename into", path))
}
