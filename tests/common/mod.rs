//! Real parts for integration tests: a local HTTP server (127.0.0.1) whose routes can be
//! changed while the daemon runs, and a webhook receiver that records what it got and answers
//! with a scripted sequence of statuses.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SECRET_ENV: &str = "TINGFENG_TEST_WEBHOOK_SECRET";
pub const SECRET: &str = "s3cret-for-tests";

/// Sets the environment the tests share, once, before any test reads it.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY-free in edition 2021; done once, before any test thread reads the variable.
        std::env::set_var(SECRET_ENV, SECRET);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// What a route answers.
#[derive(Clone)]
pub enum Route {
    /// 200 with the body; 304 when If-None-Match matches the ETag.
    Feed {
        body: Arc<Vec<u8>>,
        content_type: &'static str,
        etag: Option<String>,
    },
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Accepts the request and never answers.
    Hang,
    /// 200 with a body streamed in chunks (no Content-Length), `count` × `chunk` bytes.
    Stream { chunk: usize, count: usize },
    /// Like `Feed` (without validators), but answers only after `delay`.
    Slow { body: Arc<Vec<u8>>, delay: Duration },
}

impl Route {
    pub fn feed(body: Vec<u8>, content_type: &'static str) -> Route {
        let etag = format!(
            "\"{:x}\"",
            body.len() * 31 + body.iter().map(|&b| b as usize).sum::<usize>()
        );
        Route::Feed {
            body: Arc::new(body),
            content_type,
            etag: Some(etag),
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// The raw query string (percent-encoded as sent).
    pub query: String,
    pub headers: HeaderMap,
    pub status: u16,
}

#[derive(Default)]
struct ServerState {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<Vec<Seen>>,
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
}

pub struct FeedServer {
    pub addr: SocketAddr,
    state: Arc<ServerState>,
}

impl FeedServer {
    pub async fn start() -> FeedServer {
        let state = Arc::new(ServerState::default());
        let app = axum::Router::new()
            .fallback(serve_route)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FeedServer { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), route);
    }

    /// The most requests this server ever had open at once.
    pub fn max_in_flight(&self) -> usize {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

async fn serve_route(State(state): State<Arc<ServerState>>, req: Request<Body>) -> Response<Body> {
    use std::sync::atomic::Ordering;
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let resp = answer(&state, req).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    resp
}

async fn answer(state: &Arc<ServerState>, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    // A route for "path?query" wins over one for the path alone (paged APIs).
    let route = {
        let routes = state.routes.lock().unwrap();
        routes
            .get(&format!("{path}?{query}"))
            .or_else(|| routes.get(&path))
            .cloned()
    };
    let headers = req.headers().clone();
    let (status, resp) = match route {
        None => (
            404,
            Response::builder().status(404).body(Body::empty()).unwrap(),
        ),
        Some(Route::Hang) => {
            state.log.lock().unwrap().push(Seen {
                path,
                query,
                headers,
                status: 0,
            });
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Response::new(Body::empty());
        }
        Some(Route::Stream { chunk, count }) => {
            let block = bytes::Bytes::from(vec![b'<'; chunk]);
            let stream = futures_util::stream::iter(
                (0..count).map(move |_| Ok::<_, std::io::Error>(block.clone())),
            );
            (
                200,
                Response::builder()
                    .status(200)
                    .header("Content-Type", "application/rss+xml")
                    .body(Body::from_stream(stream))
                    .unwrap(),
            )
        }
        Some(Route::Slow { body, delay }) => {
            tokio::time::sleep(delay).await;
            (
                200,
                Response::builder()
                    .status(200)
                    .header("Content-Type", "application/xml")
                    .body(Body::from(body.as_ref().clone()))
                    .unwrap(),
            )
        }
        Some(Route::Status { code, retry_after }) => {
            let mut b = Response::builder().status(code);
            if let Some(ra) = retry_after {
                b = b.header("Retry-After", ra);
            }
            (code, b.body(Body::empty()).unwrap())
        }
        Some(Route::Feed {
            body,
            content_type,
            etag,
        }) => {
            let inm = headers
                .get("if-none-match")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if etag.is_some() && inm == etag {
                (
                    304,
                    Response::builder().status(304).body(Body::empty()).unwrap(),
                )
            } else {
                let mut b = Response::builder()
                    .status(200)
                    .header("Content-Type", content_type);
                if let Some(e) = &etag {
                    b = b.header("ETag", e);
                }
                (200, b.body(Body::from(body.as_ref().clone())).unwrap())
            }
        }
    };
    state.log.lock().unwrap().push(Seen {
        path,
        query,
        headers,
        status,
    });
    resp
}

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: String,
    pub status: u16,
}

impl Delivery {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("webhook body is JSON")
    }

    pub fn id(&self) -> String {
        self.json()["id"].as_str().unwrap_or_default().to_string()
    }

    /// Checks the signature header against the shared test secret.
    pub fn signature_valid(&self) -> bool {
        let ts: i64 = match self
            .headers
            .get("x-tingfeng-timestamp")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            Some(t) => t,
            None => return false,
        };
        let given = self
            .headers
            .get("x-tingfeng-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        given == tingfeng::webhook::sign(SECRET.as_bytes(), ts, &self.body)
    }
}

#[derive(Default)]
struct ReceiverState {
    script: Mutex<VecDeque<u16>>,
    default_status: Mutex<u16>,
    got: Mutex<Vec<Delivery>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Receiver {
        let state = Arc::new(ReceiverState::default());
        *state.default_status.lock().unwrap() = 200;
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// Statuses to answer with, in order, before falling back to the default.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    pub fn set_default(&self, status: u16) {
        *self.state.default_status.lock().unwrap() = status;
    }

    pub fn all(&self) -> Vec<Delivery> {
        self.state.got.lock().unwrap().clone()
    }

    /// Deliveries that were acknowledged (2xx).
    pub fn acked(&self) -> Vec<Delivery> {
        self.all()
            .into_iter()
            .filter(|d| (200..300).contains(&d.status))
            .collect()
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, req: Request<Body>) -> Response<Body> {
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 24)
        .await
        .unwrap_or_default();
    let status = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(*state.default_status.lock().unwrap());
    state.got.lock().unwrap().push(Delivery {
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        status,
    });
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .body(Body::empty())
        .unwrap()
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; returns whether it held. A
/// bounded wait for something asynchronous, not a speed assertion.
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

pub const WAIT: Duration = Duration::from_secs(30);

/// The config body most tests share: the ruanyifeng Atom feed at `url`, watched by a
/// department whose keyword is in every entry's title.
pub fn weekly_config(url: &str) -> String {
    format!(
        r#"
[[source]]
id = "ruanyifeng"
kind = "feed"
url = "{url}"

[[department]]
id = "weekly"
name = "周刊观察"
keywords = ["周刊"]
"#
    )
}

/// A temp dir holding a config file and the store.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sources.toml")
    }

    /// Writes a config: `[daemon]` pointing at this workspace, fast local-friendly defaults,
    /// then `body` (sources and departments) and a `[webhook]` section for `webhook_url`.
    pub fn write_config(&self, body: &str, webhook_url: &str) -> PathBuf {
        let text = format!(
            r#"[daemon]
data_dir = "{data}"
listen = "127.0.0.1:0"
shutdown_grace = "3s"

[defaults]
interval = "300ms"
timeout = "3s"
per_host = "50/1s"
jitter = 0.0

[webhook]
url = "{webhook_url}"
secret_env = "{SECRET_ENV}"
timeout = "2s"
max_backoff = "2s"

{body}
"#,
            data = self.data_dir().display(),
        );
        std::fs::write(self.config_path(), text).unwrap();
        self.config_path()
    }

    pub fn load(&self) -> tingfeng::config::Config {
        tingfeng::config::Config::load(&self.config_path()).unwrap()
    }
}

/// A daemon running in this process until [`Running::stop`].
pub struct Running {
    trigger: tingfeng::shutdown::Trigger,
    handle: tokio::task::JoinHandle<Result<(), tingfeng::daemon::DaemonError>>,
}

impl Running {
    pub fn start(cfg: tingfeng::config::Config) -> Running {
        let (trigger, mut shutdown) = tingfeng::shutdown::channel();
        let stop = async move { shutdown.wait().await };
        let handle = tokio::spawn(tingfeng::daemon::run_until(cfg, stop));
        Running { trigger, handle }
    }

    pub async fn stop(self) {
        self.trigger.fire();
        self.handle
            .await
            .expect("daemon task")
            .expect("daemon ran cleanly");
    }
}
