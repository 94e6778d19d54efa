//! Owns the wiring of the running daemon: opening the store, delivery, one task per source
//! (a "generation" per loaded config), the HTTP API, retention, systemd notifications and
//! watchdog, reload on SIGHUP, and an orderly shutdown that loses nothing.

use crate::config::Config;
use crate::fetch::Fetcher;
use crate::metrics::Metrics;
use crate::poll::{Engine, EngineCell};
use crate::robots::Robots;
use crate::rules::Matcher;
use crate::schedule::run_source;
use crate::shutdown::{self, Shutdown, Trigger};
use crate::store::{Store, StoreError};
use crate::webhook::Delivery;
use chrono::Utc;
use sd_notify::NotifyState;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often waiting alerts are checked (group_wait's resolution).
const GROUP_TICK: Duration = Duration::from_secs(1);
/// How often STATUS= and the outbox/store gauges are refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] crate::fetch::ClientError),
    #[error(transparent)]
    Delivery(#[from] crate::webhook::DeliveryError),
    #[error(transparent)]
    Rules(#[from] crate::rules::BuildError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot serve the HTTP API on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Secret(String),
    #[error("background task failed: {0}")]
    Task(String),
}

/// What the API, the watchdog and reloads share with the running daemon.
pub struct Shared {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub delivery: Arc<Delivery>,
    /// The engine of the config now in force (replaced on reload).
    pub engine: Arc<EngineCell>,
    pub config_path: PathBuf,
    pub started: Instant,
    /// Why the last reload was refused, until a reload succeeds.
    pub reload_error: Mutex<Option<String>>,
    /// Set by the watchdog check: why the daemon is not making progress.
    pub stuck: Mutex<Option<String>>,
    pub api_token: Option<String>,
    /// Started with `--recover-store`: reloaded configs keep first polls silent too.
    pub recovering: bool,
}

impl Shared {
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.current()
    }
}

/// The running source tasks, each with its stop trigger and the configuration it was started
/// with (to tell, on reload, which sources changed).
struct Generation {
    tasks: std::collections::HashMap<String, SourceTask>,
}

struct SourceTask {
    trigger: Trigger,
    handle: tokio::task::JoinHandle<()>,
    fingerprint: String,
}

fn fingerprint(s: &crate::config::Source) -> String {
    format!("{s:?}")
}

fn spawn_source(cell: &Arc<EngineCell>, s: crate::config::Source) -> SourceTask {
    let (trigger, shutdown) = shutdown::channel();
    let fingerprint = fingerprint(&s);
    let handle = tokio::spawn(run_source(cell.clone(), s, shutdown));
    SourceTask {
        trigger,
        handle,
        fingerprint,
    }
}

fn notify(states: &[NotifyState<'_>]) {
    // Outside systemd there is no socket; that is not an error worth reporting.
    let _ = sd_notify::notify(states);
}

pub async fn open_store(cfg: &Config) -> Result<Store, DaemonError> {
    let dir = cfg.daemon.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| DaemonError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let cache = cfg.daemon.cache_capacity_bytes;
    tokio::task::spawn_blocking(move || Store::open(&dir, cache))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?
        .map_err(DaemonError::from)
}

/// For `run --recover-store`: when the store cannot be opened (sled has no repair tool and
/// abrupt stops have been known to corrupt it), move it aside and start empty. Every source's
/// first poll is then silent (as with `backlog = false`) so the restart does not re-raise
/// everything currently listed; matters that appeared while the daemon was down are recorded
/// but not alerted, which is why this is a flag an operator chooses, not the default.
pub async fn open_or_recover(cfg: &mut Config) -> Result<(Store, bool), DaemonError> {
    match open_store(cfg).await {
        Ok(s) => Ok((s, false)),
        Err(DaemonError::Store(e)) => {
            let dir = cfg.daemon.data_dir.clone();
            let aside = dir.with_file_name(format!(
                "{}.unreadable-{}",
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "data".into()),
                Utc::now().format("%Y%m%dT%H%M%SZ")
            ));
            error!(error = %e, data_dir = %dir.display(), moved_to = %aside.display(), "STORE UNREADABLE: moving it aside and starting with an empty store; first polls will not alert");
            std::fs::rename(&dir, &aside).map_err(|source| DaemonError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
            for s in &mut cfg.sources {
                s.backlog = false;
            }
            Ok((open_store(cfg).await?, true))
        }
        Err(e) => Err(e),
    }
}

/// Runs until SIGTERM or SIGINT, reloading on SIGHUP.
pub async fn run(mut cfg: Config, recover_store: bool) -> Result<(), DaemonError> {
    notify(&[NotifyState::Status("opening the store")]);
    let (store, recovering) = if recover_store {
        open_or_recover(&mut cfg).await?
    } else {
        (open_store(&cfg).await?, false)
    };
    let (trigger, shutdown) = shutdown::channel();
    let signals = Signals::install()?;
    run_with_store(cfg, store, trigger, shutdown, signals, recovering).await
}

/// Runs in this process until `stop` completes (for tests: no signals, no reloads).
pub async fn run_until(
    cfg: Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let store = open_store(&cfg).await?;
    let (trigger, shutdown) = shutdown::channel();
    let signals = Signals::from_future(stop);
    run_with_store(cfg, store, trigger, shutdown, signals, false).await
}

/// The signals the daemon reacts to, or (in tests) a future that means "stop".
pub struct Signals {
    rx: tokio::sync::mpsc::Receiver<Signal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Stop(&'static str),
    Reload,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> Result<Signals, DaemonError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    _ = term.recv() => Signal::Stop("SIGTERM"),
                    _ = int.recv() => Signal::Stop("SIGINT"),
                    _ = hup.recv() => Signal::Reload,
                };
                if tx.send(s).await.is_err() {
                    return;
                }
            }
        });
        Ok(Signals { rx })
    }

    #[cfg(not(unix))]
    fn install() -> Result<Signals, DaemonError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(Signal::Stop("ctrl-c")).await;
        });
        Ok(Signals { rx })
    }

    fn from_future(stop: impl std::future::Future<Output = ()> + Send + 'static) -> Signals {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            stop.await;
            let _ = tx.send(Signal::Stop("stop requested")).await;
        });
        Signals { rx }
    }

    async fn next(&mut self) -> Signal {
        self.rx
            .recv()
            .await
            .unwrap_or(Signal::Stop("signal handling ended"))
    }
}

fn start_generation(cell: &Arc<EngineCell>) -> Generation {
    let engine = cell.current();
    let tasks = engine
        .config
        .sources
        .iter()
        .cloned()
        .map(|s| (s.id.clone(), spawn_source(cell, s)))
        .collect();
    Generation { tasks }
}

/// Stops source tasks: no new polls; in-flight ones get `grace`, then are abandoned.
async fn stop_tasks(tasks: Vec<SourceTask>, grace: Duration) {
    for t in &tasks {
        t.trigger.fire();
    }
    let mut set = JoinSet::new();
    let mut handles = Vec::new();
    for t in tasks {
        let abort = t.handle.abort_handle();
        handles.push(abort);
        set.spawn(async move {
            let _ = t.handle.await;
        });
    }
    let drained =
        tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(grace = %humantime::format_duration(grace), remaining = set.len(), "polls still running after the grace period; abandoning them");
        for h in handles {
            h.abort();
        }
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
}

async fn stop_generation(g: Generation, grace: Duration) {
    stop_tasks(g.tasks.into_values().collect(), grace).await;
}

fn build_engine(
    cfg: Config,
    shared_parts: (&Store, &Arc<Delivery>, &Arc<Robots>, &Arc<Metrics>),
    previous: Option<&Fetcher>,
) -> Result<Arc<Engine>, DaemonError> {
    let (store, delivery, robots, metrics) = shared_parts;
    let matcher = Arc::new(Matcher::from_config(&cfg)?);
    let judge = Arc::new(crate::alerter::Judge::new(&cfg, matcher.rule_set()));
    let fetcher = Arc::new(match previous {
        Some(f) => f.renewed(&cfg)?,
        None => Fetcher::new(&cfg)?,
    });
    Ok(Arc::new(Engine {
        config: Arc::new(cfg),
        store: store.clone(),
        fetcher,
        matcher,
        judge,
        delivery: delivery.clone(),
        robots: robots.clone(),
        metrics: metrics.clone(),
        in_flight: Default::default(),
    }))
}

async fn run_with_store(
    cfg: Config,
    store: Store,
    trigger: Trigger,
    shutdown: Shutdown,
    mut signals: Signals,
    recovering: bool,
) -> Result<(), DaemonError> {
    for w in &cfg.warnings {
        warn!(config = %cfg.path.display(), "{w}");
    }
    let metrics = Arc::new(Metrics::new());
    let delivery = Delivery::new(
        store.clone(),
        &cfg.webhook,
        cfg.ops.as_ref(),
        metrics.clone(),
        shutdown.clone(),
    )?;
    let api_token = cfg.daemon.api_token.read().map_err(DaemonError::Secret)?;
    // Fail closed: a configured token that is missing must not leave the API open.
    if api_token.is_none()
        && (cfg.daemon.api_token.is_set() || !cfg.daemon.listen.ip().is_loopback())
    {
        return Err(DaemonError::Secret(format!(
            "the API token ({}) is not set: refusing to serve the API without it",
            cfg.daemon
                .api_token
                .env
                .as_deref()
                .unwrap_or("daemon.api_token_file")
        )));
    }
    let pending = delivery.resume().await?;
    // Tree lengths are full scans in sled: off the runtime's threads.
    let counter = store.clone();
    let (items, outbox) =
        tokio::task::spawn_blocking(move || (counter.item_count(), counter.outbox_len()))
            .await
            .map_err(|e| DaemonError::Task(e.to_string()))?;
    let robots = Arc::new(Robots::default());
    let listen = cfg.daemon.listen;
    let grace = cfg.daemon.shutdown_grace;
    let retention = cfg.daemon.retention;
    info!(
        config = %cfg.path.display(),
        data_dir = %cfg.daemon.data_dir.display(),
        sources = cfg.sources.len(),
        departments = cfg.departments.len(),
        keywords = cfg.keyword_count(),
        items,
        pending_alerts = outbox,
        pending_destinations = pending,
        "tingfeng started"
    );
    let config_path = cfg.path.clone();
    let engine = build_engine(cfg, (&store, &delivery, &robots, &metrics), None)?;
    let shared = Arc::new(Shared {
        store: store.clone(),
        metrics: metrics.clone(),
        delivery: delivery.clone(),
        engine: Arc::new(EngineCell::new(engine.clone())),
        config_path,
        started: Instant::now(),
        reload_error: Mutex::new(None),
        stuck: Mutex::new(None),
        api_token,
        recovering,
    });
    let api = crate::api::serve(listen, shared.clone(), shutdown.clone()).await?;
    let mut generation = start_generation(&shared.engine);
    let pruner = tokio::spawn(prune_loop(store.clone(), retention, shutdown.clone()));
    let status = tokio::spawn(status_loop(shared.clone(), shutdown.clone()));
    let groups = tokio::spawn(group_loop(shared.clone(), shutdown.clone()));
    // The progress check runs always (it feeds /readyz); it pings systemd's watchdog when
    // one is configured.
    let watchdog = Some(tokio::spawn(watchdog_loop(
        shared.clone(),
        sd_notify::watchdog_enabled(),
        shutdown.clone(),
    )));
    notify(&[NotifyState::Ready, NotifyState::Status("running")]);

    loop {
        match signals.next().await {
            Signal::Stop(name) => {
                info!(signal = name, "shutting down");
                break;
            }
            Signal::Reload => {
                let now = NotifyState::monotonic_usec_now().ok();
                let mut states = vec![NotifyState::Reloading];
                states.extend(now);
                notify(&states);
                generation = reload(&shared, generation, grace).await;
                notify(&[NotifyState::Ready]);
            }
        }
    }

    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    stop_generation(generation, grace).await;
    trigger.fire();
    delivery.join().await;
    let _ = pruner.await;
    let _ = status.await;
    let _ = groups.await;
    if let Some(w) = watchdog {
        let _ = w.await;
    }
    let _ = api.await;
    let flush = store.clone();
    tokio::task::spawn_blocking(move || flush.flush())
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))??;
    info!("stopped; store flushed");
    Ok(())
}

/// Loads and validates the config again. Invalid: the old one keeps running and the errors
/// are logged and counted. Valid: the source tasks are replaced (their state — ETags,
/// health, known items — lives in the store and carries over) and the automaton is rebuilt
/// once.
async fn reload(shared: &Arc<Shared>, current: Generation, grace: Duration) -> Generation {
    let path = shared.config_path.clone();
    let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let old = shared.engine();
    let parts = (
        &shared.store,
        &shared.delivery,
        &old.robots,
        &shared.metrics,
    );
    let built = loaded.and_then(|mut cfg| {
        if shared.recovering {
            for s in &mut cfg.sources {
                s.backlog = false;
            }
        }
        for w in &cfg.warnings {
            warn!(config = %cfg.path.display(), "{w}");
        }
        if cfg.webhook.url != old.config.webhook.url
            || cfg.webhook.secret != old.config.webhook.secret
            || cfg.daemon.listen != old.config.daemon.listen
        {
            warn!("webhook secret/timeouts and daemon.listen take effect on restart; department webhook URLs apply now");
        }
        build_engine(cfg, parts, Some(&old.fetcher)).map_err(|e| e.to_string())
    });
    match built {
        Err(why) => {
            error!(config = %shared.config_path.display(), error = %why, "reload refused: the running configuration stays in force");
            shared
                .metrics
                .reloads
                .get_or_create(&crate::metrics::ResultLabel {
                    result: "invalid".into(),
                })
                .inc();
            *shared
                .reload_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(why);
            current
        }
        Ok(engine) => {
            let mut current = current;
            let wanted: std::collections::HashMap<String, crate::config::Source> = engine
                .config
                .sources
                .iter()
                .map(|s| (s.id.clone(), s.clone()))
                .collect();
            // Sources removed or changed stop; unchanged ones keep running (and their timers)
            // and pick up the new rules and limits at their next poll.
            let mut stopping = Vec::new();
            let ids: Vec<String> = current.tasks.keys().cloned().collect();
            let (mut removed, mut changed): (usize, usize) = (0, 0);
            for id in ids {
                let keep = wanted.get(&id).is_some_and(|s| {
                    current
                        .tasks
                        .get(&id)
                        .is_some_and(|t| t.fingerprint == fingerprint(s))
                });
                if !keep {
                    if wanted.contains_key(&id) {
                        changed += 1;
                    } else {
                        removed += 1;
                    }
                    if let Some(t) = current.tasks.remove(&id) {
                        stopping.push(t);
                    }
                }
            }
            // Changed sources stop before the new engine is visible: none starts a poll
            // with its old settings under the new rules.
            for t in &stopping {
                t.trigger.fire();
            }
            shared.engine.replace(engine.clone());
            stop_tasks(stopping, grace).await;
            // Polls aborted between commit and wake-up leave alerts queued: wake every queue.
            if let Err(e) = shared.delivery.resume().await {
                warn!(error = %e, "cannot rescan the outbox after reload");
            }
            let mut added: usize = 0;
            for s in &engine.config.sources {
                if !current.tasks.contains_key(&s.id) {
                    added += 1;
                    current
                        .tasks
                        .insert(s.id.clone(), spawn_source(&shared.engine, s.clone()));
                }
            }
            *shared
                .reload_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
            shared
                .metrics
                .reloads
                .get_or_create(&crate::metrics::ResultLabel {
                    result: "ok".into(),
                })
                .inc();
            info!(
                sources = engine.config.sources.len(),
                added = added.saturating_sub(changed),
                removed,
                changed,
                departments = engine.config.departments.len(),
                keywords = engine.config.keyword_count(),
                rule_set = engine.matcher.rule_set(),
                "configuration reloaded"
            );
            current
        }
    }
}

/// STATUS= for `systemctl status`, and the gauges that need a store scan.
async fn status_loop(shared: Arc<Shared>, mut shutdown: Shutdown) {
    loop {
        let store = shared.store.clone();
        let counts = tokio::task::spawn_blocking(move || {
            let entries = store.outbox_entries().unwrap_or_default();
            let oldest = entries.iter().map(|e| e.created).min();
            (entries.len(), oldest, store.size_on_disk())
        })
        .await;
        if let Ok((pending, oldest, size)) = counts {
            shared.metrics.outbox_depth.set(pending as i64);
            let age = oldest
                .map(|o| (Utc::now() - o).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            shared.metrics.outbox_oldest_seconds.set(age);
            shared.metrics.store_bytes.set(size as i64);
            let sources = shared.engine().config.sources.len();
            let status = format!(
                "{sources} sources, {pending} alerts pending delivery{}",
                shared
                    .reload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|_| "; last reload REFUSED (see log)")
                    .unwrap_or("")
            );
            notify(&[NotifyState::Status(&status)]);
        }
        if !shutdown.sleep(STATUS_EVERY).await {
            return;
        }
    }
}

/// Why the daemon is not making progress, if it is not: the store does not answer, a poll
/// has run far past its timeouts, or a webhook send is stuck.
pub async fn progress_problem(shared: &Shared) -> Option<String> {
    let store = shared.store.clone();
    let check = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || store.check()),
    )
    .await;
    match check {
        Err(_) => return Some("the store did not answer within 10 s".into()),
        Ok(Err(e)) => return Some(format!("store check task failed: {e}")),
        Ok(Ok(Err(e))) => return Some(format!("the store fails: {e}")),
        Ok(Ok(Ok(()))) => {}
    }
    let engine = shared.engine();
    let longest = engine
        .in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(id, t)| (id.clone(), t.elapsed()))
        .max_by_key(|(_, d)| *d);
    if let Some((id, d)) = longest {
        let limit = engine
            .config
            .source(&id)
            .map(|s| (s.timeout * 10).max(Duration::from_secs(300)))
            .unwrap_or(Duration::from_secs(300));
        // A long poll that still fetches (a search over many keywords) is progress.
        let fetching =
            crate::fetch::since_last_fetch().is_some_and(|t| t < Duration::from_secs(300));
        if d > limit && !fetching {
            return Some(format!(
                "poll of {id} has run for {} and nothing was fetched for 5 minutes",
                humantime::format_duration(Duration::from_secs(d.as_secs()))
            ));
        }
    }
    if let Some(d) = shared.delivery.stuck_for() {
        if d > shared.delivery.send_limit() {
            return Some(format!(
                "a webhook send has run for {}",
                humantime::format_duration(Duration::from_secs(d.as_secs()))
            ));
        }
    }
    None
}

/// Pings systemd's watchdog only while the daemon makes progress, so a wedged store or a
/// stuck loop gets the service restarted.
async fn watchdog_loop(shared: Arc<Shared>, every: Option<Duration>, mut shutdown: Shutdown) {
    let period = every.map(|e| e / 2).unwrap_or(Duration::from_secs(15));
    loop {
        let problem = progress_problem(&shared).await;
        {
            let mut stuck = shared.stuck.lock().unwrap_or_else(|p| p.into_inner());
            match &problem {
                None => {
                    if stuck.take().is_some() {
                        info!("progress resumed; watchdog pings resume");
                    }
                    if every.is_some() {
                        notify(&[NotifyState::Watchdog]);
                    }
                }
                Some(why) => {
                    if stuck.as_deref() != Some(why.as_str()) {
                        error!(problem = %why, "no progress: withholding watchdog pings so systemd restarts the service");
                    }
                    *stuck = Some(why.clone());
                }
            }
        }
        if !shutdown.sleep(period).await {
            return;
        }
    }
}

/// Sends the alerts whose group_wait, quiet hours or silence is over. Alerts due at the end
/// of a poll are sent by the poll itself; this catches the ones that come due in between.
async fn group_loop(shared: Arc<Shared>, mut shutdown: Shutdown) {
    loop {
        if !shutdown.sleep(GROUP_TICK).await {
            return;
        }
        let engine = shared.engine();
        let (store, judge) = (engine.store.clone(), engine.judge.clone());
        let r = tokio::task::spawn_blocking(move || {
            let raised = crate::ingest::flush_due(&store, &judge, Utc::now())?;
            if !raised.is_empty() {
                store.flush()?;
            }
            Ok::<_, StoreError>(raised)
        })
        .await;
        match r {
            Ok(Ok(raised)) => crate::poll::announce(&engine, &raised),
            Ok(Err(e)) => warn!(error = %e, "cannot send the alerts that came due"),
            Err(e) => warn!(error = %e, "alert timer task failed"),
        }
    }
}

async fn prune_loop(store: Store, retention: Duration, mut shutdown: Shutdown) {
    loop {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.prune(cutoff)).await {
            Ok(Ok(r)) if r.items + r.identities + r.alerts + r.events > 0 => {
                info!(
                    items = r.items,
                    events = r.events,
                    identities = r.identities,
                    alerts = r.alerts,
                    "retention pruned old records"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "retention failed"),
            Err(e) => warn!(error = %e, "retention task failed"),
        }
        if !shutdown.sleep(PRUNE_EVERY).await {
            return;
        }
    }
}
