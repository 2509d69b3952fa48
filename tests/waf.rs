//! End-to-end: the `waf` standard module with OWASP CRS v4 on a real `edge` process —
//! benign media requests pass, attacks in the query and in form bodies get a 403 with a
//! request id (over HTTP/1.1 and HTTP/3), detection-only routes pass and write the audit
//! line, bodies still reach the origin whole, and a rule set with an error is refused with
//! its file, line and rule id. Also the `edge waf test|check` commands.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::clients::{self, Answer, H3Client, Proto};
use support::{edge_bin, Node, Origin};

fn crs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/waf/crs")
}

fn node(origin: &Origin) -> Node {
    let crs = crs();
    Node::start(&format!(
        r#"
[origins.media]
primary = "{origin}"

[[routes]]
prefix = "/bytes/"
origin = "media"
[[routes.modules]]
module = "waf"
[routes.modules.config]
setup_file = "{setup}"
rules_dir = "{rules}"
mode = "blocking"
paranoia = 1

[[routes]]
prefix = "/object/"
origin = "media"
[[routes.modules]]
module = "waf"
[routes.modules.config]
setup_file = "{setup}"
rules_dir = "{rules}"
mode = "blocking"
# Uploads: PUT is not among CRS's default methods.
before = 'SecAction "id:9100,phase:1,pass,nolog,setvar:tx.allowed_methods=GET HEAD POST OPTIONS PUT"'

# Everything else (/echo, /echo-body): detection-only.
[[routes]]
prefix = "/"
origin = "media"
[[routes.modules]]
module = "waf"
[routes.modules.config]
setup_file = "{setup}"
rules_dir = "{rules}"
mode = "detection-only"
"#,
        origin = origin.url,
        setup = crs.join("crs-setup.conf.example").display(),
        rules = crs.join("rules").display(),
    ))
}

/// A player's usual headers.
const PLAYER: [(&str, &str); 3] = [
    (
        "user-agent",
        "AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X; en_us)",
    ),
    ("accept", "*/*"),
    ("accept-language", "en-US,en;q=0.9"),
];

/// One request over HTTP/1.1 with a body.
async fn send(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(clients::tls_config(&node.ca, &[]))
        .https_only()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let mut req = http::Request::builder().method(method).uri(node.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    let fut = async {
        let response = client.request(req).await.expect("request");
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("body").to_bytes(),
        }
    };
    tokio::time::timeout(support::WAIT, fut)
        .await
        .expect("request timed out")
}

/// The status a player's request for `/bytes/10?q=<q>` gets from `node`.
async fn query_status(node: &Node, proto: Proto, q: &str) -> u16 {
    let url = node.url(&format!("/bytes/10?q={q}"));
    clients::get(proto, &node.ca, &url, &PLAYER)
        .await
        .status
        .as_u16()
}

fn waf_audit_lines(node: &Node) -> Vec<serde_json::Value> {
    support::read_log(&node.log)
        .into_iter()
        .filter(|l| l["module"] == "waf")
        .filter_map(|l| serde_json::from_str(l["message"].as_str()?).ok())
        .collect()
}

/// The node's log lines about module failures, for assertion messages.
fn module_failures(node: &Node) -> String {
    std::fs::read_to_string(&node.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("module failed"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_blocked(a: &Answer, what: &str) {
    assert_eq!(a.status, 403, "{what}: {:?}", a.body);
    let id = a
        .headers
        .get("x-request-id")
        .expect("a request id")
        .to_str()
        .unwrap();
    // The node's id for the request (`edge.request-id`).
    assert_eq!(id.len(), 20, "{id}");
    let body = String::from_utf8_lossy(&a.body);
    assert!(
        body.contains(id),
        "{what}: the page names the request id: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crs_blocks_attacks_and_passes_viewers_over_h1_and_h3() {
    let origin = Origin::start("waf");
    let node = node(&origin);

    // Ordinary player traffic: segments and manifests with tokens, no blocks.
    for path in [
        "/bytes/1000?token=exp=1700000000~acl=%2F*~hmac=0a1b2c3d4e5f",
        "/bytes/200?hdnts=st%3D1700000000%7Eexp%3D1700003600%7Eacl%3D%2Fvod%2F*%7Ehmac%3Dabcdef0123",
        "/bytes/10",
    ] {
        let a = clients::get(Proto::H1, &node.ca, &node.url(path), &PLAYER).await;
        assert_eq!(a.status, 200, "{path}: {:?}", a.body);
    }
    let mut h3 = H3Client::connect(node.https, &node.ca).await;
    let a = h3
        .get(&node.url("/bytes/100?token=abc.def.ghi"), &PLAYER)
        .await;
    assert_eq!(a.status, 200, "{:?}", waf_audit_lines(&node));

    // SQL injection and XSS in the query: 403 over HTTP/1.1 and HTTP/3.
    let sqli = "/bytes/10?id=1%27%20OR%20%271%27%3D%271";
    assert_blocked(
        &clients::get(Proto::H1, &node.ca, &node.url(sqli), &PLAYER).await,
        "h1 sqli",
    );
    assert_blocked(&h3.get(&node.url(sqli), &PLAYER).await, "h3 sqli");
    let xss = "/bytes/10?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    assert_blocked(&h3.get(&node.url(xss), &PLAYER).await, "h3 xss");

    // The same attack in a form body: the body is inspected.
    let form = [
        ("content-type", "application/x-www-form-urlencoded"),
        PLAYER[0],
        PLAYER[1],
    ];
    let a = send(&node, "PUT", "/object/form", &form, b"comment=1' OR '1'='1").await;
    assert_blocked(&a, "form body");
    // The node logs the request under the id the WAF gave the viewer.
    let id = a.headers["x-request-id"].to_str().unwrap().to_owned();
    let line = node.wait_for_access(|l| l["request_id"] == id.as_str());
    assert_eq!(line["status"], 403, "{line}");
    assert_eq!(line["path"], "/object/form", "{line}");

    // Bodies reach the origin byte for byte: a small one, and one past the 1 MiB the WAF
    // reads (on the detection-only route, so it passes).
    for len in [37usize, (1 << 20) + 12345] {
        let body: Vec<u8> = b"title=My holiday video&tags=beach,sea"
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect();
        let a = send(&node, "POST", "/echo-body", &form, &body).await;
        assert_eq!(a.status, 200, "{:?}\n{}", a.body, module_failures(&node));
        let seen: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(seen["length"], len, "{len}");
        let head = seen["body"].as_str().unwrap().as_bytes();
        assert_eq!(head, &body[..head.len()]);
    }

    // Detection-only: the request passes, the audit line says what would have happened.
    let a = clients::get(
        Proto::H1,
        &node.ca,
        &node.url("/echo?id=1%27%20OR%20%271%27%3D%271"),
        &PLAYER,
    )
    .await;
    assert_eq!(a.status, 200);
    let deadline = std::time::Instant::now() + support::WAIT;
    let audit = loop {
        let lines = waf_audit_lines(&node);
        if let Some(l) = lines.iter().find(|l| l["mode"] == "detection-only") {
            break l.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no detection-only audit line: {lines:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(audit["blocked"], false);
    assert_eq!(audit["would_block"], true);
    assert!(audit["anomaly_score"].as_i64().unwrap() >= 5, "{audit}");
    let ids: Vec<u64> = audit["rule_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_u64().unwrap())
        .collect();
    assert!(ids.contains(&942100), "{ids:?}");
    // Each rule's details: its message, the data it matched, where.
    let sqli = audit["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 942100)
        .unwrap_or_else(|| panic!("no details for 942100: {audit}"));
    assert!(
        sqli["msg"].as_str().unwrap().contains("SQL Injection"),
        "{sqli}"
    );
    assert!(
        sqli["data"].as_str().unwrap().starts_with("Matched Data:"),
        "{sqli}"
    );
    assert!(
        sqli["variable"].as_str().unwrap().starts_with("ARGS"),
        "{sqli}"
    );

    // The blocking route's audit lines carry the request id of the 403.
    let blocked: Vec<_> = waf_audit_lines(&node)
        .into_iter()
        .filter(|l| l["blocked"] == true)
        .collect();
    assert!(blocked.len() >= 3, "{blocked:?}");
    let ids: std::collections::HashSet<&str> = blocked
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), blocked.len(), "one id per request: {blocked:?}");
    assert!(ids.iter().all(|id| id.len() == 20), "{ids:?}");
}

#[test]
fn a_rule_that_does_not_compile_is_a_config_error_with_file_line_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("custom.conf"),
        "SecRule ARGS \"@rx ok\" \"id:100,phase:2,deny\"\n\nSecRule ARGS \"@rx (unclosed\" \"id:101,phase:2,deny\"\n",
    )
    .unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[origins.media]\nprimary = \"http://127.0.0.1:9\"\n\
         [[routes]]\nprefix = \"/\"\norigin = \"media\"\n[[routes.modules]]\nmodule = \"waf\"\n\
         [routes.modules.config]\nrules_dir = \"rules\"\n",
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
        err.contains("rules/custom.conf:3 (rule 101): regular expression does not compile"),
        "{err}"
    );
}

#[test]
fn waf_check_and_test_commands() {
    let crs = crs();
    let out = Command::new(edge_bin())
        .args(["waf", "check", "--rules"])
        .arg(crs.join("crs-setup.conf.example"))
        .arg("--rules")
        .arg(crs.join("rules"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.lines().last().unwrap().starts_with("ok: "), "{text}");

    let out = Command::new(edge_bin())
        .args(["waf", "test", "--rules"])
        .arg(crs.join("rules"))
        .arg("--tests")
        .arg(crs.join("tests"))
        .args(["--only", "9421", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let totals = &report["totals"];
    assert!(totals["total"].as_u64().unwrap() > 100, "{totals}");
    assert_eq!(
        totals["total"].as_u64().unwrap(),
        totals["passed"].as_u64().unwrap()
            + totals["failed"].as_u64().unwrap()
            + totals["skipped"].as_u64().unwrap()
    );
    assert!(report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"].as_str().unwrap().starts_with("9421")));
    // Every SQL injection test passes (exit 0); a failure would exit 1.
    assert_eq!(totals["failed"], 0, "{totals}");
    assert_eq!(out.status.code(), Some(0));

    // The table, and a usage error for a tests folder that is not there.
    let out = Command::new(edge_bin())
        .args(["waf", "test", "--rules"])
        .arg(crs.join("rules"))
        .args(["--tests", "/nonexistent", "--only", "911100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent"));

    // The table: a header, a row per rule file, a total row.
    let out = Command::new(edge_bin())
        .args(["waf", "test", "--rules"])
        .arg(crs.join("rules"))
        .arg("--tests")
        .arg(crs.join("tests"))
        .args(["--only", "911100"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("rule file") && lines[0].ends_with("pass rate"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("REQUEST-911-METHOD-ENFORCEMENT")),
        "{table}"
    );
    let total = lines
        .iter()
        .find(|l| l.starts_with("total"))
        .expect("total row");
    let failed: u64 = total.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!((failed, out.status.code()), (0, Some(0)), "{table}");
}

#[test]
fn waf_check_names_each_error_and_skip_errors_loads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("custom.conf");
    std::fs::write(
        &rules,
        "SecRule ARGS \"@rx ok\" \"id:1,phase:1,pass\"\n\
         SecRule ARGS \"@rx (\" \"id:2,phase:1,pass\"\n\
         SecRule ARGS \"@nosuchop x\" \"id:3,phase:1,pass\"\n\
         SecAction \"id:4,phase:1,pass,nolog,initcol:ip=%{REMOTE_ADDR}\"\n",
    )
    .unwrap();
    let check = |extra: &[&str]| {
        Command::new(edge_bin())
            .args(["waf", "check", "--rules"])
            .arg(&rules)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = check(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("custom.conf:2 (rule 2)"), "{text}");
    assert!(
        text.contains("custom.conf:3 (rule 3)") && text.contains("nosuchop"),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap().starts_with("2 error(s)"),
        "{text}"
    );

    let out = check(&["--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(doc["ok"], false);
    let lines: Vec<u64> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3]);

    // --skip-errors: the good rules load, each skipped one is a warning.
    let out = check(&["--skip-errors", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(out.status.success(), "{doc}");
    assert_eq!(
        (doc["ok"].clone(), doc["rules"].clone()),
        (true.into(), 2.into())
    );
    let warnings: Vec<&str> = doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.starts_with("skipped:"))
            .count(),
        2,
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("initcol")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_crs_serves_the_sample_and_blocks_attacks() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(edge_bin());
    cmd.args(["demo", "--addr", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .arg("--crs")
        .arg(crs())
        .stderr(std::process::Stdio::null());
    let demo = support::Proc::start(cmd);
    let ready = &demo.ready;
    assert!(
        ready["modules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "waf"),
        "{ready}"
    );
    let ca = PathBuf::from(ready["ca_pem"].as_str().unwrap());
    let manifest = ready["manifest_url"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1", "localhost");
    for proto in [Proto::H1, Proto::H3] {
        let a = clients::get(proto, &ca, &manifest, &PLAYER).await;
        assert_eq!(a.status, 200, "{proto:?}");
        let attack = format!("{manifest}?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
        assert_blocked(
            &clients::get(proto, &ca, &attack, &PLAYER).await,
            "demo xss",
        );
    }
    // The signed URL still opens /secure/ with the WAF in the chain.
    let secure = ready["secure_url"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1", "localhost");
    assert_eq!(
        clients::get(Proto::H1, &ca, &secure, &PLAYER).await.status,
        200
    );
}

/// `edge` run as a process: (exit code, stdout, stderr).
fn edge(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(edge_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The security team's rule workflow: bundle a rule set, sign it, deploy it to a running
/// node; a rule set that does not compile, or is not signed by a trusted key, is refused
/// with the reason and the rules that were serving keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_sets_deploy_signed_and_a_broken_one_keeps_the_previous() {
    const TOKEN: &str = "waf-admin-token-0123456789";
    let origin = Origin::start("waf-deploy");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let rule = |word: &str, id: u32| {
        format!("SecRuleEngine On\nSecRule ARGS \"@contains {word}\" \"id:{id},phase:1,deny,status:403,log,msg:'{word}'\"\n")
    };
    write("v1/rules.conf", &rule("evil", 1001));
    write("v2/rules.conf", &rule("worse", 1002));
    write(
        "v3/rules.conf",
        "SecRule ARGS \"@rx (unclosed\" \"id:1003,phase:1,deny\"\n",
    );
    let key = dir.path().join("team.pem");
    let (code, public, err) = edge(&["module", "keygen", "--out", key.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let intruder = dir.path().join("intruder.pem");
    edge(
        &["module", "keygen", "--out", intruder.to_str().unwrap()],
        &[],
    );

    let node = Node::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[wasm]
trusted_keys = ["{public}"]

[origins.media]
primary = "{origin}"

[[routes]]
prefix = "/"
origin = "media"
[[routes.modules]]
module = "waf"
[routes.modules.config]
rules_dir = "{v1}"
media_exclusions = false
before = 'SecAction "id:2001,phase:1,pass,nolog"'
"#,
        public = public.trim(),
        origin = origin.url,
        v1 = dir.path().join("v1").display(),
    ));
    let admin = node.proc.ready["admin_url"].as_str().unwrap().to_owned();
    let status = |q: &'static str| query_status(&node, Proto::H1, q);
    assert_eq!(status("evil").await, 403);
    assert_eq!(status("worse").await, 200);

    // Signs FILE with KEY (`edge module sign` writes FILE.sig beside it).
    let sign = |key: &std::path::Path, file: &std::path::Path| {
        let (code, _, err) = edge(
            &[
                "module",
                "sign",
                "--key",
                key.to_str().unwrap(),
                file.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 0, "{err}");
    };
    // Bundles `dir/VERSION` with `edge waf bundle` (which checks it compiles on its own)
    // and signs it with the team's key.
    let bundle_signed = |version: &str| {
        let bundle = dir.path().join(format!("{version}.json"));
        let (code, out, err) = edge(
            &[
                "waf",
                "bundle",
                "--rules",
                &dir.path().join(version).to_string_lossy(),
                "--out",
                bundle.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 0, "{out}{err}");
        sign(&key, &bundle);
        bundle
    };

    // v2: bundled, signed, deployed: it replaces the config file's rules.
    let bundle = bundle_signed("v2");
    let env = [("EDGE_ADMIN_TOKEN", TOKEN)];
    let deploy = |file: String| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            edge(
                &[
                    "module", "deploy", "--admin", &admin, "--name", "waf", "--data", &file,
                ],
                &env,
            )
        })
    };
    let (code, out, err) = deploy(bundle.to_str().unwrap().to_owned()).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("data_generation"), "{out}");
    assert_eq!(status("worse").await, 403);
    assert_eq!(status("evil").await, 200);

    // v3 does not compile: `edge waf bundle` refuses to write it...
    let broken = dir.path().join("v3.json");
    let (code, out, _) = edge(
        &[
            "waf",
            "bundle",
            "--rules",
            &dir.path().join("v3").to_string_lossy(),
            "--out",
            broken.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(out.contains("rules/rules.conf:1 (rule 1003)"), "{out}");
    // ...and a hand-made, signed one is refused by the node, which keeps serving v2.
    let text = serde_json::json!({ "rules": { "rules.conf": std::fs::read_to_string(dir.path().join("v3/rules.conf")).unwrap() } });
    std::fs::write(&broken, text.to_string()).unwrap();
    sign(&key, &broken);
    let (code, _, err) = deploy(broken.to_str().unwrap().to_owned()).await.unwrap();
    assert_ne!(code, 0);
    assert!(
        err.contains("rules/rules.conf:1 (rule 1003): regular expression does not compile"),
        "{err}"
    );
    assert_eq!(status("worse").await, 403);

    // v4 compiles on its own (the bundle tool takes it) but not under this route's config,
    // whose `before` already defines rule 2001: the node checks the data merged over each
    // route's config, as the route will run it, and refuses it naming the route.
    write("v4/rules.conf", &rule("bad", 2001));
    let clash = bundle_signed("v4");
    let (code, _, err) = deploy(clash.to_str().unwrap().to_owned()).await.unwrap();
    assert_ne!(code, 0);
    assert!(
        err.contains("route ") && err.contains("duplicate rule id 2001"),
        "{err}"
    );
    assert_eq!(status("worse").await, 403);
    assert_eq!(status("bad").await, 200);

    // Signed, but not a JSON object: refused with the reason, v2 keeps serving.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "SecRule ARGS \"@rx x\" \"id:1\"").unwrap();
    sign(&key, &junk);
    let (code, _, err) = deploy(junk.to_str().unwrap().to_owned()).await.unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("data is not JSON"), "{err}");
    assert_eq!(status("worse").await, 403);

    // Signed by a key the node does not trust: refused, v2 keeps serving.
    sign(&intruder, &bundle);
    let (code, _, err) = deploy(bundle.to_str().unwrap().to_owned()).await.unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("signature"), "{err}");
    assert_eq!(status("worse").await, 403);
}

/// A config reload whose WAF rules do not compile is refused with the rule's file, line
/// and id, and the rules the node runs keep serving; a reload with good rules applies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_broken_rules_keeps_the_running_rule_set() {
    const TOKEN: &str = "waf-reload-token-0123456789";
    let origin = Origin::start("waf-reload");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let rule = |word: &str, id: u32| {
        format!("SecRuleEngine On\nSecRule ARGS \"@contains {word}\" \"id:{id},phase:1,deny,status:403,log\"\n")
    };
    std::fs::write(rules.join("custom.conf"), rule("evil", 1001)).unwrap();
    let node = Node::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [origins.media]\nprimary = \"{}\"\n\n[[routes]]\nprefix = \"/\"\norigin = \"media\"\n\
         [[routes.modules]]\nmodule = \"waf\"\n[routes.modules.config]\nrules_dir = \"{}\"\n\
         media_exclusions = false\n",
        origin.url,
        rules.display()
    ));
    let status = |q: &'static str| query_status(&node, Proto::H2, q);
    let reload =
        || support::admin_request(node.admin_addr(), Some(TOKEN), "POST", "/reload", &[], b"");
    assert_eq!(status("evil").await, 403);

    std::fs::write(
        rules.join("custom.conf"),
        "SecRuleEngine On\nSecRule ARGS \"@rx (unclosed\" \"id:1002,phase:1,deny\"\n",
    )
    .unwrap();
    let (code, body) = reload().await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("custom.conf:2 (rule 1002): regular expression does not compile"),
        "{body}"
    );
    assert_eq!(status("evil").await, 403, "the running rules were dropped");
    assert_eq!(status("fine").await, 200);

    std::fs::write(rules.join("custom.conf"), rule("worse", 1003)).unwrap();
    let (code, body) = reload().await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(status("worse").await, 403);
    assert_eq!(status("evil").await, 200);
}

/// `skip_errors = true` on a route: the rules that compile run, each one that does not is
/// named in the node's log (file, line, rule) instead of refusing the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_skip_errors_runs_what_compiles_and_logs_the_rest() {
    let origin = Origin::start("waf-skip");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("mixed.conf"),
        "SecRuleEngine On\n\
         SecRule ARGS \"@contains evil\" \"id:3001,phase:1,deny,status:403,log\"\n\
         SecRule ARGS \"@rx (unclosed\" \"id:3002,phase:1,deny\"\n",
    )
    .unwrap();
    let node = Node::start(&format!(
        "[origins.media]\nprimary = \"{}\"\n\n[[routes]]\nprefix = \"/\"\norigin = \"media\"\n\
         [[routes.modules]]\nmodule = \"waf\"\n[routes.modules.config]\nrules_dir = \"{}\"\n\
         media_exclusions = false\nskip_errors = true\n",
        origin.url,
        rules.display()
    ));
    let status = |q: &'static str| query_status(&node, Proto::H1, q);
    assert_eq!(status("evil").await, 403);
    assert_eq!(status("fine").await, 200);
    let skipped = node.wait_for_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("skipped:") && m.contains("3002"))
    });
    let message = skipped["message"].as_str().unwrap();
    assert!(message.contains("mixed.conf:3"), "{skipped}");
}
