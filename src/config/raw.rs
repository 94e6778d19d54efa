//! The configuration exactly as users write it: serde structs with every unknown key rejected.
//!
//! Durations, rate limits and URLs stay strings here so that `validate` can report each bad
//! value with its key path instead of stopping at serde's first error.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub data_dir: Option<String>,
    pub listen: Option<String>,
    pub timezone: Option<String>,
    pub retention: Option<String>,
    pub max_concurrent_fetches: Option<i64>,
    pub cache_capacity_mb: Option<i64>,
    pub shutdown_grace: Option<String>,
    pub api_token_env: Option<String>,
    pub api_token_file: Option<String>,
}

/// `[defaults]`. All but `connect_timeout` and `max_redirects` (which belong to the one shared
/// HTTP client) may be overridden per source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub per_host: Option<String>,
    pub max_in_flight_per_host: Option<i64>,
    pub user_agent: Option<String>,
    pub max_body: Option<String>,
    pub max_redirects: Option<i64>,
    pub jitter: Option<f64>,
    pub max_backoff: Option<String>,
    pub backlog: Option<bool>,
    pub max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub encoding: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    // Per-source overrides of [defaults]; kept in step with RawDefaults by `overrides()`.
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub per_host: Option<String>,
    pub max_in_flight_per_host: Option<i64>,
    pub user_agent: Option<String>,
    pub max_body: Option<String>,
    pub jitter: Option<f64>,
    pub max_backoff: Option<String>,
    pub backlog: Option<bool>,
    pub max_age: Option<String>,
    /// html: CSS selectors per field (`item`, `title`, `link`, …, `next`).
    pub select: Option<BTreeMap<String, String>>,
    /// html: a named selector set (discuz, dvbbs, tieba, gov-list) that `select` overrides.
    pub preset: Option<String>,
    /// html: selectors on each new entry's own page (`content`, `title`, `published`, `author`).
    pub detail: Option<BTreeMap<String, String>>,
    /// html: a page URL template with `{page}`, for lists paginated by number.
    pub page_url: Option<String>,
    pub max_pages: Option<i64>,
    /// Honour robots.txt (default true).
    pub robots: Option<bool>,
    /// A chrono strftime pattern tried first for this source's dates.
    pub date_format: Option<String>,
    /// json: a URL with `{keyword}` is requested once per keyword of these departments.
    pub search_departments: Option<Vec<String>>,
    /// Credentials, by reference only: the variable or file holding them.
    pub cookie_env: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    /// How much an item from this source counts in the risk score (an official outlet above
    /// an anonymous forum); 1.0 when unset.
    pub weight: Option<f64>,
}

impl RawSource {
    /// The source's own values for the keys `[defaults]` also has.
    pub fn overrides(&self) -> RawDefaults {
        RawDefaults {
            interval: self.interval.clone(),
            timeout: self.timeout.clone(),
            connect_timeout: None,
            per_host: self.per_host.clone(),
            max_in_flight_per_host: self.max_in_flight_per_host,
            user_agent: self.user_agent.clone(),
            max_body: self.max_body.clone(),
            max_redirects: None,
            jitter: self.jitter,
            max_backoff: self.max_backoff.clone(),
            backlog: self.backlog,
            max_age: self.max_age.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDepartment {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    pub webhook: Option<String>,
}

/// A rule: an expression, or a table with an id and a weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawRule {
    Expr(String),
    Full(RawRuleTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleTable {
    pub id: Option<String>,
    pub expr: String,
    pub weight: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub timeout: Option<String>,
    pub max_backoff: Option<String>,
}

/// `[ops_webhook]`: where source-health alerts for operators go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpsWebhook {
    pub url: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    /// Consecutive failed polls before a source is reported unhealthy.
    pub failures: Option<i64>,
    /// A source with no new item for this long (and longer than its usual cadence) is
    /// reported silent.
    pub silent_after: Option<String>,
}

/// `[assess]`: how matches become events, levels and alerts (研判).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssess {
    pub group_wait: Option<String>,
    pub repeat_interval: Option<String>,
    pub event_window: Option<String>,
    pub quiet_hours: Option<String>,
    pub spike_k: Option<f64>,
    pub spike_days: Option<i64>,
    pub spike_min: Option<i64>,
    pub after_response_rise: Option<i64>,
    pub negative_words: Option<Vec<String>>,
    pub weights: Option<RawWeights>,
    pub levels: Option<RawLevels>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeights {
    pub rules: Option<f64>,
    pub source: Option<f64>,
    pub engagement: Option<f64>,
    pub spread: Option<f64>,
    pub velocity: Option<f64>,
    pub sentiment: Option<f64>,
}

/// Score thresholds of the levels above blue (一般).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevels {
    pub yellow: Option<f64>,
    pub orange: Option<f64>,
    pub red: Option<f64>,
}

/// `[[silence]]`: alerts matching every given matcher are recorded but not sent while it lasts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSilence {
    pub id: Option<String>,
    pub department: Option<String>,
    pub rule: Option<String>,
    pub source: Option<String>,
    pub text: Option<String>,
    pub starts: Option<String>,
    pub ends: Option<String>,
    pub comment: Option<String>,
}

/// The keys each section accepts (kept equal to the structs by a test), so that every unknown
/// key can be reported at once instead of serde's first.
pub fn known_keys(section: &str) -> &'static [&'static str] {
    match section {
        "daemon" => &[
            "data_dir",
            "listen",
            "timezone",
            "retention",
            "max_concurrent_fetches",
            "cache_capacity_mb",
            "shutdown_grace",
            "api_token_env",
            "api_token_file",
        ],
        "defaults" => &[
            "interval",
            "timeout",
            "connect_timeout",
            "per_host",
            "max_in_flight_per_host",
            "user_agent",
            "max_body",
            "max_redirects",
            "jitter",
            "max_backoff",
            "backlog",
            "max_age",
        ],
        "source" => &[
            "id",
            "kind",
            "url",
            "name",
            "enabled",
            "encoding",
            "headers",
            "interval",
            "timeout",
            "per_host",
            "max_in_flight_per_host",
            "user_agent",
            "max_body",
            "jitter",
            "max_backoff",
            "backlog",
            "max_age",
            "select",
            "preset",
            "detail",
            "page_url",
            "max_pages",
            "robots",
            "date_format",
            "search_departments",
            "cookie_env",
            "token_env",
            "token_file",
            "weight",
        ],
        "department" => &["id", "name", "keywords", "exclude", "rules", "webhook"],
        "webhook" => &["url", "secret_env", "secret_file", "timeout", "max_backoff"],
        "ops_webhook" => &[
            "url",
            "secret_env",
            "secret_file",
            "failures",
            "silent_after",
        ],
        "assess" => &[
            "group_wait",
            "repeat_interval",
            "event_window",
            "quiet_hours",
            "spike_k",
            "spike_days",
            "spike_min",
            "after_response_rise",
            "negative_words",
            "weights",
            "levels",
        ],
        "silence" => &[
            "id",
            "department",
            "rule",
            "source",
            "text",
            "starts",
            "ends",
            "comment",
        ],
        _ => &[],
    }
}
