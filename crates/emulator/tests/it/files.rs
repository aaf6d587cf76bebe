//! Uploads: multipart bodies, photos, documents, albums, getFile and the
//! file route.

use std::net::SocketAddr;

use std::time::Duration;

use botfleet_emulator::{ChatKind, Emulator, EmulatorConfig, Limit, Limits, Scope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{TOKEN, api, http};

async fn emulator() -> Emulator {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "dating_bot").unwrap();
    e.add_user(1001, "Ann");
    e.add_group(-1001, "Fans", ChatKind::Supergroup);
    e
}

/// One part of a multipart body: a field, or a file when `filename` is set.
struct Part<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    data: &'a [u8],
}

/// POSTs a multipart body to `method`; returns the status and the JSON.
async fn multipart(addr: SocketAddr, method: &str, parts: &[Part<'_>]) -> (u16, serde_json::Value) {
    let boundary = "------botfleet7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match p.filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                    p.name
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", p.name).as_bytes(),
            ),
        }
        body.extend_from_slice(p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /bot{TOKEN}/{method} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test]
async fn an_uploaded_photo_can_be_fetched_back() {
    let e = emulator().await;
    let a = e.addr();
    // Binary data with CR LF inside, as a JPEG has.
    let jpeg: Vec<u8> = (0..=255u8).chain(*b"\r\n--not-the-boundary\r\n").collect();
    let (status, r) = multipart(
        a,
        "sendPhoto",
        &[
            Part {
                name: "chat_id",
                filename: None,
                data: b"1001",
            },
            Part {
                name: "caption",
                filename: None,
                data: "a cat \u{1f408}".as_bytes(),
            },
            Part {
                name: "photo",
                filename: Some("cat.jpg"),
                data: &jpeg,
            },
        ],
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let message = &r["result"];
    assert_eq!(message["caption"], "a cat \u{1f408}");
    assert!(message.get("text").is_none());
    let photo = &message["photo"][0];
    assert_eq!(photo["file_size"], jpeg.len());
    let file_id = photo["file_id"].as_str().unwrap();
    let file = api(a, "getFile", &format!(r#"{{"file_id": "{file_id}"}}"#)).await;
    let path = file.body["result"]["file_path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(path.ends_with(".jpg"), "{path}");
    // The bytes come back exactly, from the file route.
    let mut stream = TcpStream::connect(a).await.unwrap();
    stream
        .write_all(
            format!("GET /file/bot{TOKEN}/{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&raw[at..], &jpeg[..]);
    // The same file sent again by its id; unknown ids and paths are refused.
    let again = api(
        a,
        "sendPhoto",
        &format!(r#"{{"chat_id": -1001, "photo": "{file_id}"}}"#),
    )
    .await;
    assert_eq!(again.body["result"]["photo"][0]["file_id"], file_id);
    let bad = api(a, "sendPhoto", r#"{"chat_id": -1001, "photo": "nope"}"#).await;
    assert_eq!(
        (bad.status, bad.body["description"].as_str()),
        (
            400,
            Some("Bad Request: wrong file identifier/HTTP URL specified")
        )
    );
    let none = api(a, "sendPhoto", r#"{"chat_id": -1001}"#).await;
    assert_eq!(
        none.body["description"],
        "Bad Request: there is no photo in the request"
    );
    assert_eq!(
        http(a, "GET", &format!("/file/bot{TOKEN}/photos/none.jpg"), None)
            .await
            .status,
        404
    );
    let other = "5:other";
    assert_eq!(
        http(a, "GET", &format!("/file/bot{other}/{path}"), None)
            .await
            .status,
        401
    );
    // An album of two to a private chat (1 a second) still goes through.
    e.add_user(1002, "Bob");
    let album = api(
        a,
        "sendMediaGroup",
        &format!(
            r#"{{"chat_id": 1002, "media": [{{"type":"photo","media":"{file_id}"}},{{"type":"photo","media":"{file_id}"}}]}}"#
        ),
    )
    .await;
    assert_eq!(album.status, 200, "{album:?}");
    // A malformed multipart body is a 400 that says so.
    let mut stream = TcpStream::connect(a).await.unwrap();
    let garbage = "no parts at all";
    stream
        .write_all(
            format!(
                "POST /bot{TOKEN}/sendPhoto HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=b0\r\nContent-Length: {}\r\n\r\n{garbage}",
                garbage.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("Bad Request: bad multipart body"), "{raw}");
}

#[tokio::test]
async fn a_document_keeps_its_name_and_an_album_counts_each_item() {
    // Six sends a minute per group, no per-chat limit to wait out.
    let limits = Limits {
        group: Limit {
            max: 6,
            window: Duration::from_secs(60),
        },
        chat: Limit {
            max: 100,
            window: Duration::from_secs(1),
        },
        ..Limits::default()
    };
    let e = Emulator::start(EmulatorConfig::default().limits(limits))
        .await
        .unwrap();
    e.add_bot(TOKEN, "dating_bot").unwrap();
    e.add_group(-1001, "Fans", ChatKind::Supergroup);
    let a = e.addr();
    let (status, r) = multipart(
        a,
        "sendDocument",
        &[
            Part {
                name: "chat_id",
                filename: None,
                data: b"-1001",
            },
            Part {
                name: "document",
                filename: Some("report.csv"),
                data: b"a,b\n1,2\n",
            },
        ],
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["document"]["file_name"], "report.csv");
    assert_eq!(r["result"]["document"]["file_size"], 8);
    // An album of three into the group: three messages, one media group.
    let media = r#"[{"type":"photo","media":"attach://p1"},{"type":"photo","media":"attach://p2"},{"type":"document","media":"attach://d"}]"#;
    let (status, r) = multipart(
        a,
        "sendMediaGroup",
        &[
            Part {
                name: "chat_id",
                filename: None,
                data: b"-1001",
            },
            Part {
                name: "media",
                filename: None,
                data: media.as_bytes(),
            },
            Part {
                name: "p1",
                filename: Some("1.jpg"),
                data: b"one",
            },
            Part {
                name: "p2",
                filename: Some("2.jpg"),
                data: b"two",
            },
            Part {
                name: "d",
                filename: Some("3.txt"),
                data: b"three",
            },
        ],
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let messages = r["result"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert!(messages[0]["media_group_id"].is_string());
    assert_eq!(messages[0]["media_group_id"], messages[2]["media_group_id"]);
    assert_eq!(messages[2]["document"]["file_name"], "3.txt");
    // 1 + 3 sends count towards the group's 6 a minute: two more fit, the
    // third is refused by the group's limit.
    for text in ["five", "six"] {
        let r = api(
            a,
            "sendMessage",
            &format!(r#"{{"chat_id": -1001, "text": "{text}"}}"#),
        )
        .await;
        assert_eq!(r.status, 200, "{text}: {r:?}");
    }
    let r = api(a, "sendMessage", r#"{"chat_id": -1001, "text": "seven"}"#).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(e.log().last().unwrap().scope, Some(Scope::Group));
    // Albums outside 2-10 items are refused.
    e.add_user(1001, "Ann");
    let one = api(
        a,
        "sendMediaGroup",
        r#"{"chat_id": 1001, "media": [{"type":"photo","media":"https://example.org/a.jpg"}]}"#,
    )
    .await;
    assert_eq!(
        (one.status, one.body["description"].as_str()),
        (
            400,
            Some("Bad Request: media group must include 2-10 items")
        )
    );
}
