//! Parsers that turn request parts into ModSecurity collections: query strings and
//! urlencoded bodies, `Cookie` headers, JSON bodies and `multipart/form-data` bodies.
//!
//! All data is bytes (JSON strings excepted: JSON is UTF-8, and ModSecurity's yajl validates
//! it). Semantics follow libModSecurity v3 (`src/transaction.cc`,
//! `src/request_body_processor/{json,multipart}.cc`); deliberate differences are marked.
//! Every parser is linear in its input, iterative (no recursion) and panic-free.

use memchr::{memchr, memchr2, memmem};
use std::collections::BTreeSet;

/// One name/value pair in the order it appeared.
pub type Pair = (Vec<u8>, Vec<u8>);

/// C `isspace` (the "C" locale).
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Strips every trailing CR and LF (ModSecurity's `chomp`).
fn chomp(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(chomp(b)).into_owned()
}

/// `Ok` if `cond`, else the error `err` makes (only then).
fn need<E>(cond: bool, err: impl FnOnce() -> E) -> Result<(), E> {
    if cond {
        Ok(())
    } else {
        Err(err())
    }
}

fn check(cond: bool, msg: &str) -> Result<(), String> {
    need(cond, || msg.to_string())
}

/// Splits at the first `=`: no `=` gives an empty value.
fn split_eq(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr(b'=', s) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

// ---- application/x-www-form-urlencoded and query strings ----------------------------------

/// ModSecurity's non-strict URL decoding: `+` is a space, `%XX` a byte, an invalid or
/// truncated `%` sequence is kept as it is; the flag says whether one was seen.
pub fn url_decode_nonstrict(input: &[u8]) -> (Vec<u8>, bool) {
    let (mut out, mut invalid, mut i) = (Vec::with_capacity(input.len()), false, 0);
    while let Some(off) = input.get(i..).and_then(|rest| memchr2(b'%', b'+', rest)) {
        out.extend_from_slice(&input[i..i + off]);
        i += off;
        let hex = |j: usize| input.get(j).copied().and_then(hex_val);
        match (input[i], hex(i + 1), hex(i + 2)) {
            (b'+', ..) => out.push(b' '),
            (_, Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 2;
            }
            _ => {
                invalid = true;
                out.push(b'%');
            }
        }
        i += 1;
    }
    out.extend_from_slice(input.get(i..).unwrap_or_default());
    (out, invalid)
}

/// [`parse_urlencoded`], also saying whether any invalid %-encoding was seen
/// (`URLENCODED_ERROR`).
pub fn parse_urlencoded_checked(input: &[u8]) -> (Vec<Pair>, bool) {
    let mut invalid = false;
    let pairs = (input.split(|&b| b == b'&').filter(|part| !part.is_empty()))
        .map(|part| {
            let (name, value) = split_eq(part);
            let ((name, bad_name), (value, bad_value)) =
                (url_decode_nonstrict(name), url_decode_nonstrict(value));
            invalid |= bad_name | bad_value;
            (name, value)
        })
        .collect();
    (pairs, invalid)
}

/// `a=1&b=2` (query strings, urlencoded bodies): split on `&`, then on the first `=`; names
/// and values URL-decoded; empty parts skipped; `a` alone is name `a`, empty value.
pub fn parse_urlencoded(input: &[u8]) -> Vec<Pair> {
    parse_urlencoded_checked(input).0
}

// ---- Cookie ---------------------------------------------------------------------------------

/// A `Cookie` header value (`a=1; b=2`) as ModSecurity v3 splits it: on `;`; trailing
/// whitespace trimmed from the last pair only, leading whitespace from each name; split on
/// the first `=`; empty names skipped; values as they are (not decoded, not trimmed).
pub fn parse_cookies(header_value: &[u8]) -> Vec<Pair> {
    let mut pieces: Vec<&[u8]> = header_value.split(|&b| b == b';').collect();
    // std::getline yields no empty piece after a final separator.
    if header_value.is_empty() || header_value.ends_with(b";") {
        pieces.pop();
    }
    if let Some(last) = pieces.last_mut() {
        let keep = last
            .iter()
            .rposition(|&b| !is_c_space(b))
            .map_or(0, |i| i + 1);
        *last = &last[..keep];
    }
    let mut out = Vec::new();
    for (name, value) in pieces.into_iter().map(split_eq) {
        let name = &name[name.iter().take_while(|&&b| is_c_space(b)).count()..];
        if !name.is_empty() {
            out.push((name.to_vec(), value.to_vec()));
        }
    }
    out
}

// ---- JSON -----------------------------------------------------------------------------------

/// Bounds the bytes of names and values one JSON body may flatten into (64 x its size,
/// clamped to 1..64 MiB): every name repeats its whole path, so long keys deep down over
/// many values would otherwise grow quadratically.
const JSON_OUTPUT_FACTOR: usize = 64;
const JSON_OUTPUT_RANGE: (usize, usize) = (1 << 20, 64 << 20);

/// A JSON body flattened into ARGS named as ModSecurity v3 names them: `{"a":{"b":1}}` gives
/// `json.a.b`; array elements are `array_<index>`, so `{"a":[1,{"b":2}]}` gives
/// `json.a.array_0` and `json.a.array_1.b`, and `[1]` gives `json.array_0`; a top-level
/// scalar is `json`; an empty key is `empty-key`. Strings are unescaped, numbers keep their
/// text, `true`/`false`, `null` is empty; empty objects and arrays give nothing. More than
/// `max_depth` nested objects/arrays, or invalid JSON (a body of only whitespace too), is an
/// error: the message (`trailing garbage at offset 9`) is meant for REQBODY_ERROR_MSG after
/// ModSecurity's `JSON parsing error: `. An empty body gives nothing and no error.
pub fn parse_json(input: &[u8], max_depth: usize) -> Result<Vec<Pair>, String> {
    match parse_json_partial(input, max_depth) {
        (pairs, None) => Ok(pairs),
        (_, Some(err)) => Err(err),
    }
}

/// [`parse_json`], keeping the arguments found before an error (ModSecurity adds them while
/// it parses, so rules see them alongside REQBODY_ERROR).
pub fn parse_json_partial(input: &[u8], max_depth: usize) -> (Vec<Pair>, Option<String>) {
    let (min, max) = JSON_OUTPUT_RANGE;
    let budget = input
        .len()
        .saturating_mul(JSON_OUTPUT_FACTOR)
        .clamp(min, max);
    let mut p = JsonParser {
        s: input,
        pos: 0,
        max_depth,
        stack: Vec::new(),
        budget,
        ..Default::default()
    };
    let err = p.run().err();
    (p.out, err)
}

/// An open object or array; `prefix[base..]` is its share of the name: its own name, then
/// `.` (object) or `.array_<count>` (array; that starts at `name_end`).
struct Frame {
    is_array: bool,
    base: usize,
    name_end: usize,
    count: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    ValueOrClose,
    Key,
    KeyOrClose,
    Colon,
    CommaOrClose,
    End,
}

#[derive(Default)]
struct JsonParser<'a> {
    s: &'a [u8],
    pos: usize,
    max_depth: usize,
    stack: Vec<Frame>,
    prefix: Vec<u8>,
    key: Vec<u8>,
    out: Vec<Pair>,
    budget: usize,
}

impl JsonParser<'_> {
    fn err(&self, what: &str) -> String {
        format!("{what} at offset {}", self.pos)
    }

    fn after_value(&self) -> Expect {
        [Expect::CommaOrClose, Expect::End][usize::from(self.stack.is_empty())]
    }

    fn run(&mut self) -> Result<(), String> {
        let mut expect = Expect::Value;
        loop {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
                self.pos += 1;
            }
            let Some(&c) = self.s.get(self.pos) else {
                let done = expect == Expect::End || self.s.is_empty();
                return need(done, || self.err("premature end of input"));
            };
            let in_array = self.stack.last().is_some_and(|f| f.is_array);
            expect = match (expect, c) {
                (Expect::End, _) => return Err(self.err("trailing garbage")),
                (Expect::Colon, b':') => {
                    self.pos += 1;
                    Expect::Value
                }
                (Expect::Colon, _) => return Err(self.err("expected ':' after an object key")),
                (Expect::CommaOrClose, b',') => {
                    self.pos += 1;
                    [Expect::Key, Expect::Value][usize::from(in_array)]
                }
                (Expect::CommaOrClose, b']') if in_array => self.close(),
                (Expect::CommaOrClose, b'}') if !in_array => self.close(),
                (Expect::CommaOrClose, _) => {
                    return Err(self.err("expected ',' or a closing bracket"))
                }
                (Expect::KeyOrClose, b'}') | (Expect::ValueOrClose, b']') => self.close(),
                (Expect::Key | Expect::KeyOrClose, b'"') => {
                    self.key = self.string()?;
                    Expect::Colon
                }
                (Expect::Key | Expect::KeyOrClose, _) => {
                    return Err(self.err("expected a string key"))
                }
                (Expect::Value | Expect::ValueOrClose, b'{' | b'[') => {
                    self.open(c == b'[')?;
                    self.pos += 1;
                    [Expect::KeyOrClose, Expect::ValueOrClose][usize::from(c == b'[')]
                }
                (Expect::Value | Expect::ValueOrClose, _) => {
                    let value = self.scalar(c)?;
                    self.emit(value)?;
                    self.after_value()
                }
            };
        }
    }

    fn scalar(&mut self, c: u8) -> Result<Vec<u8>, String> {
        let (word, value): (&[u8], &[u8]) = match c {
            b'"' => return self.string(),
            b'-' | b'0'..=b'9' => return self.number(),
            b't' => (b"true", b"true"),
            b'f' => (b"false", b"false"),
            b'n' => (b"null", b""),
            _ => return Err(self.err("unexpected character where a value was expected")),
        };
        need(self.s[self.pos..].starts_with(word), || {
            self.err("invalid literal")
        })?;
        self.pos += word.len();
        Ok(value.to_vec())
    }

    /// ModSecurity's `getCurrentKey`: `json` at the top, the pending key in an object
    /// (`empty-key` when empty), nothing in an array.
    fn current_key(&mut self) -> Vec<u8> {
        match self.stack.last() {
            None => b"json".to_vec(),
            Some(_) if !self.key.is_empty() => std::mem::take(&mut self.key),
            Some(f) if f.is_array => Vec::new(),
            Some(_) => b"empty-key".to_vec(),
        }
    }

    fn emit(&mut self, value: Vec<u8>) -> Result<(), String> {
        let in_array = self.stack.last().is_some_and(|f| f.is_array);
        let key = if in_array {
            Vec::new()
        } else {
            self.current_key()
        };
        let size = self.prefix.len() + key.len() + value.len();
        need(size <= self.budget, || {
            self.err("flattened arguments exceed the size limit")
        })?;
        self.budget -= size;
        self.out
            .push(([self.prefix.as_slice(), &key].concat(), value));
        self.next_element();
        Ok(())
    }

    /// After a value in an array: advances its element counter in the prefix.
    fn next_element(&mut self) {
        if let Some(f) = self.stack.last_mut().filter(|f| f.is_array) {
            f.count += 1;
            self.prefix.truncate(f.name_end);
            self.prefix
                .extend_from_slice(format!(".array_{}", f.count).as_bytes());
        }
    }

    fn open(&mut self, is_array: bool) -> Result<(), String> {
        let too_deep = || format!("parsing depth limit exceeded (limit {})", self.max_depth);
        need(self.stack.len() < self.max_depth, || self.err(&too_deep()))?;
        let (name, base) = (self.current_key(), self.prefix.len());
        self.prefix.extend_from_slice(&name);
        let name_end = self.prefix.len();
        self.prefix
            .extend_from_slice(if is_array { b".array_0" } else { b"." });
        self.stack.push(Frame {
            is_array,
            base,
            name_end,
            count: 0,
        });
        Ok(())
    }

    fn close(&mut self) -> Expect {
        self.pos += 1;
        if let Some(f) = self.stack.pop() {
            self.prefix.truncate(f.base);
        }
        self.next_element();
        self.after_value()
    }

    fn number(&mut self) -> Result<Vec<u8>, String> {
        let (s, start) = (self.s, self.pos);
        let digit = |i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
        let digits = |mut i: usize| {
            while digit(i) {
                i += 1;
            }
            i
        };
        let mut i = start + usize::from(s[start] == b'-');
        i = match s.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits(i + 1),
            _ => return Err(self.err("malformed number: a digit is required")),
        };
        if s.get(i) == Some(&b'.') {
            need(digit(i + 1), || {
                self.err("malformed number: a digit is required after '.'")
            })?;
            i = digits(i + 1);
        }
        if let Some(b'e' | b'E') = s.get(i) {
            i += 1 + usize::from(matches!(s.get(i + 1), Some(b'+' | b'-')));
            need(digit(i), || {
                self.err("malformed number: a digit is required in the exponent")
            })?;
            i = digits(i);
        }
        self.pos = i;
        Ok(s[start..i].to_vec())
    }

    /// The string whose opening quote is at `self.pos`, unescaped. As in yajl, control
    /// characters and invalid UTF-8 are errors; a lone UTF-16 surrogate becomes U+FFFD (yajl
    /// writes `?`; an error would let it hide what follows from inspection).
    fn string(&mut self) -> Result<Vec<u8>, String> {
        let (start, mut i) = (self.pos + 1, self.pos + 1);
        let end = loop {
            match self.s.get(i..).and_then(|rest| memchr2(b'"', b'\\', rest)) {
                Some(off) if self.s[i + off] == b'"' => break i + off,
                Some(off) => i += off + 2,
                None => return Err(self.err("unterminated string")),
            }
        };
        let raw = &self.s[start..end];
        let checked = match raw.iter().position(|&b| b < 0x20) {
            Some(off) => Err((off, "control character in string")),
            None => std::str::from_utf8(raw).map_err(|e| (e.valid_up_to(), "invalid UTF-8")),
        };
        let escape = |off| (off, "invalid escape in string");
        let value = checked.and_then(|_| unescape_json(raw).map_err(escape));
        self.pos = value
            .as_ref()
            .map_or_else(|(off, _)| start + off, |_| end + 1);
        value.map_err(|(_, what)| self.err(what))
    }
}

fn hex4(s: &[u8], i: usize) -> Option<u32> {
    let digits = s.get(i..i + 4)?;
    digits
        .iter()
        .try_fold(0, |acc, &b| Some(acc << 4 | u32::from(hex_val(b)?)))
}

/// Unescapes the inside of a JSON string; `Err` is the offset of a bad escape.
fn unescape_json(raw: &[u8]) -> Result<Vec<u8>, usize> {
    let (mut out, mut i) = (Vec::with_capacity(raw.len()), 0);
    while let Some(off) = raw.get(i..).and_then(|rest| memchr(b'\\', rest)) {
        out.extend_from_slice(&raw[i..i + off]);
        let at = i + off;
        i = at + 2;
        let byte = match raw.get(at + 1) {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let mut cp = hex4(raw, i).ok_or(at)?;
                i += 4;
                let low = hex4(raw, i + 2).filter(|_| raw.get(i..i + 2) == Some(b"\\u"));
                if let (0xD800..=0xDBFF, Some(lo @ 0xDC00..=0xDFFF)) = (cp, low) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
                let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            _ => return Err(at),
        };
        out.push(byte);
    }
    out.extend_from_slice(raw.get(i..).unwrap_or_default());
    Ok(out)
}

// ---- multipart/form-data --------------------------------------------------------------------

/// ModSecurity's line buffer: part header lines must be shorter than this.
const MULTIPART_BUF_SIZE: usize = 4096;

/// A parsed `multipart/form-data` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multipart {
    /// Non-file fields: (name, value) -> ARGS_POST.
    pub args: Vec<Pair>,
    /// File parts: FILES, FILES_NAMES, FILES_SIZES, FILES_COMBINED_SIZE.
    pub files: Vec<FilePart>,
    /// Every part's header lines without their line endings (`Content-Disposition:
    /// form-data; name="a"`) -> MULTIPART_PART_HEADERS. A folded header is one line
    /// (`Name: value continuation`).
    pub part_headers: Vec<Vec<u8>>,
    /// The name of the part each `part_headers` line belongs to (same index): the collection's
    /// keys (CRS 922100 counts `&MULTIPART_PART_HEADERS:_charset_`).
    pub part_header_names: Vec<Vec<u8>>,
    /// The flags ModSecurity sets.
    pub flags: MultipartFlags,
    /// Set when the body could not be parsed (-> REQBODY_ERROR / REQBODY_ERROR_MSG), with
    /// ModSecurity's text (`Multipart: Final boundary missing.`; ModSecurity prefixes
    /// `Multipart parsing error: `). Parts completed before the error are still reported.
    pub error: Option<String>,
}

/// One file part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePart {
    pub field_name: Vec<u8>,
    pub file_name: Vec<u8>,
    pub size: usize,
    pub content_type: Option<Vec<u8>>,
}

/// ModSecurity's multipart flags, one per `MULTIPART_*` variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultipartFlags {
    /// A hard parsing error (ModSecurity's `flag_error`); part of STRICT_ERROR.
    pub parse_error: bool,
    pub boundary_quoted: bool,
    pub boundary_whitespace: bool,
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    /// A line ended with a bare LF (MULTIPART_LF_LINE).
    pub lf_line: bool,
    /// A line ended with CRLF (internal, for `crlf_lf_lines`).
    pub crlf_line: bool,
    /// Both CRLF and bare LF were seen (MULTIPART_CRLF_LF_LINES).
    pub crlf_lf_lines: bool,
    pub missing_semicolon: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub invalid_header_folding: bool,
    pub file_limit_exceeded: bool,
    /// A line that looks like a boundary but is not ours (MULTIPART_UNMATCHED_BOUNDARY = 1);
    /// not part of STRICT_ERROR.
    pub unmatched_boundary: bool,
}

impl MultipartFlags {
    /// MULTIPART_STRICT_ERROR.
    pub fn strict_error(&self) -> bool {
        let f = self;
        f.parse_error
            || f.boundary_quoted
            || f.boundary_whitespace
            || f.data_before
            || f.data_after
            || f.header_folding
            || f.lf_line
            || f.missing_semicolon
            || f.invalid_quoting
            || f.invalid_part
            || f.invalid_header_folding
            || f.file_limit_exceeded
    }
}

/// A `multipart/form-data` body per RFC 7578 with ModSecurity's strictness checks.
pub fn parse_multipart(content_type: &[u8], body: &[u8]) -> Multipart {
    parse_multipart_with_file_limit(content_type, body, 0)
}

/// [`parse_multipart`] with `SecUploadFileLimit` (0: none). File parts past the limit are
/// still reported, but set `file_limit_exceeded` and the error.
pub fn parse_multipart_with_file_limit(
    content_type: &[u8],
    body: &[u8],
    file_limit: usize,
) -> Multipart {
    let mut mp = Multipart::default();
    let boundary = match multipart_boundary(content_type, &mut mp.flags) {
        Ok(b) => b,
        Err(e) => {
            mp.flags.parse_error = true;
            mp.error = Some(format!("Multipart: {e}"));
            return mp;
        }
    };
    let marker = [&b"--"[..], &boundary].concat();
    let finder = memmem::Finder::new(&marker).into_owned();
    let mut p = MultipartParser {
        boundary,
        finder,
        mp,
        cur: None,
        in_headers: false,
        data_read: false,
        boundary_count: 0,
        complete: false,
        prev_lf_only: false,
        file_limit,
        nfiles: 0,
        limit_error: None,
    };
    if let Err(e) = p.run(body) {
        p.mp.flags.parse_error = true;
        p.mp.error = Some(e);
    }
    let mut mp = p.mp;
    mp.error = mp
        .error
        .or(p.limit_error)
        .map(|e| format!("Multipart: {e}"));
    mp.flags.crlf_lf_lines = mp.flags.crlf_line && mp.flags.lf_line;
    mp
}

/// Counts `boundary` (any case) used as a parameter name: followed by optional whitespace
/// and `=`. (ModSecurity counts any `boundary` with a `=` anywhere after it, and so rejects
/// `boundary=----geckoformboundaryXYZ;charset=UTF-8`: ModSecurity issue #3610.)
fn count_boundary_params(s: &[u8]) -> usize {
    let lower = s.to_ascii_lowercase();
    let is_param = |i: &usize| {
        let rest = &lower[i + 8..];
        rest.get(rest.iter().take_while(|&&b| is_c_space(b)).count()) == Some(&b'=')
    };
    memmem::find_iter(&lower, b"boundary")
        .filter(is_param)
        .count()
}

/// RFC 2046 boundary characters (a space, but not last).
fn boundary_chars_valid(b: &[u8]) -> bool {
    let ok = |(i, c): (usize, &u8)| {
        c.is_ascii_alphanumeric() || (*c == b' ' && i + 1 < b.len()) || b"'()+_,-./:=?".contains(c)
    };
    b.iter().enumerate().all(ok)
}

/// The boundary from the Content-Type header, with ModSecurity's checks and messages.
fn multipart_boundary(ct: &[u8], flags: &mut MultipartFlags) -> Result<Vec<u8>, String> {
    let bad = |what: &str| format!("Invalid boundary in C-T ({what}).");
    check(!ct.is_empty(), "Content-Type header not available.")?;
    need(ct.len() <= 1024, || bad("length"))?;
    let mime = ct
        .get(..19)
        .is_some_and(|t| t.eq_ignore_ascii_case(b"multipart/form-data"));
    check(mime, "Invalid MIME type.")?;
    let params = count_boundary_params(ct);
    check(params <= 1, "Multiple boundary parameters in C-T.")?;
    let Some(pos) = memmem::find(ct, b"boundary") else {
        return Err(if params > 0 {
            bad("case sensitivity")
        } else {
            "Boundary not found in C-T.".into()
        });
    };
    let mut seen_semicolon = false;
    for &c in ct.get(19..pos).unwrap_or_default() {
        need(is_c_space(c) || (c == b';' && !seen_semicolon), || {
            bad("malformed")
        })?;
        seen_semicolon |= c == b';';
    }
    flags.missing_semicolon = !seen_semicolon;
    let eq = pos + 8 + memchr(b'=', &ct[pos + 8..]).ok_or_else(|| bad("malformed"))?;
    need(ct[pos + 8..eq].iter().all(|&c| is_c_space(c)), || {
        bad("parameter name")
    })?;
    let value = &ct[eq + 1..];
    flags.boundary_whitespace = eq > pos + 8 || value.first().is_some_and(|&c| is_c_space(c));
    let mut boundary = match value {
        [b'"', inner @ .., b'"'] => {
            flags.boundary_quoted = true;
            inner.to_vec()
        }
        [b'"', ..] | [_, .., b'"'] => return Err(bad("quote")),
        _ => value.to_vec(),
    };
    need(count_boundary_params(&boundary) == 0, || bad("content"))?;
    // Tolerated: a parameter after the boundary (`boundary=x; charset=utf-8`).
    if let Some(i) = memchr(b';', &boundary).filter(|_| !boundary_chars_valid(&boundary)) {
        boundary.truncate(i);
    }
    need(boundary_chars_valid(&boundary), || bad("characters"))?;
    need(!boundary.is_empty(), || bad("empty"))?;
    Ok(boundary)
}

#[derive(Default)]
struct Part {
    name: Vec<u8>,
    file_name: Vec<u8>,
    is_file: bool,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Ordered, not hashed: the names are the viewer's, and a module's hash keys are the
    /// same in every instance (it has no random source), so they could be made to collide.
    header_names: BTreeSet<Vec<u8>>,
    last_header: Option<usize>,
    last_line: Vec<u8>,
    lines: Vec<Vec<u8>>,
    value: Vec<u8>,
    size: usize,
    /// The last data line's line ending, held back: it belongs to the next boundary unless
    /// another data line follows.
    reserve: &'static [u8],
}

impl Part {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        found.next().map(|(_, v)| v.as_slice())
    }

    fn push_last_line(&mut self) {
        if !self.last_line.is_empty() {
            self.lines.push(std::mem::take(&mut self.last_line));
        }
    }
}

struct MultipartParser {
    boundary: Vec<u8>,
    /// Finds `--boundary` anywhere in a line.
    finder: memmem::Finder<'static>,
    mp: Multipart,
    cur: Option<Part>,
    in_headers: bool,
    /// ModSecurity's `m_mpp_substate_part_data_read`.
    data_read: bool,
    boundary_count: usize,
    complete: bool,
    /// The previous line ended with a bare LF.
    prev_lf_only: bool,
    file_limit: usize,
    nfiles: usize,
    limit_error: Option<String>,
}

impl MultipartParser {
    fn run(&mut self, body: &[u8]) -> Result<(), String> {
        let mut pos = 0;
        while let Some(off) = memchr(b'\n', &body[pos..]) {
            let line = &body[pos..=pos + off];
            pos += off + 1;
            self.line(line)?;
            self.prev_lf_only = !line.ends_with(b"\r\n");
            if self.complete {
                self.mp.flags.data_after = pos < body.len();
                return Ok(());
            }
        }
        if body.is_empty() {
            return Ok(());
        }
        check(self.boundary_count > 0, "No boundaries found in payload.")?;
        // A final boundary without a line ending.
        let rest = &body[pos..];
        let blen = self.boundary.len();
        let last = rest.len() == blen + 4 && rest.starts_with(b"--") && rest.ends_with(b"--");
        check(
            last && rest[2..2 + blen] == self.boundary,
            "Final boundary missing.",
        )?;
        self.mp.flags.lf_line |= self.prev_lf_only;
        self.mp.flags.invalid_part |= !self.data_read;
        self.end_part();
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> Result<(), String> {
        let (blen, flags) = (self.boundary.len(), &mut self.mp.flags);
        if line.len() > 3 && line.starts_with(b"--") {
            if line.get(2..2 + blen) == Some(&self.boundary[..]) {
                flags.lf_line |= self.prev_lf_only;
                if !self.data_read && self.boundary_count > 0 {
                    // Where part data should begin: read as data (or a header line).
                    flags.invalid_part = true;
                } else {
                    let rest = &line[2 + blen..];
                    let (is_final, rest) = match rest.strip_prefix(b"--") {
                        Some(r) => (true, r),
                        None => (false, rest),
                    };
                    match rest {
                        b"\r\n" => flags.crlf_line = true,
                        b"\n" => flags.lf_line = true,
                        _ => return Err(format!("Invalid boundary: {}", lossy(line))),
                    }
                    self.end_part();
                    self.complete = is_final;
                    self.cur = (!is_final).then(Part::default);
                    (self.in_headers, self.data_read) = (true, false);
                    self.boundary_count += 1;
                    return Ok(());
                }
            } else {
                let quoted =
                    line.get(2) == Some(&b'"') && line.get(3..3 + blen) == Some(&self.boundary[..]);
                check(
                    !(flags.boundary_quoted && quoted),
                    "Invalid boundary (quotes).",
                )?;
                let ws = line[2..].iter().take_while(|&&b| is_c_space(b)).count();
                let spaced = ws > 0 && line[2 + ws..].starts_with(&self.boundary);
                check(!spaced, "Invalid boundary (whitespace).")?;
                flags.unmatched_boundary = true;
            }
        } else if self.finder.find(line).is_some() {
            flags.unmatched_boundary = true;
        }
        if self.cur.is_none() {
            flags.data_before = true;
        } else if self.in_headers {
            let too_long = || format!("Part header line over {MULTIPART_BUF_SIZE} bytes long");
            need(line.len() < MULTIPART_BUF_SIZE, too_long)?;
            self.header_line(line)?;
        } else {
            self.data_line(line);
        }
        Ok(())
    }

    fn header_line(&mut self, line: &[u8]) -> Result<(), String> {
        let (flags, Some(part)) = (&mut self.mp.flags, self.cur.as_mut()) else {
            return Ok(());
        };
        check(memchr(0, line).is_none(), "Nul byte in part headers.")?;
        let content = if let Some(c) = line.strip_suffix(b"\r\n") {
            flags.crlf_line = true;
            c
        } else {
            flags.lf_line = true;
            line.strip_suffix(b"\n").unwrap_or(line)
        };
        if content.is_empty() {
            // The end of the part's headers.
            part.push_last_line();
            let Some(cd) = part.header(b"Content-Disposition").map(<[u8]>::to_vec) else {
                return Err("Part missing Content-Disposition header.".into());
            };
            if let Err(rc) =
                parse_content_disposition(&cd, &mut part.name, &mut part.file_name, flags)
            {
                return Err(format!(
                    "Invalid Content-Disposition header ({rc}): {}",
                    lossy(&cd)
                ));
            }
            let no_name = "Content-Disposition header missing name field.";
            check(!part.name.is_empty(), no_name)?;
            part.is_file = !part.file_name.is_empty();
            if part.is_file {
                // A crude parser that did not understand C-D as we did would miss it.
                let crude = memmem::find(&cd, b"filename=").is_some();
                check(crude, "Invalid Content-Disposition header (filename).")?;
                if self.file_limit > 0 && self.nfiles >= self.file_limit {
                    flags.file_limit_exceeded = true;
                    self.limit_error.get_or_insert(format!(
                        "Upload file limit exceeded {}. Use SecUploadFileLimit to change the limit.",
                        self.file_limit
                    ));
                } else {
                    self.nfiles += 1;
                }
            }
            (part.last_header, self.in_headers, self.data_read) = (None, false, false);
        } else if is_c_space(content[0]) {
            // Folding: continues the previous header.
            flags.header_folding = true;
            let ws = line.iter().take_while(|&&b| is_c_space(b)).count();
            flags.invalid_header_folding |= line[..ws].iter().any(|&b| b != b' ' && b != b'\t');
            let Some((name, value)) = part.last_header.and_then(|i| part.headers.get_mut(i)) else {
                return Err("Invalid part header (folding error).".into());
            };
            value.push(b' ');
            value.extend_from_slice(chomp(&line[ws..]));
            check(value.len() <= MULTIPART_BUF_SIZE, "Part header too long.")?;
            part.last_line = [name.as_slice(), b": ", value.as_slice()].concat();
        } else {
            part.push_last_line();
            let Some(colon) = memchr(b':', content) else {
                return Err(format!(
                    "Invalid part header (colon missing): {}",
                    lossy(line)
                ));
            };
            let name = &content[..colon];
            check(
                !name.is_empty(),
                "Invalid part header (header name missing).",
            )?;
            let valid = name.iter().all(|b| (33..=126).contains(b));
            check(valid, "Invalid part header (contains invalid character).")?;
            let value = &content[colon + 1..];
            let value = &value[value
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count()..];
            let new = part.header_names.insert(name.to_ascii_lowercase());
            need(new, || format!("Duplicate part header: {}.", lossy(name)))?;
            part.headers.push((name.to_vec(), chomp(value).to_vec()));
            part.last_header = Some(part.headers.len() - 1);
            part.last_line = content.to_vec();
        }
        Ok(())
    }

    fn data_line(&mut self, line: &[u8]) {
        self.data_read = true;
        let Some(part) = self.cur.as_mut() else {
            return;
        };
        let ending: &'static [u8] = match line {
            [.., b'\r', b'\n'] => b"\r\n",
            [.., b'\n'] => b"\n",
            _ => b"",
        };
        let content = &line[..line.len() - ending.len()];
        if part.is_file {
            part.size += part.reserve.len() + content.len();
        } else {
            part.value.extend_from_slice(part.reserve);
            part.value.extend_from_slice(content);
        }
        part.reserve = ending;
    }

    /// A boundary ends the part being built (ModSecurity's `process_boundary`).
    fn end_part(&mut self) {
        let (mp, Some(part)) = (&mut self.mp, self.cur.take()) else {
            return;
        };
        let names = part.lines.iter().map(|_| part.name.clone());
        mp.part_header_names.extend(names);
        mp.part_headers.extend_from_slice(&part.lines);
        if part.name.is_empty() {
            mp.flags.invalid_part = true;
        } else if part.is_file {
            let content_type = part.header(b"Content-Type").map(<[u8]>::to_vec);
            let (field_name, file_name, size) = (part.name, part.file_name, part.size);
            mp.files.push(FilePart {
                field_name,
                file_name,
                size,
                content_type,
            });
        } else {
            mp.args.push((part.name, part.value));
        }
    }
}

/// RFC 2616 token characters.
fn is_token_char(c: u8) -> bool {
    c > 32 && c < 127 && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

/// A `Content-Disposition` value checked as ModSecurity's `parse_content_disposition` does;
/// `Err` is its (negative) code. `filename*=` (RFC 5987) is validated but, as in ModSecurity,
/// needs a `filename=` too, which is the name reported.
fn parse_content_disposition(
    cd: &[u8],
    name: &mut Vec<u8>,
    file_name: &mut Vec<u8>,
    flags: &mut MultipartFlags,
) -> Result<(), i32> {
    let (len, at) = (cd.len(), |i: usize| cd.get(i).copied().unwrap_or(0));
    let need = |cond: bool, code: i32| need(cond, || code);
    let skip_ws = |mut p: usize| {
        while matches!(at(p), b' ' | b'\t') {
            p += 1;
        }
        p
    };
    need(cd.starts_with(b"form-data"), -1)?;
    let mut p = skip_ws(9);
    if p >= len {
        return Ok(());
    }
    need(at(p) == b';', -2)?;
    p += 1;
    let mut file_name_star = Vec::new();
    while p < len {
        p = skip_ws(p);
        need(p < len, -3)?;
        let start = p;
        while p < len && !matches!(cd[p], b'=' | b' ' | b'\t') {
            p += 1;
        }
        need(p < len, -4)?;
        let param = &cd[start..p];
        p = skip_ws(p);
        need(p < len, -5)?;
        need(cd[p] == b'=', -13)?;
        p = skip_ws(p + 1);
        need(p < len, -6)?;
        let mut quote = 0;
        let value = if param == b"filename*" {
            // charset'[language]'percent-encoded-name
            let charset = p;
            while at(p).is_ascii_alphanumeric() || (p < len && b"!#$%&+-^_`{}~".contains(&cd[p])) {
                p += 1;
            }
            need(at(p) == b'\'' && p > charset, -16)?;
            p += 1 + memchr(b'\'', &cd[p + 1..]).ok_or(-17)? + 1;
            let start = p;
            while p < len && cd[p] != b';' {
                if cd[p] == b'%' {
                    need(
                        at(p + 1).is_ascii_hexdigit() && at(p + 2).is_ascii_hexdigit(),
                        -18,
                    )?;
                    p += 3;
                } else {
                    need(
                        cd[p].is_ascii_alphanumeric() || b"!#$&+-.^_`~".contains(&cd[p]),
                        -19,
                    )?;
                    p += 1;
                }
            }
            cd[start..p].to_vec()
        } else if cd[p] == b'"' || cd[p] == b'\'' {
            // Single quotes are accepted (some back ends do) but flagged.
            quote = cd[p];
            flags.invalid_quoting |= quote == b'\'';
            p += 1;
            need(p < len, -7)?;
            let mut v = Vec::new();
            loop {
                match cd.get(p) {
                    None => return Err(-7), // unterminated (ModSecurity reads past the end)
                    Some(&c) if c == quote => break,
                    // Only the quote and `\` are escaped; IE sends other backslashes raw.
                    Some(b'\\') => {
                        need(p + 1 < len, -8)?;
                        p += usize::from(cd[p + 1] == quote || cd[p + 1] == b'\\');
                    }
                    Some(_) => {}
                }
                v.push(cd[p]);
                p += 1;
            }
            p += 1;
            v
        } else {
            let start = p;
            while p < len && is_token_char(cd[p]) {
                p += 1;
            }
            cd[start..p].to_vec()
        };
        // A `'` is suspicious outside double quotes.
        flags.invalid_quoting |=
            matches!(param, b"name" | b"filename") && quote != b'"' && value.contains(&b'\'');
        let slot = match param {
            b"name" => (&mut *name, -14),
            b"filename" => (&mut *file_name, -15),
            b"filename*" => (&mut file_name_star, -20),
            _ => return Err(-11),
        };
        need(slot.0.is_empty(), slot.1)?;
        *slot.0 = value;
        p = skip_ws(p);
        if p < len {
            if cd[p] != b';' {
                flags.invalid_quoting |= p > 0 && matches!(cd[p - 1], b'\'' | b'"');
                return Err(-12);
            }
            p += 1;
        }
    }
    need(file_name_star.is_empty() || !file_name.is_empty(), -21)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name=value` pairs joined with ` | ` (the tables below use this form).
    fn render(pairs: &[Pair]) -> String {
        let pair = |(n, v): &Pair| format!("{}={}", lossy(n), lossy(v));
        pairs.iter().map(pair).collect::<Vec<_>>().join(" | ")
    }

    /// Lines of `input => expected`, both trimmed.
    fn table(cases: &str) -> impl Iterator<Item = (&str, &str)> {
        cases.lines().filter(|l| !l.trim().is_empty()).map(|l| {
            let (input, want) = l.split_once("=>").expect(l);
            (input.trim(), want.trim())
        })
    }

    #[test]
    fn urlencoded() {
        let cases = r#"
            a=1&b=x+y&c=%41%42   => a=1 | b=x y | c=AB
            a                    => a=
            a&&b=&               => a= | b=
            =v&a=b=c             => =v | a=b=c
            a%3Db=1&a;b=2        => a=b=1 | a;b=2
            a=%41+%2b            => a=A +
            a=%                  => a=% | INVALID
            a=%4                 => a=%4 | INVALID
            a=%zz1               => a=%zz1 | INVALID
            %g=1                 => %g=1 | INVALID
            a=%%41               => a=%A | INVALID
        "#;
        for (input, want) in table(cases) {
            let (got, invalid) = parse_urlencoded_checked(input.as_bytes());
            let got = render(&got) + if invalid { " | INVALID" } else { "" };
            assert_eq!(got, want, "{input}");
        }
        assert_eq!(parse_urlencoded(b""), vec![]);
        let got = parse_urlencoded(b"x=%ff%00");
        assert_eq!(got, vec![(b"x".to_vec(), vec![0xff, 0])]);
    }

    #[test]
    fn cookies() {
        // Values are not decoded or trimmed, except the last pair's trailing whitespace.
        let cases = r#"
            a=1; b=2             => a=1 | b=2
            a=1;b=x=y;  c        => a=1 | b=x=y | c=
            ;;a=1;  ;=bar; =x    => a=1
            a=%41 ; b=2          => a=%41  | b=2
            a=1; b=2 ;           => a=1 | b=2
            a="q"                => a="q"
            ;                    =>
        "#;
        for (input, want) in table(cases) {
            assert_eq!(render(&parse_cookies(input.as_bytes())), want, "{input}");
        }
        assert_eq!(render(&parse_cookies(b"a=1 \t")), "a=1");
        assert_eq!(render(&parse_cookies(b"a=1\t; b")), "a=1\t | b=");
        assert_eq!(parse_cookies(b""), vec![]);
    }

    #[test]
    fn json_naming_follows_modsecurity() {
        // With the bodies of CRS tests 932171-3, 942362-33 and 934130-2.
        let cases = r#"
            {"foo":"bar"}                         => json.foo=bar
            {"l1":{"k":"v","n":-1.5e3}}           => json.l1.k=v | json.l1.n=-1.5e3
            {"a":[1,"x",{"b":true},[null,false]]} => json.a.array_0=1 | json.a.array_1=x | json.a.array_2.b=true | json.a.array_3.array_0= | json.a.array_3.array_1=false
            [1,[2]]                               => json.array_0=1 | json.array_1.array_0=2
            [{"k":1},{"k":2}]                     => json.array_0.k=1 | json.array_1.k=2
            {"a":[[1,2],3]}                       => json.a.array_0.array_0=1 | json.a.array_0.array_1=2 | json.a.array_1=3
            "top"                                 => json=top
            12                                    => json=12
            null                                  => json=
            {"":1,"e":{"":[2]}}                   => json.empty-key=1 | json.e.empty-key.array_0=2
            {"a":{},"b":[],"c":[[]],"d":{"e":1}}  => json.d.e=1
            {"a":1.0,"a":1E+2,"b":-0}             => json.a=1.0 | json.a=1E+2 | json.b=-0
            { "() { :; }":"foo" }                 => json.() { :; }=foo
            { "; select": "foo" }                 => json.; select=foo
            {"text":"a","title":{"__proto__":{"where":{"name":"sqli","where":null}}}} => json.text=a | json.title.__proto__.where.name=sqli | json.title.__proto__.where.where=
            {"k\"ey":"a\\b\/c\u0041\u00e9"}       => json.k"ey=a\b/cAé
            {"testarg": "\\u0065val"}             => json.testarg=\u0065val
            ["\ud83d\ude00","\ud800x","\udc00"]      => json.array_0=😀 | json.array_1=�x | json.array_2=�
        "#;
        for (input, want) in table(cases) {
            let got = parse_json(input.as_bytes(), 512);
            assert_eq!(render(&got.expect(input)), want, "{input}");
        }
        assert_eq!(parse_json(b"", 512), Ok(vec![]));
        let got = parse_json(b"{\"a\":\"\\n\\t\"}\n", 512).unwrap();
        assert_eq!(got, vec![(b"json.a".to_vec(), b"\n\t".to_vec())]);
        let got = parse_json(br#"["\ud800"]"#, 512).unwrap();
        assert_eq!(got[0].1, "\u{FFFD}".as_bytes());
    }

    #[test]
    fn json_errors_and_limits() {
        let bad = r#"a|{|}|[1,]|[1 2]|{"a"}|{"a":}|{"a":1,}|{a:1}|[01]|[1.]|[.5]|[1e]|[-]|[+1]|[tru]|[nul]
            |[True]|"abc|"a\"|["\x"]|["\u12"]|["\u00zz"]|{} {}|[1]]|1 2|[1}|{"a":1]|{,}|[,1]|//c|'a'|[NaN]"#;
        let control = ["[\"a\tb\"]", "\u{feff}{}", "[\"\u{0}\"]", " \r\n\t"];
        for input in bad.split('|').map(str::trim).chain(control) {
            let err = parse_json(input.as_bytes(), 512).expect_err(input);
            assert!(err.contains(" at offset "), "{err}");
        }
        assert!(parse_json(b"[\"\xff\"]", 512).is_err());
        assert!(parse_json(b"[\"\xc3\"]", 512).is_err());
        // ModSecurity's regression test: five nested objects pass limit 5, fail limit 4.
        let body = br#"{"key1":{"key2":{"key3":{"key4":{"key5":"thevalue"}}}}}"#;
        let want = "json.key1.key2.key3.key4.key5=thevalue";
        assert_eq!(render(&parse_json(body, 5).unwrap()), want);
        let err = parse_json(body, 4).unwrap_err();
        assert!(err.contains("depth limit exceeded"));
        assert!(parse_json(b"[]", 0).is_err() && parse_json(b"1", 0).is_ok());
        // Iterative: deep input is an error, not a stack overflow.
        let deep = "[".repeat(1_000_000);
        assert!(parse_json(deep.as_bytes(), 512).is_err());
        let err = parse_json(deep.as_bytes(), usize::MAX).unwrap_err();
        assert!(err.contains("premature end"));
        // The partial form keeps what came before the error.
        let (got, err) = parse_json_partial(br#"{"a":"x","b":[1,"#, 512);
        assert_eq!(render(&got), "json.a=x | json.b.array_0=1");
        assert!(err.is_some());
        // A long key deep down over many values would flatten quadratically.
        let key = "k".repeat(10_000);
        let body = format!("{{\"{key}\":[[[[{}1]]]]}}", "1,".repeat(200_000));
        let err = parse_json(body.as_bytes(), 512).unwrap_err();
        assert!(err.contains("size limit"));
    }

    const CT: &[u8] = b"multipart/form-data; boundary=XyZ";

    /// MULTIPART_PART_HEADERS as `part name=line` pairs.
    fn headers(m: &Multipart) -> String {
        assert_eq!(m.part_headers.len(), m.part_header_names.len());
        let pairs = m
            .part_header_names
            .iter()
            .cloned()
            .zip(m.part_headers.iter().cloned());
        render(&pairs.collect::<Vec<_>>())
    }

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn ok(ct: &[u8], body: &[u8]) -> Multipart {
        let m = parse_multipart(ct, body);
        assert_eq!(m.error, None, "{}", String::from_utf8_lossy(body));
        m
    }

    /// One part with these header lines and this value, CRLF line endings.
    fn one(headers: &str, value: &str) -> Multipart {
        let body = format!("--XyZ\n{headers}\n\n{value}\n--XyZ--\n");
        parse_multipart(CT, &crlf(&body))
    }

    fn crlf_only() -> MultipartFlags {
        MultipartFlags {
            crlf_line: true,
            ..Default::default()
        }
    }

    #[test]
    fn multipart_basic_crlf() {
        let body = crlf(
            "--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nline1\nline2\n--XyZ\n\
             Content-Disposition: form-data; name=\"f\"; filename=\"x.txt\"\n\
             Content-Type: text/plain\n\nhello\n\n--XyZ\n\
             Content-Disposition: form-data; name=\"empty\"\n\n\n--XyZ--\n",
        );
        let m = ok(CT, &body);
        assert_eq!(render(&m.args), "a=line1\r\nline2 | empty=");
        let mut file = FilePart {
            size: 7,
            ..Default::default()
        };
        file.field_name = b"f".to_vec();
        file.file_name = b"x.txt".to_vec();
        file.content_type = Some(b"text/plain".to_vec());
        assert_eq!(m.files, vec![file]);
        let want = r#"a=Content-Disposition: form-data; name="a" | f=Content-Disposition: form-data; name="f"; filename="x.txt" | f=Content-Type: text/plain | empty=Content-Disposition: form-data; name="empty""#;
        assert_eq!(headers(&m), want);
        assert_eq!(m.flags, crlf_only());
        assert!(!m.flags.strict_error());
    }

    #[test]
    fn multipart_crs_bodies() {
        // CRS 920120 test 2 (a YAML block: LF line endings).
        let b = "-----------------------------627652292512397580456702590";
        let ct = format!("multipart/form-data; boundary={}", &b[2..]);
        let body = format!(
            "{b}\nContent-Disposition: form-data; name=\"fi=le\"; filename=\"test\"\n\
             Content-Type: text/plain\n\nemail: security@example.com\n\n{b}\n\
             Content-Disposition: form-data; name=\"note\"\n\nContact info.\n{b}--\n"
        );
        let m = ok(ct.as_bytes(), body.as_bytes());
        assert_eq!(render(&m.args), "note=Contact info.");
        let f = &m.files[0];
        assert_eq!(
            (&f.field_name[..], &f.file_name[..]),
            (&b"fi=le"[..], &b"test"[..])
        );
        assert_eq!(f.size, 28);
        assert!(m.flags.lf_line && !m.flags.crlf_lf_lines && m.flags.strict_error());
        // CRS 922110 test 1.
        let ct = b"multipart/form-data; boundary=----WebKitFormBoundary";
        let body = b"------WebKitFormBoundary\nContent-Disposition: form-data; name=\"username\"\n\
            Content-Type: text/plain; charset=utf-7\n\n+ADw-img+ACA-src+AD0-x+AD4-\n\
            ------WebKitFormBoundary--\n";
        let m = ok(ct, body);
        assert_eq!(render(&m.args), "username=+ADw-img+ACA-src+AD0-x+AD4-");
        let want = "username=Content-Type: text/plain; charset=utf-7";
        assert!(headers(&m).ends_with(want));
        // CRS 922130 test 1: 0x0E in a part header name; no line ending after the end.
        let body = b"--boundary\r\n\x0eContent-Disposition: form-data; name=\"file\"; \
            filename=\"1.php\"\r\nContent-Disposition: form-data; name=\"post\"\r\n\r\n\
            <?php var_dump(file_get_contents(\"/etc/passwd\"));\r\n--boundary--";
        let m = parse_multipart(b"multipart/form-data; boundary=boundary", body);
        let want = "Multipart: Invalid part header (contains invalid character).";
        assert_eq!(m.error.as_deref(), Some(want));
        assert!(m.flags.parse_error && m.flags.strict_error());
    }

    #[test]
    fn multipart_line_endings_preamble_epilogue() {
        let part = "--XyZ\nContent-Disposition: form-data; name=a\n\n";
        let m = ok(CT, &crlf(&format!("{part}v\n--XyZ--")));
        assert_eq!(render(&m.args), "a=v");
        assert_eq!(m.flags, crlf_only());
        // Right after the headers: the value is empty and the part invalid.
        let m = ok(CT, &crlf(&format!("{part}--XyZ--")));
        assert_eq!(render(&m.args), "a=");
        assert!(m.flags.invalid_part);
        let m = ok(CT, &crlf(&format!("junk\n{part}1\n--XyZ--\nmore")));
        assert!(m.flags.data_before && m.flags.data_after && !m.flags.lf_line);
        let body = b"--XyZ\nContent-Disposition: form-data; name=a\r\n\r\n1\n--XyZ--\r\n";
        let m = ok(CT, body);
        assert!(m.flags.lf_line && m.flags.crlf_line && m.flags.crlf_lf_lines);
        assert_eq!(render(&m.args), "a=1");
    }

    #[test]
    fn multipart_header_folding() {
        let m = one("Content-Disposition: form-data;\n name=\"a\"", "v");
        assert_eq!(render(&m.args), "a=v");
        let want = "a=Content-Disposition: form-data; name=\"a\"";
        assert_eq!(headers(&m), want);
        assert!(m.flags.header_folding && !m.flags.invalid_header_folding);
        let m = one("Content-Disposition: form-data;\n\x0bname=\"a\"", "v");
        assert!(m.flags.header_folding && m.flags.invalid_header_folding);
        assert_eq!(m.error, None);
        let want = "Multipart: Invalid part header (folding error).";
        assert_eq!(one(" name=a", "v").error.as_deref(), Some(want));
    }

    #[test]
    fn multipart_content_disposition() {
        let cd = |params: &str| one(&format!("Content-Disposition: form-data{params}"), "v");
        assert_eq!(render(&cd(r#"; name="a\"b\\c\d""#).args), r#"a"b\c\d=v"#);
        let m = one("content-disposition: form-data; name='a'", "v");
        assert!(m.flags.invalid_quoting && render(&m.args) == "a=v");
        assert!(cd("; name=a'b").flags.invalid_quoting && cd("; name=a'b").error.is_none());
        assert!(!cd(r#"; name="it's""#).flags.invalid_quoting);
        let m = cd(r#"; name="f"; filename="a.txt"; filename*=UTF-8''%e2%82%ac.txt"#);
        assert_eq!(m.files[0].file_name, b"a.txt");
        let m = cd(r#"; name="f"; filename="""#); // an empty filename: a field
        assert_eq!((m.args.len(), m.files.len()), (1, 0));
        let codes = r#"
             name=a                                       => -2
            ; name                                        => -4
            ; name x                                      => -13
            ; name=                                       => -6
            ; name="                                      => -7
            ; name="abc                                   => -7
            ; name="a\                                    => -8
            ; name=a; size=3                              => -11
            ; name="a"x                                   => -12
            ; name=a; name=b                              => -14
            ; name=a; filename=x; filename=y              => -15
            ; name=a; filename*='x                        => -16
            ; name=a; filename*=utf-8'en                  => -17
            ; name=a; filename*=utf-8''%zz                => -18
            ; name=a; filename*=utf-8''a b                => -19
            ; name=a; filename*=utf-8''a; filename*=utf-8''b => -20
            ; name=a; filename*=utf-8''a.txt              => -21
        "#;
        for (params, code) in table(codes).chain([("; name=a; ", "-3")]) {
            let err = cd(params).error.unwrap_or_default();
            let want = format!("Content-Disposition header ({code}): form-data");
            assert!(err.contains(&want), "{params}: {err}");
        }
        assert!(cd("; name='a'b").flags.invalid_quoting);
        let err = one("Content-Disposition: attachment; name=a", "v").error;
        assert!(err.unwrap().contains("(-1)"));
        let errors = r#"
            Content-Disposition: form-data          => Content-Disposition header missing name field.
            Content-Disposition: form-data; name="" => Content-Disposition header missing name field.
            Content-Type: text/plain                => Part missing Content-Disposition header.
            Content-Disposition: form-data; name=a; filename =x => Invalid Content-Disposition header (filename).
            no colon                                => Invalid part header (colon missing): no colon
            : x                                     => Invalid part header (header name missing).
            Bad Name: x                             => Invalid part header (contains invalid character).
            Content-Disposition: form-data; name=a\nX: 1\nx: 2 => Duplicate part header: x.
        "#;
        let nul = [("X: a\0b", "Nul byte in part headers.")];
        for (headers, err) in table(errors).chain(nul) {
            let got = one(&headers.replace("\\n", "\n"), "v").error;
            assert_eq!(got, Some(format!("Multipart: {err}")), "{headers}");
        }
        let long = one(&format!("X-Long: {}", "a".repeat(5000)), "v");
        assert!(long.error.unwrap().contains("over 4096 bytes"));
    }

    #[test]
    fn multipart_boundary_parsing() {
        let part = "Content-Disposition: form-data; name=a\n\nv";
        let body = |b: &str| crlf(&format!("--{b}\n{part}\n--{b}--\n"));
        let m = ok(b"multipart/form-data; boundary=\"XyZ\"", &body("XyZ"));
        assert!(m.flags.boundary_quoted && m.flags.strict_error());
        let m = ok(b"multipart/form-data boundary=XyZ", &body("XyZ"));
        assert!(m.flags.missing_semicolon);
        let m = ok(b"multipart/form-data; boundary =XyZ", &body("XyZ"));
        assert!(m.flags.boundary_whitespace);
        let ct = b"Multipart/Form-Data; boundary=XyZ; charset=UTF-8";
        assert_eq!(ok(ct, &body("XyZ")).flags, crlf_only());
        let g = "----geckoformboundary4a7a";
        ok(
            format!("multipart/form-data;boundary={g};charset=UTF-8").as_bytes(),
            &body(g),
        );
        let cases = r#"
            multipart/mixed; boundary=a                  => Invalid MIME type
            multipart/; boundary=0000                    => Invalid MIME type
            multipart/form-data; boundary=a; boundary=b  => Multiple boundary parameters
            multipart/form-data; boundary="xboundary=y"  => Multiple boundary parameters
            multipart/form-data; BOUNDARY=a              => (case sensitivity)
            multipart/form-data                          => Boundary not found in C-T
            multipart/form-data; charset=x; boundary=a   => (malformed)
            multipart/form-data; boundary                => (malformed)
            multipart/form-data; boundaryx=a             => (parameter name)
            multipart/form-data; boundary="a             => (quote)
            multipart/form-data; boundary=a"             => (quote)
            multipart/form-data; boundary=""             => (empty)
            multipart/form-data; boundary=               => (empty)
            multipart/form-data; boundary=a<b            => (characters)
        "#;
        let more = [
            ("", "header not available"),
            ("multipart/form-data; boundary=a ", "(characters)"),
        ];
        for (ct, err) in table(cases).chain(more) {
            let m = parse_multipart(ct.as_bytes(), &body("a"));
            let got = m.error.unwrap_or_default();
            assert!(got.contains(err), "{ct}: {got}");
            assert!(m.flags.parse_error && m.args.is_empty());
        }
        let long = format!("multipart/form-data; boundary={}", "a".repeat(1100));
        let err = parse_multipart(long.as_bytes(), b"").error;
        assert!(err.unwrap().contains("(length)"));
    }

    #[test]
    fn multipart_structure_errors() {
        let part = "--XyZ\nContent-Disposition: form-data; name=a\n\nv\n";
        let cases = [
            ("nothing here\n", "No boundaries found in payload."),
            (part, "Final boundary missing."),
            (&format!("{part}--XyZ-- \n"), "Invalid boundary: --XyZ-- "),
            ("--XyZ \n", "Invalid boundary: --XyZ "),
            ("--XyZabc\n", "Invalid boundary: --XyZabc"),
            ("-- XyZ\n", "Invalid boundary (whitespace)."),
        ];
        for (body, err) in cases {
            let got = parse_multipart(CT, &crlf(body)).error;
            assert_eq!(got, Some(format!("Multipart: {err}")));
        }
        let ct = b"multipart/form-data; boundary=\"XyZ\"";
        let m = parse_multipart(ct, b"--\"XyZ\"\r\n");
        assert_eq!(m.error.unwrap(), "Multipart: Invalid boundary (quotes).");
        assert_eq!(parse_multipart(CT, b""), Multipart::default()); // an empty body is fine
                                                                    // Completed parts survive a later error.
        let m = parse_multipart(CT, &crlf(&format!("{part}--XyZ\nBad\n")));
        assert!(m.error.is_some() && render(&m.args) == "a=v");
    }

    #[test]
    fn multipart_invalid_part_and_unmatched() {
        // A boundary straight after the header block: flagged, then read as data.
        let m = one("Content-Disposition: form-data; name=a\n\n--XyZ", "x");
        assert!(m.flags.invalid_part && m.error.is_none());
        assert_eq!(render(&m.args), "a=--XyZ\r\n\r\nx");
        // Two boundaries in a row: the second is read as a header line.
        let m = parse_multipart(CT, &crlf("--XyZ\n--XyZ\n"));
        assert!(m.flags.invalid_part && m.error.unwrap().contains("colon missing"));
        // Lines that look like someone else's boundary.
        let m = one(
            "Content-Disposition: form-data; name=a",
            "-----BEGIN KEY-----",
        );
        assert!(m.flags.unmatched_boundary && !m.flags.strict_error());
        let m = one("Content-Disposition: form-data; name=a", "x--XyZ");
        assert!(m.flags.unmatched_boundary && render(&m.args) == "a=x--XyZ");
    }

    #[test]
    fn multipart_files() {
        let body = crlf(
            "--XyZ\nContent-Disposition: form-data; name=f1; filename=a\n\n1\n\
             --XyZ\nContent-Disposition: form-data; name=f2; filename=b\n\n22\n--XyZ--\n",
        );
        let m = parse_multipart_with_file_limit(CT, &body, 1);
        assert!(m.flags.file_limit_exceeded && m.flags.strict_error());
        assert!(m.error.unwrap().contains("Upload file limit exceeded 1"));
        assert_eq!(m.files.iter().map(|f| f.size).collect::<Vec<_>>(), [1, 2]);
        let m = parse_multipart_with_file_limit(CT, &body, 2);
        assert!(!m.flags.file_limit_exceeded);
        // Binary content with CR, LF and NUL inside a file.
        let head = "--XyZ\nContent-Disposition: form-data; name=f; filename=b\n\n";
        let blob: Vec<u8> = (0..=255u8).chain(*b"\r\n\n\r").collect();
        let body = [&crlf(head)[..], &blob, b"\r\n--XyZ--\r\n"].concat();
        assert_eq!(ok(CT, &body).files[0].size, blob.len());
        // Linear: many headers in one part, many boundary-like lines.
        let mut body = crlf("--XyZ\nContent-Disposition: form-data; name=a\n");
        for i in 0..100_000 {
            body.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        body.extend_from_slice(&[&b"\r\n"[..], &b"--XyQ\r\n".repeat(100_000)].concat());
        let m = ok(CT, &[&body[..], b"--XyZ--\r\n"].concat());
        assert!(m.part_headers.len() == 100_001 && m.flags.unmatched_boundary);
    }

    #[test]
    fn no_panics_on_awkward_inputs() {
        let cts = b"multipart/form-data; boundary=XyZ|multipart/form-data; boundary=\"XyZ\"|\
            multipart/form-data; boundary=-|multipart/form-data;boundary= XyZ";
        let cts: Vec<&[u8]> = cts.split(|&b| b == b'|').collect();
        let pieces = b"--XyZ|--XyZ--|\r\n|\n|\r|Content-Disposition: form-data; name=a|\
            ; filename=\"x|filename*=|'|\"|\\| |\t|\0|\xff|%|%4|=|&|;|{\"a\":[|]}";
        let pieces: Vec<&[u8]> = pieces.split(|&b| b == b'|').collect();
        let json = b"{ } [ ] \" \\ \\u d83d : , - 1 e true \xc3 \t";
        let json: Vec<&[u8]> = json.split(|&b| b == b' ').collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = move |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) % n as u64) as usize
        };
        for round in 0..4000 {
            let (mut input, mut json_input) = (Vec::new(), Vec::new());
            for _ in 0..rnd(40) {
                input.extend_from_slice(pieces[rnd(pieces.len())]);
                json_input.extend_from_slice(json[rnd(json.len())]);
            }
            parse_multipart(cts[round % cts.len()], &input);
            parse_multipart_with_file_limit(CT, &input, 1);
            parse_multipart(&input, &input);
            parse_urlencoded_checked(&input);
            parse_cookies(&input);
            parse_json_partial(&input, 8);
            parse_json_partial(&json_input, 3);
            parse_json_partial(&json_input, usize::MAX);
        }
        for odd in [
            "",
            "-",
            "--",
            "---",
            "--XyZ-",
            "\n--XyZ--",
            "--XyZ\r",
            "--XyZ\n\n",
        ] {
            parse_multipart(CT, odd.as_bytes());
            let _ = parse_json(odd.as_bytes(), 1);
        }
    }
}
