//! Small, fast, non-cryptographic hashing.
//!
//! The checker hashes millions of search nodes and never sees adversarial keys, so SipHash's
//! DoS resistance buys nothing and costs most of the time spent in the cache. The crate is
//! std-only, hence this local copy of the FxHash idea (rotate, xor, multiply) rather than a
//! dependency.

use std::hash::{BuildHasherDefault, Hasher};

/// The multiplier used by rustc's FxHasher (derived from the golden ratio); odd, with well mixed
/// bits, so that one multiplication spreads every input bit upwards.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// A word-at-a-time hasher in the style of rustc's FxHasher.
///
/// Exists so that the per-key grouping map and the state component of cache keys hash in a
/// couple of instructions instead of a full SipHash round.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `BuildHasher` for std collections keyed by small integers, so they skip SipHash.
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// A strong 64-bit mixer (splitmix64's finalizer).
///
/// FxHash is weak in its low bits for a single word; the cache uses open addressing on low bits
/// and XOR-combines per-operation hashes (Zobrist hashing), both of which need every output bit to
/// depend on every input bit.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    #[test]
    fn equal_values_hash_equal_and_different_values_differ() {
        let build = FxBuildHasher::default();
        let h = |v: &dyn Fn(&mut FxHasher)| {
            let mut hasher = build.build_hasher();
            v(&mut hasher);
            hasher.finish()
        };
        assert_eq!(h(&|s| 7u64.hash(s)), h(&|s| 7u64.hash(s)));
        assert_ne!(h(&|s| 7u64.hash(s)), h(&|s| 8u64.hash(s)));
        assert_ne!(h(&|s| "abc".hash(s)), h(&|s| "abd".hash(s)));
        assert_ne!(mix64(0), mix64(1));
    }
}
