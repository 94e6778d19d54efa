//! Turning the date strings that feeds and Chinese news/government sites print
//! into UTC instants.
//!
//! This module owns every date heuristic in the crate: RFC 3339/ISO 8601, RFC
//! 2822 and the sloppy variants RSS generators emit, Weibo's `created_at`,
//! Chinese `年月日` forms, year-less and relative forms (`昨天 10:20`,
//! `5分钟前`), and Unix timestamps. Keeping them in one place means a source
//! that prints something odd is fixed once, here, with a test.
//!
//! The parser is a hand-written scanner rather than a pile of regexes: it is
//! faster, it lets a label prefix (`发布时间：`) or trailing junk be skipped
//! without a pattern per site, and every step is checked so no input can make
//! it panic.

use std::borrow::Cow;

use chrono::format::ParseErrorKind;
use chrono::{
    DateTime, Datelike, Days, FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, NaiveTime,
    Offset, SecondsFormat, TimeDelta, TimeZone, Utc,
};
use chrono_tz::{GapInfo, Tz};

/// Parses `s` as a point in time. `now` is the reference for relative forms ("5分钟前", "昨天 10:20", "03-05" = this year, or last year if that would be more than 1 day in the future). `tz` is the zone for forms without an offset. `format` is an optional chrono strftime pattern tried first (per-source `date_format`), interpreted in `tz` unless it contains an offset.
pub fn parse_date(
    s: &str,
    now: DateTime<Utc>,
    tz: Tz,
    format: Option<&str>,
) -> Option<DateTime<Utc>> {
    let folded = fold_width(s);
    let s = folded.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(fmt) = format {
        // A per-source pattern is the operator's explicit knowledge of the
        // site, so it wins; if the site changes its format we still want the
        // heuristics below rather than losing the date.
        if let Some(t) = parse_with_format(s, &fold_width(fmt), tz) {
            return Some(t);
        }
    }
    if let Some(t) = unix_timestamp(s) {
        return Some(t);
    }
    scan(s, &Ctx::new(now, tz))
}

/// Formats a time in the canonical form this module also parses (RFC 3339 with seconds and `Z`/offset) — used for the round-trip property test.
pub fn format_rfc3339(t: DateTime<Utc>) -> String {
    // AutoSi keeps sub-second precision when there is some, so the round trip
    // is exact for every instant, not just whole seconds.
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Folds the full-width ASCII block and the ideographic space, as Chinese
/// pages often type dates with an IME left in full-width mode. Borrows when
/// there is nothing to fold, which is the common case.
fn fold_width(s: &str) -> Cow<'_, str> {
    let needs = |c: char| matches!(c, '\u{FF01}'..='\u{FF5E}' | '\u{3000}');
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| match c {
                '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
                '\u{3000}' => ' ',
                _ => c,
            })
            .collect(),
    )
}

fn parse_with_format(s: &str, fmt: &str, tz: Tz) -> Option<DateTime<Utc>> {
    // chrono also reads `%s` without an offset as UTC here.
    match DateTime::parse_from_str(s, fmt) {
        Ok(t) => return Some(t.with_timezone(&Utc)),
        Err(e) if e.kind() == ParseErrorKind::NotEnough => {}
        // Only a missing offset justifies the naive retry: on any other error
        // (say, out of range once the offset is applied) it would either fail
        // the same way or succeed with the printed offset silently dropped.
        Err(_) => return None,
    }
    match NaiveDateTime::parse_from_str(s, fmt) {
        Ok(n) => localize(n, tz),
        Err(e) if e.kind() == ParseErrorKind::NotEnough => localize(
            NaiveDate::parse_from_str(s, fmt)
                .ok()?
                .and_time(NaiveTime::MIN),
            tz,
        ),
        Err(_) => None,
    }
}

/// Seconds before 2000 or from 2100 on are far more likely to be an id, a
/// count or a phone-number fragment than a publication time.
const PLAUSIBLE_SECS: std::ops::Range<i64> = 946_684_800..4_102_444_800;

fn unix_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if !(9..=14).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // At most 14 digits, so this cannot overflow an i64.
    let n: i64 = s.parse().ok()?;
    let t = if s.len() <= 11 {
        DateTime::from_timestamp(n, 0)?
    } else {
        DateTime::from_timestamp_millis(n)?
    };
    PLAUSIBLE_SECS.contains(&t.timestamp()).then_some(t)
}

struct Ctx {
    now: DateTime<Utc>,
    tz: Tz,
    /// `None` only when `now` is so close to chrono's limits that the local
    /// wall clock is unrepresentable; relative-day forms then fail instead of
    /// panicking.
    now_local: Option<NaiveDateTime>,
}

impl Ctx {
    fn new(now: DateTime<Utc>, tz: Tz) -> Self {
        let utc = now.naive_utc();
        let off = tz.offset_from_utc_datetime(&utc).fix();
        Ctx {
            now,
            tz,
            now_local: utc.checked_add_offset(off),
        }
    }
}

/// Picks candidate starting points and returns the first that parses, which
/// is how label prefixes (`发布时间：`), brackets and weekday names in front of
/// a date get skipped without knowing every site's wording.
fn scan(s: &str, ctx: &Ctx) -> Option<DateTime<Utc>> {
    let mut prev: Option<char> = None;
    let mut prev2: Option<char> = None;
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    for (i, ch) in s.char_indices() {
        let candidate = if ch.is_ascii_digit() {
            // Never start inside a number or in the middle of a date: after a
            // rejected `2024-02-30` the `02-30` must not be retried as a
            // year-less date, nor `2月29日` out of an invalid `2023年2月29日`.
            // A separator only counts when a digit precedes it, so the colon
            // ending a label (`发布时间:2024-…`) still lets the date start.
            !(digit(prev)
                || matches!(prev, Some('年' | '月' | '+'))
                || (matches!(prev, Some('-' | '/' | '.' | ':')) && digit(prev2)))
        } else if ch.is_ascii_alphabetic() {
            !prev.is_some_and(|p| p.is_ascii_alphanumeric())
        } else {
            matches!(ch, '刚' | '剛' | '今' | '昨' | '前' | '半')
        };
        if candidate {
            if let Some(t) = parse_at(Cur { s, i }, ctx) {
                return Some(t);
            }
        }
        prev2 = prev;
        prev = Some(ch);
    }
    None
}

fn parse_at(c: Cur<'_>, ctx: &Ctx) -> Option<DateTime<Utc>> {
    match c.peek() {
        Some(b) if b.is_ascii_digit() => ymd(&mut { c }, ctx)
            .or_else(|| day_month_year(&mut { c }, ctx))
            .or_else(|| month_day(&mut { c }, ctx))
            .or_else(|| ago(&mut { c }, ctx)),
        Some(b) if b.is_ascii_alphabetic() => english(&mut { c }, ctx),
        _ => relative_word(&mut { c }, ctx),
    }
}

/// A byte cursor over `s`. It only ever advances over ASCII bytes or whole
/// matched literals, so `i` always sits on a char boundary.
#[derive(Clone, Copy)]
struct Cur<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cur<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.as_bytes().get(self.i.checked_add(k)?).copied()
    }

    fn digit_follows(&self, k: usize) -> bool {
        self.peek_at(k).is_some_and(|b| b.is_ascii_digit())
    }

    fn eat(&mut self, lit: &str) -> bool {
        let hit = self.rest().starts_with(lit);
        if hit {
            self.i += lit.len();
        }
        hit
    }

    fn eat_any(&mut self, lits: &[&str]) -> bool {
        lits.iter().any(|l| self.eat(l))
    }

    /// ASCII case-insensitive, and only as a whole word so `Mar` does not
    /// match the start of `Marketing` nor `Z` the start of `Zhang`.
    fn eat_word(&mut self, word: &str) -> bool {
        let rest = self.rest().as_bytes();
        let hit = rest
            .get(..word.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(word.as_bytes()))
            && !rest
                .get(word.len())
                .is_some_and(|b| b.is_ascii_alphabetic());
        if hit {
            self.i += word.len();
        }
        hit
    }

    /// Any Unicode whitespace: scraped pages are full of NBSP and U+3000.
    fn ws(&mut self) -> bool {
        let rest = self.rest();
        let skipped = rest.len() - rest.trim_start().len();
        self.i += skipped;
        skipped > 0
    }

    fn digit_run(&self) -> usize {
        self.rest().bytes().take_while(u8::is_ascii_digit).count()
    }

    /// Reads a maximal digit run of `min..=max` digits (`max` ≤ 9, so it fits
    /// a u32). Taking the whole run rather than a prefix is what rejects
    /// `2024-03-051` instead of reading day 05 and ignoring the 1.
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let run = self.digit_run();
        if run < min || run > max {
            return None;
        }
        let v = self.rest().bytes().take(run).fold(0u32, |acc, b| {
            acc.saturating_mul(10).saturating_add(u32::from(b - b'0'))
        });
        self.i += run;
        Some(v)
    }
}

/// Whether a match may end here. Letters, digits, or a separator followed by
/// either mean we stopped inside something longer (`2024-03-05-1`,
/// `03-05-2024`, `10:20:00.Z`), and accepting a prefix of it would invent a
/// date or drop a zone we failed to read.
fn at_boundary(c: &Cur<'_>) -> bool {
    match c.peek() {
        None => true,
        Some(b) if b.is_ascii_alphanumeric() => false,
        Some(b'-' | b'/' | b'.' | b':' | b'+') => {
            !c.peek_at(1).is_some_and(|b| b.is_ascii_alphanumeric())
        }
        Some(_) => true,
    }
}

/// Marker for text that is unmistakably a time or offset but an impossible
/// one (`25:00`, `+08:99`). It sinks the whole candidate so the parser
/// returns `None` rather than quietly falling back to a date-only value.
struct Bad;

enum Meridiem {
    Am,
    Pm,
}

fn meridiem_prefix(c: &mut Cur<'_>) -> Option<Meridiem> {
    if c.eat_any(&["上午", "凌晨", "早上", "早晨"]) {
        Some(Meridiem::Am)
    } else if c.eat_any(&["下午", "晚上", "傍晚"]) {
        Some(Meridiem::Pm)
    } else {
        None
    }
}

fn meridiem_suffix(c: &mut Cur<'_>) -> Option<Meridiem> {
    let start = *c;
    c.ws();
    if c.eat_word("am") || c.eat_word("a.m.") {
        Some(Meridiem::Am)
    } else if c.eat_word("pm") || c.eat_word("p.m.") {
        Some(Meridiem::Pm)
    } else {
        *c = start;
        None
    }
}

/// `HH:MM[:SS[.frac]]` or `HH时MM分[SS秒]`, with an optional 上午/下午 or AM/PM.
/// `Ok(None)` leaves the cursor where it was.
fn time(c: &mut Cur<'_>) -> Result<Option<NaiveTime>, Bad> {
    let start = *c;
    let pre = meridiem_prefix(c);
    if pre.is_some() {
        c.ws();
    }
    let Some(h) = c.digits(1, 2) else {
        *c = start;
        return Ok(None);
    };
    let (m, s, nano);
    if c.eat(":") {
        m = c.digits(2, 2).ok_or(Bad)?;
        // A colon with no digit after is punctuation before trailing text.
        if c.peek() == Some(b':') && c.digit_follows(1) {
            c.i += 1;
            s = c.digits(2, 2).ok_or(Bad)?;
            nano = fraction(c);
        } else {
            (s, nano) = (0, 0);
        }
    } else if c.eat_any(&["时", "時", "点", "點"]) {
        match c.digits(1, 2) {
            Some(mm) => {
                m = mm;
                c.eat("分");
                s = match c.digits(1, 2) {
                    Some(ss) => {
                        c.eat("秒");
                        ss
                    }
                    None => 0,
                };
            }
            None => (m, s) = (0, 0),
        }
        nano = 0;
    } else {
        // A bare number after a date (`2024-03-05 3 条评论`) is not a time.
        *c = start;
        return Ok(None);
    }
    let h = match pre.or_else(|| meridiem_suffix(c)) {
        None => h,
        Some(Meridiem::Am) if h == 12 => 0,
        Some(Meridiem::Am) if h < 12 => h,
        // Some sites write 下午15:00; the 24-hour reading is unambiguous.
        Some(Meridiem::Pm) if (1..12).contains(&h) => h + 12,
        Some(Meridiem::Pm) if (12..24).contains(&h) => h,
        Some(_) => return Err(Bad),
    };
    let t = if s == 60 {
        // RFC 3339 allows a leap second; chrono spells it as :59 + 1s of nanos.
        NaiveTime::from_hms_nano_opt(h, m, 59, 1_000_000_000 + nano)
    } else {
        NaiveTime::from_hms_nano_opt(h, m, s, nano)
    };
    t.map(Some).ok_or(Bad)
}

/// Fractional seconds; digits past nanoseconds are read and dropped because
/// some generators print more precision than they have.
fn fraction(c: &mut Cur<'_>) -> u32 {
    if !(matches!(c.peek(), Some(b'.' | b',')) && c.digit_follows(1)) {
        return 0;
    }
    c.i += 1;
    let run = c.digit_run();
    let mut nano = 0u32;
    for k in 0..9 {
        let d = match c.peek_at(k) {
            Some(b) if k < run => u32::from(b - b'0'),
            _ => 0,
        };
        nano = nano * 10 + d;
    }
    c.i += run;
    nano
}

/// `+08`, `+8`, `+0800`, `+08:00`, `+800`. The caller has checked that a
/// digit follows the sign.
fn numeric_offset(c: &mut Cur<'_>) -> Option<FixedOffset> {
    let sign = match c.peek()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    c.i += 1;
    let (h, m) = match c.digit_run() {
        1 | 2 => {
            let h = c.digits(1, 2)?;
            let m = if c.peek() == Some(b':') && c.digit_follows(1) {
                c.i += 1;
                c.digits(2, 2)?
            } else {
                0
            };
            (h, m)
        }
        3 | 4 => {
            let v = c.digits(3, 4)?;
            (v / 100, v % 100)
        }
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    // h ≤ 23 and m ≤ 59 keep this far inside i32 and inside FixedOffset's range.
    FixedOffset::east_opt(sign * (h * 3600 + m * 60) as i32)
}

/// RFC 822 zone names, honoured only in RFC 2822 dates. "CST" is deliberately
/// absent: RFC 822 says US Central, but the feeds this daemon reads are
/// overwhelmingly Chinese generators meaning China Standard Time, so CST
/// falls back to the source's `tz` (which is US Central for a deployment set
/// to America/Chicago). Everywhere else zone abbreviations are not read at all.
const NAMED_ZONES: [(&str, i32); 7] = [
    ("EST", -5),
    ("EDT", -4),
    ("CDT", -5),
    ("MST", -7),
    ("MDT", -6),
    ("PST", -8),
    ("PDT", -7),
];

/// An optional zone after a time. Unrecognised words are left alone for the
/// caller to treat as trailing text, which means the local zone `tz` applies.
fn zone(c: &mut Cur<'_>, named: bool) -> Result<Option<FixedOffset>, Bad> {
    let start = *c;
    c.ws();
    let utc = FixedOffset::east_opt(0);
    if matches!(c.peek(), Some(b'+' | b'-')) {
        if c.digit_follows(1) {
            return numeric_offset(c).map(Some).ok_or(Bad);
        }
        *c = start;
        return Ok(None);
    }
    if c.eat_word("Z") {
        return Ok(utc);
    }
    for name in ["UTC", "GMT", "UT"] {
        let mut probe = *c;
        let rest = probe.rest().as_bytes();
        if !rest
            .get(..name.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(name.as_bytes()))
        {
            continue;
        }
        probe.i += name.len();
        // `GMT+0800` as JavaScript's Date prints it, `UTC+8` as people type it.
        match probe.peek() {
            Some(b'+' | b'-') if probe.digit_follows(1) => {
                let off = numeric_offset(&mut probe).ok_or(Bad)?;
                *c = probe;
                return Ok(Some(off));
            }
            Some(b) if b.is_ascii_alphabetic() => continue,
            _ => {
                *c = probe;
                return Ok(utc);
            }
        }
    }
    if named {
        for (name, hours) in NAMED_ZONES {
            if c.eat_word(name) {
                return Ok(FixedOffset::east_opt(hours * 3600));
            }
        }
    }
    *c = start;
    Ok(None)
}

/// Interprets a wall-clock time in `tz`. Ambiguous times (the repeated hour
/// when clocks go back) take the earlier instant; times inside a spring-
/// forward gap are read with the offset in force before the gap, so `02:30`
/// becomes `03:30` new time — the same choice as JavaScript's Temporal
/// "compatible" mode. Dropping the date would be worse than an hour's skew.
fn localize(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        MappedLocalTime::Single(t) => Some(t.with_timezone(&Utc)),
        MappedLocalTime::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        MappedLocalTime::None => {
            let (_, before) = GapInfo::new(&naive, &tz)?.begin?;
            Some(naive.checked_sub_offset(before.fix())?.and_utc())
        }
    }
}

fn resolve(naive: NaiveDateTime, off: Option<FixedOffset>, tz: Tz) -> Option<DateTime<Utc>> {
    match off {
        Some(o) => Some(naive.checked_sub_offset(o)?.and_utc()),
        None => localize(naive, tz),
    }
}

/// Chinese pages often put the weekday between date and time
/// (`2024年3月5日 星期二 10:20`); skipping it keeps the time.
fn skip_cn_weekday(c: &mut Cur<'_>) {
    let start = *c;
    c.ws();
    let paren = c.eat("(");
    let ok = c.eat_any(&["星期", "礼拜", "禮拜", "周", "週"])
        && c.eat_any(&["一", "二", "三", "四", "五", "六", "日", "天"])
        && (!paren || c.eat(")"));
    if !ok {
        *c = start;
    }
}

/// What may follow a numeric or relative date: an optional time (after `T`,
/// whitespace, or nothing as in `2024年03月05日10:20`), an optional offset,
/// then a clean end.
fn date_tail(c: &mut Cur<'_>) -> Option<(NaiveTime, Option<FixedOffset>)> {
    let start = *c;
    let time = if matches!(c.peek(), Some(b'T' | b't')) && c.digit_follows(1) {
        c.i += 1;
        // `T` promises a time; no time after it is malformed, not date-only.
        Some(time(c).ok()??)
    } else {
        skip_cn_weekday(c);
        c.ws();
        time(c).ok()?
    };
    match time {
        Some(t) => {
            let off = zone(c, false).ok()?;
            at_boundary(c).then_some((t, off))
        }
        None => {
            *c = start;
            at_boundary(c).then_some((NaiveTime::MIN, None))
        }
    }
}

/// `2024-03-05`, `2024/3/5`, `2024.03.05`, `2024年3月5日`, each with optional
/// time and offset.
fn ymd(c: &mut Cur<'_>, ctx: &Ctx) -> Option<DateTime<Utc>> {
    let y = c.digits(4, 4)?;
    let before_sep = *c;
    c.ws();
    let sep = if c.eat("年") {
        c.ws();
        None
    } else {
        *c = before_sep;
        let b = c.peek().filter(|b| matches!(b, b'-' | b'/' | b'.'))?;
        c.i += 1;
        Some(b)
    };
    let m = c.digits(1, 2)?;
    match sep {
        Some(b) => {
            if c.peek() != Some(b) {
                return None;
            }
            c.i += 1;
        }
        None => {
            c.ws();
            if !c.eat("月") {
                return None;
            }
            c.ws();
        }
    }
    let d = c.digits(1, 2)?;
    if sep.is_none() {
        c.eat_any(&["日", "号", "號"]);
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
    let (t, off) = date_tail(c)?;
    resolve(date.and_time(t), off, ctx.tz)
}

/// `03-05`, `3-5 10:20`, `03月05日`, `3月5日 10:20`: the current year in `tz`,
/// unless that lands more than a day after `now` — then it must be last
/// year's item (a December post read in January). The day of slack absorbs
/// clock and zone skew between us and the site.
fn month_day(c: &mut Cur<'_>, ctx: &Ctx) -> Option<DateTime<Utc>> {
    let m = c.digits(1, 2)?;
    let cjk = if c.eat("-") {
        false
    } else if c.eat("月") {
        true
    } else {
        return None;
    };
    let d = c.digits(1, 2)?;
    if cjk {
        c.eat_any(&["日", "号", "號"]);
    }
    let (t, off) = date_tail(c)?;
    let year = ctx.now_local?.year();
    let at = |y: i32| {
        NaiveDate::from_ymd_opt(y, m, d).and_then(|date| resolve(date.and_time(t), off, ctx.tz))
    };
    let limit = ctx.now.checked_add_signed(TimeDelta::days(1));
    match at(year) {
        Some(this) if limit.is_some_and(|l| this <= l) => Some(this),
        // Also reached when this year has no such day (02-29): last year is
        // the only reading left.
        _ => at(year.checked_sub(1)?),
    }
}

/// `N秒前`, `N分钟前`, `N小时前`, `N天前`. `N天前` is exact (now − N×24h) like
/// the others, since sites compute it from the same elapsed time.
fn ago(c: &mut Cur<'_>, ctx: &Ctx) -> Option<DateTime<Utc>> {
    let run = c.digit_run();
    // Twelve digits cannot overflow an i64; anything longer is not an age.
    if run == 0 || run > 12 {
        return None;
    }
    let n: i64 = c.rest().get(..run)?.parse().ok()?;
    c.i += run;
    c.ws();
    let unit: i64 = if c.eat_any(&["秒钟", "秒鐘", "秒"]) {
        1
    } else if c.eat_any(&["分钟", "分鐘", "分"]) {
        60
    } else if c.eat_any(&["个小时", "個小時", "小时", "小時"]) {
        3600
    } else if c.eat_any(&["天", "日"]) {
        86_400
    } else {
        return None;
    };
    c.ws();
    if !c.eat("前") || !at_boundary(c) {
        return None;
    }
    let delta = TimeDelta::try_seconds(n.checked_mul(unit)?)?;
    ctx.now.checked_sub_signed(delta)
}

/// `刚刚`, `半小时前`, and `今天`/`昨天`/`前天` with an optional time. A bare
/// day means local midnight, the start of the only span we know it is in.
fn relative_word(c: &mut Cur<'_>, ctx: &Ctx) -> Option<DateTime<Utc>> {
    if c.eat_any(&["刚刚", "剛剛", "刚才", "剛才"]) {
        return at_boundary(c).then_some(ctx.now);
    }
    if c.eat_any(&["半小时前", "半个小时前", "半小時前", "半個小時前"]) {
        return if at_boundary(c) {
            ctx.now.checked_sub_signed(TimeDelta::minutes(30))
        } else {
            None
        };
    }
    let back = if c.eat("今天") {
        0
    } else if c.eat("昨天") {
        1
    } else if c.eat("前天") {
        2
    } else {
        return None;
    };
    let date = ctx.now_local?.date().checked_sub_days(Days::new(back))?;
    let (t, off) = date_tail(c)?;
    resolve(date.and_time(t), off, ctx.tz)
}

const MONTHS: [(&str, &str); 12] = [
    ("january", "jan"),
    ("february", "feb"),
    ("march", "mar"),
    ("april", "apr"),
    ("may", "may"),
    ("june", "jun"),
    ("july", "jul"),
    ("august", "aug"),
    ("september", "sep"),
    ("october", "oct"),
    ("november", "nov"),
    ("december", "dec"),
];

fn month_name(c: &mut Cur<'_>) -> Option<u32> {
    let m = (1u32..)
        .zip(MONTHS)
        .find(|&(_, (full, abbr))| c.eat_word(full) || c.eat_word(abbr))
        .map(|(m, _)| m)
        .or_else(|| c.eat_word("sept").then_some(9))?;
    c.eat(".");
    Some(m)
}

/// Weekdays are skipped, never checked: feeds routinely print the wrong one
/// and the date is what we need.
fn skip_weekday(c: &mut Cur<'_>) -> bool {
    const DAYS: [&str; 11] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "tues",
        "thurs",
        "thur",
        "wed",
    ];
    const ABBR: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let hit = DAYS.iter().chain(ABBR.iter()).any(|d| c.eat_word(d));
    if hit {
        c.eat(".");
        c.ws();
        c.eat(",");
        c.ws();
    }
    hit
}

/// Forms that start with an English word: RFC 2822 with a weekday, Weibo's
/// `Tue Mar 05 10:00:00 +0800 2024`, asctime, JavaScript's
/// `Tue Mar 05 2024 10:20:00 GMT+0800 (…)`, and `March 5, 2024`.
fn english(c: &mut Cur<'_>, ctx: &Ctx) -> Option<DateTime<Utc>> {
    skip_weekday(c);
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        day_month_year(c, ctx)
    } else {
        month_first(c, ctx)
    }
}

/// RFC 2822 minus the weekday: `5 Mar 2024 10:20[:00] [zone] [junk]`, also
/// with `-` between the parts. Two- and three-digit years follow RFC 2822's
/// obsolete-syntax rules since old feeds still emit them.
fn day_month_year(c: &mut Cur<'_>, ctx: &Ctx) -> Option<DateTime<Utc>> {
    let d = c.digits(1, 2)?;
    if !(c.ws() || c.eat("-")) {
        return None;
    }
    let m = month_name(c)?;
    c.eat(",");
    if !(c.ws() || c.eat("-")) {
        return None;
    }
    let run = c.digit_run();
    let y = c.digits(2, 4)?;
    let y = match run {
        2 if y < 50 => y + 2000,
        2 | 3 => y + 1900,
        _ => y,
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
    english_tail(c, date, ctx, true)
}

/// Time and zone after an English-style date. Anything after the zone is
/// ignored: RSS generators append comments, zone names and worse. `named`
/// says whether RFC 822 zone names count (see [`NAMED_ZONES`]).
fn english_tail(c: &mut Cur<'_>, date: NaiveDate, ctx: &Ctx, named: bool) -> Option<DateTime<Utc>> {
    let start = *c;
    c.ws();
    c.eat(",");
    c.ws();
    match time(c).ok()? {
        Some(t) => {
            let off = zone(c, named).ok()?;
            resolve(date.and_time(t), off, ctx.tz)
        }
        None => {
            *c = start;
            localize(date.and_time(NaiveTime::MIN), ctx.tz)
        }
    }
}

fn month_first(c: &mut Cur<'_>, ctx: &Ctx) -> Option<DateTime<Utc>> {
    let m = month_name(c)?;
    c.ws();
    let d = c.digits(1, 2)?;
    // `March 5th, 2024`
    let _ = ["st", "nd", "rd", "th"].iter().any(|s| c.eat_word(s));
    c.eat(",");
    if !c.ws() {
        return None;
    }
    match time(c).ok()? {
        // Weibo / asctime / Java: the year comes last, after the time and zone.
        Some(t) => {
            let off = zone(c, false).ok()?;
            c.ws();
            if off.is_none() {
                // Java's `Date.toString()` prints the server's zone as an
                // abbreviation ("CST" on Chinese servers); it is the site's
                // local zone, i.e. `tz`.
                let word = c.rest().bytes().take_while(u8::is_ascii_alphabetic).count();
                if (2..=5).contains(&word) {
                    c.i += word;
                    c.ws();
                }
            }
            let y = c.digits(4, 4)?;
            let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
            resolve(date.and_time(t), off, ctx.tz)
        }
        None => {
            let y = c.digits(4, 4)?;
            let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
            english_tail(c, date, ctx, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;
    use chrono_tz::Asia::Shanghai;
    use proptest::prelude::*;

    /// 2024-03-06 10:00 in Shanghai.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 6, 2, 0, 0).unwrap()
    }

    /// Parses with the fixed `now` in Shanghai and renders the result, so
    /// expectations read as plain UTC timestamps.
    fn p(s: &str) -> Option<String> {
        parse_date(s, now(), Shanghai, None).map(format_rfc3339)
    }

    fn p_fmt(s: &str, fmt: &str) -> Option<String> {
        parse_date(s, now(), Shanghai, Some(fmt)).map(format_rfc3339)
    }

    fn p_tz(s: &str, tz: Tz) -> Option<String> {
        parse_date(s, now(), tz, None).map(format_rfc3339)
    }

    fn p_at(s: &str, now: DateTime<Utc>) -> Option<String> {
        parse_date(s, now, Shanghai, None).map(format_rfc3339)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    const MIDNIGHT_0305: &str = "2024-03-04T16:00:00Z";
    const T_0305_1020: &str = "2024-03-05T02:20:00Z";

    #[test]
    fn rfc3339_with_offset() {
        assert_eq!(p("2024-03-05T10:20:00+08:00"), some(T_0305_1020));
        assert_eq!(p("2024-03-05T10:20:00-05:00"), some("2024-03-05T15:20:00Z"));
    }

    #[test]
    fn rfc3339_zulu_and_lowercase() {
        assert_eq!(p("2024-03-05T10:20:00Z"), some("2024-03-05T10:20:00Z"));
        assert_eq!(p("2024-03-05t10:20:00z"), some("2024-03-05T10:20:00Z"));
    }

    #[test]
    fn iso_without_offset_uses_tz() {
        assert_eq!(p("2024-03-05T10:20:00"), some(T_0305_1020));
        assert_eq!(p("2024-03-05 10:20:00"), some(T_0305_1020));
        assert_eq!(p("2024-03-05 10:20"), some(T_0305_1020));
    }

    #[test]
    fn iso_space_separator_with_offset() {
        assert_eq!(p("2024-03-05 10:20:00+08:00"), some(T_0305_1020));
        assert_eq!(p("2024-03-05 10:20:00 +0800"), some(T_0305_1020));
        assert_eq!(p("2024-03-05 10:20:00 UTC"), some("2024-03-05T10:20:00Z"));
        assert_eq!(p("2024-03-05 10:20:00 GMT+8"), some(T_0305_1020));
    }

    #[test]
    fn iso_fractional_seconds() {
        assert_eq!(
            p("2024-03-05T10:20:00.123456+08:00"),
            some("2024-03-05T02:20:00.123456Z")
        );
        assert_eq!(
            p("2024-03-05T10:20:00,5Z"),
            some("2024-03-05T10:20:00.500Z")
        );
        // Beyond nanoseconds the extra digits are dropped, not rejected.
        assert_eq!(
            p("2024-03-05T10:20:00.1234567891234Z"),
            some("2024-03-05T10:20:00.123456789Z")
        );
    }

    #[test]
    fn iso_offset_without_colon_or_minutes() {
        assert_eq!(p("2024-03-05T10:20:00+0800"), some(T_0305_1020));
        assert_eq!(p("2024-03-05T10:20:00+08"), some(T_0305_1020));
        assert_eq!(p("2024-03-05T10:20:00+05:30"), some("2024-03-05T04:50:00Z"));
    }

    #[test]
    fn iso_leap_second() {
        assert_eq!(
            p("2016-12-31T23:59:60Z").map(|s| s.starts_with("2016-12-31T23:59:60")),
            Some(true)
        );
    }

    #[test]
    fn rfc2822_canonical() {
        assert_eq!(p("Tue, 05 Mar 2024 10:20:00 +0800"), some(T_0305_1020));
    }

    #[test]
    fn rfc2822_missing_weekday() {
        assert_eq!(p("05 Mar 2024 10:20:00 +0800"), some(T_0305_1020));
    }

    #[test]
    fn rfc2822_wrong_weekday_is_ignored() {
        assert_eq!(p("Sun, 05 Mar 2024 10:20:00 +0800"), some(T_0305_1020));
        assert_eq!(p("Sunday, 05 Mar 2024 10:20:00 +0800"), some(T_0305_1020));
    }

    #[test]
    fn rfc2822_single_digit_day_and_full_month() {
        assert_eq!(p("Tue, 5 Mar 2024 10:20:00 +0800"), some(T_0305_1020));
        assert_eq!(p("Tue, 5 March 2024 10:20:00 +0800"), some(T_0305_1020));
    }

    #[test]
    fn rfc2822_zone_names() {
        let cases = [
            ("GMT", "2024-03-05T10:20:00Z"),
            ("UTC", "2024-03-05T10:20:00Z"),
            ("UT", "2024-03-05T10:20:00Z"),
            ("Z", "2024-03-05T10:20:00Z"),
            ("EST", "2024-03-05T15:20:00Z"),
            ("EDT", "2024-03-05T14:20:00Z"),
            // CST from a Chinese generator means China: the source's tz applies.
            ("CST", "2024-03-05T02:20:00Z"),
            ("CDT", "2024-03-05T15:20:00Z"),
            ("MST", "2024-03-05T17:20:00Z"),
            ("MDT", "2024-03-05T16:20:00Z"),
            ("PST", "2024-03-05T18:20:00Z"),
            ("PDT", "2024-03-05T17:20:00Z"),
        ];
        for (zone, want) in cases {
            assert_eq!(
                p(&format!("Tue, 05 Mar 2024 10:20:00 {zone}")),
                some(want),
                "{zone}"
            );
        }
    }

    #[test]
    fn rfc2822_colon_offset() {
        assert_eq!(p("Tue, 05 Mar 2024 10:20:00 +08:00"), some(T_0305_1020));
    }

    #[test]
    fn rfc2822_missing_seconds() {
        assert_eq!(p("Tue, 05 Mar 2024 10:20 +0800"), some(T_0305_1020));
    }

    #[test]
    fn rfc2822_trailing_junk_after_zone() {
        assert_eq!(
            p("Tue, 05 Mar 2024 10:20:00 +0800 (CST)"),
            some(T_0305_1020)
        );
        assert_eq!(p("Tue, 05 Mar 2024 10:20:00 GMT+0800"), some(T_0305_1020));
        assert_eq!(p("Tue, 05 Mar 2024 10:20:00 GMTjunk"), some(T_0305_1020));
    }

    #[test]
    fn rfc2822_missing_or_unknown_zone_uses_tz() {
        assert_eq!(p("Tue, 05 Mar 2024 10:20:00"), some(T_0305_1020));
        assert_eq!(p("Tue, 05 Mar 2024 10:20:00 HKT"), some(T_0305_1020));
    }

    #[test]
    fn rfc2822_two_digit_year() {
        assert_eq!(p("Tue, 05 Mar 24 10:20:00 +0800"), some(T_0305_1020));
        assert_eq!(
            p("Fri, 05 Mar 99 10:20:00 +0000"),
            some("1999-03-05T10:20:00Z")
        );
    }

    #[test]
    fn weibo_created_at() {
        assert_eq!(
            p("Tue Mar 05 10:00:00 +0800 2024"),
            some("2024-03-05T02:00:00Z")
        );
    }

    #[test]
    fn java_date_to_string_zone_abbreviation_means_tz() {
        assert_eq!(p("Tue Mar 05 10:20:00 CST 2024"), some(T_0305_1020));
        assert_eq!(
            p("Tue Mar 05 10:20:00 GMT 2024"),
            some("2024-03-05T10:20:00Z")
        );
    }

    #[test]
    fn asctime_and_javascript_date() {
        assert_eq!(p("Tue Mar  5 10:20:00 2024"), some(T_0305_1020));
        assert_eq!(
            p("Tue Mar 05 2024 10:20:00 GMT+0800 (中国标准时间)"),
            some(T_0305_1020)
        );
    }

    #[test]
    fn english_month_first() {
        assert_eq!(p("March 5, 2024"), some(MIDNIGHT_0305));
        assert_eq!(p("Mar. 5th, 2024 10:20 AM"), some(T_0305_1020));
        assert_eq!(
            p("Published: March 5, 2024 3:20 PM"),
            some("2024-03-05T07:20:00Z")
        );
    }

    #[test]
    fn date_dashes() {
        assert_eq!(p("2024-03-05"), some(MIDNIGHT_0305));
    }

    #[test]
    fn date_dashes_single_digits() {
        assert_eq!(p("2024-3-5"), some(MIDNIGHT_0305));
    }

    #[test]
    fn date_slashes_with_minutes() {
        assert_eq!(p("2024/3/5 10:20"), some(T_0305_1020));
    }

    #[test]
    fn date_slashes_with_seconds() {
        assert_eq!(p("2024/03/05 10:20:30"), some("2024-03-05T02:20:30Z"));
    }

    #[test]
    fn date_dots() {
        assert_eq!(p("2024.03.05"), some(MIDNIGHT_0305));
    }

    #[test]
    fn chinese_date() {
        assert_eq!(p("2024年3月5日"), some(MIDNIGHT_0305));
        assert_eq!(p("2024 年 3 月 5 日"), some(MIDNIGHT_0305));
    }

    #[test]
    fn chinese_date_with_time() {
        assert_eq!(p("2024年3月5日 10:20"), some(T_0305_1020));
    }

    #[test]
    fn chinese_date_glued_time_with_seconds() {
        assert_eq!(p("2024年03月05日10:20:30"), some("2024-03-05T02:20:30Z"));
    }

    #[test]
    fn chinese_time_units() {
        assert_eq!(p("2024年03月05日 10时20分"), some(T_0305_1020));
        assert_eq!(
            p("2024年03月05日 10点20分30秒"),
            some("2024-03-05T02:20:30Z")
        );
    }

    #[test]
    fn chinese_meridiem() {
        assert_eq!(p("2024年3月5日 上午10:20"), some(T_0305_1020));
        assert_eq!(p("2024年3月5日 下午3:20"), some("2024-03-05T07:20:00Z"));
        assert_eq!(p("2024年3月5日下午3:20"), some("2024-03-05T07:20:00Z"));
        assert_eq!(p("2024年3月5日 上午12:05"), some("2024-03-04T16:05:00Z"));
        assert_eq!(p("2024年3月5日 下午12:05"), some("2024-03-05T04:05:00Z"));
        assert_eq!(p("2024年3月5日 下午15:20"), some("2024-03-05T07:20:00Z"));
        assert_eq!(p("2024年3月5日 上午13:20"), None);
    }

    #[test]
    fn chinese_weekday_between_date_and_time() {
        assert_eq!(p("2024年3月5日 星期二 10:20"), some(T_0305_1020));
        assert_eq!(p("2024-03-05（周二）10:20"), some(T_0305_1020));
        assert_eq!(p("2024年3月5日 星期二"), some(MIDNIGHT_0305));
    }

    #[test]
    fn square_brackets() {
        assert_eq!(p("[2024-03-05]"), some(MIDNIGHT_0305));
    }

    #[test]
    fn parentheses() {
        assert_eq!(p("(2024-03-05)"), some(MIDNIGHT_0305));
        assert_eq!(p("（2024-03-05）"), some(MIDNIGHT_0305));
    }

    #[test]
    fn label_prefix() {
        assert_eq!(p("发布时间：2024-03-05 10:20"), some(T_0305_1020));
        assert_eq!(p("发布时间:2024-03-05 10:20"), some(T_0305_1020));
        assert_eq!(p("发布日期 2024年3月5日 来源：新华社"), some(MIDNIGHT_0305));
        assert_eq!(
            p("Date: Tue, 05 Mar 2024 10:20:00 +0800"),
            some(T_0305_1020)
        );
    }

    #[test]
    fn trailing_text_after_numeric_date() {
        assert_eq!(p("2024-03-05 10:20 来源：人民网"), some(T_0305_1020));
        // CST after a numeric date is not an RFC 822 zone; the source's tz wins.
        assert_eq!(p("2024-03-05 10:20:00 CST"), some(T_0305_1020));
        assert_eq!(p("2024-03-05 3 条评论"), some(MIDNIGHT_0305));
    }

    #[test]
    fn full_width_digits_colon_and_space() {
        assert_eq!(p("２０２４－０３－０５　１０：２０"), some(T_0305_1020));
        assert_eq!(p("２０２４年３月５日　１０：２０"), some(T_0305_1020));
        assert_eq!(p("发布时间：２０２４-03-05"), some(MIDNIGHT_0305));
    }

    #[test]
    fn nbsp_and_surrounding_whitespace() {
        assert_eq!(p("  \t2024-03-05\u{a0}10:20\n"), some(T_0305_1020));
    }

    #[test]
    fn yearless_dashes() {
        assert_eq!(p("03-05"), some(MIDNIGHT_0305));
    }

    #[test]
    fn yearless_dashes_with_time() {
        assert_eq!(p("3-5 10:20"), some(T_0305_1020));
    }

    #[test]
    fn yearless_chinese() {
        assert_eq!(p("03月05日"), some(MIDNIGHT_0305));
    }

    #[test]
    fn yearless_chinese_with_time() {
        assert_eq!(p("3月5日 10:20"), some(T_0305_1020));
    }

    #[test]
    fn yearless_future_rolls_back_a_year() {
        // Within a day ahead of now (10:00 local on 03-06) stays this year…
        assert_eq!(p("03-07"), some("2024-03-06T16:00:00Z"));
        assert_eq!(p("03-07 10:00"), some("2024-03-07T02:00:00Z"));
        // …past that it must be last year's item.
        assert_eq!(p("03-07 10:01"), some("2023-03-07T02:01:00Z"));
        assert_eq!(p("12-25"), some("2023-12-24T16:00:00Z"));
    }

    #[test]
    fn yearless_uses_the_year_in_tz_not_utc() {
        // 2024-12-31T17:00Z is already 2025-01-01 01:00 in Shanghai.
        let now = Utc.with_ymd_and_hms(2024, 12, 31, 17, 0, 0).unwrap();
        assert_eq!(p_at("01-01", now), some("2024-12-31T16:00:00Z"));
    }

    #[test]
    fn yearless_feb_29_outside_leap_year_is_last_leap_day_or_none() {
        let now = Utc.with_ymd_and_hms(2025, 3, 6, 2, 0, 0).unwrap();
        assert_eq!(p_at("02-29", now), some("2024-02-28T16:00:00Z"));
        let now = Utc.with_ymd_and_hms(2026, 3, 6, 2, 0, 0).unwrap();
        assert_eq!(p_at("02-29", now), None);
    }

    #[test]
    fn relative_just_now() {
        assert_eq!(p("刚刚"), some("2024-03-06T02:00:00Z"));
    }

    #[test]
    fn relative_seconds() {
        assert_eq!(p("30秒前"), some("2024-03-06T01:59:30Z"));
    }

    #[test]
    fn relative_minutes() {
        assert_eq!(p("5分钟前"), some("2024-03-06T01:55:00Z"));
        assert_eq!(p("5 分钟前"), some("2024-03-06T01:55:00Z"));
    }

    #[test]
    fn relative_hours() {
        assert_eq!(p("2小时前"), some("2024-03-06T00:00:00Z"));
        assert_eq!(p("2个小时前"), some("2024-03-06T00:00:00Z"));
    }

    #[test]
    fn relative_days() {
        assert_eq!(p("3天前"), some("2024-03-03T02:00:00Z"));
    }

    #[test]
    fn relative_half_hour() {
        assert_eq!(p("半小时前"), some("2024-03-06T01:30:00Z"));
    }

    #[test]
    fn relative_today_with_time() {
        assert_eq!(p("今天 10:20"), some("2024-03-06T02:20:00Z"));
    }

    #[test]
    fn relative_yesterday_with_time() {
        assert_eq!(p("昨天 10:20"), some(T_0305_1020));
        assert_eq!(p("昨天10:20"), some(T_0305_1020));
    }

    #[test]
    fn relative_yesterday_is_local_midnight() {
        assert_eq!(p("昨天"), some(MIDNIGHT_0305));
    }

    #[test]
    fn relative_day_before_yesterday() {
        assert_eq!(p("前天"), some("2024-03-03T16:00:00Z"));
    }

    #[test]
    fn relative_day_before_yesterday_with_time() {
        assert_eq!(p("前天 08:00"), some("2024-03-04T00:00:00Z"));
    }

    #[test]
    fn relative_days_follow_the_local_calendar() {
        // 17:00Z on 03-05 is already 01:00 on 03-06 in Shanghai.
        let now = Utc.with_ymd_and_hms(2024, 3, 5, 17, 0, 0).unwrap();
        assert_eq!(p_at("昨天", now), some(MIDNIGHT_0305));
    }

    #[test]
    fn relative_with_label_and_trailer() {
        assert_eq!(p("发布于：5分钟前"), some("2024-03-06T01:55:00Z"));
        assert_eq!(p("更新时间：昨天 10:20"), some(T_0305_1020));
    }

    #[test]
    fn unix_seconds() {
        assert_eq!(p("1709605200"), some(T_0305_1020));
    }

    #[test]
    fn unix_millis() {
        assert_eq!(p("1709605200000"), some(T_0305_1020));
        assert_eq!(p("1709605200123"), some("2024-03-05T02:20:00.123Z"));
    }

    #[test]
    fn unix_nine_digits_only_when_plausible() {
        assert_eq!(p("999999999"), some("2001-09-09T01:46:39Z"));
        assert_eq!(p("946684799"), None);
        assert_eq!(p("123456789"), None);
        // Eleven-digit seconds are all past 2100.
        assert_eq!(p("17096052000"), None);
    }

    #[test]
    fn format_pattern_is_tried_first() {
        // Day-first would be misread as nothing (or worse) by the heuristics.
        assert_eq!(
            p_fmt("05/03/2024 10:20", "%d/%m/%Y %H:%M"),
            some(T_0305_1020)
        );
        assert_eq!(p_fmt("20240305", "%Y%m%d"), some(MIDNIGHT_0305));
        assert_eq!(
            p_fmt("20240305 1020 +0000", "%Y%m%d %H%M %z"),
            some("2024-03-05T10:20:00Z")
        );
        assert_eq!(p_fmt("1709605200", "%s"), some(T_0305_1020));
        assert_eq!(
            p_fmt("1709605200.5", "%s%.f"),
            some("2024-03-05T02:20:00.500Z")
        );
        // Full-width input is folded before the pattern sees it.
        assert_eq!(p_fmt("０５/０３/２０２４", "%d/%m/%Y"), some(MIDNIGHT_0305));
    }

    #[test]
    fn format_pattern_falls_back_to_heuristics() {
        assert_eq!(p_fmt("2024-03-05 10:20", "%d/%m/%Y"), some(T_0305_1020));
        assert_eq!(p_fmt("2024-03-05", "%Q%!bogus"), some(MIDNIGHT_0305));
    }

    #[test]
    fn format_offset_is_never_dropped() {
        // Representable as a naive time but not once the offset is applied:
        // must not come back as the same wall clock read in `tz`.
        assert_eq!(
            p_fmt("+262142-12-31 23:59 -2359", "%Y-%m-%d %H:%M %z"),
            None
        );
    }

    #[test]
    fn dst_gap_and_overlap() {
        let ny = chrono_tz::America::New_York;
        // 02:30 does not exist on 2024-03-10; read with the pre-gap offset.
        assert_eq!(p_tz("2024-03-10 02:30", ny), some("2024-03-10T07:30:00Z"));
        // 01:30 happens twice on 2024-11-03; take the earlier (EDT).
        assert_eq!(p_tz("2024-11-03 01:30", ny), some("2024-11-03T05:30:00Z"));
    }

    #[test]
    fn rejects_non_dates() {
        for s in [
            "",
            "   ",
            "abc",
            "2024",
            "10:20",
            "12345678",
            "hello 2024",
            "第3期",
            "3条评论",
            "Marketing",
            "May",
            "今日头条",
            "1234567890123456",
        ] {
            assert_eq!(p(s), None, "{s:?}");
        }
    }

    #[test]
    fn rejects_impossible_dates_and_times() {
        for s in [
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-03-00",
            "2024-03-05 25:00",
            "2024-03-05 24:00",
            "2024-03-05 10:60",
            "2024-03-05 10:20:61",
            "2024-03-05T",
            "2024-03-05T25:00Z",
            "2024-03-05T10:20:00+25:00",
            "2024-03-05T10:20:00+08:99",
            "2024-03-051",
            "2024-03-05-01",
            "2024-03-05T10:20:00.Z",
            "2024-03-05.html",
            "99999-03-05",
            "2023年2月29日",
            "2024年2月30日 10:20",
            "发布时间：2024-02-30",
            "Tue, 30 Feb 2024 10:00:00 +0800",
            "Tue, 05 Mar 2024 25:00:00 +0800",
            "Tue Mar 05 25:00:00 +0800 2024",
            "13-05",
            "02-30",
            "昨天 25:00",
            "3月32日",
        ] {
            assert_eq!(p(s), None, "{s:?}");
        }
    }

    #[test]
    fn extreme_now_does_not_panic() {
        let inputs = [
            "刚刚",
            "5分钟前",
            "99999999天前",
            "昨天",
            "前天 08:00",
            "03-05",
            "12-31 23:59",
            "2024-03-05",
            "1709605200",
        ];
        for now in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            for s in inputs {
                for tz in [
                    Shanghai,
                    chrono_tz::Pacific::Kiritimati,
                    chrono_tz::Etc::GMTPlus12,
                ] {
                    let _ = parse_date(s, now, tz, None);
                }
            }
        }
    }

    #[test]
    fn huge_relative_counts_do_not_overflow() {
        assert_eq!(p("999999999999天前"), None);
        assert_eq!(p("9999999999999天前"), None);
    }

    fn any_tz() -> impl Strategy<Value = Tz> {
        prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
    }

    fn any_now() -> impl Strategy<Value = DateTime<Utc>> {
        let (lo, hi) = (
            DateTime::<Utc>::MIN_UTC.timestamp(),
            DateTime::<Utc>::MAX_UTC.timestamp(),
        );
        prop_oneof![
            3 => 0i64..4_102_444_800,
            1 => lo..=hi,
        ]
        .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    /// Whole seconds from 1990 up to 2090.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (631_152_000i64..3_786_912_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    /// Dense in the characters the scanner branches on, so random strings
    /// actually reach deep into the grammar.
    const DIGIT_HEAVY: &str = "[0-9０-９ :：\u{3000}/.\\-+,TtZzAPMamp()（）\\[\\]年月日号时点分秒钟个小前天昨今刚半上下午晚凌晨星期周一二GMTUCESDFebMaryJunOctu]{0,48}";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_on_arbitrary_unicode(
            s in any::<String>(),
            now in any_now(),
            tz in any_tz(),
        ) {
            let _ = parse_date(&s, now, tz, None);
        }

        #[test]
        fn never_panics_on_digit_heavy_strings(
            s in DIGIT_HEAVY,
            now in any_now(),
            tz in any_tz(),
        ) {
            let _ = parse_date(&s, now, tz, None);
        }

        #[test]
        fn never_panics_on_near_miss_dates(
            parts in prop::collection::vec(any::<u64>().prop_map(|n| n % 100_000), 8),
            seps in prop::collection::vec(prop::sample::select(
                vec!["-", "/", ".", ":", " ", "T", "年", "月", "日", "+", "-0", "秒前", "天前", " Mar ", "Z"]), 8),
            now in any_now(),
            tz in any_tz(),
        ) {
            let s: String = parts.iter().zip(&seps).map(|(n, sep)| format!("{n}{sep}")).collect();
            let _ = parse_date(&s, now, tz, None);
        }

        #[test]
        fn never_panics_with_arbitrary_formats(
            s in DIGIT_HEAVY,
            fmt in prop_oneof![
                "(%[-_0#:.]?[0-9]?[a-zA-Z%+.:]|[ -~年月日]){0,8}",
                any::<String>(),
            ],
            now in any_now(),
            tz in any_tz(),
        ) {
            let _ = parse_date(&s, now, tz, Some(&fmt));
        }

        #[test]
        fn rfc3339_round_trips(t in instant(), now in any_now(), tz in any_tz()) {
            prop_assert_eq!(parse_date(&format_rfc3339(t), now, tz, None), Some(t));
        }

        #[test]
        fn rfc3339_round_trips_sub_second(t in instant(), nanos in 0u32..1_000_000_000) {
            let t = t.with_nanosecond(nanos).unwrap();
            prop_assert_eq!(parse_date(&format_rfc3339(t), now(), Shanghai, None), Some(t));
        }

        #[test]
        fn local_forms_round_trip(t in instant(), tz in prop_oneof![Just(Shanghai), any_tz()]) {
            let local = t.with_timezone(&tz);
            for fmt in ["%Y-%m-%d %H:%M:%S", "%Y年%m月%d日 %H:%M:%S"] {
                let s = local.format(fmt).to_string();
                let got = parse_date(&s, now(), tz, None);
                if tz.from_local_datetime(&local.naive_local()).single().is_some() {
                    prop_assert_eq!(got, Some(t), "{}", s);
                } else {
                    // A repeated wall-clock time (1990–91 China DST, or any
                    // zone's fall-back hour) cannot name one instant; it must
                    // still name the same wall-clock time.
                    let back = got.map(|g| g.with_timezone(&tz).format(fmt).to_string());
                    prop_assert_eq!(back, Some(s));
                }
            }
        }

        #[test]
        fn rfc2822_round_trips(t in instant(), tz in any_tz()) {
            let utc = t.to_rfc2822();
            prop_assert_eq!(parse_date(&utc, now(), tz, None), Some(t), "{}", utc);
            let local = t.with_timezone(&tz).to_rfc2822();
            prop_assert_eq!(parse_date(&local, now(), Shanghai, None), Some(t), "{}", local);
        }
    }
}
