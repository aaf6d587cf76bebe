//! `${VAR}` and `${VAR:-default}` in string values.
//!
//! The syntax is the shell's subset that Docker Compose also uses: `${VAR}`
//! must be set, `${VAR:-default}` falls back when `VAR` is unset or empty, and
//! `$$` is a literal `$`. A default may itself hold references
//! (`${A:-${B:-x}}`), expanded only when it is used. A `$` followed by
//! anything else is kept as is, so passwords with a lone `$` need no
//! escaping.

use crate::env::Env;

/// The result of expanding one string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Expanded {
    pub(crate) value: String,
    /// Whether any `${...}` reference was replaced: values that came from the
    /// environment are treated as secrets when printed.
    pub(crate) from_env: bool,
    /// Where the replaced parts came from, in order.
    pub(crate) used: Vec<Used>,
}

/// One `${...}` reference, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Used {
    /// The variable's value (never shown: it may be a secret).
    Var(String),
    /// The variable is unset or empty; its default (from the file) is used.
    Default { name: String, default: String },
}

impl Expanded {
    /// Where a value that turned out wrong came from, for an error: the
    /// defaults used (they are in the file), or the variables read (their
    /// values are not shown).
    pub(crate) fn origin(&self) -> String {
        let parts: Vec<String> = self
            .used
            .iter()
            .map(|u| match u {
                Used::Var(name) => format!("the environment variable `{name}`"),
                Used::Default { name, default } => {
                    format!("the default {default:?} (`{name}` is not set or empty)")
                }
            })
            .collect();
        parts.join(" and ")
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InterpolationError {
    /// `${VAR}` with `VAR` unset.
    Missing(String),
    /// `${` without a closing `}`.
    Unterminated,
    /// `${}` or a name with characters other than `A-Z a-z 0-9 _`.
    BadName(String),
    /// Defaults nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolationError::Missing(name) => write!(
                f,
                "environment variable `{name}` is not set (set it, or give a default with `${{{name}:-default}}`)"
            ),
            InterpolationError::Unterminated => {
                f.write_str("`${` is not closed by `}` (write `$$` for a literal `$`)")
            }
            InterpolationError::TooDeep => write!(
                f,
                "defaults nest more than {MAX_DEPTH} deep (`${{A:-${{B:-...}}}}`)"
            ),
            InterpolationError::BadName(name) => write!(
                f,
                "`${{{name}}}` is not a valid variable reference (names use A-Z, a-z, 0-9 and _, and do not start with a digit)"
            ),
        }
    }
}

/// How deep defaults may nest (`${A:-${B:-...}}`).
const MAX_DEPTH: usize = 8;

pub(crate) fn expand(input: &str, env: &dyn Env) -> Result<Expanded, InterpolationError> {
    let mut out = Expanded {
        value: String::with_capacity(input.len()),
        from_env: false,
        used: Vec::new(),
    };
    expand_into(input, env, &mut out, 0)?;
    Ok(out)
}

fn expand_into(
    input: &str,
    env: &dyn Env,
    out: &mut Expanded,
    depth: usize,
) -> Result<(), InterpolationError> {
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.value.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.value.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = closing_brace(body).ok_or(InterpolationError::Unterminated)?;
            let reference = &body[..close];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            if !is_valid_name(name) {
                return Err(InterpolationError::BadName(name.to_owned()));
            }
            out.from_env = true;
            match (
                env.var(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => {
                    out.value.push_str(&v);
                    out.used.push(Used::Var(name.to_owned()));
                }
                (None, Some(default)) => {
                    out.used.push(Used::Default {
                        name: name.to_owned(),
                        default: default.to_owned(),
                    });
                    if depth >= MAX_DEPTH {
                        return Err(InterpolationError::TooDeep);
                    }
                    expand_into(default, env, out, depth + 1)?;
                }
                (None, None) => return Err(InterpolationError::Missing(name.to_owned())),
            }
            rest = &body[close + 1..];
        } else {
            out.value.push('$');
            rest = after;
        }
    }
    out.value.push_str(rest);
    Ok(())
}

/// The index of the `}` that closes a reference whose body is `body`
/// (after `${`), skipping the references nested in a default.
fn closing_brace(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env() -> HashMap<String, String> {
        [("TOKEN", "123:abc"), ("EMPTY", ""), ("HOST", "db")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn defaults_may_nest_and_are_expanded_only_when_used() {
        assert_eq!(ok("${MISSING:-${HOST}}"), ("db".into(), true));
        assert_eq!(ok("${MISSING:-${NOPE:-x}}/y"), ("x/y".into(), true));
        assert_eq!(ok("${MISSING:-a${HOST}b}"), ("adbb".into(), true));
        // An unused default is not expanded, so its unset variable is fine.
        assert_eq!(ok("${HOST:-${NOPE}}"), ("db".into(), true));
        assert_eq!(
            expand("${MISSING:-${NOPE}}", &env()),
            Err(InterpolationError::Missing("NOPE".into()))
        );
        assert_eq!(
            expand("${MISSING:-${HOST}", &env()),
            Err(InterpolationError::Unterminated)
        );
        // Where a value came from, without the variables' values.
        let e = expand("${MISSING:-abc}", &env()).unwrap();
        assert_eq!(
            e.origin(),
            "the default \"abc\" (`MISSING` is not set or empty)"
        );
        let e = expand("${TOKEN}", &env()).unwrap();
        assert_eq!(e.origin(), "the environment variable `TOKEN`");
    }

    fn ok(input: &str) -> (String, bool) {
        let e = expand(input, &env()).unwrap();
        (e.value, e.from_env)
    }

    #[test]
    fn plain_strings_are_untouched() {
        assert_eq!(ok("hello"), ("hello".into(), false));
        assert_eq!(ok("pa$word"), ("pa$word".into(), false));
        assert_eq!(ok("trailing$"), ("trailing$".into(), false));
        assert_eq!(ok("$$HOME"), ("$HOME".into(), false));
    }

    #[test]
    fn references_are_replaced() {
        assert_eq!(ok("${TOKEN}"), ("123:abc".into(), true));
        assert_eq!(
            ok("postgres://u@${HOST}:5432/${HOST}"),
            ("postgres://u@db:5432/db".into(), true)
        );
        assert_eq!(ok("${MISSING:-fallback}"), ("fallback".into(), true));
        assert_eq!(ok("${EMPTY:-fallback}"), ("fallback".into(), true));
        assert_eq!(ok("${EMPTY}"), ("".into(), true));
        assert_eq!(ok("${MISSING:-}"), ("".into(), true));
        assert_eq!(ok("${MISSING:-a:-b}"), ("a:-b".into(), true));
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            expand("x${NOPE}y", &env()),
            Err(InterpolationError::Missing("NOPE".into()))
        );
        assert_eq!(
            expand("${TOKEN", &env()),
            Err(InterpolationError::Unterminated)
        );
        assert_eq!(
            expand("${}", &env()),
            Err(InterpolationError::BadName("".into()))
        );
        assert_eq!(
            expand("${9X}", &env()),
            Err(InterpolationError::BadName("9X".into()))
        );
        assert_eq!(
            expand("${A-B}", &env()),
            Err(InterpolationError::BadName("A-B".into()))
        );
    }
}
