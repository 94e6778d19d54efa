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
use std::borrow::Cow;

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
        _ => Cow::Borrowed(decoded.text.as_str()),
    };
    let text = match kind {
        DocKind::Xml => upgrade_legacy_xml(text),
        _ => text,
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

const ATOM_03_NS: &str = "http://purl.org/atom/ns#";
const ATOM_10_NS: &str = "http://www.w3.org/2005/Atom";

/// The start of the root element: past the prolog, comments, doctype and processing
/// instructions.
fn root_start(text: &str) -> Option<usize> {
    let mut pos = 0;
    while let Some(off) = text[pos..].find('<') {
        let at = pos + off;
        let rest = &text[at..];
        let skip_to = if rest.starts_with("<!--") {
            rest.find("-->").map(|e| e + 3)
        } else if rest.starts_with("<?") || rest.starts_with("<!") {
            rest.find('>').map(|e| e + 1)
        } else {
            return Some(at);
        };
        pos = at + skip_to?;
    }
    None
}

/// Brings two common legacy shapes into forms feed-rs reads, leaving everything else alone:
/// `<rss>` without a version (read as RSS 2.0) and Atom 0.3 (its namespace and its
/// `issued`/`modified` dates mapped to Atom 1.0's).
fn upgrade_legacy_xml(text: Cow<'_, str>) -> Cow<'_, str> {
    let Some(root) = root_start(&text) else {
        return text;
    };
    let tag_end = text[root..]
        .find('>')
        .map(|e| root + e)
        .unwrap_or(text.len());
    let tag = &text[root..tag_end];
    let is_rss = tag.starts_with("<rss")
        && (tag.len() == 4 || tag[4..].starts_with(|c: char| c.is_whitespace() || c == '/'));
    let mut out: Option<String> = None;
    if is_rss && !tag.contains("version") {
        let mut s = String::with_capacity(text.len() + 16);
        s.push_str(&text[..root + 4]);
        s.push_str(" version=\"2.0\"");
        s.push_str(&text[root + 4..]);
        out = Some(s);
    } else if tag.starts_with("<feed") && tag.contains(ATOM_03_NS) {
        let s = atom03_text_types(&text)
            .replace(ATOM_03_NS, ATOM_10_NS)
            .replace("<issued>", "<published>")
            .replace("</issued>", "</published>")
            .replace("<modified>", "<updated>")
            .replace("</modified>", "</updated>");
        out = Some(s);
    }
    match out {
        Some(s) => Cow::Owned(s),
        None => text,
    }
}

/// Atom 0.3 text constructs carry MIME types (`text/html`, `application/xhtml+xml`) where
/// Atom 1.0 says `html` / `xhtml`; links keep theirs.
fn atom03_text_types(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt..];
        let end = after.find('>').map(|e| e + 1).unwrap_or(after.len());
        let tag = &after[..end];
        let is_text_construct = ["<title", "<content", "<summary", "<tagline", "<subtitle"]
            .iter()
            .any(|n| tag.starts_with(n) && tag[n.len()..].starts_with(|c: char| c.is_whitespace()));
        if is_text_construct {
            out.push_str(
                &tag.replace("\"application/xhtml+xml\"", "\"xhtml\"")
                    .replace("\"text/html\"", "\"html\"")
                    .replace("\"text/plain\"", "\"text\""),
            );
        } else {
            out.push_str(tag);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
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
        engagement: Default::default(),
        related_guid: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read(p).unwrap()
    }

    fn parse(name: &str, content_type: Option<&str>) -> Extracted {
        let ctx = FeedContext {
            content_type,
            base_url: Some("https://feeds.example/feed"),
            encoding_override: None,
            timezone: chrono_tz::Asia::Shanghai,
            now: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        extract(&fixture(name), &ctx).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn undeclared_gb2312_with_leading_comment() {
        let x = parse("feedparser_illformed_gb2312_no_decl.xml", None);
        assert_eq!(x.entries.len(), 1);
        assert_eq!(x.entries[0].title, "不归移民漫画系列：专业工作");
    }

    #[test]
    fn big5_atom03() {
        let x = parse(
            "chardet_big5_sinica.edu.tw_atom03.xml",
            Some("application/xml"),
        );
        assert_eq!(x.encoding, "Big5");
        let titles: Vec<&str> = x.entries.iter().map(|e| e.title.as_str()).collect();
        assert!(titles.contains(&"期末報告 -- 吳昆達, 翁睿廷"), "{titles:?}");
    }
}
