//! Readers for the published cache access trace formats.
//!
//! Each format is described in the README of the shared traces; the readers
//! follow the conventions of the simulators that published figures for them
//! (Caffeine's trace readers, libCacheSim's `oracleGeneral`).

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One request of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The key.
    pub key: u64,
    /// The object's size (1 for unweighted traces).
    pub weight: u64,
}

/// A trace file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// gzip text, one integer per line; `*` and empty lines skipped.
    Lirs,
    /// zstd text `start count ignore request`, expanded to `count` keys.
    Arc,
    /// xz, big-endian 32-bit integers.
    Cache2k,
    /// xz, big-endian 64-bit integers.
    Scarab,
    /// gzip, big-endian 64-bit integers.
    Corda,
    /// Raw 24-byte little-endian records `{u32 time, u64 id, u32 size, i64 next}`
    /// (weighted by size).
    OracleGeneral,
}

impl Format {
    /// Every format with its command-line name.
    pub const ALL: [(&'static str, Format); 6] = [
        ("lirs", Format::Lirs),
        ("arc", Format::Arc),
        ("cache2k", Format::Cache2k),
        ("scarab", Format::Scarab),
        ("corda", Format::Corda),
        ("oracle-general", Format::OracleGeneral),
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Format::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether requests carry sizes (capacities are then in bytes).
    pub fn is_weighted(self) -> bool {
        self == Format::OracleGeneral
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown trace format `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Why a trace could not be read.
#[derive(Debug)]
pub struct TraceError {
    /// What was being read.
    pub context: String,
    /// What went wrong.
    pub detail: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.detail)
    }
}

impl std::error::Error for TraceError {}

/// Reads the whole trace at `path` in `format`.
pub fn read(path: &Path, format: Format) -> Result<Vec<Request>, TraceError> {
    let context = format!("{} ({})", path.display(), format.name());
    let fail = |detail: String| TraceError {
        context: context.clone(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let bytes = decompress(BufReader::new(file), format).map_err(fail)?;
    parse(&bytes, format).map_err(fail)
}

fn decompress(mut input: BufReader<std::fs::File>, format: Format) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match format {
        Format::Lirs | Format::Corda => {
            flate2::bufread::MultiGzDecoder::new(input)
                .read_to_end(&mut out)
                .map_err(|e| format!("not gzip: {e}"))?;
        }
        Format::Cache2k | Format::Scarab => {
            lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| format!("not xz: {e:?}"))?;
        }
        Format::Arc => {
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| format!("not zstd: {e}"))?;
            decoder
                .read_to_end(&mut out)
                .map_err(|e| format!("not zstd: {e}"))?;
        }
        Format::OracleGeneral => {
            input.read_to_end(&mut out).map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// Parses decompressed trace bytes.
pub fn parse(bytes: &[u8], format: Format) -> Result<Vec<Request>, String> {
    let unit = |key| Request { key, weight: 1 };
    match format {
        Format::Lirs => {
            let mut out = Vec::new();
            for (i, line) in bytes.lines().enumerate() {
                let line = line.map_err(|e| e.to_string())?;
                let line = line.trim();
                if line.is_empty() || line == "*" {
                    continue;
                }
                let key = line
                    .parse::<i64>()
                    .map_err(|_| format!("line {}: `{line}` is not an integer", i + 1))?;
                out.push(unit(key as u64));
            }
            Ok(out)
        }
        Format::Arc => {
            let mut out = Vec::new();
            for (i, line) in bytes.lines().enumerate() {
                let line = line.map_err(|e| e.to_string())?;
                let mut fields = line.split_whitespace();
                let (Some(start), Some(count)) = (fields.next(), fields.next()) else {
                    if line.trim().is_empty() {
                        continue;
                    }
                    return Err(format!("line {}: expected `start count ...`", i + 1));
                };
                let bad = || format!("line {}: `{line}` is not `start count ...`", i + 1);
                let start = start.parse::<u64>().map_err(|_| bad())?;
                let count = count.parse::<u64>().map_err(|_| bad())?;
                out.extend((start..start + count).map(unit));
            }
            Ok(out)
        }
        Format::Cache2k => fixed(bytes, 4, |b| {
            unit(i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64)
        }),
        Format::Scarab | Format::Corda => fixed(bytes, 8, |b| {
            let mut a = [0; 8];
            a.copy_from_slice(b);
            unit(i64::from_be_bytes(a) as u64)
        }),
        Format::OracleGeneral => fixed(bytes, 24, |b| {
            let mut id = [0; 8];
            id.copy_from_slice(&b[4..12]);
            let size = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
            Request {
                key: u64::from_le_bytes(id),
                weight: u64::from(size),
            }
        }),
    }
}

fn fixed(bytes: &[u8], size: usize, f: impl Fn(&[u8]) -> Request) -> Result<Vec<Request>, String> {
    if bytes.len() % size != 0 {
        return Err(format!(
            "{} bytes is not a whole number of {size}-byte records",
            bytes.len()
        ));
    }
    Ok(bytes.chunks_exact(size).map(f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_formats() {
        let lirs = parse(b"1\n*\n\n2\n1\n", Format::Lirs).unwrap();
        assert_eq!(lirs.iter().map(|r| r.key).collect::<Vec<_>>(), [1, 2, 1]);
        assert!(
            parse(b"1\nx\n", Format::Lirs)
                .unwrap_err()
                .contains("line 2")
        );
        let arc = parse(b"10 3 0 1\n5 1 0 2\n", Format::Arc).unwrap();
        assert_eq!(
            arc.iter().map(|r| r.key).collect::<Vec<_>>(),
            [10, 11, 12, 5]
        );
    }

    #[test]
    fn binary_formats() {
        let c2k = parse(&[0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff], Format::Cache2k).unwrap();
        assert_eq!(c2k[0].key, 7);
        assert_eq!(c2k[1].key, u64::MAX);
        let mut rec = vec![0u8; 24];
        rec[4] = 9;
        rec[12] = 0;
        rec[13] = 2; // size 512
        let og = parse(&rec, Format::OracleGeneral).unwrap();
        assert_eq!(
            og,
            [Request {
                key: 9,
                weight: 512
            }]
        );
        assert!(parse(&[0; 5], Format::Scarab).is_err());
    }

    #[test]
    fn format_names_round_trip() {
        for (name, format) in Format::ALL {
            assert_eq!(name.parse::<Format>().unwrap(), format);
            assert_eq!(format.name(), name);
        }
        assert!("arcc".parse::<Format>().unwrap_err().contains("lirs"));
    }
}
