//! Owns the analyst's tools that read but never write: `try-rules` (which departments and
//! rules match a text, and why not) and `backtest` (what an edited rule set would have raised
//! on the items already stored, against what was raised). Items and alerts come from the
//! store when it can be opened, else from the running daemon's API.

use crate::config::Config;
use crate::item::Item;
use crate::rules::{Matcher, Outcome, Subject};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

#[derive(Debug, thiserror::Error)]
pub enum AnalystError {
    #[error("{0}")]
    Rules(#[from] crate::rules::BuildError),
    #[error("the store cannot be opened ({store}) and the daemon's API did not answer ({api})")]
    NoData { store: String, api: String },
    #[error("no item {0} in the store")]
    NoItem(String),
}

/// Items and alerts to analyse, from the store or, while the daemon holds it, the API.
pub struct Data {
    pub items: Vec<Item>,
    /// Stored alert bodies (JSON).
    pub alerts: Vec<Value>,
    /// Per item, the departments whose rules of the time matched it (counted into an alert's
    /// group, listed there or not: folded beyond an alert's item limit, or still pending).
    /// Read from the store only; empty when the data came from the API.
    pub counted: HashMap<String, Vec<String>>,
    pub from: &'static str,
}

/// Reads items fetched since `since` (and the alerts raised since then).
pub async fn load(
    cfg: &Config,
    since: DateTime<Utc>,
    item_id: Option<&str>,
) -> Result<Data, AnalystError> {
    let dir = cfg.daemon.data_dir.clone();
    let cache = cfg.daemon.cache_capacity_bytes;
    let id = item_id.map(str::to_string);
    let direct = tokio::task::spawn_blocking(move || -> Result<Data, String> {
        if !dir.exists() {
            return Err(format!("{} does not exist", dir.display()));
        }
        let store = crate::store::Store::open(&dir, cache).map_err(|e| e.to_string())?;
        let items = store
            .items_matching(usize::MAX, |it| {
                id.as_deref().map_or(it.fetched >= since, |id| it.id == id)
            })
            .map_err(|e| e.to_string())?;
        let (alerts, _) = store
            .alerts_page(None, usize::MAX, |_| true)
            .map_err(|e| e.to_string())?;
        let mut counted = HashMap::new();
        for it in &items {
            let departments = store.counted_for(&it.id).map_err(|e| e.to_string())?;
            if !departments.is_empty() {
                counted.insert(it.id.clone(), departments);
            }
        }
        Ok(Data {
            items,
            alerts,
            counted,
            from: "store",
        })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let store_err = match direct {
        Ok(d) => return Ok(d),
        Err(e) => e,
    };
    match from_api(cfg, since, item_id).await {
        Ok(d) => Ok(d),
        Err(api) => Err(AnalystError::NoData {
            store: store_err,
            api,
        }),
    }
}

async fn from_api(
    cfg: &Config,
    since: DateTime<Utc>,
    item_id: Option<&str>,
) -> Result<Data, String> {
    let api = crate::api::ApiClient::for_config(cfg, None)?;
    let get = |path: String| {
        let api = &api;
        async move { api.get(&path).await }
    };
    let since_s = crate::alert::rfc3339(since);
    let items_path = match item_id {
        Some(id) => format!("/api/v1/items?id={id}&limit=1"),
        None => format!("/api/v1/items?since={since_s}&limit=50000"),
    };
    let items: Vec<Item> = serde_json::from_value(get(items_path).await?["items"].clone())
        .map_err(|e| e.to_string())?;
    let mut alerts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/alerts?since={since_s}&limit=500");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get(path).await?;
        alerts.extend(page["alerts"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    Ok(Data {
        items,
        alerts,
        counted: HashMap::new(),
        from: "the daemon's API",
    })
}

fn subject(item: &Item) -> Subject<'_> {
    Subject {
        title: &item.title,
        text: &item.text,
        author: item.author.as_deref(),
        source: &item.source,
    }
}

/// The try-rules report for one text, term by term, with near misses.
pub fn explain(cfg: &Config, matcher: &Matcher, s: &Subject<'_>) -> String {
    let out: Outcome = matcher.match_explained(s);
    let mut r = String::new();
    let rules: usize = cfg.departments.iter().map(|d| d.rules.len()).sum();
    let _ = writeln!(
        r,
        "rule set {} — {} departments, {} keywords, {} rules",
        matcher.rule_set(),
        cfg.departments.len(),
        cfg.keyword_count(),
        rules
    );
    let name = |id: &str| {
        cfg.departments
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.name.clone())
            .unwrap_or_default()
    };
    let rule_src = |dept: &str, rule: &str| {
        cfg.departments
            .iter()
            .find(|d| d.id == dept)
            .and_then(|d| d.rules.iter().find(|r| r.id == rule))
            .map(|r| r.source.clone())
            .unwrap_or_default()
    };
    for m in &out.matched {
        let _ = writeln!(r, "✓ {} {}", m.department, name(m.department));
        let rule_terms: BTreeSet<(&str, usize)> = m
            .rules
            .iter()
            .flat_map(|x| x.terms.iter().map(|t| (t.keyword, t.start)))
            .collect();
        for h in m
            .hits
            .iter()
            .filter(|h| !rule_terms.contains(&(h.keyword, h.start)))
        {
            let _ = writeln!(
                r,
                "    keyword {} ({} {}..{})",
                h.keyword,
                h.field.name(),
                h.start,
                h.end
            );
        }
        for rule in &m.rules {
            let _ = writeln!(
                r,
                "    rule {} [weight {}]: {}",
                rule.id,
                rule.weight,
                rule_src(m.department, rule.id)
            );
            let terms: Vec<String> = rule
                .terms
                .iter()
                .map(|t| format!("{} ({} {}..{})", t.keyword, t.field.name(), t.start, t.end))
                .collect();
            let _ = writeln!(r, "        {}", terms.join("; "));
        }
        let _ = writeln!(r, "    snippet: {}", m.snippet(s.title, s.text));
    }
    for (d, hits) in &out.vetoed {
        let words: Vec<String> = hits
            .iter()
            .map(|h| format!("{} ({} {}..{})", h.keyword, h.field.name(), h.start, h.end))
            .collect();
        let _ = writeln!(
            r,
            "✗ {d} {}: would match, but excluded by {}",
            name(d),
            words.join(", ")
        );
    }
    for (d, rule, why) in &out.near_misses {
        if out
            .matched
            .iter()
            .any(|m| *m.department == **d && m.rules.iter().any(|x| *x.id == **rule))
        {
            continue;
        }
        let _ = writeln!(
            r,
            "· {d} rule {rule}: near miss — {why}\n      {}",
            rule_src(d, rule)
        );
    }
    if out.matched.is_empty() && out.vetoed.is_empty() && out.near_misses.is_empty() {
        let _ = writeln!(r, "no department matches, and no rule came close");
    }
    r
}

/// One department's backtest figures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeptReport {
    /// Items the rules of the time matched: listed in stored alerts, or counted into an
    /// alert's group when they arrived.
    pub before: usize,
    /// Items the current rules match.
    pub now: usize,
    /// Matched now, not before.
    pub gained: Vec<String>,
    /// Matched before, not now.
    pub lost: Vec<String>,
    /// Per rule (or "keywords"): (hits now, hits in the stored alerts).
    pub rules: BTreeMap<String, (usize, usize)>,
}

/// Runs the current rules over `data`, per department.
pub fn backtest(
    matcher: &Matcher,
    data: &Data,
    department: Option<&str>,
) -> BTreeMap<String, (DeptReport, HashMap<String, String>)> {
    let in_scope: BTreeSet<String> = data.items.iter().map(|i| i.id.clone()).collect();
    let mut out: BTreeMap<String, (DeptReport, HashMap<String, String>)> = BTreeMap::new();
    // What the stored alerts say. An alert lists every item it folds (`items`, each with the
    // rules it matched); alerts from before grouping carry only `item` and `rules`. An item
    // can be listed by a silenced record and again by the alert sent after the silence:
    // count each (department, item, rule) once.
    let mut before: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut counted: BTreeSet<(String, String, String)> = BTreeSet::new();
    for a in &data.alerts {
        let Some(d) = a["department"]["id"].as_str() else {
            continue;
        };
        if department.is_some_and(|x| x != d) || a["kind"] == "spike" {
            continue;
        }
        let listed: Vec<(String, Vec<String>)> = match a["items"].as_array() {
            Some(items) if !items.is_empty() => items
                .iter()
                .filter_map(|i| {
                    let id = i["id"].as_str()?.to_string();
                    let rules = i["rules"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    Some((id, rules))
                })
                .collect(),
            _ => {
                let Some(item) = a["item"]["id"].as_str() else {
                    continue;
                };
                let mut rules: Vec<String> = a["rules"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .filter_map(|x| x["id"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if rules.is_empty() {
                    rules.push("keywords".into());
                }
                vec![(item.to_string(), rules)]
            }
        };
        for (item, rules) in listed {
            if !in_scope.contains(&item) {
                continue;
            }
            before
                .entry(d.to_string())
                .or_default()
                .insert(item.clone());
            let entry = out.entry(d.to_string()).or_default();
            for r in rules {
                if counted.insert((d.to_string(), item.clone(), r.clone())) {
                    entry.0.rules.entry(r).or_default().1 += 1;
                }
            }
        }
    }
    // Items counted for a department that no stored alert lists (beyond an alert's item
    // limit, or in a group not yet sent) were matched by the rules of the time too: without
    // them they would show as "new". They carry no rule ids, so the per-rule counts stay
    // those of the alerts.
    for (item, departments) in &data.counted {
        if !in_scope.contains(item) {
            continue;
        }
        for d in departments {
            if department.is_some_and(|x| x != d) {
                continue;
            }
            before.entry(d.clone()).or_default().insert(item.clone());
            out.entry(d.clone()).or_default();
        }
    }
    let mut now: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in &data.items {
        let o = matcher.match_subject(&subject(item));
        for m in o.matched {
            if department.is_some_and(|x| x != &*m.department) {
                continue;
            }
            now.entry(m.department.to_string())
                .or_default()
                .insert(item.id.clone());
            let entry = out.entry(m.department.to_string()).or_default();
            entry.1.insert(item.id.clone(), item.title.clone());
            for r in crate::alert::rule_ids(&m) {
                entry.0.rules.entry(r).or_default().0 += 1;
            }
        }
    }
    let titles: HashMap<&str, &str> = data
        .items
        .iter()
        .map(|i| (i.id.as_str(), i.title.as_str()))
        .collect();
    for (d, (rep, names)) in out.iter_mut() {
        let b = before.get(d).cloned().unwrap_or_default();
        let n = now.get(d).cloned().unwrap_or_default();
        rep.before = b.len();
        rep.now = n.len();
        rep.gained = n.difference(&b).cloned().collect();
        rep.lost = b.difference(&n).cloned().collect();
        for id in rep.lost.iter() {
            if let Some(t) = titles.get(id.as_str()) {
                names.insert(id.clone(), t.to_string());
            }
        }
    }
    out
}

/// The backtest report as text.
pub fn render_backtest(
    cfg: &Config,
    matcher: &Matcher,
    data: &Data,
    since: DateTime<Utc>,
    department: Option<&str>,
    samples: usize,
) -> String {
    let report = backtest(matcher, data, department);
    let mut r = String::new();
    let _ = writeln!(
        r,
        "backtest of rule set {} on {} items fetched since {} (from {}); nothing is written",
        matcher.rule_set(),
        data.items.len(),
        crate::alert::rfc3339(since),
        data.from
    );
    for d in &cfg.departments {
        if department.is_some_and(|x| x != d.id) {
            continue;
        }
        let Some((rep, titles)) = report.get(&d.id) else {
            let _ = writeln!(r, "\n{} {}: no matches, before or now", d.id, d.name);
            continue;
        };
        let delta = rep.now as i64 - rep.before as i64;
        let _ = writeln!(
            r,
            "\n{} {}: {} items now, {} matched before ({delta:+}): +{} new, -{} no longer",
            d.id,
            d.name,
            rep.now,
            rep.before,
            rep.gained.len(),
            rep.lost.len()
        );
        for (rule, (now, before)) in &rep.rules {
            let _ = writeln!(
                r,
                "    {rule:<24} {now:>6} hits now  {before:>6} in stored alerts"
            );
        }
        for (label, ids) in [("new", &rep.gained), ("lost", &rep.lost)] {
            for id in ids.iter().take(samples) {
                let title = titles.get(id).map(String::as_str).unwrap_or("?");
                let _ = writeln!(r, "    {label}: {title}");
            }
        }
    }
    r
}

/// The item with `id` from `data`.
pub fn item<'a>(data: &'a Data, id: &str) -> Result<&'a Item, AnalystError> {
    data.items
        .iter()
        .find(|i| i.id == id)
        .ok_or_else(|| AnalystError::NoItem(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Department;

    fn item(id: &str, title: &str) -> Item {
        Item {
            title: title.into(),
            ..crate::item::sample(id, "s", &format!("https://example.cn/{id}"))
        }
    }

    #[test]
    fn items_counted_but_listed_in_no_alert_were_matched_before() {
        let matcher = Matcher::new(&[Department {
            id: "urban".into(),
            name: "城管".into(),
            keywords: vec!["占道".into()],
            exclude: vec![],
            rules: vec![],
            webhook: url::Url::parse("http://127.0.0.1:9/hook").unwrap(),
        }])
        .unwrap();
        let alerted = serde_json::json!({
            "department": {"id": "urban"},
            "kind": "match",
            "items": [{"id": "a", "rules": ["keywords"]}],
        });
        let mut data = Data {
            items: vec![item("a", "占道经营"), item("b", "又见占道")],
            alerts: vec![alerted],
            counted: HashMap::new(),
            from: "test",
        };
        // Without the counted marks, "b" (folded beyond the alert's item limit) looks new.
        let (rep, _) = &backtest(&matcher, &data, None)["urban"];
        assert_eq!((rep.before, rep.now), (1, 2));
        assert_eq!(rep.gained, ["b"]);

        data.counted.insert("a".into(), vec!["urban".into()]);
        data.counted.insert("b".into(), vec!["urban".into()]);
        // A mark for an item outside the window is ignored.
        data.counted.insert("old".into(), vec!["urban".into()]);
        let (rep, _) = &backtest(&matcher, &data, None)["urban"];
        assert_eq!((rep.before, rep.now), (2, 2));
        assert!(rep.gained.is_empty() && rep.lost.is_empty(), "{rep:?}");
        // Per rule, the stored alerts' counts: the marks carry no rule ids.
        assert_eq!(rep.rules["keywords"], (2, 1));
    }
}
