//! End-to-end: real feeds served on 127.0.0.1, the daemon with a real sled store in a temp
//! dir, and a real webhook receiver.

mod common;

use common::*;
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;
use tingfeng::store::Store;

fn titles(deliveries: &[Delivery]) -> BTreeSet<(String, String)> {
    deliveries
        .iter()
        .map(|d| {
            let j = d.json();
            (
                j["department"]["id"].as_str().unwrap_or("").to_string(),
                j["item"]["title"].as_str().unwrap_or("").trim().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_exactly_the_matching_items_with_valid_signatures() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    // A GB2312 feed with an encoding declaration in its XML prolog and no Content-Type charset.
    server.set(
        "/w3cn.xml",
        Route::feed(fixture("chardet_gb2312_w3cn.org_rss20.xml"), "text/xml"),
    );
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "w3cn"
kind = "feed"
url = "{url}"

[[department]]
id = "layout"
name = "版式组"
keywords = ["布局"]

[[department]]
id = "titles"
name = "标题组"
keywords = ["标题"]
exclude = ["最好"]

[[department]]
id = "doors"
name = "滑动门组"
keywords = ["滑动门"]

[[department]]
id = "nobody"
name = "无关"
keywords = ["城管"]
"#,
            url = server.url("/w3cn.xml")
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(
        wait_for(WAIT, || receiver.acked().len() >= 4).await,
        "4 alerts expected, got {:?}",
        titles(&receiver.all())
    );
    // Several more polls: nothing else may arrive.
    assert!(wait_for(WAIT, || server.requests("/w3cn.xml").len() >= 4).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;

    let got = receiver.acked();
    let expected: BTreeSet<(String, String)> = [
        ("layout", "左中右3栏布局中最先显示中栏内容的方法"),
        ("layout", "用!important解决IE和Mozilla的布局差别"),
        ("titles", "用CSS定义标题的几个实例"),
        ("doors", "CSS中的滑动门技术"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(titles(&got), expected);
    assert_eq!(got.len(), 4, "each alert once");
    for d in &got {
        assert!(d.signature_valid(), "bad signature on {}", d.body);
        assert_eq!(
            d.headers.get("x-tingfeng-id").and_then(|v| v.to_str().ok()),
            Some(d.id().as_str())
        );
        assert_eq!(
            d.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let j = d.json();
        assert_eq!(j["kind"], "new");
        assert_eq!(j["level"], "blue");
        assert_eq!(j["item"]["source"], "w3cn");
        assert!(j["item"]["url"]
            .as_str()
            .unwrap()
            .starts_with("http://www.w3cn.org/article/"));
        assert!(j["item"]["published"].as_str().unwrap().len() >= 20);
        assert_eq!(j["event"]["items"], 1);
        // The hit's offsets point at the keyword in the original title.
        let hit = &j["hits"][0];
        let title: Vec<char> = j["item"]["title"].as_str().unwrap().chars().collect();
        let (s, e) = (
            hit["start"].as_u64().unwrap() as usize,
            hit["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(hit["field"], "title");
        assert_eq!(
            title[s..e].iter().collect::<String>(),
            hit["keyword"].as_str().unwrap()
        );
        assert!(j["snippet"]
            .as_str()
            .unwrap()
            .contains(hit["keyword"].as_str().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_feed_is_revalidated_and_a_new_entry_alerts_once() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/atom.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot0.xml"),
            "application/atom+xml; charset=utf-8",
        ),
    );
    let ws = Workspace::new();
    ws.write_config(&weekly_config(&server.url("/atom.xml")), &receiver.url());
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || receiver.acked().len() >= 2).await);
    // Polled again and again with the validator: 304s, and no further alerts.
    assert!(
        wait_for(WAIT, || server
            .requests("/atom.xml")
            .iter()
            .filter(|r| r.status == 304)
            .count()
            >= 3)
        .await
    );
    let revalidations = server.requests("/atom.xml");
    assert!(revalidations
        .iter()
        .filter(|r| r.status == 304)
        .all(|r| r.headers.contains_key("if-none-match")));
    assert_eq!(receiver.acked().len(), 2);

    // The feed gains one entry: exactly one more alert.
    server.set(
        "/atom.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot1.xml"),
            "application/atom+xml; charset=utf-8",
        ),
    );
    assert!(wait_for(WAIT, || receiver.acked().len() >= 3).await);
    let polled_after = server.requests("/atom.xml").len();
    assert!(
        wait_for(WAIT, || server.requests("/atom.xml").len()
            >= polled_after + 3)
        .await
    );
    daemon.stop().await;
    let got = receiver.acked();
    assert_eq!(got.len(), 3, "{:?}", titles(&got));
    let ids: HashSet<String> = got.iter().map(|d| d.id()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        got[2].json()["item"]["title"],
        "科技爱好者周刊（第 255 期）：对待 AI 的正确态度"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_up_gets_the_alert_once_acknowledged() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    receiver.script(&[503, 503]);
    server.set(
        "/nodecl.xml",
        Route::feed(
            fixture("feedparser_illformed_gb2312_no_decl.xml"),
            "text/xml",
        ),
    );
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "nodecl"
kind = "feed"
url = "{}"

[[department]]
id = "migration"
name = "移民"
keywords = ["移民漫画"]
"#,
            server.url("/nodecl.xml")
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || receiver.acked().len() == 1).await);
    daemon.stop().await;
    let all = receiver.all();
    assert_eq!(all.len(), 3, "two refusals, then the acknowledged attempt");
    assert_eq!(all[0].status, 503);
    assert_eq!(all[2].status, 200);
    // Every attempt carries the same id and the same body.
    assert!(all
        .iter()
        .all(|d| d.id() == all[0].id() && d.body == all[0].body));
    assert!(all.iter().all(|d| d.signature_valid()));
    assert_eq!(all[2].json()["item"]["title"], "不归移民漫画系列：专业工作");
    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    assert_eq!(
        store.outbox_len(),
        0,
        "acknowledged alerts leave the outbox"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gb2312_and_big5_feeds_match_chinese_keywords() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/big5.xml",
        Route::feed(
            fixture("chardet_big5_sinica.edu.tw_atom03.xml"),
            "application/xml",
        ),
    );
    // Declared only by its XML prolog, served as application/octet-stream.
    server.set(
        "/coverer.xml",
        Route::feed(
            fixture("chardet_gb2312_coverer.com_rss091.xml"),
            "application/octet-stream",
        ),
    );
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "sinica"
kind = "feed"
url = "{big5}"

[[source]]
id = "coverer"
kind = "feed"
url = "{gb}"

[[department]]
id = "exams"
name = "期末"
keywords = ["期末報告"]

[[department]]
id = "web"
name = "网页"
keywords = ["网页"]
"#,
            big5 = server.url("/big5.xml"),
            gb = server.url("/coverer.xml")
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(
        wait_for(WAIT, || {
            let t = titles(&receiver.acked());
            t.iter().any(|(d, _)| d == "exams") && t.iter().any(|(d, _)| d == "web")
        })
        .await,
        "got {:?}",
        titles(&receiver.all())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;
    let got = titles(&receiver.acked());
    let exams: Vec<&String> = got
        .iter()
        .filter(|(d, _)| d == "exams")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(exams.len(), 4, "{exams:?}");
    assert!(exams
        .iter()
        .any(|t| t.as_str() == "期末報告 -- 吳昆達, 翁睿廷"));
    // Two items mention 网页, one only in its body (checked against iconv + grep of the fixture).
    let web: BTreeSet<&str> = got
        .iter()
        .filter(|(d, _)| d == "web")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        web,
        [
            "使用Google语言工具访问被屏蔽的DMOZ",
            "Google推出广告分析服务 免费提供全方位报告"
        ]
        .into_iter()
        .collect()
    );
    for d in receiver.acked() {
        let j = d.json();
        let text = format!("{}{}", j["item"]["title"], j["item"]["text"]);
        assert!(!text.contains('\u{fffd}'), "mis-decoded: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_slow_huge_and_rate_limited_sources_do_not_stop_the_others() {
    init();
    let server = FeedServer::start().await;
    let slow = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/invalid.xml",
        Route::feed(fixture("feedrs_rss20_invalid.xml"), "application/rss+xml"),
    );
    server.set(
        "/huge.xml",
        Route::feed(vec![b'<'; 30 * 1024 * 1024], "application/rss+xml"),
    );
    server.set(
        "/limited.xml",
        Route::Status {
            code: 429,
            retry_after: Some("120".into()),
        },
    );
    slow.set("/hang.xml", Route::Hang);
    server.set(
        "/good.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot1.xml"),
            "application/atom+xml",
        ),
    );
    let ws = Workspace::new();
    let body = format!(
        r#"
[[source]]
id = "invalid"
kind = "feed"
url = "{invalid}"

[[source]]
id = "huge"
kind = "feed"
url = "{huge}"

[[source]]
id = "limited"
kind = "feed"
url = "{limited}"

[[source]]
id = "hang"
kind = "feed"
url = "{hang}"
timeout = "2s"

[[source]]
id = "good"
kind = "feed"
url = "{good}"

[[department]]
id = "weekly"
name = "周刊观察"
keywords = ["周刊"]
"#,
        invalid = server.url("/invalid.xml"),
        huge = server.url("/huge.xml"),
        limited = server.url("/limited.xml"),
        hang = slow.url("/hang.xml"),
        good = server.url("/good.xml"),
    );
    ws.write_config(&body, &receiver.url());
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || receiver.acked().len() >= 3).await);
    // The good source keeps being polled while the hanging one is stuck.
    assert!(wait_for(WAIT, || server.requests("/good.xml").len() >= 3).await);
    assert!(
        wait_for(WAIT, || !server.requests("/huge.xml").is_empty()
            && !server.requests("/invalid.xml").is_empty()
            && !server.requests("/limited.xml").is_empty()
            && !slow.requests("/hang.xml").is_empty())
        .await
    );
    // The hanging source must time out (2s) and be recorded as failed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    daemon.stop().await;
    assert_eq!(
        server.requests("/limited.xml").len(),
        1,
        "Retry-After: 120 must keep the source away"
    );

    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    let state = |id: &str| store.source_state(id).unwrap();
    let huge = state("huge");
    assert!(huge.consecutive_failures >= 1);
    assert!(
        huge.last_error
            .as_deref()
            .unwrap_or("")
            .contains("larger than"),
        "{huge:?}"
    );
    let invalid = state("invalid");
    assert!(
        invalid
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("extract"),
        "{invalid:?}"
    );
    let limited = state("limited");
    assert_eq!(limited.last_status, Some(429));
    let wait = limited.next_poll.unwrap() - limited.last_poll.unwrap();
    assert!(
        wait >= chrono::Duration::seconds(119),
        "next poll in {wait}"
    );
    let hang = state("hang");
    assert!(
        hang.last_error
            .as_deref()
            .unwrap_or("")
            .contains("timed out"),
        "{hang:?}"
    );
    let good = state("good");
    assert_eq!(good.consecutive_failures, 0);
    assert!(good.last_success.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_story_on_two_sources_alerts_once_and_backlog_false_records_silently() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    let feed = fixture("bison_ruanyifeng_atom_snapshot0.xml");
    server.set("/a.xml", Route::feed(feed.clone(), "application/atom+xml"));
    // The same feed syndicated at another address, with tracking parameters on its links.
    let mirrored = String::from_utf8(feed)
        .unwrap()
        .replace(
            "weekly-issue-254.html",
            "weekly-issue-254.html?utm_source=rss&amp;utm_medium=feed",
        )
        .replace("tag:www.ruanyifeng.com", "tag:mirror.example");
    server.set(
        "/b.xml",
        Route::feed(mirrored.into_bytes(), "application/atom+xml"),
    );
    server.set(
        "/quiet.xml",
        Route::feed(
            fixture("feedparser_illformed_gb2312_no_decl.xml"),
            "text/xml",
        ),
    );
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "a"
kind = "feed"
url = "{a}"

[[source]]
id = "b"
kind = "feed"
url = "{b}"
interval = "1s"

[[source]]
id = "quiet"
kind = "feed"
url = "{quiet}"
backlog = false

[[department]]
id = "weekly"
name = "周刊观察"
keywords = ["周刊", "移民漫画"]
"#,
            a = server.url("/a.xml"),
            b = server.url("/b.xml"),
            quiet = server.url("/quiet.xml"),
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || receiver.acked().len() >= 2).await);
    assert!(
        wait_for(WAIT, || server.requests("/b.xml").len() >= 2
            && server.requests("/quiet.xml").len() >= 2)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;
    let got = receiver.acked();
    // The copy on "b" joins its story's event: it may raise the level (spread is part of the
    // score) but never opens a second "new" alert.
    let new: Vec<_> = got.iter().filter(|d| d.json()["kind"] == "new").collect();
    assert_eq!(new.len(), 2, "two stories, each once: {:?}", titles(&got));
    let events: std::collections::BTreeSet<String> = new
        .iter()
        .map(|d| d.json()["event"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events.len(), 2);
    for d in &got {
        let j = d.json();
        assert!(events.contains(j["event"]["id"].as_str().unwrap()), "{j}");
        if j["kind"] != "new" {
            assert_eq!(j["kind"], "escalated", "{j}");
            assert_eq!(j["event"]["sources"], 2, "{j}");
        }
    }
    assert!(got
        .iter()
        .all(|d| d.json()["item"]["title"].as_str().unwrap().contains("周刊")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_in_flight_per_host_and_a_streamed_body_is_capped() {
    init();
    let polite = FeedServer::start().await;
    let big = FeedServer::start().await;
    let receiver = Receiver::start().await;
    let slow = |name: &str| Route::Slow {
        body: std::sync::Arc::new(fixture(name)),
        delay: Duration::from_millis(300),
    };
    polite.set("/1.xml", slow("feedrs_rss20_bbc.xml"));
    polite.set("/2.xml", slow("feedrs_rss20_spiegel.xml"));
    polite.set("/3.xml", slow("feedrs_atom_reddit.xml"));
    polite.set("/4.xml", slow("feedrs_rss10_debian.xml"));
    // 30 MiB with no Content-Length: only the streamed cap can stop it.
    big.set(
        "/big.xml",
        Route::Stream {
            chunk: 64 * 1024,
            count: 480,
        },
    );
    let ws = Workspace::new();
    let mut body = String::new();
    for i in 1..=4 {
        body.push_str(&format!(
            "[[source]]\nid = \"p{i}\"\nkind = \"feed\"\nurl = \"{}\"\n\n",
            polite.url(&format!("/{i}.xml"))
        ));
    }
    body.push_str(&format!(
        "[[source]]\nid = \"big\"\nkind = \"feed\"\nurl = \"{}\"\n\n[[department]]\nid = \"d\"\nname = \"D\"\nkeywords = [\"Debian\"]\n",
        big.url("/big.xml")
    ));
    ws.write_config(&body, &receiver.url());
    let daemon = Running::start(ws.load());
    assert!(
        wait_for(WAIT, || (1..=4)
            .all(|i| polite.requests(&format!("/{i}.xml")).len() >= 2))
        .await
    );
    assert!(wait_for(WAIT, || !big.requests("/big.xml").is_empty()).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;
    assert_eq!(
        polite.max_in_flight(),
        1,
        "four sources on one host, one request at a time"
    );
    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    let state = store.source_state("big").unwrap();
    assert!(
        state
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("larger than the 10485760-byte cap"),
        "{state:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn department_webhooks_override_and_refusals_become_dead_letters() {
    init();
    let server = FeedServer::start().await;
    let default_receiver = Receiver::start().await;
    let own_receiver = Receiver::start().await;
    own_receiver.set_default(410);
    server.set(
        "/json.json",
        Route::feed(
            fixture("feedrs_jsonfeed11_elastic.json"),
            "application/feed+json",
        ),
    );
    server.set(
        "/rdf.xml",
        Route::feed(fixture("feedrs_rss10_debian.xml"), "application/rdf+xml"),
    );
    let ws = Workspace::new();
    let own_url = format!("http://{}/os", own_receiver.addr);
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "elastic"
kind = "feed"
url = "{json}"

[[source]]
id = "debian"
kind = "feed"
url = "{rdf}"

[[department]]
id = "db"
name = "数据库"
keywords = ["InfluxDB"]

[[department]]
id = "os"
name = "操作系统"
keywords = ["Debian"]
webhook = "{own}"
"#,
            json = server.url("/json.json"),
            rdf = server.url("/rdf.xml"),
            own = own_url,
        ),
        &default_receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(
        wait_for(WAIT, || default_receiver.acked().len() >= 2
            && !own_receiver.all().is_empty())
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;
    // JSON Feed items go to the default webhook …
    let t = titles(&default_receiver.acked());
    assert_eq!(
        t,
        [
            (
                "db",
                "InfluxDB vs. Elasticsearch for Time Series Data & Metrics Benchmark"
            ),
            (
                "db",
                "InfluxDB vs. Graphite for Time Series Data & Metrics Benchmark"
            ),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    );
    // … the RSS 1.0 item to the department's own, which refuses it for good: one attempt.
    let own = own_receiver.all();
    assert_eq!(own.len(), 1);
    assert_eq!(
        own[0].json()["item"]["title"],
        "Updated Debian 11: 11.6 released"
    );
    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    let dead = store.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "HTTP 410 Gone");
    assert_eq!(dead[0].entry.alert_id, own[0].id());
    assert_eq!(store.outbox_len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_false_and_max_age_record_silently_but_later_entries_alert() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/quiet.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot0.xml"),
            "application/atom+xml",
        ),
    );
    server.set(
        "/old.xml",
        Route::feed(fixture("chardet_gb2312_w3cn.org_rss20.xml"), "text/xml"),
    );
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "quiet"
kind = "feed"
url = "{quiet}"
backlog = false

[[source]]
id = "old"
kind = "feed"
url = "{old}"
max_age = "30d"

[[department]]
id = "d"
name = "D"
keywords = ["周刊", "CSS"]
"#,
            quiet = server.url("/quiet.xml"),
            old = server.url("/old.xml"),
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(
        wait_for(WAIT, || server.requests("/quiet.xml").len() >= 3
            && server.requests("/old.xml").len() >= 3)
        .await
    );
    assert!(
        receiver.all().is_empty(),
        "first poll of a backlog=false source and 2005 items are silent"
    );
    server.set(
        "/quiet.xml",
        Route::feed(
            fixture("bison_ruanyifeng_atom_snapshot1.xml"),
            "application/atom+xml",
        ),
    );
    assert!(wait_for(WAIT, || !receiver.acked().is_empty()).await);
    let polls = server.requests("/quiet.xml").len();
    assert!(wait_for(WAIT, || server.requests("/quiet.xml").len() >= polls + 2).await);
    daemon.stop().await;
    let got = receiver.acked();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json()["item"]["title"],
        "科技爱好者周刊（第 255 期）：对待 AI 的正确态度"
    );
    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    assert_eq!(
        store.item_count(),
        3,
        "the silent first poll still stored its items"
    );
}
