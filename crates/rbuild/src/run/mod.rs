//! `rbuild run`: one process of an image in the sandbox, over the image's unpacked
//! layers and a throwaway upper directory, with the caller's stdin/stdout or a terminal.

pub mod tty;

use crate::cli::Cli;
use crate::cli_images::RunArgs;
use anyhow::{Context, Result, bail};
use rbuild_core::{Platform, Reference};
use rbuild_images::walk::{self, PlatformImage};
use rbuild_images::{ImageStore, Target, archive};
use rbuild_sandbox::{Attach, Emulation, ExitStatus, Mount, Network, Rootfs, RunSpec, Security};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Docker's warning for an image whose platform is not the host's.
fn platform_warning(image: &Platform) -> String {
    format!(
        "WARNING: The requested image's platform ({image}) does not match the detected host platform ({}) and no specific platform was requested",
        Platform::host()
    )
}

/// Runs `rbuild run`.
pub fn run(cli: &Cli, args: &RunArgs) -> Result<ExitCode> {
    let volumes = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>>>()?;
    let extra_env = parse_env(&args.env)?;
    let state = crate::state::enter(cli)?;
    let _lock = state.lock_for_build()?;
    let images = crate::state::images(&state)?;
    let (target, shown) = image_target(&images, &args.image)?;
    let image = pick_platform(&images, &target, &shown, args.platform.as_ref())?;
    let lowers = unpack(&state, &images, &image)?;
    let run_dir = state.run_dir()?;
    let emulation = Emulation::prepare(std::slice::from_ref(&image.platform), &run_dir)
        .context("setting up emulation for the image's platform")?;
    for w in emulation.warnings() {
        eprintln!("WARNING: {w}");
    }
    let tmp = state.temp_dir(rbuild_solver::TempKind::Container)?;
    let spec = spec(args, &image, lowers, tmp.path(), volumes, extra_env)?;
    let outcome = attach_and_run(&spec, &emulation, args);
    drop(tmp);
    match outcome {
        Ok(ExitStatus::Code(c)) => Ok(ExitCode::from(c.clamp(0, 255) as u8)),
        Ok(ExitStatus::Signal(s)) => Ok(ExitCode::from((128 + s).clamp(0, 255) as u8)),
        Err(e) => {
            let (code, text) = explain(&e, &image.platform);
            eprintln!("error: {text}");
            Ok(ExitCode::from(code))
        }
    }
}

/// The image a `run` argument names: `oci-archive:PATH` (loaded into the store first),
/// or a name or id of the store.
fn image_target(images: &ImageStore, text: &str) -> Result<(Target, String)> {
    if let Some(path) = text.strip_prefix("oci-archive:") {
        let loaded = archive::load(images, Path::new(path))?;
        let [one] = loaded.as_slice() else {
            bail!(
                "{path} holds {} images; rbuild run needs exactly one",
                loaded.len()
            );
        };
        return Ok((one.target.clone(), text.to_string()));
    }
    let target = images.resolve(text).map_err(|e| match e {
        rbuild_images::ImagesError::NotFound(_) => anyhow::anyhow!(
            "no image {text} in the local image store (rbuild images lists them; rbuild build --load or rbuild image load puts them there)"
        ),
        other => other.into(),
    })?;
    let shown = Reference::parse(text)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| text.to_string());
    Ok((target, shown))
}

/// The platform image to run: the one `--platform` names, else the host's, else one the
/// host runs natively, else the first (emulated, with docker's warning).
fn pick_platform(
    images: &ImageStore,
    target: &Target,
    shown: &str,
    platform: Option<&Platform>,
) -> Result<PlatformImage> {
    if let Some(p) = platform {
        return Ok(walk::select(images.blobs(), target, p, shown)?);
    }
    let host = Platform::host();
    let all = walk::platforms(images.blobs(), target)?;
    let chosen = all
        .iter()
        .find(|(p, _)| host.matches(p))
        .or_else(|| all.iter().find(|(p, _)| p.runs_natively_on(&host)))
        .or(all.first());
    let Some((p, m)) = chosen else {
        bail!("{shown} has no platform images");
    };
    if !p.runs_natively_on(&host) {
        eprintln!("{}", platform_warning(p));
    }
    Ok(walk::manifest_image(images.blobs(), m, Some(p))?)
}

/// Unpacks the image's layers (shared with builds) and returns them top-most first.
fn unpack(
    state: &rbuild_solver::StateDir,
    images: &ImageStore,
    image: &PlatformImage,
) -> Result<Vec<PathBuf>> {
    // No progress here: only warnings (devices skipped rootless) reach the sink.
    let warnings = rbuild_progress::Plain::new(std::io::stderr());
    let mut dirs = Vec::new();
    for l in &image.layers {
        dirs.push(rbuild_solver::unpack_into_state(
            state,
            images.blobs(),
            l,
            &warnings,
            None,
        )?);
    }
    Ok(rbuild_solver::visible_lowers(dirs.into_iter().rev()))
}

fn spec(
    args: &RunArgs,
    image: &PlatformImage,
    lower: Vec<PathBuf>,
    tmp: &Path,
    mounts: Vec<Mount>,
    extra_env: Vec<String>,
) -> Result<RunSpec> {
    let (upper, work, scratch) = (tmp.join("upper"), tmp.join("work"), tmp.join("scratch"));
    for d in [&upper, &work, &scratch] {
        std::fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let c = &image.config.config;
    Ok(RunSpec {
        rootfs: Rootfs::Overlay { lower, upper, work },
        argv: command(args, c.entrypoint.as_deref(), c.cmd.as_deref())?,
        env: merge_env(c.env.clone().unwrap_or_default(), extra_env),
        cwd: args
            .workdir
            .clone()
            .or_else(|| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: args
            .user
            .clone()
            .or_else(|| c.user.clone())
            .unwrap_or_default(),
        hostname: args.hostname.clone().unwrap_or_else(container_hostname),
        hosts: HOSTS.into(),
        resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        network: if args.network == "none" {
            Network::None
        } else {
            Network::Host
        },
        platform: image.platform.clone(),
        scratch_dir: scratch,
        mounts,
        security: Security::Sandbox,
    })
}

/// Docker's rule: `--entrypoint` replaces the image's entrypoint and drops its CMD;
/// arguments after the image replace the CMD.
fn command(
    args: &RunArgs,
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
) -> Result<Vec<String>> {
    let mut argv: Vec<String> = match &args.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => entrypoint.unwrap_or_default().to_vec(),
    };
    if !args.command.is_empty() {
        argv.extend(args.command.iter().cloned());
    } else if args.entrypoint.is_none() {
        argv.extend(cmd.unwrap_or_default().iter().cloned());
    }
    if argv.is_empty() {
        bail!(
            "no command specified: the image has no ENTRYPOINT or CMD; give one after the image name"
        );
    }
    Ok(argv)
}

/// `-e` values: `K=V`, or `K` taken from rbuild's environment (left out when unset).
fn parse_env(values: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for v in values {
        match v.split_once('=') {
            Some(("", _)) => bail!("-e {v:?}: the variable needs a name"),
            Some(_) => out.push(v.clone()),
            None => {
                if let Ok(val) = std::env::var(v) {
                    out.push(format!("{v}={val}"));
                }
            }
        }
    }
    Ok(out)
}

fn merge_env(mut env: Vec<String>, extra: Vec<String>) -> Vec<String> {
    for e in extra {
        let key = e.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    env
}

/// `-v HOST:CONTAINER[:ro|rw]`; the host path must exist.
fn parse_volume(v: &str) -> Result<Mount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, target, readonly) = match parts.as_slice() {
        [h, t] => (*h, *t, false),
        [h, t, "ro"] => (*h, *t, true),
        [h, t, "rw"] => (*h, *t, false),
        _ => bail!("-v {v:?}: expected HOST:CONTAINER[:ro|rw]"),
    };
    if !target.starts_with('/') {
        bail!("-v {v:?}: the container path must be absolute");
    }
    if !host.starts_with('/') && !host.starts_with('.') {
        bail!(
            "-v {v:?}: named volumes are not supported; give a host path (absolute or ./relative)"
        );
    }
    let source = Path::new(host)
        .canonicalize()
        .with_context(|| format!("-v {v:?}: host path {host}"))?;
    Ok(Mount::Bind {
        source,
        target: target.to_string(),
        readonly,
    })
}

/// Twelve hex digits, as docker's container hostnames.
fn container_hostname() -> String {
    let seed = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    rbuild_core::Digest::sha256(seed.as_bytes()).hex()[..12].to_string()
}

/// Runs the spec with the caller's streams, or a pseudo-terminal with `-t`.
fn attach_and_run(
    spec: &RunSpec,
    emulation: &Emulation,
    args: &RunArgs,
) -> Result<ExitStatus, rbuild_sandbox::SandboxError> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| -> Result<OwnedFd, rbuild_sandbox::SandboxError> {
        fd.try_clone_to_owned().map_err(|e| {
            rbuild_sandbox::SandboxError::Setup(format!("duplicate a standard stream: {e}"))
        })
    };
    if args.tty {
        return crate::run::tty::run(spec, emulation, args.interactive);
    }
    let stdin = if args.interactive {
        Some(dup(std::io::stdin().as_fd())?)
    } else {
        None
    };
    let attach = Attach {
        stdin,
        stdout: dup(std::io::stdout().as_fd())?,
        stderr: dup(std::io::stderr().as_fd())?,
        tty: false,
    };
    Ok(rbuild_sandbox::run_attached(spec, emulation, attach)?.status)
}

/// Docker's exit code for a failure to start the command (125 set-up, 126 cannot run,
/// 127 not found) and the message, with the package to install for foreign binaries.
fn explain(e: &rbuild_sandbox::SandboxError, platform: &Platform) -> (u8, String) {
    use rbuild_sandbox::SandboxError;
    match e {
        SandboxError::Exec(m) if m.contains("exec format error") => (
            126,
            format!(
                "{m}\nhint: the image is for {platform}; rbuild runs foreign binaries through QEMU user emulation: install it with `apt-get install qemu-user-static` (or set RBUILD_QEMU_PATH), then check with `rbuild platforms`"
            ),
        ),
        SandboxError::Exec(m) if m.contains("not found") => (127, m.clone()),
        SandboxError::Exec(m) => (126, m.clone()),
        other => (125, other.to_string()),
    }
}
