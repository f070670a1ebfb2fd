//! `--output` parsing: buildx's `type=...,key=value` form.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// Where the built image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An OCI image layout, as a tar archive (`tar=true`, the default) or a directory.
    Oci {
        /// The destination path.
        dest: PathBuf,
        /// Whether to write a tar archive.
        tar: bool,
    },
    /// An archive `docker load` reads (one platform).
    Docker {
        /// The archive path.
        dest: PathBuf,
    },
    /// The final filesystem as a directory (one subdirectory per platform when several).
    Local {
        /// The directory.
        dest: PathBuf,
    },
    /// The final filesystem as a tar archive (one top-level directory per platform when several).
    Tar {
        /// The archive path.
        dest: PathBuf,
    },
    /// An image for a registry: `type=registry` (pushed) or `type=image` (pushed with
    /// `push=true`).
    Registry(RegistryOutput),
}

/// `type=registry` / `type=image` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOutput {
    /// `name=` (the `-t` names when empty).
    pub names: Vec<String>,
    /// Whether to push.
    pub push: bool,
    /// `push-by-digest=true`: put the image by digest, not by tag.
    pub by_digest: bool,
    /// `registry.insecure=true`: plain HTTP / unverified TLS allowed for the names' registries.
    pub insecure: bool,
}

impl Output {
    /// Where the output goes (`None` for registry outputs).
    pub fn dest(&self) -> Option<&std::path::Path> {
        match self {
            Output::Oci { dest, .. }
            | Output::Docker { dest }
            | Output::Local { dest }
            | Output::Tar { dest } => Some(dest),
            Output::Registry(_) => None,
        }
    }
}

/// Parses one `--output` value. A bare path is buildx's shorthand for `type=local,dest=PATH`.
pub fn parse(value: &str) -> Result<Output> {
    if !value.contains('=') {
        if value == "-" {
            bail!("--output -: writing to stdout is not supported; give type=tar,dest=FILE");
        }
        return Ok(Output::Local {
            dest: PathBuf::from(value),
        });
    }
    if let Some(kind @ ("registry" | "image")) = value
        .split(',')
        .find_map(|p| p.trim().strip_prefix("type="))
    {
        return parse_registry(value, kind);
    }
    let mut kind = None;
    let mut dest = None;
    let mut tar = true;
    for part in value.split(',') {
        let (k, v) = part.split_once('=').with_context(|| {
            format!("--output {value:?}: expected key=value pairs such as type=oci,dest=out.tar")
        })?;
        match k.trim() {
            "type" => kind = Some(v.to_string()),
            "dest" => dest = Some(PathBuf::from(v)),
            "tar" => {
                tar = v
                    .parse()
                    .with_context(|| format!("--output {value:?}: tar must be true or false"))?
            }
            other => {
                bail!("--output {value:?}: unknown key {other:?} (rbuild supports type, dest, tar)")
            }
        }
    }
    match kind.as_deref() {
        Some("oci") => {
            let dest =
                dest.with_context(|| format!("--output {value:?}: type=oci needs dest=PATH"))?;
            if dest.as_os_str() == "-" {
                bail!("--output {value:?}: writing to stdout is not supported; give a file path");
            }
            Ok(Output::Oci { dest, tar })
        }
        Some(kind @ ("docker" | "local" | "tar")) => {
            let dest = dest.with_context(|| match kind {
                "docker" => format!("--output {value:?}: rbuild has no Docker daemon to load into; give dest=FILE and run `docker load -i FILE`"),
                _ => format!("--output {value:?}: type={kind} needs dest=PATH"),
            })?;
            if dest.as_os_str() == "-" {
                bail!("--output {value:?}: writing to stdout is not supported; give a file path");
            }
            Ok(match kind {
                "docker" => Output::Docker { dest },
                "local" => Output::Local { dest },
                _ => Output::Tar { dest },
            })
        }
        Some(other @ "cacheonly") => {
            bail!(
                "--output type={other} is not supported by this version of rbuild; use type=oci, docker, local or tar"
            )
        }
        Some(other) => bail!("--output {value:?}: unknown type {other:?}"),
        None => bail!("--output {value:?}: missing type= (e.g. type=oci,dest=out.tar)"),
    }
}

/// `type=registry|image,name=…,push=…,push-by-digest=…,registry.insecure=…`.
fn parse_registry(value: &str, kind: &str) -> Result<Output> {
    let mut out = RegistryOutput {
        push: kind == "registry",
        ..RegistryOutput::default()
    };
    let flag = |k: &str, v: &str| -> Result<bool> {
        v.parse()
            .with_context(|| format!("--output {value:?}: {k} must be true or false"))
    };
    for part in value.split(',') {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("--output {value:?}: expected key=value pairs"))?;
        match k.trim() {
            "type" => {}
            "name" => out.names.push(v.to_string()),
            "push" => out.push = flag(k, v)?,
            "push-by-digest" => out.by_digest = flag(k, v)?,
            "registry.insecure" => out.insecure = flag(k, v)?,
            // Accepted for buildx command lines; rbuild writes OCI media types always.
            "oci-mediatypes" | "compression" | "store" | "unpack" => {}
            other => bail!(
                "--output {value:?}: unknown key {other:?} (type={kind} supports name, push, push-by-digest, registry.insecure)"
            ),
        }
    }
    Ok(Output::Registry(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_outputs_parse() {
        assert_eq!(
            parse("type=oci,dest=out.tar").unwrap(),
            Output::Oci {
                dest: "out.tar".into(),
                tar: true
            }
        );
        assert_eq!(
            parse("type=oci,dest=d,tar=false").unwrap(),
            Output::Oci {
                dest: "d".into(),
                tar: false
            }
        );
    }

    #[test]
    fn bad_outputs_are_rejected_with_reasons() {
        assert!(parse("type=oci").unwrap_err().to_string().contains("dest"));
        assert!(
            parse("type=cacheonly")
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
        assert_eq!(
            parse("type=image,name=r:5000/a:1,push=true,registry.insecure=true").unwrap(),
            Output::Registry(RegistryOutput {
                names: vec!["r:5000/a:1".into()],
                push: true,
                by_digest: false,
                insecure: true,
            })
        );
        assert!(matches!(
            parse("type=registry").unwrap(),
            Output::Registry(RegistryOutput { push: true, .. })
        ));
        assert!(parse("type=registry,push-by-digest=maybe").is_err());
        assert!(
            parse("type=docker")
                .unwrap_err()
                .to_string()
                .contains("docker load")
        );
        assert_eq!(parse("out").unwrap(), Output::Local { dest: "out".into() });
        assert_eq!(
            parse("type=tar,dest=r.tar").unwrap(),
            Output::Tar {
                dest: "r.tar".into()
            }
        );
        assert!(parse("type=oci,dest=x,tar=maybe").is_err());
        assert!(parse("type=oci,dest=x,color=red").is_err());
    }
}
