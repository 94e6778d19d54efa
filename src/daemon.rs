//! Owns the wiring of the running daemon: opening the store, starting delivery and one task
//! per source, retention, signals, and an orderly shutdown that loses nothing.

use crate::config::Config;
use crate::fetch::Fetcher;
use crate::poll::Engine;
use crate::rules::Matcher;
use crate::schedule::run_source;
use crate::shutdown::{self, Shutdown};
use crate::store::{Store, StoreError};
use crate::webhook::Delivery;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] crate::fetch::ClientError),
    #[error(transparent)]
    Rules(#[from] crate::rules::BuildError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("background task failed: {0}")]
    Task(String),
}

/// Opens the store on a blocking thread (sled's open replays its log and can take a while).
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
pub async fn open_or_recover(cfg: &mut Config) -> Result<Store, DaemonError> {
    match open_store(cfg).await {
        Ok(s) => Ok(s),
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
            open_store(cfg).await
        }
        Err(e) => Err(e),
    }
}

/// Runs until SIGTERM or SIGINT, then stops scheduling, lets in-flight polls finish within
/// `daemon.shutdown_grace`, stops delivery after its current attempt and flushes the store.
pub async fn run(mut cfg: Config, recover_store: bool) -> Result<(), DaemonError> {
    let (trigger, shutdown) = shutdown::channel();
    let signals = tokio::spawn(wait_for_signal());
    let store = if recover_store {
        open_or_recover(&mut cfg).await?
    } else {
        open_store(&cfg).await?
    };
    let result = run_with_store(cfg, store, shutdown, async move {
        match signals.await {
            Ok(Ok(name)) => info!(signal = name, "shutting down"),
            Ok(Err(e)) => error!(error = %e, "signal handling failed; shutting down"),
            Err(e) => error!(error = %e, "signal task failed; shutting down"),
        }
        trigger.fire();
    })
    .await;
    result
}

/// The daemon proper; returns once `stop` completes and everything has wound down.
pub async fn run_until(
    cfg: Config,
    shutdown: Shutdown,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let store = open_store(&cfg).await?;
    run_with_store(cfg, store, shutdown, stop).await
}

async fn run_with_store(
    cfg: Config,
    store: Store,
    shutdown: Shutdown,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    for w in &cfg.warnings {
        warn!(config = %cfg.path.display(), "{w}");
    }
    let matcher = Arc::new(Matcher::new(&cfg.departments)?);
    let fetcher = Arc::new(Fetcher::new(&cfg)?);
    let delivery = Delivery::new(store.clone(), &cfg.webhook, shutdown.clone())?;
    if cfg.webhook.secret_env.is_some() && !delivery.is_signing() {
        warn!("webhook secret is not set in the environment: alerts are sent UNSIGNED");
    }
    let pending = delivery.resume().await?;
    // Tree lengths are full scans in sled: off the runtime's threads.
    let counter = store.clone();
    let (items, outbox) =
        tokio::task::spawn_blocking(move || (counter.item_count(), counter.outbox_len()))
            .await
            .map_err(|e| DaemonError::Task(e.to_string()))?;
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
    let config = Arc::new(cfg);
    let engine = Arc::new(Engine {
        config: config.clone(),
        store: store.clone(),
        fetcher,
        matcher,
        delivery: delivery.clone(),
        robots: Default::default(),
    });
    let mut sources = JoinSet::new();
    for s in config.sources.iter().cloned() {
        sources.spawn(run_source(engine.clone(), s, shutdown.clone()));
    }
    let pruner = tokio::spawn(prune_loop(
        store.clone(),
        config.daemon.retention,
        shutdown.clone(),
    ));

    stop.await;

    let grace = config.daemon.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while sources.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(grace = %humantime::format_duration(grace), remaining = sources.len(), "polls still running after the grace period; abandoning them");
        sources.abort_all();
        while sources.join_next().await.is_some() {}
    }
    delivery.join().await;
    let _ = pruner.await;
    let flush = store.clone();
    tokio::task::spawn_blocking(move || flush.flush())
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))??;
    info!(
        pending_alerts = store.outbox_len(),
        "stopped; store flushed"
    );
    Ok(())
}

async fn prune_loop(store: Store, retention: Duration, mut shutdown: Shutdown) {
    loop {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.prune(cutoff)).await {
            Ok(Ok(r)) if r.items + r.identities + r.alerts > 0 => {
                info!(
                    items = r.items,
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

#[cfg(unix)]
async fn wait_for_signal() -> Result<&'static str, DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<&'static str, DaemonError> {
    tokio::signal::ctrl_c()
        .await
        .map_err(DaemonError::Signals)?;
    Ok("ctrl-c")
}
