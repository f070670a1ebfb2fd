//! OCI annotations a build adds to what it writes, as buildx's `--annotation` and the
//! exporters' `annotation*` keys give them: on the manifests, on their descriptors in the
//! index, on the index, or on the index's descriptor in an OCI layout — each optionally for
//! one platform only.

use std::collections::BTreeMap;

use rbuild_core::Platform;

/// Which object an annotation goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationTarget {
    /// Each image manifest (buildx's default).
    Manifest,
    /// Each manifest's descriptor in the image index.
    ManifestDescriptor,
    /// The image index.
    Index,
    /// The index's descriptor in an OCI layout's `index.json`.
    IndexDescriptor,
}

impl AnnotationTarget {
    fn parse(s: &str) -> Option<AnnotationTarget> {
        Some(match s {
            "manifest" => AnnotationTarget::Manifest,
            "manifest-descriptor" => AnnotationTarget::ManifestDescriptor,
            "index" => AnnotationTarget::Index,
            "index-descriptor" => AnnotationTarget::IndexDescriptor,
            _ => return None,
        })
    }
}

/// One annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Where it goes.
    pub target: AnnotationTarget,
    /// Only for this platform's manifest (manifest targets only).
    pub platform: Option<Platform>,
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// A malformed annotation.
#[derive(Debug, thiserror::Error)]
#[error("annotation {text:?}: {reason}")]
pub struct BadAnnotation {
    text: String,
    reason: &'static str,
}

/// Every annotation of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations(pub Vec<Annotation>);

impl Annotations {
    /// Parses `--annotation [TYPE[,TYPE…]][\[PLATFORM\]]:KEY=VALUE` (no prefix: manifest).
    pub fn add_flag(&mut self, text: &str) -> Result<(), BadAnnotation> {
        let bad = |reason| BadAnnotation {
            text: text.to_string(),
            reason,
        };
        let (head, kv) = match text.split_once('=') {
            Some((left, value)) => match left.rsplit_once(':') {
                Some((head, key)) => (Some(head), (key, value)),
                None => (None, (left, value)),
            },
            None => return Err(bad("expected KEY=VALUE")),
        };
        let (types, platform) = match head {
            None => ("manifest", None),
            Some(h) => split_platform(h).ok_or_else(|| bad("unclosed [platform]"))?,
        };
        let types = if types.is_empty() { "manifest" } else { types };
        for t in types.split(',') {
            let target = AnnotationTarget::parse(t.trim()).ok_or_else(|| {
                bad("type must be manifest, manifest-descriptor, index or index-descriptor")
            })?;
            self.push(target, platform, kv.0, kv.1).map_err(bad)?;
        }
        Ok(())
    }

    /// Parses an exporter key `annotation[-TYPE][\[PLATFORM\]].KEY` with its value; `Ok(false)`
    /// when `key` is not an annotation key.
    pub fn add_output_key(&mut self, key: &str, value: &str) -> Result<bool, BadAnnotation> {
        let Some(rest) = key.strip_prefix("annotation") else {
            return Ok(false);
        };
        let bad = |reason| BadAnnotation {
            text: format!("{key}={value}"),
            reason,
        };
        let (head, name) = match rest.find('.') {
            Some(i) if !rest[..i].contains('[') || rest[..i].contains(']') => {
                (&rest[..i], &rest[i + 1..])
            }
            _ => match rest.find("].") {
                Some(i) => (&rest[..=i], &rest[i + 2..]),
                None => return Err(bad("expected annotation[-TYPE].KEY")),
            },
        };
        let (kind, platform) = split_platform(head).ok_or_else(|| bad("unclosed [platform]"))?;
        let target = match kind.strip_prefix('-') {
            None if kind.is_empty() => AnnotationTarget::Manifest,
            Some(t) => AnnotationTarget::parse(t).ok_or_else(|| {
                bad("type must be manifest, manifest-descriptor, index or index-descriptor")
            })?,
            None => return Err(bad("expected annotation[-TYPE].KEY")),
        };
        self.push(target, platform, name, value).map_err(bad)?;
        Ok(true)
    }

    fn push(
        &mut self,
        target: AnnotationTarget,
        platform: Option<&str>,
        key: &str,
        value: &str,
    ) -> Result<(), &'static str> {
        if key.is_empty() {
            return Err("empty key");
        }
        let platform = match platform {
            None => None,
            Some(p) => Some(p.parse::<Platform>().map_err(|_| "bad platform")?),
        };
        if platform.is_some()
            && !matches!(
                target,
                AnnotationTarget::Manifest | AnnotationTarget::ManifestDescriptor
            )
        {
            return Err("a platform applies to manifest annotations only");
        }
        self.0.push(Annotation {
            target,
            platform,
            key: key.to_string(),
            value: value.to_string(),
        });
        Ok(())
    }

    /// The annotations for `target` (for the manifest of `platform`), sorted by key.
    pub fn for_target(
        &self,
        target: AnnotationTarget,
        platform: Option<&Platform>,
    ) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter(|a| a.target == target)
            .filter(|a| match (&a.platform, platform) {
                (None, _) => true,
                (Some(want), Some(p)) => want.matches(p) || want == p,
                (Some(_), None) => false,
            })
            .map(|a| (a.key.clone(), a.value.clone()))
            .collect()
    }
}

/// Splits `TYPES[PLATFORM]` into the types and the platform; `None` when a `[` is unclosed.
fn split_platform(head: &str) -> Option<(&str, Option<&str>)> {
    match head.find('[') {
        None => Some((head, None)),
        Some(i) => {
            let rest = head[i + 1..].strip_suffix(']')?;
            Some((&head[..i], Some(rest)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_buildx_writes_them() {
        let mut a = Annotations::default();
        a.add_flag("org.opencontainers.image.title=app").unwrap();
        a.add_flag("index,manifest-descriptor:org.example.a=1")
            .unwrap();
        a.add_flag("manifest[linux/arm64]:org.example.arch=arm")
            .unwrap();
        assert!(a.add_flag("nothing").is_err());
        assert!(a.add_flag("bogus:k=v").is_err());
        let amd64: Platform = "linux/amd64".parse().unwrap();
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let m = a.for_target(AnnotationTarget::Manifest, Some(&amd64));
        assert_eq!(m.len(), 1);
        let m = a.for_target(AnnotationTarget::Manifest, Some(&arm64));
        assert_eq!(m.get("org.example.arch").map(String::as_str), Some("arm"));
        assert_eq!(a.for_target(AnnotationTarget::Index, None).len(), 1);
        assert_eq!(
            a.for_target(AnnotationTarget::ManifestDescriptor, Some(&amd64))
                .len(),
            1
        );
    }

    #[test]
    fn output_keys_parse() {
        let mut a = Annotations::default();
        assert!(a.add_output_key("annotation.k", "v").unwrap());
        assert!(a.add_output_key("annotation-index.i", "v").unwrap());
        assert!(
            a.add_output_key("annotation-manifest[linux/amd64].org.x", "v")
                .unwrap()
        );
        assert!(!a.add_output_key("dest", "x").unwrap());
        assert!(a.add_output_key("annotation-bogus.k", "v").is_err());
        let amd64: Platform = "linux/amd64".parse().unwrap();
        let m = a.for_target(AnnotationTarget::Manifest, Some(&amd64));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["k", "org.x"]);
    }
}
