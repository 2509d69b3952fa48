// SQL injection blacklist checker - matches C implementation exactly

use super::sqli_data;

/// Check if a fingerprint is blacklisted
/// This matches libinjection_sqli_blacklist from the C version
pub fn is_blacklisted(fingerprint: &str) -> bool {
    is_blacklisted_bytes(fingerprint.as_bytes())
}

/// Byte version of [`is_blacklisted`], without allocating.
pub fn is_blacklisted_bytes(fingerprint: &[u8]) -> bool {
    // Match the C version: convert v0 fingerprint to v1 format
    // v0: up to 5 chars, mixed case
    // v1: '0' prefix, up to 5 more chars, upper case

    if fingerprint.is_empty() {
        return false;
    }

    // Build the v1 fingerprint with '0' prefix; the keyword lookup is ASCII
    // case-insensitive, which is the upper-casing of the C version.
    // Anything longer than a table word cannot match.
    let mut fp2 = [0u8; 16];
    if fingerprint.len() + 1 > fp2.len() {
        return false;
    }
    fp2[0] = b'0';
    fp2[1..=fingerprint.len()].copy_from_slice(fingerprint);

    // Check if this fingerprint exists in the keywords table with type 'F'
    sqli_data::keyword_type_byte(&fp2[..=fingerprint.len()]) == Some(b'F')
}
