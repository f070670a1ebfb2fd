//! Build secrets and SSH agents given on the command line (`--secret`, `--ssh`). Values
//! are read only when a step mounts them and are never logged or hashed.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

/// A `--secret` or `--ssh` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret's file could not be read.
    #[error("reading secret {id:?} from {}: {source}", path.display())]
    Read {
        /// The secret id.
        id: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `--secret` part is not `key=value`.
    #[error("--secret {0:?}: expected key=value pairs")]
    NotKeyValue(String),
    /// A `--secret` key rbuild does not know.
    #[error("--secret {value:?}: unknown key {key:?}")]
    UnknownKey {
        /// The whole value.
        value: String,
        /// The key.
        key: String,
    },
    /// No id could be found.
    #[error("--secret {0:?}: missing id=")]
    MissingId(String),
    /// Both or neither of src= and env=.
    #[error("--secret {0:?}: give either src= or env=")]
    Ambiguous(String),
    /// `--ssh ID` without `$SSH_AUTH_SOCK`.
    #[error("--ssh {0}: SSH_AUTH_SOCK is not set; give --ssh {0}=/path/to/agent.sock")]
    NoAgent(String),
}

/// A `--secret` value.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `src=FILE`.
    File(PathBuf),
    /// `env=VAR`: the value of an environment variable of rbuild.
    Env(String),
}

/// What `--secret` and `--ssh` provided.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Secrets by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// SSH agent sockets by id.
    pub ssh: BTreeMap<String, PathBuf>,
}

impl Secrets {
    /// The secret's bytes, `None` when no such secret was given.
    pub fn value(&self, id: &str) -> Result<Option<Vec<u8>>, SecretError> {
        match self.secrets.get(id) {
            None => Ok(None),
            Some(SecretSource::File(p)) => {
                fs::read(p).map(Some).map_err(|source| SecretError::Read {
                    id: id.to_string(),
                    path: p.clone(),
                    source,
                })
            }
            Some(SecretSource::Env(v)) => Ok(std::env::var_os(v).map(|x| x.into_encoded_bytes())),
        }
    }
}

/// Parses a `--secret` value: `id=ID[,src=FILE|,env=VAR][,type=file|env]`, or buildx's short
/// forms `id=ID` (env or file named by the id).
pub fn parse_secret(value: &str) -> Result<(String, SecretSource), SecretError> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for part in value.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| SecretError::NotKeyValue(value.to_string()))?;
        match k {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" => kind = Some(v.to_string()),
            other => {
                return Err(SecretError::UnknownKey {
                    value: value.to_string(),
                    key: other.to_string(),
                });
            }
        }
    }
    let id = id
        .or_else(|| src.clone())
        .or_else(|| env.clone())
        .ok_or_else(|| SecretError::MissingId(value.to_string()))?;
    let source = match (kind.as_deref(), src, env) {
        (Some("env"), Some(v), None) | (_, None, Some(v)) => SecretSource::Env(v),
        (Some("file") | None, Some(f), None) => SecretSource::File(PathBuf::from(f)),
        (Some("env"), None, None) => SecretSource::Env(id.clone()),
        (None, None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (Some("file") | None, None, None) => SecretSource::File(PathBuf::from(&id)),
        _ => return Err(SecretError::Ambiguous(value.to_string())),
    };
    Ok((id, source))
}

/// Parses an `--ssh` value: `default`, `ID`, `ID=SOCKET` (default and bare ids use
/// `$SSH_AUTH_SOCK`).
pub fn parse_ssh(value: &str) -> Result<(String, PathBuf), SecretError> {
    match value.split_once('=') {
        Some((id, path)) => Ok((
            id.to_string(),
            PathBuf::from(path.split(',').next().unwrap_or(path)),
        )),
        None => std::env::var_os("SSH_AUTH_SOCK")
            .map(|s| (value.to_string(), PathBuf::from(s)))
            .ok_or_else(|| SecretError::NoAgent(value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_forms() {
        let (id, s) = parse_secret("id=tok,src=/tmp/t").unwrap();
        assert_eq!(id, "tok");
        assert!(matches!(s, SecretSource::File(p) if p == std::path::Path::new("/tmp/t")));
        let (id, s) = parse_secret("id=tok,env=MY_TOKEN").unwrap();
        assert_eq!(id, "tok");
        assert!(matches!(s, SecretSource::Env(v) if v == "MY_TOKEN"));
        assert!(parse_secret("src=/x,env=Y").is_err());
        assert!(parse_secret("id=a,color=b").is_err());
    }

    #[test]
    fn ssh_forms() {
        assert_eq!(
            parse_ssh("default=/run/a.sock").unwrap(),
            ("default".into(), PathBuf::from("/run/a.sock"))
        );
    }
}
