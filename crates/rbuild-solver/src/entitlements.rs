//! Entitlements: privileges a build grants its steps only when asked with `--allow`, as in
//! buildx. `security.insecure` lets `RUN --security=insecure` steps run with every
//! capability and no seccomp filter. `network.host` is accepted for buildx command lines;
//! rbuild's steps use the host's network by default (there is no bridge network to leave),
//! so `RUN --network=host` needs no grant.

use crate::SolveError;
use rbuild_graph::{BuildGraph, OpKind, SecurityMode};

/// The entitlements a build was granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `security.insecure`: `RUN --security=insecure` may run.
    pub security_insecure: bool,
    /// `network.host`: accepted; changes nothing (see the module documentation).
    pub network_host: bool,
}

/// An `--allow` value rbuild does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown entitlement {0:?} (rbuild knows security.insecure and network.host)")]
pub struct UnknownEntitlement(pub String);

impl Entitlements {
    /// Parses `--allow` values (`security.insecure`, `network.host`).
    pub fn parse(values: &[String]) -> Result<Entitlements, UnknownEntitlement> {
        let mut out = Entitlements::default();
        for v in values {
            match v.trim() {
                "security.insecure" => out.security_insecure = true,
                "network.host" => out.network_host = true,
                other => return Err(UnknownEntitlement(other.to_string())),
            }
        }
        Ok(out)
    }

    /// Fails on the first RUN of a needed stage that asks for more than was granted, so a
    /// build fails before any of its steps runs.
    pub fn check(&self, graph: &BuildGraph) -> Result<(), SolveError> {
        for stage in graph.stages.iter().filter(|s| s.needed) {
            for op in &stage.ops {
                if let OpKind::Run(run) = &op.kind
                    && run.security == SecurityMode::Insecure
                    && !self.security_insecure
                {
                    return Err(SolveError::NotEntitled {
                        location: op.location.clone(),
                        entitlement: "security.insecure",
                        what: "RUN --security=insecure",
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_values() {
        let e = Entitlements::parse(&["security.insecure".into(), "network.host".into()]).unwrap();
        assert!(e.security_insecure && e.network_host);
        assert_eq!(Entitlements::parse(&[]).unwrap(), Entitlements::default());
        let err = Entitlements::parse(&["device".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown entitlement \"device\""), "{err}");
    }
}
