//! End-to-end: the operator status page (`GET /status` on the admin listener) in headless
//! Chromium against a real node with traffic: the page takes the token from the URL
//! fragment, polls `/status.json`, goes live, shows the node and its modules and draws its
//! four charts; with a wrong token it asks for one.
//!
//! Needs Chromium at /usr/bin/chromium (Debian package `chromium`; scripts/test installs it).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::clients::{self, Proto, ALL};
use support::{Node, Origin};

const TOKEN: &str = "status-admin-token-0123456789";
const REGION: &str = "eu-west";
const NODE_ID: &str = "edge-status-1";
const TEST_MODULE: &str = edge_module_artifacts::testing::TEST_MODULE;
const CHROMIUM: &str = "/usr/bin/chromium";
/// Every Chromium run is killed after this.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(30);
/// Virtual time the page gets before the DOM or screenshot is taken: 5 polls 1 s apart.
/// Chromium's virtual time stands still while a request is in flight, so this holds
/// however slow the machine is.
const BUDGET_MS: u32 = 5000;
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;

/// Cached objects on `/object/`, and `/echo` through the test module (so the node has a
/// module to list).
fn config(origin: &Origin) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [origins.media]\nprimary = \"{}\"\n\n\
         [modules.test]\npath = \"{TEST_MODULE}\"\nbudget_ms = 1000\n\n\
         [[routes]]\nprefix = \"/echo\"\norigin = \"media\"\n\
         [routes.cache]\nenabled = false\n\
         [[routes.modules]]\nmodule = \"test\"\nconfig = {{ mode = \"tag\", tag = \"a\" }}\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"media\"\n",
        origin.url
    )
}

fn admin_url(node: &Node) -> String {
    node.proc.ready["admin_url"]
        .as_str()
        .expect("admin_url in the ready line")
        .to_owned()
}

/// One GET to the admin listener over plain HTTP/1.1: (status, head, body).
async fn admin_get(node: &Node, path: &str, token: Option<&str>) -> (u16, String, String) {
    let addr = admin_url(node).trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\n{auth}Connection: close\r\n\r\n");
    let text = clients::exchange(&mut tcp, request.as_bytes()).await;
    let status = clients::status_of(&text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// `/status.json`, once it has at least two samples and the test's traffic is in them.
async fn status_json_with_traffic(node: &Node) -> serde_json::Value {
    let deadline = Instant::now() + support::WAIT;
    loop {
        let (status, _, body) = admin_get(node, "/status.json", Some(TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/status.json is not JSON ({e}): {body}"));
        let samples = json["series"]["t"].as_array().map_or(0, |a| a.len());
        let busiest = json["series"]["requests_per_s"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_f64())
            .fold(0.0, f64::max);
        if samples >= 2 && busiest > 0.0 {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "/status.json never showed the test's requests in its series: {json}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn chromium() -> PathBuf {
    let bin = PathBuf::from(CHROMIUM);
    assert!(
        bin.exists(),
        "{CHROMIUM} is missing: the status page test runs the page in headless Chromium \
         (Debian package `chromium`); scripts/test installs it"
    );
    bin
}

/// Kills whatever is left of Chromium's process group (its zygote and renderers).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Runs headless Chromium on `url` with a window of `width`x`height` and one `action`
/// (`--dump-dom` or `--screenshot=PATH`); returns its stdout. Bounded by
/// [`CHROMIUM_TIMEOUT`]; its profile and any files it writes live in a temporary folder
/// removed afterwards.
fn run_chromium(url: &str, width: u32, height: u32, action: &str) -> String {
    let bin = chromium();
    let home = tempfile::tempdir().unwrap();
    let profile = home.path().join("profile");
    let stdout_path = home.path().join("stdout");
    let stderr_path = home.path().join("stderr");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={width},{height}"))
    .arg(format!("--virtual-time-budget={BUDGET_MS}"))
    .arg(action)
    .arg(url)
    // Crash reports and caches go into the temporary folder too.
    .env("HOME", home.path())
    .env("XDG_CONFIG_HOME", home.path())
    .env("XDG_CACHE_HOME", home.path())
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&stdout_path).unwrap())
    .stderr(std::fs::File::create(&stderr_path).unwrap());
    // Its own process group, so that its helper processes can be ended with it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("start chromium");
    let pgid = child.id();
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() >= deadline {
            kill_group(pgid);
            let _ = child.wait();
            panic!(
                "chromium {action} {url} did not finish within {CHROMIUM_TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    kill_group(pgid);
    assert!(
        status.success(),
        "chromium {action} {url} failed ({status}); stderr:\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    std::fs::read_to_string(&stdout_path).unwrap()
}

/// The DOM after the page ran for [`BUDGET_MS`] of virtual time.
async fn dump_dom(url: String, height: u32) -> String {
    tokio::task::spawn_blocking(move || run_chromium(&url, WIDTH, height, "--dump-dom"))
        .await
        .unwrap()
}

/// A screenshot of the page at [`WIDTH`]x[`HEIGHT`], as PNG bytes.
async fn screenshot(url: String, dir: &Path) -> Vec<u8> {
    let path = dir.join("status.png");
    let action = format!("--screenshot={}", path.display());
    tokio::task::spawn_blocking(move || run_chromium(&url, WIDTH, HEIGHT, &action))
        .await
        .unwrap();
    std::fs::read(&path).expect("chromium wrote no screenshot")
}

/// The start tag of the element whose id is `id` (`<canvas id="…" …>`), and where the
/// element's content begins.
fn start_tag<'a>(dom: &'a str, id: &str) -> (&'a str, usize) {
    let needle = format!(" id=\"{id}\"");
    let at = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no element #{id} in the page:\n{dom}"));
    let open = dom[..at].rfind('<').unwrap();
    let close = at + dom[at..].find('>').unwrap();
    (&dom[open..=close], close + 1)
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let at = tag.find(&needle)? + needle.len();
    let len = tag[at..].find('"')?;
    Some(&tag[at..at + len])
}

/// The text directly inside the element with `id` (up to its first child tag).
fn text_of(dom: &str, id: &str) -> String {
    let (_, from) = start_tag(dom, id);
    let len = dom[from..].find('<').unwrap_or(dom.len() - from);
    unescape(&dom[from..from + len])
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn body_tag(dom: &str) -> &str {
    let open = dom.find("<body").expect("no <body> in the page");
    let close = open + dom[open..].find('>').unwrap();
    &dom[open..=close]
}

struct Image {
    width: u32,
    height: u32,
    /// RGB, row by row.
    pixels: Vec<[u8; 3]>,
}

impl Image {
    fn decode(bytes: &[u8]) -> Image {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().expect("screenshot is not a PNG");
        let (w, h) = (reader.info().width as usize, reader.info().height as usize);
        // Room for the widest pixel (16-bit RGBA).
        let mut buf = vec![0u8; w * h * 8];
        let frame = reader.next_frame(&mut buf).expect("decode the screenshot");
        assert_eq!(
            frame.bit_depth,
            png::BitDepth::Eight,
            "screenshot bit depth"
        );
        let channels = frame.color_type.samples();
        assert!(
            channels >= 3,
            "screenshot is not in colour: {:?}",
            frame.color_type
        );
        let mut pixels = Vec::with_capacity(w * h);
        for y in 0..frame.height as usize {
            let row = &buf[y * frame.line_size..];
            for x in 0..frame.width as usize {
                let p = &row[x * channels..];
                pixels.push([p[0], p[1], p[2]]);
            }
        }
        Image {
            width: frame.width,
            height: frame.height,
            pixels,
        }
    }

    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        self.pixels[(y * self.width + x) as usize]
    }

    /// The most common colour.
    fn background(&self) -> [u8; 3] {
        let mut counts = std::collections::HashMap::new();
        for p in &self.pixels {
            *counts.entry(*p).or_insert(0u32) += 1;
        }
        counts.into_iter().max_by_key(|(_, n)| *n).unwrap().0
    }
}

fn distance(a: [u8; 3], b: [u8; 3]) -> u32 {
    (0..3).map(|i| a[i].abs_diff(b[i]) as u32).sum()
}

fn parse_color(hex: &str) -> [u8; 3] {
    let hex = hex.trim_start_matches('#');
    assert_eq!(hex.len(), 6, "colour {hex}");
    let c = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
    [c(0), c(2), c(4)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_goes_live_shows_the_node_and_draws_its_charts() {
    chromium();
    let origin = Origin::start("o");
    let identity = format!("region = \"{REGION}\"\nnode_id = \"{NODE_ID}\"\n");
    let node = Node::start_with(&config(&origin), &identity);
    let admin = admin_url(&node);

    // Traffic: three objects, each a miss then hits over every protocol, and the module.
    for i in 0..3 {
        let path = format!("/object/status{i}?cc=max-age%3D600&size=2000");
        let first = clients::get(Proto::H1, &node.ca, &node.url(&path), &[]).await;
        assert_eq!(first.status, 200);
        for proto in ALL {
            let hit = clients::get(proto, &node.ca, &node.url(&path), &[]).await;
            assert_eq!(hit.status, 200, "{proto:?}");
        }
    }
    for proto in ALL {
        let a = clients::get(proto, &node.ca, &node.url("/echo"), &[]).await;
        assert_eq!(a.status, 200, "{proto:?}");
    }

    // The page itself needs no token and holds no data: it is the file in the binary.
    let (status, head, body) = admin_get(&node, "/status", None).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert_eq!(
        body,
        include_str!("../edge-runtime/src/admin/status.html"),
        "GET /status is not the page in the source tree"
    );
    // Its data does need the token.
    assert_eq!(admin_get(&node, "/status.json", None).await.0, 401);
    assert_eq!(
        admin_get(&node, "/status.json", Some("wrong-token-wrong-token"))
            .await
            .0,
        401
    );

    let json = status_json_with_traffic(&node).await;
    assert_eq!(json["node"]["node_id"], NODE_ID, "{json}");
    assert_eq!(json["node"]["region"], REGION, "{json}");
    let modules: Vec<String> = json["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .map(|m| m["name"].as_str().expect("module name").to_owned())
        .collect();
    assert!(!modules.is_empty(), "the node has a module: {json}");
    // 15 requests went through the node above.
    let requests = json["totals"]["requests"]
        .as_f64()
        .expect("totals.requests");
    assert!(requests >= 15.0, "{json}");

    // The page with the token in the fragment: live after several polls, with the node's
    // identity and modules, and every chart with samples.
    let url = format!("{admin}/status#token={TOKEN}");
    let dom = dump_dom(url.clone(), HEIGHT).await;
    let body = body_tag(&dom);
    assert_eq!(attr(body, "data-state"), Some("live"), "{body}\n{dom}");
    let polls: u32 = attr(body, "data-polls").unwrap_or("0").parse().unwrap();
    assert!(polls >= 3, "only {polls} good polls: {body}");
    assert_eq!(text_of(&dom, "node-id"), NODE_ID);
    assert_eq!(text_of(&dom, "region"), REGION);
    let (table, _) = start_tag(&dom, "modules");
    assert!(table.starts_with("<table"), "{table}");
    for name in &modules {
        assert!(
            dom.contains(&format!("<tr data-module=\"{}\"", escape(name))),
            "no row for module {name} in:\n{dom}"
        );
    }
    // Nothing the page shows is a broken number (the script, at the end, is not shown).
    let shown = &dom[..dom.find("<script").unwrap_or(dom.len())];
    for bad in ["NaN", "undefined", "Infinity"] {
        assert!(!shown.contains(bad), "the page shows {bad}:\n{shown}");
    }
    let charts = [
        "chart-requests",
        "chart-hit-ratio",
        "chart-origin-latency",
        "chart-blocks",
    ];
    for id in charts {
        let (tag, _) = start_tag(&dom, id);
        assert!(
            tag.starts_with("<canvas") || tag.starts_with("<svg"),
            "{tag}"
        );
        let samples: u32 = attr(tag, "data-samples").unwrap_or("0").parse().unwrap();
        assert!(samples >= 1, "#{id} drew no samples: {tag}");
    }

    // Where the charts are at WIDTH x HEIGHT. A --dump-dom window's page area is shorter
    // than the window (a --screenshot's is the whole window), so when it is, dump again
    // with a window that much taller to get the screenshot's layout.
    let viewport = attr(body, "data-viewport")
        .expect("data-viewport")
        .to_owned();
    let page_height: u32 = viewport
        .split_once('x')
        .and_then(|(_, h)| h.parse().ok())
        .unwrap_or_else(|| panic!("bad data-viewport {viewport}"));
    let layout = if page_height == HEIGHT {
        dom.clone()
    } else {
        let taller = HEIGHT + HEIGHT.saturating_sub(page_height);
        let again = dump_dom(url.clone(), taller).await;
        let wanted = format!("{WIDTH}x{HEIGHT}");
        assert_eq!(
            attr(body_tag(&again), "data-viewport"),
            Some(wanted.as_str()),
            "could not get a {wanted} page from --dump-dom"
        );
        again
    };

    // The screenshot: the right size, not blank, text on it, each chart with its line.
    let dir = tempfile::tempdir().unwrap();
    let png = screenshot(url.clone(), dir.path()).await;
    let image = Image::decode(&png);
    assert_eq!((image.width, image.height), (WIDTH, HEIGHT));
    let background = image.background();
    let differ = image
        .pixels
        .iter()
        .filter(|p| distance(**p, background) > 24)
        .count();
    assert!(
        differ > image.pixels.len() / 20,
        "screenshot nearly blank: {differ} pixels differ from {background:?}"
    );
    let bright = image
        .pixels
        .iter()
        .filter(|p| p.iter().all(|c| *c > 180))
        .count();
    assert!(
        bright > 1000,
        "no text in the screenshot ({bright} bright pixels)"
    );
    for id in charts {
        let (tag, _) = start_tag(&layout, id);
        let color = parse_color(attr(tag, "data-color").expect("data-color"));
        let rect: Vec<u32> = attr(tag, "data-rect")
            .expect("data-rect")
            .split(',')
            .map(|v| v.trim().parse().unwrap())
            .collect();
        let (x0, y0, w, h) = (rect[0], rect[1], rect[2], rect[3]);
        assert!(w > 100 && h > 60, "#{id} is too small: {rect:?}");
        assert!(
            x0 + w <= WIDTH && y0 + h <= HEIGHT,
            "#{id} is off screen: {rect:?}"
        );
        let mut line = 0;
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                let p = image.at(x, y);
                if (0..3).all(|i| p[i].abs_diff(color[i]) <= 40) {
                    line += 1;
                }
            }
        }
        assert!(
            line >= 12,
            "#{id} at {rect:?} has {line} pixels of its colour {color:?}: no line drawn"
        );
    }

    // A wrong token: the page asks for one.
    let dom = dump_dom(
        format!("{admin}/status#token=wrong-token-wrong-token"),
        HEIGHT,
    )
    .await;
    let body = body_tag(&dom);
    assert_eq!(attr(body, "data-state"), Some("auth"), "{body}\n{dom}");
    let (form, _) = start_tag(&dom, "auth");
    assert!(!form.contains(" hidden"), "token form not shown: {form}");
    let (error, _) = start_tag(&dom, "auth-error");
    assert!(!error.contains(" hidden"), "error not shown: {error}");
    assert_eq!(text_of(&dom, "auth-error"), "wrong or missing token");
}
