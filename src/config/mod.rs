//! Owns sources.toml: loading it (file + `TINGFENG__SECTION__KEY` environment overrides through
//! the `config` crate), and the one conversion from what users wrote into the validated,
//! typed [`Config`] the rest of the daemon trusts. Every problem is collected and reported at
//! once with file, line and key path.

mod raw;
pub mod span;

use crate::charset;
use crate::source::{html, json};
use chrono_tz::Tz;
use raw::{
    RawAssess, RawDaemon, RawDefaults, RawDepartment, RawOpsWebhook, RawSilence, RawSource,
    RawWebhook,
};
use span::{KeyPath, Locator, Seg};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Below this interval `check` warns: polite polling of public sites is slower than this.
const POLITE_INTERVAL: Duration = Duration::from_secs(30);
/// Upper bounds that keep every later computation (backoff doubling, deadlines, semaphores)
/// far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);
const MAX_COUNT: i64 = 65_536;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: DaemonSettings,
    pub client: ClientSettings,
    pub sources: Vec<Source>,
    pub departments: Vec<Department>,
    pub webhook: WebhookSettings,
    pub ops: Option<OpsSettings>,
    /// `[lists]`: named keyword lists rules use as `@name`.
    pub lists: BTreeMap<String, Vec<String>>,
    /// `[assess]`: events, levels, grouping.
    pub assess: AssessSettings,
    /// `[[silence]]`s, in file order.
    pub silences: Vec<Silence>,
    /// Things worth saying that do not stop the daemon (e.g. a very short interval).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub timezone: Tz,
    pub retention: Duration,
    pub max_concurrent_fetches: usize,
    pub cache_capacity_bytes: u64,
    pub shutdown_grace: Duration,
    /// The bearer token of the HTTP API.
    pub api_token: SecretRef,
}

/// Where a secret comes from: a file (systemd credentials) or an environment variable —
/// never the config file itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl SecretRef {
    pub fn is_set(&self) -> bool {
        self.env.is_some() || self.file.is_some()
    }

    /// The secret, if configured and present. A configured file that cannot be read is an
    /// error (a service started without its credential must not run unsigned); an unset
    /// variable is `None`.
    pub fn read(&self) -> Result<Option<String>, String> {
        if let Some(f) = &self.file {
            let s = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read secret file {}: {e}", f.display()))?;
            let s = s.trim();
            if s.is_empty() {
                return Err(format!("secret file {} is empty", f.display()));
            }
            return Ok(Some(s.to_string()));
        }
        Ok(self
            .env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()))
    }
}

/// `[ops_webhook]`: source-health alerts for operators.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    pub url: Url,
    pub secret: SecretRef,
    pub failures: u32,
    pub silent_after: Duration,
}

/// Settings of the one shared HTTP client (not overridable per source).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    pub max_redirects: usize,
    pub user_agent: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Feed,
    Html,
    Json,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKind::Feed => f.write_str("feed"),
            SourceKind::Html => f.write_str("html"),
            SourceKind::Json => f.write_str("json"),
        }
    }
}

/// How an html source is read: compiled selectors, detail pages, pagination.
#[derive(Debug, Clone)]
pub struct HtmlSource {
    pub list: html::HtmlSpec,
    pub detail: Option<html::DetailSpec>,
    /// A URL template with `{page}` (pages 2…max_pages; page 1 is `url`).
    pub page_url: Option<String>,
    pub max_pages: usize,
}

/// How a json source is read.
#[derive(Debug, Clone)]
pub struct JsonSource {
    pub spec: json::JsonSpec,
    /// The URL as written, with `{keyword}` (the parsed `url` has it percent-encoded).
    pub url_template: Option<String>,
    /// Departments whose keywords fill `{keyword}` in the URL (one request per keyword).
    pub search_departments: Vec<String>,
    pub max_pages: usize,
}

/// Credentials a source sends, kept as references until the request is made.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// The Cookie header, from an environment variable.
    pub cookie: SecretRef,
    /// A bearer token, from an environment variable or a file.
    pub token: SecretRef,
}

/// How many times a failed detail page is retried on later polls.
pub const DETAIL_ATTEMPTS: u32 = 3;

/// Requests per period, e.g. `1/2s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl RateLimit {
    /// Time between two requests when they are spread evenly (no bursts: politeness).
    pub fn spacing(&self) -> Duration {
        self.per / self.requests.max(1)
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let (n, per) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a rate: write requests/period, e.g. \"1/2s\""))?;
        let requests: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {n:?} is not a whole number of requests"))?;
        if requests == 0 {
            return Err(format!("{s:?}: the number of requests must be at least 1"));
        }
        let per = per.trim();
        // "1/s" and "10/m" read naturally; humantime needs a number.
        let per_owned;
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
            per
        } else {
            per_owned = format!("1{per}");
            &per_owned
        };
        let per = humantime::parse_duration(per)
            .map_err(|e| format!("{s:?}: period is not a duration ({e})"))?;
        if per.is_zero() {
            return Err(format!("{s:?}: the period must be longer than zero"));
        }
        Ok(Self { requests, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.requests,
            humantime::format_duration(self.per)
        )
    }
}

#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub kind: SourceKind,
    pub url: Url,
    pub name: Option<String>,
    pub encoding: Option<&'static encoding_rs::Encoding>,
    pub headers: Vec<(String, String)>,
    pub interval: Duration,
    pub jitter: f64,
    pub max_backoff: Duration,
    pub timeout: Duration,
    pub per_host: RateLimit,
    pub max_in_flight_per_host: usize,
    pub user_agent: String,
    pub max_body: u64,
    pub backlog: bool,
    pub max_age: Option<Duration>,
    pub robots: bool,
    pub date_format: Option<String>,
    /// Set for `kind = "html"`.
    pub html: Option<Arc<HtmlSource>>,
    /// Set for `kind = "json"`.
    pub json: Option<Arc<JsonSource>>,
    pub auth: Auth,
    /// How much this source's items count in the risk score.
    pub weight: f64,
}

impl Source {
    /// A feed source with the built-in defaults (for tools and tests that build sources
    /// without a config file).
    pub fn feed(id: &str, url: Url) -> Source {
        let base = SourceBase::fallback();
        Source {
            id: id.to_string(),
            kind: SourceKind::Feed,
            url,
            name: None,
            encoding: None,
            headers: Vec::new(),
            interval: base.interval,
            jitter: base.jitter,
            max_backoff: base.max_backoff,
            timeout: base.timeout,
            per_host: base.per_host,
            max_in_flight_per_host: base.max_in_flight_per_host,
            user_agent: base.user_agent,
            max_body: base.max_body,
            backlog: base.backlog,
            max_age: base.max_age,
            robots: true,
            date_format: None,
            html: None,
            json: None,
            auth: Auth::default(),
            weight: 1.0,
        }
    }

    /// The key the per-host limits are kept under: host and port, since two servers on one
    /// host but different ports are different servers.
    pub fn host_key(&self) -> String {
        host_key(&self.url)
    }
}

pub fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

#[derive(Debug, Clone)]
pub struct Department {
    pub id: String,
    pub name: String,
    pub keywords: Vec<String>,
    pub exclude: Vec<String>,
    pub rules: Vec<crate::rules::Rule>,
    pub webhook: Url,
}

/// How matches are judged (研判): the weights of the score's factors, the level thresholds and
/// the alert lifecycle's timings.
#[derive(Debug, Clone, PartialEq)]
pub struct AssessSettings {
    /// The first alert of an event waits this long to fold near-simultaneous items in; zero
    /// folds only the items of one poll.
    pub group_wait: Duration,
    /// A growing event that has not changed level is re-sent at most this often.
    pub repeat_interval: Duration,
    /// An item joins an event last seen at most this long ago.
    pub event_window: Duration,
    /// Local (daemon timezone) times between which alerts below orange (重大) are held.
    pub quiet_hours: Option<(chrono::NaiveTime, chrono::NaiveTime)>,
    pub spike_k: f64,
    pub spike_days: u32,
    pub spike_min: u32,
    /// Items after a response that make a renewed rise.
    pub after_response_rise: u32,
    /// Extra negative words (weight 1) on top of the shipped lexicon.
    pub negative_words: Vec<String>,
    pub weights: Weights,
    /// Score thresholds for yellow, orange, red.
    pub levels: [f64; 3],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub rules: f64,
    pub source: f64,
    pub engagement: f64,
    pub spread: f64,
    pub velocity: f64,
    pub sentiment: f64,
}

impl Default for AssessSettings {
    fn default() -> Self {
        AssessSettings {
            group_wait: Duration::ZERO,
            repeat_interval: Duration::from_secs(4 * 3600),
            event_window: Duration::from_secs(3 * 86_400),
            quiet_hours: None,
            spike_k: 3.0,
            spike_days: 7,
            spike_min: 5,
            after_response_rise: 3,
            negative_words: Vec::new(),
            weights: Weights {
                rules: 1.0,
                source: 1.0,
                engagement: 1.0,
                spread: 1.0,
                velocity: 1.0,
                sentiment: 1.0,
            },
            levels: [6.0, 10.0, 15.0],
        }
    }
}

/// A silence: while `starts <= now < ends`, alerts matching all of its matchers are recorded
/// but not sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: String,
    pub department: Option<String>,
    pub rule: Option<String>,
    pub source: Option<String>,
    /// Matched against the normalised title and text.
    pub text: Option<String>,
    pub starts: Option<chrono::DateTime<chrono::Utc>>,
    pub ends: chrono::DateTime<chrono::Utc>,
    pub comment: String,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: Option<Url>,
    pub secret: SecretRef,
    pub timeout: Duration,
    pub max_backoff: Duration,
}

/// One problem in the configuration, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Set when the value came from an environment override rather than the file.
    pub env_var: Option<String>,
    /// e.g. `source[3] "city-forum": interval`
    pub location: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match (&self.env_var, self.line) {
            (Some(var), _) => write!(f, "{file}: {var} (environment): ")?,
            (None, Some(line)) => write!(f, "{file}:{line}: ")?,
            (None, None) => write!(f, "{file}: ")?,
        }
        if self.location.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.location, self.message)
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{} problem(s) in {}:\n{}", issues.len(), path.display(), render(issues))]
    Invalid { path: PathBuf, issues: Vec<Issue> },
}

fn render(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("  {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads, merges environment overrides, and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("TINGFENG__"))
            .collect();
        Self::from_parts(path, &text, &env)
    }

    /// Validates `text` as if read from `path`, with `env` as the environment overrides.
    pub fn from_parts(
        path: &Path,
        text: &str,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        // toml_edit gives a precise syntax error with line and column; config's is vaguer.
        if let Err(e) = toml_edit::Document::parse(text) {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            });
        }
        let env_map: config::Map<String, String> = env.iter().cloned().collect();
        let merged = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("TINGFENG")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env_map)),
            )
            .build()
            .map_err(|e| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let mut v = Validator {
            department_ids: HashSet::new(),
            departments_without_keywords: HashSet::new(),
            file: path.to_path_buf(),
            locator: Locator::new(text.to_string()),
            env: env.iter().map(|(k, _)| k.to_ascii_uppercase()).collect(),
            issues: Vec::new(),
            warnings: Vec::new(),
        };
        let cfg = v.validate(merged);
        if v.issues.is_empty() {
            if let Some(mut cfg) = cfg {
                cfg.path = path.to_path_buf();
                cfg.warnings = v.warnings;
                return Ok(cfg);
            }
        }
        let mut issues = v.issues;
        // In file order, so a long report reads top to bottom like the file.
        issues.sort_by_key(|i| (i.env_var.is_none(), i.line.unwrap_or(0)));
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            issues,
        })
    }

    /// Total number of keywords and exclusions across departments.
    pub fn keyword_count(&self) -> usize {
        self.departments
            .iter()
            .map(|d| d.keywords.len() + d.exclude.len())
            .sum()
    }

    pub fn source(&self, id: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.id == id)
    }
}

struct Validator {
    /// Departments defined in the file (for sources that search their keywords).
    department_ids: HashSet<String>,
    departments_without_keywords: HashSet<String>,
    file: PathBuf,
    locator: Locator,
    env: HashSet<String>,
    issues: Vec<Issue>,
    warnings: Vec<String>,
}

/// Where a problem is: the key path and, for array elements, the element's id as a label.
struct At<'a> {
    path: KeyPath,
    label: Option<&'a str>,
}

impl Validator {
    fn issue(&mut self, at: &At<'_>, key: Option<&str>, message: impl Into<String>) {
        let path = match key {
            Some(k) => at.path.key(k),
            None => at.path.clone(),
        };
        let env_var = path.env_var().filter(|v| self.env.contains(v));
        let line = self.locator.line_of(&path);
        self.issues.push(Issue {
            file: self.file.clone(),
            line,
            env_var,
            location: describe(&at.path, at.label, key),
            message: message.into(),
        });
    }

    fn duration(&mut self, at: &At<'_>, key: &str, value: Option<&str>) -> Option<Duration> {
        let s = value?;
        match humantime::parse_duration(s.trim()) {
            Ok(d) if d.is_zero() => {
                self.issue(at, Some(key), format!("{s:?} must be longer than zero"));
                None
            }
            Ok(d) if d > MAX_DURATION => {
                self.issue(
                    at,
                    Some(key),
                    format!("{s:?} is longer than the 10 years this daemon accepts"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                self.issue(
                    at,
                    Some(key),
                    format!("{s:?} is not a duration (write e.g. \"90s\", \"5m\", \"2h\")"),
                );
                None
            }
        }
    }

    fn url(&mut self, at: &At<'_>, key: &str, value: Option<&str>) -> Option<Url> {
        let s = value?;
        match Url::parse(s.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
            Ok(u) => {
                self.issue(
                    at,
                    Some(key),
                    format!("{s:?}: only http and https URLs with a host are supported (got scheme {:?})", u.scheme()),
                );
                None
            }
            Err(e) => {
                self.issue(at, Some(key), format!("{s:?} is not a valid URL ({e})"));
                None
            }
        }
    }

    fn section<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        table: &mut config::Map<String, config::Value>,
        name: &str,
    ) -> T {
        let Some(value) = table.remove(name) else {
            return T::default();
        };
        let at = At {
            path: KeyPath::root().key(name),
            label: None,
        };
        // `[lists]` has names of the analysts' choosing, not fixed keys.
        let known = raw::known_keys(name);
        let value = if known.is_empty() {
            value
        } else {
            self.drop_unknown_keys(&at, value, known)
        };
        match value.try_deserialize::<T>() {
            Ok(v) => v,
            Err(e) => {
                let msg = clean_serde_message(&e.to_string());
                let key = backticked(&msg);
                self.issue(&at, key.as_deref(), msg);
                T::default()
            }
        }
    }

    /// Reports every unknown key of a table (serde would stop at the first) and removes them,
    /// so the remaining keys are still checked in the same pass.
    fn drop_unknown_keys(
        &mut self,
        at: &At<'_>,
        value: config::Value,
        known: &[&str],
    ) -> config::Value {
        let origin = value.origin().map(str::to_string);
        let Ok(mut table) = value.clone().into_table() else {
            return value;
        };
        let mut unknown: Vec<String> = table
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        if unknown.is_empty() {
            return value;
        }
        unknown.sort();
        for k in &unknown {
            table.remove(k);
            let hint = closest(k, known)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            self.issue(
                at,
                Some(k),
                format!(
                    "unknown key `{k}`{hint}; expected one of {}",
                    known.join(", ")
                ),
            );
        }
        config::Value::new(origin.as_ref(), config::ValueKind::Table(table))
    }

    fn array<T: serde::de::DeserializeOwned>(
        &mut self,
        table: &mut config::Map<String, config::Value>,
        name: &str,
    ) -> Vec<(usize, Option<T>)> {
        let Some(value) = table.remove(name) else {
            return Vec::new();
        };
        let at = At {
            path: KeyPath::root().key(name),
            label: None,
        };
        let elements = match value.into_array() {
            Ok(a) => a,
            Err(_) => {
                self.issue(
                    &at,
                    None,
                    format!("must be an array of tables: write [[{name}]] sections"),
                );
                return Vec::new();
            }
        };
        elements
            .into_iter()
            .enumerate()
            .map(|(i, el)| {
                let id = el
                    .clone()
                    .into_table()
                    .ok()
                    .and_then(|t| t.get("id").and_then(|v| v.clone().into_string().ok()));
                let el_at = At {
                    path: KeyPath::root().key(name).index(i),
                    label: id.as_deref(),
                };
                let el = self.drop_unknown_keys(&el_at, el, raw::known_keys(name));
                match el.try_deserialize::<T>() {
                    Ok(v) => (i, Some(v)),
                    Err(e) => {
                        let msg = clean_serde_message(&e.to_string());
                        let key = backticked(&msg);
                        let at = At {
                            path: KeyPath::root().key(name).index(i),
                            label: id.as_deref(),
                        };
                        self.issue(&at, key.as_deref(), msg);
                        (i, None)
                    }
                }
            })
            .collect()
    }

    fn validate(&mut self, merged: config::Config) -> Option<Config> {
        let mut top: config::Map<String, config::Value> = match merged.try_deserialize() {
            Ok(t) => t,
            Err(e) => {
                let at = At {
                    path: KeyPath::root(),
                    label: None,
                };
                self.issue(&at, None, e.to_string());
                return None;
            }
        };
        let daemon: RawDaemon = self.section(&mut top, "daemon");
        let defaults: RawDefaults = self.section(&mut top, "defaults");
        let webhook: RawWebhook = self.section(&mut top, "webhook");
        let ops_raw: Option<RawOpsWebhook> = top
            .contains_key("ops_webhook")
            .then(|| self.section(&mut top, "ops_webhook"));
        let lists_raw: BTreeMap<String, Vec<String>> = self.section(&mut top, "lists");
        let assess_raw: RawAssess = self.section(&mut top, "assess");
        let silences_raw: Vec<(usize, Option<RawSilence>)> = self.array(&mut top, "silence");
        let sources: Vec<(usize, Option<RawSource>)> = self.array(&mut top, "source");
        let departments: Vec<(usize, Option<RawDepartment>)> = self.array(&mut top, "department");
        let mut unknown: Vec<String> = top.keys().cloned().collect();
        unknown.sort();
        for key in unknown {
            let at = At {
                path: KeyPath::root(),
                label: None,
            };
            self.issue(
                &at,
                Some(&key),
                "unknown section (expected daemon, defaults, source, department, webhook, ops_webhook, lists, assess, silence)",
            );
        }

        let daemon = self.daemon(daemon);
        let (client, base) = self.defaults(&defaults);
        let webhook = self.webhook(webhook);
        let lists = self.lists(lists_raw);
        let departments = self.departments(departments, &webhook, &lists);
        self.department_ids = departments.iter().map(|d| d.id.clone()).collect();
        self.departments_without_keywords = departments
            .iter()
            .filter(|d| d.keywords.is_empty())
            .map(|d| d.id.clone())
            .collect();
        let sources = self.sources(sources, &base);
        let ops = self.ops(ops_raw);
        let assess = self.assess(assess_raw);
        if let Some(d) = &daemon {
            // Retention that drops what judging still reads would make old matters look new
            // and empty hours look quiet (false spikes).
            let needed = assess
                .event_window
                .max(Duration::from_secs(86_400 * (assess.spike_days as u64 + 1)));
            if d.retention < needed {
                let at = At {
                    path: KeyPath::root().key("daemon"),
                    label: None,
                };
                self.issue(
                    &at,
                    Some("retention"),
                    format!(
                        "{} is shorter than what risk judging reads back ({}: assess.event_window and assess.spike_days + 1 day)",
                        humantime::format_duration(d.retention),
                        humantime::format_duration(needed)
                    ),
                );
            }
        }
        let silences = self.silences(silences_raw, &sources, &departments);
        if sources.is_empty() && self.issues.is_empty() {
            self.warnings
                .push("no [[source]] configured: the daemon will poll nothing".into());
        }
        Some(Config {
            path: PathBuf::new(),
            daemon: daemon?,
            client: client?,
            sources,
            departments,
            webhook: webhook?,
            ops,
            lists,
            assess,
            silences,
            warnings: Vec::new(),
        })
    }

    /// A finite, non-negative number (a weight or a threshold).
    fn factor(&mut self, at: &At<'_>, key: &str, value: Option<f64>, default: f64) -> f64 {
        match value {
            None => default,
            Some(v) if v.is_finite() && (0.0..=1000.0).contains(&v) => v,
            Some(v) => {
                self.issue(
                    at,
                    Some(key),
                    format!("{v} must be a number from 0 to 1000"),
                );
                default
            }
        }
    }

    fn assess(&mut self, raw: RawAssess) -> AssessSettings {
        let at = At {
            path: KeyPath::root().key("assess"),
            label: None,
        };
        let mut out = AssessSettings::default();
        // Zero is meaningful here: no wait beyond the poll's own batch.
        if let Some(s) = raw.group_wait.as_deref() {
            match humantime::parse_duration(s.trim()) {
                Ok(d) if d <= Duration::from_secs(3600) => out.group_wait = d,
                Ok(_) => self.issue(
                    &at,
                    Some("group_wait"),
                    format!("{s:?} is longer than an hour: alerts would be late"),
                ),
                Err(_) => self.issue(
                    &at,
                    Some("group_wait"),
                    format!("{s:?} is not a duration (write e.g. \"0s\", \"30s\", \"2m\")"),
                ),
            }
        }
        if let Some(d) = self.duration(&at, "repeat_interval", raw.repeat_interval.as_deref()) {
            out.repeat_interval = d;
        }
        if let Some(d) = self.duration(&at, "event_window", raw.event_window.as_deref()) {
            out.event_window = d;
        }
        if let Some(s) = raw.quiet_hours.as_deref() {
            match parse_quiet_hours(s) {
                Some(q) => out.quiet_hours = Some(q),
                None => self.issue(
                    &at,
                    Some("quiet_hours"),
                    format!("{s:?} is not a time range (write e.g. \"22:00-07:00\")"),
                ),
            }
        }
        out.spike_k = self.factor(&at, "spike_k", raw.spike_k, out.spike_k);
        out.spike_days = match raw.spike_days {
            None => out.spike_days,
            Some(n) if (1..=60).contains(&n) => n as u32,
            Some(n) => {
                self.issue(
                    &at,
                    Some("spike_days"),
                    format!("{n} must be between 1 and 60"),
                );
                out.spike_days
            }
        };
        out.spike_min =
            self.positive(&at, "spike_min", raw.spike_min, out.spike_min as usize) as u32;
        out.after_response_rise = self.positive(
            &at,
            "after_response_rise",
            raw.after_response_rise,
            out.after_response_rise as usize,
        ) as u32;
        if let Some(words) = &raw.negative_words {
            out.negative_words = self.keyword_list(&at, "negative_words", words);
        }
        if let Some(w) = raw.weights {
            let at = At {
                path: at.path.key("weights"),
                label: None,
            };
            let d = out.weights.clone();
            out.weights = Weights {
                rules: self.factor(&at, "rules", w.rules, d.rules),
                source: self.factor(&at, "source", w.source, d.source),
                engagement: self.factor(&at, "engagement", w.engagement, d.engagement),
                spread: self.factor(&at, "spread", w.spread, d.spread),
                velocity: self.factor(&at, "velocity", w.velocity, d.velocity),
                sentiment: self.factor(&at, "sentiment", w.sentiment, d.sentiment),
            };
        }
        if let Some(l) = raw.levels {
            let at = At {
                path: at.path.key("levels"),
                label: None,
            };
            let [y, o, r] = out.levels;
            let levels = [
                self.factor(&at, "yellow", l.yellow, y),
                self.factor(&at, "orange", l.orange, o),
                self.factor(&at, "red", l.red, r),
            ];
            if levels[0] < levels[1] && levels[1] < levels[2] {
                out.levels = levels;
            } else {
                self.issue(
                    &at,
                    None,
                    format!(
                        "thresholds must rise: yellow < orange < red (got {} / {} / {})",
                        levels[0], levels[1], levels[2]
                    ),
                );
            }
        }
        out
    }

    fn silences(
        &mut self,
        raws: Vec<(usize, Option<RawSilence>)>,
        sources: &[Source],
        departments: &[Department],
    ) -> Vec<Silence> {
        let mut out = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, raw) in raws {
            let Some(raw) = raw else { continue };
            let at = At {
                path: KeyPath::root().key("silence").index(i),
                label: raw.id.as_deref(),
            };
            let id = match raw.id.as_deref() {
                Some(_) => self.element_id(
                    &at,
                    raw.id.as_deref(),
                    i,
                    &mut seen,
                    "silence",
                    "is missing",
                ),
                None => Some(format!("silence-{}", i + 1)),
            };
            let time = |v: &mut Self,
                        key: &str,
                        s: Option<&str>|
             -> Option<chrono::DateTime<chrono::Utc>> {
                let s = s?;
                match chrono::DateTime::parse_from_rfc3339(s.trim()) {
                    Ok(t) => Some(t.with_timezone(&chrono::Utc)),
                    Err(_) => {
                        v.issue(&at, Some(key), format!("{s:?} is not an RFC 3339 time (write e.g. \"2026-12-01T08:00:00+08:00\")"));
                        None
                    }
                }
            };
            let starts = time(self, "starts", raw.starts.as_deref());
            let ends = match raw.ends.as_deref() {
                None => {
                    self.issue(
                        &at,
                        Some("ends"),
                        "is missing: a silence must end (a permanent one belongs in `exclude`)",
                    );
                    None
                }
                s => time(self, "ends", s),
            };
            if let (Some(s), Some(e)) = (starts, ends) {
                if e <= s {
                    self.issue(&at, Some("ends"), "is not after `starts`");
                }
            }
            if let Some(d) = &raw.department {
                if !departments.iter().any(|x| &x.id == d) {
                    self.issue(
                        &at,
                        Some("department"),
                        format!("{d:?} is not a configured department"),
                    );
                }
            }
            if let Some(src) = &raw.source {
                if !sources.iter().any(|x| &x.id == src) {
                    self.issue(
                        &at,
                        Some("source"),
                        format!("{src:?} is not a configured source"),
                    );
                }
            }
            let text = raw
                .text
                .as_deref()
                .map(crate::text::normalize_pattern)
                .filter(|t| !t.is_empty());
            if raw.text.is_some() && text.is_none() {
                self.issue(&at, Some("text"), "is empty after normalisation");
            }
            if raw.department.is_none()
                && raw.rule.is_none()
                && raw.source.is_none()
                && text.is_none()
            {
                self.issue(
                    &at,
                    None,
                    "has no matcher: give at least one of department, rule, source, text",
                );
            }
            let comment = raw.comment.clone().unwrap_or_default();
            if comment.trim().is_empty() {
                self.warnings.push(format!(
                    "silence[{i}] has no comment: say why alerts are held back"
                ));
            }
            if let (Some(id), Some(ends)) = (id, ends) {
                out.push(Silence {
                    id,
                    department: raw.department,
                    rule: raw.rule,
                    source: raw.source,
                    text,
                    starts,
                    ends,
                    comment,
                });
            }
        }
        out
    }

    fn daemon(&mut self, raw: RawDaemon) -> Option<DaemonSettings> {
        let at = At {
            path: KeyPath::root().key("daemon"),
            label: None,
        };
        let listen_s = raw.listen.as_deref().unwrap_or("127.0.0.1:9600");
        let listen = match listen_s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.issue(
                    &at,
                    Some("listen"),
                    format!("{listen_s:?} is not an address:port such as \"127.0.0.1:9600\""),
                );
                None
            }
        };
        if let Some(addr) = listen {
            if !addr.ip().is_loopback()
                && raw.api_token_env.is_none()
                && raw.api_token_file.is_none()
            {
                self.issue(
                    &at,
                    Some("listen"),
                    format!("{addr} is not loopback: set daemon.api_token_env or api_token_file so the API requires a token"),
                );
            }
        }
        let tz_s = raw.timezone.as_deref().unwrap_or("Asia/Shanghai");
        let timezone = match tz_s.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.issue(
                    &at,
                    Some("timezone"),
                    format!("{tz_s:?} is not an IANA time zone such as \"Asia/Shanghai\""),
                );
                None
            }
        };
        let retention = self
            .duration(&at, "retention", raw.retention.as_deref())
            .unwrap_or(Duration::from_secs(90 * 86_400));
        let shutdown_grace = self
            .duration(&at, "shutdown_grace", raw.shutdown_grace.as_deref())
            .unwrap_or(Duration::from_secs(10));
        let max_concurrent_fetches = self.positive(
            &at,
            "max_concurrent_fetches",
            raw.max_concurrent_fetches,
            16,
        );
        let cache_mb = self.positive(&at, "cache_capacity_mb", raw.cache_capacity_mb, 64);
        let data_dir = raw.data_dir.unwrap_or_else(|| "data".into());
        if data_dir.trim().is_empty() {
            self.issue(&at, Some("data_dir"), "must not be empty");
        }
        Some(DaemonSettings {
            data_dir: PathBuf::from(data_dir),
            listen: listen?,
            timezone: timezone?,
            retention,
            max_concurrent_fetches,
            cache_capacity_bytes: cache_mb as u64 * 1024 * 1024,
            shutdown_grace,
            api_token: SecretRef {
                env: raw.api_token_env,
                file: raw.api_token_file.map(PathBuf::from),
            },
        })
    }

    fn positive(&mut self, at: &At<'_>, key: &str, value: Option<i64>, default: usize) -> usize {
        match value {
            None => default,
            Some(n) if n > MAX_COUNT => {
                self.issue(
                    at,
                    Some(key),
                    format!("{n} is more than the {MAX_COUNT} this daemon accepts"),
                );
                default
            }
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(default),
            Some(n) => {
                self.issue(at, Some(key), format!("{n} must be at least 1"));
                default
            }
        }
    }

    fn defaults(&mut self, raw: &RawDefaults) -> (Option<ClientSettings>, Option<SourceBase>) {
        let at = At {
            path: KeyPath::root().key("defaults"),
            label: None,
        };
        let connect_timeout = self
            .duration(&at, "connect_timeout", raw.connect_timeout.as_deref())
            .unwrap_or(Duration::from_secs(10));
        let max_redirects = match raw.max_redirects {
            None => 5,
            Some(n) if (0..=20).contains(&n) => n as usize,
            Some(n) => {
                self.issue(
                    &at,
                    Some("max_redirects"),
                    format!("{n} must be between 0 and 20"),
                );
                5
            }
        };
        let user_agent = raw
            .user_agent
            .clone()
            .unwrap_or_else(|| format!("tingfeng/{}", env!("CARGO_PKG_VERSION")));
        let built_in = SourceBase {
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(20),
            per_host: RateLimit {
                requests: 1,
                per: Duration::from_secs(2),
            },
            max_in_flight_per_host: 1,
            user_agent: user_agent.clone(),
            max_body: 10 * 1024 * 1024,
            jitter: 0.1,
            max_backoff: Duration::from_secs(6 * 3600),
            backlog: true,
            max_age: None,
        };
        let base = self.apply(&at, raw, &built_in);
        (
            Some(ClientSettings {
                connect_timeout,
                max_redirects,
                user_agent,
            }),
            Some(base),
        )
    }

    /// Layers the keys of `raw` over `base`, reporting bad values at `at`.
    fn apply(&mut self, at: &At<'_>, raw: &RawDefaults, base: &SourceBase) -> SourceBase {
        let mut out = base.clone();
        if let Some(d) = self.duration(at, "interval", raw.interval.as_deref()) {
            out.interval = d;
        }
        if let Some(d) = self.duration(at, "timeout", raw.timeout.as_deref()) {
            out.timeout = d;
        }
        if let Some(s) = raw.per_host.as_deref() {
            match RateLimit::parse(s) {
                Ok(r) => out.per_host = r,
                Err(e) => self.issue(at, Some("per_host"), e),
            }
        }
        if raw.max_in_flight_per_host.is_some() {
            out.max_in_flight_per_host =
                self.positive(at, "max_in_flight_per_host", raw.max_in_flight_per_host, 1);
        }
        if let Some(ua) = &raw.user_agent {
            if ua.trim().is_empty() || reqwest::header::HeaderValue::from_str(ua).is_err() {
                self.issue(
                    at,
                    Some("user_agent"),
                    format!("{ua:?} is not a valid header value"),
                );
            } else {
                out.user_agent = ua.clone();
            }
        }
        if let Some(s) = raw.max_body.as_deref() {
            match parse_size(s) {
                Some(n) if n > 0 => out.max_body = n,
                _ => self.issue(
                    at,
                    Some("max_body"),
                    format!("{s:?} is not a size such as \"10MiB\", \"512KiB\" or \"2000000\""),
                ),
            }
        }
        if let Some(j) = raw.jitter {
            if (0.0..=0.5).contains(&j) {
                out.jitter = j;
            } else {
                self.issue(
                    at,
                    Some("jitter"),
                    format!("{j} must be between 0.0 and 0.5 (a fraction of the interval)"),
                );
            }
        }
        if let Some(d) = self.duration(at, "max_backoff", raw.max_backoff.as_deref()) {
            out.max_backoff = d;
        }
        if let Some(b) = raw.backlog {
            out.backlog = b;
        }
        if let Some(d) = self.duration(at, "max_age", raw.max_age.as_deref()) {
            out.max_age = Some(d);
        }
        out
    }

    fn webhook(&mut self, raw: RawWebhook) -> Option<WebhookSettings> {
        let at = At {
            path: KeyPath::root().key("webhook"),
            label: None,
        };
        let url = self.url(&at, "url", raw.url.as_deref());
        if let Some(var) = &raw.secret_env {
            if var.trim().is_empty() {
                self.issue(&at, Some("secret_env"), "names no environment variable");
            } else if std::env::var_os(var).is_none() {
                self.warnings.push(format!(
                    "webhook.secret_env names {var}, which is not set: alerts will be sent unsigned"
                ));
            }
        }
        let timeout = self
            .duration(&at, "timeout", raw.timeout.as_deref())
            .unwrap_or(Duration::from_secs(10));
        let max_backoff = self
            .duration(&at, "max_backoff", raw.max_backoff.as_deref())
            .unwrap_or(Duration::from_secs(300));
        Some(WebhookSettings {
            url,
            secret: SecretRef {
                env: raw.secret_env,
                file: raw.secret_file.map(PathBuf::from),
            },
            timeout,
            max_backoff,
        })
    }

    fn ops(&mut self, raw: Option<RawOpsWebhook>) -> Option<OpsSettings> {
        let raw = raw?;
        let at = At {
            path: KeyPath::root().key("ops_webhook"),
            label: None,
        };
        let url = match raw.url.as_deref() {
            None => {
                self.issue(&at, Some("url"), "is missing");
                None
            }
            s => self.url(&at, "url", s),
        };
        let failures = match raw.failures {
            None => 3,
            Some(n) if (1..=1000).contains(&n) => n as u32,
            Some(n) => {
                self.issue(
                    &at,
                    Some("failures"),
                    format!("{n} must be between 1 and 1000"),
                );
                3
            }
        };
        let silent_after = self
            .duration(&at, "silent_after", raw.silent_after.as_deref())
            .unwrap_or(Duration::from_secs(24 * 3600));
        Some(OpsSettings {
            url: url?,
            secret: SecretRef {
                env: raw.secret_env,
                file: raw.secret_file.map(PathBuf::from),
            },
            failures,
            silent_after,
        })
    }

    fn sources(
        &mut self,
        raws: Vec<(usize, Option<RawSource>)>,
        base: &Option<SourceBase>,
    ) -> Vec<Source> {
        let mut out = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let base = base.clone().unwrap_or_else(SourceBase::fallback);
        for (i, raw) in raws {
            let Some(raw) = raw else { continue };
            let at = At {
                path: KeyPath::root().key("source").index(i),
                label: raw.id.as_deref(),
            };
            let id = self.element_id(
                &at,
                raw.id.as_deref(),
                i,
                &mut seen,
                "source",
                "is missing: every source needs a unique, stable id",
            );
            let kind = match raw.kind.as_deref() {
                Some("feed") => Some(SourceKind::Feed),
                Some("html") => Some(SourceKind::Html),
                Some("json") => Some(SourceKind::Json),
                Some(k) => {
                    self.issue(
                        &at,
                        Some("kind"),
                        format!(
                            "{k:?} is not a source kind (expected \"feed\", \"html\" or \"json\")"
                        ),
                    );
                    None
                }
                None => {
                    self.issue(
                        &at,
                        Some("kind"),
                        "is missing (expected \"feed\", \"html\" or \"json\")",
                    );
                    None
                }
            };
            let json = match kind {
                Some(SourceKind::Json) => self.json_source(&at, &raw),
                _ => None,
            };
            let html = match kind {
                Some(SourceKind::Html) => self.html_source(&at, &raw),
                Some(SourceKind::Json) => None,
                _ => {
                    for (key, set) in [
                        ("select", raw.select.is_some()),
                        ("preset", raw.preset.is_some()),
                        ("detail", raw.detail.is_some()),
                        ("page_url", raw.page_url.is_some()),
                        ("max_pages", raw.max_pages.is_some()),
                    ] {
                        if set && kind.is_some() {
                            self.issue(&at, Some(key), "only html sources take this key");
                        }
                    }
                    None
                }
            };
            if let Some(fmt) = &raw.date_format {
                // chrono reports bad patterns only when used: check the items now.
                let ok = chrono::format::StrftimeItems::new(fmt)
                    .all(|i| !matches!(i, chrono::format::Item::Error));
                if !ok {
                    self.issue(
                        &at,
                        Some("date_format"),
                        format!("{fmt:?} is not a valid strftime pattern"),
                    );
                }
            }
            let url = match raw.url.as_deref() {
                None => {
                    self.issue(&at, Some("url"), "is missing");
                    None
                }
                s => self.url(&at, "url", s),
            };
            let encoding = raw.encoding.as_deref().and_then(|label| {
                let enc = charset::lookup_label(label);
                if enc.is_none() {
                    self.issue(
                        &at,
                        Some("encoding"),
                        format!("{label:?} is not a known character encoding label"),
                    );
                }
                enc
            });
            let mut headers = Vec::new();
            for (name, value) in raw.headers.iter().flatten() {
                let ok_name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
                let ok_value = reqwest::header::HeaderValue::from_str(value).is_ok();
                if !ok_name || !ok_value {
                    let at = At {
                        path: at.path.key("headers"),
                        label: at.label,
                    };
                    self.issue(&at, Some(name), "is not a valid HTTP header name and value");
                } else {
                    headers.push((name.clone(), value.clone()));
                }
            }
            let settings = self.apply(&at, &raw.overrides(), &base);
            if settings.interval < POLITE_INTERVAL {
                self.warnings.push(format!(
                    "source {:?}: interval {} is below {}: fine for local sources, impolite for public sites",
                    raw.id.as_deref().unwrap_or("?"),
                    humantime::format_duration(settings.interval),
                    humantime::format_duration(POLITE_INTERVAL)
                ));
            }
            if raw.enabled == Some(false) {
                continue;
            }
            if (kind == Some(SourceKind::Html) && html.is_none())
                || (kind == Some(SourceKind::Json) && json.is_none())
            {
                continue;
            }
            if raw.search_departments.is_some() && kind != Some(SourceKind::Json) {
                self.issue(
                    &at,
                    Some("search_departments"),
                    "only json sources take this key",
                );
            }
            let auth = Auth {
                cookie: SecretRef {
                    env: raw.cookie_env.clone(),
                    file: None,
                },
                token: SecretRef {
                    env: raw.token_env.clone(),
                    file: raw.token_file.clone().map(PathBuf::from),
                },
            };
            let weight = self.factor(&at, "weight", raw.weight, 1.0);
            if let (Some(id), Some(kind), Some(url)) = (id, kind, url) {
                out.push(Source {
                    id,
                    kind,
                    url,
                    name: raw.name,
                    encoding,
                    headers,
                    interval: settings.interval,
                    jitter: settings.jitter,
                    max_backoff: settings.max_backoff,
                    timeout: settings.timeout,
                    per_host: settings.per_host,
                    max_in_flight_per_host: settings.max_in_flight_per_host,
                    user_agent: settings.user_agent,
                    max_body: settings.max_body,
                    backlog: settings.backlog,
                    max_age: settings.max_age,
                    robots: raw.robots.unwrap_or(true),
                    date_format: raw.date_format.clone(),
                    html,
                    json,
                    auth,
                    weight,
                });
            }
        }
        out
    }

    /// Checks an element's `id`: present, well-formed, unique among its kind.
    fn element_id(
        &mut self,
        at: &At<'_>,
        raw: Option<&str>,
        index: usize,
        seen: &mut BTreeMap<String, usize>,
        kind: &str,
        missing: &str,
    ) -> Option<String> {
        match raw.map(str::trim) {
            None | Some("") => {
                self.issue(at, Some("id"), missing);
                None
            }
            Some(id) if !valid_id(id) => {
                self.issue(
                    at,
                    Some("id"),
                    format!("{id:?} may hold only letters, digits, '-', '_' and '.'"),
                );
                None
            }
            Some(id) => {
                if let Some(first) = seen.insert(id.to_string(), index) {
                    self.issue(
                        at,
                        Some("id"),
                        format!("{id:?} is already used by {kind}[{first}]"),
                    );
                }
                Some(id.to_string())
            }
        }
    }

    /// Compiles a json source's JSONPaths (a preset overridden key by key by `select`).
    fn json_source(&mut self, at: &At<'_>, raw: &RawSource) -> Option<Arc<JsonSource>> {
        let mut merged: BTreeMap<String, String> = BTreeMap::new();
        let preset = match &raw.preset {
            None => None,
            Some(name) => match json::Preset::parse(name) {
                Some(p) => {
                    merged.extend(
                        p.selectors()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string())),
                    );
                    Some(p)
                }
                None => {
                    self.issue(
                        at,
                        Some("preset"),
                        format!(
                            "{name:?} is not a json preset (have: {})",
                            json::PRESETS.join(", ")
                        ),
                    );
                    return None;
                }
            },
        };
        merged.extend(raw.select.clone().unwrap_or_default());
        let sel_at = At {
            path: at.path.key("select"),
            label: at.label,
        };
        let mut ok = true;
        let compile = |this: &mut Self, key: &str, value: &str| -> Option<json::Field> {
            match json::Field::parse(value) {
                Ok(f) => Some(f),
                Err(e) => {
                    this.issue(&sel_at, Some(key), e);
                    None
                }
            }
        };
        let item = match merged.remove("item") {
            None => {
                self.issue(
                    at,
                    Some("select"),
                    "needs an `item` JSONPath (selecting each post), or a preset",
                );
                return None;
            }
            Some(v) => compile(self, "item", &v),
        };
        ok &= item.is_some();
        let link_template = merged.remove("link_template");
        let cursor_param = merged.remove("cursor_param");
        let cursor_path = match merged.remove("cursor_path") {
            Some(v) => {
                let f = compile(self, "cursor_path", &v);
                ok &= f.is_some();
                f
            }
            None => None,
        };
        let mut fields = BTreeMap::new();
        for (key, value) in &merged {
            if !json::FIELDS.contains(&key.as_str()) {
                self.issue(&sel_at, Some(key), format!("is not a field (expected item, {}, link_template, cursor_param, cursor_path)", json::FIELDS.join(", ")));
                ok = false;
                continue;
            }
            match compile(self, key, value) {
                Some(f) => {
                    fields.insert(key.clone(), f);
                }
                None => ok = false,
            }
        }
        if ok && !fields.contains_key("text") && !fields.contains_key("title") {
            self.issue(at, Some("select"), "needs a `text` or a `title` field");
            ok = false;
        }
        let search_departments = raw.search_departments.clone().unwrap_or_default();
        let templated = raw.url.as_deref().is_some_and(|u| u.contains("{keyword}"));
        if templated && search_departments.is_empty() {
            self.issue(
                at,
                Some("search_departments"),
                "the url has {keyword}: name the departments whose keywords to search",
            );
            ok = false;
        }
        for d in &search_departments {
            if self.departments_without_keywords.contains(d) {
                self.issue(
                    at,
                    Some("search_departments"),
                    format!("{d:?} has no keywords to search (rules are not searched)"),
                );
                ok = false;
            }
            if !self.department_ids.contains(d) {
                self.issue(
                    at,
                    Some("search_departments"),
                    format!("{d:?} is not a department defined in this file"),
                );
                ok = false;
            }
        }
        if !templated && !search_departments.is_empty() {
            self.issue(
                at,
                Some("url"),
                "search_departments is set but the url has no {keyword}",
            );
            ok = false;
        }
        let max_pages = match raw.max_pages {
            None if cursor_param.is_some() && !templated => 3,
            None => 1,
            Some(n) if (1..=50).contains(&n) => n as usize,
            Some(n) => {
                self.issue(
                    at,
                    Some("max_pages"),
                    format!("{n} must be between 1 and 50"),
                );
                ok = false;
                1
            }
        };
        let item = item?;
        ok.then(|| {
            Arc::new(JsonSource {
                spec: json::JsonSpec {
                    item,
                    fields,
                    link_template,
                    preset,
                    cursor_param,
                    cursor_path,
                },
                search_departments,
                url_template: templated.then(|| raw.url.clone()).flatten(),
                max_pages,
            })
        })
    }

    /// Compiles an html source's selectors (a preset overridden key by key by `select`).
    fn html_source(&mut self, at: &At<'_>, raw: &RawSource) -> Option<Arc<HtmlSource>> {
        let mut merged: BTreeMap<String, String> = BTreeMap::new();
        if let Some(name) = &raw.preset {
            match html::preset(name) {
                Some(p) => {
                    merged.extend(p.into_iter().map(|(k, v)| (k.to_string(), v.to_string())))
                }
                None => {
                    self.issue(
                        at,
                        Some("preset"),
                        format!(
                            "{name:?} is not a preset (have: {})",
                            html::PRESETS.join(", ")
                        ),
                    );
                    return None;
                }
            }
        }
        merged.extend(raw.select.clone().unwrap_or_default());
        let sel_at = At {
            path: at.path.key("select"),
            label: at.label,
        };
        let mut ok = true;
        let item = match merged.remove("item") {
            None => {
                self.issue(
                    at,
                    Some("select"),
                    "needs an `item` selector (one match per entry), or a preset",
                );
                return None;
            }
            Some(raw_item) => match scraper::Selector::parse(&raw_item) {
                Ok(s) => Some((s, raw_item)),
                Err(e) => {
                    self.issue(
                        &sel_at,
                        Some("item"),
                        format!("{raw_item:?} is not a valid CSS selector: {e}"),
                    );
                    ok = false;
                    None
                }
            },
        };
        let mut fields = BTreeMap::new();
        let mut next = None;
        for (key, value) in &merged {
            if key != "next" && !html::LIST_FIELDS.contains(&key.as_str()) {
                self.issue(
                    &sel_at,
                    Some(key),
                    format!(
                        "is not a field (expected item, {}, next)",
                        html::LIST_FIELDS.join(", ")
                    ),
                );
                ok = false;
                continue;
            }
            match html::FieldSpec::parse(value) {
                Ok(f) if key == "next" => next = Some(f),
                Ok(f) => {
                    fields.insert(key.clone(), f);
                }
                Err(e) => {
                    self.issue(&sel_at, Some(key), e);
                    ok = false;
                }
            }
        }
        if ok && !fields.contains_key("title") && !fields.contains_key("link") {
            self.issue(at, Some("select"), "needs a `title` or a `link` field");
            ok = false;
        }
        let detail = match &raw.detail {
            None => None,
            Some(d) => {
                let det_at = At {
                    path: at.path.key("detail"),
                    label: at.label,
                };
                let mut dfields = BTreeMap::new();
                for (key, value) in d {
                    if !html::DETAIL_FIELDS.contains(&key.as_str()) {
                        self.issue(
                            &det_at,
                            Some(key),
                            format!(
                                "is not a detail field (expected {})",
                                html::DETAIL_FIELDS.join(", ")
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    match html::FieldSpec::parse(value) {
                        Ok(f) => {
                            dfields.insert(key.clone(), f);
                        }
                        Err(e) => {
                            self.issue(&det_at, Some(key), e);
                            ok = false;
                        }
                    }
                }
                if !d.contains_key("content") {
                    self.issue(at, Some("detail"), "needs a `content` selector");
                    ok = false;
                }
                Some(html::DetailSpec { fields: dfields })
            }
        };
        if let Some(t) = &raw.page_url {
            if !t.contains("{page}") {
                self.issue(
                    at,
                    Some("page_url"),
                    format!("{t:?} has no {{page}} placeholder"),
                );
                ok = false;
            } else if Url::parse(&t.replace("{page}", "2")).is_err() {
                self.issue(
                    at,
                    Some("page_url"),
                    format!("{t:?} does not make a valid URL"),
                );
                ok = false;
            }
        }
        let paginated = next.is_some() || raw.page_url.is_some();
        let max_pages = match raw.max_pages {
            None if paginated => 3,
            None => 1,
            Some(n) if (1..=50).contains(&n) => n as usize,
            Some(n) => {
                self.issue(
                    at,
                    Some("max_pages"),
                    format!("{n} must be between 1 and 50"),
                );
                ok = false;
                1
            }
        };
        let (item, item_raw) = item?;
        ok.then(|| {
            Arc::new(HtmlSource {
                list: html::HtmlSpec {
                    item,
                    item_raw,
                    fields,
                    next,
                },
                detail,
                page_url: raw.page_url.clone(),
                max_pages,
            })
        })
    }

    fn lists(&mut self, raw: BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for (name, words) in raw {
            let at = At {
                path: KeyPath::root().key("lists"),
                label: None,
            };
            if !valid_id(&name) {
                self.issue(
                    &at,
                    Some(&name),
                    "a list name may hold only letters, digits, '-', '_' and '.'",
                );
                continue;
            }
            let words = self.keyword_list(&at, &name, &words);
            if words.is_empty() {
                self.issue(&at, Some(&name), "is empty");
                continue;
            }
            out.insert(name, words);
        }
        out
    }

    /// Parses a department's rules; every syntax error names the rule, its column and what
    /// was expected.
    fn rules(
        &mut self,
        at: &At<'_>,
        dept_id: &str,
        raws: &[raw::RawRule],
        lists: &BTreeMap<String, Vec<String>>,
    ) -> Vec<crate::rules::Rule> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for (i, r) in raws.iter().enumerate() {
            let (id, src, weight) = match r {
                raw::RawRule::Expr(e) => (None, e.clone(), None),
                raw::RawRule::Full(t) => (t.id.clone(), t.expr.clone(), t.weight),
            };
            let rule_at = At {
                path: at.path.key("rules").index(i),
                label: at.label,
            };
            let id = id.unwrap_or_else(|| format!("{dept_id}#{}", i + 1));
            if !ids.insert(id.clone()) {
                self.issue(
                    &rule_at,
                    None,
                    format!("rule id {id:?} is used twice in this department"),
                );
                continue;
            }
            let weight = weight.unwrap_or(1.0);
            if !(0.0..=100.0).contains(&weight) {
                self.issue(
                    &rule_at,
                    None,
                    format!("weight {weight} must be between 0 and 100"),
                );
                continue;
            }
            match crate::rules::expr::parse(&src) {
                Ok(expr) => {
                    let mut atoms = Vec::new();
                    expr.atoms(&mut atoms);
                    let mut ok = true;
                    for a in atoms {
                        match a {
                            crate::rules::expr::Expr::List(name) if !lists.contains_key(name) => {
                                self.issue(
                                    &rule_at,
                                    None,
                                    format!("{src:?}: @{name} is not a list in [lists]"),
                                );
                                ok = false;
                            }
                            crate::rules::expr::Expr::Term(t)
                                if crate::text::normalize_pattern(t).is_empty() =>
                            {
                                self.issue(
                                    &rule_at,
                                    None,
                                    format!("{src:?}: the term {t:?} is empty after normalisation"),
                                );
                                ok = false;
                            }
                            _ => {}
                        }
                    }
                    if ok {
                        out.push(crate::rules::Rule {
                            id,
                            expr,
                            source: src,
                            weight,
                        });
                    }
                }
                Err(e) => {
                    let pointer = format!("{}^", " ".repeat(e.column.saturating_sub(1)));
                    self.issue(
                        &rule_at,
                        None,
                        format!("rule {id:?}: {e}\n      {src}\n      {pointer}"),
                    );
                }
            }
        }
        out
    }

    fn departments(
        &mut self,
        raws: Vec<(usize, Option<RawDepartment>)>,
        webhook: &Option<WebhookSettings>,
        lists: &BTreeMap<String, Vec<String>>,
    ) -> Vec<Department> {
        let mut out = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let default_url = webhook.as_ref().and_then(|w| w.url.clone());
        for (i, raw) in raws {
            let Some(raw) = raw else { continue };
            let at = At {
                path: KeyPath::root().key("department").index(i),
                label: raw.id.as_deref(),
            };
            let id = self.element_id(
                &at,
                raw.id.as_deref(),
                i,
                &mut seen,
                "department",
                "is missing",
            );
            let name = raw.name.clone().filter(|n| !n.trim().is_empty());
            if name.is_none() {
                self.issue(
                    &at,
                    Some("name"),
                    "is missing: the alert shows it to people",
                );
            }
            let rules = self.rules(&at, raw.id.as_deref().unwrap_or("?"), &raw.rules, lists);
            let keywords = self.keyword_list(&at, "keywords", &raw.keywords);
            let exclude = self.keyword_list(&at, "exclude", &raw.exclude);
            if keywords.is_empty() && raw.keywords.is_empty() && raw.rules.is_empty() {
                self.issue(
                    &at,
                    Some("keywords"),
                    "is empty: a department needs at least one keyword or rule",
                );
            }
            let webhook = match raw.webhook.as_deref() {
                Some(s) => self.url(&at, "webhook", Some(s)),
                None => {
                    if default_url.is_none() && webhook.is_some() {
                        self.issue(
                            &at,
                            Some("webhook"),
                            "is not set and there is no [webhook] url to fall back on",
                        );
                    }
                    default_url.clone()
                }
            };
            if let (Some(id), Some(name), Some(webhook)) = (id, name, webhook) {
                out.push(Department {
                    id,
                    name,
                    keywords,
                    exclude,
                    rules,
                    webhook,
                });
            }
        }
        out
    }

    fn keyword_list(&mut self, at: &At<'_>, key: &str, list: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, k) in list.iter().enumerate() {
            let trimmed = k.trim();
            if trimmed.is_empty() || crate::text::normalize_pattern(trimmed).is_empty() {
                let at = At {
                    path: at.path.key(key).index(i),
                    label: at.label,
                };
                self.issue(
                    &at,
                    None,
                    format!("{key}[{i}] is empty or only punctuation"),
                );
                continue;
            }
            if seen.insert(crate::text::normalize_pattern(trimmed)) {
                out.push(trimmed.to_string());
            }
        }
        out
    }
}

/// The resolved per-source settings before a source's own overrides.
#[derive(Debug, Clone)]
struct SourceBase {
    interval: Duration,
    timeout: Duration,
    per_host: RateLimit,
    max_in_flight_per_host: usize,
    user_agent: String,
    max_body: u64,
    jitter: f64,
    max_backoff: Duration,
    backlog: bool,
    max_age: Option<Duration>,
}

impl SourceBase {
    fn fallback() -> Self {
        SourceBase {
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(20),
            per_host: RateLimit {
                requests: 1,
                per: Duration::from_secs(2),
            },
            max_in_flight_per_host: 1,
            user_agent: format!("tingfeng/{}", env!("CARGO_PKG_VERSION")),
            max_body: 10 * 1024 * 1024,
            jitter: 0.1,
            max_backoff: Duration::from_secs(6 * 3600),
            backlog: true,
            max_age: None,
        }
    }
}

/// "22:00-07:00" → (22:00, 07:00); the range may wrap past midnight.
fn parse_quiet_hours(s: &str) -> Option<(chrono::NaiveTime, chrono::NaiveTime)> {
    let (a, b) = s.split_once('-')?;
    let t = |x: &str| chrono::NaiveTime::parse_from_str(x.trim(), "%H:%M").ok();
    let (a, b) = (t(a)?, t(b)?);
    (a != b).then_some((a, b))
}

fn valid_id(id: &str) -> bool {
    id.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `source[3] "city-forum": interval`, `source[0] "forum": select.title`
fn describe(path: &KeyPath, label: Option<&str>, key: Option<&str>) -> String {
    // The label (the element's id) goes right after the array index of the element it
    // names: the first index in the path (`department[0] "urban": rules[1]`).
    let last_index = path.0.iter().position(|s| matches!(s, Seg::Index(_)));
    let (head, tail) = match last_index {
        Some(i) => path.0.split_at(i + 1),
        None => (&path.0[..0], &path.0[..]),
    };
    let mut s = KeyPath(head.to_vec()).to_string();
    if let Some(l) = label {
        s.push_str(&format!(" {l:?}"));
    }
    let mut rest = String::new();
    for seg in tail {
        match seg {
            Seg::Key(k) => {
                if !rest.is_empty() {
                    rest.push('.');
                }
                rest.push_str(k);
            }
            Seg::Index(i) => rest.push_str(&format!("[{i}]")),
        }
    }
    if let Some(k) = key {
        if !rest.is_empty() {
            rest.push('.');
        }
        rest.push_str(k);
    }
    match (s.is_empty(), rest.is_empty()) {
        (true, _) => rest,
        (false, true) => s,
        (false, false) => format!("{s}: {rest}"),
    }
}

/// The first `name` in a serde message such as "unknown field `intervall`, expected …".
fn backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    let name = &msg[start..start + len];
    (!name.is_empty() && !name.contains(' ')).then(|| name.to_string())
}

/// config's messages append " for key `…`" with its own flattened key, which would name the
/// wrong place next to ours.
fn clean_serde_message(msg: &str) -> String {
    match msg.find(" for key `") {
        Some(pos) => msg[..pos].to_string(),
        None => msg.to_string(),
    }
}

/// The known key closest to a typo, if it is close (at most 2 edits).
fn closest<'a>(typo: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(typo, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// "10MiB", "512 KiB", "1MB", "2000000".
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_parts(Path::new("sources.toml"), text, &[])
    }

    const GOOD: &str = r#"
[daemon]
data_dir = "data"

[defaults]
interval = "5m"
per_host = "1/2s"

[[source]]
id = "gov-news"
kind = "feed"
url = "https://www.example.gov.cn/rss.xml"
interval = "2m"

[[department]]
id = "urban"
name = "城市管理局"
keywords = ["城管", "占道经营"]
exclude = ["演习"]

[webhook]
url = "http://127.0.0.1:9700/alerts"
"#;

    #[test]
    fn good_config_loads() {
        let cfg = load(GOOD).unwrap();
        assert_eq!(cfg.sources.len(), 1);
        assert_eq!(cfg.sources[0].interval, Duration::from_secs(120));
        assert_eq!(cfg.sources[0].per_host.spacing(), Duration::from_secs(2));
        assert_eq!(
            cfg.departments[0].webhook.as_str(),
            "http://127.0.0.1:9700/alerts"
        );
        assert_eq!(cfg.keyword_count(), 3);
    }

    #[test]
    fn every_problem_is_reported_with_line_and_key() {
        let bad = GOOD
            .replace("interval = \"2m\"", "interval = \"5 minuets\"")
            .replace("per_host = \"1/2s\"", "per_host = \"fast\"")
            .replace(
                "exclude = [\"演习\"]",
                "exclude = [\"演习\"]\nkeywrods = [\"x\"]",
            );
        let err = load(&bad).unwrap_err();
        let ConfigError::Invalid { issues, .. } = &err else {
            panic!("expected Invalid, got {err}");
        };
        let text = err.to_string();
        assert!(
            text.contains("sources.toml:13: source[0] \"gov-news\": interval: \"5 minuets\" is not a duration"),
            "{text}"
        );
        assert!(text.contains("sources.toml:7: defaults.per_host"), "{text}");
        assert!(text.contains("keywrods"), "{text}");
        assert_eq!(issues.len(), 3, "{text}");
    }

    #[test]
    fn duplicate_ids_and_missing_webhook() {
        let text = r#"
[[source]]
id = "a"
kind = "feed"
url = "https://a.example/feed"
[[source]]
id = "a"
kind = "feed"
url = "not a url"
[[department]]
id = "d"
name = "D"
keywords = []
"#;
        let err = load(text).unwrap_err().to_string();
        assert!(err.contains("\"a\" is already used by source[0]"), "{err}");
        assert!(
            err.contains("sources.toml:9: source[1] \"a\": url"),
            "{err}"
        );
        assert!(err.contains("keywords: is empty"), "{err}");
    }

    #[test]
    fn env_override_is_applied_and_named() {
        let env = vec![(
            "TINGFENG__DAEMON__LISTEN".to_string(),
            "nonsense".to_string(),
        )];
        let err = Config::from_parts(Path::new("sources.toml"), GOOD, &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TINGFENG__DAEMON__LISTEN (environment)"),
            "{err}"
        );
        let env = vec![(
            "TINGFENG__DAEMON__DATA_DIR".to_string(),
            "/tmp/x".to_string(),
        )];
        let cfg = Config::from_parts(Path::new("sources.toml"), GOOD, &env).unwrap();
        assert_eq!(cfg.daemon.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn every_unknown_key_of_one_section_is_reported_with_a_hint() {
        let bad = GOOD
            .replace(
                "interval = \"5m\"",
                "intervall = \"5m\"\ntimout = \"3s\"\nper_host = \"x\"",
            )
            .replace("per_host = \"1/2s\"", "");
        let err = load(&bad).unwrap_err().to_string();
        assert!(
            err.contains("defaults.intervall: unknown key `intervall` (did you mean `interval`?)"),
            "{err}"
        );
        assert!(
            err.contains("defaults.timout: unknown key `timout` (did you mean `timeout`?)"),
            "{err}"
        );
        // The value errors of the same section are still found.
        assert!(
            err.contains("defaults.per_host: \"x\" is not a rate"),
            "{err}"
        );
        assert!(err.contains("sources.toml:6: defaults.intervall"), "{err}");
    }

    #[test]
    fn known_key_lists_match_the_structs() {
        // serde lists the fields it expects in its unknown-field error: compare with ours.
        fn expected<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
            let v = config::Value::new(
                None,
                config::ValueKind::Table(
                    [(
                        "zz_not_a_key".to_string(),
                        config::Value::new(None, config::ValueKind::Nil),
                    )]
                    .into_iter()
                    .collect(),
                ),
            );
            let msg = v.try_deserialize::<T>().unwrap_err().to_string();
            let list = msg.split("expected one of ").nth(1).unwrap_or("");
            list.split(", ")
                .map(|s| s.trim_matches(|c| c == '`' || c == ' ').to_string())
                .filter(|s| !s.is_empty())
                .map(|s| s.split('`').next().unwrap_or("").to_string())
                .collect()
        }
        let mut pairs = vec![
            ("daemon", expected::<RawDaemon>()),
            ("defaults", expected::<RawDefaults>()),
            ("source", expected::<RawSource>()),
            ("department", expected::<RawDepartment>()),
            ("webhook", expected::<RawWebhook>()),
            ("ops_webhook", expected::<RawOpsWebhook>()),
            ("assess", expected::<RawAssess>()),
            ("silence", expected::<RawSilence>()),
        ];
        for (name, mut from_serde) in pairs.drain(..) {
            let mut ours: Vec<String> = raw::known_keys(name)
                .iter()
                .map(|s| s.to_string())
                .collect();
            ours.sort();
            from_serde.sort();
            assert_eq!(ours, from_serde, "known keys of [{name}]");
        }
    }

    #[test]
    fn rates_and_sizes() {
        assert_eq!(
            RateLimit::parse("1/2s").unwrap().spacing(),
            Duration::from_secs(2)
        );
        assert_eq!(
            RateLimit::parse("10/m").unwrap().spacing(),
            Duration::from_secs(6)
        );
        assert!(RateLimit::parse("0/1s").is_err());
        assert!(RateLimit::parse("fast").is_err());
        assert_eq!(parse_size("10MiB"), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Some(512 * 1024));
        assert_eq!(parse_size("lots"), None);
    }
}
