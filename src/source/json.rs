//! Owns `kind = "json"`: microblog-like JSON endpoints (Weibo, Mastodon, Twitter v2, any API
//! with a list of posts) → entries, through RFC 9535 JSONPath compiled at config load.
//! Also tells a soft block ("log in", a captcha page) from an empty result. No I/O.

use crate::charset::{self, DocKind};
use crate::item::{Engagement, Entry};
use crate::text::html_to_text;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use serde_json_path::JsonPath;
use std::collections::BTreeMap;

/// Fields a JSON item may carry (JSONPath relative to the item).
pub const FIELDS: &[&str] = &[
    "id",
    "text",
    "title",
    "link",
    "author",
    "published",
    "reposts",
    "comments",
    "likes",
    "replies",
    "views",
    "repost",
    "long_text",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Weibo,
    Mastodon,
    TwitterV2,
}

pub const PRESETS: &[&str] = &["weibo", "mastodon", "twitter-v2"];

impl Preset {
    pub fn parse(name: &str) -> Option<Preset> {
        match name {
            "weibo" => Some(Preset::Weibo),
            "mastodon" => Some(Preset::Mastodon),
            "twitter-v2" => Some(Preset::TwitterV2),
            _ => None,
        }
    }

    /// The preset's selectors; `link_template` and the cursor are returned alongside.
    pub fn selectors(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // m.weibo.cn api/container/getIndex: cards of type 9 carry the posts.
            Preset::Weibo => &[
                // Search results nest posts in card_group (type-11 cards): look at any depth.
                ("item", "$.data..[?@.card_type == 9].mblog"),
                ("id", "$.id"),
                ("text", "$.text"),
                ("author", "$.user.screen_name"),
                ("published", "$.created_at"),
                ("reposts", "$.reposts_count"),
                ("comments", "$.comments_count"),
                ("likes", "$.attitudes_count"),
                ("repost", "$.retweeted_status"),
                ("long_text", "$.isLongText"),
                ("link_template", "https://m.weibo.cn/detail/{id}"),
                ("cursor_param", "since_id"),
                ("cursor_path", "$.data.cardlistInfo.since_id"),
            ],
            // Mastodon statuses / timelines: an array of Status.
            Preset::Mastodon => &[
                ("item", "$[*]"),
                ("id", "$.id"),
                ("text", "$.content"),
                ("link", "$.url"),
                ("author", "$.account.acct"),
                ("published", "$.created_at"),
                ("reposts", "$.reblogs_count"),
                ("comments", "$.replies_count"),
                ("likes", "$.favourites_count"),
                ("repost", "$.reblog"),
                ("cursor_param", "max_id"),
            ],
            // Twitter API v2 search/timelines: data + includes.users.
            Preset::TwitterV2 => &[
                ("item", "$.data[*]"),
                ("id", "$.id"),
                ("text", "$.text"),
                ("author", "$.author_id"),
                ("published", "$.created_at"),
                ("reposts", "$.public_metrics.retweet_count"),
                ("comments", "$.public_metrics.reply_count"),
                ("likes", "$.public_metrics.like_count"),
                ("link_template", "https://twitter.com/i/web/status/{id}"),
                ("cursor_param", "pagination_token"),
                ("cursor_path", "$.meta.next_token"),
            ],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub raw: String,
    pub path: JsonPath,
}

impl Field {
    pub fn parse(raw: &str) -> Result<Field, String> {
        JsonPath::parse(raw)
            .map(|path| Field {
                raw: raw.to_string(),
                path,
            })
            .map_err(|e| format!("{raw:?} is not a valid JSONPath: {e}"))
    }

    fn first<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        self.path.query(v).all().into_iter().find(|x| !x.is_null())
    }
}

/// Compiled selectors of a json source.
#[derive(Debug, Clone)]
pub struct JsonSpec {
    pub item: Field,
    pub fields: BTreeMap<String, Field>,
    pub link_template: Option<String>,
    pub preset: Option<Preset>,
    /// Query parameter that asks for the next (older) page.
    pub cursor_param: Option<String>,
    /// Where the response names the next page's cursor; else the last item's id.
    pub cursor_path: Option<Field>,
}

/// One response, read.
#[derive(Debug, Clone, Default)]
pub struct JsonPage {
    pub entries: Vec<Entry>,
    /// Raw field values per entry, for `try-source`.
    pub raw: Vec<BTreeMap<String, String>>,
    /// Ids of entries flagged as truncated long posts (full text fetched separately).
    pub long_text: Vec<String>,
    pub next_cursor: Option<String>,
    /// Why this answer means "blocked" rather than "no news".
    pub blocked: Option<String>,
    pub bad_dates: Vec<String>,
}

/// How to read one response.
pub struct JsonContext<'a> {
    pub content_type: Option<&'a str>,
    pub timezone: Tz,
    pub now: DateTime<Utc>,
    pub date_format: Option<&'a str>,
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn as_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Value::String(s) => crate::source::html::parse_count(s),
        _ => None,
    }
}

fn as_date(v: &Value, ctx: &JsonContext<'_>) -> Result<Option<DateTime<Utc>>, String> {
    let s = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Ok(None),
    };
    crate::date::parse_date(&s, ctx.now, ctx.timezone, ctx.date_format)
        .map(Some)
        .ok_or(s)
}

/// Weibo-style answers that mean "you are not let in" rather than "nothing new".
fn soft_block(doc: &Value) -> Option<String> {
    let ok = doc.get("ok").and_then(Value::as_i64)?;
    if ok == -100 {
        return Some("login required (\"ok\": -100)".into());
    }
    if ok == 0 {
        let url = doc
            .get("url")
            .or_else(|| doc.pointer("/data/url"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if url.contains("login") || url.contains("passport") || url.contains("visitor") {
            return Some(format!("login required (\"ok\": 0, redirect to {url})"));
        }
    }
    None
}

pub fn extract(
    bytes: &[u8],
    spec: &JsonSpec,
    ctx: &JsonContext<'_>,
) -> Result<JsonPage, super::ExtractError> {
    let decoded = charset::decode(bytes, ctx.content_type, DocKind::Json, None);
    let text = decoded.text.trim_start();
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            if text.starts_with('<') {
                return Ok(JsonPage {
                    blocked: Some(
                        "an HTML page where JSON was expected (captcha or login wall?)".into(),
                    ),
                    ..Default::default()
                });
            }
            return Err(super::ExtractError::Json(e.to_string()));
        }
    };
    let mut page = JsonPage {
        blocked: soft_block(&doc),
        ..Default::default()
    };
    if page.blocked.is_some() {
        return Ok(page);
    }
    // Twitter v2 names authors by id; their handles are in includes.users.
    let users: BTreeMap<String, String> = match spec.preset {
        Some(Preset::TwitterV2) => doc
            .pointer("/includes/users")
            .and_then(Value::as_array)
            .map(|us| {
                us.iter()
                    .filter_map(|u| {
                        Some((
                            u.get("id").and_then(as_text)?,
                            u.get("username").and_then(Value::as_str)?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    };
    let mut last_id = None;
    for node in spec.item.path.query(&doc).all() {
        if !node.is_object() {
            continue;
        }
        let main = read_entry(node, spec, ctx, &users, &mut page);
        if let Some(i) = main {
            last_id = page.entries[i].guid.clone();
        }
        // A repost's original is a post of its own, linked from the repost (whose text is
        // only what the reposter wrote).
        if let Some(orig) = spec.fields.get("repost").and_then(|f| f.first(node)) {
            if orig.is_object() {
                if let (Some(j), Some(i)) = (read_entry(orig, spec, ctx, &users, &mut page), main) {
                    page.entries[i].related_guid = page.entries[j].guid.clone();
                }
            }
        }
    }
    page.next_cursor = match &spec.cursor_path {
        Some(f) => f.first(&doc).and_then(as_text),
        None => last_id,
    };
    Ok(page)
}

fn read_entry(
    node: &Value,
    spec: &JsonSpec,
    ctx: &JsonContext<'_>,
    users: &BTreeMap<String, String>,
    page: &mut JsonPage,
) -> Option<usize> {
    let mut raw: BTreeMap<String, String> = BTreeMap::new();
    let get = |k: &str| spec.fields.get(k).and_then(|f| f.first(node));
    for (k, f) in &spec.fields {
        if k == "repost" {
            continue;
        }
        if let Some(v) = f.first(node).and_then(as_text) {
            raw.insert(k.clone(), v);
        }
    }
    let id = raw.get("id").cloned();
    let text = raw.get("text").map(|t| html_to_text(t)).unwrap_or_default();
    let title = raw
        .get("title")
        .map(|t| html_to_text(t))
        .unwrap_or_default();
    if id.is_none() && text.is_empty() && title.is_empty() {
        return None;
    }
    let link = raw.get("link").cloned().or_else(|| {
        spec.link_template.as_ref().map(|t| {
            let mut out = t.clone();
            for (k, v) in &raw {
                out = out.replace(&format!("{{{k}}}"), v);
            }
            out
        })
    });
    let author = raw
        .get("author")
        .map(|a| users.get(a).cloned().unwrap_or_else(|| a.clone()));
    let published = match get("published").map(|v| as_date(v, ctx)) {
        Some(Ok(d)) => d,
        Some(Err(s)) => {
            page.bad_dates.push(s);
            None
        }
        None => None,
    };
    if get("long_text").and_then(Value::as_bool) == Some(true) {
        if let Some(i) = &id {
            page.long_text.push(i.clone());
        }
    }
    let count = |k: &str| get(k).and_then(as_count);
    page.entries.push(Entry {
        guid: id,
        link: link.filter(|l| !l.contains('{')),
        title,
        text,
        author,
        published,
        engagement: Engagement {
            reposts: count("reposts"),
            comments: count("comments"),
            likes: count("likes"),
            replies: count("replies"),
            views: count("views"),
        },
        related_guid: None,
    });
    page.raw.push(raw);
    Some(page.entries.len() - 1)
}
