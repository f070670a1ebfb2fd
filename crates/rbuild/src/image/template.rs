//! The small subset of Go's text/template that `inspect -f` needs: literal text,
//! `{{.Field.Sub}}`, `{{.}}`, `{{json .X}}`, `{{upper .X}}`, `{{lower .X}}`.

use anyhow::{Result, bail};
use serde_json::Value;

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Action {
        func: Option<String>,
        path: Vec<String>,
    },
}

impl Template {
    /// Parses a template; unknown functions and unclosed actions are errors.
    pub fn parse(text: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            parts.push(Part::Text(rest[..start].to_string()));
            let Some(len) = rest[start..].find("}}") else {
                bail!("template {text:?}: unclosed action");
            };
            let inner =
                rest[start + 2..start + len].trim_matches(|c: char| c == '-' || c.is_whitespace());
            parts.push(action(text, inner)?);
            rest = &rest[start + len + 2..];
        }
        parts.push(Part::Text(rest.to_string()));
        Ok(Template { parts })
    }

    /// Renders against a JSON document.
    pub fn render(&self, doc: &Value) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action { func, path } => {
                    let v = path.iter().try_fold(doc, |v, k| v.get(k));
                    out.push_str(&match (func.as_deref(), v) {
                        (Some("json"), Some(v)) => serde_json::to_string(v)?,
                        (Some("json"), None) => "null".into(),
                        (Some("upper"), v) => go_string(v).to_uppercase(),
                        (Some("lower"), v) => go_string(v).to_lowercase(),
                        (_, v) => go_string(v),
                    });
                }
            }
        }
        Ok(out)
    }
}

fn action(text: &str, inner: &str) -> Result<Part> {
    let words: Vec<&str> = inner.split_whitespace().collect();
    let (func, arg) = match words.as_slice() {
        [arg] => (None, *arg),
        [f @ ("json" | "upper" | "lower"), arg] => (Some(f.to_string()), *arg),
        _ => bail!(
            "template {text:?}: rbuild supports {{{{.Field}}}}, {{{{json .Field}}}}, {{{{upper .Field}}}} and {{{{lower .Field}}}}, not {{{{{inner}}}}}"
        ),
    };
    let Some(path) = arg.strip_prefix('.') else {
        bail!("template {text:?}: {arg:?} is not a field (write .{arg})");
    };
    let path = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Ok(Part::Action { func, path })
}

/// A value as Go's `fmt` prints it in a template.
fn go_string(v: Option<&Value>) -> String {
    match v {
        // Docker renders its inspect structs, where an absent field is empty.
        None => String::new(),
        Some(Value::Null) => "<no value>".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => format!(
            "[{}]",
            a.iter()
                .map(|x| go_string(Some(x)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Some(Value::Object(o)) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, x)| format!("{k}:{}", go_string(Some(x))))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_json_render() {
        let doc =
            serde_json::json!({"Os": "linux", "Architecture": "arm64", "Config": {"Cmd": ["sh"]}});
        let t =
            Template::parse("{{.Os}}/{{.Architecture}} {{json .Config.Cmd}} {{.Variant}}").unwrap();
        assert_eq!(t.render(&doc).unwrap(), "linux/arm64 [\"sh\"] ");
        assert!(Template::parse("{{range .X}}").is_err());
        assert!(Template::parse("{{.Os").is_err());
    }
}
