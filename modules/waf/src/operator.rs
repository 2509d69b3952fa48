//! Operators (`@rx`, `@pm`, `@eq`, `@detectSQLi`, ...), compiled once when the rule set
//! loads: regular expressions and phrase automata are built here, never per request.

use crate::injection;
use crate::macros::{Resolve, Template};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use ipnet::IpNet;
use regex::bytes::{Regex, RegexBuilder};
use std::borrow::Cow;
use std::net::IpAddr;
use std::str::FromStr;

/// Compiled regexes may use this much memory each; some CRS expressions (e.g. the
/// assembled shell-command lists) are large.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

#[derive(Debug)]
pub enum Operator {
    Rx(Regex),
    /// An `@rx` whose pattern holds a macro (CRS has none): compiled when its expansion
    /// differs from the last one.
    RxDynamic(Box<DynamicRx>),
    Pm(AhoCorasick),
    Contains(Template),
    ContainsWord(Template),
    BeginsWith(Template),
    EndsWith(Template),
    Streq(Template),
    StrMatch(Box<memchr::memmem::Finder<'static>>),
    Within(Template),
    Eq(Template),
    Ge(Template),
    Gt(Template),
    Le(Template),
    Lt(Template),
    IpMatch(Vec<IpNet>),
    DetectSqli,
    DetectXss,
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    ValidateByteRange(Box<[bool; 256]>),
    UnconditionalMatch,
    NoMatch,
}

/// An `@rx` pattern with macros. Macros usually expand to the same text on every request
/// (values set at startup, like CRS's `tx.*` settings), so the last expansion and its
/// compiled regex (or its compile failure) are kept: a regex is compiled again only when
/// the expansion changes.
#[derive(Debug)]
pub struct DynamicRx {
    template: Template,
    /// Held only while comparing and replacing, never while matching.
    last: std::sync::Mutex<Option<(Vec<u8>, Option<Regex>)>>,
}

impl DynamicRx {
    /// The regex for this request's expansion; `None` when it does not compile.
    fn regex(&self, resolver: &dyn Resolve) -> Option<Regex> {
        let pattern = self.template.expand(resolver);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((seen, re)) if *seen == pattern => re.clone(),
            _ => {
                let re = compile_regex(&String::from_utf8_lossy(&pattern)).ok();
                *last = Some((pattern, re.clone()));
                re
            }
        }
    }
}

/// An operator's argument: a literal one (all but a few) is read in place, no copy per
/// call.
fn argument<'t>(t: &'t Template, resolver: &dyn Resolve) -> std::borrow::Cow<'t, [u8]> {
    match t.literal() {
        Some(l) => std::borrow::Cow::Borrowed(l.as_bytes()),
        None => std::borrow::Cow::Owned(t.expand(resolver)),
    }
}

/// Reads a data file named by `@pmFromFile` / `@ipMatchFromFile`, relative to the rule
/// file that names it.
pub type DataFiles<'a> = &'a dyn Fn(&str) -> Result<String, String>;

impl Operator {
    pub fn compile(name: &str, argument: &str, data: DataFiles<'_>) -> Result<Operator, String> {
        let template = || Template::parse(argument);
        Ok(match name.to_ascii_lowercase().as_str() {
            "rx" => {
                let t = template();
                match t.literal() {
                    Some(pattern) => Operator::Rx(compile_regex(pattern)?),
                    None => Operator::RxDynamic(Box::new(DynamicRx {
                        template: t,
                        last: std::sync::Mutex::new(None),
                    })),
                }
            }
            "pm" => Operator::Pm(phrases(argument.split_whitespace())?),
            "pmfromfile" | "pmf" => {
                let mut all = Vec::new();
                for file in argument.split_whitespace() {
                    all.push(data(file)?);
                }
                Operator::Pm(phrases(all.iter().flat_map(|text| data_lines(text)))?)
            }
            "contains" => Operator::Contains(template()),
            "containsword" => Operator::ContainsWord(template()),
            "beginswith" => Operator::BeginsWith(template()),
            "endswith" => Operator::EndsWith(template()),
            "streq" => Operator::Streq(template()),
            "strmatch" => Operator::StrMatch(Box::new(
                memchr::memmem::Finder::new(argument.as_bytes()).into_owned(),
            )),
            "within" => Operator::Within(template()),
            "eq" => Operator::Eq(template()),
            "ge" => Operator::Ge(template()),
            "gt" => Operator::Gt(template()),
            "le" => Operator::Le(template()),
            "lt" => Operator::Lt(template()),
            "ipmatch" => Operator::IpMatch(networks(argument.split(',').map(str::trim))?),
            "ipmatchfromfile" | "ipmatchf" => {
                let text = data(argument.trim())?;
                Operator::IpMatch(networks(data_lines(&text))?)
            }
            "detectsqli" => Operator::DetectSqli,
            "detectxss" => Operator::DetectXss,
            "validateurlencoding" => Operator::ValidateUrlEncoding,
            "validateutf8encoding" => Operator::ValidateUtf8Encoding,
            "validatebyterange" => Operator::ValidateByteRange(byte_ranges(argument)?),
            "unconditionalmatch" => Operator::UnconditionalMatch,
            "nomatch" => Operator::NoMatch,
            other => return Err(format!("unsupported operator `@{other}`")),
        })
    }

    /// The argument, when it may hold macros.
    pub fn template(&self) -> Option<&Template> {
        match self {
            Operator::RxDynamic(d) => Some(&d.template),
            Operator::Contains(t)
            | Operator::ContainsWord(t)
            | Operator::BeginsWith(t)
            | Operator::EndsWith(t)
            | Operator::Streq(t)
            | Operator::Within(t)
            | Operator::Eq(t)
            | Operator::Ge(t)
            | Operator::Gt(t)
            | Operator::Le(t)
            | Operator::Lt(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the result depends on the value alone (no macro to expand); an operator that
    /// always or never matches gains nothing from remembering.
    pub fn is_pure(&self) -> bool {
        match self {
            Operator::Rx(_)
            | Operator::Pm(_)
            | Operator::StrMatch(_)
            | Operator::IpMatch(_)
            | Operator::DetectSqli
            | Operator::DetectXss
            | Operator::ValidateUrlEncoding
            | Operator::ValidateUtf8Encoding
            | Operator::ValidateByteRange(_) => true,
            // `@rx` with a macro included: its template is not literal.
            other => other.template().is_some_and(|t| t.literal().is_some()),
        }
    }

    /// Whether `value` matches; with `captures`, fills `TX:0..9` as ModSecurity's
    /// `capture` does (the whole match, then the groups).
    pub fn matches(
        &self,
        value: &[u8],
        resolver: &dyn Resolve,
        captures: Option<&mut Vec<Vec<u8>>>,
    ) -> bool {
        let expand = |t| argument(t, resolver);
        match self {
            Operator::Rx(re) => regex_match(re, value, captures),
            // A `Regex` clone shares the compiled program: no lock is held while matching.
            Operator::RxDynamic(d) => d
                .regex(resolver)
                .is_some_and(|re| regex_match(&re, value, captures)),
            Operator::Pm(ac) => match ac.find(value) {
                Some(m) => {
                    if let Some(c) = captures {
                        c.clear();
                        c.push(value[m.range()].to_vec());
                    }
                    true
                }
                None => false,
            },
            Operator::Contains(t) => {
                let needle = expand(t);
                memchr::memmem::find(value, &needle).is_some()
            }
            Operator::ContainsWord(t) => contains_word(value, &expand(t)),
            Operator::BeginsWith(t) => value.starts_with(&expand(t)),
            Operator::EndsWith(t) => value.ends_with(&expand(t)),
            Operator::Streq(t) => value == expand(t).as_ref(),
            Operator::StrMatch(finder) => finder.find(value).is_some(),
            // The empty string is within anything (ModSecurity v2 and v3, Coraza): an empty
            // REQUEST_METHOD is not "outside" `tx.allowed_methods`.
            Operator::Within(t) => {
                value.is_empty() || memchr::memmem::find(&expand(t), value).is_some()
            }
            Operator::Eq(t) => number(value) == number(&expand(t)),
            Operator::Ge(t) => number(value) >= number(&expand(t)),
            Operator::Gt(t) => number(value) > number(&expand(t)),
            Operator::Le(t) => number(value) <= number(&expand(t)),
            Operator::Lt(t) => number(value) < number(&expand(t)),
            Operator::IpMatch(nets) => std::str::from_utf8(value)
                .ok()
                .and_then(|s| IpAddr::from_str(s.trim()).ok())
                .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            Operator::DetectSqli => match injection::sqli_fingerprint(value) {
                Some(fingerprint) => {
                    if let Some(c) = captures {
                        c.clear();
                        c.push(fingerprint.into_bytes());
                    }
                    true
                }
                None => false,
            },
            Operator::DetectXss => injection::is_xss(value),
            Operator::ValidateUrlEncoding => !valid_url_encoding(value),
            Operator::ValidateUtf8Encoding => std::str::from_utf8(value).is_err(),
            Operator::ValidateByteRange(allowed) => value.iter().any(|&b| !allowed[b as usize]),
            Operator::UnconditionalMatch => true,
            Operator::NoMatch => false,
        }
    }
}

/// ModSecurity compiles with PCRE's DOTALL and DOLLAR_ENDONLY: `.` matches a newline, `$`
/// only the very end. Byte semantics first (PCRE without UTF mode: `\w` is ASCII, `.` one
/// byte); a pattern that needs Unicode (a `\x{...}` above 0xff) compiles in Unicode mode.
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    let bytes_pattern = byte_escapes(pattern);
    let build = |unicode: bool| {
        let pattern = if unicode { pattern } else { &bytes_pattern };
        RegexBuilder::new(pattern)
            .unicode(unicode)
            .dot_matches_new_line(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    build(false).or_else(|_| build(true)).map_err(|e| match e {
        regex::Error::Syntax(s) => format!(
            "regular expression does not compile: {}",
            s.lines().last().unwrap_or(&s)
        ),
        other => format!("regular expression does not compile: {other}"),
    })
}

/// PCRE without UTF mode reads `\x{e2}` as the byte 0xE2, but the `regex` crate reads it
/// as the character U+00E2 (two bytes in UTF-8, and refused inside a byte class); only
/// its fixed form `\xe2` is a byte. CRS spells UTF-8 sequences byte by byte this way
/// (`\x{e2}\x80[\x98\x99]` in 942420, `[^>\x{be}]` in 941310), so a brace escape of at
/// most 0xff becomes the fixed form. Other escapes (`\\x{e2}` is a backslash, then text)
/// are copied as they are.
fn byte_escapes(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains("\\x{") {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        let brace = escape
            .strip_prefix("\\x{")
            .and_then(|r| r.split_once('}'))
            .filter(|(hex, _)| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|(hex, _)| Some((hex.len(), u8::from_str_radix(hex, 16).ok()?)));
        match brace {
            Some((digits, byte)) => {
                out.push_str(&format!("\\x{byte:02x}"));
                rest = &escape[3 + digits + 1..];
            }
            None => {
                // The backslash and the character it escapes, whole (it may be multi-byte).
                let len = escape[1..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&escape[..1 + len]);
                rest = &escape[1 + len..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn regex_match(re: &Regex, value: &[u8], captures: Option<&mut Vec<Vec<u8>>>) -> bool {
    match captures {
        None => re.is_match(value),
        // Most values do not match: the plain search is much cheaper than capturing.
        Some(_) if !re.is_match(value) => false,
        Some(out) => match re.captures(value) {
            Some(caps) => {
                out.clear();
                for group in caps.iter().take(10) {
                    out.push(group.map(|m| m.as_bytes().to_vec()).unwrap_or_default());
                }
                true
            }
            None => false,
        },
    }
}

fn phrases<'a>(list: impl Iterator<Item = &'a str>) -> Result<AhoCorasick, String> {
    let list: Vec<&str> = list.filter(|p| !p.is_empty()).collect();
    if list.is_empty() {
        return Err("phrase list is empty".into());
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(&list)
        .map_err(|e| format!("phrase list does not compile: {e}"))
}

/// Data file lines: blank lines and `#` comments are skipped.
fn data_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn networks<'a>(list: impl Iterator<Item = &'a str>) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for item in list.filter(|s| !s.is_empty()) {
        let net = IpNet::from_str(item)
            .or_else(|_| IpAddr::from_str(item).map(IpNet::from))
            .map_err(|_| format!("`{item}` is not an IP address or network"))?;
        out.push(net);
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(out)
}

/// `9,10,13,32-126` into the set of allowed bytes.
fn byte_ranges(argument: &str) -> Result<Box<[bool; 256]>, String> {
    let mut allowed = Box::new([false; 256]);
    for part in argument.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<u8>()
                .map_err(|_| format!("`{part}` is not a byte or a range of bytes (0-255)"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("range `{part}` runs backwards"));
        }
        for b in lo..=hi {
            allowed[b as usize] = true;
        }
    }
    Ok(allowed)
}

/// ModSecurity reads numbers as C's `atoi`: leading blanks, a sign, digits; anything else
/// (or nothing) is 0.
pub(crate) fn number(value: &[u8]) -> i64 {
    let s = value.trim_ascii_start();
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &b in digits.iter().take_while(|b| b.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if negative {
        -n
    } else {
        n
    }
}

fn contains_word(value: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    memchr::memmem::find_iter(value, word).any(|at| {
        let before = at == 0 || !is_word(value[at - 1]);
        let end = at + word.len();
        let after = end == value.len() || !is_word(value[end]);
        before && after
    })
}

/// Every `%` is followed by two hex digits.
fn valid_url_encoding(value: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = memchr::memchr(b'%', &value[i..]) {
        let at = i + at;
        match value.get(at + 1..at + 3) {
            Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i = at + 3,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::macros::MacroVar;

    struct Tx;
    impl Resolve for Tx {
        fn resolve(&self, var: &MacroVar, out: &mut Vec<u8>) {
            if var.key.as_deref() == Some("limit") {
                out.extend_from_slice(b"5");
            } else if var.key.as_deref() == Some("methods") {
                out.extend_from_slice(b"GET HEAD POST");
            }
        }
    }

    fn op(name: &str, arg: &str) -> Operator {
        Operator::compile(name, arg, &|f| Err(format!("no file {f}"))).unwrap()
    }

    fn check(name: &str, arg: &str, value: &str) -> bool {
        op(name, arg).matches(value.as_bytes(), &Tx, None)
    }

    #[test]
    fn regexes_use_modsecurity_flags() {
        assert!(check("rx", "a.b", "a\nb"), "DOTALL");
        assert!(!check("rx", "a$", "a\n"), "DOLLAR_ENDONLY");
        assert!(check("rx", r"\xff", "\u{ff}") || op("rx", r"\xff").matches(&[0xff], &Tx, None));
        let mut caps = Vec::new();
        assert!(op("rx", "(a)(b)?c").matches(b"xac", &Tx, Some(&mut caps)));
        assert_eq!(caps, vec![b"ac".to_vec(), b"a".to_vec(), vec![]]);
        assert!(Operator::compile("rx", "(", &|_| Err(String::new())).is_err());
    }

    #[test]
    fn brace_hex_escapes_match_single_bytes_as_in_pcre() {
        // U+2018 (left single quote) is e2 80 98 in UTF-8.
        let re = compile_regex(r"(?i)a\x{e2}\x80[\x98\x99]b|[^>\x{be}]\x{bc}").unwrap();
        assert!(re.is_match("a\u{2018}b".as_bytes()));
        assert!(re.is_match(b"x\xbc"));
        assert!(
            !re.is_match("a\u{e2}b".as_bytes()),
            "not the character U+00E2"
        );
        assert_eq!(byte_escapes(r"\\x{e2}\x{41}\é"), r"\\x{e2}\x41\é");
        assert_eq!(byte_escapes(r"\x{100}\x{zz}\"), r"\x{100}\x{zz}\");
    }

    #[test]
    fn phrase_lists_are_case_insensitive() {
        assert!(check("pm", "select union", "x UNION y"));
        assert!(!check("pm", "select union", "onion"));
        let files = |name: &str| -> Result<String, String> {
            assert_eq!(name, "words.data");
            Ok("# comment\n\nfoo\n  bar  \n".into())
        };
        let o = Operator::compile("pmFromFile", "words.data", &files).unwrap();
        assert!(o.matches(b"xBARx", &Tx, None));
        assert!(!o.matches(b"comment", &Tx, None));
        assert!(
            Operator::compile("pmFromFile", "missing", &|f| Err(format!("{f}: not found")))
                .is_err()
        );
    }

    /// Resolves `tx.pattern` to whatever the test sets.
    struct Pattern(&'static str);
    impl Resolve for Pattern {
        fn resolve(&self, _: &MacroVar, out: &mut Vec<u8>) {
            out.extend_from_slice(self.0.as_bytes());
        }
    }

    #[test]
    fn a_regex_with_macros_is_compiled_again_only_when_its_expansion_changes() {
        let o = op("rx", "^%{tx.pattern}$");
        let Operator::RxDynamic(d) = &o else {
            panic!("{o:?}")
        };
        let last = || {
            d.last
                .lock()
                .unwrap()
                .as_ref()
                .map(|(p, re)| (p.clone(), re.is_some()))
        };
        assert!(o.matches(b"abc", &Pattern("a.c"), None));
        assert_eq!(last(), Some((b"^a.c$".to_vec(), true)));
        // Same expansion: the kept regex answers.
        assert!(!o.matches(b"abcd", &Pattern("a.c"), None));
        // ... and it is the kept one, not a new compile: swapped for one that matches only
        // "zzz", it decides.
        let kept = d
            .last
            .lock()
            .unwrap()
            .replace((b"^a.c$".to_vec(), Some(compile_regex("^zzz$").unwrap())));
        assert!(!o.matches(b"abc", &Pattern("a.c"), None));
        assert!(o.matches(b"zzz", &Pattern("a.c"), None));
        *d.last.lock().unwrap() = kept;
        // Another expansion: compiled again, the old regex is not used.
        assert!(o.matches(b"abcd", &Pattern("a.c."), None));
        assert!(!o.matches(b"abc", &Pattern("a.c."), None));
        assert_eq!(last(), Some((b"^a.c.$".to_vec(), true)));
        // One that does not compile never matches, and its failure is kept too.
        assert!(!o.matches(b"(", &Pattern("("), None));
        assert_eq!(last(), Some((b"^($".to_vec(), false)));
        assert!(o.matches(b"x", &Pattern("x"), None));
    }

    #[test]
    fn string_and_number_operators_expand_macros() {
        assert!(check("within", "%{tx.methods}", "HEAD"));
        assert!(!check("within", "%{tx.methods}", "PUT"));
        assert!(check("within", "%{tx.methods}", ""));
        assert!(check("ge", "%{tx.limit}", "7"));
        assert!(!check("lt", "%{tx.limit}", "7"));
        assert!(check("eq", "0", "abc"), "atoi of text is 0");
        assert!(check("eq", "-3", " -3x"));
        assert!(check("containsWord", "select", "a select b"));
        assert!(!check("containsWord", "select", "selected"));
        assert!(check("beginsWith", "/a", "/abc") && check("endsWith", "bc", "/abc"));
        assert!(check("streq", "x", "x") && !check("streq", "x", "xx"));
        assert!(check("strmatch", "bc", "abcd"));
    }

    #[test]
    fn validation_operators_fire_on_bad_input() {
        assert!(check("validateUrlEncoding", "", "a%2"));
        assert!(check("validateUrlEncoding", "", "a%zz"));
        assert!(!check("validateUrlEncoding", "", "a%20b"));
        assert!(op("validateUtf8Encoding", "").matches(&[0xc3, 0x28], &Tx, None));
        assert!(!check("validateUtf8Encoding", "", "héllo"));
        assert!(check("validateByteRange", "32-126", "tab\there"));
        assert!(!check("validateByteRange", "9,10,13,32-126", "tab\there"));
        assert!(Operator::compile("validateByteRange", "5-300", &|_| Err(String::new())).is_err());
    }

    #[test]
    fn ip_match_takes_addresses_and_networks() {
        assert!(check("ipMatch", "127.0.0.1,10.0.0.0/8, ::1", "10.2.3.4"));
        assert!(check("ipMatch", "127.0.0.1,10.0.0.0/8, ::1", "::1"));
        assert!(!check("ipMatch", "127.0.0.1", "127.0.0.2"));
        assert!(Operator::compile("ipMatch", "nope", &|_| Err(String::new())).is_err());
    }

    #[test]
    fn unknown_operators_are_named() {
        let e = Operator::compile("rbl", "x", &|_| Err(String::new())).unwrap_err();
        assert!(e.contains("@rbl"), "{e}");
    }
}
