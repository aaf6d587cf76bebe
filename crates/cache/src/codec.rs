//! The L2 encoding: a 2-byte header, then the value in postcard (serde's
//! compact binary format with varints).
//!
//! ```text
//! byte 0   0xBF        magic: the bytes were written by botfleet-cache
//! byte 1   0x01 | 0x02 version 1, value present | version 1, absent
//! byte 2.. postcard    the value (absent: nothing)
//! ```
//!
//! Anything else — a foreign value, a truncated write, a type that changed
//! shape — decodes as corrupt: the cache counts it, treats it as a miss and
//! overwrites it. It never panics.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::l1::Cached;

const MAGIC: u8 = 0xBF;
const PRESENT: u8 = 0x01;
const ABSENT: u8 = 0x02;

/// Encodes a value or an absence.
pub(crate) fn encode<V: Serialize>(value: &Cached<V>) -> Result<Vec<u8>, postcard::Error> {
    match value {
        Cached::Value(v) => {
            let mut out = vec![MAGIC, PRESENT];
            out.extend(postcard::to_allocvec(v)?);
            Ok(out)
        }
        Cached::Absent => Ok(vec![MAGIC, ABSENT]),
    }
}

/// Decodes what [`encode`] wrote; `None` for anything else.
pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Option<Cached<V>> {
    match bytes {
        [MAGIC, PRESENT, payload @ ..] => {
            let (value, rest) = postcard::take_from_bytes(payload).ok()?;
            rest.is_empty().then_some(Cached::Value(value))
        }
        [MAGIC, ABSENT] => Some(Cached::Absent),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Profile {
        id: u64,
        name: String,
        city: Option<String>,
    }

    #[test]
    fn round_trip_and_compactness() {
        let p = Profile {
            id: 42,
            name: "Ann".into(),
            city: None,
        };
        let bytes = encode(&Cached::Value(&p)).unwrap();
        assert_eq!(bytes.len(), 2 + 1 + 4 + 1, "{bytes:?}");
        assert_eq!(decode::<Profile>(&bytes), Some(Cached::Value(p)));
        let absent = encode::<Profile>(&Cached::Absent).unwrap();
        assert_eq!(decode::<Profile>(&absent), Some(Cached::Absent));
    }

    #[test]
    fn corrupt_bytes_decode_as_none() {
        let good = encode(&Cached::Value(&7u32)).unwrap();
        for bad in [
            &b""[..],
            &b"hello"[..],
            &good[..1],
            &[MAGIC, PRESENT][..],
            &[MAGIC, 0x09, 1][..],
            &[MAGIC, ABSENT, 0][..],
        ] {
            assert_eq!(decode::<u32>(bad), None, "{bad:?}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode::<u32>(&trailing), None);
        // A value of another shape.
        assert_eq!(decode::<Profile>(&good), None);
    }
}
