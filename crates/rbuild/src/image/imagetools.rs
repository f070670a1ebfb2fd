//! `rbuild imagetools inspect|create`, with buildx's names and output.

use crate::cli::ImagetoolsCommand;
use anyhow::{Context, Result, bail};
use rbuild_core::{Digest, Reference, media_type};
use rbuild_registry::Registry;
use rbuild_registry::manifest::{self, Descriptor, Document};
use serde_json::{Map, Value, json};
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// Runs an imagetools subcommand.
pub fn run(cmd: &ImagetoolsCommand) -> Result<ExitCode> {
    match cmd {
        ImagetoolsCommand::Inspect {
            reference,
            raw,
            format,
        } => inspect(reference, *raw, format.as_deref()),
        ImagetoolsCommand::Create {
            tags,
            append,
            dry_run,
            annotations,
            sources,
        } => create(tags, *append, *dry_run, annotations, sources),
    }
}

/// A root document: where it came from, its exact bytes, media type and digest.
struct Loaded {
    name: String,
    bytes: Vec<u8>,
    media_type: String,
    digest: Digest,
}

fn load(reference: &str) -> Result<Loaded> {
    if let Some(rest) = reference.strip_prefix("oci-layout:") {
        let rest = rest.trim_start_matches("//");
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') && !t.is_empty() => (p, Some(t)),
            _ => (rest, None),
        };
        return load_layout(Path::new(path), tag, reference);
    }
    if let Some(path) = reference.strip_prefix("oci-archive:") {
        return load_archive(Path::new(path.trim_start_matches("//")), reference);
    }
    let r: Reference = reference.parse()?;
    let f = Registry::new(crate::registry::load_config()?).manifest(&r)?;
    Ok(Loaded {
        name: r.to_string(),
        bytes: f.bytes,
        media_type: f.media_type,
        digest: f.digest,
    })
}

/// The descriptor `index.json` has for `tag` (or its only one).
fn pick(index: &[u8], tag: Option<&str>, name: &str) -> Result<(String, Digest)> {
    let v: Value = serde_json::from_slice(index).with_context(|| format!("{name}: index.json"))?;
    let entries = v["manifests"].as_array().cloned().unwrap_or_default();
    let ref_name = |d: &Value| {
        d["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(str::to_string)
    };
    let found = match tag {
        Some(t) => entries.iter().find(|d| ref_name(d).as_deref() == Some(t)),
        None if entries.len() == 1 => entries.first(),
        None => entries
            .iter()
            .find(|d| ref_name(d).as_deref() == Some("latest")),
    }
    .with_context(|| {
        format!(
            "{name}: no image {} in its index.json",
            tag.unwrap_or("latest")
        )
    })?;
    let digest: Digest = found["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("{name}: descriptor digest"))?;
    Ok((
        found["mediaType"].as_str().unwrap_or_default().to_string(),
        digest,
    ))
}

fn load_layout(path: &Path, tag: Option<&str>, name: &str) -> Result<Loaded> {
    let index = std::fs::read(path.join("index.json"))
        .with_context(|| format!("reading {}/index.json", path.display()))?;
    let (media_type, digest) = pick(&index, tag, name)?;
    let blob = path
        .join("blobs")
        .join(digest.algorithm())
        .join(digest.hex());
    let bytes = read_bounded(
        std::fs::File::open(&blob).with_context(|| format!("opening {}", blob.display()))?,
    )?;
    verified(name, bytes, media_type, digest)
}

fn read_bounded(r: impl Read) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(manifest::MAX_MANIFEST + 1).read_to_end(&mut out)?;
    if out.len() as u64 > manifest::MAX_MANIFEST {
        bail!("manifest larger than {} bytes", manifest::MAX_MANIFEST);
    }
    Ok(out)
}

fn verified(name: &str, bytes: Vec<u8>, media_type: String, digest: Digest) -> Result<Loaded> {
    let found = Digest::sha256(&bytes);
    if found != digest {
        bail!("{name}: blob {digest} has digest {found}");
    }
    Ok(Loaded {
        name: name.to_string(),
        bytes,
        media_type,
        digest,
    })
}

/// Reads `index.json`, then the root blob, from an OCI archive (two passes).
fn load_archive(path: &Path, name: &str) -> Result<Loaded> {
    let index = archive_entry(path, "index.json")?
        .with_context(|| format!("{}: no index.json", path.display()))?;
    let (media_type, digest) = pick(&index, None, name)?;
    let entry = format!("blobs/{}/{}", digest.algorithm(), digest.hex());
    let bytes =
        archive_entry(path, &entry)?.with_context(|| format!("{}: no {entry}", path.display()))?;
    verified(name, bytes, media_type, digest)
}

fn archive_entry(path: &Path, wanted: &str) -> Result<Option<Vec<u8>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ar = tar::Archive::new(file);
    for entry in ar.entries()? {
        let entry = entry?;
        let p = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if p == wanted {
            return read_bounded(entry).map(Some);
        }
    }
    Ok(None)
}

fn inspect(reference: &str, raw: bool, format: Option<&str>) -> Result<ExitCode> {
    let l = load(reference)?;
    if raw {
        std::io::stdout().write_all(&l.bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (_, doc) = manifest::parse(&l.bytes, &l.media_type, &l.name)?;
    match format.map(str::trim) {
        None | Some("") | Some("{{.Manifest}}") => print_text(&l, &doc),
        Some("{{json .}}") => {
            let manifest: Value = serde_json::from_slice(&l.bytes)?;
            let out = json!({"name": l.name, "manifest": manifest, "digest": l.digest.to_string(), "mediaType": l.media_type});
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Some(other) => {
            bail!("--format {other:?}: rbuild supports '{{{{json .}}}}' and '{{{{.Manifest}}}}'")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(l: &Loaded, doc: &Document) {
    println!("Name:      {}", l.name);
    println!("MediaType: {}", l.media_type);
    println!("Digest:    {}", l.digest);
    let Document::Index(entries) = doc else {
        return;
    };
    let base = l.name.split('@').next().unwrap_or(&l.name);
    println!("           ");
    println!("Manifests: ");
    for (i, d) in entries.iter().enumerate() {
        if i > 0 {
            println!("           ");
        }
        println!("  Name:        {base}@{}", d.digest);
        println!("  MediaType:   {}", d.media_type);
        if let Some(p) = &d.platform {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s.push('/');
                s.push_str(v);
            }
            println!("  Platform:    {s}");
        }
        for (k, v) in d.annotations.iter().flatten() {
            println!("  Annotations: {k}: {v}");
        }
    }
}

/// The index entries a source contributes: an index's entries as they are, or one entry
/// for a manifest with the platform of its config.
fn entries_of(registry: &Registry, r: &Reference) -> Result<Vec<(Value, Descriptor)>> {
    let f = registry.manifest(r)?;
    match &f.document {
        Document::Index(descs) => {
            let v: Value = serde_json::from_slice(&f.bytes)?;
            let raw = v["manifests"].as_array().cloned().unwrap_or_default();
            Ok(raw.into_iter().zip(descs.iter().cloned()).collect())
        }
        Document::Manifest { config, .. } => {
            let cfg: Value = serde_json::from_slice(&registry.small_blob(r, &config.digest)?)?;
            let mut platform = json!({"architecture": cfg["architecture"], "os": cfg["os"]});
            if let Some(v) = cfg["variant"].as_str() {
                platform["variant"] = v.into();
            }
            let d = json!({"mediaType": f.media_type, "digest": f.digest.to_string(), "size": f.bytes.len(), "platform": platform});
            let desc: Descriptor = serde_json::from_value(d.clone())?;
            Ok(vec![(d, desc)])
        }
    }
}

fn index_annotations(annotations: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for a in annotations {
        let a = a.strip_prefix("index:").unwrap_or(a);
        if a.contains(':')
            && a.split('=')
                .next()
                .is_some_and(|k| k.starts_with("manifest"))
        {
            bail!(
                "--annotation {a:?}: rbuild sets index annotations only (KEY=VALUE or index:KEY=VALUE)"
            );
        }
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("--annotation {a:?}: expected KEY=VALUE"))?;
        out.insert(k.to_string(), v.into());
    }
    Ok(out)
}

fn create(
    tags: &[String],
    append: bool,
    dry_run: bool,
    annotations: &[String],
    sources: &[String],
) -> Result<ExitCode> {
    let registry = Registry::new(crate::registry::load_config()?);
    let targets = tags
        .iter()
        .map(|t| t.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() && !dry_run {
        bail!("imagetools create needs -t NAME (or --dry-run)");
    }
    let mut pairs: Vec<(Reference, Value, Descriptor)> = Vec::new();
    let mut srcs: Vec<Reference> = Vec::new();
    if append && let Some(t) = targets.first() {
        srcs.push(t.clone());
    }
    for s in sources {
        srcs.push(s.parse()?);
    }
    if srcs.is_empty() {
        bail!("imagetools create needs at least one source image");
    }
    for r in &srcs {
        for (raw, desc) in entries_of(&registry, r).with_context(|| format!("reading {r}"))? {
            if !pairs.iter().any(|(_, _, d)| d.digest == desc.digest) {
                pairs.push((r.clone(), raw, desc));
            }
        }
    }
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": pairs.iter().map(|(_, raw, _)| raw.clone()).collect::<Vec<_>>(),
    });
    let ann = index_annotations(annotations)?;
    if !ann.is_empty() {
        index["annotations"] = Value::Object(ann);
    }
    let bytes = serde_json::to_vec(&index)?;
    if dry_run {
        println!("{}", serde_json::to_string_pretty(&index)?);
        return Ok(ExitCode::SUCCESS);
    }
    let tmp = tempfile::tempdir()?;
    let store = rbuild_store::Store::open(tmp.path())?;
    let sources: Vec<(Reference, Descriptor)> = pairs.into_iter().map(|(r, _, d)| (r, d)).collect();
    let report = registry.put_index(&store, &sources, &bytes, &targets)?;
    let names: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    eprintln!(
        "pushed {} ({}): {} blob(s) mounted, {} uploaded ({} bytes), {} already there",
        names.join(", "),
        Digest::sha256(&bytes),
        report.mounted,
        report.uploaded,
        report.uploaded_bytes,
        report.present
    );
    Ok(ExitCode::SUCCESS)
}
