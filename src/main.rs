//! The `tingfeng` command line: a thin layer that parses arguments, sets up logging and calls
//! the library. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.

use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tingfeng::config::Config;
use tingfeng::fetch::{Conditional, FetchOutcome, Fetcher};
use tingfeng::poll::extract_items;
use tingfeng::rules::Matcher;
use tingfeng::source::html;

/// How many detail pages try-source follows to show what they add.
const TRY_DETAILS: usize = 3;

#[derive(Parser)]
#[command(
    name = "tingfeng",
    version,
    about = "听风: public-opinion monitoring daemon"
)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM/SIGINT.
    Run {
        #[arg(long, default_value = "sources.toml")]
        config: PathBuf,
        /// If the store cannot be opened, move it aside and start empty, with silent first
        /// polls (no alert flood; matters that appeared meanwhile are recorded, not alerted).
        #[arg(long)]
        recover_store: bool,
    },
    /// Validate the configuration and print a summary; exit 2 on any problem.
    Check {
        #[arg(long, default_value = "sources.toml")]
        config: PathBuf,
    },
    /// Ask the running daemon (its HTTP API) for sources by health, pending deliveries and
    /// the newest alerts.
    Status {
        #[arg(long, default_value = "sources.toml")]
        config: PathBuf,
        /// The API base URL (default: from daemon.listen in the config).
        #[arg(long)]
        api: Option<String>,
        /// A file holding the API token (e.g. /etc/tingfeng/credentials/api-token), when the
        /// daemon gets its token from systemd rather than from the config.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Which departments and rules match a text, and why — term by term, near misses too.
    /// The text comes from the argument, standard input, or --item (an item in the store).
    TryRules {
        #[arg(long, default_value = "sources.toml")]
        config: PathBuf,
        /// The text to match (default: standard input).
        text: Option<String>,
        /// A title to match with the text.
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        author: Option<String>,
        /// The source id, for `source:` scopes.
        #[arg(long, default_value = "")]
        source: String,
        /// Match a stored item instead (by its id, as in alerts).
        #[arg(long)]
        item: Option<String>,
    },
    /// Run the current (edited) rules over stored items and compare with the alerts raised;
    /// writes nothing.
    Backtest {
        #[arg(long, default_value = "sources.toml")]
        config: PathBuf,
        /// How far back: a duration (7d, 24h) or an RFC 3339 time.
        #[arg(long, default_value = "7d")]
        since: String,
        #[arg(long)]
        department: Option<String>,
        /// Sample titles shown per change.
        #[arg(long, default_value_t = 3)]
        samples: usize,
    },
    /// Mark an event responded (回应): reaction after now is counted apart, and a renewed
    /// rise is alerted as `escalated` with `after_response`. Goes through the running
    /// daemon's API, or the store when the daemon is stopped.
    Respond {
        #[arg(long, default_value = "sources.toml")]
        config: PathBuf,
        /// The event id (`event.id` in alerts).
        event: String,
        /// What was done: the official statement, who answered.
        #[arg(long)]
        note: String,
    },
    /// Fetch one source once and print its items and matches; writes nothing.
    TrySource {
        #[arg(long, default_value = "sources.toml")]
        config: PathBuf,
        /// The source id.
        id: String,
        /// One JSON object per item instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Under systemd (stderr connected to the journal) lines carry a `<N>` syslog priority and
/// no timestamp of their own, so the journal neither shows the time twice nor files every
/// line as "info".
struct JournalPrefix<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalPrefix<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text if journal => builder
            .with_ansi(false)
            .event_format(JournalPrefix(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .init(),
        // Colours only for a person at a terminal, never into files or pipes.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run {
            config,
            recover_store,
        } => {
            init_logging(cli.log_format);
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            with_runtime(|| async move {
                match tingfeng::daemon::run(cfg, recover_store).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = %e, "daemon failed");
                        eprintln!("error: {e}");
                        ExitCode::from(1)
                    }
                }
            })
        }
        Command::TryRules {
            config,
            text,
            title,
            author,
            source,
            item,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            with_runtime(|| try_rules(cfg, text, title, author, source, item))
        }
        Command::Backtest {
            config,
            since,
            department,
            samples,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let since = match chrono::DateTime::parse_from_rfc3339(&since) {
                Ok(t) => t.with_timezone(&Utc),
                Err(_) => {
                    match humantime::parse_duration(&since) {
                        Ok(d) => Utc::now() - chrono::Duration::from_std(d).unwrap_or_default(),
                        Err(_) => {
                            eprintln!("error: --since {since:?}: give a duration (7d) or an RFC 3339 time");
                            return ExitCode::from(2);
                        }
                    }
                }
            };
            if let Some(d) = &department {
                if !cfg.departments.iter().any(|x| &x.id == d) {
                    eprintln!("error: no department {d:?} in {}", cfg.path.display());
                    return ExitCode::from(2);
                }
            }
            with_runtime(|| backtest(cfg, since, department, samples))
        }
        Command::Status {
            config,
            api,
            token_file,
        } => {
            let mut cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Some(f) = token_file {
                cfg.daemon.api_token = tingfeng::config::SecretRef {
                    env: None,
                    file: Some(f),
                };
            }
            with_runtime(|| status(cfg, api))
        }
        Command::Respond {
            config,
            event,
            note,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            with_runtime(|| respond(cfg, event, note))
        }
        Command::TrySource { config, id, json } => {
            init_logging(cli.log_format);
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            with_runtime(|| try_source(cfg, id, json))
        }
    }
}

fn with_runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for s in &cfg.sources {
        *kinds.entry(s.kind.to_string()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("{}: ok", path.display());
    println!(
        "  sources:     {} ({})",
        cfg.sources.len(),
        if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(", ")
        }
    );
    println!("  departments: {}", cfg.departments.len());
    for d in &cfg.departments {
        println!(
            "    {} {}: {} keywords, {} exclusions → {}",
            d.id,
            d.name,
            d.keywords.len(),
            d.exclude.len(),
            d.webhook
        );
    }
    println!("  keywords:    {}", cfg.keyword_count());
    let a = &cfg.assess;
    println!(
        "  judging:     yellow ≥ {}, orange ≥ {}, red ≥ {}; group_wait {}, repeat_interval {}, event_window {}{}",
        a.levels[0],
        a.levels[1],
        a.levels[2],
        humantime::format_duration(a.group_wait),
        humantime::format_duration(a.repeat_interval),
        humantime::format_duration(a.event_window),
        a.quiet_hours
            .map(|(s, e)| format!(", quiet {}–{}", s.format("%H:%M"), e.format("%H:%M")))
            .unwrap_or_default()
    );
    let now = Utc::now();
    for s in &cfg.silences {
        let state = if s.ends <= now {
            "ended"
        } else if s.starts.is_some_and(|t| t > now) {
            "not started"
        } else {
            "in force"
        };
        println!(
            "  silence {}: {state} until {} — {}",
            s.id,
            tingfeng::alert::rfc3339(s.ends),
            s.comment
        );
    }
    println!("  data_dir:    {}", cfg.daemon.data_dir.display());
    ExitCode::SUCCESS
}

async fn try_rules(
    cfg: Config,
    text: Option<String>,
    title: Option<String>,
    author: Option<String>,
    source: String,
    item: Option<String>,
) -> ExitCode {
    let matcher = match Matcher::from_config(&cfg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(id) = item {
        let data = match tingfeng::analyst::load(&cfg, Utc::now(), Some(&id)).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        let it = match tingfeng::analyst::item(&data, &id) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        println!("item {} from {} — {}", it.id, it.source, it.title);
        let s = tingfeng::rules::Subject {
            title: &it.title,
            text: &it.text,
            author: it.author.as_deref(),
            source: &it.source,
        };
        print!("{}", tingfeng::analyst::explain(&cfg, &matcher, &s));
        return ExitCode::SUCCESS;
    }
    let text = match text {
        Some(t) => t,
        None => {
            let mut buf = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf) {
                eprintln!("error: cannot read standard input: {e}");
                return ExitCode::from(1);
            }
            buf
        }
    };
    let s = tingfeng::rules::Subject {
        title: title.as_deref().unwrap_or(""),
        text: &text,
        author: author.as_deref(),
        source: &source,
    };
    print!("{}", tingfeng::analyst::explain(&cfg, &matcher, &s));
    ExitCode::SUCCESS
}

async fn backtest(
    cfg: Config,
    since: chrono::DateTime<Utc>,
    department: Option<String>,
    samples: usize,
) -> ExitCode {
    let matcher = match Matcher::from_config(&cfg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let data = match tingfeng::analyst::load(&cfg, since, None).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    print!(
        "{}",
        tingfeng::analyst::render_backtest(
            &cfg,
            &matcher,
            &data,
            since,
            department.as_deref(),
            samples
        )
    );
    ExitCode::SUCCESS
}

async fn respond(cfg: Config, event: String, note: String) -> ExitCode {
    let dir = cfg.daemon.data_dir.clone();
    let cache = cfg.daemon.cache_capacity_bytes;
    let (id, text) = (event.clone(), note.clone());
    // The store directly when no daemon holds it; else the daemon's API.
    let direct = tokio::task::spawn_blocking(move || {
        if !dir.exists() {
            return Err(format!("{} does not exist", dir.display()));
        }
        let store = tingfeng::store::Store::open(&dir, cache).map_err(|e| e.to_string())?;
        tingfeng::alerter::respond(&store, &id, &text, Utc::now()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let answer = match direct {
        Ok(Some(ev)) => Ok(serde_json::json!({ "event": ev })),
        Ok(None) => {
            eprintln!("error: no event {event} in the store");
            return ExitCode::from(1);
        }
        Err(store_err) => {
            let client = match tingfeng::api::ApiClient::for_config(&cfg, None) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            client
                .post(
                    &format!("/api/v1/events/{event}/respond"),
                    &serde_json::json!({ "note": note }),
                )
                .await
                .map_err(|api| format!("store: {store_err}; API: {api}"))
        }
    };
    match answer {
        Ok(v) => {
            let ev = &v["event"];
            println!(
                "event {} marked responded at {}: {}",
                event,
                ev["responded"]["at"].as_str().unwrap_or("?"),
                ev["title"].as_str().unwrap_or("")
            );
            println!(
                "reaction from now on is counted apart; a renewed rise is alerted as escalated"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot mark event {event} responded: {e}");
            ExitCode::from(1)
        }
    }
}

async fn status(cfg: Config, api: Option<String>) -> ExitCode {
    let client = match tingfeng::api::ApiClient::for_config(&cfg, api) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let base = client.base().to_string();
    let get = |path: &'static str| client.get(path);
    let (sources, outbox, alerts) = match (
        get("/api/v1/sources").await,
        get("/api/v1/outbox").await,
        get("/api/v1/alerts?limit=10").await,
    ) {
        (Ok(s), Ok(o), Ok(a)) => (s, o, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("error: cannot ask the daemon at {base}: {e} (is it running? is daemon.listen right?)");
            return ExitCode::from(1);
        }
    };
    let list = sources["sources"].as_array().cloned().unwrap_or_default();
    let unhealthy: Vec<&serde_json::Value> =
        list.iter().filter(|s| s["healthy"] == false).collect();
    println!("sources: {} ({} unhealthy)", list.len(), unhealthy.len());
    if let Some(e) = sources["reload_error"].as_str() {
        println!("  LAST RELOAD REFUSED: {e}");
    }
    for s in &unhealthy {
        println!(
            "  ✗ {} — {} ×{}: {} (next poll {})",
            s["id"].as_str().unwrap_or("?"),
            s["failing"].as_str().unwrap_or("?"),
            s["consecutive_failures"],
            s["last_error"].as_str().unwrap_or(""),
            s["next_poll"].as_str().unwrap_or("-")
        );
    }
    let pending = outbox["pending"].as_array().cloned().unwrap_or_default();
    let dead = outbox["dead"].as_array().cloned().unwrap_or_default();
    println!(
        "deliveries: {} pending, {} dead-lettered",
        pending.len(),
        dead.len()
    );
    for p in pending.iter().take(5) {
        println!(
            "  … {} → {} (attempts {}, {})",
            p["alert_id"].as_str().unwrap_or("?"),
            p["url"].as_str().unwrap_or("?"),
            p["attempts"],
            p["last_error"].as_str().unwrap_or("not tried yet")
        );
    }
    for d in &dead {
        println!(
            "  ✗ {} → {}: {} (retry: POST {})",
            d["alert_id"].as_str().unwrap_or("?"),
            d["url"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or("?"),
            d["retry"].as_str().unwrap_or("?")
        );
    }
    let newest = alerts["alerts"].as_array().cloned().unwrap_or_default();
    println!("newest alerts:");
    for a in &newest {
        println!(
            "  {} [{}] {}: {}",
            a["created"].as_str().unwrap_or("?"),
            a["level"].as_str().unwrap_or("?"),
            a["department"]["name"].as_str().unwrap_or("?"),
            a["item"]["title"].as_str().unwrap_or("")
        );
    }
    ExitCode::SUCCESS
}

async fn try_source(cfg: Config, id: String, json: bool) -> ExitCode {
    let Some(source) = cfg.source(&id).cloned() else {
        let ids: Vec<&str> = cfg.sources.iter().map(|s| s.id.as_str()).collect();
        eprintln!(
            "error: no source {id:?} in {} (have: {})",
            cfg.path.display(),
            ids.join(", ")
        );
        return ExitCode::from(2);
    };
    let matcher = match Matcher::from_config(&cfg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let fetcher = match Fetcher::new(&cfg) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    // A search source is tried with its first keyword.
    let first_url = match &source.json {
        Some(spec) if spec.url_template.is_some() => {
            tingfeng::poll::search_urls(&source, spec, &cfg)
                .into_iter()
                .next()
                .unwrap_or_else(|| source.url.to_string())
        }
        _ => source.url.to_string(),
    };
    let fetched = match fetcher
        .fetch_url(&source, &first_url, &Conditional::default())
        .await
    {
        Ok(FetchOutcome::Body(f)) => f,
        Ok(FetchOutcome::NotModified) => {
            eprintln!("error: the server answered 304 to an unconditional request");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: {}: fetching {} failed: {e}", source.id, source.url);
            return ExitCode::from(1);
        }
    };
    let now = Utc::now();
    let mut raw_fields: Vec<BTreeMap<String, String>> = Vec::new();
    let (encoding, evidence, items) = match (&source.html, &source.json) {
        (None, Some(spec)) => {
            let ctx = tingfeng::source::json::JsonContext {
                content_type: fetched.content_type.as_deref(),
                timezone: cfg.daemon.timezone,
                now,
                date_format: source.date_format.as_deref(),
            };
            match tingfeng::source::json::extract(&fetched.body, &spec.spec, &ctx) {
                Ok(page) => {
                    if let Some(why) = &page.blocked {
                        println!("BLOCKED: {why}");
                    }
                    if !json {
                        for (k, f) in &spec.spec.fields {
                            if page.raw.iter().all(|r| !r.contains_key(k)) && k != "repost" {
                                println!("field `{k}` ({}) matched nothing on any item", f.raw);
                            }
                        }
                        if let Some(c) = &page.next_cursor {
                            println!("next page cursor: {c}");
                        }
                        if !page.long_text.is_empty() {
                            println!(
                                "{} long posts (the daemon fetches their full text once)",
                                page.long_text.len()
                            );
                        }
                    }
                    let items = tingfeng::item::build_items(&source.id, page.entries.clone(), now);
                    raw_fields = page.raw;
                    ("UTF-8", "json".to_string(), items)
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", source.id);
                    return ExitCode::from(1);
                }
            }
        }
        (None, None) => match extract_items(
            &source,
            &fetched.final_url,
            &fetched.body,
            fetched.content_type.as_deref(),
            &cfg,
            now,
        ) {
            Ok((x, items)) => (x.encoding, x.evidence, items),
            Err(e) => {
                eprintln!("error: {}: {e}", source.id);
                return ExitCode::from(1);
            }
        },
        (Some(spec), _) => {
            let page_url =
                url::Url::parse(&fetched.final_url).unwrap_or_else(|_| source.url.clone());
            let ctx = html::HtmlContext {
                content_type: fetched.content_type.as_deref(),
                page_url: &page_url,
                encoding_override: source.encoding,
                timezone: cfg.daemon.timezone,
                now,
                date_format: source.date_format.as_deref(),
            };
            let page = html::extract_list(&fetched.body, &spec.list, &ctx);
            let mut items = tingfeng::item::build_items(&source.id, page.entries.clone(), now);
            if !json {
                if page.raw.is_empty() {
                    println!(
                        "selector `item` ({}) matched nothing on this page",
                        spec.list.item_raw
                    );
                }
                for f in &page.unmatched {
                    let raw = spec
                        .list
                        .fields
                        .get(f)
                        .map(|s| s.raw.as_str())
                        .unwrap_or("");
                    println!("field `{f}` ({raw}) matched nothing on any item");
                }
                if page.skipped > 0 {
                    println!(
                        "{} matches of `item` had neither title nor link and were skipped",
                        page.skipped
                    );
                }
                for d in page.bad_dates.iter().take(3) {
                    println!("date not understood: {d:?} (the item keeps its fetch time)");
                }
                if let Some(n) = &page.next {
                    println!("next page: {n}");
                }
            }
            // Show what detail pages add, for the first few items (politely: same limits).
            if let Some(detail) = &spec.detail {
                for item in items.iter_mut().take(TRY_DETAILS) {
                    let Some(url) = item.url.clone() else {
                        continue;
                    };
                    match fetcher
                        .fetch_url(&source, &url, &Conditional::default())
                        .await
                    {
                        Ok(FetchOutcome::Body(f)) => {
                            let u = url::Url::parse(&url).unwrap_or_else(|_| page_url.clone());
                            let dctx = html::HtmlContext {
                                content_type: f.content_type.as_deref(),
                                page_url: &u,
                                ..ctx
                            };
                            let d = html::extract_detail(&f.body, detail, &dctx);
                            match d.content.filter(|c| !c.is_empty()) {
                                Some(c) => item.text = c,
                                None => eprintln!(
                                    "detail {url}: `content` ({}) matched nothing",
                                    detail
                                        .fields
                                        .get("content")
                                        .map(|f| f.raw.as_str())
                                        .unwrap_or("")
                                ),
                            }
                        }
                        Ok(FetchOutcome::NotModified) => {}
                        Err(e) => eprintln!("detail {url}: {e}"),
                    }
                }
            }
            raw_fields = page.raw;
            (page.encoding, page.evidence, items)
        }
    };
    if !json {
        println!(
            "{} ({}) — HTTP {}, {} bytes, content-type {:?}, decoded as {} ({}), {} items",
            source.id,
            fetched.final_url,
            fetched.status,
            fetched.body.len(),
            fetched.content_type.as_deref().unwrap_or("-"),
            encoding,
            evidence,
            items.len()
        );
    }
    for (n, item) in items.iter().enumerate() {
        let outcome = matcher.match_subject(&tingfeng::rules::Subject {
            title: &item.title,
            text: &item.text,
            author: item.author.as_deref(),
            source: &item.source,
        });
        let fields = raw_fields.get(n);
        if json {
            let obj = serde_json::json!({
                "item": item,
                "fields": fields,
                "matches": outcome.matched.iter().map(|m| serde_json::json!({
                    "department": m.department,
                    "hits": m.hits,
                    "rules": m.rules,
                    "snippet": m.snippet(&item.title, &item.text),
                })).collect::<Vec<_>>(),
                "vetoed": outcome.vetoed.iter().map(|(d, h)| serde_json::json!({"department": d, "excluded_by": h})).collect::<Vec<_>>(),
            });
            println!("{obj}");
            continue;
        }
        println!();
        println!("• {}", item.title);
        println!("  url:       {}", item.url.as_deref().unwrap_or("-"));
        println!(
            "  published: {}",
            item.published
                .map(tingfeng::alert::rfc3339)
                .unwrap_or_else(|| "- (unknown: fetch time is used)".into())
        );
        println!("  identity:  {}", item.identity);
        if let Some(author) = &item.author {
            println!("  author:    {author}");
        }
        let e = &item.engagement;
        if !e.is_empty() {
            println!(
                "  engagement: {}",
                serde_json::to_string(e).unwrap_or_default()
            );
        }
        for (k, v) in fields.into_iter().flatten() {
            let v: String = v.chars().take(80).collect();
            println!("  [{k}] {v}");
        }
        let text: String = item.text.chars().take(120).collect();
        println!(
            "  text:      {text}{}",
            if item.text.chars().count() > 120 {
                "…"
            } else {
                ""
            }
        );
        for m in &outcome.matched {
            let kws: Vec<String> = m
                .hits
                .iter()
                .map(|h| {
                    let field = h.field.name();
                    format!("{} ({field} {}..{})", h.keyword, h.start, h.end)
                })
                .collect();
            println!("  MATCH {}: {}", m.department, kws.join(", "));
        }
        for (d, hits) in &outcome.vetoed {
            let kws: Vec<&str> = hits.iter().map(|h| h.keyword).collect();
            println!("  (excluded from {d} by {})", kws.join(", "));
        }
    }
    ExitCode::SUCCESS
}
