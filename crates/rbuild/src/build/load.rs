//! The build's side of the local image store: `--load` / `-o type=image`, the store as
//! a source of `FROM` images, `--lock`/`--locked`, and the bases in `--metadata-file`.

use crate::build::bases::{self, LockFile, Pull, StoreSource};
use crate::build::output::Output;
use crate::cli::BuildArgs;
use anyhow::{Result, bail};
use rbuild_core::Reference;
use rbuild_export::BuiltImage;
use rbuild_images::{ImageStore, Target};
use rbuild_solver::Sources;
use rbuild_store::Store;
use std::path::Path;
use std::sync::Arc;

/// Checks the outputs: at most one file output besides the image store, and image
/// outputs with valid names (`-t` names when the output names none).
pub fn check_outputs(outputs: &mut [Output], tags: &[String]) -> Result<()> {
    // Several outputs are written from one build, whose layers are compressed once.
    let mut kinds: Vec<_> = outputs
        .iter()
        .filter(|o| matches!(o, Output::Oci { .. } | Output::Registry(_)))
        .map(Output::compression)
        .collect();
    kinds.dedup();
    if kinds.len() > 1 {
        bail!(
            "the outputs ask for different layer compressions ({}); rbuild compresses a build's layers once, so give them all the same compression",
            kinds.iter().map(|c| c.key()).collect::<Vec<_>>().join(", ")
        );
    }
    for o in outputs.iter_mut() {
        if let Output::Image { names, .. } = o {
            if names.is_empty() {
                names.extend(tags.iter().cloned());
            }
            if names.is_empty() {
                bail!("--load / -o type=image needs a name: give -t NAME[:TAG] or name=NAME");
            }
            for n in names.iter() {
                Reference::parse(n)?;
            }
        }
    }
    Ok(())
}

/// The store as the build's source of `FROM` images, with `--pull` and the lock file.
pub fn store_source(
    state: &rbuild_solver::StateDir,
    store: &Store,
    args: &BuildArgs,
    dockerfile: &Path,
) -> Result<Arc<StoreSource>> {
    let images = ImageStore::open(state, store.clone())?;
    let path = bases::lock_path(dockerfile);
    let lock = if args.lock {
        None
    } else {
        bases::read_lock(&path)?.map(|l| (path.clone(), l))
    };
    let lock = match (lock, args.locked) {
        (None, true) => Some((path, LockFile::default())),
        (l, _) => l,
    };
    Ok(Arc::new(StoreSource::new(
        images,
        Pull::parse(&args.pull),
        lock,
        args.locked,
    )))
}

/// Names the built image (every platform: the index, or the manifest of a
/// single-platform build) in the store for each image output.
pub fn finish(
    state: &rbuild_solver::StateDir,
    store: &Store,
    image: &BuiltImage,
    outputs: &[Output],
    quiet: bool,
) -> Result<()> {
    let names: Vec<&String> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Image { names, .. } => Some(names),
            _ => None,
        })
        .flatten()
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let root_desc = rbuild_export::root_descriptor(store, image)?;
    store.sync()?;
    let images = ImageStore::open(state, store.clone())?;
    let target = Target {
        media_type: root_desc.media_type,
        digest: root_desc.digest,
        size: root_desc.size,
    };
    for n in names {
        let r = Reference::parse(n)?;
        images.set(&r, &target)?;
        if !quiet {
            eprintln!(
                "loaded {} ({}) into the local image store",
                r.familiar(),
                target.digest
            );
        }
    }
    Ok(())
}

/// `--lock`: writes what the build resolved through the store to `<Dockerfile>.lock`.
pub fn write_lock_if_asked(
    args: &BuildArgs,
    dockerfile: &Path,
    source: &StoreSource,
) -> Result<()> {
    if !args.lock {
        return Ok(());
    }
    let path = bases::lock_path(dockerfile);
    bases::write_lock(&path, &source.resolved())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The base images the build used, for `--metadata-file`: reference, platform, manifest
/// digest, and the index digest of those that came from the store.
pub fn bases_metadata(sources: &Sources, source: &StoreSource) -> serde_json::Value {
    let pins = source.resolved();
    let list: Vec<serde_json::Value> = sources
        .resolved_bases()
        .into_iter()
        .map(|(reference, platform, manifest)| {
            let mut v = serde_json::json!({
                "ref": reference,
                "platform": platform.to_string(),
                "manifest": manifest.to_string(),
            });
            if let (Some(pin), Some(obj)) = (pins.images.get(&reference), v.as_object_mut()) {
                if let Some(d) = &pin.digest {
                    obj.insert("digest".into(), d.to_string().into());
                }
                obj.insert("source".into(), "local image store".into());
            }
            v
        })
        .collect();
    serde_json::Value::Array(list)
}
