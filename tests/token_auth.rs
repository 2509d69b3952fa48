//! End-to-end: the `token-auth` standard module on a route of a real `edge` process —
//! every format over HTTP/1.1, HTTP/2 and HTTP/3, the session cookie, the token handed to
//! later modules, refusals with their reason in the log — and `edge token sign|verify`
//! as a process with its exit codes.

mod support;

use edge_runtime::token::{self, Key, SignSpec, TokenFormat};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::clients::{self, Answer, Proto, ALL};
use support::{edge_bin, Node, Origin};

const NATIVE_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const AKAMAI_KEY: &str = "52a152a152a152a152a152a152a152a1";
const TEST_MODULE: &str = edge_module_artifacts::testing::TEST_MODULE;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../modules/token-auth/testdata")
        .join(name)
}

fn fixture(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(testdata(name)).unwrap()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs `edge token …`: (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(edge_bin())
        .arg("token")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[test]
fn cli_signs_and_verifies_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let cf = fixture("cloudfront.json");
    let cf_public = dir.path().join("cf.pub.pem");
    let cf_private = dir.path().join("cf.pem");
    std::fs::write(&cf_public, cf["public_key_pem"].as_str().unwrap()).unwrap();
    std::fs::write(&cf_private, cf["private_key_pem"].as_str().unwrap()).unwrap();
    let jwks = testdata("jwks.json");
    let jwks = jwks.to_str().unwrap();
    let es256 = testdata("jwt-es256.pem");

    // Native: sign, verify, then the same URL later and from elsewhere.
    let (code, url, err) = cli(&[
        "sign",
        "--format",
        "native",
        "--key",
        NATIVE_KEY,
        "--key-id",
        "k1",
        "--url",
        "https://edge.example/secure/a/index.m3u8",
        "--prefix",
        "/secure/",
        "--expires",
        "2000000000",
        "--ip",
        "203.0.113.5",
    ]);
    assert_eq!(code, 0, "{err}");
    let verify_native = |extra: &[&str]| {
        let mut args = vec![
            "verify", "--format", "native", "--key", NATIVE_KEY, "--url", &url,
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    assert_eq!(
        verify_native(&["--ip", "203.0.113.5", "--now", "1999999999"]).0,
        0
    );
    let (code, out, _) = verify_native(&["--ip", "203.0.113.5", "--now", "2000000000"]);
    assert_eq!((code, out.as_str()), (1, "expired"));
    let (code, out, _) = verify_native(&["--ip", "198.51.100.1", "--now", "1"]);
    assert_eq!((code, out.as_str()), (1, "ip-mismatch"));

    // Akamai: a token from Akamai's own generator.
    let ak = &fixture("akamai.json")["cases"][0];
    let (code, out, err) = cli(&[
        "verify",
        "--format",
        "akamai",
        "--key",
        ak["key_hex"].as_str().unwrap(),
        "--url",
        "https://edge.example/secure/v/seg.ts",
        "--token",
        ak["token"].as_str().unwrap(),
        "--now",
        "1700000100",
    ]);
    assert_eq!((code, out.as_str()), (0, "valid"), "{err}");
    let (code, out, _) = cli(&[
        "verify",
        "--format",
        "akamai",
        "--key",
        ak["key_hex"].as_str().unwrap(),
        "--url",
        "https://edge.example/other/seg.ts",
        "--token",
        ak["token"].as_str().unwrap(),
        "--now",
        "1700000100",
    ]);
    assert_eq!((code, out.as_str()), (1, "acl-mismatch"));

    // CloudFront: a URL from AWS's signer, and our own signed cookies.
    let case = &cf["cases"][0];
    let (code, out, err) = cli(&[
        "verify",
        "--format",
        "cloudfront",
        "--key",
        cf_public.to_str().unwrap(),
        "--url",
        case["url"].as_str().unwrap(),
        "--now",
        "1700000000",
    ]);
    assert_eq!((code, out.as_str()), (0, "valid"), "{err}");
    let (code, cookies, err) = cli(&[
        "sign",
        "--format",
        "cloudfront",
        "--key",
        cf_private.to_str().unwrap(),
        "--key-id",
        "K2JCJMDEHXQW5F",
        "--url",
        "https://d.example/secure/a.ts",
        "--resource",
        "https://d.example/secure/*",
        "--expires",
        "2000000000",
        "--cookie",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&[
        "verify",
        "--format",
        "cloudfront",
        "--key",
        cf_public.to_str().unwrap(),
        "--url",
        "https://d.example/secure/b.ts",
        "--cookie",
        &cookies,
        "--now",
        "1999999999",
    ]);
    assert_eq!((code, out.as_str()), (0, "valid"), "{err}");

    // JWT: a PyJWT token against the JWKS, and our own ES256.
    let jwt_case = &fixture("jwt.json")["cases"][8];
    assert_eq!(jwt_case["name"], "pyjwt-es256");
    let (code, out, err) = cli(&[
        "verify",
        "--format",
        "jwt",
        "--key",
        jwks,
        "--url",
        "https://edge.example/secure/x",
        "--token",
        jwt_case["token"].as_str().unwrap(),
        "--now",
        "1700000100",
        "--audience",
        "edge",
        "--issuer",
        "https://issuer.example",
        "--path-claim",
        "paths",
    ]);
    assert_eq!((code, out.as_str()), (0, "valid"), "{err}");
    let (code, jwt, err) = cli(&[
        "sign",
        "--format",
        "jwt",
        "--key",
        es256.to_str().unwrap(),
        "--alg",
        "ES256",
        "--key-id",
        "edge-es256",
        "--sub",
        "ops",
        "--expires",
        "2000000000",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&[
        "verify",
        "--format",
        "jwt",
        "--key",
        jwks,
        "--url",
        "https://edge.example/x",
        "--token",
        &jwt,
        "--now",
        "1999999999",
    ]);
    assert_eq!((code, out.as_str()), (0, "valid"), "{err}");
    assert!(err.contains("subject=ops"), "{err}");
    let (code, out, _) = cli(&[
        "verify",
        "--format",
        "jwt",
        "--key",
        jwks,
        "--url",
        "https://edge.example/x",
        "--now",
        "1999999999",
    ]);
    assert_eq!((code, out.as_str()), (1, "missing"));

    // An HMAC JWT with a kid, checked with the hex secret alone (no --key-id), and with
    // the kid given: valid both ways; with another secret, a bad signature (exit 1).
    let secret = "00112233445566778899aabbccddeeff";
    let (code, hs256, err) = cli(&[
        "sign",
        "--format",
        "jwt",
        "--key",
        secret,
        "--key-id",
        "edge-1",
        "--expires",
        "2000000000",
    ]);
    assert_eq!(code, 0, "{err}");
    let verify_with = |key: &str, key_id: Option<&str>| {
        let mut args = vec![
            "verify",
            "--format",
            "jwt",
            "--key",
            key,
            "--url",
            "https://edge.example/x",
            "--token",
            &hs256,
            "--now",
            "1999999999",
        ];
        if let Some(id) = key_id {
            args.extend(["--key-id", id]);
        }
        let (code, out, _) = cli(&args);
        (code, out)
    };
    assert_eq!(verify_with(secret, None), (0, "valid".to_owned()));
    assert_eq!(verify_with(secret, Some("edge-1")), (0, "valid".to_owned()));
    assert_eq!(
        verify_with("ffeeddccbbaa99887766554433221100", None),
        (1, "bad-signature".to_owned())
    );

    // Unusable input: exit 2 with a message naming the problem.
    let (code, _, err) = cli(&[
        "verify",
        "--format",
        "native",
        "--key",
        "not-hex",
        "--url",
        "https://e.example/",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("neither a file nor"), "{err}");
    let (code, _, err) = cli(&[
        "verify",
        "--format",
        "saml",
        "--key",
        "00",
        "--url",
        "https://e.example/",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("saml"), "{err}");
    let (code, _, err) = cli(&[
        "sign",
        "--format",
        "jwt",
        "--key",
        "00",
        "--alg",
        "none",
        "--expires",
        "1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("`none`"), "{err}");
}

/// A node with one protected route (`/bytes/`) that accepts every format, sets a session
/// cookie, and reports what token-auth handed on (the test module in `context` mode).
fn node(origin: &Origin, dir: &Path) -> Node {
    let cf = fixture("cloudfront.json");
    let cf_public = dir.join("cf.pub.pem");
    std::fs::write(&cf_public, cf["public_key_pem"].as_str().unwrap()).unwrap();
    Node::start(&format!(
        r#"
[origins.media]
primary = "{origin}"

[modules.test]
path = "{TEST_MODULE}"
budget_ms = 1000

[modules.token-auth]
budget_ms = 1000

[[routes]]
prefix = "/bytes/"
origin = "media"
[[routes.modules]]
module = "token-auth"
[routes.modules.config.native]
# Rotation: the tests' tokens are signed with k1, the session cookie with k2.
keys = {{ k1 = "{NATIVE_KEY}", k2 = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100" }}
signing_key = "k2"
[routes.modules.config.akamai]
# Rotation: the tests' tokens are signed with the key tried last ("old" sorts after
# "new"), so every key is tried, not only the first.
keys = {{ new = "0f0f0f0f", old = "{AKAMAI_KEY}" }}
[routes.modules.config.cloudfront.public_keys_file]
K2JCJMDEHXQW5F = "{cf_public}"
[routes.modules.config.jwt]
jwks_file = "{jwks}"
path_claim = "paths"
audience = "edge"
from = {{ header = "authorization", query = "access_token", cookie = "jwt" }}
[routes.modules.config.session]
path = "/bytes/"
[[routes.modules]]
module = "test"
config = {{ mode = "context" }}
"#,
        origin = origin.url,
        cf_public = cf_public.display(),
        jwks = testdata("jwks.json").display(),
    ))
}

fn h<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn sign(format: TokenFormat, key: Key, spec: SignSpec) -> String {
    token::sign(format, &key, &spec).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_opens_the_route_over_every_protocol() {
    let origin = Origin::start("token-auth");
    let keys = tempfile::tempdir().unwrap();
    let node = node(&origin, keys.path());
    let native_key = || Key::parse(NATIVE_KEY).unwrap();
    let expires = now() + 600;
    let cf = fixture("cloudfront.json");
    let cf_private = Key::File(cf["private_key_pem"].as_str().unwrap().to_owned());
    let es256 = Key::parse(testdata("jwt-es256.pem").to_str().unwrap()).unwrap();

    for proto in ALL {
        let get = |url: String, headers: Vec<(&'static str, String)>| {
            let ca = node.ca.clone();
            async move {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                clients::get(proto, &ca, &url, &headers).await
            }
        };
        let path = format!("/bytes/{}", 1000 + proto as u64);

        // No token: 401 with a Bearer challenge (JWTs come in `Authorization`).
        let a = get(node.url(&path), vec![]).await;
        assert_eq!(a.status, 401, "{proto:?}");
        assert_eq!(h(&a, "www-authenticate"), "Bearer realm=\"edge\"");

        // Native signed URL: passes, sets the session cookie, hands the token on.
        let url = sign(
            TokenFormat::Native,
            native_key(),
            SignSpec {
                key_id: Some("k1".into()),
                url: Some(node.url(&path)),
                prefix: Some("/bytes/".into()),
                expires,
                ..Default::default()
            },
        );
        let a = get(url.clone(), vec![]).await;
        assert_eq!(a.status, 200, "{proto:?} {url}");
        assert_eq!(h(&a, "x-cache"), "MISS", "{proto:?}");
        assert_eq!(a.body.len() as u64, 1000 + proto as u64);
        assert_eq!(h(&a, "x-token-format"), "native");
        assert!(h(&a, "x-token-query").starts_with("edge_token=k=k1~e="));
        let set_cookie = h(&a, "set-cookie");
        assert!(
            set_cookie.starts_with("edge_session=k=k2~")
                && set_cookie.contains("Path=/bytes/; Max-Age=")
                && set_cookie.ends_with("; HttpOnly; Secure; SameSite=Lax"),
            "{set_cookie}"
        );
        // Never longer than the token it stands for (which expires in 600 s).
        let max_age: u64 = set_cookie
            .split("Max-Age=")
            .nth(1)
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(max_age <= 600, "{set_cookie}");
        let session = set_cookie.split(';').next().unwrap().to_owned();

        // The session cookie alone opens other objects under its path, with no new cookie.
        let a = get(node.url("/bytes/77"), vec![("cookie", session.clone())]).await;
        assert_eq!(a.status, 200, "{proto:?}");
        assert_eq!(h(&a, "x-token-format"), "session");
        assert_eq!(h(&a, "set-cookie"), "");

        // A cached object still needs a token.
        let a = get(node.url(&path), vec![]).await;
        assert_eq!(a.status, 401);

        // Expired and tampered native tokens: 403, nothing about why in the answer.
        let expired = sign(
            TokenFormat::Native,
            native_key(),
            SignSpec {
                key_id: Some("k1".into()),
                url: Some(node.url(&path)),
                expires: now() - 120,
                ..Default::default()
            },
        );
        let a = get(expired, vec![]).await;
        assert_eq!((a.status.as_u16(), &a.body[..]), (403, &b"forbidden\n"[..]));
        let a = get(url.replace("~e=", "~e=1"), vec![]).await;
        assert_eq!(a.status, 403);
        // A path that climbs out of the token's prefix is refused whatever the token.
        let escape = url.replacen(&path, "/bytes/%2e%2e/object/secret", 1);
        let a = get(escape, vec![]).await;
        assert_eq!(a.status, 403, "{proto:?}");

        // Akamai (rotated keys), in the query and in the cookie.
        let akamai = sign(
            TokenFormat::Akamai,
            Key::parse(AKAMAI_KEY).unwrap(),
            SignSpec {
                acl: Some("/bytes/*".into()),
                expires,
                ..Default::default()
            },
        );
        let a = get(format!("{}?{akamai}", node.url(&path)), vec![]).await;
        assert_eq!(
            (a.status.as_u16(), h(&a, "x-token-format")),
            (200, "akamai")
        );
        let a = get(node.url(&path), vec![("cookie", akamai.clone())]).await;
        assert_eq!(
            (a.status.as_u16(), h(&a, "x-token-format")),
            (200, "akamai")
        );
        let a = get(
            format!(
                "{}?{}",
                node.url("/bytes/9"),
                akamai.replace("/bytes/*", "/b*")
            ),
            vec![],
        )
        .await;
        assert_eq!(a.status, 403);

        // CloudFront: a canned signed URL for exactly this URL, and custom-policy cookies.
        // The signed URL names the host without a port, as viewers ask for it; the test
        // node listens on another port than 443.
        let on_node = |url: &str| url.replacen("https://localhost", &node.url(""), 1);
        let cf_url = sign(
            TokenFormat::CloudFront,
            cf_private.clone(),
            SignSpec {
                key_id: Some("K2JCJMDEHXQW5F".into()),
                url: Some(format!("https://localhost{path}")),
                expires,
                ..Default::default()
            },
        );
        let a = get(on_node(&cf_url), vec![]).await;
        assert_eq!(
            (a.status.as_u16(), h(&a, "x-token-format")),
            (200, "cloudfront")
        );
        let cookies = sign(
            TokenFormat::CloudFront,
            cf_private.clone(),
            SignSpec {
                key_id: Some("K2JCJMDEHXQW5F".into()),
                url: Some(format!("https://localhost{path}")),
                resource: Some("https://localhost/bytes/*".into()),
                expires,
                cookie: true,
                ..Default::default()
            },
        );
        let a = get(node.url("/bytes/55"), vec![("cookie", cookies)]).await;
        assert_eq!(
            (a.status.as_u16(), h(&a, "x-token-format")),
            (200, "cloudfront")
        );
        // The canned URL signed for one object does not open another.
        let a = get(on_node(&cf_url).replace(&path, "/bytes/56"), vec![]).await;
        assert_eq!(a.status, 403);

        // JWT (ES256) in `Authorization`: its subject is handed on; its paths claim holds.
        let jwt = |paths: &str| {
            sign(
                TokenFormat::Jwt,
                es256.clone(),
                SignSpec {
                    key_id: Some("edge-es256".into()),
                    alg: Some("ES256".into()),
                    sub: Some("viewer-9".into()),
                    aud: Some("edge".into()),
                    paths: vec![paths.into()],
                    expires,
                    ..Default::default()
                },
            )
        };
        let a = get(
            node.url(&path),
            vec![("authorization", format!("Bearer {}", jwt("/bytes/*")))],
        )
        .await;
        assert_eq!(a.status, 200, "{proto:?}");
        assert_eq!(h(&a, "x-token-subject"), "viewer-9");
        // The same token from the query parameter and the cookie the route names.
        let token = jwt("/bytes/*");
        let a = get(node.url(&format!("{path}?access_token={token}")), vec![]).await;
        assert_eq!(
            (a.status.as_u16(), h(&a, "x-token-subject")),
            (200, "viewer-9"),
            "{proto:?}"
        );
        let a = get(node.url(&path), vec![("cookie", format!("jwt={token}"))]).await;
        assert_eq!(
            (a.status.as_u16(), h(&a, "x-token-subject")),
            (200, "viewer-9"),
            "{proto:?}"
        );
        let a = get(
            node.url(&path),
            vec![("authorization", format!("Bearer {}", jwt("/other/*")))],
        )
        .await;
        assert_eq!(a.status, 403);
    }

    // More refusals, each its own reason: native tokens bound to another address, not yet
    // valid, under a key id the route does not have, and a token that is not one.
    let native = |key_id: &str, start: Option<u64>, ip: Option<&str>| {
        let url = sign(
            TokenFormat::Native,
            Key::parse(NATIVE_KEY).unwrap(),
            SignSpec {
                key_id: Some(key_id.into()),
                url: Some(node.url("/bytes/9")),
                prefix: Some("/bytes/".into()),
                start,
                expires,
                ip: ip.map(str::to_owned),
                ..Default::default()
            },
        );
        url.replacen(&format!("https://localhost:{}", node.https.port()), "", 1)
    };
    for (path, reason) in [
        (native("k1", None, Some("203.0.113.9")), "ip-mismatch"),
        (native("k1", Some(expires - 60), None), "not-yet-valid"),
        (native("k9", None, None), "unknown-key"),
        ("/bytes/9?edge_token=garbage".to_owned(), "malformed"),
    ] {
        let a = clients::get(Proto::H1, &node.ca, &node.url(&path), &[]).await;
        assert_eq!(a.status, 403, "{reason}: {path}");
    }

    // Each refusal is in the log with its reason code and the module's name.
    let log = std::fs::read_to_string(&node.log).unwrap();
    for reason in [
        "missing",
        "expired",
        "bad-signature",
        "acl-mismatch",
        "ip-mismatch",
        "not-yet-valid",
        "unknown-key",
        "malformed",
    ] {
        assert!(
            log.lines().any(|l| l.contains("token refused")
                && l.contains(&format!("reason={reason}"))
                && l.contains("\"module\":\"token-auth\"")),
            "no `{reason}` refusal in the log:\n{log}"
        );
    }
    assert!(!log.contains(NATIVE_KEY) && !log.contains(AKAMAI_KEY));
}

/// A mistake in token-auth's table is caught when the config loads, with its line.
#[test]
fn a_bad_token_auth_config_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[origins.media]\nprimary = \"http://127.0.0.1:9\"\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"media\"\n\
         [[routes.modules]]\nmodule = \"token-auth\"\nconfig = { native = { keys = { k1 = \"00\" } }, sessions = 1 }\n",
    )
    .unwrap();
    let out = Command::new(edge_bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:12: key `routes[0].modules[0].config`: token-auth config: unknown field `sessions`",
            path.display()
        )),
        "{stderr}"
    );
}
