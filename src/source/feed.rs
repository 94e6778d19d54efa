//! Owns `kind = "feed"`: RSS 0.9x/1.0/2.0, Atom and JSON Feed bytes → entries, via feed-rs.
//!
//! Bytes are decoded here (not by feed-rs) so that GBK/Big5 feeds with or without a
//! declaration come out right; the XML prolog is then rewritten to say UTF-8.

use super::{ExtractError, Extracted};
use crate::charset::{self, DocKind};
use crate::item::Entry;
use crate::text::html_to_text;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// How to read one feed document.
pub struct FeedContext<'a> {
    pub content_type: Option<&'a str>,
    /// The feed's own URL, for resolving relative links.
    pub base_url: Option<&'a str>,
    pub encoding_override: Option<&'static encoding_rs::Encoding>,
    pub timezone: Tz,
    pub now: DateTime<Utc>,
}

fn looks_like_json(bytes: &[u8]) -> bool {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    b.iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_some_and(|&c| c == b'{')
}

pub fn extract(bytes: &[u8], ctx: &FeedContext<'_>) -> Result<Extracted, ExtractError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ExtractError::Empty);
    }
    let kind = if looks_like_json(bytes) {
        DocKind::Json
    } else {
        DocKind::Xml
    };
    let override_label = ctx.encoding_override.map(|e| e.name());
    let decoded = charset::decode(bytes, ctx.content_type, kind, override_label);
    let text = match kind {
        DocKind::Xml => charset::rewrite_xml_prolog_to_utf8(&decoded.text),
        _ => std::borrow::Cow::Borrowed(decoded.text.as_str()),
    };
    let tz = ctx.timezone;
    let now = ctx.now;
    let parser = feed_rs::parser::Builder::new()
        .base_uri(ctx.base_url)
        // An empty id marks "the feed gave none": feed-rs would otherwise invent one from
        // link + title, or a random UUID, neither of which is an identity.
        .id_generator(|_, _, _| String::new())
        .timestamp_parser(move |s| crate::date::parse_date(s, now, tz, None))
        .build();
    let feed = parser
        .parse(text.as_bytes())
        .map_err(|e| ExtractError::Feed(e.to_string()))?;
    let entries = feed.entries.into_iter().map(to_entry).collect();
    Ok(Extracted {
        entries,
        encoding: decoded.encoding.name(),
        evidence: decoded.evidence.to_string(),
    })
}

fn to_entry(e: feed_rs::model::Entry) -> Entry {
    let link = e
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .or_else(|| e.links.first())
        .map(|l| l.href.trim().to_string())
        .filter(|l| !l.is_empty());
    let title = e
        .title
        .as_ref()
        .map(|t| html_to_text(&t.content))
        .unwrap_or_default();
    let content = e
        .content
        .as_ref()
        .and_then(|c| c.body.as_deref())
        .map(html_to_text)
        .unwrap_or_default();
    let summary = e
        .summary
        .as_ref()
        .map(|t| html_to_text(&t.content))
        .unwrap_or_default();
    // The fuller of the two: some feeds put the article in content, others only a summary.
    let text = if content.chars().count() >= summary.chars().count() {
        content
    } else {
        summary
    };
    let author = e
        .authors
        .iter()
        .filter_map(|p| p.name.as_deref().map(str::trim))
        .find(|n| !n.is_empty())
        .map(str::to_string);
    let guid = Some(e.id.trim().to_string()).filter(|g| !g.is_empty());
    Entry {
        guid,
        link,
        title,
        text,
        author,
        published: e.published.or(e.updated),
    }
}
