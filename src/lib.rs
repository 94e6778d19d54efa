//! tingfeng (听风): a daemon that watches what the public says online about a government
//! department's work — feeds, portals, forums, microblogs — matches it against each
//! department's keywords, and delivers alerts to a signed webhook that never loses one.
//!
//! # Layout
//!
//! The data path runs one way: config → schedule → fetch → source (extract) → item
//! (normalise) → ingest (dedup, match) → event (cluster) → alerter + assess (score, level,
//! group, escalate) → store (outbox) → webhook.
//!
//! - [`config`]: sources.toml loaded, every problem located by file, line and key.
//! - [`schedule`]: one task per source; intervals, jitter, backoff, source health.
//! - [`fetch`]: the shared HTTP client, per-host politeness, conditional GET, size caps.
//! - [`charset`]: bytes → UTF-8 text (Content-Type, BOM, prolog/meta, guess).
//! - [`date`]: the date formats feeds and Chinese sites print.
//! - [`source`]: one extractor per source kind, bytes → entries, no I/O.
//! - [`item`]: the item, its identity, canonical URL and text hash.
//! - [`text`]: HTML to text and the matching normal form, with offsets back to the original.
//! - [`rules`]: all departments' keywords in one Aho-Corasick automaton.
//! - [`ingest`]: dedup, match and the atomic write of item + judging state + alerts + outbox.
//! - [`event`]: near-duplicate clustering (SimHash + Jaccard) and the event record.
//! - [`assess`]: risk score by factor, levels, negative lexicon, spikes, silences, quiet hours.
//! - [`alerter`]: the per (department, event) lifecycle: group_wait, escalation, repeat.
//! - [`alert`]: the alert payload of the webhook contract.
//! - [`store`]: sled trees and their key layouts, retention.
//! - [`webhook`]: ordered, signed, retried delivery from the outbox.
//! - [`daemon`]: wiring, signals, shutdown. [`shutdown`]: the stop signal tasks share.

pub mod alert;
pub mod alerter;
pub mod analyst;
pub mod api;
pub mod assess;
pub mod charset;
pub mod config;
pub mod daemon;
pub mod date;
pub mod event;
pub mod fetch;
pub mod ingest;
pub mod item;
pub mod metrics;
pub mod ops;
pub mod poll;
pub mod robots;
pub mod rules;
pub mod schedule;
pub mod shutdown;
pub mod source;
pub mod store;
pub mod text;
pub mod webhook;
