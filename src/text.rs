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

fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{00ad}'
    )
}

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c)
}

/// Characters slipped between Chinese characters to dodge filters (城-管, 城 管, 城/管).
/// Commas and full stops are not among them: they separate clauses, not syllables.
fn is_dodge_separator(c: char) -> bool {
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

/// Whether a non-ASCII BMP character comes out of NFKC and lower-casing as itself (and is not
/// zero-width): a bit per character, computed once from the real conversions.
fn is_stable(c: char) -> bool {
    static TABLE: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut bits = vec![0u64; 0x10000 / 64];
        for u in 0x80u32..0x10000 {
            let Some(c) = char::from_u32(u) else {
                continue;
            };
            let mut nfkc = std::iter::once(c).nfkc();
            let same = nfkc.next() == Some(c) && nfkc.next().is_none();
            let mut lower = c.to_lowercase();
            let lower_same = lower.next() == Some(c) && lower.next().is_none();
            if same && lower_same && !is_zero_width(c) {
                bits[(u / 64) as usize] |= 1 << (u % 64);
            }
        }
        bits
    });
    let u = c as u32;
    u < 0x10000 && table[(u / 64) as usize] & (1 << (u % 64)) != 0
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

/// Feeds normalised characters on, dropping short runs of dodge separators between two
/// Chinese characters. One pass, no intermediate buffer: this is the hot path of matching.
struct Stream<F: FnMut(u32, char)> {
    emit: F,
    t2s: &'static [char],
    last_cjk: bool,
    pending: [(u32, char); 3],
    pending_len: usize,
}

impl<F: FnMut(u32, char)> Stream<F> {
    #[inline]
    fn feed(&mut self, i: u32, c: char) {
        if is_dodge_separator(c) && (self.last_cjk || self.pending_len > 0) {
            if self.pending_len < self.pending.len() {
                self.pending[self.pending_len] = (i, c);
                self.pending_len += 1;
                return;
            }
            // A long run is layout, not a dodge: keep it.
            self.flush();
            (self.emit)(i, c);
            self.last_cjk = false;
            return;
        }
        self.plain(i, c, is_cjk(c));
    }

    /// A character that is not a separator.
    #[inline]
    fn plain(&mut self, i: u32, c: char, cjk: bool) {
        if self.pending_len > 0 {
            if cjk {
                self.pending_len = 0;
            } else {
                self.flush();
            }
        }
        (self.emit)(i, c);
        self.last_cjk = cjk;
    }

    fn flush(&mut self) {
        for k in 0..self.pending_len {
            let (i, c) = self.pending[k];
            (self.emit)(i, c);
        }
        self.pending_len = 0;
    }

    /// The matching form of one original character: NFKC, lower case, simplified,
    /// zero-width removed.
    #[inline]
    fn push(&mut self, i: u32, c: char) {
        if c.is_ascii() {
            self.feed(i, c.to_ascii_lowercase());
        } else if is_cjk(c) {
            // Never a separator: straight to the output.
            self.plain(i, t2s_with(self.t2s, c), true);
        } else if is_stable(c) {
            // Most punctuation and symbols of Chinese text (“”、《》…): unchanged by NFKC and
            // case folding, so spared the general path.
            self.feed(i, c);
        } else if ('\u{ff01}'..='\u{ff5e}').contains(&c) {
            // Full-width ASCII forms (，：！Ａ１): NFKC is a fixed offset; common in Chinese
            // text, so spared the general NFKC path.
            let a = char::from_u32(c as u32 - 0xfee0).unwrap_or(c);
            self.feed(i, a.to_ascii_lowercase());
        } else if !is_zero_width(c) {
            for d in std::iter::once(c).nfkc() {
                for l in d.to_lowercase() {
                    let l = if is_cjk(l) { t2s_with(self.t2s, l) } else { l };
                    self.feed(i, l);
                }
            }
        }
    }
}

/// Runs the normaliser over `original`, calling `emit(original char index, char)`; returns
/// the number of original chars.
fn normalize_with(original: &str, emit: impl FnMut(u32, char)) -> u32 {
    let mut st = Stream {
        emit,
        t2s: t2s_table(),
        last_cjk: false,
        pending: [(0, ' '); 3],
        pending_len: 0,
    };
    let mut count = 0u32;
    for c in original.chars() {
        st.push(count, c);
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
    normalize_with(s, |_, c| out.push(c));
    out
}

/// Every this many normalised characters, [`Normalized`] remembers a byte offset.
const CHECKPOINT: u32 = 32;

/// Normalised text plus the way back to the original's character offsets.
///
/// Matching needs positions only where keywords occur, which is rare, so the map is kept
/// sparse: a byte offset every [`CHECKPOINT`] characters (a lookup counts at most that many
/// characters forward) and the points where normalised and original characters stop lining
/// up one to one (dropped zero-width characters and dodge separators, NFKC expansions).
/// Building it costs next to nothing beyond the normalised text itself.
#[derive(Debug, Default)]
pub struct Normalized {
    pub text: String,
    /// Byte offset in `text` of normalised chars 0, CHECKPOINT, 2·CHECKPOINT, …
    checkpoints: Vec<u32>,
    /// (normalised char index n0, original char index o0): from n0 on, normalised char n
    /// came from original char o0 + (n − n0), until the next entry. Before the first entry
    /// the two line up (n = o).
    shifts: Vec<(u32, u32)>,
    normalized_chars: u32,
    original_chars: u32,
}

impl Normalized {
    pub fn new(original: &str) -> Self {
        let mut text = String::with_capacity(original.len());
        let mut checkpoints = Vec::with_capacity(original.len() / 64 + 1);
        let mut shifts: Vec<(u32, u32)> = Vec::new();
        let mut n = 0u32;
        // The original index normalised char `n` would have if nothing shifted.
        let mut expected = 0u32;
        let count = normalize_with(original, |i, c| {
            if n % CHECKPOINT == 0 {
                checkpoints.push(text.len() as u32);
            }
            if i != expected {
                shifts.push((n, i));
            }
            text.push(c);
            n += 1;
            expected = i + 1;
        });
        Normalized {
            text,
            checkpoints,
            shifts,
            normalized_chars: n,
            original_chars: count,
        }
    }

    /// Normalised character range of normalised bytes `start..end`: distances between
    /// matches are measured here, where inserted zero-width characters and dodge separators
    /// no longer count.
    pub fn normalized_range(&self, start: usize, end: usize) -> (usize, usize) {
        let a = self.char_at(start);
        let b = if end == 0 {
            0
        } else {
            self.char_at(end - 1) + 1
        };
        (a, b.max(a))
    }

    /// Original char range covering normalised bytes `start..end` (an Aho-Corasick match).
    pub fn original_range(&self, start: usize, end: usize) -> (usize, usize) {
        let first = self.char_at(start) as u32;
        let last_char = if end == 0 {
            0
        } else {
            self.char_at(end - 1) as u32
        };
        let from = self.origin(first).unwrap_or(self.original_chars);
        let to = self
            .origin(last_char)
            .map(|o| o + 1)
            .unwrap_or(self.original_chars);
        (from as usize, (to.max(from)) as usize)
    }

    /// Both ranges of an Aho-Corasick match at normalised bytes `start..end` (char
    /// boundaries: the patterns are UTF-8) with one checkpoint lookup: (original from,
    /// original to, normalised from, normalised to).
    pub fn locate(&self, start: usize, end: usize) -> (usize, usize, usize, usize) {
        let a = self.char_at(start);
        let b = a + self.text.get(start..end).map_or(0, |m| m.chars().count());
        let o_from = self.origin(a as u32).unwrap_or(self.original_chars);
        let o_to = match b.checked_sub(1).filter(|_| b > a) {
            Some(last) => self
                .origin(last as u32)
                .map(|o| o + 1)
                .unwrap_or(self.original_chars),
            None => o_from,
        };
        (o_from as usize, o_to.max(o_from) as usize, a, b)
    }

    /// The original char normalised char `n` came from.
    fn origin(&self, n: u32) -> Option<u32> {
        if n >= self.normalized_chars {
            return None;
        }
        let k = self.shifts.partition_point(|(n0, _)| *n0 <= n);
        Some(match k {
            0 => n,
            k => {
                let (n0, o0) = self.shifts[k - 1];
                o0 + (n - n0)
            }
        })
    }

    /// The normalised char that byte `byte` of `text` belongs to.
    fn char_at(&self, byte: usize) -> usize {
        let k = self
            .checkpoints
            .partition_point(|b| (*b as usize) <= byte)
            .saturating_sub(1);
        let from = self.checkpoints.get(k).copied().unwrap_or(0) as usize;
        let mut idx = k * CHECKPOINT as usize;
        let rest = self.text.get(from..).unwrap_or("");
        for (off, _) in rest.char_indices().skip(1) {
            if from + off > byte {
                break;
            }
            idx += 1;
        }
        idx
    }
}

/// `count` chars either side of original chars `from..to`, with ellipses where cut. Walks
/// only as far as the snippet's end: texts can be long and many departments may match.
pub fn snippet(original: &str, from: usize, to: usize, count: usize) -> String {
    snippet_from(original, 0, 0, from, to, count)
}

/// Byte offsets of every [`CHECKPOINT`]-th char of a text, so that many snippets of one long
/// text do not each walk it from the start.
#[derive(Debug, Default)]
pub struct CharIndex {
    checkpoints: Vec<usize>,
}

impl CharIndex {
    pub fn new(s: &str) -> CharIndex {
        CharIndex {
            checkpoints: s
                .char_indices()
                .step_by(CHECKPOINT as usize)
                .map(|(b, _)| b)
                .collect(),
        }
    }

    /// Like [`snippet`], starting from the nearest checkpoint.
    pub fn snippet(&self, original: &str, from: usize, to: usize, count: usize) -> String {
        let start = from.saturating_sub(count);
        let k = (start / CHECKPOINT as usize).min(self.checkpoints.len().saturating_sub(1));
        let byte = self.checkpoints.get(k).copied().unwrap_or(0);
        snippet_from(original, byte, k * CHECKPOINT as usize, from, to, count)
    }
}

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

    #[test]
    fn full_width_forms_are_ascii_by_a_fixed_offset_and_snippets_agree() {
        for u in 0xff01u32..=0xff5e {
            let c = char::from_u32(u).unwrap();
            let nfkc: String = std::iter::once(c).nfkc().collect();
            assert_eq!(nfkc, char::from_u32(u - 0xfee0).unwrap().to_string());
        }
        let text: String = (0..300)
            .map(|k| if k % 7 == 0 { '城' } else { 'a' })
            .collect();
        let index = CharIndex::new(&text);
        for from in [0, 5, 31, 32, 33, 100, 250, 299, 400] {
            assert_eq!(
                index.snippet(&text, from, from + 2, 40),
                snippet(&text, from, from + 2, 40)
            );
        }
    }

    /// The sparse offset map agrees with a dense one (each normalised char's byte offset and
    /// origin recorded) on every character of random mixed text.
    #[test]
    fn sparse_offsets_agree_with_a_dense_map() {
        let pieces = [
            "城", "管", "執", "法", "A", "b", "Ｃ", "ﬁ", "㈱", "\u{200b}", "-", " ", "/", "，",
            "x", "é", "Ⅻ", "ß", "。", "打", "人", "\u{feff}", "·", "9",
        ];
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..500 {
            let len = rng.usize(0..120);
            let s: String = (0..len)
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            let mut dense: Vec<(usize, u32)> = Vec::new();
            let mut text = String::new();
            normalize_with(&s, |i, c| {
                dense.push((text.len(), i));
                text.push(c);
            });
            let n = Normalized::new(&s);
            assert_eq!(n.text, text);
            for (k, (byte, origin)) in dense.iter().enumerate() {
                let end = byte + text[*byte..].chars().next().map_or(0, char::len_utf8);
                assert_eq!(n.normalized_range(*byte, end), (k, k + 1), "{s:?} char {k}");
                assert_eq!(
                    n.original_range(*byte, end),
                    (*origin as usize, *origin as usize + 1),
                    "{s:?} char {k}"
                );
            }
            // Spans of a few characters, as matches are: locate agrees with both ranges.
            for (k, (byte, _)) in dense.iter().enumerate() {
                let last = (k + rng.usize(0..4)).min(dense.len() - 1);
                let end = dense[last].0
                    + text[dense[last].0..]
                        .chars()
                        .next()
                        .map_or(0, char::len_utf8);
                let (of, ot) = n.original_range(*byte, end);
                let (nf, nt) = n.normalized_range(*byte, end);
                assert_eq!(n.locate(*byte, end), (of, ot, nf, nt), "{s:?} {k}..={last}");
                assert_eq!((of, ot), (dense[k].1 as usize, dense[last].1 as usize + 1));
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
        // Clauses stay apart, and Latin words keep their spaces.
        assert_eq!(normalize_for_match("暴雨，内涝"), "暴雨,内涝");
        assert_eq!(normalize_for_match("New York"), "new york");
        let n = Normalized::new("某地城 - 管打人");
        let start = n.text.find("城管").unwrap();
        assert_eq!(n.original_range(start, start + "城管".len()), (2, 7));
    }

    #[test]
    fn maps_offsets_back_to_original_chars() {
        let original = "Ｘ城\u{200b}管打人";
        let n = Normalized::new(original);
        assert_eq!(n.text, "x城管打人");
        let start = n.text.find("城管").unwrap();
        let end = start + "城管".len();
        // Original chars: Ｘ(0) 城(1) ZW(2) 管(3) 打(4) 人(5)
        assert_eq!(n.original_range(start, end), (1, 4));
    }

    #[test]
    fn snippet_marks_cuts() {
        assert_eq!(snippet("0123456789", 4, 6, 2), "…234567…");
        assert_eq!(snippet("abc", 0, 3, 5), "abc");
    }
}
