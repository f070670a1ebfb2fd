//! `image save --from-dockerfile`: every image the target's stages need (`FROM`,
//! `COPY --from=<image>`, `RUN --mount=from=<image>`), for the platforms they are needed
//! for, resolved in the local image store, as one archive for an air-gapped host.

use crate::cli_images::SaveArgs;
use anyhow::{Context, Result};
use rbuild_core::{Platform, Reference};
use rbuild_graph::{BaseResolver, BuildGraph, CopyFrom, LowerOptions, OpKind, RunMount};
use rbuild_image::ImageConfig;
use rbuild_images::save::SaveItem;
use rbuild_images::{ImageStore, walk};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The images to save and every platform requested.
pub fn bases(
    images: &ImageStore,
    dockerfile: &Path,
    args: &SaveArgs,
) -> Result<(Vec<SaveItem>, Vec<Platform>)> {
    let src = std::fs::read(dockerfile)
        .with_context(|| format!("reading Dockerfile {}", dockerfile.display()))?;
    let name = dockerfile.display().to_string();
    let df = rbuild_dockerfile::parse(&name, &src).map_err(|d| anyhow::anyhow!("{d}"))?;
    let platforms = if args.platform.is_empty() {
        vec![Platform::host()]
    } else {
        args.platform.clone()
    };
    let build_args: BTreeMap<String, String> = args
        .build_args
        .iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect();
    let mut wanted: BTreeMap<String, BTreeSet<Platform>> = BTreeMap::new();
    for p in &platforms {
        let opts = LowerOptions {
            target_platform: p.clone(),
            build_platform: Platform::host(),
            build_args: build_args.clone(),
            target: args.target.clone(),
            all_stages: false,
        };
        let mut recorder = Recorder {
            images,
            seen: &mut wanted,
        };
        let graph = rbuild_graph::lower(&df, &opts, &mut recorder)?;
        image_sources(&graph, &mut wanted);
    }
    let mut items = Vec::new();
    for (reference, plats) in wanted {
        let full = Reference::parse(&reference)?;
        let target = images
            .resolve(&reference)
            .with_context(|| format!("{reference} (needed by {})", dockerfile.display()))?;
        items.push(SaveItem {
            target,
            names: if full.digest().is_some() {
                Vec::new()
            } else {
                vec![full.to_string()]
            },
            platforms: plats.into_iter().collect(),
        });
    }
    Ok((items, platforms))
}

/// Adds the images that needed stages copy or mount from.
fn image_sources(graph: &BuildGraph, wanted: &mut BTreeMap<String, BTreeSet<Platform>>) {
    for stage in graph.stages.iter().filter(|s| s.needed) {
        for op in &stage.ops {
            let mut froms: Vec<&CopyFrom> = Vec::new();
            match &op.kind {
                OpKind::Copy(c) => froms.push(&c.from),
                OpKind::Run(r) => {
                    for m in &r.mounts {
                        match m {
                            RunMount::Bind { from, .. } => froms.push(from),
                            RunMount::Cache {
                                from: Some(from), ..
                            } => froms.push(from),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            for f in froms {
                if let CopyFrom::Image(r) = f {
                    wanted
                        .entry(r.clone())
                        .or_default()
                        .insert(stage.platform.clone());
                }
            }
        }
    }
}

/// Resolves `FROM` images in the store and records which were asked for, per platform.
struct Recorder<'a> {
    images: &'a ImageStore,
    seen: &'a mut BTreeMap<String, BTreeSet<Platform>>,
}

impl BaseResolver for Recorder<'_> {
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, Box<dyn std::error::Error + Send + Sync>> {
        let target = self.images.resolve(reference).map_err(|e| {
            format!("{e}; the host that saves bases needs them in its local image store (rbuild image load, or a build with --load)")
        })?;
        let image = walk::select(self.images.blobs(), &target, platform, reference)
            .map_err(|e| e.to_string())?;
        self.seen
            .entry(reference.to_string())
            .or_default()
            .insert(image.platform.clone());
        Ok(image.config)
    }
}
