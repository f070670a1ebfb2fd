//! Build-argument scopes: the global scope (before the first FROM, plus the automatic
//! platform ARGs) and each stage's declared ARGs.

use rbuild_core::Platform;
use std::collections::{BTreeMap, BTreeSet};

/// The automatic ARGs BuildKit defines in the global scope.
pub fn platform_args(target: &Platform, build: &Platform) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os().to_string());
        m.insert(format!("{prefix}ARCH"), p.architecture().to_string());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant().unwrap_or_default().to_string(),
        );
    }
    m
}

/// The proxy ARGs Docker predefines; they are usable without `ARG` and never recorded.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Tracks which `--build-arg`s some ARG consumed, for the "never consumed" warning.
#[derive(Debug, Default)]
pub struct ArgUse {
    used: BTreeSet<String>,
}

impl ArgUse {
    /// Records that `name` was declared somewhere.
    pub fn mark(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }

    /// The build args no ARG declared (proxy args excepted).
    pub fn unused<'a>(&self, build_args: &'a BTreeMap<String, String>) -> Vec<&'a str> {
        build_args
            .keys()
            .filter(|k| !self.used.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_args_follow_the_platforms() {
        let t: Platform = "linux/arm/v7".parse().unwrap();
        let b: Platform = "linux/amd64".parse().unwrap();
        let m = platform_args(&t, &b);
        assert_eq!(m["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(m["TARGETARCH"], "arm");
        assert_eq!(m["TARGETVARIANT"], "v7");
        assert_eq!(m["BUILDARCH"], "amd64");
        assert_eq!(m["BUILDVARIANT"], "");
    }
}
