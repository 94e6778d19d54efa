//! Owns alert delivery: one worker per webhook URL drains that URL's outbox queue in order,
//! signs each request, retries with capped exponential backoff and removes an entry only
//! after a 2xx. Refusals (4xx other than 408/429) go to the dead-letter tree.

use crate::config::{OpsSettings, WebhookSettings};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{destination_of, Destination, OutboxEntry, Store};
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

/// How often an idle delivery worker looks at its queue even without a wake-up.
const IDLE_RESCAN: Duration = Duration::from_secs(30);

/// A webhook URL fit for logs and the API: chat-bot webhooks (DingTalk, WeCom, Feishu)
/// carry their access token in the query, and URLs may hold user:password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            if u.query().is_some() {
                u.set_query(Some("…"));
            }
            u.to_string()
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`
pub fn sign(secret: &[u8], timestamp: i64, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot build the webhook client: {0}")]
    Client(String),
    #[error("{0}")]
    Secret(String),
}

pub struct Delivery {
    store: Store,
    client: reqwest::Client,
    secret: Option<Vec<u8>>,
    ops_secret: Option<Vec<u8>>,
    metrics: Arc<Metrics>,
    /// Unix ms when the oldest send still in progress began (0: none) — the watchdog's view
    /// of a stuck delivery.
    sending_since: AtomicU64,
    timeout: Duration,
    max_backoff: Duration,
    queues: Mutex<HashMap<Destination, Arc<Notify>>>,
    shutdown: Shutdown,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

enum Attempt {
    Acked(u16),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Refused(String),
}

impl Delivery {
    pub fn new(
        store: Store,
        settings: &WebhookSettings,
        ops: Option<&OpsSettings>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Result<Arc<Delivery>, DeliveryError> {
        crate::fetch::install_crypto_provider();
        let secret = settings
            .secret
            .read()
            .map_err(DeliveryError::Secret)?
            .map(String::into_bytes);
        let ops_secret = match ops {
            Some(o) => o
                .secret
                .read()
                .map_err(DeliveryError::Secret)?
                .map(String::into_bytes),
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .timeout(settings.timeout)
            // A receiver that redirects a POST is misconfigured; retrying shows it in logs.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(format!("tingfeng/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DeliveryError::Client(e.to_string()))?;
        Ok(Arc::new(Delivery {
            store,
            client,
            secret,
            ops_secret,
            metrics,
            sending_since: AtomicU64::new(0),
            timeout: settings.timeout,
            max_backoff: settings.max_backoff,
            queues: Mutex::new(HashMap::new()),
            shutdown,
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// How long the current send has been running, if one is (for the watchdog).
    pub fn stuck_for(&self) -> Option<Duration> {
        let since = self.sending_since.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let now = Utc::now().timestamp_millis().max(0) as u64;
        Some(Duration::from_millis(now.saturating_sub(since)))
    }

    /// The longest a healthy send can take.
    pub fn send_limit(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }

    /// Starts workers for every destination that already has pending entries (after a restart).
    pub async fn resume(self: &Arc<Self>) -> Result<usize, crate::store::StoreError> {
        let store = self.store.clone();
        let dests = tokio::task::spawn_blocking(move || store.outbox_destinations())
            .await
            .unwrap_or_else(|e| Err(join_failed(e)))?;
        let n = dests.len();
        for (dest, url) in dests {
            info!(url = %redact(&url), "resuming delivery of pending alerts");
            self.wake(dest);
        }
        Ok(n)
    }

    /// Tells the worker for `url` that new entries are queued (starting it if needed).
    pub fn notify(self: &Arc<Self>, url: &str) {
        self.wake(destination_of(url));
    }

    fn wake(self: &Arc<Self>, dest: Destination) {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = queues.get(&dest) {
            n.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        queues.insert(dest, notify.clone());
        let me = self.clone();
        let handle = tokio::spawn(async move { me.worker(dest, notify).await });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Waits for the workers to finish their current attempt (bounded by the webhook timeout).
    pub async fn join(&self) {
        let handles: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = tokio::time::timeout(self.timeout + Duration::from_secs(1), h).await;
        }
    }

    async fn worker(self: Arc<Self>, dest: Destination, notify: Arc<Notify>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            if shutdown.is_set() {
                return;
            }
            let store = self.store.clone();
            let head = tokio::task::spawn_blocking(move || store.outbox_head(&dest))
                .await
                .unwrap_or_else(|e| Err(join_failed(e)));
            let (key, mut entry) = match head {
                Ok(Some(h)) => h,
                Ok(None) => {
                    // Woken by new entries; the periodic look also catches entries whose
                    // wake-up was lost (a poll aborted between commit and notify).
                    tokio::select! {
                        _ = notify.notified() => continue,
                        _ = tokio::time::sleep(IDLE_RESCAN) => continue,
                        _ = shutdown.wait() => return,
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the outbox; retrying in 5s");
                    if !shutdown.sleep(Duration::from_secs(5)).await {
                        return;
                    }
                    continue;
                }
            };
            let wait = (entry.next_attempt - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            if !wait.is_zero() && !shutdown.sleep(wait).await {
                return;
            }
            // The entry may have been committed a moment ago by an ingest that has not
            // flushed yet: nothing is sent before it is durable.
            let store = self.store.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || store.flush())
                .await
                .unwrap_or_else(|e| Err(join_failed(e)))
            {
                warn!(error = %e, "cannot flush the store before sending; retrying in 5s");
                if !shutdown.sleep(Duration::from_secs(5)).await {
                    return;
                }
                continue;
            }
            let started = Utc::now().timestamp_millis().max(1) as u64;
            let _ = self.sending_since.compare_exchange(
                0,
                started,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            let attempt = self.send(&entry).await;
            let _ = self.sending_since.compare_exchange(
                started,
                0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            let now = Utc::now();
            let store = self.store.clone();
            let result = match attempt {
                Attempt::Acked(status) => {
                    self.metrics.delivery("delivered");
                    info!(alert_id = %entry.alert_id, department = %entry.department, url = %redact(&entry.url), status, attempts = entry.attempts + 1, "alert delivered");
                    tokio::task::spawn_blocking(move || store.outbox_ack(&key)).await
                }
                Attempt::Retry { reason, after } => {
                    self.metrics.delivery("retry");
                    entry.attempts = entry.attempts.saturating_add(1);
                    let delay = backoff(entry.attempts, self.max_backoff, after);
                    entry.next_attempt = chrono::Duration::from_std(delay)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d))
                        .unwrap_or(now);
                    warn!(alert_id = %entry.alert_id, department = %entry.department, url = %redact(&entry.url), attempts = entry.attempts, error = %reason, retry_in = %humantime::format_duration(delay), "alert delivery failed; will retry");
                    entry.last_error = Some(reason);
                    tokio::task::spawn_blocking(move || store.outbox_update(&key, &entry)).await
                }
                Attempt::Refused(reason) => {
                    self.metrics.delivery("dead");
                    tracing::error!(alert_id = %entry.alert_id, department = %entry.department, url = %redact(&entry.url), reason = %reason, "webhook refused the alert; moved to dead letters");
                    tokio::task::spawn_blocking(move || {
                        store.outbox_dead(&key, &entry, &reason, now)
                    })
                    .await
                }
            };
            if let Err(e) = result.unwrap_or_else(|e| Err(join_failed(e))) {
                warn!(error = %e, "cannot update the outbox; retrying in 5s");
                if !shutdown.sleep(Duration::from_secs(5)).await {
                    return;
                }
            }
        }
    }

    async fn send(&self, entry: &OutboxEntry) -> Attempt {
        let ts = Utc::now().timestamp();
        let mut req = self
            .client
            .post(&entry.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Tingfeng-Id", &entry.alert_id)
            .header("X-Tingfeng-Timestamp", ts.to_string());
        let secret = match entry.channel.as_str() {
            "ops" => self.ops_secret.as_ref(),
            _ => self.secret.as_ref(),
        };
        if let Some(secret) = secret {
            req = req.header("X-Tingfeng-Signature", sign(secret, ts, &entry.body));
        }
        let resp = match req.body(entry.body.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    reason: crate::fetch::error_chain(&e.without_url()),
                    after: None,
                }
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Acked(status.as_u16());
        }
        let after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::fetch::parse_retry_after(v, std::time::SystemTime::now()));
        let code = status.as_u16();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            tracing::error!(url = %redact(&entry.url), status = code, location = %redact(to), "webhook receiver redirects: fix the webhook URL (POSTs are not redirected); alerts wait");
            Attempt::Retry {
                reason: format!("HTTP {status} to {}", redact(to)),
                after,
            }
        } else if status.is_client_error() && code != 408 && code != 429 {
            Attempt::Refused(format!("HTTP {status}"))
        } else {
            Attempt::Retry {
                reason: format!("HTTP {status}"),
                after,
            }
        }
    }
}

/// 1s, 2s, 4s … capped, with ±20% jitter so many queues do not retry in lockstep; a server's
/// Retry-After is honoured when it asks for longer.
fn backoff(attempts: u32, cap: Duration, retry_after: Option<Duration>) -> Duration {
    let exp = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(20));
    let base = exp.min(cap);
    let jitter = 0.8 + fastrand::f64() * 0.4;
    let d = base.mul_f64(jitter);
    match retry_after {
        Some(ra) => d.max(ra.min(Duration::from_secs(24 * 3600))),
        None => d,
    }
}

fn join_failed(e: tokio::task::JoinError) -> crate::store::StoreError {
    crate::store::StoreError::Corrupt {
        tree: "task",
        key: String::new(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: printf '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac secret
        let sig = sign(b"secret", 1_700_000_000, "{\"id\":\"x\"}");
        assert_eq!(
            sig,
            "sha256=2f7852138f9dbd8d61c07c2cfb0b8ac96a46a32d78d4527788fb42fcb409a493"
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        let cap = Duration::from_secs(60);
        assert!(backoff(1, cap, None) <= Duration::from_millis(1200));
        // Grows: the 5th attempt waits 16 s ± 20%.
        let fifth = backoff(5, cap, None);
        assert!(fifth >= Duration::from_millis(12_800) && fifth <= Duration::from_millis(19_200));
        assert!(backoff(30, cap, None) <= Duration::from_secs(72));
        assert!(backoff(1, cap, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }
}
