//! Conformance of the emulator with the real Bot API server's behaviour
//! (shared/reference/telegram.md, section 4), over real HTTP.

mod api;
mod files;
mod limits;
mod traffic;
mod updates;

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: String,
    pub(crate) body: Value,
    pub(crate) raw: String,
}

/// One HTTP/1.1 request on a fresh connection. `body` is sent as JSON, or
/// as a form when it starts with `form:`.
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (content_type, payload) = match body {
        Some(b) if b.starts_with("form:") => ("application/x-www-form-urlencoded", &b[5..]),
        Some(b) => ("application/json", b),
        None => ("application/json", ""),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        raw: body.to_owned(),
    }
}

/// `POST /bot<TOKEN>/<method>` with a JSON body.
pub(crate) async fn api(addr: SocketAddr, method: &str, body: &str) -> Reply {
    http(addr, "POST", &format!("/bot{TOKEN}/{method}"), Some(body)).await
}
