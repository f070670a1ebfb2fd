//! The solver: takes a lowered [`BuildGraph`] per platform and produces images. For each
//! step it works out a cache key first; on a miss it runs the step (a sandboxed RUN over an
//! overlay of the stage's layer directories, or a COPY into a fresh layer directory),
//! turns the step's changes into a layer blob and keeps the directory as the next step's
//! lower layer.

mod cache;
mod context_hash;
mod entitlements;
mod error;
mod layers;
mod progress;
mod resolve;
mod secrets;
mod steps;
mod tail;

pub use entitlements::{Entitlements, UnknownEntitlement};
pub use error::{ArchiveError, BindPathError, ChownError, StepError};
pub use layers::{unpack_into_state, visible_lowers};
pub use rbuild_graph::NetworkMode;
pub use rbuild_state::{CacheStore, LocalCache, StateDir, StateError, StateLock, TempKind};
pub use resolve::{ImageSource, RemoteImages, ResolveError, Sources, UrlDownloads};
pub use secrets::{SecretError, SecretSource, Secrets, parse_secret, parse_ssh};

use rbuild_core::{Digest, Platform};
use rbuild_dockerfile::Dockerfile;
use rbuild_graph::{Base, BuildGraph, Location, LowerOptions, OpKind};
use rbuild_image::{Compression, History, ImageConfig, ImageManifestBlob, LayerBlob};
use rbuild_sandbox::Emulation;
use rbuild_store::Store;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set from a signal handler when the user interrupts the build; checked between steps
/// and while a step runs.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Errors of a build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SolveError {
    /// Lowering found errors in the Dockerfile.
    #[error(transparent)]
    Lower(#[from] rbuild_graph::LowerError),
    /// A RUN step exited non-zero.
    #[error(transparent)]
    StepFailed(Box<StepFailure>),
    /// A step could not be carried out.
    #[error("{location}: {instruction}: {source}")]
    Step {
        /// Where.
        location: Location,
        /// The instruction as written.
        instruction: String,
        /// What went wrong.
        source: Box<StepError>,
    },
    /// A stage's base image could not be resolved.
    #[error("{location}: {source}")]
    BaseImage {
        /// The FROM line.
        location: Location,
        /// Why.
        source: Box<ResolveError>,
    },
    /// The graph names a stage that was not built before its use (a solver bug).
    #[error("{location}: stage {stage} was not built before its use")]
    StageOrder {
        /// Where it is used.
        location: Location,
        /// The stage index.
        stage: usize,
    },
    /// The sandbox failed outside any step.
    #[error(transparent)]
    Sandbox(#[from] rbuild_sandbox::SandboxError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// Image assembly failed.
    #[error(transparent)]
    Image(#[from] rbuild_image::ImageError),
    /// Snapshot work failed.
    #[error(transparent)]
    Snapshot(#[from] rbuild_snapshot::SnapshotError),
    /// A state-directory operation failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The state directory's layout could not be set up.
    #[error(transparent)]
    State(#[from] StateError),
    /// A layer (of a base image or the cache) could not be unpacked.
    #[error("layer {digest} ({media_type}): {reason}")]
    Layer {
        /// The layer blob's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
        /// What is wrong with it.
        reason: Box<LayerError>,
    },
    /// The user interrupted the build.
    #[error("build interrupted")]
    Interrupted,
    /// A step asks for an entitlement the build was not granted.
    #[error(
        "{location}: {what} needs the {entitlement} entitlement, which this build was not granted; pass --allow {entitlement} to rbuild build to grant it"
    )]
    NotEntitled {
        /// The instruction.
        location: Location,
        /// The entitlement, as `--allow` names it.
        entitlement: &'static str,
        /// What asked for it.
        what: &'static str,
    },
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The media type names no compression rbuild reads.
    #[error("unsupported layer media type (rbuild reads tar, tar+gzip and tar+zstd layers)")]
    UnsupportedMediaType,
    /// The tar stream is malformed or hostile.
    #[error("{0}")]
    Unpack(rbuild_snapshot::SnapshotError),
    /// The decompressed content does not hash to the diff id the image config names.
    #[error("content does not match its diff id: expected {expected}, found {found}")]
    DiffId {
        /// The config's diff id.
        expected: Digest,
        /// What the content hashes to.
        found: Digest,
    },
    /// Unpacking would fill the state directory's file system.
    #[error(
        "unpacking stopped after {written} bytes: the file system of {state} would fill up (only {free} bytes free)"
    )]
    NoSpace {
        /// Bytes of decompressed content read so far.
        written: u64,
        /// The state directory.
        state: PathBuf,
        /// Free bytes left.
        free: u64,
    },
}

/// A RUN step that exited non-zero: where, what, how, and its last output.
#[derive(Debug, thiserror::Error)]
#[error(
    "{location}: {instruction} failed with exit code {code} ({platform}):\n  command: {command}\n  last output:\n{tail}"
)]
pub struct StepFailure {
    /// The instruction's place in the Dockerfile.
    pub location: Location,
    /// The instruction as written.
    pub instruction: String,
    /// The command run.
    pub command: String,
    /// Exit code (128+n for signal n).
    pub code: i32,
    /// The platform it ran as.
    pub platform: Platform,
    /// The last output lines, indented.
    pub tail: String,
}

/// What the solver needs beyond the graph.
pub struct Solver<'a> {
    /// The blob store.
    pub store: &'a Store,
    /// rbuild's state directory (layers, temporary step directories).
    pub state: &'a StateDir,
    /// Where step results are remembered and looked up.
    pub cache: &'a dyn CacheStore,
    /// Where base images and `COPY --from` sources come from.
    pub sources: &'a Sources,
    /// The emulators registered for the build.
    pub emulation: &'a Emulation,
    /// Skip cache look-ups (results are still recorded).
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name) whose steps skip cache look-ups.
    pub no_cache_filter: Vec<String>,
    /// Layer compression.
    pub compression: Compression,
    /// The media types the image's manifests and descriptors carry (`oci-mediatypes=`).
    pub media_types: rbuild_image::MediaTypes,
    /// `SOURCE_DATE_EPOCH`, when set: the image's created and history times.
    pub source_date_epoch: Option<i64>,
    /// `force-compression=true`: base and cached layers of another compression are stored
    /// again with `compression` for the image.
    pub force_compression: bool,
    /// `rewrite-timestamp=true`: also clamp the mtimes of files in new layers to
    /// `source_date_epoch`.
    pub rewrite_timestamp: bool,
    /// `--secret` and `--ssh` values.
    pub secrets: &'a Secrets,
    /// `--network` of the build: what `RUN --network=default` means.
    pub network: NetworkMode,
    /// Where steps, their output, warnings and byte progress are reported.
    pub events: &'a dyn rbuild_progress::EventSink,
    /// `--label` values added to the final image's config.
    pub labels: BTreeMap<String, String>,
    /// `--annotation`s; the solver writes the manifests' own.
    pub annotations: rbuild_image::Annotations,
    /// `--allow`: what steps may ask for beyond the default sandbox.
    pub entitlements: Entitlements,
}

/// The result of building one stage: its layers (bottom first) and their directories.
#[derive(Debug, Clone)]
pub(crate) struct StageResult {
    pub layers: Vec<LayerBlob>,
    pub dirs: Vec<PathBuf>,
    pub history: Vec<History>,
    pub config: ImageConfig,
    pub key: Digest,
    /// The last step's layer came from the cache.
    pub cached: bool,
}

impl StageResult {
    /// Layer directories top-most first, as overlay and LayerStack want them. A layer
    /// that occurs twice (identical content, e.g. two empty RUN layers) is kept only at
    /// its top-most place: overlayfs refuses a directory twice, and the lower copy cannot
    /// change the result because the upper one applies the same changes again above it.
    pub fn lowers(&self) -> Vec<PathBuf> {
        layers::visible_lowers(self.dirs.iter().rev().cloned())
    }
}

/// Lowers the Dockerfile for one platform, resolving base images through `sources`.
pub fn lower_for(
    df: &Dockerfile,
    opts: &LowerOptions,
    sources: &Sources,
    store: &Store,
) -> Result<BuildGraph, SolveError> {
    let mut resolver = sources.resolver(store);
    Ok(rbuild_graph::lower(df, opts, &mut resolver)?)
}

/// The platforms whose RUN steps the graph will execute (for emulator set-up).
pub fn run_platforms(graph: &BuildGraph) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    for s in graph.stages.iter().filter(|s| s.needed) {
        let runs = s.ops.iter().any(|o| matches!(o.kind, OpKind::Run(_)));
        if runs && !out.contains(&s.platform) {
            out.push(s.platform.clone());
        }
    }
    out
}

impl Solver<'_> {
    /// Builds one graph per platform, as many at a time as the machine has cores, and
    /// returns the manifests in the order of `jobs`. The first error wins.
    pub fn build_all(
        &self,
        jobs: &[(&BuildGraph, &Platform)],
    ) -> Result<Vec<ImageManifestBlob>, SolveError> {
        for (graph, _) in jobs {
            self.entitlements.check(graph)?;
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(jobs.len())
            .max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Result<ImageManifestBlob, SolveError>>>> =
            jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some((graph, platform)) = jobs.get(i) else {
                            break;
                        };
                        let r = self.build(graph, platform);
                        let failed = r.is_err();
                        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                        if failed {
                            // Stop handing out work; running platforms finish their step.
                            next.store(jobs.len(), Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let mut out = Vec::new();
        for r in results {
            match r.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok(m)) => out.push(m),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok(out)
    }

    /// Builds the target stage of `graph` and writes its config and manifest.
    pub fn build(
        &self,
        graph: &BuildGraph,
        platform: &Platform,
    ) -> Result<ImageManifestBlob, SolveError> {
        self.entitlements.check(graph)?;
        let mut results: BTreeMap<usize, StageResult> = BTreeMap::new();
        for stage in graph.build_order().into_iter().map(|i| &graph.stages[i]) {
            let result = self.build_stage(stage, &results)?;
            results.insert(stage.index, result);
        }
        let target = results
            .remove(&graph.target)
            .ok_or_else(|| SolveError::StageOrder {
                location: graph.stages[graph.target].location.clone(),
                stage: graph.target,
            })?;
        self.write_image(target, platform)
    }

    fn build_stage(
        &self,
        stage: &rbuild_graph::Stage,
        done: &BTreeMap<usize, StageResult>,
    ) -> Result<StageResult, SolveError> {
        let vertices = progress::StageVertices::new(self, stage);
        vertices.announce(self);
        let mut result = self.stage_base(stage, done, vertices.from.as_ref())?;
        let no_cache = self.ignores_cache(stage);
        for (n, op) in stage.ops.iter().enumerate() {
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Err(SolveError::Interrupted);
            }
            let v = &vertices.ops[n];
            // A config-only instruction (ENV, LABEL, CMD, ...) changes no layer; what it
            // does to later steps (env, user, cwd) is part of their own ops, so it is in no key.
            let step: &dyn steps::Step = match &op.kind {
                OpKind::Meta => {
                    result.history.push(self.history(&op.created_by, true));
                    continue;
                }
                OpKind::Run(run) => run,
                OpKind::Copy(copy) => copy,
                OpKind::Mkdir(mkdir) => mkdir,
            };
            let cx = steps::StepContext {
                solver: self,
                op,
                done,
                platform: &stage.platform,
                vertex: v.id,
            };
            self.step(v, &mut result, |result| {
                steps::solve(step, &cx, result, no_cache)
            })?;
        }
        result.config = stage.config.clone();
        Ok(result)
    }

    /// Whether the cache is ignored for a stage's steps (`--no-cache`, or
    /// `--no-cache-filter` naming the stage).
    fn ignores_cache(&self, stage: &rbuild_graph::Stage) -> bool {
        self.no_cache
            || stage.name.as_ref().is_some_and(|n| {
                self.no_cache_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(n))
            })
    }

    /// The key parts every stage's base carries: the platform and what shapes stored blobs.
    fn base_key(&self, base: &Digest, platform: &Platform) -> Digest {
        let platform = platform.to_string();
        cache::chain(base, &[platform.as_bytes(), &steps::blob_shape(self)])
    }

    fn stage_base(
        &self,
        stage: &rbuild_graph::Stage,
        done: &BTreeMap<usize, StageResult>,
        from: Option<&rbuild_progress::Vertex>,
    ) -> Result<StageResult, SolveError> {
        match &stage.base {
            Base::Scratch => Ok(StageResult {
                layers: Vec::new(),
                dirs: Vec::new(),
                history: Vec::new(),
                config: stage.config.clone(),
                key: self.base_key(&Digest::sha256(b"scratch"), &stage.platform),
                cached: false,
            }),
            Base::Stage(i) => done.get(i).cloned().ok_or_else(|| SolveError::StageOrder {
                location: stage.location.clone(),
                stage: *i,
            }),
            Base::Image(r) => match from {
                Some(v) => {
                    self.started(v.id);
                    let mut cached = false;
                    let base = self.image_base(stage, r, v.id, &mut cached);
                    self.finished(v.id, &base, cached);
                    base
                }
                None => self.image_base(stage, r, rbuild_progress::VertexId::of(&[]), &mut false),
            },
        }
    }

    /// The result a stage starts from when its base is image `r`: the image resolved, its
    /// layers unpacked with byte progress on vertex `vertex`; `cached` tells whether every
    /// layer was unpacked already.
    fn image_base(
        &self,
        stage: &rbuild_graph::Stage,
        r: &str,
        vertex: rbuild_progress::VertexId,
        cached: &mut bool,
    ) -> Result<StageResult, SolveError> {
        let image = self
            .sources
            .image(r, &stage.platform, self.store)
            .map_err(|e| SolveError::BaseImage {
                location: stage.location.clone(),
                source: Box::new(e),
            })?;
        if !stage.platform.matches(&image.platform) {
            self.warn(
                vertex,
                format!(
                    "InvalidBaseImagePlatform: Base image {r} was pulled with platform \"{}\", expected \"{}\" for current build",
                    image.platform, stage.platform
                ),
            );
        }
        *cached = image
            .layers
            .iter()
            .all(|l| self.state.layer(&l.diff_id).is_dir());
        let dirs = image
            .layers
            .iter()
            .map(|l| layers::ensure_unpacked_with(self, l, Some(vertex)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StageResult {
            layers: image.layers.clone(),
            dirs,
            history: image.config.history.clone(),
            config: image.config.clone(),
            key: self.base_key(&image.manifest_digest, &stage.platform),
            cached: *cached,
        })
    }

    pub(crate) fn history(&self, created_by: &str, empty_layer: bool) -> History {
        History {
            created: Some(self.now()),
            created_by: Some(created_by.to_string()),
            author: None,
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer,
        }
    }

    fn now(&self) -> String {
        let secs = self.source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
        rbuild_core::rfc3339(secs)
    }

    fn write_image(
        &self,
        result: StageResult,
        platform: &Platform,
    ) -> Result<ImageManifestBlob, SolveError> {
        let mut result = result;
        if self.force_compression {
            result.layers = result
                .layers
                .iter()
                .map(|l| layers::recompress(self, l))
                .collect::<Result<_, _>>()?;
        }
        let mut config = result.config;
        if !self.labels.is_empty() {
            let labels = config.config.labels.get_or_insert_with(Default::default);
            labels.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        config.rootfs.diff_ids = result.layers.iter().map(|l| l.diff_id.clone()).collect();
        config.history = result.history;
        config.created = Some(self.now());
        let (cfg_digest, cfg_size) = self
            .store
            .put_bytes(&config.to_json().map_err(rbuild_image::ImageError::from)?)?;
        let annotations = self
            .annotations
            .for_target(rbuild_image::AnnotationTarget::Manifest, Some(platform));
        Ok(rbuild_image::write_manifest(
            self.store,
            (&cfg_digest, cfg_size),
            &result.layers,
            platform,
            &annotations,
            self.media_types,
        )?)
    }
}
