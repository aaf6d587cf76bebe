//! Uploads: `multipart/form-data` bodies, the files they carry, `getFile`
//! and `/file/bot<token>/<path>`.

use std::collections::HashMap;

use axum::body::Bytes;
use serde_json::{Value, json};

/// The real server takes uploads of up to 50 MB from bots.
pub(crate) const MAX_UPLOAD: usize = 50 * 1024 * 1024;

/// Uploaded files are kept in memory up to this many bytes in all; the
/// oldest are forgotten first.
const STORE_BUDGET: usize = 256 * 1024 * 1024;

/// One part of a multipart body.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) name: String,
    /// Set for a file; a plain field has none.
    pub(crate) filename: Option<String>,
    pub(crate) data: Bytes,
}

/// The boundary of a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: &str) -> Option<&str> {
    let (kind, rest) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    rest.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

/// Splits a multipart body into its parts (RFC 7578).
pub(crate) fn parse_multipart(body: &Bytes, boundary: &str) -> Result<Vec<Part>, &'static str> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut at = find(body, delimiter, 0).ok_or("multipart body without its boundary")?;
    let mut parts = Vec::new();
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[at..].starts_with(b"\r\n") {
            return Err("malformed multipart boundary line");
        }
        at += 2;
        let head_end = find(body, b"\r\n\r\n", at).ok_or("multipart part without headers")?;
        let head = std::str::from_utf8(&body[at..head_end])
            .map_err(|_| "multipart headers are not UTF-8")?;
        let data_start = head_end + 4;
        let mut close = Vec::with_capacity(delimiter.len() + 2);
        close.extend_from_slice(b"\r\n");
        close.extend_from_slice(delimiter);
        let data_end = find(body, &close, data_start).ok_or("unterminated multipart part")?;
        let disposition = head
            .split("\r\n")
            .find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then_some(v)
            })
            .ok_or("multipart part without Content-Disposition")?;
        let name = disposition_param(disposition, "name").ok_or("multipart part without a name")?;
        parts.push(Part {
            name,
            filename: disposition_param(disposition, "filename"),
            data: body.slice(data_start..data_end),
        });
        at = data_end + 2;
    }
}

/// `name="value"` (or unquoted) in a Content-Disposition header.
fn disposition_param(header: &str, key: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// A stored file.
pub(crate) struct StoredFile {
    pub(crate) unique_id: String,
    pub(crate) path: String,
    pub(crate) name: String,
    pub(crate) data: Bytes,
}

/// Uploaded files by file id, within a memory budget.
#[derive(Default)]
pub(crate) struct Files {
    by_id: HashMap<String, StoredFile>,
    order: std::collections::VecDeque<String>,
    bytes: usize,
    next: u64,
}

impl Files {
    /// Stores an upload; returns its file id.
    pub(crate) fn store(&mut self, kind: &str, name: &str, data: Bytes) -> String {
        self.next += 1;
        let n = self.next;
        let id = format!("BQACAgIAAx0E{n:012}");
        let extension = name.rsplit_once('.').map_or("", |(_, e)| e);
        let dir = if kind == "photo" {
            "photos"
        } else {
            "documents"
        };
        let path = if extension.is_empty() {
            format!("{dir}/file_{n}")
        } else {
            format!("{dir}/file_{n}.{extension}")
        };
        self.bytes += data.len();
        self.by_id.insert(
            id.clone(),
            StoredFile {
                unique_id: format!("AgAD{n:08}"),
                path,
                name: name.to_owned(),
                data,
            },
        );
        self.order.push_back(id.clone());
        while self.bytes > STORE_BUDGET {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(f) = self.by_id.remove(&old) {
                self.bytes -= f.data.len();
            }
        }
        id
    }

    pub(crate) fn get(&self, id: &str) -> Option<&StoredFile> {
        self.by_id.get(id)
    }

    /// The file stored at `path` (what `getFile` answered).
    pub(crate) fn by_path(&self, path: &str) -> Option<&StoredFile> {
        self.by_id.values().find(|f| f.path == path)
    }

    /// The `File` object of `getFile`.
    pub(crate) fn file_json(&self, id: &str) -> Option<Value> {
        let f = self.by_id.get(id)?;
        Some(json!({
            "file_id": id,
            "file_unique_id": f.unique_id,
            "file_size": f.data.len(),
            "file_path": f.path,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_files() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n42\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"cat.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\x00\x01\r\n\x02\r\n\
--XyZ--\r\n",
        );
        let b = boundary("multipart/form-data; boundary=XyZ").unwrap();
        let parts = parse_multipart(&body, b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "chat_id");
        assert_eq!(&parts[0].data[..], b"42");
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[1].filename.as_deref(), Some("cat.jpg"));
        assert_eq!(&parts[1].data[..], b"\x00\x01\r\n\x02");
    }

    #[test]
    fn rejects_malformed_bodies() {
        for body in [
            &b"no boundary here"[..],
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nnever closed",
            b"--XyZ\r\nX-Other: 1\r\n\r\nv\r\n--XyZ--",
            b"--XyZjunk",
        ] {
            assert!(
                parse_multipart(&Bytes::copy_from_slice(body), "XyZ").is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\""),
            Some("a b")
        );
    }

    #[test]
    fn the_store_forgets_the_oldest_beyond_its_budget() {
        let mut files = Files::default();
        let big = Bytes::from(vec![0u8; STORE_BUDGET / 2 + 1]);
        let first = files.store("document", "a.bin", big.clone());
        let second = files.store("photo", "b.jpg", big);
        assert!(files.get(&first).is_none());
        let json = files.file_json(&second).unwrap();
        assert_eq!(json["file_path"], "photos/file_2.jpg");
        assert!(files.by_path("photos/file_2.jpg").is_some());
    }
}
