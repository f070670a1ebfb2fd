//! The lowering pass itself.

use crate::args::{ArgUse, PROXY_ARGS, platform_args};
use crate::{
    Base, BaseResolver, BuildGraph, CopyFrom, CopyOp, Location, LowerError, LowerOptions, Op,
    OpKind, RunOp, Stage,
};
use crate::run_flags::{NetworkMode, RunMount, parse_mount};
use rbuild_core::Platform;
use rbuild_dockerfile::{Args, Diagnostic, Dockerfile, Expander, Instruction, Keyword, Severity};
use rbuild_image::{HealthConfig, ImageConfig};
use std::collections::BTreeMap;

/// The PATH BuildKit puts in a scratch image's config and in RUN steps without one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Lowers `df` for one target platform. Every error found is reported, each with its
/// Dockerfile location.
pub fn lower(
    df: &Dockerfile,
    opts: &LowerOptions,
    resolver: &mut dyn BaseResolver,
) -> Result<BuildGraph, LowerError> {
    let mut l = Lowerer {
        df,
        opts,
        errors: Vec::new(),
        warnings: Vec::new(),
        arg_use: ArgUse::default(),
        global: platform_args(&opts.target_platform, &opts.build_platform),
        declared_global: BTreeMap::new(),
    };
    let split = df
        .instructions
        .iter()
        .position(|i| i.keyword == Keyword::From)
        .unwrap_or(df.instructions.len());
    l.global_args(&df.instructions[..split]);
    let mut stages = l.stage_headers(&df.instructions[split..]);
    if stages.is_empty() && l.errors.is_empty() {
        l.errors.push(Diagnostic::error(
            &df.file,
            rbuild_dockerfile::Span {
                line: 1,
                col: 1,
                end_line: 1,
            },
            1,
            "",
            "the Dockerfile has no FROM instruction".into(),
        ));
    }
    let target = l.target_index(&stages);
    if let Some(t) = target {
        l.mark_needed(&mut stages, t);
        for i in 0..stages.len() {
            if stages[i].stage.needed {
                l.lower_stage(&mut stages, i, resolver);
            }
        }
    }
    for name in l.arg_use.unused(&opts.build_args) {
        tracing::warn!("build arg {name:?} was never consumed by an ARG");
    }
    if !l.errors.is_empty() {
        return Err(LowerError(l.errors));
    }
    Ok(BuildGraph {
        stages: stages.into_iter().map(|s| s.stage).collect(),
        target: target.unwrap_or(0),
        warnings: l.warnings,
    })
}

struct Lowerer<'a> {
    df: &'a Dockerfile,
    opts: &'a LowerOptions,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    arg_use: ArgUse,
    /// Automatic platform args and global ARG values.
    global: BTreeMap<String, String>,
    /// Global ARGs as declared (value None when declared without one).
    declared_global: BTreeMap<String, Option<String>>,
}

struct StageDraft<'a> {
    stage: Stage,
    instructions: &'a [Instruction],
    deps: Vec<usize>,
}

impl<'a> Lowerer<'a> {
    fn error(&mut self, inst: &Instruction, message: impl Into<String>) {
        self.errors
            .push(diag(&self.df.file, inst, message.into(), Severity::Error));
    }

    fn location(&self, inst: &Instruction) -> Location {
        Location {
            file: self.df.file.clone(),
            line: inst.span.line,
            col: inst.span.col,
            end_line: inst.span.end_line,
        }
    }

    fn expand_word(
        &mut self,
        inst: &Instruction,
        s: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> String {
        match Expander::new(lookup, self.df.directives.escape).word(s) {
            Ok(v) => v,
            Err(e) => {
                self.error(inst, e.to_string());
                s.to_string()
            }
        }
    }

    fn expand_words(
        &mut self,
        inst: &Instruction,
        s: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        match Expander::new(lookup, self.df.directives.escape).words(s) {
            Ok(v) => v,
            Err(e) => {
                self.error(inst, e.to_string());
                vec![s.to_string()]
            }
        }
    }

    fn global_args(&mut self, insts: &[Instruction]) {
        for inst in insts {
            if inst.keyword != Keyword::Arg {
                self.error(
                    inst,
                    format!(
                        "{} is not allowed before the first FROM (only ARG is)",
                        inst.keyword_text.to_uppercase()
                    ),
                );
                continue;
            }
            let Args::Words(words) = &inst.args else {
                continue;
            };
            for w in words {
                let (name, default) = split_arg(w);
                let default = default.map(|d| {
                    let g = self.global.clone();
                    self.expand_word(inst, d, &move |k| g.get(k).cloned())
                });
                let value = self.opts.build_args.get(name).cloned().or(default);
                self.arg_use.mark(name);
                if let Some(v) = &value {
                    self.global.insert(name.to_string(), v.clone());
                }
                self.declared_global.insert(name.to_string(), value);
            }
        }
    }

    fn stage_headers(&mut self, insts: &'a [Instruction]) -> Vec<StageDraft<'a>> {
        let starts: Vec<usize> = insts
            .iter()
            .enumerate()
            .filter(|(_, i)| i.keyword == Keyword::From)
            .map(|(n, _)| n)
            .collect();
        let mut stages: Vec<StageDraft<'a>> = Vec::new();
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(insts.len());
            let from = &insts[start];
            if let Some(draft) = self.stage_header(from, &insts[start + 1..end], &stages) {
                stages.push(draft);
            }
        }
        let names: Vec<Option<String>> = stages.iter().map(|s| s.stage.name.clone()).collect();
        for s in &mut stages {
            let mut deps = Vec::new();
            if let Base::Stage(i) = s.stage.base {
                deps.push(i);
            }
            for inst in s.instructions {
                for from in from_refs(inst) {
                    if let Some(i) = stage_ref(&names, from, s.stage.index) {
                        deps.push(i);
                    }
                }
            }
            s.deps = deps;
        }
        stages
    }

    fn stage_header(
        &mut self,
        from: &'a Instruction,
        body: &'a [Instruction],
        earlier: &[StageDraft<'a>],
    ) -> Option<StageDraft<'a>> {
        let words = match &from.args {
            Args::Words(w) => w.clone(),
            _ => Vec::new(),
        };
        let g = self.global.clone();
        let lookup = move |k: &str| g.get(k).cloned();
        let (image, name) = match words.as_slice() {
            [image] => (image.clone(), None),
            [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                (image.clone(), Some(name.to_lowercase()))
            }
            _ => {
                self.error(from, "FROM requires one image and an optional `AS name`");
                return None;
            }
        };
        for f in &from.flags {
            if f.name != "platform" {
                self.error(from, format!("unknown flag for FROM: --{}", f.name));
            }
        }
        if self.undefined_in_from(from, &image) {
            return None;
        }
        let image = self.expand_word(from, &image, &lookup);
        if image.is_empty() {
            self.error(
                from,
                "FROM names an empty image (an ARG in it has no value)",
            );
            return None;
        }
        let platform = match flag(from, "platform") {
            Some(p) => {
                let p = self.expand_word(from, p, &lookup);
                match p.parse::<Platform>() {
                    Ok(p) => p,
                    Err(e) => {
                        self.error(from, e.to_string());
                        self.opts.target_platform.clone()
                    }
                }
            }
            None => self.opts.target_platform.clone(),
        };
        if let Some(n) = &name
            && earlier
                .iter()
                .any(|s| s.stage.name.as_deref() == Some(n.as_str()))
        {
            self.error(from, format!("duplicate stage name {n:?}"));
        }
        let lower_image = image.to_lowercase();
        let base = if lower_image == "scratch" {
            Base::Scratch
        } else if let Some(s) = earlier
            .iter()
            .find(|s| s.stage.name.as_deref() == Some(lower_image.as_str()))
        {
            Base::Stage(s.stage.index)
        } else {
            Base::Image(image)
        };
        Some(StageDraft {
            stage: Stage {
                index: earlier.len(),
                name,
                base,
                platform,
                ops: Vec::new(),
                config: ImageConfig::default(),
                needed: false,
                location: self.location(from),
            },
            instructions: body,
            deps: Vec::new(),
        })
    }

    /// BuildKit refuses a FROM whose ARG was never declared in the global scope.
    fn undefined_in_from(&mut self, from: &Instruction, image: &str) -> bool {
        let none = |_: &str| None;
        let names = Expander::new(&none, self.df.directives.escape)
            .used_names(image)
            .unwrap_or_default();
        let missing: Vec<String> = names
            .into_iter()
            .filter(|k| !self.global.contains_key(k) && !self.declared_global.contains_key(k))
            .collect();
        if missing.is_empty() {
            return false;
        }
        self.error(
            from,
            format!(
                "FROM uses ARG {} which is not declared before the first FROM",
                missing.join(", ")
            ),
        );
        true
    }

    fn target_index(&mut self, stages: &[StageDraft<'a>]) -> Option<usize> {
        let Some(t) = &self.opts.target else {
            return stages.len().checked_sub(1);
        };
        let t = t.to_lowercase();
        let found = stages
            .iter()
            .position(|s| s.stage.name.as_deref() == Some(t.as_str()));
        if found.is_none() {
            let names: Vec<String> = stages.iter().filter_map(|s| s.stage.name.clone()).collect();
            self.errors.push(Diagnostic::error(
                &self.df.file,
                rbuild_dockerfile::Span {
                    line: 1,
                    col: 1,
                    end_line: 1,
                },
                1,
                "",
                format!(
                    "target stage {t:?} could not be found (stages: {})",
                    names.join(", ")
                ),
            ));
        }
        found
    }

    fn mark_needed(&mut self, stages: &mut [StageDraft<'a>], target: usize) {
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if stages[i].stage.needed {
                continue;
            }
            stages[i].stage.needed = true;
            todo.extend(stages[i].deps.iter().copied().filter(|&d| d < i));
        }
    }

    fn lower_stage(
        &mut self,
        stages: &mut [StageDraft<'a>],
        i: usize,
        resolver: &mut dyn BaseResolver,
    ) {
        let platform = stages[i].stage.platform.clone();
        let mut config = match stages[i].stage.base.clone() {
            Base::Scratch => {
                let mut c = ImageConfig::default();
                c.set_env("PATH", DEFAULT_PATH);
                c
            }
            Base::Stage(s) => stages[s].stage.config.clone(),
            Base::Image(r) => match resolver.resolve(&r, &platform) {
                Ok(c) => c,
                Err(e) => {
                    let from = self.from_instruction(&stages[i].stage.location);
                    self.errors.push(Diagnostic { message: e, ..from });
                    return;
                }
            },
        };
        config.architecture = platform.architecture().to_string();
        config.os = platform.os().to_string();
        config.variant = platform.variant().map(str::to_string);
        let names: Vec<Option<String>> = stages.iter().map(|s| s.stage.name.clone()).collect();
        let mut st = StageState {
            config,
            args: Vec::new(),
            cmd_set: false,
            ops: Vec::new(),
            names,
            index: i,
        };
        for inst in stages[i].instructions {
            self.lower_instruction(&mut st, inst);
        }
        stages[i].stage.config = st.config;
        stages[i].stage.ops = st.ops;
    }

    fn from_instruction(&self, loc: &Location) -> Diagnostic {
        let inst = self
            .df
            .instructions
            .iter()
            .find(|x| x.span.line == loc.line && x.keyword == Keyword::From);
        match inst {
            Some(inst) => diag(&self.df.file, inst, String::new(), Severity::Error),
            None => Diagnostic::error(
                &loc.file,
                rbuild_dockerfile::Span {
                    line: loc.line,
                    col: loc.col,
                    end_line: loc.end_line,
                },
                1,
                "",
                String::new(),
            ),
        }
    }

    fn lower_instruction(&mut self, st: &mut StageState, inst: &Instruction) {
        let lookup_env = st.lookup_map();
        let lookup = move |k: &str| lookup_env.get(k).cloned();
        let allowed: &[&str] = match inst.keyword {
            Keyword::Copy => &["from", "chown", "chmod", "link"],
            Keyword::Run => &["mount", "network"],
            Keyword::Healthcheck => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        };
        for f in &inst.flags {
            if !allowed.contains(&f.name.as_str()) {
                self.error(
                    inst,
                    format!(
                        "{} --{} is not supported",
                        inst.keyword_text.to_uppercase(),
                        f.name
                    ),
                );
            }
        }
        let meta = |created_by: String| OpKind::Meta.with(created_by);
        let op = match (&inst.keyword, &inst.args) {
            (Keyword::Run, args) => self.run(st, inst, args),
            (Keyword::Copy, _) => self.copy(st, inst, &lookup),
            (Keyword::Add, _) => {
                self.error(inst, "ADD is not supported yet; use COPY for local files");
                None
            }
            (Keyword::Cmd, args) => {
                st.config.config.cmd = Some(self.command(st, args));
                st.cmd_set = true;
                Some(meta(format!(
                    "CMD {}",
                    json_list(st.config.config.cmd.as_deref())
                )))
            }
            (Keyword::Entrypoint, args) => {
                st.config.config.entrypoint = Some(self.command(st, args));
                if !st.cmd_set {
                    st.config.config.cmd = None;
                }
                Some(meta(format!(
                    "ENTRYPOINT {}",
                    json_list(st.config.config.entrypoint.as_deref())
                )))
            }
            (Keyword::Env, Args::Pairs(pairs)) => {
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let v = self.expand_word(inst, v, &lookup);
                    st.config.set_env(k, &v);
                    parts.push(format!("{k}={v}"));
                }
                Some(meta(format!("ENV {}", parts.join(" "))))
            }
            (Keyword::Label, Args::Pairs(pairs)) => {
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand_word(inst, k, &lookup);
                    let v = self.expand_word(inst, v, &lookup);
                    parts.push(format!("{k}={v}"));
                    st.config
                        .config
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert(k, v);
                }
                Some(meta(format!("LABEL {}", parts.join(" "))))
            }
            (Keyword::Arg, Args::Words(words)) => {
                for w in words {
                    self.stage_arg(st, inst, w, &lookup);
                }
                Some(meta(format!("ARG {}", words.join(" "))))
            }
            (Keyword::Workdir, Args::Words(words)) if words.len() == 1 => {
                let dir = self.expand_word(inst, &words[0], &lookup);
                let base = st
                    .config
                    .config
                    .working_dir
                    .clone()
                    .unwrap_or_else(|| "/".into());
                let dir = clean_path(&if dir.starts_with('/') {
                    dir
                } else {
                    format!("{base}/{dir}")
                });
                st.config.config.working_dir = Some(dir.clone());
                Some(meta(format!("WORKDIR {dir}")))
            }
            (Keyword::User, Args::Words(words)) if words.len() == 1 => {
                let user = self.expand_word(inst, &words[0], &lookup);
                st.config.config.user = Some(user.clone());
                Some(meta(format!("USER {user}")))
            }
            (Keyword::Expose, Args::Words(words)) => {
                let mut ports = Vec::new();
                for w in words {
                    for word in self.expand_words(inst, w, &lookup) {
                        match expose_ports(&word) {
                            Ok(p) => ports.extend(p),
                            Err(e) => self.error(inst, e),
                        }
                    }
                }
                let map = st
                    .config
                    .config
                    .exposed_ports
                    .get_or_insert_with(Default::default);
                for p in &ports {
                    map.insert(p.clone(), Default::default());
                }
                Some(meta(format!("EXPOSE {}", ports.join(" "))))
            }
            (Keyword::Volume, args) => {
                let vols: Vec<String> = match args {
                    Args::Exec(v) => v
                        .iter()
                        .map(|x| self.expand_word(inst, x, &lookup))
                        .collect(),
                    Args::Words(w) => w
                        .iter()
                        .flat_map(|x| self.expand_words(inst, x, &lookup))
                        .collect(),
                    Args::Shell(s) => self.expand_words(inst, s, &lookup),
                    _ => Vec::new(),
                };
                let map = st
                    .config
                    .config
                    .volumes
                    .get_or_insert_with(Default::default);
                for v in &vols {
                    map.insert(v.clone(), Default::default());
                }
                Some(meta(format!("VOLUME {}", json_list(Some(&vols)))))
            }
            (Keyword::Stopsignal, Args::Words(words)) if words.len() == 1 => {
                let sig = self.expand_word(inst, &words[0], &lookup);
                st.config.config.stop_signal = Some(sig.clone());
                Some(meta(format!("STOPSIGNAL {sig}")))
            }
            (Keyword::Shell, Args::Exec(v)) => {
                st.config.config.shell = Some(v.clone());
                Some(meta(format!("SHELL {}", json_list(Some(v)))))
            }
            (Keyword::Shell, _) => {
                self.error(
                    inst,
                    "SHELL requires the arguments in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]",
                );
                None
            }
            (Keyword::Maintainer, args) => {
                let who = match args {
                    Args::Shell(s) => s.clone(),
                    Args::Words(w) => w.join(" "),
                    _ => String::new(),
                };
                st.config.author = Some(who.clone());
                Some(meta(format!("MAINTAINER {who}")))
            }
            (Keyword::Healthcheck, args) => self.healthcheck(st, inst, args).map(meta),
            (Keyword::Onbuild, Args::Onbuild(inner)) => {
                let text = inner.original.trim().to_string();
                st.config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(text.clone());
                Some(meta(format!("ONBUILD {text}")))
            }
            (kw, _) => {
                self.error(
                    inst,
                    format!("{} has malformed arguments", kw.as_str().to_uppercase()),
                );
                None
            }
        };
        if let Some(kind) = op {
            let (kind, created_by) = kind;
            st.ops.push(Op {
                kind,
                location: self.location(inst),
                created_by,
            });
        }
    }

    fn stage_arg(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) {
        let (name, default) = split_arg(word);
        self.arg_use.mark(name);
        let value = if let Some(v) = self.opts.build_args.get(name) {
            Some(v.clone())
        } else if let Some(d) = default {
            Some(self.expand_word(inst, d, lookup))
        } else if let Some(Some(v)) = self.declared_global.get(name) {
            Some(v.clone())
        } else {
            platform_args(&self.opts.target_platform, &self.opts.build_platform)
                .get(name)
                .cloned()
        };
        st.args.retain(|(k, _)| k != name);
        st.args.push((name.to_string(), value));
    }

    fn command(&mut self, st: &StageState, args: &Args) -> Vec<String> {
        match args {
            Args::Exec(v) => v.clone(),
            Args::Shell(s) => {
                let mut v = st.shell();
                v.push(s.clone());
                v
            }
            Args::Words(w) => {
                let mut v = st.shell();
                v.push(w.join(" "));
                v
            }
            _ => Vec::new(),
        }
    }

    fn run(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        args: &Args,
    ) -> Option<(OpKind, String)> {
        let mut argv = self.command(st, args);
        if let (Args::Shell(cmd), false) = (args, inst.heredocs.is_empty()) {
            let script = heredoc_script(cmd, &inst.heredocs);
            if let Some(last) = argv.last_mut() {
                *last = script;
            }
        }
        if argv.is_empty() {
            self.error(inst, "RUN needs a command");
            return None;
        }
        let env = st.run_env();
        let arg_prefix: Vec<String> = st
            .args
            .iter()
            .filter(|(k, v)| v.is_some() && !PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={}", v.clone().unwrap_or_default()))
            .collect();
        let shown = match args {
            Args::Exec(v) => json_list(Some(v)),
            _ => argv.join(" "),
        };
        let created_by = if arg_prefix.is_empty() {
            format!("RUN {shown} # buildkit")
        } else {
            format!(
                "RUN |{} {} {shown} # buildkit",
                arg_prefix.len(),
                arg_prefix.join(" ")
            )
        };
        let (mounts, network) = self.run_flags(st, inst);
        let op = RunOp {
            argv,
            env,
            user: st.config.config.user.clone().unwrap_or_default(),
            cwd: st
                .config
                .config
                .working_dir
                .clone()
                .unwrap_or_else(|| "/".into()),
            mounts,
            network,
        };
        Some((OpKind::Run(op), created_by))
    }

    fn run_flags(&mut self, st: &StageState, inst: &Instruction) -> (Vec<RunMount>, NetworkMode) {
        let lookup_env = st.lookup_map();
        let lookup = move |k: &str| lookup_env.get(k).cloned();
        let names = st.names.clone();
        let index = st.index;
        let resolve_from = move |f: &str| match stage_ref(&names, f, index) {
            Some(i) if i < index => CopyFrom::Stage(i),
            _ => CopyFrom::Image(f.to_string()),
        };
        let mut mounts = Vec::new();
        let mut network = NetworkMode::Default;
        for f in &inst.flags {
            let value = self.expand_word(inst, f.value.as_deref().unwrap_or(""), &lookup);
            let parsed = match f.name.as_str() {
                "mount" => parse_mount(&value, &resolve_from).map(|m| mounts.push(m)),
                "network" => NetworkMode::parse(&value).map(|n| network = n),
                _ => Ok(()),
            };
            if let Err(e) = parsed {
                self.error(inst, format!("RUN --{}: {e}", f.name));
            }
        }
        (mounts, network)
    }

    fn copy(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<(OpKind, String)> {
        if !inst.heredocs.is_empty() {
            self.error(inst, "COPY from a heredoc is not supported yet");
            return None;
        }
        let mut words: Vec<String> = match &inst.args {
            Args::Exec(v) => v
                .iter()
                .map(|x| self.expand_word(inst, x, lookup))
                .collect(),
            Args::Words(w) => w
                .iter()
                .flat_map(|x| self.expand_words(inst, x, lookup))
                .collect(),
            Args::Shell(s) => self.expand_words(inst, s, lookup),
            _ => Vec::new(),
        };
        if words.len() < 2 {
            self.error(inst, "COPY requires at least one source and a destination");
            return None;
        }
        let dest = words.pop().unwrap_or_default();
        let from = match flag(inst, "from") {
            None => CopyFrom::Context,
            Some(f) => {
                let f = self.expand_word(inst, f, lookup);
                match stage_ref(&st.names, &f, st.index) {
                    Some(i) if i < st.index => CopyFrom::Stage(i),
                    Some(_) => {
                        self.error(
                            inst,
                            format!("COPY --from={f} refers to this stage or a later one"),
                        );
                        return None;
                    }
                    None => CopyFrom::Image(f),
                }
            }
        };
        let chmod = match flag(inst, "chmod") {
            None => None,
            Some(m) => match u32::from_str_radix(m, 8) {
                Ok(v) if v <= 0o7777 => Some(v),
                _ => {
                    self.error(
                        inst,
                        format!("invalid --chmod value {m:?}: expected octal bits such as 755"),
                    );
                    return None;
                }
            },
        };
        let chown = flag(inst, "chown").map(|c| self.expand_word(inst, c, lookup));
        let flags: Vec<String> = inst
            .flags
            .iter()
            .map(|f| match &f.value {
                Some(v) => format!("--{}={v}", f.name),
                None => format!("--{}", f.name),
            })
            .collect();
        let mut shown = flags;
        shown.extend(words.iter().cloned());
        shown.push(dest.clone());
        let created_by = format!("COPY {} # buildkit", shown.join(" "));
        let op = CopyOp {
            from,
            srcs: words,
            dest,
            chown,
            chmod,
            workdir: st
                .config
                .config
                .working_dir
                .clone()
                .unwrap_or_else(|| "/".into()),
        };
        Some((OpKind::Copy(op), created_by))
    }

    fn healthcheck(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        args: &Args,
    ) -> Option<String> {
        let Args::Healthcheck(cmd) = args else {
            self.error(inst, "HEALTHCHECK requires NONE or CMD");
            return None;
        };
        let mut hc = HealthConfig::default();
        match cmd.as_deref() {
            None => hc.test = Some(vec!["NONE".into()]),
            Some(Args::Exec(v)) => {
                hc.test = Some(
                    std::iter::once("CMD".to_string())
                        .chain(v.iter().cloned())
                        .collect(),
                )
            }
            Some(Args::Shell(s)) => hc.test = Some(vec!["CMD-SHELL".into(), s.clone()]),
            Some(_) => {
                self.error(inst, "HEALTHCHECK CMD has malformed arguments");
                return None;
            }
        }
        for f in &inst.flags {
            let v = f.value.clone().unwrap_or_default();
            let parsed = if f.name == "retries" {
                v.parse::<i64>()
                    .map_err(|_| format!("invalid --retries value {v:?}"))
            } else {
                parse_duration(&v).map_err(|e| format!("invalid --{} value {v:?}: {e}", f.name))
            };
            match (f.name.as_str(), parsed) {
                (_, Err(e)) => self.error(inst, e),
                ("interval", Ok(n)) => hc.interval = Some(n),
                ("timeout", Ok(n)) => hc.timeout = Some(n),
                ("start-period", Ok(n)) => hc.start_period = Some(n),
                ("start-interval", Ok(n)) => hc.start_interval = Some(n),
                ("retries", Ok(n)) => hc.retries = Some(n),
                _ => {}
            }
        }
        let created_by = format!(
            "HEALTHCHECK {}",
            inst.original
                .trim()
                .split_once(char::is_whitespace)
                .map(|x| x.1)
                .unwrap_or_default()
                .trim()
        );
        st.config.config.healthcheck = Some(hc);
        Some(created_by)
    }
}

trait WithCreatedBy {
    fn with(self, created_by: String) -> (OpKind, String);
}

impl WithCreatedBy for OpKind {
    fn with(self, created_by: String) -> (OpKind, String) {
        (self, created_by)
    }
}

struct StageState {
    config: ImageConfig,
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
    ops: Vec<Op>,
    names: Vec<Option<String>>,
    index: usize,
}

impl StageState {
    /// Expansion scope: ENV wins over ARG of the same name, as in Docker.
    fn lookup_map(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for e in self.config.config.env.iter().flatten() {
            if let Some((k, v)) = e.split_once('=') {
                m.insert(k.into(), v.into());
            }
        }
        m
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn run_env(&self) -> Vec<String> {
        let mut env: Vec<String> = self.config.config.env.clone().unwrap_or_default();
        let has = |env: &[String], k: &str| {
            env.iter()
                .any(|e| e.split_once('=').map(|x| x.0) == Some(k))
        };
        if !has(&env, "PATH") {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        for (k, v) in &self.args {
            if let Some(v) = v
                && !has(&env, k)
            {
                env.push(format!("{k}={v}"));
            }
        }
        env
    }
}

fn diag(file: &str, inst: &Instruction, message: String, severity: Severity) -> Diagnostic {
    let line = inst.original.lines().next().unwrap_or_default();
    let d = Diagnostic::error(
        file,
        inst.span.clone(),
        inst.keyword_text.chars().count(),
        line,
        message,
    );
    Diagnostic { severity, ..d }
}

fn flag<'i>(inst: &'i Instruction, name: &str) -> Option<&'i str> {
    inst.flags
        .iter()
        .rev()
        .find(|f| f.name == name)
        .map(|f| f.value.as_deref().unwrap_or(""))
}

/// Every stage or image an instruction reads from: `--from=X` and `RUN --mount=...,from=X`.
fn from_refs(inst: &Instruction) -> Vec<&str> {
    let mut out = Vec::new();
    for f in &inst.flags {
        let v = f.value.as_deref().unwrap_or("");
        match f.name.as_str() {
            "from" => out.push(v),
            "mount" => out.extend(v.split(',').filter_map(|kv| kv.strip_prefix("from="))),
            _ => {}
        }
    }
    out
}

/// A `--from` value naming a stage, by name or index, among stages before `current`.
fn stage_ref(names: &[Option<String>], value: &str, current: usize) -> Option<usize> {
    if let Ok(i) = value.parse::<usize>() {
        return (i < names.len()).then_some(i);
    }
    let v = value.to_lowercase();
    names[..current.min(names.len())]
        .iter()
        .position(|n| n.as_deref() == Some(v.as_str()))
}

fn split_arg(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (word, None),
    }
}

fn json_list(v: Option<&[String]>) -> String {
    serde_json::to_string(v.unwrap_or_default()).unwrap_or_default()
}

/// The shell script for a RUN whose command uses heredocs: the command line followed by
/// each heredoc body and its delimiter, so the shell reads them as it would in a script.
fn heredoc_script(cmd: &str, heredocs: &[rbuild_dockerfile::Heredoc]) -> String {
    let mut s = cmd.to_string();
    for h in heredocs {
        s.push('\n');
        s.push_str(&h.content);
        if !h.content.ends_with('\n') && !h.content.is_empty() {
            s.push('\n');
        }
        s.push_str(&h.name);
    }
    s
}

/// Lexically cleans an absolute path (`//`, `.`, `..`), as Go's path.Clean does.
pub fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}

fn expose_ports(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol in EXPOSE {word:?}"));
    }
    let bad = || format!("invalid port in EXPOSE {word:?}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Parses Go-style durations (`30s`, `1m30s`, `500ms`) into nanoseconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| "expected a number".to_string())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("unknown unit {u:?}")),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("/a//b/./c/../d"), "/a/b/d");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("/"), "/");
    }

    #[test]
    fn expose_forms() {
        assert_eq!(expose_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expose_ports("53/udp").unwrap(), vec!["53/udp"]);
        assert_eq!(
            expose_ports("8000-8002").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expose_ports("x").is_err());
        assert!(expose_ports("80/foo").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("10").is_err());
    }
}
