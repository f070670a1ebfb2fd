//! Image references parsed and normalised with Docker's rules (`distribution/reference`,
//! `ParseNormalizedNamed`): `alpine` is `docker.io/library/alpine`, `me/app:1` is
//! `docker.io/me/app:1`, a first component with a `.` or `:`, `localhost`, or an upper-case
//! letter is a registry host (`index.docker.io` means `docker.io`), `@sha256:…` pins a
//! digest. A name with neither tag nor digest means its `latest` tag.

use crate::{Digest, DigestError};
use std::fmt;
use std::str::FromStr;

/// The registry Docker Hub names are resolved against.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
/// The name Docker Hub had before `docker.io`; references naming it mean `docker.io`.
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// The tag a name with neither tag nor digest means.
const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the length of `registry/repository`.
const NAME_MAX: usize = 255;
/// Docker's limit on the length of a tag.
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {input:?}: {kind}")]
pub struct ReferenceError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub kind: ReferenceErrorKind,
}

/// What is wrong with a reference.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceErrorKind {
    /// Nothing was given.
    #[error("empty reference")]
    Empty,
    /// The part after `@` is not a digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The part after the last `:` is not a tag.
    #[error("tag {0:?} must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'")]
    Tag(String),
    /// The first component is a registry host that is not a valid host.
    #[error("registry host {0:?} must be a host name or [IPv6 address] with an optional :port")]
    Registry(String),
    /// `registry/repository` is too long.
    #[error("repository name longer than 255 characters")]
    TooLong,
    /// The repository path has upper-case letters.
    #[error("repository name must be lowercase")]
    Uppercase,
    /// A path component breaks the grammar.
    #[error(
        "path component {0:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
    )]
    Component(String),
}

impl Reference {
    /// Parses and normalises `text` as Docker does.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        parse(text).map_err(|kind| ReferenceError {
            input: text.to_string(),
            kind,
        })
    }

    /// The registry host (`docker.io`, `host:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host:port the registry API is reached at (`docker.io` → `registry-1.docker.io`).
    pub fn endpoint(&self) -> &str {
        endpoint_of(&self.registry)
    }

    /// The repository path below the registry (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `registry/repository`, without tag or digest (`docker.io/library/alpine`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as Docker shows it: `app` for `docker.io/library/app`, `me/app` for
    /// `docker.io/me/app`, the full name otherwise.
    pub fn familiar_name(&self) -> String {
        if self.registry != DOCKER_HUB {
            return self.name();
        }
        self.repository
            .strip_prefix("library/")
            .filter(|p| !p.contains('/'))
            .unwrap_or(&self.repository)
            .to_string()
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
            (None, None) => DEFAULT_TAG.into(),
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

    /// The reference as Docker shows it (`app:latest`, `me/app@sha256:…`).
    pub fn familiar(&self) -> String {
        format!("{}{}", self.familiar_name(), self.suffix())
    }

    /// `:tag`, `@digest` or both; `:latest` when neither was written.
    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        if s.is_empty() {
            s.push(':');
            s.push_str(DEFAULT_TAG);
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name(), self.suffix())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
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

/// The registry a user means by `host` when logging in or keying credentials
/// (`index.docker.io`, `https://…/v1/` → `docker.io`).
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

fn parse(input: &str) -> Result<Reference, ReferenceErrorKind> {
    if input.is_empty() {
        return Err(ReferenceErrorKind::Empty);
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (r, Some(d.parse::<Digest>()?)),
        None => (input, None),
    };
    let (name, tag) = split_tag(rest);
    if let Some(t) = tag {
        check_tag(t)?;
    }
    let (registry, path) = split_registry(name);
    check_registry(registry)?;
    let registry = if registry == LEGACY_DOCKER_HUB {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    check_repository(&repository)?;
    if registry.len() + 1 + repository.len() > NAME_MAX {
        return Err(ReferenceErrorKind::TooLong);
    }
    Ok(Reference {
        registry: registry.to_string(),
        repository,
        tag: tag.map(str::to_string),
        digest,
    })
}

/// Splits a trailing `:tag` off, if the last `:` comes after the last `/`.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    match s.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (s, None),
    }
}

/// Docker's rule: the first component is a host when it has a `.` or `:`, is
/// `localhost`, or has upper-case letters; otherwise the name is on Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

/// `host[:port]`, where host is a domain name or `[IPv6]` and port is digits.
fn check_registry(registry: &str) -> Result<(), ReferenceErrorKind> {
    let (host, port) = match registry.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) => (Some(addr).filter(|a| valid_ipv6(a)), rest),
            None => (None, ""),
        },
        None => {
            let (h, port) = registry.split_at(registry.find(':').unwrap_or(registry.len()));
            (Some(h).filter(|h| valid_domain(h)), port)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if host.is_none() || !port_ok {
        return Err(ReferenceErrorKind::Registry(registry.to_string()));
    }
    Ok(())
}

/// `[a-fA-F0-9:]+`, the loose IPv6 form Docker accepts between brackets.
fn valid_ipv6(addr: &str) -> bool {
    !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
}

/// Dot-separated components of letters and digits with inner `-`s.
fn valid_domain(domain: &str) -> bool {
    domain.split('.').all(|c| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
    })
}

/// `[\w][\w.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), ReferenceErrorKind> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let first_ok = chars.next().is_some_and(word);
    let rest_ok = chars.all(|c| word(c) || matches!(c, '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > TAG_MAX {
        return Err(ReferenceErrorKind::Tag(tag.to_string()));
    }
    Ok(())
}

fn check_repository(repo: &str) -> Result<(), ReferenceErrorKind> {
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ReferenceErrorKind::Uppercase);
    }
    match repo.split('/').find(|c| !valid_component(c)) {
        Some(bad) => Err(ReferenceErrorKind::Component(bad.to_string())),
        None => Ok(()),
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    c.split(|x: char| x.is_ascii_lowercase() || x.is_ascii_digit())
        .all(|sep| {
            sep.is_empty() || matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn names_normalise_as_docker_does() {
        let a = r("app");
        assert_eq!(a.to_string(), "docker.io/library/app:latest");
        assert_eq!(a.familiar(), "app:latest");
        let a = r("me/app:1");
        assert_eq!(a.to_string(), "docker.io/me/app:1");
        assert_eq!(a.familiar_name(), "me/app");
        let a = r("localhost:5000/a/b:2");
        assert_eq!(a.registry(), "localhost:5000");
        assert_eq!(a.familiar(), "localhost:5000/a/b:2");
        let a = r(&format!("busybox@{D}"));
        assert_eq!(a.tag(), None);
        assert_eq!(a.digest().unwrap().to_string(), D);
        assert_eq!(a.familiar(), format!("busybox@{D}"));
    }

    #[test]
    fn docker_hub_short_names_expand() {
        let a = r("alpine");
        assert_eq!(a.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(a.name(), "docker.io/library/alpine");
        assert_eq!(a.endpoint(), "registry-1.docker.io");
        assert_eq!(a.manifest_reference(), "latest");
        assert_eq!(r("user/app:v1").to_string(), "docker.io/user/app:v1");
        let legacy = r("index.docker.io/busybox");
        assert_eq!(legacy.registry(), "docker.io");
        assert_eq!(legacy.repository(), "library/busybox");
        assert_eq!(r("index.docker.io/library/busybox").registry(), "docker.io");
        // Only the legacy index name is Docker Hub; other hosts are taken as written.
        assert_eq!(
            r("registry-1.docker.io/x/y").registry(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn hosts_ports_and_digests() {
        let x = r(&format!("127.0.0.1:5000/a/b:t@{D}"));
        assert_eq!(x.registry(), "127.0.0.1:5000");
        assert_eq!(x.repository(), "a/b");
        assert_eq!(x.tag(), Some("t"));
        assert_eq!(x.manifest_reference(), D);
        assert_eq!(x.to_string(), format!("127.0.0.1:5000/a/b:t@{D}"));
        assert_eq!(r("localhost/x").registry(), "localhost");
        assert_eq!(r("localhost:5000/x").repository(), "x");
        assert_eq!(r("ghcr.io/o/r").tag(), None);
        assert_eq!(r("[::1]:5000/a").registry(), "[::1]:5000");
        assert_eq!(r("Upper/x").registry(), "Upper");
        assert_eq!(r("a_b").repository(), "library/a_b");
    }

    #[test]
    fn with_tag_and_digest_replace_each_other() {
        let d: Digest = D.parse().unwrap();
        let pinned = r("app:1").with_digest(d.clone());
        assert_eq!((pinned.tag(), pinned.digest()), (None, Some(&d)));
        let tagged = pinned.with_tag("2");
        assert_eq!((tagged.tag(), tagged.digest()), (Some("2"), None));
    }

    #[test]
    fn invalid_references_say_why() {
        for bad in [
            "",
            "App",
            "Upper",
            "a/../b",
            "a:",
            "a:-x",
            "a:.x",
            "a@sha256:zz",
            "a@sha256:00",
            "../x",
            "a//b",
            "x/-y",
            "a..b",
            "a-",
            "host:5000/",
            "host:/x",
            "host:p/x",
            "-host.com/x",
            "a_b.com/x",
            "[::1/x",
            "[]:5000/x",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(!e.kind.to_string().is_empty(), "{bad:?}");
        }
        let e = "Alpine".parse::<Reference>().unwrap_err();
        assert!(e.kind.to_string().contains("lowercase"));
        assert_eq!(
            e.to_string(),
            "invalid image reference \"Alpine\": repository name must be lowercase"
        );
    }

    #[test]
    fn lengths_are_limited_as_docker_limits_them() {
        assert!(Reference::parse(&format!("a:{}", "t".repeat(128))).is_ok());
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
        // docker.io/library/ is 18 characters of the 255.
        assert!(Reference::parse(&"a".repeat(255 - 18)).is_ok());
        let long = Reference::parse(&"a".repeat(255 - 17)).unwrap_err();
        assert!(matches!(long.kind, ReferenceErrorKind::TooLong));
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
