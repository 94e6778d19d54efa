//! Owns the rule language analysts write: terms and "quoted phrases", `&` `|` `!` (also AND,
//! OR, NOT; juxtaposition means AND), parentheses, `NEAR/n(a, b)` and ordered
//! `ONEAR/n(a, b)` with n in characters, field scopes `title:` `text:` `author:` `source:`,
//! and `@list` for a named keyword list. Parsing never panics; errors carry the column
//! (in characters) and what was expected. `Display` prints a form that parses back to the
//! same tree.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Title,
    Text,
    Author,
    Source,
}

impl Scope {
    fn parse(s: &str) -> Option<Scope> {
        match s.to_ascii_lowercase().as_str() {
            "title" => Some(Scope::Title),
            "text" => Some(Scope::Text),
            "author" => Some(Scope::Author),
            "source" => Some(Scope::Source),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Title => "title",
            Scope::Text => "text",
            Scope::Author => "author",
            Scope::Source => "source",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A word or a quoted phrase, as written.
    Term(String),
    /// `@name`: any term of the named list.
    List(String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Near {
        distance: u32,
        ordered: bool,
        a: Box<Expr>,
        b: Box<Expr>,
    },
    Scoped(Scope, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Phrase(String),
    And,
    Or,
    Not,
    LParen,
    RParen,
    Comma,
    Colon,
    At(String),
    Near { distance: u32, ordered: bool },
}

/// Characters that end a bare word.
fn special(c: char) -> bool {
    c.is_whitespace() || matches!(c, '&' | '|' | '!' | '(' | ')' | '"' | ',' | ':' | '@')
}

fn tokenize(src: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |column: usize, message: String| ParseError { column, message };
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let simple = match c {
            '&' => Some(Tok::And),
            '|' => Some(Tok::Or),
            '!' => Some(Tok::Not),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            ':' => Some(Tok::Colon),
            _ => None,
        };
        if let Some(t) = simple {
            out.push((col, t));
            i += 1;
            continue;
        }
        if c == '"' {
            let mut j = i + 1;
            let mut s = String::new();
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' && j + 1 < chars.len() {
                    j += 1;
                }
                s.push(chars[j]);
                j += 1;
            }
            if j >= chars.len() {
                return Err(err(
                    col,
                    "unterminated phrase: expected a closing \"".into(),
                ));
            }
            out.push((col, Tok::Phrase(s)));
            i = j + 1;
            continue;
        }
        if c == '@' {
            let mut j = i + 1;
            while j < chars.len() && !special(chars[j]) {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            if name.is_empty() {
                return Err(err(col, "expected a list name after @".into()));
            }
            out.push((col, Tok::At(name)));
            i = j;
            continue;
        }
        let mut j = i;
        while j < chars.len() && !special(chars[j]) {
            j += 1;
        }
        let word: String = chars[i..j].iter().collect();
        let upper = word.to_ascii_uppercase();
        let tok = match upper.as_str() {
            "AND" => Tok::And,
            "OR" => Tok::Or,
            "NOT" => Tok::Not,
            _ => {
                let near = upper
                    .strip_prefix("NEAR/")
                    .map(|n| (n, false))
                    .or_else(|| upper.strip_prefix("ONEAR/").map(|n| (n, true)));
                match near {
                    Some((n, ordered)) => match n.parse::<u32>() {
                        Ok(distance) if distance <= 10_000 => Tok::Near { distance, ordered },
                        _ => {
                            return Err(err(
                                col,
                                format!(
                                "{word}: expected a distance in characters (0–10000) after the /"
                            ),
                            ))
                        }
                    },
                    None => Tok::Word(word),
                }
            }
        };
        out.push((col, tok));
        i = j;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end_col: usize,
    depth: usize,
}

/// Deeper nesting than any analyst writes: a guard against stack exhaustion.
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn col(&self) -> usize {
        self.toks
            .get(self.pos)
            .map(|(c, _)| *c)
            .unwrap_or(self.end_col)
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            column: self.col(),
            message: message.into(),
        })
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            self.fail(format!("expected {what}"))
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn starts_operand(t: Option<&Tok>) -> bool {
        matches!(
            t,
            Some(
                Tok::Word(_)
                    | Tok::Phrase(_)
                    | Tok::Not
                    | Tok::LParen
                    | Tok::At(_)
                    | Tok::Near { .. }
            )
        )
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.unary()?];
        loop {
            if self.peek() == Some(&Tok::And) {
                self.pos += 1;
                parts.push(self.unary()?);
            } else if Self::starts_operand(self.peek()) {
                // "城管 打人" reads as both.
                parts.push(self.unary()?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        let r = if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            self.unary().map(|e| Expr::Not(Box::new(e)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        r
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let Some(tok) = self.peek().cloned() else {
            return self.fail("expected a term, a \"phrase\", @list, NEAR/n(…) or (");
        };
        match tok {
            Tok::LParen => {
                self.pos += 1;
                let e = self.or()?;
                self.expect(Tok::RParen, ")")?;
                Ok(e)
            }
            Tok::Phrase(p) => {
                self.pos += 1;
                if p.trim().is_empty() {
                    return Err(ParseError {
                        column: self.toks[self.pos - 1].0,
                        message: "an empty phrase".into(),
                    });
                }
                Ok(Expr::Term(p))
            }
            Tok::At(name) => {
                self.pos += 1;
                Ok(Expr::List(name))
            }
            Tok::Near { distance, ordered } => {
                self.pos += 1;
                self.expect(Tok::LParen, "( after NEAR/n")?;
                let a = self.or()?;
                self.expect(Tok::Comma, ", between the two NEAR operands")?;
                let b = self.or()?;
                self.expect(Tok::RParen, ") closing NEAR")?;
                Ok(Expr::Near {
                    distance,
                    ordered,
                    a: Box::new(a),
                    b: Box::new(b),
                })
            }
            Tok::Word(w) => {
                self.pos += 1;
                if self.peek() == Some(&Tok::Colon) {
                    let Some(scope) = Scope::parse(&w) else {
                        return Err(ParseError {
                            column: self.toks[self.pos - 1].0,
                            message: format!(
                                "{w}: is not a field (expected title:, text:, author: or source:)"
                            ),
                        });
                    };
                    self.pos += 1;
                    let inner = self.unary()?;
                    return Ok(Expr::Scoped(scope, Box::new(inner)));
                }
                Ok(Expr::Term(w))
            }
            Tok::RParen => self.fail("unexpected ): nothing to close"),
            Tok::Comma => self.fail("unexpected , outside NEAR(…)"),
            Tok::Colon => self.fail("unexpected : (write field:term, e.g. title:城管)"),
            Tok::And | Tok::Or => self.fail("expected a term before the operator"),
            Tok::Not => self.fail("expected a term after NOT"),
        }
    }
}

/// Parses one rule expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = tokenize(src)?;
    let end_col = src.chars().count() + 1;
    if toks.is_empty() {
        return Err(ParseError {
            column: 1,
            message: "the rule is empty".into(),
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end_col,
        depth: 0,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return p.fail("expected an operator (&, |) or the end of the rule");
    }
    Ok(e)
}

fn quote(s: &str) -> String {
    let bare = !s.is_empty()
        && !s.chars().any(special)
        && !matches!(s.to_ascii_uppercase().as_str(), "AND" | "OR" | "NOT")
        && !s.to_ascii_uppercase().starts_with("NEAR/")
        && !s.to_ascii_uppercase().starts_with("ONEAR/");
    if bare {
        s.to_string()
    } else {
        let escaped: String = s
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                _ => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Term(t) => f.write_str(&quote(t)),
            Expr::List(l) => write!(f, "@{l}"),
            Expr::Not(e) => write!(f, "!({e})"),
            Expr::And(v) | Expr::Or(v) => {
                let op = if matches!(self, Expr::And(_)) {
                    " & "
                } else {
                    " | "
                };
                f.write_str("(")?;
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str(")")
            }
            Expr::Near {
                distance,
                ordered,
                a,
                b,
            } => write!(
                f,
                "{}/{distance}({a}, {b})",
                if *ordered { "ONEAR" } else { "NEAR" }
            ),
            Expr::Scoped(s, e) => write!(f, "{}:({e})", s.name()),
        }
    }
}

impl Expr {
    /// Every term and list the expression mentions (for the automaton).
    pub fn atoms<'a>(&'a self, out: &mut Vec<&'a Expr>) {
        match self {
            Expr::Term(_) | Expr::List(_) => out.push(self),
            Expr::Not(e) | Expr::Scoped(_, e) => e.atoms(out),
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.atoms(out)),
            Expr::Near { a, b, .. } => {
                a.atoms(out);
                b.atoms(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_language() {
        let e = parse("(城管 | 执法) & (打人 | 冲突) & !演习").unwrap();
        assert!(matches!(e, Expr::And(ref v) if v.len() == 3));
        let e = parse("title:城管 AND NEAR/5(暴力, 执法) OR @places").unwrap();
        assert!(matches!(e, Expr::Or(_)));
        let e = parse("ONEAR/10(\"占道 经营\", 罚款)").unwrap();
        assert!(matches!(
            e,
            Expr::Near {
                distance: 10,
                ordered: true,
                ..
            }
        ));
        assert_eq!(parse("城管 打人").unwrap(), parse("城管 & 打人").unwrap());
    }

    #[test]
    fn errors_name_the_column_and_what_was_expected() {
        let e = parse("(城管 | 执法").unwrap_err();
        assert_eq!(e.column, 9);
        assert!(e.message.contains("expected )"), "{e}");
        let e = parse("城管 & | 打人").unwrap_err();
        assert_eq!(e.column, 6);
        let e = parse("NEAR/x(a, b)").unwrap_err();
        assert!(e.message.contains("distance"));
        let e = parse("titel:城管").unwrap_err();
        assert!(e.message.contains("not a field"), "{e}");
        assert!(parse("\"open").is_err());
        assert!(parse("").is_err());
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            "[a-z城管打人执法]{1,4}".prop_map(Expr::Term),
            "[a-z城管 ]{1,5}"
                .prop_filter("non-blank", |s| !s.trim().is_empty())
                .prop_map(Expr::Term),
            "[a-z]{1,4}".prop_map(Expr::List),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
                (0u32..20, any::<bool>(), inner.clone(), inner.clone()).prop_map(|(d, o, a, b)| {
                    Expr::Near {
                        distance: d,
                        ordered: o,
                        a: Box::new(a),
                        b: Box::new(b),
                    }
                }),
                (
                    prop_oneof![
                        Just(Scope::Title),
                        Just(Scope::Text),
                        Just(Scope::Author),
                        Just(Scope::Source)
                    ],
                    inner
                )
                    .prop_map(|(s, e)| Expr::Scoped(s, Box::new(e))),
            ]
        })
    }

    /// The parser's view of a tree: nested And/Or of one kind flatten when printed and read.
    fn flat(e: Expr) -> Expr {
        match e {
            Expr::And(v) => Expr::And(
                v.into_iter()
                    .map(flat)
                    .flat_map(|x| match x {
                        Expr::And(w) => w,
                        other => vec![other],
                    })
                    .collect(),
            ),
            Expr::Or(v) => Expr::Or(
                v.into_iter()
                    .map(flat)
                    .flat_map(|x| match x {
                        Expr::Or(w) => w,
                        other => vec![other],
                    })
                    .collect(),
            ),
            Expr::Not(e) => Expr::Not(Box::new(flat(*e))),
            Expr::Scoped(s, e) => Expr::Scoped(s, Box::new(flat(*e))),
            Expr::Near {
                distance,
                ordered,
                a,
                b,
            } => Expr::Near {
                distance,
                ordered,
                a: Box::new(flat(*a)),
                b: Box::new(flat(*b)),
            },
            t => t,
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_operator_soup(s in "[()&|!,:@\" a城NEAR/0-9]{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn printing_then_parsing_gives_the_same_tree(e in arb_expr()) {
            let printed = e.to_string();
            let back = parse(&printed).map_err(|err| TestCaseError::fail(format!("{printed}: {err}")))?;
            prop_assert_eq!(flat(back), flat(e), "{}", printed);
        }
    }
}
