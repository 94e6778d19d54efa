//! Owns the source-health alert stream for operators (`[ops_webhook]`), separate from content
//! alerts: one alert when a source turns unhealthy (N failures in a row, blocked by robots,
//! selectors that stopped matching) or silent, and one when it recovers — never a storm.

use crate::config::{OpsSettings, Source};
use crate::item::short_hash;
use crate::store::{NewAlert, SourceState};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Failure reasons that are a change of state at once, not after N tries: retrying will not
/// fix a block or a redesign.
const IMMEDIATE: &[&str] = &["robots", "no items", "blocked"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpsKind {
    SourceUnhealthy,
    SourceSilent,
    SourceRecovered,
}

#[derive(Debug, Clone, Serialize)]
struct OpsSource<'a> {
    id: &'a str,
    url: &'a str,
}

/// The ops webhook body.
#[derive(Debug, Clone, Serialize)]
struct OpsAlert<'a> {
    id: String,
    kind: OpsKind,
    source: OpsSource<'a>,
    reason: String,
    consecutive_failures: u32,
    last_success: Option<String>,
    since: String,
    created: String,
}

/// Decides, after a poll has updated `state`, whether operators must be told something, and
/// records in `state` that they were (so a restart does not repeat it).
pub fn evaluate(
    ops: &OpsSettings,
    source: &Source,
    state: &mut SourceState,
    now: DateTime<Utc>,
) -> Option<NewAlert> {
    let failing_reason = state.failing.clone();
    let (kind, reason) = match (&failing_reason, state.ops_alerted.is_some()) {
        (Some(reason), false)
            if state.consecutive_failures >= ops.failures
                || IMMEDIATE.contains(&reason.as_str()) =>
        {
            state.ops_alerted = Some(now);
            let detail = state.last_error.clone().unwrap_or_default();
            (OpsKind::SourceUnhealthy, format!("{reason}: {detail}"))
        }
        (None, true) => (OpsKind::SourceRecovered, "polls succeed again".to_string()),
        (None, false) => {
            let quiet_for = state
                .last_new_item
                .or(state.first_success)
                .map(|t| now - t)
                .and_then(|d| d.to_std().ok())
                .unwrap_or_default();
            let limit = ops.silent_after.max(source.interval * 3);
            if quiet_for > limit && state.ops_silent.is_none() {
                state.ops_silent = Some(now);
                (
                    OpsKind::SourceSilent,
                    format!(
                        "no new item for {} (answers, but nothing new)",
                        humantime::format_duration(std::time::Duration::from_secs(
                            quiet_for.as_secs()
                        ))
                    ),
                )
            } else if quiet_for <= limit && state.ops_silent.is_some() {
                (OpsKind::SourceRecovered, "new items again".to_string())
            } else {
                return None;
            }
        }
        _ => return None,
    };
    // One id per episode: a resend after a crash carries the same id.
    let since = match kind {
        OpsKind::SourceRecovered => {
            let started = state.ops_alerted.take().or(state.ops_silent.take());
            started.unwrap_or(now)
        }
        OpsKind::SourceUnhealthy => state.ops_alerted.unwrap_or(now),
        OpsKind::SourceSilent => state.ops_silent.unwrap_or(now),
    };
    let kind_s = match kind {
        OpsKind::SourceUnhealthy => "unhealthy",
        OpsKind::SourceSilent => "silent",
        OpsKind::SourceRecovered => "recovered",
    };
    let id = short_hash(&[
        "ops",
        &source.id,
        kind_s,
        &since.timestamp_millis().to_string(),
    ]);
    let body = OpsAlert {
        id: id.clone(),
        kind,
        source: OpsSource {
            id: &source.id,
            url: source.url.as_str(),
        },
        reason,
        consecutive_failures: state.consecutive_failures,
        last_success: state.last_success.map(crate::alert::rfc3339),
        since: crate::alert::rfc3339(since),
        created: crate::alert::rfc3339(now),
    };
    Some(NewAlert {
        id,
        channel: "ops".into(),
        department: format!("ops:{kind_s}"),
        url: ops.url.to_string(),
        body: serde_json::to_string(&body).ok()?,
        send: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ops() -> OpsSettings {
        OpsSettings {
            url: url::Url::parse("http://127.0.0.1:1/ops").unwrap(),
            secret: Default::default(),
            failures: 3,
            silent_after: Duration::from_secs(3600),
        }
    }

    #[test]
    fn one_alert_per_change_of_state() {
        let src = Source::feed("s", url::Url::parse("https://a.cn/f").unwrap());
        let mut st = SourceState::default();
        let now = Utc::now();
        let mut raised = Vec::new();
        for failures in 1..=6 {
            st.consecutive_failures = failures;
            st.failing = Some("http 503".into());
            raised.extend(evaluate(&ops(), &src, &mut st, now));
        }
        assert_eq!(raised.len(), 1, "one alert when the third failure arrives");
        assert!(raised[0].body.contains("source_unhealthy"));
        st.consecutive_failures = 0;
        st.failing = None;
        st.last_new_item = Some(now);
        let rec = evaluate(&ops(), &src, &mut st, now).expect("recovery");
        assert!(rec.body.contains("source_recovered"));
        assert!(evaluate(&ops(), &src, &mut st, now).is_none());
    }

    #[test]
    fn blocks_alert_at_once_and_silence_is_noticed() {
        let src = Source::feed("s", url::Url::parse("https://a.cn/f").unwrap());
        let now = Utc::now();
        let mut st = SourceState {
            consecutive_failures: 1,
            failing: Some("no items".into()),
            ..Default::default()
        };
        assert!(evaluate(&ops(), &src, &mut st, now).is_some());
        let mut quiet = SourceState {
            first_success: Some(now - chrono::Duration::hours(30)),
            ..Default::default()
        };
        let a = evaluate(&ops(), &src, &mut quiet, now).expect("silent");
        assert!(a.body.contains("source_silent"));
        assert!(evaluate(&ops(), &src, &mut quiet, now).is_none(), "once");
    }
}
