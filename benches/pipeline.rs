//! Throughput of the hot path on the fixture feeds, and the daemon's memory with many sources.
//!
//! `cargo bench --bench pipeline` prints, in one run:
//! - bare feed-rs parse of the fixture bytes (the parser's own cost, the reference);
//! - extract → normalise → dedup keys → match → alert build, without the store;
//! - the same plus sled (dedup lookups and the atomic item + alert + outbox write);
//! - the daemon's resident memory with 10,000 sources served locally (`--skip-memory` to skip;
//!   `--memory-only`, `--empty-feeds`, and `BENCH_SOURCES=n` to vary it).
//!
//! - `--events`: items per second through clustering, scoring and the alert lifecycle as the
//!   store grows to `BENCH_EVENT_ITEMS` items (default 1,000,000) spread over 90 days, with
//!   the process's memory and the store's size at each step.
//!
//! Keywords: 1,000 across 20 departments (see `departments`).

use chrono::Utc;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tingfeng::alerter::Judge;
use tingfeng::config::{Department, Source};
use tingfeng::ingest::{ingest, matches_for};
use tingfeng::item::build_items;
use tingfeng::rules::Matcher;
use tingfeng::source::feed::{extract, FeedContext};
use tingfeng::store::Store;

const FEEDS: &[&str] = &[
    "bison_ruanyifeng_atom_snapshot0.xml",
    "bison_ruanyifeng_atom_snapshot1.xml",
    "chardet_big5_sinica.edu.tw_atom03.xml",
    "chardet_gb2312_14.blog.westca.com_rss10.xml",
    "chardet_gb2312_coverer.com_rss091.xml",
    "chardet_gb2312_w3cn.org_rss20.xml",
    "feedparser_illformed_gb2312_no_decl.xml",
    "feedrs_atom_reddit.xml",
    "feedrs_rss10_debian.xml",
    "feedrs_rss10_iso8859.xml",
    "feedrs_rss20_bbc.xml",
    "feedrs_rss20_spiegel.xml",
    "feedrs_jsonfeed11_elastic.json",
    "feedparser_jsonfeed_example.json",
];

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn source(id: &str) -> Source {
    Source::feed(
        id,
        url::Url::parse("https://bench.example/feed").expect("url"),
    )
}

/// 1,000 distinct keywords in 20 departments: typical 政务 terms, 100 words taken from the
/// corpus (so matches happen, as they would on a busy day) and the rest random CJK words that
/// rarely occur — most items match nothing, as in real monitoring.
fn departments(corpus: &[String]) -> Vec<Department> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut words: BTreeSet<String> = TYPICAL.iter().map(|s| s.to_string()).collect();
    let chars: Vec<Vec<char>> = corpus
        .iter()
        .map(|t| t.chars().collect::<Vec<char>>())
        .filter(|t| t.len() >= 4)
        .collect();
    while words.len() < 116 {
        let t = &chars[rng.usize(..chars.len())];
        let len = rng.usize(2..=4);
        let start = rng.usize(..=t.len() - len);
        let w: String = t[start..start + len].iter().collect();
        if w.chars().all(|c| c.is_alphanumeric()) {
            words.insert(w);
        }
    }
    spread_over_twenty(words, &mut rng, |d| vec![format!("演习{d}")])
}

/// Fills `words` up to 1,000 with random CJK words that almost never occur and deals them
/// out to 20 departments, with the exclusions `exclude(d)`.
fn spread_over_twenty(
    mut words: BTreeSet<String>,
    rng: &mut fastrand::Rng,
    exclude: impl Fn(usize) -> Vec<String>,
) -> Vec<Department> {
    while words.len() < 1000 {
        let len = rng.usize(2..=4);
        let w: String = (0..len)
            .filter_map(|_| char::from_u32(rng.u32(0x4e00..0x9fa5)))
            .collect();
        words.insert(w);
    }
    let words: Vec<String> = words.into_iter().collect();
    (0..20)
        .map(|d| Department {
            id: format!("dept{d}"),
            name: format!("部门{d}"),
            keywords: words.iter().skip(d).step_by(20).cloned().collect(),
            exclude: exclude(d),
            rules: vec![],
            webhook: url::Url::parse("http://127.0.0.1:9/hook").unwrap(),
        })
        .collect()
}

fn ctx(now: chrono::DateTime<Utc>) -> FeedContext<'static> {
    FeedContext {
        content_type: None,
        base_url: Some("https://bench.example/feed"),
        encoding_override: None,
        timezone: chrono_tz::Asia::Shanghai,
        now,
    }
}

/// Runs `f` repeatedly for about `budget`, returning (iterations, elapsed).
fn run_for(budget: Duration, mut f: impl FnMut(usize)) -> (usize, Duration) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < budget {
        f(n);
        n += 1;
    }
    (n, start.elapsed())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs this with --bench absent; keep that cheap.
    let quick = !args.iter().any(|a| a == "--bench");
    let budget = if quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(3)
    };
    let sources: usize = std::env::var("BENCH_SOURCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    if args.iter().any(|a| a == "--events") {
        let n: usize = std::env::var("BENCH_EVENT_ITEMS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        events_at_scale(n);
        return;
    }
    if args.iter().any(|a| a == "--memory-only") {
        memory_with_many_sources(sources);
        return;
    }
    let feeds: Vec<Vec<u8>> = FEEDS.iter().map(|f| fixture(f)).collect();
    let bytes: usize = feeds.iter().map(Vec::len).sum();
    let now = Utc::now();
    let mut corpus = Vec::new();
    let mut items_per_round = 0;
    for f in &feeds {
        if let Ok(x) = extract(f, &ctx(now)) {
            items_per_round += x.entries.len();
            for e in x.entries {
                corpus.push(e.title);
                corpus.push(e.text);
            }
        }
    }
    if args.iter().any(|a| a == "--rules-only") {
        rule_scaling(budget, &corpus);
        return;
    }
    let depts = departments(&corpus);
    let matcher = Matcher::new(&depts).expect("automaton");
    println!(
        "corpus: {} feeds, {} KiB, {} items per round; rules: {} keywords in {} departments",
        feeds.len(),
        bytes / 1024,
        items_per_round,
        depts.iter().map(|d| d.keywords.len()).sum::<usize>(),
        depts.len()
    );

    // 1. The bare parser on the same bytes (legacy-charset feeds without a prolog it can use
    //    fail fast here; that is the parser's cost too).
    let (n, t) = run_for(budget, |_| {
        for f in &feeds {
            let _ = std::hint::black_box(feed_rs::parser::parse(f.as_slice()));
        }
    });
    let bare = (n * items_per_round) as f64 / t.as_secs_f64();
    println!(
        "bare feed-rs parse:                {bare:>10.0} items/s  ({:.1} MB/s)",
        (n * bytes) as f64 / t.as_secs_f64() / 1e6
    );

    // 2. Everything but the store.
    let mut alerts = 0usize;
    let (n, t) = run_for(budget, |_| {
        for f in &feeds {
            if let Ok(x) = extract(f, &ctx(now)) {
                let items = build_items("bench", x.entries, now);
                for it in &items {
                    alerts += matches_for(&matcher, it).len();
                }
            }
        }
    });
    let no_store = (n * items_per_round) as f64 / t.as_secs_f64();
    println!(
        "extract→normalise→match→alert:     {no_store:>10.0} items/s  ({:.2}× the bare parse time per item; {} alerts/round)",
        bare / no_store,
        alerts / n.max(1)
    );

    // 3. With the store: each round is a new source id, so every item is new and written.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 64 << 20).expect("store");
    let judge = Judge::with(Default::default(), depts.clone(), matcher.rule_set());
    let (n, t) = run_for(budget, |round| {
        let src = source(&format!("bench-{round}"));
        for f in &feeds {
            if let Ok(x) = extract(f, &ctx(now)) {
                // Fresh links and text each round, so nothing is a cross-source duplicate of
                // an earlier round and every item is matched and written.
                let entries = x
                    .entries
                    .into_iter()
                    .map(|mut e| {
                        e.link = e.link.map(|l| format!("{l}?round={round}"));
                        e.text.push_str(&format!(" {round}"));
                        e
                    })
                    .collect();
                let items = build_items(&src.id, entries, now);
                let _ = ingest(&store, &matcher, &judge, &src, &items, true, now).expect("ingest");
            }
        }
        store.flush().expect("flush");
    });
    let with_store = (n * items_per_round) as f64 / t.as_secs_f64();
    println!(
        "… + sled dedup/write/flush:        {with_store:>10.0} items/s  ({:.2}× the bare parse time per item)",
        bare / with_store
    );

    // 4. Raw automaton scan over the corpus, the physical limit of matching.
    let text: String = corpus.join("\n");
    let (n, t) = run_for(budget, |_| {
        std::hint::black_box(matcher.match_item("", &text));
    });
    println!(
        "matcher over corpus text:          {:>10.1} MB/s",
        (n * text.len()) as f64 / t.as_secs_f64() / 1e6
    );

    html_extraction(budget);
    rule_scaling(budget, &corpus);

    if !quick && !args.iter().any(|a| a == "--skip-memory") {
        memory_with_many_sources(sources);
    }
}

/// Rule matching at scale: 10,000 terms with realistic expressions over 20, 50 and 200
/// departments, on the corpus text, beside the bare automaton over the same (pre-normalised)
/// text — the physical limit.
fn rule_scaling(budget: Duration, corpus: &[String]) {
    use tingfeng::rules::expr::parse;
    use tingfeng::rules::{Rule, Subject};
    // Each "item": a title and a text from the corpus.
    let items: Vec<(String, String)> = corpus
        .chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
        .collect();
    let bytes: usize = items.iter().map(|(a, b)| a.len() + b.len()).sum();
    let mut rng = fastrand::Rng::with_seed(11);
    // Terms drawn from the corpus, so that rules fire. By default they are Chinese words, as a
    // Chinese department's keywords are: 2–4 character windows of runs of Chinese characters.
    // `--fragment-terms` draws windows of any alphanumeric run instead, which on the English
    // feeds of the corpus gives fragments such as "in", "le", "20" that occur every few words:
    // four times the hits, a stress case no analyst writes.
    let fragments = std::env::args().any(|a| a == "--fragment-terms");
    let runs: Vec<Vec<char>> = corpus
        .iter()
        .flat_map(|t| {
            let mut runs = Vec::new();
            let mut run = Vec::new();
            for c in t.chars() {
                let keep = if fragments {
                    c.is_alphanumeric()
                } else {
                    ('\u{4e00}'..='\u{9fff}').contains(&c)
                };
                if keep {
                    run.push(c);
                } else if !fragments && run.len() >= 2 {
                    runs.push(std::mem::take(&mut run));
                } else if !fragments {
                    run.clear();
                }
            }
            runs.push(run);
            runs
        })
        .filter(|t| t.len() >= if fragments { 4 } else { 2 })
        .collect();
    println!(
        "rule terms: 1 in 20 drawn from the corpus as {}",
        if fragments {
            "windows of any alphanumeric run (--fragment-terms)"
        } else {
            "Chinese words (2–4 character windows of Chinese runs)"
        }
    );
    let mut word = |from_corpus: bool| -> String {
        if from_corpus {
            let t = &runs[rng.usize(..runs.len())];
            let len = rng.usize(2..=4).min(t.len());
            let start = rng.usize(..=t.len() - len);
            t[start..start + len].iter().collect()
        } else {
            let len = rng.usize(2..=4);
            (0..len)
                .filter_map(|_| char::from_u32(rng.u32(0x4e00..0x9fa5)))
                .collect()
        }
    };
    const TERMS: usize = 10_000;
    // BENCH_DEPARTMENTS=200 runs one size (for profiling).
    let sizes: Vec<usize> = match std::env::var("BENCH_DEPARTMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => vec![n],
        None => vec![20, 50, 200],
    };
    for &n in &sizes {
        let per = TERMS / n;
        let depts: Vec<Department> = (0..n)
            .map(|d| {
                // 1 in 20 terms comes from the corpus, so rules do fire.
                let mut w: Vec<String> = (0..per).map(|i| word(i % 20 == 0)).collect();
                let keywords: Vec<String> = w.drain(..per / 5).collect();
                let mut rules = Vec::new();
                let mut r = 0;
                while w.len() >= 8 {
                    // Quoted: corpus words can be "or" or "and".
                    let t: Vec<String> = w.drain(..8).map(|x| format!("\"{x}\"")).collect();
                    let exprs = [
                        format!(
                            "({} | {} | {}) & ({} | {}) & !{}",
                            t[0], t[1], t[2], t[3], t[4], t[5]
                        ),
                        format!("NEAR/10({}, {}) | title:{}", t[6], t[7], t[0]),
                    ];
                    for e in exprs {
                        r += 1;
                        rules.push(Rule {
                            id: format!("d{d}r{r}"),
                            expr: parse(&e).expect("bench rule parses"),
                            source: e,
                            weight: 1.0,
                        });
                    }
                }
                Department {
                    id: format!("d{d}"),
                    name: format!("部门{d}"),
                    keywords,
                    exclude: vec![],
                    rules,
                    webhook: url::Url::parse("http://127.0.0.1:9/hook").expect("url"),
                }
            })
            .collect();
        let matcher = Matcher::new(&depts).expect("automaton");
        let normalized: Vec<(String, String)> = items
            .iter()
            .map(|(a, b)| {
                (
                    tingfeng::text::normalize_for_match(a),
                    tingfeng::text::normalize_for_match(b),
                )
            })
            .collect();
        // The normaliser alone (NFKC, case, traditional→simplified, separators), streamed as
        // matching streams it: the per-byte cost the bare automaton does not pay.
        if n == sizes[0] {
            let (nn, nt) = run_for(budget, |_| {
                for (a, b) in &items {
                    let mut sink = 0u32;
                    tingfeng::text::fold(a, |i, c| sink = sink.wrapping_add(i ^ c as u32));
                    tingfeng::text::fold(b, |i, c| sink = sink.wrapping_add(i ^ c as u32));
                    std::hint::black_box(sink);
                }
            });
            println!(
                "normaliser alone over the same text:  {:>7.1} MB/s",
                (nn * bytes) as f64 / nt.as_secs_f64() / 1e6
            );
        }
        fn subject<'a>(title: &'a str, text: &'a str) -> Subject<'a> {
            Subject {
                title,
                text,
                author: None,
                source: "bench",
            }
        }
        // Short rounds of the three measurements, interleaved, so that a change in the
        // machine's speed during the run (frequency, neighbours) hits all three alike; the
        // figures are medians over the rounds.
        const ROUNDS: usize = 7;
        let slice = budget / ROUNDS as u32;
        let (mut raws, mut scans, mut fulls, mut ratios) = (vec![], vec![], vec![], vec![]);
        let (mut found, mut matched, mut passes) = (0usize, 0usize, 0usize);
        for _ in 0..ROUNDS {
            let mut round_found = 0;
            let (rn, rt) = run_for(slice, |_| {
                for (a, b) in &normalized {
                    round_found += matcher.raw_scan(a) + matcher.raw_scan(b);
                }
            });
            found = round_found / rn.max(1);
            let (sn, st) = run_for(slice, |_| {
                for (a, b) in &items {
                    std::hint::black_box(matcher.scan_only(&subject(a, b)));
                }
            });
            let (mn, mt) = run_for(slice, |_| {
                for (a, b) in &items {
                    matched += matcher.match_subject(&subject(a, b)).matched.len();
                }
            });
            let rate = |n: usize, t: Duration| (n * bytes) as f64 / t.as_secs_f64() / 1e6;
            raws.push(rate(rn, rt));
            scans.push(rate(sn, st));
            fulls.push(rate(mn, mt));
            ratios.push((rate(mn, mt) / rate(rn, rt), rate(sn, st) / rate(rn, rt)));
            passes += mn;
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (raw, scan, full) = (median(&mut raws), median(&mut scans), median(&mut fulls));
        // What one pass produces, counted outside the timed runs: the output's size is part
        // of what matching costs.
        let hits: usize = items
            .iter()
            .flat_map(|(a, b)| matcher.match_subject(&subject(a, b)).matched)
            .map(|m| m.hits.len() + m.rules.iter().map(|r| r.terms.len()).sum::<usize>())
            .sum();
        let mut full_ratio: Vec<f64> = ratios.iter().map(|r| r.0).collect();
        let mut scan_ratio: Vec<f64> = ratios.iter().map(|r| r.1).collect();
        println!(
            "rules, {n:>3} departments, {} patterns: {full:>7.1} MB/s matched  vs {raw:>7.1} MB/s bare automaton ({:.2}×); normalise+scan alone {scan:.1} MB/s ({:.2}×); per pass of {} items, {} KiB: {} automaton matches, {} department matches with {hits} hits and rule terms",
            matcher.pattern_count(),
            median(&mut full_ratio),
            median(&mut scan_ratio),
            items.len(),
            bytes / 1024,
            found,
            matched / passes.max(1)
        );
    }
}

/// Pages and items per second through html extraction (bytes → entries) on real pages.
fn html_extraction(budget: Duration) {
    use tingfeng::source::html::{extract_detail, extract_list, HtmlContext};
    let cfg = tingfeng::config::Config::from_parts(
        std::path::Path::new("bench.toml"),
        r#"
[[source]]
id = "qbitai"
kind = "html"
url = "https://www.qbitai.com/"
[source.select]
item = "div.picture_text"
title = "h4"
link = "h4 a@href || a@href"
summary = "div.text_box > p"
published = ".info .time"
[source.detail]
content = "div.article"

[[source]]
id = "discuz"
kind = "html"
url = "https://bbs.example.cn/forum-9-1.html"
preset = "discuz"

[[source]]
id = "dfa66"
kind = "html"
url = "https://www.dfa66.com/"
preset = "gov-list"
[source.select]
item = "li.clearfix"
published = "span.t"
"#,
        &[],
    )
    .expect("bench config");
    let lists = [
        ("qbitai", "qbitai_list.html"),
        ("discuz", "discuz_x32_forumdisplay.html"),
        ("dfa66", "fund_dfa66_announcement_list.html"),
    ];
    let pages: Vec<(tingfeng::config::Source, Vec<u8>)> = lists
        .iter()
        .map(|(id, f)| (cfg.source(id).expect("source").clone(), fixture(f)))
        .collect();
    let now = Utc::now();
    let mut items = 0usize;
    let mut bytes = 0usize;
    let (n, t) = run_for(budget, |_| {
        for (src, body) in &pages {
            let spec = &src.html.as_ref().expect("html").list;
            let ctx = HtmlContext {
                content_type: None,
                page_url: &src.url,
                encoding_override: None,
                timezone: chrono_tz::Asia::Shanghai,
                now,
                date_format: None,
            };
            items += extract_list(body, spec, &ctx).entries.len();
            bytes += body.len();
        }
    });
    let secs = t.as_secs_f64();
    println!(
        "html list extraction:              {:>10.0} items/s  ({:.0} pages/s, {:.1} MB/s; qbitai, discuz, dfa66)",
        items as f64 / secs,
        (n * pages.len()) as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    let qbitai = cfg.source("qbitai").expect("source");
    let detail = qbitai
        .html
        .as_ref()
        .and_then(|h| h.detail.as_ref())
        .expect("detail");
    let articles = [
        fixture("qbitai_article_275178.html"),
        fixture("qbitai_article_275232.html"),
    ];
    let mut bytes = 0usize;
    let (n, t) = run_for(budget, |_| {
        for a in &articles {
            let ctx = HtmlContext {
                content_type: None,
                page_url: &qbitai.url,
                encoding_override: None,
                timezone: chrono_tz::Asia::Shanghai,
                now,
                date_format: None,
            };
            std::hint::black_box(extract_detail(a, detail, &ctx));
            bytes += a.len();
        }
    });
    println!(
        "html detail extraction:            {:>10.0} pages/s  ({:.1} MB/s)",
        (n * articles.len()) as f64 / t.as_secs_f64(),
        bytes as f64 / t.as_secs_f64() / 1e6
    );
}

/// Starts a local server with `count` feeds, runs the release daemon on them until every
/// source has been polled once, and reports its peak and current resident memory.
fn memory_with_many_sources(count: usize) {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    // `--empty-feeds` separates the cost of sources from the cost of stored items.
    let empty = std::env::args().any(|a| a == "--empty-feeds");
    let feed = if empty {
        b"<rss version=\"2.0\"><channel><title>t</title></channel></rss>".to_vec()
    } else {
        fixture("bison_ruanyifeng_atom_snapshot1.xml")
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(AtomicUsize::new(0));
    {
        let served = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let feed = feed.clone();
                let served = served.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(match stream.try_clone() {
                        Ok(s) => s,
                        Err(_) => return,
                    });
                    let mut stream = stream;
                    loop {
                        let mut line = String::new();
                        let mut request_line = String::new();
                        let mut len = 0;
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if request_line.is_empty() {
                                request_line = line.clone();
                            }
                            len += line.len();
                            if len > 64 * 1024 {
                                return;
                            }
                        }
                        // Each source gets its own stories (links and text differ), so the
                        // store holds 3 distinct items per source, not one shared set.
                        let n = request_line
                            .split('/')
                            .nth(2)
                            .and_then(|p| p.split('.').next())
                            .unwrap_or("0")
                            .to_string();
                        let body = String::from_utf8_lossy(&feed)
                            .replace(".html", &format!("-{n}.html"))
                            .replace("阮一峰", &format!("阮一峰{n}"))
                            .replace("tag:www.ruanyifeng.com", &format!("tag:{n}.example"))
                            .into_bytes();
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/atom+xml\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        if stream.write_all(head.as_bytes()).is_err()
                            || stream.write_all(&body).is_err()
                        {
                            return;
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = format!(
        "[daemon]\ndata_dir = \"{}\"\nmax_concurrent_fetches = 32\ncache_capacity_mb = 8\n\n[defaults]\ninterval = \"10m\"\nper_host = \"2000/1s\"\nmax_in_flight_per_host = 32\n\n[webhook]\nurl = \"http://127.0.0.1:9/hook\"\n\n[[department]]\nid = \"d\"\nname = \"D\"\nkeywords = [\"不会出现的词\"]\n",
        dir.path().join("data").display()
    );
    for i in 0..count {
        cfg.push_str(&format!(
            "\n[[source]]\nid = \"s{i}\"\nkind = \"feed\"\nurl = \"http://{addr}/feed/{i}.xml\"\n"
        ));
    }
    let path = dir.path().join("sources.toml");
    std::fs::write(&path, cfg).expect("write config");
    let bin = env!("CARGO_BIN_EXE_tingfeng");
    let mut child = std::process::Command::new(bin)
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn daemon");
    let start = Instant::now();
    // Never-polled sources start within 10 s; allow for the polls themselves.
    while served.load(Ordering::Relaxed) < count && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let polled = served.load(Ordering::Relaxed);
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "daemon with {count} sources ({}): {polled} polled in {:.1}s; VmRSS {}, VmHWM (peak) {}",
        if empty {
            "empty feeds"
        } else {
            "a distinct copy of the 73 KiB ruanyifeng Atom feed each: 30,000 long items stored"
        },
        start.elapsed().as_secs_f64(),
        field("VmRSS:"),
        field("VmHWM:")
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn own_status(name: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name))
        .map(|l| l[name.len()..].trim().to_string())
        .unwrap_or_else(|| "?".into())
}

const TYPICAL: &[&str] = &[
    "城管",
    "占道经营",
    "违建",
    "强拆",
    "暴雨",
    "内涝",
    "食品安全",
    "拖欠工资",
    "医保",
    "学区房",
    "噪音扰民",
    "垃圾分类",
    "物业纠纷",
    "征地补偿",
    "环境污染",
    "信访",
];

/// 1,000 keywords in 20 departments: the typical terms above spread over them, the rest
/// random CJK words that almost never occur.
fn rare_departments() -> Vec<Department> {
    let mut rng = fastrand::Rng::with_seed(5);
    let words: BTreeSet<String> = TYPICAL.iter().map(|s| s.to_string()).collect();
    spread_over_twenty(words, &mut rng, |_| vec![])
}

/// Judging at scale: `total` items, 11k a day over 90 days (1M), each placed in an event
/// (near-duplicate lookup over the 3-day window, Jaccard confirmation), matched against 20
/// departments and folded into their groups, scored, and committed; alerts that come due are
/// flushed per batch of 50 items, as a poll does. A fifth of the items are reposts of a recent
/// item with a few characters changed, so events grow; the rest are new stories composed from
/// the fixture corpus, one in twenty of them about a department's matter.
fn events_at_scale(total: usize) {
    let feeds: Vec<Vec<u8>> = FEEDS.iter().map(|f| fixture(f)).collect();
    let now = Utc::now();
    let mut corpus: Vec<Vec<char>> = Vec::new();
    for f in &feeds {
        if let Ok(x) = extract(f, &ctx(now)) {
            for e in x.entries {
                for t in [e.title, e.text] {
                    let chars: Vec<char> = t.chars().filter(|c| !c.is_whitespace()).collect();
                    if chars.len() >= 40 {
                        corpus.push(chars);
                    }
                }
            }
        }
    }
    let depts = rare_departments();
    let typical: Vec<Vec<char>> = TYPICAL.iter().map(|w| w.chars().collect()).collect();
    let matcher = Matcher::new(&depts).expect("automaton");
    let judge = Judge::with(Default::default(), depts.clone(), matcher.rule_set());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 64 << 20).expect("store");
    let src = source("bench");
    let mut rng = fastrand::Rng::with_seed(11);
    let per_day = 11_000usize;
    let start_time = now - chrono::Duration::days((total / per_day) as i64);
    let mut recent: Vec<(String, String)> = Vec::new();
    let compose = |rng: &mut fastrand::Rng| -> (String, String) {
        let mut text = String::new();
        for _ in 0..3 {
            let t = &corpus[rng.usize(..corpus.len())];
            let len = rng.usize(30..=60).min(t.len());
            let at = rng.usize(..=t.len() - len);
            text.extend(&t[at..at + len]);
        }
        // One story in twenty concerns a department (a busy day; most posts concern none).
        if rng.u8(..20) == 0 {
            let w = &typical[rng.usize(..typical.len())];
            let at = rng.usize(..text.chars().count().min(40));
            let mut chars: Vec<char> = text.chars().collect();
            chars.splice(at..at, w.iter().copied());
            text = chars.into_iter().collect();
        }
        let title: String = text.chars().take(20).collect();
        (title, text)
    };
    println!(
        "events at scale: {total} items, {per_day}/day, 20 departments, 1,000 keywords; 2 vCPU"
    );
    let batch = 50;
    let report_every = (total / 10).max(batch);
    let mut t0 = Instant::now();
    let mut done_at_last = 0usize;
    let mut raised = 0usize;
    let mut i = 0usize;
    while i < total {
        let when = start_time
            + chrono::Duration::milliseconds((i as f64 * 86_400_000.0 / per_day as f64) as i64);
        let mut items = Vec::with_capacity(batch);
        for k in 0..batch {
            let n = i + k;
            let (title, text) = if !recent.is_empty() && rng.u8(..5) == 0 {
                let (t, x) = &recent[rng.usize(..recent.len())];
                let p: String = (0..rng.usize(1..4))
                    .filter_map(|_| char::from_u32(rng.u32(0x4e00..0x9fa5)))
                    .collect();
                (format!("{p}{t}"), format!("{p}{x}"))
            } else {
                compose(&mut rng)
            };
            if recent.len() < 2000 {
                recent.push((title.clone(), text.clone()));
            } else {
                let slot = rng.usize(..recent.len());
                recent[slot] = (title.clone(), text.clone());
            }
            items.push(tingfeng::item::Entry {
                guid: Some(format!("bench-{n}")),
                link: Some(format!("https://bench.example/{n}")),
                title,
                text,
                ..Default::default()
            });
        }
        let items = build_items(&src.id, items, when);
        let r = ingest(&store, &matcher, &judge, &src, &items, true, when).expect("ingest");
        raised += r.queued.len();
        i += batch;
        if i % report_every == 0 || i >= total {
            let dt = t0.elapsed().as_secs_f64();
            println!(
                "  {i:>8} items stored: {:>7.0} items/s over the last {}; events {}, alerts queued {raised}; VmRSS {}, store {} MiB",
                (i - done_at_last) as f64 / dt,
                i - done_at_last,
                if i >= total { store.event_count().to_string() } else { "…".into() },
                own_status("VmRSS:"),
                store.size_on_disk() >> 20
            );
            t0 = Instant::now();
            done_at_last = i;
        }
    }
    println!("  peak memory (VmHWM) {}", own_status("VmHWM:"));
}
