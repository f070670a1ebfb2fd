//! Where credentials come from, in Docker's and then podman's order:
//! `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`: `credHelpers`, `credsStore`,
//! `auths`), then `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.config/containers/auth.json`. Helpers speak the `docker-credential-<name>` protocol.

use crate::error::RegistryError;
use base64::Engine as _;
use rbuild_core::reference::{DOCKER_HUB, normalize_registry};
use rbuild_core::text::{sanitize, sanitize_bytes};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The key Docker files Docker Hub's credentials under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and secret for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name (`<token>` for an identity token).
    pub username: String,
    /// The password, or an identity (refresh) token.
    pub secret: String,
}

impl Credential {
    /// Whether the secret is an OAuth2 refresh token rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.username == "<token>" || self.username.is_empty()
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <redacted>)", self.username)
    }
}

/// What a lookup found, and where; `source` is shown in access-denied errors.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The credential, if any.
    pub credential: Option<Credential>,
    /// "credentials from …" or "no credentials found (looked in …)".
    pub source: String,
}

/// The Docker client config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    home().map(|h| h.join(".docker/config.json"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The podman/buildah auth files, in lookup order.
pub fn auth_file_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        out.push(PathBuf::from(x).join("containers/auth.json"));
    }
    if let Some(h) = home() {
        out.push(h.join(".config/containers/auth.json"));
    }
    out
}

/// The key `registry` is stored under in config.json.
pub fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_KEY.into()
    } else {
        registry.into()
    }
}

/// Finds credentials for `repository` on `registry`.
pub fn lookup(registry: &str, repository: &str) -> Result<Lookup, RegistryError> {
    let mut looked = Vec::new();
    if let Some(path) = docker_config_path() {
        looked.push(path.display().to_string());
        if let Some(found) = from_docker_config(&path, registry)? {
            return Ok(found);
        }
    }
    for path in auth_file_paths() {
        looked.push(path.display().to_string());
        if let Some(json) = read_json(&path)?
            && let Some(c) = from_auths(&json, registry, Some(repository))
        {
            return Ok(found(c, &path.display().to_string()));
        }
    }
    Ok(Lookup {
        credential: None,
        source: format!("no credentials found (looked in {})", looked.join(", ")),
    })
}

fn found(c: Credential, from: &str) -> Lookup {
    Lookup {
        source: format!("used credentials of {:?} from {from}", c.username),
        credential: Some(c),
    }
}

fn from_docker_config(path: &Path, registry: &str) -> Result<Option<Lookup>, RegistryError> {
    let Some(json) = read_json(path)? else {
        return Ok(None);
    };
    if let Some(helper) = helper_for(&json, registry) {
        let where_ = format!(
            "docker-credential-{helper} (configured in {})",
            path.display()
        );
        return Ok(helper_get(&helper, registry)?.map(|c| found(c, &where_)));
    }
    Ok(from_auths(&json, registry, None).map(|c| found(c, &path.display().to_string())))
}

/// Reads a JSON file; `None` when it does not exist.
pub(crate) fn read_json(path: &Path) -> Result<Option<Value>, RegistryError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RegistryError::io("read", path)(e)),
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|e| RegistryError::Config {
            path: path.into(),
            detail: e.to_string(),
        })
}

/// The best `auths` entry: `registry/repository` prefixes (podman) first, then the
/// registry under any of the spellings Docker has used (`https://host/v1/`, `host`).
fn from_auths(json: &Value, registry: &str, repository: Option<&str>) -> Option<Credential> {
    let auths = json.get("auths")?.as_object()?;
    if let Some(repo) = repository {
        let mut path = format!("{registry}/{repo}");
        loop {
            if let Some(c) = auths.get(&path).and_then(entry_credential) {
                return Some(c);
            }
            match path.rsplit_once('/') {
                Some((p, _)) if p.contains('/') => path = p.to_string(),
                _ => break,
            }
        }
    }
    auths
        .iter()
        .filter(|(k, _)| registry_key_matches(k, registry))
        .find_map(|(_, v)| entry_credential(v))
}

/// Whether an `auths` key names the whole registry: `host`, or a URL (`https://host/v1/`).
/// A key `host/path` without a scheme is podman's per-repository entry.
pub(crate) fn registry_key_matches(key: &str, registry: &str) -> bool {
    let has_scheme = key.starts_with("https://") || key.starts_with("http://");
    (has_scheme || !key.contains('/')) && normalize_registry(key) == registry
}

fn entry_credential(v: &Value) -> Option<Credential> {
    if let Some(t) = v
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Some(Credential {
            username: "<token>".into(),
            secret: t.into(),
        });
    }
    if let Some(auth) = v
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some(Credential {
            username: u.into(),
            secret: p.into(),
        });
    }
    let u = v.get("username").and_then(Value::as_str)?;
    let p = v.get("password").and_then(Value::as_str)?;
    Some(Credential {
        username: u.into(),
        secret: p.into(),
    })
}

/// `docker-credential-<helper> <action>` with `input` on stdin; stdout, or the error.
fn run_helper(
    helper: &str,
    action: &str,
    input: &[u8],
    registry: &str,
) -> Result<(bool, Vec<u8>), RegistryError> {
    let program = format!("docker-credential-{helper}");
    let fail = |detail: String| RegistryError::Credentials {
        registry: registry.into(),
        detail,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("running {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| fail(format!("writing to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("running {program}: {e}")))?;
    let mut text = out.stdout;
    if !out.status.success() {
        text.extend_from_slice(&out.stderr);
    }
    Ok((out.status.success(), text))
}

/// Asks a helper for the credentials of `registry`; `None` when it has none.
fn helper_get(helper: &str, registry: &str) -> Result<Option<Credential>, RegistryError> {
    let (ok, out) = run_helper(helper, "get", config_key(registry).as_bytes(), registry)?;
    let text = String::from_utf8_lossy(&out);
    if !ok {
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(RegistryError::Credentials {
            registry: registry.into(),
            detail: format!("docker-credential-{helper} get: {}", sanitize(text.trim())),
        });
    }
    let v: Value = serde_json::from_slice(&out).map_err(|e| RegistryError::Credentials {
        registry: registry.into(),
        detail: format!("docker-credential-{helper} get: {e}"),
    })?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let secret = field("Secret");
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential {
        username: field("Username"),
        secret,
    }))
}

/// The helper config.json names for `registry`, if any.
pub(crate) fn helper_for(json: &Value, registry: &str) -> Option<String> {
    json.get("credHelpers")
        .and_then(|h| {
            h.get(registry)
                .or_else(|| h.get(config_key(registry).as_str()))
        })
        .or_else(|| json.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// Stores credentials through a helper.
pub(crate) fn helper_store(
    helper: &str,
    registry: &str,
    c: &Credential,
) -> Result<(), RegistryError> {
    let input = serde_json::json!({
        "ServerURL": config_key(registry),
        "Username": c.username,
        "Secret": c.secret,
    });
    let (ok, out) = run_helper(helper, "store", input.to_string().as_bytes(), registry)?;
    if !ok {
        return Err(RegistryError::Credentials {
            registry: registry.into(),
            detail: format!(
                "docker-credential-{helper} store: {}",
                sanitize_bytes(&out).trim()
            ),
        });
    }
    Ok(())
}

/// Erases credentials through a helper (absent credentials are not an error).
pub(crate) fn helper_erase(helper: &str, registry: &str) -> Result<(), RegistryError> {
    let (ok, out) = run_helper(helper, "erase", config_key(registry).as_bytes(), registry)?;
    let text = String::from_utf8_lossy(&out);
    if !ok && !text.contains("not found") {
        return Err(RegistryError::Credentials {
            registry: registry.into(),
            detail: format!(
                "docker-credential-{helper} erase: {}",
                sanitize(text.trim())
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_entries_in_every_spelling() {
        let json = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "r.example:5000": {"username": "a", "password": "b"},
            "q.example/team/app": {"auth": "eDp5"},
        }});
        let hub = from_auths(&json, "docker.io", None).unwrap();
        assert_eq!((hub.username.as_str(), hub.secret.as_str()), ("u", "p"));
        assert_eq!(
            from_auths(&json, "r.example:5000", None).unwrap().secret,
            "b"
        );
        assert_eq!(
            from_auths(&json, "q.example", Some("team/app/sub"))
                .unwrap()
                .username,
            "x"
        );
        assert!(from_auths(&json, "q.example", Some("other")).is_none());
        assert!(from_auths(&json, "nothere", None).is_none());
    }

    #[test]
    fn identity_tokens_are_recognised() {
        let json = serde_json::json!({"auths": {"h": {"identitytoken": "tok"}}});
        let c = from_auths(&json, "h", None).unwrap();
        assert!(c.is_identity_token());
        assert_eq!(format!("{c:?}"), "Credential(<token>, <redacted>)");
    }
}
