// This module includes the auto-generated SQL data from build.rs

// Include the generated data at compile time
#[cfg(build_generated)]
include!(concat!(env!("OUT_DIR"), "/sqli_data.rs"));

// Fallback to committed data when submodule is not available (e.g., on crates.io)
#[cfg(not(build_generated))]
include!("generated_data.rs");

// Additional helper functions can be added here
impl CharType {
    pub fn is_white(&self) -> bool {
        matches!(self, CharType::White)
    }
    
    pub fn is_word(&self) -> bool {
        matches!(self, CharType::Word | CharType::BWord)
    }
    
    pub fn is_string_start(&self) -> bool {
        matches!(self, CharType::String | CharType::BString | CharType::EString | 
                      CharType::NQString | CharType::QString | 
                      CharType::UString | CharType::XString)
    }
    
    pub fn is_operator(&self) -> bool {
        matches!(self, CharType::Op1 | CharType::Op2 | CharType::Unary)
    }
    
    pub fn is_number(&self) -> bool {
        matches!(self, CharType::Number)
    }
}

// Helper for getting character type
pub fn get_char_type(ch: u8) -> CharType {
    CHAR_MAP[ch as usize]
}

// ---------------------------------------------------------------------------
// Allocation-free keyword lookup.
//
// `lookup_word` above upper-cases into a fresh `String` and binary-searches the
// 9,352-entry table with `memcmp` on every call; the tokenizer calls it for
// every word and every two-character operator, several times per input. The
// table below is an open-addressing hash index over `SQL_KEYWORDS`, built at
// compile time, and looked up with an ASCII case-insensitive hash, so no copy
// of the word is made. Every table word is ASCII upper case and the table is
// sorted without duplicates, so an exact case-insensitive hit here is exactly
// a hit of the binary search on the upper-cased word.
// ---------------------------------------------------------------------------

const KW_INDEX_BITS: u32 = 15;
const KW_INDEX_SIZE: usize = 1 << KW_INDEX_BITS;
const KW_EMPTY: u16 = u16::MAX;
/// Longest word in `SQL_KEYWORDS` (longer input can never match).
const KW_MAX_LEN: usize = kw_max_len();

const fn kw_max_len() -> usize {
    let mut m = 0;
    let mut i = 0;
    while i < SQL_KEYWORDS.len() {
        let l = SQL_KEYWORDS[i].word.len();
        if l > m {
            m = l;
        }
        i += 1;
    }
    m
}

#[inline(always)]
const fn kw_upper(b: u8) -> u8 {
    if b >= b'a' && b <= b'z' { b - 0x20 } else { b }
}

/// Case-folding hash: every byte is or-ed with 0x20, which maps both cases of
/// a letter to the same value (it also folds a few non-letters together,
/// which only adds collisions; a hit is confirmed by an exact comparison).
/// Reads the word as up to four little-endian 8-byte chunks (zero padded).
#[inline(always)]
const fn kw_hash(word: &[u8]) -> usize {
    let n = word.len();
    let mut h: u64 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut i = 0;
    while i < n {
        let mut chunk: u64 = 0;
        let mut j = 0;
        while j < 8 && i + j < n {
            chunk |= ((word[i + j] | 0x20) as u64) << (8 * j);
            j += 1;
        }
        h = (h ^ chunk).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        i += 8;
    }
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((h >> 40) as usize) & (KW_INDEX_SIZE - 1)
}

/// Runtime version of `kw_hash` (same value: see the `kw_hash_rt_matches_const`
/// test), reading whole 8-byte chunks.
#[inline(always)]
fn kw_hash_rt(word: &[u8]) -> usize {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let n = word.len();
    let mut h: u64 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut chunks = word.chunks_exact(8);
    for c in chunks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ (u64::from_le_bytes(w) | FOLD)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    let r = chunks.remainder();
    if !r.is_empty() {
        let mut chunk: u64 = 0;
        for (j, &b) in r.iter().enumerate() {
            chunk |= ((b | 0x20) as u64) << (8 * j);
        }
        h = (h ^ chunk).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((h >> 40) as usize) & (KW_INDEX_SIZE - 1)
}

#[allow(long_running_const_eval)]
const fn kw_build_index() -> [u16; KW_INDEX_SIZE] {
    let mut t = [KW_EMPTY; KW_INDEX_SIZE];
    let mut i = 0;
    while i < SQL_KEYWORDS.len() {
        let mut slot = kw_hash(SQL_KEYWORDS[i].word.as_bytes());
        while t[slot] != KW_EMPTY {
            slot = (slot + 1) & (KW_INDEX_SIZE - 1);
        }
        t[slot] = i as u16;
        i += 1;
    }
    t
}

static KW_INDEX: [u16; KW_INDEX_SIZE] = kw_build_index();

/// Quick reject filter: for each word length, the set of (upper-cased) first
/// bytes and the set of last bytes that occur in the table.
const fn kw_build_filter(last: bool) -> [[u64; 4]; KW_MAX_LEN + 1] {
    let mut t = [[0u64; 4]; KW_MAX_LEN + 1];
    let mut i = 0;
    while i < SQL_KEYWORDS.len() {
        let w = SQL_KEYWORDS[i].word.as_bytes();
        if !w.is_empty() {
            let c = if last { w[w.len() - 1] } else { w[0] } as usize;
            t[w.len()][c >> 6] |= 1u64 << (c & 63);
        }
        i += 1;
    }
    t
}

static KW_FIRST: [[u64; 4]; KW_MAX_LEN + 1] = kw_build_filter(false);
static KW_LAST: [[u64; 4]; KW_MAX_LEN + 1] = kw_build_filter(true);

/// `word` equals `kw` (upper case) after ASCII upper-casing `word`.
#[inline(always)]
fn kw_eq(kw: &[u8], word: &[u8]) -> bool {
    kw.len() == word.len() && kw.iter().zip(word).all(|(&k, &w)| k == kw_upper(w))
}

/// Raw table type byte (`b'k'`, `b'f'`, `b'n'`, `b'F'`, ...) of `word`
/// (matched ASCII case-insensitively), or `None` if it is not in the table.
#[inline]
pub fn keyword_type_byte(word: &[u8]) -> Option<u8> {
    let n = word.len();
    if n == 0 || n > KW_MAX_LEN {
        return None;
    }
    if !keyword_may_match(n, word[0], word[n - 1]) {
        return None;
    }
    keyword_probe(word)
}

/// Cheap pre-check: can a word of length `n` whose first and last bytes are
/// `first` and `last` be in the table? (`false` means it certainly is not.)
#[inline(always)]
pub(crate) fn keyword_may_match(n: usize, first: u8, last: u8) -> bool {
    if n == 0 || n > KW_MAX_LEN {
        return false;
    }
    let f = kw_upper(first) as usize;
    let l = kw_upper(last) as usize;
    KW_FIRST[n][f >> 6] & (1u64 << (f & 63)) != 0 && KW_LAST[n][l >> 6] & (1u64 << (l & 63)) != 0
}

/// Hash-table probe for a non-empty word of at most `KW_MAX_LEN` bytes.
#[inline]
fn keyword_probe(word: &[u8]) -> Option<u8> {
    let mut slot = kw_hash_rt(word);
    loop {
        let idx = KW_INDEX[slot];
        if idx == KW_EMPTY {
            return None;
        }
        let kw = &SQL_KEYWORDS[idx as usize];
        if kw_eq(kw.word.as_bytes(), word) {
            return Some(kw.token_type);
        }
        slot = (slot + 1) & (KW_INDEX_SIZE - 1);
    }
}

/// Token type of a table type byte, as `lookup_word` maps it.
#[inline]
pub fn keyword_byte_to_token_type(b: u8) -> TokenType {
    match b {
        b'k' => TokenType::Keyword,
        b'f' => TokenType::Function,
        b'U' => TokenType::Union,
        b'E' => TokenType::Expression,
        b'T' => TokenType::Tsql,
        b't' => TokenType::SqlType,
        b'o' => TokenType::Operator,
        b'&' => TokenType::LogicOperator,
        b'v' => TokenType::Variable,
        b'1' => TokenType::Number,
        b'A' => TokenType::Collate,
        b'B' => TokenType::Group,
        b'F' => TokenType::Fingerprint,
        _ => TokenType::Bareword,
    }
}

/// Same result as `lookup_word(word)` for any byte string (bytes that are not
/// valid UTF-8 can never match, as the table is ASCII), without allocating.
#[inline]
pub fn lookup_word_bytes(word: &[u8]) -> TokenType {
    match keyword_type_byte(word) {
        Some(b) => keyword_byte_to_token_type(b),
        None => TokenType::Bareword,
    }
}

#[cfg(test)]
mod fast_lookup_tests {
    use super::*;

    #[test]
    fn kw_hash_rt_matches_const() {
        for k in SQL_KEYWORDS {
            let w = k.word.as_bytes();
            assert_eq!(kw_hash(w), kw_hash_rt(w));
            let lower = k.word.to_ascii_lowercase();
            assert_eq!(kw_hash(w), kw_hash_rt(lower.as_bytes()));
        }
        let mut seed = 0x0123_4567_89ab_cdefu64;
        for len in 0..40usize {
            for _ in 0..200 {
                let v: Vec<u8> = (0..len).map(|_| { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; seed as u8 }).collect();
                assert_eq!(kw_hash(&v), kw_hash_rt(&v));
            }
        }
    }

    #[test]
    fn fast_lookup_matches_lookup_word() {
        for k in SQL_KEYWORDS {
            for w in [k.word.to_string(), k.word.to_ascii_lowercase()] {
                assert_eq!(lookup_word_bytes(w.as_bytes()), lookup_word(&w), "{}", w);
                assert_eq!(keyword_type_byte(w.as_bytes()), Some(k.token_type), "{}", w);
            }
            let mut longer = k.word.to_string();
            longer.push('X');
            assert_eq!(lookup_word_bytes(longer.as_bytes()), lookup_word(&longer));
            let shorter = &k.word[..k.word.len() - 1];
            assert_eq!(lookup_word_bytes(shorter.as_bytes()), lookup_word(shorter));
        }
    }
}
