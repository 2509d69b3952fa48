//! `memcmp` and `bcmp` for the node's own module builds (`wasm32-unknown-unknown`). Rust's
//! compiler-builtins gives this target ones that compare byte by byte, and modules compare
//! many bytes: the WAF looks each request value up in its table of values known clean
//! (user agents, tokens, paths of 30 to 100 bytes) and its variables by name. These compare
//! eight bytes at a time; being strong symbols, they replace compiler-builtins' weak ones
//! when the module links.
#![allow(unsafe_code)]

/// How `a` orders against `b` (same length), as C's `memcmp` says it: the difference of
/// the first bytes that differ, 0 when none does.
pub(crate) fn compare(a: &[u8], b: &[u8]) -> i32 {
    let mut words_a = a.chunks_exact(8);
    let mut words_b = b.chunks_exact(8);
    for (x, y) in (&mut words_a).zip(&mut words_b) {
        let x = u64::from_le_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_le_bytes(y.try_into().unwrap_or_default());
        if x != y {
            // Little-endian: the lowest differing byte comes first in memory.
            let shift = (x ^ y).trailing_zeros() / 8 * 8;
            return i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8);
        }
    }
    for (x, y) in words_a.remainder().iter().zip(words_b.remainder()) {
        if x != y {
            return i32::from(*x) - i32::from(*y);
        }
    }
    0
}

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    // SAFETY: as for C's memcmp, the caller passes two readable regions of `n` bytes.
    unsafe {
        compare(
            core::slice::from_raw_parts(a, n),
            core::slice::from_raw_parts(b, n),
        )
    }
}

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract as memcmp's.
    unsafe { memcmp(a, b, n) }
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn orders_as_byte_slices_do_at_every_length_and_position() {
        for len in 0..40 {
            let base: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(compare(&base, &base), 0, "len {len}");
            for at in 0..len {
                for delta in [1u8, 128, 255] {
                    let mut other = base.clone();
                    other[at] = other[at].wrapping_add(delta);
                    let want = i32::from(base[at]) - i32::from(other[at]);
                    assert_eq!(compare(&base, &other), want, "len {len} at {at}");
                    assert_eq!(compare(&other, &base), -want, "len {len} at {at}");
                    assert_eq!(
                        compare(&base, &other).signum(),
                        base.cmp(&other) as i32,
                        "len {len} at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_first_difference_decides_not_a_later_one() {
        let a = b"abcdefghXjklmnop";
        let b = b"abcdefghAjklmnoz";
        assert!(compare(a, b) > 0);
        assert!(compare(b, a) < 0);
    }
}
