//! Image names as docker writes and normalises them: `app` is
//! `docker.io/library/app:latest`, `me/app:1` is `docker.io/me/app:1`, a first component
//! with a dot, a colon or `localhost` is a registry host; `@sha256:...` pins a digest.

use crate::ImagesError;
use rbuild_core::Digest;
use std::fmt;

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host (`docker.io` when none is written).
    pub domain: String,
    /// Repository path below the host (`library/app` for official docker.io images).
    pub path: String,
    /// The tag; `latest` when neither a tag nor a digest is written.
    pub tag: Option<String>,
    /// A pinned digest (`name@sha256:...`).
    pub digest: Option<Digest>,
}

const DEFAULT_DOMAIN: &str = "docker.io";

impl Reference {
    /// Parses and normalises a reference as docker does.
    pub fn parse(text: &str) -> Result<Reference, ImagesError> {
        let bad = |why: &str| ImagesError::BadReference(text.to_string(), why.to_string());
        let (name, digest) = match text.split_once('@') {
            Some((n, d)) => (
                n,
                Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?),
            ),
            None => (text, None),
        };
        let (name, tag) = split_tag(name);
        if let Some(t) = tag {
            check_tag(t).map_err(bad)?;
        }
        let (domain, path) = split_domain(name);
        check_domain(domain).map_err(bad)?;
        check_path(path).map_err(bad)?;
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(Reference {
            domain: domain.to_string(),
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`, e.g. `docker.io/library/app`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as docker shows it: `app` for `docker.io/library/app`, `me/app` for
    /// `docker.io/me/app`, the full name otherwise.
    pub fn familiar_repository(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        self.path
            .strip_prefix("library/")
            .filter(|p| !p.contains('/'))
            .unwrap_or(&self.path)
            .to_string()
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The repository and tag as docker shows them (`app:latest`).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits a trailing `:tag` (a colon after the last slash) off a name.
fn split_tag(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name, None),
    }
}

/// Splits the registry host off a name (docker's rule: the first component is a host
/// when it has a dot or a colon or is `localhost`).
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

fn check_domain(domain: &str) -> Result<(), &'static str> {
    let ok = domain
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    ok.then_some(())
        .ok_or("a registry host is letters, digits, '.', '-' and a ':port'")
}

fn check_tag(tag: &str) -> Result<(), &'static str> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    ok.then_some(())
        .ok_or("a tag is 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
}

fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > 255 {
        return Err("the repository name is empty or longer than 255 characters");
    }
    for component in path.split('/') {
        let ok = component
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !ok {
            return Err(
                "repository components are lowercase letters, digits and '.', '_', '-' (starting with a letter or digit)",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_as_docker_does() {
        let r = Reference::parse("app").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/app:latest");
        assert_eq!(r.familiar(), "app:latest");
        let r = Reference::parse("me/app:1").unwrap();
        assert_eq!(r.to_string(), "docker.io/me/app:1");
        assert_eq!(r.familiar_repository(), "me/app");
        let r = Reference::parse("localhost:5000/a/b:2").unwrap();
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.familiar(), "localhost:5000/a/b:2");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.unwrap().to_string(), d);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            "App",
            "a/../b",
            "a:",
            "a:-x",
            "a@sha256:zz",
            "../x",
            "a//b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }
}
