//! `RUN --mount` sources: cache directories under the state directory, bind sources from
//! the context or another stage, tmpfs, secrets and SSH agent sockets. Everything here
//! becomes a generic sandbox mount; secret values never reach a layer, the history, a
//! cache key or the log.

use super::{StepContext, step_err};
use crate::{BindPathError, StepError};
use crate::{SolveError, Solver, StateDir};
use rbuild_core::{Digest, Platform};
use rbuild_graph::{CopyFrom, RunMount, Sharing};
use rbuild_sandbox::Mount;
use rbuild_snapshot::{CopyOptions, CopySource, LayerStack};
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

/// Mounts and extra environment for one step, plus what must live until the step ends.
#[derive(Default)]
pub struct Prepared {
    /// For the sandbox.
    pub mounts: Vec<Mount>,
    /// `K=V` pairs added to the step's environment only (secret env, SSH_AUTH_SOCK).
    pub env: Vec<String>,
    /// Locks held for `sharing=locked` / `private` caches.
    pub locks: Vec<nix::fcntl::Flock<fs::File>>,
}

/// Turns the step's `--mount`s into sandbox mounts. `scratch` is the step's private
/// temporary directory (removed after the step).
pub(crate) fn prepare(
    cx: &StepContext,
    mounts: &[RunMount],
    scratch: &Path,
) -> Result<Prepared, SolveError> {
    let (solver, op) = (cx.solver, cx.op);
    let mut out = Prepared::default();
    for (n, m) in mounts.iter().enumerate() {
        match m {
            RunMount::Cache { .. } => cache_mount(cx, m, &mut out)?,
            RunMount::Bind {
                target,
                from,
                source,
                rw,
            } => {
                let path = bind_source(cx, from, source, *rw, &scratch.join(format!("bind-{n}")))?;
                out.mounts.push(Mount::Bind {
                    source: path,
                    target: target.clone(),
                    readonly: !rw,
                });
            }
            RunMount::Tmpfs { target, size } => out.mounts.push(Mount::Tmpfs {
                target: target.clone(),
                size: *size,
            }),
            RunMount::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                let value = solver.secrets.value(id).map_err(|e| step_err(op, e))?;
                let Some(value) = value else {
                    if *required {
                        return Err(step_err(op, StepError::SecretRequired { id: id.clone() }));
                    }
                    continue;
                };
                if let Some(var) = env {
                    out.env
                        .push(format!("{var}={}", String::from_utf8_lossy(&value)));
                }
                if let Some(target) = target {
                    let file = scratch.join(format!("secret-{n}"));
                    write_private(&file, &value, *mode, *uid, *gid).map_err(|source| {
                        step_err(
                            op,
                            StepError::SecretFile {
                                id: id.clone(),
                                source,
                            },
                        )
                    })?;
                    out.mounts.push(Mount::Bind {
                        source: file,
                        target: target.clone(),
                        readonly: true,
                    });
                }
            }
            RunMount::Ssh {
                id,
                target,
                required,
                ..
            } => {
                let Some(sock) = solver.secrets.ssh.get(id) else {
                    if *required {
                        return Err(step_err(op, StepError::SshRequired { id: id.clone() }));
                    }
                    continue;
                };
                let target = target
                    .clone()
                    .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}"));
                out.env.push(format!("SSH_AUTH_SOCK={target}"));
                out.mounts.push(Mount::Bind {
                    source: sock.clone(),
                    target,
                    readonly: false,
                });
            }
        }
    }
    Ok(out)
}

/// What a step's mounts read, as one digest for its cache key: for every bind source and
/// every cache mount's seeding source, a context path's content (symlinks resolved as the
/// mount resolves them), a stage's key or an image's manifest digest, with the path. Mount
/// definitions are in the op itself; secret and SSH values are never read here.
pub(crate) fn inputs_key(cx: &StepContext, mounts: &[RunMount]) -> Result<Digest, SolveError> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for m in mounts {
        let (from, source) = match m {
            RunMount::Bind { from, source, .. } => (from, source.as_str()),
            RunMount::Cache {
                from: Some(from),
                source,
                ..
            } => (from, source.as_deref().unwrap_or("/")),
            _ => continue,
        };
        let identity = source_identity(cx, from, source)?;
        parts.push(format!("{identity}\0{source}").into_bytes());
    }
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Ok(crate::cache::chain(&Digest::sha256(b"mounts"), &parts))
}

/// The identity of what a mount reads at `source` of `from` (see [`inputs_key`]).
fn source_identity(cx: &StepContext, from: &CopyFrom, source: &str) -> Result<Digest, SolveError> {
    let (solver, op) = (cx.solver, cx.op);
    if let Some(dir) = context_dir(solver, from) {
        let root = dir.canonicalize().map_err(|source| {
            step_err(
                op,
                BindPathError::Root {
                    dir: dir.clone(),
                    source,
                },
            )
        })?;
        let real = inside(&root, source).map_err(|e| step_err(op, e))?;
        let rel = real
            .strip_prefix(&root)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        return solver
            .sources
            .content_hash(&root, &[rel])
            .map_err(|source| step_err(op, StepError::Context { dir: root, source }));
    }
    match from {
        CopyFrom::Stage(i) => cx
            .done
            .get(i)
            .map(|r| r.key.clone())
            .ok_or_else(|| step_err(op, StepError::StageNotBuilt(*i))),
        CopyFrom::Image(name) => Ok(solver
            .sources
            .image(name, cx.platform, solver.store)
            .map_err(|e| step_err(op, e))?
            .manifest_digest),
        CopyFrom::Context => Err(step_err(op, StepError::MountFromContext)),
    }
}

/// The directory a mount source names when it is a directory: the build context or a
/// named directory context.
fn context_dir(solver: &Solver, from: &CopyFrom) -> Option<PathBuf> {
    match from {
        CopyFrom::Context => Some(solver.sources.context().to_path_buf()),
        CopyFrom::Image(name) => match solver.sources.named(name) {
            Some(rbuild_source::NamedContext::Dir(p)) => Some(p.clone()),
            _ => None,
        },
        CopyFrom::Stage(_) => None,
    }
}

fn write_private(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    fs::write(path, data)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    // Rootless without subordinate ids only uid 0 exists; keep root then.
    let _ = chown(path, Some(uid), Some(gid));
    Ok(())
}

/// The directory of a cache mount: one per id, and per platform when no id was given.
/// A cache seeded `from` a source is one per id and source (as BuildKit's cache refs),
/// so a changed seed starts a new cache instead of being ignored.
fn cache_dir(
    state: &StateDir,
    id: &str,
    target: &str,
    platform: &Platform,
    seed: Option<&Digest>,
) -> PathBuf {
    let mut key = if id == target {
        format!("{id}\0{platform}")
    } else {
        id.to_string()
    };
    if let Some(seed) = seed {
        key.push_str(&format!("\0{seed}"));
    }
    state.cache_mount(Digest::sha256(key.as_bytes()).hex())
}

fn cache_mount(cx: &StepContext, m: &RunMount, out: &mut Prepared) -> Result<(), SolveError> {
    let (solver, platform) = (cx.solver, cx.platform);
    let RunMount::Cache {
        id,
        target,
        sharing,
        from,
        source,
        mode,
        uid,
        gid,
        readonly,
    } = m
    else {
        return Ok(());
    };
    let seed_id = match from {
        Some(from) => Some(source_identity(cx, from, source.as_deref().unwrap_or("/"))?),
        None => None,
    };
    let dir = cache_dir(solver.state, id, target, platform, seed_id.as_ref());
    let io = |e: std::io::Error| SolveError::Io(dir.clone(), e);
    fs::create_dir_all(solver.state.cache_mounts()).map_err(io)?;
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.with_extension("lock"))
        .map_err(io)?;
    let lock = match sharing {
        Sharing::Shared => None,
        Sharing::Locked => Some(
            nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| io(e.into()))?,
        ),
        Sharing::Private => {
            match nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => Some(l),
                Err(_) => {
                    // In use by another build: this step gets a fresh, throw-away cache.
                    let tmp = crate::layers::temp_dir(solver.state, crate::TempKind::CachePrivate)?
                        .keep();
                    out.mounts.push(Mount::Bind {
                        source: tmp,
                        target: target.clone(),
                        readonly: *readonly,
                    });
                    return Ok(());
                }
            }
        }
    };
    if !dir.is_dir() {
        let fresh = dir.with_extension(format!("new{}", std::process::id()));
        fs::create_dir(&fresh).map_err(io)?;
        if let Some(from) = from {
            seed(cx, from, source.as_deref().unwrap_or("/"), &fresh)?;
        }
        fs::set_permissions(&fresh, fs::Permissions::from_mode(*mode)).map_err(io)?;
        let _ = chown(&fresh, Some(*uid), Some(*gid));
        if let Err(e) = fs::rename(&fresh, &dir) {
            // Another build created it first; use theirs.
            let _ = fs::remove_dir_all(&fresh);
            if !dir.is_dir() {
                return Err(io(e));
            }
        }
    }
    out.locks.extend(lock);
    out.mounts.push(Mount::Bind {
        source: dir,
        target: target.clone(),
        readonly: *readonly,
    });
    Ok(())
}

/// Fills a new cache directory from a stage or image path.
fn seed(cx: &StepContext, from: &CopyFrom, source: &str, dest: &Path) -> Result<(), SolveError> {
    let op = cx.op;
    let stack = LayerStack::new(stack_dirs(cx, from)?);
    let src = format!("{}/", source.trim_end_matches('/'));
    rbuild_snapshot::copy(
        CopySource::Stack(&stack),
        &[src],
        "/",
        &LayerStack::new(Vec::new()),
        dest,
        &CopyOptions {
            workdir: "/".into(),
            ..Default::default()
        },
    )
    .map_err(|e| {
        step_err(
            op,
            StepError::Seed {
                path: source.to_string(),
                source: e,
            },
        )
    })?;
    Ok(())
}

fn stack_dirs(cx: &StepContext, from: &CopyFrom) -> Result<Vec<PathBuf>, SolveError> {
    let (solver, op, done, platform) = (cx.solver, cx.op, cx.done, cx.platform);
    match from {
        CopyFrom::Context => Err(step_err(op, StepError::MountFromContext)),
        CopyFrom::Stage(i) => done
            .get(i)
            .map(|r| r.lowers())
            .ok_or_else(|| step_err(op, StepError::StageNotBuilt(*i))),
        CopyFrom::Image(name) => Ok(super::image_stack(solver, name, platform, op)?.0),
    }
}

/// The host path to bind for a `type=bind` mount. Context paths are bound directly when
/// read-only; stage and image paths (and writable binds, whose writes are discarded) are
/// materialised into the step's scratch directory first.
fn bind_source(
    cx: &StepContext,
    from: &CopyFrom,
    source: &str,
    rw: bool,
    scratch: &Path,
) -> Result<PathBuf, SolveError> {
    let op = cx.op;
    let context_dir = context_dir(cx.solver, from);
    if let Some(ctx) = &context_dir
        && !rw
    {
        return inside(ctx, source).map_err(|e| step_err(op, e));
    }
    fs::create_dir_all(scratch).map_err(|e| SolveError::Io(scratch.to_path_buf(), e))?;
    let out = scratch.join("root");
    fs::create_dir(&out).map_err(|e| SolveError::Io(out.clone(), e))?;
    let copy_opts = CopyOptions {
        workdir: "/".into(),
        ..Default::default()
    };
    let src = source.trim_end_matches('/').to_string();
    let is_dir;
    match &context_dir {
        Some(ctx) => {
            let host = inside(ctx, source).map_err(|e| step_err(op, e))?;
            is_dir = host.is_dir();
            let s = if is_dir {
                format!("{src}/")
            } else {
                src.clone()
            };
            rbuild_snapshot::copy(
                CopySource::Context(ctx),
                &[s],
                "/data/",
                &LayerStack::new(Vec::new()),
                &out,
                &copy_opts,
            )
        }
        None => {
            let stack = LayerStack::new(stack_dirs(cx, from)?);
            is_dir = stack
                .resolve(&src)
                .ok()
                .flatten()
                .map(|e| e.metadata.is_dir())
                .unwrap_or(true);
            let s = if is_dir {
                format!("{}/", if src.is_empty() { "/" } else { &src })
            } else {
                src.clone()
            };
            rbuild_snapshot::copy(
                CopySource::Stack(&stack),
                &[s],
                "/data/",
                &LayerStack::new(Vec::new()),
                &out,
                &copy_opts,
            )
        }
    }
    .map_err(|e| {
        step_err(
            op,
            StepError::BindCopy {
                path: source.to_string(),
                source: e,
            },
        )
    })?;
    if is_dir {
        return Ok(out.join("data"));
    }
    let name = Path::new(&src)
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    Ok(out.join("data").join(name))
}

/// `source` inside `root`, refusing paths that climb out (after resolving symlinks).
fn inside(root: &Path, source: &str) -> Result<PathBuf, BindPathError> {
    let root = root.canonicalize().map_err(|e| BindPathError::Root {
        dir: root.to_path_buf(),
        source: e,
    })?;
    let p = root.join(source.trim_start_matches('/'));
    let real = p.canonicalize().map_err(|e| BindPathError::Resolve {
        path: source.to_string(),
        source: e,
    })?;
    if !real.starts_with(&root) {
        return Err(BindPathError::Escapes(source.to_string()));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dirs_split_by_platform_unless_named() {
        let st = &StateDir::at("/s".into());
        let amd: Platform = "linux/amd64".parse().unwrap();
        let arm: Platform = "linux/arm64".parse().unwrap();
        assert_ne!(
            cache_dir(st, "/c", "/c", &amd, None),
            cache_dir(st, "/c", "/c", &arm, None)
        );
        assert_eq!(
            cache_dir(st, "go", "/c", &amd, None),
            cache_dir(st, "go", "/c", &arm, None)
        );
        let seed = Digest::sha256(b"seed");
        assert_ne!(
            cache_dir(st, "go", "/c", &amd, Some(&seed)),
            cache_dir(st, "go", "/c", &amd, None)
        );
    }

    #[test]
    fn context_binds_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("ctx")).unwrap();
        fs::write(dir.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink("../secret", dir.path().join("ctx/link")).unwrap();
        assert!(inside(&dir.path().join("ctx"), "../secret").is_err());
        assert!(inside(&dir.path().join("ctx"), "link").is_err());
        assert!(inside(&dir.path().join("ctx"), "/").is_ok());
    }
}
