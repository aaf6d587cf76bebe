//! A minimal, blocking Redis client (RESP2), enough for fixtures and their
//! tests: readiness checks, isolation, cleanup. Product code uses a real
//! client library; this one exists so the testkit needs no async runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::error::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A reply from Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$3\r\nabc`, or nil.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`, or nil.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: status, bulk string or integer.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            Reply::Integer(i) => Some(i.to_string()),
            _ => None,
        }
    }
}

/// The parts of a `redis://[user][:password]@host:port/db` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: u32,
}

impl RedisUrl {
    pub(crate) fn parse(url: &str) -> Result<RedisUrl> {
        let bad = |why: &str| {
            Error::Unsupported(format!(
                "{}: {why} (expected redis://[user:password@]host[:port][/db])",
                botfleet_config::redact_url(url)
            ))
        };
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| bad("only redis:// URLs are supported by the testkit"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((user, password)) => (
                Some(user.to_owned()).filter(|u| !u.is_empty()),
                Some(password.to_owned()).filter(|p| !p.is_empty()),
            ),
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| bad("bad port"))?),
            None => (hostport, 6379),
        };
        let db = match path.split('?').next().unwrap_or("") {
            "" => 0,
            db => db.parse().map_err(|_| bad("bad database number"))?,
        };
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            user,
            password,
            db,
        })
    }
}

/// One connection to Redis.
#[derive(Debug)]
pub struct RespConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    server: String,
}

impl RespConn {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`),
    /// authenticating and selecting the database it names.
    pub fn connect(url: &str) -> Result<RespConn> {
        let parsed = RedisUrl::parse(url)?;
        let server = botfleet_config::redact_url(url);
        let stream =
            TcpStream::connect((parsed.host.as_str(), parsed.port)).map_err(|e| Error::Query {
                server: server.clone(),
                detail: format!("cannot connect: {e}"),
            })?;
        let setup = |stream: &TcpStream| {
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            stream.set_nodelay(true)?;
            stream.try_clone()
        };
        let writer = setup(&stream).map_err(|e| Error::io("cannot set up the connection", &e))?;
        let mut conn = RespConn {
            reader: BufReader::new(stream),
            writer,
            server,
        };
        if let Some(password) = &parsed.password {
            let mut auth = vec!["AUTH"];
            auth.extend(parsed.user.as_deref());
            auth.push(password);
            conn.ok(&auth)?;
        }
        if parsed.db != 0 {
            conn.ok(&["SELECT", &parsed.db.to_string()])?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply. A Redis error is returned as
    /// [`Reply::Error`], not as `Err`.
    pub fn command(&mut self, args: &[&str]) -> Result<Reply> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg.as_bytes());
            frame.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&frame)
            .map_err(|e| self.io_error(&e))?;
        self.read_reply()
    }

    /// Sends a command that must not fail; a Redis error becomes `Err`.
    pub fn ok(&mut self, args: &[&str]) -> Result<Reply> {
        match self.command(args)? {
            Reply::Error(message) => Err(Error::Query {
                server: self.server.clone(),
                detail: format!("{}: {message}", args.first().unwrap_or(&"")),
            }),
            reply => Ok(reply),
        }
    }

    fn io_error(&self, error: &std::io::Error) -> Error {
        Error::Query {
            server: self.server.clone(),
            detail: error.to_string(),
        }
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| self.io_error(&e))?;
        if n == 0 {
            return Err(Error::Query {
                server: self.server.clone(),
                detail: "connection closed by the server".into(),
            });
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn read_reply(&mut self) -> Result<Reply> {
        let line = self.read_line()?;
        let protocol_error = |what: &str| Error::Query {
            server: self.server.clone(),
            detail: format!("protocol error: {what}"),
        };
        let (kind, rest) = line
            .split_at_checked(1)
            .ok_or_else(|| protocol_error("empty line"))?;
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| protocol_error("bad length"))
        };
        match kind {
            "+" => Ok(Reply::Status(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => Ok(Reply::Integer(number()?)),
            "$" => {
                let Ok(len) = usize::try_from(number()?) else {
                    return Ok(Reply::Bulk(None));
                };
                let mut data = vec![0; len + 2];
                self.reader
                    .read_exact(&mut data)
                    .map_err(|e| self.io_error(&e))?;
                data.truncate(len);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let Ok(len) = usize::try_from(number()?) else {
                    return Ok(Reply::Array(None));
                };
                let items = (0..len).map(|_| self.read_reply()).collect::<Result<_>>()?;
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(protocol_error("unknown reply type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = RedisUrl::parse("redis://127.0.0.1:6380/3").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("127.0.0.1", 6380, 3)
        );
        assert_eq!((url.user, url.password), (None, None));
        let url = RedisUrl::parse("redis://:pw@localhost").unwrap();
        assert_eq!(
            (url.port, url.db, url.password.as_deref()),
            (6379, 0, Some("pw"))
        );
        let url = RedisUrl::parse("redis://me:pw@h:1/2?x=y").unwrap();
        assert_eq!((url.user.as_deref(), url.db), (Some("me"), 2));
        let error = RedisUrl::parse("rediss://:secret@h")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret"), "{error}");
        assert!(RedisUrl::parse("redis://h:port").is_err());
    }
}
