//! JSON / microblog sources on real API responses: Weibo getIndex (with reposts and long
//! posts), Mastodon, Twitter v2; keyword search expansion, cursors, soft blocks.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use tingfeng::config::Config;
use tingfeng::source::json::{extract, JsonContext, JsonPage};
use tingfeng::store::Store;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2021-06-20T12:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc)
}

fn compile(source_body: &str) -> tingfeng::config::Source {
    let text = format!(
        "[[source]]\nid = \"s\"\nkind = \"json\"\nurl = \"https://m.weibo.cn/api/container/getIndex\"\n{source_body}\n"
    );
    let cfg = Config::from_parts(std::path::Path::new("t.toml"), &text, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    cfg.sources.into_iter().next().unwrap()
}

fn read(source: &tingfeng::config::Source, name: &str) -> JsonPage {
    let ctx = JsonContext {
        content_type: Some("application/json"),
        timezone: chrono_tz::Asia::Shanghai,
        now: now(),
        date_format: None,
    };
    extract(&fixture(name), &source.json.as_ref().unwrap().spec, &ctx).unwrap()
}

#[test]
fn weibo_preset_reads_posts_reposts_and_engagement() {
    let src = compile(r#"preset = "weibo""#);
    let page = read(&src, "weibo_getindex_container_page0.json");
    // 10 posts, one of them a repost whose original is its own entry.
    assert_eq!(page.entries.len(), 11);
    let first = &page.entries[0];
    assert_eq!(first.guid.as_deref(), Some("4645748019299849"));
    assert_eq!(first.author.as_deref(), Some("明日方舟Arknights"));
    assert_eq!(
        first.link.as_deref(),
        Some("https://m.weibo.cn/detail/4645748019299849")
    );
    assert_eq!(
        first.published.map(|p| p.to_rfc3339()),
        Some("2021-06-08T01:35:04+00:00".to_string())
    );
    assert_eq!(first.engagement.reposts, Some(9079));
    assert_eq!(first.engagement.comments, Some(2126));
    assert_eq!(first.engagement.likes, Some(37053));
    assert!(
        first
            .text
            .starts_with("#明日方舟# #音律联觉# 2021明日方舟音律联觉"),
        "{}",
        first.text
    );
    assert!(!first.text.contains('<'), "HTML stripped");
    assert!(page.long_text.contains(&"4645748019299849".to_string()));
    let repost = page
        .entries
        .iter()
        .find(|e| e.guid.as_deref() == Some("4648806186747944"))
        .unwrap();
    assert_eq!(repost.related_guid.as_deref(), Some("4645748019299849"));
    assert!(
        repost.text.starts_with("恭喜@黄防护服黄 等10名用户获得"),
        "{}",
        repost.text
    );
    assert!(
        !repost.text.contains("音律联觉原声EP"),
        "the repost's text is its own only"
    );
    assert_eq!(page.next_cursor.as_deref(), Some("4646131823281332"));
    assert!(page.blocked.is_none());
}

#[test]
fn mastodon_and_twitter_presets_parse_real_samples() {
    let m = compile(r#"preset = "mastodon""#);
    let page = read(&m, "mastodon_timeline.json");
    assert_eq!(page.entries.len(), 2);
    assert_eq!(page.entries[0].author.as_deref(), Some("ornithocoder"));
    assert_eq!(
        page.entries[0].link.as_deref(),
        Some("https://mastodon.technology/@ornithocoder")
    );
    assert!(page.entries[0].published.is_some());
    let t = compile(r#"preset = "twitter-v2""#);
    let page = read(&t, "twitter_v2_search_recent.json");
    assert_eq!(page.entries.len(), 4);
    let e = &page.entries[0];
    assert_eq!(e.guid.as_deref(), Some("1276035977375477760"));
    assert_eq!(
        e.author.as_deref(),
        Some("happycamper"),
        "author id resolved via includes.users"
    );
    assert_eq!(
        e.link.as_deref(),
        Some("https://twitter.com/i/web/status/1276035977375477760")
    );
    let page = read(&t, "twitter_v2_user_tweets.json");
    assert!(!page.entries.is_empty());
}

#[test]
fn a_missing_optional_field_keeps_the_item_and_a_bad_path_fails_check() {
    let src = compile(
        r#"preset = "weibo"
[source.select]
author = "$.no_such_field"
title = "$.also_missing""#,
    );
    let page = read(&src, "weibo_getindex_container_page0.json");
    assert_eq!(page.entries.len(), 11);
    assert!(page.entries.iter().all(|e| e.author.is_none()));
    let err = Config::from_parts(
        std::path::Path::new("t.toml"),
        "[[source]]\nid = \"w\"\nkind = \"json\"\nurl = \"https://x.cn/api\"\n[source.select]\nitem = \"$.data[?\"\ntext = \"$.text\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "t.toml:6: source[0] \"w\": select.item: \"$.data[?\" is not a valid JSONPath"
        ),
        "{err}"
    );
}

#[test]
fn weibo_soft_blocks_are_told_from_empty_results() {
    let src = compile(r#"preset = "weibo""#);
    let spec = &src.json.as_ref().unwrap().spec;
    let ctx = JsonContext {
        content_type: None,
        timezone: chrono_tz::Asia::Shanghai,
        now: now(),
        date_format: None,
    };
    let blocked = extract(
        br#"{"ok":-100,"url":"https://passport.weibo.cn/signin/welcome"}"#,
        spec,
        &ctx,
    )
    .unwrap();
    assert!(blocked.blocked.unwrap().contains("login required"));
    let login = extract(
        br#"{"ok":0,"url":"https://passport.weibo.cn/signin"}"#,
        spec,
        &ctx,
    )
    .unwrap();
    assert!(login.blocked.is_some());
    let empty = extract(
        r#"{"ok":0,"msg":"这里还没有内容","data":{"cards":[]}}"#.as_bytes(),
        spec,
        &ctx,
    )
    .unwrap();
    assert!(empty.blocked.is_none() && empty.entries.is_empty());
    let captcha = extract(b"<html><body>\xe8\xaf\xb7\xe8\xbe\x93\xe5\x85\xa5\xe9\xaa\x8c\xe8\xaf\x81\xe7\xa0\x81</body></html>", spec, &ctx).unwrap();
    assert!(captcha
        .blocked
        .unwrap()
        .contains("HTML page where JSON was expected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weibo_second_capture_alerts_only_new_posts_with_full_long_text() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    let api = "/api/container/getIndex";
    server.set(
        api,
        Route::feed(
            fixture("weibo_getindex_container_page0.json"),
            "application/json",
        ),
    );
    server.set(
        "/statuses/extend",
        Route::feed(
            fixture("weibo_statuses_extend_4645748019299849.json"),
            "application/json",
        ),
    );
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "arknights"
kind = "json"
preset = "weibo"
url = "{}?containerid=1076036279793937"
max_pages = 1

[[department]]
id = "games"
name = "游戏"
keywords = ["明日方舟", "抽奖详情"]
"#,
            server.url(api)
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || server.requests(api).len() >= 2).await);
    assert!(wait_for(WAIT, || !receiver.acked().is_empty()).await);
    let first_round: Vec<String> = receiver.acked().iter().map(|d| d.id()).collect();
    // The long post's full text (fetched once from statuses/extend) reached the alert.
    let long = receiver
        .acked()
        .into_iter()
        .find(|d| d.json()["item"]["url"] == "https://m.weibo.cn/detail/4645748019299849")
        .expect("the long post alerted");
    assert!(
        long.json()["item"]["text"]
            .as_str()
            .unwrap()
            .contains("抽奖详情"),
        "{} / extend requests: {:?}",
        long.json()["item"]["text"],
        server
            .requests("/statuses/extend")
            .iter()
            .map(|r| (r.query.clone(), r.status))
            .collect::<Vec<_>>()
    );
    let extends = server.requests("/statuses/extend");
    assert!(extends.iter().all(|r| r.query.starts_with("id=")));
    let fetched_once = extends.len();

    server.set(
        api,
        Route::feed(
            fixture("weibo_getindex_container_page1.json"),
            "application/json",
        ),
    );
    assert!(wait_for(WAIT, || receiver.acked().len() > first_round.len()).await);
    let polls = server.requests(api).len();
    assert!(wait_for(WAIT, || server.requests(api).len() >= polls + 2).await);
    daemon.stop().await;
    let new: Vec<serde_json::Value> = receiver
        .acked()
        .iter()
        .filter(|d| !first_round.contains(&d.id()))
        .map(|d| d.json())
        .collect();
    assert_eq!(new.len(), 1, "only the one post that page1 adds");
    assert_eq!(
        new[0]["item"]["url"],
        "https://m.weibo.cn/detail/4649106427873349"
    );
    assert_eq!(
        server.requests("/statuses/extend").len(),
        fetched_once,
        "long text of known posts is never fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_search_expands_per_keyword_and_a_soft_block_keeps_known_items() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    server.set(
        "/search",
        Route::feed(
            fixture("weibo_getindex_container_page0.json"),
            "application/json",
        ),
    );
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "weibo-search"
kind = "json"
preset = "weibo"
url = "{}?containerid=100103type%3D1%26q%3D{{keyword}}&page_type=searchall"
search_departments = ["urban"]

[[department]]
id = "urban"
name = "城市管理局"
keywords = ["城管", "占道 经营", "明日方舟"]
"#,
            server.url("/search")
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || server.requests("/search").len() >= 3).await);
    assert!(wait_for(WAIT, || !receiver.acked().is_empty()).await);
    let queries: Vec<String> = server
        .requests("/search")
        .iter()
        .map(|r| r.query.clone())
        .collect();
    for kw in [
        "%E5%9F%8E%E7%AE%A1",
        "%E5%8D%A0%E9%81%93%20%E7%BB%8F%E8%90%A5",
        "%E6%98%8E%E6%97%A5%E6%96%B9%E8%88%9F",
    ] {
        assert!(
            queries.iter().any(|q| q == &format!("containerid=100103type%3D1%26q%3D{kw}&page_type=searchall")),
            "{kw} not searched: {queries:?}"
        );
    }
    // Now the site wants a login.
    server.set(
        "/search",
        Route::feed(
            br#"{"ok":-100,"url":"https://passport.weibo.cn/signin/welcome"}"#.to_vec(),
            "application/json",
        ),
    );
    let polls = server.requests("/search").len();
    assert!(wait_for(WAIT, || server.requests("/search").len() >= polls + 2).await);
    daemon.stop().await;
    let store = Store::open(&ws.data_dir(), 8 << 20).unwrap();
    let state = store.source_state("weibo-search").unwrap();
    assert_eq!(state.failing.as_deref(), Some("blocked"), "{state:?}");
    assert!(state.last_error.unwrap().contains("login required"));
    // 11 entries, one of them the original embedded in a repost and also listed: 10 posts.
    assert_eq!(store.item_count(), 10, "known items stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_catches_up_on_older_pages() {
    init();
    let server = FeedServer::start().await;
    let receiver = Receiver::start().await;
    let path = "/api/v1/timelines/public";
    let page = |body: Vec<u8>| Route::Feed {
        body: std::sync::Arc::new(body),
        content_type: "application/json",
        etag: None,
    };
    server.set(path, page(fixture("mastodon_timeline.json")));
    // The older page, asked for with max_id = the last id of page 1: a real status.
    let mut older = b"[".to_vec();
    older.extend(fixture("mastodon_status_with_emojis_and_attachments.json"));
    older.extend(b"]");
    server.set(&format!("{path}?max_id=1"), page(older));
    let ws = Workspace::new();
    ws.write_config(
        &format!(
            r#"
[[source]]
id = "mastodon"
kind = "json"
preset = "mastodon"
url = "{}"
max_pages = 3
token_env = "{SECRET_ENV}"

[[department]]
id = "d"
name = "D"
keywords = ["swift"]
"#,
            server.url(path)
        ),
        &receiver.url(),
    );
    let daemon = Running::start(ws.load());
    assert!(wait_for(WAIT, || server.requests(path).len() >= 4).await);
    daemon.stop().await;
    let reqs = server.requests(path);
    // Page 1, then max_id=1 (the last id seen), then max_id=<the older status> which answers
    // page 1 again — all known — so the poll stops; the next poll starts at page 1.
    assert_eq!(reqs[0].query, "");
    assert_eq!(reqs[1].query, "max_id=1");
    assert_eq!(reqs[2].query, "max_id=AQetOIEp6Z2GZ4UiI4");
    assert_eq!(reqs[3].query, "");
    let store = tingfeng::store::Store::open(&ws.data_dir(), 8 << 20).unwrap();
    let items = store.items_matching(10, |_| true).unwrap();
    assert!(
        items
            .iter()
            .any(|i| i.url.as_deref()
                == Some("https://m.iamkonstantin.eu/notice/AQetOIEp6Z2GZ4UiI4")),
        "the older page's status was ingested"
    );
    // The sample timeline gives both its statuses id "1" (an edited fixture): one item.
    assert_eq!(items.len(), 2);
    // The token went along, as a bearer token.
    assert_eq!(
        reqs[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {SECRET}").as_str())
    );
}

#[test]
fn weibo_search_results_nested_in_card_groups_are_read() {
    // Search containers put posts in card_group of type-11 cards; built here from a real post.
    let page: serde_json::Value =
        serde_json::from_slice(&fixture("weibo_getindex_container_page0.json")).unwrap();
    let card = page["data"]["cards"][0].clone();
    let search = serde_json::json!({
        "ok": 1,
        "data": { "cards": [ { "card_type": 11, "card_group": [ card ] } ] }
    });
    let src = compile(r#"preset = "weibo""#);
    let ctx = JsonContext {
        content_type: None,
        timezone: chrono_tz::Asia::Shanghai,
        now: now(),
        date_format: None,
    };
    let bytes = serde_json::to_vec(&search).unwrap();
    let got = extract(&bytes, &src.json.as_ref().unwrap().spec, &ctx).unwrap();
    assert_eq!(got.entries.len(), 1);
    assert_eq!(got.entries[0].guid.as_deref(), Some("4645748019299849"));
}
