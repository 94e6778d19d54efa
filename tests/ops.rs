//! Operations: reload on SIGHUP (valid and invalid), sd_notify messages and the watchdog, the
//! HTTP API with and without its token, Prometheus metrics, ops alerts, the systemd unit.

mod common;

use common::*;
use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tingfeng");
const TOKEN_ENV: &str = "TINGFENG_TEST_API_TOKEN";
const TOKEN: &str = "t0ken-for-tests";

/// `tingfeng run` on `cfg` with the test secrets, quiet.
fn daemon_command(cfg: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["run", "--config"])
        .arg(cfg)
        .env(SECRET_ENV, SECRET)
        .env(TOKEN_ENV, TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Collects sd_notify datagrams sent to a socket in a temp dir.
struct NotifySocket {
    path: std::path::PathBuf,
    got: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn bind(dir: &std::path::Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    g.lock().unwrap().push(msg);
                }
            }
        });
        NotifySocket { path, got }
    }

    fn messages(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self, needle: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == needle))
            .count()
    }
}

async fn api_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    tingfeng::fetch::install_crypto_provider();
    let client = reqwest::Client::new();
    let mut req = client.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

fn config_with(port: u16, sources: &str, webhook: &str, data: &std::path::Path) -> String {
    format!(
        r#"[daemon]
data_dir = "{data}"
listen = "127.0.0.1:{port}"
api_token_env = "{TOKEN_ENV}"
shutdown_grace = "3s"

[defaults]
interval = "300ms"
timeout = "3s"
per_host = "50/1s"
jitter = 0.0

[webhook]
url = "{webhook}"
secret_env = "{SECRET_ENV}"
timeout = "2s"
max_backoff = "2s"

[[department]]
id = "weekly"
name = "周刊观察"
keywords = ["周刊", "CSS"]

{sources}
"#,
        data = data.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_valid_configs_keeps_old_on_invalid_and_notifies_systemd() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/a.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot0.xml"),
            "application/atom+xml",
        ),
    );
    server.set(
        "/b.xml",
        Route::feed(fixture("chardet_gb2312_w3cn.org_rss20.xml"), "text/xml"),
    );
    let ws = Workspace::new();
    let port = free_port();
    let source = |id: &str, path: &str| {
        format!(
            "[[source]]\nid = \"{id}\"\nkind = \"feed\"\nurl = \"{}\"\n",
            server.url(path)
        )
    };
    let cfg = ws.config_path();
    std::fs::write(
        &cfg,
        config_with(
            port,
            &source("a", "/a.xml"),
            &receiver.url(),
            &ws.data_dir(),
        ),
    )
    .unwrap();
    let notify = NotifySocket::bind(ws.dir.path());
    let mut child = daemon_command(&cfg)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000")
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    assert!(
        wait_for(WAIT, || notify.count("READY=1") == 1).await,
        "{:?}",
        notify.messages()
    );
    assert!(wait_for(WAIT, || receiver.acked().len() >= 2).await);
    assert!(
        wait_for(WAIT, || notify.count("WATCHDOG=1") >= 2).await,
        "watchdog pinged"
    );
    assert!(notify.messages().iter().any(|m| m.starts_with("STATUS=")));

    // A valid change: a removed, b added.
    std::fs::write(
        &cfg,
        config_with(
            port,
            &source("b", "/b.xml"),
            &receiver.url(),
            &ws.data_dir(),
        ),
    )
    .unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(
        wait_for(WAIT, || notify.count("RELOADING=1") == 1
            && notify.count("READY=1") == 2)
        .await,
        "{:?}",
        notify.messages()
    );
    assert!(wait_for(WAIT, || server.requests("/b.xml").len() >= 2).await);
    let a_polls = server.requests("/a.xml").len();
    // b's alerts arrive; a's items stay known (no re-alert, still searchable).
    // 7 of the w3cn items mention CSS (counted with grep on the decoded fixture).
    assert!(
        wait_for(WAIT, || receiver.acked().len() >= 2 + 7).await,
        "{}",
        receiver.acked().len()
    );
    let (status, body) = api_get(port, "/api/v1/items?source=a", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let items: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        items["items"].as_array().unwrap().len(),
        2,
        "a's items survive its removal"
    );

    // An invalid change: refused, the running config stays.
    std::fs::write(
        &cfg,
        "[[source]]\nid = \"b\"\nkind = \"feed\"\nurl = \"not a url\"\n",
    )
    .unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(
        wait_for(WAIT, || notify.count("RELOADING=1") == 2
            && notify.count("READY=1") == 3)
        .await
    );
    let polls_b = server.requests("/b.xml").len();
    assert!(
        wait_for(WAIT, || server.requests("/b.xml").len() >= polls_b + 2).await,
        "b still polled"
    );
    assert_eq!(server.requests("/a.xml").len(), a_polls, "a stays removed");
    let (_, body) = api_get(port, "/api/v1/sources", Some(TOKEN)).await;
    let sources: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        sources["reload_error"]
            .as_str()
            .unwrap_or("")
            .contains("not a valid URL"),
        "{body}"
    );
    let (_, metrics) = api_get(port, "/metrics", Some(TOKEN)).await;
    let scrape =
        prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    let reload = |result: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "tingfeng_config_reloads_total"
                    && s.labels.get("result") == Some(result)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => -1.0,
            })
    };
    assert_eq!(reload("ok"), Some(1.0));
    assert_eq!(reload("invalid"), Some(1.0));

    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(wait_for(WAIT, || notify.count("STOPPING=1") == 1).await);
    let ids: HashSet<String> = receiver.acked().iter().map(|d| d.id()).collect();
    assert_eq!(
        ids.len(),
        receiver.acked().len(),
        "no alert twice across reloads"
    );
    assert_eq!(ids.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_with_the_token_only_and_metrics_count_what_happened() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/a.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot0.xml"),
            "application/atom+xml",
        ),
    );
    server.set(
        "/down.xml",
        Route::Status {
            code: 503,
            retry_after: None,
        },
    );
    let ws = Workspace::new();
    let port = free_port();
    let cfg = ws.config_path();
    let sources = format!(
        "[[source]]\nid = \"a\"\nkind = \"feed\"\nurl = \"{}\"\n\n[[source]]\nid = \"down\"\nkind = \"feed\"\nurl = \"{}\"\n",
        server.url("/a.xml"),
        server.url("/down.xml")
    );
    std::fs::write(
        &cfg,
        config_with(port, &sources, &receiver.url(), &ws.data_dir()),
    )
    .unwrap();
    let mut child = daemon_command(&cfg).spawn().unwrap();
    assert!(wait_for(WAIT, || receiver.acked().len() >= 2).await);
    assert!(wait_for(WAIT, || server.requests("/down.xml").len() >= 2).await);

    assert_eq!(api_get(port, "/healthz", None).await.0, 200);
    assert_eq!(api_get(port, "/readyz", None).await.0, 200);
    for path in [
        "/metrics",
        "/api/v1/alerts",
        "/api/v1/items",
        "/api/v1/sources",
        "/api/v1/outbox",
    ] {
        assert_eq!(
            api_get(port, path, None).await.0,
            401,
            "{path} without token"
        );
        assert_eq!(
            api_get(port, path, Some("wrong")).await.0,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            api_get(port, path, Some(TOKEN)).await.0,
            200,
            "{path} with the token"
        );
    }
    let (_, body) = api_get(
        port,
        "/api/v1/alerts?department=weekly&limit=1",
        Some(TOKEN),
    )
    .await;
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["alerts"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (_, body) = api_get(
        port,
        &format!("/api/v1/alerts?limit=1&cursor={cursor}"),
        Some(TOKEN),
    )
    .await;
    let page2: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page2["alerts"].as_array().unwrap().len(), 1);
    assert_ne!(page["alerts"][0]["id"], page2["alerts"][0]["id"]);
    assert!(page2["next_cursor"].is_null());
    let (_, body) = api_get(port, "/api/v1/sources", Some(TOKEN)).await;
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    let down = s["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "down")
        .unwrap()
        .clone();
    assert_eq!(down["healthy"], false);
    assert_eq!(down["failing"], "http 503");

    let (_, text) = api_get(port, "/metrics", Some(TOKEN)).await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |metric: &str, label: &str, v: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && s.labels.get(label) == Some(v))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(x)
                | prometheus_parse::Value::Gauge(x)
                | prometheus_parse::Value::Untyped(x) => x,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        value("tingfeng_alerts_raised_total", "department", "weekly"),
        2.0
    );
    assert_eq!(value("tingfeng_items_total", "outcome", "new"), 2.0);
    assert!(value("tingfeng_fetches_total", "result", "http 503") >= 2.0);
    assert_eq!(value("tingfeng_source_healthy", "source", "down"), 0.0);
    assert_eq!(value("tingfeng_source_healthy", "source", "a"), 1.0);
    assert!(value("tingfeng_deliveries_total", "result", "delivered") >= 2.0);
    assert!(
        text.contains("tingfeng_fetch_duration_seconds_bucket"),
        "a histogram"
    );

    // `tingfeng status` reads the same API.
    let out = tokio::process::Command::new(BIN)
        .args(["status", "--config"])
        .arg(&cfg)
        .env(TOKEN_ENV, TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sources: 2 (1 unhealthy)"), "{stdout}");
    assert!(stdout.contains("✗ down — http 503"), "{stdout}");
    assert!(stdout.contains("周刊观察: 科技爱好者周刊"), "{stdout}");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_raises_one_ops_alert_and_one_on_recovery() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    let ops = Receiver::start().await;
    server.set(
        "/flaky.xml",
        Route::Status {
            code: 503,
            retry_after: None,
        },
    );
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "flaky"
kind = "feed"
url = "{}"
max_backoff = "300ms"

[[department]]
id = "weekly"
name = "周刊观察"
keywords = ["周刊"]

[ops_webhook]
url = "{}"
secret_env = "{SECRET_ENV}"
failures = 3
"#,
            server.url("/flaky.xml"),
            ops.url()
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || server.requests("/flaky.xml").len() >= 6).await);
    assert!(wait_for(WAIT, || ops.acked().len() == 1).await);
    server.set(
        "/flaky.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot0.xml"),
            "application/atom+xml",
        ),
    );
    assert!(wait_for(WAIT, || ops.acked().len() >= 2).await);
    let polls = server.requests("/flaky.xml").len();
    assert!(wait_for(WAIT, || server.requests("/flaky.xml").len() >= polls + 3).await);
    daemon.stop().await;
    let got = ops.acked();
    assert_eq!(
        got.len(),
        2,
        "{:?}",
        got.iter().map(|d| d.body.clone()).collect::<Vec<_>>()
    );
    let first = got[0].json();
    assert_eq!(first["kind"], "source_unhealthy");
    assert_eq!(first["source"]["id"], "flaky");
    assert!(first["reason"].as_str().unwrap().contains("http 503"));
    assert!(first["consecutive_failures"].as_u64().unwrap() >= 3);
    assert_eq!(got[1].json()["kind"], "source_recovered");
    assert!(got.iter().all(|d| d.signature_valid()));
    // Content alerts went their own way.
    assert_eq!(receiver.acked().len(), 2);
}

#[test]
fn a_configured_api_token_that_is_missing_stops_the_daemon() {
    let ws = Workspace::new();
    let cfg = ws.config_path();
    std::fs::write(
        &cfg,
        config_with(free_port(), "", "http://127.0.0.1:9/hook", &ws.data_dir()),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .env_remove(TOKEN_ENV)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TINGFENG_TEST_API_TOKEN") && err.contains("refusing to serve"),
        "{err}"
    );
}

#[test]
fn the_unit_file_verifies_and_scores_well() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("SKIPPED: systemd-analyze is not installed here");
        return;
    };
    if !out.status.success() {
        println!("SKIPPED: systemd-analyze does not run here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/tingfeng.service"
    ))
    .unwrap()
    .replace("/usr/local/bin/tingfeng", BIN);
    let path = dir.path().join("tingfeng.service");
    std::fs::write(&path, unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{stderr}");
    // Environments without a running systemd print warnings about the host; the unit's own
    // problems name the unit file.
    let own: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tingfeng.service"))
        .collect();
    assert!(own.is_empty(), "{stderr}");
    let sec = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sec.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for tingfeng.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in: {text}"));
    assert!(score <= 2.0, "exposure {score}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_gives_unchanged_sources_the_new_rules() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/a.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot0.xml"),
            "application/atom+xml",
        ),
    );
    let ws = Workspace::new();
    let port = free_port();
    let cfg = ws.config_path();
    let source = format!(
        "[[source]]\nid = \"a\"\nkind = \"feed\"\nurl = \"{}\"\n",
        server.url("/a.xml")
    );
    let first = config_with(port, &source, &receiver.url(), &ws.data_dir());
    std::fs::write(&cfg, &first).unwrap();
    let mut child = daemon_command(&cfg).spawn().unwrap();
    let pid = child.id().to_string();
    assert!(wait_for(WAIT, || receiver.acked().len() >= 2).await);
    // Same source, new keywords: the running source task must match with the new rules.
    std::fs::write(
        &cfg,
        first.replace(
            r#"keywords = ["周刊", "CSS"]"#,
            r#"keywords = ["正确态度"]"#,
        ),
    )
    .unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    // Wait until the daemon has taken the new config (counted in its metrics).
    let start = std::time::Instant::now();
    loop {
        let (_, m) = api_get(port, "/metrics", Some(TOKEN)).await;
        if m.contains("tingfeng_config_reloads_total{result=\"ok\"} 1") {
            break;
        }
        assert!(start.elapsed() < WAIT, "reload not seen: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.set(
        "/a.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot1.xml"),
            "application/atom+xml",
        ),
    );
    assert!(wait_for(WAIT, || receiver.acked().len() >= 3).await);
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let got = receiver.acked();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].json()["matched"], serde_json::json!(["正确态度"]));
}
