//! Owns `kind = "html"`: list pages (portals, forums, petition boards) and detail pages →
//! entries, through CSS selectors compiled once at config load. No I/O: the scheduler fetches.
//!
//! Field syntax: `"sel"` takes the text of the first match inside the item, `"sel@attr"` its
//! attribute, `"@attr"` an attribute of the item element itself, `"."` the item's own text;
//! `"a || b"` tries alternatives in order and takes the first non-empty value.

use crate::charset::{self, DocKind};
use crate::item::{Engagement, Entry};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use scraper::{ElementRef, Html, Node, Selector};
use std::collections::BTreeMap;
use url::Url;

/// Fields a list item may carry.
pub const LIST_FIELDS: &[&str] = &[
    "id",
    "title",
    "link",
    "published",
    "author",
    "summary",
    "replies",
    "views",
];
/// Fields a detail page may carry.
pub const DETAIL_FIELDS: &[&str] = &["content", "title", "published", "author"];

#[derive(Debug, Clone)]
struct Alt {
    /// `None`: the item element itself.
    selector: Option<Selector>,
    /// `None`: text content.
    attr: Option<String>,
}

/// One compiled field: alternatives tried in order.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub raw: String,
    alts: Vec<Alt>,
}

fn valid_attr_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
}

impl FieldSpec {
    /// Compiles a field; the error names the alternative and what is wrong with it.
    pub fn parse(raw: &str) -> Result<FieldSpec, String> {
        let mut alts = Vec::new();
        for part in raw.split("||") {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("{raw:?}: an empty alternative"));
            }
            if part == "." {
                alts.push(Alt {
                    selector: None,
                    attr: None,
                });
                continue;
            }
            if let Some(attr) = part.strip_prefix('@') {
                if !valid_attr_name(attr) {
                    return Err(format!("{part:?}: {attr:?} is not an attribute name"));
                }
                alts.push(Alt {
                    selector: None,
                    attr: Some(attr.to_string()),
                });
                continue;
            }
            // "sel@attr" — but '@' may also sit inside a quoted attribute value of the selector.
            let (sel, attr) = match part.rsplit_once('@') {
                Some((s, a)) if valid_attr_name(a.trim()) && !s.trim().is_empty() => {
                    (s.trim(), Some(a.trim().to_string()))
                }
                _ => (part, None),
            };
            let selector = Selector::parse(sel).map_err(|e| {
                format!(
                    "{sel:?} is not a valid CSS selector: {}",
                    selector_error(&e)
                )
            })?;
            alts.push(Alt {
                selector: Some(selector),
                attr,
            });
        }
        Ok(FieldSpec {
            raw: raw.to_string(),
            alts,
        })
    }

    /// The first non-empty value of this field inside `scope`.
    fn value(&self, scope: ElementRef<'_>) -> Option<String> {
        let read = |el: ElementRef<'_>, attr: &Option<String>| -> Option<String> {
            let v = match attr {
                Some(a) => el.value().attr(a).map(crate::text::fold_whitespace),
                None => Some(element_text(el)),
            };
            v.filter(|v| !v.is_empty())
        };
        for alt in &self.alts {
            // The first match with a value: layouts often lead with an empty <p></p>.
            let found = match &alt.selector {
                None => read(scope, &alt.attr),
                Some(sel) => scope.select(sel).find_map(|el| read(el, &alt.attr)),
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

/// scraper's message for an unsupported pseudo-class asks the reader to report a bug; say
/// what is actually wrong instead.
pub fn selector_error(e: &scraper::error::SelectorErrorKind) -> String {
    let msg = e.to_string();
    if msg.contains("UnsupportedPseudoClassOrElement") {
        "unsupported pseudo-class (jQuery extensions such as :contains() or :eq() are not CSS)"
            .into()
    } else if msg.contains("Please report this") {
        msg.lines().last().unwrap_or("").trim().to_string()
    } else {
        msg
    }
}

/// Compiled selectors of an html source.
#[derive(Debug, Clone)]
pub struct HtmlSpec {
    pub item: Selector,
    pub item_raw: String,
    pub fields: BTreeMap<String, FieldSpec>,
    pub next: Option<FieldSpec>,
}

#[derive(Debug, Clone)]
pub struct DetailSpec {
    pub fields: BTreeMap<String, FieldSpec>,
}

/// Text of an element as a reader sees it: script/style skipped, blocks separated, whitespace
/// folded.
pub fn element_text(el: ElementRef<'_>) -> String {
    let mut out = String::new();
    collect_text(el, &mut out);
    crate::text::fold_whitespace(&out)
}

fn collect_text(el: ElementRef<'_>, out: &mut String) {
    for child in el.children() {
        match child.value() {
            Node::Text(t) => out.push_str(t),
            Node::Element(e) => {
                let name = e.name();
                if matches!(name, "script" | "style" | "noscript" | "template") {
                    continue;
                }
                let block = matches!(
                    name,
                    "br" | "p"
                        | "div"
                        | "li"
                        | "tr"
                        | "td"
                        | "th"
                        | "h1"
                        | "h2"
                        | "h3"
                        | "h4"
                        | "h5"
                        | "h6"
                        | "section"
                        | "article"
                        | "blockquote"
                        | "dd"
                        | "dt"
                );
                if block {
                    out.push(' ');
                }
                if let Some(child_el) = ElementRef::wrap(child) {
                    collect_text(child_el, out);
                }
                if block {
                    out.push(' ');
                }
            }
            _ => {}
        }
    }
}

/// "1171", "1,234", "1.2万", "3k", "10w+" → a count.
pub fn parse_count(s: &str) -> Option<u64> {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ',')
        .collect();
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let rest = &s[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let num: f64 = rest[..end].parse().ok()?;
    let mult = match rest[end..].chars().next() {
        Some('万') | Some('w') | Some('W') => 10_000.0,
        Some('亿') => 100_000_000.0,
        Some('k') | Some('K') | Some('千') => 1_000.0,
        _ => 1.0,
    };
    let v = num * mult;
    (0.0..1e15).contains(&v).then_some(v as u64)
}

/// How to read one document.
pub struct HtmlContext<'a> {
    pub content_type: Option<&'a str>,
    pub page_url: &'a Url,
    pub encoding_override: Option<&'static encoding_rs::Encoding>,
    pub timezone: Tz,
    pub now: DateTime<Utc>,
    pub date_format: Option<&'a str>,
}

/// One list page, read.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub entries: Vec<Entry>,
    /// The raw field values of each entry, for `try-source`.
    pub raw: Vec<BTreeMap<String, String>>,
    pub next: Option<Url>,
    pub encoding: &'static str,
    pub evidence: String,
    /// Fields configured but empty on every item (a redesign shows here first).
    pub unmatched: Vec<String>,
    /// Date strings that could not be read (the item keeps its fetch time).
    pub bad_dates: Vec<String>,
    /// Items the selector found but that had neither title nor link.
    pub skipped: usize,
}

fn decode(bytes: &[u8], ctx: &HtmlContext<'_>) -> (Html, &'static str, String, Url) {
    let decoded = charset::decode(
        bytes,
        ctx.content_type,
        DocKind::Html,
        ctx.encoding_override.map(|e| e.name()),
    );
    let doc = Html::parse_document(&decoded.text);
    let base = base_url(&doc, ctx.page_url);
    (
        doc,
        decoded.encoding.name(),
        decoded.evidence.to_string(),
        base,
    )
}

/// `<base href>` if present (and valid), else the page URL.
fn base_url(doc: &Html, page: &Url) -> Url {
    static BASE: std::sync::OnceLock<Option<Selector>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| Selector::parse("base[href]").ok())
        .as_ref()
        .and_then(|sel| doc.select(sel).next())
        .and_then(|b| b.value().attr("href"))
        .and_then(|h| page.join(h.trim()).ok())
        .unwrap_or_else(|| page.clone())
}

fn resolve(base: &Url, link: &str) -> Option<Url> {
    let link = link.trim();
    if link.is_empty() || link.starts_with("javascript:") || link.starts_with('#') {
        return None;
    }
    let u = base.join(link).ok()?;
    matches!(u.scheme(), "http" | "https").then_some(u)
}

fn parse_date(raw: &str, ctx: &HtmlContext<'_>) -> Option<DateTime<Utc>> {
    crate::date::parse_date(raw, ctx.now, ctx.timezone, ctx.date_format)
}

/// Extracts the entries of a list page.
pub fn extract_list(bytes: &[u8], spec: &HtmlSpec, ctx: &HtmlContext<'_>) -> ListPage {
    let (doc, encoding, evidence, base) = decode(bytes, ctx);
    let mut page = ListPage {
        encoding,
        evidence,
        ..Default::default()
    };
    let mut matched: BTreeMap<&str, bool> =
        spec.fields.keys().map(|k| (k.as_str(), false)).collect();
    for el in doc.select(&spec.item) {
        let mut raw: BTreeMap<String, String> = BTreeMap::new();
        for (name, field) in &spec.fields {
            if let Some(v) = field.value(el) {
                matched.insert(name.as_str(), true);
                raw.insert(name.clone(), v);
            }
        }
        let link = raw.get("link").and_then(|l| resolve(&base, l));
        let title = raw.get("title").cloned().unwrap_or_default();
        // With a link field configured, an entry without a usable link (a menu item, a
        // `javascript:` handler) is page furniture, not a post.
        let wants_link = spec.fields.contains_key("link");
        if (title.is_empty() && link.is_none()) || (wants_link && link.is_none()) {
            page.skipped += 1;
            continue;
        }
        let published = raw.get("published").and_then(|d| {
            let p = parse_date(d, ctx);
            if p.is_none() {
                page.bad_dates.push(d.clone());
            }
            p
        });
        page.entries.push(Entry {
            // A stable per-post id where the page has one (a thread id): links on forums carry
            // the list page number and would make a thread that moves to page 2 "new".
            guid: raw.get("id").cloned(),
            link: link.map(|u| u.to_string()),
            title,
            text: raw.get("summary").cloned().unwrap_or_default(),
            author: raw.get("author").cloned(),
            published,
            engagement: Engagement {
                replies: raw.get("replies").and_then(|v| parse_count(v)),
                views: raw.get("views").and_then(|v| parse_count(v)),
                ..Default::default()
            },
            related_guid: None,
        });
        page.raw.push(raw);
    }
    if !page.raw.is_empty() {
        page.unmatched = matched
            .into_iter()
            .filter(|(_, m)| !m)
            .map(|(k, _)| k.to_string())
            .collect();
    }
    if let Some(next) = &spec.next {
        page.next = next
            .value(doc.root_element())
            .and_then(|l| resolve(&base, &l))
            .filter(|u| u != ctx.page_url);
    }
    page
}

/// What a detail page adds to its list entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetailPage {
    pub content: Option<String>,
    pub title: Option<String>,
    pub published: Option<DateTime<Utc>>,
    pub author: Option<String>,
    pub encoding: &'static str,
}

pub fn extract_detail(bytes: &[u8], spec: &DetailSpec, ctx: &HtmlContext<'_>) -> DetailPage {
    let (doc, encoding, _, _) = decode(bytes, ctx);
    let root = doc.root_element();
    let get = |k: &str| spec.fields.get(k).and_then(|f| f.value(root));
    DetailPage {
        content: get("content"),
        title: get("title"),
        published: get("published").and_then(|d| parse_date(&d, ctx)),
        author: get("author"),
        encoding,
    }
}

/// Named selector sets for common site software; a source may override any key.
pub fn preset(name: &str) -> Option<BTreeMap<&'static str, &'static str>> {
    let pairs: &[(&str, &str)] = match name {
        // Discuz! X forumdisplay: one <tbody id="normalthread_…"> per thread.
        "discuz" => &[
            ("item", "tbody[id^=normalthread]"),
            ("id", "@id"),
            ("title", "a.xst"),
            ("link", "a.xst@href"),
            // The thread's own column follows the title cell; the last-post column comes later.
            ("author", "th + td.by cite a"),
            // A recent date shows as "3 天前" with the full date in the title attribute.
            (
                "published",
                "th + td.by em span[title]@title || th + td.by em span",
            ),
            ("replies", "td.num a.xi2"),
            ("views", "td.num em"),
            ("next", "a.nxt@href"),
        ],
        // Dvbbs (dispbbs.asp threads): list rows are table rows holding a thread link.
        "dvbbs" => &[
            ("item", "tr:has(a[href*='dispbbs.asp'])"),
            ("title", "a[href*='dispbbs.asp']"),
            ("link", "a[href*='dispbbs.asp']@href"),
            ("author", "a[href*='dispuser.asp']"),
            ("next", "a[title='下一页']@href"),
        ],
        // Baidu Tieba forum list.
        "tieba" => &[
            ("item", "li.j_thread_list"),
            ("id", "@data-tid"),
            ("title", "a.j_th_tit@title || a.j_th_tit"),
            ("link", "a.j_th_tit@href"),
            ("author", "span.tb_icon_author@title || .frs-author-name"),
            ("summary", ".threadlist_abs"),
            ("replies", "span.threadlist_rep_num"),
            ("published", "span.is_show_create_time"),
            ("next", "a.next@href"),
        ],
        // The usual government CMS column (通知公告, 政务公开): <li><a title=…>…</a><span>date</span></li>.
        "gov-list" => &[
            ("item", "ul li:has(a[href])"),
            ("title", "a@title || a"),
            ("link", "a@href"),
            ("published", "span || em || .date || .time"),
            ("next", "a.next@href || a[title='下一页']@href"),
        ],
        _ => return None,
    };
    Some(pairs.iter().copied().collect())
}

pub const PRESETS: &[&str] = &["discuz", "dvbbs", "tieba", "gov-list"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_syntax() {
        assert!(FieldSpec::parse("a.xst@href").is_ok());
        assert!(FieldSpec::parse("@data-id").is_ok());
        assert!(FieldSpec::parse(".").is_ok());
        assert!(FieldSpec::parse("a[href*='@']").is_ok());
        let e = FieldSpec::parse("a:contains('x')").unwrap_err();
        assert!(e.contains("a:contains('x')"), "{e}");
        assert!(FieldSpec::parse("a || ").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("1171"), Some(1171));
        assert_eq!(parse_count("1,234"), Some(1234));
        assert_eq!(parse_count("1.2万"), Some(12000));
        assert_eq!(parse_count("回复 3k"), Some(3000));
        assert_eq!(parse_count("-"), None);
    }

    #[test]
    fn presets_compile() {
        for name in PRESETS {
            for (k, v) in preset(name).unwrap() {
                if k == "item" {
                    Selector::parse(v).unwrap_or_else(|e| panic!("{name}.{k}: {e}"));
                } else {
                    FieldSpec::parse(v).unwrap_or_else(|e| panic!("{name}.{k}: {e}"));
                }
            }
        }
    }
}
