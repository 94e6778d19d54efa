//! Owns the alert lifecycle between matching and the outbox, per (department, event): the
//! first alert after `group_wait` folding near-simultaneous items, silence while the level
//! holds, `escalated` when it rises (or reaction rises again after a response), `repeat`
//! after `repeat_interval` with growth, spikes of a department's volume, silences and quiet
//! hours. Every decision is written to the store in the same transaction as the item or the
//! alert it concerns, so a restart neither loses nor repeats one.

use crate::alert::{self, EventRef, FoldedItem, SilenceRef};
use crate::assess::{self, Inputs, Level, Lexicon, Score};
use crate::config::{AssessSettings, Config, Department, Silence};
use crate::event::{self, Event};
use crate::item::{short_hash, Item};
use crate::rules::DepartmentMatch;
use crate::store::{NewAlert, Placement, Put, Record, Store, StoreError};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// Items listed in one alert at most; more wait for the next one.
const MAX_PENDING: usize = 1000;
/// Near-duplicate candidates confirmed at most per item (closest first).
const MAX_CONFIRM: usize = 8;

/// Why an alert goes out. The webhook's `kind` stays within design.md's `new | escalated`;
/// `reason` says which of these it is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The first alert of a (department, event).
    First,
    /// The level rose above the highest sent.
    LevelRose,
    /// Reaction rose again after the department responded.
    AfterResponse,
    /// Still growing after `repeat_interval`, at the same level.
    Repeat,
    /// The department's volume this hour stands out (an alert of its own).
    Spike,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::First => "first",
            Reason::LevelRose => "level_rose",
            Reason::AfterResponse => "after_response",
            Reason::Repeat => "repeat",
            Reason::Spike => "spike",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Reason::First | Reason::Spike => "new",
            _ => "escalated",
        }
    }
}

/// The last alert sent for a group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sent {
    pub level: Level,
    pub at: DateTime<Utc>,
    /// The event's item count when it was sent, to tell growth.
    pub event_items: u64,
}

/// One department's view of one event: what matched, what was sent, what waits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Group {
    pub event: String,
    pub department: String,
    pub opened: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Items of the event that matched this department.
    pub matched: u64,
    pub rule_weight: f64,
    pub negative: f64,
    pub negative_words: Vec<String>,
    pub rules: BTreeSet<String>,
    /// Matched items not yet reported (stored under their own keys, see
    /// [`Store::pending`], so a large matter does not rewrite its list on every item).
    pub pending: u32,
    /// The number the next pending item is stored under.
    #[serde(default)]
    pub pending_next: u32,
    /// Matched items beyond the most one alert lists, counted.
    #[serde(default)]
    pub omitted: u64,
    /// The matching detail (hits, snippet, rules) of the first pending item.
    /// When the pending alert goes out.
    pub due: Option<DateTime<Utc>>,
    /// Why the pending alert will go out.
    pub reason: Option<Reason>,
    pub after_response: bool,
    pub sent: Option<Sent>,
    /// Alerts sent so far (part of each alert's id).
    pub seq: u32,
    /// Set once a rise after the latest response has been escalated.
    pub escalated_after_response: bool,
    /// The level last computed (for the API).
    pub level: Level,
    pub score: f64,
    /// The silence that last held this group's alert back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced: Option<String>,
}

impl Group {
    fn open(event: &str, department: &str, now: DateTime<Utc>) -> Group {
        Group {
            event: event.to_string(),
            department: department.to_string(),
            opened: now,
            updated: now,
            matched: 0,
            rule_weight: 0.0,
            negative: 0.0,
            negative_words: Vec::new(),
            rules: BTreeSet::new(),
            pending: 0,
            pending_next: 0,
            due: None,
            reason: None,
            after_response: false,
            omitted: 0,
            sent: None,
            seq: 0,
            escalated_after_response: false,
            level: Level::Blue,
            score: 0.0,
            silenced: None,
        }
    }
}

/// An alert queued for sending, for waking delivery and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub id: String,
    pub url: String,
    pub department: String,
    pub level: String,
    pub kind: String,
}

/// The judging configuration in force, built once per (re)load.
pub struct Judge {
    pub settings: AssessSettings,
    pub silences: Vec<Silence>,
    pub tz: Tz,
    pub lexicon: Lexicon,
    pub source_weights: HashMap<String, f64>,
    pub departments: Vec<Department>,
    pub rule_set: String,
}

/// What judging one item produced: writes for its transaction and alerts raised at once.
#[derive(Debug, Default)]
pub struct Judged {
    pub puts: Vec<Put>,
    pub alerts: Vec<NewAlert>,
    pub raised: Vec<Raised>,
    pub event: Option<String>,
}

impl Judge {
    pub fn new(config: &Config, rule_set: &str) -> Judge {
        let mut j = Judge::with(config.assess.clone(), config.departments.clone(), rule_set);
        j.silences = config.silences.clone();
        j.tz = config.daemon.timezone;
        j.source_weights = config
            .sources
            .iter()
            .map(|s| (s.id.clone(), s.weight))
            .collect();
        j
    }

    /// A judge without silences or source weights, in Beijing time (tools and benchmarks).
    pub fn with(settings: AssessSettings, departments: Vec<Department>, rule_set: &str) -> Judge {
        Judge {
            lexicon: Lexicon::new(&settings.negative_words),
            settings,
            silences: Vec::new(),
            tz: chrono_tz::Asia::Shanghai,
            source_weights: HashMap::new(),
            departments,
            rule_set: rule_set.to_string(),
        }
    }

    fn department(&self, id: &str) -> Option<&Department> {
        self.departments.iter().find(|d| d.id == id)
    }

    /// Places `item` in an event and folds its matches into the departments' groups. The
    /// caller commits `puts` and `alerts` with the item, then calls [`Judge::flush_due`].
    /// `duplicate_of` is the first copy of the same story on another source.
    pub fn judge(
        &self,
        store: &Store,
        item: &Item,
        matches: &[DepartmentMatch],
        duplicate_of: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Judged, StoreError> {
        let mut out = Judged::default();
        let (ev, placed_before) = self.place(store, item, duplicate_of, now, &mut out)?;
        // Each group with the due time it had in the store, to move its timer entry.
        let mut touched: Vec<(Group, Option<DateTime<Utc>>)> = Vec::new();
        // The item's negative words, found once for all the departments it matches.
        let mut lexicon_hits: Option<(f64, Vec<String>)> = None;
        for m in matches {
            let Some(dept) = self.department(m.department) else {
                continue;
            };
            if store.was_counted(&item.id, &dept.id)? {
                continue;
            }
            out.puts.push(Put::counted(&item.id, &dept.id));
            let (mut g, old_due) = match readable(store.group(&ev.id, &dept.id))? {
                Some(g) => {
                    let due = g.due;
                    (g, due)
                }
                None => (Group::open(&ev.id, &dept.id, now), None),
            };
            let (negative, words) = lexicon_hits
                .get_or_insert_with(|| {
                    self.lexicon
                        .assess(&format!("{} {}", item.title, item.text))
                })
                .clone();
            g.matched += 1;
            g.updated = now;
            let weight: f64 = if m.rules.is_empty() {
                1.0
            } else {
                m.rules.iter().map(|r| r.weight).sum()
            };
            g.rule_weight = g.rule_weight.max(weight);
            if negative > g.negative {
                g.negative = negative;
                g.negative_words = words;
            }
            g.rules.extend(alert::rule_ids(m));
            if g.pending == 0 {
                // The first item of the next alert supplies its matching detail.
                let draft = alert::build(item, dept, m, &self.rule_set, now);
                out.puts.push(Put::draft(&g.event, &g.department, &draft));
            }
            if (g.pending as usize) < MAX_PENDING {
                out.puts.push(Put::pending(
                    &g.event,
                    &g.department,
                    g.pending_next,
                    &FoldedItem::of(item, m),
                ));
                g.pending += 1;
                g.pending_next += 1;
            } else {
                g.omitted += 1;
                tracing::warn!(department = %dept.id, event = %ev.id, item_id = %item.id, max = MAX_PENDING, "alert already lists the most items it may: this one is counted in items_omitted");
            }
            self.count_volume(store, dept, item, m, &ev, now, &mut out)?;
            touched.push((g, old_due));
        }
        if placed_before && touched.is_empty() {
            return Ok(out);
        }
        // Every department following this event sees its growth, matched here or not.
        for g in store.groups_of(&ev.id)? {
            if !touched.iter().any(|(t, _)| t.department == g.department) {
                let due = g.due;
                touched.push((g, due));
            }
        }
        for (mut g, old_due) in touched {
            self.decide(store, &mut g, &ev, now)?;
            out.puts.extend(Put::group(&g, old_due));
        }
        Ok(out)
    }

    /// Finds the item's event (exact links first, then near-duplicates) or opens one, and
    /// records the placement. Returns the event and whether the item was placed before (a
    /// re-processed item, e.g. after its detail page arrived).
    fn place(
        &self,
        store: &Store,
        item: &Item,
        duplicate_of: Option<&str>,
        now: DateTime<Utc>,
        out: &mut Judged,
    ) -> Result<(Event, bool), StoreError> {
        if let Some(p) = readable(store.placement(&item.id))? {
            if let Some(ev) = readable(store.event(&p.event))? {
                out.event = Some(ev.id.clone());
                return Ok((ev, true));
            }
        }
        let window = chrono::Duration::from_std(self.settings.event_window)
            .unwrap_or(chrono::Duration::days(3));
        let live = |e: &Event| e.last_seen >= now - window;
        let chars = event::cluster_text(item);
        let shingles = event::shingles(&chars);
        let hash = (shingles.len() >= event::MIN_SHINGLES).then(|| event::simhash(&shingles));
        let headline = event::headline(&item.title);
        // A copy caught by URL or text hash is never stored as an item: it must not stand in
        // the near-duplicate index where confirming it would fail.
        let (indexed, indexed_headline) = if duplicate_of.is_some() {
            (None, None)
        } else {
            (hash, headline)
        };
        let mut found: Option<Event> = None;
        // Exact links: the first copy of a duplicate, the original of a repost.
        for linked in [duplicate_of, item.related.as_deref()]
            .into_iter()
            .flatten()
        {
            if let Some(p) = readable(store.placement(linked))? {
                if let Some(e) = readable(store.event(&p.event))?.filter(|e| live(e)) {
                    found = Some(e);
                    break;
                }
            }
        }
        if found.is_none() && (hash.is_some() || headline.is_some()) {
            let from = event::day_of(now - window);
            let candidates: Vec<crate::store::Near> = store
                .near(
                    hash,
                    headline,
                    from,
                    event::day_of(now),
                    event::MAX_DISTANCE,
                )?
                .into_iter()
                .filter(|n| n.item != item.id)
                .collect();
            let mut tried: Vec<String> = Vec::new();
            for near in candidates {
                // A bounded number of events, best candidate first; an event counts as
                // tried once a confirmation has actually run on it.
                if tried.len() >= MAX_CONFIRM || tried.contains(&near.event) {
                    continue;
                }
                // The same long headline needs shared text or a bare side (a list entry and
                // its article); a close SimHash needs Jaccard.
                let Some(other) = readable(store.item(&near.item))? else {
                    continue;
                };
                let theirs = event::shingles(&event::cluster_text(&other));
                let confirmed = if near.same_headline {
                    event::same_headline_story(&shingles, &theirs)
                        || event::same_story(&shingles, &theirs)
                } else {
                    event::same_story(&shingles, &theirs)
                };
                tried.push(near.event.clone());
                let Some(e) = readable(store.event(&near.event))?.filter(|e| live(e)) else {
                    continue;
                };
                if confirmed {
                    found = Some(e);
                    break;
                }
            }
        }
        let weight = self
            .source_weights
            .get(&item.source)
            .copied()
            .unwrap_or(1.0);
        let (ev, new_source) = match found {
            Some(mut e) => {
                let new_source = !store.event_has_source(&e.id, &item.source)?;
                e.add(item, now, new_source, weight);
                (e, new_source)
            }
            None => (Event::open(item, now, weight), true),
        };
        out.puts.push(Put::event(&ev));
        if new_source {
            out.puts.push(Put::event_source(&ev.id, &item.source));
        }
        if ev.items <= event::MEMBERS_KEPT {
            out.puts
                .push(Put::member(&ev.id, ev.items, &event::Member::of(item)));
        }
        out.puts.extend(Put::placement(
            &item.id,
            &Placement {
                event: ev.id.clone(),
                simhash: indexed,
                headline: indexed_headline,
                day: event::day_of(now),
            },
        ));
        out.event = Some(ev.id.clone());
        Ok((ev, false))
    }

    /// Counts a matched item in its department's hourly volume and raises a spike alert
    /// when the hour stands out against the same hour of previous days.
    #[allow(clippy::too_many_arguments)]
    fn count_volume(
        &self,
        store: &Store,
        dept: &Department,
        item: &Item,
        m: &DepartmentMatch,
        ev: &Event,
        now: DateTime<Utc>,
        out: &mut Judged,
    ) -> Result<(), StoreError> {
        let hour = event::hour_of(now);
        let days = self.settings.spike_days as i64;
        let (counts, since) = store.volume(&dept.id, hour - days * 24, hour)?;
        let count = counts.get(&hour).copied().unwrap_or(0) + 1;
        out.puts
            .extend(Put::volume(&dept.id, hour, count, since.is_none()));
        let since = since.unwrap_or(hour);
        let history: Vec<u32> = (1..=days)
            .map(|d| hour - d * 24)
            .filter(|h| *h >= since)
            .map(|h| counts.get(&h).copied().unwrap_or(0))
            .collect();
        let Some(stats) = assess::spike(
            count,
            &history,
            self.settings.spike_k,
            self.settings.spike_min,
            self.settings.spike_days,
        ) else {
            return Ok(());
        };
        let mut a = alert::build(item, dept, m, &self.rule_set, now);
        a.kind = Reason::Spike.kind().into();
        a.reason = Reason::Spike.as_str().into();
        let level = if stats.count as f64 > stats.mean + 2.0 * self.settings.spike_k * stats.stddev
        {
            Level::Orange
        } else {
            Level::Yellow
        };
        a.level = level.as_str().into();
        a.level_name = level.name_zh().into();
        a.event = EventRef::of(ev);
        a.spike = Some(stats);
        let text = crate::text::normalize_for_match(&format!("{} {}", item.title, item.text));
        let rules = alert::rule_ids(m);
        let sources = [item.source.clone()];
        let silence = assess::silenced_by(
            &self.silences,
            &assess::Subject {
                department: &dept.id,
                rules: &rules,
                sources: &sources,
                text: &text,
            },
            now,
        );
        // Quiet hours hold back spikes below orange: recorded, not sent (the matters behind
        // them still alert in the morning through their groups).
        let quiet = level < Level::Orange
            && assess::quiet_until(now, self.tz, self.settings.quiet_hours).is_some();
        let send = silence.is_none() && !quiet;
        a.silenced = silence.map(silence_ref);
        a.id = short_hash(&[
            "spike",
            &dept.id,
            &hour.to_string(),
            if send { "sent" } else { "held" },
        ]);
        let body = serde_json::to_string(&a).unwrap_or_default();
        if send {
            tracing::warn!(department = %dept.id, count = a.spike.as_ref().map(|s| s.count), "spike in matching items");
            out.raised.push(Raised {
                id: a.id.clone(),
                url: dept.webhook.to_string(),
                department: dept.id.clone(),
                level: a.level.clone(),
                kind: a.kind.clone(),
            });
        }
        out.alerts.push(NewAlert {
            id: a.id,
            channel: "alerts".into(),
            department: dept.id.clone(),
            url: dept.webhook.to_string(),
            body,
            send,
        });
        Ok(())
    }

    /// An alert draft rebuilt from the first pending item when the stored one is missing
    /// or unreadable: without its matching detail, but the matter is still told.
    fn stand_in_draft(
        &self,
        store: &Store,
        g: &Group,
        now: DateTime<Utc>,
    ) -> Result<Option<alert::Alert>, StoreError> {
        let Some(dept) = self.department(&g.department) else {
            return Ok(None);
        };
        let pending =
            readable(store.pending(&g.event, &g.department).map(Some))?.unwrap_or_default();
        for (_, f) in pending {
            if let Some(item) = readable(store.item(&f.id))? {
                tracing::warn!(department = %g.department, event = %g.event, "alert draft missing: rebuilt from its first item");
                let m = DepartmentMatch {
                    department: crate::rules::intern(&dept.id),
                    hits: Default::default(),
                    rules: Vec::new(),
                    cut: Default::default(),
                };
                return Ok(Some(alert::build(&item, dept, &m, &self.rule_set, now)));
            }
        }
        Ok(None)
    }

    /// The score of a group now, from the event and the department's usual volume.
    pub fn score(
        &self,
        store: &Store,
        g: &Group,
        ev: &Event,
        now: DateTime<Utc>,
    ) -> Result<Score, StoreError> {
        let hour = event::hour_of(now);
        let days = self.settings.spike_days as i64;
        let (counts, since) = store.volume(&g.department, hour - days * 24, hour - 1)?;
        let span = since.map(|s| (hour - s).clamp(0, days * 24)).unwrap_or(0);
        let dept_rate = if span > 0 {
            counts.values().map(|c| *c as f64).sum::<f64>() / span as f64
        } else {
            0.0
        };
        Ok(assess::score(
            &Inputs {
                rule_weight: g.rule_weight,
                source_weight: ev.source_weight,
                engagement: ev.engagement,
                items: ev.items,
                sources: ev.sources as usize,
                last_hour: ev.last_hour(now),
                baseline: ev.baseline(now).max(dept_rate),
                negative: g.negative,
                negative_words: g.negative_words.clone(),
            },
            &self.settings,
        ))
    }

    /// Decides whether the group's change calls for an alert, and when.
    fn decide(
        &self,
        store: &Store,
        g: &mut Group,
        ev: &Event,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let score = self.score(store, g, ev, now)?;
        g.level = Level::from_score(score.total, &self.settings.levels);
        g.score = score.total;
        if let Some(due) = g.due {
            // Held for quiet hours (or waiting out group_wait): a rise to orange or above
            // must not wait for the morning.
            if due > now && g.level >= Level::Orange {
                g.due = Some(now);
                if g.sent.as_ref().is_some_and(|s| g.level > s.level) {
                    g.reason = Some(Reason::LevelRose);
                }
            }
            return Ok(());
        }
        let Some(sent) = &g.sent else {
            if g.pending == 0 {
                return Ok(());
            }
            let wait = chrono::Duration::from_std(self.settings.group_wait).unwrap_or_default();
            g.due = Some(now + wait);
            g.reason = Some(Reason::First);
            return Ok(());
        };
        let responded = ev.responded.is_some();
        let repeat = chrono::Duration::from_std(self.settings.repeat_interval)
            .unwrap_or(chrono::Duration::hours(4));
        if g.level > sent.level {
            // Also when the rise came from items that did not match (reposts, copies): the
            // alert then has no new items and its `item` is the first item of the previous
            // alert.
            g.reason = Some(Reason::LevelRose);
            g.after_response = responded;
        } else if responded
            && !g.escalated_after_response
            && ev.after_response >= self.settings.after_response_rise as u64
        {
            // Reaction after the response counts whether or not it matched this
            // department's keywords (reposts, copies).
            g.reason = Some(Reason::AfterResponse);
            g.after_response = true;
        } else if g.pending > 0 && now - sent.at >= repeat && ev.items > sent.event_items {
            g.reason = Some(Reason::Repeat);
            g.after_response = false;
        } else {
            return Ok(());
        }
        g.due = Some(now);
        Ok(())
    }

    /// Sends the alerts whose wait is over (or holds them: silences, quiet hours), each in
    /// its own transaction with its group's new state. An unreadable group is logged and its
    /// timer dropped, so one bad record cannot stop every other alert.
    pub fn flush_due(&self, store: &Store, now: DateTime<Utc>) -> Result<Vec<Raised>, StoreError> {
        let mut raised = Vec::new();
        for (event_id, dept_id, due_key) in store.due_groups(now)? {
            let g = match store.group(&event_id, &dept_id) {
                Ok(Some(g)) => g,
                Ok(None) => {
                    store.remove_timer(&due_key)?;
                    continue;
                }
                Err(StoreError::Corrupt { .. }) => {
                    tracing::error!(department = %dept_id, event = %event_id, "unreadable alert group: its timer is dropped");
                    store.remove_timer(&due_key)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.flush_group(store, g, now) {
                Ok(Some(r)) => raised.push(r),
                Ok(None) => {}
                // One bad record must not hold back every other alert behind its timer.
                Err(StoreError::Corrupt { tree, key, message }) => {
                    tracing::error!(department = %dept_id, event = %event_id, tree, key = %key, error = %message, "unreadable record: this alert's timer is dropped");
                    store.remove_timer(&due_key)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(raised)
    }

    fn flush_group(
        &self,
        store: &Store,
        mut g: Group,
        now: DateTime<Utc>,
    ) -> Result<Option<Raised>, StoreError> {
        let old_due = g.due;
        if g.due.is_none_or(|d| d > now) {
            return Ok(None);
        }
        let ev = readable(store.event(&g.event))?;
        let draft = match readable(store.draft(&g.event, &g.department))? {
            Some(d) => Some(d),
            None => self.stand_in_draft(store, &g, now)?,
        };
        let (Some(ev), Some(dept), Some(draft)) = (ev, self.department(&g.department), draft)
        else {
            // The event was pruned, or the department removed by a reload: nobody to tell.
            tracing::warn!(department = %g.department, event = %g.event, pending = g.pending, "alert not sent: its event, department or first item is gone");
            g.due = None;
            store.commit(Record::Nothing, &[], &Put::group(&g, old_due), now)?;
            return Ok(None);
        };
        let mut a = draft;
        let score = self.score(store, &g, &ev, now)?;
        let level = Level::from_score(score.total, &self.settings.levels);
        g.level = level;
        g.score = score.total;
        let reason = g.reason.unwrap_or(Reason::First);
        if reason == Reason::LevelRose && g.sent.as_ref().is_some_and(|s| level <= s.level) {
            // Held (quiet hours) while the level fell back: nothing new to say yet.
            g.due = None;
            g.reason = None;
            store.commit(Record::Nothing, &[], &Put::group(&g, old_due), now)?;
            return Ok(None);
        }
        a.kind = reason.kind().into();
        a.reason = reason.as_str().into();
        a.level = level.as_str().into();
        a.level_name = level.name_zh().into();
        a.score = Some(score);
        a.after_response = g.after_response;
        let pending = store.pending(&g.event, &g.department)?;
        a.items = pending.iter().map(|(_, f)| f.clone()).collect();
        a.items_omitted = g.omitted;
        a.event = EventRef::of(&ev);
        a.department = alert::DepartmentRef {
            id: dept.id.clone(),
            name: dept.name.clone(),
        };
        a.created = alert::rfc3339(now);
        let mut text = format!("{} {}", a.item.title, a.item.text);
        for p in &a.items {
            text.push(' ');
            text.push_str(&p.title);
        }
        let text = crate::text::normalize_for_match(&text);
        let rules: Vec<String> = g.rules.iter().cloned().collect();
        let mut sources: Vec<String> = a.items.iter().map(|i| i.source.clone()).collect();
        sources.push(a.item.source.clone());
        sources.sort();
        sources.dedup();
        // The group's opening time keeps ids unique should an event id ever recur.
        let seq = format!("{}:{}", g.opened.timestamp_millis(), g.seq);
        if let Some(s) = assess::silenced_by(
            &self.silences,
            &assess::Subject {
                department: &dept.id,
                rules: &rules,
                sources: &sources,
                text: &text,
            },
            now,
        ) {
            // Kept as a record; the items stay pending and go out when the silence ends
            // (with whatever arrived meanwhile), unless a silence then still holds.
            a.id = short_hash(&["silenced", &g.event, &g.department, &seq, &s.id]);
            a.silenced = Some(silence_ref(s));
            g.due = Some(s.ends);
            g.silenced = Some(s.id.clone());
            tracing::info!(department = %dept.id, event = %g.event, silence = %s.id, until = %alert::rfc3339(s.ends), "alert held back by a silence");
            let record = NewAlert {
                id: a.id.clone(),
                channel: "alerts".into(),
                department: dept.id.clone(),
                url: dept.webhook.to_string(),
                body: serde_json::to_string(&a).unwrap_or_default(),
                send: false,
            };
            store.commit(Record::Nothing, &[record], &Put::group(&g, old_due), now)?;
            return Ok(None);
        }
        if level < Level::Orange {
            if let Some(until) = assess::quiet_until(now, self.tz, self.settings.quiet_hours) {
                g.due = Some(until);
                tracing::info!(department = %dept.id, event = %g.event, until = %alert::rfc3339(until), "alert held for the end of quiet hours");
                store.commit(Record::Nothing, &[], &Put::group(&g, old_due), now)?;
                return Ok(None);
            }
        }
        a.id = short_hash(&["alert", &g.event, &g.department, &seq]);
        g.seq += 1;
        // Escalation is measured against the highest level ever sent: a level that dips and
        // comes back is not news twice.
        let peak = g.sent.as_ref().map_or(level, |s| s.level.max(level));
        g.sent = Some(Sent {
            level: peak,
            at: now,
            event_items: ev.items,
        });
        if g.after_response {
            g.escalated_after_response = true;
        }
        g.pending = 0;
        g.omitted = 0;
        g.due = None;
        g.reason = None;
        g.after_response = false;
        g.silenced = None;
        let new = NewAlert {
            id: a.id.clone(),
            channel: "alerts".into(),
            department: dept.id.clone(),
            url: dept.webhook.to_string(),
            body: serde_json::to_string(&a).unwrap_or_default(),
            send: true,
        };
        let mut puts = Put::group(&g, old_due);
        puts.extend(pending.into_iter().map(|(key, _)| Put {
            space: crate::store::Space::Groups,
            key,
            value: None,
        }));
        let committed = store.commit(Record::Nothing, &[new], &puts, now)?;
        if !committed.queued.contains(&a.id) {
            return Ok(None);
        }
        tracing::info!(department = %dept.id, event = %g.event, alert_id = %a.id, kind = %a.kind, reason = %a.reason, level = %a.level, score = g.score, items = a.items.len(), url = a.item.url.as_deref().unwrap_or(""), title = %a.item.title, "alert raised");
        Ok(Some(Raised {
            id: a.id,
            url: dept.webhook.to_string(),
            department: dept.id.clone(),
            level: a.level,
            kind: a.kind,
        }))
    }
}

/// A record that does not parse is logged and treated as absent (it is overwritten by the
/// next write), so one bad record cannot stop judging.
fn readable<T>(r: Result<Option<T>, StoreError>) -> Result<Option<T>, StoreError> {
    match r {
        Err(StoreError::Corrupt { tree, key, message }) => {
            tracing::error!(tree, key = %key, error = %message, "unreadable record treated as absent");
            Ok(None)
        }
        other => other,
    }
}

fn silence_ref(s: &Silence) -> SilenceRef {
    SilenceRef {
        id: s.id.clone(),
        comment: s.comment.clone(),
        ends: alert::rfc3339(s.ends),
    }
}

/// Marks an event responded (回应): reaction after now is counted apart, and a renewed rise
/// escalates with `after_response`. Returns the event, or None when there is no such event.
pub fn respond(
    store: &Store,
    event_id: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<Option<Event>, StoreError> {
    let _exclusive = store.ingest_guard();
    let Some(mut ev) = store.event(event_id)? else {
        return Ok(None);
    };
    ev.responded = Some(event::Response {
        at: now,
        note: note.to_string(),
    });
    ev.after_response = 0;
    let mut puts = vec![Put::event(&ev)];
    for mut g in store.groups_of(event_id)? {
        g.escalated_after_response = false;
        puts.extend(Put::group(&g, g.due));
    }
    store.commit(Record::Nothing, &[], &puts, now)?;
    store.flush()?;
    Ok(Some(ev))
}
