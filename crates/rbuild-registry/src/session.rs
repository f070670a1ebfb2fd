//! One registry operation's state: the connected hosts (by registry name), shared by the
//! concurrent requests of that operation.

use crate::config::Config;
use crate::credentials::{self, Credential, Lookup};
use crate::error::RegistryError;
use crate::transport::Host;
use rbuild_core::reference::endpoint_of;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Hosts connected during one operation.
pub struct Session<'a> {
    /// rbuild's registry settings.
    pub config: &'a Config,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    credential: Option<(String, Credential)>,
    on_upload: Option<crate::transport::OnUploadBytes>,
}

impl<'a> Session<'a> {
    /// A session using `config`; `credential` overrides the lookup for one registry (login).
    pub fn new(config: &'a Config, credential: Option<(String, Credential)>) -> Session<'a> {
        Session {
            config,
            hosts: Mutex::new(HashMap::new()),
            credential,
            on_upload: None,
        }
    }

    /// The same session, telling `on_upload` how far each blob upload has come.
    pub fn with_upload_progress(
        mut self,
        on_upload: crate::transport::OnUploadBytes,
    ) -> Session<'a> {
        self.on_upload = Some(on_upload);
        self
    }

    /// The host for `registry` (connected on first use), credentials looked up for
    /// `repository`.
    pub async fn host(&self, registry: &str, repository: &str) -> Result<Arc<Host>, RegistryError> {
        let mut hosts = self.hosts.lock().await;
        if let Some(h) = hosts.get(registry) {
            return Ok(h.clone());
        }
        let lookup = match &self.credential {
            Some((r, c)) if r == registry => Lookup {
                credential: Some(c.clone()),
                source: format!("the credentials given for {:?}", c.username),
            },
            _ => credentials::lookup(registry, repository)?,
        };
        let mut host = Host::connect(registry, endpoint_of(registry), self.config, lookup).await?;
        host.on_upload = self.on_upload.clone();
        let host = Arc::new(host);
        hosts.insert(registry.to_string(), host.clone());
        Ok(host)
    }

    /// The registries a pull from `registry` tries, in order: its mirrors, then itself
    /// unless the config says not to.
    pub fn pull_order(&self, registry: &str) -> Vec<String> {
        let s = self.config.settings(registry);
        let mut out = s.mirrors.clone();
        if s.mirror_fallback || out.is_empty() {
            out.push(registry.to_string());
        }
        out
    }
}

/// Runs `f` to completion on a runtime of its own on this thread (no worker threads; the
/// blocking pool that name resolution uses is joined when it returns), so registry I/O
/// leaves no thread behind for the namespace and fork work that follows.
pub fn block_on<T>(
    f: impl std::future::Future<Output = Result<T, RegistryError>>,
) -> Result<T, RegistryError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RegistryError::io("start", "the registry I/O runtime"))?;
    let out = rt.block_on(f);
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    out
}
