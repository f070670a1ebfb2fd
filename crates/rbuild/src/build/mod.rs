//! `rbuild build`: parse, lower per platform, prepare emulation, solve, export.

pub mod airgap;
pub mod bases;
pub mod check;
pub mod lint_offline;
pub mod load;
pub mod output;
pub mod rootfs_export;

use crate::cli::{BuildArgs, Cli};
use anyhow::{Context, Result, bail};
use check::Call;
use output::Output;
use rbuild_core::Platform;
use rbuild_export::BuiltImage;
use rbuild_graph::LowerOptions;
use rbuild_sandbox::Emulation;
use rbuild_solver::{
    Entitlements, INTERRUPTED, NetworkMode, Secrets, Solver, Sources, StateDir, StateLock,
};
use rbuild_source::NamedContext;
use rbuild_store::Store;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

/// Everything `build` needs, validated before any namespace or file work starts.
struct Request {
    context: PathBuf,
    dockerfile: PathBuf,
    platforms: Vec<Platform>,
    outputs: Vec<Output>,
    build_args: BTreeMap<String, String>,
    named: BTreeMap<String, NamedContext>,
    /// `--build-context NAME=docker-image://REF`: NAME pulled as REF.
    docker_images: BTreeMap<String, String>,
    secrets: Secrets,
    network: NetworkMode,
    labels: BTreeMap<String, String>,
    annotations: rbuild_image::Annotations,
    rewrite_timestamp: bool,
    force_compression: bool,
    media_types: rbuild_image::MediaTypes,
    quiet: bool,
    entitlements: Entitlements,
}

fn request(args: &BuildArgs) -> Result<Request> {
    let mut platforms: Vec<Platform> = Vec::new();
    for p in &args.platform {
        if !platforms.contains(p) {
            platforms.push(p.clone());
        }
    }
    if platforms.is_empty() {
        platforms.push(Platform::host());
    }
    let mut outputs = args
        .output
        .iter()
        .map(|o| output::parse(o))
        .collect::<Result<Vec<_>>>()?;
    if args.load {
        outputs.push(Output::Image {
            names: Vec::new(),
            media_types: None,
        });
    }
    if args.push {
        outputs.push(Output::Registry(output::RegistryOutput {
            push: true,
            ..Default::default()
        }));
    }
    crate::registry::validate(&outputs, &args.tags)?;
    crate::build::load::check_outputs(&mut outputs, &args.tags)?;
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => match std::env::var(a) {
                Ok(v) => build_args.insert(a.clone(), v),
                Err(_) => continue,
            },
        };
    }
    let mut named = BTreeMap::new();
    let mut docker_images = BTreeMap::new();
    for c in &args.build_contexts {
        let (name, value) = c
            .split_once('=')
            .with_context(|| format!("--build-context {c:?}: expected NAME=VALUE"))?;
        if let Some(image) = value.strip_prefix("docker-image://") {
            let r: rbuild_core::Reference = image
                .parse()
                .with_context(|| format!("--build-context {c:?}"))?;
            docker_images.insert(name.to_string(), r.to_string());
            continue;
        }
        let parsed = match NamedContext::parse(value)? {
            // A directory named through a symlink is the directory it names.
            NamedContext::Dir(dir) => NamedContext::Dir(
                dir.canonicalize()
                    .with_context(|| format!("--build-context {name}={}", dir.display()))?,
            ),
            other => other,
        };
        named.insert(name.to_string(), parsed);
    }
    let mut secrets = Secrets::default();
    for s in &args.secrets {
        let (id, src) = rbuild_solver::parse_secret(s)?;
        secrets.secrets.insert(id, src);
    }
    for s in &args.ssh {
        let (id, path) = rbuild_solver::parse_ssh(s)?;
        secrets.ssh.insert(id, path);
    }
    let mut annotations = rbuild_image::Annotations::default();
    for a in &args.annotations {
        annotations.add_flag(a)?;
    }
    let (mut rewrite_timestamp, mut force_compression) = (false, false);
    for o in &args.output {
        output::annotations(o, &mut annotations)?;
        rewrite_timestamp |= output::rewrite_timestamp(o)?.unwrap_or(false);
        force_compression |= output::force_compression(o)?.unwrap_or(false);
    }
    let media_types = output::build_media_types(&outputs, &annotations)?;
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: expected KEY=VALUE"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let quiet = args.quiet || args.progress == "quiet";
    let network =
        NetworkMode::parse(&args.network).map_err(|e| anyhow::anyhow!("--network: {e}"))?;
    let entitlements = Entitlements::parse(&args.allow).context("--allow")?;
    if !args.context.is_dir() {
        bail!(
            "build context {} is not a directory",
            args.context.display()
        );
    }
    // A context given as a symlink to a directory is that directory.
    let context = args
        .context
        .canonicalize()
        .with_context(|| format!("build context {}", args.context.display()))?;
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    Ok(Request {
        context,
        dockerfile,
        platforms,
        outputs,
        build_args,
        named,
        docker_images,
        secrets,
        network,
        labels,
        annotations,
        rewrite_timestamp,
        force_compression,
        media_types,
        quiet,
        entitlements,
    })
}

/// The state directory rbuild uses when `--root` is not given.
pub(crate) fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/rbuild");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("rbuild");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/rbuild"),
        None => std::env::temp_dir().join(format!("rbuild-{}", nix::unistd::geteuid())),
    }
}

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: i32) {
    SIGNAL.store(sig, Ordering::SeqCst);
    // Lowering and linting stop at their next instruction.
    rbuild_graph::CANCELLED.store(true, Ordering::SeqCst);
    if !INTERRUPTED.swap(true, Ordering::SeqCst) {
        // Pass the signal on to the running step's sandbox (same process group), which
        // kills the step's pid namespace and returns.
        // kill(2) is async-signal-safe; nix only wraps it.
        if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(0), sig);
        }
    }
}

fn install_signal_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe {
            let _ = sigaction(sig, &action);
        }
    }
}

/// Runs `rbuild build`.
pub fn run(cli: &Cli, args: &BuildArgs) -> Result<ExitCode> {
    let req = request(args)?;
    let call = crate::build::check::call_of(args)?;
    if matches!(call, Call::Outline | Call::Targets) {
        return crate::build::check::describe(args, call, &req.build_args);
    }
    let root = cli.root.clone().unwrap_or_else(default_root);
    let state = StateDir::create(&root).context("creating the state directory")?;
    // The re-executed process runs as the namespace's root; hand it the state directory
    // chosen for the real user.
    // SAFETY: rbuild is single-threaded until the namespace is entered.
    unsafe { std::env::set_var("RBUILD_ROOT", state.root()) };
    rbuild_sandbox::enter_build_namespace().context("entering the build's user namespace")?;
    // A process group of our own, so interrupting a step never signals whoever started us.
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
    install_signal_handlers();
    let _lock = state.lock_for_build()?;
    let renderer = crate::progress::renderer(&args.progress, req.quiet)?;
    let result = build(&req, &state, args, &renderer);
    renderer.finish(result.is_ok());
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => {
            eprintln!("error: build interrupted; partial results were discarded");
            let sig = SIGNAL.load(Ordering::SeqCst);
            Ok(ExitCode::from((128 + sig.clamp(0, 127)) as u8))
        }
        Err(e) => Err(e),
    }
}

fn build(
    req: &Request,
    state: &StateDir,
    args: &BuildArgs,
    renderer: &std::sync::Arc<dyn rbuild_progress::Renderer>,
) -> Result<()> {
    let events: &dyn rbuild_progress::EventSink = renderer.as_ref();
    let store = Store::open(&state.store())?;
    let src = std::fs::read(&req.dockerfile)
        .with_context(|| format!("reading Dockerfile {}", req.dockerfile.display()))?;
    let name = req
        .dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    stop_if_interrupted()?;
    let df = rbuild_dockerfile::parse(&name, &src).map_err(|d| anyhow::anyhow!("{d}"))?;
    stop_if_interrupted()?;
    for w in &df.warnings {
        crate::progress::diagnostic(events, &w.to_string(), None);
    }
    let (context, _filtered) = apply_dockerignore(req, state)?;
    stop_if_interrupted()?;
    let bases = crate::build::load::store_source(state, &store, args, &req.dockerfile)?;
    let sources = Sources::new(context, req.named.clone())
        .with_images(Box::new(crate::build::bases::Shared(bases.clone())));
    if crate::build::check::call_of(args)? == Call::Check {
        let opts = lower_options(req, args, &req.platforms[0]);
        return crate::build::check::check(&df, &opts, &mut sources.resolver(&store));
    }
    let registry = std::sync::Arc::new(crate::registry::client(&req.outputs, &args.tags)?);
    let sources = sources
        .with_remote(Box::new(crate::registry::Puller {
            registry: registry.clone(),
            aliases: req.docker_images.clone(),
            events: renderer.clone(),
        }))
        .with_url_fetcher(Box::new(crate::registry::Downloader {
            registry: registry.clone(),
            events: renderer.clone(),
        }));
    if !req.quiet {
        crate::build::check::note_syntax(&df);
    }
    let mut graphs = Vec::new();
    for p in &req.platforms {
        let opts = lower_options(req, args, p);
        graphs.push(rbuild_solver::lower_for(&df, &opts, &sources, &store)?);
        stop_if_interrupted()?;
    }
    crate::progress::lints(events, &graphs);
    for g in &graphs {
        req.entitlements.check(g)?;
    }
    let mut run_platforms: Vec<Platform> = Vec::new();
    for g in &graphs {
        for p in rbuild_solver::run_platforms(g) {
            if !run_platforms.contains(&p) {
                run_platforms.push(p);
            }
        }
    }
    let run_dir = state.run_dir()?;
    let emulation = Emulation::prepare(&run_platforms, &run_dir)?;
    for w in emulation.warnings() {
        crate::progress::diagnostic(events, w, None);
    }
    let cache = rbuild_solver::LocalCache::new(state, &store);
    let solver = Solver {
        store: &store,
        state,
        cache: &cache,
        sources: &sources,
        emulation: &emulation,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        compression: req
            .outputs
            .iter()
            .find(|o| matches!(o, Output::Oci { .. } | Output::Registry(_)))
            .map(Output::compression)
            .unwrap_or_default(),
        // `--build-arg SOURCE_DATE_EPOCH=…` first, then the environment, as buildx.
        source_date_epoch: req
            .build_args
            .get("SOURCE_DATE_EPOCH")
            .cloned()
            .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
            .and_then(|v| v.parse().ok()),
        rewrite_timestamp: req.rewrite_timestamp,
        force_compression: req.force_compression,
        media_types: req.media_types,
        secrets: &req.secrets,
        network: req.network,
        events,
        labels: req.labels.clone(),
        annotations: req.annotations.clone(),
        entitlements: req.entitlements,
    };
    let jobs: Vec<_> = graphs.iter().zip(&req.platforms).collect();
    let manifests = solver.build_all(&jobs)?;
    store.sync()?;
    let image = BuiltImage {
        manifests,
        tags: args.tags.clone(),
        annotations: req.annotations.clone(),
        media_types: req.media_types,
    };
    export(state, &store, &image, &req.outputs, renderer, &registry)?;
    crate::build::load::finish(state, &store, &image, &req.outputs, req.quiet)?;
    crate::build::load::write_lock_if_asked(args, &req.dockerfile, &bases)?;
    let based = crate::build::load::bases_metadata(&sources, &bases);
    report(&store, &image, args, req.quiet, based)
}

/// Ends the build before its next phase once a signal came (nothing is half-written
/// between phases; the caller reports the interruption).
pub(crate) fn stop_if_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn lower_options(req: &Request, args: &BuildArgs, platform: &Platform) -> LowerOptions {
    LowerOptions {
        target_platform: platform.clone(),
        build_platform: Platform::host(),
        build_args: req.build_args.clone(),
        target: args.target.clone(),
        all_stages: false,
    }
}

/// The context directory the build sees: the given one, or — when a `.dockerignore`
/// applies — a filtered copy under the state directory (kept alive by the returned guard).
fn apply_dockerignore(
    req: &Request,
    state: &StateDir,
) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    let Some(file) = rbuild_snapshot::ignore_file(&req.context, &req.dockerfile) else {
        return Ok((req.context.clone(), None));
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let patterns = rbuild_snapshot::parse_ignore(&text);
    if patterns.is_empty() {
        return Ok((req.context.clone(), None));
    }
    let tmp = state.temp_dir(rbuild_solver::TempKind::Context)?;
    let stats = rbuild_snapshot::filtered_context(&req.context, &patterns, tmp.path())
        .with_context(|| format!("applying {}", file.display()))?;
    tracing::debug!(
        kept = stats.kept,
        ignored = stats.ignored,
        "applied {}",
        file.display()
    );
    Ok((tmp.path().to_path_buf(), Some(tmp)))
}

/// `--iidfile`, `--metadata-file` and, with `--quiet`, the digest on stdout.
fn report(
    store: &Store,
    image: &BuiltImage,
    args: &BuildArgs,
    quiet: bool,
    bases: serde_json::Value,
) -> Result<()> {
    let root = rbuild_export::root_descriptor(store, image)?;
    if let Some(path) = &args.iidfile {
        std::fs::write(path, root.digest.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let meta = serde_json::json!({
            "containerimage.digest": root.digest.to_string(),
            "containerimage.descriptor": {
                "mediaType": root.media_type,
                "digest": root.digest.to_string(),
                "size": root.size,
            },
            "image.name": args.tags.join(","),
            "rbuild.bases": bases,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if quiet {
        println!("{}", root.digest);
    }
    Ok(())
}

fn export(
    state: &StateDir,
    store: &Store,
    image: &BuiltImage,
    outputs: &[Output],
    renderer: &std::sync::Arc<dyn rbuild_progress::Renderer>,
    registry: &rbuild_registry::Registry,
) -> Result<()> {
    let events: &dyn rbuild_progress::EventSink = renderer.as_ref();
    if outputs.is_empty() {
        events.event(&rbuild_progress::Event::Warning(
            &rbuild_progress::Warning {
                vertex: None,
                short: "no --output given; the result stays only in rbuild's cache".into(),
                detail: Vec::new(),
                url: None,
            },
        ));
    }
    for o in outputs {
        if matches!(o, Output::Image { .. }) {
            continue;
        }
        if let Output::Registry(r) = o {
            let vertex = crate::progress::Task::start(events, "image");
            let pushed =
                crate::registry::push(registry, store, image, r, &vertex, renderer.clone());
            vertex.finish(pushed.as_ref().err());
            pushed?;
            continue;
        }
        let vertex = crate::progress::Task::start(events, export_kind(o));
        let r = write_output(state, store, image, o, &vertex);
        if r.is_ok()
            && let Some(dest) = o.dest()
        {
            vertex.say(&format!("wrote {}", dest.display()));
        }
        vertex.finish(r.as_ref().err());
        r?;
    }
    Ok(())
}

/// What an output is, as the export vertex names it (BuildKit's wording).
fn export_kind(o: &Output) -> &'static str {
    match o {
        Output::Oci { .. } => "oci image format",
        Output::Docker { .. } => "docker image format",
        Output::Local { .. } => "client directory",
        Output::Tar { .. } => "client tarball",
        Output::Image { .. } => "image store",
        Output::Registry(_) => "image registry",
    }
}

fn write_output(
    state: &StateDir,
    store: &Store,
    image: &BuiltImage,
    o: &Output,
    vertex: &crate::progress::Task<'_>,
) -> Result<()> {
    let mut meter = None;
    let mut on_bytes = |done: u64, total: u64| {
        meter
            .get_or_insert_with(|| vertex.meter())
            .set(done, Some(total))
    };
    match o {
        Output::Oci {
            dest, tar: true, ..
        } => rbuild_export::write_oci_tar_with(store, image, dest, &mut on_bytes)?,
        Output::Oci {
            dest, tar: false, ..
        } => rbuild_export::write_oci_dir(store, image, dest)?,
        Output::Docker { dest, .. } => {
            rbuild_export::write_docker_tar_with(store, image, dest, &mut on_bytes)?
        }
        Output::Local { dest, split } => {
            let layers = crate::build::rootfs_export::StateLayers(state);
            rbuild_export::rootfs::write_local(&layers, store, image, dest, *split)?
        }
        Output::Tar { dest, split } => {
            let layers = crate::build::rootfs_export::StateLayers(state);
            rbuild_export::rootfs::write_tar(&layers, store, image, dest, *split)?
        }
        Output::Image { .. } | Output::Registry(_) => {}
    }
    if let Some(m) = meter {
        m.finish();
    }
    Ok(())
}

/// Locks the state directory for this process alone (for `prune`), waiting for running
/// builds to finish.
pub(crate) fn lock_state_exclusive(state: &StateDir) -> Result<StateLock> {
    let root = state.root().display();
    Ok(state.lock_exclusive(|| eprintln!("waiting for another rbuild using {root}"))?)
}
