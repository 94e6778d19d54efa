//! Owns when each source is polled: one task per source, intervals with jitter measured from
//! the end of the previous poll (so a stall never turns into a burst), exponential backoff
//! on failure, Retry-After, restart spreading, and the source's health record in the store.

use crate::config::Source;
use crate::fetch::FetchError;
use crate::poll::{poll, Engine, EngineCell, PollError, PollSummary};
use crate::shutdown::Shutdown;
use crate::store::SourceState;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Never-polled sources start within this window, so a fresh daemon shows results quickly
/// without firing every source at the same instant.
const FIRST_POLL_SPREAD: Duration = Duration::from_secs(10);

/// The longest pause a server's Retry-After can impose on a source.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `d` scaled by a random factor in [1 - jitter, 1 + jitter].
fn jittered(d: Duration, jitter: f64) -> Duration {
    let f = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
    d.mul_f64(f.max(0.0))
}

/// Delay after a failed poll: interval × 2^(failures-1), capped; Retry-After wins if longer.
pub fn failure_delay(source: &Source, failures: u32, retry_after: Option<Duration>) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    let exp = source
        .interval
        .checked_mul(factor)
        .unwrap_or(source.max_backoff)
        .min(source.max_backoff.max(source.interval));
    let d = jittered(exp, source.jitter);
    match retry_after {
        // A server may ask for a pause, not for the source to be dropped: at most a day.
        Some(ra) => d.max(ra.min(MAX_RETRY_AFTER)),
        None => d,
    }
}

/// How long to wait before the first poll after (re)start.
pub fn initial_delay(source: &Source, state: &SourceState, now: DateTime<Utc>) -> Duration {
    if let Some(next) = state.next_poll {
        if let Ok(wait) = (next - now).to_std() {
            // A shortened interval in the config takes effect now, not after the old wait —
            // but a backoff or a server's Retry-After survives the restart.
            if state.consecutive_failures > 0 {
                return wait;
            }
            return wait.min(jittered(source.interval, source.jitter));
        }
    }
    let window = if state.last_poll.is_some() {
        // Overdue after a restart: spread over the interval rather than all at once.
        source.interval
    } else {
        source.interval.min(FIRST_POLL_SPREAD)
    };
    window.mul_f64(fastrand::f64())
}

/// Queues a source-health alert for operators and wakes its delivery.
async fn raise_ops(engine: &Engine, source: &Source, alert: crate::store::NewAlert) {
    let store = engine.store.clone();
    let a = alert.clone();
    match tokio::task::spawn_blocking(move || store.enqueue(&a, Utc::now())).await {
        Ok(Ok(true)) => {
            info!(source = %source.id, alert_id = %alert.id, kind = %alert.department, "ops alert raised");
            engine
                .metrics
                .ops_alerts
                .get_or_create(&crate::metrics::ResultLabel {
                    result: alert.department.trim_start_matches("ops:").to_string(),
                })
                .inc();
            engine.delivery.notify(&alert.url);
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) => warn!(source = %source.id, error = %e, "cannot queue the ops alert"),
        Err(e) => warn!(source = %source.id, error = %e, "ops alert task failed"),
    }
}

/// The life of one source: wait, poll, record health, repeat until shutdown.
pub async fn run_source(cell: Arc<EngineCell>, source: Source, mut shutdown: Shutdown) {
    let load = {
        let engine = cell.current();
        let store = engine.store.clone();
        let id = source.id.clone();
        tokio::task::spawn_blocking(move || store.source_state(&id)).await
    };
    let mut state = match load {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(source = %source.id, error = %e, "source state unreadable; starting fresh");
            SourceState::default()
        }
        Err(e) => {
            warn!(source = %source.id, error = %e, "source state task failed; starting fresh");
            SourceState::default()
        }
    };
    let first = initial_delay(&source, &state, Utc::now());
    debug!(source = %source.id, delay_ms = first.as_millis() as u64, "first poll scheduled");
    if !shutdown.sleep(first).await {
        return;
    }
    loop {
        // The engine in force now: a reload may have replaced rules and limits.
        let engine = cell.current();
        let started = Utc::now();
        let clock = std::time::Instant::now();
        engine
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(source.id.clone(), clock);
        // Boxed so an idle source task (most of them, most of the time) holds only its
        // timer, not the space of a whole in-flight HTTP request.
        let result = Box::pin(poll(&engine, &source, &mut state)).await;
        engine
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&source.id);
        engine.metrics.healthy(&source.id, result.is_ok());
        let outcome = match &result {
            Ok(PollSummary::NotModified) => "not_modified".to_string(),
            Ok(PollSummary::Fetched { .. }) => "ok".to_string(),
            Err(e) => e.reason(),
        };
        engine.metrics.fetch(&source.id, &outcome);
        engine
            .metrics
            .fetch_duration
            .get_or_create(&crate::metrics::SourceLabel {
                source: source.id.clone(),
            })
            .observe(clock.elapsed().as_secs_f64());
        let now = Utc::now();
        state.last_poll = Some(started);
        let delay = match result {
            Ok(summary) => {
                if state.consecutive_failures > 0 {
                    info!(source = %source.id, url = %source.url, after_failures = state.consecutive_failures, "source recovered");
                }
                state.failing = None;
                state.consecutive_failures = 0;
                state.last_success = Some(now);
                state.first_success.get_or_insert(now);
                state.first_poll_done = true;
                match summary {
                    PollSummary::NotModified => {
                        state.last_status = Some(304);
                        debug!(source = %source.id, "not modified");
                    }
                    PollSummary::Fetched {
                        items,
                        report,
                        encoding,
                    } => {
                        state.last_status = Some(200);
                        if report.new > 0 {
                            state.last_new_item = Some(now);
                        }
                        state.items_new += report.new as u64;
                        state.items_total_seen += items as u64;
                        info!(source = %source.id, items, new = report.new, known = report.known, duplicates = report.duplicates, too_old = report.too_old, alerts = report.queued.len(), encoding, "polled");
                    }
                }
                jittered(source.interval, source.jitter)
            }
            Err(e) => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                state.last_error = Some(e.to_string());
                state.last_error_at = Some(now);
                let retry_after = match &e {
                    PollError::Fetch(f) => {
                        if let FetchError::Status { status, .. } = f {
                            state.last_status = Some(*status);
                        }
                        f.retry_after()
                    }
                    _ => None,
                };
                let delay = failure_delay(&source, state.consecutive_failures, retry_after);
                let retry_in = humantime::format_duration(Duration::from_secs(delay.as_secs()));
                // One warning per change of state, not one per failed poll: a source down
                // for a day must not bury the log.
                let reason = e.reason();
                if state.failing.as_deref() != Some(reason.as_str()) {
                    warn!(source = %source.id, url = %source.url, error = %e, reason = %reason, failures = state.consecutive_failures, retry_in = %retry_in, "source unhealthy");
                    state.failing = Some(reason);
                } else {
                    debug!(source = %source.id, error = %e, failures = state.consecutive_failures, retry_in = %retry_in, "poll failed again");
                }
                delay
            }
        };
        state.next_poll = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|d| now.checked_add_signed(d));
        if let Some(ops) = &engine.config.ops {
            if let Some(alert) = crate::ops::evaluate(ops, &source, &mut state, now) {
                raise_ops(&engine, &source, alert).await;
            }
        }
        let store = engine.store.clone();
        let id = source.id.clone();
        let snapshot = state.clone();
        match tokio::task::spawn_blocking(move || store.put_source_state(&id, &snapshot)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(source = %source.id, error = %e, "cannot save source state"),
            Err(e) => warn!(source = %source.id, error = %e, "source state task failed"),
        }
        if !shutdown.sleep(delay).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(interval: u64) -> Source {
        let mut s = Source::feed("s", url::Url::parse("https://a.cn/feed").unwrap());
        s.interval = Duration::from_secs(interval);
        s.jitter = 0.0;
        s.max_backoff = Duration::from_secs(3600);
        s
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let s = source(60);
        assert_eq!(failure_delay(&s, 1, None), Duration::from_secs(60));
        assert_eq!(failure_delay(&s, 3, None), Duration::from_secs(240));
        assert_eq!(failure_delay(&s, 40, None), Duration::from_secs(3600));
        assert_eq!(
            failure_delay(&s, 1, Some(Duration::from_secs(600))),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn restart_spreads_overdue_polls_over_the_interval() {
        let s = source(300);
        let now = Utc::now();
        let overdue = SourceState {
            last_poll: Some(now - chrono::Duration::hours(1)),
            next_poll: Some(now - chrono::Duration::minutes(55)),
            ..Default::default()
        };
        let delays: Vec<Duration> = (0..200).map(|_| initial_delay(&s, &overdue, now)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(300)));
        assert!(
            delays.iter().any(|d| *d > Duration::from_secs(150)),
            "spread, not all at once"
        );
        let fresh = SourceState::default();
        assert!(initial_delay(&s, &fresh, now) <= FIRST_POLL_SPREAD);
        let scheduled = SourceState {
            next_poll: Some(now + chrono::Duration::seconds(100)),
            last_poll: Some(now),
            ..Default::default()
        };
        let d = initial_delay(&s, &scheduled, now);
        assert!(d <= Duration::from_secs(100) && d >= Duration::from_secs(99));
    }
}
