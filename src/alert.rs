//! Owns the alert: what a department is told about a matching item, in exactly the shape of the
//! webhook contract (design.md), with a stable id that is the same on every resend.

use crate::config::Department;
use crate::item::{short_hash, Item};
use crate::rules::{DepartmentMatch, Hit};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DepartmentRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertItem {
    pub id: String,
    pub source: String,
    pub url: Option<String>,
    pub title: String,
    pub text: String,
    pub author: Option<String>,
    /// RFC 3339; the fetch time when the source gave no usable date.
    pub published: String,
    pub fetched: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRef {
    pub id: String,
    pub items: u64,
    pub sources: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// When the department responded (回应), if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responded: Option<String>,
    /// Items that arrived after the response.
    #[serde(default)]
    pub items_after_response: u64,
}

impl EventRef {
    pub fn of(e: &crate::event::Event) -> EventRef {
        EventRef {
            id: e.id.clone(),
            items: e.items,
            sources: e.sources,
            title: Some(e.title.clone()),
            first_seen: Some(rfc3339(e.first_seen)),
            last_seen: Some(rfc3339(e.last_seen)),
            responded: e.responded.as_ref().map(|r| rfc3339(r.at)),
            items_after_response: e.after_response,
        }
    }
}

/// One item an alert folds in: enough to find and show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FoldedItem {
    pub id: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub title: String,
    /// The rule ids (or `keywords`) it matched for this department.
    #[serde(default)]
    pub rules: Vec<String>,
    pub fetched: String,
}

/// The silence that held an alert back (only on records kept without sending).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SilenceRef {
    pub id: String,
    pub comment: String,
    pub ends: String,
}

/// The webhook body. Fields beyond design.md's (`hits`, `snippet`, `created`, `score`,
/// `items`, …) only add.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    pub id: String,
    /// `new` (a matter's first alert, or a spike) or `escalated` (a later alert of the same
    /// matter), as design.md's contract has it; `reason` tells which case.
    pub kind: String,
    /// Why it went out: `first`, `level_rose`, `after_response`, `repeat` (`escalated` without
    /// a level change: still growing after `repeat_interval`) or `spike` (a department's
    /// volume this hour; `kind` = `new`).
    #[serde(default)]
    pub reason: String,
    pub department: DepartmentRef,
    /// `blue`, `yellow`, `orange` or `red` (一般 / 较大 / 重大 / 特别重大).
    pub level: String,
    #[serde(default)]
    pub level_name: String,
    /// The risk score broken down by factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<crate::assess::Score>,
    /// True when the event was responded to and reaction rose again.
    #[serde(default)]
    pub after_response: bool,
    /// The distinct keywords that matched, in order of first appearance.
    pub matched: Vec<String>,
    /// Every keyword occurrence with its field and character offsets.
    pub hits: Vec<HitRecord>,
    pub snippet: String,
    /// The rule expressions that matched, each with the terms that satisfied it.
    #[serde(default)]
    pub rules: Vec<RuleRecord>,
    /// Short hash of the rule set (keywords, rules, lists) that produced the alert.
    #[serde(default)]
    pub rule_set: String,
    pub item: AlertItem,
    /// Every item this alert reports (the first is `item`).
    #[serde(default)]
    pub items: Vec<FoldedItem>,
    /// Matched items beyond the most one alert lists (1,000), so none is hidden silently.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub items_omitted: u64,
    pub event: EventRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spike: Option<crate::assess::Spike>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced: Option<SilenceRef>,
    pub created: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleRecord {
    pub id: String,
    pub weight: f64,
    pub terms: Vec<HitRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HitRecord {
    pub keyword: String,
    pub field: String,
    pub start: usize,
    pub end: usize,
}

impl From<&Hit> for HitRecord {
    fn from(h: &Hit) -> Self {
        HitRecord {
            keyword: h.keyword.to_string(),
            field: h.field.name().into(),
            start: h.start,
            end: h.end,
        }
    }
}

impl FoldedItem {
    pub fn of(item: &Item, m: &DepartmentMatch) -> FoldedItem {
        FoldedItem {
            id: item.id.clone(),
            source: item.source.clone(),
            url: item.url.clone(),
            title: item.title.clone(),
            rules: rule_ids(m),
            fetched: rfc3339(item.fetched),
        }
    }
}

/// The rules an item matched: rule ids, plus `keywords` when plain keywords matched too.
pub fn rule_ids(m: &DepartmentMatch) -> Vec<String> {
    let mut out: Vec<String> = m.rules.iter().map(|r| r.id.to_string()).collect();
    if m.rules.is_empty() || m.hits.len() > m.rules.iter().map(|r| r.terms.len()).sum() {
        out.push("keywords".into());
    }
    out
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The alert id for an item and a department: deterministic, so a re-processed item after a
/// crash produces the same id and is recognised as already raised.
pub fn alert_id(item_id: &str, department: &str) -> String {
    short_hash(&["alert", item_id, department])
}

pub fn build(
    item: &Item,
    dept: &Department,
    m: &DepartmentMatch,
    rule_set: &str,
    now: DateTime<Utc>,
) -> Alert {
    let mut matched: Vec<String> = Vec::new();
    for h in &m.hits {
        if !matched.iter().any(|k| **k == *h.keyword) {
            matched.push(h.keyword.to_string());
        }
    }
    Alert {
        id: alert_id(&item.id, &dept.id),
        kind: "new".into(),
        reason: "first".into(),
        department: DepartmentRef {
            id: dept.id.clone(),
            name: dept.name.clone(),
        },
        level: "blue".into(),
        level_name: "一般".into(),
        score: None,
        after_response: false,
        matched,
        hits: m.hits.iter().map(HitRecord::from).collect(),
        snippet: m.snippet(&item.title, &item.text),
        rules: m
            .rules
            .iter()
            .map(|r| RuleRecord {
                id: r.id.to_string(),
                weight: r.weight,
                terms: r.terms.iter().map(HitRecord::from).collect(),
            })
            .collect(),
        rule_set: rule_set.to_string(),
        item: AlertItem {
            id: item.id.clone(),
            source: item.source.clone(),
            url: item.url.clone(),
            title: item.title.clone(),
            text: item.text.clone(),
            author: item.author.clone(),
            published: rfc3339(item.published.unwrap_or(item.fetched)),
            fetched: rfc3339(item.fetched),
        },
        items: vec![FoldedItem::of(item, m)],
        items_omitted: 0,
        event: EventRef {
            id: item.id.clone(),
            items: 1,
            sources: 1,
            title: None,
            first_seen: None,
            last_seen: None,
            responded: None,
            items_after_response: 0,
        },
        spike: None,
        silenced: None,
        created: rfc3339(now),
    }
}
