//! `rbuild build --check` and `--call outline|targets|check`: look at a Dockerfile the way
//! `docker buildx build --call` does, without building anything.

use crate::cli::BuildArgs;
use anyhow::{Context, Result, bail};
use rbuild_core::Platform;
use rbuild_dockerfile::{Args, Dockerfile, Expander, Instruction, Keyword};
use rbuild_graph::{BaseResolver, BuildGraph, LowerOptions, RunMount};
use rbuild_image::ImageConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

/// What `--call` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Build (the default).
    Build,
    /// Run the lint rules and report; do not build.
    Check,
    /// List the build args the target uses.
    Outline,
    /// List the stages.
    Targets,
}

/// The `--call`/`--check` choice of a build command.
pub fn call_of(args: &BuildArgs) -> Result<Call> {
    if args.check {
        return Ok(Call::Check);
    }
    match args
        .call
        .as_deref()
        .map(|c| c.split(',').next().unwrap_or(c))
    {
        None | Some("build") => Ok(Call::Build),
        Some("check") => Ok(Call::Check),
        Some("outline") => Ok(Call::Outline),
        Some("targets") => Ok(Call::Targets),
        Some(other) => bail!("--call {other:?}: expected build, check, outline or targets"),
    }
}

/// Says once that `# syntax=` is recorded but not acted upon.
pub fn note_syntax(df: &Dockerfile) {
    if let Some(s) = &df.directives.syntax {
        eprintln!(
            "note: `# syntax={s}` is recorded but not used: rbuild has its own Dockerfile frontend and never pulls or runs another one"
        );
    }
}

/// `--check`: every lint rule over the Dockerfile, base images resolved through
/// `resolver`. Fails when the file has errors, or findings and `# check=error=true`.
pub fn check(df: &Dockerfile, opts: &LowerOptions, resolver: &mut dyn BaseResolver) -> Result<()> {
    note_syntax(df);
    let mut offline = crate::build::lint_offline::SkipUnresolved::new(resolver);
    let (mut lints, errors) = rbuild_graph::check(df, opts, &mut offline);
    // An interrupted check has seen only part of the file: report nothing of it.
    crate::build::stop_if_interrupted()?;
    offline.finish(&mut lints);
    if lints.is_empty() {
        println!("Check complete, no warnings found.");
    } else {
        println!("{}", rbuild_graph::render_lints(&lints));
        println!("Check complete, {} warning(s) found.", lints.len());
    }
    if !errors.is_empty() {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        bail!("{}", text.join("\n"));
    }
    let config = rbuild_graph::LintConfig::parse(df.directives.check.as_deref())
        .map_err(anyhow::Error::msg)?;
    if config.error && !lints.is_empty() {
        bail!(
            "lint violations found: {} warning(s) and `# check=error=true`",
            lints.len()
        );
    }
    Ok(())
}

/// Runs `--call outline` or `--call targets`; these only read the Dockerfile.
pub fn describe(
    args: &BuildArgs,
    call: Call,
    build_args: &BTreeMap<String, String>,
) -> Result<ExitCode> {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let src =
        std::fs::read(&path).with_context(|| format!("reading Dockerfile {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let df = rbuild_dockerfile::parse(&name, &src).map_err(|d| anyhow::anyhow!("{d}"))?;
    let text = String::from_utf8_lossy(&src).into_owned();
    let json = call_json(args.call.as_deref().unwrap_or_default())?;
    let out = match (call, json) {
        (Call::Targets, false) => targets(&df, &text),
        (Call::Targets, true) => pretty(&targets_json(&df, &text)),
        (_, false) => outline(&df, &text, args.target.as_deref(), build_args)?,
        (_, true) => pretty(&outline_json(
            &df,
            &text,
            args.target.as_deref(),
            build_args,
        )?),
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Whether `--call NAME,format=json` asks for JSON (`format=text`, the default, does not).
fn call_json(call: &str) -> Result<bool> {
    let mut json = false;
    for opt in call.split(',').skip(1) {
        match opt.split_once('=') {
            Some(("format", "json")) => json = true,
            Some(("format", "text")) => json = false,
            _ => bail!(
                "--call {call:?}: unknown option {opt:?}; expected format=json or format=text"
            ),
        }
    }
    Ok(json)
}

/// JSON indented by two spaces, as buildx prints subrequest results, with a final newline.
fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// A resolver that knows no image: the outline needs only the stage structure.
struct NoImages;

impl BaseResolver for NoImages {
    fn resolve(
        &mut self,
        _: &str,
        _: &Platform,
    ) -> Result<ImageConfig, rbuild_graph::ResolveFailure> {
        Ok(ImageConfig::default())
    }
}

/// The comment lines directly above line `line` (1-based), without their `#`.
fn comments_above(text: &str, line: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut n = line.saturating_sub(1);
    while n > 0 {
        let l = lines.get(n - 1).map(|l| l.trim()).unwrap_or_default();
        let Some(c) = l.strip_prefix('#') else {
            break;
        };
        out.push(c.trim().to_string());
        n -= 1;
    }
    out.reverse();
    out
}

/// BuildKit's doc comment: the comment line `# NAME description` above a definition.
fn doc_comment(text: &str, line: usize, name: &str) -> String {
    let prefix = format!("{name} ");
    comments_above(text, line)
        .into_iter()
        .find_map(|c| c.strip_prefix(&prefix).map(|d| d.trim().to_string()))
        .unwrap_or_default()
}

/// `--call targets,format=json`: BuildKit's target list shape, `{"targets": [{"name",
/// "default", "description", "base", "platform"}]}` with empty fields left out.
pub fn targets_json(df: &Dockerfile, text: &str) -> serde_json::Value {
    let froms: Vec<&Instruction> = df
        .instructions
        .iter()
        .filter(|i| i.keyword == Keyword::From)
        .collect();
    let mut list = Vec::new();
    for (i, f) in froms.iter().enumerate() {
        let name = stage_name(f).unwrap_or_default();
        let mut t = serde_json::Map::new();
        if !name.is_empty() {
            t.insert("name".into(), name.clone().into());
        }
        if i + 1 == froms.len() {
            t.insert("default".into(), true.into());
        }
        let desc = doc_comment(text, f.span.line, &name);
        if !desc.is_empty() {
            t.insert("description".into(), desc.into());
        }
        if let Args::Words(w) = &f.args
            && let Some(base) = w.first()
        {
            t.insert("base".into(), base.clone().into());
        }
        if let Some(p) = f.flag("platform").and_then(|p| p.value.clone()) {
            t.insert("platform".into(), p.into());
        }
        list.push(serde_json::Value::Object(t));
    }
    serde_json::json!({ "targets": list })
}

/// `--call targets`: every stage with its description; the last one is the default.
pub fn targets(df: &Dockerfile, text: &str) -> String {
    let froms: Vec<&Instruction> = df
        .instructions
        .iter()
        .filter(|i| i.keyword == Keyword::From)
        .collect();
    let mut rows = vec![["TARGET".to_string(), "DESCRIPTION".to_string()]];
    for (i, f) in froms.iter().enumerate() {
        let name = stage_name(f).unwrap_or_default();
        let desc = doc_comment(text, f.span.line, &name);
        let default = i + 1 == froms.len();
        let shown = match (name.is_empty(), default) {
            (true, true) => "(default)".to_string(),
            (false, true) => format!("{name} (default)"),
            _ => name,
        };
        rows.push([shown, desc]);
    }
    table(&rows)
}

fn stage_name(from: &Instruction) -> Option<String> {
    match &from.args {
        Args::Words(w) if w.len() == 3 => Some(w[2].clone()),
        _ => None,
    }
}

/// What `--call outline` reports: BuildKit's outline (target, build args, secrets, SSH).
#[derive(Debug, Default)]
pub struct Outline {
    /// The target stage's name ("" when unnamed).
    pub name: String,
    /// Its doc comment.
    pub description: String,
    /// Build args it uses: name, value, description.
    pub args: Vec<(String, String, String)>,
    /// Secret ids `RUN --mount=type=secret` uses, with whether one is required.
    pub secrets: Vec<(String, bool)>,
    /// SSH agent ids `RUN --mount=type=ssh` uses, with whether one is required.
    pub ssh: Vec<(String, bool)>,
}

/// `--call outline`: the target, the build args it uses (with values and descriptions), and
/// the secrets and SSH agents its RUN steps mount, as buildx prints them.
pub fn outline(
    df: &Dockerfile,
    text: &str,
    target: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Result<String> {
    let o = outline_data(df, text, target, build_args)?;
    let mut out = String::new();
    let mut head = Vec::new();
    if !o.name.is_empty() {
        head.push(["TARGET:".to_string(), o.name.clone()]);
    }
    if !o.description.is_empty() {
        head.push(["DESCRIPTION:".to_string(), o.description.clone()]);
    }
    if !head.is_empty() {
        out.push_str(&table_with(&head, 1));
        out.push('\n');
    }
    if !o.args.is_empty() {
        let mut rows = vec![[
            "BUILD ARG".to_string(),
            "VALUE".to_string(),
            "DESCRIPTION".to_string(),
        ]];
        rows.extend(
            o.args
                .iter()
                .map(|(k, v, d)| [k.clone(), v.clone(), d.clone()]),
        );
        out.push_str(&table(&rows));
        out.push('\n');
    }
    for (title, list) in [("SECRET", &o.secrets), ("SSH", &o.ssh)] {
        if list.is_empty() {
            continue;
        }
        let mut rows = vec![[title.to_string(), "REQUIRED".to_string()]];
        rows.extend(
            list.iter()
                .map(|(n, r)| [n.clone(), if *r { "true" } else { "" }.to_string()]),
        );
        out.push_str(&table(&rows));
        out.push('\n');
    }
    Ok(out)
}

/// `--call outline,format=json`: BuildKit's outline JSON (`name`, `description`, `args`
/// with `name`/`value`/`description`, `secrets` and `ssh` with `name`/`required`), empty
/// fields left out as Go's `omitempty` does.
pub fn outline_json(
    df: &Dockerfile,
    text: &str,
    target: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Result<serde_json::Value> {
    let o = outline_data(df, text, target, build_args)?;
    let mut m = serde_json::Map::new();
    if !o.name.is_empty() {
        m.insert("name".into(), o.name.into());
    }
    if !o.description.is_empty() {
        m.insert("description".into(), o.description.into());
    }
    let args: Vec<serde_json::Value> = o
        .args
        .into_iter()
        .map(|(k, v, d)| {
            let mut a = serde_json::Map::new();
            a.insert("name".into(), k.into());
            if !d.is_empty() {
                a.insert("description".into(), d.into());
            }
            if !v.is_empty() {
                a.insert("value".into(), v.into());
            }
            serde_json::Value::Object(a)
        })
        .collect();
    let needs = |list: Vec<(String, bool)>| -> Vec<serde_json::Value> {
        list.into_iter()
            .map(|(n, r)| {
                let mut a = serde_json::Map::new();
                a.insert("name".into(), n.into());
                if r {
                    a.insert("required".into(), true.into());
                }
                serde_json::Value::Object(a)
            })
            .collect()
    };
    for (key, list) in [
        ("args", args),
        ("secrets", needs(o.secrets)),
        ("ssh", needs(o.ssh)),
    ] {
        if !list.is_empty() {
            m.insert(key.into(), list.into());
        }
    }
    Ok(serde_json::Value::Object(m))
}

/// Collects what the outline shows.
pub fn outline_data(
    df: &Dockerfile,
    text: &str,
    target: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Result<Outline> {
    let opts = LowerOptions {
        target_platform: Platform::host(),
        build_platform: Platform::host(),
        build_args: build_args.clone(),
        target: target.map(str::to_string),
        all_stages: false,
    };
    let graph =
        rbuild_graph::lower(df, &opts, &mut NoImages).map_err(|e| anyhow::anyhow!("{e}"))?;
    let froms: Vec<&Instruction> = df
        .instructions
        .iter()
        .filter(|i| i.keyword == Keyword::From)
        .collect();
    let split = df
        .instructions
        .iter()
        .position(|i| i.keyword == Keyword::From)
        .unwrap_or(df.instructions.len());
    // Global ARGs: name -> (default, line).
    let mut globals: BTreeMap<String, (Option<String>, usize)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for inst in &df.instructions[..split] {
        for (k, v) in arg_words(inst) {
            if !order.contains(&k) {
                order.push(k.clone());
            }
            globals.insert(k, (v, inst.span.line));
        }
    }
    let mut used: Vec<(String, Option<String>, usize)> = Vec::new();
    let mut seen = BTreeSet::new();
    let none = |_: &str| None;
    for stage in graph.stages.iter().filter(|s| s.needed) {
        let Some(from) = froms.get(stage.index) else {
            continue;
        };
        if let Args::Words(w) = &from.args {
            let mut names = Expander::new(&none, df.directives.escape)
                .used_names(&w[0])
                .unwrap_or_default();
            if let Some(p) = from.flag("platform").and_then(|f| f.value.as_deref()) {
                names.extend(
                    Expander::new(&none, df.directives.escape)
                        .used_names(p)
                        .unwrap_or_default(),
                );
            }
            for n in names {
                if let Some((v, line)) = globals.get(&n)
                    && seen.insert(n.clone())
                {
                    used.push((n, v.clone(), *line));
                }
            }
        }
        let end = froms
            .get(stage.index + 1)
            .map(|f| f.span.line)
            .unwrap_or(usize::MAX);
        for inst in df.instructions.iter().filter(|i| {
            i.keyword == Keyword::Arg && i.span.line > from.span.line && i.span.line < end
        }) {
            for (k, v) in arg_words(inst) {
                if seen.insert(k.clone()) {
                    let (v, line) = match (v, globals.get(&k)) {
                        (Some(v), _) => (Some(v), inst.span.line),
                        (None, Some((g, gl))) => (g.clone(), *gl),
                        (None, None) => (None, inst.span.line),
                    };
                    used.push((k, v, line));
                }
            }
        }
    }
    used.sort_by_key(|u| u.2);
    let target_stage = &graph.stages[graph.target];
    let name = target_stage.name.clone().unwrap_or_default();
    let description = froms
        .get(graph.target)
        .map(|f| doc_comment(text, f.span.line, &name))
        .unwrap_or_default();
    let args = used
        .into_iter()
        .map(|(k, v, line)| {
            let value = build_args.get(&k).cloned().or(v).unwrap_or_default();
            let desc = doc_comment(text, line, &k);
            (k, value, desc)
        })
        .collect();
    let (secrets, ssh) = mount_needs(&graph);
    Ok(Outline {
        name,
        description,
        args,
        secrets,
        ssh,
    })
}

/// An id a RUN mount needs, and whether it is required.
type Need = (String, bool);

/// The secret and SSH ids the needed stages' RUN steps mount, sorted by id; an id is
/// required when any of its mounts requires it.
fn mount_needs(graph: &BuildGraph) -> (Vec<Need>, Vec<Need>) {
    let mut secrets: BTreeMap<String, bool> = BTreeMap::new();
    let mut ssh: BTreeMap<String, bool> = BTreeMap::new();
    for stage in graph.stages.iter().filter(|s| s.needed) {
        for op in &stage.ops {
            let rbuild_graph::OpKind::Run(run) = &op.kind else {
                continue;
            };
            for m in &run.mounts {
                let (map, id, required) = match m {
                    RunMount::Secret { id, required, .. } => (&mut secrets, id, *required),
                    RunMount::Ssh { id, required, .. } => (&mut ssh, id, *required),
                    _ => continue,
                };
                *map.entry(id.clone()).or_default() |= required;
            }
        }
    }
    (secrets.into_iter().collect(), ssh.into_iter().collect())
}

fn arg_words(inst: &Instruction) -> Vec<(String, Option<String>)> {
    match (&inst.keyword, &inst.args) {
        (Keyword::Arg, Args::Words(w)) => w
            .iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(unquote(v))),
                None => (w.clone(), None),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn unquote(v: &str) -> String {
    let none = |_: &str| None;
    Expander::new(&none, '\\')
        .skip_unset(true)
        .word(v)
        .unwrap_or_else(|_| v.to_string())
}

/// Columns separated by three spaces, as buildx's tabwriter prints them.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    table_with(rows, 3)
}

fn table_with<const N: usize>(rows: &[[String; N]], pad: usize) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < N {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DF: &str = "\
# VERSION the release to build
ARG VERSION=1.2
FROM busybox AS base

# build compiles the thing
FROM base AS build
# FLAVOR which variant
ARG FLAVOR=small
ARG VERSION

FROM busybox AS release
";

    #[test]
    fn targets_list_stages_with_comments() {
        let df = rbuild_dockerfile::parse("Dockerfile", DF.as_bytes()).unwrap();
        assert_eq!(
            targets(&df, DF),
            "TARGET              DESCRIPTION\nbase\nbuild               compiles the thing\nrelease (default)\n"
        );
    }

    #[test]
    fn outline_lists_secrets_and_ssh_and_prints_json() {
        let df_text = "FROM busybox AS build\nRUN --mount=type=secret,id=npmrc,required=true --mount=type=ssh true\nRUN --mount=type=secret,id=aws --mount=type=secret,id=npmrc cat\nFROM busybox\nRUN --mount=type=secret,id=unused true\nCOPY --from=build / /\n";
        let df = rbuild_dockerfile::parse("Dockerfile", df_text.as_bytes()).unwrap();
        let out = outline(&df, df_text, Some("build"), &BTreeMap::new()).unwrap();
        assert_eq!(
            out,
            "TARGET: build\n\nSECRET   REQUIRED\naws\nnpmrc    true\n\nSSH       REQUIRED\ndefault\n\n"
        );
        let json = outline_json(&df, df_text, Some("build"), &BTreeMap::new()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "build",
                "secrets": [{"name": "aws"}, {"name": "npmrc", "required": true}],
                "ssh": [{"name": "default"}]
            })
        );
        assert!(call_json("outline,format=json").unwrap());
        assert!(!call_json("outline").unwrap());
        assert!(call_json("outline,format=yaml").is_err());
    }

    #[test]
    fn targets_json_lists_stages() {
        let df = rbuild_dockerfile::parse("Dockerfile", DF.as_bytes()).unwrap();
        assert_eq!(
            targets_json(&df, DF),
            serde_json::json!({"targets": [
                {"name": "base", "base": "busybox"},
                {"name": "build", "description": "compiles the thing", "base": "base"},
                {"name": "release", "default": true, "base": "busybox"}
            ]})
        );
    }

    #[test]
    fn outline_lists_the_target_args() {
        let df = rbuild_dockerfile::parse("Dockerfile", DF.as_bytes()).unwrap();
        let mut args = BTreeMap::new();
        args.insert("FLAVOR".to_string(), "big".to_string());
        let out = outline(&df, DF, Some("build"), &args).unwrap();
        assert_eq!(
            out,
            "TARGET:      build\nDESCRIPTION: compiles the thing\n\nBUILD ARG   VALUE   DESCRIPTION\nVERSION     1.2     the release to build\nFLAVOR      big     which variant\n\n"
        );
    }
}
