//! Reading typed values out of the spanned tree, collecting every problem.
//!
//! Each section of `fleet.toml` is read by a function that asks a [`Table`]
//! for its keys by name. Asking registers the key as known; [`Table::finish`]
//! then reports every key nobody asked for, with a "did you mean"
//! suggestion taken from the keys that were asked for. The list of valid keys
//! therefore cannot drift from the code that reads them.
//!
//! Nothing here stops at the first problem: a bad value is reported to the
//! [`Ctx`] and reading goes on with the next key.

use crate::env::Env;
use crate::error::Diagnostic;
use crate::interpolate;
use crate::source::Source;
use crate::tree::{Entry, Kind, Node, Span};

/// Shared state of one load: the source (for positions), the environment
/// (for `${VAR}`) and the problems found so far.
pub(crate) struct Ctx<'a> {
    pub(crate) source: Source<'a>,
    env: &'a dyn Env,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(source: Source<'a>, env: &'a dyn Env) -> Self {
        Ctx {
            source,
            env,
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: &Span, key: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.source.name.to_owned(),
            position: self.source.start(span),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn line(&self, span: &Span) -> usize {
        self.source.start(span).line
    }

    /// The problems found, in file order.
    pub(crate) fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        // A stable sort keeps problems found at one position in the order they
        // were found.
        self.diagnostics.sort_by_key(|d| d.position);
        self.diagnostics
    }
}

/// Reads `text`, the file called `file_name`, with `read` from its root
/// table: its value when no problem was found, else every problem.
pub(crate) fn read_document<T>(
    text: &str,
    file_name: &str,
    env: &dyn Env,
    read: impl FnOnce(&mut Ctx<'_>, Table<'_>) -> Option<T>,
) -> Result<T, crate::ConfigError> {
    let mut cx = Ctx::new(Source::new(file_name, text), env);
    let root = match crate::tree::parse(text) {
        Ok(root) => root,
        Err((span, message)) => {
            cx.error(&span, "", format!("TOML syntax error: {message}"));
            return Err(crate::ConfigError::Invalid(cx.into_diagnostics()));
        }
    };
    let value = Table::root(&root).and_then(|root| read(&mut cx, root));
    let diagnostics = cx.into_diagnostics();
    match value {
        Some(value) if diagnostics.is_empty() => Ok(value),
        _ => Err(crate::ConfigError::Invalid(diagnostics)),
    }
}

/// A value with the span it was read from.
#[derive(Clone, Debug)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// A string value after `${VAR}` expansion.
#[derive(Clone, Debug)]
pub(crate) struct Text {
    pub(crate) value: String,
    pub(crate) from_env: bool,
    /// Where an expanded value came from (`Expanded::origin`), for errors.
    pub(crate) origin: String,
}

/// A table of the document being read, with the dotted path that leads to it.
pub(crate) struct Table<'n> {
    path: String,
    pub(crate) span: Span,
    entries: &'n [Entry],
    known: Vec<&'static str>,
}

impl<'n> Table<'n> {
    pub(crate) fn root(node: &'n Node) -> Option<Self> {
        match &node.kind {
            Kind::Table(entries) => Some(Table {
                path: String::new(),
                span: node.span.clone(),
                entries,
                known: Vec::new(),
            }),
            _ => None,
        }
    }

    /// The dotted path of `key` in this table, as printed in errors.
    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    fn entry(&mut self, key: &'static str) -> Option<&'n Entry> {
        self.known.push(key);
        self.entries.iter().find(|e| e.key == key)
    }

    /// Whether `key` is present (and registers it as known).
    pub(crate) fn contains(&mut self, key: &'static str) -> bool {
        self.entry(key).is_some()
    }

    /// The span of `key`'s value, or of the table when the key is absent.
    pub(crate) fn span_of(&self, key: &str) -> Span {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map_or_else(|| self.span.clone(), |e| e.value.span.clone())
    }

    pub(crate) fn string(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Option<Spanned<Text>> {
        let entry = self.entry(key)?;
        let path = self.key_path(key);
        read_string(cx, &entry.value, &path)
    }

    /// An integer in `range`. A string holding only `${VAR}` references is
    /// accepted when it expands to an integer, so counts can come from the
    /// environment too.
    pub(crate) fn integer(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<Spanned<i64>> {
        let entry = self.entry(key)?;
        let path = self.key_path(key);
        let node = &entry.value;
        let value = match &node.kind {
            Kind::Integer(i) => *i,
            Kind::String(raw) if raw.contains("${") => {
                let text = read_string(cx, node, &path)?;
                match text.value.value.trim().parse::<i64>() {
                    Ok(i) => i,
                    Err(_) => {
                        cx.error(
                            &node.span,
                            &path,
                            format!(
                                "expected an integer, but {} does not give one",
                                text.value.origin
                            ),
                        );
                        return None;
                    }
                }
            }
            Kind::String(raw) if raw.trim().parse::<i64>().is_ok() => {
                cx.error(
                    &node.span,
                    &path,
                    format!(
                        "expected an integer, found a string (write {}, without quotes)",
                        raw.trim()
                    ),
                );
                return None;
            }
            other => {
                type_error(cx, node, &path, "an integer", other);
                return None;
            }
        };
        in_range(cx, &node.span, &path, value, &range, ToString::to_string)
    }

    /// A number in `range`; integers are accepted as numbers too.
    pub(crate) fn float(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Option<Spanned<f64>> {
        let entry = self.entry(key)?;
        let path = self.key_path(key);
        let node = &entry.value;
        let value = match &node.kind {
            Kind::Float(f) => *f,
            Kind::Integer(i) => *i as f64,
            other => {
                type_error(cx, node, &path, "a number", other);
                return None;
            }
        };
        in_range(cx, &node.span, &path, value, &range, ToString::to_string)
    }

    pub(crate) fn boolean(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Option<Spanned<bool>> {
        let entry = self.entry(key)?;
        let path = self.key_path(key);
        match &entry.value.kind {
            Kind::Boolean(b) => Some(Spanned {
                value: *b,
                span: entry.value.span.clone(),
            }),
            other => {
                type_error(cx, &entry.value, &path, "a boolean (true or false)", other);
                None
            }
        }
    }

    /// A duration written as a string (`"250ms"`, `"30s"`, `"5m"`, `"1h"`,
    /// `"0"`; see [`crate::duration`]), within `range`.
    pub(crate) fn duration(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
        range: std::ops::RangeInclusive<std::time::Duration>,
    ) -> Option<Spanned<std::time::Duration>> {
        let text = self.string(cx, key)?;
        let path = self.key_path(key);
        let Some(value) = crate::duration::parse(&text.value.value) else {
            cx.error(
                &text.span,
                &path,
                format!(
                    "`{}` is not a duration: {}",
                    text.value.value,
                    crate::duration::SYNTAX
                ),
            );
            return None;
        };
        in_range(cx, &text.span, &path, value, &range, |d| {
            crate::duration::format(*d)
        })
    }

    /// The entries of a table whose keys are free-form names (for example
    /// per-namespace settings), each read as a table.
    pub(crate) fn named_tables(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
    ) -> Vec<(String, Table<'n>)> {
        let Some(table) = self.table(cx, key) else {
            return Vec::new();
        };
        let path = table.path.clone();
        table
            .entries
            .iter()
            .filter_map(|entry| match &entry.value.kind {
                Kind::Table(entries) => Some((
                    entry.key.clone(),
                    Table {
                        path: format!("{path}.{}", entry.key),
                        span: entry.value.span.clone(),
                        entries,
                        known: Vec::new(),
                    },
                )),
                other => {
                    type_error(
                        cx,
                        &entry.value,
                        &format!("{path}.{}", entry.key),
                        "a table",
                        other,
                    );
                    None
                }
            })
            .collect()
    }

    pub(crate) fn table(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Option<Table<'n>> {
        let entry = self.entry(key)?;
        let path = self.key_path(key);
        match &entry.value.kind {
            Kind::Table(entries) => Some(Table {
                path,
                span: entry.value.span.clone(),
                entries,
                known: Vec::new(),
            }),
            other => {
                type_error(cx, &entry.value, &path, "a table", other);
                None
            }
        }
    }

    /// An array of tables (`[[key]]`); a single `[key]` table is an error
    /// that says how to write it.
    pub(crate) fn array_of_tables(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
    ) -> Vec<Table<'n>> {
        let Some(entry) = self.entry(key) else {
            return Vec::new();
        };
        let path = self.key_path(key);
        match &entry.value.kind {
            Kind::Array(elements) => elements
                .iter()
                .enumerate()
                .filter_map(|(i, element)| {
                    let path = format!("{path}[{i}]");
                    match &element.kind {
                        Kind::Table(entries) => Some(Table {
                            path,
                            span: element.span.clone(),
                            entries,
                            known: Vec::new(),
                        }),
                        other => {
                            type_error(cx, element, &path, "a table", other);
                            None
                        }
                    }
                })
                .collect(),
            Kind::Table(_) => {
                cx.error(
                    &entry.value.span,
                    &path,
                    format!("expected an array of tables: write `[[{key}]]`, not `[{key}]`"),
                );
                Vec::new()
            }
            other => {
                type_error(cx, &entry.value, &path, "an array of tables", other);
                Vec::new()
            }
        }
    }

    pub(crate) fn string_array(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
    ) -> Option<Vec<Spanned<Text>>> {
        let entry = self.entry(key)?;
        let path = self.key_path(key);
        match &entry.value.kind {
            Kind::Array(elements) => Some(
                elements
                    .iter()
                    .enumerate()
                    .filter_map(|(i, element)| read_string(cx, element, &format!("{path}[{i}]")))
                    .collect(),
            ),
            other => {
                type_error(cx, &entry.value, &path, "an array of strings", other);
                None
            }
        }
    }

    /// A table of string values with free-form keys (for example a worker's
    /// environment).
    pub(crate) fn string_map(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
    ) -> Option<Vec<(Spanned<String>, Spanned<Text>)>> {
        let entry = self.entry(key)?;
        let path = self.key_path(key);
        match &entry.value.kind {
            Kind::Table(entries) => Some(
                entries
                    .iter()
                    .filter_map(|e| {
                        let value = read_string(cx, &e.value, &format!("{path}.{}", e.key))?;
                        let key = Spanned {
                            value: e.key.clone(),
                            span: e.key_span.clone(),
                        };
                        Some((key, value))
                    })
                    .collect(),
            ),
            other => {
                type_error(cx, &entry.value, &path, "a table of strings", other);
                None
            }
        }
    }

    /// Reports every key of this table that was never asked for.
    pub(crate) fn finish(self, cx: &mut Ctx<'_>) {
        for entry in self.entries {
            if self.known.contains(&entry.key.as_str()) {
                continue;
            }
            let path = self.key_path(&entry.key);
            let message = match suggest(&entry.key, &self.known) {
                Some(candidate) => {
                    format!("unknown key `{}` (did you mean `{candidate}`?)", entry.key)
                }
                None => {
                    let mut known = self.known.clone();
                    known.sort_unstable();
                    known.dedup();
                    let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>();
                    format!(
                        "unknown key `{}`; the keys here are {}",
                        entry.key,
                        list.join(", ")
                    )
                }
            };
            cx.error(&entry.key_span, &path, message);
        }
    }
}

/// `value` if it is in `range`; otherwise an error that shows the bounds
/// with `show`.
fn in_range<T: PartialOrd>(
    cx: &mut Ctx<'_>,
    span: &Span,
    path: &str,
    value: T,
    range: &std::ops::RangeInclusive<T>,
    show: impl Fn(&T) -> String,
) -> Option<Spanned<T>> {
    if range.contains(&value) {
        return Some(Spanned {
            value,
            span: span.clone(),
        });
    }
    cx.error(
        span,
        path,
        format!(
            "must be between {} and {}, found {}",
            show(range.start()),
            show(range.end()),
            show(&value)
        ),
    );
    None
}

fn read_string(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Spanned<Text>> {
    match &node.kind {
        Kind::String(raw) => match interpolate::expand(raw, cx.env) {
            Ok(expanded) => Some(Spanned {
                value: Text {
                    origin: expanded.origin(),
                    value: expanded.value,
                    from_env: expanded.from_env,
                },
                span: node.span.clone(),
            }),
            Err(error) => {
                cx.error(&node.span, path, error.to_string());
                None
            }
        },
        other => {
            type_error(cx, node, path, "a string", other);
            None
        }
    }
}

fn type_error(cx: &mut Ctx<'_>, node: &Node, path: &str, expected: &str, found: &Kind) {
    cx.error(
        &node.span,
        path,
        format!("expected {expected}, found {}", found.type_name()),
    );
}

/// The closest of `candidates` to `word`, if it is close enough to be a typo
/// (a small edit distance) or an abbreviation either way (`production` for
/// `prod`, `env` for `environment`).
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    let by_distance = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c);
    by_distance.or_else(|| {
        let word = word.to_ascii_lowercase();
        candidates.iter().copied().find(|c| {
            c.len() >= 3 && word.len() >= 3 && (word.starts_with(c) || c.starts_with(word.as_str()))
        })
    })
}

/// Parses `value` as one of `choices`, reporting an error with a suggestion.
pub(crate) fn choice<T: Copy>(
    cx: &mut Ctx<'_>,
    value: &Spanned<Text>,
    path: &str,
    choices: &[(&'static str, T)],
) -> Option<T> {
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == value.value.value) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let message = match suggest(&value.value.value, &names) {
        Some(candidate) => format!(
            "unknown value `{}` (did you mean `{candidate}`?); expected one of {list}",
            value.value.value
        ),
        None => format!(
            "unknown value `{}`; expected one of {list}",
            value.value.value
        ),
    };
    cx.error(&value.span, path, message);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let keys = ["database", "redis", "monitor", "bot", "environment"];
        assert_eq!(suggest("databse", &keys), Some("database"));
        assert_eq!(suggest("moniter", &keys), Some("monitor"));
        assert_eq!(suggest("bots", &keys), Some("bot"));
        assert_eq!(suggest("enviroment", &keys), Some("environment"));
        assert_eq!(suggest("cache", &keys), None);
        assert_eq!(suggest("env", &keys), Some("environment"));
        assert_eq!(
            suggest("production", &["dev", "staging", "prod"]),
            Some("prod")
        );
        assert_eq!(suggest("de", &["dev"]), Some("dev"));
        assert_eq!(suggest("x", &keys), None);
    }
}
