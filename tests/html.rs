//! HTML sources on real pages: extraction (fields, presets, charsets), and the daemon following
//! list → detail pages, selector health and robots.txt against a local server.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use tingfeng::config::Config;
use tingfeng::source::html::{extract_detail, extract_list, HtmlContext};
use tingfeng::store::Store;

fn now() -> DateTime<Utc> {
    // 2020-08-02 16:00 Asia/Shanghai: the day the Discuz! page was captured.
    DateTime::parse_from_rfc3339("2020-08-02T16:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc)
}

/// Compiles `select` the way the daemon does, through a config.
fn source_with(select: &str, extra: &str) -> tingfeng::config::Source {
    let text = format!(
        r#"[[source]]
id = "s"
kind = "html"
url = "https://list.example.cn/news/"
{extra}
[source.select]
{select}
"#
    );
    let cfg = Config::from_parts(std::path::Path::new("t.toml"), &text, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    cfg.sources.into_iter().next().unwrap()
}

fn ctx<'a>(url: &'a url::Url, content_type: Option<&'a str>) -> HtmlContext<'a> {
    HtmlContext {
        content_type,
        page_url: url,
        encoding_override: None,
        timezone: chrono_tz::Asia::Shanghai,
        now: now(),
        date_format: None,
    }
}

#[test]
fn qbitai_list_fields() {
    let src = source_with(
        r#"item = "div.picture_text"
title = "h4"
link = "h4 a@href || a@href"
summary = "div.text_box > p"
author = ".info .author a"
published = ".info .time""#,
        "",
    );
    let spec = &src.html.as_ref().unwrap().list;
    let url = url::Url::parse("https://www.qbitai.com/").unwrap();
    let page = extract_list(
        &fixture("qbitai_list.html"),
        spec,
        &ctx(&url, Some("text/html")),
    );
    assert_eq!(page.entries.len(), 25, "{:?}", page.skipped);
    assert!(page.unmatched.is_empty(), "{:?}", page.unmatched);
    let e = page
        .entries
        .iter()
        .find(|e| e.link.as_deref() == Some("https://www.qbitai.com/2025/04/275232.html"))
        .expect("the SkyReels post");
    assert_eq!(
        e.title,
        "SkyReels-V2开源：突破视频生成技术边界，开启无限时长电影生成新时代"
    );
    assert_eq!(e.text, "在V-Bench评估中性能表现卓越");
    assert_eq!(e.author.as_deref(), Some("量子位"));
    // "昨天 10:28" relative to the capture clock.
    assert_eq!(
        e.published.map(|p| p.to_rfc3339()),
        Some("2020-08-01T02:28:00+00:00".to_string())
    );
}

#[test]
fn discuz_preset_reads_the_real_forum_page() {
    let src = source_with("", r#"preset = "discuz""#);
    let spec = &src.html.as_ref().unwrap().list;
    let url = url::Url::parse("https://bbs.example.cn/forum-9-1.html").unwrap();
    let page = extract_list(
        &fixture("discuz_x32_forumdisplay.html"),
        spec,
        &ctx(&url, None),
    );
    assert!(page.entries.len() >= 20, "{} threads", page.entries.len());
    let t = page
        .entries
        .iter()
        .find(|e| e.title == "新买的机子老出现游戏卡屏或卡崩")
        .expect("thread 202643");
    // Resolved against the page's own <base href>, not the URL it was fetched from.
    assert_eq!(
        t.link.as_deref(),
        Some("https://n.netease.com/thread-202643-1-1.html")
    );
    assert_eq!(t.author.as_deref(), Some("撅撅撅"));
    // The thread id, not the link (which carries the list page number), identifies it.
    assert_eq!(t.guid.as_deref(), Some("normalthread_202643"));
    assert_eq!(t.engagement.replies, Some(22));
    assert_eq!(t.engagement.views, Some(1171));
    assert_eq!(
        t.published.map(|p| p.to_rfc3339()),
        Some("2020-07-18T16:00:00+00:00".to_string())
    );
    // "3 天前" shown, the full date in the title attribute.
    let u = page
        .entries
        .iter()
        .find(|e| e.title == "电脑崩溃开不了机之经验")
        .unwrap();
    assert_eq!(
        u.published.map(|p| p.to_rfc3339()),
        Some("2020-07-29T16:00:00+00:00".to_string())
    );
    assert!(page.entries.iter().all(|e| e.link.is_some()));
}

#[test]
fn gov_list_preset_on_a_real_announcement_list() {
    let src = source_with(
        r#"item = "li.clearfix"
published = "span.t""#,
        r#"preset = "gov-list""#,
    );
    let spec = &src.html.as_ref().unwrap().list;
    let url = url::Url::parse("https://www.dfa66.com/dfaets/news/gsgg/").unwrap();
    let page = extract_list(
        &fixture("fund_dfa66_announcement_list.html"),
        spec,
        &ctx(&url, None),
    );
    assert!(page.entries.len() >= 8, "{}", page.entries.len());
    let e = page
        .entries
        .iter()
        .find(|e| e.title == "东方阿尔法优势产业混合型发起式证券投资基金基金合同生效公告")
        .unwrap();
    assert_eq!(
        e.link.as_deref(),
        Some(
            "https://www.dfa66.com/dfaets/contents/2020/6/28-7171ca77b18547bcbc9b0547be4e8ad6.html"
        )
    );
    assert_eq!(
        e.published.map(|p| p.to_rfc3339()),
        Some("2020-06-28T16:00:00+00:00".to_string())
    );
}

#[test]
fn charsets_of_real_pages() {
    let url = url::Url::parse("https://x.example.cn/a.html").unwrap();
    let src = source_with(
        r#"item = "title"
title = ".""#,
        "[source.detail]\ncontent = \"body\"\n",
    );
    let detail = src.html.as_ref().unwrap().detail.as_ref().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        // GB2312 with a meta charset.
        (
            "people.com.cn_2022_article_gb2312.html",
            "江苏多地要求中高风险地区师生员工暂不返校",
            "gb18030",
        ),
        // GB2312 with no meta charset at all.
        (
            "163_biz_2005_article_no_meta_charset.html",
            "中国社会科学院金融研究所所长李扬说",
            "gb18030",
        ),
        // A 2005 Sina article: meta charset gb2312 inside the dataset's <text> wrapper.
        (
            "sina_finance_2005_article_gb2312.html",
            "四年前中500万现穷困潦倒",
            "gb18030",
        ),
        // A Dvbbs forum thread in GB2312.
        ("newssc_bbs_thread_gb2312.html", "麻辣社区", "gb18030"),
        // Declare gb2312 / gbk but the bytes are UTF-8 (browser re-saves).
        (
            "fund_rtfund_xxpl_list_meta_gb2312_but_utf8.html",
            "融通关于旗下部分开放式基金新增华瑞保险销售有限公司",
            "UTF-8",
        ),
        (
            "netease_intl_list_meta_gbk_but_utf8.html",
            "美国新冠肺炎确诊病例超278万例",
            "UTF-8",
        ),
    ];
    for (name, expect, encoding) in cases {
        let d = extract_detail(&fixture(name), detail, &ctx(&url, Some("text/html")));
        let content = d.content.unwrap_or_default();
        assert_eq!(d.encoding, *encoding, "{name}");
        assert!(
            content.contains(expect),
            "{name}: {}",
            content.chars().take(120).collect::<String>()
        );
        assert!(
            !content.contains('\u{fffd}'),
            "{name}: replacement characters"
        );
    }
}

#[test]
fn bad_selectors_fail_check_naming_source_field_and_selector() {
    let text = r#"[[source]]
id = "forum"
kind = "html"
url = "https://bbs.example.cn/"
[source.select]
item = "tbody[id^=normalthread]"
title = "a:contains('城管')"
link = "a@href"
dates = "span"
"#;
    let err = Config::from_parts(std::path::Path::new("t.toml"), text, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("t.toml:7: source[0] \"forum\": select.title: \"a:contains('城管')\" is not a valid CSS selector: unsupported pseudo-class"), "{err}");
    assert!(
        err.contains("t.toml:9: source[0] \"forum\": select.dates: is not a field"),
        "{err}"
    );
}

fn qbitai_config(server: &FeedServer, extra: &str) -> String {
    format!(
        r#"
[[source]]
id = "qbitai"
kind = "html"
url = "{}"
{extra}
[source.select]
item = "div.picture_text"
title = "h4"
link = "h4 a@href || a@href"
summary = "div.text_box > p"
[source.detail]
content = "div.article"

[[department]]
id = "embodied"
name = "具身智能"
# Only in the article body of 275178, not in any list title or summary.
keywords = ["群核科技"]

[[department]]
id = "video"
name = "视频"
keywords = ["无限时长"]
"#,
        server.url("/list.html")
    )
}

/// The list page with its article links pointing at the local server.
fn local_qbitai_list(server: &FeedServer) -> Vec<u8> {
    String::from_utf8(fixture("qbitai_list.html"))
        .unwrap()
        .replace("https://www.qbitai.com/2025/", &server.url("/2025/"))
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_to_detail_matches_body_keywords_and_retries_failed_details() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    // No validators: every poll reads the list in full (the usual case for portal pages),
    // so failed detail pages are retried on the 200 path.
    server.set(
        "/list.html",
        Route::Feed {
            body: std::sync::Arc::new(local_qbitai_list(&server)),
            content_type: "text/html; charset=utf-8",
            etag: None,
        },
    );
    // The article with the body-only keyword is down at first.
    server.set(
        "/2025/04/275178.html",
        Route::Status {
            code: 503,
            retry_after: None,
        },
    );
    server.set(
        "/2025/04/275232.html",
        Route::feed(fixture("qbitai_article_275232.html"), "text/html"),
    );
    let ws = Workspace::new();
    ws.write_config(&qbitai_config(&server, ""), &receiver.url());
    let daemon = Running::start(ws.load());
    // The title keyword alerts from the list alone.
    assert!(
        wait_for(WAIT, || receiver
            .acked()
            .iter()
            .any(|d| d.json()["department"]["id"] == "video"))
        .await
    );
    assert!(wait_for(WAIT, || !server.requests("/2025/04/275178.html").is_empty()).await);
    assert!(receiver
        .acked()
        .iter()
        .all(|d| d.json()["department"]["id"] != "embodied"));
    // The article comes back: its body keyword now alerts, on a later poll.
    server.set(
        "/2025/04/275178.html",
        Route::feed(fixture("qbitai_article_275178.html"), "text/html"),
    );
    assert!(
        wait_for(WAIT, || receiver
            .acked()
            .iter()
            .any(|d| d.json()["department"]["id"] == "embodied"))
        .await
    );
    let polls = server.requests("/list.html").len();
    assert!(wait_for(WAIT, || server.requests("/list.html").len() >= polls + 2).await);
    daemon.stop().await;

    let got = receiver.acked();
    let embodied: Vec<_> = got
        .iter()
        .filter(|d| d.json()["department"]["id"] == "embodied")
        .collect();
    assert_eq!(embodied.len(), 1);
    let j = embodied[0].json();
    assert_eq!(
        j["item"]["title"],
        "具身空间数据技术的路线之争：合成重建VS全端生成"
    );
    assert!(j["item"]["text"].as_str().unwrap().contains("群核科技"));
    assert_eq!(
        got.iter()
            .filter(|d| d.json()["department"]["id"] == "video")
            .count(),
        1
    );
    // Each detail page is fetched until it succeeds, then never again.
    assert_eq!(
        server
            .requests("/2025/04/275232.html")
            .iter()
            .filter(|r| r.status == 200)
            .count(),
        1
    );
    assert_eq!(
        server
            .requests("/2025/04/275178.html")
            .iter()
            .filter(|r| r.status == 200)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_stops_matching_marks_the_source_unhealthy() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/list.html",
        Route::feed(local_qbitai_list(&server), "text/html"),
    );
    server.set(
        "/2025/04/275178.html",
        Route::feed(fixture("qbitai_article_275178.html"), "text/html"),
    );
    server.set(
        "/2025/04/275232.html",
        Route::feed(fixture("qbitai_article_275232.html"), "text/html"),
    );
    let ws = Workspace::new();
    ws.write_config(&qbitai_config(&server, ""), &receiver.url());
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || receiver.acked().len() >= 2).await);
    // The site now answers 200 with a verification page.
    server.set(
        "/list.html",
        Route::feed(
            "<html><body><div class='captcha'>请完成安全验证</div></body></html>".into(),
            "text/html",
        ),
    );
    let polls = server.requests("/list.html").len();
    assert!(wait_for(WAIT, || server.requests("/list.html").len() >= polls + 2).await);
    daemon.stop().await;
    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    let state = store.source_state("qbitai").unwrap();
    assert_eq!(state.failing.as_deref(), Some("no items"), "{state:?}");
    assert!(state.consecutive_failures >= 1);
    assert!(state
        .last_error
        .unwrap()
        .contains("selectors matched nothing"));
    assert!(store.item_count() >= 25, "known items are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_disallow_is_respected_unless_opted_out() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/list.html",
        Route::feed(local_qbitai_list(&server), "text/html"),
    );
    server.set(
        "/robots.txt",
        Route::feed(
            b"User-agent: *\nDisallow: /list.html\n".to_vec(),
            "text/plain",
        ),
    );
    let ws = Workspace::new();
    ws.write_config(&qbitai_config(&server, ""), &receiver.url());
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || server.requests("/robots.txt").len() == 1).await);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    daemon.stop().await;
    assert!(
        server.requests("/list.html").is_empty(),
        "disallowed page fetched"
    );
    assert_eq!(
        server.requests("/robots.txt").len(),
        1,
        "robots.txt is cached"
    );
    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    let state = store.source_state("qbitai").unwrap();
    assert_eq!(state.failing.as_deref(), Some("robots"));
    drop(store);

    // robots = false: the analyst takes responsibility for this source.
    let ws = Workspace::new();
    ws.write_config(&qbitai_config(&server, "robots = false"), &receiver.url());
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || !server.requests("/list.html").is_empty()).await);
    daemon.stop().await;
    assert_eq!(server.requests("/robots.txt").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbered_pages_are_followed_until_a_page_is_all_known() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    let page = |from: &str, to: &str| Route::Feed {
        body: std::sync::Arc::new(
            String::from_utf8(local_qbitai_list(&server))
                .unwrap()
                .replace(from, to)
                .into_bytes(),
        ),
        content_type: "text/html",
        // No validators: every poll reads page 1 in full, so "all known" decides.
        etag: None,
    };
    server.set("/list.html", page("/2025/04/", "/2025/04/"));
    server.set("/list_2.html", page("/2025/04/", "/2025/03/"));
    server.set("/list_3.html", page("/2025/04/", "/2025/02/"));
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "qbitai"
kind = "html"
url = "{}"
page_url = "{}"
max_pages = 2
robots = false
[source.select]
item = "div.picture_text"
title = "h4"
link = "h4 a@href || a@href"

[[department]]
id = "video"
name = "视频"
keywords = ["无限时长"]
"#,
            server.url("/list.html"),
            server.url("/list_{page}.html"),
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || server.requests("/list.html").len() >= 4).await);
    daemon.stop().await;
    assert_eq!(
        server.requests("/list_2.html").len(),
        1,
        "page 2 read once, then page 1 was all known"
    );
    assert!(server.requests("/list_3.html").is_empty(), "max_pages = 2");
    // The same title on pages 1 and 2 is two posts (two links) of one story: one event, and
    // its alert lists both.
    let got = receiver.acked();
    assert_eq!(got.len(), 1);
    let items = got[0].json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{items:?}");
    assert_ne!(items[0]["url"], items[1]["url"]);
    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    assert_eq!(store.item_count(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_source_shows_fields_charset_and_selectors_that_matched_nothing() {
    init();
    let server = FeedServer::start().await;
    server.set(
        "/list.html",
        Route::feed(local_qbitai_list(&server), "text/html; charset=utf-8"),
    );
    server.set(
        "/2025/04/275178.html",
        Route::feed(fixture("qbitai_article_275178.html"), "text/html"),
    );
    let ws = Workspace::new();
    let cfg = ws.write_config(
        &format!(
            r#"
[[source]]
id = "qbitai"
kind = "html"
url = "{}"
[source.select]
item = "div.picture_text"
title = "h4"
link = "h4 a@href || a@href"
author = "span.nobody-has-this"
published = ".info .time"
"#,
            server.url("/list.html")
        ),
        "http://127.0.0.1:9/unused",
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tingfeng"))
        .args(["try-source", "--config"])
        .arg(&cfg)
        .arg("qbitai")
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
        stdout.contains("field `author` (span.nobody-has-this) matched nothing on any item"),
        "{stdout}"
    );
    assert!(
        stdout.contains("decoded as UTF-8 (content-type), 25 items"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  [title] 具身空间数据技术的路线之争：合成重建VS全端生成"),
        "{stdout}"
    );
    assert!(stdout.contains("  [published] 昨天"), "{stdout}");
    assert!(!ws.data_dir().exists());
}
