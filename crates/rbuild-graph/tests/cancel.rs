//! `CANCELLED` stops lowering and linting. Alone in its test binary: the flag is global.

use rbuild_core::Platform;
use rbuild_core::config::ImageConfig;
use rbuild_graph::{BaseResolver, LowerOptions};
use std::sync::atomic::Ordering;

/// Counts the base images lowering asks for.
struct Counting(usize);

impl BaseResolver for Counting {
    fn resolve(
        &mut self,
        _: &str,
        _: &Platform,
    ) -> Result<ImageConfig, rbuild_graph::ResolveFailure> {
        self.0 += 1;
        Ok(ImageConfig::default())
    }
}

#[test]
fn a_cancelled_lowering_stops_with_an_interrupted_error() {
    let df = rbuild_dockerfile::parse("Dockerfile", b"FROM scratch\nENV A=1\nFROM base\n")
        .expect("parses");
    let platform: Platform = "linux/amd64".parse().expect("platform");
    let opts = LowerOptions {
        target_platform: platform.clone(),
        build_platform: platform,
        build_args: Default::default(),
        target: None,
        all_stages: false,
    };
    let mut bases = Counting(0);
    assert!(rbuild_graph::lower(&df, &opts, &mut bases).is_ok());
    assert_eq!(bases.0, 1);
    rbuild_graph::CANCELLED.store(true, Ordering::SeqCst);
    let mut bases = Counting(0);
    let err = rbuild_graph::lower(&df, &opts, &mut bases).expect_err("interrupted");
    assert!(err.to_string().contains("interrupted"), "{err}");
    let (lints, errors) = rbuild_graph::check(&df, &opts, &mut bases);
    assert!(lints.is_empty(), "{lints:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(bases.0, 0, "a base was resolved after cancelling");
}
