//! One request through a rule set: phase 1 (request line and headers), the body
//! processor, phase 2 (body), with ModSecurity's semantics for chains, `skipAfter`,
//! `setvar`, `ctl`, captures, and the engine mode.

use crate::action::{self, Ctl, Disruptive, EngineMode, Flow, IdRange, SetVar};
use crate::body::{self, FilePart, MultipartFlags, Pair};
use crate::fold::Fold;
use crate::macros::{MacroVar, Resolve, Template};
use crate::memo::CleanValues;
use crate::operator::number;
use crate::prefilter::{Slot, Source};
use crate::request::Request;
use crate::ruleset::{in_ranges, BodyLimitAction, Item, Link, Rule, RuleSet};
use crate::seclang::RawTarget;
use crate::variable::{Collection, Exclusion, Selector, Target, Targets};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// Matched data in the log is cut to this many bytes.
const MATCHED_DATA_MAX: usize = 128;

/// One rule that matched.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Match {
    pub id: u32,
    pub phase: u8,
    pub msg: String,
    pub data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'static str>,
    pub tags: Arc<[String]>,
    /// `MATCHED_VAR_NAME` of the last link: where the match was found.
    pub variable: String,
    /// The rule logs (`log`, or no `nolog`): what ModSecurity's error log would show.
    #[serde(skip)]
    pub logged: bool,
    /// The match goes to the audit line (`auditlog`, or `log` without `noauditlog`;
    /// `nolog` alone turns both off, `nolog,auditlog` keeps this one).
    #[serde(skip)]
    pub audited: bool,
}

/// The request is (or in detection-only mode, would be) stopped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Interruption {
    /// 0 when the WAF itself stopped it (a body over the limit).
    pub rule_id: u32,
    pub status: u16,
    /// `deny`, `drop`, `redirect`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Verdict {
    pub mode: &'static str,
    /// Set when the request must be stopped (blocking mode only).
    pub interruption: Option<Interruption>,
    /// In detection-only mode: what blocking mode would have done.
    pub would_interrupt: Option<Interruption>,
    pub matches: Vec<Match>,
    /// CRS's inbound anomaly score (`tx.blocking_inbound_anomaly_score`).
    pub anomaly_score: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_error: Option<String>,
}

impl Verdict {
    /// Ids of the rules that logged, as a log-based test runner sees them.
    pub fn logged_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.matches.iter().filter(|m| m.logged).map(|m| m.id)
    }
}

/// Evaluates the request-side phases (1 and 2) of `rules` on `request`.
pub fn evaluate(rules: &RuleSet, request: &Request) -> Verdict {
    let mut tx = Transaction::new(rules, request, None);
    tx.run();
    tx.verdict()
}

/// [`evaluate`], skipping the links `memo` knows a value to be clean for, and teaching it
/// the values this request finds clean. The verdict is the same as [`evaluate`]'s.
pub fn evaluate_remembering(rules: &RuleSet, request: &Request, memo: &mut CleanValues) -> Verdict {
    if !memo.fits(rules) {
        *memo = CleanValues::new(rules, memo.capacity());
    }
    memo.begin_request();
    let mut tx = Transaction::new(rules, request, Some(memo));
    tx.run();
    tx.verdict()
}

/// The TX variables the verdict's anomaly score is read from, the first set: CRS v4's,
/// then CRS v3's.
pub(crate) const SCORE_VARIABLES: [&str; 2] = ["blocking_inbound_anomaly_score", "anomaly_score"];

/// The names of TX:0..9, which a capturing operator fills (at most ten groups).
const CAPTURE_KEYS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// What the request offers, derived once.
struct Data<'r> {
    req: &'r Request,
    uri: Vec<u8>,
    filename: Vec<u8>,
    basename_at: usize,
    query: &'r [u8],
    request_line: Vec<u8>,
    server_name: Vec<u8>,
    /// The query's arguments without those the node's token auth verified (a signature is
    /// random-looking base64 that trips injection heuristics; a forged one never gets
    /// here).
    args_get_inspected: Vec<Pair>,
    /// How many arguments the query has, and their names' and values' bytes, verified ones
    /// included (the argument limit and ARGS_COMBINED_SIZE count them).
    args_get_count: usize,
    args_get_bytes: usize,
    args_post: Vec<Pair>,
    cookies: Vec<Pair>,
    files: Vec<FilePart>,
    /// (part name, header line): MULTIPART_PART_HEADERS is keyed by part name.
    part_headers: Vec<Pair>,
    multipart: Option<MultipartFlags>,
    processor: Option<String>,
    body_error: Option<String>,
    /// `REQUEST_BODY`: set for URL-encoded bodies and when forced.
    request_body: Option<&'r [u8]>,
    body: &'r [u8],
    xml: Option<Xml>,
}

/// What XPath-style `XML:` targets read: `XML:/*` the document's text, `XML://@*` every
/// attribute value.
struct Xml {
    text: Vec<u8>,
    attributes: Vec<Pair>,
}

/// What the rules change as they run.
struct State<'r> {
    mode: EngineMode,
    /// Names and values borrowed from the rule set until a request writes them.
    tx: Vars<'r>,
    /// MATCHED_VAR when the current rule has matched nothing yet (see `matched_var()`);
    /// borrowed when a rule whose outcome is known at load set it.
    matched_var: Option<Cow<'r, (String, Vec<u8>)>>,
    matched_vars: Vec<(String, Vec<u8>)>,
    removed_ids: Vec<IdRange>,
    removed_tags: Vec<String>,
    removed_targets: Vec<(Scope, Exclusion)>,
    force_body_variable: bool,
    body_access: bool,
    forced_processor: Option<String>,
    matches: Vec<Match>,
    interruption: Option<Interruption>,
    would_interrupt: Option<Interruption>,
    /// `allow`: no more rules for this request.
    allowed: bool,
}

impl State<'_> {
    /// MATCHED_VAR: the last value matched, by this rule or, when it has matched none yet,
    /// an earlier one. (Kept as the last of MATCHED_VARS, not copied per match.)
    fn matched_var(&self) -> Option<&(String, Vec<u8>)> {
        self.matched_vars.last().or(self.matched_var.as_deref())
    }

    /// A rule starts: the last value the previous one matched stays MATCHED_VAR until
    /// another rule matches one.
    fn next_rule(&mut self) {
        if let Some(last) = self.matched_vars.pop() {
            self.matched_var = Some(Cow::Owned(last));
        }
        self.matched_vars.clear();
    }
}

enum Scope {
    Ids(Vec<IdRange>),
    Tag(String),
}

struct Transaction<'r> {
    rules: &'r RuleSet,
    data: Data<'r>,
    state: State<'r>,
    /// Transformed values by (address, length, transformation list); `None`: unchanged.
    /// Emptied when the body processor replaces the request's data.
    transform_cache: RefCell<TransformCache>,
    /// Per prefilter group, which of its links may match in this phase (computed when a
    /// phase first reaches one of them).
    prefilter_hits: RefCell<PrefilterHits>,
    /// Values known clean for pure links, across requests.
    memo: RefCell<Option<&'r mut CleanValues>>,
    /// Per value set of the rule set (computed when a phase first asks): the links clean
    /// for every one of its values, the memo's bits of those values ANDed.
    clean_sets: RefCell<CleanSets>,
}

#[derive(Default)]
struct CleanSets {
    /// The sets computed in this phase, one bit each.
    computed: Vec<u64>,
    /// `stride` words per set.
    bits: Vec<u64>,
}

/// What the prefilter groups' scans of the request found so far, in one allocation.
struct PrefilterHits {
    /// Per group, the sources scanned (a bit set of `Source`).
    scanned: Vec<u32>,
    /// Per group (from `Group::word_offset`), the slots whose factors occur in some value
    /// of those sources.
    slots: Vec<u64>,
}

/// (address, length, transformation list) → the transformed value, `None` when unchanged.
type TransformCache = FastMap<(usize, usize, u32), Option<Rc<[u8]>>>;

/// A value after its transformations.
enum Transformed<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
}

impl Transformed<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Transformed::Borrowed(b) => b,
            Transformed::Owned(o) => o,
            Transformed::Shared(s) => s,
        }
    }
}

/// A value the operator matched: its name (`ARGS:a`), the value as the operator saw it, and
/// with `capture`, what it captured (`TX:0`..`TX:9`).
struct Hit {
    name: String,
    value: Vec<u8>,
    captures: Option<Vec<Vec<u8>>>,
}

/// A value a variable yields: where from (for `MATCHED_VAR_NAME`) and the bytes.
struct Value<'a> {
    collection: Collection,
    key: Cow<'a, [u8]>,
    value: Cow<'a, [u8]>,
    /// `&COLLECTION`: the name is written with the `&`.
    count: bool,
}

impl Value<'_> {
    /// Only values borrowed from the request stay put; TX and MATCHED_VAR change as rules
    /// run.
    fn is_volatile(&self) -> bool {
        self.count
            || matches!(
                self.collection,
                Collection::Tx
                    | Collection::MatchedVar
                    | Collection::MatchedVars
                    | Collection::MatchedVarName
                    | Collection::MatchedVarsNames
            )
    }

    fn name(&self) -> String {
        // A value found again through MATCHED_VARS keeps the name it was found under.
        if matches!(
            self.collection,
            Collection::MatchedVars | Collection::MatchedVarsNames
        ) && !self.count
        {
            return lossy(&self.key).into_owned();
        }
        // Pushed piece by piece: `format!` was a tenth of a benign request's evaluation.
        let collection = self.collection.name();
        let key = lossy(&self.key);
        let mut name = String::with_capacity(2 + collection.len() + key.len());
        if self.count {
            name.push('&');
        }
        name.push_str(collection);
        if !key.is_empty() {
            name.push(':');
            name.push_str(&key);
        }
        name
    }
}

/// `String::from_utf8_lossy`, after the validation with an ASCII fast path: names are
/// almost always valid, and the lossy decoder checks byte by byte.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

impl<'r> Transaction<'r> {
    fn new(rules: &'r RuleSet, req: &'r Request, memo: Option<&'r mut CleanValues>) -> Self {
        let raw_uri = req.uri.as_bytes();
        // Absolute-form (`http://host/p`): REQUEST_URI drops scheme and host.
        let uri: Vec<u8> = match req.uri.find("://") {
            Some(at) if req.uri[..at].bytes().all(|b| b.is_ascii_alphabetic()) => {
                let rest = &req.uri[at + 3..];
                match rest.find('/') {
                    Some(slash) => rest.as_bytes()[slash..].to_vec(),
                    None => b"/".to_vec(),
                }
            }
            _ => raw_uri.to_vec(),
        };
        let (path, query) = match memchr::memchr(b'?', &uri) {
            Some(q) => (&uri[..q], &raw_uri[raw_uri.len() - (uri.len() - q - 1)..]),
            None => (&uri[..], &b""[..]),
        };
        let filename = percent_decode(path);
        let basename_at = filename
            .iter()
            .rposition(|&b| b == b'/')
            .map(|p| p + 1)
            .unwrap_or(0);
        let mut request_line =
            Vec::with_capacity(req.method.len() + raw_uri.len() + req.protocol.len() + 2);
        request_line.extend_from_slice(req.method.as_bytes());
        request_line.push(b' ');
        request_line.extend_from_slice(raw_uri);
        request_line.push(b' ');
        request_line.extend_from_slice(req.protocol.as_bytes());
        let host = req.header("host").unwrap_or_default();
        let server_name = match host.iter().rposition(|&b| b == b':') {
            Some(colon) if !host.ends_with(b"]") => host[..colon].to_vec(),
            _ => host.to_vec(),
        };
        let mut cookies = Vec::new();
        for (name, value) in &req.headers {
            if name.eq_ignore_ascii_case("cookie") {
                cookies.extend(body::parse_cookies(value));
            }
        }
        let content_type = req.header("content-type").unwrap_or_default();
        let processor = processor_for(content_type);
        let mut args_get = body::parse_urlencoded(query);
        let args_get_count = args_get.len();
        let args_get_bytes = pair_bytes(&args_get);
        args_get.retain(|(k, _)| {
            !req.verified_args
                .iter()
                .any(|a| a.as_bytes() == k.as_slice())
        });
        let data = Data {
            req,
            args_get_inspected: args_get,
            args_get_count,
            args_get_bytes,
            uri,
            filename,
            basename_at,
            query,
            request_line,
            server_name,
            args_post: Vec::new(),
            cookies,
            files: Vec::new(),
            part_headers: Vec::new(),
            multipart: None,
            processor: processor.map(str::to_string),
            body_error: None,
            request_body: None,
            body: &req.body,
            xml: None,
        };
        Transaction {
            rules,
            data,
            state: State {
                mode: rules.engine,
                // A route that is off evaluates nothing: nothing folded ran either (its
                // verdict's score reads TX).
                tx: if rules.engine == EngineMode::Off {
                    Vars::default()
                } else {
                    start_vars(rules)
                },
                matched_var: None,
                matched_vars: Vec::new(),
                removed_ids: Vec::new(),
                removed_tags: Vec::new(),
                removed_targets: Vec::new(),
                force_body_variable: false,
                body_access: rules.body.access,
                forced_processor: None,
                matches: Vec::new(),
                interruption: None,
                would_interrupt: None,
                allowed: false,
            },
            // A benign request fills a few hundred entries: no growth on the way. With the
            // memo most values are known clean and few are transformed.
            transform_cache: RefCell::new(FastMap::with_capacity_and_hasher(
                if memo.is_some() { 32 } else { 512 },
                Default::default(),
            )),
            prefilter_hits: RefCell::new(PrefilterHits {
                scanned: vec![0; rules.prefilters.groups.len()],
                slots: vec![0; rules.prefilters.words],
            }),
            memo: RefCell::new(memo),
            clean_sets: Default::default(),
        }
    }

    fn run(&mut self) {
        if self.state.mode == EngineMode::Off {
            return;
        }
        self.phase(1);
        if self.state.interruption.is_some() || self.state.allowed {
            return;
        }
        self.process_body();
        if self.state.interruption.is_some() {
            return;
        }
        self.phase(2);
    }

    fn verdict(self) -> Verdict {
        let score = |k: &str| self.state.tx.get(k).map(|v| number(v));
        Verdict {
            mode: match self.state.mode {
                EngineMode::On => "blocking",
                EngineMode::DetectionOnly => "detection-only",
                EngineMode::Off => "off",
            },
            interruption: self.state.interruption,
            would_interrupt: self.state.would_interrupt,
            matches: self.state.matches,
            anomaly_score: SCORE_VARIABLES.iter().find_map(|k| score(k)).unwrap_or(0),
            body_error: self.data.body_error,
        }
    }

    /// The body processor, between phases 1 and 2 (so phase-1 `ctl`s apply to it).
    fn process_body(&mut self) {
        // The body processor replaces argument lists: cached addresses may be reused.
        self.transform_cache.get_mut().clear();
        if let Some(memo) = self.memo.get_mut() {
            memo.forget_addresses();
        }
        if let Some(p) = self.state.forced_processor.take() {
            self.data.processor = Some(p);
        }
        if !self.state.body_access {
            return;
        }
        let config = &self.rules.body;
        let req = self.data.req;
        let mut body: &'r [u8] = &req.body;
        if req.body_length() > config.limit {
            match config.limit_action {
                BodyLimitAction::Reject => {
                    self.data.body_error = Some(format!(
                        "request body is larger than the limit of {} bytes",
                        config.limit
                    ));
                    self.interrupt(Interruption {
                        rule_id: 0,
                        status: 413,
                        action: "deny",
                        location: None,
                    });
                    return;
                }
                BodyLimitAction::ProcessPartial => body = &body[..body.len().min(config.limit)],
            }
        }
        self.data.body = body;
        if body.is_empty() {
            return;
        }
        match self.data.processor.as_deref() {
            Some("URLENCODED") => {
                self.data.args_post = body::parse_urlencoded(body);
                self.data.request_body = Some(body);
            }
            Some("JSON") => {
                // What parsed before an error is still inspected.
                let (args, error) = body::parse_json_partial(body, config.json_depth);
                self.data.args_post = args;
                if let Some(e) = error {
                    self.data.body_error = Some(format!("JSON parsing error: {e}"));
                }
            }
            Some("MULTIPART") => {
                let content_type = req.header("content-type").unwrap_or_default();
                let m = body::parse_multipart(content_type, body);
                self.data.args_post = m.args;
                self.data.files = m.files;
                self.data.part_headers = m
                    .part_header_names
                    .into_iter()
                    .zip(m.part_headers)
                    .collect();
                self.data.multipart = Some(m.flags);
                if let Some(e) = m.error {
                    self.data.body_error = Some(format!("Multipart parsing error: {e}"));
                }
            }
            Some("XML") => match parse_xml(body) {
                Ok(xml) => self.data.xml = Some(xml),
                Err(e) => self.data.body_error = Some(format!("XML parsing error: {e}")),
            },
            _ => {}
        }
        if self.state.force_body_variable && self.data.request_body.is_none() {
            self.data.request_body = Some(body);
        }
        let limit = config.arguments_limit;
        if self.data.args_get_count + self.data.args_post.len() > limit {
            self.data
                .body_error
                .get_or_insert_with(|| format!("more than {limit} arguments"));
        }
    }

    fn phase(&mut self, phase: u8) {
        let rules: &'r RuleSet = self.rules;
        let items = &rules.phases[phase as usize - 1];
        // The body processor ran between the phases: the request's values are new.
        let hits = self.prefilter_hits.get_mut();
        hits.scanned.fill(0);
        hits.slots.fill(0);
        self.clean_sets.get_mut().computed.fill(0);
        let mut i = 0;
        while i < items.len() {
            if self.state.allowed || self.state.interruption.is_some() {
                return;
            }
            let Item::Rule(rule) = &items[i] else {
                i += 1;
                continue;
            };
            i += 1;
            if self.removed(rule) {
                continue;
            }
            let matched = match &rule.fold {
                Some(fold) => self.folded(fold),
                None => self.rule_matches(rule),
            };
            if !matched {
                continue;
            }
            match self.fire(rule) {
                Some(Flow::Skip(n)) => {
                    let mut left = *n;
                    while left > 0 && i < items.len() {
                        if matches!(items[i], Item::Rule(_)) {
                            left -= 1;
                        }
                        i += 1;
                    }
                }
                Some(Flow::SkipAfter(_)) => {
                    // `i` is already past the rule; its jump was resolved at load.
                    i = self.rules.skip_after[phase as usize - 1]
                        .get(i - 1)
                        .copied()
                        .unwrap_or(items.len());
                }
                None => {}
            }
            if self.state.allowed && matches!(rule.disruptive, Disruptive::AllowPhase) {
                // `allow:phase` ends this phase only.
                self.state.allowed = false;
                return;
            }
        }
    }

    fn removed(&self, rule: &Rule) -> bool {
        in_ranges(&self.state.removed_ids, rule.id)
            || self.state.removed_tags.iter().any(|t| rule.has_tag(t))
    }

    /// A rule whose outcome is known at load: whether it matches, with what it leaves.
    fn folded(&mut self, fold: &'r Fold) -> bool {
        self.state.next_rule();
        // A folded rule only sets TX and steers: nothing reads MATCHED_VARS before the next
        // rule starts, which would move this value to MATCHED_VAR.
        if let Some(m) = &fold.leaves {
            self.state.matched_var = Some(Cow::Borrowed(m));
        }
        fold.matches
    }

    fn rule_matches(&mut self, rule: &'r Rule) -> bool {
        self.state.next_rule();
        for link in &rule.links {
            if !self.link_matches(rule, link) {
                return false;
            }
            // A link's ctl runs when that link matches, before the next link is evaluated.
            for ctl in &link.ctls {
                self.ctl(ctl);
            }
        }
        true
    }

    fn link_matches(&mut self, rule: &Rule, link: &'r Link) -> bool {
        let Some(targets) = &link.targets else {
            for setvar in &link.setvars {
                self.setvar(rule, setvar);
            }
            return true;
        };
        if let Some(n) = link.memo {
            if !link.memo_sets.is_empty() && self.clean_for_sets(rule, targets, &link.memo_sets, n)
            {
                // Every value the link can read is known not to match it: evaluating it
                // would find no match and have no effect.
                return false;
            }
        }
        let mut captures = Vec::new();
        // The operator reads the values as they are before any of this link's setvars
        // run, as ModSecurity collects a variable's values before it runs the operator.
        let mut hits: Vec<Hit> = Vec::new();
        {
            let this = &*self;
            let ctx = Ctx { tx: this, rule };
            // Asked once, when a value is first left to evaluate.
            let mut may_match: Option<bool> = None;
            for target in &targets.include {
                this.each_value(rule, target, targets, &mut |v| {
                    let known = link.memo.and_then(|n| Some((this.memo_entry(&v)?, n)));
                    if let Some((entry, n)) = known {
                        if this.with_memo(|m| m.is_clean(entry, n)) == Some(true) {
                            return;
                        }
                    }
                    if let Some(slot) = link.prefilter {
                        // None of the link's factors is in any request value: no value can
                        // match, which is what evaluating it would find, without its side
                        // effects.
                        if !*may_match.get_or_insert_with(|| this.may_match(slot)) {
                            if let Some((entry, n)) = known {
                                this.with_memo(|m| m.set_clean(entry, n));
                            }
                            return;
                        }
                    }
                    let mut hit = None;
                    if link.multi_match {
                        let mut current: Cow<[u8]> = Cow::Borrowed(v.value.as_ref());
                        if op_matches(link, &current, &ctx, &mut captures) {
                            hit = Some(current.to_vec());
                        }
                        for t in &link.transforms {
                            if hit.is_some() {
                                break;
                            }
                            current = Cow::Owned(t.apply(&current).into_owned());
                            if op_matches(link, &current, &ctx, &mut captures) {
                                hit = Some(current.to_vec());
                            }
                        }
                    } else {
                        let transformed = this.transformed(link, &v);
                        if op_matches(link, transformed.bytes(), &ctx, &mut captures) {
                            hit = Some(transformed.bytes().to_vec());
                        }
                    }
                    match hit {
                        Some(value) => {
                            let captures = (link.capture && !link.negated)
                                .then(|| std::mem::take(&mut captures));
                            hits.push(Hit {
                                name: v.name(),
                                value,
                                captures,
                            });
                        }
                        None => {
                            if let Some((entry, n)) = known {
                                this.with_memo(|m| m.set_clean(entry, n));
                            }
                        }
                    }
                });
            }
        }
        let matched = !hits.is_empty();
        // Each match sets TX:0..9, MATCHED_VAR and MATCHED_VARS, then runs the link's
        // setvars, as ModSecurity v3 and Coraza do: CRS 920450 records every header name
        // it captures (`setvar:tx.header_name_920450_%{tx.0}`), not just the first.
        for Hit {
            name,
            value,
            captures,
        } in hits
        {
            if let Some(caps) = captures {
                // TX:0..9 exist after the first capture: no new key per match.
                for (key, c) in CAPTURE_KEYS.into_iter().zip(caps) {
                    match self.state.tx.get_mut(key) {
                        Some(slot) => *slot = Cow::Owned(c),
                        None => {
                            self.state.tx.insert(Cow::Borrowed(key), Cow::Owned(c));
                        }
                    }
                }
            }
            // MATCHED_VAR is now this value: the last of MATCHED_VARS (see `matched_var`).
            self.state.matched_vars.push((name, value));
            for setvar in &link.setvars {
                self.setvar(rule, setvar);
            }
        }
        matched
    }

    /// The memo's entry for a value that stays put for the whole request (borrowed from
    /// the request, not TX or MATCHED_VAR, which change as rules run), when remembered.
    fn memo_entry(&self, v: &Value<'_>) -> Option<u32> {
        let Cow::Borrowed(bytes) = &v.value else {
            return None;
        };
        if v.is_volatile() {
            return None;
        }
        self.with_memo(|m| m.entry(bytes)).flatten()
    }

    /// Whether link `n`, reading `targets` (value sets `sets`, one per included target) for
    /// `rule`, is known clean for every value it reads (a link with no value to read
    /// matches nothing either).
    fn clean_for_sets(&self, rule: &Rule, targets: &Targets, sets: &[u32], n: u32) -> bool {
        let mut memo = self.memo.borrow_mut();
        let Some(memo) = memo.as_deref_mut() else {
            return false;
        };
        let stride = memo.stride();
        let mut clean = self.clean_sets.borrow_mut();
        let count = self.rules.memo_sets.len();
        if clean.bits.len() != count * stride {
            clean.bits = vec![0; count * stride];
            clean.computed = vec![0; count.div_ceil(64)];
        }
        for (&set, target) in sets.iter().zip(&targets.include) {
            let at = set as usize * stride;
            let (word, bit) = (set as usize / 64, 1u64 << (set % 64));
            if clean.computed[word] & bit == 0 {
                clean.computed[word] |= bit;
                let words = &mut clean.bits[at..at + stride];
                words.fill(u64::MAX);
                // Every value of the set, exclusions or not: a superset of what any link
                // reads through it.
                let target = &self.rules.memo_sets[set as usize];
                self.each_member(None, target, &mut |v| match &v.value {
                    Cow::Borrowed(value) => match memo.entry(value) {
                        Some(e) => words
                            .iter_mut()
                            .zip(memo.clean_links(e))
                            .for_each(|(w, c)| *w &= c),
                        None => words.fill(0),
                    },
                    Cow::Owned(_) => words.fill(0),
                });
            }
            if clean.bits[at + n as usize / 64] & (1 << (n % 64)) != 0 {
                continue;
            }
            // Some value of the set is not known clean for the link; the link may not read
            // it (an exclusion: CRS itself removes REQUEST_FILENAME from rules when it is
            // plain): check the values it does read.
            let mut all = true;
            self.each_member(Some((rule, targets)), target, &mut |v| {
                if !all {
                    return;
                }
                all = match &v.value {
                    Cow::Borrowed(value) => memo.entry(value).is_some_and(|e| {
                        memo.clean_links(e)[n as usize / 64] & (1 << (n % 64)) != 0
                    }),
                    Cow::Owned(_) => false,
                };
            });
            if !all {
                return false;
            }
        }
        memo.skipped_link();
        true
    }

    fn with_memo<T>(&self, f: impl FnOnce(&mut CleanValues) -> T) -> Option<T> {
        self.memo.borrow_mut().as_deref_mut().map(f)
    }

    /// Whether the prefiltered link in `slot` can match: the scans of the sources it reads
    /// (each once per phase and transformation list) found one of its factors.
    fn may_match(&self, slot: Slot) -> bool {
        let at = slot.group as usize;
        let group = &self.rules.prefilters.groups[at];
        let mut all = self.prefilter_hits.borrow_mut();
        let PrefilterHits { scanned, slots } = &mut *all;
        let scanned = &mut scanned[at];
        let slots = &mut slots[group.word_offset..group.word_offset + group.slots.div_ceil(64)];
        for source in slot.sources() {
            if *scanned & (1 << source as u8) != 0 {
                continue;
            }
            *scanned |= 1 << source as u8;
            let complete = self.each_source_value(source, &mut |value| {
                let t = self.transformed_stable(group.chain, &group.transforms, value);
                group.scan(source, t.bytes(), slots);
            });
            if !complete {
                slots.fill(u64::MAX);
            }
        }
        let s = slot.slot as usize;
        slots[s / 64] & (1 << (s % 64)) != 0
    }

    /// Every value of `source`, borrowed from the request as `each_member` yields it (so the
    /// transformation cache, keyed by address, is shared with the rules). False when a value
    /// could not be borrowed: the scan is then incomplete and rules out nothing.
    fn each_source_value<'s>(&'s self, source: Source, emit: &mut dyn FnMut(&'s [u8])) -> bool {
        let d = &self.data;
        let values = |list: &'s [Pair], emit: &mut dyn FnMut(&'s [u8])| {
            list.iter().for_each(|(_, v)| emit(v))
        };
        let names = |list: &'s [Pair], emit: &mut dyn FnMut(&'s [u8])| {
            list.iter().for_each(|(k, _)| emit(k))
        };
        let scalar = |c: Collection, emit: &mut dyn FnMut(&'s [u8])| match self.scalar(c) {
            Some(Cow::Borrowed(v)) => {
                emit(v);
                true
            }
            Some(Cow::Owned(_)) => false,
            // `each_member` yields an empty value for a missing one.
            None => {
                emit(b"");
                true
            }
        };
        match source {
            Source::GetValues => values(&d.args_get_inspected, emit),
            Source::GetNames => names(&d.args_get_inspected, emit),
            Source::PostValues => values(&d.args_post, emit),
            Source::PostNames => names(&d.args_post, emit),
            Source::CookieValues => values(&d.cookies, emit),
            Source::CookieNames => names(&d.cookies, emit),
            Source::HeaderValues => d.req.headers.iter().for_each(|(_, v)| emit(v)),
            Source::HeaderNames => d.req.headers.iter().for_each(|(k, _)| emit(k.as_bytes())),
            Source::FileNames => d.files.iter().for_each(|f| emit(&f.file_name)),
            Source::FileFieldNames => d.files.iter().for_each(|f| emit(&f.field_name)),
            Source::PartHeaders => values(&d.part_headers, emit),
            Source::Xml => {
                if let Some(xml) = &d.xml {
                    emit(&xml.text);
                    values(&xml.attributes, emit);
                }
            }
            Source::Uri => return scalar(Collection::RequestUri, emit),
            Source::UriRaw => return scalar(Collection::RequestUriRaw, emit),
            Source::Filename => return scalar(Collection::RequestFilename, emit),
            Source::Basename => return scalar(Collection::RequestBasename, emit),
            Source::RequestLine => return scalar(Collection::RequestLine, emit),
            Source::Method => return scalar(Collection::RequestMethod, emit),
            Source::Protocol => return scalar(Collection::RequestProtocol, emit),
            Source::QueryString => return scalar(Collection::QueryString, emit),
            Source::RequestBody => return scalar(Collection::RequestBody, emit),
        }
        true
    }

    /// `v` through the link's transformations, from the request's cache when another rule
    /// already ran the same list on the same value (CRS runs `t:urlDecodeUni`,
    /// `t:htmlEntityDecode`, `t:lowercase`... over the same arguments in hundreds of rules).
    /// Only values borrowed from the request are cached, keyed by where they live: TX and
    /// MATCHED_VAR values change as rules run.
    fn transformed<'v>(&self, link: &Link, v: &'v Value<'_>) -> Transformed<'v> {
        if link.transforms.is_empty() {
            return Transformed::Borrowed(&v.value);
        }
        match &v.value {
            Cow::Borrowed(value) if !v.is_volatile() => {
                self.transformed_stable(link.chain, &link.transforms, value)
            }
            other => match transform_all(&link.transforms, other) {
                Cow::Borrowed(b) => Transformed::Borrowed(b),
                Cow::Owned(o) => Transformed::Owned(o),
            },
        }
    }

    /// A value borrowed from the request through `transforms` (numbered `chain`), from the
    /// request's cache when it was transformed so before.
    fn transformed_stable<'v>(
        &self,
        chain: u32,
        transforms: &[crate::transform::Transform],
        value: &'v [u8],
    ) -> Transformed<'v> {
        if transforms.is_empty() {
            return Transformed::Borrowed(value);
        }
        let key = (value.as_ptr() as usize, value.len(), chain);
        if let Some(cached) = self.transform_cache.borrow().get(&key) {
            return match cached {
                None => Transformed::Borrowed(value),
                Some(shared) => Transformed::Shared(shared.clone()),
            };
        }
        let (out, entry) = match transform_all(transforms, value) {
            Cow::Borrowed(b) => (Transformed::Borrowed(b), None),
            Cow::Owned(o) => {
                let shared: Rc<[u8]> = o.into();
                (Transformed::Shared(shared.clone()), Some(shared))
            }
        };
        self.transform_cache.borrow_mut().insert(key, entry);
        out
    }

    /// The values `target` yields for `rule` (minus the rule's exclusions and the
    /// per-request target removals), handed to `emit` one by one: no list is built per
    /// rule. `&COLLECTION` gives the count.
    fn each_value<'s>(
        &'s self,
        rule: &Rule,
        target: &Target,
        targets: &Targets,
        emit: &mut dyn FnMut(Value<'s>),
    ) {
        if target.count {
            let mut n = 0usize;
            self.each_member(Some((rule, targets)), target, &mut |_| n += 1);
            let key = target
                .selector
                .describe()
                .map(|k| Cow::Owned(k.into_bytes()))
                .unwrap_or(Cow::Borrowed(&b""[..]));
            emit(Value {
                collection: target.collection,
                key,
                value: Cow::Owned(n.to_string().into_bytes()),
                count: true,
            });
        } else {
            self.each_member(Some((rule, targets)), target, emit);
        }
    }

    /// The values `target` yields, as a list (macro expansion's rare path).
    fn values<'s>(&'s self, rule: &Rule, target: &Target, targets: &Targets) -> Vec<Value<'s>> {
        let mut out = Vec::new();
        self.each_value(rule, target, targets, &mut |v| out.push(v));
        out
    }

    /// The members of `target`, minus the exclusions of `for_rule` (the rule and its
    /// targets) when given.
    fn each_member<'s>(
        &'s self,
        for_rule: Option<(&Rule, &Targets)>,
        target: &Target,
        emit: &mut dyn FnMut(Value<'s>),
    ) {
        let excluded = |c: Collection, key: &[u8]| {
            let Some((rule, targets)) = for_rule else {
                return false;
            };
            targets.exclude.iter().any(|e| e.excludes(c, key))
                || self.state.removed_targets.iter().any(|(scope, e)| {
                    let applies = match scope {
                        Scope::Ids(r) => in_ranges(r, rule.id),
                        Scope::Tag(t) => rule.has_tag(t),
                    };
                    applies && e.excludes(c, key)
                })
        };
        let c = target.collection;
        let mut pairs = |list: &'s [Pair], names: bool| {
            for (k, v) in list {
                if target.selector.matches(k) && !excluded(c, k) {
                    let value = if names { k } else { v };
                    emit(Value {
                        collection: c,
                        key: Cow::Borrowed(k),
                        value: Cow::Borrowed(value),
                        count: false,
                    });
                }
            }
        };
        let d = &self.data;
        match c {
            Collection::Args => {
                pairs(&d.args_get_inspected, false);
                pairs(&d.args_post, false);
            }
            Collection::ArgsGet => pairs(&d.args_get_inspected, false),
            Collection::ArgsPost => pairs(&d.args_post, false),
            Collection::ArgsNames => {
                pairs(&d.args_get_inspected, true);
                pairs(&d.args_post, true);
            }
            Collection::ArgsGetNames => pairs(&d.args_get_inspected, true),
            Collection::ArgsPostNames => pairs(&d.args_post, true),
            Collection::RequestCookies => pairs(&d.cookies, false),
            Collection::RequestCookiesNames => pairs(&d.cookies, true),
            Collection::RequestHeaders | Collection::RequestHeadersNames => {
                for (k, v) in &d.req.headers {
                    let k = k.as_bytes();
                    if target.selector.matches(k) && !excluded(c, k) {
                        let value: &[u8] = if c == Collection::RequestHeaders {
                            v
                        } else {
                            k
                        };
                        emit(Value {
                            collection: c,
                            key: Cow::Borrowed(k),
                            value: Cow::Borrowed(value),
                            count: false,
                        });
                    }
                }
            }
            Collection::Files | Collection::FilesNames | Collection::FilesSizes => {
                for f in &d.files {
                    let k = f.field_name.as_slice();
                    if target.selector.matches(k) && !excluded(c, k) {
                        let value = match c {
                            Collection::Files => Cow::Borrowed(f.file_name.as_slice()),
                            Collection::FilesNames => Cow::Borrowed(k),
                            _ => Cow::Owned(f.size.to_string().into_bytes()),
                        };
                        emit(Value {
                            collection: c,
                            key: Cow::Borrowed(k),
                            value,
                            count: false,
                        });
                    }
                }
            }
            Collection::MultipartPartHeaders => pairs(&d.part_headers, false),
            // TX:name, the common case (CRS reads its settings so on almost every rule):
            // one lookup, keys are stored lower-case.
            Collection::Tx if matches!(target.selector, Selector::Key(_)) => {
                if let Selector::Key(k) = &target.selector {
                    if let Some((k, v)) = self.state.tx.get_key_value(k.as_str()) {
                        if !excluded(c, k.as_bytes()) {
                            emit(Value {
                                collection: c,
                                key: Cow::Borrowed(k.as_bytes()),
                                value: Cow::Borrowed(v.as_ref()),
                                count: false,
                            });
                        }
                    }
                }
            }
            Collection::Tx => {
                let mut keys: Vec<&Cow<str>> = self
                    .state
                    .tx
                    .keys()
                    .filter(|k| target.selector.matches(k.as_bytes()))
                    .collect();
                keys.sort();
                for k in keys {
                    if !excluded(c, k.as_bytes()) {
                        emit(Value {
                            collection: c,
                            key: Cow::Borrowed(k.as_bytes()),
                            value: Cow::Borrowed(&self.state.tx[k.as_ref()]),
                            count: false,
                        });
                    }
                }
            }
            Collection::MatchedVars | Collection::MatchedVarsNames => {
                for (name, value) in &self.state.matched_vars {
                    if target.selector.matches(name.as_bytes()) {
                        let v: &[u8] = if c == Collection::MatchedVars {
                            value
                        } else {
                            name.as_bytes()
                        };
                        emit(Value {
                            collection: c,
                            key: Cow::Borrowed(name.as_bytes()),
                            value: Cow::Borrowed(v),
                            count: false,
                        });
                    }
                }
            }
            Collection::Xml => {
                if let Some(xml) = &d.xml {
                    let attributes =
                        matches!(&target.selector, Selector::Key(k) if k.contains('@'));
                    if attributes {
                        for (name, value) in &xml.attributes {
                            emit(Value {
                                collection: c,
                                key: Cow::Borrowed(name),
                                value: Cow::Borrowed(value),
                                count: false,
                            });
                        }
                    } else {
                        emit(Value {
                            collection: c,
                            key: Cow::Borrowed(b"/*"),
                            value: Cow::Borrowed(&xml.text),
                            count: false,
                        });
                    }
                }
            }
            _ => {
                // Single-value variables always exist, empty when the request has none
                // (CRS relies on it: `REQBODY_PROCESSOR "!@rx ..."` fires with no processor).
                if c.is_keyed() {
                    // Persistent and response-side collections: nothing in a request.
                } else if !excluded(c, b"") {
                    let v = self.scalar(c).unwrap_or(Cow::Borrowed(&b""[..]));
                    emit(Value {
                        collection: c,
                        key: Cow::Borrowed(b""),
                        value: v,
                        count: false,
                    });
                }
            }
        }
    }

    fn scalar(&self, c: Collection) -> Option<Cow<'_, [u8]>> {
        let d = &self.data;
        let b = |s: &'r [u8]| Some(Cow::Borrowed(s));
        let owned = |s: String| Some(Cow::Owned(s.into_bytes()));
        let flag = |f: bool| Some(Cow::Borrowed(if f { &b"1"[..] } else { &b"0"[..] }));
        match c {
            Collection::RequestUri => Some(Cow::Borrowed(&d.uri)),
            Collection::RequestUriRaw => b(d.req.uri.as_bytes()),
            Collection::RequestFilename => Some(Cow::Borrowed(&d.filename)),
            Collection::RequestBasename => Some(Cow::Borrowed(&d.filename[d.basename_at..])),
            Collection::RequestLine => Some(Cow::Borrowed(&d.request_line)),
            Collection::RequestMethod => b(d.req.method.as_bytes()),
            Collection::RequestProtocol => b(d.req.protocol.as_bytes()),
            Collection::QueryString => b(d.query),
            Collection::RequestBody => d.request_body.map(Cow::Borrowed),
            Collection::RequestBodyLength => owned(d.body.len().to_string()),
            Collection::RemoteAddr => b(d.req.remote_addr.as_bytes()),
            Collection::RemotePort => owned(d.req.remote_port.to_string()),
            Collection::ServerName => Some(Cow::Borrowed(&d.server_name)),
            Collection::UniqueId => b(d.req.unique_id.as_bytes()),
            Collection::ArgsCombinedSize => {
                owned((d.args_get_bytes + pair_bytes(&d.args_post)).to_string())
            }
            Collection::FilesCombinedSize => {
                owned(d.files.iter().map(|f| f.size).sum::<usize>().to_string())
            }
            Collection::ReqbodyProcessor => {
                d.processor.as_deref().map(|p| Cow::Borrowed(p.as_bytes()))
            }
            Collection::ReqbodyError => flag(d.body_error.is_some()),
            Collection::ReqbodyErrorMsg => {
                d.body_error.as_deref().map(|e| Cow::Borrowed(e.as_bytes()))
            }
            Collection::MultipartStrictError => {
                d.multipart.as_ref().and_then(|m| flag(m.strict_error()))
            }
            Collection::MultipartUnmatchedBoundary => d
                .multipart
                .as_ref()
                .and_then(|m| flag(m.unmatched_boundary)),
            Collection::MatchedVar => self
                .state
                .matched_var()
                .map(|(_, v)| Cow::Borrowed(v.as_slice())),
            Collection::MatchedVarName => self
                .state
                .matched_var()
                .map(|(n, _)| Cow::Borrowed(n.as_bytes())),
            _ => None,
        }
    }

    /// The rule matched: its actions, its log entry, its disruption. Returns its flow.
    /// Records and applies a rule that matched; its flow (`skip`, `skipAfter`) is for the
    /// walk over the phase.
    fn fire(&mut self, rule: &'r Rule) -> Option<&'r Flow> {
        // A rule that does not log (CRS's initialization and paranoia-level skips fire on
        // every request) leaves no record: nothing reads one.
        let disrupts = !matches!(rule.disruptive, Disruptive::Pass | Disruptive::Block);
        if rule.log || rule.auditlog || disrupts {
            let ctx = Ctx { tx: self, rule };
            let msg = rule
                .msg
                .as_ref()
                .map(|m| m.expand_string(&ctx))
                .unwrap_or_default();
            let mut data = rule
                .logdata
                .as_ref()
                .map(|m| m.expand_string(&ctx))
                .unwrap_or_default();
            truncate(&mut data, MATCHED_DATA_MAX);
            let variable = self
                .state
                .matched_var()
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            self.state.matches.push(Match {
                id: rule.id,
                phase: rule.phase,
                msg,
                data,
                severity: rule.severity.map(action::severity_name),
                tags: rule.tags.clone(),
                variable,
                logged: rule.log,
                audited: rule.auditlog,
            });
        }
        let disruptive = rule.disruptive.clone();
        let location = match &disruptive {
            Disruptive::Redirect(t) => Some(t.expand_string(&Ctx { tx: self, rule })),
            _ => None,
        };
        match disruptive {
            Disruptive::Pass | Disruptive::Block => {}
            Disruptive::Allow | Disruptive::AllowPhase => {
                if self.state.mode == EngineMode::On {
                    self.state.allowed = true;
                }
            }
            Disruptive::Deny => self.interrupt(Interruption {
                rule_id: rule.id,
                status: rule.status,
                action: "deny",
                location: None,
            }),
            Disruptive::Drop => self.interrupt(Interruption {
                rule_id: rule.id,
                status: rule.status,
                action: "drop",
                location: None,
            }),
            Disruptive::Redirect(_) => {
                let status = if (300..400).contains(&rule.status) {
                    rule.status
                } else {
                    302
                };
                self.interrupt(Interruption {
                    rule_id: rule.id,
                    status,
                    action: "redirect",
                    location,
                })
            }
        }
        rule.flow.as_ref()
    }

    fn interrupt(&mut self, i: Interruption) {
        match self.state.mode {
            EngineMode::On => self.state.interruption = Some(i),
            _ => {
                self.state.would_interrupt.get_or_insert(i);
            }
        }
    }

    fn setvar(&mut self, rule: &Rule, setvar: &'r SetVar) {
        let ctx = Ctx { tx: self, rule };
        let (key, change) = match setvar {
            SetVar::Set { key, value } => (key, Some((0, expand(value, &ctx)))),
            SetVar::Add { key, value } => (key, Some((1, expand(value, &ctx)))),
            SetVar::Sub { key, value } => (key, Some((-1, expand(value, &ctx)))),
            SetVar::Delete { key } => (key, None),
        };
        // Keys are lower-cased at load; only a key with a macro is built per request.
        let key: Cow<'r, str> = match key.literal() {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(String::from_utf8_lossy(&key.expand(&ctx)).to_ascii_lowercase()),
        };
        // A literal name or value is stored borrowed from the rule set.
        match change {
            None => {
                self.state.tx.remove(key.as_ref());
            }
            Some((0, value)) => match self.state.tx.get_mut(key.as_ref()) {
                Some(slot) => *slot = value,
                None => {
                    self.state.tx.insert(key, value);
                }
            },
            Some((sign, value)) => {
                let change = sign * number(&value);
                // CRS adds to its scores on every match: the digits are rewritten in place.
                match self.state.tx.get_mut(key.as_ref()) {
                    Some(slot) => {
                        let new = number(slot).saturating_add(change);
                        let digits = slot.to_mut();
                        digits.clear();
                        write_number(digits, new);
                    }
                    None => {
                        let mut digits = Vec::new();
                        write_number(&mut digits, change);
                        self.state.tx.insert(key, Cow::Owned(digits));
                    }
                }
            }
        }
    }

    fn ctl(&mut self, ctl: &Ctl) {
        match ctl {
            Ctl::RuleRemoveById(ranges) => self.state.removed_ids.extend(ranges.iter().copied()),
            Ctl::RuleRemoveByTag(tag) => self.state.removed_tags.push(tag.clone()),
            Ctl::RuleRemoveTargetById(ranges, targets) => {
                self.remove_targets(Scope::Ids(ranges.clone()), targets)
            }
            Ctl::RuleRemoveTargetByTag(tag, targets) => {
                self.remove_targets(Scope::Tag(tag.clone()), targets)
            }
            Ctl::RuleEngine(mode) => self.state.mode = *mode,
            Ctl::RequestBodyProcessor(p) => self.state.forced_processor = Some(p.clone()),
            Ctl::ForceRequestBodyVariable(on) => self.state.force_body_variable = *on,
            Ctl::RequestBodyAccess(on) => self.state.body_access = *on,
        }
    }

    fn remove_targets(&mut self, scope: Scope, targets: &[RawTarget]) {
        // Parsed at load already (the ctl only loads when its targets parse); a target
        // that names an unknown variable cannot reach here.
        for raw in targets {
            let mut t = Targets::default();
            let raw = RawTarget {
                exclude: false,
                ..raw.clone()
            };
            if t.add(&raw).is_ok() {
                if let Some(target) = t.include.pop() {
                    let scope = match &scope {
                        Scope::Ids(r) => Scope::Ids(r.clone()),
                        Scope::Tag(tag) => Scope::Tag(tag.clone()),
                    };
                    self.state.removed_targets.push((
                        scope,
                        Exclusion {
                            collection: target.collection,
                            selector: target.selector,
                        },
                    ));
                }
            }
        }
    }
}

/// A transaction over no request, to evaluate at load the rules that read only TX (see
/// `fold`).
pub(crate) struct Probe<'r> {
    tx: Transaction<'r>,
}

/// A rule as the probe evaluated it.
pub(crate) struct Outcome {
    /// How many of its links matched, in order (all of them: the rule matched).
    pub links_matched: usize,
    /// MATCHED_VARS after it.
    pub matched: Vec<(String, Vec<u8>)>,
}

/// The probe's variables, to go back to.
#[derive(Clone)]
pub(crate) struct Saved<'r> {
    tx: Vars<'r>,
    matched_var: Option<(String, Vec<u8>)>,
    matched_vars: Vec<(String, Vec<u8>)>,
}

impl<'r> Probe<'r> {
    pub(crate) fn new(rules: &'r RuleSet, request: &'r Request) -> Self {
        let mut tx = Transaction::new(rules, request, None);
        tx.state.tx.clear();
        tx.state.matched_var = None;
        Probe { tx }
    }

    /// Evaluates `rule`'s links in order up to the first that does not match, running the
    /// setvars of those that do (not their ctls: a rule with a ctl is not folded).
    pub(crate) fn evaluate(&mut self, rule: &'r Rule) -> Outcome {
        self.tx.state.next_rule();
        let mut links_matched = 0;
        for link in &rule.links {
            if !self.tx.link_matches(rule, link) {
                break;
            }
            links_matched += 1;
        }
        Outcome {
            links_matched,
            matched: self.tx.state.matched_vars.clone(),
        }
    }

    pub(crate) fn save(&self) -> Saved<'r> {
        let s = &self.tx.state;
        Saved {
            tx: s.tx.clone(),
            matched_var: s.matched_var.as_deref().cloned(),
            matched_vars: s.matched_vars.clone(),
        }
    }

    pub(crate) fn restore(&mut self, saved: Saved<'r>) {
        let s = &mut self.tx.state;
        s.tx = saved.tx;
        s.matched_var = saved.matched_var.map(Cow::Owned);
        s.matched_vars = saved.matched_vars;
    }

    pub(crate) fn tx_value(&self, key: &str) -> Option<&[u8]> {
        self.tx.state.tx.get(key).map(|v| v.as_ref())
    }
}

fn op_matches(link: &Link, value: &[u8], ctx: &Ctx<'_, '_>, captures: &mut Vec<Vec<u8>>) -> bool {
    let want = if link.capture { Some(captures) } else { None };
    link.operator.matches(value, ctx, want) != link.negated
}

fn transform_all<'a>(transforms: &[crate::transform::Transform], value: &'a [u8]) -> Cow<'a, [u8]> {
    let mut current = Cow::Borrowed(value);
    for t in transforms {
        current = match current {
            Cow::Borrowed(b) => t.apply(b),
            Cow::Owned(o) => Cow::Owned(t.apply(&o).into_owned()),
        };
    }
    current
}

/// The bytes of the names and values of `pairs`.
fn pair_bytes(pairs: &[Pair]) -> usize {
    pairs.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// A setvar's value: a literal one (`=0`, `=+1`) is read in place.
fn expand<'t>(template: &'t Template, ctx: &Ctx<'_, '_>) -> Cow<'t, [u8]> {
    match template.literal() {
        Some(l) => Cow::Borrowed(l.as_bytes()),
        None => Cow::Owned(template.expand(ctx)),
    }
}

/// The transaction as macros see it, while a rule runs.
struct Ctx<'t, 'r> {
    tx: &'t Transaction<'r>,
    rule: &'t Rule,
}

impl Resolve for Ctx<'_, '_> {
    fn resolve(&self, var: &MacroVar, out: &mut Vec<u8>) {
        let state = &self.tx.state;
        match (var.collection.as_str(), var.key.as_deref()) {
            ("TX", Some(key)) => {
                if let Some(v) = state.tx.get(key) {
                    out.extend_from_slice(v);
                }
            }
            ("RULE", Some(key)) => {
                let r = self.rule;
                match key {
                    "id" => out.extend_from_slice(r.id.to_string().as_bytes()),
                    "phase" => out.extend_from_slice(r.phase.to_string().as_bytes()),
                    "severity" => {
                        if let Some(s) = r.severity {
                            out.extend_from_slice(s.to_string().as_bytes());
                        }
                    }
                    "ver" => out.extend_from_slice(r.ver.as_deref().unwrap_or("").as_bytes()),
                    "msg" => {
                        if let Some(m) = r.msg.as_ref().and_then(|m| m.literal()) {
                            out.extend_from_slice(m.as_bytes());
                        }
                    }
                    _ => {}
                }
            }
            (name, key) => {
                let Some(collection) = Collection::from_name(name) else {
                    return;
                };
                let selector = match key {
                    Some(k) if collection.is_keyed() => Selector::Key(k.to_string()),
                    _ => Selector::All,
                };
                let target = Target {
                    collection,
                    selector,
                    count: false,
                };
                let values = self.tx.values(self.rule, &target, &Targets::default());
                if let Some(v) = values.first() {
                    out.extend_from_slice(&v.value);
                }
            }
        }
    }
}

/// The body processor ModSecurity's recommended configuration picks for a content type.
fn processor_for(content_type: &[u8]) -> Option<&'static str> {
    let media = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let media = String::from_utf8_lossy(media).to_ascii_lowercase();
    match media.as_str() {
        "application/x-www-form-urlencoded" => Some("URLENCODED"),
        "multipart/form-data" => Some("MULTIPART"),
        "application/json" => Some("JSON"),
        "text/xml" | "application/xml" | "application/soap+xml" => Some("XML"),
        m if m.ends_with("+json") => Some("JSON"),
        m if m.ends_with("+xml") => Some("XML"),
        _ => None,
    }
}

/// The text content (entities resolved, CDATA included) and the attribute values of an
/// XML body. Malformed XML is a body error, as with ModSecurity's XML processor.
fn parse_xml(body: &[u8]) -> Result<Xml, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut xml = Xml {
        text: Vec::new(),
        attributes: Vec::new(),
    };
    let mut seen_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
        match event {
            Event::Start(e) | Event::Empty(e) => {
                seen_root = true;
                for a in e.attributes().with_checks(false) {
                    let a = a.map_err(|e| e.to_string())?;
                    let value = a
                        .unescape_value()
                        .map(|v| v.into_owned().into_bytes())
                        .unwrap_or_else(|_| a.value.to_vec());
                    xml.attributes.push((a.key.as_ref().to_vec(), value));
                }
            }
            Event::Text(t) => {
                let text = t.decode().map(|c| c.into_owned()).unwrap_or_default();
                let text = quick_xml::escape::unescape(&text)
                    .map(|c| c.into_owned())
                    .unwrap_or(text);
                xml.text.extend_from_slice(text.as_bytes());
            }
            Event::CData(c) => xml.text.extend_from_slice(&c),
            Event::GeneralRef(r) => {
                // An entity reference in text (`&lt;`): keep its resolved character.
                if let Ok(Some(ch)) = r.resolve_char_ref() {
                    let mut buf = [0u8; 4];
                    xml.text
                        .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                } else if let Some(v) =
                    quick_xml::escape::resolve_predefined_entity(&String::from_utf8_lossy(&r))
                {
                    xml.text.extend_from_slice(v.as_bytes());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err("no root element".into());
    }
    Ok(xml)
}

/// Percent-decoding for `REQUEST_FILENAME` (no `+`: a path is not a form).
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// FxHash (the compiler's own hash): a multiply-rotate over 8-byte words, several times
/// cheaper than SipHash on the short keys here (TX names, value addresses), which a
/// request looks up hundreds of times. Written out because it is ten lines. The few keys a
/// viewer influences (a header name captured into a TX name) are bounded by the request's
/// own size, so a crafted collision only slows that request.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// TX variables owned (what the rule set starts every transaction with).
pub(crate) type TxMap = FastMap<String, Vec<u8>>;

/// A transaction's TX collection.
type Vars<'r> = FastMap<Cow<'r, str>, Cow<'r, [u8]>>;

/// The variables every transaction starts with (CRS's setup and initialization, folded at
/// load: about 60), borrowed: no copy of a name or value per request.
fn start_vars(rules: &RuleSet) -> Vars<'_> {
    let start = &rules.start.tx;
    // Room for what a request sets on top without growing.
    let mut vars = Vars::with_capacity_and_hasher(start.len() + 64, Default::default());
    vars.extend(
        start
            .iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_slice()))),
    );
    vars
}

/// The decimal digits of `n`, by hand: through `fmt` this was most of a score update.
fn write_number(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{LoadOptions, MemorySource};

    fn rules(text: &str) -> RuleSet {
        rules_with(text, &[])
    }

    /// A bodiless `GET uri HTTP/1.1`.
    fn get(uri: &str) -> Request {
        Request {
            method: "GET".into(),
            uri: uri.into(),
            protocol: "HTTP/1.1".into(),
            ..Request::default()
        }
    }

    fn fired(set: &RuleSet, uri: &str) -> Vec<u32> {
        evaluate(set, &get(uri))
            .matches
            .iter()
            .map(|m| m.id)
            .collect()
    }

    fn rules_with(text: &str, data: &[(&str, &str)]) -> RuleSet {
        let mut files = MemorySource::default();
        files.files.insert("r.conf".into(), text.into());
        for (name, content) in data {
            files.files.insert((*name).into(), (*content).into());
        }
        RuleSet::load(&files, &["r.conf".into()], LoadOptions::default()).unwrap()
    }

    fn post(uri: &str, content_type: &str, body: &str) -> Request {
        Request {
            method: "POST".into(),
            uri: uri.into(),
            protocol: "HTTP/1.1".into(),
            headers: vec![("content-type".into(), content_type.as_bytes().to_vec())],
            body: body.as_bytes().to_vec(),
            remote_addr: "192.0.2.7".into(),
            ..Request::default()
        }
    }

    fn ids(verdict: &Verdict) -> Vec<u32> {
        verdict.matches.iter().map(|m| m.id).collect()
    }

    /// `multiMatch` runs the operator on the value before and after each transformation:
    /// a match on an intermediate value counts.
    #[test]
    fn multi_match_checks_every_intermediate_value() {
        let set = rules(
            "SecRule ARGS:a \"@streq a b\" \"id:1,phase:1,pass,log,t:lowercase,t:removeWhitespace\"\n\
             SecRule ARGS:a \"@streq a b\" \"id:2,phase:1,pass,log,t:lowercase,t:removeWhitespace,multiMatch\"\n",
        );
        assert_eq!(fired(&set, "/?a=A%20B"), vec![2]);
        assert_eq!(fired(&set, "/?a=AB"), Vec::<u32>::new());
    }

    /// `SecRuleUpdateTargetById` changes what a loaded rule reads: an added target is
    /// evaluated, an excluded one no longer is.
    #[test]
    fn updated_targets_are_what_the_rule_reads() {
        let set = rules(
            "SecRule ARGS:a \"@streq x\" \"id:3,phase:1,pass,log\"\n\
             SecRule ARGS \"@streq y\" \"id:4,phase:1,pass,log\"\n\
             SecRuleUpdateTargetById 3 \"ARGS:b\"\n\
             SecRuleUpdateTargetById 4 \"!ARGS:skip\"\n",
        );
        assert_eq!(fired(&set, "/?b=x"), vec![3]);
        assert_eq!(fired(&set, "/?a=x"), vec![3]);
        assert_eq!(fired(&set, "/?c=y"), vec![4]);
        assert_eq!(fired(&set, "/?skip=y"), Vec::<u32>::new());
    }

    #[test]
    fn strmatch_finds_the_string_anywhere_and_only_it() {
        let set = rules("SecRule ARGS:c \"@strmatch needle\" \"id:5,phase:1,pass,log\"\n");
        assert_eq!(fired(&set, "/?c=a%20needle%20b"), vec![5]);
        assert_eq!(fired(&set, "/?c=needl"), Vec::<u32>::new());
        assert_eq!(fired(&set, "/?c=haystack"), Vec::<u32>::new());
    }

    /// `log` is ModSecurity's error log, `auditlog` the audit line: `nolog` silences both
    /// unless `auditlog` follows, `noauditlog` keeps a match out of the audit line only.
    #[test]
    fn log_and_auditlog_decide_where_a_match_is_recorded() {
        let set = rules(
            "SecRule ARGS:a \"@streq x\" \"id:1,phase:1,pass,log\"\n\
             SecRule ARGS:a \"@streq x\" \"id:2,phase:1,pass,nolog\"\n\
             SecRule ARGS:a \"@streq x\" \"id:3,phase:1,pass,nolog,auditlog\"\n\
             SecRule ARGS:a \"@streq x\" \"id:4,phase:1,pass,log,noauditlog\"\n",
        );
        let request = get("/?a=x");
        let verdict = evaluate(&set, &request);
        let recorded: Vec<(u32, bool, bool)> = verdict
            .matches
            .iter()
            .map(|m| (m.id, m.logged, m.audited))
            .collect();
        assert_eq!(
            recorded,
            [(1, true, true), (3, false, true), (4, true, false)],
            "rule 2 leaves no record"
        );
    }

    /// `drop` interrupts like `deny` (the node answers it the same way, it cannot close a
    /// connection from a module), under its own name; `UNIQUE_ID` is the request's id.
    #[test]
    fn drop_interrupts_and_unique_id_is_the_requests_own() {
        let set = rules(
            "SecRule UNIQUE_ID \"@streq req-42\" \"id:5,phase:1,pass,log\"\n\
             SecRule ARGS:a \"@streq x\" \"id:6,phase:1,drop,status:403,log\"\n",
        );
        let request = |uri: &str, id: &str| Request {
            method: "GET".into(),
            uri: uri.into(),
            protocol: "HTTP/1.1".into(),
            unique_id: id.into(),
            ..Request::default()
        };
        let verdict = evaluate(&set, &request("/?a=x", "req-42"));
        assert_eq!(ids(&verdict), [5, 6]);
        let stop = verdict.interruption.expect("drop interrupts");
        assert_eq!((stop.rule_id, stop.status, stop.action), (6, 403, "drop"));
        let verdict = evaluate(&set, &request("/?a=y", "req-43"));
        assert!(ids(&verdict).is_empty() && verdict.interruption.is_none());
    }

    #[test]
    fn post_arguments_and_their_names_come_from_the_body_only() {
        let set = rules(
            "SecRequestBodyAccess On\n\
             SecRule ARGS_POST:comment \"@contains evil\" \"id:1,phase:2,pass,log\"\n\
             SecRule ARGS_POST_NAMES \"@streq secret\" \"id:2,phase:2,pass,log\"\n\
             SecRule ARGS_GET \"@contains evil\" \"id:3,phase:2,pass,log\"\n\
             SecRule ARGS_GET_NAMES \"@streq secret\" \"id:4,phase:2,pass,log\"\n",
        );
        let form = post(
            "/f?q=fine",
            "application/x-www-form-urlencoded",
            "comment=an+evil+text&secret=1",
        );
        assert_eq!(ids(&evaluate(&set, &form)), vec![1, 2]);
        let query = post(
            "/f?comment=evil&secret=1",
            "application/x-www-form-urlencoded",
            "q=fine",
        );
        assert_eq!(ids(&evaluate(&set, &query)), vec![3, 4]);
    }

    #[test]
    fn matched_vars_names_in_a_chain_name_what_the_first_link_matched() {
        let set = rules(
            "SecRule ARGS \"@rx ^x\" \"id:10,phase:1,pass,log,chain\"\n\
               SecRule MATCHED_VARS_NAMES \"@streq ARGS:b\" \"t:none\"\n",
        );
        assert_eq!(fired(&set, "/?a=1&b=xy"), vec![10]);
        assert_eq!(fired(&set, "/?a=xy&b=1"), Vec::<u32>::new());
    }

    #[test]
    fn comparison_and_file_operators() {
        let set = rules_with(
            "SecRule ARGS:n \"@le 10\" \"id:20,phase:1,pass,log\"\n\
             SecRule ARGS:w \"@pmf words.data\" \"id:21,phase:1,pass,log\"\n\
             SecRule REMOTE_ADDR \"@ipMatchFromFile nets.data\" \"id:22,phase:1,pass,log\"\n\
             SecRule REMOTE_ADDR \"!@ipMatchF nets.data\" \"id:23,phase:1,pass,log\"\n",
            &[
                ("./words.data", "# phrases\nsleep(\nbenchmark(\n"),
                ("./nets.data", "# networks\n192.0.2.0/24\n2001:db8::/32\n"),
            ],
        );
        let at = |uri: &str, addr: &str| {
            let request = Request {
                method: "GET".into(),
                uri: uri.into(),
                protocol: "HTTP/1.1".into(),
                remote_addr: addr.into(),
                ..Request::default()
            };
            ids(&evaluate(&set, &request))
        };
        assert_eq!(at("/?n=10", "198.51.100.1"), vec![20, 23]);
        assert_eq!(at("/?n=11", "198.51.100.1"), vec![23]);
        assert_eq!(at("/?w=x%20SLEEP(5)", "192.0.2.9"), vec![21, 22]);
        assert_eq!(at("/?w=asleep", "2001:db8::1"), vec![22]);
    }

    #[test]
    fn skip_jumps_over_the_next_rules() {
        let set = rules(
            "SecRule ARGS:a \"@streq 1\" \"id:30,phase:1,pass,nolog,skip:2\"\n\
             SecAction \"id:31,phase:1,pass,log\"\n\
             SecAction \"id:32,phase:1,pass,log\"\n\
             SecAction \"id:33,phase:1,pass,log\"\n",
        );
        assert_eq!(fired(&set, "/?a=1"), vec![33]);
        assert_eq!(fired(&set, "/?a=2"), vec![31, 32, 33]);
    }

    #[test]
    fn status_and_the_engine_mode_set_per_request_by_ctl() {
        let set = rules(
            "SecRuleEngine On\n\
             SecRule ARGS:mode \"@streq watch\" \"id:40,phase:1,pass,nolog,ctl:ruleEngine=DetectionOnly\"\n\
             SecRule ARGS:x \"@streq bad\" \"id:41,phase:1,deny,status:418,log\"\n",
        );
        let get = |uri: &str| {
            evaluate(
                &set,
                &Request {
                    method: "GET".into(),
                    uri: uri.into(),
                    protocol: "HTTP/1.1".into(),
                    ..Request::default()
                },
            )
        };
        let blocked = get("/?x=bad");
        let stop = blocked.interruption.expect("blocked");
        assert_eq!((stop.rule_id, stop.status, stop.action), (41, 418, "deny"));
        let watched = get("/?mode=watch&x=bad");
        assert_eq!(watched.interruption, None);
        assert_eq!(
            watched.would_interrupt.as_ref().map(|i| i.status),
            Some(418)
        );
        assert_eq!(ids(&watched), vec![41]);
    }

    #[test]
    fn an_engine_that_is_off_evaluates_nothing() {
        let set = rules(
            "SecRuleEngine Off\n\
             SecRule ARGS:x \"@streq bad\" \"id:50,phase:1,deny,log\"\n",
        );
        let request = get("/?x=bad");
        let verdict = evaluate(&set, &request);
        assert!(verdict.matches.is_empty());
        assert_eq!(verdict.interruption, None);
        assert_eq!(verdict.would_interrupt, None);
    }

    #[test]
    fn bodies_over_the_limit_are_refused_or_inspected_in_part() {
        let reject = rules(
            "SecRequestBodyAccess On\nSecRequestBodyLimit 16\nSecRequestBodyLimitAction Reject\n\
             SecRule ARGS_POST \"@contains evil\" \"id:60,phase:2,deny,log\"\n",
        );
        let long = post(
            "/f",
            "application/x-www-form-urlencoded",
            "a=fine&b=fine&c=evil",
        );
        let verdict = evaluate(&reject, &long);
        let stop = verdict.interruption.expect("refused");
        assert_eq!((stop.rule_id, stop.status), (0, 413));
        assert!(verdict.body_error.unwrap().contains("limit of 16 bytes"));
        let short = post("/f", "application/x-www-form-urlencoded", "a=evil");
        assert_eq!(
            evaluate(&reject, &short).interruption.map(|i| i.rule_id),
            Some(60)
        );

        let partial = rules(
            "SecRequestBodyAccess On\nSecRequestBodyLimit 16\nSecRequestBodyLimitAction ProcessPartial\n\
             SecRule ARGS_POST \"@contains evil\" \"id:61,phase:2,deny,log\"\n",
        );
        // Only the first 16 bytes are inspected: `c=evil` lies beyond them.
        assert_eq!(evaluate(&partial, &long).interruption, None);
        let early = post(
            "/f",
            "application/x-www-form-urlencoded",
            "c=evil&a=fine&b=fine",
        );
        assert_eq!(
            evaluate(&partial, &early).interruption.map(|i| i.rule_id),
            Some(61)
        );
    }

    #[test]
    fn persistent_collections_are_ignored_with_a_warning_naming_the_rule() {
        let set = rules(
            "SecAction \"id:70,phase:1,pass,nolog,initcol:ip=%{REMOTE_ADDR},setvar:tx.seen=1\"\n\
             SecRule TX:seen \"@eq 1\" \"id:71,phase:1,pass,log\"\n",
        );
        let warning = set
            .warnings
            .iter()
            .find(|w| w.message.contains("initcol"))
            .expect("a warning for initcol");
        assert_eq!((warning.rule_id, warning.line), (Some(70), 1));
        assert!(warning.message.contains("ignored"), "{}", warning.message);
        // The rest of the rule still runs.
        assert_eq!(fired(&set, "/"), vec![71]);
    }

    #[test]
    fn matched_data_in_the_log_is_cut_at_a_character_boundary() {
        let set = rules(
            "SecRule ARGS:q \"@rx evil\" \"id:80,phase:1,pass,log,\
             logdata:'Matched Data: %{MATCHED_VAR} found within %{MATCHED_VAR_NAME}'\"\n",
        );
        // One ASCII byte, then three-byte characters: byte 128 falls inside one.
        let uri = format!("/?q=x{}evil", "%E2%82%AC".repeat(70));
        let verdict = evaluate(
            &set,
            &Request {
                method: "GET".into(),
                uri,
                protocol: "HTTP/1.1".into(),
                ..Request::default()
            },
        );
        let data = &verdict.matches[0].data;
        assert!(data.starts_with("Matched Data: x€€"), "{data}");
        assert!(data.ends_with('…'), "{data}");
        assert!(
            data.len() <= MATCHED_DATA_MAX + '…'.len_utf8(),
            "{}",
            data.len()
        );
        assert!(data.len() > MATCHED_DATA_MAX - 3, "{}", data.len());
    }

    #[test]
    fn verified_arguments_are_not_inspected_but_still_counted() {
        let set = rules(
            r#"
            SecRule ARGS "@contains forged" "id:1,phase:1,deny,log"
            SecRule ARGS_COMBINED_SIZE "@gt 20" "id:2,phase:1,pass,log"
            SecRule &ARGS_GET "@eq 1" "id:3,phase:1,pass,log"
            "#,
        );
        let mut request = Request {
            method: "GET".into(),
            uri: "/seg.ts?Signature=not-forged-at-all".into(),
            protocol: "HTTP/1.1".into(),
            verified_args: vec!["Signature".into()],
            ..Request::default()
        };
        // `&ARGS_GET` counts the inspected arguments, the combined size all of them.
        assert_eq!(ids(&evaluate(&set, &request)), [2]);
        request.uri = "/seg.ts?Signature=forged&a=b".into();
        request.verified_args.clear();
        assert_eq!(ids(&evaluate(&set, &request)), [1]);
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, -7, 10, 12345, i64::MAX, i64::MIN] {
            let mut out = b"x".to_vec();
            write_number(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn setvar_runs_once_per_matched_value_with_its_captures() {
        let set = rules(
            "SecRule ARGS \"@rx ^(.)\" \"id:1,phase:1,pass,nolog,capture,\
                setvar:'tx.first_%{tx.1}=%{matched_var_name}',setvar:tx.count=+1\"\n\
             SecRule TX:count \"@eq 2\" \"id:2,phase:1,pass\"\n\
             SecRule &TX:/^first_/ \"@eq 2\" \"id:3,phase:1,pass\"\n\
             SecRule TX:first_y \"@streq ARGS:b\" \"id:4,phase:1,pass\"\n",
        );
        // Rule 1 does not log, so it leaves no record; the others prove what it set.
        assert_eq!(fired(&set, "/?a=xx&b=yy"), vec![2, 3, 4]);
    }
}
