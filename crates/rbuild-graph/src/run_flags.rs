//! `RUN --mount=...`, `RUN --network=...` and `RUN --security=...`: parsed into typed values during lowering so
//! a bad flag is a Dockerfile error with a location, not a failure in the middle of a build.

use crate::CopyFrom;
use serde::Serialize;

/// How a cache mount is shared between concurrent builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Sharing {
    /// Several writers at once (the default).
    Shared,
    /// A concurrent user gets a fresh, empty copy.
    Private,
    /// Concurrent users wait for each other.
    Locked,
}

/// One `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RunMount {
    /// `type=cache`: a persistent directory under rbuild's state directory.
    Cache {
        /// Cache id (defaults to the target path).
        id: String,
        /// Mount point.
        target: String,
        /// Concurrency mode.
        sharing: Sharing,
        /// Seed the cache from a stage or image (`from`) ...
        from: Option<CopyFrom>,
        /// ... at this path.
        source: Option<String>,
        /// Mode of a new cache directory (default 0755).
        mode: u32,
        /// Owner of a new cache directory.
        uid: u32,
        /// Group of a new cache directory.
        gid: u32,
        /// Mount read-only.
        readonly: bool,
    },
    /// `type=bind`: a path from the context, a stage or an image.
    Bind {
        /// Mount point.
        target: String,
        /// Where the source comes from (default: the build context).
        from: CopyFrom,
        /// Path inside the source (default: its root).
        source: String,
        /// Writable (writes are discarded after the step).
        rw: bool,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Mount point.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// `type=secret`: a `--secret` value as a file or environment variable.
    Secret {
        /// Secret id.
        id: String,
        /// File path (default /run/secrets/<id> unless `env` is given).
        target: Option<String>,
        /// Environment variable to set instead of / as well as the file.
        env: Option<String>,
        /// Fail when the secret was not provided.
        required: bool,
        /// File mode (default 0400).
        mode: u32,
        /// File owner.
        uid: u32,
        /// File group.
        gid: u32,
    },
    /// `type=ssh`: the SSH agent socket given by `--ssh`.
    Ssh {
        /// Agent id (default `default`).
        id: String,
        /// Socket path (default /run/buildkit/ssh_agent.<n>).
        target: Option<String>,
        /// Fail when no such agent was provided.
        required: bool,
        /// Socket mode (default 0600).
        mode: u32,
        /// Socket owner.
        uid: u32,
        /// Socket group.
        gid: u32,
    },
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NetworkMode {
    /// What the build uses by default (`--network` of `rbuild build`, else the host's).
    Default,
    /// No network: only loopback.
    None,
    /// The host's network.
    Host,
}

impl NetworkMode {
    /// Parses `default|none|host`.
    pub fn parse(v: &str) -> Result<NetworkMode, String> {
        match v {
            "default" => Ok(NetworkMode::Default),
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            _ => Err(format!(
                "unsupported network mode {v:?} (use default, none or host)"
            )),
        }
    }
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum SecurityMode {
    /// Docker's default confinement: its capabilities, `no_new_privs`, its seccomp profile.
    #[default]
    Sandbox,
    /// Every capability and no seccomp filter; needs `--allow security.insecure`.
    Insecure,
}

impl SecurityMode {
    /// Parses `sandbox|insecure`.
    pub fn parse(v: &str) -> Result<SecurityMode, String> {
        match v {
            "sandbox" => Ok(SecurityMode::Sandbox),
            "insecure" => Ok(SecurityMode::Insecure),
            _ => Err(format!(
                "unsupported security mode {v:?} (use sandbox or insecure)"
            )),
        }
    }

    /// Whether this is the default mode (which cache keys leave out, so they stay as before).
    pub fn is_sandbox(&self) -> bool {
        *self == SecurityMode::Sandbox
    }
}

/// Parses one `--mount` value. `resolve_from` turns a `from=` value into a source.
pub fn parse_mount(
    value: &str,
    resolve_from: &dyn Fn(&str) -> CopyFrom,
) -> Result<RunMount, String> {
    let mut kv: Vec<(String, Option<String>)> = Vec::new();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) => kv.push((k.trim().to_lowercase(), Some(v.to_string()))),
            None => kv.push((part.trim().to_lowercase(), None)),
        }
    }
    let get = |k: &[&str]| {
        kv.iter()
            .rev()
            .find(|(n, _)| k.contains(&n.as_str()))
            .map(|(_, v)| v.clone().unwrap_or_default())
    };
    let flag = |k: &[&str]| -> Result<bool, String> {
        match kv.iter().rev().find(|(n, _)| k.contains(&n.as_str())) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((n, Some(v))) => v
                .parse()
                .map_err(|_| format!("invalid value {v:?} for {n}")),
        }
    };
    let num = |k: &str, default: u32| -> Result<u32, String> {
        match get(&[k]) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("invalid {k} {v:?}: expected a number")),
        }
    };
    let mode = |default: u32| -> Result<u32, String> {
        match get(&["mode"]) {
            None => Ok(default),
            Some(v) => u32::from_str_radix(&v, 8)
                .map_err(|_| format!("invalid mode {v:?}: expected octal")),
        }
    };
    let kind = get(&["type"]).unwrap_or_else(|| "bind".into());
    let allowed: &[&str] = match kind.as_str() {
        "bind" => &[
            "type",
            "target",
            "dst",
            "destination",
            "from",
            "source",
            "src",
            "rw",
            "readwrite",
            "readonly",
            "ro",
        ],
        "cache" => &[
            "type",
            "target",
            "dst",
            "destination",
            "id",
            "sharing",
            "from",
            "source",
            "src",
            "mode",
            "uid",
            "gid",
            "readonly",
            "ro",
        ],
        "tmpfs" => &["type", "target", "dst", "destination", "size"],
        "secret" => &[
            "type",
            "id",
            "target",
            "dst",
            "destination",
            "env",
            "required",
            "mode",
            "uid",
            "gid",
        ],
        "ssh" => &[
            "type",
            "id",
            "target",
            "dst",
            "destination",
            "required",
            "mode",
            "uid",
            "gid",
        ],
        other => {
            return Err(format!(
                "unsupported mount type {other:?} (bind, cache, tmpfs, secret, ssh)"
            ));
        }
    };
    if let Some((k, _)) = kv.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown option {k:?} for a {kind} mount"));
    }
    let target = get(&["target", "dst", "destination"]);
    let need_target = || {
        target
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("a {kind} mount needs target="))
    };
    Ok(match kind.as_str() {
        "bind" => RunMount::Bind {
            target: need_target()?,
            from: get(&["from"])
                .map(|f| resolve_from(&f))
                .unwrap_or(CopyFrom::Context),
            source: get(&["source", "src"]).unwrap_or_else(|| "/".into()),
            rw: flag(&["rw", "readwrite"])?,
        },
        "cache" => {
            let target = need_target()?;
            let sharing = match get(&["sharing"]).as_deref() {
                None | Some("shared") => Sharing::Shared,
                Some("private") => Sharing::Private,
                Some("locked") => Sharing::Locked,
                Some(v) => {
                    return Err(format!("invalid sharing {v:?} (shared, private or locked)"));
                }
            };
            RunMount::Cache {
                id: get(&["id"])
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| target.clone()),
                target,
                sharing,
                from: get(&["from"]).map(|f| resolve_from(&f)),
                source: get(&["source", "src"]),
                mode: mode(0o755)?,
                uid: num("uid", 0)?,
                gid: num("gid", 0)?,
                readonly: flag(&["readonly", "ro"])?,
            }
        }
        "tmpfs" => RunMount::Tmpfs {
            target: need_target()?,
            size: match get(&["size"]) {
                None => None,
                Some(v) => Some(parse_size(&v)?),
            },
        },
        "secret" => {
            let env = get(&["env"]);
            let id = get(&["id"])
                .or_else(|| {
                    target
                        .as_deref()
                        .and_then(|t| t.rsplit('/').next())
                        .map(str::to_string)
                })
                .filter(|i| !i.is_empty())
                .ok_or("a secret mount needs id= or target=")?;
            RunMount::Secret {
                target: target.or_else(|| env.is_none().then(|| format!("/run/secrets/{id}"))),
                id,
                env,
                required: flag(&["required"])?,
                mode: mode(0o400)?,
                uid: num("uid", 0)?,
                gid: num("gid", 0)?,
            }
        }
        _ => RunMount::Ssh {
            id: get(&["id"])
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "default".into()),
            target,
            required: flag(&["required"])?,
            mode: mode(0o600)?,
            uid: num("uid", 0)?,
            gid: num("gid", 0)?,
        },
    })
}

/// Parses sizes such as `64m`, `1g`, `1024`.
fn parse_size(v: &str) -> Result<u64, String> {
    let lower = v.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (num, mult) = match trimmed.char_indices().last() {
        Some((i, 'k')) => (&trimmed[..i], 1u64 << 10),
        Some((i, 'm')) => (&trimmed[..i], 1 << 20),
        Some((i, 'g')) => (&trimmed[..i], 1 << 30),
        _ => (trimmed, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("invalid size {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str) -> Result<RunMount, String> {
        parse_mount(v, &|f| CopyFrom::Image(f.to_string()))
    }

    #[test]
    fn cache_mount_defaults_and_options() {
        let m = p("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1000").unwrap();
        assert_eq!(
            m,
            RunMount::Cache {
                id: "/root/.cache".into(),
                target: "/root/.cache".into(),
                sharing: Sharing::Locked,
                from: None,
                source: None,
                mode: 0o700,
                uid: 1000,
                gid: 0,
                readonly: false
            }
        );
    }

    #[test]
    fn secret_defaults_to_run_secrets() {
        match p("type=secret,id=tok").unwrap() {
            RunMount::Secret {
                target, env, mode, ..
            } => {
                assert_eq!(target.as_deref(), Some("/run/secrets/tok"));
                assert_eq!(env, None);
                assert_eq!(mode, 0o400);
            }
            other => panic!("{other:?}"),
        }
        match p("type=secret,id=tok,env=TOKEN").unwrap() {
            RunMount::Secret { target, env, .. } => {
                assert_eq!(target, None);
                assert_eq!(env.as_deref(), Some("TOKEN"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bind_is_the_default_type_and_rw_is_a_flag() {
        assert_eq!(
            p("target=/src,from=build,source=/out,rw").unwrap(),
            RunMount::Bind {
                target: "/src".into(),
                from: CopyFrom::Image("build".into()),
                source: "/out".into(),
                rw: true
            }
        );
    }

    #[test]
    fn bad_mounts_say_why() {
        assert!(p("type=cache").unwrap_err().contains("target"));
        assert!(
            p("type=nfs,target=/x")
                .unwrap_err()
                .contains("unsupported mount type")
        );
        assert!(
            p("type=tmpfs,target=/x,colour=red")
                .unwrap_err()
                .contains("colour")
        );
        assert!(
            p("type=cache,target=/x,sharing=sometimes")
                .unwrap_err()
                .contains("sharing")
        );
        assert_eq!(
            p("type=tmpfs,target=/t,size=64m").unwrap(),
            RunMount::Tmpfs {
                target: "/t".into(),
                size: Some(64 << 20)
            }
        );
    }
}
