//! Owns text normalisation: HTML fragments to plain text, and the one matching form (NFKC,
//! lower case, no zero-width characters) used identically for keywords and item text, with a
//! map back to character offsets in the original.

use unicode_normalization::UnicodeNormalization;

/// Plain text of an HTML (or already plain) fragment: tags removed, `<script>`/`<style>`
/// contents dropped, entities decoded, whitespace folded to single spaces.
pub fn html_to_text(input: &str) -> String {
    // Feeds often double-escape ("&lt;p&gt;"): decode first only when no real tag is present.
    let owned;
    let input = if !input.contains('<') && input.contains("&lt;") {
        owned = html_escape::decode_html_entities(input).into_owned();
        owned.as_str()
    } else {
        input
    };
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt..];
        if let Some(body) = after.strip_prefix("<!--") {
            rest = match body.find("-->") {
                Some(end) => &body[end + 3..],
                None => "",
            };
            continue;
        }
        if let Some(body) = after.strip_prefix("<![CDATA[") {
            match body.find("]]>") {
                Some(end) => {
                    out.push_str(&body[..end]);
                    rest = &body[end + 3..];
                }
                None => {
                    out.push_str(body);
                    rest = "";
                }
            }
            continue;
        }
        // Only treat '<' as markup when a tag name (or '/', '!', '?') follows, so "a < b" survives.
        let next = after[1..].chars().next();
        if !matches!(next, Some(c) if c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?') {
            out.push('<');
            rest = &after[1..];
            continue;
        }
        let Some(gt) = after.find('>') else {
            // An unterminated tag: drop the rest rather than show markup.
            rest = "";
            break;
        };
        let tag = &after[1..gt];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        rest = &after[gt + 1..];
        if !tag.starts_with('/') && (name == "script" || name == "style") {
            let close = format!("</{name}");
            rest = match find_ascii_ci(rest, &close) {
                Some(pos) => match rest[pos..].find('>') {
                    Some(g) => &rest[pos + g + 1..],
                    None => "",
                },
                None => "",
            };
        }
        if is_block(&name) {
            out.push(' ');
        }
    }
    out.push_str(rest);
    let decoded = html_escape::decode_html_entities(&out);
    fold_whitespace(&decoded)
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.len();
    hay.as_bytes()
        .windows(n)
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "br" | "p"
            | "div"
            | "li"
            | "ul"
            | "ol"
            | "tr"
            | "td"
            | "th"
            | "table"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "blockquote"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "hr"
            | "pre"
            | "img"
            | "figure"
            | "figcaption"
            | "dd"
            | "dt"
    )
}

/// Collapses runs of whitespace (including U+3000 and NBSP) into one ASCII space and trims.
pub fn fold_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() || c == '\u{a0}' {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

#[inline(always)]
fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{00ad}'
    )
}

/// A Chinese character: the unified ideographs, extension A, and the supplementary planes'
/// extensions (where OpenCC puts the simplified form of some 600 traditional characters).
#[inline(always)]
fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
        || ('\u{3400}'..='\u{4dbf}').contains(&c)
        || ('\u{20000}'..='\u{3ffff}').contains(&c)
}

/// Characters slipped between Chinese characters to dodge filters (城-管, 城 管, 城/管).
/// Commas and full stops are not among them: they separate clauses, not syllables.
#[inline(always)]
fn is_dodge_separator(c: char) -> bool {
    if c.is_ascii() {
        // Space, tab, newline, CR, FF and - _ / \\ . * | ~ ^ + = #
        const MASK: u128 = (1 << b' ')
            | (1 << b'\t')
            | (1 << b'\n')
            | (1 << b'\r')
            | (1 << 0x0b)
            | (1 << 0x0c)
            | (1 << b'-')
            | (1 << b'_')
            | (1 << b'/')
            | (1 << b'\\')
            | (1 << b'.')
            | (1 << b'*')
            | (1 << b'|')
            | (1 << b'~')
            | (1 << b'^')
            | (1 << b'+')
            | (1 << b'=')
            | (1 << b'#');
        return MASK & (1u128 << (c as u32)) != 0;
    }
    // Unicode's other white space, and the middle dots.
    matches!(
        c,
        '\u{85}' | '\u{a0}' | '·' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '•'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '・'
    )
}

/// The definition [`is_dodge_separator`] is a fast form of.
#[cfg(test)]
fn is_dodge_separator_slow(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '_'
                | '/'
                | '\\'
                | '.'
                | '·'
                | '•'
                | '・'
                | '*'
                | '|'
                | '~'
                | '^'
                | '+'
                | '='
                | '#'
        )
}

const T2S_FIRST: u32 = 0x4e00;
const T2S_LAST: u32 = 0x9fff;

/// Traditional → simplified for the CJK Unified Ideographs block, one character at a time
/// (so offsets map back 1:1), built once from OpenCC's t2s dictionaries.
fn t2s_table() -> &'static [char] {
    static TABLE: std::sync::OnceLock<Vec<char>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let chars: Vec<char> = (T2S_FIRST..=T2S_LAST).filter_map(char::from_u32).collect();
        let mut table = chars.clone();
        let cc = ferrous_opencc::OpenCC::from_config(ferrous_opencc::config::BuiltinConfig::T2s);
        if let Err(e) = &cc {
            tracing::error!(error = %e, "traditional → simplified tables did not load: traditional text will not match simplified keywords");
        }
        if let Ok(cc) = cc {
            // One character per line: no phrase can span a line break, so each converts alone.
            let joined: String = chars.iter().flat_map(|c| [*c, '\n']).collect();
            let converted = cc.convert(&joined);
            let lines: Vec<&str> = converted.split('\n').collect();
            if lines.len() >= chars.len() {
                for (k, line) in lines.iter().take(chars.len()).enumerate() {
                    let mut it = line.chars();
                    if let (Some(one), None) = (it.next(), it.next()) {
                        table[k] = one;
                    }
                }
            }
        }
        table
    })
}

#[inline]
fn t2s_with(table: &[char], c: char) -> char {
    let u = c as u32;
    if (T2S_FIRST..=T2S_LAST).contains(&u) {
        table.get((u - T2S_FIRST) as usize).copied().unwrap_or(c)
    } else {
        c
    }
}

/// What [`fold_table`] says about a BMP character whose matching form is not one BMP char.
const SLOW: u16 = 0xffff;
/// A character that vanishes from the matching form (zero-width).
const DROP: u16 = 0xfffe;

/// The matching form of one character the long way: NFKC, lower case, simplified, zero-width
/// removed. The reference that [`fold_table`] is built from.
fn fold_slow(c: char, t2s: &[char], out: &mut impl FnMut(char)) {
    if is_zero_width(c) {
        return;
    }
    for d in std::iter::once(c).nfkc() {
        for l in d.to_lowercase() {
            out(if is_cjk(l) { t2s_with(t2s, l) } else { l });
        }
    }
}

/// For every BMP character, its matching form when that is a single BMP character, [`DROP`]
/// when it is nothing, or [`SLOW`] (expansions such as ㈱ → (株), and U+FFFE/U+FFFF
/// themselves). One lookup replaces NFKC, case folding and t2s on the hot path; 128 KiB,
/// of which Chinese text touches the 42 KiB of the ideograph block.
fn fold_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let t2s = t2s_table();
        let mut table = vec![SLOW; 0x10000];
        for (u, slot) in table.iter_mut().enumerate() {
            let Some(c) = char::from_u32(u as u32) else {
                continue;
            };
            if c.is_ascii() {
                *slot = c.to_ascii_lowercase() as u16;
                continue;
            }
            let mut first = None;
            let mut count = 0;
            fold_slow(c, t2s, &mut |o| {
                count += 1;
                first.get_or_insert(o);
            });
            *slot = match (count, first) {
                (0, _) => DROP,
                (1, Some(o)) if (o as u32) < 0xfffe => o as u16,
                _ => SLOW,
            };
        }
        table
    })
}

/// The original character a character of the matching form came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    /// Character index in the original.
    pub char: u32,
    /// Byte range of that character in the original.
    pub byte: u32,
    pub byte_end: u32,
}

/// Where the normaliser's output goes: one call per character of the matching form.
pub trait Sink {
    fn put(&mut self, origin: Origin, c: char);
}

impl<F: FnMut(Origin, char)> Sink for F {
    #[inline(always)]
    fn put(&mut self, origin: Origin, c: char) {
        self(origin, c)
    }
}

/// Adapts a closure that only wants the original character index.
struct CharSink<F: FnMut(u32, char)>(F);

impl<F: FnMut(u32, char)> Sink for CharSink<F> {
    #[inline(always)]
    fn put(&mut self, origin: Origin, c: char) {
        (self.0)(origin.char, c)
    }
}

/// A bit per character of the unified ideographs block whose matching form is not itself
/// (traditional characters), from [`fold_table`].
fn changed_ideographs() -> &'static [u64] {
    static BITS: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    BITS.get_or_init(|| {
        let table = fold_table();
        let mut bits = vec![0u64; ((T2S_LAST - T2S_FIRST) as usize).div_ceil(64) + 1];
        for u in T2S_FIRST..=T2S_LAST {
            if table.get(u as usize).copied() != Some(u as u16) {
                let k = (u - T2S_FIRST) as usize;
                bits[k / 64] |= 1 << (k % 64);
            }
        }
        bits
    })
}

/// Feeds normalised characters on, dropping short runs of dodge separators between two
/// Chinese characters. One pass, no intermediate buffer: this is the hot path of matching.
struct Stream<'s, S: Sink> {
    sink: &'s mut S,
    table: &'static [u16],
    changed: &'static [u64],
    t2s: &'static [char],
    last_cjk: bool,
    pending: [(Origin, char); 3],
    pending_len: usize,
}

impl<S: Sink> Stream<'_, S> {
    /// A Chinese character of the matching form: separators held before it were a dodge.
    #[inline(always)]
    fn put_cjk(&mut self, i: Origin, c: char) {
        self.pending_len = 0;
        self.sink.put(i, c);
        self.last_cjk = true;
    }

    /// One character of the matching form, from original char `i`.
    #[inline(always)]
    fn feed(&mut self, i: Origin, c: char) {
        if is_cjk(c) {
            self.put_cjk(i, c);
            return;
        }
        if (self.last_cjk || self.pending_len > 0) && is_dodge_separator(c) {
            if self.pending_len < self.pending.len() {
                self.pending[self.pending_len] = (i, c);
                self.pending_len += 1;
                return;
            }
            // A long run is layout, not a dodge: keep it.
            self.flush();
            self.sink.put(i, c);
            self.last_cjk = false;
            return;
        }
        // Separators held before anything but Chinese were not a dodge.
        self.flush();
        self.sink.put(i, c);
        self.last_cjk = false;
    }

    fn flush(&mut self) {
        for k in 0..self.pending_len {
            let (i, c) = self.pending[k];
            self.sink.put(i, c);
        }
        self.pending_len = 0;
    }

    /// An ASCII original char: lower case; a separator only right after Chinese.
    #[inline(always)]
    fn push_ascii(&mut self, i: Origin, u: u32) {
        let c = char::from((u as u8).to_ascii_lowercase());
        if self.last_cjk || self.pending_len > 0 {
            self.feed(i, c);
        } else {
            self.sink.put(i, c);
        }
    }

    /// The matching form of original char `u` at `i`: NFKC, lower case, simplified,
    /// zero-width removed.
    #[inline(always)]
    fn push(&mut self, i: Origin, u: u32) {
        // Simplified Chinese, most of the text, is its own matching form: a 2.6 KiB bitset
        // says so without touching the 128 KiB table.
        let k = u.wrapping_sub(T2S_FIRST) as usize;
        if k <= (T2S_LAST - T2S_FIRST) as usize
            && self
                .changed
                .get(k / 64)
                .is_some_and(|w| w & (1 << (k % 64)) == 0)
        {
            if let Some(c) = char::from_u32(u) {
                self.put_cjk(i, c);
                return;
            }
        }
        let folded = self.table.get(u as usize).copied().unwrap_or(SLOW);
        if folded < DROP {
            // A char (the table never stores a surrogate).
            if let Some(c) = char::from_u32(u32::from(folded)) {
                self.feed(i, c);
            }
        } else if folded == SLOW {
            if let Some(c) = char::from_u32(u) {
                self.push_slow(i, c);
            }
        }
    }

    /// Expansions (㈱ → (株)) and characters beyond the BMP.
    #[cold]
    fn push_slow(&mut self, i: Origin, c: char) {
        let t2s = self.t2s;
        fold_slow(c, t2s, &mut |o| self.feed(i, o));
    }
}

/// Runs the normaliser over `original`, calling `emit(original char index, char)` for each
/// char of the matching form; returns the number of original chars.
pub fn fold(original: &str, emit: impl FnMut(u32, char)) -> u32 {
    fold_into(original, &mut CharSink(emit))
}

/// [`fold`] into a [`Sink`], which the hot path inlines.
#[inline(always)]
pub fn fold_into<S: Sink>(original: &str, sink: &mut S) -> u32 {
    let mut st = Stream {
        sink,
        table: fold_table(),
        changed: changed_ideographs(),
        t2s: t2s_table(),
        last_cjk: false,
        pending: [(Origin::default(), ' '); 3],
        pending_len: 0,
    };
    // Decoded by hand from the bytes: ASCII, most of any text, takes a path of its own.
    let bytes = original.as_bytes();
    let at = |i: usize| bytes.get(i).map_or(0, |b| u32::from(b & 0x3f));
    let mut i = 0usize;
    let mut count = 0u32;
    while let Some(&x) = bytes.get(i) {
        let (u, len) = match x {
            0..=0x7f => (u32::from(x), 1),
            0x80..=0xdf => ((u32::from(x & 0x1f) << 6) | at(i + 1), 2),
            0xe0..=0xef => (
                (u32::from(x & 0x0f) << 12) | (at(i + 1) << 6) | at(i + 2),
                3,
            ),
            _ => (
                (u32::from(x & 0x07) << 18) | (at(i + 1) << 12) | (at(i + 2) << 6) | at(i + 3),
                4,
            ),
        };
        let origin = Origin {
            char: count,
            byte: i as u32,
            byte_end: (i + len) as u32,
        };
        if len == 1 {
            st.push_ascii(origin, u);
        } else {
            st.push(origin, u);
        }
        i += len;
        count += 1;
    }
    st.flush();
    count
}

/// A keyword or rule term in matching form, without the spaces and separators at its ends
/// (`"城管 "` must match the same texts as `城管`).
pub fn normalize_pattern(s: &str) -> String {
    normalize_for_match(s)
        .trim_matches(|c: char| is_dodge_separator(c))
        .to_string()
}

/// The matching form of `s`: NFKC per character (full-/half-width), lower case, traditional
/// → simplified, zero-width characters removed, and short runs of separators between two
/// Chinese characters dropped. Keywords and rule terms go through the same function as item
/// text, so both sides agree.
pub fn normalize_for_match(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold(s, |_, c| out.push(c));
    out
}

/// `count` chars either side of original chars `from..to`, with ellipses where cut: the
/// character-counting reference that [`snippet_at`] is checked against.
#[cfg(test)]
pub fn snippet(original: &str, from: usize, to: usize, count: usize) -> String {
    snippet_from(original, 0, 0, from, to, count)
}

/// `count` chars either side of original bytes `from..to` (char boundaries), with ellipses
/// where cut. Walks only the snippet itself, whatever the length of the text.
pub fn snippet_at(original: &str, from: usize, to: usize, count: usize) -> String {
    let from = from.min(original.len());
    let to = to.clamp(from, original.len());
    let (Some(before), Some(matched), Some(after)) = (
        original.get(..from),
        original.get(from..to),
        original.get(to..),
    ) else {
        return String::new();
    };
    let start = match count.checked_sub(1) {
        Some(k) => before.char_indices().rev().nth(k).map(|(b, _)| b),
        None => Some(before.len()),
    };
    let end = after.char_indices().nth(count).map(|(b, _)| b);
    let mut s = String::with_capacity(to - from + 8 * count);
    match start {
        Some(b) if b > 0 => {
            s.push('…');
            s.push_str(&before[b..]);
        }
        _ => s.push_str(before),
    }
    s.push_str(matched);
    match end {
        Some(b) => {
            s.push_str(&after[..b]);
            s.push('…');
        }
        None => s.push_str(after),
    }
    s
}

#[cfg(test)]
/// [`snippet`] with the walk starting at `byte`, which is the start of char `char_at`.
fn snippet_from(
    original: &str,
    byte: usize,
    char_at: usize,
    from: usize,
    to: usize,
    count: usize,
) -> String {
    let start = from.saturating_sub(count);
    let end = to.saturating_add(count);
    let mut s = String::new();
    if start > 0 {
        s.push('…');
    }
    for (k, c) in original.get(byte..).unwrap_or("").chars().enumerate() {
        let k = k + char_at;
        if k < start {
            continue;
        }
        if k >= end {
            s.push('…');
            break;
        }
        s.push(c);
    }
    s
}

/// The characters that make a story a story for "same text" detection: normalised, with
/// whitespace and punctuation removed so formatting differences between sites do not count.
pub fn significant(s: &str) -> String {
    normalize_for_match(s)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table behind the hot path says, for every BMP character, what NFKC, lower case
    /// and t2s say one at a time (computed here without the table).
    #[test]
    fn every_bmp_character_folds_as_nfkc_lower_case_and_t2s() {
        let t2s = t2s_table();
        for u in 0u32..0x10000 {
            let Some(c) = char::from_u32(u) else {
                continue;
            };
            let expected: String = if is_zero_width(c) {
                String::new()
            } else {
                std::iter::once(c)
                    .nfkc()
                    .flat_map(char::to_lowercase)
                    .map(|l| if is_cjk(l) { t2s_with(t2s, l) } else { l })
                    .collect()
            };
            let mut got = String::new();
            fold(&c.to_string(), |i, o| {
                assert_eq!(i, 0);
                got.push(o);
            });
            assert_eq!(got, expected, "U+{u:04X}");
        }
        assert_eq!(normalize_for_match("\u{1d400}"), "a", "beyond the BMP: 𝐀");
    }

    #[test]
    fn the_fast_separator_test_is_the_separator_list() {
        for u in 0u32..0x11_0000 {
            if let Some(c) = char::from_u32(u) {
                assert_eq!(
                    is_dodge_separator(c),
                    is_dodge_separator_slow(c),
                    "U+{u:04X}"
                );
            }
        }
    }

    /// Cutting by byte offsets gives the snippet that counting characters gives.
    #[test]
    fn snippets_by_bytes_and_by_characters_agree() {
        let text: String = (0..300)
            .map(|k| match k % 7 {
                0 => '城',
                3 => 'é',
                _ => 'a',
            })
            .collect();
        let bytes: Vec<usize> = text
            .char_indices()
            .map(|(b, _)| b)
            .chain([text.len()])
            .collect();
        for from in [0, 1, 5, 31, 32, 33, 100, 250, 298, 299, 300] {
            for len in [0, 1, 2] {
                let to = (from + len).min(300);
                for count in [0, 1, 2, 40] {
                    assert_eq!(
                        snippet_at(&text, bytes[from], bytes[to], count),
                        snippet(&text, from, to, count),
                        "{from}..{to} ±{count}"
                    );
                }
            }
        }
    }

    #[test]
    fn strips_markup_and_decodes_entities() {
        let html =
            "<p>城管&nbsp;执法</p><script>var x = '<b>';</script><br/>第二段 &amp; more<!-- c -->";
        assert_eq!(html_to_text(html), "城管 执法 第二段 & more");
        assert_eq!(html_to_text("a < b and c > d"), "a < b and c > d");
        assert_eq!(html_to_text("&lt;p&gt;escaped&lt;/p&gt;"), "escaped");
        assert_eq!(html_to_text("<![CDATA[内容]]>"), "内容");
    }

    #[test]
    fn normalises_width_case_and_zero_width() {
        assert_eq!(normalize_for_match("ＡＢＣ１２３"), "abc123");
        assert_eq!(normalize_for_match("城\u{200b}管"), "城管");
        assert_eq!(normalize_for_match("Weibo"), "weibo");
    }

    #[test]
    fn traditional_and_dodging_separators_normalise_away() {
        assert_eq!(normalize_for_match("城管執法"), "城管执法");
        assert_eq!(normalize_for_match("期末報告"), "期末报告");
        for dodge in ["城-管", "城 管", "城/管", "城　管", "城 - 管", "城.管"] {
            assert_eq!(normalize_for_match(dodge), "城管", "{dodge}");
        }
        // 勣 simplifies to a character beyond the BMP; it is still Chinese.
        let simplified = normalize_for_match("勣");
        assert_eq!(normalize_for_match("城-勣"), format!("城{simplified}"));
        assert_eq!(normalize_for_match("勣 管"), format!("{simplified}管"));
        // Clauses stay apart, and Latin words keep their spaces.
        assert_eq!(normalize_for_match("暴雨，内涝"), "暴雨,内涝");
        assert_eq!(normalize_for_match("New York"), "new york");
        assert_eq!(origins("某地城 - 管打人"), vec![0, 1, 2, 6, 7, 8]);
    }

    fn origins(original: &str) -> Vec<u32> {
        let mut out = Vec::new();
        fold(original, |i, _| out.push(i));
        out
    }

    #[test]
    fn each_character_of_the_matching_form_knows_its_origin() {
        let original = "Ｘ城\u{200b}管打人㈱";
        assert_eq!(normalize_for_match(original), "x城管打人(株)");
        // Original chars: Ｘ(0) 城(1) ZW(2) 管(3) 打(4) 人(5) ㈱(6), which expands to three.
        assert_eq!(origins(original), vec![0, 1, 3, 4, 5, 6, 6, 6]);
        let mut bytes = Vec::new();
        fold_into(original, &mut |o: Origin, _| {
            bytes.push((o.byte, o.byte_end))
        });
        assert_eq!(&bytes[..3], &[(0, 3), (3, 6), (9, 12)]);
    }

    #[test]
    fn snippet_marks_cuts() {
        assert_eq!(snippet("0123456789", 4, 6, 2), "…234567…");
        assert_eq!(snippet("abc", 0, 3, 5), "abc");
    }
}
