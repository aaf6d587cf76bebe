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
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let (kind, _) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    multer::parse_boundary(content_type).ok()
}

/// Splits a multipart body into its parts (RFC 7578), with `multer`.
pub(crate) async fn parse_multipart(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let whole = body.clone();
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(whole) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| format!("bad multipart body: {e}");
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field
            .name()
            .filter(|n| !n.is_empty())
            .ok_or("multipart part without a name")?
            .to_owned();
        let filename = field.file_name().map(str::to_owned);
        let data = field.bytes().await.map_err(bad)?;
        parts.push(Part {
            name,
            filename,
            data,
        });
    }
    Ok(parts)
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

    /// The parser's future on a runtime of its own.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
            .block_on(f)
    }

    #[test]
    fn parses_fields_and_files() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n42\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"cat.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\x00\x01\r\n\x02\r\n\
--XyZ--\r\n",
        );
        let b = boundary("multipart/form-data; boundary=XyZ").unwrap();
        let parts = block_on(parse_multipart(&body, &b)).unwrap();
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
                block_on(parse_multipart(&Bytes::copy_from_slice(body), "XyZ")).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"").as_deref(),
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
