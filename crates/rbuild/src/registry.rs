//! The build's registry side: `FROM` images no `--build-context` names are pulled, and
//! `--push` / `-o type=registry|image` outputs are pushed.

use crate::build::output::{Output, RegistryOutput};
use crate::progress::Task;
use anyhow::{Context, Result, bail};
use rbuild_core::text::error_chain;
use rbuild_core::{Platform, Reference};
use rbuild_export::BuiltImage;
use rbuild_progress::{EventSink, Meter};
use rbuild_registry::timeouts::Timeouts;
use rbuild_registry::{Config, Registry, RegistryError, Root};
use rbuild_solver::{RemoteImages, UrlDownloads};
use rbuild_source::{ResolvedImage, UrlFetch, UrlRequest};
use rbuild_store::Store;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// The request limits the command line set (`--registry-timeout`,
/// `--registry-total-timeout` or their environment variables).
static TIMEOUTS: OnceLock<Timeouts> = OnceLock::new();

/// Keeps the command line's registry timeouts for every registry client of this run.
pub fn set_timeouts(cli: &crate::cli::Cli) {
    let mut t = Timeouts::default();
    if let Some(d) = cli.registry_timeout {
        t.idle = d;
    }
    if let Some(d) = cli.registry_total_timeout {
        t.total = d;
    }
    let _ = TIMEOUTS.set(t);
}

/// rbuild's registry config file, with the command line's timeouts.
pub fn load_config() -> Result<Config> {
    let mut config = Config::load()?;
    config.timeouts = TIMEOUTS.get().copied().unwrap_or_default();
    Ok(config)
}

/// The registry client for a build: rbuild's config file, plus `registry.insecure=true`
/// for the registries of outputs that say so.
pub fn client(outputs: &[Output], tags: &[String]) -> Result<Registry> {
    let mut config = load_config()?;
    for o in outputs {
        if let Output::Registry(r) = o
            && r.insecure
        {
            for t in targets(r, tags)? {
                config.allow_insecure(t.registry());
            }
        }
    }
    Ok(Registry::new(config))
}

/// Pulls `FROM` references from their registry; `aliases` are the
/// `--build-context NAME=docker-image://REF` names. Each pull is a vertex of its own on
/// `events`, with the bytes of every layer download, as BuildKit shows them.
pub struct Puller {
    /// The build's registry client.
    pub registry: Arc<Registry>,
    /// `--build-context NAME=docker-image://REF`: name → reference.
    pub aliases: BTreeMap<String, String>,
    /// Where pulls are shown.
    pub events: Arc<dyn EventSink>,
}

impl RemoteImages for Puller {
    fn pull(
        &self,
        reference: &str,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, Box<RegistryError>> {
        let target = alias_of(&self.aliases, reference).unwrap_or(reference);
        let r: Reference = target
            .parse()
            .map_err(|e| Box::new(RegistryError::from(e)))?;
        let events = self.events.as_ref();
        let task = Task::named(
            events,
            format!("[internal] pull {r} for {platform}"),
            Some(platform.to_string()),
        );
        let meters = Mutex::new(HashMap::new());
        let on_bytes = |digest: &rbuild_core::Digest, done: u64, total: u64| {
            let mut meters = meters.lock().unwrap_or_else(|e| e.into_inner());
            let meter = meters.entry(digest.clone()).or_insert_with(|| {
                Meter::start(events, task.id(), digest.to_string(), Some(total))
            });
            meter.set(done, Some(total));
        };
        let pulled = self.registry.pull_reporting(store, &r, platform, &on_bytes);
        let meters = meters.into_inner().unwrap_or_else(|e| e.into_inner());
        meters.into_values().for_each(Meter::finish);
        task.finish_with(pulled.as_ref().err().map(|e| e.to_string()).as_deref());
        pulled.map_err(Box::new)
    }
}

/// Downloads `ADD` URLs with the build's registry client; each download is a vertex of its
/// own (`[internal] download URL`) that says what came.
pub struct Downloader {
    /// The build's registry client.
    pub registry: Arc<Registry>,
    /// Where downloads are shown.
    pub events: Arc<dyn EventSink>,
}

impl UrlDownloads for Downloader {
    fn fetch(&self, req: &UrlRequest, store: &Store) -> Result<UrlFetch, Box<RegistryError>> {
        let task = Task::named(
            self.events.as_ref(),
            format!("[internal] download {}", req.url),
            None,
        );
        let fetched = self.registry.fetch_url(store, req);
        match &fetched {
            Ok(UrlFetch::NotModified) => task.say("not modified"),
            Ok(UrlFetch::Stored(r)) => task.say(&format!("{} bytes, {}", r.size, r.digest)),
            Err(e) => task.say(&error_chain(e)),
        }
        task.finish_with(fetched.as_ref().err().map(|e| error_chain(e)).as_deref());
        fetched.map_err(Box::new)
    }
}

/// The alias `reference` names, in any of the forms users write it (`name`,
/// `name:latest`, `docker.io/library/name`).
fn alias_of<'a>(aliases: &'a BTreeMap<String, String>, reference: &str) -> Option<&'a str> {
    let short = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    [reference, short]
        .into_iter()
        .flat_map(|r| [r, r.strip_suffix(":latest").unwrap_or(r)])
        .find_map(|r| aliases.get(r).map(String::as_str))
}

/// The references an output pushes to: its `name=`s, else the `-t` names.
pub fn targets(out: &RegistryOutput, tags: &[String]) -> Result<Vec<Reference>> {
    let names = if out.names.is_empty() {
        tags
    } else {
        &out.names
    };
    if names.is_empty() {
        bail!("pushing needs a name: give -t NAME[:TAG] or --output type=registry,name=NAME");
    }
    names
        .iter()
        .map(|n| n.parse::<Reference>().map_err(anyhow::Error::from))
        .collect()
}

/// Checks before the build that every registry output has names that parse.
pub fn validate(outputs: &[Output], tags: &[String]) -> Result<()> {
    for o in outputs {
        if let Output::Registry(r) = o
            && r.push
        {
            targets(r, tags)?;
        }
    }
    Ok(())
}

/// Pushes the built image to every target of `out`, reporting on `vertex`.
pub fn push(
    registry: &Registry,
    store: &Store,
    image: &BuiltImage,
    out: &RegistryOutput,
    vertex: &crate::progress::Task<'_>,
    events: Arc<dyn EventSink>,
) -> Result<()> {
    let targets = targets(out, &image.tags)?;
    if !out.push {
        vertex.say("image kept in rbuild's store (type=image without push=true)");
        return Ok(());
    }
    let root = rbuild_export::root_descriptor(store, image)?;
    let root = Root {
        media_type: root.media_type,
        digest: root.digest,
    };
    let names: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    let report = registry
        .push_reporting(
            store,
            &root,
            &targets,
            out.by_digest,
            &HashMap::new(),
            Some(crate::progress::upload_progress(events, vertex.id())),
        )
        .with_context(|| format!("pushing to {}", names.join(", ")))?;
    vertex.say(&format!(
        "pushed {} ({}): {} blob(s) uploaded ({} bytes), {} already there, {} mounted, {} manifest(s)",
        names.join(", "),
        root.digest,
        report.uploaded,
        report.uploaded_bytes,
        report.present,
        report.mounted,
        report.manifests
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_match_the_forms_users_write() {
        let mut a = BTreeMap::new();
        a.insert("base".to_string(), "r:5000/x:1".to_string());
        assert_eq!(alias_of(&a, "base"), Some("r:5000/x:1"));
        assert_eq!(alias_of(&a, "base:latest"), Some("r:5000/x:1"));
        assert_eq!(
            alias_of(&a, "docker.io/library/base:latest"),
            Some("r:5000/x:1")
        );
        assert_eq!(alias_of(&a, "base:2"), None);
    }
}
