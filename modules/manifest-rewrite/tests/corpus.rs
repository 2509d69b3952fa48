//! Every playlist of the shared HLS corpus and every DASH fixture goes through the
//! rewriter; each output is checked by independent parsers (m3u8-rs for HLS, roxmltree
//! for DASH), for validity and for every URI carrying the token.

use edge_module_manifest_rewrite::{parse_config, rewrite, Kind, Plan, RewriteError, Viewer};
use std::path::{Path, PathBuf};

const TOKEN: &str = "edge_token=k=demo~e=2000000000~sig=AbC";
const EDGE: &str = "edge.example";

fn corpus() -> Vec<PathBuf> {
    // A copy of the shared corpus (see its README for where it comes from), so the tests
    // run wherever the repository is cloned.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hls-corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "m3u8"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 70,
        "the corpus has {} playlists",
        files.len()
    );
    files
}

fn plan(config: &str) -> Plan {
    parse_config(config).unwrap().plan(&Viewer {
        host: Some(EDGE),
        path: "/media/playlist.m3u8",
        token_query: Some(TOKEN),
        ..Viewer::default()
    })
}

/// The corpus playlists that are malformed on purpose, with why.
const MALFORMED: &[(&str, &str)] = &[(
    "windows_playlist.m3u8",
    "line 1: the first line is not #EXTM3U",
)];

/// m3u8-rs, an independent parser: the playlist must parse (leading blank lines, which
/// the rewriter keeps as they came, are skipped for it).
fn parse(text: &str) -> Result<m3u8_rs::Playlist, String> {
    m3u8_rs::parse_playlist_res(text.trim_start().as_bytes()).map_err(|e| format!("{e:?}"))
}

/// Every URI a player fetches, by a scan independent of the rewriter: URI lines and the
/// `URI`/`SERVER-URI` attributes of the tags that name one.
fn uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            out.push(line.to_string());
            continue;
        }
        let tags = [
            "#EXT-X-KEY:",
            "#EXT-X-SESSION-KEY:",
            "#EXT-X-MAP:",
            "#EXT-X-MEDIA:",
            "#EXT-X-I-FRAME-STREAM-INF:",
            "#EXT-X-PART:",
            "#EXT-X-PRELOAD-HINT:",
            "#EXT-X-RENDITION-REPORT:",
            "#EXT-X-SESSION-DATA:",
            "#EXT-X-CONTENT-STEERING:",
            "#EXT-X-DATERANGE:",
        ];
        if tags.iter().any(|t| line.starts_with(t)) {
            for key in [
                ",URI=\"",
                ":URI=\"",
                "SERVER-URI=\"",
                "X-ASSET-URI=\"",
                "X-ASSET-LIST=\"",
            ] {
                if let Some(i) = line.find(key) {
                    let rest = &line[i + key.len()..];
                    out.push(rest[..rest.find('"').unwrap()].to_string());
                }
            }
        }
    }
    out
}

/// Whether the token must be on a URI: relative ones and the edge's own host.
fn wants_token(uri: &str) -> bool {
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            (scheme == "http" || scheme == "https")
                && rest.split(['/', ':', '?']).next() == Some(EDGE)
        }
        None => !uri.is_empty() && !uri.starts_with("data:"),
    }
}

fn check_tokens(name: &str, out: &str) {
    for uri in uris(out) {
        let has = uri.contains(TOKEN);
        assert_eq!(has, wants_token(&uri), "{name}: {uri}");
        assert_eq!(
            uri.matches("edge_token=").count(),
            usize::from(has),
            "{name}: {uri}"
        );
    }
}

#[test]
fn every_corpus_playlist_comes_out_valid_with_the_token_on_every_uri() {
    let plan = plan("{}");
    let (mut rewritten, mut checked) = (0, 0);
    for path in corpus() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read(&path).unwrap();
        match rewrite(Kind::Hls, &input, &plan, 4 << 20) {
            Ok(out) => {
                assert!(
                    MALFORMED.iter().all(|(m, _)| *m != name),
                    "{name} should have been refused"
                );
                let text = String::from_utf8(out.body.clone().unwrap_or(input.clone())).unwrap();
                let original = String::from_utf8(input).unwrap();
                check_tokens(&name, &text);
                // As valid as it came: what m3u8-rs reads in the input it reads in the output,
                // with the same number of segments and variants.
                if let Ok(before) = parse(&original) {
                    let after = parse(&text)
                        .unwrap_or_else(|e| panic!("{name}: output does not parse: {e}\n{text}"));
                    assert_eq!(shape(&before), shape(&after), "{name}");
                    checked += 1;
                }
                if out.body.is_some() {
                    rewritten += 1;
                    assert!(out.per_viewer, "{name}");
                }
            }
            Err(e) => {
                let want = MALFORMED.iter().find(|(m, _)| *m == name);
                assert_eq!(
                    want.map(|(_, r)| r.to_string()),
                    Some(e.to_string()),
                    "{name}"
                );
            }
        }
    }
    // The rest name only absolute URLs on other hosts, which keep no token.
    assert!(rewritten >= 45, "{rewritten} playlists rewritten");
    // The independent parser reads most of the corpus (the odd and malformed files on
    // purpose are the exceptions): a parser change that reads fewer must show here.
    assert!(checked >= 50, "only {checked} playlists checked by m3u8-rs");
}

fn shape(p: &m3u8_rs::Playlist) -> (usize, usize, usize) {
    match p {
        m3u8_rs::Playlist::MasterPlaylist(m) => (m.variants.len(), m.alternatives.len(), 0),
        m3u8_rs::Playlist::MediaPlaylist(m) => (0, 0, m.segments.len()),
    }
}

#[test]
fn with_nothing_to_do_every_playlist_is_byte_identical() {
    let none = plan(r#"{"propagate_token":false}"#);
    for path in corpus() {
        let input = std::fs::read(&path).unwrap();
        let out = rewrite(Kind::Hls, &input, &none, 4 << 20).unwrap();
        assert_eq!(out.body, None, "{}", path.display());
    }
    // Operations that find nothing to act on also leave the bytes alone.
    let idle =
        plan(r#"{"propagate_token":false,"max_bandwidth":1000000000000,"live_window_s":100000}"#);
    for path in corpus() {
        let input = std::fs::read(&path).unwrap();
        if let Ok(out) = rewrite(Kind::Hls, &input, &idle, 4 << 20) {
            assert_eq!(out.body, None, "{}", path.display());
        }
    }
    // The same for every DASH fixture that is one (some are malformed on purpose).
    let mut mpds = 0;
    for path in dash_fixtures() {
        let input = std::fs::read(&path).unwrap();
        for plan in [&none, &idle] {
            if let Ok(out) = rewrite(Kind::Dash, &input, plan, 4 << 20) {
                assert_eq!(out.body, None, "{}", path.display());
                mpds += 1;
            }
        }
    }
    assert!(mpds >= 10, "only {mpds} DASH rewrites checked");
}

#[test]
fn filtering_and_steering_keep_every_multivariant_playlist_valid() {
    let plan = plan(
        r#"{"max_bandwidth":1500000,"max_height":720,"deny_codecs":["hvc1","hev1"],
            "steering":{"server_uri":"/steer.json","pathway":"CDN-A"}}"#,
    );
    let mut filtered = 0;
    for path in corpus() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read_to_string(&path).unwrap();
        let Ok(before @ m3u8_rs::Playlist::MasterPlaylist(_)) = parse(&input) else {
            continue;
        };
        let out = rewrite(Kind::Hls, input.as_bytes(), &plan, 4 << 20)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = String::from_utf8(
            out.body
                .unwrap_or_else(|| panic!("{name}: steering always applies")),
        )
        .unwrap();
        check_tokens(&name, &text);
        assert_eq!(
            text.matches("#EXT-X-CONTENT-STEERING:").count(),
            1,
            "{name}"
        );
        let m3u8_rs::Playlist::MasterPlaylist(after) = parse(&text).unwrap() else {
            panic!("{name}")
        };
        let m3u8_rs::Playlist::MasterPlaylist(before) = before else {
            unreachable!()
        };
        let streams =
            |m: &m3u8_rs::MasterPlaylist| m.variants.iter().filter(|v| !v.is_i_frame).count();
        if streams(&before) > 0 {
            assert!(
                streams(&after) >= 1,
                "{name}: a multivariant playlist keeps a variant"
            );
        }
        for v in &after.variants {
            let height = v.resolution.map(|r| r.height);
            let over = v.bandwidth > 1_500_000 || height.is_some_and(|h| h > 720);
            let denied = v
                .codecs
                .as_deref()
                .is_some_and(|c| c.contains("hvc1") || c.contains("hev1"));
            if (over || denied) && !v.is_i_frame {
                // Only as the one variant kept when every variant was filtered out.
                assert_eq!(streams(&after), 1, "{name}: {v:?}");
            }
        }
        filtered += usize::from(after.variants.len() < before.variants.len());
    }
    assert!(filtered >= 5, "{filtered} playlists lost a variant");
}

#[test]
fn live_window_trims_live_playlists_and_keeps_them_valid() {
    let plan = plan(r#"{"live_window_s":10}"#);
    for path in corpus() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read_to_string(&path).unwrap();
        let Ok(m3u8_rs::Playlist::MediaPlaylist(before)) = parse(&input) else {
            continue;
        };
        let out = rewrite(Kind::Hls, input.as_bytes(), &plan, 4 << 20).unwrap();
        let text = String::from_utf8(out.body.unwrap_or(input.clone().into_bytes())).unwrap();
        let m3u8_rs::Playlist::MediaPlaylist(after) =
            parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"))
        else {
            panic!("{name}")
        };
        check_tokens(&name, &text);
        let dropped = before.segments.len() - after.segments.len();
        if input.contains("#EXT-X-SKIP") {
            // A delta update lists only the newest segments: never trimmed further.
            assert_eq!(dropped, 0, "{name}: a playlist with EXT-X-SKIP was trimmed");
            continue;
        }
        if before.end_list || before.playlist_type.is_some() {
            assert_eq!(
                dropped, 0,
                "{name}: VOD and EVENT playlists are never trimmed"
            );
            continue;
        }
        assert_eq!(
            after.media_sequence,
            before.media_sequence + dropped as u64,
            "{name}"
        );
        let kept: f32 = after.segments.iter().map(|s| s.duration).sum();
        let floor = 10f32.max(3.0 * before.target_duration as f32);
        let total: f32 = before.segments.iter().map(|s| s.duration).sum();
        assert!(kept + 1e-3 >= floor.min(total), "{name}: kept {kept}s");
        if dropped > 0 {
            // Dropping one more would have been below the window.
            let first = after.segments[0].duration;
            assert!(kept - first < floor, "{name}: kept {kept}s");
            // A timeline stays one: dates on dropped segments reach the first kept one
            // (unless a discontinuity came between).
            let dated = before.segments[..dropped]
                .iter()
                .any(|s| s.program_date_time.is_some());
            let jump = before.segments[..=dropped]
                .iter()
                .skip(1)
                .any(|s| s.discontinuity);
            if dated && !jump {
                assert!(
                    after.segments[0].program_date_time.is_some(),
                    "{name}: the window lost its date\n{text}"
                );
            }
        }
    }
}

#[test]
fn hostile_input_never_panics_and_never_half_rewrites() {
    let plan = plan(r#"{"max_height":720,"live_window_s":10,"steering":{"server_uri":"/s"}}"#);
    // Every prefix and a set of byte flips of every corpus playlist: an error or a
    // complete playlist, never a panic.
    for path in corpus() {
        let input = std::fs::read(&path).unwrap();
        for cut in (0..input.len()).step_by(7) {
            let _ = rewrite(Kind::Hls, &input[..cut], &plan, 4 << 20);
        }
        for (i, flip) in [b'"', b',', b'\n', b'=', b'#', 0xFF].iter().enumerate() {
            let mut bad = input.clone();
            let at = (i * 37 + 11) % bad.len().max(1);
            if let Some(b) = bad.get_mut(at) {
                *b = *flip;
            }
            if let Ok(out) = rewrite(Kind::Hls, &bad, &plan, 4 << 20) {
                if let Some(body) = out.body {
                    assert!(String::from_utf8(body)
                        .unwrap()
                        .trim_start()
                        .starts_with("#EXTM3U"));
                }
            }
        }
    }
}

fn dash_fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/dash");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mpd"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    files
}

/// Every URL a DASH player fetches, with whether the token must be on it, read with
/// roxmltree (an independent XML parser) and resolved through the BaseURL chain.
fn dash_urls(doc: &roxmltree::Document<'_>) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        let attrs: &[&str] = match name {
            "SegmentTemplate" => &["media", "initialization", "index"],
            "SegmentURL" => &["media", "index"],
            "Initialization" | "RepresentationIndex" => &["sourceURL"],
            _ => &[],
        };
        // The nearest absolute BaseURL above decides whose host the URL is on.
        let foreign = node
            .ancestors()
            .flat_map(|a| a.children().filter(|c| c.tag_name().name() == "BaseURL"))
            .filter_map(|b| b.text())
            .find(|t| t.contains("://"))
            .is_some_and(|t| !t.contains(&format!("://{EDGE}/")));
        for a in attrs {
            if let Some(v) = node.attribute(*a) {
                out.push((v.to_string(), !foreign && wants_token(v)));
            }
        }
        if matches!(name, "Location" | "PatchLocation") {
            let t = node.text().unwrap_or("").trim().to_string();
            let want = wants_token(&t);
            out.push((t, want));
        }
        if name == "BaseURL" {
            let t = node.text().unwrap_or("").trim().to_string();
            let want = !t.ends_with('/') && wants_token(&t) && !foreign;
            out.push((t, want));
        }
    }
    out
}

#[test]
fn every_dash_fixture_comes_out_valid_with_the_token_on_every_url() {
    let plan = plan(r#"{"max_height":720}"#);
    for path in dash_fixtures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read_to_string(&path).unwrap();
        let out = rewrite(Kind::Dash, input.as_bytes(), &plan, 4 << 20);
        if name.starts_with("malformed") {
            assert!(
                matches!(out, Err(RewriteError::Malformed { .. })),
                "{name}: {out:?}"
            );
            continue;
        }
        let text = String::from_utf8(out.unwrap().body.expect("a token to add")).unwrap();
        let before = roxmltree::Document::parse(&input).unwrap();
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "MPD");
        assert_eq!(
            root.tag_name().namespace(),
            before.root_element().tag_name().namespace()
        );
        // Nothing but Representations over 720p went away.
        let count = |d: &roxmltree::Document<'_>, f: &dyn Fn(roxmltree::Node<'_, '_>) -> bool| {
            d.descendants().filter(|n| n.is_element() && f(*n)).count()
        };
        let tall = |n: roxmltree::Node<'_, '_>| {
            n.tag_name().name() == "Representation"
                && n.attribute("height")
                    .and_then(|h| h.parse::<u32>().ok())
                    .is_some_and(|h| h > 720)
        };
        let periods = |n: roxmltree::Node<'_, '_>| n.tag_name().name() == "Period";
        assert_eq!(count(&doc, &periods), count(&before, &periods), "{name}");
        for set in doc
            .descendants()
            .filter(|n| n.tag_name().name() == "AdaptationSet")
        {
            let reps = set
                .children()
                .filter(|c| c.tag_name().name() == "Representation")
                .count();
            let had = before
                .descendants()
                .find(|n| {
                    n.tag_name().name() == "AdaptationSet"
                        && n.attribute("id") == set.attribute("id")
                })
                .map_or(0, |s| {
                    s.children()
                        .filter(|c| c.tag_name().name() == "Representation")
                        .count()
                });
            assert!(
                reps >= 1 || had == 0,
                "{name}: an AdaptationSet lost every Representation"
            );
        }
        let kept_tall = count(&doc, &tall);
        assert!(
            kept_tall == 0 || kept_tall <= count(&doc, &|n| n.tag_name().name() == "AdaptationSet"),
            "{name}"
        );
        let urls = dash_urls(&doc);
        assert!(!urls.is_empty(), "{name}");
        for (url, want) in urls {
            assert_eq!(url.contains(TOKEN), want, "{name}: {url}");
            if url.contains('$') && want {
                assert!(url.ends_with(TOKEN), "{name}: {url}");
            }
        }
    }
}

#[test]
fn the_one_pass_for_uri_only_plans_agrees_with_the_full_pass() {
    // The same token, once alone (one pass) and once with a filter that drops nothing
    // (the full pass): the same output, or the same error, for every playlist and for
    // every cut and corruption of it.
    let quick = plan(r#"{"append_query":"t=1"}"#);
    let full = plan(r#"{"append_query":"t=1","max_bandwidth":1000000000000000}"#);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for path in corpus() {
        let input = std::fs::read(&path).unwrap();
        for cut in (0..input.len()).step_by(13) {
            inputs.push(input[..cut].to_vec());
        }
        for (i, flip) in [b'"', b',', b'\n', b'=', b'#', b'@', b'x']
            .iter()
            .enumerate()
        {
            let mut bad = input.clone();
            let at = (i * 53 + 7) % bad.len().max(1);
            if let Some(b) = bad.get_mut(at) {
                *b = *flip;
            }
            inputs.push(bad);
        }
        inputs.push(input);
    }
    for input in &inputs {
        let a = rewrite(Kind::Hls, input, &quick, 4 << 20);
        let b = rewrite(Kind::Hls, input, &full, 4 << 20);
        assert_eq!(a, b, "{}", String::from_utf8_lossy(input));
    }
}
