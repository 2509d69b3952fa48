//! The CRS regression tests (the go-ftw YAML format) run against the engine directly:
//! each stage's request is evaluated and judged by the rule ids that logged, as CRS's own
//! CI judges ModSecurity in detection-only mode at paranoia level 4.

use crate::request::Request;
use crate::ruleset::{LoadError, LoadOptions, MemorySource, RuleSet};
use crate::transaction::evaluate;
use base64::Engine as _;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What CRS's test configuration sets (its tests/README): detection-only, paranoia level
/// 4, the test limits. `{pl}` is replaced by the chosen paranoia level. CRS's CI runs the
/// ModSecurity images, whose configuration holds the recommended rule 200002: it logs a
/// body the body processor refused, with the processor's message, and CRS tests match that
/// message (922130: `Multipart parsing error: ...`).
pub const TEST_SETUP: &str = r#"
SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction ProcessPartial
SecDefaultAction "phase:1,log,auditlog,pass"
SecDefaultAction "phase:2,log,auditlog,pass"
SecDefaultAction "phase:3,log,auditlog,pass"
SecDefaultAction "phase:4,log,auditlog,pass"
SecDefaultAction "phase:5,log,auditlog,pass"
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',logdata:'%{reqbody_error_msg}',severity:2"
SecAction "id:900990,phase:1,pass,t:none,nolog,setvar:tx.crs_setup_version=4290"
SecAction "id:900005,phase:1,nolog,pass,ctl:ruleRemoveById=910000,setvar:tx.blocking_paranoia_level={pl},setvar:tx.detection_paranoia_level={pl},setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535"
"#;

/// Loads CRS rule files with the test configuration in front.
pub fn load_for_tests(rule_paths: &[PathBuf], paranoia: u8) -> Result<RuleSet, LoadError> {
    let mut files = MemorySource::default();
    let setup = "ftw-setup.conf".to_string();
    files.files.insert(
        setup.clone(),
        TEST_SETUP.replace("{pl}", &paranoia.to_string()),
    );
    let mut entries = vec![setup];
    for path in rule_paths {
        let listed: Vec<PathBuf> = if path.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| io_error(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            v.sort();
            v
        } else {
            vec![path.clone()]
        };
        for p in listed {
            let text = std::fs::read_to_string(&p).map_err(|e| io_error(&p, e))?;
            let name = p.display().to_string();
            // Data files sit beside the rules.
            if let Some(dir) = p.parent() {
                for data in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let dp = data.path();
                    if dp.extension().is_some_and(|x| x == "data") {
                        if let Ok(t) = std::fs::read_to_string(&dp) {
                            files.files.insert(dp.display().to_string(), t);
                        }
                    }
                }
            }
            files.files.insert(name.clone(), text);
            entries.push(name);
        }
    }
    RuleSet::load(&files, &entries, LoadOptions::default())
}

fn io_error(path: &Path, e: std::io::Error) -> LoadError {
    LoadError {
        errors: vec![crate::ruleset::Problem {
            file: path.display().to_string(),
            line: 0,
            rule_id: None,
            message: e.to_string(),
        }],
    }
}

/// One test file: `tests/<rule file>/<rule id>.yaml`.
#[derive(Debug)]
pub struct TestFile {
    pub rule_file: String,
    pub cases: Vec<Case>,
}

#[derive(Debug)]
pub struct Case {
    /// `942100-3`.
    pub id: String,
    pub stages: Vec<Stage>,
    /// Why [`NODE_OVERRIDES`] changed what the test expects.
    pub overridden: Option<String>,
}

#[derive(Debug)]
pub struct Stage {
    pub request: Result<Request, String>,
    pub expect_ids: Vec<u32>,
    pub no_expect_ids: Vec<u32>,
    /// Regular expressions the log must (not) match, as go-ftw applies them to
    /// ModSecurity's error log (`[id "942100"] [msg "..."]`).
    pub match_regex: Vec<String>,
    pub no_match_regex: Vec<String>,
    /// Checks the engine cannot make (an HTTP status, a connection error): reported.
    pub response_checks: Vec<String>,
    /// The bytes to send when the test gives them (`encoded_request`): a replay through a
    /// server sends these, not a re-serialization of `request`.
    pub raw: Option<Vec<u8>>,
}

impl Stage {
    /// The request as HTTP/1.x bytes, for a replay through a server.
    pub fn wire_bytes(&self) -> Option<Vec<u8>> {
        if let Some(raw) = &self.raw {
            return Some(raw.clone());
        }
        let r = self.request.as_ref().ok()?;
        let mut out = format!("{} {} {}\r\n", r.method, r.uri, r.protocol).into_bytes();
        for (k, v) in &r.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&r.body);
        Some(out)
    }
}

/// Reads every `*.yaml` test under `dir` (one folder per rule file; `*-overrides.yaml`
/// of other platforms are not read), with [`NODE_OVERRIDES`] applied.
pub fn load_tests(dir: &Path) -> Result<Vec<TestFile>, String> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut out = Vec::new();
    for folder in folders {
        let rule_file = folder
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(|e| format!("{}: {e}", folder.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut cases = Vec::new();
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            cases.extend(parse_file(&text).map_err(|e| format!("{}: {e}", file.display()))?);
        }
        out.push(TestFile { rule_file, cases });
    }
    apply_overrides(&mut out, NODE_OVERRIDES).map_err(|e| format!("NODE_OVERRIDES: {e}"))?;
    Ok(out)
}

/// One go-ftw YAML document into cases.
pub fn parse_file(text: &str) -> Result<Vec<Case>, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let rule_id = doc.get("rule_id").and_then(as_u64).ok_or("no rule_id")?;
    let tests = doc
        .get("tests")
        .and_then(Value::as_sequence)
        .ok_or("no tests")?;
    let mut out = Vec::new();
    for (n, test) in tests.iter().enumerate() {
        let test_id = test.get("test_id").and_then(as_u64).unwrap_or(n as u64 + 1);
        let stages = test
            .get("stages")
            .and_then(Value::as_sequence)
            .ok_or("test without stages")?;
        let mut parsed = Vec::new();
        for stage in stages {
            // Old files nest each stage under `stage:`.
            let stage = stage.get("stage").unwrap_or(stage);
            parsed.push(parse_stage(stage));
        }
        out.push(Case {
            id: format!("{rule_id}-{test_id}"),
            stages: parsed,
            overridden: None,
        });
    }
    Ok(out)
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Sequence(s)) => s.iter().filter_map(as_u64).map(|n| n as u32).collect(),
        Some(other) => as_u64(other).map(|n| vec![n as u32]).unwrap_or_default(),
        None => Vec::new(),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_stage(stage: &Value) -> Stage {
    let null = Value::Null;
    let input = stage.get("input").unwrap_or(&null);
    let output = stage.get("output").unwrap_or(&null);
    let mut parsed = Stage {
        request: request_of(input),
        expect_ids: Vec::new(),
        no_expect_ids: Vec::new(),
        match_regex: Vec::new(),
        no_match_regex: Vec::new(),
        response_checks: Vec::new(),
        raw: encoded_request(input),
    };
    parsed.set_output(output);
    parsed
}

impl Stage {
    /// Reads what a stage's `output` expects (replacing what was there).
    fn set_output(&mut self, output: &Value) {
        let log = output.get("log");
        self.expect_ids = ids(log.and_then(|l| l.get("expect_ids")));
        self.no_expect_ids = ids(log.and_then(|l| l.get("no_expect_ids")));
        // The older spelling.
        self.expect_ids.extend(ids(output.get("expect_ids")));
        self.no_expect_ids.extend(ids(output.get("no_expect_ids")));
        self.response_checks.clear();
        if let Some(s) = output.get("status") {
            self.response_checks.push(format!(
                "status {}",
                serde_yaml_ng::to_string(s).unwrap_or_default().trim()
            ));
        }
        if output.get("expect_error").and_then(Value::as_bool) == Some(true) {
            self.response_checks.push("expect_error".into());
        }
        let regexes = |name: &str, old: &str| -> Vec<String> {
            match log.and_then(|l| l.get(name)).or_else(|| output.get(old)) {
                Some(Value::Sequence(s)) => s.iter().filter_map(text).collect(),
                Some(v) => text(v).into_iter().collect(),
                None => Vec::new(),
            }
        };
        self.match_regex = regexes("match_regex", "log_contains");
        self.no_match_regex = regexes("no_match_regex", "no_log_contains");
    }
}

/// Where the node, not the engine, decides a test's outcome, in go-ftw's overrides format
/// (CRS ships one per platform: `tests/nginx-overrides.yaml`, ...). [`load_tests`] applies
/// it; an overridden test that is left with only HTTP-response checks is reported skipped
/// with the reason.
pub const NODE_OVERRIDES: &str = r#"
meta:
  engine: "edge-module-waf"
  platform: "edge node"
test_overrides:
  - rule_id: 920620
    test_ids: [1]
    reason: >-
      The node hands the WAF every header field as it came (as nginx does: CRS's nginx
      override expects 920620 too); httpd, which the test describes, joins the two
      Content-Type fields into one.
    output:
      log:
        expect_ids: [920620]
  - rule_id: 921140
    test_ids: [1]
    reason: >-
      A bare CR inside a header value: the node's HTTP/1 parser (httparse) and its
      HTTP/2 and HTTP/3 header validation refuse such a request before the WAF sees it,
      as httpd does with its 400 here.
    output:
      status: 400
"#;

/// Applies go-ftw platform overrides (`test_overrides`: `rule_id`, `test_ids`, optional
/// `stage_ids` counted from 0, `reason`, `output`): each chosen stage's expectations become
/// the override's `output`, as go-ftw replaces them.
pub fn apply_overrides(files: &mut [TestFile], yaml: &str) -> Result<(), String> {
    let doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
    let Some(list) = doc.get("test_overrides").and_then(Value::as_sequence) else {
        return Ok(());
    };
    let null = Value::Null;
    for o in list {
        let rule = o
            .get("rule_id")
            .and_then(as_u64)
            .ok_or("override without rule_id")?;
        let reason = o
            .get("reason")
            .and_then(text)
            .unwrap_or_default()
            .trim()
            .to_string();
        let stages: Vec<usize> = ids(o.get("stage_ids"))
            .into_iter()
            .map(|n| n as usize)
            .collect();
        let output = o.get("output").unwrap_or(&null);
        for test in ids(o.get("test_ids")) {
            let id = format!("{rule}-{test}");
            for case in files
                .iter_mut()
                .flat_map(|f| f.cases.iter_mut())
                .filter(|c| c.id == id)
            {
                for (n, stage) in case.stages.iter_mut().enumerate() {
                    if stages.is_empty() || stages.contains(&n) {
                        stage.set_output(output);
                    }
                }
                case.overridden = Some(reason.clone());
            }
        }
    }
    Ok(())
}

fn encoded_request(input: &Value) -> Option<Vec<u8>> {
    let encoded = input.get("encoded_request").and_then(Value::as_str)?;
    let cleaned: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .ok()
}

/// The request a stage sends, with go-ftw's header completion.
pub fn request_of(input: &Value) -> Result<Request, String> {
    if input.get("encoded_request").is_some() {
        let raw = encoded_request(input).ok_or("encoded_request is not base64")?;
        return parse_raw(&raw);
    }
    let method = input
        .get("method")
        .and_then(text)
        .unwrap_or_else(|| "GET".into());
    let uri = input
        .get("uri")
        .and_then(text)
        .unwrap_or_else(|| "/".into());
    let protocol = match input.get("version").and_then(text) {
        None => "HTTP/1.1".to_string(),
        // A request line without a version is HTTP/0.9: httpd and nginx hand ModSecurity
        // REQUEST_PROTOCOL `HTTP/0.9` for it, as `parse_raw` does.
        Some(v) if v.trim().is_empty() => "HTTP/0.9".to_string(),
        Some(v) => v,
    };
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(Value::Mapping(m)) = input.get("headers") {
        for (k, v) in m {
            if let (Some(k), Some(v)) = (text(k), text(v)) {
                headers.push((k, v.into_bytes()));
            }
        }
    }
    let mut body = input
        .get("data")
        .and_then(text)
        .unwrap_or_default()
        .into_bytes();
    let autocomplete = input
        .get("autocomplete_headers")
        .and_then(Value::as_bool)
        .or_else(|| {
            input
                .get("stop_magic")
                .and_then(Value::as_bool)
                .map(|stop| !stop)
        })
        .unwrap_or(true);
    let has = |h: &[(String, Vec<u8>)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    // What go-ftw does before it sends a request (its BuildRequest), in its order.
    if autocomplete && !body.is_empty() {
        // Whatever the method: a GET with a body gets a form content type too.
        if !has(&headers, "content-type") {
            headers.push((
                "Content-Type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ));
        }
        let form = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type")
                && v.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        });
        if form {
            body = encode_form(body);
        }
    }
    let multipart = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type")
            && memchr::memmem::find(&v.to_ascii_lowercase(), b"multipart/form-data;").is_some()
    });
    if multipart {
        // go-ftw ends every line with CRLF (a CRLF already there becomes CR CR LF).
        body = body
            .split(|&b| b == b'\n')
            .collect::<Vec<_>>()
            .join(&b"\r\n"[..]);
    }
    if autocomplete {
        if !has(&headers, "connection") {
            headers.push(("Connection".into(), b"close".to_vec()));
        }
        if !has(&headers, "content-length") && (!body.is_empty() || method_has_body(&method)) {
            headers.push(("Content-Length".into(), body.len().to_string().into_bytes()));
        }
    }
    Ok(test_request(method, uri, protocol, headers, body))
}

/// go-ftw's `^POST|PUT|PATCH|DELETE$` (its alternation binds the anchors to the first and
/// last method only).
fn method_has_body(method: &str) -> bool {
    method.starts_with("POST")
        || method.contains("PUT")
        || method.contains("PATCH")
        || method.ends_with("DELETE")
}

/// go-ftw encodes form data that is not encoded yet (no `%` and no `+`: Go's
/// `QueryUnescape` leaves it as it is): each name and value of the `&`-separated pairs is
/// query-escaped, so `var=1' or 1=1` goes out as `var=1%27+or+1%3D1`.
fn encode_form(data: Vec<u8>) -> Vec<u8> {
    if data.contains(&b'%') || data.contains(&b'+') {
        return data;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 2);
    let mut remaining = &data[..];
    while !remaining.is_empty() {
        let token = match memchr::memchr(b'&', remaining) {
            Some(at) => {
                let t = &remaining[..at];
                remaining = &remaining[at + 1..];
                t
            }
            None => std::mem::take(&mut remaining),
        };
        match memchr::memchr(b'=', token) {
            Some(eq) => {
                query_escape(&token[..eq], &mut out);
                out.push(b'=');
                query_escape(&token[eq + 1..], &mut out);
            }
            None => query_escape(token, &mut out),
        }
        out.push(b'&');
    }
    out.pop();
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(input: &[u8], out: &mut Vec<u8>) {
    for &b in input {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
}

/// A raw HTTP/1.x request (`encoded_request`), read leniently: tests send broken ones on
/// purpose.
pub fn parse_raw(raw: &[u8]) -> Result<Request, String> {
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n")
        .map(|p| (p, p + 4))
        .or_else(|| memchr::memmem::find(raw, b"\n\n").map(|p| (p, p + 2)))
        .unwrap_or((raw.len(), raw.len()));
    let head = String::from_utf8_lossy(&raw[..head_end.0]);
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let request_line = lines.next().ok_or("empty request")?;
    let mut parts = request_line.splitn(3, ' ');
    let method = parts.next().unwrap_or_default().to_string();
    let uri = parts
        .next()
        .ok_or("request line without a target")?
        .to_string();
    let protocol = parts.next().unwrap_or("HTTP/0.9").to_string();
    let mut headers = Vec::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().as_bytes().to_vec()));
        }
    }
    let mut body = raw[head_end.1..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case(b"chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Ok(test_request(method, uri, protocol, headers, body))
}

/// A test's request as go-ftw sends it: from 127.0.0.1.
fn test_request(
    method: String,
    uri: String,
    protocol: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
) -> Request {
    Request {
        method,
        uri,
        protocol,
        headers,
        body,
        body_length: None,
        remote_addr: "127.0.0.1".into(),
        remote_port: 40000,
        unique_id: "ftw".into(),
        verified_args: Vec::new(),
    }
}

fn dechunk(mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = memchr::memchr(b'\n', input) {
        let size_text = String::from_utf8_lossy(&input[..eol]);
        let size_text = size_text
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            break;
        };
        input = &input[eol + 1..];
        if size == 0 || size > input.len() {
            break;
        }
        out.extend_from_slice(&input[..size]);
        input = &input[size..];
        input = input
            .strip_prefix(b"\r\n")
            .or_else(|| input.strip_prefix(b"\n"))
            .unwrap_or(input);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CaseResult {
    pub id: String,
    pub file: String,
    pub result: Outcome,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Totals {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Totals {
    fn add(&mut self, o: Outcome) {
        self.total += 1;
        match o {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Skipped => self.skipped += 1,
        }
    }

    /// Passed over judged (skipped tests are not judged).
    pub fn pass_rate(&self) -> f64 {
        let judged = self.passed + self.failed;
        if judged == 0 {
            return 100.0;
        }
        self.passed as f64 * 100.0 / judged as f64
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub totals: Totals,
    pub files: BTreeMap<String, Totals>,
    pub tests: Vec<CaseResult>,
}

/// Runs every case; `only` keeps the cases whose id starts with it.
pub fn run(rules: &RuleSet, files: &[TestFile], only: Option<&str>) -> Report {
    let mut report = Report {
        totals: Totals::default(),
        files: BTreeMap::new(),
        tests: Vec::new(),
    };
    for file in files {
        for case in &file.cases {
            if only.is_some_and(|o| !case.id.starts_with(o)) {
                continue;
            }
            let (result, reason) = judge(rules, &file.rule_file, case);
            report.totals.add(result);
            report
                .files
                .entry(file.rule_file.clone())
                .or_default()
                .add(result);
            report.tests.push(CaseResult {
                id: case.id.clone(),
                file: file.rule_file.clone(),
                result,
                reason,
            });
        }
    }
    report
}

fn judge(rules: &RuleSet, rule_file: &str, case: &Case) -> (Outcome, String) {
    if !rule_file.starts_with("REQUEST-") {
        return (
            Outcome::Skipped,
            "response-side rule file: the WAF inspects requests".into(),
        );
    }
    let mut reasons = Vec::new();
    let mut judged = false;
    for (n, stage) in case.stages.iter().enumerate() {
        if stage.expect_ids.is_empty()
            && stage.no_expect_ids.is_empty()
            && stage.match_regex.is_empty()
            && stage.no_match_regex.is_empty()
        {
            continue;
        }
        let request = match &stage.request {
            Ok(r) => r,
            Err(e) => {
                return (
                    Outcome::Skipped,
                    format!("stage {}: request cannot be built: {e}", n + 1),
                )
            }
        };
        judged = true;
        let verdict = evaluate(rules, request);
        let logged: Vec<u32> = verdict.logged_ids().collect();
        let missing: Vec<u32> = stage
            .expect_ids
            .iter()
            .copied()
            .filter(|id| !logged.contains(id))
            .collect();
        let unexpected: Vec<u32> = stage
            .no_expect_ids
            .iter()
            .copied()
            .filter(|id| logged.contains(id))
            .collect();
        if !missing.is_empty() {
            reasons.push(format!("expected {missing:?} to log"));
        }
        if !unexpected.is_empty() {
            reasons.push(format!("{unexpected:?} logged but must not"));
        }
        if !stage.match_regex.is_empty() || !stage.no_match_regex.is_empty() {
            let log = error_log(&verdict);
            for (pattern, want) in stage
                .match_regex
                .iter()
                .map(|p| (p, true))
                .chain(stage.no_match_regex.iter().map(|p| (p, false)))
            {
                match regex::Regex::new(pattern) {
                    Ok(re) if re.is_match(&log) != want => reasons.push(format!(
                        "log {} /{pattern}/",
                        if want { "does not match" } else { "matches" }
                    )),
                    Ok(_) => {}
                    Err(e) => return (Outcome::Skipped, format!("log regex /{pattern}/: {e}")),
                }
            }
        }
    }
    if !judged {
        let checks: Vec<&str> = case
            .stages
            .iter()
            .flat_map(|s| s.response_checks.iter().map(String::as_str))
            .collect();
        let why = match &case.overridden {
            Some(reason) => format!(" ({reason})"),
            None => String::new(),
        };
        return (
            Outcome::Skipped,
            format!(
                "checks only the HTTP response ({}): needs the node{why}",
                checks.join(", ")
            ),
        );
    }
    if reasons.is_empty() {
        (Outcome::Passed, String::new())
    } else {
        (Outcome::Failed, reasons.join("; "))
    }
}

/// The matches as ModSecurity's error log shows them, one line per logged rule.
fn error_log(verdict: &crate::Verdict) -> String {
    let mut out = String::new();
    for m in verdict.matches.iter().filter(|m| m.logged) {
        out.push_str(&format!(
            "[id \"{}\"] [msg \"{}\"] [data \"{}\"]",
            m.id,
            log_escape(&m.msg, false),
            log_escape(&m.data, true)
        ));
        if let Some(s) = m.severity {
            out.push_str(&format!(" [severity \"{s}\"]"));
        }
        for t in m.tags.iter() {
            out.push_str(&format!(" [tag \"{}\"]", log_escape(t, true)));
        }
        out.push('\n');
    }
    out
}

/// ModSecurity writes bytes outside printable ASCII as `\xHH` (and, inside a quoted field,
/// `"` and `\` too), so a log line stays one line: CRS tests match `Matched Data:.*MAIL`
/// across a `\r\n` in the data with a `.` that does not match a newline.
fn log_escape(text: &str, quoted_field: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if !(32..=126).contains(&b) || (quoted_field && (b == b'"' || b == b'\\')) {
            out.push_str(&format!("\\x{b:02x}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

impl Report {
    /// The per-rule-file table `edge waf test` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<44} {:>6} {:>7} {:>7} {:>8} {:>10}\n",
            "rule file", "tests", "passed", "failed", "skipped", "pass rate"
        );
        let row = |out: &mut String, name: &str, t: &Totals| {
            out.push_str(&format!(
                "{:<44} {:>6} {:>7} {:>7} {:>8} {:>9.1}%\n",
                name,
                t.total,
                t.passed,
                t.failed,
                t.skipped,
                t.pass_rate()
            ));
        };
        for (name, t) in &self.files {
            row(&mut out, name, t);
        }
        row(&mut out, "total", &self.totals);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_read_with_header_completion() {
        let cases = parse_file(
            "rule_id: 942100\ntests:\n  - test_id: 2\n    stages:\n      - input:\n          method: POST\n          uri: /post\n          headers:\n            Host: localhost\n          data: \"var=1' or '1'='1\"\n        output:\n          log:\n            expect_ids: [942100]\n            no_expect_ids: [1]\n",
        )
        .unwrap();
        assert_eq!(cases[0].id, "942100-2");
        let s = &cases[0].stages[0];
        assert_eq!(s.expect_ids, vec![942100]);
        assert_eq!(s.no_expect_ids, vec![1]);
        let r = s.request.as_ref().unwrap();
        assert_eq!(
            r.header("content-type"),
            Some(&b"application/x-www-form-urlencoded"[..])
        );
        // go-ftw query-escapes form data that is not escaped yet.
        assert_eq!(r.body, b"var=1%27+or+%271%27%3D%271");
        assert_eq!(r.header("content-length"), Some(&b"26"[..]));
    }

    fn input(yaml: &str) -> Request {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        request_of(&v).unwrap()
    }

    #[test]
    fn requests_are_built_as_go_ftw_sends_them() {
        // A GET with data gets a form content type; escaped data is left alone.
        let r = input("method: GET\ndata: \"a=%41&b=1\"\n");
        assert_eq!(
            r.header("content-type"),
            Some(&b"application/x-www-form-urlencoded"[..])
        );
        assert_eq!(r.body, b"a=%41&b=1");
        // A POST without data still says how long its (empty) body is.
        let r = input("method: POST\n");
        assert_eq!(r.header("content-length"), Some(&b"0"[..]));
        assert_eq!(input("method: GET\n").header("content-length"), None);
        // Multipart lines end with CRLF, whatever they ended with.
        let r = input("method: POST\nheaders:\n  Content-Type: multipart/form-data; boundary=b\ndata: \"--b\\nx\\r\\n\"\n");
        assert_eq!(r.body, b"--b\r\nx\r\r\n");
        // No version on the request line: HTTP/0.9, as servers report it.
        assert_eq!(input("version: \"\"\n").protocol, "HTTP/0.9");
        let r = input("method: POST\nautocomplete_headers: false\ndata: \"a b\"\n");
        assert_eq!((r.body.as_slice(), r.headers.len()), (&b"a b"[..], 0));
        assert_eq!(encode_form(b"a&=b c&d=\xe2&".to_vec()), b"a&=b+c&d=%E2");
    }

    #[test]
    fn overrides_replace_what_a_test_expects() {
        let mut files = vec![TestFile {
            rule_file: "REQUEST-920".into(),
            cases: parse_file("rule_id: 920620\ntests:\n  - test_id: 1\n    stages:\n      - input: {}\n        output:\n          log:\n            no_expect_ids: [920620]\n").unwrap(),
        }];
        apply_overrides(
            &mut files,
            "test_overrides:\n  - rule_id: 920620\n    test_ids: [1]\n    reason: why\n    output:\n      log:\n        expect_ids: [920620]\n",
        )
        .unwrap();
        let case = &files[0].cases[0];
        assert_eq!(case.stages[0].expect_ids, vec![920620]);
        assert!(case.stages[0].no_expect_ids.is_empty());
        assert_eq!(case.overridden.as_deref(), Some("why"));
        let mut none = Vec::new();
        apply_overrides(&mut none, NODE_OVERRIDES).unwrap();
    }

    #[test]
    fn a_body_the_processor_refuses_is_logged_as_modsecurity_config_logs_it() {
        let set = load_for_tests(&[], 4).unwrap();
        let r =
            parse_raw(b"POST / HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"a\":").unwrap();
        let log = error_log(&evaluate(&set, &r));
        assert!(log.contains("[id \"200002\"]"), "{log}");
        assert!(log.contains("JSON parsing error"), "{log}");
    }

    #[test]
    fn log_lines_escape_control_bytes_as_modsecurity_does() {
        assert_eq!(log_escape("a\r\nb\"\\", true), "a\\x0d\\x0ab\\x22\\x5c");
        assert_eq!(log_escape("\"é\"", false), "\"\\xc3\\xa9\"");
    }

    #[test]
    fn raw_requests_parse_with_chunked_bodies() {
        let r = parse_raw(b"POST /x?a=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nHi \r\n3\r\nCRS\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri, "/x?a=1");
        assert_eq!(r.body, b"Hi CRS");
        assert!(parse_raw(b"").is_err());
    }
}
