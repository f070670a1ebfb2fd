//! One registry host: its HTTP client (TLS from certs.d), whether it is reached over HTTPS
//! or plain HTTP, its credentials and tokens, and `send` with auth and retries.
//!
//! Credentials belong to the registry's origin (scheme, host and port), as in containerd,
//! which drops its authorizer when an upload `Location` changes host or scheme: a request
//! `send` makes to any other origin (an upload `Location` or a URL on another host or
//! port) carries no `Authorization`, neither Basic nor a Bearer token, and a 401 from such
//! an origin teaches the host nothing. Redirects to another origin lose the header too
//! (reqwest strips it on any change of scheme, host or port). Nothing a registry hands
//! back may move an HTTPS registry to plain HTTP: such URLs, redirects and token realms
//! are refused.

use crate::challenge::{self, Challenge};
use crate::config::{Config, is_loopback};
use crate::credentials::{Credential, Lookup};
use crate::error::RegistryError;
use crate::retry::Retry;
use crate::timeouts::Timeouts;
use rbuild_core::text::{sanitize, sanitize_bytes};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url, header};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What a request needs access to: `repository:<repo>:<actions>`, plus pull on the source
/// repository of a cross-repository mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The repository.
    pub repository: String,
    /// `pull` or `pull,push`.
    pub actions: &'static str,
    /// A second repository that needs `pull` (mount source).
    pub mount_from: Option<String>,
}

impl Scope {
    /// Pull access to `repository`.
    pub fn pull(repository: &str) -> Scope {
        Scope {
            repository: repository.into(),
            actions: "pull",
            mount_from: None,
        }
    }

    /// Push (and pull) access to `repository`.
    pub fn push(repository: &str) -> Scope {
        Scope {
            repository: repository.into(),
            actions: "pull,push",
            mount_from: None,
        }
    }

    /// The scope strings a token request names.
    fn strings(&self) -> Vec<String> {
        if self.repository.is_empty() {
            return Vec::new();
        }
        let mut out = vec![format!("repository:{}:{}", self.repository, self.actions)];
        if let Some(from) = &self.mount_from
            && from != &self.repository
        {
            out.push(format!("repository:{from}:pull"));
        }
        out
    }

    /// `pull` or `push`, for messages.
    pub fn action(&self) -> &'static str {
        if self.actions.contains("push") {
            "push to"
        } else {
            "pull from"
        }
    }
}

#[derive(Debug, Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<Vec<String>, (String, Instant)>,
}

/// A registry host and everything needed to talk to it.
#[derive(Debug)]
pub struct Host {
    /// The registry name (`docker.io`, `host:5000`).
    pub registry: String,
    base: String,
    http: Client,
    lookup: Lookup,
    auth: Mutex<AuthState>,
    retry: Retry,
    timeouts: Timeouts,
    /// Hears the bytes of blob uploads to this registry, when someone listens.
    pub(crate) on_upload: Option<OnUploadBytes>,
}

/// The HTTP client for one registry: its TLS settings, timeouts, no proxy for loopback,
/// at most 5 redirects and none from HTTPS to plain HTTP.
pub(crate) fn client(
    registry: &str,
    endpoint: &str,
    verify: bool,
    timeouts: &Timeouts,
) -> Result<Client, RegistryError> {
    build_client(registry, endpoint, verify, timeouts, no_downgrade())
}

/// The HTTP client for `ADD` URLs: as [`client`], but redirects may go to plain HTTP, as
/// BuildKit allows for downloads (they carry no credentials).
pub(crate) fn url_client(
    host: &str,
    verify: bool,
    timeouts: &Timeouts,
) -> Result<Client, RegistryError> {
    build_client(
        host,
        host,
        verify,
        timeouts,
        reqwest::redirect::Policy::limited(5),
    )
}

fn build_client(
    registry: &str,
    endpoint: &str,
    verify: bool,
    timeouts: &Timeouts,
    redirects: reqwest::redirect::Policy,
) -> Result<Client, RegistryError> {
    let tls = crate::tls::client_config(registry, verify)?;
    let mut b = Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(timeouts.connect())
        .read_timeout(timeouts.idle)
        .timeout(timeouts.total)
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .redirect(redirects);
    if is_loopback(endpoint) {
        b = b.no_proxy();
    }
    b.build().map_err(|e| RegistryError::Tls {
        registry: registry.into(),
        detail: e.to_string(),
    })
}

/// At most 5 redirects, and none from HTTPS to plain HTTP.
fn no_downgrade() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            attempt.error("redirect from HTTPS to plain HTTP refused")
        } else if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else {
            attempt.follow()
        }
    })
}

impl Host {
    /// Connects to `registry` (API at `endpoint`): probes `/v2/` over HTTPS, falls back to
    /// plain HTTP where that is allowed, and remembers the auth challenge.
    pub async fn connect(
        registry: &str,
        endpoint: &str,
        config: &Config,
        lookup: Lookup,
    ) -> Result<Host, RegistryError> {
        let settings = config.settings(registry);
        let http_allowed = settings.insecure.unwrap_or_else(|| is_loopback(endpoint));
        let timeouts = config.timeouts;
        let https = client(
            registry,
            endpoint,
            settings.insecure != Some(true),
            &timeouts,
        )?;
        let mut host = Host {
            registry: registry.into(),
            base: format!("https://{endpoint}"),
            http: https,
            lookup,
            auth: Mutex::new(AuthState::default()),
            retry: Retry::from_env(),
            timeouts,
            on_upload: None,
        };
        // Where plain HTTP may follow, one HTTPS attempt decides; otherwise HTTPS is all
        // there is and gets the full retry policy.
        let first = if http_allowed {
            Retry::once()
        } else {
            host.retry
        };
        let https_err = match host.probe(first).await {
            Ok(()) => return Ok(host),
            Err(e) => e,
        };
        if is_certificate_error(&https_err) || !is_connect_error(&https_err) {
            return Err(host.explain(certificate_hint(https_err, registry)));
        }
        host.base = format!("http://{endpoint}");
        if !http_allowed {
            return match host.probe(Retry::once()).await {
                Ok(()) => Err(RegistryError::InsecureRefused {
                    registry: registry.into(),
                    config: config.path.display().to_string(),
                }),
                Err(_) => Err(host.explain(https_err)),
            };
        }
        host.probe(host.retry).await.map_err(|e| host.explain(e))?;
        Ok(host)
    }

    /// `GET /v2/`: any answer means the scheme works; a 401 gives the challenge.
    async fn probe(&self, retry: Retry) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base);
        let resp = retry
            .run(&self.registry, "GET /v2/", || self.http.get(&url))
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED && self.is_own(resp.url()) {
            self.auth.lock().await.challenge = challenge_of(&resp);
        }
        Ok(())
    }

    /// Whether `url` is on the registry's own origin (scheme, host and port): the only
    /// place its credentials may go.
    fn is_own(&self, url: &Url) -> bool {
        Url::parse(&self.base).is_ok_and(|base| base.origin() == url.origin())
    }

    /// A timeout as [`RegistryError::TimedOut`], naming the limits; any other error as it
    /// is.
    fn explain(&self, e: RegistryError) -> RegistryError {
        match e {
            RegistryError::Http {
                registry,
                what,
                source,
            } if source.is_timeout() => RegistryError::TimedOut {
                registry,
                what,
                limits: self.timeouts.describe(),
            },
            e => e,
        }
    }

    /// Where a request `build` makes goes; refuses plain HTTP for an HTTPS registry.
    fn target_of(
        &self,
        what: &str,
        build: &impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Url, RegistryError> {
        let req = build(&self.http)
            .build()
            .map_err(|source| RegistryError::Http {
                registry: self.registry.clone(),
                what: what.into(),
                source,
            })?;
        let url = req.url().clone();
        self.refuse_downgrade(&url)?;
        Ok(url)
    }

    /// An error for a plain-HTTP URL handed out by an HTTPS registry.
    fn refuse_downgrade(&self, url: &Url) -> Result<(), RegistryError> {
        if self.base.starts_with("https://") && url.scheme() != "https" {
            return Err(RegistryError::Downgrade {
                registry: self.registry.clone(),
                url: sanitize(url.as_str()),
            });
        }
        Ok(())
    }

    /// Authenticates `GET /v2/` with the host's credentials (no repository scope), as
    /// `docker login` does: Ok when the registry accepts them.
    pub async fn verify_login(&self) -> Result<(), RegistryError> {
        let scope = Scope::pull("");
        let url = self.url("/v2/");
        let resp = self.send("GET /v2/", &scope, |c| c.get(&url)).await?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(RegistryError::Denied {
                registry: self.registry.clone(),
                repository: "(login)".into(),
                status: resp.status().as_u16(),
                credentials: self.lookup.source.clone(),
                action: "log in to".into(),
                detail: "wrong user name or password".into(),
            }),
            _ => Err(self.unexpected("GET /v2/", resp).await),
        }
    }

    /// The URL of an API path (`/v2/...`), or of a `Location` (absolute, or relative to
    /// the registry's API).
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else if path_or_url.starts_with('/') && !path_or_url.starts_with("//") {
            format!("{}{}", self.base, path_or_url)
        } else {
            let base = format!("{}/v2/", self.base);
            Url::parse(&base)
                .and_then(|b| b.join(path_or_url))
                .map_or(base, String::from)
        }
    }

    /// Where the credentials came from (or that there were none), for messages.
    pub fn credentials_source(&self) -> &str {
        &self.lookup.source
    }

    /// Sends a request built by `build` (called again for every attempt), retrying
    /// transient failures. To the registry's own origin it is authorised for `scope`,
    /// and a 401 is answered once with the auth it asks for; to any other origin it goes
    /// without credentials (see the module documentation).
    pub async fn send(
        &self,
        what: &str,
        scope: &Scope,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let own = self.is_own(&self.target_of(what, &build)?);
        let mut refreshed = false;
        loop {
            let auth = match own {
                true => self.authorization(scope).await?,
                false => None,
            };
            let resp = self
                .retry
                .run(&self.registry, what, || {
                    let rb = build(&self.http);
                    match &auth {
                        Some(a) => rb.header(header::AUTHORIZATION, a),
                        None => rb,
                    }
                })
                .await
                .map_err(|e| self.explain(e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || refreshed || !self.is_own(resp.url()) {
                return Ok(resp);
            }
            refreshed = true;
            let Some(c) = challenge_of(&resp) else {
                return Ok(resp);
            };
            if !self.accept_challenge(c, scope, auth.as_deref()).await {
                return Ok(resp);
            }
        }
    }

    /// Records a 401's challenge (learnt under the auth lock, so concurrent requests that
    /// raced the first challenge all see it); whether a retry can do better than the
    /// `sent` auth: Basic credentials where none or others were sent, a token another
    /// request has fetched meanwhile, or a fresh token.
    async fn accept_challenge(&self, c: Challenge, scope: &Scope, sent: Option<&str>) -> bool {
        let mut st = self.auth.lock().await;
        let retry = match &c {
            Challenge::Basic => self
                .lookup
                .credential
                .as_ref()
                .is_some_and(|cred| sent != Some(basic(cred).as_str())),
            Challenge::Bearer { .. } => {
                let key = scope.strings();
                let newer = st
                    .tokens
                    .get(&key)
                    .is_some_and(|(t, _)| sent != Some(format!("Bearer {t}").as_str()));
                if !newer {
                    st.tokens.remove(&key);
                }
                true
            }
        };
        st.challenge = Some(c);
        retry
    }

    /// The `Authorization` value for `scope`: Basic with the credentials, or a Bearer token
    /// (fetched when not cached); `None` while no challenge asked for auth.
    async fn authorization(&self, scope: &Scope) -> Result<Option<String>, RegistryError> {
        let mut st = self.auth.lock().await;
        match st.challenge.clone() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.lookup.credential.as_ref().map(basic)),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = scope.strings();
                if let Some((t, expires)) = st.tokens.get(&key)
                    && *expires > Instant::now()
                {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let realm = self.realm_url(&realm)?;
                let (token, ttl) = self.fetch_token(&realm, service.as_deref(), scope).await?;
                let expires = Instant::now() + ttl.saturating_sub(Duration::from_secs(10));
                st.tokens.insert(key, (token.clone(), expires));
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// The token realm a challenge named, checked. The registry's credentials go to its
    /// realm even on another host, as Docker and containerd send them: the registry names
    /// its own auth server (Docker Hub's is auth.docker.io), and the credentials are
    /// issued for that server. But an HTTPS registry's realm must be HTTPS too, and the
    /// realm must be an http(s) URL.
    fn realm_url(&self, realm: &str) -> Result<String, RegistryError> {
        let bad = |detail: &str| RegistryError::Malformed {
            what: format!("{}: authentication challenge", self.registry),
            detail: format!("token realm {:?} {detail}", sanitize(realm)),
        };
        let url = Url::parse(realm).map_err(|_| bad("is no URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("is no http(s) URL"));
        }
        self.refuse_downgrade(&url)?;
        Ok(realm.to_string())
    }

    /// The token flow: GET the realm with service and scopes (Basic auth when there are
    /// credentials), or POST an OAuth2 refresh token for identity tokens.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<(String, Duration), RegistryError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s.into()));
        }
        for s in scope.strings() {
            query.push(("scope", s));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let get_url = format!("{realm}{sep}{}", form_encode(&query));
        let cred = self.lookup.credential.as_ref();
        let resp = self
            .retry
            .run(&self.registry, "token request", || match cred {
                Some(c) if c.is_identity_token() => {
                    let mut form = query.clone();
                    form.push(("grant_type", "refresh_token".into()));
                    form.push(("refresh_token", c.secret.clone()));
                    form.push(("client_id", "rbuild".into()));
                    self.http
                        .post(realm)
                        .body(form_encode(&form))
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                }
                Some(c) => self
                    .http
                    .get(&get_url)
                    .header(header::AUTHORIZATION, basic(c)),
                None => self.http.get(&get_url),
            })
            .await
            .map_err(|e| self.explain(e))?;
        let status = resp.status();
        if !status.is_success() {
            let detail = error_detail(resp).await;
            return Err(RegistryError::Denied {
                registry: self.registry.clone(),
                repository: scope.repository.clone(),
                status: status.as_u16(),
                credentials: self.lookup.source.clone(),
                action: scope.action().into(),
                detail: format!("token server {} refused: {detail}", sanitize(realm)),
            });
        }
        let body = crate::read_limited(resp, 1 << 20, "token response", &self.registry).await?;
        parse_token(&body)
    }

    /// The error for a 401/403 on `scope`.
    pub async fn denied(&self, resp: Response, scope: &Scope) -> RegistryError {
        let status = resp.status().as_u16();
        RegistryError::Denied {
            registry: self.registry.clone(),
            repository: scope.repository.clone(),
            status,
            credentials: self.lookup.source.clone(),
            action: scope.action().into(),
            detail: error_detail(resp).await,
        }
    }

    /// The error for any other unexpected answer.
    pub async fn unexpected(&self, what: &str, resp: Response) -> RegistryError {
        RegistryError::Status {
            registry: self.registry.clone(),
            what: what.into(),
            status: resp.status().as_u16(),
            detail: error_detail(resp).await,
        }
    }

    /// Checks a response: 2xx passes, 401/403 become [`RegistryError::Denied`], 404
    /// [`RegistryError::NotFound`], anything else [`RegistryError::Status`].
    pub async fn check(
        &self,
        what: &str,
        scope: &Scope,
        resp: Response,
    ) -> Result<Response, RegistryError> {
        match resp.status().as_u16() {
            200..=299 => Ok(resp),
            401 | 403 => Err(self.denied(resp, scope).await),
            404 => Err(RegistryError::NotFound {
                reference: format!("{}/{}", self.registry, scope.repository),
                what: what.into(),
            }),
            _ => Err(self.unexpected(what, resp).await),
        }
    }
}

fn basic(c: &Credential) -> String {
    use base64::Engine as _;
    let raw = format!("{}:{}", c.username, c.secret);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn form_encode(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_token(body: &[u8]) -> Result<(String, Duration), RegistryError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| RegistryError::malformed("token response", e))?;
    let token = v
        .get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RegistryError::malformed("token response", "no token in it"))?;
    let ttl = v
        .get("expires_in")
        .and_then(|e| e.as_u64())
        .unwrap_or(60)
        .clamp(10, 24 * 3600);
    Ok((token.to_string(), Duration::from_secs(ttl)))
}

fn challenge_of(resp: &Response) -> Option<Challenge> {
    resp.headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(challenge::parse)
}

/// The registry's error message: the `errors[].message` of its JSON body (else the body
/// itself), bounded and sanitised.
pub async fn error_detail(resp: Response) -> String {
    let Ok(body) = crate::read_limited(resp, 64 * 1024, "error body", "").await else {
        return String::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return rbuild_core::text::sanitize_to(sanitize_bytes(&body).trim(), 200);
    };
    sanitize(&json_errors(&v))
}

/// `code: message` of each entry of a registry's `errors` list.
fn json_errors(v: &serde_json::Value) -> String {
    v.get("errors")
        .and_then(|e| e.as_array())
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or_default();
                    let msg = e
                        .get("message")
                        .and_then(|c| c.as_str())
                        .unwrap_or_default();
                    format!("{code}: {msg}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn chain_text(e: &RegistryError) -> String {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text
}

fn is_certificate_error(e: &RegistryError) -> bool {
    let t = chain_text(e).to_ascii_lowercase();
    t.contains("certificate") || t.contains("unknownissuer")
}

fn is_connect_error(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Http { source, .. } if source.is_connect() || source.is_request())
}

fn certificate_hint(e: RegistryError, registry: &str) -> RegistryError {
    if !is_certificate_error(&e) {
        return e;
    }
    let dirs: Vec<String> = crate::tls::certs_d_dirs()
        .iter()
        .map(|d| d.join(registry).join("ca.crt").display().to_string())
        .collect();
    RegistryError::Tls {
        registry: registry.into(),
        detail: format!(
            "{}; if it uses a private CA, put the CA certificate in {}",
            chain_text(&e),
            dirs.join(" or ")
        ),
    }
}

/// Hears the bytes of a blob upload: its digest, bytes sent so far, bytes in all.
#[derive(Clone)]
pub struct OnUploadBytes(pub std::sync::Arc<UploadFn>);

/// What an [`OnUploadBytes`] calls.
pub type UploadFn = dyn Fn(&rbuild_core::Digest, u64, u64) + Send + Sync;

impl std::fmt::Debug for OnUploadBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnUploadBytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host for `base` with credentials, never connected.
    fn host(base: &str) -> Host {
        let timeouts = Timeouts::default();
        Host {
            registry: "registry.test".into(),
            base: base.into(),
            http: client("registry.test", "registry.test", true, &timeouts).unwrap(),
            lookup: Lookup {
                credential: Some(Credential {
                    username: "alice".into(),
                    secret: "secret".into(),
                }),
                source: "test credentials".into(),
            },
            auth: Mutex::new(AuthState::default()),
            retry: Retry::once(),
            timeouts,
            on_upload: None,
        }
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let h = host("https://registry.test:5000");
        let own = |u: &str| h.is_own(&Url::parse(u).unwrap());
        assert!(own("https://registry.test:5000/v2/x/blobs/uploads/1"));
        assert!(!own("https://registry.test:5001/v2/x/blobs/uploads/1"));
        assert!(!own("https://storage.test:5000/upload"));
        assert!(!own("http://registry.test:5000/v2/"));
        let h = host("https://registry.test");
        assert!(h.is_own(&Url::parse("https://registry.test:443/v2/").unwrap()));
    }

    #[test]
    fn locations_resolve_against_the_registry() {
        let h = host("https://registry.test:5000");
        assert_eq!(h.url("/v2/a/b"), "https://registry.test:5000/v2/a/b");
        assert_eq!(h.url("https://s.test/u?x=1"), "https://s.test/u?x=1");
        assert_eq!(h.url("//evil.test/u"), "https://evil.test/u");
        assert_eq!(
            h.url("a/blobs/uploads/1"),
            "https://registry.test:5000/v2/a/blobs/uploads/1"
        );
        assert!(!h.is_own(&Url::parse(&h.url("//evil.test/u")).unwrap()));
    }

    #[test]
    fn plain_http_from_an_https_registry_is_refused() {
        let h = host("https://registry.test:5000");
        let sent = crate::session::block_on(h.send("upload", &Scope::push("a"), |c| {
            c.put("http://registry.test:5000/v2/a/blobs/uploads/1")
        }));
        let e = sent.expect_err("a downgrade is refused before anything is sent");
        assert!(matches!(e, RegistryError::Downgrade { .. }), "{e}");
        assert!(e.to_string().contains("plain HTTP"), "{e}");
        let e = h.realm_url("http://auth.test/token").unwrap_err();
        assert!(matches!(e, RegistryError::Downgrade { .. }), "{e}");
        assert!(h.realm_url("https://auth.test/token").is_ok());
        assert!(h.realm_url("file:///etc/passwd").is_err());
        let plain = host("http://127.0.0.1:5000");
        assert!(plain.realm_url("http://127.0.0.1:5001/token").is_ok());
    }

    /// A server on 127.0.0.1 answering every request with `answer`; the request heads
    /// it received.
    fn server(answer: String) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let heads = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = std::io::BufReader::new(&conn);
                let mut head = String::new();
                while reader.read_line(&mut head).is_ok_and(|n| n > 2) {}
                heads.lock().unwrap().push(head);
                let _ = (&conn).write_all(answer.as_bytes());
            }
        });
        (port, seen)
    }

    #[test]
    fn a_challenge_from_another_origin_is_ignored() {
        let answer = |status: &str, extra: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let (own_port, own_seen) = server(answer("200 OK", "", ""));
        let (token_port, token_seen) = server(answer("200 OK", "", r#"{"token":"t"}"#));
        let realm =
            format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{token_port}/token\"\r\n");
        let (foreign_port, foreign_seen) = server(answer("401 No", &realm, ""));
        let h = host(&format!("http://127.0.0.1:{own_port}"));
        let scope = Scope::push("a");
        let foreign = format!("http://127.0.0.1:{foreign_port}/upload/1");
        let own = format!("http://127.0.0.1:{own_port}/v2/a/blobs/x");
        crate::session::block_on(async {
            let r = h.send("upload", &scope, |c| c.put(&foreign)).await?;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            let r = h.send("HEAD", &scope, |c| c.head(&own)).await?;
            assert_eq!(r.status(), StatusCode::OK);
            Ok(())
        })
        .unwrap();
        assert_eq!(foreign_seen.lock().unwrap().len(), 1);
        assert_eq!(*token_seen.lock().unwrap(), Vec::<String>::new());
        for head in foreign_seen
            .lock()
            .unwrap()
            .iter()
            .chain(own_seen.lock().unwrap().iter())
        {
            assert!(
                !head.to_ascii_lowercase().contains("authorization"),
                "{head}"
            );
        }
        assert!(h.auth.try_lock().unwrap().challenge.is_none());
    }

    #[test]
    fn a_second_basic_challenge_retries_only_with_other_credentials() {
        let h = host("http://127.0.0.1:5000");
        let scope = Scope::push("a");
        let cred = basic(h.lookup.credential.as_ref().unwrap());
        let run = |sent: Option<String>| {
            crate::session::block_on(async {
                Ok(
                    h.accept_challenge(Challenge::Basic, &scope, sent.as_deref())
                        .await,
                )
            })
            .unwrap()
        };
        // Requests that raced the first challenge were sent without auth: retry them.
        assert!(run(None));
        assert!(run(None));
        // The credentials themselves were refused: no retry.
        assert!(!run(Some(cred)));
    }

    #[test]
    fn scopes_include_the_mount_source() {
        let mut s = Scope::push("a/b");
        s.mount_from = Some("c/d".into());
        assert_eq!(
            s.strings(),
            vec!["repository:a/b:pull,push", "repository:c/d:pull"]
        );
        assert_eq!(Scope::pull("x").strings(), vec!["repository:x:pull"]);
    }

    #[test]
    fn tokens_parse() {
        let (t, d) = parse_token(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!((t.as_str(), d.as_secs()), ("abc", 300));
        assert_eq!(parse_token(br#"{"access_token":"x"}"#).unwrap().0, "x");
        assert!(parse_token(br#"{"token":""}"#).is_err());
        assert!(parse_token(b"nope").is_err());
        assert_eq!(percent("a b/c:d"), "a%20b%2Fc%3Ad");
    }
}
