//! Owns events: the clustering of items that tell the same story (reposts, syndicated copies,
//! the same news on several sites) and the record kept per event — its items, sources,
//! first/last seen, hourly counts, engagement and whether the department has responded.
//!
//! Near-duplicates are found with a 64-bit SimHash over character 3-grams of the item's
//! significant characters, compared with the SimHashes of the items of the event window
//! (held in memory by the store: a popcount each, far cheaper than any index lookup at this
//! size), and confirmed by the Jaccard similarity of the 3-gram sets, which a short post must
//! pass by a wider margin. Unweighted 3-grams of a short post move many bits for a small edit
//! (a 100-character post with a 2-character prefix is 3–10 bits away, a 55-character repost
//! with "【转】" 4–6), hence a threshold of 12, not the 3 used for long documents; unrelated
//! texts sit around 32 and the Jaccard check keeps precision. Exact links (a repost of a
//! stored item, a copy with the same canonical URL or text) join without any measure. An item
//! with the same long headline (at least 12 significant characters) as one of the window
//! joins when one text contains most of the other or one has little beyond its headline: a
//! list entry and its article, a story republished with a different lead — but not a
//! recurring column whose headline repeats daily over different text.

use crate::item::Item;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Hamming distance within which two SimHashes are candidates.
pub const MAX_DISTANCE: u32 = 12;
/// Below this many 3-grams a text is too short for near-duplicate detection: only exact
/// links join it to an event.
pub const MIN_SHINGLES: usize = 12;
/// Shingle sets at least this similar confirm a candidate.
const JACCARD: f64 = 0.5;
/// Short texts (fewer shingles than this) must be more alike: a shared phrase is a larger
/// part of a short post.
const SHORT: usize = 60;
const JACCARD_SHORT: f64 = 0.7;
/// Members listed for an event (in the store, one key each; the count goes on beyond).
pub const MEMBERS_KEPT: u64 = 20;
/// Hourly counts kept (two weeks).
const HOURS_KEPT: i64 = 14 * 24;

/// The text an item is clustered on: title and body, normalised to significant characters.
pub fn cluster_text(item: &Item) -> Vec<char> {
    crate::text::significant(&format!("{} {}", item.title, item.text))
        .chars()
        .collect()
}

/// A headline this long (significant characters) names one story: two items with the same
/// one are the same story even when their texts differ (a list entry and its article). Shorter
/// headlines ("求助", "通知") are shared by unrelated posts.
pub const MIN_HEADLINE: usize = 12;

/// Hash of a headline long enough to identify a story.
pub fn headline(title: &str) -> Option<u64> {
    let chars: Vec<char> = crate::text::significant(title).chars().collect();
    (chars.len() >= MIN_HEADLINE).then(|| fnv(&chars))
}

/// FNV-1a: stable across builds and platforms (the store keeps these hashes).
fn fnv(chars: &[char]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in chars {
        for b in (*c as u32).to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // FNV's low bits mix poorly for short inputs; a final avalanche spreads them.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// The distinct character 3-grams of `chars`, hashed.
pub fn shingles(chars: &[char]) -> HashSet<u64> {
    chars.windows(3).map(fnv).collect()
}

/// 64-bit SimHash of a shingle set (every shingle weighs the same).
pub fn simhash(shingles: &HashSet<u64>) -> u64 {
    let mut counts = [0i32; 64];
    for h in shingles {
        for (bit, c) in counts.iter_mut().enumerate() {
            if h >> bit & 1 == 1 {
                *c += 1;
            } else {
                *c -= 1;
            }
        }
    }
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .fold(0u64, |acc, (bit, _)| acc | 1 << bit)
}

pub fn jaccard(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let inter = a.intersection(b).count() as f64;
    inter / (a.len() as f64 + b.len() as f64 - inter)
}

/// The share of the smaller set found in the larger: 1.0 when one text is contained in the
/// other (a list entry's summary in its article).
pub fn containment(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if small.is_empty() {
        return 0.0;
    }
    small.intersection(large).count() as f64 / small.len() as f64
}

/// Whether two items with the same headline tell the same story: one is contained in the
/// other (a list entry and its article, a story with a new lead), or one has hardly any
/// text beyond the headline. A recurring column ("今日天气与出行提示") shares its headline
/// from day to day, not its text.
pub fn same_headline_story(a: &HashSet<u64>, b: &HashSet<u64>) -> bool {
    a.len().min(b.len()) < MIN_SHINGLES + 24 || containment(a, b) >= 0.5
}

/// Whether two shingle sets tell the same story (the confirmation after SimHash).
pub fn same_story(a: &HashSet<u64>, b: &HashSet<u64>) -> bool {
    if a.len() < MIN_SHINGLES || b.len() < MIN_SHINGLES {
        return false;
    }
    let need = if a.len().min(b.len()) < SHORT {
        JACCARD_SHORT
    } else {
        JACCARD
    };
    jaccard(a, b) >= need
}

/// Days since the Unix epoch: the near-duplicate index is bucketed by day so that a lookup
/// reads only the days an event can still be joined in.
pub fn day_of(t: DateTime<Utc>) -> u32 {
    t.timestamp().div_euclid(86_400).max(0) as u32
}

/// One item of an event, as shown in alerts and the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub id: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub title: String,
}

impl Member {
    pub fn of(item: &Item) -> Member {
        Member {
            id: item.id.clone(),
            source: item.source.clone(),
            url: item.url.clone(),
            title: item.title.clone(),
        }
    }
}

/// The department's answer to an event (回应), after which reaction is counted apart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub at: DateTime<Utc>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: String,
    /// The title of the item that opened it.
    pub title: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub items: u64,
    /// Distinct sources (the set itself is kept in the store, one key each: an event can be
    /// carried by thousands of sources and is rewritten on every item).
    pub sources: u64,
    /// The highest `weight` among its sources.
    #[serde(default = "one")]
    pub source_weight: f64,
    /// Items per hour (hours since the Unix epoch), for velocity.
    pub hours: BTreeMap<i64, u32>,
    /// Sum of reposts, comments and replies over the items.
    pub engagement: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responded: Option<Response>,
    /// Items that arrived after the response.
    #[serde(default)]
    pub after_response: u64,
}

fn one() -> f64 {
    1.0
}

pub fn hour_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(3600)
}

/// What an item adds to engagement: the reactions that spread a story.
pub fn engagement_of(item: &Item) -> u64 {
    let e = &item.engagement;
    e.reposts.unwrap_or(0) + e.comments.unwrap_or(0) + e.replies.unwrap_or(0)
}

pub fn event_id(first_item: &str) -> String {
    crate::item::short_hash(&["event", first_item])
}

impl Event {
    /// A new event around `item`, whose source has `weight`.
    pub fn open(item: &Item, now: DateTime<Utc>, weight: f64) -> Event {
        let mut e = Event {
            id: event_id(&item.id),
            title: item.title.clone(),
            first_seen: now,
            last_seen: now,
            items: 0,
            sources: 0,
            source_weight: weight,
            hours: BTreeMap::new(),
            engagement: 0,
            responded: None,
            after_response: 0,
        };
        e.add(item, now, true, weight);
        e
    }

    /// Counts `item` in; `new_source` when its source had not carried the event yet.
    pub fn add(&mut self, item: &Item, now: DateTime<Utc>, new_source: bool, weight: f64) {
        self.items += 1;
        self.last_seen = self.last_seen.max(now);
        if new_source {
            self.sources += 1;
            self.source_weight = self.source_weight.max(weight);
        }
        *self.hours.entry(hour_of(now)).or_default() += 1;
        let cutoff = hour_of(now) - HOURS_KEPT;
        self.hours.retain(|h, _| *h > cutoff);
        self.engagement = self.engagement.saturating_add(engagement_of(item));
        if self.responded.is_some() {
            self.after_response += 1;
        }
    }

    /// Items in the hour up to `now` (this clock hour and the part of the previous one).
    pub fn last_hour(&self, now: DateTime<Utc>) -> u32 {
        let h = hour_of(now);
        let this = self.hours.get(&h).copied().unwrap_or(0);
        let previous = self.hours.get(&(h - 1)).copied().unwrap_or(0);
        // Buckets are clock hours; half the previous one approximates a sliding hour.
        this + previous / 2
    }

    /// Mean items per hour before the last hour, over the event's life.
    pub fn baseline(&self, now: DateTime<Utc>) -> f64 {
        let h = hour_of(now);
        let before: u32 = self.hours.range(..h - 1).map(|(_, c)| *c).sum();
        let first = hour_of(self.first_seen);
        let span = (h - 1 - first).max(1) as f64;
        before as f64 / span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> HashSet<u64> {
        shingles(&crate::text::significant(s).chars().collect::<Vec<_>>())
    }

    #[test]
    fn jaccard_is_the_set_ratio() {
        let a: HashSet<u64> = [1, 2, 3, 4].into_iter().collect();
        let b: HashSet<u64> = [3, 4, 5, 6].into_iter().collect();
        assert!((jaccard(&a, &b) - 2.0 / 6.0).abs() < 1e-9);
        assert_eq!(jaccard(&a, &a), 1.0);
        assert_eq!(jaccard(&a, &HashSet::new()), 0.0);
    }

    #[test]
    fn near_copies_are_close_and_other_stories_far() {
        let a = "某区城管执法人员在菜市场与摊贩发生冲突，一名摊贩受伤被送往医院，现场视频在网上流传，区城管局回应称已成立调查组";
        let b = "【转】某区城管执法人员在菜市场与摊贩发生冲突，一名摊贩受伤被送往医院。现场视频在网上流传，区城管局回应称已成立调查组。";
        let c = "市交通运输局发布通知：地铁三号线因设备检修，本周六晚间部分区段停运，请市民提前规划出行路线，注意换乘公交接驳";
        let (sa, sb, sc) = (set(a), set(b), set(c));
        let d_ab = (simhash(&sa) ^ simhash(&sb)).count_ones();
        let d_ac = (simhash(&sa) ^ simhash(&sc)).count_ones();
        assert!(d_ab <= MAX_DISTANCE, "copy distance {d_ab}");
        assert!(d_ac > 10, "unrelated distance {d_ac}");
        assert!(same_story(&sa, &sb));
        assert!(!same_story(&sa, &sc));
    }

    #[test]
    fn a_shared_headline_needs_shared_text_unless_one_side_is_bare() {
        let title = "滨江区今日天气与出行提示";
        let monday = set(&format!("{title} 今天晴，最高气温二十度，早晚温差大，地铁三号线南段检修，请绕行五号线，公交二十路临时改道"));
        let tuesday = set(&format!("{title} 明天小雨转阴，最低气温八度，路面湿滑请减速慢行，南湖隧道夜间封闭施工，出租车可走环湖路"));
        assert!(
            !same_headline_story(&monday, &tuesday),
            "a daily column is not one story"
        );
        let entry = set(&format!("{title} 今天晴，最高气温二十度"));
        assert!(
            same_headline_story(&entry, &monday),
            "a list entry and its page"
        );
        assert!(containment(&entry, &monday) > 0.9);
    }

    #[test]
    fn short_posts_need_a_wider_margin() {
        // Two short posts sharing a long slogan but saying different things.
        let a = set("城管暴力执法必须严查到底，请关注这件事");
        let b = set("城管暴力执法必须严查到底，我们小区也有");
        assert!(!same_story(&a, &b), "{}", jaccard(&a, &b));
        assert!(!same_story(&set("太短"), &set("太短")));
    }
}
