//! Owns one poll of one source: fetch (all pages, detail pages, robots.txt for html),
//! extract, ingest, and waking delivery for what was queued. The scheduler decides when.

use crate::alerter::{Judge, Raised};
use crate::config::{Config, HtmlSource, JsonSource, Source, SourceKind, DETAIL_ATTEMPTS};
use crate::fetch::{Conditional, FetchError, FetchOutcome, Fetcher};
use crate::ingest::{ingest, IngestReport};
use crate::item::{build_items, Item};
use crate::robots::{Denied, Robots};
use crate::rules::Matcher;
use crate::source::html::{self, HtmlContext};
use crate::source::{feed, ExtractError, Extracted};
use crate::store::{PendingDetail, SourceState, Store, StoreError};
use crate::webhook::Delivery;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Everything a poll needs, shared by all source tasks.
pub struct Engine {
    pub config: Arc<Config>,
    pub store: Store,
    pub fetcher: Arc<Fetcher>,
    pub matcher: Arc<Matcher>,
    pub judge: Arc<Judge>,
    pub delivery: Arc<Delivery>,
    pub robots: Arc<Robots>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Polls in flight and when each started, for the watchdog.
    pub in_flight: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// The engine of the configuration in force. Source tasks read it at every poll, so a reload
/// swaps rules and limits under sources that did not change without restarting them.
pub struct EngineCell(std::sync::RwLock<Arc<Engine>>);

impl EngineCell {
    pub fn new(engine: Arc<Engine>) -> Self {
        EngineCell(std::sync::RwLock::new(engine))
    }

    pub fn current(&self) -> Arc<Engine> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, engine: Arc<Engine>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = engine;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("fetch failed: {0}")]
    Fetch(#[from] FetchError),
    #[error("cannot extract items: {0}")]
    Extract(#[from] ExtractError),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    #[error("worker task failed: {0}")]
    Task(String),
    #[error("blocked by robots.txt: {0}")]
    Robots(#[from] Denied),
    /// The answer means "not let in" (login wall, captcha, 403/418/432), not "no news".
    #[error("blocked: {0}")]
    Blocked(String),
    /// An html list page answered but the selectors found nothing, where they used to.
    #[error("selectors matched nothing on {url} (it used to list items): site redesign, captcha or login wall?")]
    NoItems { url: String },
}

impl PollError {
    /// A short, stable description of the failure's kind, to log once per change of state.
    pub fn reason(&self) -> String {
        match self {
            PollError::Fetch(FetchError::Status {
                status: 403 | 418 | 432,
                ..
            }) => "blocked".into(),
            PollError::Fetch(FetchError::Status { status, .. }) => format!("http {status}"),
            PollError::Fetch(e) => format!("fetch {}", e.kind()),
            PollError::Extract(_) => "extract".into(),
            PollError::Store(_) => "store".into(),
            PollError::Task(_) => "task".into(),
            PollError::Robots(d) if d.0.contains("unreachable") => "robots unreachable".into(),
            PollError::Robots(_) => "robots".into(),
            PollError::NoItems { .. } => "no items".into(),
            PollError::Blocked(_) => "blocked".into(),
        }
    }
}

#[derive(Debug)]
pub enum PollSummary {
    NotModified,
    Fetched {
        items: usize,
        report: IngestReport,
        encoding: &'static str,
    },
}

/// Decodes and parses a fetched feed into items (no I/O).
pub fn extract_items(
    source: &Source,
    base_url: &str,
    body: &[u8],
    content_type: Option<&str>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<(Extracted, Vec<Item>), ExtractError> {
    let ctx = feed::FeedContext {
        content_type,
        // Relative links resolve against where the fetch landed (after redirects).
        base_url: Some(base_url),
        encoding_override: source.encoding,
        timezone: config.daemon.timezone,
        now,
    };
    let extracted = feed::extract(body, &ctx)?;
    let items = build_items(&source.id, extracted.entries.clone(), now);
    Ok((extracted, items))
}

fn task_failed(e: tokio::task::JoinError) -> PollError {
    PollError::Task(e.to_string())
}

/// The ids among `items` the store has never seen (those get detail pages or full text).
async fn unseen_ids(
    engine: &Engine,
    items: &[Item],
) -> Result<std::collections::HashSet<String>, PollError> {
    let store = engine.store.clone();
    let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    let unseen = tokio::task::spawn_blocking(move || {
        let mut out = std::collections::HashSet::new();
        for id in ids {
            if store.seen(&id)?.is_none() {
                out.insert(id);
            }
        }
        Ok::<_, StoreError>(out)
    })
    .await
    .map_err(task_failed)??;
    Ok(unseen)
}

/// Keeps the identities of everything last listed alive after a 304, or a page unchanged for
/// longer than the retention would re-alert its old items.
async fn touch_current(engine: &Engine, state: &SourceState) -> Result<(), PollError> {
    let store = engine.store.clone();
    let ids = state.current_items.clone();
    tokio::task::spawn_blocking(move || store.touch_seen(&ids, Utc::now()))
        .await
        .map_err(task_failed)??;
    Ok(())
}

/// Stores what is new among `items`, flushes, and wakes delivery.
async fn ingest_and_notify(
    engine: &Engine,
    source: &Source,
    items: Vec<Item>,
    alerting: bool,
) -> Result<IngestReport, PollError> {
    let store = engine.store.clone();
    let matcher = engine.matcher.clone();
    let judge = engine.judge.clone();
    let src = source.clone();
    let report = tokio::task::spawn_blocking(move || {
        let report = ingest(&store, &matcher, &judge, &src, &items, alerting, Utc::now())?;
        // Durable before any delivery attempt: an alert, once raised, survives a crash.
        if report.new > 0 || report.duplicates > 0 || !report.queued.is_empty() {
            store.flush()?;
        }
        Ok::<_, PollError>(report)
    })
    .await
    .map_err(task_failed)??;
    announce(engine, &report.queued);
    engine.metrics.item(&source.id, "new", report.new as u64);
    engine
        .metrics
        .item(&source.id, "duplicate", report.duplicates as u64);
    engine
        .metrics
        .item(&source.id, "too_old", report.too_old as u64);
    Ok(report)
}

/// Wakes delivery for queued alerts and counts them.
pub fn announce(engine: &Engine, raised: &[Raised]) {
    for r in raised {
        engine.delivery.notify(&r.url);
        engine
            .metrics
            .alerts
            .get_or_create(&crate::metrics::AlertLabels {
                department: r.department.clone(),
                level: r.level.clone(),
                kind: r.kind.clone(),
            })
            .inc();
    }
}

/// One poll of one source: fetch, extract, store, queue alerts, wake delivery.
pub async fn poll(
    engine: &Engine,
    source: &Source,
    state: &mut SourceState,
) -> Result<PollSummary, PollError> {
    match (&source.kind, &source.html, &source.json) {
        (SourceKind::Html, Some(spec), _) => poll_html(engine, source, spec, state).await,
        (SourceKind::Json, _, Some(spec)) => poll_json(engine, source, spec, state).await,
        _ => poll_feed(engine, source, state).await,
    }
}

async fn poll_feed(
    engine: &Engine,
    source: &Source,
    state: &mut SourceState,
) -> Result<PollSummary, PollError> {
    let cond = Conditional {
        etag: state.etag.clone(),
        last_modified: state.last_modified.clone(),
    };
    let fetched = match engine.fetcher.fetch(source, &cond).await? {
        FetchOutcome::NotModified => {
            touch_current(engine, state).await?;
            return Ok(PollSummary::NotModified);
        }
        FetchOutcome::Body(f) => f,
    };
    engine.metrics.bytes(&source.id, fetched.body.len());
    let alerting = source.backlog || state.first_poll_done;
    let config = engine.config.clone();
    let src = source.clone();
    let content_type = fetched.content_type.clone();
    let body = fetched.body;
    let base = fetched.final_url.clone();
    let (items, encoding) = tokio::task::spawn_blocking(move || {
        extract_items(
            &src,
            &base,
            &body,
            content_type.as_deref(),
            &config,
            Utc::now(),
        )
        .map(|(x, items)| (items, x.encoding))
    })
    .await
    .map_err(task_failed)??;
    state.current_items = items.iter().map(|i| i.id.clone()).collect();
    let count = items.len();
    let report = ingest_and_notify(engine, source, items, alerting).await?;
    state.etag = fetched.etag;
    state.last_modified = fetched.last_modified;
    Ok(PollSummary::Fetched {
        items: count,
        report,
        encoding,
    })
}

/// One list page, read on a blocking thread: entries, items, and how many are already known.
struct PageRead {
    page: html::ListPage,
    items: Vec<Item>,
    known: usize,
}

async fn read_list_page(
    engine: &Engine,
    source: &Source,
    spec: &Arc<HtmlSource>,
    page_url: &url::Url,
    fetched: crate::fetch::Fetched,
) -> Result<PageRead, PollError> {
    let store = engine.store.clone();
    let config = engine.config.clone();
    let src = source.clone();
    let spec = spec.clone();
    let page_url = page_url.clone();
    tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        let ctx = HtmlContext {
            content_type: fetched.content_type.as_deref(),
            page_url: &page_url,
            encoding_override: src.encoding,
            timezone: config.daemon.timezone,
            now,
            date_format: src.date_format.as_deref(),
        };
        let page = html::extract_list(&fetched.body, &spec.list, &ctx);
        let items = build_items(&src.id, page.entries.clone(), now);
        let mut known = 0;
        for it in &items {
            if store.seen(&it.id)?.is_some() {
                known += 1;
            }
        }
        Ok::<_, PollError>(PageRead { page, items, known })
    })
    .await
    .map_err(task_failed)?
}

/// Fetches and reads one detail page.
async fn fetch_detail(
    engine: &Engine,
    source: &Source,
    spec: &Arc<HtmlSource>,
    url: &str,
) -> Result<html::DetailPage, PollError> {
    let Some(detail_spec) = spec.detail.clone() else {
        return Ok(html::DetailPage::default());
    };
    let parsed = url::Url::parse(url).map_err(|e| PollError::Task(format!("{url}: {e}")))?;
    engine
        .robots
        .check(&engine.fetcher, source, &parsed)
        .await?;
    let fetched = match engine
        .fetcher
        .fetch_url(source, url, &Conditional::default())
        .await?
    {
        FetchOutcome::Body(f) => f,
        FetchOutcome::NotModified => return Ok(html::DetailPage::default()),
    };
    engine.metrics.bytes(&source.id, fetched.body.len());
    let config = engine.config.clone();
    let src = source.clone();
    tokio::task::spawn_blocking(move || {
        let ctx = HtmlContext {
            content_type: fetched.content_type.as_deref(),
            page_url: &parsed,
            encoding_override: src.encoding,
            timezone: config.daemon.timezone,
            now: Utc::now(),
            date_format: src.date_format.as_deref(),
        };
        html::extract_detail(&fetched.body, &detail_spec, &ctx)
    })
    .await
    .map_err(task_failed)
}

/// What a detail page changes in an item. Content becomes the text matched; an empty
/// content keeps the list summary.
fn apply_detail(item: &mut Item, d: &html::DetailPage) {
    if let Some(c) = d.content.as_ref().filter(|c| !c.is_empty()) {
        item.set_text(c.clone());
    }
    if let Some(t) = d.title.as_ref().filter(|t| !t.is_empty()) {
        item.title = t.clone();
    }
    if d.published.is_some() {
        item.published = d.published;
    }
    if let Some(a) = d.author.as_ref().filter(|a| !a.is_empty()) {
        item.author = Some(a.clone());
    }
}

/// Detail pages fetched per poll at most; the rest are fetched on the next polls.
const MAX_DETAILS_PER_POLL: usize = 30;

async fn poll_html(
    engine: &Engine,
    source: &Source,
    spec: &Arc<HtmlSource>,
    state: &mut SourceState,
) -> Result<PollSummary, PollError> {
    let alerting = source.backlog || state.first_poll_done;
    // Detail pages that failed (or were deferred) in this very poll: not retried again now.
    let mut just_failed: std::collections::HashSet<String> = Default::default();
    let mut items: Vec<Item> = Vec::new();
    let mut encoding = "";
    let mut page_url = source.url.clone();
    let mut bad_dates: Vec<String> = Vec::new();
    // Saved only when the poll succeeds: a page that failed must not be answered 304 next time.
    let mut validators: (Option<String>, Option<String>) = (None, None);
    for page_no in 1..=spec.max_pages {
        match engine
            .robots
            .check(&engine.fetcher, source, &page_url)
            .await
        {
            Ok(()) => {}
            Err(e) if page_no == 1 => return Err(e.into()),
            // Rules often forbid query strings: the pages before stay good.
            Err(_) => break,
        }
        let cond = if page_no == 1 {
            Conditional {
                etag: state.etag.clone(),
                last_modified: state.last_modified.clone(),
            }
        } else {
            Conditional::default()
        };
        let fetched = match engine
            .fetcher
            .fetch_url(source, page_url.as_str(), &cond)
            .await
        {
            Ok(FetchOutcome::Body(f)) => f,
            Ok(FetchOutcome::NotModified) if page_no == 1 => {
                touch_current(engine, state).await?;
                retry_details(engine, source, spec, state).await;
                return Ok(PollSummary::NotModified);
            }
            Ok(FetchOutcome::NotModified) => break,
            Err(e) if page_no == 1 => return Err(e.into()),
            Err(e) => {
                // Page 1 is in hand: a failing later page costs only what it would have added.
                warn!(source = %source.id, url = %page_url, page = page_no, error = %e, "list page failed; keeping the pages before it");
                break;
            }
        };
        if page_no == 1 {
            validators = (fetched.etag.clone(), fetched.last_modified.clone());
        }
        engine.metrics.bytes(&source.id, fetched.body.len());
        let landed = url::Url::parse(&fetched.final_url).unwrap_or_else(|_| page_url.clone());
        let read = read_list_page(engine, source, spec, &landed, fetched).await?;
        if page_no == 1 {
            encoding = read.page.encoding;
        }
        bad_dates.extend(read.page.bad_dates.iter().cloned());
        let fresh = read
            .items
            .iter()
            .filter(|i| !items.iter().any(|seen| seen.id == i.id))
            .count();
        let all_known = !read.items.is_empty() && (read.known == read.items.len() || fresh == 0);
        let next = read.page.next.clone().or_else(|| {
            spec.page_url.as_ref().and_then(|t| {
                url::Url::parse(&t.replace("{page}", &(page_no + 1).to_string())).ok()
            })
        });
        let empty = read.items.is_empty();
        items.extend(read.items);
        if all_known || empty {
            break;
        }
        match next {
            Some(n) if n != page_url => page_url = n,
            _ => break,
        }
    }
    // Sticky threads repeat on every page.
    let mut seen_ids = std::collections::HashSet::new();
    items.retain(|it| seen_ids.insert(it.id.clone()));

    if items.is_empty() && state.items_total_seen > 0 {
        return Err(PollError::NoItems {
            url: source.url.to_string(),
        });
    }
    if !bad_dates.is_empty() && !state.bad_dates_logged {
        warn!(source = %source.id, examples = ?bad_dates.iter().take(3).collect::<Vec<_>>(), "dates not understood; those items keep their fetch time (set date_format?)");
        state.bad_dates_logged = true;
    }

    // New entries get their detail page before matching, so body-only keywords count.
    if spec.detail.is_some() {
        let unseen = unseen_ids(engine, &items).await?;
        let mut fetched = 0;
        for item in items.iter_mut().filter(|i| unseen.contains(&i.id)) {
            let Some(url) = item.url.clone() else {
                continue;
            };
            // A long backlog is not fetched in one poll: the rest waits its turn, so a poll
            // stays short (reloads, shutdown and the watchdog all wait on polls).
            let outcome = if fetched >= MAX_DETAILS_PER_POLL {
                Err(None)
            } else {
                fetched += 1;
                match fetch_detail(engine, source, spec, &url).await {
                    Ok(d) if d.content.as_deref().is_some_and(|c| !c.is_empty()) => Ok(d),
                    Ok(_) => Err(Some(
                        "`content` matched nothing (captcha or login page?)".to_string(),
                    )),
                    Err(e) => Err(Some(e.to_string())),
                }
            };
            match outcome {
                Ok(d) => apply_detail(item, &d),
                Err(why) => {
                    if let Some(why) = &why {
                        debug!(source = %source.id, url = %url, error = %why, "detail page failed; matching on the list entry and retrying later");
                    }
                    state.detail_pending.retain(|p| p.item_id != item.id);
                    state.detail_pending.push(PendingDetail {
                        item_id: item.id.clone(),
                        url,
                        attempts: u32::from(why.is_some()),
                        alerting,
                    });
                    just_failed.insert(item.id.clone());
                }
            }
        }
    }
    state.current_items = items.iter().map(|i| i.id.clone()).collect();
    let count = items.len();
    let report = ingest_and_notify(engine, source, items, alerting).await?;
    retry_details_except(engine, source, spec, state, &just_failed).await;
    (state.etag, state.last_modified) = validators;
    Ok(PollSummary::Fetched {
        items: count,
        report,
        encoding,
    })
}

async fn retry_details(
    engine: &Engine,
    source: &Source,
    spec: &Arc<HtmlSource>,
    state: &mut SourceState,
) {
    retry_details_except(engine, source, spec, state, &Default::default()).await
}

/// Retries detail pages that failed on earlier polls; keywords found only now still alert
/// (alert ids are per item and department, so nothing already raised is raised again).
async fn retry_details_except(
    engine: &Engine,
    source: &Source,
    spec: &Arc<HtmlSource>,
    state: &mut SourceState,
    skip: &std::collections::HashSet<String>,
) {
    let pending = std::mem::take(&mut state.detail_pending);
    for mut p in pending {
        if skip.contains(&p.item_id) {
            state.detail_pending.push(p);
            continue;
        }
        match fetch_detail(engine, source, spec, &p.url).await {
            Ok(d) if d.content.as_deref().is_some_and(|c| !c.is_empty()) => {
                let store = engine.store.clone();
                let matcher = engine.matcher.clone();
                let judge = engine.judge.clone();
                let item_id = p.item_id.clone();
                let alerting = p.alerting;
                let r = tokio::task::spawn_blocking(move || {
                    let Some(mut item) = store.item(&item_id)? else {
                        return Ok::<_, StoreError>(Vec::new());
                    };
                    apply_detail(&mut item, &d);
                    let raised = crate::ingest::update(
                        &store,
                        &matcher,
                        &judge,
                        &item,
                        alerting,
                        Utc::now(),
                    )?;
                    store.flush()?;
                    Ok(raised)
                })
                .await;
                match r {
                    Ok(Ok(raised)) => {
                        if !raised.is_empty() {
                            info!(source = %source.id, url = %p.url, alerts = raised.len(), "detail page arrived late and raised alerts");
                        }
                        announce(engine, &raised);
                    }
                    Ok(Err(e)) => {
                        warn!(source = %source.id, error = %e, "cannot update item with its detail page");
                        state.detail_pending.push(p);
                    }
                    Err(e) => {
                        warn!(source = %source.id, error = %e, "detail task failed");
                        state.detail_pending.push(p);
                    }
                }
            }
            other => {
                let e = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "`content` matched nothing (captcha or login page?)".into(),
                };
                p.attempts += 1;
                if p.attempts > DETAIL_ATTEMPTS {
                    warn!(source = %source.id, url = %p.url, error = %e, attempts = DETAIL_ATTEMPTS, "detail page given up; the item stays matched on its list entry");
                } else {
                    state.detail_pending.push(p);
                }
            }
        }
    }
}

/// The URLs one poll of a json source requests: its URL, or one per keyword of the
/// departments it searches (as written in the config, percent-encoded).
pub fn search_urls(source: &Source, spec: &JsonSource, config: &Config) -> Vec<String> {
    let Some(template) = &spec.url_template else {
        return vec![source.url.to_string()];
    };
    let mut keywords: Vec<&str> = Vec::new();
    for d in config
        .departments
        .iter()
        .filter(|d| spec.search_departments.contains(&d.id))
    {
        for k in &d.keywords {
            if !keywords.contains(&k.as_str()) {
                keywords.push(k);
            }
        }
    }
    keywords
        .into_iter()
        .map(|k| {
            let encoded: String = url::form_urlencoded::byte_serialize(k.as_bytes()).collect();
            template.replace("{keyword}", &encoded.replace('+', "%20"))
        })
        .collect()
}

struct JsonRead {
    page: crate::source::json::JsonPage,
    items: Vec<Item>,
    known: usize,
}

async fn read_json_page(
    engine: &Engine,
    source: &Source,
    spec: &Arc<JsonSource>,
    fetched: crate::fetch::Fetched,
) -> Result<JsonRead, PollError> {
    let store = engine.store.clone();
    let config = engine.config.clone();
    let src = source.clone();
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        let ctx = crate::source::json::JsonContext {
            content_type: fetched.content_type.as_deref(),
            timezone: config.daemon.timezone,
            now,
            date_format: src.date_format.as_deref(),
        };
        let page = crate::source::json::extract(&fetched.body, &spec.spec, &ctx)?;
        let items = build_items(&src.id, page.entries.clone(), now);
        let mut known = 0;
        for it in &items {
            if store.seen(&it.id)?.is_some() {
                known += 1;
            }
        }
        Ok::<_, PollError>(JsonRead { page, items, known })
    })
    .await
    .map_err(task_failed)?
}

/// Weibo truncates long posts in lists; the full text is one request away on the same origin.
async fn weibo_long_text(engine: &Engine, source: &Source, id: &str) -> Option<String> {
    let mut url = source.url.clone();
    url.set_path("/statuses/extend");
    url.set_query(None);
    url.query_pairs_mut().append_pair("id", id);
    let f = match engine
        .fetcher
        .fetch_url(source, url.as_str(), &Conditional::default())
        .await
    {
        Ok(FetchOutcome::Body(f)) => f,
        _ => return None,
    };
    let v: serde_json::Value = serde_json::from_slice(&f.body).ok()?;
    v.pointer("/data/longTextContent")
        .and_then(|t| t.as_str())
        .map(crate::text::html_to_text)
        .filter(|t| !t.is_empty())
}

async fn poll_json(
    engine: &Engine,
    source: &Source,
    spec: &Arc<JsonSource>,
    state: &mut SourceState,
) -> Result<PollSummary, PollError> {
    let alerting = source.backlog || state.first_poll_done;
    let search = spec.url_template.is_some();
    let urls = search_urls(source, spec, &engine.config);
    let mut items: Vec<Item> = Vec::new();
    let mut long_text: std::collections::HashSet<String> = Default::default();
    let mut collected: std::collections::HashSet<String> = Default::default();
    let mut failed_searches = 0usize;
    let mut last_error: Option<FetchError> = None;
    let mut validators: (Option<String>, Option<String>) = (None, None);
    let mut bad_dates: Vec<String> = Vec::new();
    for base in &urls {
        let mut url = base.clone();
        for page_no in 1..=spec.max_pages {
            // Conditional GET only where a URL is polled as one document over time.
            let cond = if !search && page_no == 1 {
                Conditional {
                    etag: state.etag.clone(),
                    last_modified: state.last_modified.clone(),
                }
            } else {
                Conditional::default()
            };
            let fetched = match engine.fetcher.fetch_url(source, &url, &cond).await {
                Ok(FetchOutcome::Body(f)) => f,
                Ok(FetchOutcome::NotModified) if !search && page_no == 1 => {
                    touch_current(engine, state).await?;
                    return Ok(PollSummary::NotModified);
                }
                Ok(FetchOutcome::NotModified) => break,
                // A search for one keyword failing must not discard the others' results;
                // a block is reported at once, and a poll where every keyword fails fails.
                Err(e) if page_no == 1 && search && urls.len() > 1 => {
                    let blocked = matches!(
                        e,
                        FetchError::Status {
                            status: 403 | 418 | 432,
                            ..
                        }
                    );
                    if blocked {
                        return Err(e.into());
                    }
                    warn!(source = %source.id, url = %url, error = %e, "one keyword's search failed; the others go on");
                    failed_searches += 1;
                    last_error = Some(e);
                    break;
                }
                Err(e) if page_no == 1 => return Err(e.into()),
                Err(e) => {
                    warn!(source = %source.id, page = page_no, error = %e, "next page failed; keeping the pages before it");
                    break;
                }
            };
            if !search && page_no == 1 {
                validators = (fetched.etag.clone(), fetched.last_modified.clone());
            }
            engine.metrics.bytes(&source.id, fetched.body.len());
            let read = read_json_page(engine, source, spec, fetched).await?;
            if let Some(why) = read.page.blocked {
                return Err(PollError::Blocked(why));
            }
            bad_dates.extend(read.page.bad_dates.iter().cloned());
            long_text.extend(read.page.long_text.iter().cloned());
            // Known: in the store, or already read on an earlier page of this poll.
            let fresh = read
                .items
                .iter()
                .filter(|i| !collected.contains(&i.id))
                .count();
            let all_known = read.known == read.items.len() || fresh == 0;
            collected.extend(read.items.iter().map(|i| i.id.clone()));
            items.extend(read.items);
            let (Some(param), Some(cursor)) = (&spec.spec.cursor_param, &read.page.next_cursor)
            else {
                break;
            };
            if all_known {
                break;
            }
            let Ok(mut next) = url::Url::parse(base) else {
                break;
            };
            let pairs: Vec<(String, String)> = next
                .query_pairs()
                .filter(|(k, _)| k != param)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            next.query_pairs_mut()
                .clear()
                .extend_pairs(pairs)
                .append_pair(param, cursor);
            url = next.to_string();
        }
    }
    if failed_searches > 0 && failed_searches == urls.len() {
        if let Some(e) = last_error {
            return Err(e.into());
        }
    }
    let mut seen_ids = std::collections::HashSet::new();
    items.retain(|it| seen_ids.insert(it.id.clone()));
    if !bad_dates.is_empty() && !state.bad_dates_logged {
        warn!(source = %source.id, examples = ?bad_dates.iter().take(3).collect::<Vec<_>>(), "dates not understood; those items keep their fetch time (set date_format?)");
        state.bad_dates_logged = true;
    }
    // Full text of new long posts, once each (known items are never fetched again).
    if spec.spec.preset == Some(crate::source::json::Preset::Weibo) && !long_text.is_empty() {
        let unseen = unseen_ids(engine, &items).await?;
        for item in items.iter_mut().filter(|i| unseen.contains(&i.id)) {
            let Some(guid) = item
                .identity
                .strip_prefix("guid:")
                .and_then(|g| g.split('#').next())
                .map(str::to_string)
            else {
                continue;
            };
            if long_text.contains(&guid) {
                if let Some(full) = weibo_long_text(engine, source, &guid).await {
                    item.set_text(full);
                }
            }
        }
    }
    if !search {
        state.current_items = items.iter().map(|i| i.id.clone()).collect();
    }
    let count = items.len();
    let report = ingest_and_notify(engine, source, items, alerting).await?;
    (state.etag, state.last_modified) = validators;
    Ok(PollSummary::Fetched {
        items: count,
        report,
        encoding: "UTF-8",
    })
}
