//! End-to-end: object-storage origins behind the cache. S3 through a real S3-compatible
//! server started by the test (moto's `moto_server`, a separate process speaking the S3
//! REST API), Azure Blob through Azurite (the Azure Storage emulator, from npm), and the
//! local filesystem.

mod support;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::clients::{self, Proto, ALL};
use support::{Node, WAIT};

/// The node's S3 secret in these tests: distinctive, so the log check below can find it.
const S3_SECRET: &str = "s3-secret-d41d8cd98f00b204e9800998ecf8427e";

/// A `moto_server` process on a free loopback port, killed when dropped.
struct S3Server {
    proc: std::process::Child,
    url: String,
}

impl S3Server {
    fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proc = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server is required (scripts/test installs it: pip install 'moto[server]')",
            );
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            proc,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

fn x_cache(a: &clients::Answer) -> &str {
    a.headers
        .get("x-cache")
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_through_the_cache_with_ranges_and_missing_keys() {
    let s3 = S3Server::start();
    // Create the bucket with a plain S3 REST call, then upload with an S3 client.
    let mut tcp = tokio::net::TcpStream::connect(s3.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let created = clients::exchange(
        &mut tcp,
        b"PUT /media HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(clients::status_of(&created), 200, "{created}");
    let store = AmazonS3Builder::new()
        .with_endpoint(&s3.url)
        .with_allow_http(true)
        .with_bucket_name("media")
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let small: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let large: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut typed = object_store::PutOptions::default();
    typed.attributes.insert(
        object_store::Attribute::ContentType,
        "video/iso.segment".into(),
    );
    store
        .put_opts(
            &ObjectPath::from("vod/title/seg_1.ts"),
            PutPayload::from(small.clone()),
            typed,
        )
        .await
        .unwrap();
    store
        .put(
            &ObjectPath::from("vod/title/big.ts"),
            PutPayload::from(large.clone()),
        )
        .await
        .unwrap();

    let config = format!(
        "[cache]\nmax_bytes = 4194304\nshards = 4\nmax_object_bytes = 100000\n\n\
         [stores.s3]\nkind = \"s3\"\nbucket = \"media\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nprefix = \"vod/\"\n\n\
         [[routes]]\norigin = \"s3\"\n[routes.cache]\ndefault_ttl_s = 600\n",
        s3.url
    );
    // Credentials come from the environment, as in production.
    let node = Node::start_full(
        &config,
        "",
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET),
        ],
    );
    let first = clients::get(Proto::H1, &node.ca, &node.url("/title/seg_1.ts"), &[]).await;
    assert_eq!((first.status.as_u16(), x_cache(&first)), (200, "MISS"));
    assert_eq!(first.body, small);
    assert_eq!(
        first.headers["content-type"], "video/iso.segment",
        "the store's type is carried"
    );
    let meta = store
        .head(&ObjectPath::from("vod/title/seg_1.ts"))
        .await
        .unwrap();
    assert_carries_the_stores_metadata(&first, &meta);
    for proto in ALL {
        let hit = clients::get(proto, &node.ca, &node.url("/title/seg_1.ts"), &[]).await;
        assert_eq!(x_cache(&hit), "HIT", "{proto:?}");
        assert_eq!(hit.body, small);
        let part = clients::get(
            proto,
            &node.ca,
            &node.url("/title/seg_1.ts"),
            &[("range", "bytes=100-199")],
        )
        .await;
        assert_eq!(part.status, 206);
        assert_eq!(part.body, &small[100..200]);
    }
    // Larger than max_object_bytes: the range goes to the store as a range read.
    let part = clients::get(
        Proto::H2,
        &node.ca,
        &node.url("/title/big.ts"),
        &[("range", "bytes=250000-250099")],
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.headers["content-range"], "bytes 250000-250099/300000");
    assert_eq!(part.body, &large[250_000..250_100]);
    assert_eq!(x_cache(&part), "PASS");
    let whole = clients::get(Proto::H3, &node.ca, &node.url("/title/big.ts"), &[]).await;
    assert_eq!(whole.body, large);
    assert_eq!(
        whole.headers["content-type"], "video/mp2t",
        "untyped upload: by extension"
    );

    let missing = clients::get(Proto::H1, &node.ca, &node.url("/title/none.ts"), &[]).await;
    assert_eq!(missing.status, 404);
    let escape = clients::get(
        Proto::H1,
        &node.ca,
        &node.url("/title/%2e%2e/%2e%2e/x"),
        &[],
    )
    .await;
    assert_eq!(escape.status, 400);
    // The secret never reaches the logs (moto accepts any secret; this one is distinctive
    // so that a leak anywhere in the log is found).
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(!log.is_empty());
    assert!(
        !log.contains(S3_SECRET) && !log.contains("AWS_SECRET") && !log.contains("secret_access"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_filesystem_store() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("media/live")).unwrap();
    std::fs::write(
        root.path().join("media/live/index.m3u8"),
        "#EXTM3U\n#EXT-X-VERSION:3\n",
    )
    .unwrap();
    let config = format!(
        "[stores.disk]\nkind = \"fs\"\nroot = \"{}\"\nprefix = \"media\"\n\n[[routes]]\norigin = \"disk\"\n",
        root.path().display()
    );
    let node = Node::start(&config);
    for proto in ALL {
        let a = clients::get(proto, &node.ca, &node.url("/live/index.m3u8"), &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["content-type"], "application/vnd.apple.mpegurl");
        assert!(a.body.starts_with(b"#EXTM3U"));
    }
    let missing = clients::get(Proto::H1, &node.ca, &node.url("/live/none.m3u8"), &[]).await;
    assert_eq!(missing.status, 404);

    // A store whose kind is wrong is a config error naming the line.
    let bad = node.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[stores.x]\nkind = \"ftp\"\n\n[[routes]]\norigin = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(support::edge_bin())
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:2: key `stores.x.kind`: unknown store kind `ftp`"),
        "{stderr}"
    );
}

/// An Azurite blob service on a free loopback port, killed when dropped.
struct Azurite {
    proc: std::process::Child,
    port: u16,
    _data: tempfile::TempDir,
}

/// Azurite's published development account and key.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    fn start() -> Azurite {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.test-tools/node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "{} missing: scripts/test installs it (npm install azurite)",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = tempfile::tempdir().unwrap();
        let proc = Command::new(bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--silent",
                "--skipApiVersionCheck",
                "--location",
            ])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite-blob");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "azurite did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Azurite {
            proc,
            port,
            _data: data,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blobs_through_azurite() {
    let azurite = Azurite::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/support/azurite_container.py");
    let created = Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", &azurite.port.to_string(), "media"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(AZURITE_ACCOUNT)
        .with_access_key(AZURITE_KEY)
        .with_container_name("media")
        .with_endpoint(azurite.endpoint())
        .with_allow_http(true)
        .build()
        .unwrap();
    let body: Vec<u8> = (0..20_000u32).map(|i| (i % 249) as u8).collect();
    store
        .put(
            &ObjectPath::from("live/seg_9.ts"),
            PutPayload::from(body.clone()),
        )
        .await
        .unwrap();

    let config = format!(
        "[stores.blob]\nkind = \"azure\"\naccount = \"{AZURITE_ACCOUNT}\"\ncontainer = \"media\"\nendpoint = \"{}\"\n\n\
         [[routes]]\norigin = \"blob\"\n[routes.cache]\ndefault_ttl_s = 60\n",
        azurite.endpoint()
    );
    let node = Node::start_full(&config, "", &[("AZURE_STORAGE_ACCESS_KEY", AZURITE_KEY)]);
    let first = clients::get(Proto::H2, &node.ca, &node.url("/live/seg_9.ts"), &[]).await;
    assert_eq!((first.status.as_u16(), x_cache(&first)), (200, "MISS"));
    assert_eq!(first.body, body);
    let meta = store
        .head(&ObjectPath::from("live/seg_9.ts"))
        .await
        .unwrap();
    assert_carries_the_stores_metadata(&first, &meta);
    let part = clients::get(
        Proto::H3,
        &node.ca,
        &node.url("/live/seg_9.ts"),
        &[("range", "bytes=0-99")],
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &body[..100]);
    assert_eq!(x_cache(&part), "HIT");
    let missing = clients::get(Proto::H1, &node.ca, &node.url("/live/none.ts"), &[]).await;
    assert_eq!(missing.status, 404);
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(!log.is_empty());
    assert!(
        !log.contains(AZURITE_KEY),
        "the account key was logged: {log}"
    );
}

/// The answer's validators and length are the store's own, as the store reports them.
fn assert_carries_the_stores_metadata(answer: &clients::Answer, meta: &object_store::ObjectMeta) {
    assert_eq!(
        answer.headers["etag"].to_str().unwrap(),
        meta.e_tag.as_deref().unwrap()
    );
    assert_eq!(
        answer.headers["last-modified"].to_str().unwrap(),
        httpdate::fmt_http_date(meta.last_modified.into())
    );
    assert_eq!(
        answer.headers["content-length"],
        meta.size.to_string().as_str()
    );
}
