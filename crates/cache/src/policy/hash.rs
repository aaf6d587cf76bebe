//! Hashing for keys that are already hashes.
//!
//! Policies track `u64` key hashes, not keys. A full SipHash of a value that is
//! already well mixed is wasted work on the hottest path of the cache, so the
//! policy's maps use this finaliser-only hasher instead.

use std::hash::{BuildHasherDefault, Hasher};

/// The 64-bit finaliser of MurmurHash3: a bijection with full avalanche.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// A `Hasher` for a single `u64`.
#[derive(Default)]
pub(crate) struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used for u64 keys; kept correct for any other input.
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = mix64(n);
    }
}

pub(crate) type BuildU64Hasher = BuildHasherDefault<U64Hasher>;
pub(crate) type U64Map<V> = std::collections::HashMap<u64, V, BuildU64Hasher>;
