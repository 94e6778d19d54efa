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
        assert_eq!(event.sources, 2);
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

#[test]
fn a_list_entry_and_its_article_are_one_story_and_other_articles_are_not() {
    let ws = Workspace::new();
    ws.write_config(
        r#"
[[source]]
id = "portal"
kind = "html"
url = "https://www.qbitai.com/"
[source.select]
item = "div.picture_text"
title = "h4"
link = "h4 a@href || a@href"
summary = "div.text_box > p"
[source.detail]
content = "div.article"
title = "div.article > h1"

[[department]]
id = "d"
name = "部门"
keywords = ["机器人"]
"#,
        "http://127.0.0.1:9/hook",
    );
    let cfg = ws.load();
    let html = cfg.sources[0].html.as_ref().unwrap();
    let now = Utc::now();
    let page_url = url::Url::parse("https://www.qbitai.com/").unwrap();
    let ctx = tingfeng::source::html::HtmlContext {
        content_type: Some("text/html; charset=utf-8"),
        page_url: &page_url,
        encoding_override: None,
        timezone: chrono_tz::Asia::Shanghai,
        now,
        date_format: None,
    };
    let list = tingfeng::source::html::extract_list(&fixture("qbitai_list.html"), &html.list, &ctx);
    let listed = build_items("portal", list.entries, now);
    assert!(listed.len() > 10);
    let store = Store::open(ws.dir.path().join("store").as_path(), 8 << 20).unwrap();
    let judge = Judge::with(Default::default(), Vec::new(), "");
    let list_events: Vec<String> = listed.iter().map(|i| place(&store, &judge, i)).collect();
    let distinct: std::collections::BTreeSet<_> = list_events.iter().collect();
    assert_eq!(
        distinct.len(),
        listed.len(),
        "every list entry is its own story"
    );
    // The articles as another site carries them: full text, a title from the page.
    let detail = html.detail.as_ref().unwrap();
    for (file, number) in [
        ("qbitai_article_275178.html", "275178"),
        ("qbitai_article_275232.html", "275232"),
    ] {
        let d = tingfeng::source::html::extract_detail(&fixture(file), detail, &ctx);
        let entry = tingfeng::item::Entry {
            guid: Some(number.into()),
            link: Some(format!("https://mirror.example/{number}")),
            title: d.title.clone().unwrap(),
            text: d.content.clone().unwrap(),
            ..Default::default()
        };
        let article = &build_items("mirror", vec![entry], now)[0];
        assert!(article.text.chars().count() > 3000, "the whole article");
        let k = listed
            .iter()
            .position(|i| i.url.as_deref().is_some_and(|u| u.contains(number)))
            .expect("listed");
        assert_eq!(
            place(&store, &judge, article),
            list_events[k],
            "{:?} joins its list entry",
            article.title
        );
    }
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

/// Feed sources s1…sN at `/s1.xml`… and the urban department (keyword 城管), then `extra`.
fn urban_config(server: &FeedServer, sources: usize, extra: &str) -> String {
    let mut out = String::new();
    for k in 1..=sources {
        out.push_str(&format!(
            "[[source]]\nid = \"s{k}\"\nkind = \"feed\"\nurl = \"{}\"\n\n",
            server.url(&format!("/s{k}.xml"))
        ));
    }
    out.push_str("[[department]]\nid = \"urban\"\nname = \"城市管理局\"\nkeywords = [\"城管\"]\n");
    out.push_str(extra);
    out
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
    ws.write_config(&urban_config(&server, 3, SPREAD_ONLY), &receiver.url());
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
    let ends = Utc::now() + chrono::Duration::seconds(4);
    let ws = Workspace::new();
    let silence = format!(
        r#"
[[silence]]
id = "video-review"
department = "urban"
text = "视频在网上流传"
ends = "{}"
comment = "视频已在核查，核查期间不重复告警"
"#,
        ends.to_rfc3339()
    );
    ws.write_config(&urban_config(&server, 1, &silence), &receiver.url());
    let daemon = Running::start(ws.load());
    server.set("/s1.xml", feed_route(&[copy("p1", "")]));
    let before = server.requests("/s1.xml").len();
    polled(&server, "/s1.xml", before, 3).await;
    assert!(receiver.all().is_empty(), "silenced");
    // After the silence: the next item of the matter brings the alert, with everything held.
    // The silence ends: the held alert goes out by itself, with what it held.
    assert!(wait_for(WAIT, || receiver.acked().len() == 1).await);
    assert!(Utc::now() >= ends);
    let a = receiver.acked()[0].json();
    assert_eq!(a["kind"], "new");
    let sources: Vec<&str> = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["s1"]);
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
        &urban_config(&server, 2, "\n[assess]\ngroup_wait = \"2s\"\n"),
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

// ---- The lifecycle on simulated time: the store and the judge, without a clock to wait on.

use chrono::TimeZone;
use tingfeng::config::{AssessSettings, Department, Source};
use tingfeng::rules::Matcher;

struct Desk {
    _dir: tempfile::TempDir,
    store: Store,
    matcher: Matcher,
    judge: Judge,
}

impl Desk {
    fn new(settings: AssessSettings) -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let depts = vec![Department {
            id: "urban".into(),
            name: "城市管理局".into(),
            keywords: vec!["城管".into()],
            exclude: vec![],
            rules: vec![],
            webhook: url::Url::parse("http://127.0.0.1:9/hook").unwrap(),
        }];
        let matcher = Matcher::new(&depts).unwrap();
        let judge = Judge::with(settings, depts, matcher.rule_set());
        Desk {
            _dir: dir,
            store,
            matcher,
            judge,
        }
    }

    /// One poll of `source` at `now` giving these (guid, title, text) entries.
    fn poll(&self, source: &str, entries: &[(String, String, String)], now: chrono::DateTime<Utc>) {
        let entries = entries
            .iter()
            .map(|(g, t, x)| tingfeng::item::Entry {
                guid: Some(g.clone()),
                link: Some(format!("http://{source}.example/{g}")),
                title: t.clone(),
                text: x.clone(),
                ..Default::default()
            })
            .collect();
        let items = build_items(source, entries, now);
        let src = Source::feed(source, url::Url::parse("http://127.0.0.1:9/feed").unwrap());
        tingfeng::ingest::ingest(
            &self.store,
            &self.matcher,
            &self.judge,
            &src,
            &items,
            true,
            now,
        )
        .unwrap();
    }

    /// The alerts queued for sending, oldest first.
    fn queued(&self) -> Vec<serde_json::Value> {
        self.store
            .outbox_entries()
            .unwrap()
            .iter()
            .map(|e| serde_json::from_str(&e.body).unwrap())
            .collect()
    }

    fn flush(&self, now: chrono::DateTime<Utc>) {
        tingfeng::ingest::flush_due(&self.store, &self.judge, now).unwrap();
    }
}

fn spread_only(yellow: f64, orange: f64) -> AssessSettings {
    let mut s = AssessSettings::default();
    s.weights.rules = 0.0;
    s.weights.source = 0.0;
    s.weights.engagement = 0.0;
    s.weights.velocity = 0.0;
    s.weights.sentiment = 0.0;
    s.levels = [yellow, orange, 30.0];
    s
}

#[test]
fn quiet_hours_hold_blue_until_morning_but_never_orange() {
    let mut settings = spread_only(3.0, 5.0);
    settings.quiet_hours = Some((
        chrono::NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
        chrono::NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
    ));
    settings.repeat_interval = Duration::from_secs(3600);
    let desk = Desk::new(settings);
    // 23:30 in Beijing.
    let night = Utc.with_ymd_and_hms(2026, 11, 27, 15, 30, 0).unwrap();
    desk.poll("s1", &[copy("p1", "")], night);
    assert!(desk.queued().is_empty(), "blue waits for 07:00");
    desk.flush(night + chrono::Duration::minutes(20));
    assert!(desk.queued().is_empty());
    // Three more sites at 00:00: spread log2(4) + 3 = 5 → orange, sent at once.
    let midnight = night + chrono::Duration::minutes(30);
    desk.poll("s2", &[copy("q1", "【转】")], midnight);
    desk.poll("s3", &[copy("r1", "网友爆料：")], midnight);
    assert!(desk.queued().is_empty(), "still yellow");
    desk.poll("s4", &[copy("t1", "扩散：")], midnight);
    let q = desk.queued();
    assert_eq!(q.len(), 1, "orange goes out in quiet hours");
    assert_eq!(q[0]["level"], "orange");
    assert_eq!(q[0]["kind"], "new");
    assert_eq!(
        q[0]["items"].as_array().unwrap().len(),
        4,
        "everything held is listed"
    );
    // Still growing two hours later at the same level: a repeat (kind escalated).
    let later = midnight + chrono::Duration::hours(2);
    desk.poll("s1", &[copy("p1", ""), copy("p2", "再转：")], later);
    let q = desk.queued();
    assert_eq!(q.len(), 2);
    assert_eq!(q[1]["kind"], "escalated");
    assert_eq!(q[1]["reason"], "repeat");
    assert_eq!(q[1]["level"], "orange");
}

#[test]
fn a_held_blue_alert_goes_out_when_quiet_hours_end() {
    let mut settings = spread_only(3.0, 5.0);
    settings.quiet_hours = Some((
        chrono::NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
        chrono::NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
    ));
    let desk = Desk::new(settings);
    let night = Utc.with_ymd_and_hms(2026, 11, 27, 15, 30, 0).unwrap();
    desk.poll("s1", &[copy("p1", "")], night);
    desk.flush(Utc.with_ymd_and_hms(2026, 11, 27, 22, 59, 0).unwrap());
    assert!(desk.queued().is_empty());
    desk.flush(Utc.with_ymd_and_hms(2026, 11, 27, 23, 0, 0).unwrap());
    let q = desk.queued();
    assert_eq!(q.len(), 1, "07:00 Beijing");
    assert_eq!(q[0]["level"], "blue");
}

/// Distinct stories (so each is its own event) that all match the department.
fn story(n: usize) -> (String, String, String) {
    let places = [
        "东湖", "西山", "南岸", "北站", "中山", "滨江", "高新", "老城",
    ];
    let issues = [
        "占道经营",
        "夜市噪音",
        "违章搭建",
        "共享单车乱停",
        "垃圾清运",
    ];
    (
        format!("s{n}"),
        format!("{}街道城管{}问题第{n}报", places[n % 8], issues[n % 5]),
        format!(
            "居民反映{}街道{}问题持续多日，城管部门今日到场处置，第{n}次记录，编号{}。",
            places[n % 8],
            issues[n % 5],
            n * 7919
        ),
    )
}

/// Writes a department's volume for the same hour on each of the previous days.
fn history(desk: &Desk, now: chrono::DateTime<Utc>, counts: &[u32]) {
    let hour = tingfeng::event::hour_of(now);
    let days = counts.len() as i64;
    let mut puts = tingfeng::store::Put::volume("urban", hour - days * 24 - 1, 0, true);
    for (d, c) in counts.iter().enumerate() {
        puts.extend(tingfeng::store::Put::volume(
            "urban",
            hour - (d as i64 + 1) * 24,
            *c,
            false,
        ));
    }
    desk.store.commit(Record::Nothing, &[], &puts, now).unwrap();
}

fn spikes(desk: &Desk) -> Vec<serde_json::Value> {
    desk.queued()
        .into_iter()
        .filter(|a| a["reason"] == "spike")
        .collect()
}

#[test]
fn a_jump_in_a_departments_hourly_volume_raises_one_spike_alert() {
    let desk = Desk::new(AssessSettings {
        spike_days: 3,
        spike_min: 3,
        spike_k: 2.0,
        ..Default::default()
    });
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 4, 10, 0).unwrap();
    history(&desk, now, &[1, 2, 1]);
    for n in 0..6 {
        desk.poll("s1", &[story(n)], now + chrono::Duration::seconds(n as i64));
    }
    let s = spikes(&desk);
    assert_eq!(s.len(), 1, "once per hour");
    assert_eq!(s[0]["kind"], "new");
    assert_eq!(
        s[0]["spike"]["count"], 3,
        "raised when the hour crossed the line"
    );
    assert!(s[0]["spike"]["threshold"].as_f64().unwrap() < 3.0);
}

#[test]
fn a_flat_series_raises_no_spike() {
    let desk = Desk::new(AssessSettings {
        spike_days: 3,
        spike_min: 3,
        spike_k: 2.0,
        ..Default::default()
    });
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 4, 10, 0).unwrap();
    history(&desk, now, &[5, 5, 5]);
    for n in 0..5 {
        desk.poll("s1", &[story(n)], now + chrono::Duration::seconds(n as i64));
    }
    assert!(spikes(&desk).is_empty());
    // Without history the department has no baseline: no spike however busy.
    let fresh = Desk::new(AssessSettings::default());
    for n in 0..20 {
        fresh.poll("s1", &[story(n)], now);
    }
    assert!(spikes(&fresh).is_empty());
}
