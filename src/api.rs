//! Owns the HTTP API on `daemon.listen`: health and readiness, Prometheus metrics, and JSON
//! views of alerts, items, sources and the outbox. When a token is configured (required
//! off loopback) every endpoint but `/healthz` and `/readyz` needs `Authorization: Bearer`.

use crate::daemon::{DaemonError, Shared};
use crate::shutdown::Shutdown;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
const MAX_ITEMS: usize = 50_000;

/// Binds `addr` and serves until shutdown; a bind failure is reported at startup.
pub async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Listen { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(listen = %bound, auth = shared.api_token.is_some(), "HTTP API listening");
    let app = router(shared);
    Ok(tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    }))
}

pub fn router(shared: Arc<Shared>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/items", get(items))
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/outbox", get(outbox))
        .route("/api/v1/outbox/dead/{seq}/retry", post(retry_dead))
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/{id}", get(event))
        .route("/api/v1/events/{id}/respond", post(respond))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(shared)
}

/// Compares without an early exit, so response timing does not leak the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(token) = &shared.api_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"error": "a valid bearer token is required"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn internal(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": e.to_string()})),
    )
        .into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e)),
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    // The progress checker's last verdict: no store work on behalf of unauthenticated calls.
    let stuck = shared
        .stuck
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match stuck {
        None => Json(json!({"ready": true})).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": why})),
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

fn parse_since(s: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(s) = s else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))),
        Err(_) => Err(format!(
            "since={s:?}: give RFC 3339 or a duration such as 24h"
        )),
    }
}

#[derive(Deserialize)]
struct AlertQuery {
    department: Option<String>,
    level: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn alerts(State(shared): State<Arc<Shared>>, Query(q): Query<AlertQuery>) -> Response {
    let since = match parse_since(q.since.as_deref()) {
        Ok(s) => s,
        Err(why) => return (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response(),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let store = shared.store.clone();
    let r = blocking(move || {
        store.alerts_page(q.cursor.as_deref(), limit, |a| {
            let dept_ok = q
                .department
                .as_deref()
                .is_none_or(|d| a["department"]["id"] == d);
            let level_ok = q.level.as_deref().is_none_or(|l| a["level"] == l);
            let since_ok = since.is_none_or(|s| {
                a["created"]
                    .as_str()
                    .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                    .is_some_and(|c| c >= s)
            });
            dept_ok && level_ok && since_ok
        })
    })
    .await;
    match r {
        Ok((alerts, next)) => Json(json!({"alerts": alerts, "next_cursor": next})).into_response(),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
struct ItemQuery {
    id: Option<String>,
    q: Option<String>,
    source: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn items(State(shared): State<Arc<Shared>>, Query(q): Query<ItemQuery>) -> Response {
    let since = match parse_since(q.since.as_deref()) {
        Ok(s) => s,
        Err(why) => return (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response(),
    };
    // Larger pages than for alerts: `tingfeng backtest` reads a week of items through here
    // while the daemon holds the store.
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_ITEMS);
    let needle = q.q.as_deref().map(crate::text::normalize_for_match);
    let store = shared.store.clone();
    let r = blocking(move || {
        store.items_matching(limit, |it| {
            q.id.as_deref().is_none_or(|id| it.id == id)
                && q.source.as_deref().is_none_or(|s| it.source == s)
                && since.is_none_or(|s| it.fetched >= s)
                && needle.as_deref().is_none_or(|n| {
                    crate::text::normalize_for_match(&it.title).contains(n)
                        || crate::text::normalize_for_match(&it.text).contains(n)
                })
        })
    })
    .await;
    match r {
        Ok(items) => Json(json!({"items": items})).into_response(),
        Err(resp) => resp,
    }
}

async fn sources(State(shared): State<Arc<Shared>>) -> Response {
    let engine = shared.engine();
    let store = shared.store.clone();
    let states = match blocking(move || store.source_states()).await {
        Ok(s) => s.into_iter().collect::<std::collections::HashMap<_, _>>(),
        Err(r) => return r,
    };
    let list: Vec<serde_json::Value> = engine
        .config
        .sources
        .iter()
        .map(|s| {
            let st = states.get(&s.id).cloned().unwrap_or_default();
            json!({
                "id": s.id,
                "kind": s.kind.to_string(),
                "url": s.url.as_str(),
                "healthy": st.failing.is_none(),
                "failing": st.failing,
                "consecutive_failures": st.consecutive_failures,
                "last_success": st.last_success.map(crate::alert::rfc3339),
                "last_error": st.last_error,
                "last_error_at": st.last_error_at.map(crate::alert::rfc3339),
                "next_poll": st.next_poll.map(crate::alert::rfc3339),
                "last_status": st.last_status,
                "items_new": st.items_new,
                "last_new_item": st.last_new_item.map(crate::alert::rfc3339),
            })
        })
        .collect();
    let reload_error = shared
        .reload_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Json(json!({"sources": list, "reload_error": reload_error})).into_response()
}

async fn outbox(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.store.clone();
    let r = blocking(move || Ok((store.outbox_entries()?, store.dead_letters_keyed()?))).await;
    match r {
        Ok((pending, dead)) => {
            let pending: Vec<serde_json::Value> = pending
                .iter()
                .map(|e| {
                    json!({
                        "alert_id": e.alert_id, "channel": e.channel, "department": e.department,
                        "url": crate::webhook::redact(&e.url), "created": crate::alert::rfc3339(e.created),
                        "attempts": e.attempts, "next_attempt": crate::alert::rfc3339(e.next_attempt),
                        "last_error": e.last_error,
                    })
                })
                .collect();
            let dead: Vec<serde_json::Value> = dead
                .iter()
                .map(|(seq, d)| {
                    json!({
                        "seq": seq, "alert_id": d.entry.alert_id, "department": d.entry.department,
                        "url": crate::webhook::redact(&d.entry.url), "reason": d.reason, "at": crate::alert::rfc3339(d.at),
                        "retry": format!("/api/v1/outbox/dead/{seq}/retry"),
                    })
                })
                .collect();
            Json(json!({"pending": pending, "dead": dead})).into_response()
        }
        Err(resp) => resp,
    }
}

async fn retry_dead(State(shared): State<Arc<Shared>>, Path(seq): Path<u64>) -> Response {
    let store = shared.store.clone();
    match blocking(move || store.retry_dead(seq, Utc::now())).await {
        Ok(Some(url)) => {
            shared.delivery.notify(&url);
            tracing::info!(seq, url = %crate::webhook::redact(&url), "dead letter queued again by operator");
            Json(json!({"requeued": seq})).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no dead letter {seq}")})),
        )
            .into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct EventQuery {
    department: Option<String>,
    limit: Option<usize>,
}

/// The matters departments are following: one entry per (department, event), newest
/// activity first, with level, score and whether an alert is waiting.
async fn events(State(shared): State<Arc<Shared>>, Query(q): Query<EventQuery>) -> Response {
    let store = shared.store.clone();
    let limit = q.limit.unwrap_or(50).min(1000);
    let r = blocking(move || {
        let mut out = Vec::new();
        for g in store.all_groups()? {
            if q.department.as_deref().is_some_and(|d| d != g.department) {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            let ev = store.event(&g.event)?;
            out.push(json!({
                "event": ev.as_ref().map(crate::alert::EventRef::of),
                "department": g.department,
                "level": g.level,
                "score": g.score,
                "matched": g.matched,
                "alerts_sent": g.seq,
                "waiting": g.due.map(crate::alert::rfc3339),
                "silenced": g.silenced,
                "updated": crate::alert::rfc3339(g.updated),
            }));
        }
        Ok(out)
    })
    .await;
    match r {
        Ok(list) => Json(json!({"events": list})).into_response(),
        Err(resp) => resp,
    }
}

async fn event(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let store = shared.store.clone();
    let r = blocking(move || {
        Ok((
            store.event(&id)?,
            store.groups_of(&id)?,
            store.members(&id)?,
        ))
    })
    .await;
    match r {
        Ok((Some(ev), groups, members)) => {
            Json(json!({"event": ev, "groups": groups, "items": members})).into_response()
        }
        Ok((None, _, _)) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such event"})),
        )
            .into_response(),
        Err(resp) => resp,
    }
}

#[derive(serde::Deserialize)]
struct RespondBody {
    #[serde(default)]
    note: String,
}

/// Marks an event responded (回应): later reaction is counted apart and a renewed rise
/// escalates with `after_response`.
async fn respond(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(body): Json<RespondBody>,
) -> Response {
    let store = shared.store.clone();
    let note = body.note.clone();
    let event_id = id.clone();
    match blocking(move || crate::alerter::respond(&store, &event_id, &note, Utc::now())).await {
        Ok(Some(ev)) => {
            tracing::info!(event = %id, note = %body.note, "event marked responded");
            Json(json!({"event": ev})).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no event {id}")})),
        )
            .into_response(),
        Err(resp) => resp,
    }
}

/// A client of this API, for the commands that ask a running daemon (`status`, and
/// `try-rules`/`backtest` while the daemon holds the store).
pub struct ApiClient {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl ApiClient {
    /// The daemon at `daemon.listen` (0.0.0.0 asked on loopback), with its token if any.
    pub fn for_config(cfg: &crate::config::Config, base: Option<String>) -> Result<Self, String> {
        let base = base.unwrap_or_else(|| {
            let mut addr = cfg.daemon.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        });
        let token = cfg.daemon.api_token.read()?;
        crate::fetch::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ApiClient {
            base,
            token,
            client,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `path` and parses the JSON answer; any non-2xx is an error with its body.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    /// POSTs `body` as JSON to `path`.
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(req).await
    }

    async fn send(&self, mut req: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| crate::fetch::error_chain(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }
}
