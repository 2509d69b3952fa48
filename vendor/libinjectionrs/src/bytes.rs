//! Small byte-search helpers (safe Rust, word-at-a-time).

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Position of the first `needle` in `hay`, like `hay.iter().position(|&b| b == needle)`,
/// but testing eight bytes at a time.
#[inline]
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    let rep = LO.wrapping_mul(needle as u64);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0usize;
    for c in chunks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w) ^ rep;
        // The lowest set bit of t marks the first zero byte of x exactly
        // (bits above it may be false positives, which are not used).
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(base + (t.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&b| b == needle).map(|p| base + p)
}

#[cfg(test)]
mod tests {
    use super::find_byte;

    #[test]
    fn find_byte_matches_position() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in 0..80usize {
            for _ in 0..50 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        [0u8, 1, 0x80, 0xff, b'<', b'a', 0x7f, 0xfe][(seed % 8) as usize]
                    })
                    .collect();
                for needle in [0u8, 1, 0x80, 0xff, b'<', b'a', 0x7f, 0xfe, b'z'] {
                    assert_eq!(find_byte(needle, &v), v.iter().position(|&b| b == needle));
                }
            }
        }
    }
}
