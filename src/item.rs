//! Owns the [`Item`] — one post, article or entry as the rest of the daemon sees it — and the
//! keys that recognise it again: its identity within its source, its canonical URL and the
//! hash of its normalised text.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

/// Below this many significant characters of body text, a text hash says nothing. Titles
/// alone never count: two offices' notices can share a title such as
/// "关于开展安全生产大检查的通知" and still be two matters, each of which must alert.
pub const MIN_HASH_CHARS: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    /// Stable id: hash of source id and identity.
    pub id: String,
    pub source: String,
    /// What distinguishes this entry within its source: GUID, full link, or content hash.
    pub identity: String,
    pub url: Option<String>,
    pub canonical_url: Option<String>,
    pub title: String,
    pub text: String,
    pub author: Option<String>,
    pub published: Option<DateTime<Utc>>,
    pub fetched: DateTime<Utc>,
    /// Hash of the normalised title and text; `None` when too short to identify a story.
    pub content_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Engagement::is_empty")]
    pub engagement: Engagement,
    /// The item this one is linked to in the same source (a repost → its original).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<String>,
}

/// Engagement numbers a source shows (forum replies and views, microblog reposts …), kept
/// for risk judging. `None` when the source does not show it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Engagement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reposts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likes: Option<u64>,
}

impl Engagement {
    pub fn is_empty(&self) -> bool {
        *self == Engagement::default()
    }
}

/// What an extractor produces, before identities and hashes are assigned.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The source's own id for the entry (RSS guid, Atom id, JSON Feed id), if it gave one.
    pub guid: Option<String>,
    pub link: Option<String>,
    pub title: String,
    pub text: String,
    pub author: Option<String>,
    pub published: Option<DateTime<Utc>>,
    pub engagement: Engagement,
    /// The source's id of a related entry (a repost's original).
    pub related_guid: Option<String>,
}

pub fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Turns one poll's entries into items.
///
/// Identity, which must not depend on what else the poll contained (or an entry would change
/// id, and alert again, when a neighbour appears): the GUID; else the full link (fragment
/// included) plus a hash of the title, because feeds and list pages do give distinct entries
/// one link; else a hash of title + text. An edited title of a guid-less entry is therefore a
/// new item — a loud outcome, where the alternative (a silent miss) is not acceptable.
/// Entries of one batch sharing a GUID but differing in content (broken feeds) get their
/// title hash appended.
pub fn build_items(source: &str, entries: Vec<Entry>, fetched: DateTime<Utc>) -> Vec<Item> {
    // Bodies repeated across many entries are site boilerplate, not story text.
    let mut body_counts: std::collections::HashMap<String, usize> = Default::default();
    for e in &entries {
        let s = crate::text::significant(&e.text);
        if !s.is_empty() {
            *body_counts.entry(s).or_default() += 1;
        }
    }
    let boilerplate = |text: &str| -> bool {
        let s = crate::text::significant(text);
        body_counts.get(&s).copied().unwrap_or(0) >= 3
    };

    let mut link_counts: std::collections::HashMap<String, usize> = Default::default();
    for e in &entries {
        if let Some(u) = e.link.as_deref().and_then(absolute_http_url) {
            *link_counts.entry(u).or_default() += 1;
        }
    }

    let mut items: Vec<Item> = entries
        .into_iter()
        .map(|e| {
            let title_key = short_hash(&[&crate::text::significant(&e.title)]);
            let identity = match (&e.guid, &e.link) {
                (Some(g), _) if !g.trim().is_empty() => format!("guid:{}", g.trim()),
                (_, Some(l)) if !l.trim().is_empty() => format!("link:{}#t={title_key}", l.trim()),
                _ => format!("hash:{}", short_hash(&[&e.title, &e.text])),
            };
            let url = e.link.as_deref().and_then(absolute_http_url);
            // A link with a fragment, or one shared by several entries, or a site root, names
            // a page, not a story: it must not merge stories across sources.
            let canonical_url = url
                .as_deref()
                .filter(|u| !u.contains('#') && link_counts.get(*u).copied().unwrap_or(0) < 2)
                .and_then(canonical_url)
                .filter(|c| Url::parse(c).is_ok_and(|u| u.path() != "/" || u.query().is_some()));
            let body = if boilerplate(&e.text) {
                String::new()
            } else {
                crate::text::significant(&e.text)
            };
            let content_hash = (body.chars().count() >= MIN_HASH_CHARS)
                .then(|| short_hash(&[&crate::text::significant(&e.title), &body]));
            Item {
                id: String::new(),
                source: source.to_string(),
                identity,
                url,
                canonical_url,
                title: e.title,
                text: e.text,
                author: e.author,
                published: e.published,
                fetched,
                content_hash,
                engagement: e.engagement,
                related: e
                    .related_guid
                    .as_deref()
                    .map(|g| short_hash(&[source, &format!("guid:{}", g.trim())])),
            }
        })
        .collect();

    // Distinct contents per identity: the same post listed twice (a repost embedding an
    // original that is also listed) is one entry, not a collision.
    let mut contents: std::collections::HashMap<String, std::collections::HashSet<String>> =
        Default::default();
    for it in &items {
        contents
            .entry(it.identity.clone())
            .or_default()
            .insert(short_hash(&[&crate::text::significant(&it.title)]));
    }
    for it in &mut items {
        let distinct = contents.get(&it.identity).map_or(0, |c| c.len());
        if it.identity.starts_with("guid:") && distinct > 1 {
            let title_key = short_hash(&[&crate::text::significant(&it.title)]);
            it.identity = format!("{}#t={title_key}", it.identity);
        }
        it.id = short_hash(&[source, &it.identity]);
    }
    // Entries identical in identity are the same entry listed twice.
    let mut seen = std::collections::HashSet::new();
    items.retain(|it| seen.insert(it.id.clone()));
    items
}

impl Item {
    /// Replaces the text (a detail page, a full long post) and its text hash with it.
    pub fn set_text(&mut self, text: String) {
        self.text = text;
        let body = crate::text::significant(&self.text);
        self.content_hash = (body.chars().count() >= MIN_HASH_CHARS)
            .then(|| short_hash(&[&crate::text::significant(&self.title), &body]));
    }
}

fn absolute_http_url(link: &str) -> Option<String> {
    let u = Url::parse(link.trim()).ok()?;
    matches!(u.scheme(), "http" | "https").then(|| u.to_string())
}

/// Query parameters that only track where a reader came from.
fn is_tracking_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("utm_")
        || matches!(
            n.as_str(),
            "spm"
                | "gclid"
                | "fbclid"
                | "msclkid"
                | "yclid"
                | "mc_cid"
                | "mc_eid"
                | "igshid"
                | "_hsenc"
                | "_hsmi"
                | "vd_source"
                | "share_source"
                | "share_medium"
                | "share_from"
                | "scm"
                | "wfr"
                | "from_source"
        )
}

/// The URL under which the same page reached by other links is recognised: scheme folded to
/// https, host lower-cased, default port and fragment dropped, tracking parameters removed,
/// query sorted.
pub fn canonical_url(link: &str) -> Option<String> {
    let mut u = Url::parse(link.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    if u.scheme() == "http" {
        let port = u.port();
        u.set_scheme("https").ok()?;
        if port == Some(443) || port == Some(80) {
            u.set_port(None).ok()?;
        }
    }
    u.set_fragment(None);
    let mut pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| !is_tracking_param(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if u.path().is_empty() {
        u.set_path("/");
    }
    Some(u.to_string())
}

/// An item from `source` with link `url`, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn sample(id: &str, source: &str, url: &str) -> Item {
    Item {
        id: id.into(),
        source: source.into(),
        identity: format!("link:{url}"),
        url: Some(url.into()),
        canonical_url: canonical_url(url),
        title: "t".into(),
        text: String::new(),
        author: None,
        published: None,
        fetched: Utc::now(),
        content_hash: None,
        engagement: Default::default(),
        related: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn canonical_urls() {
        assert_eq!(
            canonical_url("HTTP://News.Example.CN:80/a?b=2&utm_source=x&a=1#frag").as_deref(),
            Some("https://news.example.cn/a?a=1&b=2")
        );
        assert_eq!(
            canonical_url("https://example.cn/path?spm=1.2.3").as_deref(),
            Some("https://example.cn/path")
        );
        assert_eq!(canonical_url("mailto:a@b.c"), None);
    }

    #[test]
    fn fragments_keep_entries_apart() {
        let entries = vec![
            Entry {
                link: Some("https://x.cn/page#one".into()),
                title: "一".into(),
                ..Default::default()
            },
            Entry {
                link: Some("https://x.cn/page#two".into()),
                title: "二".into(),
                ..Default::default()
            },
        ];
        let items = build_items("s", entries, now());
        assert_eq!(items.len(), 2);
        assert_ne!(items[0].id, items[1].id);
        // A fragment names a part of a page: never a cross-source dedup key.
        assert_eq!(items[0].canonical_url, None);
    }

    #[test]
    fn guidless_same_link_entries_stay_distinct() {
        let mk = |t: &str| Entry {
            link: Some("https://x.cn/list".into()),
            title: t.into(),
            ..Default::default()
        };
        let items = build_items("s", vec![mk("甲"), mk("乙"), mk("甲")], now());
        assert_eq!(
            items.len(),
            2,
            "the exact repeat is one entry, the others distinct"
        );
        assert_ne!(items[0].id, items[1].id);
    }

    #[test]
    fn no_guid_no_link_uses_content_and_ids_are_stable() {
        let e = Entry {
            title: "标题".into(),
            text: "正文".into(),
            ..Default::default()
        };
        let a = build_items("s", vec![e.clone()], now());
        let b = build_items("s", vec![e], now());
        assert_eq!(a[0].id, b[0].id);
        assert!(a[0].identity.starts_with("hash:"));
    }

    #[test]
    fn boilerplate_and_short_texts_do_not_hash_alike() {
        let boiler = "本站所有内容版权归本站所有，未经许可不得转载。欢迎访问。";
        let entries: Vec<Entry> = [
            "市政府召开常务会议研究部署近期重点工作",
            "区城管局开展占道经营专项整治行动通报",
            "街道办事处通报老旧小区改造进展情况说明",
        ]
        .iter()
        .map(|t| Entry {
            title: t.to_string(),
            text: boiler.into(),
            ..Default::default()
        })
        .collect();
        let items = build_items("s", entries, now());
        assert!(
            items.iter().all(|i| i.content_hash.is_none()),
            "boilerplate is no story text"
        );
        let body = "今日上午，区城管局联合街道开展占道经营专项整治行动，共清理流动摊点三十余处。";
        let same_body: Vec<Entry> = ["甲地通报", "乙地通报"]
            .iter()
            .map(|t| Entry {
                title: t.to_string(),
                text: body.into(),
                ..Default::default()
            })
            .collect();
        let items = build_items("s", same_body, now());
        assert!(items[0].content_hash.is_some());
        assert_ne!(
            items[0].content_hash, items[1].content_hash,
            "the title is part of the hash"
        );
        let short = build_items(
            "s",
            vec![Entry {
                title: "通知".into(),
                ..Default::default()
            }],
            now(),
        );
        assert_eq!(short[0].content_hash, None);
    }
}
