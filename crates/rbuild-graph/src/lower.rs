//! The lowering pass itself.

use crate::args::{ArgUse, PROXY_ARGS, platform_args};
use crate::gofmt;
use crate::lint::{self, Lint};
use crate::run_flags::{NetworkMode, RunMount, SecurityMode, parse_mount};

/// The flags of one RUN, parsed.
struct RunFlags {
    mounts: Vec<RunMount>,
    network: NetworkMode,
    security: SecurityMode,
}
use crate::{
    Base, BaseResolver, BuildGraph, CopyChmod, CopyFrom, CopyOp, InlineFile, Location, LowerError,
    LowerOptions, MkdirOp, Op, OpKind, RunOp, Stage, UrlSource,
};
use rbuild_core::config::{HealthConfig, ImageConfig};
use rbuild_core::{Digest, Platform};
use rbuild_dockerfile::{
    Args, Diagnostic, Dockerfile, Expander, Heredoc, Instruction, Keyword, Severity,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use crate::stage_state::{DEFAULT_PATH, OrderedArgs, Scope, StageNames, StageState, env_index};
use crate::values::{
    check_interval, clean_path, expose_ports, is_heredoc_word, is_http_url, is_legacy_pairs,
    is_symbolic_mode, parse_checksum, parse_duration, remote_source_error, sh_quote, split_arg,
    valid_signal,
};

/// Lowers `df` for one target platform. Every error found is reported, each with its
/// Dockerfile location.
pub fn lower(
    df: &Dockerfile,
    opts: &LowerOptions,
    resolver: &mut dyn BaseResolver,
) -> Result<BuildGraph, LowerError> {
    let (graph, mut errors) = lower_all(df, opts, resolver, Purpose::Build);
    if errors.is_empty() && !graph.lints.is_empty() && lint::config_of(df).is_ok_and(|c| c.error) {
        errors.extend(graph.lints.iter().map(|l| Diagnostic {
            severity: Severity::Error,
            ..l.diagnostic.clone()
        }));
        errors.push(Diagnostic::error(
            &df.file,
            rbuild_dockerfile::Span {
                line: 1,
                col: 1,
                end_line: 1,
            },
            1,
            &format!("# check={}", df.directives.check.as_deref().unwrap_or_default()),
            format!(
                "lint violations found for {} (the `# check=error=true` directive makes them errors)",
                pluralize(graph.lints.len(), "rule finding", "rule findings")
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(LowerError(errors));
    }
    Ok(graph)
}

/// Runs every lint rule over every stage of `df` (or the `--target` stage and what it
/// needs), without building. Returns the findings the `# check=` directive keeps, in
/// source order, and the errors that would stop a build.
pub fn check(
    df: &Dockerfile,
    opts: &LowerOptions,
    resolver: &mut dyn BaseResolver,
) -> (Vec<Lint>, Vec<Diagnostic>) {
    let mut opts = opts.clone();
    opts.all_stages = opts.target.is_none();
    let (graph, errors) = lower_all(df, &opts, resolver, Purpose::Lint);
    (graph.lints, errors)
}

/// Lowers `df` and returns the graph together with every error (the graph is only
/// meaningful when there are none). The graph's `lints` hold the rule findings of the
/// stages that were lowered, before `# check=` filtering.
pub(crate) fn lower_all(
    df: &Dockerfile,
    opts: &LowerOptions,
    resolver: &mut dyn BaseResolver,
    purpose: Purpose,
) -> (BuildGraph, Vec<Diagnostic>) {
    let mut l = Lowerer {
        df,
        opts,
        purpose,
        errors: Vec::new(),
        warnings: Vec::new(),
        lints: Vec::new(),
        arg_use: ArgUse::default(),
        global: Rc::new(platform_args(&opts.target_platform, &opts.build_platform)),
        declared_global: BTreeMap::new(),
        defined: None,
        undefined_seen: HashSet::new(),
        suggestions_left: MAX_SUGGESTIONS,
        stage_names: Rc::default(),
    };
    let split = df
        .instructions
        .iter()
        .position(|i| i.keyword == Keyword::From)
        .unwrap_or(df.instructions.len());
    l.global_args(&df.instructions[..split]);
    let mut stages = l.stage_headers(&df.instructions[split..]);
    if stages.is_empty() && l.errors.is_empty() && !crate::cancelled() {
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
    let cyclic = l.check_cycles(&stages);
    let target = l.target_index(&stages);
    if let (Some(t), false) = (target, cyclic) {
        if opts.all_stages {
            for s in &mut stages {
                s.stage.needed = true;
            }
        } else {
            l.mark_needed(&mut stages, t);
        }
        l.lower_needed(&mut stages, resolver);
    }
    if crate::cancelled() {
        l.errors.push(interrupted(df));
        let graph = BuildGraph {
            stages: Vec::new(),
            target: 0,
            warnings: l.warnings,
            lints: Vec::new(),
            unused_args: Vec::new(),
        };
        return (graph, l.errors);
    }
    let unused_args = l
        .arg_use
        .unused(&opts.build_args)
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    let mut lints = lint::file_rules(df, opts);
    lints.append(&mut l.lints);
    let config = lint::config_of(df).unwrap_or_else(|e| {
        l.errors.push(*e);
        Default::default()
    });
    let graph = BuildGraph {
        stages: stages.into_iter().map(|s| s.stage).collect(),
        target: target.unwrap_or(0),
        warnings: l.warnings,
        lints: lint::finish(lints, &config),
        unused_args,
    };
    (graph, l.errors)
}

/// The error of a lowering stopped by [`crate::CANCELLED`].
fn interrupted(df: &Dockerfile) -> Diagnostic {
    let at = rbuild_dockerfile::Span {
        line: 1,
        col: 1,
        end_line: 1,
    };
    Diagnostic::error(&df.file, at, 1, "", "interrupted".into())
}

fn pluralize(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// What a lowering is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A graph to solve.
    Build,
    /// Only lint findings and errors: RUN ops get no environment and no history text,
    /// which cost O(ENV + ARGs) each, so ENV lines between RUNs stay linear.
    Lint,
}

struct Lowerer<'a> {
    df: &'a Dockerfile,
    opts: &'a LowerOptions,
    purpose: Purpose,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    lints: Vec<Lint>,
    arg_use: ArgUse,
    /// Automatic platform args and global ARG values (shared with expansion closures, so
    /// an ARG costs no copy of the others).
    global: Rc<BTreeMap<String, String>>,
    /// Global ARGs as declared (value None when declared without one).
    declared_global: BTreeMap<String, Option<String>>,
    /// Names defined for the instruction being lowered (ENV, declared ARGs); `None`
    /// outside stages, where UndefinedVar does not apply.
    defined: Option<Rc<Scope>>,
    /// UndefinedVar findings made so far: (line, column, end line, name).
    undefined_seen: HashSet<(usize, usize, usize, String)>,
    /// How many more UndefinedVar findings get a "did you mean" suggestion (each one
    /// compares the name with every defined one).
    suggestions_left: usize,
    /// Every stage's name, shared by the stages as they are lowered.
    stage_names: Rc<StageNames>,
}

/// UndefinedVar findings that get a suggestion; the rest are reported without one, so
/// a file full of undefined names costs linear work.
const MAX_SUGGESTIONS: usize = 100;

struct StageDraft<'a> {
    stage: Stage,
    instructions: &'a [Instruction],
    deps: Vec<usize>,
    /// Whether the stage has been lowered.
    lowered: bool,
    /// The stage's ARGs when it ends (a stage built on it inherits them).
    args: Vec<(String, Option<String>)>,
    /// Whether a WORKDIR was set in this stage or the stages it builds on.
    workdir_set: bool,
}

/// What a stage starts with, taken from its base.
struct Start {
    config: ImageConfig,
    args: Vec<(String, Option<String>)>,
    workdir_set: bool,
    triggers: Vec<Instruction>,
}

impl<'a> Lowerer<'a> {
    fn error(&mut self, inst: &Instruction, message: impl Into<String>) {
        self.errors
            .push(diag(&self.df.file, inst, message.into(), Severity::Error));
    }

    fn lint(&mut self, inst: &Instruction, rule: &'static str, message: String) {
        self.lints
            .push(Lint::at(&self.df.file, inst, rule, message));
    }

    fn location(&self, inst: &Instruction) -> Location {
        Location {
            file: self.df.file.clone(),
            line: inst.span.line,
            col: inst.span.col,
            end_line: inst.span.end_line,
        }
    }

    fn expansion(
        &mut self,
        inst: &Instruction,
        s: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<rbuild_dockerfile::Expansion> {
        match Expander::new(lookup, self.df.directives.escape).expand(s) {
            Ok(e) => {
                self.report_unmatched(inst, &e.unmatched);
                Some(e)
            }
            Err(e) => {
                self.error(inst, e.to_string());
                None
            }
        }
    }

    /// UndefinedVar: a variable that is neither an ARG of the stage nor in its ENV.
    fn report_unmatched(&mut self, inst: &Instruction, unmatched: &[String]) {
        let Some(defined) = &self.defined else {
            return;
        };
        let defined = Rc::clone(defined);
        for name in unmatched.iter().filter(|n| !defined.defines(n)) {
            let span = &inst.span;
            let seen = (span.line, span.col, span.end_line, name.clone());
            if !self.undefined_seen.insert(seen) {
                continue;
            }
            let suggestion = if self.suggestions_left > 0 {
                self.suggestions_left -= 1;
                lint::suggest(name, defined.names())
            } else {
                None
            };
            self.lint(inst, "UndefinedVar", lint::undefined_var(name, suggestion));
        }
    }

    fn expand_word(
        &mut self,
        inst: &Instruction,
        s: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> String {
        self.expansion(inst, s, lookup)
            .map(|e| e.result)
            .unwrap_or_else(|| s.to_string())
    }

    fn expand_words(
        &mut self,
        inst: &Instruction,
        s: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        self.expansion(inst, s, lookup)
            .map(|e| e.words)
            .unwrap_or_else(|| vec![s.to_string()])
    }

    fn global_args(&mut self, insts: &[Instruction]) {
        for inst in insts {
            if crate::cancelled() {
                return;
            }
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
                self.secret_key(inst, "ARG", name);
                let default = default.map(|d| {
                    let g = Rc::clone(&self.global);
                    self.expand_word(inst, d, &move |k| g.get(k).cloned())
                });
                let value = self.opts.build_args.get(name).cloned().or(default);
                self.arg_use.mark(name);
                if let Some(v) = &value {
                    Rc::make_mut(&mut self.global).insert(name.to_string(), v.clone());
                }
                self.declared_global.insert(name.to_string(), value);
            }
        }
    }

    /// SecretsUsedInArgOrEnv.
    fn secret_key(&mut self, inst: &Instruction, kind: &str, key: &str) {
        if lint::is_secret_key(key) {
            self.lint(
                inst,
                "SecretsUsedInArgOrEnv",
                format!("Do not use ARG or ENV instructions for sensitive data ({kind} {key:?})"),
            );
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
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (k, &start) in starts.iter().enumerate() {
            if crate::cancelled() {
                break;
            }
            let end = starts.get(k + 1).copied().unwrap_or(insts.len());
            let from = &insts[start];
            let body = &insts[start + 1..end];
            if let Some(draft) = self.stage_header(from, body, stages.len(), &by_name) {
                if let Some(name) = &draft.stage.name {
                    by_name.insert(name.clone(), stages.len());
                }
                stages.push(draft);
            }
        }
        let names = StageNames::new(stages.iter().map(|s| s.stage.name.clone()).collect());
        let mut errors = Vec::new();
        for s in &mut stages {
            let mut deps = Vec::new();
            if let Base::Stage(i) = s.stage.base {
                deps.push(i);
            }
            for inst in s.instructions {
                for from in from_refs(inst) {
                    match names.resolve(from) {
                        Ok(Some(i)) => deps.push(i),
                        Ok(None) => {}
                        Err(e) => errors.push((inst, e)),
                    }
                }
            }
            s.deps = deps;
        }
        for (inst, e) in errors {
            self.error(inst, e);
        }
        self.stage_names = Rc::new(names);
        stages
    }

    fn stage_header(
        &mut self,
        from: &'a Instruction,
        body: &'a [Instruction],
        index: usize,
        earlier: &HashMap<String, usize>,
    ) -> Option<StageDraft<'a>> {
        let words = match &from.args {
            Args::Words(w) => w.clone(),
            _ => Vec::new(),
        };
        let g = Rc::clone(&self.global);
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
        let lower_image = image.to_lowercase();
        let base = if lower_image == "scratch" {
            Base::Scratch
        } else if let Some(&i) = earlier.get(&lower_image) {
            Base::Stage(i)
        } else {
            Base::Image(image)
        };
        Some(StageDraft {
            stage: Stage {
                index,
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
            lowered: false,
            args: Vec::new(),
            workdir_set: false,
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
        // `${UNDECLARED:-default}` still names an image: BuildKit only warns
        // (UndefinedArgInFrom); an undeclared ARG that breaks the name is an error.
        let g = Rc::clone(&self.global);
        let lookup = move |k: &str| g.get(k).cloned();
        let value = Expander::new(&lookup, self.df.directives.escape)
            .word(image)
            .unwrap_or_default();
        if lint::valid_image_name(&value) {
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

    /// Stages that read from each other in a loop cannot be built; BuildKit reports the
    /// first stage found on the loop.
    fn check_cycles(&mut self, stages: &[StageDraft<'a>]) -> bool {
        let mut state = vec![0u8; stages.len()];
        for start in 0..stages.len() {
            if let Some(i) = find_cycle(stages, start, &mut state) {
                let name = stage_display_name(&stages[i].stage);
                let inst = self.diag_at_from(&stages[i].stage.location);
                self.errors.push(Diagnostic {
                    message: format!("circular dependency detected on stage: {name}"),
                    ..inst
                });
                return true;
            }
        }
        false
    }

    fn target_index(&mut self, stages: &[StageDraft<'a>]) -> Option<usize> {
        let Some(t) = &self.opts.target else {
            return stages.len().checked_sub(1);
        };
        let t = t.to_lowercase();
        let found = stages
            .iter()
            .rposition(|s| s.stage.name.as_deref() == Some(t.as_str()));
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
            todo.extend(stages[i].deps.iter().copied().filter(|&d| d < stages.len()));
        }
    }

    /// Lowers every needed stage. ONBUILD triggers can add `COPY --from` sources once a
    /// base is known, so this repeats until no new stage becomes needed.
    fn lower_needed(&mut self, stages: &mut [StageDraft<'a>], resolver: &mut dyn BaseResolver) {
        loop {
            let todo: Vec<usize> = (0..stages.len())
                .filter(|&i| stages[i].stage.needed && !stages[i].lowered)
                .collect();
            if todo.is_empty() {
                return;
            }
            for i in todo {
                if crate::cancelled() {
                    return;
                }
                self.lower_stage(stages, i, resolver);
                stages[i].lowered = true;
            }
            let extra: Vec<usize> = stages
                .iter()
                .filter(|s| s.lowered)
                .flat_map(|s| s.stage.deps())
                .filter(|&d| d < stages.len() && !stages[d].stage.needed)
                .collect();
            for d in extra {
                self.mark_needed(stages, d);
            }
        }
    }

    fn stage_start(
        &mut self,
        stages: &[StageDraft<'a>],
        i: usize,
        resolver: &mut dyn BaseResolver,
    ) -> Option<Start> {
        let platform = stages[i].stage.platform.clone();
        let mut start = match stages[i].stage.base.clone() {
            Base::Scratch => {
                let mut config = ImageConfig::default();
                config.set_env("PATH", DEFAULT_PATH);
                config.config.working_dir = Some("/".into());
                Start {
                    config,
                    args: Vec::new(),
                    workdir_set: false,
                    triggers: Vec::new(),
                }
            }
            Base::Stage(s) => {
                let base = &stages[s];
                let here = &stages[i].stage.location;
                let mut config = base.stage.config.clone();
                // Triggers do not carry over from a base stage: its own ONBUILD
                // instructions run here instead.
                config.config.on_build = None;
                let triggers = base
                    .instructions
                    .iter()
                    .filter_map(|inst| match &inst.args {
                        Args::Onbuild(inner) => {
                            let mut t = (**inner).clone();
                            t.span = rbuild_dockerfile::Span {
                                line: here.line,
                                col: here.col,
                                end_line: here.end_line,
                            };
                            Some(t)
                        }
                        _ => None,
                    })
                    .collect();
                Start {
                    config,
                    args: base.args.clone(),
                    workdir_set: base.workdir_set,
                    triggers,
                }
            }
            Base::Image(r) => match resolver.resolve(&r, &platform) {
                Ok(mut config) => {
                    config.created = None;
                    let texts = config.config.on_build.take().unwrap_or_default();
                    let triggers = self.parse_triggers(&stages[i].stage.location, &texts);
                    if !config
                        .config
                        .env
                        .iter()
                        .flatten()
                        .any(|e| e.starts_with("PATH="))
                    {
                        config
                            .config
                            .env
                            .get_or_insert_with(Vec::new)
                            .push(format!("PATH={DEFAULT_PATH}"));
                    }
                    Start {
                        config,
                        args: Vec::new(),
                        workdir_set: false,
                        triggers,
                    }
                }
                Err(e) => {
                    let from = self.diag_at_from(&stages[i].stage.location);
                    self.errors.push(Diagnostic {
                        message: e.to_string(),
                        ..from
                    });
                    return None;
                }
            },
        };
        start.config.architecture = platform.architecture().to_string();
        start.config.os = platform.os().to_string();
        start.config.variant = platform.variant().map(str::to_string);
        Some(start)
    }

    /// Parses a base image's ONBUILD triggers; they run at the FROM line, as in BuildKit.
    fn parse_triggers(&mut self, from: &Location, texts: &[String]) -> Vec<Instruction> {
        let mut out = Vec::new();
        for text in texts {
            match rbuild_dockerfile::parse(&self.df.file, text.as_bytes()) {
                Ok(df) if df.instructions.len() == 1 => {
                    let mut inst = df.instructions[0].clone();
                    inst.span = rbuild_dockerfile::Span {
                        line: from.line,
                        col: from.col,
                        end_line: from.end_line,
                    };
                    out.push(inst);
                }
                Ok(_) => {
                    let d = self.diag_at_from(from);
                    self.errors.push(Diagnostic {
                        message: format!(
                            "ONBUILD trigger {text:?} of the base image should be a single instruction"
                        ),
                        ..d
                    });
                }
                Err(e) => {
                    let d = self.diag_at_from(from);
                    let why = e.0.first().map(|x| x.message.clone()).unwrap_or_default();
                    self.errors.push(Diagnostic {
                        message: format!("ONBUILD trigger {text:?} of the base image: {why}"),
                        ..d
                    });
                }
            }
        }
        out
    }

    fn lower_stage(
        &mut self,
        stages: &mut [StageDraft<'a>],
        i: usize,
        resolver: &mut dyn BaseResolver,
    ) {
        let Some(start) = self.stage_start(stages, i, resolver) else {
            return;
        };
        let names = Rc::clone(&self.stage_names);
        let scope = Rc::new(Scope::new(&start.config, &start.args));
        let mut st = StageState {
            env_index: env_index(&start.config),
            config: start.config,
            args: OrderedArgs::new(start.args),
            scope,
            pending: Vec::new(),
            cmd: None,
            entrypoint: None,
            healthcheck: None,
            workdir_set: start.workdir_set,
            ops: Vec::new(),
            names,
            index: i,
        };
        for inst in start.triggers.iter().chain(stages[i].instructions) {
            if crate::cancelled() {
                break;
            }
            self.lower_instruction(&mut st, inst);
        }
        self.defined = None;
        stages[i].stage.config = st.config;
        stages[i].stage.ops = st.ops;
        stages[i].args = st.args.into_vec();
        stages[i].workdir_set = st.workdir_set;
    }

    fn diag_at_from(&self, loc: &Location) -> Diagnostic {
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

    fn check_flags(&mut self, inst: &Instruction) {
        let allowed: &[&str] = match inst.keyword {
            Keyword::Copy => &["from", "chown", "chmod", "link", "parents", "exclude"],
            Keyword::Add => &[
                "parents",
                "exclude",
                "chown",
                "chmod",
                "link",
                "checksum",
                "keep-git-dir",
                "unpack",
            ],
            Keyword::Run => &["mount", "network", "security"],
            Keyword::Healthcheck => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        };
        // Flags BuildKit knows but rbuild does not implement get their own message.
        let known_elsewhere: &[&str] = match inst.keyword {
            Keyword::Run => &["device"],
            _ => &[],
        };
        for f in &inst.flags {
            let name = f.name.as_str();
            if allowed.contains(&name) {
                continue;
            }
            let kw = inst.keyword_text.to_uppercase();
            let message = if known_elsewhere.contains(&name) {
                format!("{kw} --{name} is not supported by rbuild yet")
            } else {
                format!("unknown flag for {kw}: --{name}")
            };
            self.error(inst, message);
        }
    }

    /// Lowers one instruction. Its words see the stage's names as they were before it
    /// (`ENV A=1 B=$A` reads the old `A`); what it sets enters the scope afterwards.
    fn lower_instruction(&mut self, st: &mut StageState, inst: &Instruction) {
        self.defined = Some(Rc::clone(&st.scope));
        let op = self.lower_in_scope(st, inst);
        self.defined = None;
        st.apply_pending();
        if let Some((kind, created_by)) = op {
            st.ops.push(Op {
                kind,
                location: self.location(inst),
                created_by,
            });
        }
    }

    fn lower_in_scope(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
    ) -> Option<(OpKind, String)> {
        let scope = Rc::clone(&st.scope);
        let lookup = move |k: &str| scope.get(k);
        self.check_flags(inst);
        match (&inst.keyword, &inst.args) {
            (Keyword::Run, args) => self.run(st, inst, args),
            (Keyword::Copy | Keyword::Add, _) => self.copy(st, inst, &lookup),
            (Keyword::Cmd, args) => {
                self.used_once(inst, st.cmd.replace(inst.clone()));
                let cmd = self.command(st, inst, args);
                st.config.config.cmd = Some(cmd.clone());
                st.config.config.args_escaped = Some(true);
                Some(meta(format!("CMD {}", gofmt::quoted_list(&cmd))))
            }
            (Keyword::Entrypoint, args) => {
                self.used_once(inst, st.entrypoint.replace(inst.clone()));
                let ep = self.command(st, inst, args);
                st.config.config.entrypoint = Some(ep.clone());
                if st.cmd.is_none() {
                    st.config.config.cmd = None;
                }
                Some(meta(format!("ENTRYPOINT {}", gofmt::quoted_list(&ep))))
            }
            (Keyword::Env, Args::Pairs(pairs)) => {
                self.legacy_pairs(inst);
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand_word(inst, k, &lookup);
                    let v = self.expand_word(inst, v, &lookup);
                    self.secret_key(inst, "ENV", &k);
                    st.set_env(&k, &v);
                    parts.push(format!(" {k}={v}"));
                }
                Some(meta(format!("ENV{}", parts.concat())))
            }
            (Keyword::Label, Args::Pairs(pairs)) => {
                self.legacy_pairs(inst);
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand_word(inst, k, &lookup);
                    let v = self.expand_word(inst, v, &lookup);
                    parts.push(format!(" {k}={v}"));
                    st.config
                        .config
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert(k, v);
                }
                Some(meta(format!("LABEL{}", parts.concat())))
            }
            (Keyword::Arg, Args::Words(words)) => {
                let mut parts = Vec::new();
                let mut here: BTreeMap<String, Option<String>> = BTreeMap::new();
                for w in words {
                    // Each ARG of the line sees the ones before it, as in BuildKit.
                    let scope = Rc::clone(&st.scope);
                    let line = &here;
                    let scoped = move |k: &str| match scope.env.get(k) {
                        Some(v) => Some(v.clone()),
                        None => match line.get(k) {
                            Some(v) => v.clone(),
                            None => scope.get(k),
                        },
                    };
                    let (name, value) = self.stage_arg(st, inst, w, &scoped);
                    parts.push(match &value {
                        Some(v) => format!("{name}={v}"),
                        None => name.clone(),
                    });
                    here.insert(name, value);
                }
                Some(meta(format!("ARG {}", parts.join(" "))))
            }
            (Keyword::Workdir, Args::Words(words)) if words.len() == 1 => {
                self.workdir(st, inst, &words[0], &lookup)
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
                Some(meta(format!("EXPOSE {}", gofmt::list(&ports))))
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
                if vols.iter().any(String::is_empty) {
                    self.error(inst, "VOLUME specified can not be an empty string");
                }
                let map = st
                    .config
                    .config
                    .volumes
                    .get_or_insert_with(Default::default);
                for v in vols.iter().filter(|v| !v.is_empty()) {
                    map.insert(v.clone(), Default::default());
                }
                Some(meta(format!("VOLUME {}", gofmt::list(&vols))))
            }
            (Keyword::Stopsignal, Args::Words(words)) if words.len() == 1 => {
                let sig = self.expand_word(inst, &words[0], &lookup);
                if !valid_signal(&sig) {
                    self.error(inst, format!("invalid signal: {sig}"));
                }
                st.config.config.stop_signal = Some(sig.clone());
                Some(meta(format!("STOPSIGNAL {sig}")))
            }
            (Keyword::Shell, Args::Exec(v)) if !v.is_empty() => {
                st.config.config.shell = Some(v.clone());
                Some(meta(format!("SHELL {}", gofmt::list(v))))
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
            (Keyword::Healthcheck, args) => {
                self.used_once(inst, st.healthcheck.replace(inst.clone()));
                self.healthcheck(st, inst, args).map(meta)
            }
            (Keyword::Onbuild, Args::Onbuild(inner)) => {
                // Recorded in the config only: BuildKit writes no history entry for it.
                let text = inner.original.trim().to_string();
                st.config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(text);
                None
            }
            (Keyword::From, _) => {
                self.error(inst, "FROM is not allowed here");
                None
            }
            (kw, _) => {
                self.error(
                    inst,
                    format!("{} has malformed arguments", kw.as_str().to_uppercase()),
                );
                None
            }
        }
    }

    /// MultipleInstructionsDisallowed: an earlier CMD/ENTRYPOINT/HEALTHCHECK of the
    /// same stage is overridden; the warning points at the earlier one.
    fn used_once(&mut self, inst: &Instruction, previous: Option<Instruction>) {
        if let Some(prev) = previous {
            let name = inst.keyword.upper();
            self.lint(
                &prev,
                "MultipleInstructionsDisallowed",
                format!(
                    "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
                ),
            );
        }
    }

    /// LegacyKeyValueFormat: `ENV key value` instead of `ENV key=value`.
    fn legacy_pairs(&mut self, inst: &Instruction) {
        if is_legacy_pairs(inst) {
            let name = inst.keyword.upper();
            self.lint(
                inst,
                "LegacyKeyValueFormat",
                format!(
                    "\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"
                ),
            );
        }
    }

    fn workdir(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<(OpKind, String)> {
        let dir = self.expand_word(inst, word, lookup);
        if !st.workdir_set && !dir.starts_with('/') {
            self.lint(
                inst,
                "WorkdirRelativePath",
                format!(
                    "Relative workdir {dir:?} can have unexpected results if the base image changes"
                ),
            );
        }
        st.workdir_set = true;
        // As BuildKit's NormalizeWorkdir: an absolute path is kept as written (a trailing
        // slash included), a relative one is joined to the current directory and cleaned.
        let base = st.cwd();
        let configured = if dir.starts_with('/') {
            dir
        } else {
            clean_path(&format!("{base}/{dir}"))
        };
        let path = clean_path(&configured);
        st.config.config.working_dir = Some(configured.clone());
        let created_by = format!("WORKDIR {configured}");
        if path == "/" {
            return Some(meta(created_by));
        }
        let op = MkdirOp {
            path,
            user: st.config.config.user.clone().unwrap_or_default(),
        };
        Some((OpKind::Mkdir(op), created_by))
    }

    /// Resolves one `ARG NAME[=default]` in a stage; returns its name and value.
    fn stage_arg(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> (String, Option<String>) {
        let (name, default) = split_arg(word);
        self.secret_key(inst, "ARG", name);
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
        st.set_arg(name, value.clone());
        (name.to_string(), value)
    }

    /// CMD/ENTRYPOINT arguments: exec form as is, shell form wrapped in the SHELL.
    fn command(&mut self, st: &StageState, inst: &Instruction, args: &Args) -> Vec<String> {
        match args {
            Args::Exec(v) => v.clone(),
            Args::Shell(s) => {
                if st.config.config.shell.as_ref().is_none_or(Vec::is_empty) {
                    let name = inst.keyword.upper();
                    self.lint(
                        inst,
                        "JSONArgsRecommended",
                        format!(
                            "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                        ),
                    );
                }
                let mut v = st.shell();
                v.push(s.clone());
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
        let (argv, shown) = match args {
            Args::Exec(v) => (v.clone(), v.join(" ")),
            Args::Shell(cmd) => self.run_script(st, inst, cmd)?,
            _ => (Vec::new(), String::new()),
        };
        if argv.is_empty() || argv.iter().all(String::is_empty) {
            self.error(inst, "RUN needs a command");
            return None;
        }
        let RunFlags {
            mounts,
            network,
            security,
        } = self.run_flags(st, inst);
        if self.purpose == Purpose::Lint {
            let op = RunOp {
                argv,
                env: Vec::new(),
                user: String::new(),
                cwd: String::new(),
                mounts,
                network,
                security,
            };
            return Some((OpKind::Run(op), String::new()));
        }
        let prefix = st.history_args();
        let created_by = if prefix.is_empty() {
            format!("RUN {shown} # buildkit")
        } else {
            format!(
                "RUN |{} {} {shown} # buildkit",
                prefix.len(),
                prefix.join(" ")
            )
        };
        let mut env = st.run_env();
        for (k, v) in &self.opts.build_args {
            let declared = st.args.contains(k);
            let set = st.env_index.contains_key(k) || (k == "PATH");
            if PROXY_ARGS.contains(&k.as_str()) && !declared && !set {
                env.push(format!("{k}={v}"));
            }
        }
        let op = RunOp {
            argv,
            env,
            user: st.config.config.user.clone().unwrap_or_default(),
            cwd: st.cwd(),
            mounts,
            network,
            security,
        };
        Some((OpKind::Run(op), created_by))
    }

    /// The argv of a shell-form RUN (heredocs included) and how history shows it.
    fn run_script(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        cmd: &str,
    ) -> Option<(Vec<String>, String)> {
        let mut argv = st.shell();
        let single = inst.heredocs.len() == 1 && is_heredoc_word(cmd.trim());
        if !single {
            let script = if inst.heredocs.is_empty() {
                cmd.to_string()
            } else {
                heredoc_script(cmd, &inst.heredocs)
            };
            argv.push(script);
            let shown = argv.join(" ");
            return Some((argv, shown));
        }
        let doc = &inst.heredocs[0];
        if !doc.content.starts_with("#!") {
            argv.push(doc.content.clone());
            let shown = argv.join(" ");
            return Some((argv, shown));
        }
        // A heredoc with a shebang is a script for its interpreter. BuildKit mounts it as
        // a file and runs that; rbuild hands shell interpreters the body with -c, and
        // feeds other interpreters (python, perl, ...) the body as /dev/stdin through
        // /bin/sh, which the image must then have.
        let first = doc.content.lines().next().unwrap_or_default();
        let interp: Vec<String> = first[2..].split_whitespace().map(str::to_string).collect();
        if interp.is_empty() {
            self.error(
                inst,
                "RUN heredoc starts with `#!` but names no interpreter",
            );
            return None;
        }
        let program = interp
            .iter()
            .rev()
            .find(|w| !w.starts_with('-'))
            .map(|w| w.rsplit('/').next().unwrap_or(w))
            .unwrap_or_default();
        argv.push(format!("/dev/pipes/{}", doc.name));
        let shown = argv.join(" ");
        if matches!(
            program,
            "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh" | "mksh"
        ) {
            let mut run = interp;
            run.push("-c".into());
            run.push(doc.content.clone());
            return Some((run, shown));
        }
        let mut delim = "RBUILD_SCRIPT_EOF".to_string();
        while doc.content.lines().any(|l| l == delim) {
            delim.push('_');
        }
        let quoted: Vec<String> = interp.iter().map(|w| sh_quote(w)).collect();
        let mut body = doc.content.clone();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let script = format!(
            "exec {} /dev/stdin <<'{delim}'\n{body}{delim}",
            quoted.join(" ")
        );
        Some((vec!["/bin/sh".into(), "-c".into(), script], shown))
    }

    fn run_flags(&mut self, st: &StageState, inst: &Instruction) -> RunFlags {
        let scope = Rc::clone(&st.scope);
        let lookup = move |k: &str| scope.get(k);
        let names = Rc::clone(&st.names);
        let resolve_from = move |f: &str| match names.resolve(f) {
            Ok(Some(i)) => CopyFrom::Stage(i),
            _ => CopyFrom::Image(f.to_string()),
        };
        let mut mounts = Vec::new();
        let mut network = NetworkMode::Default;
        let mut security = SecurityMode::Sandbox;
        for f in &inst.flags {
            let value = self.expand_word(inst, f.value.as_deref().unwrap_or(""), &lookup);
            let parsed = match f.name.as_str() {
                "mount" => parse_mount(&value, &resolve_from).map(|m| mounts.push(m)),
                "network" => NetworkMode::parse(&value).map(|n| network = n),
                "security" => SecurityMode::parse(&value).map(|s| security = s),
                _ => Ok(()),
            };
            if let Err(e) = parsed {
                self.error(inst, format!("RUN --{}: {e}", f.name));
            }
        }
        RunFlags {
            mounts,
            network,
            security,
        }
    }

    fn copy(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<(OpKind, String)> {
        let add = inst.keyword == Keyword::Add;
        let name = inst.keyword.upper();
        let raw: Vec<String> = match &inst.args {
            Args::Exec(v) => v.clone(),
            Args::Words(w) => w.clone(),
            Args::Shell(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        let mut words: Vec<String> = Vec::new();
        let mut docs: Vec<&Heredoc> = Vec::new();
        let mut heredocs = inst.heredocs.iter();
        for w in &raw {
            if !matches!(inst.args, Args::Exec(_))
                && is_heredoc_word(w)
                && let Some(h) = heredocs.next()
            {
                docs.push(h);
                continue;
            }
            match inst.args {
                Args::Exec(_) => words.push(self.expand_word(inst, w, lookup)),
                _ => {
                    // A word that expands to no field (`""`) still names a source, as in
                    // BuildKit: `COPY "" /dst/` copies the context root.
                    let fields = self.expand_words(inst, w, lookup);
                    if fields.is_empty() && !w.is_empty() {
                        words.push(self.expand_word(inst, w, lookup));
                    } else {
                        words.extend(fields);
                    }
                }
            }
        }
        if words.is_empty() || words.len() + docs.len() < 2 {
            self.error(
                inst,
                format!("{name} requires at least one source and a destination"),
            );
            return None;
        }
        let dest = words.pop().unwrap_or_default();
        let from = self.copy_from(st, inst)?;
        let chmod = self.chmod(inst, lookup)?;
        let chown = flag(inst, "chown")
            .map(|c| self.expand_word(inst, c, lookup))
            .filter(|c| !c.is_empty());
        let parents = self.bool_flag(inst, "parents")?;
        let link = self.bool_flag(inst, "link")?;
        let exclude: Vec<String> = inst
            .flags
            .iter()
            .filter(|f| f.name == "exclude")
            .map(|f| self.expand_word(inst, f.value.as_deref().unwrap_or(""), lookup))
            .collect();
        if exclude.iter().any(|e| e.is_empty()) {
            self.error(inst, format!("{name} --exclude requires a pattern"));
            return None;
        }
        for src in &words {
            if let Some(e) = remote_source_error(add, src) {
                self.error(inst, e);
                return None;
            }
        }
        let checksum = self.checksum(inst, &words, lookup)?;
        let shown_srcs = words.clone();
        let (url_words, words): (Vec<String>, Vec<String>) =
            words.into_iter().partition(|w| is_http_url(w));
        let urls: Vec<UrlSource> = url_words
            .into_iter()
            .map(|url| UrlSource {
                filename: crate::url_name::url_file_name(&url),
                url,
                checksum: checksum.clone(),
            })
            .collect();
        if let Some(h) = docs
            .iter()
            .find(|h| h.name.contains('/') || h.name == "." || h.name == "..")
        {
            self.error(
                inst,
                format!("heredoc name {:?} cannot be used as a file name", h.name),
            );
            return None;
        }
        let contents = docs
            .iter()
            .map(|h| InlineFile {
                name: h.name.clone(),
                content: self.heredoc_content(inst, h, lookup),
            })
            .collect::<Vec<_>>();
        let mut shown = vec![name];
        if parents {
            shown.push("--parents".to_string());
        }
        if let Some(c) = &chown {
            shown.push(format!("--chown={c}"));
        }
        if let Some(m) = flag(inst, "chmod") {
            shown.push(format!("--chmod={m}"));
        }
        shown.extend(shown_srcs);
        shown.extend(contents.iter().map(|c| format!("<<{}", c.name)));
        shown.push(dest.clone());
        let created_by = format!("{} # buildkit", shown.join(" "));
        let op = CopyOp {
            from,
            srcs: words,
            dest,
            chown,
            chmod,
            exclude,
            parents,
            link,
            workdir: st.cwd(),
            add: add && flag(inst, "unpack") != Some("false"),
            contents,
            urls,
        };
        Some((OpKind::Copy(op), created_by))
    }

    /// `--checksum`: allowed for one URL source only, a sha256 digest (BuildKit's
    /// `digest.Parse`, restricted to the algorithm rbuild verifies).
    fn checksum(
        &mut self,
        inst: &Instruction,
        words: &[String],
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Option<Digest>> {
        let Some(sum) = flag(inst, "checksum") else {
            return Some(None);
        };
        let sum = self.expand_word(inst, sum, lookup);
        let e = match words {
            [w] if is_http_url(w) => match parse_checksum(&sum) {
                Ok(d) => return Some(Some(d)),
                Err(e) => e,
            },
            [_] => "checksum requires HTTP(S) or Git sources".to_string(),
            _ => format!("checksum can't be specified for multiple sources ({sum})"),
        };
        self.error(inst, e);
        None
    }

    fn heredoc_content(
        &mut self,
        inst: &Instruction,
        h: &Heredoc,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> String {
        if !h.expand {
            return h.content.clone();
        }
        match Expander::new(lookup, '\\')
            .skip_quotes(true)
            .expand(&h.content)
        {
            Ok(e) => {
                self.report_unmatched(inst, &e.unmatched);
                e.result
            }
            Err(e) => {
                self.error(inst, e.to_string());
                h.content.clone()
            }
        }
    }

    fn copy_from(&mut self, st: &StageState, inst: &Instruction) -> Option<CopyFrom> {
        let Some(f) = flag(inst, "from") else {
            return Some(CopyFrom::Context);
        };
        let none = |_: &str| None;
        let plain = Expander::new(&none, self.df.directives.escape).word(f);
        if plain.as_deref() != Ok(f) {
            self.error(
                inst,
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
            );
            return None;
        }
        match st.names.resolve(f) {
            Ok(Some(i)) if i == st.index => {
                let name = st.names.list[i]
                    .clone()
                    .unwrap_or_else(|| format!("stage-{i}"));
                self.error(
                    inst,
                    format!("circular dependency detected on stage: {name}"),
                );
                None
            }
            Ok(Some(i)) => Some(CopyFrom::Stage(i)),
            Ok(None) => Some(CopyFrom::Image(f.to_string())),
            Err(e) => {
                self.error(inst, e);
                None
            }
        }
    }

    fn chmod(
        &mut self,
        inst: &Instruction,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Option<CopyChmod>> {
        let Some(m) = flag(inst, "chmod") else {
            return Some(None);
        };
        let m = self.expand_word(inst, m, lookup);
        match u32::from_str_radix(&m, 8) {
            Ok(v) if v <= 0o7777 => Some(Some(CopyChmod::Octal(v))),
            _ if !m.chars().all(|c| c.is_ascii_digit()) && is_symbolic_mode(&m) => {
                Some(Some(CopyChmod::Symbolic(m)))
            }
            _ => {
                self.error(
                    inst,
                    format!(
                        "invalid chmod parameter: '{m}'. it should be octal string and between 0 and 07777"
                    ),
                );
                None
            }
        }
    }

    /// A boolean flag: absent is false, `--name` alone or `=true` true, `=false` false.
    fn bool_flag(&mut self, inst: &Instruction, name: &str) -> Option<bool> {
        let Some(f) = inst.flags.iter().find(|f| f.name == name) else {
            return Some(false);
        };
        match f.value.as_deref() {
            None | Some("") | Some("true") => Some(true),
            Some("false") => Some(false),
            Some(v) => {
                self.error(
                    inst,
                    format!("expecting boolean value for flag {name}, not: {v}"),
                );
                None
            }
        }
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
                match v.parse::<i64>() {
                    Ok(n) if n < 0 => Err(format!("--retries cannot be negative ({n})")),
                    Ok(n) => Ok(n),
                    Err(_) => Err(format!("invalid --retries value {v:?}")),
                }
            } else {
                parse_duration(&v)
                    .map_err(|e| format!("invalid --{} value {v:?}: {e}", f.name))
                    .and_then(|n| check_interval(&f.name, &v, n))
            };
            let value = match parsed {
                Ok(n) => (n != 0).then_some(n),
                Err(e) => {
                    self.error(inst, e);
                    continue;
                }
            };
            match f.name.as_str() {
                "interval" => hc.interval = value,
                "timeout" => hc.timeout = value,
                "start-period" => hc.start_period = value,
                "start-interval" => hc.start_interval = value,
                "retries" => hc.retries = value,
                _ => {}
            }
        }
        let created_by = format!("HEALTHCHECK {}", gofmt::healthcheck(&hc));
        st.config.config.healthcheck = Some(hc);
        Some(created_by)
    }
}

fn meta(created_by: String) -> (OpKind, String) {
    (OpKind::Meta, created_by)
}

fn stage_display_name(s: &Stage) -> String {
    s.name
        .clone()
        .unwrap_or_else(|| format!("stage-{}", s.index))
}

/// Depth-first search for a loop through `deps`; returns a stage on it.
fn find_cycle(stages: &[StageDraft<'_>], i: usize, state: &mut [u8]) -> Option<usize> {
    match state[i] {
        1 => return Some(i),
        2 => return None,
        _ => {}
    }
    state[i] = 1;
    for &d in &stages[i].deps {
        if d < stages.len()
            && let Some(c) = find_cycle(stages, d, state)
        {
            return Some(c);
        }
    }
    state[i] = 2;
    None
}

fn diag(file: &str, inst: &Instruction, message: String, severity: Severity) -> Diagnostic {
    let line = inst.original.lines().next().unwrap_or_default();
    let d = Diagnostic::error(
        file,
        inst.span,
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
