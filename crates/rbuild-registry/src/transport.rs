//! One registry host: its HTTP client (TLS from certs.d), whether it is reached over HTTPS
//! or plain HTTP, its credentials and tokens, and `send` with auth and retries.

use crate::challenge::{self, Challenge};
use crate::config::{Config, is_loopback};
use crate::credentials::{Credential, Lookup};
use crate::error::RegistryError;
use crate::retry::Retry;
use crate::timeouts::Timeouts;
use rbuild_core::text::{sanitize, sanitize_bytes};
use reqwest::{Client, RequestBuilder, Response, StatusCode, header};
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
    pub(crate) on_upload: Option<crate::push::OnUploadBytes>,
}

/// The HTTP client for one registry: its TLS settings, timeouts, no proxy for loopback.
pub(crate) fn client(
    registry: &str,
    endpoint: &str,
    verify: bool,
    timeouts: &Timeouts,
) -> Result<Client, RegistryError> {
    let tls = crate::tls::client_config(registry, verify)?;
    let mut b = Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(timeouts.connect())
        .read_timeout(timeouts.idle)
        .timeout(timeouts.total)
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5));
    if is_loopback(endpoint) {
        b = b.no_proxy();
    }
    b.build().map_err(|e| RegistryError::Tls {
        registry: registry.into(),
        detail: e.to_string(),
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
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.auth.lock().await.challenge = challenge_of(&resp);
        }
        Ok(())
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

    /// The URL of an API path (`/v2/...`) or an absolute `Location`.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.base, path_or_url)
        }
    }

    /// Where the credentials came from (or that there were none), for messages.
    pub fn credentials_source(&self) -> &str {
        &self.lookup.source
    }

    /// Sends a request built by `build` (called again for every attempt), authorised for
    /// `scope`, retrying transient failures and answering one 401 with fresh auth.
    pub async fn send(
        &self,
        what: &str,
        scope: &Scope,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut refreshed = false;
        loop {
            let auth = self.authorization(scope).await?;
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
            if resp.status() != StatusCode::UNAUTHORIZED || refreshed {
                return Ok(resp);
            }
            refreshed = true;
            let Some(c) = challenge_of(&resp) else {
                return Ok(resp);
            };
            let can_retry = self.accept_challenge(c, scope).await;
            if !can_retry {
                return Ok(resp);
            }
        }
    }

    /// Records a 401's challenge; whether a retry can do better (new token, or Basic with
    /// credentials).
    async fn accept_challenge(&self, c: Challenge, scope: &Scope) -> bool {
        let mut st = self.auth.lock().await;
        let retry = match &c {
            Challenge::Basic => {
                self.lookup.credential.is_some() && st.challenge != Some(Challenge::Basic)
            }
            Challenge::Bearer { .. } => {
                st.tokens.remove(&scope.strings());
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
                let (token, ttl) = self.fetch_token(&realm, service.as_deref(), scope).await?;
                let expires = Instant::now() + ttl.saturating_sub(Duration::from_secs(10));
                st.tokens.insert(key, (token.clone(), expires));
                Ok(Some(format!("Bearer {token}")))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
