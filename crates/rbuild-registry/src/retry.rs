//! Retries with exponential backoff: connection failures, timeouts, 5xx and 429 (honouring
//! `Retry-After`) are retried; every other answer is returned to the caller as it came.

use crate::error::RegistryError;
use reqwest::{RequestBuilder, Response, StatusCode, header};
use std::time::Duration;

/// A retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// The first delay; doubled per attempt.
    pub base: Duration,
    /// The longest delay (also caps `Retry-After`).
    pub max: Duration,
}

impl Retry {
    /// The default policy: 5 attempts from 200 ms, at most 10 s apart;
    /// `RBUILD_REGISTRY_RETRIES` sets the number of attempts.
    pub fn from_env() -> Retry {
        let attempts = std::env::var("RBUILD_REGISTRY_RETRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5u32)
            .max(1);
        Retry {
            attempts,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }

    /// A single attempt.
    pub fn once() -> Retry {
        Retry {
            attempts: 1,
            ..Retry::from_env()
        }
    }

    /// The delay before attempt `n + 1` (n ≥ 1), with a little jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let exp = self.base.saturating_mul(1 << n.saturating_sub(1).min(16));
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() % 100)
            .unwrap_or(0);
        (exp + Duration::from_millis(jitter.into())).min(self.max)
    }

    /// Sends the request `build` makes until it gets an answer worth returning.
    pub async fn run(
        &self,
        registry: &str,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut n = 0;
        loop {
            n += 1;
            let last = n >= self.attempts;
            match build().send().await {
                Ok(resp) if last || !retryable_status(resp.status()) => return Ok(resp),
                Ok(resp) => {
                    let wait = retry_after(&resp).map_or(self.delay(n), |d| d.min(self.max));
                    tracing::info!(
                        "{registry}: {what}: {} (attempt {n}), retrying in {wait:?}",
                        resp.status()
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(e) if !last && transient(&e) => {
                    let wait = self.delay(n);
                    tracing::info!("{registry}: {what}: {e} (attempt {n}), retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(source) => {
                    return Err(RegistryError::Http {
                        registry: registry.into(),
                        what: what.into(),
                        source,
                    });
                }
            }
        }
    }
}

/// 5xx and 429 are worth another try.
pub fn retryable_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS
}

/// Connection failures, timeouts and broken bodies are transient; a builder error is not.
pub fn transient(e: &reqwest::Error) -> bool {
    !e.is_builder() && !e.is_redirect() && !e.is_status()
}

/// `Retry-After` as a delay: seconds, or an HTTP date (a date in the past means now).
fn retry_after(resp: &Response) -> Option<Duration> {
    let value = resp.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, std::time::SystemTime::now())
}

/// The delay a `Retry-After` value asks for at `now`; `None` for a value that is neither.
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let r = Retry {
            attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert!(r.delay(1) < Duration::from_millis(200));
        assert!(r.delay(3) >= Duration::from_millis(400));
        assert_eq!(r.delay(30), Duration::from_secs(1));
        assert!(retryable_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable_status(StatusCode::NOT_FOUND));
        assert!(!retryable_status(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        use std::time::{SystemTime, UNIX_EPOCH};
        // Sun, 06 Nov 1994 08:49:37 GMT
        let date = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let now = date - Duration::from_secs(90);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let imf = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse_retry_after(imf, now), Some(Duration::from_secs(90)));
        // RFC 850 and asctime forms, which HTTP also allows.
        let rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(rfc850, now),
            Some(Duration::from_secs(90))
        );
        let asctime = "Sun Nov  6 08:49:37 1994";
        assert_eq!(
            parse_retry_after(asctime, now),
            Some(Duration::from_secs(90))
        );
        let later = date + Duration::from_secs(5);
        assert_eq!(parse_retry_after(imf, later), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", SystemTime::now()), None);
    }
}
