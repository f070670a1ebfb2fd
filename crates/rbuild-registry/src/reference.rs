//! Image references parsed with Docker's rules: `alpine` is
//! `docker.io/library/alpine:latest`, a first component with a `.` or `:` (or `localhost`)
//! is a registry host, `@sha256:…` pins a digest.

use rbuild_core::Digest;
use std::fmt;
use std::str::FromStr;

/// The registry Docker Hub names are resolved against.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Reference {
    /// The registry as written (`docker.io`, `host:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host:port the registry API is reached at (`docker.io` → `registry-1.docker.io`).
    pub fn endpoint(&self) -> &str {
        endpoint_of(&self.registry)
    }

    /// The repository path (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was written.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What a manifest request names: the digest when given, else the tag (`latest`).
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.into()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest` (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// The API host for a registry name.
pub fn endpoint_of(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_ENDPOINT
    } else {
        registry
    }
}

/// The registry name a user means by `host` (`index.docker.io`, `https://…/v1/` → `docker.io`).
pub fn normalize_registry(host: &str) -> String {
    let h = host
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.into(),
        other => other.to_string(),
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        if self.tag.is_none() && self.digest.is_none() {
            write!(f, ":latest")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        parse(s)
    }
}

fn err(input: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        input: input.into(),
        reason: reason.into(),
    }
}

fn parse(input: &str) -> Result<Reference, ReferenceError> {
    if input.is_empty() {
        return Err(err(input, "empty reference"));
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (
            r,
            Some(d.parse::<Digest>().map_err(|e| err(input, e.to_string()))?),
        ),
        None => (input, None),
    };
    let (name, tag) = split_tag(rest);
    if let Some(t) = tag {
        check_tag(input, t)?;
    }
    let (registry, path) = split_registry(name);
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    check_repository(input, &repository)?;
    if registry.is_empty() {
        return Err(err(input, "empty registry host"));
    }
    Ok(Reference {
        registry,
        repository,
        tag: tag.map(str::to_string),
        digest,
    })
}

/// Splits a trailing `:tag` off, if the last `:` comes after the last `/`.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    match s.rfind(':') {
        Some(i) if !s[i..].contains('/') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    }
}

/// Docker's rule: the first component is a host when it has a `.` or `:`, is
/// `localhost`, or has upper-case letters; otherwise the name is on Docker Hub.
fn split_registry(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (normalize_registry(first), rest)
        }
        _ => (DOCKER_HUB.into(), name),
    }
}

fn check_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > 128 {
        return Err(err(
            input,
            format!("tag {tag:?} must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"),
        ));
    }
    Ok(())
}

fn check_repository(input: &str, repo: &str) -> Result<(), ReferenceError> {
    if repo.len() > 255 {
        return Err(err(input, "repository name longer than 255 characters"));
    }
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(err(input, "repository name must be lowercase"));
    }
    for component in repo.split('/') {
        if !valid_component(component) {
            return Err(err(
                input,
                format!(
                    "path component {component:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
                ),
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn docker_hub_short_names_expand() {
        let a = r("alpine");
        assert_eq!(a.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(a.endpoint(), "registry-1.docker.io");
        assert_eq!(a.manifest_reference(), "latest");
        assert_eq!(r("user/app:v1").to_string(), "docker.io/user/app:v1");
        assert_eq!(r("index.docker.io/library/busybox").registry(), "docker.io");
    }

    #[test]
    fn hosts_ports_and_digests() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let x = r(&format!("127.0.0.1:5000/a/b:t@{d}"));
        assert_eq!(x.registry(), "127.0.0.1:5000");
        assert_eq!(x.repository(), "a/b");
        assert_eq!(x.tag(), Some("t"));
        assert_eq!(x.manifest_reference(), d);
        assert_eq!(r("localhost/x").registry(), "localhost");
        assert_eq!(r("localhost:5000/x").repository(), "x");
        assert_eq!(r("ghcr.io/o/r").tag(), None);
    }

    #[test]
    fn invalid_references_say_why() {
        for bad in [
            "",
            "Upper",
            "a//b",
            "a:",
            "a:-x",
            "a@sha256:00",
            "x/-y",
            "host:5000/",
        ] {
            let e = bad.parse::<Reference>().unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
        assert!(
            "Alpine"
                .parse::<Reference>()
                .unwrap_err()
                .reason
                .contains("lowercase")
        );
    }

    #[test]
    fn components_follow_the_grammar() {
        assert!(valid_component("a__b"));
        assert!(valid_component("a---b"));
        assert!(valid_component("a.b_c"));
        assert!(!valid_component("a..b"));
        assert!(!valid_component("a___b"));
        assert!(!valid_component("_a"));
    }
}
