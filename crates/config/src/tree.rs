//! A spanned view of a parsed TOML document.
//!
//! `toml_edit` keeps tables, inline tables and arrays of tables apart because
//! it preserves formatting. Validation does not care how a table was written,
//! so the document is first turned into this uniform tree where every node
//! knows its byte span in the source.

use std::ops::Range;

use toml_edit::{Item, Value};

pub(crate) type Span = Range<usize>;

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) span: Span,
    pub(crate) kind: Kind,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_span: Span,
    pub(crate) value: Node,
}

impl Kind {
    /// The TOML type name, as used in "expected X, found Y" messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Kind::String(_) => "a string",
            Kind::Integer(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Boolean(_) => "a boolean",
            Kind::Datetime => "a date-time",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

/// Parses `text` into a tree, or returns the syntax error's span and message.
///
/// The message is `toml_edit`'s own, without the source excerpt its `Display`
/// adds: the excerpt could print a secret that sits on the offending line.
pub(crate) fn parse(text: &str) -> Result<Node, (Span, String)> {
    let document = toml_edit::Document::parse(text).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        let message = error.message().trim().replace('\n', "; ");
        (span, message)
    })?;
    let whole = 0..text.len();
    Ok(item(document.as_item(), &whole))
}

fn item(item: &Item, key_span: &Span) -> Node {
    match item {
        Item::None => Node {
            span: key_span.clone(),
            kind: Kind::Table(Vec::new()),
        },
        Item::Value(value) => self::value(value, key_span),
        Item::Table(table) => self::table(table, key_span),
        Item::ArrayOfTables(tables) => {
            let span = tables.span().unwrap_or_else(|| key_span.clone());
            let elements = tables.iter().map(|t| self::table(t, &span)).collect();
            Node {
                span,
                kind: Kind::Array(elements),
            }
        }
    }
}

fn table(table: &toml_edit::Table, key_span: &Span) -> Node {
    let span = table.span().unwrap_or_else(|| key_span.clone());
    let entries = table
        .iter()
        .map(|(key, child)| entry(key, table.key(key), child.span(), &span, |s| item(child, s)))
        .collect();
    Node {
        span,
        kind: Kind::Table(entries),
    }
}

fn value(value: &Value, key_span: &Span) -> Node {
    let span = value.span().unwrap_or_else(|| key_span.clone());
    let kind = match value {
        Value::String(s) => Kind::String(s.value().clone()),
        Value::Integer(i) => Kind::Integer(*i.value()),
        Value::Float(f) => Kind::Float(*f.value()),
        Value::Boolean(b) => Kind::Boolean(*b.value()),
        Value::Datetime(_) => Kind::Datetime,
        Value::Array(array) => Kind::Array(array.iter().map(|v| self::value(v, &span)).collect()),
        Value::InlineTable(table) => Kind::Table(
            table
                .iter()
                .map(|(key, child)| {
                    entry(key, table.key(key), child.span(), &span, |s| {
                        self::value(child, s)
                    })
                })
                .collect(),
        ),
    };
    Node { span, kind }
}

/// An entry whose key span is the key's own, else its value's, else its
/// table's (implicit tables have no span of their own).
fn entry(
    key: &str,
    key_item: Option<&toml_edit::Key>,
    value_span: Option<Span>,
    table_span: &Span,
    node: impl FnOnce(&Span) -> Node,
) -> Entry {
    let key_span = key_item
        .and_then(|k| k.span())
        .or(value_span)
        .unwrap_or_else(|| table_span.clone());
    Entry {
        key: key.to_owned(),
        value: node(&key_span),
        key_span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(node: &Node) -> &[Entry] {
        match &node.kind {
            Kind::Table(entries) => entries,
            other => panic!("expected a table, found {}", other.type_name()),
        }
    }

    #[test]
    fn tables_inline_tables_and_arrays_of_tables_look_alike() {
        let text = "a = 1\n[t]\nx = { y = \"s\" }\n[[arr]]\nn = 1\n[[arr]]\nn = 2\n";
        let root = parse(text).unwrap();
        let entries = table(&root);
        assert_eq!(entries.len(), 3);
        assert_eq!(&text[entries[0].key_span.clone()], "a");
        assert_eq!(&text[entries[0].value.span.clone()], "1");
        let inner = table(&table(&entries[1].value)[0].value);
        assert!(matches!(&inner[0].value.kind, Kind::String(s) if s == "s"));
        match &entries[2].value.kind {
            Kind::Array(tables) => {
                assert_eq!(tables.len(), 2);
                let second = table(&tables[1]);
                assert_eq!(&text[second[0].value.span.clone()], "2");
            }
            other => panic!("expected an array, found {}", other.type_name()),
        }
    }

    #[test]
    fn dotted_keys_get_the_span_of_their_key() {
        let text = "\n\ndatabase.url = \"x\"\n";
        let root = parse(text).unwrap();
        let database = &table(&root)[0];
        assert_eq!(&text[database.key_span.clone()], "database");
        let url = &table(&database.value)[0];
        assert_eq!(&text[url.value.span.clone()], "\"x\"");
    }

    #[test]
    fn syntax_errors_have_a_span_and_no_source_excerpt() {
        let (span, message) = parse("a = 1\ntoken = \"secret-value\nb = 2\n").unwrap_err();
        assert!(span.start >= 6, "{span:?}");
        assert!(!message.contains("secret-value"), "{message}");
    }
}
