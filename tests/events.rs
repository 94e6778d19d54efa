//! 研判 end to end: events clustered from real captures, and the alert lifecycle of one
//! developing matter — new, quiet growth, escalation, a restart in the middle, a response and
//! the renewed rise after it — served by a local server over many polls to a real webhook
//! receiver; silences and group_wait.

mod common;

use chrono::Utc;
use common::*;
use std::time::Duration;
use tingfeng::alerter::Judge;
use tingfeng::item::{build_items, Item};
use tingfeng::source::feed::{extract, FeedContext};
use tingfeng::store::{Record, Store};

fn feed_items(bytes: &[u8], source: &str) -> Vec<Item> {
    let now = Utc::now();
    let ctx = FeedContext {
        content_type: None,
        base_url: None,
        encoding_override: None,
        timezone: chrono_tz::Asia::Shanghai,
        now,
    };
    build_items(source, extract(bytes, &ctx).unwrap().entries, now)
}

/// Places one item the way ingest does, and returns its event id.
fn place(store: &Store, judge: &Judge, item: &Item) -> String {
    let now = Utc::now();
    let first = store.find_duplicate(item).unwrap();
    let judged = judge
        .judge(store, item, &[], first.as_deref(), now)
        .unwrap();
    let record = match &first {
        Some(f) => Record::Duplicate {
            id: &item.id,
            first: f,
        },
        None => Record::Item(item),
    };
    store
        .commit(record, &judged.alerts, &judged.puts, now)
        .unwrap();
    judged.event.unwrap()
}

#[test]
fn a_syndicated_copy_joins_its_story_and_other_issues_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    let judge = Judge::with(Default::default(), Vec::new(), "");
    // Three weekly issues (253, 254, 255): same site, same template, same header and footer.
    let originals = feed_items(&fixture("bison_ruanyifeng_atom_snapshot1.xml"), "blog");
    assert_eq!(originals.len(), 3);
    let events: Vec<String> = originals.iter().map(|i| place(&store, &judge, i)).collect();
    let distinct: std::collections::BTreeSet<_> = events.iter().collect();
    assert_eq!(distinct.len(), 3, "different issues are different stories");
    // A mirror republishes two issues: its own ids and links, a "reposted" line on top, the
    // title marked, and the last part of the text cut.
    for mut copy in feed_items(&fixture("bison_ruanyifeng_atom_snapshot0.xml"), "mirror") {
        copy.id = format!("mirror-{}", copy.id);
        copy.url = copy
            .url
            .map(|u| u.replace("ruanyifeng.com", "mirror.example"));
        copy.canonical_url = copy.url.clone();
        copy.content_hash = None;
        copy.title = format!("【转载】{}", copy.title);
        let keep: String = copy
            .text
            .chars()
            .take(copy.text.chars().count() * 9 / 10)
            .collect();
        copy.text = format!("本文转载自阮一峰的网络日志，版权归原作者所有。{keep}");
        let original = originals
            .iter()
            .position(|o| copy.title.ends_with(&o.title))
            .expect("same title");
        let ev = place(&store, &judge, &copy);
        assert_eq!(
            ev, events[original],
            "copy of {:?}",
            originals[original].title
        );
        let event = store.event(&ev).unwrap().unwrap();
        assert_eq!(event.items, 2);
        assert_eq!(event.sources.len(), 2);
    }
}

#[test]
fn a_repost_joins_its_original_and_posts_of_one_thread_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::new();
    ws.write_config(
        r#"
[[source]]
id = "weibo"
kind = "json"
preset = "weibo"
url = "https://m.weibo.cn/api/container/getIndex?containerid=107603"

[[department]]
id = "d"
name = "部门"
keywords = ["音律联觉"]
"#,
        "http://127.0.0.1:9/hook",
    );
    let cfg = ws.load();
    let spec = &cfg.sources[0].json.as_ref().unwrap().spec;
    let now = Utc::now();
    let page = tingfeng::source::json::extract(
        &fixture("weibo_getindex_container_page0.json"),
        spec,
        &tingfeng::source::json::JsonContext {
            content_type: Some("application/json"),
            timezone: chrono_tz::Asia::Shanghai,
            now,
            date_format: None,
        },
    )
    .unwrap();
    let items = build_items("weibo", page.entries, now);
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    let judge = Judge::with(Default::default(), Vec::new(), "");
    let events: Vec<(String, &Item)> = items
        .iter()
        .map(|i| (place(&store, &judge, i), i))
        .collect();
    let (repost_event, repost) = events
        .iter()
        .find(|(_, i)| i.related.is_some())
        .expect("the page has a repost");
    let (original_event, _) = events
        .iter()
        .find(|(_, i)| Some(&i.id) == repost.related.as_ref())
        .expect("its original is on the page");
    assert_eq!(repost_event, original_event);
    // Every other post is its own event, though they are about the same game and song.
    let others: std::collections::BTreeSet<&String> = events
        .iter()
        .filter(|(e, _)| e != original_event)
        .map(|(e, _)| e)
        .collect();
    assert_eq!(others.len(), items.len() - 2, "{items:#?}");
}

/// An RSS document with the given (guid, title, text) entries.
fn rss(entries: &[(String, String, String)]) -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss version=\"2.0\"><channel><title>t</title><link>http://forum.example/</link><description>d</description>",
    );
    for (guid, title, text) in entries {
        s.push_str(&format!(
            "<item><guid isPermaLink=\"false\">{guid}</guid><title>{title}</title><link>http://forum.example/{guid}</link><description>{text}</description></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s.into_bytes()
}

const STORY: &str = "网友反映：滨江区城管执法人员在早市与摊贩发生冲突，一名摊贩倒地受伤，现场视频在网上流传。记者从区城管局了解到，涉事人员已停职接受调查，调查结果将及时向社会公布。";
const TITLE: &str = "滨江区城管与摊贩冲突 摊贩受伤";

/// A copy of the story as another site or user puts it.
fn copy(guid: &str, prefix: &str) -> (String, String, String) {
    (
        guid.to_string(),
        format!("{prefix}{TITLE}"),
        format!("{prefix}{STORY}"),
    )
}

fn feed_route(entries: &[(String, String, String)]) -> Route {
    Route::Feed {
        body: std::sync::Arc::new(rss(entries)),
        content_type: "application/rss+xml",
        etag: None,
    }
}

/// Waits until `path` has been requested `n` more times than `before`.
async fn polled(server: &FeedServer, path: &str, before: usize, n: usize) {
    assert!(
        wait_for(WAIT, || server.requests(path).len() >= before + n).await,
        "{path} not polled"
    );
}

const SPREAD_ONLY: &str = r#"
[assess]
after_response_rise = 3
[assess.weights]
rules = 0.0
source = 0.0
engagement = 0.0
velocity = 0.0
sentiment = 0.0
spread = 1.0
[assess.levels]
yellow = 3.0
orange = 20.0
red = 30.0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developing_matter_alerts_once_escalates_once_and_again_after_a_response() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    for p in ["/s1.xml", "/s2.xml", "/s3.xml"] {
        server.set(p, feed_route(&[]));
    }
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "s1"
kind = "feed"
url = "{}"

[[source]]
id = "s2"
kind = "feed"
url = "{}"

[[source]]
id = "s3"
kind = "feed"
url = "{}"

[[department]]
id = "urban"
name = "城市管理局"
keywords = ["城管"]
{SPREAD_ONLY}"#,
            server.url("/s1.xml"),
            server.url("/s2.xml"),
            server.url("/s3.xml"),
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    polled(&server, "/s1.xml", 0, 1).await;

    // 1. The first post: one new alert, blue, its score explained by factor.
    server.set("/s1.xml", feed_route(&[copy("p1", "")]));
    assert!(wait_for(WAIT, || receiver.acked().len() == 1).await);
    let first = receiver.acked()[0].json();
    assert_eq!(first["kind"], "new");
    assert_eq!(first["level"], "blue");
    assert_eq!(first["level_name"], "一般");
    assert_eq!(first["score"]["factors"]["spread"]["value"], 0.0);
    assert!(first["score"]["factors"]["spread"]["basis"]
        .as_str()
        .unwrap()
        .contains("1 items from 1 sources"));
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let event = first["event"]["id"].as_str().unwrap().to_string();

    // 2. A copy on a second site: the event grows (score 2 < 3), nothing is sent.
    let before = server.requests("/s2.xml").len();
    server.set("/s2.xml", feed_route(&[copy("q1", "【转】")]));
    polled(&server, "/s2.xml", before, 3).await;

    // 3. A restart in the middle changes nothing: no alert is repeated.
    daemon.stop().await;
    let daemon = Running::start(ws.load());
    let before = server.requests("/s2.xml").len();
    polled(&server, "/s2.xml", before, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.acked().len(),
        1,
        "nothing between new and escalation"
    );

    // 4. A third site: spread 3.58 crosses yellow → one escalation listing both copies.
    server.set("/s3.xml", feed_route(&[copy("r1", "网友爆料：")]));
    assert!(wait_for(WAIT, || receiver.acked().len() == 2).await);
    let esc = receiver.acked()[1].json();
    assert_eq!(esc["kind"], "escalated", "{esc}");
    assert_eq!(esc["level"], "yellow");
    assert_eq!(esc["event"]["id"], event.as_str());
    assert_eq!(esc["event"]["items"], 3);
    assert_eq!(esc["event"]["sources"], 3);
    assert_eq!(esc["after_response"], false);
    let listed: Vec<&str> = esc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["s2", "s3"], "every item since the last alert");
    assert_eq!(esc["item"]["source"], "s2", "item stays the first");

    // 5. The department responds (through the CLI, while the daemon is stopped).
    daemon.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tingfeng"))
        .args(["respond", "--config"])
        .arg(ws.config_path())
        .args([event.as_str(), "--note", "区城管局已通报调查结果"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let daemon = Running::start(ws.load());

    // 6. Two more copies after the response: counted, below the renewed-rise mark.
    let before = server.requests("/s1.xml").len();
    server.set(
        "/s1.xml",
        feed_route(&[copy("p1", ""), copy("p2", "再转："), copy("p3", "又见：")]),
    );
    polled(&server, "/s1.xml", before, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.acked().len(),
        2,
        "{:?}",
        receiver
            .acked()
            .iter()
            .map(|d| d.json())
            .collect::<Vec<_>>()
            .last()
    );

    // 7. The third: a renewed rise after the response is escalated with after_response.
    server.set(
        "/s1.xml",
        feed_route(&[
            copy("p1", ""),
            copy("p2", "再转："),
            copy("p3", "又见："),
            copy("p4", "还在传："),
        ]),
    );
    assert!(wait_for(WAIT, || receiver.acked().len() == 3).await);
    let again = receiver.acked()[2].json();
    assert_eq!(again["kind"], "escalated", "{again}");
    assert_eq!(again["after_response"], true);
    assert_eq!(again["event"]["items_after_response"], 3);
    assert!(again["event"]["responded"].is_string());
    assert_eq!(again["items"].as_array().unwrap().len(), 3);

    // 8. Another story on the same topic is its own matter: a new alert.
    server.set(
        "/s2.xml",
        feed_route(&[
            copy("q1", "【转】"),
            (
                "q2".into(),
                "滨江区城管开展占道经营专项整治".into(),
                "滨江区城管局本周在辖区主要道路开展占道经营专项整治行动，共劝离流动摊贩三十余处，清理乱堆物四十余处，市民对整治效果表示认可。".into(),
            ),
        ]),
    );
    assert!(wait_for(WAIT, || receiver.acked().len() == 4).await);
    let other = receiver.acked()[3].json();
    assert_eq!(other["kind"], "new");
    assert_ne!(other["event"]["id"], event.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;
    assert_eq!(receiver.acked().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_holds_alerts_back_keeps_the_record_and_its_end_restores_them() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set("/s1.xml", feed_route(&[]));
    server.set("/s2.xml", feed_route(&[]));
    let ends = Utc::now() + chrono::Duration::seconds(4);
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "s1"
kind = "feed"
url = "{}"

[[source]]
id = "s2"
kind = "feed"
url = "{}"

[[department]]
id = "urban"
name = "城市管理局"
keywords = ["城管"]

[[silence]]
id = "video-review"
department = "urban"
text = "视频在网上流传"
ends = "{}"
comment = "视频已在核查，核查期间不重复告警"
"#,
            server.url("/s1.xml"),
            server.url("/s2.xml"),
            ends.to_rfc3339(),
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    server.set("/s1.xml", feed_route(&[copy("p1", "")]));
    let before = server.requests("/s1.xml").len();
    polled(&server, "/s1.xml", before, 3).await;
    assert!(receiver.all().is_empty(), "silenced");
    // After the silence: the next item of the matter brings the alert, with everything held.
    while Utc::now() < ends {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.set("/s2.xml", feed_route(&[copy("q1", "【转】")]));
    assert!(wait_for(WAIT, || receiver.acked().len() == 1).await);
    let a = receiver.acked()[0].json();
    assert_eq!(a["kind"], "new");
    let sources: Vec<&str> = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["s1", "s2"]);
    assert!(a.get("silenced").is_none());
    daemon.stop().await;
    // The silenced alert was recorded, not lost.
    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    let (alerts, _) = store.alerts_page(None, 100, |_| true).unwrap();
    let held: Vec<_> = alerts
        .iter()
        .filter(|a| a["silenced"]["id"] == "video-review")
        .collect();
    assert_eq!(held.len(), 1, "{alerts:?}");
    assert_eq!(held[0]["items"][0]["source"], "s1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_wait_folds_near_simultaneous_copies_into_one_alert() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set("/s1.xml", feed_route(&[copy("p1", "")]));
    server.set("/s2.xml", feed_route(&[copy("q1", "【转】")]));
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "s1"
kind = "feed"
url = "{}"

[[source]]
id = "s2"
kind = "feed"
url = "{}"

[[department]]
id = "urban"
name = "城市管理局"
keywords = ["城管"]

[assess]
group_wait = "2s"
"#,
            server.url("/s1.xml"),
            server.url("/s2.xml"),
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || receiver.acked().len() == 1).await);
    let a = receiver.acked()[0].json();
    assert_eq!(a["items"].as_array().unwrap().len(), 2, "{a}");
    assert_eq!(a["event"]["sources"], 2);
    tokio::time::sleep(Duration::from_millis(800)).await;
    daemon.stop().await;
    assert_eq!(receiver.acked().len(), 1);
}
