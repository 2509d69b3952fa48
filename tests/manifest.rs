//! End-to-end: the `manifest-rewrite` standard module behind `token-auth` on a real `edge`
//! process in front of the sample origin — the viewer's token reaches every playlist,
//! segment and template over h1, h2 and h3; the origin's manifest is cached once and
//! rewritten per viewer; malformed manifests pass or get a 502 as the route says;
//! `edge manifest rewrite` as a process; and ffmpeg playing the VOD and the live stream
//! through the node with token auth on.

mod support;

use edge_runtime::token::{self, Key, SignSpec, TokenFormat};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::clients::{self, Proto, ALL};
use support::{edge_bin, Node, Origin};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const MALFORMED: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg1.ts\n#EXTINF:oops,\nseg2.ts\n";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `https://…/path?edge_token=…` signed for every path of the node, valid for `ttl`.
fn signed(node: &Node, path: &str, ttl: u64) -> String {
    token::sign(
        TokenFormat::Native,
        &Key::Secret(edge_module_token_auth::decode_hex(KEY).unwrap()),
        &SignSpec {
            key_id: Some("k1".into()),
            url: Some(node.url(path)),
            prefix: Some("/".into()),
            expires: now() + ttl,
            ..Default::default()
        },
    )
    .unwrap()
}

fn token_of(url: &str) -> &str {
    &url[url.find("edge_token=").unwrap()..]
}

fn start() -> (Origin, Node) {
    let origin = Origin::start("manifests");
    for dir in ["lenient", "strict"] {
        std::fs::create_dir_all(origin.dir().join(dir)).unwrap();
        std::fs::write(origin.dir().join(dir).join("bad.m3u8"), MALFORMED).unwrap();
    }
    let modules = |on_malformed: &str| {
        format!(
            "[[routes.modules]]\nmodule = \"token-auth\"\n[routes.modules.config.native]\nkeys = {{ k1 = \"{KEY}\" }}\n\
             [[routes.modules]]\nmodule = \"manifest-rewrite\"\n[routes.modules.config]\n\
             on_malformed = \"{on_malformed}\"\nlive_window_s = 4\ndevice_query = \"device\"\n\
             device_header = \"x-device-class\"\n\
             device_classes = {{ phone = {{ max_height = 480 }} }}\n"
        )
    };
    let config = format!(
        "[origins.media]\nprimary = \"{}\"\n\n\
         [[routes]]\nhost = \"*\"\nprefix = \"/strict/\"\norigin = \"media\"\nname = \"strict\"\n{}\n\
         [[routes]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"media\"\nname = \"media\"\n[routes.cache]\n{}",
        origin.url,
        modules("reject"),
        modules("pass"),
    );
    let node = Node::start(&config);
    (origin, node)
}

/// The URIs of a playlist, resolved against its URL.
fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with("https://") {
        return uri.to_owned();
    }
    let dir = &base[..base[..base.find('?').unwrap_or(base.len())]
        .rfind('/')
        .unwrap()
        + 1];
    format!("{dir}{uri}")
}

fn uri_lines(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewers_token_reaches_every_playlist_and_segment_over_every_protocol() {
    let (_origin, node) = start();
    for proto in ALL {
        let master_url = signed(&node, "/vod/sample/master.m3u8", 600);
        let token = token_of(&master_url).to_owned();
        let master = clients::get(proto, &node.ca, &master_url, &[]).await;
        assert_eq!(master.status, 200, "{proto:?}");
        let cc = master.headers["cache-control"].to_str().unwrap();
        assert!(
            cc.contains("private") && cc.contains("no-store"),
            "{proto:?}: {cc}"
        );
        assert!(master.headers.get("etag").is_none(), "{proto:?}");
        let text = std::str::from_utf8(&master.body).unwrap();
        let variants = uri_lines(text);
        assert_eq!(variants.len(), 2, "{text}");
        for variant in variants {
            assert!(variant.ends_with(&token), "{proto:?}: {variant}");
            let media_url = resolve(&master_url, variant);
            let media = clients::get(proto, &node.ca, &media_url, &[]).await;
            assert_eq!(media.status, 200, "{proto:?}: {media_url}");
            let text = std::str::from_utf8(&media.body).unwrap();
            let segments = uri_lines(text);
            assert_eq!(segments.len() as u64, origin::sample::VOD_SEGMENTS);
            assert!(
                segments.iter().all(|s| s.ends_with(&token)),
                "{proto:?}: {text}"
            );
            let first = clients::get(proto, &node.ca, &resolve(&media_url, segments[0]), &[]).await;
            assert_eq!(first.status, 200, "{proto:?}");
            assert_eq!(first.headers["content-type"], "video/mp2t");
        }
        // DASH: the token goes into the templates, `$` and all.
        let mpd_url = signed(&node, "/vod/sample/manifest.mpd", 600);
        let mpd = clients::get(proto, &node.ca, &mpd_url, &[]).await;
        assert_eq!(mpd.status, 200);
        let text = std::str::from_utf8(&mpd.body).unwrap();
        roxmltree::Document::parse(text).unwrap();
        // Its own token: signed a moment later, its expiry may be a second on.
        let mpd_token = token_of(&mpd_url);
        assert!(
            text.contains(&format!("?{mpd_token}\"")),
            "{proto:?}: {text}"
        );
        // Without a token nothing opens.
        let refused =
            clients::get(proto, &node.ca, &node.url("/vod/sample/master.m3u8"), &[]).await;
        assert_eq!(refused.status, 403);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origins_manifest_is_cached_once_and_rewritten_for_each_viewer() {
    let (origin, node) = start();
    let first = signed(&node, "/vod/sample/360p/index.m3u8", 600);
    let second = signed(&node, "/vod/sample/360p/index.m3u8", 900);
    assert_ne!(token_of(&first), token_of(&second));
    let a = clients::get(Proto::H2, &node.ca, &first, &[]).await;
    let b = clients::get(Proto::H3, &node.ca, &second, &[]).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    let (a, b) = (
        std::str::from_utf8(&a.body).unwrap(),
        std::str::from_utf8(&b.body).unwrap(),
    );
    assert!(a.contains(token_of(&first)) && !a.contains(token_of(&second)));
    assert!(b.contains(token_of(&second)) && !b.contains(token_of(&first)));
    node.wait_for_access(|l| l["cache"] == "HIT" && l["path"] == "/vod/sample/360p/index.m3u8");
    let counts = origin
        .direct("/counts?path=/vod/sample/360p/index.m3u8")
        .await;
    assert_eq!(std::str::from_utf8(&counts).unwrap().trim(), "1");

    // A device class narrows the renditions without splitting the cached input.
    let phone = format!(
        "{}&device=phone",
        signed(&node, "/vod/sample/master.m3u8", 600)
    );
    let plain = signed(&node, "/vod/sample/master.m3u8", 600);
    let narrow = clients::get(Proto::H1, &node.ca, &phone, &[]).await;
    let full = clients::get(Proto::H1, &node.ca, &plain, &[]).await;
    let narrow = std::str::from_utf8(&narrow.body).unwrap();
    assert_eq!(uri_lines(narrow).len(), 1, "{narrow}");
    assert!(narrow.contains("360p/index.m3u8") && !narrow.contains("720p"));
    assert_eq!(uri_lines(std::str::from_utf8(&full.body).unwrap()).len(), 2);
    // The class from the route's request field instead: the same narrowing, and the
    // answer says it varies on that field, for shared caches in front of the node.
    let by_header = clients::get(Proto::H2, &node.ca, &plain, &[("x-device-class", "phone")]).await;
    let by_header_text = std::str::from_utf8(&by_header.body).unwrap();
    assert_eq!(uri_lines(by_header_text).len(), 1, "{by_header_text}");
    let vary: Vec<&str> = by_header
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        vary.iter().any(|v| v.contains("x-device-class")),
        "{vary:?}"
    );
    let counts = origin.direct("/counts?path=/vod/sample/master.m3u8").await;
    assert_eq!(std::str::from_utf8(&counts).unwrap().trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_playlists_keep_the_configured_window() {
    let (_origin, node) = start();
    let url = signed(&node, "/live/demo/index.m3u8", 600);
    let live = clients::get(Proto::H3, &node.ca, &url, &[]).await;
    assert_eq!(live.status, 200);
    let text = std::str::from_utf8(&live.body).unwrap();
    // The origin lists 5 segments of 2 s; a 4 s window is raised to 3 target durations.
    assert_eq!(uri_lines(text).len(), 3, "{text}");
    let seq: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        uri_lines(text)[0],
        format!("seg_{seq}.ts?{}", token_of(&url)),
        "{text}"
    );
    let segment = clients::get(Proto::H3, &node.ca, &resolve(&url, uri_lines(text)[0]), &[]).await;
    assert_eq!(segment.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_manifests_pass_unchanged_or_get_a_502_as_the_route_says() {
    let (_origin, node) = start();
    let lenient = clients::get(
        Proto::H2,
        &node.ca,
        &signed(&node, "/lenient/bad.m3u8", 600),
        &[],
    )
    .await;
    assert_eq!(lenient.status, 200);
    assert_eq!(&lenient.body[..], MALFORMED.as_bytes());
    let strict = clients::get(
        Proto::H3,
        &node.ca,
        &signed(&node, "/strict/bad.m3u8", 600),
        &[],
    )
    .await;
    assert_eq!(strict.status, 502);
    let body = std::str::from_utf8(&strict.body).unwrap();
    assert!(
        body.contains("line 5: EXTINF duration \"oops\" is not a number"),
        "{body}"
    );
    assert_eq!(strict.headers["cache-control"], "no-store");
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(
        log.contains("manifest not rewritten (passed unchanged): /lenient/bad.m3u8: line 5"),
        "{log}"
    );
    assert!(
        log.contains("manifest not rewritten (answered 502): /strict/bad.m3u8"),
        "{log}"
    );
}

#[test]
fn a_bad_manifest_rewrite_config_is_refused_at_load_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[origins.o]\nprimary = \"http://127.0.0.1:1\"\n\
         [[routes]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"o\"\n\
         [[routes.modules]]\nmodule = \"manifest-rewrite\"\n[routes.modules.config]\n\
         append_query = \"a=b c\"\n",
    )
    .unwrap();
    let out = Command::new(edge_bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("edge.toml:")
            && err.contains(
                "key `routes[0].modules[0].config`: manifest-rewrite config: append_query:"
            ),
        "{err}"
    );

    // Before token-auth, the rewrite would never see the token.
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[origins.o]\nprimary = \"http://127.0.0.1:1\"\n\
         [[routes]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"o\"\n\
         [[routes.modules]]\nmodule = \"manifest-rewrite\"\n\
         [[routes.modules]]\nmodule = \"token-auth\"\n[routes.modules.config.native]\nkeys = { k = \"00\" }\n",
    )
    .unwrap();
    let out = Command::new(edge_bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must come after token-auth"), "{err}");
}

/// `edge manifest rewrite`: (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(edge_bin())
        .arg("manifest")
        .arg("rewrite")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_rewrites_a_file_with_flags_or_a_routes_config() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.m3u8");
    std::fs::write(
        &master,
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8\n\
         #EXT-X-STREAM-INF:BANDWIDTH=2400000,RESOLUTION=1280x720\nhttps://origin.example/vod/720p/index.m3u8\n",
    )
    .unwrap();
    let path = master.to_str().unwrap();
    let (code, out, err) = cli(&[
        path,
        "--token-query",
        "t=1&u=2",
        "--max-bandwidth",
        "1000000",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8?t=1&u=2\n"
    );
    let (code, out, _) = cli(&[
        path,
        "--base-url",
        "https://cdn.example",
        "--url",
        "https://edge.example/vod/a/master.m3u8",
        "--rewrite",
        "https://origin.example/",
        "/",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\nhttps://cdn.example/vod/a/360p/index.m3u8\n"),
        "{out}"
    );
    assert!(out.contains("\n/vod/720p/index.m3u8\n"), "{out}");
    // Nothing to do: the file as it was.
    let (code, out, _) = cli(&[path]);
    assert_eq!(
        (code, out.as_str()),
        (0, std::fs::read_to_string(&master).unwrap().as_str())
    );
    // A route's config.
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[origins.o]\nprimary = \"http://127.0.0.1:1\"\n\
         [[routes]]\nname = \"vod\"\nhost = \"*\"\nprefix = \"/\"\norigin = \"o\"\n\
         [[routes.modules]]\nmodule = \"manifest-rewrite\"\n[routes.modules.config]\nmax_height = 480\n\
         steering = { server_uri = \"/steer\", pathway = \"A\" }\n",
    )
    .unwrap();
    let (code, out, err) = cli(&[
        path,
        "--config",
        config.to_str().unwrap(),
        "--route",
        "vod",
        "--token-query",
        "t=9",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("#EXT-X-CONTENT-STEERING:SERVER-URI=\"/steer?t=9\",PATHWAY-ID=\"A\""),
        "{out}"
    );
    assert!(
        out.contains("360p/index.m3u8?t=9") && !out.contains("720p"),
        "{out}"
    );
    let (code, _, err) = cli(&[
        path,
        "--config",
        config.to_str().unwrap(),
        "--route",
        "nope",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no route named \"nope\" (routes: vod)"),
        "{err}"
    );
    // An operation flag beside a route's config would be ignored: refused instead.
    let (code, _, err) = cli(&[
        path,
        "--config",
        config.to_str().unwrap(),
        "--route",
        "vod",
        "--max-bandwidth",
        "1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--max-bandwidth") && err.contains("--config"),
        "{err}"
    );
    // Malformed: exit 1 with the line; unusable arguments: exit 2.
    let bad = dir.path().join("bad.m3u8");
    std::fs::write(&bad, MALFORMED).unwrap();
    let (code, out, err) = cli(&[bad.to_str().unwrap(), "--token-query", "t=1"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("line 5: EXTINF duration"), "{err}");
    let (code, _, err) = cli(&[path, "--token-query", "t=\"x\""]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli(&[path, "--base-url", "cdn.example"]);
    assert_eq!(code, 2);
    assert!(err.contains("base_url"), "{err}");
}

/// ffmpeg plays through the node: every segment fetched with the token the rewriter put
/// in the playlists, the whole duration read.
fn ffmpeg(args: &[&str], within: Duration) -> (bool, String) {
    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "info"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed by scripts/test (Debian package ffmpeg)");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = reader.join().unwrap();
    (status.is_some_and(|s| s.success()), log)
}

/// The node's warnings, errors and failed requests, for a failure's message.
fn node_problems(node: &Node) -> String {
    support::read_log(&node.log)
        .into_iter()
        .filter(|l| l["level"] != "INFO" || l["status"].as_u64().is_some_and(|s| s >= 400))
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `time=HH:MM:SS.cc` ffmpeg reported, in seconds.
fn media_time(log: &str) -> f64 {
    let at = log.rfind("time=").expect("ffmpeg reports progress");
    let t = &log[at + 5..at + 16];
    let parts: Vec<f64> = t.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[test]
fn ffmpeg_plays_the_vod_and_the_live_stream_through_token_auth() {
    let (_origin, node) = start();
    let master = signed(&node, "/vod/sample/master.m3u8", 600);
    // The 720p variant (program 1), every stream copied to nowhere: ffmpeg reads it all.
    let (ok, log) = ffmpeg(
        &[
            "-i", &master, "-map", "0:p:1", "-c", "copy", "-f", "null", "-",
        ],
        Duration::from_secs(120),
    );
    assert!(ok, "{log}\nnode: {}", node_problems(&node));
    let total = origin::sample::VOD_SEGMENTS as f64 * f64::from(origin::sample::VOD_SEGMENT_SECS);
    let played = media_time(&log);
    assert!(
        (played - total).abs() <= 0.5 + origin::sample::VOD_SEGMENT_SECS as f64 * 0.1,
        "played {played}s of {total}s\n{log}"
    );
    let segments: Vec<serde_json::Value> = node
        .access_log()
        .into_iter()
        .filter(|l| {
            l["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/vod/sample/720p/seg_"))
        })
        .collect();
    // ffmpeg asks for `bytes=0-`: the whole segment, as a 206.
    assert!(
        segments
            .iter()
            .all(|l| l["status"] == 200 || l["status"] == 206),
        "{segments:?}"
    );
    let distinct: std::collections::BTreeSet<&str> =
        segments.iter().filter_map(|l| l["path"].as_str()).collect();
    assert_eq!(distinct.len() as u64, origin::sample::VOD_SEGMENTS);

    // Live: six seconds of the stream, read as it is published.
    let live = signed(&node, "/live/demo/index.m3u8", 600);
    let (ok, log) = ffmpeg(
        &["-i", &live, "-t", "6", "-c", "copy", "-f", "null", "-"],
        Duration::from_secs(60),
    );
    assert!(ok, "{log}\nnode: {}", node_problems(&node));
    assert!(media_time(&log) >= 5.5, "{log}");
    let refused = node
        .access_log()
        .into_iter()
        .filter(|l| l["status"] == 403)
        .count();
    assert_eq!(refused, 0, "no request went without its token");
}
