//! End-to-end: the edge function (the standard chain as one `wasi:http/proxy` component)
//! under `wasmtime serve` — the reference wasi:http host, installed by `scripts/test` —
//! and the same artifact as a route handler in a real `edge` process over h1, h2 and h3:
//! token auth denies, the WAF blocks, manifests come back rewritten with the viewer's
//! token, segments stream through unchanged.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::clients;
use support::{Node, Origin, Proc};

const COMPONENT: &str = edge_module_artifacts::edge_function::COMPONENT;
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The chain's config, as a deployment passes it (`EDGE_FUNCTION_CONFIG`).
fn config(origin: &Origin) -> String {
    serde_json::json!({
        "origin": origin.url,
        "token_auth": { "native": { "keys": { "k1": KEY } } },
        "waf": {
            "rules": { "rules.conf": "SecRuleEngine On\nSecRule ARGS \"@rx <script\" \"id:10,phase:2,deny,status:403,log\"" },
            "media_exclusions": false
        },
        "rate_limit": { "rate": "100/s" },
        "manifest_rewrite": {}
    })
    .to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A native signed-URL query for everything under `/vod/sample/`.
fn token(expires: u64) -> String {
    use edge_runtime::token::{self, Key, SignSpec, TokenFormat};
    let url = token::sign(
        TokenFormat::Native,
        &Key::Secret(edge_module_token_auth::decode_hex(KEY).unwrap()),
        &SignSpec {
            key_id: Some("k1".into()),
            url: Some("https://edge.example/vod/sample/master.m3u8".into()),
            prefix: Some("/vod/sample/".into()),
            expires,
            ..Default::default()
        },
    )
    .unwrap();
    url[url.find("edge_token=").unwrap()..].to_owned()
}

/// `wasmtime` from `scripts/test` (`.test-tools/wasmtime/bin`), or `$WASMTIME`.
fn wasmtime() -> PathBuf {
    let path = std::env::var_os("WASMTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.test-tools/wasmtime/bin/wasmtime")
        });
    assert!(
        path.is_file(),
        "{} is missing: scripts/test installs wasmtime-cli (cargo install wasmtime-cli), or set WASMTIME",
        path.display()
    );
    path
}

/// One response: (status, lower-case head, body).
struct Reply {
    status: u16,
    head: String,
    body: bytes::Bytes,
}

/// The checks every host must pass; `get` fetches a path with its query.
async fn the_chain_holds<F, Fut>(origin: &Origin, get: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let t = token(now() + 600);
    // No token: refused before the origin.
    let r = get("/vod/sample/master.m3u8".into()).await;
    assert_eq!(r.status, 403, "{}", r.head);
    // A token that expired.
    let r = get(format!("/vod/sample/master.m3u8?{}", token(now() - 3600))).await;
    assert_eq!(r.status, 403);
    // The WAF after the token: an attack with a good token is blocked.
    let r = get(format!(
        "/vod/sample/master.m3u8?{t}&q=%3Cscript%3Ealert(1)%3C/script%3E"
    ))
    .await;
    assert_eq!(
        r.status,
        403,
        "{}\n{}",
        r.head,
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        String::from_utf8_lossy(&r.body).contains("rule 10"),
        "{:?}",
        r.body
    );
    // The manifest, rewritten: every URI carries the viewer's token.
    let r = get(format!("/vod/sample/master.m3u8?{t}")).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let uris: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(!uris.is_empty(), "{text}");
    for uri in uris {
        assert!(uri.ends_with(&t), "{uri} lacks the token in:\n{text}");
    }
    assert!(r.head.contains("cache-control: private"), "{}", r.head);
    // A media playlist, then a segment: streamed through byte for byte.
    let r = get(format!("/vod/sample/360p/index.m3u8?{t}")).await;
    assert_eq!(r.status, 200);
    let segment = String::from_utf8_lossy(&r.body)
        .lines()
        .find(|l| l.starts_with("seg_"))
        .expect("a segment URI")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let r = get(format!("/vod/sample/360p/{segment}?{t}")).await;
    assert_eq!(r.status, 200);
    let direct = origin.direct(&format!("/vod/sample/360p/{segment}")).await;
    assert!(direct.len() > 10_000);
    assert_eq!(r.body, direct, "the segment must arrive unchanged");
}

/// Plain HTTP/1.1 to `wasmtime serve`.
async fn http_get(addr: std::net::SocketAddr, path_and_query: String) -> Reply {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: edge.example\r\nConnection: close\r\n\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(support::WAIT, tcp.read_to_end(&mut all))
        .await
        .expect("wasmtime serve did not answer")
        .unwrap();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut body = all[end..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Reply {
        status,
        head,
        body: body.into(),
    }
}

fn dechunk(mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = input.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(
            std::str::from_utf8(&input[..line_end])
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        input = &input[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&input[..size]);
        input = &input[size + 2..];
    }
}

/// `wasmtime serve` on a free port; its address from its own "Serving HTTP on" line.
struct Served {
    proc: Proc,
    addr: std::net::SocketAddr,
}

fn wasmtime_serve(config: &str) -> Served {
    let mut child = Command::new(wasmtime())
        .args(["serve", "-Scli", "--addr", "127.0.0.1:0"])
        .arg("--env")
        .arg(format!("EDGE_FUNCTION_CONFIG={config}"))
        .arg(COMPONENT)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.split("Serving HTTP on http://").nth(1) {
                let _ = tx.send(rest.trim_end_matches('/').to_owned());
            } else {
                eprintln!("wasmtime: {line}");
            }
        }
    });
    let proc = Proc::adopt(child);
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("wasmtime serve did not start (compiling the component)")
        .parse()
        .unwrap();
    Served { proc, addr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_function_runs_unchanged_under_wasmtime_serve() {
    let origin = Origin::start("fn-origin");
    let served = wasmtime_serve(&config(&origin));
    the_chain_holds(&origin, |pq| http_get(served.addr, pq)).await;
    // A broken config is a clear 500 naming it, not a crash of the host.
    let broken = wasmtime_serve("{\"origin\": \"ftp://nowhere\"}");
    let r = http_get(broken.addr, "/vod/sample/master.m3u8".into()).await;
    assert_eq!(r.status, 500);
    assert!(
        String::from_utf8_lossy(&r.body).contains("EDGE_FUNCTION_CONFIG"),
        "{:?}",
        r.body
    );
    drop(served.proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_component_is_a_route_handler_in_the_node() {
    let origin = Origin::start("fn-origin");
    let config = config(&origin).replace('\'', "");
    let node = Node::start(&format!(
        "[handlers.edge-fn]\npath = \"{COMPONENT}\"\nenv = {{ EDGE_FUNCTION_CONFIG = '{config}' }}\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"edge-fn\"\n"
    ));
    for proto in clients::ALL {
        let get = |pq: String| {
            let (ca, url) = (node.ca.clone(), node.url(&pq));
            async move {
                let a = clients::get(proto, &ca, &url, &[]).await;
                let head = a
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("")))
                    .collect::<String>();
                Reply {
                    status: a.status.as_u16(),
                    head,
                    body: a.body,
                }
            }
        };
        the_chain_holds(&origin, get).await;
    }
    // The node logged each request with the handler as its upstream.
    node.wait_for_access(|l| l["upstream"] == "edge-fn" && l["status"] == 200);
}
