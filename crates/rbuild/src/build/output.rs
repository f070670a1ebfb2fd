//! `--output` parsing: buildx's `type=...,key=value` form.

use anyhow::{Context, Result, bail};
use rbuild_image::{Compression, MediaTypes};
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
        /// How the image's layers are compressed (`compression=`, `compression-level=`).
        compression: Compression,
        /// `oci-mediatypes=` (default true).
        media_types: MediaTypes,
    },
    /// An archive `docker load` reads (one platform).
    Docker {
        /// The archive path.
        dest: PathBuf,
        /// `oci-mediatypes=` (default true, as BuildKit's docker exporter).
        media_types: MediaTypes,
    },
    /// The final filesystem as a directory (one subdirectory per platform when several).
    Local {
        /// The directory.
        dest: PathBuf,
        /// `platform-split` (default true): one subdirectory per platform when several.
        split: bool,
    },
    /// The final filesystem as a tar archive (one top-level directory per platform when several).
    Tar {
        /// The archive path.
        dest: PathBuf,
        /// `platform-split`, as for [`Output::Local`].
        split: bool,
    },
    /// The local image store, under these names (`--load`, `type=image,name=...`).
    Image {
        /// Names; empty takes the build's `-t` names.
        names: Vec<String>,
        /// `oci-mediatypes=` when given; otherwise the store takes what the other outputs
        /// ask for.
        media_types: Option<MediaTypes>,
    },
    /// An image for a registry: `type=registry`, or `type=image,push=true`.
    Registry(RegistryOutput),
}

/// `type=registry` / `type=image,push=true` options.
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
    /// How the pushed layers are compressed.
    pub compression: Compression,
    /// `oci-mediatypes=` (default true).
    pub media_types: MediaTypes,
}

impl Output {
    /// The layer compression the output asks for (the default unless `type=oci` sets one).
    pub fn compression(&self) -> Compression {
        match self {
            Output::Oci { compression, .. } => *compression,
            Output::Registry(r) => r.compression,
            _ => Compression::default(),
        }
    }

    /// The media types an image output asks for (`None` for filesystem outputs and for
    /// the image store without `oci-mediatypes=`).
    pub fn media_types(&self) -> Option<MediaTypes> {
        match self {
            Output::Oci { media_types, .. } | Output::Docker { media_types, .. } => {
                Some(*media_types)
            }
            Output::Registry(r) => Some(r.media_types),
            Output::Image { media_types, .. } => *media_types,
            Output::Local { .. } | Output::Tar { .. } => None,
        }
    }

    /// Where the output goes (`None` for the image store and registries).
    pub fn dest(&self) -> Option<&std::path::Path> {
        match self {
            Output::Oci { dest, .. }
            | Output::Docker { dest, .. }
            | Output::Local { dest, .. }
            | Output::Tar { dest, .. } => Some(dest),
            Output::Image { .. } | Output::Registry(_) => None,
        }
    }
}

/// The media types of a build's images: what its image outputs ask for (OCI when none
/// does). The manifests are written once, so the outputs must agree; and Docker's
/// manifests carry no annotations (BuildKit refuses them the same way).
pub fn build_media_types(
    outputs: &[Output],
    annotations: &rbuild_image::Annotations,
) -> Result<MediaTypes> {
    let mut asked: Vec<MediaTypes> = outputs.iter().filter_map(Output::media_types).collect();
    asked.dedup();
    let types = match asked.as_slice() {
        [] => MediaTypes::Oci,
        [one] => *one,
        _ => bail!(
            "the outputs ask for different media types (oci-mediatypes=true and false); rbuild writes a build's manifests once, so give them all the same oci-mediatypes"
        ),
    };
    if types == MediaTypes::Docker && !annotations.0.is_empty() {
        bail!(
            "cannot export annotations with \"oci-mediatypes=false\": Docker's manifests and lists have no annotations (drop the annotations or use OCI media types)"
        );
    }
    Ok(types)
}

/// Parses one `--output` value. A bare path is buildx's shorthand for `type=local,dest=PATH`.
pub fn parse(value: &str) -> Result<Output> {
    if !value.contains('=') {
        if value == "-" {
            bail!("--output -: writing to stdout is not supported; give type=tar,dest=FILE");
        }
        return Ok(Output::Local {
            dest: PathBuf::from(value),
            split: true,
        });
    }
    if is_push(value) {
        return parse_registry(value);
    }
    let mut kind = None;
    let mut dest = None;
    let mut tar = true;
    let mut names = Vec::new();
    let mut codec = None;
    let mut level = None;
    let mut split = None;
    let mut oci_types = None;
    for part in value.split(',') {
        let (k, v) = part.split_once('=').with_context(|| {
            format!("--output {value:?}: expected key=value pairs such as type=oci,dest=out.tar")
        })?;
        if is_annotation_key(k) {
            continue;
        }
        match k.trim() {
            "type" => kind = Some(v.to_string()),
            "dest" => dest = Some(PathBuf::from(v)),
            "name" => names.push(v.to_string()),
            "push" if v == "false" => {}
            "push" => bail!("--output {value:?}: push must be true or false"),
            "tar" => {
                tar = v
                    .parse()
                    .with_context(|| format!("--output {value:?}: tar must be true or false"))?
            }
            "compression" => codec = Some(v.to_string()),
            "compression-level" => level = Some(parse_level(value, v)?),
            "oci-mediatypes" => oci_types = Some(oci_flag(value, v)?),
            "platform-split" => {
                split = Some(v.parse::<bool>().with_context(|| {
                    format!("--output {value:?}: platform-split must be true or false")
                })?)
            }
            other => {
                bail!(
                    "--output {value:?}: unknown key {other:?} (rbuild supports type, dest, tar, name, compression, compression-level, oci-mediatypes, platform-split)"
                )
            }
        }
    }
    if split.is_some() && !matches!(kind.as_deref(), Some("local" | "tar")) {
        bail!("--output {value:?}: platform-split applies to type=local and type=tar only");
    }
    if oci_types.is_some() && matches!(kind.as_deref(), Some("local" | "tar")) {
        bail!(
            "--output {value:?}: oci-mediatypes applies to image outputs (oci, docker, image, registry)"
        );
    }
    let media_types = oci_types.unwrap_or_default();
    match kind.as_deref() {
        Some("oci") => {
            let dest =
                dest.with_context(|| format!("--output {value:?}: type=oci needs dest=PATH"))?;
            if dest.as_os_str() == "-" {
                bail!("--output {value:?}: writing to stdout is not supported; give a file path");
            }
            let compression = compression(value, codec.as_deref(), level)?;
            check_media_types(value, compression, media_types)?;
            Ok(Output::Oci {
                dest,
                tar,
                compression,
                media_types,
            })
        }
        Some(_) if codec.is_some() || level.is_some() => {
            bail!("--output {value:?}: compression options apply to type=oci only")
        }
        Some(kind @ ("docker" | "local" | "tar")) => {
            let split = split.unwrap_or(true);
            let dest = dest.with_context(|| match kind {
                "docker" => format!("--output {value:?}: rbuild has no Docker daemon to load into; give dest=FILE and run `docker load -i FILE`"),
                _ => format!("--output {value:?}: type={kind} needs dest=PATH"),
            })?;
            if dest.as_os_str() == "-" {
                bail!("--output {value:?}: writing to stdout is not supported; give a file path");
            }
            Ok(match kind {
                "docker" => Output::Docker { dest, media_types },
                "local" => Output::Local { dest, split },
                _ => Output::Tar { dest, split },
            })
        }
        Some("image") => Ok(Output::Image {
            names,
            media_types: oci_types,
        }),
        Some(other @ "cacheonly") => {
            bail!(
                "--output type={other} is not supported by this version of rbuild; use type=oci, docker, local or tar"
            )
        }
        Some(other) => bail!("--output {value:?}: unknown type {other:?}"),
        None => bail!("--output {value:?}: missing type= (e.g. type=oci,dest=out.tar)"),
    }
}

/// The layer compression of `compression=` and `compression-level=` (gzip level 6 when
/// neither is given).
fn compression(value: &str, codec: Option<&str>, level: Option<u32>) -> Result<Compression> {
    match (codec.unwrap_or("gzip"), level) {
        ("gzip", Some(l)) if l > 9 => {
            bail!("--output {value:?}: gzip compression-level must be 0 to 9")
        }
        ("gzip", level) => Ok(Compression::Gzip(level.unwrap_or(6))),
        // zstd's level 0 means its default, 3, as in buildx.
        ("zstd", level) => Ok(Compression::Zstd(match level.unwrap_or(3) {
            0 => 3,
            l => l as i32,
        })),
        ("uncompressed", None) => Ok(Compression::Uncompressed),
        ("uncompressed", Some(_)) => {
            bail!("--output {value:?}: compression-level does not apply to uncompressed layers")
        }
        (other, _) => bail!(
            "--output {value:?}: compression {other:?} is not supported (rbuild writes gzip, zstd or uncompressed layers)"
        ),
    }
}

/// `oci-mediatypes=true|false` as a media type family.
fn oci_flag(value: &str, v: &str) -> Result<MediaTypes> {
    let oci = v
        .trim()
        .parse::<bool>()
        .with_context(|| format!("--output {value:?}: oci-mediatypes must be true or false"))?;
    Ok(MediaTypes::from_oci_flag(oci))
}

/// Docker's media types have no zstd layer type. BuildKit writes
/// `application/vnd.docker.image.rootfs.diff.tar.zstd` anyway, which skopeo and podman
/// refuse ("unsupported docker v2s2 media type"); rbuild refuses to write it.
fn check_media_types(value: &str, compression: Compression, types: MediaTypes) -> Result<()> {
    if types.layer(compression.codec()).is_none() {
        bail!(
            "--output {value:?}: compression=zstd needs OCI media types: Docker's media types (oci-mediatypes=false) have no zstd layer type; use compression=gzip or drop oci-mediatypes=false"
        );
    }
    Ok(())
}

/// Adds the `annotation[-TYPE][[PLATFORM]].KEY=VALUE` keys of one `--output` to `into`.
pub fn annotations(value: &str, into: &mut rbuild_image::Annotations) -> Result<()> {
    for part in value.split(',') {
        if let Some((k, v)) = part.split_once('=') {
            into.add_output_key(k.trim(), v)?;
        }
    }
    Ok(())
}

/// Whether an output key is read outside the parsers: annotations (see [`annotations`])
/// and `rewrite-timestamp` (see [`rewrite_timestamp`]).
fn is_annotation_key(k: &str) -> bool {
    let k = k.trim();
    k.starts_with("annotation") || k == "rewrite-timestamp" || k == "force-compression"
}

/// `rewrite-timestamp=true|false` of one `--output`: clamp the mtimes of the files in the
/// build's new layers to SOURCE_DATE_EPOCH, as buildx does. Image outputs only.
pub fn rewrite_timestamp(value: &str) -> Result<Option<bool>> {
    image_flag(value, "rewrite-timestamp")
}

/// `force-compression=true|false` of one `--output`: layers of another compression (base
/// images, the cache) are compressed again as the output asks. Image outputs only.
pub fn force_compression(value: &str) -> Result<Option<bool>> {
    image_flag(value, "force-compression")
}

/// A boolean key that only image outputs take.
fn image_flag(value: &str, key: &str) -> Result<Option<bool>> {
    let mut found = None;
    let mut kind = None;
    for part in value.split(',') {
        match part.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some((k, v)) if k == key => {
                found =
                    Some(v.parse::<bool>().with_context(|| {
                        format!("--output {value:?}: {key} must be true or false")
                    })?)
            }
            Some(("type", t)) => kind = Some(t.to_string()),
            _ => {}
        }
    }
    if found.is_some() && matches!(kind.as_deref(), Some("local" | "tar") | None) {
        bail!("--output {value:?}: {key} applies to image outputs (oci, docker, image, registry)");
    }
    Ok(found)
}

/// Whether an output pushes to a registry: `type=registry`, or `type=image` with `push=true`.
fn is_push(value: &str) -> bool {
    let keys: Vec<(&str, &str)> = value
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let kind = keys.iter().find(|(k, _)| *k == "type").map(|(_, v)| *v);
    kind == Some("registry") || (kind == Some("image") && keys.contains(&("push", "true")))
}

/// A `compression-level=` value (its range is checked with the codec).
fn parse_level(value: &str, v: &str) -> Result<u32> {
    v.parse::<u32>().ok().filter(|l| *l <= 22).with_context(|| {
        format!("--output {value:?}: compression-level must be 0 to 9 (gzip) or 0 to 22 (zstd)")
    })
}

/// `type=registry|image,name=…,push=…,push-by-digest=…,registry.insecure=…`.
fn parse_registry(value: &str) -> Result<Output> {
    let mut out = RegistryOutput {
        push: true,
        ..RegistryOutput::default()
    };
    let (mut codec, mut level) = (None, None);
    let flag = |k: &str, v: &str| -> Result<bool> {
        v.parse()
            .with_context(|| format!("--output {value:?}: {k} must be true or false"))
    };
    for part in value.split(',') {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("--output {value:?}: expected key=value pairs"))?;
        if is_annotation_key(k) {
            continue;
        }
        match k.trim() {
            "type" => {}
            "compression" => codec = Some(v.to_string()),
            "compression-level" => level = Some(parse_level(value, v)?),
            "name" => out.names.push(v.to_string()),
            "push" => out.push = flag(k, v)?,
            "push-by-digest" => out.by_digest = flag(k, v)?,
            "registry.insecure" => out.insecure = flag(k, v)?,
            "oci-mediatypes" => out.media_types = oci_flag(value, v)?,
            other => bail!(
                "--output {value:?}: unsupported key {other:?} (a registry output supports name, push, push-by-digest, registry.insecure, compression, compression-level, oci-mediatypes)"
            ),
        }
    }
    out.compression = compression(value, codec.as_deref(), level)?;
    check_media_types(value, out.compression, out.media_types)?;
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
                tar: true,
                compression: Compression::Gzip(6),
                media_types: MediaTypes::Oci,
            }
        );
        assert_eq!(
            parse("type=oci,dest=d,tar=false").unwrap(),
            Output::Oci {
                dest: "d".into(),
                tar: false,
                compression: Compression::Gzip(6),
                media_types: MediaTypes::Oci,
            }
        );
        assert_eq!(
            parse("type=oci,dest=x,compression=uncompressed")
                .unwrap()
                .compression(),
            Compression::Uncompressed
        );
        assert_eq!(
            parse("type=oci,dest=x,compression-level=1")
                .unwrap()
                .compression(),
            Compression::Gzip(1)
        );
        assert_eq!(
            parse("type=oci,dest=x,compression=zstd")
                .unwrap()
                .compression(),
            Compression::Zstd(3)
        );
        assert_eq!(
            parse("type=oci,dest=x,compression=zstd,compression-level=19")
                .unwrap()
                .compression(),
            Compression::Zstd(19)
        );
        assert!(parse("type=oci,dest=x,compression=lz4").is_err());
        assert!(parse("type=oci,dest=x,compression-level=10").is_err());
        assert!(parse("type=local,dest=x,compression=gzip").is_err());
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
        assert!(
            parse("type=docker")
                .unwrap_err()
                .to_string()
                .contains("docker load")
        );
        assert_eq!(
            parse("out").unwrap(),
            Output::Local {
                dest: "out".into(),
                split: true
            }
        );
        assert_eq!(
            parse("type=local,dest=o,platform-split=false").unwrap(),
            Output::Local {
                dest: "o".into(),
                split: false
            }
        );
        assert_eq!(
            parse("type=tar,dest=r.tar").unwrap(),
            Output::Tar {
                dest: "r.tar".into(),
                split: true
            }
        );
        assert!(parse("type=oci,dest=x,tar=maybe").is_err());
        assert!(parse("type=oci,dest=x,platform-split=false").is_err());
        assert!(parse("type=oci,dest=x,color=red").is_err());
    }

    #[test]
    fn registry_outputs_parse() {
        assert_eq!(
            parse("type=image,name=r:5000/a:1,push=true,registry.insecure=true").unwrap(),
            Output::Registry(RegistryOutput {
                names: vec!["r:5000/a:1".into()],
                push: true,
                by_digest: false,
                insecure: true,
                compression: Compression::Gzip(6),
                media_types: MediaTypes::Oci,
            })
        );
        assert!(matches!(
            parse("type=registry,compression=zstd").unwrap(),
            Output::Registry(RegistryOutput {
                compression: Compression::Zstd(3),
                ..
            })
        ));
        assert_eq!(
            parse("type=image,name=app").unwrap(),
            Output::Image {
                names: vec!["app".into()],
                media_types: None,
            }
        );
        assert!(parse("type=registry,store=false").is_err());
    }

    #[test]
    fn oci_mediatypes_parse_per_output() {
        let docker = Some(MediaTypes::Docker);
        assert_eq!(
            parse("type=oci,dest=x,oci-mediatypes=false")
                .unwrap()
                .media_types(),
            docker
        );
        assert_eq!(
            parse("type=docker,dest=x").unwrap().media_types(),
            Some(MediaTypes::Oci)
        );
        assert_eq!(
            parse("type=docker,dest=x,oci-mediatypes=false")
                .unwrap()
                .media_types(),
            docker
        );
        assert_eq!(
            parse("type=registry,oci-mediatypes=false")
                .unwrap()
                .media_types(),
            docker
        );
        assert_eq!(
            parse("type=image,name=a,oci-mediatypes=false")
                .unwrap()
                .media_types(),
            docker
        );
        assert_eq!(parse("type=image,name=a").unwrap().media_types(), None);
        assert!(
            parse("type=oci,dest=x,oci-mediatypes=no")
                .unwrap_err()
                .to_string()
                .contains("true or false")
        );
        assert!(parse("type=local,dest=x,oci-mediatypes=false").is_err());
        for zstd in [
            "type=oci,dest=x,compression=zstd,oci-mediatypes=false",
            "type=registry,compression=zstd,oci-mediatypes=false",
        ] {
            let err = parse(zstd).unwrap_err().to_string();
            assert!(err.contains("no zstd layer type"), "{err}");
        }
        assert!(parse("type=oci,dest=x,compression=uncompressed,oci-mediatypes=false").is_ok());
    }
}
