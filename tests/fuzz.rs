//! Extractors take bytes from anyone: whatever arrives, they return items or an error, never
//! a panic. Random bytes, random mutations of real fixtures, truncations.

mod common;

use common::fixture;
use proptest::prelude::*;
use tingfeng::config::Config;
use tingfeng::source::{feed, html, json};

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn sources() -> (tingfeng::config::Source, tingfeng::config::Source) {
    let cfg = Config::from_parts(
        std::path::Path::new("fuzz.toml"),
        r#"
[[source]]
id = "h"
kind = "html"
url = "https://bbs.example.cn/forum-2-1.html"
preset = "discuz"
[source.detail]
content = "div.t_fsz || body"

[[source]]
id = "j"
kind = "json"
preset = "weibo"
url = "https://m.weibo.cn/api/container/getIndex"
"#,
        &[],
    )
    .unwrap();
    let mut it = cfg.sources.into_iter();
    (it.next().unwrap(), it.next().unwrap())
}

fn run_all(bytes: &[u8]) {
    let (h, j) = sources();
    let ctx = feed::FeedContext {
        content_type: None,
        base_url: Some("https://x.example/feed"),
        encoding_override: None,
        timezone: chrono_tz::Asia::Shanghai,
        now: now(),
    };
    let _ = feed::extract(bytes, &ctx);
    let spec = h.html.as_ref().unwrap();
    let hctx = html::HtmlContext {
        content_type: Some("text/html; charset=gbk"),
        page_url: &h.url,
        encoding_override: None,
        timezone: chrono_tz::Asia::Shanghai,
        now: now(),
        date_format: None,
    };
    let page = html::extract_list(bytes, &spec.list, &hctx);
    let _ = tingfeng::item::build_items("h", page.entries, now());
    let _ = html::extract_detail(bytes, spec.detail.as_ref().unwrap(), &hctx);
    let jctx = json::JsonContext {
        content_type: None,
        timezone: chrono_tz::Asia::Shanghai,
        now: now(),
        date_format: None,
    };
    let _ = json::extract(bytes, &j.json.as_ref().unwrap().spec, &jctx);
}

const SEEDS: &[&str] = &[
    "chardet_gb2312_w3cn.org_rss20.xml",
    "bison_ruanyifeng_atom_snapshot0.xml",
    "feedrs_jsonfeed11_elastic.json",
    "weibo_getindex_container_page0.json",
    "discuz_x32_forumdisplay.html",
    "feedparser_illformed_incomplete_cdata.xml",
    "sina_finance_2005_article_gb2312.html",
];

#[test]
fn an_unterminated_cdata_feed_is_an_error_not_a_panic() {
    let ctx = feed::FeedContext {
        content_type: None,
        base_url: None,
        encoding_override: None,
        timezone: chrono_tz::Asia::Shanghai,
        now: now(),
    };
    assert!(feed::extract(&fixture("feedparser_illformed_incomplete_cdata.xml"), &ctx).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        run_all(&bytes);
    }

    #[test]
    fn mutated_real_documents_never_panic(
        seed in 0usize..SEEDS.len(),
        cut in 0.0f64..1.0,
        flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..16),
    ) {
        let mut bytes = fixture(SEEDS[seed]);
        for (at, b) in flips {
            let i = ((bytes.len() as f64) * at) as usize;
            if i < bytes.len() {
                bytes[i] = b;
            }
        }
        let keep = ((bytes.len() as f64) * cut) as usize;
        bytes.truncate(keep);
        run_all(&bytes);
    }
}
