//! Owns the step from "a source gave us these items" to "new items stored, alerts queued":
//! dedup against the store, keyword matching, and the atomic write of item + alerts + outbox.
//! Runs on a blocking thread (sled and matching are synchronous).

use crate::alert;
use crate::config::{Department, Source};
use crate::item::Item;
use crate::rules::Matcher;
use crate::store::{NewAlert, Store, StoreError};
use chrono::{DateTime, Utc};

/// What one poll's items amounted to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub new: usize,
    pub known: usize,
    pub duplicates: usize,
    pub too_old: usize,
    /// Alerts queued: (alert id, webhook URL, department), for waking delivery and metrics.
    pub queued: Vec<(String, String, String)>,
}

/// Alerts an item raises: one per matching department, with its serialised body.
pub fn alerts_for(
    matcher: &Matcher,
    departments: &[Department],
    item: &Item,
    now: DateTime<Utc>,
) -> Vec<NewAlert> {
    let outcome = matcher.match_subject(&crate::rules::Subject {
        title: &item.title,
        text: &item.text,
        author: item.author.as_deref(),
        source: &item.source,
    });
    outcome
        .matched
        .iter()
        .filter_map(|m| {
            let dept = departments.iter().find(|d| d.id == m.department)?;
            let a = alert::build(item, dept, m, matcher.rule_set(), now);
            let body = serde_json::to_string(&a).ok()?;
            Some(NewAlert {
                id: a.id,
                channel: "alerts".into(),
                department: dept.id.clone(),
                url: dept.webhook.to_string(),
                body,
            })
        })
        .collect()
}

/// Stores what is new among `items` and queues its alerts. `alerting` is false for the first
/// poll of a `backlog = false` source: items are recorded, nothing is raised.
pub fn ingest(
    store: &Store,
    matcher: &Matcher,
    departments: &[Department],
    source: &Source,
    items: &[Item],
    alerting: bool,
    now: DateTime<Utc>,
) -> Result<IngestReport, StoreError> {
    let _exclusive = store.ingest_guard();
    let mut report = IngestReport::default();
    let mut known: Vec<&str> = Vec::new();
    for item in items {
        if store.seen(&item.id)?.is_some() {
            known.push(&item.id);
            report.known += 1;
            continue;
        }
        if let (Some(max_age), Some(published)) = (source.max_age, item.published) {
            let age = (now - published).to_std().unwrap_or_default();
            if age > max_age {
                store.mark_seen(&item.id, now)?;
                report.too_old += 1;
                continue;
            }
        }
        if let Some(first) = store.find_duplicate(item)? {
            store.commit_duplicate(&item.id, &first, now)?;
            tracing::debug!(source = %source.id, item_id = %item.id, duplicate_of = %first, "item already seen on another source");
            report.duplicates += 1;
            continue;
        }
        let alerts = if alerting {
            alerts_for(matcher, departments, item, now)
        } else {
            Vec::new()
        };
        let committed = store.commit_item(item, &alerts, now)?;
        report.new += 1;
        for id in committed.queued {
            if let Some(a) = alerts.iter().find(|a| a.id == id) {
                tracing::info!(source = %source.id, department = %a.department, alert_id = %a.id, url = item.url.as_deref().unwrap_or(""), title = %item.title, "alert raised");
                report
                    .queued
                    .push((a.id.clone(), a.url.clone(), a.department.clone()));
            }
        }
    }
    store.touch_seen(&known, now)?;
    Ok(report)
}
