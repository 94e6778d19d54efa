//! Finds where a key path sits in the TOML text, because the `config` crate reports no positions.

use std::fmt;

/// One step of a key path: a table key or an index into an array (of tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path such as `source[3].select.item`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        Self(v)
    }

    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }

    /// The environment variable that would override this path, if the path can be overridden
    /// at all (arrays of tables cannot: rust-cli/config-rs#83).
    pub fn env_var(&self) -> Option<String> {
        let mut name = String::from("TINGFENG");
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    name.push_str("__");
                    name.push_str(&k.to_ascii_uppercase());
                }
                Seg::Index(_) => return None,
            }
        }
        Some(name)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// The parsed TOML text, kept only to answer "which line is this key on".
pub struct Locator {
    text: String,
    doc: Option<toml_edit::Document<String>>,
}

impl Locator {
    pub fn new(text: String) -> Self {
        let doc = toml_edit::Document::parse(text.clone()).ok();
        Self { text, doc }
    }

    /// 1-based line of the deepest part of `path` that exists in the file: the value's key if
    /// it is there, else the table that should have held it.
    pub fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let span = walk(Node::Table(doc.as_table()), &path.0, None)?;
        Some(line_at(&self.text, span.start))
    }
}

type Span = std::ops::Range<usize>;

/// The three shapes a TOML position can take in toml_edit's tree.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a toml_edit::Table),
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
}

fn walk(node: Node<'_>, rest: &[Seg], best: Option<Span>) -> Option<Span> {
    let Some((seg, tail)) = rest.split_first() else {
        return best;
    };
    let next: Option<(Node<'_>, Option<Span>)> = match (seg, node) {
        (Seg::Key(k), Node::Table(t)) | (Seg::Key(k), Node::Item(toml_edit::Item::Table(t))) => t
            .get_key_value(k)
            .map(|(key, item)| (Node::Item(item), key.span())),
        (Seg::Key(k), Node::Item(toml_edit::Item::Value(toml_edit::Value::InlineTable(t))))
        | (Seg::Key(k), Node::Value(toml_edit::Value::InlineTable(t))) => t
            .get_key_value(k)
            .map(|(key, value)| (Node::Item(value), key.span())),
        (Seg::Index(i), Node::Item(toml_edit::Item::ArrayOfTables(a))) => {
            a.get(*i).map(|t| (Node::Table(t), t.span()))
        }
        (Seg::Index(i), Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a))))
        | (Seg::Index(i), Node::Value(toml_edit::Value::Array(a))) => {
            a.get(*i).map(|v| (Node::Value(v), v.span()))
        }
        _ => None,
    };
    match next {
        Some((n, span)) => walk(n, tail, span.or(best)),
        None => best,
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"[daemon]
data_dir = "data"

[[source]]
id = "a"
url = "https://a.example/"

[[source]]
id = "b"
interval = "5 minuets"
[source.select]
item = "li"

[[department]]
id = "d"
keywords = ["x", "y"]
"#;

    #[test]
    fn finds_lines_of_nested_keys() {
        let loc = Locator::new(TEXT.to_string());
        let p = KeyPath::root();
        assert_eq!(loc.line_of(&p.key("daemon").key("data_dir")), Some(2));
        assert_eq!(
            loc.line_of(&p.key("source").index(1).key("interval")),
            Some(10)
        );
        assert_eq!(
            loc.line_of(&p.key("source").index(1).key("select").key("item")),
            Some(12)
        );
        assert_eq!(
            loc.line_of(&p.key("department").index(0).key("keywords").index(1)),
            Some(16)
        );
        // A missing key points at its table.
        assert_eq!(loc.line_of(&p.key("source").index(0).key("kind")), Some(4));
    }

    #[test]
    fn env_var_names() {
        let p = KeyPath::root().key("daemon").key("data_dir");
        assert_eq!(p.env_var().as_deref(), Some("TINGFENG__DAEMON__DATA_DIR"));
        assert_eq!(KeyPath::root().key("source").index(0).env_var(), None);
        assert_eq!(p.to_string(), "daemon.data_dir");
    }
}
