//! Owns matching: every department's keywords, exclusions and rule expressions compiled into
//! one Aho-Corasick automaton. An item is scanned once, the normaliser feeding the automaton
//! directly; only the rules whose terms occurred (plus the few that can match on no term at
//! all) are evaluated, so the cost of an item does not grow with the number of departments
//! beyond evaluating their expressions.

pub mod expr;
mod intern;

use crate::config::Department;
use crate::text::{snippet_at, Origin};
use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, Input, MatchKind};
use expr::{Expr, Scope};
pub(crate) use intern::intern;
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

/// One term found in one place. Names are interned when rules are built ([`intern`]): an
/// item can produce hundreds of hits, and copying or counting references on each name would
/// cost more than finding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// The keyword or rule term as the analyst wrote it.
    pub keyword: &'static str,
    pub field: Field,
    /// Character offsets (not bytes) in the item's title, text or author.
    pub start: usize,
    pub end: usize,
}

/// Hits of one department or rule, held in place when there are few (as there mostly are):
/// a department match then costs no allocation of its own.
pub type Hits = smallvec::SmallVec<[Hit; 2]>;

/// A rule expression that matched, with the terms that satisfied it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleMatch {
    pub id: &'static str,
    pub weight: f64,
    pub terms: Hits,
}

/// A department whose keywords or rules matched and whose exclusions did not.
#[derive(Debug, Clone, Serialize)]
pub struct DepartmentMatch {
    pub department: &'static str,
    /// Keyword hits and the terms of matching rules, in text order.
    pub hits: Hits,
    pub rules: Vec<RuleMatch>,
    /// Where the snippet is cut: around the first hit outside the author field. Byte
    /// offsets, for [`DepartmentMatch::snippet`]; not part of any output.
    #[serde(skip)]
    pub cut: Cut,
}

/// A byte range of the title or text that a snippet is cut around. The snippet itself is
/// made only when an alert needs it ([`DepartmentMatch::snippet`]): most matches of a
/// developing story join an alert already drafted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cut {
    pub field: Field,
    pub from: usize,
    pub to: usize,
}

impl Default for Cut {
    /// The start of the title: for matches with no hit in title or text.
    fn default() -> Self {
        Cut {
            field: Field::Title,
            from: 0,
            to: 0,
        }
    }
}

impl DepartmentMatch {
    /// The matched words in context: a few dozen characters either side of the first hit,
    /// from the title and text that were matched.
    pub fn snippet(&self, title: &str, text: &str) -> String {
        let field = if self.cut.field == Field::Text {
            text
        } else {
            title
        };
        snippet_at(field, self.cut.from, self.cut.to, SNIPPET_CONTEXT)
    }
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

/// Per pattern, the departments using it as a keyword or exclusion and the rules
/// ([`Matcher::rules`] indices) whose expressions mention it: two flat lists and one table of
/// where each pattern's entries start.
#[derive(Debug, Default)]
struct PatternUses {
    /// Entry p: where pattern p's entries start in `keywords` and in `rules`; entry p + 1
    /// ends them.
    starts: Vec<[u32; 2]>,
    keywords: Vec<(u32, Role)>,
    rules: Vec<u32>,
}

impl PatternUses {
    fn new(keywords: Vec<Vec<(u32, Role)>>, rules: Vec<Vec<u32>>) -> PatternUses {
        let mut out = PatternUses::default();
        for (k, r) in keywords.into_iter().zip(rules) {
            out.starts
                .push([out.keywords.len() as u32, out.rules.len() as u32]);
            out.keywords.extend(k);
            out.rules.extend(r);
        }
        out.starts
            .push([out.keywords.len() as u32, out.rules.len() as u32]);
        out
    }

    fn patterns(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    fn span(&self, p: u32, which: usize) -> std::ops::Range<usize> {
        let at = |q: usize| self.starts.get(q).map_or(0, |s| s[which] as usize);
        at(p as usize)..at(p as usize + 1).max(at(p as usize))
    }

    fn keywords(&self, p: u32) -> &[(u32, Role)] {
        self.keywords.get(self.span(p, 0)).unwrap_or(&[])
    }

    fn rules(&self, p: u32) -> &[u32] {
        self.rules.get(self.span(p, 1)).unwrap_or(&[])
    }
}

/// A rule expression with its terms replaced by automaton pattern ids.
#[derive(Debug, Clone)]
enum CExpr {
    /// Any of these patterns (one for a term, several for a list); the written terms (as
    /// [`Matcher::names`] ids) and their normal forms (for `source:`).
    Terms(Vec<(u32, u32, String)>),
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
    /// The department's index in [`Matcher::departments`].
    dept: u32,
    id: &'static str,
    weight: f64,
    expr: CExpr,
    /// Can match with no term present (e.g. `!演习`): evaluated for every item.
    matches_empty: bool,
}

#[derive(Debug)]
struct DeptRules {
    id: &'static str,
    /// [`Matcher::names`] ids of the keywords and exclusions as written.
    keywords: Vec<u32>,
    exclude: Vec<u32>,
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
    scanner: Option<Scanner>,
    /// What each automaton pattern is used by, in flat lists: the item's patterns are looked
    /// up once each, and a list per pattern would scatter them over the heap.
    uses: PatternUses,
    /// Rules that must be evaluated for every item.
    always: Vec<u32>,
    /// Rules to evaluate for items of a given source (their `source:` terms).
    source_uses: HashMap<String, Vec<u32>>,
    departments: Vec<DeptRules>,
    /// Every department's rules, one department after another: one allocation, looked up
    /// for every candidate rule of every item.
    rules: Vec<CRule>,
    /// Every keyword, exclusion and rule term as written, once each: what hits name. Matching
    /// refers to them by index, so its per-item lists hold plain numbers.
    names: Vec<&'static str>,
    rule_set: String,
}

/// One occurrence of a pattern: its field, its character range in the original (reported),
/// its byte range there (where snippets are cut) and its range in the normalised text (where
/// NEAR distances are measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Occ {
    pattern: u32,
    field: Field,
    start: u32,
    end: u32,
    nstart: u32,
    nend: u32,
    bstart: u32,
    bend: u32,
}

/// Buffers that matching needs for every item, kept per thread between items: allocating
/// them afresh cost as much as evaluating the rules.
#[derive(Default)]
struct Scratch {
    ring: Vec<Start>,
    occ: Occurrences,
    /// (department, exclusion?, word, its occurrences outside the author field as a run of
    /// `occ.grouped`).
    uses: Vec<(u32, bool, u32, u32, u32)>,
    /// Rules to evaluate ([`Matcher::rules`] indices), in order: gathered as bits of
    /// `rule_bits`, whose non-zero words are listed in `rule_words`.
    candidates: Vec<u32>,
    rule_bits: Vec<u64>,
    rule_words: Vec<u32>,
    /// Departments with a keyword or rule match.
    depts: Vec<u32>,
    /// Matched rules: (department, index into [`Matcher::rules`], and the run of
    /// `rule_refs` that holds the terms that satisfied it).
    rule_hits: Vec<(u32, u32, u32, u32)>,
    /// The terms of every matched rule, each rule's in text order.
    rule_refs: Vec<TermRef>,
    /// One department's hits, then its exclusions found.
    refs: Vec<TermRef>,
    /// Normalised spans of NEAR operands.
    spans: Spans,
}

impl Scratch {
    /// Lets go of what one exceptional item grew, so a thread does not keep it for good.
    fn trim(&mut self) {
        const KEEP: usize = 4096;
        if self.occ.all.capacity() > KEEP
            || self.uses.capacity() > KEEP
            || self.rule_refs.capacity() > KEEP
            || self.spans.capacity() > KEEP
        {
            self.occ.reset(0);
            self.occ.all = Vec::new();
            self.occ.grouped = Vec::new();
            self.occ.groups = Vec::new();
            self.uses = Vec::new();
            self.candidates = Vec::new();
            self.rule_hits = Vec::new();
            self.rule_refs = Vec::new();
            self.refs = Vec::new();
            self.spans = Vec::new();
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// A term as written ([`Matcher::names`] id), found at an occurrence (index into
/// [`Occurrences::all`]).
type TermRef = (u32, u32);

/// Where NEAR operands occur: (field, normalised start, end). One buffer per thread, used as
/// a stack: a NEAR inside a NEAR's operand is done before its parent pushes.
type Spans = Vec<(Field, u32, u32)>;

/// Occurrences of patterns in one item, indexed for rules that ask "is this term present,
/// in this field?" many times per item.
#[derive(Default)]
struct Occurrences {
    /// In scan order: by field (title, text, author), then by where they end.
    all: Vec<Occ>,
    /// Indices into `all`, each pattern's together, in scan order within a pattern.
    grouped: Vec<u32>,
    /// This item's patterns in order of first occurrence: (pattern, the run of `grouped`
    /// holding its occurrences).
    groups: Vec<(u32, u32, u32)>,
    /// Per pattern of the automaton, a bit per [`Field`] it occurs in this item: one load
    /// answers `has`. Only the entries of this item's patterns are ever non-zero; they are
    /// cleared before the next item is indexed.
    fields: Vec<u8>,
    /// Per pattern of the automaton, 1 + its index in `groups` (0: absent), kept like
    /// `fields`: the index is built by counting, in one pass, instead of by sorting.
    slot: Vec<u32>,
}

fn field_bit(f: Field) -> u8 {
    1 << f as u8
}

/// The fields a scope lets terms be found in, as [`field_bit`]s.
fn scope_bits(scope: Option<Scope>) -> u8 {
    match scope {
        None => field_bit(Field::Title) | field_bit(Field::Text),
        Some(Scope::Title) => field_bit(Field::Title),
        Some(Scope::Text) => field_bit(Field::Text),
        Some(Scope::Author) => field_bit(Field::Author),
        Some(Scope::Source) => 0,
    }
}

impl Occurrences {
    /// Forgets the previous item: its occurrences and their presence bits.
    fn reset(&mut self, patterns: usize) {
        for &(p, _, _) in &self.groups {
            self.fields[p as usize] = 0;
            self.slot[p as usize] = 0;
        }
        self.all.clear();
        self.grouped.clear();
        self.groups.clear();
        if self.fields.len() < patterns {
            self.fields.resize(patterns, 0);
            self.slot.resize(patterns, 0);
        }
    }

    /// Indexes `all` by pattern, once the scan is done: counts each pattern's occurrences,
    /// gives each pattern its run, then places the occurrences.
    fn index(&mut self) {
        for o in &self.all {
            let p = o.pattern as usize;
            if self.slot[p] == 0 {
                self.groups.push((o.pattern, 0, 0));
                self.slot[p] = self.groups.len() as u32;
            }
            self.groups[self.slot[p] as usize - 1].2 += 1;
            self.fields[p] |= field_bit(o.field);
        }
        let mut at = 0;
        for g in &mut self.groups {
            let n = g.2;
            (g.1, g.2) = (at, at);
            at += n;
        }
        self.grouped.resize(self.all.len(), 0);
        // Each group's end moves from its start to its end as it is filled.
        for (i, o) in self.all.iter().enumerate() {
            let g = &mut self.groups[self.slot[o.pattern as usize] as usize - 1];
            self.grouped[g.2 as usize] = i as u32;
            g.2 += 1;
        }
    }

    /// Indices into `all` of pattern `p`'s occurrences, in scan order.
    fn range(&self, p: u32) -> impl Iterator<Item = usize> + '_ {
        let run = match self.slot.get(p as usize) {
            Some(&s) if s > 0 => {
                let g = self.groups[s as usize - 1];
                &self.grouped[g.1 as usize..g.2 as usize]
            }
            _ => &[],
        };
        run.iter().map(|&k| k as usize)
    }

    fn of(&self, p: u32) -> impl Iterator<Item = Occ> + '_ {
        self.range(p).map(|k| self.all[k])
    }

    fn has(&self, p: u32, scope: Option<Scope>) -> bool {
        self.fields
            .get(p as usize)
            .is_some_and(|f| f & scope_bits(scope) != 0)
    }

    fn hit(&self, k: u32, keyword: &'static str) -> Hit {
        let o = &self.all[k as usize];
        Hit {
            keyword,
            field: o.field,
            start: o.start as usize,
            end: o.end as usize,
        }
    }

    /// Puts (occurrence, term) pairs in text order, once each; terms at one place in the
    /// order of their names.
    fn order(&self, refs: &mut Vec<TermRef>, names: &[&'static str]) {
        self.order_from(refs, 0, names);
    }

    /// [`Occurrences::order`] for the pairs from `from` on.
    fn order_from(&self, refs: &mut Vec<TermRef>, from: usize, names: &[&'static str]) {
        let Some(tail) = refs.get_mut(from..).filter(|t| t.len() > 1) else {
            return;
        };
        // By position, then term: the same term found twice at one place (an expansion
        // such as Ⅻ → xii holds "i" twice) is one hit.
        let at = |r: &TermRef| {
            let o = &self.all[r.0 as usize];
            (o.field, o.start, o.end)
        };
        let name = |r: &TermRef| names[r.1 as usize];
        tail.sort_unstable_by(|a, b| {
            at(a)
                .cmp(&at(b))
                .then_with(|| name(a).cmp(name(b)))
                .then_with(|| a.0.cmp(&b.0))
        });
        let mut kept = from + 1;
        for k in from + 1..refs.len() {
            let (prev, this) = (refs[kept - 1], refs[k]);
            if at(&prev) != at(&this) || prev.1 != this.1 {
                refs[kept] = this;
                kept += 1;
            }
        }
        refs.truncate(kept);
    }
}

struct Builder {
    patterns: Vec<String>,
    index: HashMap<String, usize>,
    uses: Vec<Vec<(u32, Role)>>,
    rule_uses: Vec<Vec<u32>>,
    /// Rules with `source:` terms, by the source id (normalised) they name.
    source_uses: HashMap<String, Vec<u32>>,
    names: Vec<&'static str>,
    name_ids: HashMap<&'static str, u32>,
}

/// Pattern id of `source:` terms, which are compared with the item's source, not scanned.
const NO_PATTERN: u32 = u32::MAX;

impl Builder {
    /// The id of a word as written, in [`Matcher::names`].
    fn name(&mut self, written: &str) -> u32 {
        let name = intern(written);
        *self.name_ids.entry(name).or_insert_with(|| {
            self.names.push(name);
            self.names.len() as u32 - 1
        })
    }

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
    fn term(&mut self, word: &str, at: u32, scope: Option<Scope>) -> Option<(u32, u32, String)> {
        let norm = crate::text::normalize_pattern(word);
        if norm.is_empty() {
            return None;
        }
        if scope == Some(Scope::Source) {
            self.source_uses.entry(norm.clone()).or_default().push(at);
            return Some((NO_PATTERN, self.name(word), norm));
        }
        let p = self.pattern(word)?;
        self.rule_uses[p as usize].push(at);
        Some((p, self.name(word), norm))
    }

    fn compile(
        &mut self,
        e: &Expr,
        lists: &BTreeMap<String, Vec<String>>,
        at: u32,
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
            Expr::Or(xs) => {
                let parts: Vec<CExpr> = xs
                    .iter()
                    .map(|x| self.compile(x, lists, at, names, scope))
                    .collect::<Result<_, _>>()?;
                // An OR of plain terms is one set of terms: evaluated without recursion, and
                // what it contributes to a match (the terms present) is the same.
                if parts.iter().all(|p| matches!(p, CExpr::Terms(_))) {
                    CExpr::Terms(
                        parts
                            .into_iter()
                            .flat_map(|p| match p {
                                CExpr::Terms(ts) => ts,
                                _ => Vec::new(),
                            })
                            .collect(),
                    )
                } else {
                    CExpr::Or(parts)
                }
            }
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
            names: Vec::new(),
            name_ids: HashMap::new(),
        };
        let mut depts = Vec::new();
        let mut all_rules: Vec<CRule> = Vec::new();
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
            for rule in &dept.rules {
                let at = all_rules.len() as u32;
                let expr = b.compile(&rule.expr, lists, at, (&dept.id, &rule.id), None)?;
                let matches_empty = eval(&expr, &Occurrences::default(), None, "", &mut Vec::new());
                if matches_empty {
                    always.push(at);
                }
                all_rules.push(CRule {
                    dept: d as u32,
                    id: intern(&rule.id),
                    weight: rule.weight,
                    expr,
                    matches_empty,
                });
            }
            depts.push(DeptRules {
                id: intern(&dept.id),
                keywords: dept.keywords.iter().map(|k| b.name(k)).collect(),
                exclude: dept.exclude.iter().map(|k| b.name(k)).collect(),
            });
        }
        for u in &mut b.rule_uses {
            u.sort_unstable();
            u.dedup();
        }
        let scanner = if b.patterns.is_empty() {
            None
        } else {
            Some(Scanner::new(&b.patterns)?)
        };
        Ok(Self {
            scanner,
            uses: PatternUses::new(b.uses, b.rule_uses),
            source_uses: b.source_uses,
            always,
            departments: depts,
            rules: all_rules,
            names: b.names,
            rule_set: rule_set_hash(departments, lists),
        })
    }

    /// The short hash of the rule set this matcher was built from.
    pub fn rule_set(&self) -> &str {
        &self.rule_set
    }

    /// Number of patterns in the automaton.
    pub fn pattern_count(&self) -> usize {
        self.uses.patterns()
    }

    /// The bare automaton's overlapping scan, counting matches: the physical limit that the
    /// benchmark compares full matching against.
    pub fn raw_scan(&self, normalized: &str) -> usize {
        self.scanner.as_ref().map_or(0, |s| {
            s.nfa
                .try_find_overlapping_iter(Input::new(normalized))
                .map_or(0, |it| it.count())
        })
    }

    /// Normalises and scans an item's fields, counting pattern occurrences, and stops there:
    /// the benchmark's split between scanning and evaluating.
    pub fn scan_only(&self, s: &Subject<'_>) -> usize {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                let Scratch { ring, occ, .. } = &mut *scratch;
                self.scan_into(ring, occ, s);
                occ.all.len()
            }
            Err(_) => {
                let mut scratch = Scratch::default();
                self.scan_into(&mut scratch.ring, &mut scratch.occ, s);
                scratch.occ.all.len()
            }
        })
    }

    /// Forgets the previous item and scans this one's fields into `occ.all`.
    fn scan_into(&self, ring: &mut Vec<Start>, occ: &mut Occurrences, s: &Subject<'_>) {
        occ.reset(self.uses.patterns());
        // No scanner when no term is scanned for: rules on `source:` alone still count.
        let Some(scanner) = &self.scanner else {
            return;
        };
        let fields = [
            (Field::Title, s.title),
            (Field::Text, s.text),
            (Field::Author, s.author.unwrap_or("")),
        ];
        ring.clear();
        ring.resize(scanner.ring_mask as usize + 1, Start::default());
        for (field, original) in fields {
            if !original.is_empty() {
                scanner.scan(field, original, ring, &mut occ.all);
            }
        }
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
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                let out = self.run_in(&mut scratch, s, explain_misses);
                scratch.trim();
                out
            }
            // Not reached (matching does not call itself), but never a panic.
            Err(_) => self.run_in(&mut Scratch::default(), s, explain_misses),
        })
    }

    fn run_in(&self, scratch: &mut Scratch, s: &Subject<'_>, explain_misses: bool) -> Outcome {
        let Scratch {
            ring,
            occ,
            uses,
            candidates,
            rule_bits,
            rule_words,
            depts,
            rule_hits,
            rule_refs,
            refs,
            spans,
        } = scratch;
        // Marks an interrupted item (a panic, caught by the blocking pool that then reuses the
        // thread) may have left: nothing of one item reaches the next.
        for w in rule_words.drain(..) {
            if let Some(bits) = rule_bits.get_mut(w as usize) {
                *bits = 0;
            }
        }
        self.scan_into(ring, occ, s);
        uses.clear();
        candidates.clear();
        // Most rule sets name no source: then the item's source id is not even normalised.
        let source_norm = if self.source_uses.is_empty() {
            String::new()
        } else {
            crate::text::normalize_pattern(s.source)
        };
        let by_source = if self.source_uses.is_empty() {
            None
        } else {
            self.source_uses.get(&source_norm)
        };
        if occ.all.is_empty() && self.always.is_empty() && by_source.is_none() {
            return Outcome::default();
        }
        occ.index();

        if rule_bits.len() < self.rules.len().div_ceil(64) {
            rule_bits.resize(self.rules.len().div_ceil(64), 0);
        }
        // Rules in a set of bits rather than a list to sort and deduplicate: a pattern
        // mentioned by several rules, or a rule by several patterns, marks it once.
        let mut mark = |rules: &[u32]| {
            for &r in rules {
                let w = (r / 64) as usize;
                if let Some(bits) = rule_bits.get_mut(w) {
                    if *bits == 0 {
                        rule_words.push(w as u32);
                    }
                    *bits |= 1 << (r % 64);
                }
            }
        };
        mark(&self.always);
        mark(by_source.map_or(&[], Vec::as_slice));
        // Keyword and exclusion uses per pattern, as plain numbers: (department, exclusion?,
        // word, its occurrences outside the author field as a run of `occ.grouped`).
        for &(p, from, to) in &occ.groups {
            // In scan order within a pattern: the author field, scanned last, comes last.
            let outside_author = if occ.fields[p as usize] & field_bit(Field::Author) == 0 {
                to - from
            } else {
                occ.grouped[from as usize..to as usize]
                    .iter()
                    .take_while(|&&k| occ.all[k as usize].field != Field::Author)
                    .count() as u32
            };
            if outside_author > 0 {
                for &(d, role) in self.uses.keywords(p) {
                    let (excl, w) = match role {
                        Role::Keyword(w) => (false, w),
                        Role::Exclude(w) => (true, w),
                    };
                    uses.push((d, excl, w, from, from + outside_author));
                }
            }
            mark(self.uses.rules(p));
        }
        // Taken in order of the words, and so of rules and departments; the bits are cleared
        // for the next item as they are read.
        rule_words.sort_unstable();
        for &w in rule_words.iter() {
            let Some(bits) = rule_bits.get_mut(w as usize) else {
                continue;
            };
            let mut x = std::mem::take(bits);
            while x != 0 {
                candidates.push(w * 64 + x.trailing_zeros());
                x &= x - 1;
            }
        }
        rule_words.clear();
        // Matched rules and near misses, by department. The occurrences of every matched
        // rule's terms, in text order, are runs of one list.
        rule_hits.clear();
        rule_refs.clear();
        let mut misses: Vec<(u32, &'static str, String)> = Vec::new();
        for &at in candidates.iter() {
            let rule = &self.rules[at as usize];
            let d = rule.dept;
            if eval(&rule.expr, occ, None, &source_norm, spans) {
                let from = rule_refs.len();
                collect_terms(&rule.expr, occ, None, &source_norm, rule_refs, spans);
                occ.order_from(rule_refs, from, &self.names);
                rule_hits.push((d, at, from as u32, rule_refs.len() as u32));
            } else if explain_misses && !rule.matches_empty {
                let mut why = Vec::new();
                explain(&rule.expr, occ, None, &source_norm, &mut why, &self.names);
                let note = if why.is_empty() {
                    "some terms present, not all the rule needs".to_string()
                } else {
                    why.join("; ")
                };
                misses.push((d, rule.id, note));
            }
        }
        // By department only: the order within one does not matter (its hits are put in
        // text order), and comparing whole entries cost more than the rest of the output.
        uses.sort_unstable_by_key(|u| u.0);
        depts.clear();
        depts.extend(
            uses.iter()
                .map(|u| u.0)
                .chain(rule_hits.iter().map(|r| r.0)),
        );
        depts.sort_unstable();
        depts.dedup();

        let grouped = &occ.grouped;
        let hit = |r: &TermRef| occ.hit(r.0, self.names[r.1 as usize]);
        let mut out = Outcome {
            matched: Vec::with_capacity(depts.len()),
            ..Outcome::default()
        };
        for (d, rule, note) in misses {
            let id = self.departments[d as usize].id.to_string();
            out.near_misses.push((id, rule.to_string(), note));
        }
        // rule_hits follow the candidates' order, which is by department, as `depts` is.
        let mut next_rule = 0;
        for &d in depts.iter() {
            let dept = &self.departments[d as usize];
            let from = uses.partition_point(|u| u.0 < d);
            let mine = &uses[from..from + uses[from..].iter().take_while(|u| u.0 == d).count()];
            let matched_rules = rule_hits[next_rule..]
                .iter()
                .take_while(|h| h.0 == d)
                .count();
            let my_rules = &rule_hits[next_rule..next_rule + matched_rules];
            next_rule += matched_rules;
            let words = |excl: bool| {
                mine.iter().filter(move |u| u.1 == excl).flat_map(move |u| {
                    let list = if excl { &dept.exclude } else { &dept.keywords };
                    let word = list[u.2 as usize];
                    grouped[u.3 as usize..u.4 as usize]
                        .iter()
                        .map(move |&k| (k, word))
                })
            };
            refs.clear();
            for h in my_rules {
                refs.extend_from_slice(&rule_refs[h.2 as usize..h.3 as usize]);
            }
            let by_rules = refs.len();
            refs.extend(words(false));
            if refs.is_empty() && my_rules.is_empty() {
                // Only an exclusion occurred: nothing to veto.
                continue;
            }
            if mine.iter().any(|u| u.1) {
                refs.clear();
                refs.extend(words(true));
                occ.order(refs, &self.names);
                out.vetoed
                    .push((dept.id.to_string(), refs.iter().map(hit).collect()));
                continue;
            }
            // One rule alone: its terms are in order already.
            if my_rules.len() > 1 || refs.len() > by_rules {
                occ.order(refs, &self.names);
            }
            let hits: Hits = refs.iter().map(hit).collect();
            let rules = my_rules
                .iter()
                .map(|&(_, at, from, to)| {
                    let rule = &self.rules[at as usize];
                    RuleMatch {
                        id: rule.id,
                        weight: rule.weight,
                        terms: rule_refs[from as usize..to as usize]
                            .iter()
                            .map(hit)
                            .collect(),
                    }
                })
                .collect();
            let cut = refs
                .iter()
                .map(|(k, _)| occ.all[*k as usize])
                .find(|o| o.field != Field::Author)
                .map(|o| Cut {
                    field: o.field,
                    from: o.bstart as usize,
                    to: o.bend as usize,
                })
                .unwrap_or_default();
            out.matched.push(DepartmentMatch {
                department: dept.id,
                hits,
                rules,
                cut,
            });
        }
        out
    }
}

/// The automaton, driven one byte at a time by the normaliser: the matching form of a text is
/// never written out, and each match's position in the original comes from a small ring of
/// the last normalised characters' origins instead of an offset map.
#[derive(Debug)]
struct Scanner {
    nfa: NFA,
    /// Length of each pattern in normalised characters.
    pattern_chars: Vec<u32>,
    /// Ring size − 1; the ring holds at least the longest pattern's characters.
    ring_mask: u32,
}

impl Scanner {
    fn new(patterns: &[String]) -> Result<Scanner, BuildError> {
        // Standard semantics + overlapping search: "城管" and "城管执法" must both be seen.
        // The contiguous NFA measured faster than a DFA on Chinese text (a DFA over
        // thousands of CJK terms does not fit in cache). No prefilter: the scan is driven
        // byte by byte and never skips ahead.
        let nfa = NFA::builder()
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(patterns)?;
        let pattern_chars: Vec<u32> = patterns.iter().map(|p| p.chars().count() as u32).collect();
        let longest = pattern_chars.iter().copied().max().unwrap_or(1).max(1);
        Ok(Scanner {
            nfa,
            pattern_chars,
            ring_mask: longest.next_power_of_two() - 1,
        })
    }

    /// Appends every pattern occurrence in `original` (one field) to `out`.
    fn scan(&self, field: Field, original: &str, ring: &mut [Start], out: &mut Vec<Occ>) {
        let Ok(sid) = self.nfa.start_state(Anchored::No) else {
            return;
        };
        let mut step = Step {
            scanner: self,
            field,
            sid,
            n: 0,
            ring,
            out,
        };
        crate::text::fold_into(original, &mut step);
    }
}

/// Where a normalised character's original starts: what a match needs of its first
/// character (the last one is at hand when the match is found).
#[derive(Debug, Clone, Copy, Default)]
struct Start {
    char: u32,
    byte: u32,
}

/// One field's scan in progress: the automaton state and the origins of the last normalised
/// characters.
struct Step<'a> {
    scanner: &'a Scanner,
    field: Field,
    sid: aho_corasick::automaton::StateID,
    /// Normalised characters so far.
    n: u32,
    ring: &'a mut [Start],
    out: &'a mut Vec<Occ>,
}

impl crate::text::Sink for Step<'_> {
    #[inline(always)]
    fn put(&mut self, origin: Origin, c: char) {
        let sc = self.scanner;
        self.ring[(self.n & sc.ring_mask) as usize] = Start {
            char: origin.char,
            byte: origin.byte,
        };
        let nfa = &sc.nfa;
        let u = c as u32;
        // The character's UTF-8 bytes, stepped without writing them out. Patterns are whole
        // characters, so a match can only end on the last byte.
        let mut sid = self.sid;
        if u < 0x80 {
            sid = nfa.next_state(Anchored::No, sid, u as u8);
        } else if u < 0x800 {
            sid = nfa.next_state(Anchored::No, sid, 0xc0 | (u >> 6) as u8);
            sid = nfa.next_state(Anchored::No, sid, 0x80 | (u & 0x3f) as u8);
        } else if u < 0x10000 {
            sid = nfa.next_state(Anchored::No, sid, 0xe0 | (u >> 12) as u8);
            sid = nfa.next_state(Anchored::No, sid, 0x80 | ((u >> 6) & 0x3f) as u8);
            sid = nfa.next_state(Anchored::No, sid, 0x80 | (u & 0x3f) as u8);
        } else {
            sid = nfa.next_state(Anchored::No, sid, 0xf0 | (u >> 18) as u8);
            sid = nfa.next_state(Anchored::No, sid, 0x80 | ((u >> 12) & 0x3f) as u8);
            sid = nfa.next_state(Anchored::No, sid, 0x80 | ((u >> 6) & 0x3f) as u8);
            sid = nfa.next_state(Anchored::No, sid, 0x80 | (u & 0x3f) as u8);
        }
        // Without a prefilter only match (and dead) states are special.
        if nfa.is_special(sid) && nfa.is_match(sid) {
            self.matched(sid, origin);
        }
        self.sid = sid;
        self.n += 1;
    }
}

impl Step<'_> {
    #[inline(never)]
    fn matched(&mut self, sid: aho_corasick::automaton::StateID, last: Origin) {
        let sc = self.scanner;
        let n = self.n;
        for k in 0..sc.nfa.match_len(sid) {
            let pattern = sc.nfa.match_pattern(sid, k).as_u32();
            let len = sc.pattern_chars[pattern as usize];
            let nstart = (n + 1).saturating_sub(len);
            let first = self.ring[(nstart & sc.ring_mask) as usize];
            self.out.push(Occ {
                pattern,
                field: self.field,
                start: first.char,
                end: last.char + 1,
                nstart,
                nend: n + 1,
                bstart: first.byte,
                bend: last.byte_end,
            });
        }
    }
}

fn allowed(field: Field, scope: Option<Scope>) -> bool {
    scope_bits(scope) & field_bit(field) != 0
}

/// Normalised positions of an expression's positive terms in the allowed fields.
fn collect_spans(e: &CExpr, occ: &Occurrences, scope: Option<Scope>, out: &mut Spans) {
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
        CExpr::And(xs) | CExpr::Or(xs) => xs.iter().for_each(|x| collect_spans(x, occ, scope, out)),
        CExpr::Near { a, b, .. } => {
            collect_spans(a, occ, scope, out);
            collect_spans(b, occ, scope, out);
        }
        CExpr::Scoped(s, x) => collect_spans(x, occ, Some(*s), out),
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

/// The gap between a NEAR's operands ([`min_gap`]), their spans pushed onto `buf` and taken
/// off again.
fn near_gap(
    (a, b): (&CExpr, &CExpr),
    ordered: bool,
    occ: &Occurrences,
    scope: Option<Scope>,
    buf: &mut Spans,
) -> Option<u32> {
    let base = buf.len();
    collect_spans(a, occ, scope, buf);
    let mid = buf.len();
    collect_spans(b, occ, scope, buf);
    let gap = min_gap(&buf[base..mid], &buf[mid..], ordered);
    buf.truncate(base);
    gap
}

fn eval(e: &CExpr, occ: &Occurrences, scope: Option<Scope>, source: &str, buf: &mut Spans) -> bool {
    match e {
        CExpr::Terms(ts) => {
            if scope == Some(Scope::Source) {
                return ts.iter().any(|(_, _, norm)| norm == source);
            }
            ts.iter().any(|(p, _, _)| occ.has(*p, scope))
        }
        CExpr::Not(x) => !eval(x, occ, scope, source, buf),
        CExpr::And(xs) => xs.iter().all(|x| eval(x, occ, scope, source, buf)),
        CExpr::Or(xs) => xs.iter().any(|x| eval(x, occ, scope, source, buf)),
        CExpr::Near {
            distance,
            ordered,
            a,
            b,
        } => {
            eval(a, occ, scope, source, buf)
                && eval(b, occ, scope, source, buf)
                && near_gap((a, b), *ordered, occ, scope, buf).is_some_and(|g| g <= *distance)
        }
        CExpr::Scoped(s, x) => eval(x, occ, Some(*s), source, buf),
    }
}

/// The terms that satisfied a matched rule (present, not under a NOT, in branches that hold).
fn collect_terms(
    e: &CExpr,
    occ: &Occurrences,
    scope: Option<Scope>,
    source: &str,
    out: &mut Vec<TermRef>,
    buf: &mut Spans,
) {
    match e {
        CExpr::Terms(ts) => {
            if scope == Some(Scope::Source) {
                return;
            }
            // Duplicates (a term written twice in one rule) are removed by `order`.
            for &(p, written, _) in ts {
                for k in occ.range(p) {
                    if allowed(occ.all[k].field, scope) {
                        out.push((k as u32, written));
                    }
                }
            }
        }
        // What a NOT excludes did not satisfy the rule.
        CExpr::Not(_) => {}
        CExpr::And(xs) => xs
            .iter()
            .for_each(|x| collect_terms(x, occ, scope, source, out, buf)),
        // Only the branches that hold satisfied the rule.
        CExpr::Or(xs) => {
            for x in xs {
                if eval(x, occ, scope, source, buf) {
                    collect_terms(x, occ, scope, source, out, buf);
                }
            }
        }
        CExpr::Near { a, b, .. } => {
            collect_terms(a, occ, scope, source, out, buf);
            collect_terms(b, occ, scope, source, out, buf);
        }
        CExpr::Scoped(s, x) => collect_terms(x, occ, Some(*s), source, out, buf),
    }
}

/// Why a rule whose terms were present did not match: NEARs that failed by distance,
/// NOTs that vetoed. Only try-rules asks, so this allocates freely.
fn explain(
    e: &CExpr,
    occ: &Occurrences,
    scope: Option<Scope>,
    source: &str,
    why: &mut Vec<String>,
    names: &[&'static str],
) {
    let buf = &mut Vec::new();
    match e {
        CExpr::Near {
            distance,
            ordered,
            a,
            b,
        } => {
            if eval(a, occ, scope, source, buf) && eval(b, occ, scope, source, buf) {
                let op = if *ordered { "ONEAR" } else { "NEAR" };
                match near_gap((a, b), *ordered, occ, scope, buf) {
                    Some(g) if g > *distance => why.push(format!(
                        "{op}/{distance}: both present but {g} characters apart"
                    )),
                    None => why.push(format!(
                        "{op}/{distance}: both present but not in that order in one field"
                    )),
                    _ => {}
                }
            }
        }
        CExpr::Not(x) => {
            if eval(x, occ, scope, source, buf) {
                let mut present = Vec::new();
                collect_terms(x, occ, scope, source, &mut present, buf);
                let mut words: Vec<&str> =
                    present.iter().map(|(_, t)| names[*t as usize]).collect();
                words.sort_unstable();
                words.dedup();
                why.push(format!("vetoed by NOT ({})", words.join(", ")));
            }
        }
        CExpr::And(xs) | CExpr::Or(xs) => xs
            .iter()
            .for_each(|x| explain(x, occ, scope, source, why, names)),
        CExpr::Scoped(s, x) => explain(x, occ, Some(*s), source, why, names),
        CExpr::Terms(_) => {}
    }
}

#[cfg(test)]
mod tests;
