//! A stable JSON dump of the syntax tree, for golden tests and `--debug` output.

use crate::ast::{Args, Dockerfile, Instruction};
use serde_json::{Map, Value, json};

/// One object per instruction:
/// `{"keyword", "flags", "args", "heredocs", "start_line", "end_line"}`, plus
/// `"json": true` when the JSON array (exec) form was used.
///
/// `args` holds: Exec → its elements; Shell → one string (none when empty); Words →
/// the words; Pairs → name, value, name, value...; HEALTHCHECK → `["NONE"]` or `"CMD"`
/// followed by the command's args; ONBUILD → `[]` and the trigger as a nested object
/// under `"trigger"` (without line numbers, which are the ONBUILD's).
pub fn to_debug_json(df: &Dockerfile) -> Value {
    Value::Array(
        df.instructions
            .iter()
            .map(|i| instruction(i, true))
            .collect(),
    )
}

fn instruction(i: &Instruction, lines: bool) -> Value {
    let mut o = Map::new();
    o.insert("keyword".into(), json!(i.keyword.as_str()));
    let flags: Vec<String> = i.flags.iter().map(|f| f.to_arg()).collect();
    o.insert("flags".into(), json!(flags));
    o.insert("args".into(), json!(args(&i.args)));
    if i.args.is_exec() {
        o.insert("json".into(), json!(true));
    }
    if let Args::Onbuild(trigger) = &i.args {
        o.insert("trigger".into(), instruction(trigger, false));
    }
    let heredocs: Vec<Value> = i
        .heredocs
        .iter()
        .map(|h| {
            let mut d = Map::new();
            d.insert("name".into(), json!(h.name));
            d.insert("content".into(), json!(h.content));
            d.insert("expand".into(), json!(h.expand));
            d.insert("chomp".into(), json!(h.chomp));
            if let Some(fd) = h.file_descriptor {
                d.insert("file_descriptor".into(), json!(fd));
            }
            Value::Object(d)
        })
        .collect();
    o.insert("heredocs".into(), Value::Array(heredocs));
    if lines {
        o.insert("start_line".into(), json!(i.span.line));
        o.insert("end_line".into(), json!(i.span.end_line));
    }
    Value::Object(o)
}

fn args(a: &Args) -> Vec<String> {
    match a {
        Args::Exec(v) | Args::Words(v) => v.clone(),
        Args::Shell(s) if s.is_empty() => Vec::new(),
        Args::Shell(s) => vec![s.clone()],
        Args::Pairs(p) => p.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect(),
        Args::Healthcheck(None) => vec!["NONE".into()],
        Args::Healthcheck(Some(cmd)) => {
            let mut v = vec!["CMD".to_string()];
            v.extend(args(cmd));
            v
        }
        Args::Onbuild(_) => Vec::new(),
    }
}
