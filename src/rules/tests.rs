use super::expr::{parse, Expr, Scope};
use super::*;
use proptest::prelude::*;
use url::Url;

fn dept(id: &str, keywords: &[&str], exclude: &[&str]) -> Department {
    Department {
        id: id.into(),
        name: id.into(),
        keywords: keywords.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        rules: vec![],
        webhook: Url::parse("http://127.0.0.1:1/").unwrap(),
    }
}

fn with_rules(id: &str, rules: &[&str]) -> Department {
    let mut d = dept(id, &[], &[]);
    d.rules = rules
        .iter()
        .enumerate()
        .map(|(i, r)| Rule {
            id: format!("{id}#{}", i + 1),
            expr: parse(r).unwrap(),
            source: r.to_string(),
            weight: 1.0,
        })
        .collect();
    d
}

fn subject<'a>(title: &'a str, text: &'a str) -> Subject<'a> {
    Subject {
        title,
        text,
        author: None,
        source: "s",
    }
}

#[test]
fn matches_overlapping_keywords_with_offsets() {
    let m = Matcher::new(&[dept("urban", &["城管", "城管执法"], &[])]).unwrap();
    let out = m.match_item("某地城管执法引争议", "");
    assert_eq!(out.matched.len(), 1);
    let hits = &out.matched[0].hits;
    assert_eq!(hits.len(), 2);
    assert!(hits
        .iter()
        .any(|h| h.keyword == "城管" && h.start == 2 && h.end == 4));
    assert!(hits.iter().any(|h| h.keyword == "城管执法" && h.end == 6));
}

#[test]
fn exclusion_vetoes_and_case_width_fold() {
    let m = Matcher::new(&[
        dept("urban", &["城管"], &["演习"]),
        dept("it", &["WiFi"], &[]),
    ])
    .unwrap();
    let out = m.match_item("城管演习", "ｗｉｆｉ 信号差");
    assert_eq!(out.matched.len(), 1);
    assert_eq!(out.matched[0].department, "it");
    assert_eq!(out.matched[0].hits[0].field, Field::Text);
    assert_eq!(out.vetoed.len(), 1);
    assert_eq!(out.vetoed[0].0, "urban");
}

#[test]
fn shared_keyword_reaches_every_department() {
    let m = Matcher::new(&[dept("a", &["暴雨"], &[]), dept("b", &["暴雨", "内涝"], &[])]).unwrap();
    let out = m.match_item("", "暴雨导致内涝");
    assert_eq!(out.matched.len(), 2);
    assert_eq!(out.matched[1].hits.len(), 2);
    assert_eq!(out.matched[0].snippet("", "暴雨导致内涝"), "暴雨导致内涝");
}

#[test]
fn boolean_rules_with_evasive_spellings() {
    let m = Matcher::new(&[with_rules(
        "urban",
        &["(城管 | 执法) & (打人 | 冲突) & !演习"],
    )])
    .unwrap();
    // Traditional characters and a separator slipped in to dodge the filter.
    let out = m.match_subject(&subject("某地城-管與攤販發生衝突", ""));
    assert_eq!(out.matched.len(), 1, "{out:?}");
    let r = &out.matched[0].rules[0];
    assert_eq!(r.id, "urban#1");
    let words: Vec<&str> = r.terms.iter().map(|t| t.keyword).collect();
    assert_eq!(words, vec!["城管", "冲突"]);
    // Offsets are in the original text: 城-管 spans three characters.
    assert_eq!((r.terms[0].start, r.terms[0].end), (2, 5));
    let vetoed = m.match_explained(&subject("城管执法演习中发生冲突", ""));
    assert!(vetoed.matched.is_empty());
    assert!(
        vetoed.near_misses[0].2.contains("vetoed by NOT (演习)"),
        "{:?}",
        vetoed.near_misses
    );
}

#[test]
fn near_counts_characters_and_onear_keeps_order() {
    let m = Matcher::new(&[
        with_rules("near", &["NEAR/3(城管, 打人)"]),
        with_rules("onear", &["ONEAR/3(打人, 城管)"]),
    ])
    .unwrap();
    // Gap between 城管 and 打人: "当街" = 2 characters.
    let out = m.match_subject(&subject("城管当街打人", ""));
    let ids: Vec<&str> = out.matched.iter().map(|d| d.department).collect();
    assert_eq!(ids, vec!["near"], "ONEAR wants 打人 first");
    // Four characters apart: a near miss, explained.
    let far = m.match_explained(&subject("城管在大街上打人", ""));
    assert!(far.matched.is_empty());
    assert!(
        far.near_misses
            .iter()
            .any(|(d, _, why)| d == "near" && why.contains("4 characters apart")),
        "{:?}",
        far.near_misses
    );
    // Not across fields.
    assert!(m.match_subject(&subject("城管", "打人")).matched.is_empty());
}

#[test]
fn field_scopes_and_source() {
    let mut d = with_rules(
        "scoped",
        &[
            "title:城管 & text:打人",
            "author:记者 & 暴雨",
            "source:weibo-a & 投诉",
        ],
    );
    d.keywords = vec![];
    let m = Matcher::new(&[d]).unwrap();
    let hit = |title, text, author, source| {
        m.match_subject(&Subject {
            title,
            text,
            author,
            source,
        })
        .matched
        .first()
        .map(|d| d.rules.iter().map(|r| r.id.to_string()).collect::<Vec<_>>())
        .unwrap_or_default()
    };
    assert_eq!(hit("城管来了", "有人打人", None, "x"), vec!["scoped#1"]);
    assert!(hit("打人", "城管", None, "x").is_empty(), "fields swapped");
    assert_eq!(hit("暴雨", "", Some("本报记者"), "x"), vec!["scoped#2"]);
    assert!(
        hit("暴雨", "记者", None, "x").is_empty(),
        "author: looks at the author only"
    );
    assert_eq!(hit("投诉", "", None, "weibo-a"), vec!["scoped#3"]);
    assert!(hit("投诉", "", None, "weibo-b").is_empty());
}

#[test]
fn lists_expand_and_the_rule_set_hash_tracks_changes() {
    let lists: BTreeMap<String, Vec<String>> = [(
        "places".to_string(),
        vec!["朝阳区".to_string(), "海淀区".to_string()],
    )]
    .into();
    let d = with_rules("district", &["@places & 占道经营"]);
    let m = Matcher::with_lists(std::slice::from_ref(&d), &lists).unwrap();
    assert_eq!(
        m.match_subject(&subject("海淀区出现占道经营", ""))
            .matched
            .len(),
        1
    );
    assert!(m
        .match_subject(&subject("西城区出现占道经营", ""))
        .matched
        .is_empty());
    let other: BTreeMap<String, Vec<String>> =
        [("places".to_string(), vec!["朝阳区".to_string()])].into();
    let m2 = Matcher::with_lists(std::slice::from_ref(&d), &other).unwrap();
    assert_ne!(m.rule_set(), m2.rule_set());
    assert!(Matcher::with_lists(&[with_rules("x", &["@nope"])], &lists).is_err());
}

#[test]
fn rules_that_match_on_nothing_are_still_evaluated() {
    let m = Matcher::new(&[with_rules("odd", &["!演习"])]).unwrap();
    assert_eq!(m.match_subject(&subject("无关内容", "")).matched.len(), 1);
    assert!(m.match_subject(&subject("演习", "")).matched.is_empty());
}

// ---- The evaluator against a naive reference, on random expressions and texts ----

const ALPHABET: &[&str] = &["城管", "打人", "执法", "冲突", "ab", "b", "演习"];

/// A deliberately simple second implementation: substring search on the normalised text,
/// positions counted in normalised characters (where NEAR distances are defined), scopes
/// carried down to each term.
fn naive(e: &Expr, title: &str, text: &str, scope: Option<Scope>) -> bool {
    fn spans(t: &str, title: &str, text: &str, scope: Option<Scope>) -> Vec<(u8, usize, usize)> {
        let mut out = Vec::new();
        let needle = crate::text::normalize_pattern(t);
        for (f, original) in [(0u8, title), (1u8, text)] {
            let ok = match scope {
                None => true,
                Some(Scope::Title) => f == 0,
                Some(Scope::Text) => f == 1,
                _ => false,
            };
            if !ok || needle.is_empty() {
                continue;
            }
            let hay = crate::text::normalize_for_match(original);
            let mut from = 0;
            while let Some(pos) = hay[from..].find(&needle) {
                let s = from + pos;
                let a = hay[..s].chars().count();
                out.push((f, a, a + needle.chars().count()));
                from = s + hay[s..].chars().next().map_or(1, |c| c.len_utf8());
            }
        }
        out
    }
    fn positives(e: &Expr, scope: Option<Scope>, out: &mut Vec<(String, Option<Scope>)>) {
        match e {
            Expr::Term(t) => out.push((t.clone(), scope)),
            Expr::Not(_) | Expr::List(_) => {}
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|x| positives(x, scope, out)),
            Expr::Near { a, b, .. } => {
                positives(a, scope, out);
                positives(b, scope, out);
            }
            Expr::Scoped(s, x) => positives(x, Some(*s), out),
        }
    }
    match e {
        Expr::Term(t) => !spans(t, title, text, scope).is_empty(),
        Expr::List(_) => false,
        Expr::Not(x) => !naive(x, title, text, scope),
        Expr::And(v) => v.iter().all(|x| naive(x, title, text, scope)),
        Expr::Or(v) => v.iter().any(|x| naive(x, title, text, scope)),
        Expr::Scoped(s, x) => naive(x, title, text, Some(*s)),
        Expr::Near {
            distance,
            ordered,
            a,
            b,
        } => {
            if !naive(a, title, text, scope) || !naive(b, title, text, scope) {
                return false;
            }
            let (mut ta, mut tb) = (Vec::new(), Vec::new());
            positives(a, scope, &mut ta);
            positives(b, scope, &mut tb);
            let sa: Vec<_> = ta
                .iter()
                .flat_map(|(t, sc)| spans(t, title, text, *sc))
                .collect();
            let sb: Vec<_> = tb
                .iter()
                .flat_map(|(t, sc)| spans(t, title, text, *sc))
                .collect();
            sa.iter().any(|&(fa, s1, e1)| {
                sb.iter().any(|&(fb, s2, e2)| {
                    fa == fb
                        && if s2 >= e1 {
                            s2 - e1 <= *distance as usize
                        } else if *ordered {
                            false
                        } else if s1 >= e2 {
                            s1 - e2 <= *distance as usize
                        } else {
                            true
                        }
                })
            })
        }
    }
}

fn arb_rule() -> impl Strategy<Value = Expr> {
    let leaf = prop::sample::select(ALPHABET).prop_map(|s| Expr::Term(s.to_string()));
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 2..3).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..3).prop_map(Expr::Or),
            (0u32..6, any::<bool>(), inner.clone(), inner.clone()).prop_map(|(d, o, a, b)| {
                Expr::Near {
                    distance: d,
                    ordered: o,
                    a: Box::new(a),
                    b: Box::new(b),
                }
            }),
            (prop_oneof![Just(Scope::Title), Just(Scope::Text)], inner)
                .prop_map(|(s, e)| Expr::Scoped(s, Box::new(e))),
        ]
    })
}

fn arb_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(
            &[
                "城管", "打", "人", "执法", "冲突", "a", "b", " ", "-", "演习", "的",
            ][..],
        ),
        0..12,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn evaluator_agrees_with_the_naive_reference(
        rule in arb_rule(),
        title in arb_text(),
        text in arb_text(),
    ) {
        let mut d = dept("d", &[], &[]);
        d.rules = vec![Rule { id: "r".into(), expr: rule.clone(), source: rule.to_string(), weight: 1.0 }];
        let m = Matcher::new(&[d]).unwrap();
        let got = !m.match_subject(&Subject { title: &title, text: &text, author: None, source: "s" })
            .matched
            .is_empty();
        let want = naive(&rule, &title, &text, None);
        prop_assert_eq!(got, want, "rule {} on title {:?} text {:?}", rule, title, text);
    }
}

#[test]
fn dodges_do_not_stretch_near_distances_and_source_rules_need_no_text_match() {
    let m = Matcher::new(&[
        with_rules("near", &["NEAR/1(城管, 打人)"]),
        with_rules("src", &["source:gov-a & !广告"]),
        with_rules("phrase", &["\"暴雨 \""]),
    ])
    .unwrap();
    // Ten zero-width characters and a dodge separator between the words: still adjacent.
    let zw = format!("城管{}-打人", "\u{200b}".repeat(10));
    let ids = |s: Subject<'_>| -> Vec<String> {
        m.match_subject(&s)
            .matched
            .into_iter()
            .map(|d| d.department.to_string())
            .collect()
    };
    assert_eq!(ids(subject(&zw, "")), vec!["near"]);
    // A source-scoped rule matches on the source alone, whatever the text says.
    let from_a = Subject {
        title: "今日通报",
        text: "",
        author: None,
        source: "gov-a",
    };
    assert_eq!(ids(from_a), vec!["src"]);
    let ad = Subject {
        title: "广告",
        ..from_a
    };
    assert!(ids(ad).is_empty());
    // A quoted phrase with a stray space matches like the bare word.
    assert_eq!(ids(subject("暴雨来袭", "")), vec!["phrase"]);
}

#[test]
fn a_matched_rule_reports_only_the_terms_that_satisfied_it() {
    let m = Matcher::new(&[with_rules("d", &["(城管 & 演习) | 打人"])]).unwrap();
    let out = m.match_subject(&subject("城管打人", ""));
    let words: Vec<&str> = out.matched[0].rules[0]
        .terms
        .iter()
        .map(|t| t.keyword)
        .collect();
    assert_eq!(
        words,
        vec!["打人"],
        "城管 is present but its branch did not hold"
    );
}

/// The streaming scan reports what a search of the written-out matching form reports: every
/// occurrence of every keyword, with its offsets mapped back through a dense map of origins,
/// and a snippet cut where counting characters would cut it. Random mixed text with every
/// kind of normalisation (zero-width, dodges, full-width, expansions, traditional).
#[test]
fn streaming_scan_agrees_with_searching_the_written_out_form() {
    let pieces = [
        "城", "管", "執", "法", "A", "b", "Ｃ", "ﬁ", "㈱", "\u{200b}", "-", " ", "/", "，", "x",
        "é", "Ⅻ", "ß", "。", "打", "人", "\u{feff}", "·", "9", "株",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..300 {
        let len = rng.usize(1..80);
        let text: String = (0..len)
            .map(|_| pieces[rng.usize(..pieces.len())])
            .collect();
        // Dense reference: every character of the matching form with its origin.
        let mut dense: Vec<(u32, char)> = Vec::new();
        crate::text::fold(&text, |i, c| dense.push((i, c)));
        let form: Vec<char> = dense.iter().map(|d| d.1).collect();
        // Keywords: pieces of the matching form itself (so they occur), plus fixed ones.
        let mut keywords: Vec<String> = vec!["城管".into(), "(株)".into(), "fi".into()];
        for _ in 0..4 {
            if form.is_empty() {
                break;
            }
            let a = rng.usize(..form.len());
            let b = (a + rng.usize(1..4)).min(form.len());
            let word: String = form[a..b].iter().collect();
            if !crate::text::normalize_pattern(&word).is_empty() && !keywords.contains(&word) {
                keywords.push(word);
            }
        }
        let refs: Vec<&str> = keywords.iter().map(String::as_str).collect();
        let m = Matcher::new(&[dept("d", &refs, &[])]).unwrap();
        let out = m.match_item("", &text);
        let mut got: Vec<(String, usize, usize)> = out
            .matched
            .iter()
            .flat_map(|d| d.hits.iter())
            .map(|h| (h.keyword.to_string(), h.start, h.end))
            .collect();
        got.sort();
        let mut want = Vec::new();
        for k in &keywords {
            let needle: Vec<char> = crate::text::normalize_pattern(k).chars().collect();
            for s in 0..form.len() {
                if form[s..].starts_with(&needle) {
                    let last = s + needle.len() - 1;
                    want.push((k.clone(), dense[s].0 as usize, dense[last].0 as usize + 1));
                }
            }
        }
        // One hit per term and place, though an expansion (Ⅻ → xii) holds "i" twice.
        want.sort();
        want.dedup();
        assert_eq!(got, want, "round {round}: {text:?} with {keywords:?}");
        if let (Some(d), Some(first)) =
            (out.matched.first(), want.iter().min_by_key(|w| (w.1, w.2)))
        {
            let h = &d.hits[0];
            assert_eq!((h.start, h.end), (first.1, first.2), "{text:?}");
            assert_eq!(
                d.snippet("", &text),
                crate::text::snippet(&text, h.start, h.end, 40),
                "{text:?}"
            );
        }
    }
}

/// Buffers are reused between items and between matchers on one thread: nothing found in
/// one item may count for the next, whichever matcher runs it.
#[test]
fn nothing_carries_over_between_items_or_matchers() {
    let big = Matcher::new(&[with_rules("r", &["城管 & 打人", "NEAR/2(暴雨, 内涝)"])]).unwrap();
    let small = Matcher::new(&[dept("k", &["打人"], &[])]).unwrap();
    assert_eq!(big.match_item("城管打人", "").matched.len(), 1);
    assert!(big.match_item("有人打人", "").matched.is_empty());
    assert_eq!(small.match_item("城管打人", "暴雨内涝").matched.len(), 1);
    assert!(big.match_item("城管", "").matched.is_empty());
    assert!(big.match_item("", "内涝").matched.is_empty());
    assert_eq!(
        big.match_item("", "暴雨后内涝").matched[0].rules[0].id,
        "r#2"
    );
    assert!(small.match_item("城管", "").matched.is_empty());
}

/// A department is vetoed only when it would have matched: an exclusion word alone is
/// nothing to report.
#[test]
fn an_exclusion_alone_is_not_a_veto() {
    let m = Matcher::new(&[dept("urban", &["城管"], &["演习"])]).unwrap();
    let out = m.match_explained(&subject("消防演习", ""));
    assert!(out.matched.is_empty() && out.vetoed.is_empty(), "{out:?}");
    let out = m.match_explained(&subject("城管演习", ""));
    assert_eq!(out.vetoed.len(), 1);
}

/// Rules that name only a source scan nothing, and still match.
#[test]
fn source_only_rules_match_without_any_scanned_term() {
    let m = Matcher::new(&[with_rules("gov", &["source:gov-a"])]).unwrap();
    let s = Subject {
        title: "通报",
        text: "",
        author: None,
        source: "gov-a",
    };
    assert_eq!(m.match_subject(&s).matched.len(), 1);
    let other = Subject {
        source: "gov-b",
        ..s
    };
    assert!(m.match_subject(&other).matched.is_empty());
}

/// One term found twice at one place (Ⅻ folds to "xii") is one hit.
#[test]
fn a_term_twice_inside_one_character_is_one_hit() {
    let m = Matcher::new(&[dept("d", &["i"], &[])]).unwrap();
    let out = m.match_item("Ⅻ", "");
    assert_eq!(out.matched[0].hits.len(), 1, "{out:?}");
}
