//! Executing RUN and COPY steps on a miss, and reusing their layers on a hit.

use crate::layers::{commit, ensure_unpacked, temp_dir};
use crate::{SolveError, Solver, StageResult, cache};
use rbuild_core::{Digest, Platform};
use rbuild_graph::{BuildGraph, CopyFrom, CopyOp, Op, RunOp};
use rbuild_image::LayerBlob;
use rbuild_sandbox::{ExitStatus, Network, Rootfs, RunSpec};
use rbuild_snapshot::{CopyOptions, CopySource, LayerStack};
use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How many output lines a failed step shows.
const TAIL_LINES: usize = 20;

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

fn step_err(op: &Op, message: impl Into<String>) -> SolveError {
    SolveError::Step {
        location: op.location.clone(),
        message: message.into(),
    }
}

/// Applies a cached layer if the key has one; returns whether it did.
fn try_cache(
    solver: &Solver,
    result: &mut StageResult,
    key: &Digest,
    op: &Op,
) -> Result<bool, SolveError> {
    if solver.no_cache {
        return Ok(false);
    }
    let Some(blob) = cache::get(solver.state, solver.store, key) else {
        return Ok(false);
    };
    let dir = ensure_unpacked(solver, &blob)?;
    push_layer(solver, result, blob, dir, key, op);
    eprintln!("  CACHED");
    Ok(true)
}

fn push_layer(
    solver: &Solver,
    result: &mut StageResult,
    blob: LayerBlob,
    dir: PathBuf,
    key: &Digest,
    op: &Op,
) {
    result.layers.push(blob);
    result.dirs.push(dir);
    result.history.push(solver.history(&op.created_by, false));
    result.key = key.clone();
}

/// Runs a RUN step (or reuses its cached layer).
pub fn run(
    solver: &Solver,
    result: &mut StageResult,
    run: &RunOp,
    op: &Op,
    platform: &Platform,
    label: &str,
) -> Result<(), SolveError> {
    let spec_key = serde_json::to_vec(run).unwrap_or_default();
    let key = cache::chain(
        &result.key,
        &[b"run", &spec_key, platform.to_string().as_bytes()],
    );
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
    let spec = RunSpec {
        rootfs: Rootfs::Overlay {
            lower: lowers.clone(),
            upper: upper.clone(),
            work: work.clone(),
        },
        argv: run.argv.clone(),
        env: run.env.clone(),
        cwd: run.cwd.clone(),
        user: run.user.clone(),
        hostname: "rbuild".into(),
        hosts: HOSTS.into(),
        resolv_conf: fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        network: Network::Host,
        platform: platform.clone(),
        scratch_dir: scratch,
    };
    let mut tail = Tail::new(label);
    let outcome = rbuild_sandbox::run(&spec, solver.emulation, &mut |chunk| tail.feed(chunk))?;
    tail.flush();
    let code = match outcome.status {
        ExitStatus::Code(c) => c,
        ExitStatus::Signal(s) => 128 + s,
    };
    if crate::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(SolveError::Interrupted);
    }
    if code != 0 {
        return Err(SolveError::StepFailed {
            location: op.location.clone(),
            instruction: op.created_by.trim_end_matches(" # buildkit").to_string(),
            command: shell_words(&run.argv),
            code,
            platform: platform.clone(),
            tail: tail.render(),
        });
    }
    remove_mountpoints(&upper, &outcome.created_paths);
    let (blob, dir) = commit(solver, &upper, &lowers)?;
    cache::put(solver.state, &key, &blob);
    push_layer(solver, result, blob, dir, &key, op);
    make_removable(&work);
    Ok(())
}

/// Removes the mountpoints the sandbox had to create, if the step left them empty, so
/// they do not end up in the layer.
fn remove_mountpoints(upper: &Path, created: &[PathBuf]) {
    let mut created: Vec<&PathBuf> = created.iter().collect();
    created.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for rel in created {
        let path = upper.join(rel.strip_prefix("/").unwrap_or(rel));
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let _ = fs::remove_dir(&path);
        } else if meta.is_file() && meta.len() == 0 {
            let _ = fs::remove_file(&path);
        }
    }
}

/// overlayfs leaves `work/work` with mode 000; make it deletable for a rootless caller.
fn make_removable(work: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(work.join("work"), fs::Permissions::from_mode(0o700));
}

/// Runs a COPY step (or reuses its cached layer).
pub fn copy(
    solver: &Solver,
    result: &mut StageResult,
    copy: &CopyOp,
    op: &Op,
    done: &BTreeMap<usize, StageResult>,
    platform: &Platform,
    _graph: &BuildGraph,
) -> Result<(), SolveError> {
    let source = CopyInput::new(solver, copy, op, done, platform)?;
    let identity = source.identity(op)?;
    let spec_key = serde_json::to_vec(copy).unwrap_or_default();
    let key = cache::chain(
        &result.key,
        &[b"copy", &spec_key, identity.to_string().as_bytes()],
    );
    if try_cache(solver, result, &key, op)? {
        return Ok(());
    }
    let lowers = result.lowers();
    let dest_stack = LayerStack::new(lowers.clone());
    let chown = match &copy.chown {
        Some(spec) => Some(resolve_chown(&dest_stack, spec).map_err(|m| step_err(op, m))?),
        None => None,
    };
    let tmp = temp_dir(solver.state, "copy-")?;
    let out = tmp.path().join("layer");
    fs::create_dir(&out).map_err(|e| SolveError::Io(out.clone(), e))?;
    let opts = CopyOptions {
        chown,
        chmod: copy.chmod,
        workdir: copy.workdir.clone(),
    };
    let stack;
    let src = match &source {
        CopyInput::Dir(p) => CopySource::Context(p),
        CopyInput::Stack(dirs, _) => {
            stack = LayerStack::new(dirs.clone());
            CopySource::Stack(&stack)
        }
    };
    rbuild_snapshot::copy(src, &copy.srcs, &copy.dest, &dest_stack, &out, &opts)
        .map_err(|e| step_err(op, e.to_string()))?;
    let (blob, dir) = commit(solver, &out, &lowers)?;
    cache::put(solver.state, &key, &blob);
    push_layer(solver, result, blob, dir, &key, op);
    Ok(())
}

enum CopyInput {
    Dir(PathBuf),
    Stack(Vec<PathBuf>, Digest),
}

impl CopyInput {
    fn new(
        solver: &Solver,
        copy: &CopyOp,
        op: &Op,
        done: &BTreeMap<usize, StageResult>,
        platform: &Platform,
    ) -> Result<CopyInput, SolveError> {
        Ok(match &copy.from {
            CopyFrom::Context => CopyInput::Dir(solver.sources.context().to_path_buf()),
            CopyFrom::Stage(i) => {
                let r = done
                    .get(i)
                    .ok_or_else(|| step_err(op, format!("stage {i} was not built")))?;
                CopyInput::Stack(r.lowers(), r.key.clone())
            }
            CopyFrom::Image(name) => match solver.sources.named(name) {
                Some(rbuild_source::NamedContext::Dir(p)) => CopyInput::Dir(p.clone()),
                _ => {
                    let image = solver
                        .sources
                        .image(name, platform, solver.store)
                        .map_err(|m| step_err(op, m))?;
                    let dirs = image
                        .layers
                        .iter()
                        .map(|l| ensure_unpacked(solver, l))
                        .collect::<Result<Vec<_>, _>>()?;
                    CopyInput::Stack(dirs.into_iter().rev().collect(), image.manifest_digest)
                }
            },
        })
    }

    fn identity(&self, op: &Op) -> Result<Digest, SolveError> {
        match self {
            CopyInput::Dir(p) => cache::hash_tree(p)
                .map_err(|e| step_err(op, format!("reading build context {}: {e}", p.display()))),
            CopyInput::Stack(_, key) => Ok(key.clone()),
        }
    }
}

/// Resolves `--chown=user[:group]` against the destination's /etc/passwd and /etc/group.
fn resolve_chown(stack: &LayerStack, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |path: &str| -> String {
        stack
            .resolve(path)
            .ok()
            .flatten()
            .and_then(|e| fs::read_to_string(e.host_path).ok())
            .unwrap_or_default()
    };
    let lookup = |db: &str, name: &str, field: usize| -> Option<(u32, Option<u32>)> {
        db.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                let id = f.get(field).and_then(|x| x.parse().ok())?;
                Some((id, f.get(3).and_then(|x| x.parse().ok())))
            })?
        })
    };
    let passwd = read("/etc/passwd");
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => lookup(&passwd, user, 2)
            .ok_or_else(|| format!("--chown: user {user:?} is not in the image's /etc/passwd"))?,
    };
    let gid = match group {
        None => primary.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&read("/etc/group"), g, 2)
                .map(|x| x.0)
                .ok_or_else(|| format!("--chown: group {g:?} is not in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

/// A command line as a user would type it, for messages.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Streams a step's output with its label and keeps the last lines for error messages.
struct Tail {
    label: String,
    partial: Vec<u8>,
    lines: VecDeque<String>,
}

impl Tail {
    fn new(label: &str) -> Tail {
        Tail {
            label: label.to_string(),
            partial: Vec::new(),
            lines: VecDeque::new(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.partial.extend_from_slice(chunk);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            self.line(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
    }

    fn flush(&mut self) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.line(line);
        }
    }

    fn line(&mut self, line: String) {
        let _ = writeln!(std::io::stderr(), "{} {line}", self.label);
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    fn render(&self) -> String {
        if self.lines.is_empty() {
            return "    (no output)".into();
        }
        self.lines
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::new("[t]");
        for i in 0..30 {
            t.feed(format!("line {i}\n").as_bytes());
        }
        t.feed(b"partial");
        t.flush();
        let r = t.render();
        assert!(r.starts_with("    line 11\n"));
        assert!(r.ends_with("    partial"));
        assert_eq!(r.lines().count(), TAIL_LINES);
    }

    #[test]
    fn shell_words_quote_what_needs_it() {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "exit 3".into()];
        assert_eq!(shell_words(&argv), "/bin/sh -c 'exit 3'");
    }
}
