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
    pub items: u32,
    pub sources: u32,
}

/// The webhook body. Fields beyond design.md's (`hits`, `snippet`, `created`) only add.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    pub id: String,
    /// `new` or `escalated`.
    pub kind: String,
    pub department: DepartmentRef,
    /// `blue`, `yellow`, `orange` or `red`. Keyword alerts are `blue` until risk judging lands.
    pub level: String,
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
    pub event: EventRef,
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
            keyword: h.keyword.clone(),
            field: h.field.name().into(),
            start: h.start,
            end: h.end,
        }
    }
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
        if !matched.contains(&h.keyword) {
            matched.push(h.keyword.clone());
        }
    }
    Alert {
        id: alert_id(&item.id, &dept.id),
        kind: "new".into(),
        department: DepartmentRef {
            id: dept.id.clone(),
            name: dept.name.clone(),
        },
        level: "blue".into(),
        matched,
        hits: m.hits.iter().map(HitRecord::from).collect(),
        snippet: m.snippet.clone(),
        rules: m
            .rules
            .iter()
            .map(|r| RuleRecord {
                id: r.id.clone(),
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
        event: EventRef {
            id: item.id.clone(),
            items: 1,
            sources: 1,
        },
        created: rfc3339(now),
    }
}
