//! Values that must never be printed: bot tokens, passwords, webhook secrets.

use std::fmt;

/// The text printed in place of a secret.
pub const REDACTED: &str = "***";

/// A value that is never shown by `Debug` (there is no `Display`).
///
/// Reading it takes an explicit [`Secret::expose`], which is easy to find in
/// review.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value itself. Do not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

/// Query parameter names whose values are secrets (compared without case).
const SECRET_PARAMS: &[&str] = &["password", "passwd", "pass", "secret", "token", "key"];

/// `url` with the password of its user info and the values of secret-looking
/// query parameters (`password=`, `sslpassword=`, `token=`...) replaced by
/// `***`. Everything else (scheme, user, host, database) stays readable.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    out.push_str(path);
    if let Some(query) = query {
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        out.push('?');
        let params = query.split('&').map(|param| match param.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}={REDACTED}"),
            _ => param.to_owned(),
        });
        out.push_str(&params.collect::<Vec<_>>().join("&"));
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|p| name.ends_with(p))
}

/// The password of a URL's user info, if it has one.
pub fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo
        .split_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
}

/// Whether an environment variable with this name probably holds a secret.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn urls_keep_everything_but_the_password() {
        assert_eq!(
            redact_url("postgres://bot:s3cret@db:5432/fleet"),
            "postgres://bot:***@db:5432/fleet"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/2"),
            "redis://:***@127.0.0.1:6379/2"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=x&sslpassword=y#f"),
            "postgres://u@h/db?sslmode=require&password=***&sslpassword=***#f"
        );
        assert_eq!(redact_url("postgres://a:b:c@h"), "postgres://a:***@h");
        assert_eq!(redact_url("postgres://a:p@ss@h/d"), "postgres://a:***@h/d");
        assert_eq!(redact_url("sqlite://data/bot.db"), "sqlite://data/bot.db");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn passwords_are_found() {
        assert_eq!(
            url_password("postgres://bot:s3cret@db/fleet"),
            Some("s3cret")
        );
        assert_eq!(url_password("postgres://a:p@ss@h/d"), Some("p@ss"));
        assert_eq!(url_password("postgres://bot@db/fleet"), None);
        assert_eq!(url_password("redis://:@h"), None);
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("BOT_TOKEN"));
        assert!(is_secret_name("db_password"));
        assert!(is_secret_name("API_KEY"));
        assert!(!is_secret_name("RUST_LOG"));
    }
}
