//! RUN steps: the sandbox over an overlay of the stage's layers.

use super::{Changes, Step, StepContext, Tail, shell_words, step_err};
use crate::layers::temp_dir;
use crate::{SolveError, Solver, StageResult, cache};
use rbuild_core::{Digest, Platform};
use rbuild_graph::{NetworkMode, RunOp, SecurityMode};
use rbuild_sandbox::{ExitStatus, Network, Rootfs, RunSpec, Security};
use std::fs;
use std::path::{Path, PathBuf};

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

impl Step for RunOp {
    /// The parent's key, the whole op (command, env, user, cwd, mount definitions and,
    /// when not the default, the security mode), the network the step gets, the platform
    /// and what each mount reads (bind and cache-seeding sources; never secret values).
    fn key(&self, cx: &StepContext, parent: &StageResult) -> Result<Digest, SolveError> {
        let network = network(cx.solver, self.network);
        let inputs = super::mounts::inputs_key(cx, &self.mounts)?;
        Ok(run_key(&parent.key, self, cx.platform, network, &inputs))
    }

    fn exec(&self, cx: &StepContext, parent: &StageResult) -> Result<Changes, SolveError> {
        let (solver, op) = (cx.solver, cx.op);
        let tmp = temp_dir(solver.state, crate::TempKind::Run)?;
        let upper = tmp.path().join("upper");
        let work = tmp.path().join("work");
        let scratch = tmp.path().join("scratch");
        for d in [&upper, &work, &scratch] {
            fs::create_dir(d).map_err(|e| SolveError::Io(d.clone(), e))?;
        }
        let lowers = parent.lowers();
        let prepared = super::mounts::prepare(cx, &self.mounts, &scratch)?;
        let mut env = self.env.clone();
        env.extend(prepared.env.iter().cloned());
        let spec = RunSpec {
            rootfs: Rootfs::Overlay {
                lower: lowers.clone(),
                upper: upper.clone(),
                work,
            },
            argv: self.argv.clone(),
            env,
            cwd: self.cwd.clone(),
            user: self.user.clone(),
            hostname: "rbuild".into(),
            hosts: HOSTS.into(),
            resolv_conf: fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            network: network(solver, self.network),
            platform: cx.platform.clone(),
            scratch_dir: scratch,
            mounts: prepared.mounts.clone(),
            security: match self.security {
                SecurityMode::Sandbox => Security::Sandbox,
                SecurityMode::Insecure => Security::Insecure,
            },
        };
        let mut tail = Tail::new();
        let outcome = match rbuild_sandbox::run(&spec, solver.emulation, &mut |chunk| {
            super::output(solver, cx.vertex, chunk);
            tail.feed(chunk)
        }) {
            Ok(o) => o,
            Err(rbuild_sandbox::SandboxError::Interrupted(_)) => {
                return Err(SolveError::Interrupted);
            }
            Err(e) => return Err(step_err(op, e)),
        };
        tail.flush();
        rbuild_state::make_work_dir_removable(tmp.path());
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
                command: shell_words(&self.argv),
                code,
                platform: cx.platform.clone(),
                tail: tail.render(),
            })));
        }
        remove_mountpoints(&upper, &outcome.created_paths);
        Ok(Changes {
            _tmp: tmp,
            dir: upper,
            lowers,
        })
    }
}

/// The key of a RUN from its parts (see [`Step::key`]); `inputs` is what its mounts read.
fn run_key(
    parent: &Digest,
    run: &RunOp,
    platform: &Platform,
    network: Network,
    inputs: &Digest,
) -> Digest {
    let spec_key = serde_json::to_vec(run).unwrap_or_default();
    let network = format!("{network:?}");
    cache::chain(
        parent,
        &[
            b"run",
            &spec_key,
            platform.to_string().as_bytes(),
            network.as_bytes(),
            inputs.to_string().as_bytes(),
        ],
    )
}

/// The network a step gets: `default` means the build's `--network`.
fn network(solver: &Solver, mode: NetworkMode) -> Network {
    match mode {
        NetworkMode::None => Network::None,
        NetworkMode::Host => Network::Host,
        NetworkMode::Default => match solver.network {
            NetworkMode::None => Network::None,
            _ => Network::Host,
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_security_and_network_modes_are_part_of_the_key() {
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
        let inputs = Digest::sha256(b"");
        let key = |op: &RunOp, net| run_key(&parent, op, &platform, net, &inputs);
        let sandboxed = key(&op, Network::Host);
        assert_ne!(key(&op, Network::None), sandboxed);
        op.security = SecurityMode::Insecure;
        assert_ne!(key(&op, Network::Host), sandboxed);
    }
}
