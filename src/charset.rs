//! Turning fetched bytes (RSS/Atom/JSON feeds, HTML pages) into UTF-8 text.
//!
//! This module owns every decision about which character encoding a fetched
//! body is in; nothing downstream should ever see raw bytes or re-decode.
//! Evidence is weighed in this order, first match wins:
//!
//! 1. a per-source override label from config (an operator knows best);
//! 2. a byte order mark (unambiguous, and survives lying servers);
//! 3. the HTTP `Content-Type` `charset=` parameter;
//! 4. the document's own declaration: the `<?xml … encoding=…?>` prolog for
//!    XML, `<meta charset>` / `<meta http-equiv="Content-Type">` in the first
//!    4096 bytes for HTML; JSON has none (RFC 8259 mandates UTF-8);
//! 5. if the bytes are valid UTF-8, UTF-8; otherwise a `chardetng` guess.
//!
//! Declarations in steps 3 and 4 are not trusted blindly. A legacy
//! (non-UTF-8, non-UTF-16) declaration over bytes that are valid UTF-8 and
//! contain non-ASCII is overruled in favour of UTF-8: browser-saved and
//! re-templated Chinese pages routinely keep a stale `charset=gbk`, while
//! real GBK/Big5/Latin text practically never happens to validate as UTF-8.
//! A UTF-16 declaration over bytes that do not look like UTF-16 is ignored
//! (a declaration we could read as ASCII cannot be UTF-16 anyway).
//!
//! All GBK-family labels (`gb2312`, `gbk`, `x-gbk`, …) resolve to GB18030,
//! a strict superset, so text outside GB2312 that real "gb2312" sites emit
//! still decodes and the reported encoding is the one actually used.
//!
//! Decoding never fails: malformed sequences become U+FFFD and
//! [`Decoded::had_errors`] is set.

use std::borrow::Cow;
use std::fmt;

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::Encoding;

/// Which piece of evidence decided the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    Override,
    Bom,
    ContentType,
    XmlProlog,
    MetaTag,
    Utf8Valid,
    Guess,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Evidence::Override => "override",
            Evidence::Bom => "bom",
            Evidence::ContentType => "content-type",
            Evidence::XmlProlog => "xml-prolog",
            Evidence::MetaTag => "meta",
            Evidence::Utf8Valid => "utf8-valid",
            Evidence::Guess => "guess",
        })
    }
}

/// The decoded text and how its encoding was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    pub encoding: &'static Encoding,
    pub evidence: Evidence,
    /// Some input was malformed for `encoding` and replaced with U+FFFD.
    pub had_errors: bool,
}

/// What kind of document the bytes are, which decides where an in-document
/// declaration may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Xml,
    Html,
    Json,
}

/// How far into an HTML document a `<meta>` declaration is honoured.
/// Browsers use 1024; 4096 catches pages with long script/style preambles
/// without scanning whole bodies.
const META_SCAN_LIMIT: usize = 4096;

/// A `<meta>` tag starting just before the scan limit may end after it.
const META_TAG_SLACK: usize = 512;

/// An XML declaration longer than this is not a declaration we can trust.
const XML_DECL_LIMIT: usize = 1024;

/// Decodes `bytes` to UTF-8 text; see the module docs for the order of
/// evidence.
///
/// `content_type` is the raw HTTP Content-Type header value if any;
/// `override_label` a per-source encoding label from config.
pub fn decode(
    bytes: &[u8],
    content_type: Option<&str>,
    kind: DocKind,
    override_label: Option<&str>,
) -> Decoded {
    if let Some(encoding) = override_label.and_then(lookup_label) {
        // Even a forced encoding must not leak its own BOM into the text.
        let (text, had_errors) = encoding.decode_with_bom_removal(bytes);
        return finish(text, encoding, Evidence::Override, had_errors);
    }

    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let body = bytes.get(bom_len..).unwrap_or_default();
        return decode_as(body, encoding, Evidence::Bom);
    }

    let in_document = match kind {
        DocKind::Xml => xml_declared_encoding(bytes).map(|e| (e, Evidence::XmlProlog)),
        DocKind::Html => html_meta_encoding(bytes).map(|e| (e, Evidence::MetaTag)),
        DocKind::Json => None,
    };

    if let Some(declared) = content_type
        .and_then(content_type_charset)
        .and_then(lookup_label)
    {
        // Servers often stamp a default "charset=utf-8" on legacy-encoded files. When the
        // bytes are not UTF-8 and the document names its own encoding, which reads them
        // cleanly, the document is right and the header is not.
        if declared == encoding_rs::UTF_8 && std::str::from_utf8(bytes).is_err() {
            if let Some((doc_enc, evidence)) = in_document {
                if doc_enc != encoding_rs::UTF_8 {
                    let (text, had_errors) = doc_enc.decode_without_bom_handling(bytes);
                    if !had_errors {
                        return finish(text, doc_enc, evidence, false);
                    }
                }
            }
        }
        if let Some(decoded) = decode_declared(bytes, declared, Evidence::ContentType) {
            return decoded;
        }
    }

    if let Some((declared, evidence)) = in_document {
        if let Some(decoded) = decode_declared(bytes, declared, evidence) {
            return decoded;
        }
    }

    sniff(bytes)
}

/// Looks up an encoding label the way the config validator needs: WHATWG
/// labels, case-insensitive, surrounding ASCII whitespace ignored.
///
/// Returns `None` for unknown labels and for the labels WHATWG maps to the
/// "replacement" encoding (`iso-2022-kr`, `hz-gb-2312`, …), because decoding
/// with it turns any document into a single U+FFFD — never what an operator
/// meant. GBK-family labels resolve to GB18030.
pub fn lookup_label(label: &str) -> Option<&'static Encoding> {
    let encoding = Encoding::for_label_no_replacement(label.as_bytes())?;
    Some(widen_gbk(encoding))
}

/// Rewrites the XML declaration's `encoding="…"` (single or double quotes)
/// to `encoding="UTF-8"` so that a parser honouring the prolog (quick-xml)
/// does not re-decode text that is already UTF-8.
///
/// Only a `<?xml … ?>` declaration at the very start (after optional
/// whitespace) is touched; a declaration without `encoding`, or text without
/// a declaration, is returned unchanged and borrowed.
pub fn rewrite_xml_prolog_to_utf8(text: &str) -> Cow<'_, str> {
    let Some(span) = xml_encoding_span(text.as_bytes()) else {
        return Cow::Borrowed(text);
    };
    let (Some(before), Some(after)) = (text.get(..span.quote_start), text.get(span.quote_end..))
    else {
        return Cow::Borrowed(text);
    };
    if text.get(span.quote_start..span.quote_end) == Some("\"UTF-8\"") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(before);
    out.push_str("\"UTF-8\"");
    out.push_str(after);
    Cow::Owned(out)
}

fn finish(
    text: Cow<'_, str>,
    encoding: &'static Encoding,
    evidence: Evidence,
    had_errors: bool,
) -> Decoded {
    Decoded {
        text: text.into_owned(),
        encoding,
        evidence,
        had_errors,
    }
}

fn decode_as(bytes: &[u8], encoding: &'static Encoding, evidence: Evidence) -> Decoded {
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    finish(text, encoding, evidence, had_errors)
}

/// Applies a declaration from Content-Type or the document, or returns `None`
/// when the bytes show the declaration to be a lie.
fn decode_declared(
    bytes: &[u8],
    declared: &'static Encoding,
    evidence: Evidence,
) -> Option<Decoded> {
    if declared == encoding_rs::UTF_16LE || declared == encoding_rs::UTF_16BE {
        // "utf-16" resolves to UTF-16LE, so trust the byte pattern for the
        // byte order rather than the label.
        return sniff_utf16(bytes).map(|actual| decode_as(bytes, actual, evidence));
    }
    if declared != encoding_rs::UTF_8 && !bytes.is_ascii() && is_utf8(bytes) {
        return Some(decode_as(bytes, encoding_rs::UTF_8, Evidence::Utf8Valid));
    }
    Some(decode_as(bytes, declared, evidence))
}

fn sniff(bytes: &[u8]) -> Decoded {
    if is_utf8(bytes) {
        return decode_as(bytes, encoding_rs::UTF_8, Evidence::Utf8Valid);
    }
    // ISO-2022-JP is denied as in browsers: being 7-bit it is valid UTF-8 and
    // never gets here, so allowing it could only yield false positives.
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let guessed = widen_gbk(detector.guess(None, Utf8Detection::Allow));
    decode_as(bytes, guessed, Evidence::Guess)
}

fn is_utf8(bytes: &[u8]) -> bool {
    Encoding::utf8_valid_up_to(bytes) == bytes.len()
}

/// encoding_rs's GBK decoder already decodes all of GB18030, but reporting
/// GB18030 tells callers (and logs) what the text was really decoded as.
fn widen_gbk(encoding: &'static Encoding) -> &'static Encoding {
    if encoding == encoding_rs::GBK {
        encoding_rs::GB18030
    } else {
        encoding
    }
}

/// Recognises BOM-less UTF-16 from the NUL bytes that ASCII markup leaves in
/// every other position; Chinese-only UTF-16 prose would not show this, but
/// feed and page markup always starts with ASCII.
fn sniff_utf16(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(512) & !1];
    let pairs = head.len() / 2;
    if pairs < 2 {
        return None;
    }
    let (mut nul_even, mut nul_odd) = (0usize, 0usize);
    for pair in head.chunks_exact(2) {
        nul_even += usize::from(pair[0] == 0);
        nul_odd += usize::from(pair[1] == 0);
    }
    // Mostly-ASCII UTF-16 has NULs in at least half of one position and
    // practically none in the other.
    if nul_odd * 2 >= pairs && nul_even * 8 < pairs {
        Some(encoding_rs::UTF_16LE)
    } else if nul_even * 2 >= pairs && nul_odd * 8 < pairs {
        Some(encoding_rs::UTF_16BE)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Content-Type
// ---------------------------------------------------------------------------

/// Extracts the `charset` parameter of a Content-Type value. Parameters are
/// split on `;` (the media type itself is skipped) so that `charset=` inside
/// some other parameter's quoted value is not mistaken for it.
fn content_type_charset(value: &str) -> Option<&str> {
    value.split(';').skip(1).find_map(|param| {
        let (name, raw) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let raw = raw.trim();
        let unquoted = raw
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| raw.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(raw)
            .trim();
        (!unquoted.is_empty()).then_some(unquoted)
    })
}

// ---------------------------------------------------------------------------
// XML declaration
// ---------------------------------------------------------------------------

/// Byte offsets of the quoted encoding value in an XML declaration,
/// including the quotes.
struct EncodingSpan {
    quote_start: usize,
    quote_end: usize,
}

fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_xml_space(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).copied().is_some_and(is_xml_space) {
        pos += 1;
    }
    pos
}

/// Finds `encoding="…"` inside a leading `<?xml … ?>`. Works on bytes so it
/// serves both the undecoded document and the decoded text.
fn xml_encoding_span(bytes: &[u8]) -> Option<EncodingSpan> {
    let start = skip_xml_space(bytes, 0);
    let rest = bytes.get(start..)?;
    if !rest.starts_with(b"<?xml") || !rest.get(5).copied().is_some_and(is_xml_space) {
        return None;
    }
    let window = &rest[..rest.len().min(XML_DECL_LIMIT)];
    let decl_end = find(window, b"?>")?;
    let decl = &window[..decl_end];

    // Pseudo-attributes are `name = quoted-value` separated by whitespace;
    // walking them properly means a value that merely contains the word
    // "encoding" cannot be mistaken for the attribute.
    let mut pos = 5;
    loop {
        pos = skip_xml_space(decl, pos);
        let name_start = pos;
        while decl
            .get(pos)
            .is_some_and(|&b| b != b'=' && !is_xml_space(b))
        {
            pos += 1;
        }
        if pos == name_start {
            return None;
        }
        let name = &decl[name_start..pos];
        pos = skip_xml_space(decl, pos);
        if decl.get(pos) != Some(&b'=') {
            return None;
        }
        pos = skip_xml_space(decl, pos + 1);
        let quote = *decl.get(pos).filter(|&&b| b == b'"' || b == b'\'')?;
        let value_start = pos + 1;
        let value_len = decl.get(value_start..)?.iter().position(|&b| b == quote)?;
        let value_end = value_start + value_len;
        if name == b"encoding" {
            return Some(EncodingSpan {
                quote_start: start + pos,
                quote_end: start + value_end + 1,
            });
        }
        pos = value_end + 1;
    }
}

fn xml_declared_encoding(bytes: &[u8]) -> Option<&'static Encoding> {
    // XML 1.0 Appendix F: a BOM-less UTF-16 document announces itself by
    // the byte pattern of "<?" before any label could be read.
    if bytes.starts_with(b"<\0?\0") {
        return Some(encoding_rs::UTF_16LE);
    }
    if bytes.starts_with(b"\0<\0?") {
        return Some(encoding_rs::UTF_16BE);
    }
    let span = xml_encoding_span(bytes)?;
    let label = bytes.get(span.quote_start + 1..span.quote_end - 1)?;
    let encoding = Encoding::for_label_no_replacement(label)?;
    Some(widen_gbk(encoding))
}

// ---------------------------------------------------------------------------
// HTML <meta> prescan (a trimmed-down WHATWG "prescan a byte stream")
// ---------------------------------------------------------------------------

fn is_html_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0C' | b'\r')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

struct Attribute<'a> {
    /// Not lower-cased: compared with `eq_ignore_ascii_case` instead, to
    /// avoid allocating per attribute.
    name: &'a [u8],
    value: &'a [u8],
}

/// Reads one attribute starting at `*pos`; `None` at the end of the tag.
fn next_attribute<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<Attribute<'a>> {
    while bytes
        .get(*pos)
        .is_some_and(|&b| is_html_space(b) || b == b'/')
    {
        *pos += 1;
    }
    if bytes.get(*pos).is_none_or(|&b| b == b'>') {
        return None;
    }
    let name_start = *pos;
    // The first character may be '=' (WHATWG treats it as part of the name),
    // so always consume it before looking for the terminator.
    *pos += 1;
    while bytes
        .get(*pos)
        .is_some_and(|&b| !is_html_space(b) && !matches!(b, b'=' | b'/' | b'>'))
    {
        *pos += 1;
    }
    let name = &bytes[name_start..*pos];
    while bytes.get(*pos).copied().is_some_and(is_html_space) {
        *pos += 1;
    }
    if bytes.get(*pos) != Some(&b'=') {
        return Some(Attribute { name, value: &[] });
    }
    *pos += 1;
    while bytes.get(*pos).copied().is_some_and(is_html_space) {
        *pos += 1;
    }
    match bytes.get(*pos) {
        Some(&quote) if quote == b'"' || quote == b'\'' => {
            let value_start = *pos + 1;
            // An unterminated quote swallows the rest of the window, which
            // ends the scan, as in browsers.
            let len = bytes.get(value_start..)?.iter().position(|&b| b == quote)?;
            *pos = value_start + len + 1;
            Some(Attribute {
                name,
                value: &bytes[value_start..value_start + len],
            })
        }
        _ => {
            let value_start = *pos;
            while bytes
                .get(*pos)
                .is_some_and(|&b| !is_html_space(b) && b != b'>')
            {
                *pos += 1;
            }
            Some(Attribute {
                name,
                value: &bytes[value_start..*pos],
            })
        }
    }
}

/// WHATWG "extracting a character encoding from a meta element": finds
/// `charset=` inside a `content` attribute such as `text/html; charset=gbk`.
fn charset_from_meta_content(content: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    loop {
        let found = content
            .get(pos..)?
            .windows(7)
            .position(|w| w.eq_ignore_ascii_case(b"charset"))?;
        pos += found + 7;
        while content.get(pos).copied().is_some_and(is_html_space) {
            pos += 1;
        }
        if content.get(pos) != Some(&b'=') {
            continue;
        }
        pos += 1;
        while content.get(pos).copied().is_some_and(is_html_space) {
            pos += 1;
        }
        return match content.get(pos) {
            Some(&quote) if quote == b'"' || quote == b'\'' => {
                let start = pos + 1;
                let len = content.get(start..)?.iter().position(|&b| b == quote)?;
                Some(&content[start..start + len])
            }
            Some(_) => {
                let start = pos;
                let len = content[start..]
                    .iter()
                    .position(|&b| is_html_space(b) || b == b';')
                    .unwrap_or(content.len() - start);
                Some(&content[start..start + len])
            }
            None => None,
        };
    }
}

/// The encoding a single `<meta>` tag declares, if any. `pos` points just
/// past `<meta` and is left after the tag's attributes.
fn meta_tag_encoding(bytes: &[u8], pos: &mut usize) -> Option<&'static Encoding> {
    let mut charset: Option<&[u8]> = None;
    let mut content_charset: Option<&[u8]> = None;
    let mut is_content_type_pragma = false;
    while let Some(attr) = next_attribute(bytes, pos) {
        // First occurrence of an attribute wins, as in the HTML tokenizer.
        if attr.name.eq_ignore_ascii_case(b"charset") {
            charset = charset.or(Some(attr.value));
        } else if attr.name.eq_ignore_ascii_case(b"http-equiv") {
            is_content_type_pragma |= attr.value.eq_ignore_ascii_case(b"content-type");
        } else if attr.name.eq_ignore_ascii_case(b"content") && content_charset.is_none() {
            content_charset = charset_from_meta_content(attr.value);
        }
    }
    let label = charset.or(content_charset.filter(|_| is_content_type_pragma))?;
    Encoding::for_label_no_replacement(label).map(widen_gbk)
}

fn html_meta_encoding(bytes: &[u8]) -> Option<&'static Encoding> {
    let window = &bytes[..bytes.len().min(META_SCAN_LIMIT + META_TAG_SLACK)];
    let mut pos = 0;
    while pos < META_SCAN_LIMIT {
        let offset = window
            .get(pos..)
            .and_then(|w| w.iter().position(|&b| b == b'<'))?;
        pos += offset;
        if pos >= META_SCAN_LIMIT {
            return None;
        }
        let tag = &window[pos..];
        if tag.starts_with(b"<!--") {
            // A commented-out meta must not count; "<!-->" is a complete
            // comment, hence searching from the second dash.
            let close = find(&tag[2..], b"-->")?;
            pos += 2 + close + 3;
        } else if starts_with_ignore_case(tag, b"<meta")
            && tag.get(5).is_some_and(|&b| is_html_space(b) || b == b'/')
        {
            pos += 5;
            if let Some(encoding) = meta_tag_encoding(window, &mut pos) {
                return Some(encoding);
            }
        } else if tag.get(1).is_some_and(u8::is_ascii_alphabetic)
            || (tag.get(1) == Some(&b'/') && tag.get(2).is_some_and(u8::is_ascii_alphabetic))
        {
            // Other tags: walk their attributes so a '>' or "<meta" inside a
            // quoted value is not taken for markup.
            pos += 1;
            while window
                .get(pos)
                .is_some_and(|&b| !is_html_space(b) && b != b'>')
            {
                pos += 1;
            }
            while next_attribute(window, &mut pos).is_some() {}
        } else if matches!(tag.get(1), Some(b'!' | b'/' | b'?')) {
            pos += window[pos..].iter().position(|&b| b == b'>')?;
        } else {
            pos += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{BIG5, GB18030, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252};

    macro_rules! fixture {
        ($name:literal) => {
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/",
                $name
            ))
            .expect(concat!("fixture ", $name))
        };
    }

    fn assert_clean(d: &Decoded, encoding: &'static Encoding, evidence: Evidence) {
        assert_eq!(d.encoding, encoding, "encoding");
        assert_eq!(d.evidence, evidence, "evidence");
        assert!(!d.had_errors, "unexpected replacement characters");
        assert!(!d.text.contains('\u{FFFD}'));
    }

    // --- real fixtures -----------------------------------------------------

    #[test]
    fn gb2312_prolog_feed_decodes_as_gb18030() {
        let d = decode(
            &fixture!("chardet_gb2312_w3cn.org_rss20.xml"),
            None,
            DocKind::Xml,
            None,
        );
        assert_clean(&d, GB18030, Evidence::XmlProlog);
        assert!(d.text.contains("<title>网页设计师 -  文章教程</title>"));
        assert!(d.text.contains("<title>如何以及何时使用sIFR</title>"));
        assert!(d.text.contains("<author>阿宏</author>"));

        let rewritten = rewrite_xml_prolog_to_utf8(&d.text);
        assert!(rewritten.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<!--"));
        assert_eq!(
            rewritten.len(),
            d.text.len() - "gb2312".len() + "UTF-8".len()
        );
    }

    #[test]
    fn big5_prolog_feed_decodes_as_big5() {
        let d = decode(
            &fixture!("chardet_big5_sinica.edu.tw_atom03.xml"),
            None,
            DocKind::Xml,
            None,
        );
        assert_clean(&d, BIG5, Evidence::XmlProlog);
        assert!(d.text.contains(
            "<title mode=\"escaped\" type=\"text/html\">「隨機部落格」之「線上演算法」</title>"
        ));
        assert!(rewrite_xml_prolog_to_utf8(&d.text)
            .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>"));
    }

    #[test]
    fn undeclared_gb2312_feed_is_guessed() {
        let d = decode(
            &fixture!("feedparser_illformed_gb2312_no_decl.xml"),
            None,
            DocKind::Xml,
            None,
        );
        assert_clean(&d, GB18030, Evidence::Guess);
        assert!(d.text.contains("<title>不归移民漫画系列：专业工作</title>"));
    }

    #[test]
    fn iso_8859_1_feed_decodes_as_windows_1252() {
        let d = decode(
            &fixture!("feedrs_rss10_iso8859.xml"),
            None,
            DocKind::Xml,
            None,
        );
        assert_clean(&d, WINDOWS_1252, Evidence::XmlProlog);
        assert!(d
            .text
            .contains("Digitalministerium: Neue Glasfaserförderung mit Schnell"));
        assert!(d
            .text
            .contains("Ab April soll es wieder Förderung für den Ausbau"));
    }

    #[test]
    fn gbk_html_without_meta_is_guessed() {
        let bytes = fixture!("163_biz_2005_article_no_meta_charset.html");
        let d = decode(&bytes, None, DocKind::Html, None);
        assert_clean(&d, GB18030, Evidence::Guess);
        assert!(d
            .text
            .contains("title=\"CCER经济学人分析中国经济热度_网易商业报道\""));
        assert!(d.text.contains("<a href=\"http://news.163.com/\">新闻</a>"));

        // The dataset wrapper's encoding="gb2312" attribute is not a <meta>.
        assert_eq!(html_meta_encoding(&bytes), None);

        let told = decode(
            &bytes,
            Some("text/html; charset=GB2312"),
            DocKind::Html,
            None,
        );
        assert_clean(&told, GB18030, Evidence::ContentType);
        assert_eq!(told.text, d.text);
    }

    #[test]
    fn gb2312_html_meta_is_honoured() {
        let d = decode(
            &fixture!("people.com.cn_2022_article_gb2312.html"),
            None,
            DocKind::Html,
            None,
        );
        assert_clean(&d, GB18030, Evidence::MetaTag);
        assert!(d
            .text
            .contains("<title>江苏多地要求中高风险地区师生员工暂不返校</title>"));
        assert!(d.text.contains("content=\"来源：新华日报\""));
    }

    #[test]
    fn html_meta_gb2312_over_utf8_bytes_decodes_as_utf8() {
        let bytes = fixture!("fund_rtfund_xxpl_list_meta_gb2312_but_utf8.html");
        assert_eq!(html_meta_encoding(&bytes), Some(GB18030));
        let d = decode(&bytes, None, DocKind::Html, None);
        assert_clean(&d, UTF_8, Evidence::Utf8Valid);
        assert!(d
            .text
            .contains("<title>信息披露_融通基金管理有限公司</title>"));

        // A matching lie in the header is overruled just the same.
        let d = decode(
            &bytes,
            Some("text/html;charset=gb2312"),
            DocKind::Html,
            None,
        );
        assert_clean(&d, UTF_8, Evidence::Utf8Valid);
    }

    #[test]
    fn html_meta_gbk_over_utf8_bytes_decodes_as_utf8() {
        let bytes = fixture!("netease_intl_list_meta_gbk_but_utf8.html");
        assert_eq!(html_meta_encoding(&bytes), Some(GB18030));
        let d = decode(&bytes, None, DocKind::Html, None);
        assert_clean(&d, UTF_8, Evidence::Utf8Valid);
        assert!(d.text.contains("<title>国际新闻_网易新闻中心</title>"));
    }

    // --- precedence --------------------------------------------------------

    #[test]
    fn content_type_beats_document_declaration() {
        // 0xE9 is 'é' in the declared windows-1252 but 'ι' in ISO-8859-7.
        let html = b"<meta charset=\"windows-1252\"><p>\xE9</p>";
        let d = decode(
            html,
            Some("text/html; Charset=\"ISO-8859-7\""),
            DocKind::Html,
            None,
        );
        assert_clean(&d, encoding_rs::ISO_8859_7, Evidence::ContentType);
        assert_eq!(d.text, "<meta charset=\"windows-1252\"><p>ι</p>");

        let xml = b"<?xml version='1.0' encoding='windows-1252'?><a>\xE9</a>";
        let d = decode(
            xml,
            Some("application/rss+xml;charset=iso-8859-7"),
            DocKind::Xml,
            None,
        );
        assert_eq!(d.evidence, Evidence::ContentType);
        assert!(d.text.ends_with("<a>ι</a>"));
    }

    #[test]
    fn content_type_charset_on_real_feed() {
        let bytes = fixture!("chardet_big5_sinica.edu.tw_atom03.xml");
        let d = decode(
            &bytes,
            Some("application/atom+xml; charset=big5"),
            DocKind::Xml,
            None,
        );
        assert_clean(&d, BIG5, Evidence::ContentType);
        assert!(d.text.contains("「隨機部落格」之「線上演算法」"));
    }

    #[test]
    fn bom_beats_wrong_content_type() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice("<p>听风</p>".as_bytes());
        let d = decode(&bytes, Some("text/html; charset=gbk"), DocKind::Html, None);
        assert_clean(&d, UTF_8, Evidence::Bom);
        assert_eq!(d.text, "<p>听风</p>");

        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend("<a>听风</a>".encode_utf16().flat_map(u16::to_le_bytes));
        let d = decode(&utf16, Some("text/xml; charset=utf-8"), DocKind::Xml, None);
        assert_clean(&d, UTF_16LE, Evidence::Bom);
        assert_eq!(d.text, "<a>听风</a>");
    }

    #[test]
    fn override_beats_everything() {
        let bytes = fixture!("chardet_gb2312_w3cn.org_rss20.xml");
        let d = decode(
            &bytes,
            Some("text/xml; charset=utf-8"),
            DocKind::Xml,
            Some("GBK"),
        );
        assert_clean(&d, GB18030, Evidence::Override);
        assert!(d.text.contains("网页设计师"));

        // An override even beats a BOM, but the BOM is still not text.
        let d = decode(b"\xEF\xBB\xBFabc", None, DocKind::Json, Some("utf-8"));
        assert_eq!((d.evidence, d.text.as_str()), (Evidence::Override, "abc"));

        // An unknown label is ignored rather than honoured or fatal.
        let d = decode(&bytes, None, DocKind::Xml, Some("no-such-charset"));
        assert_eq!(d.evidence, Evidence::XmlProlog);
    }

    #[test]
    fn invalid_bytes_are_replaced_not_fatal() {
        let d = decode(
            b"abc\xFFdef",
            Some("application/json; charset=utf-8"),
            DocKind::Json,
            None,
        );
        assert_eq!(d.text, "abc\u{FFFD}def");
        assert!(d.had_errors);
        assert_eq!((d.encoding, d.evidence), (UTF_8, Evidence::ContentType));

        // Truncated mid-character.
        let d = decode(
            "听风".as_bytes().get(..4).unwrap(),
            Some("text/xml;charset=UTF-8"),
            DocKind::Xml,
            None,
        );
        assert_eq!(d.text, "听\u{FFFD}");
        assert!(d.had_errors);
    }

    #[test]
    fn json_is_utf8_unless_it_is_not() {
        let d = decode("{\"t\":\"听风\"}".as_bytes(), None, DocKind::Json, None);
        assert_clean(&d, UTF_8, Evidence::Utf8Valid);

        // A meta tag inside a JSON string is not a declaration.
        let d = decode(
            b"{\"h\":\"<meta charset=big5>\"}",
            None,
            DocKind::Json,
            None,
        );
        assert_eq!(d.evidence, Evidence::Utf8Valid);

        let (gbk, _, _) =
            GB18030.encode("{\"title\":\"不归移民漫画系列：专业工作，网页设计师文章教程\"}");
        let d = decode(&gbk, None, DocKind::Json, None);
        assert_clean(&d, GB18030, Evidence::Guess);
        assert!(d.text.contains("不归移民漫画系列"));
    }

    #[test]
    fn utf16_content_type_over_non_utf16_bytes_is_ignored() {
        let d = decode(
            "<p>听风</p>".as_bytes(),
            Some("text/html; charset=utf-16"),
            DocKind::Html,
            None,
        );
        assert_clean(&d, UTF_8, Evidence::Utf8Valid);

        // ...but honoured, in the right byte order, when the bytes are UTF-16.
        let be: Vec<u8> = "<rss>听风</rss>"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        let d = decode(&be, Some("text/xml; charset=utf-16"), DocKind::Xml, None);
        assert_clean(&d, UTF_16BE, Evidence::ContentType);
        assert_eq!(d.text, "<rss>听风</rss>");
    }

    #[test]
    fn bomless_utf16_xml_is_recognised() {
        let le: Vec<u8> = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><a>听风</a>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let d = decode(&le, None, DocKind::Xml, None);
        assert_clean(&d, UTF_16LE, Evidence::XmlProlog);
        assert!(d.text.ends_with("<a>听风</a>"));
    }

    #[test]
    fn ascii_with_legacy_declaration_keeps_declaration() {
        let d = decode(
            b"<?xml version=\"1.0\" encoding=\"gbk\"?><a/>",
            None,
            DocKind::Xml,
            None,
        );
        assert_clean(&d, GB18030, Evidence::XmlProlog);
    }

    #[test]
    fn utf16_xml_prolog_over_ascii_bytes_is_ignored() {
        let d = decode(
            "<?xml version=\"1.0\" encoding=\"utf-16\"?><a>é</a>".as_bytes(),
            None,
            DocKind::Xml,
            None,
        );
        assert_clean(&d, UTF_8, Evidence::Utf8Valid);
    }

    // --- declaration parsing -----------------------------------------------

    #[test]
    fn meta_charset_variants() {
        let cases: &[&[u8]] = &[
            b"<meta charset=gbk>",
            b"<META CHARSET='GBK'/>",
            b"<meta\tcharset = \"x-gbk\" >",
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=gb2312\">",
            b"<meta content=\"text/html;charset=GB2312\" http-equiv=content-type>",
            b"<meta content='text/html; charset=\"gbk\"' HTTP-EQUIV='CONTENT-TYPE'>",
            b"<div title=\"a > b\"></div><meta charset=gbk>",
        ];
        for html in cases {
            let mut page = b"<!DOCTYPE html><html><head>".to_vec();
            page.extend_from_slice(html);
            assert_eq!(
                html_meta_encoding(&page),
                Some(GB18030),
                "{}",
                String::from_utf8_lossy(html)
            );
        }
    }

    #[test]
    fn meta_lookalikes_are_not_declarations() {
        let cases: &[&[u8]] = &[
            b"<!-- <meta charset=big5> --><p>",
            b"<!-- a > b <meta charset=big5> -->",
            b"<meta content=\"text/html; charset=big5\">",
            b"<metadata charset=big5>",
            b"<div data-x=\"<meta charset=big5>\">",
            b"<meta charset=no-such-charset>",
        ];
        for html in cases {
            assert_eq!(
                html_meta_encoding(html),
                None,
                "{}",
                String::from_utf8_lossy(html)
            );
        }
        // "<!-->" is already a complete comment, so what follows is markup.
        assert_eq!(html_meta_encoding(b"<!--> <meta charset=big5>"), Some(BIG5));
    }

    #[test]
    fn meta_after_scan_limit_is_ignored() {
        let mut late = vec![b' '; META_SCAN_LIMIT];
        late.extend_from_slice(b"<meta charset=big5>");
        assert_eq!(html_meta_encoding(&late), None);

        let mut early = vec![b' '; META_SCAN_LIMIT - 10];
        early.extend_from_slice(b"<meta charset=big5>");
        assert_eq!(html_meta_encoding(&early), Some(BIG5));
    }

    #[test]
    fn content_type_parsing() {
        assert_eq!(content_type_charset("text/html; charset=GBK"), Some("GBK"));
        assert_eq!(
            content_type_charset("text/xml;CHARSET=\"utf-8\""),
            Some("utf-8")
        );
        assert_eq!(
            content_type_charset("text/xml; charset='big5' ; x=y"),
            Some("big5")
        );
        assert_eq!(content_type_charset("text/html"), None);
        assert_eq!(content_type_charset("text/html; charset="), None);
        assert_eq!(content_type_charset("charset=gbk"), None);
    }

    #[test]
    fn label_lookup() {
        for label in [
            "gb2312",
            "GBK",
            "x-gbk",
            "gb_2312-80",
            "chinese",
            "csgb2312",
            "iso-ir-58",
            " gb18030 ",
        ] {
            assert_eq!(lookup_label(label), Some(GB18030), "{label}");
        }
        assert_eq!(lookup_label("big5"), Some(BIG5));
        assert_eq!(lookup_label("latin1"), Some(WINDOWS_1252));
        assert_eq!(lookup_label("ISO-8859-1"), Some(WINDOWS_1252));
        assert_eq!(lookup_label("utf8"), Some(UTF_8));
        assert_eq!(lookup_label("no-such-charset"), None);
        assert_eq!(lookup_label(""), None);
        assert_eq!(lookup_label("hz-gb-2312"), None);
    }

    #[test]
    fn evidence_display() {
        let words: Vec<String> = [
            Evidence::Override,
            Evidence::Bom,
            Evidence::ContentType,
            Evidence::XmlProlog,
            Evidence::MetaTag,
            Evidence::Utf8Valid,
            Evidence::Guess,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            words,
            [
                "override",
                "bom",
                "content-type",
                "xml-prolog",
                "meta",
                "utf8-valid",
                "guess"
            ]
        );
    }

    // --- prolog rewriting --------------------------------------------------

    #[test]
    fn rewrite_double_quoted_prolog() {
        let text = "<?xml version=\"1.0\" encoding=\"gb2312\"?><rss/>";
        assert_eq!(
            rewrite_xml_prolog_to_utf8(text),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss/>"
        );
    }

    #[test]
    fn rewrite_single_quoted_prolog_after_whitespace() {
        let text = "\n  <?xml version='1.0' encoding = 'Big5' standalone='yes'?>\n<feed/>";
        assert_eq!(
            rewrite_xml_prolog_to_utf8(text),
            "\n  <?xml version='1.0' encoding = \"UTF-8\" standalone='yes'?>\n<feed/>"
        );
    }

    #[test]
    fn rewrite_leaves_other_documents_alone() {
        for text in [
            "<rss><title>encoding=\"gbk\"</title></rss>",
            "<?xml version=\"1.0\"?><rss/>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss/>",
            "<!-- x --><?xml version=\"1.0\" encoding=\"gbk\"?>",
            "<?xml-stylesheet href=\"a\" encoding=\"gbk\"?>",
            "<?xml version=\"1.0\" encoding=\"gbk\"",
            "",
        ] {
            assert!(
                matches!(rewrite_xml_prolog_to_utf8(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }

    #[test]
    fn rewrite_touches_only_the_prolog() {
        let text = "<?xml version=\"1.0\"?>\n<rss><![CDATA[<?xml version=\"1.0\" encoding=\"gbk\"?>]]><d>encoding=\"gbk\"</d></rss>";
        assert_eq!(rewrite_xml_prolog_to_utf8(text), text);

        let text = "<?xml version=\"1.0\" encoding='gbk'?><d>encoding=\"gbk\" encoding='gbk'</d>";
        assert_eq!(
            rewrite_xml_prolog_to_utf8(text),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><d>encoding=\"gbk\" encoding='gbk'</d>"
        );
    }

    #[test]
    fn utf8_header_over_gbk_bytes_defers_to_the_prolog() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/chardet_gb2312_w3cn.org_rss20.xml"
        ))
        .unwrap();
        let d = decode(&bytes, Some("text/xml; charset=utf-8"), DocKind::Xml, None);
        assert_eq!(d.encoding, encoding_rs::GB18030);
        assert_eq!(d.evidence, Evidence::XmlProlog);
        assert!(d.text.contains("CSS中的滑动门技术"));
        assert!(!d.had_errors);
    }
}
