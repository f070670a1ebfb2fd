//! `--check` without registries: a base image no build context provides is not fetched;
//! the rules that need its config are skipped with a note and the others run.

use rbuild_core::Platform;
use rbuild_graph::{BaseResolver, Lint};
use rbuild_image::ImageConfig;

/// The rules whose findings depend on the base image's config (its ENV, WORKDIR).
const NEEDS_BASE_CONFIG: &[&str] = &["UndefinedVar", "WorkdirRelativePath"];

/// Wraps a resolver: an image it cannot resolve becomes an empty config, remembered.
pub struct SkipUnresolved<'a> {
    inner: &'a mut dyn BaseResolver,
    skipped: Vec<String>,
}

impl<'a> SkipUnresolved<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a mut dyn BaseResolver) -> SkipUnresolved<'a> {
        SkipUnresolved {
            inner,
            skipped: Vec::new(),
        }
    }

    /// Drops the findings of rules that needed a skipped base's config, with a note.
    pub fn finish(self, lints: &mut Vec<Lint>) {
        if self.skipped.is_empty() {
            return;
        }
        eprintln!(
            "note: base image(s) {} not resolved without a registry; rules that need the base config ({}) were skipped",
            self.skipped.join(", "),
            NEEDS_BASE_CONFIG.join(", ")
        );
        lints.retain(|l| !NEEDS_BASE_CONFIG.contains(&l.rule));
    }
}

impl BaseResolver for SkipUnresolved<'_> {
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, Box<dyn std::error::Error + Send + Sync>> {
        match self.inner.resolve(reference, platform) {
            Ok(c) => Ok(c),
            Err(e) => {
                tracing::debug!("{reference}: {e}");
                if !self.skipped.iter().any(|s| s == reference) {
                    self.skipped.push(reference.to_string());
                }
                Ok(ImageConfig::default())
            }
        }
    }
}
