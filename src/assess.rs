//! Owns risk judging (研判) as plain functions: the score of a (department, event) broken down
//! by factor, the level it maps to, the negative-sentiment lexicon, spike detection on a
//! department's hourly volume, silences and quiet hours. No I/O: the alerter feeds it what the
//! store holds and acts on the answers.

use crate::config::{AssessSettings, Silence};
use aho_corasick::{AhoCorasick, MatchKind};
use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The shipped lexicon: one word per line, optionally a tab and a weight 1–3.
const NEGATIVE: &str = include_str!("negative.txt");

/// 一般 / 较大 / 重大 / 特别重大, ordered by seriousness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Blue,
    Yellow,
    Orange,
    Red,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Blue => "blue",
            Level::Yellow => "yellow",
            Level::Orange => "orange",
            Level::Red => "red",
        }
    }

    /// The name used in Chinese emergency grading.
    pub fn name_zh(self) -> &'static str {
        match self {
            Level::Blue => "一般",
            Level::Yellow => "较大",
            Level::Orange => "重大",
            Level::Red => "特别重大",
        }
    }

    pub fn from_score(total: f64, thresholds: &[f64; 3]) -> Level {
        if total >= thresholds[2] {
            Level::Red
        } else if total >= thresholds[1] {
            Level::Orange
        } else if total >= thresholds[0] {
            Level::Yellow
        } else {
            Level::Blue
        }
    }
}

/// One factor of the score: its measured value, its configured weight and what it adds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Factor {
    pub value: f64,
    pub weight: f64,
    pub points: f64,
    /// What was measured, in words a leader can read.
    pub basis: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Score {
    pub total: f64,
    /// rules, source, engagement, spread, velocity, sentiment.
    pub factors: BTreeMap<String, Factor>,
}

/// What the score is computed from, gathered by the alerter.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Highest sum of matched rule weights over the department's items in the event.
    pub rule_weight: f64,
    /// Highest weight among the event's sources.
    pub source_weight: f64,
    pub engagement: u64,
    pub items: u64,
    pub sources: usize,
    pub last_hour: u32,
    /// Items per hour to compare `last_hour` with (the event's and the department's own).
    pub baseline: f64,
    /// Highest negative-lexicon score over the department's items, and its words.
    pub negative: f64,
    pub negative_words: Vec<String>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn score(inputs: &Inputs, settings: &AssessSettings) -> Score {
    let w = &settings.weights;
    let mut factors = BTreeMap::new();
    let mut add = |name: &str, value: f64, weight: f64, basis: String| {
        let value = round2(value);
        factors.insert(
            name.to_string(),
            Factor {
                value,
                weight,
                points: round2(value * weight),
                basis,
            },
        );
    };
    add(
        "rules",
        inputs.rule_weight.min(5.0),
        w.rules,
        format!("matched rule weight {}", round2(inputs.rule_weight)),
    );
    add(
        "source",
        inputs.source_weight,
        w.source,
        format!("highest source weight {}", inputs.source_weight),
    );
    add(
        "engagement",
        (1.0 + inputs.engagement as f64).log10(),
        w.engagement,
        format!("{} reposts, comments and replies", inputs.engagement),
    );
    add(
        "spread",
        (inputs.items.max(1) as f64).log2() + inputs.sources.saturating_sub(1) as f64,
        w.spread,
        format!("{} items from {} sources", inputs.items, inputs.sources),
    );
    // Only growth beyond the usual rate counts: log2 of last hour against baseline + 1.
    add(
        "velocity",
        (inputs.last_hour as f64 / (inputs.baseline + 1.0))
            .log2()
            .max(0.0),
        w.velocity,
        format!(
            "{} items in the last hour, usual {:.2}/h",
            inputs.last_hour, inputs.baseline
        ),
    );
    add(
        "sentiment",
        inputs.negative.min(6.0) / 2.0,
        w.sentiment,
        if inputs.negative_words.is_empty() {
            "no negative words".into()
        } else {
            format!("negative words: {}", inputs.negative_words.join("、"))
        },
    );
    let total = round2(factors.values().map(|f| f.points).sum());
    Score { total, factors }
}

/// The negative-sentiment lexicon: the shipped list plus `[assess] negative_words`.
pub struct Lexicon {
    automaton: Option<AhoCorasick>,
    words: Vec<(String, f64)>,
}

impl Lexicon {
    pub fn new(extra: &[String]) -> Lexicon {
        let mut words: Vec<(String, f64)> = Vec::new();
        let mut push = |w: &str, weight: f64| {
            let w = crate::text::normalize_pattern(w);
            if !w.is_empty() && !words.iter().any(|(x, _)| *x == w) {
                words.push((w, weight));
            }
        };
        for line in NEGATIVE.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, weight) = match line.split_once('\t') {
                Some((w, n)) => (w, n.trim().parse::<f64>().unwrap_or(1.0)),
                None => (line, 1.0),
            };
            push(word, weight);
        }
        for w in extra {
            push(w, 1.0);
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(words.iter().map(|(w, _)| w.as_str()))
            .ok();
        Lexicon { automaton, words }
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Sum of the weights of the distinct negative words in `text` (raw text: it is
    /// normalised here), and the words.
    pub fn assess(&self, text: &str) -> (f64, Vec<String>) {
        let Some(ac) = &self.automaton else {
            return (0.0, Vec::new());
        };
        let norm = crate::text::normalize_for_match(text);
        let mut found: Vec<usize> = ac
            .find_iter(&norm)
            .map(|m| m.pattern().as_usize())
            .collect();
        found.sort_unstable();
        found.dedup();
        let total = found.iter().map(|i| self.words[*i].1).sum();
        (
            total,
            found.iter().map(|i| self.words[*i].0.clone()).collect(),
        )
    }
}

/// A department's volume this hour against the same hour of previous days.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spike {
    pub count: u32,
    pub mean: f64,
    pub stddev: f64,
    pub threshold: f64,
    pub days: usize,
}

/// A spike when `count` reaches `min` and exceeds mean + k·σ of `history` (the same hour on
/// each previous day). Without a full history there is no baseline to judge against.
pub fn spike(count: u32, history: &[u32], k: f64, min: u32, days: u32) -> Option<Spike> {
    if history.len() < days as usize || history.is_empty() || count < min {
        return None;
    }
    let n = history.len() as f64;
    let mean = history.iter().map(|x| *x as f64).sum::<f64>() / n;
    let var = history
        .iter()
        .map(|x| (*x as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let stddev = var.sqrt();
    let threshold = mean + k * stddev;
    (count as f64 > threshold).then(|| Spike {
        count,
        mean: round2(mean),
        stddev: round2(stddev),
        threshold: round2(threshold),
        days: history.len(),
    })
}

/// What a silence is checked against.
pub struct Subject<'a> {
    pub department: &'a str,
    pub rules: &'a [String],
    pub sources: &'a [String],
    /// Normalised title and text of the alert's items.
    pub text: &'a str,
}

/// The first silence in force at `now` whose every matcher holds.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    s: &Subject<'_>,
    now: DateTime<Utc>,
) -> Option<&'a Silence> {
    silences.iter().find(|x| {
        x.starts.is_none_or(|t| t <= now)
            && now < x.ends
            && x.department.as_deref().is_none_or(|d| d == s.department)
            && x.rule
                .as_deref()
                .is_none_or(|r| s.rules.iter().any(|y| y == r))
            && x.source
                .as_deref()
                .is_none_or(|src| s.sources.iter().any(|y| y == src))
            && x.text.as_deref().is_none_or(|t| s.text.contains(t))
    })
}

/// When the quiet hours around `now` end, or None outside them.
pub fn quiet_until(
    now: DateTime<Utc>,
    tz: Tz,
    range: Option<(NaiveTime, NaiveTime)>,
) -> Option<DateTime<Utc>> {
    let (start, end) = range?;
    let local = now.with_timezone(&tz);
    let t = local.time();
    let inside = if start < end {
        start <= t && t < end
    } else {
        t >= start || t < end
    };
    if !inside {
        return None;
    }
    let mut day = local.date_naive();
    if t >= end {
        day = day.succ_opt()?;
    }
    let naive = day.and_time(end);
    // A wall time skipped by a DST change: the next valid instant is near enough.
    let local_end = naive.and_local_timezone(tz).earliest().or_else(|| {
        (naive + chrono::Duration::hours(1))
            .and_local_timezone(tz)
            .earliest()
    })?;
    Some(local_end.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn levels_follow_thresholds() {
        let t = [4.0, 7.0, 10.0];
        assert_eq!(Level::from_score(0.0, &t), Level::Blue);
        assert_eq!(Level::from_score(4.0, &t), Level::Yellow);
        assert_eq!(Level::from_score(9.99, &t), Level::Orange);
        assert_eq!(Level::from_score(12.0, &t), Level::Red);
        assert!(Level::Red > Level::Orange && Level::Yellow > Level::Blue);
        assert_eq!(Level::Orange.name_zh(), "重大");
    }

    #[test]
    fn score_adds_weighted_factors_and_explains_them() {
        let mut settings = AssessSettings::default();
        let inputs = Inputs {
            rule_weight: 2.0,
            source_weight: 1.0,
            engagement: 999,
            items: 4,
            sources: 3,
            last_hour: 0,
            baseline: 0.0,
            negative: 3.0,
            negative_words: vec!["打人".into()],
        };
        let s = score(&inputs, &settings);
        assert_eq!(s.factors["rules"].points, 2.0);
        assert_eq!(s.factors["engagement"].value, 3.0);
        assert_eq!(s.factors["spread"].value, 4.0);
        assert_eq!(s.factors["velocity"].value, 0.0);
        assert_eq!(s.factors["sentiment"].value, 1.5);
        assert_eq!(s.total, 2.0 + 1.0 + 3.0 + 4.0 + 1.5);
        assert!(s.factors["sentiment"].basis.contains("打人"));
        settings.weights.spread = 0.5;
        assert_eq!(score(&inputs, &settings).factors["spread"].points, 2.0);
    }

    #[test]
    fn velocity_counts_only_growth_above_the_usual_rate() {
        let settings = AssessSettings::default();
        let base = Inputs {
            last_hour: 1,
            baseline: 0.0,
            ..Inputs::default()
        };
        assert_eq!(score(&base, &settings).factors["velocity"].value, 0.0);
        let burst = Inputs {
            last_hour: 16,
            baseline: 1.0,
            ..Inputs::default()
        };
        assert_eq!(score(&burst, &settings).factors["velocity"].value, 3.0);
    }

    #[test]
    fn lexicon_finds_shipped_and_configured_words_after_normalisation() {
        let lex = Lexicon::new(&["拆迁补偿".into()]);
        assert!(lex.len() > 200);
        let (w, words) = lex.assess("網友稱城管毆打攤販，拆迁补偿也没到位");
        assert!(words.contains(&"殴打".to_string()), "{words:?}");
        assert!(words.contains(&"拆迁补偿".to_string()), "{words:?}");
        assert!(w >= 4.0);
        assert_eq!(lex.assess("市政府召开常务会议").0, 0.0);
    }

    #[test]
    fn spike_on_a_jump_not_on_a_flat_series() {
        let flat = [10, 11, 9, 10, 12, 10, 9];
        assert!(spike(12, &flat, 3.0, 5, 7).is_none());
        let s = spike(30, &flat, 3.0, 5, 7).expect("spike");
        assert!(s.threshold > 10.0 && s.threshold < 15.0, "{s:?}");
        // A quiet department: small counts stay under the floor.
        assert!(spike(3, &[0; 7], 3.0, 5, 7).is_none());
        assert!(spike(6, &[0; 7], 3.0, 5, 7).is_some());
        // Too little history to judge.
        assert!(spike(30, &[1, 1], 3.0, 5, 7).is_none());
    }

    #[test]
    fn quiet_hours_wrap_midnight_in_local_time() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let range = Some((
            NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
        ));
        // 23:30 Beijing = 15:30 UTC → quiet until 07:00 Beijing = 23:00 UTC.
        let late = Utc.with_ymd_and_hms(2026, 11, 27, 15, 30, 0).unwrap();
        assert_eq!(
            quiet_until(late, tz, range),
            Some(Utc.with_ymd_and_hms(2026, 11, 27, 23, 0, 0).unwrap())
        );
        // 03:00 Beijing = 19:00 UTC the day before.
        let night = Utc.with_ymd_and_hms(2026, 11, 27, 19, 0, 0).unwrap();
        assert_eq!(
            quiet_until(night, tz, range),
            Some(Utc.with_ymd_and_hms(2026, 11, 27, 23, 0, 0).unwrap())
        );
        let noon = Utc.with_ymd_and_hms(2026, 11, 27, 4, 0, 0).unwrap();
        assert_eq!(quiet_until(noon, tz, range), None);
        assert_eq!(quiet_until(noon, tz, None), None);
    }

    #[test]
    fn silences_need_every_matcher_and_their_time() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 4, 0, 0).unwrap();
        let s = Silence {
            id: "drill".into(),
            department: Some("urban".into()),
            rule: None,
            source: None,
            text: Some("演习".into()),
            starts: None,
            ends: now + chrono::Duration::hours(1),
            comment: "scheduled drill".into(),
        };
        let list = [s];
        let subj = |dept: &'static str, text: &'static str| Subject {
            department: dept,
            rules: &[],
            sources: &[],
            text,
        };
        assert!(silenced_by(&list, &subj("urban", "消防演习现场"), now).is_some());
        assert!(silenced_by(&list, &subj("water", "消防演习现场"), now).is_none());
        assert!(silenced_by(&list, &subj("urban", "城管冲突"), now).is_none());
        let later = now + chrono::Duration::hours(2);
        assert!(silenced_by(&list, &subj("urban", "消防演习现场"), later).is_none());
    }
}
