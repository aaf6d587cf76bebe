//! `${VAR}` and `${VAR:-default}` in string values.
//!
//! The syntax is the shell's subset that Docker Compose also uses: `${VAR}`
//! must be set, `${VAR:-default}` falls back when `VAR` is unset or empty, and
//! `$$` is a literal `$`. A `$` followed by anything else is kept as is, so
//! passwords with a lone `$` need no escaping.

use crate::env::Env;

/// The result of expanding one string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Expanded {
    pub(crate) value: String,
    /// Whether any `${...}` reference was replaced: values that came from the
    /// environment are treated as secrets when printed.
    pub(crate) from_env: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InterpolationError {
    /// `${VAR}` with `VAR` unset.
    Missing(String),
    /// `${` without a closing `}`.
    Unterminated,
    /// `${}` or a name with characters other than `A-Z a-z 0-9 _`.
    BadName(String),
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
            InterpolationError::BadName(name) => write!(
                f,
                "`${{{name}}}` is not a valid variable reference (names use A-Z, a-z, 0-9 and _, and do not start with a digit)"
            ),
        }
    }
}

pub(crate) fn expand(input: &str, env: &dyn Env) -> Result<Expanded, InterpolationError> {
    if !input.contains('$') {
        return Ok(Expanded {
            value: input.to_owned(),
            from_env: false,
        });
    }
    let mut value = String::with_capacity(input.len());
    let mut from_env = false;
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        value.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            value.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body.find('}').ok_or(InterpolationError::Unterminated)?;
            let reference = &body[..close];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            if !is_valid_name(name) {
                return Err(InterpolationError::BadName(name.to_owned()));
            }
            let resolved = match (env.var(name), default) {
                (Some(v), Some(default)) if v.is_empty() => default.to_owned(),
                (Some(v), _) => v,
                (None, Some(default)) => default.to_owned(),
                (None, None) => return Err(InterpolationError::Missing(name.to_owned())),
            };
            value.push_str(&resolved);
            from_env = true;
            rest = &body[close + 1..];
        } else {
            value.push('$');
            rest = after;
        }
    }
    value.push_str(rest);
    Ok(Expanded { value, from_env })
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
