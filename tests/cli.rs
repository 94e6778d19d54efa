//! The binary as users run it: `check`, `try-source`, `run` killed with SIGKILL and restarted,
//! and SIGTERM.

mod common;

use common::*;
use std::collections::HashSet;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tingfeng");

#[test]
fn check_reports_a_typo_with_file_line_and_key_and_exits_2() {
    let ws = Workspace::new();
    let path = ws.config_path();
    std::fs::write(
        &path,
        r#"[daemon]
data_dir = "data"

[[source]]
id = "gov-news"
kind = "feed"
url = "https://www.example.gov.cn/rss.xml"

[[source]]
id = "city-forum"
kind = "feed"
url = "https://bbs.example.cn/rss"
interval = "5 minuets"

[[department]]
id = "urban"
name = "城市管理局"
keywords = ["城管"]
webhok = "http://127.0.0.1:9700/urban"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:13: source[1] \"city-forum\": interval: \"5 minuets\" is not a duration"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:19: department[0] \"urban\": webhok: unknown key `webhok` (did you mean `webhook`?)"
        )),
        "{err}"
    );
}

#[test]
fn check_prints_a_summary_of_the_shipped_config() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/sources.toml");
    let out = Command::new(BIN)
        .args(["check", "--config", shipped])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sources:"), "{stdout}");
    assert!(stdout.contains("departments:"), "{stdout}");
    assert!(stdout.contains("keywords:"), "{stdout}");
}

#[test]
fn bad_usage_exits_2() {
    let out = Command::new(BIN).args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let ws = Workspace::new();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(ws.dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_source_prints_items_and_matches_and_writes_nothing() {
    init();
    let server = FeedServer::start().await;
    server.set(
        "/w3cn.xml",
        Route::feed(fixture("chardet_gb2312_w3cn.org_rss20.xml"), "text/xml"),
    );
    let ws = Workspace::new();
    let cfg = ws.write_config(
        &format!(
            r#"
[[source]]
id = "w3cn"
kind = "feed"
url = "{}"

[[department]]
id = "doors"
name = "滑动门组"
keywords = ["滑动门"]
"#,
            server.url("/w3cn.xml")
        ),
        "http://127.0.0.1:9/unused",
    );
    let out = tokio::process::Command::new(BIN)
        .args(["try-source", "--config"])
        .arg(&cfg)
        .arg("w3cn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("decoded as gb18030 (xml-prolog), 20 items"),
        "{stdout}"
    );
    assert!(stdout.contains("• CSS中的滑动门技术"), "{stdout}");
    assert!(
        stdout.contains("MATCH doors: 滑动门 (title 5..8)"),
        "{stdout}"
    );
    assert!(
        !ws.data_dir().exists(),
        "try-source must not create the store"
    );

    let out = tokio::process::Command::new(BIN)
        .args(["try-source", "--json", "--config"])
        .arg(&cfg)
        .arg("w3cn")
        .output()
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    let matched: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| !l["matches"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(matched.len(), 1);
    assert_eq!(matched[0]["item"]["title"], "CSS中的滑动门技术");
}

fn spawn_daemon(cfg: &std::path::Path) -> std::process::Child {
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(cfg)
        .env(SECRET_ENV, SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_delivery_then_restart_delivers_with_the_same_id() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    receiver.set_default(503);
    server.set(
        "/atom.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot0.xml"),
            "application/atom+xml",
        ),
    );
    let ws = Workspace::new();
    let cfg = ws.write_config(&weekly_config(&server.url("/atom.xml")), &receiver.url());
    let mut first = spawn_daemon(&cfg);
    // Alerts are raised and the receiver refuses them: they sit in the outbox.
    assert!(wait_for(WAIT, || !receiver.all().is_empty()).await);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let before: HashSet<String> = receiver.all().iter().map(|d| d.id()).collect();
    assert!(receiver.acked().is_empty());

    receiver.set_default(200);
    let mut second = spawn_daemon(&cfg);
    assert!(
        wait_for(WAIT, || {
            receiver
                .acked()
                .iter()
                .map(|d| d.id())
                .collect::<HashSet<_>>()
                .len()
                >= 2
        })
        .await
    );
    // Let it poll a few more times: the restart must not raise anything again.
    let polled = server.requests("/atom.xml").len();
    assert!(wait_for(WAIT, || server.requests("/atom.xml").len() >= polled + 3).await);

    let status = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = second.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "SIGTERM is an orderly exit");

    let acked: Vec<String> = receiver.acked().iter().map(|d| d.id()).collect();
    let distinct_acked: HashSet<String> = acked.iter().cloned().collect();
    assert_eq!(distinct_acked.len(), 2);
    assert_eq!(acked.len(), 2, "each alert acknowledged exactly once");
    assert!(
        before.is_subset(&distinct_acked),
        "the alerts pending at the kill went out with the same ids"
    );
    let all_ids: HashSet<String> = receiver.all().iter().map(|d| d.id()).collect();
    assert_eq!(
        all_ids, distinct_acked,
        "no alert was raised twice under a new id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_store_fails_loudly_and_recover_store_starts_without_a_flood() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/atom.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot0.xml"),
            "application/atom+xml",
        ),
    );
    let ws = Workspace::new();
    let cfg = ws.write_config(&weekly_config(&server.url("/atom.xml")), &receiver.url());
    // A store directory whose files are garbage, as after a bad disk or a torn write.
    std::fs::create_dir_all(ws.data_dir()).unwrap();
    std::fs::write(
        ws.data_dir().join("conf"),
        b"\x00\xffnot a sled config\x13\x37",
    )
    .unwrap();
    std::fs::write(ws.data_dir().join("db"), vec![0xa5u8; 4096]).unwrap();

    let out = tokio::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open the store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        server.requests("/atom.xml").is_empty(),
        "nothing runs on an unreadable store"
    );

    let mut child = Command::new(BIN)
        .args(["run", "--recover-store", "--config"])
        .arg(&cfg)
        .env(SECRET_ENV, SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(WAIT, || server.requests("/atom.xml").len() >= 3).await);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        receiver.all().is_empty(),
        "recovery must not re-raise what is listed"
    );
    let moved: Vec<_> = std::fs::read_dir(ws.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("data.unreadable-")
        })
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "the unreadable store is kept aside for inspection"
    );
}
