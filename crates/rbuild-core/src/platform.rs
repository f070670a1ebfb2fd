//! Target platforms (`os/arch[/variant]`) with the same normalisation docker and
//! BuildKit apply, so `aarch64`, `arm64/v8` and `arm64` are one platform.

use std::fmt;
use std::str::FromStr;

/// An OCI platform: operating system, CPU architecture and optional variant,
/// always held in normalised form (`linux/arm64`, `linux/arm/v7`, `linux/386`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// Why a string is not a platform.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// Empty parts or too many slashes.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64")]
    Syntax(String),
}

impl Platform {
    /// Builds a platform from parts, normalising architecture aliases and variants.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let arch = architecture.to_ascii_lowercase();
        let variant = variant
            .filter(|v| !v.is_empty())
            .map(str::to_ascii_lowercase);
        let (architecture, variant) = normalise(&arch, variant);
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// The platform of the running host (its kernel's CPU, Linux).
    pub fn host() -> Platform {
        Platform::new("linux", std::env::consts::ARCH, None)
    }

    /// Operating system, e.g. `linux`.
    pub fn os(&self) -> &str {
        &self.os
    }

    /// Normalised architecture, e.g. `arm64`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Normalised variant, e.g. `v7` for arm; `None` where there is none.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// The name QEMU gives its user-mode emulator for this architecture
    /// (`qemu-<name>-static`), or `None` for architectures QEMU does not emulate.
    pub fn qemu_name(&self) -> Option<&'static str> {
        Some(match self.architecture.as_str() {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            "arm" => "arm",
            "386" => "i386",
            "ppc64le" => "ppc64le",
            "ppc64" => "ppc64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "mips64le" => "mips64el",
            "mips64" => "mips64",
            "mipsle" => "mipsel",
            "mips" => "mips",
            "loong64" => "loongarch64",
            _ => return None,
        })
    }

    /// Whether a process of this platform runs on a `host` CPU without emulation:
    /// the same platform, or a 32-bit sibling the host kernel can run (386 on amd64).
    pub fn runs_natively_on(&self, host: &Platform) -> bool {
        if self.os != host.os {
            return false;
        }
        self.architecture == host.architecture
            || (self.architecture == "386" && host.architecture == "amd64")
    }

    /// Whether a 32-bit process of this platform needs the `linux32` personality when it
    /// runs natively on `host`, so `uname -m` reports the 32-bit machine.
    pub fn needs_linux32_on(&self, host: &Platform) -> bool {
        self.architecture == "386" && host.architecture == "amd64"
    }

    /// Whether an image built for `candidate` may serve a request for `self`,
    /// following the registry rules: equal after normalisation, or arm with a
    /// missing variant on either side (treated as v7), or arm64 with v8 / none.
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        if self.variant == candidate.variant {
            return true;
        }
        match self.architecture.as_str() {
            "arm" => {
                self.variant.as_deref().unwrap_or("v7")
                    == candidate.variant.as_deref().unwrap_or("v7")
            }
            "arm64" => {
                self.variant.as_deref().unwrap_or("v8")
                    == candidate.variant.as_deref().unwrap_or("v8")
            }
            "amd64" => {
                self.variant.as_deref().unwrap_or("v1")
                    == candidate.variant.as_deref().unwrap_or("v1")
            }
            _ => false,
        }
    }

    /// The `uname -m` a process of this platform sees under Linux (and QEMU), used to
    /// check emulation end to end.
    pub fn uname_machine(&self) -> Option<&'static str> {
        Some(match (self.architecture.as_str(), self.variant()) {
            ("amd64", _) => "x86_64",
            ("arm64", _) => "aarch64",
            ("arm", Some("v6")) => "armv6l",
            ("arm", Some("v5")) => "armv5tel",
            ("arm", _) => "armv7l",
            ("386", _) => "i686",
            ("ppc64le", _) => "ppc64le",
            ("s390x", _) => "s390x",
            ("riscv64", _) => "riscv64",
            ("mips64le", _) => "mips64",
            ("loong64", _) => "loongarch64",
            _ => return None,
        })
    }
}

fn normalise(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    let v = variant.as_deref();
    let (a, v): (&str, Option<&str>) = match (arch, v) {
        ("x86_64" | "x86-64" | "amd64", Some("v1")) => ("amd64", None),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", Some("v8") | None) => ("arm64", None),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", Some("v7")),
        ("armel", _) => ("arm", Some("v6")),
        ("arm", None) => ("arm", Some("v7")),
        ("arm", Some(v)) => ("arm", Some(v.strip_prefix("arm").unwrap_or(v))),
        ("armv6" | "armv6l", _) => ("arm", Some("v6")),
        ("armv7" | "armv7l", _) => ("arm", Some("v7")),
        ("armv8" | "armv8l", _) => ("arm64", None),
        ("i386" | "i486" | "i586" | "i686" | "x86" | "386", _) => ("386", None),
        ("ppc64el", v) => ("ppc64le", v),
        ("mips64el", v) => ("mips64le", v),
        ("loongarch64", v) => ("loong64", v),
        (a, v) => (a, v),
    };
    (a.to_string(), v.map(str::to_string))
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError::Syntax(s.into()));
        }
        match parts.as_slice() {
            [arch] if *arch != "linux" => Ok(Platform::new("linux", arch, None)),
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(PlatformError::Syntax(s.into())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Platform({self})")
    }
}

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn aliases_normalise() {
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armel").to_string(), "linux/arm/v6");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/i386").to_string(), "linux/386");
        assert_eq!(p("linux/ppc64el").to_string(), "linux/ppc64le");
        assert_eq!(p("arm64").to_string(), "linux/arm64");
    }

    #[test]
    fn bad_platforms_are_rejected() {
        assert!("linux/".parse::<Platform>().is_err());
        assert!("linux/arm/v7/x".parse::<Platform>().is_err());
        assert!("".parse::<Platform>().is_err());
    }

    #[test]
    fn variant_fallbacks_match() {
        let arm64_v8 = Platform::new("linux", "arm64", Some("v8"));
        assert!(p("linux/arm64").matches(&arm64_v8));
        let arm_bare = Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: None,
        };
        assert!(p("linux/arm/v7").matches(&arm_bare));
        assert!(!p("linux/arm/v6").matches(&arm_bare));
        assert!(!p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
    }

    #[test]
    fn qemu_names_and_native_checks() {
        assert_eq!(p("linux/arm/v6").qemu_name(), Some("arm"));
        assert_eq!(p("linux/ppc64le").qemu_name(), Some("ppc64le"));
        let amd64 = p("linux/amd64");
        assert!(p("linux/386").runs_natively_on(&amd64));
        assert!(!p("linux/arm64").runs_natively_on(&amd64));
    }
}
