//! RUN steps: the sandbox over an overlay of the stage's layers.

use super::{Tail, push_layer, shell_words, step_err, try_cache};
use crate::layers::{commit, temp_dir};
use crate::{SolveError, Solver, StageResult, cache};
use rbuild_core::Digest;
use rbuild_core::Platform;
use rbuild_graph::{NetworkMode, Op, RunOp, SecurityMode};
use rbuild_sandbox::{ExitStatus, Network, Rootfs, RunSpec, Security};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Runs a RUN step (or reuses its cached layer).
pub fn run(
    solver: &Solver,
    result: &mut StageResult,
    run: &RunOp,
    op: &Op,
    done: &BTreeMap<usize, StageResult>,
    platform: &Platform,
    vertex: rbuild_progress::VertexId,
) -> Result<(), SolveError> {
    let key = run_key(&result.key, run, platform);
    if try_cache(solver, result, &key, op)? {
        return Ok(());
    }
    let tmp = temp_dir(solver.state, "run-")?;
    let upper = tmp.path().join("upper");
    let work = tmp.path().join("work");
    let scratch = tmp.path().join("scratch");
    for d in [&upper, &work, &scratch] {
        fs::create_dir(d).map_err(|e| SolveError::Io(d.clone(), e))?;
    }
    let lowers = result.lowers();
    let prepared = super::mounts::prepare(solver, &run.mounts, op, done, platform, &scratch)?;
    let mut env = run.env.clone();
    env.extend(prepared.env.iter().cloned());
    let spec = RunSpec {
        rootfs: Rootfs::Overlay {
            lower: lowers.clone(),
            upper: upper.clone(),
            work: work.clone(),
        },
        argv: run.argv.clone(),
        env,
        cwd: run.cwd.clone(),
        user: run.user.clone(),
        hostname: "rbuild".into(),
        hosts: HOSTS.into(),
        resolv_conf: fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        network: match run.network {
            NetworkMode::None => Network::None,
            NetworkMode::Host => Network::Host,
            NetworkMode::Default => match solver.network {
                NetworkMode::None => Network::None,
                _ => Network::Host,
            },
        },
        platform: platform.clone(),
        scratch_dir: scratch,
        mounts: prepared.mounts.clone(),
        security: match run.security {
            SecurityMode::Sandbox => Security::Sandbox,
            SecurityMode::Insecure => Security::Insecure,
        },
    };
    let mut tail = Tail::new();
    let outcome = match rbuild_sandbox::run(&spec, solver.emulation, &mut |chunk| {
        super::output(solver, vertex, chunk);
        tail.feed(chunk)
    }) {
        Ok(o) => o,
        Err(rbuild_sandbox::SandboxError::Interrupted(_)) => return Err(SolveError::Interrupted),
        Err(e) => return Err(step_err(op, e.to_string())),
    };
    tail.flush();
    let code = match outcome.status {
        ExitStatus::Code(c) => c,
        ExitStatus::Signal(s) => 128 + s,
    };
    if crate::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(SolveError::Interrupted);
    }
    if code != 0 {
        return Err(SolveError::StepFailed(Box::new(crate::StepFailure {
            location: op.location.clone(),
            instruction: op.created_by.trim_end_matches(" # buildkit").to_string(),
            command: shell_words(&run.argv),
            code,
            platform: platform.clone(),
            tail: tail.render(),
        })));
    }
    remove_mountpoints(&upper, &outcome.created_paths);
    let (blob, dir) = commit(solver, &upper, &lowers)?;
    cache::put(solver.state, &key, &blob);
    push_layer(solver, result, blob, dir, &key, op);
    make_removable(&work);
    Ok(())
}

/// The cache key of a RUN: the parent's key, the whole op (command, env, user, cwd, mounts,
/// network and, when not the default, the security mode) and the platform.
fn run_key(parent: &Digest, run: &RunOp, platform: &Platform) -> Digest {
    let spec_key = serde_json::to_vec(run).unwrap_or_default();
    cache::chain(
        parent,
        &[b"run", &spec_key, platform.to_string().as_bytes()],
    )
}

/// Removes the mountpoints the sandbox had to create, if the step left them empty, so
/// they do not end up in the layer. The step may have replaced a parent with a symlink, so
/// the upper directory is only reached through `rbuild-fsroot`.
fn remove_mountpoints(upper: &Path, created: &[PathBuf]) {
    let Ok(root) = rbuild_fsroot::Root::open(upper) else {
        return;
    };
    let mut created: Vec<&PathBuf> = created.iter().collect();
    created.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for rel in created {
        let Ok(target) = root.at(rel.strip_prefix("/").unwrap_or(rel)) else {
            continue;
        };
        match target.stat() {
            Ok(Some(st)) if st.kind == rbuild_fsroot::FileKind::Dir => {
                let _ = target.remove(true);
            }
            Ok(Some(st)) if st.kind == rbuild_fsroot::FileKind::File && st.size == 0 => {
                let _ = target.remove(false);
            }
            _ => {}
        }
    }
}

/// overlayfs leaves `work/work` with mode 000; make it deletable for a rootless caller.
fn make_removable(work: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(work.join("work"), fs::Permissions::from_mode(0o700));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_security_mode_is_part_of_the_key() {
        let parent = Digest::sha256(b"parent");
        let platform: Platform = "linux/amd64".parse().unwrap();
        let mut op = RunOp {
            argv: vec!["true".into()],
            env: Vec::new(),
            user: String::new(),
            cwd: "/".into(),
            mounts: Vec::new(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
        };
        let sandboxed = run_key(&parent, &op, &platform);
        op.security = SecurityMode::Insecure;
        assert_ne!(run_key(&parent, &op, &platform), sandboxed);
    }
}
