//! The `tingfeng` command line: a thin layer that parses arguments, sets up logging and calls
//! the library. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.

use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tingfeng::config::Config;
use tingfeng::fetch::{Conditional, FetchOutcome, Fetcher};
use tingfeng::rules::Matcher;
use tingfeng::schedule::extract_items;

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

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
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
    println!("  data_dir:    {}", cfg.daemon.data_dir.display());
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
    let matcher = match Matcher::new(&cfg.departments) {
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
    let fetched = match fetcher.fetch(&source, &Conditional::default()).await {
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
    let (extracted, items) = match extract_items(
        &source,
        &fetched.body,
        fetched.content_type.as_deref(),
        &cfg,
        now,
    ) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {}: {e}", source.id);
            return ExitCode::from(1);
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
            extracted.encoding,
            extracted.evidence,
            items.len()
        );
    }
    for item in &items {
        let outcome = matcher.match_item(&item.title, &item.text);
        if json {
            let obj = serde_json::json!({
                "item": item,
                "matches": outcome.matched,
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
                    let field = match h.field {
                        tingfeng::rules::Field::Title => "title",
                        tingfeng::rules::Field::Text => "text",
                    };
                    format!("{} ({field} {}..{})", h.keyword, h.start, h.end)
                })
                .collect();
            println!("  MATCH {}: {}", m.department, kws.join(", "));
        }
        for (d, hits) in &outcome.vetoed {
            let kws: Vec<&str> = hits.iter().map(|h| h.keyword.as_str()).collect();
            println!("  (excluded from {d} by {})", kws.join(", "));
        }
    }
    ExitCode::SUCCESS
}
