//! Owns HTTP fetching: one shared client, per-host politeness (rate limit and in-flight cap),
//! a global concurrency cap, conditional GET, streamed size caps and the reading of the
//! server's answer (304, Retry-After, error statuses).

use crate::config::{ClientSettings, Config, RateLimit, Source};
use governor::{Quota, RateLimiter};
use reqwest::header::{self, HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

type DirectLimiter = governor::DefaultDirectRateLimiter;

/// Unix ms when any fetch last finished (success or failure): the watchdog's sign that
/// polling makes progress even while a long poll (many keywords, many pages) runs.
static LAST_FETCH_DONE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Time since any fetch last finished, if one ever has.
pub fn since_last_fetch() -> Option<Duration> {
    let last = LAST_FETCH_DONE.load(std::sync::atomic::Ordering::Relaxed);
    if last == 0 {
        return None;
    }
    let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
    Some(Duration::from_millis(now.saturating_sub(last)))
}

/// Validators from the previous successful fetch.
#[derive(Debug, Clone, Default)]
pub struct Conditional {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A 2xx response with its body read in full.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub final_url: String,
}

#[derive(Debug)]
pub enum FetchOutcome {
    /// 304: nothing changed since the validators were issued.
    NotModified,
    Body(Fetched),
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {}", humantime::format_duration(*after))]
    Timeout { after: Duration },
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("body larger than the {limit}-byte cap")]
    TooLarge { limit: u64 },
    #[error("request failed: {0}")]
    Request(String),
}

impl FetchError {
    /// How long the server asked us to stay away, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short, bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Timeout { .. } => "timeout",
            FetchError::Connect(_) => "connect",
            FetchError::Status { .. } => "status",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Request(_) => "request",
        }
    }
}

/// Politeness state of one host (host:port).
struct HostGate {
    limiter: DirectLimiter,
    in_flight: Semaphore,
    limits: (RateLimit, usize),
}

pub struct Fetcher {
    client: reqwest::Client,
    gates: Mutex<HashMap<String, Arc<HostGate>>>,
    /// Per host: the strictest rate and in-flight cap of the sources on it.
    host_limits: HashMap<String, (RateLimit, usize)>,
    global: Semaphore,
}

/// Installs the ring crypto provider once per process (reqwest is built without a default
/// provider to avoid compiling aws-lc on small build machines).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(pub String);

pub fn build_client(settings: &ClientSettings) -> Result<reqwest::Client, ClientError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .redirect(reqwest::redirect::Policy::limited(settings.max_redirects))
        .user_agent(settings.user_agent.clone())
        .gzip(true)
        .brotli(true)
        .deflate(true)
        .build()
        .map_err(|e| ClientError(e.to_string()))
}

fn strictest(a: (RateLimit, usize), b: (RateLimit, usize)) -> (RateLimit, usize) {
    let rate = if a.0.spacing() >= b.0.spacing() {
        a.0
    } else {
        b.0
    };
    (rate, a.1.min(b.1))
}

impl Fetcher {
    pub fn new(cfg: &Config) -> Result<Fetcher, ClientError> {
        let client = build_client(&cfg.client)?;
        let mut host_limits: HashMap<String, (RateLimit, usize)> = HashMap::new();
        for s in &cfg.sources {
            let limit = (s.per_host, s.max_in_flight_per_host);
            host_limits
                .entry(s.host_key())
                .and_modify(|cur| *cur = strictest(*cur, limit))
                .or_insert(limit);
        }
        Ok(Fetcher {
            client,
            gates: Mutex::new(HashMap::new()),
            host_limits,
            global: Semaphore::new(cfg.daemon.max_concurrent_fetches),
        })
    }

    /// A fetcher for a reloaded config that keeps the politeness state of hosts whose limits
    /// did not change: a reload must not reset the spacing of requests to a site.
    pub fn renewed(&self, cfg: &Config) -> Result<Fetcher, ClientError> {
        let next = Fetcher::new(cfg)?;
        {
            let old = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            let mut new = next.gates.lock().unwrap_or_else(|p| p.into_inner());
            for (host, gate) in old.iter() {
                if next.host_limits.get(host) == Some(&gate.limits) {
                    new.insert(host.clone(), gate.clone());
                }
            }
        }
        Ok(next)
    }

    fn gate(&self, source: &Source) -> Arc<HostGate> {
        let key = source.host_key();
        let (rate, in_flight) = self
            .host_limits
            .get(&key)
            .copied()
            .unwrap_or((source.per_host, source.max_in_flight_per_host));
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry(key)
            .or_insert_with(|| {
                // Burst of one: politeness means evenly spaced requests, never a volley.
                let quota = Quota::with_period(rate.spacing().max(Duration::from_millis(1)))
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::MIN);
                Arc::new(HostGate {
                    limiter: RateLimiter::direct(quota),
                    in_flight: Semaphore::new(in_flight.max(1)),
                    limits: (rate, in_flight),
                })
            })
            .clone()
    }

    /// GETs the source's URL, politely, and reads the body up to the source's cap.
    pub async fn fetch(
        &self,
        source: &Source,
        cond: &Conditional,
    ) -> Result<FetchOutcome, FetchError> {
        self.fetch_url(source, source.url.as_str(), cond).await
    }

    pub async fn fetch_url(
        &self,
        source: &Source,
        url: &str,
        cond: &Conditional,
    ) -> Result<FetchOutcome, FetchError> {
        let gate = self.gate(source);
        // Order matters: a source waiting on a slow host must not hold a global slot.
        let _host = gate
            .in_flight
            .acquire()
            .await
            .map_err(|_| FetchError::Request("shutting down".into()))?;
        gate.limiter.until_ready().await;
        let _global = self
            .global
            .acquire()
            .await
            .map_err(|_| FetchError::Request("shutting down".into()))?;
        let deadline = source.timeout;
        let r = match tokio::time::timeout(deadline, self.request(source, url, cond)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout { after: deadline }),
        };
        LAST_FETCH_DONE.store(
            chrono::Utc::now().timestamp_millis().max(0) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        r
    }

    async fn request(
        &self,
        source: &Source,
        url: &str,
        cond: &Conditional,
    ) -> Result<FetchOutcome, FetchError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&source.user_agent) {
            headers.insert(header::USER_AGENT, v);
        }
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, text/html;q=0.7, */*;q=0.5",
            ),
        );
        if let Some(etag) = cond
            .etag
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            headers.insert(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = cond
            .last_modified
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            headers.insert(header::IF_MODIFIED_SINCE, lm);
        }
        // Credentials and custom headers go only to the source's own origin, never to a
        // detail page or robots.txt elsewhere that a list happened to link to.
        let same_origin = url::Url::parse(url)
            .map(|u| u.origin() == source.url.origin())
            .unwrap_or(false);
        // Credentials are read at the moment of use and never logged or stored.
        if same_origin {
            let unavailable =
                |what: &str| FetchError::Request(format!("the configured {what} is unavailable"));
            if let Some(cookie) = source
                .auth
                .cookie
                .read()
                .map_err(|_| unavailable("cookie"))?
            {
                if let Ok(mut v) = HeaderValue::from_str(&cookie) {
                    v.set_sensitive(true);
                    headers.insert(header::COOKIE, v);
                }
            }
            if let Some(token) = source.auth.token.read().map_err(|_| unavailable("token"))? {
                if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                    v.set_sensitive(true);
                    headers.insert(header::AUTHORIZATION, v);
                }
            }
        }
        for (k, v) in source.headers.iter().filter(|_| same_origin) {
            if let (Ok(k), Ok(v)) = (
                header::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        let mut resp = self
            .client
            .get(url)
            .headers(headers)
            .timeout(source.timeout)
            .send()
            .await
            .map_err(|e| classify(e, source.timeout))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(FetchOutcome::NotModified);
        }
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
            return Err(FetchError::Status {
                status: status.as_u16(),
                retry_after,
            });
        }
        let limit = source.max_body;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let header_str = |name: header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header_str(header::CONTENT_TYPE);
        let etag = header_str(header::ETAG);
        let last_modified = header_str(header::LAST_MODIFIED);
        let final_url = resp.url().to_string();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| classify(e, source.timeout))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchOutcome::Body(Fetched {
            status: status.as_u16(),
            body,
            content_type,
            etag,
            last_modified,
            final_url,
        }))
    }
}

fn classify(e: reqwest::Error, timeout: Duration) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout { after: timeout }
    } else if e.is_connect() {
        FetchError::Connect(error_chain(&e))
    } else {
        FetchError::Request(error_chain(&e))
    }
}

/// reqwest's top-level message hides the cause ("error sending request"); keep the chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Retry-After as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
