//! Hashes fixed by their definition (not `std`'s, which may change between releases), for
//! choices that must come out the same on every replica, build and machine.

/// 64-bit FNV-1a: `h ← (h ⊕ byte) · 0x100000001b3` from the offset basis `0xcbf29ce484222325`.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    fnv1a_from(0xcbf2_9ce4_8422_2325, bytes)
}

/// [`fnv1a`] continued from the state `h` it reached over a prefix:
/// `fnv1a(a ‖ b) = fnv1a_from(fnv1a(a), b)`, so a shared prefix is hashed once.
pub fn fnv1a_from(h: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes
        .into_iter()
        .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// MurmurHash3's 64-bit finaliser `fmix64`: `h ^= h≫33; h ·= 0xff51afd7ed558ccd; h ^= h≫33;
/// h ·= 0xc4ceb9fe1a85ec53; h ^= h≫33`. FNV-1a mixes its last bytes into the low bits only, so
/// keys that differ in their tail (`agent-001`, `agent-002`) get nearly equal high bits; a
/// comparison of hashes (rendezvous choice, a ring position) needs every bit mixed.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// [`fnv1a`] then [`fmix64`]: a hash whose every bit depends on every input byte.
pub fn mixed(bytes: impl IntoIterator<Item = u8>) -> u64 {
    fmix64(fnv1a(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean number of the top 16 bits that differ between the hashes of `key-NNNN` and
    /// `key-NNNN'` (last byte changed), over 1,000 keys: 8 for a well-mixed hash.
    fn top_bits_flipped(hash: impl Fn(&[u8]) -> u64) -> f64 {
        let total: u32 = (0..1000)
            .map(|i| {
                let a = format!("key-{i:04}a");
                let b = format!("key-{i:04}b");
                ((hash(a.as_bytes()) ^ hash(b.as_bytes())) >> 48).count_ones()
            })
            .sum();
        f64::from(total) / 1000.0
    }

    #[test]
    fn the_mixed_hash_changes_half_the_high_bits_when_only_the_last_byte_changes_and_plain_fnv_does_not() {
        let mixed_flips = top_bits_flipped(|b| mixed(b.iter().copied()));
        assert!((7.0..9.0).contains(&mixed_flips), "{mixed_flips}");
        // Positive control: FNV-1a alone barely moves its high bits for a changed last byte.
        let fnv_flips = top_bits_flipped(|b| fnv1a(b.iter().copied()));
        assert!(fnv_flips < 4.0, "{fnv_flips}");
        assert_eq!(fmix64(0), 0);
    }

    #[test]
    fn fnv1a_continued_from_a_prefix_is_fnv1a_of_the_whole() {
        assert_eq!(fnv1a_from(fnv1a("foo".bytes()), "bar".bytes()), fnv1a("foobar".bytes()));
        assert_ne!(fnv1a_from(fnv1a("foo".bytes()), "baz".bytes()), fnv1a("foobar".bytes()));
    }

    #[test]
    fn fnv1a_gives_the_published_test_vectors() {
        assert_eq!(fnv1a("".bytes()), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a".bytes()), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar".bytes()), 0x8594_4171_f739_67e8);
    }
}
