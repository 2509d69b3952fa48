//! Glob matching for ACLs and policy resources: `*` is any run of characters (slashes
//! included, as Akamai and CloudFront define it) and, where enabled, `?` is one character.
//! Hand-written: a regex engine in every module instance would cost more than the match.

/// True when `text` matches `pattern`. Linear in practice: on a mismatch the last `*`
/// absorbs one more character and matching resumes from there.
pub fn matches(pattern: &str, text: &str, question_mark: bool) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == t[ti] || (question_mark && p[pi] == b'?')) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("/secure/*", "/secure/a/b.ts", false));
        assert!(matches("/secure/*", "/secure/", false));
        assert!(!matches("/secure/*", "/secur", false));
        assert!(matches("*", "", false));
        assert!(matches("/a/*/seg*.ts", "/a/x/y/seg12.ts", false));
        assert!(!matches("/a/*/seg*.ts", "/a/x/y/seg12.m4s", false));
        assert!(matches("/v?/x", "/v1/x", true));
        assert!(!matches("/v?/x", "/v1/x", false));
        assert!(!matches("/exact", "/exact/more", false));
        // Pathological patterns stay cheap.
        let text = "a".repeat(10_000);
        assert!(!matches("*a*a*a*a*a*b", &text, false));
    }
}
