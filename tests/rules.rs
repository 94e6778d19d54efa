//! The rule language as analysts use it: `check` on bad rules, `try-rules` on a text or a
//! stored item, and `backtest` of edited rules on a store filled from the fixture feeds.

mod common;

use common::*;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tingfeng");

fn rules_config(ws: &Workspace, feed_url: &str, departments: &str) -> std::path::PathBuf {
    ws.write_config(
        &format!(
            r#"
[lists]
layout_words = ["布局", "栏"]

[[source]]
id = "w3cn"
kind = "feed"
url = "{feed_url}"

{departments}
"#
        ),
        "http://127.0.0.1:9/unused",
    )
}

#[test]
fn a_syntax_error_fails_check_with_rule_and_column() {
    let ws = Workspace::new();
    let cfg = rules_config(
        &ws,
        "https://x.example/feed",
        r#"[[department]]
id = "urban"
name = "城市管理局"
rules = ['(城管 | 执法) & (打人 | 冲突']
"#,
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("department[0] \"urban\": rules[0]: rule \"urban#1\": column 21: expected )"),
        "{err}"
    );
}

#[test]
fn try_rules_explains_matches_exclusions_and_near_misses() {
    let ws = Workspace::new();
    let cfg = rules_config(
        &ws,
        "https://x.example/feed",
        r#"[[department]]
id = "urban"
name = "城市管理局"
keywords = ["城管"]
rules = [
  { id = "violence", expr = '(城管 | 执法) & (打人 | 冲突) & !演习', weight = 3 },
  { id = "close", expr = 'NEAR/2(城管, 罚款)' },
]

[[department]]
id = "drill"
name = "演练办"
keywords = ["冲突"]
exclude = ["演习"]
"#,
    );
    let out = Command::new(BIN)
        .args(["try-rules", "--config"])
        .arg(&cfg)
        .arg("昨日某區城-管與攤販發生衝突，城管稱已依法罰款")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("✓ urban 城市管理局"), "{stdout}");
    assert!(
        stdout.contains("rule violence [weight 3]: (城管 | 执法) & (打人 | 冲突) & !演习"),
        "{stdout}"
    );
    // Offsets are in the original text: 城-管 spans three characters.
    assert!(
        stdout.contains("城管 (text 4..7)") && stdout.contains("冲突 (text 12..14)"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("urban rule close: near miss — NEAR/2: both present but 4 characters apart"),
        "{stdout}"
    );
    assert!(stdout.contains("✓ drill 演练办"), "{stdout}");

    // From standard input, with an exclusion.
    let mut child = Command::new(BIN)
        .args(["try-rules", "--config"])
        .arg(&cfg)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all("城管演习中发生冲突".as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("✗ drill 演练办: would match, but excluded by 演习 (text 2..4)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("urban rule violence: near miss — vetoed by NOT (演习)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("✓ urban"),
        "the keyword still matches: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_compares_edited_rules_with_the_stored_alerts() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/w3cn.xml",
        Route::feed(fixture("chardet_gb2312_w3cn.org_rss20.xml"), "text/xml"),
    );
    let ws = Workspace::new();
    let before = r#"[[department]]
id = "css"
name = "样式组"
keywords = ["滑动门"]

[[department]]
id = "layout"
name = "版式组"
rules = ['@layout_words']
"#;
    let cfg = rules_config(&ws, &server.url("/w3cn.xml"), before);
    // The daemon needs a real receiver for its alerts.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("http://127.0.0.1:9/unused", &receiver.url());
    std::fs::write(&cfg, text).unwrap();
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || receiver.acked().len() >= 3).await);
    assert!(wait_for(WAIT, || server.requests("/w3cn.xml").len() >= 3).await);
    daemon.stop().await;
    let layout_alerts = receiver
        .acked()
        .iter()
        .filter(|d| d.json()["department"]["id"] == "layout")
        .count();
    // "布局" in two titles, "栏" in one of them: two items.
    assert_eq!(layout_alerts, 2);
    let alert = receiver
        .acked()
        .into_iter()
        .find(|d| d.json()["department"]["id"] == "layout")
        .unwrap()
        .json();
    assert_eq!(alert["rules"][0]["id"], "layout#1");
    assert_eq!(alert["rule_set"].as_str().unwrap().len(), 12);

    // The analyst edits the rules: all CSS articles but the sliding-doors one.
    let edited = r#"[[department]]
id = "css"
name = "样式组"
rules = [{ id = "css-not-doors", expr = 'CSS & !滑动门' }]

[[department]]
id = "layout"
name = "版式组"
rules = ['@layout_words']
"#;
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(before, edited);
    std::fs::write(&cfg, text).unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["backtest", "--since", "30d", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("on 20 items fetched since"), "{stdout}");
    // 7 titles mention CSS; the sliding-doors one is now excluded, and it was the one alert.
    assert!(
        stdout.contains("css 样式组: 6 items now, 1 matched before (+5): +6 new, -1 no longer"),
        "{stdout}"
    );
    assert!(stdout.contains("css-not-doors"), "{stdout}");
    assert!(stdout.contains("lost: CSS中的滑动门技术"), "{stdout}");
    assert!(
        stdout.contains("layout 版式组: 2 items now, 2 matched before (+0): +0 new, -0 no longer"),
        "{stdout}"
    );

    // try-rules on a stored item.
    let id = alert["item"]["id"].as_str().unwrap().to_string();
    let out = tokio::process::Command::new(BIN)
        .args(["try-rules", "--config"])
        .arg(&cfg)
        .args(["--item", &id])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("item {id} from w3cn")), "{stdout}");
    assert!(stdout.contains("✓ layout 版式组"), "{stdout}");
}
