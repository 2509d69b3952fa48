//! DASH MPDs (ISO/IEC 23009-1), rewritten by splicing: the XML is read with positions,
//! and only the attribute values and texts an operation changes (and the `Representation`s
//! a filter drops) are replaced. Namespaces, comments, unknown elements and formatting
//! are the input's bytes.

use crate::uri::Scope;
use crate::{Plan, RewriteError};
use quick_xml::escape::{escape, unescape};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Attributes that hold a URL, per element; `true` for templates (`$…$` identifiers).
const URL_ATTRIBUTES: &[(&str, &str, bool)] = &[
    ("SegmentTemplate", "media", true),
    ("SegmentTemplate", "initialization", true),
    ("SegmentTemplate", "index", true),
    ("SegmentTemplate", "bitstreamSwitching", true),
    ("SegmentURL", "media", false),
    ("SegmentURL", "index", false),
    ("Initialization", "sourceURL", false),
    ("RepresentationIndex", "sourceURL", false),
    ("BitstreamSwitching", "sourceURL", false),
];

/// Elements whose text is a URL.
const URL_ELEMENTS: &[&str] = &["BaseURL", "Location", "PatchLocation"];

struct Edit {
    start: usize,
    end: usize,
    new: String,
}

struct Rep {
    start: usize,
    end: usize,
    bandwidth: Option<u64>,
    keep: bool,
}

struct Frame<'a> {
    name: &'a str,
    /// Where the element's start tag begins and its content starts.
    start: usize,
    content: usize,
    /// A `BaseURL` on this level or above: relative URLs below resolve against it, not
    /// against the MPD's own URL (so `base_url` does not apply to them again).
    based: bool,
    /// That `BaseURL` points at a host the viewer's token must not go to.
    foreign: bool,
    codecs: Option<String>,
    height: Option<u32>,
    /// `Representation`s of an `AdaptationSet`, for filtering.
    reps: Vec<Rep>,
    rep: Option<(Option<u64>, bool)>,
}

fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn name_of<'a>(text: &'a str, e: &BytesStart<'a>) -> &'a str {
    let local = e.local_name();
    let bytes = local.into_inner();
    let offset = bytes.as_ptr() as usize - text.as_ptr() as usize;
    &text[offset..offset + bytes.len()]
}

pub(crate) fn rewrite(text: &str, plan: &Plan) -> Result<Option<String>, RewriteError> {
    // The reader skips a byte order mark without counting it in its positions: every
    // position below is in the text after it.
    let (bom, text) = match text.strip_prefix('\u{FEFF}') {
        Some(rest) => ("\u{FEFF}", rest),
        None => ("", text),
    };
    // The reader would skip a second one too, and every position would be off by its
    // three bytes (found by the dash fuzz target). Only one may start a document.
    if text.starts_with('\u{FEFF}') {
        return Err(RewriteError::at(1, "a second byte order mark"));
    }
    let mut reader = Reader::from_str(text);
    let mut edits: Vec<Edit> = Vec::new();
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut seen_root = false;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            RewriteError::at(
                line_of(text, reader.error_position() as usize),
                e.to_string(),
            )
        })?;
        let after = reader.buffer_position() as usize;
        let (start, empty) = match event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                let frame = stack.pop().expect("the reader checks that end tags match");
                close(text, plan, frame, before, after, &mut stack, &mut edits)?;
                continue;
            }
            Event::Eof => break,
            Event::Text(t) if stack.is_empty() && !t.iter().all(u8::is_ascii_whitespace) => {
                return Err(RewriteError::at(
                    line_of(text, before),
                    "text outside the MPD element",
                ));
            }
            _ => continue,
        };
        let name = name_of(text, &start);
        if stack.is_empty() {
            if seen_root {
                return Err(RewriteError::at(
                    line_of(text, before),
                    "a second root element",
                ));
            }
            if name != "MPD" {
                return Err(RewriteError::at(
                    line_of(text, before),
                    format!("the root element is <{name}>, not <MPD>"),
                ));
            }
            seen_root = true;
        }
        let parent = stack.last();
        let mut frame = Frame {
            name,
            start: before,
            content: after,
            based: parent.is_some_and(|p| p.based),
            foreign: parent.is_some_and(|p| p.foreign),
            codecs: parent.and_then(|p| p.codecs.clone()),
            height: parent.and_then(|p| p.height),
            reps: Vec::new(),
            rep: None,
        };
        let mut bandwidth = None;
        for attribute in start.attributes() {
            let attribute = attribute
                .map_err(|e| RewriteError::at(line_of(text, before), format!("<{name}>: {e}")))?;
            let key = std::str::from_utf8(attribute.key.local_name().into_inner()).unwrap_or("");
            let raw = &attribute.value;
            let raw_str = std::str::from_utf8(raw).unwrap_or("");
            match key {
                "codecs" => frame.codecs = Some(raw_str.to_string()),
                "height" => frame.height = raw_str.trim().parse().ok(),
                "bandwidth" => bandwidth = raw_str.trim().parse().ok(),
                _ => {}
            }
            let Some(&(_, _, template)) = URL_ATTRIBUTES
                .iter()
                .find(|(el, at, _)| *el == name && *at == key)
            else {
                continue;
            };
            let value = unescape(raw_str).map_err(|e| {
                RewriteError::at(line_of(text, before), format!("<{name} {key}>: {e}"))
            })?;
            if let Some(new) = map(plan, &frame, &value, template, true) {
                let offset = raw.as_ptr() as usize - text.as_ptr() as usize;
                edits.push(Edit {
                    start: offset,
                    end: offset + raw.len(),
                    new: escape(&new).into_owned(),
                });
            }
        }
        if name == "Representation" {
            let keep = plan
                .filter
                .keeps(bandwidth, frame.height, frame.codecs.as_deref());
            frame.rep = Some((bandwidth, keep));
        }
        if empty {
            close(text, plan, frame, after, after, &mut stack, &mut edits)?;
        } else {
            stack.push(frame);
        }
    }
    if !seen_root {
        return Err(RewriteError::at(1, "no MPD element"));
    }
    if edits.is_empty() {
        return Ok(None);
    }
    edits.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    out.push_str(bom);
    let mut cursor = 0;
    for edit in edits {
        if edit.start < cursor {
            // Inside a Representation that was dropped.
            continue;
        }
        out.push_str(&text[cursor..edit.start]);
        out.push_str(&edit.new);
        cursor = edit.end;
    }
    out.push_str(&text[cursor..]);
    Ok(Some(out))
}

/// The new form of a URL in the MPD, given where it sits.
/// The new form of a URL in the MPD, given where it sits. `query` is false where no
/// query may go (a directory BaseURL).
fn map(plan: &Plan, frame: &Frame<'_>, value: &str, template: bool, query: bool) -> Option<String> {
    let value = value.trim();
    let relative = crate::uri::host_of(value).is_none() && !value.contains(':');
    // Resolved against a BaseURL: `base_url` applied there already; the token goes only
    // where that BaseURL goes.
    let below_base = relative && frame.based;
    let scope = Scope {
        base_url: !below_base,
        query: query && !(below_base && frame.foreign),
        template,
    };
    plan.map_uri(value, scope)
}

fn close<'a>(
    text: &'a str,
    plan: &Plan,
    frame: Frame<'a>,
    content_end: usize,
    end: usize,
    stack: &mut [Frame<'a>],
    edits: &mut Vec<Edit>,
) -> Result<(), RewriteError> {
    if URL_ELEMENTS.contains(&frame.name) && frame.content < content_end {
        let raw = &text[frame.content..content_end];
        // An element holding markup (a comment, CDATA, a child element) is left as it is:
        // splicing around markup is not safe, and an edit to a child could otherwise change
        // what a second pass sees (found by the dash fuzz target). Such a BaseURL may still
        // point anywhere, so what is below it is treated as foreign: no token, no new base.
        if raw.contains('<') {
            if frame.name == "BaseURL" {
                if let Some(parent) = stack.last_mut() {
                    parent.based = true;
                    parent.foreign = true;
                }
            }
        } else {
            let value = unescape(raw).map_err(|e| {
                RewriteError::at(line_of(text, frame.start), format!("<{}>: {e}", frame.name))
            })?;
            let url = value.trim();
            // Location and PatchLocation resolve against the MPD's URL, whatever BaseURL says.
            let at = if frame.name == "BaseURL" {
                stack.last()
            } else {
                None
            };
            let context = Frame {
                name: frame.name,
                start: 0,
                content: 0,
                based: at.is_some_and(|p| p.based),
                foreign: at.is_some_and(|p| p.foreign),
                codecs: None,
                height: None,
                reps: Vec::new(),
                rep: None,
            };
            // A BaseURL naming a directory passes no query on (RFC 3986 resolution drops
            // it); one naming a file (SegmentBase) is itself what the player fetches.
            let directory = frame.name == "BaseURL" && url.ends_with('/');
            let new = map(plan, &context, url, false, !directory);
            let resolved = new.as_deref().unwrap_or(url);
            if let Some(new) = &new {
                let lead = raw.len() - raw.trim_start().len();
                let trail = raw.len() - raw.trim_end().len();
                edits.push(Edit {
                    start: frame.content + lead,
                    end: content_end - trail,
                    new: escape(new).into_owned(),
                });
            }
            if frame.name == "BaseURL" {
                if let Some(parent) = stack.last_mut() {
                    if crate::uri::host_of(resolved).is_some() {
                        parent.foreign = !crate::uri::eligible(plan, resolved);
                    }
                    parent.based = true;
                }
            }
        }
    }
    if let Some((bandwidth, keep)) = frame.rep {
        if let Some(parent) = stack.last_mut() {
            parent.reps.push(Rep {
                start: frame.start,
                end,
                bandwidth,
                keep,
            });
        }
    }
    if !frame.reps.is_empty() {
        let mut reps = frame.reps;
        if reps.iter().all(|r| !r.keep) {
            if let Some(lowest) = reps
                .iter_mut()
                .min_by_key(|r| r.bandwidth.unwrap_or(u64::MAX))
            {
                lowest.keep = true;
            }
        }
        for rep in reps.iter().filter(|r| !r.keep) {
            let (start, end) = whole_lines(text, rep.start, rep.end);
            edits.push(Edit {
                start,
                end,
                new: String::new(),
            });
        }
    }
    Ok(())
}

/// Widens a span to the whole lines it sits on when nothing else is on them, so a
/// removed element leaves no blank line.
fn whole_lines(text: &str, start: usize, end: usize) -> (usize, usize) {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let rest = &text[end..];
    let line_end = rest.find('\n').map(|i| end + i + 1);
    match line_end {
        Some(e) if text[line_start..start].trim().is_empty() && text[end..e].trim().is_empty() => {
            (line_start, e)
        }
        _ => (start, end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_config, Viewer};

    fn run(config: &str, input: &str) -> Result<Option<String>, RewriteError> {
        let plan = parse_config(config).unwrap().plan(&Viewer {
            host: Some("edge.example"),
            path: "/vod/a/manifest.mpd",
            ..Viewer::default()
        });
        rewrite(input, &plan)
    }

    const MPD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:cenc="urn:mpeg:cenc:2013" type="dynamic">
  <Location>https://origin.example/live/manifest.mpd</Location>
  <PatchLocation ttl="60">patch.mpp</PatchLocation>
  <!-- packager: x -->
  <Period id="p0">
    <BaseURL>p0/</BaseURL>
    <AdaptationSet mimeType="video/mp4" codecs="avc1.64001f">
      <cenc:pssh>AAAA</cenc:pssh>
      <SegmentTemplate media="v-$RepresentationID$-$Number%05d$.m4s" initialization="v-$RepresentationID$-init.mp4" startNumber="1"/>
      <Representation id="360" bandwidth="800000" height="360"/>
      <Representation id="1080" bandwidth="5000000" height="1080"/>
      <Representation id="hevc" bandwidth="3000000" height="720" codecs="hvc1.1.6.L93.B0"/>
    </AdaptationSet>
    <AdaptationSet mimeType="audio/mp4">
      <Representation id="a" bandwidth="128000">
        <BaseURL>https://third.party/audio.mp4</BaseURL>
        <SegmentBase indexRange="0-100"><Initialization range="0-50"/></SegmentBase>
      </Representation>
      <Representation id="b" bandwidth="64000">
        <BaseURL>audio-b.mp4</BaseURL>
      </Representation>
    </AdaptationSet>
    <AdaptationSet>
      <Representation id="t" bandwidth="1000">
        <SegmentList><Initialization sourceURL="t/init.mp4"/><SegmentURL media="t/1.m4s?x=1&amp;y=2"/></SegmentList>
      </Representation>
    </AdaptationSet>
  </Period>
  <Period id="p1"><BaseURL>https://cdn.example/p1/</BaseURL>
    <AdaptationSet><SegmentTemplate media="$Time$.m4s"/><Representation id="v" bandwidth="1"/></AdaptationSet>
  </Period>
</MPD>
"#;

    #[test]
    fn token_reaches_templates_lists_file_base_urls_and_locations() {
        let out = run(
            r#"{"append_query":"t=a$b","rewrite":[{"from":"https://origin.example/","to":"/"}]}"#,
            MPD,
        )
        .unwrap()
        .unwrap();
        let want = MPD
            .replace(
                "https://origin.example/live/manifest.mpd<",
                "/live/manifest.mpd?t=a$b<",
            )
            .replace("patch.mpp<", "patch.mpp?t=a$b<")
            .replace("$Number%05d$.m4s\"", "$Number%05d$.m4s?t=a$$b\"")
            .replace("-init.mp4\"", "-init.mp4?t=a$$b\"")
            .replace("audio-b.mp4<", "audio-b.mp4?t=a$b<")
            .replace("t/init.mp4\"", "t/init.mp4?t=a$b\"")
            .replace("t/1.m4s?x=1&amp;y=2\"", "t/1.m4s?x=1&amp;y=2&amp;t=a$b\"");
        assert_eq!(out, want);
        // The third party's BaseURL and anything under the foreign p1 BaseURL get nothing.
        assert!(out.contains("<BaseURL>https://third.party/audio.mp4</BaseURL>"));
        assert!(out.contains("media=\"$Time$.m4s\""));
    }

    #[test]
    fn filters_drop_representations_but_never_a_whole_set() {
        let out = run(
            r#"{"max_height":720,"deny_codecs":["hvc1"],"max_bandwidth":100}"#,
            MPD,
        )
        .unwrap()
        .unwrap();
        assert!(out.contains(r#"<Representation id="360""#));
        assert!(!out.contains(r#"id="1080""#) && !out.contains(r#"id="hevc""#));
        // Audio: both over 100 b/s, the lowest stays; its inner elements go with the other.
        assert!(
            out.contains(r#"id="b""#) && !out.contains(r#"id="a""#) && !out.contains("third.party")
        );
        assert!(!out.contains("\n\n"), "no blank lines left: {out}");
        roxmltree::Document::parse(&out).unwrap();
    }

    #[test]
    fn base_url_applies_once_at_the_top_of_the_chain() {
        let out = run(r#"{"base_url":"https://cdn2.example"}"#, MPD)
            .unwrap()
            .unwrap();
        assert!(out.contains("<BaseURL>https://cdn2.example/vod/a/p0/</BaseURL>"));
        assert!(out.contains("<PatchLocation ttl=\"60\">https://cdn2.example/vod/a/patch.mpp<"));
        assert!(out.contains("media=\"v-$RepresentationID$-$Number%05d$.m4s\""));
    }

    /// A URL element with markup inside keeps its text; its children are still rewritten,
    /// and the output rewrites again without error. What is below such a BaseURL gets no
    /// token: it may point at a third party.
    #[test]
    fn url_elements_holding_markup_keep_their_text() {
        let input = r#"<MPD><PatchLocation>p.mpp?a=1&amp;b=2<SegmentURL media="&lt;!x.ts"/>tail</PatchLocation><Period><BaseURL>https://third.party/v/<!-- c --></BaseURL><SegmentList><SegmentURL media="s1.m4s"/></SegmentList></Period></MPD>"#;
        let config = r#"{"append_query":"t=1&u=2"}"#;
        let out = run(config, input).unwrap().unwrap();
        assert_eq!(out, input.replace("&lt;!x.ts\"", "&lt;!x.ts?t=1&amp;u=2\""));
        // The token is there already: a second pass changes nothing.
        assert_eq!(run(config, &out).unwrap().unwrap(), out);
    }

    #[test]
    fn a_byte_order_mark_is_kept_and_moves_nothing() {
        let input = format!("\u{FEFF}{MPD}");
        let with = run(r#"{"append_query":"t=1"}"#, &input).unwrap().unwrap();
        let without = run(r#"{"append_query":"t=1"}"#, MPD).unwrap().unwrap();
        assert_eq!(with, format!("\u{FEFF}{without}"));
    }

    #[test]
    fn malformed_mpds_are_errors_with_a_line() {
        let cases = [
            ("<MPD><Period></MPD>", "Period"),
            ("<html/>", "not <MPD>"),
            ("", "no MPD"),
            ("<MPD/><MPD/>", "second root"),
            ("<MPD><BaseURL>a&bogus;</BaseURL></MPD>", ""),
            (
                "\u{FEFF}\u{FEFF}<MPD><BaseURL>a</BaseURL></MPD>",
                "second byte order mark",
            ),
        ];
        for (input, reason) in cases {
            match run(r#"{"append_query":"t=1"}"#, input) {
                Err(RewriteError::Malformed { reason: r, .. }) => {
                    assert!(r.contains(reason), "{input}: {r}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
        match run(
            r#"{"append_query":"t=1"}"#,
            "<MPD>\n<Period>\n<X></Y>\n</MPD>",
        ) {
            Err(RewriteError::Malformed { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
    }
}
