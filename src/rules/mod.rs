//! Owns matching: every department's keywords, exclusions and rule expressions compiled into
//! one Aho-Corasick automaton. An item is scanned once; only the rules whose terms occurred
//! (plus the few that can match on no term at all) are evaluated, so the cost of an item
//! does not grow with the number of departments beyond evaluating their expressions.

pub mod expr;

use crate::config::Department;
use crate::text::{snippet, Normalized};
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use expr::{Expr, Scope};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Characters of context either side of the first match in a snippet.
const SNIPPET_CONTEXT: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Title,
    Text,
    Author,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Text => "text",
            Field::Author => "author",
        }
    }
}

/// One term found in one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// The keyword or rule term as the analyst wrote it.
    pub keyword: String,
    pub field: Field,
    /// Character offsets (not bytes) in the item's title, text or author.
    pub start: usize,
    pub end: usize,
}

/// A rule expression that matched, with the terms that satisfied it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleMatch {
    pub id: String,
    pub weight: f64,
    pub terms: Vec<Hit>,
}

/// A department whose keywords or rules matched and whose exclusions did not.
#[derive(Debug, Clone, Serialize)]
pub struct DepartmentMatch {
    pub department: String,
    /// Keyword hits and the terms of matching rules.
    pub hits: Vec<Hit>,
    pub rules: Vec<RuleMatch>,
    pub snippet: String,
}

/// What matching found for one item, including what an analyst needs to see why not.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub matched: Vec<DepartmentMatch>,
    /// Departments that matched but an exclusion vetoed, with the exclusions found.
    pub vetoed: Vec<(String, Vec<Hit>)>,
    /// (department, rule id, why it did not match) for rules whose terms were present.
    pub near_misses: Vec<(String, String, String)>,
}

/// What is matched: the item's fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub author: Option<&'a str>,
    pub source: &'a str,
}

/// A rule as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub expr: Expr,
    /// The expression as written, for people.
    pub source: String,
    pub weight: f64,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Keyword(u32),
    Exclude(u32),
}

/// A rule expression with its terms replaced by automaton pattern ids.
#[derive(Debug, Clone)]
enum CExpr {
    /// Any of these patterns (one for a term, several for a list); the written terms and
    /// their normal forms (for `source:`).
    Terms(Vec<(u32, String, String)>),
    Not(Box<CExpr>),
    And(Vec<CExpr>),
    Or(Vec<CExpr>),
    Near {
        distance: u32,
        ordered: bool,
        a: Box<CExpr>,
        b: Box<CExpr>,
    },
    Scoped(Scope, Box<CExpr>),
}

#[derive(Debug)]
struct CRule {
    id: String,
    weight: f64,
    expr: CExpr,
    /// Can match with no term present (e.g. `!演习`): evaluated for every item.
    matches_empty: bool,
}

#[derive(Debug)]
struct DeptRules {
    id: String,
    keywords: Vec<String>,
    exclude: Vec<String>,
    rules: Vec<CRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build the keyword automaton: {0}")]
    Automaton(#[from] aho_corasick::BuildError),
    #[error("department {department}: rule {rule}: unknown list @{list}")]
    UnknownList {
        department: String,
        rule: String,
        list: String,
    },
}

/// The compiled rules of all departments.
#[derive(Debug)]
pub struct Matcher {
    ac: Option<AhoCorasick>,
    /// For each automaton pattern: which departments use it as keyword/exclusion.
    uses: Vec<Vec<(u32, Role)>>,
    /// For each pattern: the (department, rule) pairs whose expressions mention it.
    rule_uses: Vec<Vec<(u32, u32)>>,
    /// Rules that must be evaluated for every item.
    always: Vec<(u32, u32)>,
    /// Rules to evaluate for items of a given source (their `source:` terms).
    source_uses: HashMap<String, Vec<(u32, u32)>>,
    departments: Vec<DeptRules>,
    rule_set: String,
}

/// One occurrence of a pattern: its field, its character range in the original (reported)
/// and in the normalised text (where NEAR distances are measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Occ {
    pattern: u32,
    field: Field,
    start: u32,
    end: u32,
    nstart: u32,
    nend: u32,
}

/// Occurrences of patterns in one item, sorted by pattern id (few per item; a sorted Vec
/// beats a map here).
#[derive(Default)]
struct Occurrences {
    all: Vec<Occ>,
}

impl Occurrences {
    fn of(&self, p: u32) -> impl Iterator<Item = Occ> + '_ {
        let from = self.all.partition_point(|o| o.pattern < p);
        self.all[from..]
            .iter()
            .take_while(move |o| o.pattern == p)
            .copied()
    }

    fn has(&self, p: u32, scope: Option<Scope>) -> bool {
        self.of(p).any(|o| allowed(o.field, scope))
    }
}

struct Builder {
    patterns: Vec<String>,
    index: HashMap<String, usize>,
    uses: Vec<Vec<(u32, Role)>>,
    rule_uses: Vec<Vec<(u32, u32)>>,
    /// Rules with `source:` terms, by the source id (normalised) they name.
    source_uses: HashMap<String, Vec<(u32, u32)>>,
}

/// Pattern id of `source:` terms, which are compared with the item's source, not scanned.
const NO_PATTERN: u32 = u32::MAX;

impl Builder {
    fn pattern(&mut self, word: &str) -> Option<u32> {
        let norm = crate::text::normalize_pattern(word);
        if norm.is_empty() {
            return None;
        }
        let p = *self.index.entry(norm.clone()).or_insert_with(|| {
            self.patterns.push(norm);
            self.uses.push(Vec::new());
            self.rule_uses.push(Vec::new());
            self.patterns.len() - 1
        });
        Some(p as u32)
    }

    /// One term of a rule: scanned for, or (under `source:`) compared with the source id.
    fn term(
        &mut self,
        word: &str,
        at: (u32, u32),
        scope: Option<Scope>,
    ) -> Option<(u32, String, String)> {
        let norm = crate::text::normalize_pattern(word);
        if norm.is_empty() {
            return None;
        }
        if scope == Some(Scope::Source) {
            self.source_uses.entry(norm.clone()).or_default().push(at);
            return Some((NO_PATTERN, word.to_string(), norm));
        }
        let p = self.pattern(word)?;
        self.rule_uses[p as usize].push(at);
        Some((p, word.to_string(), norm))
    }

    fn compile(
        &mut self,
        e: &Expr,
        lists: &BTreeMap<String, Vec<String>>,
        at: (u32, u32),
        names: (&str, &str),
        scope: Option<Scope>,
    ) -> Result<CExpr, BuildError> {
        Ok(match e {
            Expr::Term(t) => CExpr::Terms(self.term(t, at, scope).into_iter().collect()),
            Expr::List(name) => {
                let words = lists.get(name).ok_or_else(|| BuildError::UnknownList {
                    department: names.0.to_string(),
                    rule: names.1.to_string(),
                    list: name.clone(),
                })?;
                let mut v = Vec::new();
                for w in words {
                    v.extend(self.term(w, at, scope));
                }
                CExpr::Terms(v)
            }
            Expr::Not(x) => CExpr::Not(Box::new(self.compile(x, lists, at, names, scope)?)),
            Expr::And(xs) => CExpr::And(
                xs.iter()
                    .map(|x| self.compile(x, lists, at, names, scope))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(xs) => CExpr::Or(
                xs.iter()
                    .map(|x| self.compile(x, lists, at, names, scope))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Near {
                distance,
                ordered,
                a,
                b,
            } => CExpr::Near {
                distance: *distance,
                ordered: *ordered,
                a: Box::new(self.compile(a, lists, at, names, scope)?),
                b: Box::new(self.compile(b, lists, at, names, scope)?),
            },
            Expr::Scoped(s, x) => {
                CExpr::Scoped(*s, Box::new(self.compile(x, lists, at, names, Some(*s))?))
            }
        })
    }
}

/// A short hash naming the rule set (all departments' keywords, exclusions, rules and
/// lists), carried by every alert so a result can be traced to the rules that produced it.
pub fn rule_set_hash(departments: &[Department], lists: &BTreeMap<String, Vec<String>>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for d in departments {
        parts.push(format!("dept:{}", d.id));
        parts.extend(d.keywords.iter().map(|k| format!("k:{k}")));
        parts.extend(d.exclude.iter().map(|k| format!("x:{k}")));
        parts.extend(
            d.rules
                .iter()
                .map(|r| format!("r:{}:{}:{}", r.id, r.weight, r.expr)),
        );
    }
    for (name, words) in lists {
        parts.push(format!("list:{name}={}", words.join("\u{1}")));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    crate::item::short_hash(&refs)[..12].to_string()
}

impl Matcher {
    /// Keywords and exclusions only (no rules, no lists).
    pub fn new(departments: &[Department]) -> Result<Self, BuildError> {
        Self::with_lists(departments, &BTreeMap::new())
    }

    pub fn from_config(cfg: &crate::config::Config) -> Result<Self, BuildError> {
        Self::with_lists(&cfg.departments, &cfg.lists)
    }

    pub fn with_lists(
        departments: &[Department],
        lists: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, BuildError> {
        let mut b = Builder {
            patterns: Vec::new(),
            index: HashMap::new(),
            uses: Vec::new(),
            rule_uses: Vec::new(),
            source_uses: HashMap::new(),
        };
        let mut depts = Vec::new();
        let mut always = Vec::new();
        for (d, dept) in departments.iter().enumerate() {
            for (k, w) in dept.keywords.iter().enumerate() {
                if let Some(p) = b.pattern(w) {
                    b.uses[p as usize].push((d as u32, Role::Keyword(k as u32)));
                }
            }
            for (k, w) in dept.exclude.iter().enumerate() {
                if let Some(p) = b.pattern(w) {
                    b.uses[p as usize].push((d as u32, Role::Exclude(k as u32)));
                }
            }
            let mut rules = Vec::new();
            for (r, rule) in dept.rules.iter().enumerate() {
                let at = (d as u32, r as u32);
                let expr = b.compile(&rule.expr, lists, at, (&dept.id, &rule.id), None)?;
                let matches_empty = eval(&expr, &Occurrences::default(), None, "");
                if matches_empty {
                    always.push(at);
                }
                rules.push(CRule {
                    id: rule.id.clone(),
                    weight: rule.weight,
                    expr,
                    matches_empty,
                });
            }
            depts.push(DeptRules {
                id: dept.id.clone(),
                keywords: dept.keywords.clone(),
                exclude: dept.exclude.clone(),
                rules,
            });
        }
        for u in &mut b.rule_uses {
            u.sort_unstable();
            u.dedup();
        }
        let ac = if b.patterns.is_empty() {
            None
        } else {
            // Standard semantics + overlapping search: "城管" and "城管执法" must both be
            // seen. The contiguous NFA measured faster than a DFA on Chinese text.
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(&b.patterns)?,
            )
        };
        Ok(Self {
            ac,
            uses: b.uses,
            rule_uses: b.rule_uses,
            source_uses: b.source_uses,
            always,
            departments: depts,
            rule_set: rule_set_hash(departments, lists),
        })
    }

    /// The short hash of the rule set this matcher was built from.
    pub fn rule_set(&self) -> &str {
        &self.rule_set
    }

    /// Number of patterns in the automaton.
    pub fn pattern_count(&self) -> usize {
        self.uses.len()
    }

    /// The bare automaton's overlapping scan, counting matches: the physical limit that the
    /// benchmark compares full matching against.
    pub fn raw_scan(&self, normalized: &str) -> usize {
        self.ac
            .as_ref()
            .map(|ac| ac.find_overlapping_iter(normalized).count())
            .unwrap_or(0)
    }

    /// Matches title and text (no author, no source).
    pub fn match_item(&self, title: &str, text: &str) -> Outcome {
        self.match_subject(&Subject {
            title,
            text,
            author: None,
            source: "",
        })
    }

    /// Matches an item's fields against every department: one scan per field.
    pub fn match_subject(&self, s: &Subject<'_>) -> Outcome {
        self.run(s, false)
    }

    /// Like [`Matcher::match_subject`], and says why rules whose terms were present did not
    /// match (for try-rules; the daemon does not pay for it).
    pub fn match_explained(&self, s: &Subject<'_>) -> Outcome {
        self.run(s, true)
    }

    fn run(&self, s: &Subject<'_>, explain_misses: bool) -> Outcome {
        let Some(ac) = &self.ac else {
            return Outcome::default();
        };
        let mut occ = Occurrences::default();
        let fields = [
            (Field::Title, s.title),
            (Field::Text, s.text),
            (Field::Author, s.author.unwrap_or("")),
        ];
        for (field, original) in fields {
            if original.is_empty() {
                continue;
            }
            let norm = Normalized::new(original);
            for m in ac.find_overlapping_iter(&norm.text) {
                let (start, end, nstart, nend) = norm.locate(m.start(), m.end());
                occ.all.push(Occ {
                    pattern: m.pattern().as_usize() as u32,
                    field,
                    start: start as u32,
                    end: end as u32,
                    nstart: nstart as u32,
                    nend: nend as u32,
                });
            }
        }
        let source_norm = crate::text::normalize_pattern(s.source);
        let by_source = self.source_uses.get(&source_norm);
        if occ.all.is_empty() && self.always.is_empty() && by_source.is_none() {
            return Outcome::default();
        }
        occ.all.sort_unstable();

        // Keyword and exclusion uses, as plain numbers: (department, exclusion?, word, occurrence).
        let mut uses: Vec<(u32, bool, u32, u32)> = Vec::new();
        let mut candidates: Vec<(u32, u32)> = self.always.clone();
        candidates.extend(by_source.into_iter().flatten().copied());
        let mut last = u32::MAX;
        for (k, o) in occ.all.iter().enumerate() {
            let (p, field) = (o.pattern, o.field);
            if field != Field::Author {
                for &(d, role) in &self.uses[p as usize] {
                    let (excl, w) = match role {
                        Role::Keyword(w) => (false, w),
                        Role::Exclude(w) => (true, w),
                    };
                    uses.push((d, excl, w, k as u32));
                }
            }
            if p != last {
                candidates.extend_from_slice(&self.rule_uses[p as usize]);
                last = p;
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        // Matched rules and near misses, by department.
        let mut rule_hits: Vec<(u32, RuleMatch)> = Vec::new();
        let mut misses: Vec<(u32, String, String)> = Vec::new();
        for (d, r) in candidates {
            let rule = &self.departments[d as usize].rules[r as usize];
            if eval(&rule.expr, &occ, None, &source_norm) {
                let mut terms = Vec::new();
                collect_terms(&rule.expr, &occ, None, &source_norm, &mut terms);
                rule_hits.push((
                    d,
                    RuleMatch {
                        id: rule.id.clone(),
                        weight: rule.weight,
                        terms,
                    },
                ));
            } else if explain_misses && !rule.matches_empty {
                let mut why = Vec::new();
                explain(&rule.expr, &occ, None, &source_norm, &mut why);
                let note = if why.is_empty() {
                    "some terms present, not all the rule needs".to_string()
                } else {
                    why.join("; ")
                };
                misses.push((d, rule.id.clone(), note));
            }
        }
        uses.sort_unstable();
        let mut depts: Vec<u32> = uses
            .iter()
            .map(|u| u.0)
            .chain(rule_hits.iter().map(|r| r.0))
            .collect();
        depts.sort_unstable();
        depts.dedup();

        let mut out = Outcome::default();
        let mut snippets: std::collections::HashMap<(Field, usize, usize), String> =
            std::collections::HashMap::new();
        // Built on the first snippet of the body, shared by the rest.
        let mut text_index: Option<crate::text::CharIndex> = None;
        for (d, rule, note) in misses {
            out.near_misses
                .push((self.departments[d as usize].id.clone(), rule, note));
        }
        for d in depts {
            let dept = &self.departments[d as usize];
            let from = uses.partition_point(|u| u.0 < d);
            let mine = uses[from..].iter().take_while(|u| u.0 == d);
            let hit = |&(_, excl, w, k): &(u32, bool, u32, u32)| {
                let Occ {
                    field, start, end, ..
                } = occ.all[k as usize];
                Hit {
                    keyword: if excl {
                        dept.exclude[w as usize].clone()
                    } else {
                        dept.keywords[w as usize].clone()
                    },
                    field,
                    start: start as usize,
                    end: end as usize,
                }
            };
            let excluded: Vec<Hit> = mine.clone().filter(|u| u.1).map(hit).collect();
            let keyword_hits: Vec<Hit> = mine.filter(|u| !u.1).map(hit).collect();
            // rule_hits follow the candidates' order, which is by department.
            let first = rule_hits.partition_point(|(rd, _)| *rd < d);
            let rules: Vec<RuleMatch> = rule_hits[first..]
                .iter()
                .take_while(|(rd, _)| *rd == d)
                .map(|(_, r)| r.clone())
                .collect();
            if keyword_hits.is_empty() && rules.is_empty() {
                continue;
            }
            if !excluded.is_empty() {
                out.vetoed.push((dept.id.clone(), excluded));
                continue;
            }
            let mut hits = keyword_hits;
            for r in &rules {
                for t in &r.terms {
                    if !hits.contains(t) {
                        hits.push(t.clone());
                    }
                }
            }
            hits.sort_by_key(|h| (h.field, h.start, h.end));
            // Many departments share the hit their snippet is cut around.
            let key = hits
                .iter()
                .find(|h| h.field != Field::Author)
                .map(|h| (h.field, h.start, h.end))
                .unwrap_or((Field::Title, 0, 0));
            let snippet = snippets
                .entry(key)
                .or_insert_with(|| {
                    if key.0 == Field::Title {
                        snippet(s.title, key.1, key.2, SNIPPET_CONTEXT)
                    } else {
                        text_index
                            .get_or_insert_with(|| crate::text::CharIndex::new(s.text))
                            .snippet(s.text, key.1, key.2, SNIPPET_CONTEXT)
                    }
                })
                .clone();
            out.matched.push(DepartmentMatch {
                department: dept.id.clone(),
                hits,
                rules,
                snippet,
            });
        }
        out
    }
}

fn allowed(field: Field, scope: Option<Scope>) -> bool {
    match scope {
        None => field != Field::Author,
        Some(Scope::Title) => field == Field::Title,
        Some(Scope::Text) => field == Field::Text,
        Some(Scope::Author) => field == Field::Author,
        Some(Scope::Source) => false,
    }
}

/// Normalised positions of an expression's positive terms in the allowed fields.
fn spans(e: &CExpr, occ: &Occurrences, scope: Option<Scope>, out: &mut Vec<(Field, u32, u32)>) {
    match e {
        CExpr::Terms(ts) => {
            for (p, _, _) in ts {
                out.extend(
                    occ.of(*p)
                        .filter(|o| allowed(o.field, scope))
                        .map(|o| (o.field, o.nstart, o.nend)),
                );
            }
        }
        CExpr::Not(_) => {}
        CExpr::And(xs) | CExpr::Or(xs) => xs.iter().for_each(|x| spans(x, occ, scope, out)),
        CExpr::Near { a, b, .. } => {
            spans(a, occ, scope, out);
            spans(b, occ, scope, out);
        }
        CExpr::Scoped(s, x) => spans(x, occ, Some(*s), out),
    }
}

/// The smallest gap in normalised characters between a span of `a` and one of `b` in the same
/// field (overlap is 0); with `ordered`, `a` must come first.
fn min_gap(a: &[(Field, u32, u32)], b: &[(Field, u32, u32)], ordered: bool) -> Option<u32> {
    let mut best: Option<u32> = None;
    for &(fa, sa, ea) in a {
        for &(fb, sb, eb) in b {
            if fa != fb {
                continue;
            }
            let gap = if sb >= ea {
                Some(sb - ea)
            } else if ordered {
                None
            } else if sa >= eb {
                Some(sa - eb)
            } else {
                Some(0)
            };
            if let Some(g) = gap {
                best = Some(best.map_or(g, |b| b.min(g)));
            }
        }
    }
    best
}

fn eval(e: &CExpr, occ: &Occurrences, scope: Option<Scope>, source: &str) -> bool {
    match e {
        CExpr::Terms(ts) => {
            if scope == Some(Scope::Source) {
                return ts.iter().any(|(_, _, norm)| norm == source);
            }
            ts.iter().any(|(p, _, _)| occ.has(*p, scope))
        }
        CExpr::Not(x) => !eval(x, occ, scope, source),
        CExpr::And(xs) => xs.iter().all(|x| eval(x, occ, scope, source)),
        CExpr::Or(xs) => xs.iter().any(|x| eval(x, occ, scope, source)),
        CExpr::Near {
            distance,
            ordered,
            a,
            b,
        } => {
            if !eval(a, occ, scope, source) || !eval(b, occ, scope, source) {
                return false;
            }
            let (mut sa, mut sb) = (Vec::new(), Vec::new());
            spans(a, occ, scope, &mut sa);
            spans(b, occ, scope, &mut sb);
            min_gap(&sa, &sb, *ordered).is_some_and(|g| g <= *distance)
        }
        CExpr::Scoped(s, x) => eval(x, occ, Some(*s), source),
    }
}

/// The terms that satisfied a matched rule (present, not under a NOT, in branches that hold).
fn collect_terms(
    e: &CExpr,
    occ: &Occurrences,
    scope: Option<Scope>,
    source: &str,
    out: &mut Vec<Hit>,
) {
    match e {
        CExpr::Terms(ts) => {
            if scope == Some(Scope::Source) {
                return;
            }
            for (p, written, _) in ts {
                for o in occ.of(*p) {
                    if allowed(o.field, scope) {
                        let h = Hit {
                            keyword: written.clone(),
                            field: o.field,
                            start: o.start as usize,
                            end: o.end as usize,
                        };
                        if !out.contains(&h) {
                            out.push(h);
                        }
                    }
                }
            }
        }
        // What a NOT excludes did not satisfy the rule.
        CExpr::Not(_) => {}
        CExpr::And(xs) => xs
            .iter()
            .for_each(|x| collect_terms(x, occ, scope, source, out)),
        // Only the branches that hold satisfied the rule.
        CExpr::Or(xs) => xs
            .iter()
            .filter(|x| eval(x, occ, scope, source))
            .for_each(|x| collect_terms(x, occ, scope, source, out)),
        CExpr::Near { a, b, .. } => {
            collect_terms(a, occ, scope, source, out);
            collect_terms(b, occ, scope, source, out);
        }
        CExpr::Scoped(s, x) => collect_terms(x, occ, Some(*s), source, out),
    }
}

/// Why a rule whose terms were present did not match: NEARs that failed by distance,
/// NOTs that vetoed.
fn explain(
    e: &CExpr,
    occ: &Occurrences,
    scope: Option<Scope>,
    source: &str,
    why: &mut Vec<String>,
) {
    match e {
        CExpr::Near {
            distance,
            ordered,
            a,
            b,
        } => {
            if eval(a, occ, scope, source) && eval(b, occ, scope, source) {
                let (mut sa, mut sb) = (Vec::new(), Vec::new());
                spans(a, occ, scope, &mut sa);
                spans(b, occ, scope, &mut sb);
                match min_gap(&sa, &sb, *ordered) {
                    Some(g) if g > *distance => why.push(format!(
                        "{}/{distance}: both present but {g} characters apart",
                        if *ordered { "ONEAR" } else { "NEAR" }
                    )),
                    None => why.push(format!(
                        "{}/{distance}: both present but not in that order in one field",
                        if *ordered { "ONEAR" } else { "NEAR" }
                    )),
                    _ => {}
                }
            }
        }
        CExpr::Not(x) => {
            if eval(x, occ, scope, source) {
                let mut present = Vec::new();
                collect_terms(x, occ, scope, source, &mut present);
                let words: Vec<String> = present.iter().map(|h| h.keyword.clone()).collect();
                why.push(format!("vetoed by NOT ({})", words.join(", ")));
            }
        }
        CExpr::And(xs) | CExpr::Or(xs) => {
            xs.iter().for_each(|x| explain(x, occ, scope, source, why))
        }
        CExpr::Scoped(s, x) => explain(x, occ, Some(*s), source, why),
        CExpr::Terms(_) => {}
    }
}

#[cfg(test)]
mod tests;
