//! Owns keyword matching: every department's keywords and exclusions compiled into one
//! Aho-Corasick automaton, so an item is scanned once whatever the number of departments.

use crate::config::Department;
use crate::text::{snippet, Normalized};
use aho_corasick::{AhoCorasick, MatchKind};
use serde::Serialize;
use std::collections::HashMap;

/// Characters of context either side of the first match in a snippet.
const SNIPPET_CONTEXT: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Title,
    Text,
}

/// One keyword found in one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// The keyword as the analyst wrote it.
    pub keyword: String,
    pub field: Field,
    /// Character offsets (not bytes) in the item's title or text.
    pub start: usize,
    pub end: usize,
}

/// A department whose keywords matched and whose exclusions did not.
#[derive(Debug, Clone, Serialize)]
pub struct DepartmentMatch {
    pub department: String,
    pub hits: Vec<Hit>,
    pub snippet: String,
}

/// What matching found for one item, including departments an exclusion vetoed (for try-source).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub matched: Vec<DepartmentMatch>,
    pub vetoed: Vec<(String, Vec<Hit>)>,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Keyword(u32),
    Exclude(u32),
}

#[derive(Debug)]
struct DeptRules {
    id: String,
    keywords: Vec<String>,
    exclude: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the keyword automaton: {0}")]
pub struct BuildError(#[from] aho_corasick::BuildError);

/// The compiled rules of all departments.
#[derive(Debug)]
pub struct Matcher {
    ac: Option<AhoCorasick>,
    /// For each automaton pattern: which departments use it, and how.
    uses: Vec<Vec<(u32, Role)>>,
    departments: Vec<DeptRules>,
}

impl Matcher {
    pub fn new(departments: &[Department]) -> Result<Self, BuildError> {
        let mut patterns: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut uses: Vec<Vec<(u32, Role)>> = Vec::new();
        let mut depts = Vec::new();
        for (d, dept) in departments.iter().enumerate() {
            let mut add = |word: &str, role: Role| {
                let norm = crate::text::normalize_for_match(word);
                if norm.is_empty() {
                    return;
                }
                let p = *index.entry(norm.clone()).or_insert_with(|| {
                    patterns.push(norm);
                    uses.push(Vec::new());
                    patterns.len() - 1
                });
                uses[p].push((d as u32, role));
            };
            for (k, w) in dept.keywords.iter().enumerate() {
                add(w, Role::Keyword(k as u32));
            }
            for (k, w) in dept.exclude.iter().enumerate() {
                add(w, Role::Exclude(k as u32));
            }
            depts.push(DeptRules {
                id: dept.id.clone(),
                keywords: dept.keywords.clone(),
                exclude: dept.exclude.clone(),
            });
        }
        let ac = if patterns.is_empty() {
            None
        } else {
            // Standard semantics + overlapping search: "城管" and "城管执法" must both be seen.
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)?,
            )
        };
        Ok(Self {
            ac,
            uses,
            departments: depts,
        })
    }

    pub fn department_count(&self) -> usize {
        self.departments.len()
    }

    /// Matches an item's title and text against every department in one pass per field.
    pub fn match_item(&self, title: &str, text: &str) -> Outcome {
        let Some(ac) = &self.ac else {
            return Outcome::default();
        };
        // Raw hits as plain numbers; strings are built only for departments that match.
        // (department, is_exclusion, word index, field, start, end)
        let mut raw: Vec<(u32, bool, u32, Field, u32, u32)> = Vec::new();
        for (field, original) in [(Field::Title, title), (Field::Text, text)] {
            if original.is_empty() {
                continue;
            }
            let norm = Normalized::new(original);
            for m in ac.find_overlapping_iter(&norm.text) {
                let (start, end) = norm.original_range(m.start(), m.end());
                for &(d, role) in &self.uses[m.pattern().as_usize()] {
                    let (excl, k) = match role {
                        Role::Keyword(k) => (false, k),
                        Role::Exclude(k) => (true, k),
                    };
                    raw.push((d, excl, k, field, start as u32, end as u32));
                }
            }
        }
        if raw.is_empty() {
            return Outcome::default();
        }
        // Stable sort keeps each department's hits in text order (title first).
        raw.sort_by_key(|h| h.0);
        let mut out = Outcome::default();
        for group in raw.chunk_by(|a, b| a.0 == b.0) {
            let dept = &self.departments[group[0].0 as usize];
            let hit = |&(_, excl, k, field, start, end): &(u32, bool, u32, Field, u32, u32)| Hit {
                keyword: if excl {
                    dept.exclude[k as usize].clone()
                } else {
                    dept.keywords[k as usize].clone()
                },
                field,
                start: start as usize,
                end: end as usize,
            };
            if !group.iter().any(|h| !h.1) {
                continue;
            }
            if group.iter().any(|h| h.1) {
                out.vetoed.push((
                    dept.id.clone(),
                    group.iter().filter(|h| h.1).map(hit).collect(),
                ));
                continue;
            }
            let hits: Vec<Hit> = group.iter().map(hit).collect();
            let first = &hits[0];
            let source_text = match first.field {
                Field::Title => title,
                Field::Text => text,
            };
            let snippet = snippet(source_text, first.start, first.end, SNIPPET_CONTEXT);
            out.matched.push(DepartmentMatch {
                department: dept.id.clone(),
                hits,
                snippet,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn dept(id: &str, keywords: &[&str], exclude: &[&str]) -> Department {
        Department {
            id: id.into(),
            name: id.into(),
            keywords: keywords.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            webhook: Url::parse("http://127.0.0.1:1/").unwrap(),
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
        let m =
            Matcher::new(&[dept("a", &["暴雨"], &[]), dept("b", &["暴雨", "内涝"], &[])]).unwrap();
        let out = m.match_item("", "暴雨导致内涝");
        assert_eq!(out.matched.len(), 2);
        assert_eq!(out.matched[1].hits.len(), 2);
        assert!(out.matched[0].snippet.contains("暴雨"));
    }
}
