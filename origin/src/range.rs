//! Single byte ranges (RFC 9110 §14.1.2, §14.2), shared by the node's cache and the sample
//! origin.

/// What to do with a `Range` header given a representation of `total` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Serve the whole representation (no header, a multi-range or unit we don't serve,
    /// or a syntactically invalid header: RFC 9110 §14.2 says ignore it).
    Full,
    /// Serve bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */total`.
    Unsatisfiable,
}

pub fn parse(value: Option<&http::HeaderValue>, total: u64) -> RangeAnswer {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) if digits(last) => {
            let n: u64 = last.parse().unwrap_or(u64::MAX);
            if n == 0 || total == 0 {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Partial {
                start: total.saturating_sub(n),
                end: total - 1,
            }
        }
        // bytes=A-
        (false, true) if digits(first) => {
            let start: u64 = first.parse().unwrap_or(u64::MAX);
            if start >= total {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Partial {
                start,
                end: total - 1,
            }
        }
        // bytes=A-B
        (false, false) if digits(first) && digits(last) => {
            let start: u64 = first.parse().unwrap_or(u64::MAX);
            let end: u64 = last.parse().unwrap_or(u64::MAX);
            if end < start {
                return RangeAnswer::Full;
            }
            if start >= total {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Partial {
                start,
                end: end.min(total - 1),
            }
        }
        _ => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: &'static str, total: u64) -> RangeAnswer {
        parse(Some(&http::HeaderValue::from_static(v)), total)
    }

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(r("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(r("bytes=90-", 100), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=-10", 100), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=-1000", 100), Partial { start: 0, end: 99 });
        assert_eq!(r("bytes=50-500", 100), Partial { start: 50, end: 99 });
        assert_eq!(r("bytes=100-", 100), Unsatisfiable);
        assert_eq!(r("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(r("bytes=-0", 100), Unsatisfiable);
        assert_eq!(r("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(r("bytes=9-1", 100), Full);
        assert_eq!(r("bytes=0-1,5-6", 100), Full);
        assert_eq!(r("items=0-1", 100), Full);
        assert_eq!(r("bytes=a-b", 100), Full);
        assert_eq!(r("bytes=", 100), Full);
        assert_eq!(r("bytes=-", 100), Full);
        assert_eq!(r("bytes=+1-2", 100), Full);
        assert_eq!(parse(None, 100), Full);
    }
}
