//! `@detectSQLi` and `@detectXSS`: libinjection, through its pure-Rust port (vendored with
//! fixes, see `vendor/libinjectionrs/VENDORED.md`).

/// The libinjection fingerprint (`s&sos`) when `value` tokenizes as SQL injection.
pub fn sqli_fingerprint(value: &[u8]) -> Option<String> {
    let result = libinjectionrs::detect_sqli(value);
    // The fingerprint of benign input is a partial one: only read it on a detection.
    if result.is_injection() {
        Some(
            result
                .fingerprint
                .map(|f| f.as_str().to_owned())
                .unwrap_or_default(),
        )
    } else {
        None
    }
}

pub fn is_xss(value: &[u8]) -> bool {
    libinjectionrs::detect_xss(value).is_injection()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_attacks_and_benign_values() {
        assert_eq!(sqli_fingerprint(b"1' OR '1'='1").as_deref(), Some("s&sos"));
        assert_eq!(
            sqli_fingerprint(b"1 UNION SELECT 1,2,3--").as_deref(),
            Some("1UE1c")
        );
        // Fixed in the vendored copy: three-word keywords and case-insensitive INTO.
        assert!(sqli_fingerprint(
            b"-1 LOCK IN SHARE MODE UNION SELECT table_name from information_schema.tables"
        )
        .is_some());
        assert!(sqli_fingerprint(b"1 into outfile 'x'").is_some());
        for benign in [
            "hello world",
            "O'Reilly",
            "select your option",
            "12345",
            "a@b.example",
            "token=abc.def.ghi&exp=1700000000",
        ] {
            assert_eq!(sqli_fingerprint(benign.as_bytes()), None, "{benign}");
        }
        assert!(is_xss(b"<script>alert(1)</script>"));
        assert!(is_xss(b"<img src=x onerror=alert(1)>"));
        assert!(
            is_xss(b"<img src=x onerrorX=alert(1)>"),
            "event attributes match by prefix"
        );
        assert!(!is_xss(b"a < b"));
        assert!(!is_xss(b"plain text"));
    }
}
