//! Owns the step from "a source gave us these items" to "new items stored, alerts queued":
//! dedup against the store, keyword matching, judging (events, groups — see [`crate::alerter`])
//! and the atomic write of item + judging state + alerts + outbox.
//! Runs on a blocking thread (sled and matching are synchronous).

use crate::alerter::{Judge, Raised};
use crate::config::Source;
use crate::item::Item;
use crate::rules::{DepartmentMatch, Matcher};
use crate::store::{Record, Store, StoreError};
use chrono::{DateTime, Utc};

/// What one poll's items amounted to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub new: usize,
    pub known: usize,
    pub duplicates: usize,
    pub too_old: usize,
    /// Alerts queued, for waking delivery and metrics.
    pub queued: Vec<Raised>,
}

/// The departments an item matches, with why.
pub fn matches_for(matcher: &Matcher, item: &Item) -> Vec<DepartmentMatch> {
    matcher
        .match_subject(&crate::rules::Subject {
            title: &item.title,
            text: &item.text,
            author: item.author.as_deref(),
            source: &item.source,
        })
        .matched
}

/// Stores what is new among `items`, judges it and queues the alerts that are due. `alerting`
/// is false for the first poll of a `backlog = false` source: items are recorded and
/// clustered, nothing is raised.
pub fn ingest(
    store: &Store,
    matcher: &Matcher,
    judge: &Judge,
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
        let matches = if alerting {
            matches_for(matcher, item)
        } else {
            Vec::new()
        };
        let first = store.find_duplicate(item)?;
        // A copy on another source is not stored again, but it counts in its event's spread.
        let judged = judge.judge(store, item, &matches, first.as_deref(), now)?;
        let record = match &first {
            Some(first) => {
                tracing::debug!(source = %source.id, item_id = %item.id, duplicate_of = %first, "item already seen on another source");
                report.duplicates += 1;
                Record::Duplicate {
                    id: &item.id,
                    first,
                }
            }
            None => {
                report.new += 1;
                Record::Item(item)
            }
        };
        let committed = store.commit(record, &judged.alerts, &judged.puts, now)?;
        // A spike alert is raised once per hour: later items of the hour find it recorded.
        report.queued.extend(
            judged
                .raised
                .into_iter()
                .filter(|r| committed.queued.contains(&r.id)),
        );
    }
    store.touch_seen(&known, now)?;
    report.queued.extend(judge.flush_due(store, now)?);
    Ok(report)
}

/// Re-judges an item already stored whose text grew (its detail page arrived): departments
/// it newly matches join its event's groups. Returns the alerts queued.
pub fn update(
    store: &Store,
    matcher: &Matcher,
    judge: &Judge,
    item: &Item,
    alerting: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Raised>, StoreError> {
    let _exclusive = store.ingest_guard();
    let matches = if alerting {
        matches_for(matcher, item)
    } else {
        Vec::new()
    };
    let judged = judge.judge(store, item, &matches, None, now)?;
    let committed = store.commit(Record::Item(item), &judged.alerts, &judged.puts, now)?;
    let mut raised: Vec<Raised> = judged
        .raised
        .into_iter()
        .filter(|r| committed.queued.contains(&r.id))
        .collect();
    raised.extend(judge.flush_due(store, now)?);
    Ok(raised)
}

/// Sends the alerts that came due (group_wait, quiet hours over) outside any poll.
pub fn flush_due(
    store: &Store,
    judge: &Judge,
    now: DateTime<Utc>,
) -> Result<Vec<Raised>, StoreError> {
    let _exclusive = store.ingest_guard();
    judge.flush_due(store, now)
}
