//! Owns the embedded store (sled) behind a small interface of domain operations, so the rest of
//! the daemon never sees sled types and the engine can be swapped later.
//!
//! # Trees and key layouts
//!
//! | tree      | key                                  | value                                  |
//! |-----------|--------------------------------------|----------------------------------------|
//! | `items`   | item id (32 hex chars)               | [`Item`] as JSON                        |
//! | `seen`    | item id                              | [`SeenRecord`] as JSON: first/last seen, `duplicate_of` |
//! | `urls`    | canonical URL                        | item id of the first item with that URL |
//! | `hashes`  | content hash (32 hex)                | item id of the first item with that text |
//! | `alerts`  | alert id (32 hex)                    | the alert's webhook body (JSON text)    |
//! | `alert_times` | created (ms, u64 BE) ++ alert id | empty: the time index of `alerts` for the API |
//! | `outbox`  | destination (8 bytes) ++ seq (u64 BE) | [`OutboxEntry`] as JSON                 |
//! | `dead`    | seq (u64 BE)                         | [`DeadLetter`] as JSON                  |
//! | `sources` | source id                            | [`SourceState`] as JSON                 |
//! | `meta`    | name                                 | e.g. `schema` → `1`                     |
//! | `events`  | `e` ++ event id                      | [`Event`] as JSON                       |
//! |           | `x` ++ event id ++ 0 ++ source id    | empty: the source carried the event     |
//! |           | `y` ++ event id ++ 0 ++ n (u64 BE)   | its n-th item, for display (the first 20) |
//! |           | `i` ++ item id                       | [`Placement`] as JSON: its event, its SimHash |
//! |           | `s` ++ day (u32 BE) ++ item id       | SimHash (u64 BE) ++ event id (also held in memory for the event window) |
//! | `groups`  | `g` ++ event id ++ 0 ++ department   | [`Group`] as JSON: the alert lifecycle  |
//! |           | `d` ++ due (ms, u64 BE) ++ event id ++ 0 ++ department | empty: the timer index |
//! |           | `m` ++ item id ++ 0 ++ department    | empty: the item is counted in that group |
//! |           | `r` ++ event id ++ 0 ++ department   | the draft of the group's next alert (`Alert` JSON) |
//! |           | `p` ++ event id ++ 0 ++ department ++ 0 ++ n (u32 BE) | a matched item not yet reported (`FoldedItem` JSON) |
//! | `volume`  | department ++ 0 ++ `h` ++ hour (i64 BE, sign flipped) | matched items that hour (u32 BE) |
//! |           | department ++ 0 ++ `s`               | first hour counted (i64 BE)             |
//!
//! An item, its identity, its index entries, its alerts and their outbox entries are written in
//! one transaction; [`Store::flush`] makes them durable before any delivery is attempted.
//! `seen` outlives `items`: retention drops an item's body after `daemon.retention`, but its
//! identity stays while the source still lists it, so it is never alerted again.
//!
//! All methods block: callers on the async runtime use `spawn_blocking`.

use crate::alerter::Group;
use crate::event::Event;
use crate::item::Item;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::path::Path;

const SCHEMA_VERSION: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("store record {tree}/{key} is unreadable: {message}")]
    Corrupt {
        tree: &'static str,
        key: String,
        message: String,
    },
    #[error("store at {path} has schema {found}, this build understands {expected}")]
    Schema {
        path: String,
        found: String,
        expected: &'static str,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeenRecord {
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The item first seen with the same canonical URL or text on another source.
    pub duplicate_of: Option<String>,
}

/// What the scheduler remembers about a source between polls and restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceState {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub last_poll: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub next_poll: Option<DateTime<Utc>>,
    pub last_status: Option<u16>,
    /// Whether a poll has ever completed: decides `backlog = false` handling.
    pub first_poll_done: bool,
    pub items_new: u64,
    pub items_total_seen: u64,
    /// Item ids of the last full (200) answer: a 304 means they are all still listed.
    #[serde(default)]
    pub current_items: Vec<String>,
    /// Detail pages that failed, to retry on later polls.
    #[serde(default)]
    pub detail_pending: Vec<PendingDetail>,
    /// The reason of the current failure streak (`None` when healthy): logged on change only.
    #[serde(default)]
    pub failing: Option<String>,
    /// First successful poll ever (the reference for "silent" before any new item).
    #[serde(default)]
    pub first_success: Option<DateTime<Utc>>,
    /// When a poll last brought a new item.
    #[serde(default)]
    pub last_new_item: Option<DateTime<Utc>>,
    /// Since when operators have been told the source is unhealthy (None: not told).
    #[serde(default)]
    pub ops_alerted: Option<DateTime<Utc>>,
    /// Since when operators have been told the source is silent.
    #[serde(default)]
    pub ops_silent: Option<DateTime<Utc>>,
    /// Unreadable dates are logged once per source, not on every poll.
    #[serde(default)]
    pub bad_dates_logged: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingDetail {
    pub item_id: String,
    pub url: String,
    pub attempts: u32,
    /// Whether the item was allowed to alert (false on a silent first poll).
    pub alerting: bool,
}

/// An alert waiting for its webhook to acknowledge it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxEntry {
    pub alert_id: String,
    /// `alerts` (content alerts) or `ops` (source health): decides the signing secret.
    #[serde(default = "alerts_channel")]
    pub channel: String,
    pub department: String,
    pub url: String,
    /// The exact body sent on every attempt.
    pub body: String,
    pub created: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
    pub last_error: Option<String>,
}

fn alerts_channel() -> String {
    "alerts".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    pub entry: OutboxEntry,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Handle to an outbox entry (its key), valid until acknowledged or moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxKey(Vec<u8>);

/// Destination prefix of the outbox key: one ordered queue per webhook URL.
pub type Destination = [u8; 8];

pub fn destination_of(url: &str) -> Destination {
    let d = Sha256::digest(url.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// An alert raised for a new item, ready to be written with it.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub id: String,
    pub channel: String,
    pub department: String,
    pub url: String,
    pub body: String,
    /// False for a record kept without sending (a silenced alert).
    pub send: bool,
}

/// Where an item sits among events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Placement {
    pub event: String,
    /// None for a text too short to cluster.
    pub simhash: Option<u64>,
    /// Hash of the headline, when long enough to identify a story (see
    /// [`crate::event::headline`]).
    #[serde(default)]
    pub headline: Option<u64>,
    /// The day it was indexed under (see [`crate::event::day_of`]).
    #[serde(default)]
    pub day: u32,
}

/// A tree of the judging layer, for [`Put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Events,
    Groups,
    Volume,
}

/// One write (or, with `value: None`, removal) in the judging layer's trees, applied in the
/// same transaction as the item and alerts it belongs to.
#[derive(Debug, Clone)]
pub struct Put {
    pub space: Space,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

fn prefixed(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![tag];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn group_key(event: &str, department: &str) -> Vec<u8> {
    prefixed(b'g', &[event.as_bytes(), &[0], department.as_bytes()])
}

fn pending_key(event: &str, department: &str, n: Option<u32>) -> Vec<u8> {
    let mut k = prefixed(b'p', &[event.as_bytes(), &[0], department.as_bytes(), &[0]]);
    if let Some(n) = n {
        k.extend_from_slice(&n.to_be_bytes());
    }
    k
}

fn due_key(due: DateTime<Utc>, event: &str, department: &str) -> Vec<u8> {
    let ms = (due.timestamp_millis().max(0) as u64).to_be_bytes();
    prefixed(b'd', &[&ms, event.as_bytes(), &[0], department.as_bytes()])
}

/// Hours as sortable keys: the sign bit flipped so negative hours sort first.
fn hour_key(department: &str, hour: i64) -> Vec<u8> {
    let h = (hour as u64 ^ (1 << 63)).to_be_bytes();
    let mut k = department.as_bytes().to_vec();
    k.extend_from_slice(&[0, b'h']);
    k.extend_from_slice(&h);
    k
}

fn since_key(department: &str) -> Vec<u8> {
    let mut k = department.as_bytes().to_vec();
    k.extend_from_slice(&[0, b's']);
    k
}

impl Put {
    pub fn event(e: &Event) -> Put {
        Put {
            space: Space::Events,
            key: prefixed(b'e', &[e.id.as_bytes()]),
            value: Some(to_json(e)),
        }
    }

    /// The `n`-th item of an event, for display.
    pub fn member(event: &str, n: u64, m: &crate::event::Member) -> Put {
        Put {
            space: Space::Events,
            key: prefixed(b'y', &[event.as_bytes(), &[0], &n.to_be_bytes()]),
            value: Some(to_json(m)),
        }
    }

    /// Records that `source` carried the event.
    pub fn event_source(event: &str, source: &str) -> Put {
        Put {
            space: Space::Events,
            key: prefixed(b'x', &[event.as_bytes(), &[0], source.as_bytes()]),
            value: Some(Vec::new()),
        }
    }

    /// The item's placement and, when it has a SimHash, its four band index entries.
    pub fn placement(item_id: &str, p: &Placement) -> Vec<Put> {
        let mut out = vec![Put {
            space: Space::Events,
            key: prefixed(b'i', &[item_id.as_bytes()]),
            value: Some(to_json(p)),
        }];
        if p.simhash.is_some() || p.headline.is_some() {
            let flags = u8::from(p.simhash.is_some()) | u8::from(p.headline.is_some()) << 1;
            let mut value = p.simhash.unwrap_or(0).to_be_bytes().to_vec();
            value.extend_from_slice(&p.headline.unwrap_or(0).to_be_bytes());
            value.push(flags);
            value.extend_from_slice(p.event.as_bytes());
            out.push(Put {
                space: Space::Events,
                key: prefixed(b's', &[&p.day.to_be_bytes(), item_id.as_bytes()]),
                value: Some(value),
            });
        }
        out
    }

    /// The group and its timer entry (the old one removed when the due time moved).
    pub fn group(g: &Group, old_due: Option<DateTime<Utc>>) -> Vec<Put> {
        let mut out = vec![Put {
            space: Space::Groups,
            key: group_key(&g.event, &g.department),
            value: Some(to_json(g)),
        }];
        if old_due != g.due {
            if let Some(d) = old_due {
                out.push(Put {
                    space: Space::Groups,
                    key: due_key(d, &g.event, &g.department),
                    value: None,
                });
            }
            if let Some(d) = g.due {
                out.push(Put {
                    space: Space::Groups,
                    key: due_key(d, &g.event, &g.department),
                    value: Some(Vec::new()),
                });
            }
        }
        out
    }

    /// The draft of a group's next alert (its first item's matching detail).
    pub fn draft(event: &str, department: &str, draft: &crate::alert::Alert) -> Put {
        Put {
            space: Space::Groups,
            key: prefixed(b'r', &[event.as_bytes(), &[0], department.as_bytes()]),
            value: Some(to_json(draft)),
        }
    }

    /// A matched item waiting for its group's next alert.
    pub fn pending(event: &str, department: &str, n: u32, item: &crate::alert::FoldedItem) -> Put {
        Put {
            space: Space::Groups,
            key: pending_key(event, department, Some(n)),
            value: Some(to_json(item)),
        }
    }

    /// Marks an item as counted for a department, so re-processing it counts nothing twice.
    pub fn counted(item_id: &str, department: &str) -> Put {
        Put {
            space: Space::Groups,
            key: prefixed(b'm', &[item_id.as_bytes(), &[0], department.as_bytes()]),
            value: Some(Vec::new()),
        }
    }

    pub fn volume(department: &str, hour: i64, count: u32, first: bool) -> Vec<Put> {
        let mut out = vec![Put {
            space: Space::Volume,
            key: hour_key(department, hour),
            value: Some(count.to_be_bytes().to_vec()),
        }];
        if first {
            out.push(Put {
                space: Space::Volume,
                key: since_key(department),
                value: Some(hour.to_be_bytes().to_vec()),
            });
        }
        out
    }
}

/// What [`Store::commit`] records besides alerts.
pub enum Record<'a> {
    /// A new item (or an updated one: a late detail page).
    Item(&'a Item),
    /// An item seen first on another source: only its identity, linked to the first.
    Duplicate { id: &'a str, first: &'a str },
    /// Nothing but alerts and judging state (a group whose wait is over).
    Nothing,
}

/// What [`Store::commit_item`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Alerts newly queued (an alert id already in the store is never queued again).
    pub queued: Vec<String>,
}

/// One item in the in-memory index: its SimHash and headline hash.
#[derive(Debug, Clone)]
struct SimEntry {
    hash: Option<u64>,
    headline: Option<u64>,
    item: String,
    event: String,
}

/// A candidate for joining an event: how it came close, the item, its event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Near {
    /// 0 for the same headline, else 1 + the SimHash distance: headlines first.
    pub rank: u32,
    pub same_headline: bool,
    pub item: String,
    pub event: String,
}

impl SimEntry {
    /// From an `s` key (`s` ++ day ++ item id) and its value (SimHash ++ headline hash ++
    /// flags ++ event id).
    fn parse(key: &[u8], value: &[u8]) -> Option<SimEntry> {
        if key.len() < 5 || value.len() < 17 {
            return None;
        }
        let hash = u64::from_be_bytes(value[..8].try_into().ok()?);
        let headline = u64::from_be_bytes(value[8..16].try_into().ok()?);
        let flags = value[16];
        Some(SimEntry {
            hash: (flags & 1 != 0).then_some(hash),
            headline: (flags & 2 != 0).then_some(headline),
            item: String::from_utf8_lossy(&key[5..]).into_owned(),
            event: String::from_utf8_lossy(&value[17..]).into_owned(),
        })
    }

    fn day(key: &[u8]) -> Option<u32> {
        Some(u32::from_be_bytes(key.get(1..5)?.try_into().ok()?))
    }
}

/// The SimHashes of the days an event can still be joined in, loaded from the store on first
/// use and kept in step by [`Store::commit`].
#[derive(Debug, Default)]
struct SimIndex {
    days: std::collections::BTreeMap<u32, Vec<SimEntry>>,
}

#[derive(Clone)]
pub struct Store {
    /// Held across "is this a duplicate?" and the write that answers it for the next item,
    /// so two sources ingesting the same story at once cannot both alert.
    ingest: std::sync::Arc<std::sync::Mutex<()>>,
    db: sled::Db,
    items: sled::Tree,
    seen: sled::Tree,
    urls: sled::Tree,
    hashes: sled::Tree,
    alerts: sled::Tree,
    alert_times: sled::Tree,
    outbox: sled::Tree,
    dead: sled::Tree,
    sources: sled::Tree,
    events: sled::Tree,
    groups: sled::Tree,
    volume: sled::Tree,
    sim: std::sync::Arc<std::sync::Mutex<SimIndex>>,
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

fn from_json<T: for<'de> Deserialize<'de>>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

impl Store {
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<Store, StoreError> {
        // sled releases its file lock from a background thread after the last handle is
        // dropped, so a store closed a moment ago (a restart, a test) can still be locked.
        let mut attempt = 0;
        let db = loop {
            let r = sled::Config::new()
                .path(path)
                .cache_capacity(cache_capacity_bytes)
                .open();
            match r {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && attempt < 30 =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => {
                    break other.map_err(|source| StoreError::Open {
                        path: path.display().to_string(),
                        source,
                    })?
                }
            }
        };
        let meta = db.open_tree("meta")?;
        match meta.get("schema")? {
            None => {
                meta.insert("schema", SCHEMA_VERSION)?;
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION.as_bytes() => {}
            Some(v) => {
                return Err(StoreError::Schema {
                    path: path.display().to_string(),
                    found: String::from_utf8_lossy(&v).into_owned(),
                    expected: SCHEMA_VERSION,
                })
            }
        }
        Ok(Store {
            ingest: Default::default(),
            items: db.open_tree("items")?,
            seen: db.open_tree("seen")?,
            urls: db.open_tree("urls")?,
            hashes: db.open_tree("hashes")?,
            alerts: db.open_tree("alerts")?,
            alert_times: db.open_tree("alert_times")?,
            outbox: db.open_tree("outbox")?,
            dead: db.open_tree("dead")?,
            sources: db.open_tree("sources")?,
            events: db.open_tree("events")?,
            groups: db.open_tree("groups")?,
            volume: db.open_tree("volume")?,
            sim: Default::default(),
            db,
        })
    }

    /// Exclusive right to run dedup + commit (see the `ingest` field).
    pub fn ingest_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.ingest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn seen(&self, item_id: &str) -> Result<Option<SeenRecord>, StoreError> {
        match self.seen.get(item_id)? {
            Some(v) => Ok(Some(from_json("seen", item_id.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// Records that known items are still listed by their source (keeps their identity alive).
    /// Retention counts in days, so a record younger than a day is left alone: rewriting every
    /// listed item on every poll would be most of the store's write load.
    pub fn touch_seen<S: AsRef<str>>(
        &self,
        item_ids: &[S],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for id in item_ids {
            let id = id.as_ref();
            if let Some(v) = self.seen.get(id)? {
                let mut rec: SeenRecord = from_json("seen", id.as_bytes(), &v)?;
                if now - rec.last_seen < chrono::Duration::days(1) {
                    continue;
                }
                rec.last_seen = now;
                batch.insert(id.as_bytes(), to_json(&rec));
            }
        }
        self.seen.apply_batch(batch)?;
        Ok(())
    }

    /// Marks an item as seen without storing it (e.g. older than `max_age`).
    pub fn mark_seen(&self, item_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let rec = SeenRecord {
            first_seen: now,
            last_seen: now,
            duplicate_of: None,
        };
        self.seen.insert(item_id, to_json(&rec))?;
        Ok(())
    }

    pub fn item(&self, item_id: &str) -> Result<Option<Item>, StoreError> {
        match self.items.get(item_id)? {
            Some(v) => Ok(Some(from_json("items", item_id.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// The first stored item from *another* source with the same canonical URL or text hash.
    pub fn find_duplicate(&self, item: &Item) -> Result<Option<String>, StoreError> {
        let candidates = [
            item.canonical_url.as_deref().map(|u| (&self.urls, u)),
            item.content_hash.as_deref().map(|h| (&self.hashes, h)),
        ];
        for (tree, key) in candidates.into_iter().flatten() {
            if let Some(first) = tree.get(key)? {
                let first = String::from_utf8_lossy(&first).into_owned();
                if let Some(other) = self.item(&first)? {
                    if other.source != item.source {
                        return Ok(Some(first));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Writes an item (or a duplicate's identity), its index entries, the judging layer's
    /// changes, alerts and their outbox entries in one transaction. An alert id already in
    /// the store is never recorded or queued again.
    pub fn commit(
        &self,
        record: Record<'_>,
        alerts: &[NewAlert],
        puts: &[Put],
        now: DateTime<Utc>,
    ) -> Result<Committed, StoreError> {
        let (item, item_json) = match &record {
            Record::Item(i) => (Some(*i), to_json(*i)),
            _ => (None, Vec::new()),
        };
        let seen_json = to_json(&SeenRecord {
            first_seen: now,
            last_seen: now,
            duplicate_of: match &record {
                Record::Duplicate { first, .. } => Some(first.to_string()),
                _ => None,
            },
        });
        let seen_id: Option<&str> = match &record {
            Record::Item(i) => Some(&i.id),
            Record::Duplicate { id, .. } => Some(id),
            Record::Nothing => None,
        };
        let mut prepared = Vec::with_capacity(alerts.len());
        for a in alerts {
            let out = if a.send {
                Some(self.new_outbox_entry(a, now)?)
            } else {
                None
            };
            prepared.push((a, out));
        }
        let time_key = |id: &str| {
            let mut k = (now.timestamp_millis().max(0) as u64)
                .to_be_bytes()
                .to_vec();
            k.extend_from_slice(id.as_bytes());
            k
        };
        let result = (
            &self.items,
            &self.seen,
            &self.urls,
            &self.hashes,
            &self.alerts,
            &self.outbox,
            &self.alert_times,
            &self.events,
            &self.groups,
            &self.volume,
        )
            .transaction(
                |(items, seen, urls, hashes, alerts_t, outbox, times, events, groups, volume)| {
                    if let Some(item) = item {
                        items.insert(item.id.as_bytes(), item_json.as_slice())?;
                        if let Some(u) = &item.canonical_url {
                            if urls.get(u.as_bytes())?.is_none() {
                                urls.insert(u.as_bytes(), item.id.as_bytes())?;
                            }
                        }
                        if let Some(h) = &item.content_hash {
                            if hashes.get(h.as_bytes())?.is_none() {
                                hashes.insert(h.as_bytes(), item.id.as_bytes())?;
                            }
                        }
                    }
                    // An update (a late detail page) keeps the original first-seen record.
                    if let Some(id) = seen_id {
                        if seen.get(id.as_bytes())?.is_none() {
                            seen.insert(id.as_bytes(), seen_json.as_slice())?;
                        }
                    }
                    for p in puts {
                        let tree = match p.space {
                            Space::Events => events,
                            Space::Groups => groups,
                            Space::Volume => volume,
                        };
                        match &p.value {
                            Some(v) => tree.insert(p.key.as_slice(), v.as_slice())?,
                            None => tree.remove(p.key.as_slice())?,
                        };
                    }
                    let mut queued = Vec::new();
                    for (a, out) in &prepared {
                        if alerts_t.get(a.id.as_bytes())?.is_some() {
                            continue;
                        }
                        alerts_t.insert(a.id.as_bytes(), a.body.as_bytes())?;
                        times.insert(time_key(&a.id), &[] as &[u8])?;
                        if let Some((key, entry)) = out {
                            outbox.insert(key.as_slice(), entry.as_slice())?;
                            queued.push(a.id.clone());
                        }
                    }
                    Ok::<_, ConflictableTransactionError<()>>(queued)
                },
            );
        let committed = match result {
            Ok(queued) => Committed { queued },
            Err(TransactionError::Storage(e)) => return Err(StoreError::Sled(e)),
            // Our closure never aborts.
            Err(TransactionError::Abort(())) => Committed::default(),
        };
        // Days not loaded yet are read from the tree when first needed.
        let mut index = self.sim.lock().unwrap_or_else(|p| p.into_inner());
        for p in puts {
            if p.space != Space::Events || p.key.first() != Some(&b's') {
                continue;
            }
            let (Some(day), Some(v)) = (SimEntry::day(&p.key), &p.value) else {
                continue;
            };
            if let (Some(list), Some(e)) = (index.days.get_mut(&day), SimEntry::parse(&p.key, v)) {
                list.push(e);
            }
        }
        Ok(committed)
    }

    /// Removes an item's placement, SimHash entry and per-department counted marks.
    fn forget_judging(&self, item_id: &str) -> Result<(), StoreError> {
        let _exclusive = self.ingest_guard();
        let placement = self.placement(item_id).ok().flatten();
        let mut puts: Vec<Put> = match &placement {
            Some(p) => Put::placement(item_id, p),
            None => vec![Put {
                space: Space::Events,
                key: prefixed(b'i', &[item_id.as_bytes()]),
                value: None,
            }],
        };
        for p in &mut puts {
            p.value = None;
        }
        for kv in self
            .groups
            .scan_prefix(prefixed(b'm', &[item_id.as_bytes(), &[0]]))
        {
            let (mk, _) = kv?;
            puts.push(Put {
                space: Space::Groups,
                key: mk.to_vec(),
                value: None,
            });
        }
        self.commit(Record::Nothing, &[], &puts, Utc::now())?;
        if let Some(p) = placement {
            let mut index = self.sim.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = index.days.get_mut(&p.day) {
                list.retain(|e| e.item != item_id);
            }
        }
        Ok(())
    }

    pub fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let key = prefixed(b'e', &[id.as_bytes()]);
        match self.events.get(&key)? {
            Some(v) => Ok(Some(from_json("events", &key, &v)?)),
            None => Ok(None),
        }
    }

    /// The first items of an event, for display.
    pub fn members(&self, event: &str) -> Result<Vec<crate::event::Member>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .events
            .scan_prefix(prefixed(b'y', &[event.as_bytes(), &[0]]))
        {
            let (k, v) = kv?;
            out.push(from_json("events", &k, &v)?);
        }
        Ok(out)
    }

    pub fn event_has_source(&self, event: &str, source: &str) -> Result<bool, StoreError> {
        Ok(self
            .events
            .contains_key(prefixed(b'x', &[event.as_bytes(), &[0], source.as_bytes()]))?)
    }

    pub fn placement(&self, item_id: &str) -> Result<Option<Placement>, StoreError> {
        let key = prefixed(b'i', &[item_id.as_bytes()]);
        match self.events.get(&key)? {
            Some(v) => Ok(Some(from_json("events", &key, &v)?)),
            None => Ok(None),
        }
    }

    /// Events with an item indexed on days `from..=to` with the same headline or a SimHash
    /// within `max_distance` of `hash`: the best such item of each event, best first.
    pub fn near(
        &self,
        hash: Option<u64>,
        headline: Option<u64>,
        from: u32,
        to: u32,
        max_distance: u32,
    ) -> Result<Vec<Near>, StoreError> {
        let mut index = self.sim.lock().unwrap_or_else(|p| p.into_inner());
        index.days.retain(|d, _| *d >= from);
        for day in from..=to {
            if index.days.contains_key(&day) {
                continue;
            }
            let mut entries = Vec::new();
            let prefix = prefixed(b's', &[&day.to_be_bytes()]);
            for kv in self.events.scan_prefix(&prefix) {
                let (k, v) = kv?;
                if let Some(e) = SimEntry::parse(&k, &v) {
                    entries.push(e);
                }
            }
            index.days.insert(day, entries);
        }
        // The best few candidates of each event only: when a story is everywhere, thousands
        // of its copies are close, and a handful per event is all the caller can use. Newer
        // items first on equal rank (older ones are the first to lose their text to pruning).
        const PER_EVENT: usize = 3;
        // Per event: (rank, newer first, same headline, item).
        type Slot<'a> = Vec<(u32, std::cmp::Reverse<usize>, bool, &'a str)>;
        let mut best: std::collections::HashMap<&str, Slot<'_>> = std::collections::HashMap::new();
        for (order, e) in index
            .days
            .range(from..=to)
            .flat_map(|(_, v)| v.iter())
            .enumerate()
        {
            let same_headline = headline.is_some() && e.headline == headline;
            let rank = if same_headline {
                0
            } else {
                match (hash, e.hash) {
                    (Some(a), Some(b)) if (a ^ b).count_ones() <= max_distance => {
                        1 + (a ^ b).count_ones()
                    }
                    _ => continue,
                }
            };
            let slot = best.entry(e.event.as_str()).or_default();
            let entry = (
                rank,
                std::cmp::Reverse(order),
                same_headline,
                e.item.as_str(),
            );
            if slot.len() < PER_EVENT {
                slot.push(entry);
            } else if let Some(worst) = slot.iter_mut().max() {
                if entry < *worst {
                    *worst = entry;
                }
            }
        }
        let mut out: Vec<Near> = best
            .into_iter()
            .flat_map(|(event, slot)| {
                slot.into_iter()
                    .map(move |(rank, _, same_headline, item)| Near {
                        rank,
                        same_headline,
                        item: item.to_string(),
                        event: event.to_string(),
                    })
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub fn draft(
        &self,
        event: &str,
        department: &str,
    ) -> Result<Option<crate::alert::Alert>, StoreError> {
        let key = prefixed(b'r', &[event.as_bytes(), &[0], department.as_bytes()]);
        match self.groups.get(&key)? {
            Some(v) => Ok(Some(from_json("groups", &key, &v)?)),
            None => Ok(None),
        }
    }

    /// A group's items not yet reported, in arrival order, with their keys.
    pub fn pending(
        &self,
        event: &str,
        department: &str,
    ) -> Result<Vec<(Vec<u8>, crate::alert::FoldedItem)>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .groups
            .scan_prefix(pending_key(event, department, None))
        {
            let (k, v) = kv?;
            out.push((k.to_vec(), from_json("groups", &k, &v)?));
        }
        Ok(out)
    }

    pub fn was_counted(&self, item_id: &str, department: &str) -> Result<bool, StoreError> {
        let key = prefixed(b'm', &[item_id.as_bytes(), &[0], department.as_bytes()]);
        Ok(self.groups.contains_key(key)?)
    }

    /// The departments an item was counted for: those whose rules matched it when it arrived,
    /// whether or not an alert listed it.
    pub fn counted_for(&self, item_id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefixed(b'm', &[item_id.as_bytes(), &[0]]);
        let mut out = Vec::new();
        for kv in self.groups.scan_prefix(&prefix) {
            let (k, _) = kv?;
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    pub fn group(&self, event: &str, department: &str) -> Result<Option<Group>, StoreError> {
        let key = group_key(event, department);
        match self.groups.get(&key)? {
            Some(v) => Ok(Some(from_json("groups", &key, &v)?)),
            None => Ok(None),
        }
    }

    /// Every department's group on an event.
    pub fn groups_of(&self, event: &str) -> Result<Vec<Group>, StoreError> {
        let prefix = prefixed(b'g', &[event.as_bytes(), &[0]]);
        let mut out = Vec::new();
        for kv in self.groups.scan_prefix(&prefix) {
            let (k, v) = kv?;
            match from_json("groups", &k, &v) {
                Ok(g) => out.push(g),
                // One bad record must not stop the event's other departments.
                Err(e) => tracing::error!(event, error = %e, "unreadable alert group skipped"),
            }
        }
        Ok(out)
    }

    /// All groups (for the API's list of open matters), newest activity first.
    pub fn all_groups(&self) -> Result<Vec<Group>, StoreError> {
        let mut out: Vec<Group> = Vec::new();
        for kv in self.groups.scan_prefix([b'g']) {
            let (k, v) = kv?;
            out.push(from_json("groups", &k, &v)?);
        }
        out.sort_by_key(|g| std::cmp::Reverse(g.updated));
        Ok(out)
    }

    /// Groups whose timer has run out by `now`: (event, department, timer key).
    pub fn due_groups(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let end = prefixed(
            b'd',
            &[&(now.timestamp_millis().max(0) as u64 + 1).to_be_bytes()],
        );
        let mut out = Vec::new();
        for kv in self.groups.range(vec![b'd']..end) {
            let (k, _) = kv?;
            let rest = k.get(9..).unwrap_or_default();
            match rest.iter().position(|b| *b == 0) {
                Some(z) => out.push((
                    String::from_utf8_lossy(&rest[..z]).into_owned(),
                    String::from_utf8_lossy(&rest[z + 1..]).into_owned(),
                    k.to_vec(),
                )),
                // Not a key this version writes: drop it rather than trip on it forever.
                None => {
                    self.groups.remove(&k)?;
                }
            }
        }
        Ok(out)
    }

    /// Drops a timer entry whose group is gone or unreadable.
    pub fn remove_timer(&self, key: &[u8]) -> Result<(), StoreError> {
        self.groups.remove(key)?;
        Ok(())
    }

    /// A department's matched items per hour in `from..=to`, and the first hour it counted.
    pub fn volume(
        &self,
        department: &str,
        from: i64,
        to: i64,
    ) -> Result<(std::collections::BTreeMap<i64, u32>, Option<i64>), StoreError> {
        let mut out = std::collections::BTreeMap::new();
        for kv in self
            .volume
            .range(hour_key(department, from)..=hour_key(department, to))
        {
            let (k, v) = kv?;
            if k.len() < 8 || v.len() != 4 {
                continue;
            }
            let mut h = [0u8; 8];
            h.copy_from_slice(&k[k.len() - 8..]);
            let hour = (u64::from_be_bytes(h) ^ (1 << 63)) as i64;
            let mut c = [0u8; 4];
            c.copy_from_slice(&v);
            out.insert(hour, u32::from_be_bytes(c));
        }
        let since = self.volume.get(since_key(department))?.and_then(|v| {
            let b: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(i64::from_be_bytes(b))
        });
        Ok((out, since))
    }

    pub fn event_count(&self) -> usize {
        self.events.scan_prefix([b'e']).count()
    }

    /// An item and its alerts, without judging state.
    pub fn commit_item(
        &self,
        item: &Item,
        alerts: &[NewAlert],
        now: DateTime<Utc>,
    ) -> Result<Committed, StoreError> {
        self.commit(Record::Item(item), alerts, &[], now)
    }

    /// The outbox key (destination ++ sequence) and serialised entry for a new alert.
    /// Sequence numbers are taken outside transactions: a retried transaction may leave gaps,
    /// which is harmless, only the order matters.
    fn new_outbox_entry(
        &self,
        a: &NewAlert,
        now: DateTime<Utc>,
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let seq = self.db.generate_id()?;
        let mut key = destination_of(&a.url).to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        let entry = OutboxEntry {
            alert_id: a.id.clone(),
            channel: a.channel.clone(),
            department: a.department.clone(),
            url: a.url.clone(),
            body: a.body.clone(),
            created: now,
            attempts: 0,
            next_attempt: now,
            last_error: None,
        };
        Ok((key, to_json(&entry)))
    }

    /// Queues an alert that belongs to no item (source health for operators): recorded and
    /// queued atomically, once per id.
    pub fn enqueue(&self, a: &NewAlert, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let (key, entry) = self.new_outbox_entry(a, now)?;
        let mut tk = (now.timestamp_millis().max(0) as u64)
            .to_be_bytes()
            .to_vec();
        tk.extend_from_slice(a.id.as_bytes());
        let r = (&self.alerts, &self.outbox, &self.alert_times).transaction(
            |(alerts, outbox, times)| {
                if alerts.get(a.id.as_bytes())?.is_some() {
                    return Ok(false);
                }
                alerts.insert(a.id.as_bytes(), a.body.as_bytes())?;
                times.insert(tk.as_slice(), &[] as &[u8])?;
                outbox.insert(key.as_slice(), entry.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(true)
            },
        );
        let queued = match r {
            Ok(q) => q,
            Err(TransactionError::Abort(())) => false,
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        self.db.flush()?;
        Ok(queued)
    }

    /// Alert bodies, newest first, from before `cursor` (an opaque key from a previous page).
    pub fn alerts_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        mut keep: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<(Vec<serde_json::Value>, Option<String>), StoreError> {
        let end = cursor.and_then(|c| hex::decode(c).ok());
        let iter = match &end {
            Some(e) => self.alert_times.range(..e.as_slice()),
            None => self.alert_times.range::<&[u8], _>(..),
        };
        let mut out = Vec::new();
        let mut last_shown: Option<Vec<u8>> = None;
        let mut next = None;
        for kv in iter.rev() {
            let (k, _) = kv?;
            if k.len() <= 8 {
                continue;
            }
            let Some(body) = self.alerts.get(&k[8..])? else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                continue;
            };
            if !keep(&v) {
                continue;
            }
            if out.len() == limit {
                // There is more: the next page starts before the last alert shown.
                next = last_shown.map(hex::encode);
                break;
            }
            last_shown = Some(k.to_vec());
            out.push(v);
        }
        Ok((out, next))
    }

    /// Items matching `keep`, newest fetched first (a full scan: the API's search, not a
    /// hot path).
    pub fn items_matching(
        &self,
        limit: usize,
        mut keep: impl FnMut(&Item) -> bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out: Vec<Item> = Vec::new();
        for kv in self.items.iter() {
            let (k, v) = kv?;
            let item: Item = match from_json("items", &k, &v) {
                Ok(i) => i,
                Err(_) => continue,
            };
            if keep(&item) {
                out.push(item);
            }
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.fetched));
        out.truncate(limit);
        Ok(out)
    }

    /// Every source's saved state.
    pub fn source_states(&self) -> Result<Vec<(String, SourceState)>, StoreError> {
        self.sources
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let id = String::from_utf8_lossy(&k).into_owned();
                let st = from_json("sources", &k, &v)?;
                Ok((id, st))
            })
            .collect()
    }

    /// Dead letters with their sequence keys (for retrying one).
    pub fn dead_letters_keyed(&self) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        self.dead
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let mut b = [0u8; 8];
                if k.len() == 8 {
                    b.copy_from_slice(&k);
                }
                Ok((u64::from_be_bytes(b), from_json("dead", &k, &v)?))
            })
            .collect()
    }

    /// Moves a dead letter back to the end of its destination's queue; false if unknown.
    pub fn retry_dead(&self, seq: u64, now: DateTime<Utc>) -> Result<Option<String>, StoreError> {
        let Some(v) = self.dead.get(seq.to_be_bytes())? else {
            return Ok(None);
        };
        let dead: DeadLetter = from_json("dead", &seq.to_be_bytes(), &v)?;
        let mut entry = dead.entry;
        entry.attempts = 0;
        entry.next_attempt = now;
        entry.last_error = Some(format!("retried by operator after: {}", dead.reason));
        let new_seq = self.db.generate_id()?;
        let mut key = destination_of(&entry.url).to_vec();
        key.extend_from_slice(&new_seq.to_be_bytes());
        let json = to_json(&entry);
        let r = (&self.dead, &self.outbox).transaction(|(d, o)| {
            d.remove(&seq.to_be_bytes())?;
            o.insert(key.as_slice(), json.as_slice())?;
            Ok::<_, ConflictableTransactionError<()>>(())
        });
        match r {
            Ok(()) | Err(TransactionError::Abort(())) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        self.db.flush()?;
        Ok(Some(entry.url))
    }

    /// A cheap read and write, to tell a working store from a wedged one (watchdog, readyz).
    pub fn check(&self) -> Result<(), StoreError> {
        let meta = self.db.open_tree("meta")?;
        meta.insert("alive", &Utc::now().timestamp().to_be_bytes())?;
        meta.get("schema")?;
        Ok(())
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    pub fn source_state(&self, source: &str) -> Result<SourceState, StoreError> {
        match self.sources.get(source)? {
            Some(v) => from_json("sources", source.as_bytes(), &v),
            None => Ok(SourceState::default()),
        }
    }

    pub fn put_source_state(&self, source: &str, state: &SourceState) -> Result<(), StoreError> {
        self.sources.insert(source, to_json(state))?;
        Ok(())
    }

    /// Every destination with pending entries.
    pub fn outbox_destinations(&self) -> Result<Vec<(Destination, String)>, StoreError> {
        let mut out: Vec<(Destination, String)> = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let next = match &cursor {
                None => self.outbox.first()?,
                Some(after) => self.outbox.range(after.as_slice()..).next().transpose()?,
            };
            let Some((k, v)) = next else { break };
            if k.len() < 8 {
                break;
            }
            let mut dest = [0u8; 8];
            dest.copy_from_slice(&k[..8]);
            let entry: OutboxEntry = from_json("outbox", &k, &v)?;
            out.push((dest, entry.url));
            // Skip to the first key past this destination's prefix.
            match increment(&dest) {
                Some(n) => cursor = Some(n.to_vec()),
                None => break,
            }
        }
        Ok(out)
    }

    /// The oldest pending entry for a destination.
    pub fn outbox_head(
        &self,
        dest: &Destination,
    ) -> Result<Option<(OutboxKey, OutboxEntry)>, StoreError> {
        match self.outbox.scan_prefix(dest).next() {
            Some(kv) => {
                let (k, v) = kv?;
                let e = from_json("outbox", &k, &v)?;
                Ok(Some((OutboxKey(k.to_vec()), e)))
            }
            None => Ok(None),
        }
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// All pending entries, oldest first per destination.
    pub fn outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                from_json("outbox", &k, &v)
            })
            .collect()
    }

    pub fn outbox_update(&self, key: &OutboxKey, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.outbox.insert(key.0.as_slice(), to_json(entry))?;
        self.outbox.flush()?;
        Ok(())
    }

    /// Removes an acknowledged entry.
    pub fn outbox_ack(&self, key: &OutboxKey) -> Result<(), StoreError> {
        self.outbox.remove(key.0.as_slice())?;
        self.outbox.flush()?;
        Ok(())
    }

    /// Moves an entry the receiver refused for good into the dead-letter tree.
    pub fn outbox_dead(
        &self,
        key: &OutboxKey,
        entry: &OutboxEntry,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let seq = self.db.generate_id()?;
        let dead = to_json(&DeadLetter {
            entry: entry.clone(),
            reason: reason.to_string(),
            at: now,
        });
        let r = (&self.outbox, &self.dead).transaction(|(outbox, dead_t)| {
            outbox.remove(key.0.as_slice())?;
            dead_t.insert(&seq.to_be_bytes(), dead.as_slice())?;
            Ok::<_, ConflictableTransactionError<()>>(())
        });
        match r {
            Ok(()) | Err(TransactionError::Abort(())) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        self.db.flush()?;
        Ok(())
    }

    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                from_json("dead", &k, &v)
            })
            .collect()
    }

    /// Drops item bodies fetched before `cutoff`, identities not listed since `cutoff`, and
    /// alert records older than `cutoff`. Pending outbox entries are never pruned.
    pub fn prune(&self, cutoff: DateTime<Utc>) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        for kv in self.items.iter() {
            let (k, v) = kv?;
            let item: Item = match from_json("items", &k, &v) {
                Ok(i) => i,
                Err(_) => continue,
            };
            if item.fetched < cutoff {
                if let Some(u) = &item.canonical_url {
                    if self.urls.get(u)?.as_deref() == Some(k.as_ref()) {
                        self.urls.remove(u)?;
                    }
                }
                if let Some(h) = &item.content_hash {
                    if self.hashes.get(h)?.as_deref() == Some(k.as_ref()) {
                        self.hashes.remove(h)?;
                    }
                }
                self.items.remove(&k)?;
                self.forget_judging(&String::from_utf8_lossy(&k))?;
                report.items += 1;
            }
        }
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            if let Ok(rec) = from_json::<SeenRecord>("seen", &k, &v) {
                if rec.last_seen < cutoff {
                    self.seen.remove(&k)?;
                    // A duplicate has no body in `items`: its judging keys go with its identity.
                    self.forget_judging(&String::from_utf8_lossy(&k))?;
                    report.identities += 1;
                }
            }
        }
        for kv in self.alerts.iter() {
            let (k, v) = kv?;
            let created = serde_json::from_slice::<serde_json::Value>(&v)
                .ok()
                .and_then(|j| {
                    j.get("created")
                        .and_then(|c| c.as_str())
                        .map(str::to_string)
                })
                .and_then(|c| DateTime::parse_from_rfc3339(&c).ok());
            if created.is_some_and(|c| c < cutoff) {
                self.alerts.remove(&k)?;
                report.alerts += 1;
            }
        }
        // Found without the ingest lock; each removed under it, after checking again that the
        // event did not grow meanwhile.
        let mut expired = Vec::new();
        for kv in self.events.scan_prefix([b'e']) {
            let (k, v) = kv?;
            if let Ok(event) = from_json::<Event>("events", &k, &v) {
                if event.last_seen < cutoff {
                    expired.push(event.id);
                }
            }
        }
        for id in expired {
            let _exclusive = self.ingest_guard();
            if self
                .event(&id)
                .ok()
                .flatten()
                .is_some_and(|e| e.last_seen >= cutoff)
            {
                continue;
            }
            let groups = self.groups_of(&id)?;
            // A matter still waiting to be told (held by a long silence) stays.
            if groups.iter().any(|g| g.due.is_some()) {
                continue;
            }
            let mut puts = vec![Put {
                space: Space::Events,
                key: prefixed(b'e', &[id.as_bytes()]),
                value: None,
            }];
            // Everything keyed under the event, by raw prefix: no record needs to parse.
            for (space, tree, tag) in [
                (Space::Events, &self.events, b'x'),
                (Space::Events, &self.events, b'y'),
                (Space::Groups, &self.groups, b'g'),
                (Space::Groups, &self.groups, b'r'),
                (Space::Groups, &self.groups, b'p'),
            ] {
                for kv in tree.scan_prefix(prefixed(tag, &[id.as_bytes(), &[0]])) {
                    let (key, _) = kv?;
                    puts.push(Put {
                        space,
                        key: key.to_vec(),
                        value: None,
                    });
                }
            }
            self.commit(Record::Nothing, &[], &puts, cutoff)?;
            report.events += 1;
        }
        let oldest_hour = crate::event::hour_of(cutoff);
        for kv in self.volume.iter() {
            let (k, _) = kv?;
            let n = k.len();
            if n >= 10 && k[n - 10] == 0 && k[n - 9] == b'h' {
                let mut h = [0u8; 8];
                h.copy_from_slice(&k[n - 8..]);
                if ((u64::from_be_bytes(h) ^ (1 << 63)) as i64) < oldest_hour {
                    self.volume.remove(&k)?;
                }
            }
        }
        let cutoff_key = (cutoff.timestamp_millis().max(0) as u64).to_be_bytes();
        for kv in self.alert_times.range(..cutoff_key.as_slice()) {
            let (k, _) = kv?;
            self.alert_times.remove(&k)?;
        }
        Ok(report)
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub items: usize,
    pub events: usize,
    pub identities: usize,
    pub alerts: usize,
}

/// The smallest byte string greater than every key with this prefix.
fn increment(prefix: &[u8; 8]) -> Option<[u8; 8]> {
    let n = u64::from_be_bytes(*prefix).checked_add(1)?;
    Some(n.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::sample as item;

    #[test]
    fn counted_for_lists_the_departments_of_one_item_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let puts = [
            Put::counted("item-1", "urban"),
            Put::counted("item-1", "water"),
            // Shares the first id as a prefix: must not be listed for it.
            Put::counted("item-10", "roads"),
        ];
        store
            .commit(Record::Nothing, &[], &puts, Utc::now())
            .unwrap();
        assert_eq!(store.counted_for("item-1").unwrap(), ["urban", "water"]);
        assert_eq!(store.counted_for("item-10").unwrap(), ["roads"]);
        assert!(store.counted_for("item-2").unwrap().is_empty());
        assert!(store.was_counted("item-1", "water").unwrap());
    }

    #[test]
    fn commit_is_idempotent_per_alert_and_queues_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let now = Utc::now();
        let mk = |id: &str| NewAlert {
            id: id.into(),
            channel: "alerts".into(),
            department: "d".into(),
            url: "http://127.0.0.1:1/hook".into(),
            body: format!("{{\"id\":\"{id}\"}}"),
            send: true,
        };
        let c = store
            .commit_item(&item("i1", "s", "https://a.cn/1"), &[mk("a1")], now)
            .unwrap();
        assert_eq!(c.queued, vec!["a1".to_string()]);
        store
            .commit_item(&item("i2", "s", "https://a.cn/2"), &[mk("a2")], now)
            .unwrap();
        // The same alert again is not queued twice.
        let again = store
            .commit_item(&item("i1", "s", "https://a.cn/1"), &[mk("a1")], now)
            .unwrap();
        assert!(again.queued.is_empty());
        assert_eq!(store.outbox_len(), 2);
        let dests = store.outbox_destinations().unwrap();
        assert_eq!(dests.len(), 1);
        let (key, head) = store.outbox_head(&dests[0].0).unwrap().unwrap();
        assert_eq!(head.alert_id, "a1");
        store.outbox_ack(&key).unwrap();
        let (key, head) = store.outbox_head(&dests[0].0).unwrap().unwrap();
        assert_eq!(head.alert_id, "a2");
        store.outbox_dead(&key, &head, "410 Gone", now).unwrap();
        assert_eq!(store.outbox_len(), 0);
        assert_eq!(store.dead_letters().unwrap()[0].reason, "410 Gone");
    }

    #[test]
    fn duplicates_are_found_only_across_sources() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let now = Utc::now();
        store
            .commit_item(&item("i1", "s1", "https://a.cn/x?utm_source=rss"), &[], now)
            .unwrap();
        let same_source = item("i2", "s1", "https://a.cn/x#frag");
        assert_eq!(store.find_duplicate(&same_source).unwrap(), None);
        let other = item("i3", "s2", "http://A.cn/x");
        assert_eq!(store.find_duplicate(&other).unwrap().as_deref(), Some("i1"));
    }

    #[test]
    fn prune_keeps_recent_identities() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let old = Utc::now() - chrono::Duration::days(100);
        let mut it = item("old", "s", "https://a.cn/old");
        it.fetched = old;
        store.commit_item(&it, &[], old).unwrap();
        // Still listed by its source today: the identity must survive the body.
        store.touch_seen(&["old"], Utc::now()).unwrap();
        let r = store
            .prune(Utc::now() - chrono::Duration::days(90))
            .unwrap();
        assert_eq!(r.items, 1);
        assert_eq!(r.identities, 0);
        assert!(store.seen("old").unwrap().is_some());
        assert!(store.item("old").unwrap().is_none());
    }

    #[test]
    fn reopen_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 8 << 20).unwrap();
            store
                .put_source_state(
                    "s",
                    &SourceState {
                        etag: Some("\"abc\"".into()),
                        ..Default::default()
                    },
                )
                .unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(
            store.source_state("s").unwrap().etag.as_deref(),
            Some("\"abc\"")
        );
    }
}
