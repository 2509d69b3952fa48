//! HLS playlists (RFC 8216 and rfc8216bis, Low-Latency HLS included), rewritten line by
//! line. Hand-written rather than parsed into a playlist model and printed again: a model
//! would reorder attributes, renormalize numbers and drop tags it does not know, and a
//! playlist must come out exactly as it went in wherever no operation applies.

use crate::{Plan, RewriteError};

/// The tags the rewriter acts on, told apart once per line (comparing names again at
/// every step showed up as a tenth of a 1,000-segment rewrite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Extinf,
    StreamInf,
    IFrameStreamInf,
    TargetDuration,
    MediaSequence,
    DiscontinuitySequence,
    Discontinuity,
    Key,
    Map,
    Byterange,
    Endlist,
    PlaylistType,
    Skip,
    ContentSteering,
    DateRange,
    ProgramDateTime,
    /// Other tags whose `URI` attribute a player fetches.
    OtherUri {
        master: bool,
    },
    /// Other tags that describe the whole media playlist (before its first segment).
    OtherPlaylist,
    Unknown,
}

impl Tag {
    fn of(name: &str) -> Tag {
        match name {
            "EXTINF" => Tag::Extinf,
            "EXT-X-STREAM-INF" => Tag::StreamInf,
            "EXT-X-I-FRAME-STREAM-INF" => Tag::IFrameStreamInf,
            "EXT-X-TARGETDURATION" => Tag::TargetDuration,
            "EXT-X-MEDIA-SEQUENCE" => Tag::MediaSequence,
            "EXT-X-DISCONTINUITY-SEQUENCE" => Tag::DiscontinuitySequence,
            "EXT-X-DISCONTINUITY" => Tag::Discontinuity,
            "EXT-X-KEY" => Tag::Key,
            "EXT-X-MAP" => Tag::Map,
            "EXT-X-BYTERANGE" => Tag::Byterange,
            "EXT-X-ENDLIST" => Tag::Endlist,
            "EXT-X-PLAYLIST-TYPE" => Tag::PlaylistType,
            "EXT-X-SKIP" => Tag::Skip,
            "EXT-X-CONTENT-STEERING" => Tag::ContentSteering,
            "EXT-X-DATERANGE" => Tag::DateRange,
            "EXT-X-PROGRAM-DATE-TIME" => Tag::ProgramDateTime,
            "EXT-X-MEDIA" | "EXT-X-SESSION-KEY" | "EXT-X-SESSION-DATA" => {
                Tag::OtherUri { master: true }
            }
            "EXT-X-PART" | "EXT-X-PRELOAD-HINT" | "EXT-X-RENDITION-REPORT" => {
                Tag::OtherUri { master: false }
            }
            "EXTM3U"
            | "EXT-X-VERSION"
            | "EXT-X-I-FRAMES-ONLY"
            | "EXT-X-INDEPENDENT-SEGMENTS"
            | "EXT-X-START"
            | "EXT-X-SERVER-CONTROL"
            | "EXT-X-PART-INF"
            | "EXT-X-DEFINE"
            | "EXT-X-ALLOW-CACHE" => Tag::OtherPlaylist,
            _ => Tag::Unknown,
        }
    }

    /// The attributes holding URIs the player fetches (none for most tags).
    fn uri_attributes(self) -> &'static [&'static str] {
        match self {
            Tag::ContentSteering => &["SERVER-URI"],
            Tag::Key | Tag::Map | Tag::IFrameStreamInf | Tag::OtherUri { .. } => &["URI"],
            // HLS Interstitials (rfc8216bis Appendix D): the ad asset or asset list the
            // player fetches when it reaches the date range.
            Tag::DateRange => &["X-ASSET-URI", "X-ASSET-LIST"],
            _ => &[],
        }
    }

    /// Only a multivariant playlist has it.
    fn is_master(self) -> bool {
        matches!(
            self,
            Tag::StreamInf
                | Tag::IFrameStreamInf
                | Tag::ContentSteering
                | Tag::OtherUri { master: true }
        )
    }

    fn is_playlist(self) -> bool {
        matches!(
            self,
            Tag::TargetDuration
                | Tag::MediaSequence
                | Tag::DiscontinuitySequence
                | Tag::PlaylistType
                | Tag::OtherPlaylist
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind<'a> {
    Tag {
        tag: Tag,
        name: &'a str,
        value: &'a str,
    },
    Uri,
    /// A comment or a blank line.
    Other,
}

struct Line<'a> {
    text: &'a str,
    /// `\n`, `\r\n` or nothing (the last line).
    end: &'a str,
    kind: LineKind<'a>,
}

/// One attribute of an attribute list; `value` keeps its quotes.
struct Attr<'a> {
    name: &'a str,
    value: &'a str,
    /// Where `value` sits in the attribute list.
    start: usize,
}

impl Attr<'_> {
    fn unquoted(&self) -> &str {
        self.value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(self.value)
    }
}

/// RFC 8216 §4.2. Lenient with spaces around the comma (packagers write them), strict
/// with quotes: an unterminated quoted string is a malformed playlist.
fn attributes(list: &str) -> Result<Vec<Attr<'_>>, String> {
    let mut attrs = Vec::new();
    let bytes = list.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b',' {
            i += 1;
        }
        let name = list[name_start..i].trim_end();
        if i >= bytes.len() || bytes[i] != b'=' || name.is_empty() {
            return Err(format!("attribute {:?} has no value", &list[name_start..i]));
        }
        i += 1;
        let start = i;
        if bytes.get(i) == Some(&b'"') {
            match list[i + 1..].find('"') {
                Some(close) => i += close + 2,
                None => {
                    return Err(format!(
                        "attribute {name} has an unterminated quoted string"
                    ))
                }
            }
        } else {
            while i < bytes.len() && bytes[i] != b',' {
                if bytes[i] == b'"' {
                    return Err(format!("attribute {name} has a stray quote"));
                }
                i += 1;
            }
        }
        attrs.push(Attr {
            name,
            value: &list[start..i],
            start,
        });
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i < bytes.len() {
            if bytes[i] != b',' {
                return Err(format!(
                    "attribute {name} is followed by {:?}, not a comma",
                    &list[i..]
                ));
            }
            i += 1;
        }
    }
    Ok(attrs)
}

fn attr<'a>(attrs: &'a [Attr<'a>], name: &str) -> Option<&'a Attr<'a>> {
    attrs.iter().find(|a| a.name == name)
}

/// The lines of a playlist (LF or CRLF), each with its kind.
struct Lines<'a> {
    text: &'a str,
    /// Where the next line starts.
    at: usize,
    /// The line ends, found by one search over the whole text (a search per line costs
    /// a call and a set-up each, on lines of 20 bytes).
    ends: memchr::Memchr<'a>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            text,
            at: 0,
            ends: memchr::memchr_iter(b'\n', text.as_bytes()),
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.at >= self.text.len() {
            return None;
        }
        let end = self.ends.next().map_or(self.text.len(), |i| i + 1);
        let line = &self.text[self.at..end];
        self.at = end;
        let body = line.strip_suffix('\n').unwrap_or(line);
        let body = body.strip_suffix('\r').unwrap_or(body);
        let end = &line[body.len()..];
        let trimmed = body.trim_ascii();
        let kind = if let Some(tag) = trimmed.strip_prefix("#EXT") {
            // Tag names are short: a plain scan beats a search call.
            let (name, value) = match tag.bytes().position(|b| b == b':') {
                Some(i) => (&tag[..i], &tag[i + 1..]),
                None => (tag, ""),
            };
            // `name` without the `#`: "EXT" + the rest.
            let full = &trimmed[1..1 + 3 + name.len()];
            LineKind::Tag {
                tag: Tag::of(full),
                name: full,
                value,
            }
        } else if trimmed.is_empty() || trimmed.starts_with('#') {
            LineKind::Other
        } else {
            LineKind::Uri
        };
        Some(Line {
            text: body,
            end,
            kind,
        })
    }
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::with_capacity(text.len() / 16 + 1);
    out.extend(Lines::new(text));
    out
}

/// The duration of an `EXTINF` value, checked to be a number (`Err` holds what stands
/// there instead). IPTV lists write `-1 tvg-id="…",Title`: the duration is the first word.
fn extinf_duration(value: &str) -> Result<&str, &str> {
    let bytes = value.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    // One scan to the end of the first word (a comma or a space ends it).
    let len = bytes[start..]
        .iter()
        .position(|&b| b == b',' || b.is_ascii_whitespace())
        .unwrap_or(bytes.len() - start);
    let duration = &value[start..start + len];
    if is_decimal(duration) {
        Ok(duration)
    } else {
        Err(duration)
    }
}

/// `EXT-X-BYTERANGE:<n>[@<o>]`.
fn byterange(value: &str) -> Option<(u64, Option<u64>)> {
    let value = value.trim_ascii();
    match value.split_once('@') {
        Some((len, offset)) => Some((len.parse().ok()?, Some(offset.parse().ok()?))),
        None => Some((value.parse().ok()?, None)),
    }
}

/// Writes a line whose tag has a URI attribute, with the URI mapped; false (and the line
/// as it was) when the URI stays.
fn write_uri_tag(
    out: &mut String,
    plan: &Plan,
    line: &Line<'_>,
    keys: &[&str],
    n: usize,
) -> Result<bool, RewriteError> {
    let LineKind::Tag { name, value, .. } = line.kind else {
        return Ok(false);
    };
    let attrs = attributes(value).map_err(|e| RewriteError::at(n, format!("{name}: {e}")))?;
    let mark = out.len();
    let (mut copied, mut changed) = (0, false);
    for uri in attrs.iter().filter(|a| keys.contains(&a.name)) {
        // Found in `value`, so `value` lies inside the line (an empty one may not).
        let offset = value.as_ptr() as usize - line.text.as_ptr() as usize;
        if !uri.value.starts_with('"') {
            return Err(RewriteError::at(
                n,
                format!("{name}: {} is not a quoted string", uri.name),
            ));
        }
        let at = offset + uri.start;
        out.push_str(&line.text[copied..at]);
        out.push('"');
        if plan.write_uri(out, uri.unquoted()) {
            out.push('"');
            changed = true;
        } else {
            out.push_str(&uri.value[1..]);
        }
        copied = at + uri.value.len();
    }
    if !changed {
        out.truncate(mark);
        out.push_str(line.text);
        return Ok(false);
    }
    out.push_str(&line.text[copied..]);
    Ok(true)
}

/// Writes a URI line with the URI mapped (surrounding spaces kept); false when it stays.
fn write_uri_line(out: &mut String, plan: &Plan, line: &Line<'_>) -> bool {
    let trimmed = line.text.trim_ascii();
    let lead = line.text.len() - line.text.trim_ascii_start().len();
    out.push_str(&line.text[..lead]);
    let changed = plan.write_uri(out, trimmed);
    if !changed {
        out.push_str(trimmed);
    }
    out.push_str(&line.text[lead + trimmed.len()..]);
    changed
}

/// The order lines must keep, checked alike by both passes: an `EXTINF` or an
/// `EXT-X-STREAM-INF` waits for its URI line, with nothing of the other kind between.
#[derive(Default)]
struct Order {
    /// Line numbers of what waits for a URI line.
    extinf: Option<usize>,
    stream_inf: Option<usize>,
}

impl Order {
    fn stream_inf(&mut self, n: usize) -> Result<(), RewriteError> {
        if self.extinf.is_some() {
            return Err(RewriteError::at(
                n,
                "EXT-X-STREAM-INF between EXTINF and its URI line",
            ));
        }
        if self.stream_inf.is_some() {
            return Err(RewriteError::at(
                n,
                "EXT-X-STREAM-INF follows one that has no URI line",
            ));
        }
        self.stream_inf = Some(n);
        Ok(())
    }

    /// Checks an `EXTINF` and returns its duration.
    fn extinf<'a>(&mut self, n: usize, value: &'a str) -> Result<&'a str, RewriteError> {
        if self.stream_inf.is_some() {
            return Err(RewriteError::at(
                n,
                "EXTINF between EXT-X-STREAM-INF and its URI line",
            ));
        }
        if self.extinf.is_some() {
            return Err(RewriteError::at(
                n,
                "EXTINF follows one that has no URI line",
            ));
        }
        let duration = extinf_duration(value).map_err(|word| {
            RewriteError::at(n, format!("EXTINF duration {word:?} is not a number"))
        })?;
        self.extinf = Some(n);
        Ok(duration)
    }

    /// A URI line: whether it completes a segment (`EXTINF`) and a variant.
    fn uri(&mut self) -> (bool, bool) {
        (
            self.extinf.take().is_some(),
            self.stream_inf.take().is_some(),
        )
    }

    fn finish(&self) -> Result<(), RewriteError> {
        if let Some(n) = self.stream_inf {
            return Err(RewriteError::at(
                n,
                "EXT-X-STREAM-INF has no URI line after it",
            ));
        }
        if let Some(n) = self.extinf {
            return Err(RewriteError::at(n, "EXTINF has no URI line after it"));
        }
        Ok(())
    }
}

/// Plans that only change URIs (token propagation, URL rewriting: the per-request common
/// case) take one pass that writes as it reads and keeps no per-line state. It refuses
/// exactly what the full pass refuses (a test holds them to that).
fn rewrite_uris(text: &str, plan: &Plan) -> Result<Option<String>, RewriteError> {
    // Room for the query on about one line in two.
    let mut out =
        String::with_capacity(text.len() + (text.len() / 32 + 16) * (plan.query.len() + 1));
    let offset_of = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
    // What is unchanged is copied in spans, from `copied` up to the next change.
    let mut copied = 0;
    let body = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut header = false;
    let mut changed = false;
    let mut order = Order::default();
    for (i, line) in Lines::new(body).enumerate() {
        let n = i + 1;
        if !header {
            if line.text.trim_ascii().is_empty() {
                continue;
            }
            if line.text.trim_ascii_end() != "#EXTM3U" {
                return Err(RewriteError::at(n, "the first line is not #EXTM3U"));
            }
            header = true;
        }
        match line.kind {
            LineKind::Uri => {
                order.uri();
                let uri = line.text.trim_ascii();
                let at = offset_of(uri);
                if plan.only_appends_query(uri) {
                    // The common case, a segment URI that gets the viewer's token: the
                    // unchanged span runs on through the URI, then the query follows.
                    out.push_str(&text[copied..at + uri.len()]);
                    out.push('?');
                    out.push_str(&plan.query);
                    copied = at + uri.len();
                    changed = true;
                    continue;
                }
                let mark = out.len();
                out.push_str(&text[copied..at]);
                if plan.write_uri(&mut out, uri) {
                    changed = true;
                    copied = at + uri.len();
                } else {
                    out.truncate(mark);
                }
            }
            LineKind::Tag { tag, name, value } => {
                match tag {
                    Tag::StreamInf => {
                        order.stream_inf(n)?;
                        attributes(value)
                            .map_err(|e| RewriteError::at(n, format!("{name}: {e}")))?;
                    }
                    Tag::Extinf => {
                        order.extinf(n, value)?;
                    }
                    Tag::Byterange if byterange(value).is_none() => {
                        return Err(RewriteError::at(n, format!("EXT-X-BYTERANGE {value:?}")));
                    }
                    _ => {}
                }
                let keys = tag.uri_attributes();
                if !keys.is_empty() {
                    let at = offset_of(line.text);
                    let mark = out.len();
                    out.push_str(&text[copied..at]);
                    let written = write_uri_tag(&mut out, plan, &line, keys, n)?;
                    if written {
                        changed = true;
                        copied = at + line.text.len();
                    } else {
                        out.truncate(mark);
                    }
                }
            }
            LineKind::Other => {}
        }
    }
    if !header {
        return Err(RewriteError::at(1, "the first line is not #EXTM3U"));
    }
    order.finish()?;
    if !changed {
        return Ok(None);
    }
    out.push_str(&text[copied..]);
    Ok(Some(out))
}

struct Variant {
    /// The `EXT-X-STREAM-INF` line and its URI line.
    tag: usize,
    uri: usize,
    bandwidth: Option<u64>,
    keep: bool,
}

#[derive(Default)]
struct Segment<'a> {
    /// First line that belongs to the segment, and its URI line.
    start: usize,
    uri: usize,
    /// The `EXTINF` duration as written (checked to be a number); parsed only for the
    /// segments a live window counts.
    duration: &'a str,
    discontinuities: u64,
    /// `EXT-X-KEY` lines by `KEYFORMAT`, in order.
    keys: Vec<(String, usize)>,
    map: Option<usize>,
    /// `EXT-X-BYTERANGE` line, length and where the range starts (resolved).
    byterange: Option<(usize, u64, u64, bool)>,
    /// `EXT-X-PROGRAM-DATE-TIME` of the segment, as written.
    date_time: Option<&'a str>,
}

/// The date of the first kept segment: the last dropped `EXT-X-PROGRAM-DATE-TIME` plus
/// the durations since, to the millisecond. `None` when no dropped segment had one, when a
/// discontinuity falls between (the timeline may jump there), or when the date is not
/// RFC 3339 (the playlist then stays as it was written).
fn carried_date_time(dropped: &[Segment<'_>], first: &Segment<'_>) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let at = dropped.iter().rposition(|s| s.date_time.is_some())?;
    if dropped[at + 1..]
        .iter()
        .chain(std::iter::once(first))
        .any(|s| s.discontinuities > 0)
    {
        return None;
    }
    let start = time::OffsetDateTime::parse(dropped[at].date_time?, &Rfc3339).ok()?;
    let seconds: f64 = dropped[at..]
        .iter()
        .map(|s| s.duration.parse::<f64>().map_or(0.0, |d| d.max(0.0)))
        .sum();
    let when = start.checked_add(time::Duration::milliseconds(
        (seconds * 1000.0).round() as i64
    ))?;
    when.format(&Rfc3339).ok()
}

/// `[-]digits[.digits]` (or `.digits`): what an EXTINF duration may be, IPTV's `-1` included.
fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = match digits.bytes().position(|b| b == b'.') {
        Some(i) => (&digits[..i], &digits[i + 1..]),
        None => (digits, ""),
    };
    (!whole.is_empty() || !fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

fn height(resolution: &str) -> Option<u32> {
    resolution.split_once(['x', 'X'])?.1.parse().ok()
}

pub(crate) fn rewrite(text: &str, plan: &Plan) -> Result<Option<String>, RewriteError> {
    if plan.filter.is_empty() && plan.live_window_s.is_none() && plan.steering.is_none() {
        return rewrite_uris(text, plan);
    }
    let (bom, body) = match text.strip_prefix('\u{FEFF}') {
        Some(rest) => ("\u{FEFF}", rest),
        None => ("", text),
    };
    let lines = lines(body);
    // Blank lines before the header are tolerated (and kept): players skip them.
    let header = lines.iter().position(|l| !l.text.trim_ascii().is_empty());
    let Some(header) = header.filter(|&h| lines[h].text.trim_ascii_end() == "#EXTM3U") else {
        let n = header.map_or(1, |h| h + 1);
        return Err(RewriteError::at(n, "the first line is not #EXTM3U"));
    };
    let after_header = header + 1;
    let newline = match lines[header].end {
        "" => "\n",
        e => e,
    };

    // What the playlist is: structure checks, variants and segments.
    let mut variants: Vec<Variant> = Vec::new();
    let mut iframes: Vec<(usize, bool)> = Vec::new();
    let mut segments: Vec<Segment> = Vec::with_capacity(lines.len() / 2);
    let mut current = Segment::default();
    let mut in_segment = false;
    let mut order = Order::default();
    let mut pending_variant: Option<Variant> = None;
    let mut header_end: Option<usize> = None;
    let mut target_duration: Option<f64> = None;
    let mut media_sequence: Option<(usize, &str)> = None;
    let mut discontinuity_sequence: Option<(usize, &str)> = None;
    let mut target_line: Option<usize> = None;
    let mut steering_line: Option<usize> = None;
    let (mut endlist, mut playlist_type, mut skip) = (false, false, false);
    let mut next_range_start = 0u64;
    let filter = &plan.filter;
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let LineKind::Tag { tag, name, value } = line.kind else {
            if line.kind == LineKind::Uri {
                let (segment, variant) = order.uri();
                if let Some(mut v) = pending_variant.take().filter(|_| variant) {
                    v.uri = i;
                    variants.push(v);
                }
                if header_end.is_none() {
                    header_end = Some(i);
                }
                if segment {
                    current.uri = i;
                    segments.push(std::mem::take(&mut current));
                    in_segment = false;
                }
            }
            continue;
        };
        if header_end.is_none() && !tag.is_playlist() {
            header_end = Some(i);
        }
        if header_end.is_some() && !in_segment && tag != Tag::Endlist {
            current.start = i;
            in_segment = true;
        }
        let attrs_of =
            |value| attributes(value).map_err(|e| RewriteError::at(n, format!("{name}: {e}")));
        match tag {
            Tag::StreamInf => {
                order.stream_inf(n)?;
                let attrs = attrs_of(value)?;
                let bandwidth = attr(&attrs, "BANDWIDTH").and_then(|a| a.value.parse().ok());
                let keep = filter.keeps(
                    bandwidth,
                    attr(&attrs, "RESOLUTION").and_then(|a| height(a.value)),
                    attr(&attrs, "CODECS").map(Attr::unquoted),
                );
                pending_variant = Some(Variant {
                    tag: i,
                    uri: i,
                    bandwidth,
                    keep,
                });
            }
            Tag::IFrameStreamInf => {
                let attrs = attrs_of(value)?;
                let keep = filter.keeps(
                    attr(&attrs, "BANDWIDTH").and_then(|a| a.value.parse().ok()),
                    attr(&attrs, "RESOLUTION").and_then(|a| height(a.value)),
                    attr(&attrs, "CODECS").map(Attr::unquoted),
                );
                iframes.push((i, keep));
            }
            Tag::Extinf => current.duration = order.extinf(n, value)?,
            Tag::TargetDuration => {
                target_duration = value.trim().parse().ok();
                target_line = Some(i);
            }
            // Parsed only when the live window changes them: a value out of spec (some
            // packagers write negative ones) passes through untouched otherwise.
            Tag::MediaSequence => media_sequence = Some((i, value.trim())),
            Tag::DiscontinuitySequence => discontinuity_sequence = Some((i, value.trim())),
            Tag::Discontinuity => current.discontinuities += 1,
            Tag::Key => {
                let attrs = attrs_of(value)?;
                let format = attr(&attrs, "KEYFORMAT").map_or("identity", Attr::unquoted);
                current.keys.push((format.to_string(), i));
            }
            Tag::Map => {
                attrs_of(value)?;
                current.map = Some(i);
            }
            Tag::Byterange => {
                let (len, offset) = byterange(value)
                    .ok_or_else(|| RewriteError::at(n, format!("EXT-X-BYTERANGE {value:?}")))?;
                let start = offset.unwrap_or(next_range_start);
                next_range_start = start.saturating_add(len);
                current.byterange = Some((i, len, start, offset.is_some()));
            }
            Tag::ProgramDateTime => current.date_time = Some(value.trim()),
            Tag::Endlist => endlist = true,
            Tag::PlaylistType => playlist_type = true,
            Tag::Skip => skip = true,
            Tag::ContentSteering => {
                attrs_of(value)?;
                steering_line = Some(i);
            }
            Tag::OtherUri { .. } => {
                attrs_of(value)?;
            }
            _ => {}
        }
    }
    order.finish()?;
    let master = !variants.is_empty()
        || !iframes.is_empty()
        || lines
            .iter()
            .any(|l| matches!(l.kind, LineKind::Tag { tag, .. } if tag.is_master()));

    let mut drop = vec![false; lines.len()];
    let mut replace: Vec<Option<String>> = vec![None; lines.len()];
    let mut insert: Vec<(usize, String)> = Vec::new();

    // Rendition filtering; a multivariant playlist always keeps at least one variant.
    if !variants.is_empty() && variants.iter().all(|v| !v.keep) {
        if let Some(lowest) = variants
            .iter_mut()
            .min_by_key(|v| v.bandwidth.unwrap_or(u64::MAX))
        {
            lowest.keep = true;
        }
    }
    for v in variants.iter().filter(|v| !v.keep) {
        drop[v.tag..=v.uri].iter_mut().for_each(|d| *d = true);
    }
    for &(i, keep) in &iframes {
        drop[i] |= !keep;
    }

    // Live window.
    let live = !master && !endlist && !playlist_type && !skip;
    if let (Some(window), true) = (plan.live_window_s, live && !segments.is_empty()) {
        let window = window.max(3.0 * target_duration.unwrap_or(0.0));
        let mut first_kept = segments.len();
        let mut kept = 0.0;
        while first_kept > 0 && kept < window {
            first_kept -= 1;
            kept += segments[first_kept]
                .duration
                .parse::<f64>()
                .map_or(0.0, |d| d.max(0.0));
        }
        if first_kept > 0 {
            let (dropped, rest) = segments.split_at(first_kept);
            let first = &rest[0];
            for (line, drop) in drop
                .iter_mut()
                .enumerate()
                .take(first.start)
                .skip(dropped[0].start)
            {
                // Playlist tags written between segments (some packagers put
                // EXT-X-MEDIA-SEQUENCE after EXT-X-MAP) are not the segments' to take.
                let playlist_tag =
                    matches!(lines[line].kind, LineKind::Tag { tag, .. } if tag.is_playlist());
                *drop = !playlist_tag;
            }
            // State that dropped segments set and the first kept one inherits.
            if first.keys.is_empty() {
                let mut carried: Vec<(&str, usize)> = Vec::new();
                for (format, line) in dropped.iter().flat_map(|s| &s.keys) {
                    carried.retain(|(f, _)| f != format);
                    carried.push((format, *line));
                }
                // Kept where they were: every line between them and the first kept
                // segment is gone, and their URIs are rewritten like the others.
                for (_, line) in carried {
                    drop[line] = false;
                }
            }
            if first.map.is_none() {
                if let Some(map) = dropped.iter().rev().find_map(|s| s.map) {
                    drop[map] = false;
                }
            }
            // The first kept segment gets the date of the window's start when the
            // dropped ones had it: the playlist keeps its timeline, and an
            // EXT-X-DATERANGE needs one (rfc8216bis 4.4.5.1).
            if first.date_time.is_none() {
                if let Some(date) = carried_date_time(dropped, first) {
                    insert.push((first.start, format!("#EXT-X-PROGRAM-DATE-TIME:{date}")));
                }
            }
            if let Some((line, len, start, false)) = first.byterange {
                replace[line] = Some(format!("#EXT-X-BYTERANGE:{len}@{start}"));
            }
            let number = |(line, value): (usize, &str)| -> Result<(usize, u64), RewriteError> {
                value.parse::<u64>().map(|v| (line, v)).map_err(|_| {
                    RewriteError::at(line + 1, format!("{value:?} is not a sequence number"))
                })
            };
            let media_sequence = media_sequence.map(number).transpose()?;
            let discontinuity_sequence = discontinuity_sequence.map(number).transpose()?;
            let skipped = first_kept as u64;
            match media_sequence {
                Some((line, seq)) => {
                    replace[line] = Some(format!("#EXT-X-MEDIA-SEQUENCE:{}", seq + skipped))
                }
                None => insert.push((
                    target_line.map_or(after_header, |t| t + 1),
                    format!("#EXT-X-MEDIA-SEQUENCE:{skipped}"),
                )),
            }
            let gone: u64 = dropped.iter().map(|s| s.discontinuities).sum();
            if gone > 0 {
                match discontinuity_sequence {
                    Some((line, seq)) => {
                        replace[line] =
                            Some(format!("#EXT-X-DISCONTINUITY-SEQUENCE:{}", seq + gone))
                    }
                    None => insert.push((
                        media_sequence
                            .or(target_line.map(|t| (t, 0)))
                            .map_or(after_header, |(l, _)| l + 1),
                        format!("#EXT-X-DISCONTINUITY-SEQUENCE:{gone}"),
                    )),
                }
            }
        }
    }

    // Content steering (multivariant playlists only).
    if let (Some(s), true) = (&plan.steering, master) {
        // The steering server is fetched by the player like any other URI.
        let uri = plan.map_uri(&s.server_uri, crate::uri::Scope::ALL);
        let uri = uri.as_deref().unwrap_or(&s.server_uri);
        let mut tag = format!("#EXT-X-CONTENT-STEERING:SERVER-URI=\"{uri}\"");
        if let Some(p) = &s.pathway {
            tag.push_str(&format!(",PATHWAY-ID=\"{p}\""));
        }
        match steering_line {
            Some(line) => replace[line] = Some(tag),
            None => insert.push((after_header, tag)),
        }
    }

    // Write what stays, rewriting URIs on the way.
    let mut changed =
        drop.iter().any(|d| *d) || replace.iter().any(Option::is_some) || !insert.is_empty();
    insert.sort_by_key(|(at, _)| *at);
    let mut inserts = insert.into_iter().peekable();
    let uri_count = lines.iter().filter(|l| l.kind != LineKind::Other).count();
    let mut out = String::with_capacity(text.len() + uri_count * (plan.query.len() + 1) + 256);
    out.push_str(bom);
    for (i, line) in lines.iter().enumerate() {
        while let Some((_, tag)) = inserts.next_if(|(at, _)| *at == i) {
            out.push_str(&tag);
            out.push_str(newline);
        }
        if drop[i] {
            continue;
        }
        if let Some(new) = &replace[i] {
            out.push_str(new);
            out.push_str(line.end);
            continue;
        }
        match line.kind {
            LineKind::Uri => changed |= write_uri_line(&mut out, plan, line),
            LineKind::Tag { tag, .. } if !tag.uri_attributes().is_empty() => {
                changed |= write_uri_tag(&mut out, plan, line, tag.uri_attributes(), i + 1)?;
            }
            _ => out.push_str(line.text),
        }
        out.push_str(line.end);
    }
    for (_, tag) in inserts {
        if !out.ends_with('\n') {
            out.push_str(newline);
        }
        out.push_str(&tag);
        out.push_str(newline);
    }
    Ok(changed.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_config, Viewer};

    fn run(config: &str, input: &str) -> Result<Option<String>, RewriteError> {
        let plan = parse_config(config).unwrap().plan(&Viewer {
            host: Some("edge.example"),
            path: "/vod/a/index.m3u8",
            ..Viewer::default()
        });
        rewrite(input, &plan)
    }

    const MASTER: &str = "#EXTM3U\r\n\
#EXT-X-VERSION:6\r\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",URI=\"audio/en.m3u8\"\r\n\
#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI=\"skd://key1\",KEYFORMAT=\"com.apple.streamingkeydelivery\"\r\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"aud\"\r\n\
360p.m3u8\r\n\
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080,CODECS=\"hvc1.2.4.L123.B0,mp4a.40.2\"\r\n\
1080p.m3u8\r\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,RESOLUTION=640x360,URI=\"360p-iframes.m3u8\"\r\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,RESOLUTION=1920x1080,URI=\"1080p-iframes.m3u8\"\r\n\
#X-CUSTOM-TAG:URI=\"untouched\"\r\n";

    #[test]
    fn token_goes_on_every_uri_line_and_uri_attribute() {
        let out = run(r#"{"append_query":"t=1"}"#, MASTER).unwrap().unwrap();
        assert_eq!(
            out,
            "#EXTM3U\r\n\
#EXT-X-VERSION:6\r\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",URI=\"audio/en.m3u8?t=1\"\r\n\
#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI=\"skd://key1\",KEYFORMAT=\"com.apple.streamingkeydelivery\"\r\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"aud\"\r\n\
360p.m3u8?t=1\r\n\
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080,CODECS=\"hvc1.2.4.L123.B0,mp4a.40.2\"\r\n\
1080p.m3u8?t=1\r\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,RESOLUTION=640x360,URI=\"360p-iframes.m3u8?t=1\"\r\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,RESOLUTION=1920x1080,URI=\"1080p-iframes.m3u8?t=1\"\r\n\
#X-CUSTOM-TAG:URI=\"untouched\"\r\n"
        );
    }

    /// `EXT-X-SESSION-DATA` may point at a JSON file the player fetches (`URI`) instead of
    /// giving a `VALUE`: that URI carries the token; a `VALUE` stays as it is.
    #[test]
    fn session_data_uris_carry_the_token() {
        let input = "#EXTM3U\n\
#EXT-X-SESSION-DATA:DATA-ID=\"com.example.title\",URI=\"meta/title.json\"\n\
#EXT-X-SESSION-DATA:DATA-ID=\"com.example.lang\",VALUE=\"en\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p.m3u8\n";
        let out = run(r#"{"append_query":"t=1"}"#, input).unwrap().unwrap();
        assert!(out.contains("URI=\"meta/title.json?t=1\"\n"), "{out}");
        assert!(
            out.contains("DATA-ID=\"com.example.lang\",VALUE=\"en\"\n"),
            "{out}"
        );
    }

    /// HLS Interstitials: the asset and asset-list URIs of an `EXT-X-DATERANGE` are
    /// fetched by the player, so they carry the token too; other date ranges stay as
    /// they are.
    #[test]
    fn interstitial_assets_carry_the_token() {
        let input = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n\
#EXT-X-PROGRAM-DATE-TIME:2026-11-28T00:00:00.000Z\n\
#EXT-X-DATERANGE:ID=\"ad1\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-11-28T00:00:03.000Z\",X-ASSET-URI=\"ads/ad1.m3u8\",X-RESUME-OFFSET=0\n\
#EXT-X-DATERANGE:ID=\"ad2\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-11-28T00:00:05.000Z\",X-ASSET-LIST=\"ads/list.json\"\n\
#EXT-X-DATERANGE:ID=\"s1\",START-DATE=\"2026-11-28T00:00:00.000Z\",SCTE35-OUT=0xFC30\n\
#EXTINF:6.0,\nseg1.ts\n";
        let out = run(r#"{"append_query":"t=1"}"#, input).unwrap().unwrap();
        assert!(
            out.contains("X-ASSET-URI=\"ads/ad1.m3u8?t=1\",X-RESUME-OFFSET=0\n"),
            "{out}"
        );
        assert!(
            out.contains("X-ASSET-LIST=\"ads/list.json?t=1\"\n"),
            "{out}"
        );
        assert!(
            out.contains("ID=\"s1\",START-DATE=\"2026-11-28T00:00:00.000Z\",SCTE35-OUT=0xFC30\n")
        );
        assert!(out.contains("seg1.ts?t=1\n"));
    }

    #[test]
    fn renditions_are_filtered_by_bandwidth_height_and_codec() {
        for config in [
            r#"{"max_bandwidth":1000000}"#,
            r#"{"max_height":720}"#,
            r#"{"deny_codecs":["hvc1"]}"#,
        ] {
            let out = run(config, MASTER).unwrap().unwrap();
            assert!(out.contains("360p.m3u8\r\n"), "{config}");
            assert!(
                !out.contains("1080p.m3u8") && !out.contains("hvc1"),
                "{config}: {out}"
            );
            let iframes_kept = out.contains("1080p-iframes");
            assert_eq!(iframes_kept, !config.contains("max_height"), "{config}");
        }
        // Never an empty multivariant playlist: the lowest variant stays.
        let out = run(r#"{"max_bandwidth":1}"#, MASTER).unwrap().unwrap();
        assert!(out.contains("360p.m3u8") && !out.contains("1080p.m3u8"));
    }

    #[test]
    fn steering_is_inserted_or_replaced() {
        let out = run(
            r#"{"steering":{"server_uri":"/steer","pathway":"CDN-A"}}"#,
            MASTER,
        )
        .unwrap()
        .unwrap();
        assert!(out.starts_with("#EXTM3U\r\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"/steer\",PATHWAY-ID=\"CDN-A\"\r\n#EXT-X-VERSION"));
        let again = run(
            r#"{"steering":{"server_uri":"https://s.example/v2"}}"#,
            &out,
        )
        .unwrap()
        .unwrap();
        assert_eq!(again.matches("EXT-X-CONTENT-STEERING").count(), 1);
        assert!(again.contains("SERVER-URI=\"https://s.example/v2\"\r\n"));
        // Media playlists have no steering.
        assert_eq!(
            run(
                r#"{"steering":{"server_uri":"/s"}}"#,
                "#EXTM3U\n#EXTINF:4,\na.ts\n"
            )
            .unwrap(),
            None
        );
    }

    fn live(n: u64) -> String {
        let mut p = String::from(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:100\n",
        );
        for i in 0..n {
            if i == 2 {
                p.push_str("#EXT-X-DISCONTINUITY\n#EXT-X-KEY:METHOD=AES-128,URI=\"k2.key\"\n#EXT-X-MAP:URI=\"init2.mp4\"\n");
            }
            p.push_str("#EXTINF:4.0,\n#EXT-X-BYTERANGE:1000\nseg.mp4\n");
        }
        p.push_str("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"next.mp4\"\n");
        p
    }

    /// The window's first segment gets the date of the dropped ones' timeline: the last
    /// dropped `EXT-X-PROGRAM-DATE-TIME` plus the durations since; none is made up across
    /// a discontinuity.
    #[test]
    fn live_window_carries_the_program_date_time() {
        let playlist = |second_tag: &str| {
            let mut p = String::from(
                "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n\
                 #EXT-X-PROGRAM-DATE-TIME:2026-11-28T23:59:50.500+01:00\n",
            );
            for i in 0..6 {
                if i == 2 {
                    p.push_str(second_tag);
                }
                p.push_str(&format!("#EXTINF:4.004,\nseg{i}.ts\n"));
            }
            p
        };
        let out = run(r#"{"live_window_s":12}"#, &playlist(""))
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:10\n\
#EXT-X-PROGRAM-DATE-TIME:2026-11-29T00:00:02.512+01:00\n\
#EXTINF:4.004,\nseg3.ts\n#EXTINF:4.004,\nseg4.ts\n#EXTINF:4.004,\nseg5.ts\n"
        );
        // A later date on a dropped segment is the one carried on.
        let out = run(
            r#"{"live_window_s":12}"#,
            &playlist("#EXT-X-PROGRAM-DATE-TIME:2026-11-28T23:00:00Z\n"),
        )
        .unwrap()
        .unwrap();
        assert!(out.contains("#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-PROGRAM-DATE-TIME:2026-11-28T23:00:04.004Z\n#EXTINF:4.004,\nseg3.ts"), "{out}");
        // Across a discontinuity the date is unknown: none is written.
        let out = run(
            r#"{"live_window_s":12}"#,
            &playlist("#EXT-X-DISCONTINUITY\n"),
        )
        .unwrap()
        .unwrap();
        assert!(!out.contains("PROGRAM-DATE-TIME"), "{out}");
    }

    #[test]
    fn live_window_keeps_the_last_seconds_and_what_they_inherit() {
        let out = run(r#"{"live_window_s":12}"#, &live(10)).unwrap().unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:107\n\
#EXT-X-DISCONTINUITY-SEQUENCE:1\n\
#EXT-X-KEY:METHOD=AES-128,URI=\"k2.key\"\n#EXT-X-MAP:URI=\"init2.mp4\"\n\
#EXTINF:4.0,\n#EXT-X-BYTERANGE:1000@7000\nseg.mp4\n\
#EXTINF:4.0,\n#EXT-X-BYTERANGE:1000\nseg.mp4\n\
#EXTINF:4.0,\n#EXT-X-BYTERANGE:1000\nseg.mp4\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"next.mp4\"\n"
        );
        // Never below three target durations; VOD and EVENT playlists are never trimmed.
        let out = run(r#"{"live_window_s":1}"#, &live(10)).unwrap().unwrap();
        assert_eq!(out.matches("#EXTINF").count(), 3);
        let vod = format!("{}#EXT-X-ENDLIST\n", live(10));
        assert_eq!(run(r#"{"live_window_s":4}"#, &vod).unwrap(), None);
        let event = live(10).replace(
            "#EXT-X-VERSION:7\n",
            "#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:EVENT\n",
        );
        assert_eq!(run(r#"{"live_window_s":4}"#, &event).unwrap(), None);
        // A window longer than the playlist changes nothing.
        assert_eq!(run(r#"{"live_window_s":100}"#, &live(10)).unwrap(), None);
    }

    #[test]
    fn malformed_playlists_are_errors_with_a_line() {
        let cases = [
            ("not a playlist\n", 1, "#EXTM3U"),
            ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", 2, "no URI line"),
            ("#EXTM3U\n#EXTINF:4,\n#EXTINF:4,\na.ts\n", 3, "no URI line"),
            ("#EXTM3U\n#EXTINF:abc,\na.ts\n", 2, "not a number"),
            (
                "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.key\n#EXTINF:4,\na.ts\n",
                2,
                "unterminated",
            ),
            ("#EXTM3U\n#EXT-X-MAP:URI\n", 2, "no value"),
            ("#EXTM3U\n#EXT-X-MAP:URI=init.mp4\n", 2, "URI is not a quoted string"),
            ("#EXTM3U\n#EXTINF:4,\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.ts\n", 3, "between EXTINF"),
            ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXTINF:4,\na.ts\n", 3, "between EXT-X-STREAM-INF"),
            ("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:-1\n#EXTINF:1,\na.ts\n#EXTINF:1,\na.ts\n#EXTINF:1,\na.ts\n#EXTINF:1,\na.ts\n", 3, "sequence number"),
        ];
        for (input, line, reason) in cases {
            match run(r#"{"append_query":"t=1","live_window_s":1}"#, input) {
                Err(RewriteError::Malformed { line: l, reason: r }) => {
                    assert_eq!(l, line, "{input:?}: {r}");
                    assert!(r.contains(reason), "{input:?}: {r}");
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_tags_comments_and_spacing_pass_through() {
        let input = "\u{FEFF}#EXTM3U\n# a comment\n#EXT-X-UNKNOWN:URI=\"x\",FOO=BAR\n\n#EXTINF:4, title, with comma\n  seg 1.ts  \n#EXT-X-ENDLIST";
        let out = run(r#"{"append_query":"t=1"}"#, input).unwrap().unwrap();
        assert_eq!(
            out,
            "\u{FEFF}#EXTM3U\n# a comment\n#EXT-X-UNKNOWN:URI=\"x\",FOO=BAR\n\n#EXTINF:4, title, with comma\n  seg 1.ts?t=1  \n#EXT-X-ENDLIST"
        );
    }

    #[test]
    fn blank_lines_before_the_header_are_kept() {
        let out = run(
            r#"{"append_query":"t=1","steering":{"server_uri":"/s"}}"#,
            "\n\n#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(out, "\n\n#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI=\"/s?t=1\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8?t=1\n");
        assert!(run(r#"{"append_query":"t=1"}"#, "\\\n#EXTM3U\n").is_err());
    }

    #[test]
    fn attribute_lists() {
        let attrs = attributes("A=1, B=\"x,y\",C=0x1F,D=\"\"").unwrap();
        let got: Vec<(&str, &str)> = attrs.iter().map(|a| (a.name, a.value)).collect();
        assert_eq!(
            got,
            vec![("A", "1"), ("B", "\"x,y\""), ("C", "0x1F"), ("D", "\"\"")]
        );
        assert!(attributes("A=\"x\"B=1").is_err());
        assert!(attributes("URI=a.mp4\",B=1").is_err());
        assert!(attributes(",").is_err());
        assert!(attributes("").unwrap().is_empty());
    }
}
