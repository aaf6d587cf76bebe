//! Query fingerprints: the SQL with its literals replaced, as
//! `pg_stat_statements` normalizes it, so `WHERE id = 42` and `WHERE id = 7`
//! are one query shape with one set of statistics.

use std::hash::{Hash, Hasher};

/// What a statement does, from its first keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatementKind {
    /// `SELECT`, `WITH`, `VALUES`, `SHOW`, `EXPLAIN`.
    Read,
    /// `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `COPY`, `REPLACE`.
    Write,
    /// Anything else (`CREATE`, `BEGIN`, `SET`, ...).
    Other,
}

/// The normalized form of one SQL text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// The normalized SQL: string and number literals become `?`, lists of
    /// them `(...)`, runs of whitespace one space, comments are dropped.
    pub text: String,
    /// A stable 64-bit id of `text`, printed as 16 hex digits in metrics.
    pub id: u64,
    /// What the statement does.
    pub kind: StatementKind,
    /// The table a write statement changes (`INSERT INTO t`, `UPDATE t`,
    /// `DELETE FROM t`), lower-cased, without schema or quotes.
    pub writes: Option<String>,
}

impl Fingerprint {
    /// Normalizes `sql`.
    pub fn of(sql: &str) -> Fingerprint {
        let text = normalize(sql);
        let words: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c == '(')
            .filter(|w| !w.is_empty())
            .take(4)
            .map(str::to_ascii_lowercase)
            .collect();
        let first = words.first().map_or("", String::as_str);
        let kind = match first {
            "select" | "with" | "values" | "show" | "explain" | "table" => StatementKind::Read,
            "insert" | "update" | "delete" | "merge" | "copy" | "replace" | "upsert" => {
                StatementKind::Write
            }
            _ => StatementKind::Other,
        };
        let target = match first {
            "insert" | "replace" | "merge" => words.get(2),
            "delete" => words.get(2),
            "update" | "copy" => words.get(1),
            _ => None,
        };
        let writes = target.map(|t| {
            let t = t.rsplit('.').next().unwrap_or(t);
            t.trim_matches(|c| c == '"' || c == '`' || c == ';')
                .to_owned()
        });
        let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
        text.hash(&mut hasher);
        Fingerprint {
            id: hasher.finish(),
            text,
            kind,
            writes: writes.filter(|w| !w.is_empty()),
        }
    }

    /// `id` as 16 hex digits (the `query` label of the metrics).
    pub fn id_hex(&self) -> String {
        format!("{:016x}", self.id)
    }
}

/// FNV-1a of `bytes`: stable across processes and releases.
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(bytes);
    h.finish()
}

/// FNV-1a: stable across processes and releases, unlike `DefaultHasher`.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn normalize(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let push_space = |out: &mut String| {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let prev_ident = out
            .chars()
            .last()
            .is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '$');
        if c.is_whitespace() {
            push_space(&mut out);
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            push_space(&mut out);
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            push_space(&mut out);
        } else if c == '\'' {
            // A string literal, with '' as an escaped quote.
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            out.push('?');
        } else if c == '"' {
            // A quoted identifier stays as written.
            out.push(c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                out.push(chars[i]);
                i += 1;
            }
            if i < chars.len() {
                out.push('"');
            }
            i += 1;
        } else if c.is_ascii_digit() && !prev_ident {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push('?');
        } else {
            out.push(c);
            i += 1;
        }
    }
    collapse_lists(out.trim().trim_end_matches(';').trim_end().to_owned())
}

/// `(?, ?, ?)` and `($1, $2)` become `(...)`, so lists of different lengths
/// are one shape.
fn collapse_lists(text: String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let Some(close) = rest.find(')') else { break };
        let inner = &rest[..close];
        let is_list = inner.contains(',')
            && inner.split(',').all(|item| {
                let item = item.trim();
                item == "?"
                    || (item.starts_with('$') && item[1..].chars().all(|c| c.is_ascii_digit()))
            });
        if is_list {
            out.push_str("...");
            rest = &rest[close..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_normalized() {
        let a = Fingerprint::of("SELECT * FROM users WHERE id = 42 AND name = 'O''Brien'");
        let b = Fingerprint::of("select  *\nFROM users WHERE id = 7 AND name = 'x' -- note");
        assert_eq!(a.text, "SELECT * FROM users WHERE id = ? AND name = ?");
        assert_eq!(b.text, "select * FROM users WHERE id = ? AND name = ?");
        assert_ne!(a.id, b.id, "keyword case is kept, as written in code");
        let c = Fingerprint::of("SELECT * FROM users WHERE id = 1 AND name = 'y';");
        assert_eq!(a.id, c.id);
    }

    #[test]
    fn identifiers_and_parameters_stay() {
        let f = Fingerprint::of("SELECT t1.c2, \"Col 3\" FROM t1 WHERE c2 = $1 /* x */ LIMIT 10");
        assert_eq!(
            f.text,
            "SELECT t1.c2, \"Col 3\" FROM t1 WHERE c2 = $1 LIMIT ?"
        );
        assert_eq!(f.kind, StatementKind::Read);
    }

    #[test]
    fn lists_collapse() {
        let a = Fingerprint::of("DELETE FROM likes WHERE id IN (1, 2, 3)");
        let b = Fingerprint::of("DELETE FROM likes WHERE id IN ($1,$2)");
        assert_eq!(a.text, "DELETE FROM likes WHERE id IN (...)");
        assert_eq!(b.text, a.text);
        assert_eq!(a.writes.as_deref(), Some("likes"));
        let f = Fingerprint::of("SELECT count(*) FROM t WHERE f(a, b) > 1");
        assert_eq!(f.text, "SELECT count(*) FROM t WHERE f(a, b) > ?");
    }

    #[test]
    fn written_tables() {
        let cases = [
            (
                "INSERT INTO public.\"Profiles\" (a) VALUES ($1)",
                Some("profiles"),
            ),
            ("update matches set x = 1", Some("matches")),
            ("DELETE FROM events", Some("events")),
            ("SELECT 1", None),
            ("CREATE TABLE x (a int)", None),
        ];
        for (sql, table) in cases {
            assert_eq!(Fingerprint::of(sql).writes.as_deref(), table, "{sql}");
        }
        assert_eq!(
            Fingerprint::of("WITH x AS (SELECT 1) SELECT * FROM x").kind,
            StatementKind::Read
        );
        assert_eq!(Fingerprint::of("BEGIN").kind, StatementKind::Other);
    }
}
