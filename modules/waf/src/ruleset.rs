//! Directives into a compiled rule set: every rule's variables, operator (regex,
//! phrase automaton), transformations and actions resolved once, with errors named by
//! file, line and rule id.

use crate::action::{self, Actions, Ctl, Disruptive, EngineMode, Flow, IdRange, SetVar};
use crate::macros::Template;
use crate::operator::Operator;
use crate::seclang::{self, Directive};
use crate::transform::Transform;
use crate::variable::Targets;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Where rule files come from: a directory on disk (the CLI, the node) or files in
/// memory (the Wasm module, whose rules arrive with its config).
pub trait RuleSource {
    /// The text of a file; `path` is as the rules name it, relative to the including
    /// file's folder already resolved.
    fn read(&self, path: &str) -> Result<String, String>;
    /// The files a pattern with `*` names, sorted (`Include rules/*.conf`).
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String>;
}

/// Files held in memory, by path.
#[derive(Clone, Debug, Default)]
pub struct MemorySource {
    pub files: BTreeMap<String, String>,
}

impl RuleSource for MemorySource {
    fn read(&self, path: &str) -> Result<String, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| "no such file".to_string())
    }

    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        Ok(self
            .files
            .keys()
            .filter(|p| glob_match(pattern, p))
            .cloned()
            .collect())
    }
}

/// `*` matches any run of characters except `/`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

/// One problem in a rule set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub rule_id: Option<u32>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(id) = self.rule_id {
            write!(f, " (rule {id})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A rule set that does not load: every error found, not just the first.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{} error(s) in the rule set; first: {}", .errors.len(), .errors.first().map(|e| e.to_string()).unwrap_or_default())]
pub struct LoadError {
    pub errors: Vec<Problem>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Load what compiles and report the rest as skipped, instead of refusing the set.
    pub skip_errors: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLimitAction {
    /// 413 (in blocking mode) for a body over the limit.
    Reject,
    /// Inspect the first `limit` bytes.
    ProcessPartial,
}

#[derive(Clone, Debug)]
pub struct BodyConfig {
    pub access: bool,
    /// `SecRequestBodyLimit`: bytes of body the WAF reads.
    pub limit: usize,
    /// `SecRequestBodyNoFilesLimit`: bytes excluding file parts.
    pub no_files_limit: usize,
    pub limit_action: BodyLimitAction,
    pub json_depth: usize,
    /// `SecArgumentsLimit`.
    pub arguments_limit: usize,
}

impl Default for BodyConfig {
    fn default() -> Self {
        BodyConfig {
            access: true,
            limit: 1 << 20,
            no_files_limit: 128 << 10,
            limit_action: BodyLimitAction::Reject,
            json_depth: 512,
            arguments_limit: 1000,
        }
    }
}

/// One condition of a rule: `SecRule VARIABLES OPERATOR` with its transformations and the
/// actions that run when the whole chain matches.
#[derive(Debug)]
pub struct Link {
    pub line: usize,
    /// `None` for `SecAction` (matches unconditionally).
    pub targets: Option<Targets>,
    pub operator: Operator,
    pub negated: bool,
    pub transforms: Vec<Transform>,
    /// The same number for every link with the same transformation list, so a request
    /// transforms each value once per list, however many rules use it.
    pub chain: u32,
    pub capture: bool,
    pub multi_match: bool,
    pub setvars: Vec<SetVar>,
    pub ctls: Vec<Ctl>,
    /// Set when a literal prefilter can rule this link out (see `prefilter`).
    pub prefilter: Option<crate::prefilter::Slot>,
    /// The link's number among those whose result depends on the value alone (see
    /// `memo`): a value it did not match can be remembered as clean for it.
    pub memo: Option<u32>,
    /// With `memo`: the value sets (`RuleSet::memo_sets`) its targets read, when they all
    /// read request data; empty when some target does not (a count, TX). A link whose
    /// number is clean for every value of these sets is skipped whole.
    pub memo_sets: Box<[u32]>,
}

#[derive(Debug)]
pub struct Rule {
    pub id: u32,
    pub phase: u8,
    pub file: Arc<str>,
    pub line: usize,
    /// The rule, then each rule chained to it.
    pub links: Vec<Link>,
    pub msg: Option<Template>,
    pub logdata: Option<Template>,
    pub tags: Arc<[String]>,
    pub severity: Option<u8>,
    pub ver: Option<String>,
    /// With `block` resolved to the phase's default action.
    pub disruptive: Disruptive,
    pub status: u16,
    pub log: bool,
    pub auditlog: bool,
    pub flow: Option<Flow>,
    /// Its outcome when known at load (see `fold`).
    pub fold: Option<Box<crate::fold::Fold>>,
}

impl Rule {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

#[derive(Debug)]
pub enum Item {
    Rule(Rule),
    Marker(String),
}

/// A compiled rule set, ready for any number of requests.
#[derive(Debug)]
pub struct RuleSet {
    /// Items per phase (index 0 is phase 1), in file order.
    pub phases: [Vec<Item>; 5],
    /// For a rule with `skipAfter`, the index in its phase after the marker it names
    /// (the phase's length when there is none), resolved once at load: CRS skips whole
    /// paranoia-level sections this way on every request.
    pub(crate) skip_after: [Vec<usize>; 5],
    pub engine: EngineMode,
    pub body: BodyConfig,
    /// The literal prefilters of the `@rx` links that have one.
    pub(crate) prefilters: crate::prefilter::Prefilters,
    /// How many links have a `memo` number.
    pub(crate) memo_links: usize,
    /// The distinct request-data targets of those links (a collection and a selector, no
    /// exclusions): a link reads a subset of the values of each of its sets.
    pub(crate) memo_sets: Vec<crate::variable::Target>,
    /// Different for every rule set loaded in this process, so remembered results of one
    /// are never read for another.
    pub(crate) id: u64,
    /// Where phase 1 starts for every request, and with what (see `fold`).
    pub(crate) start: crate::fold::Start,
    /// Rules dropped because they did not compile (with `skip_errors`) and accepted
    /// directives or actions that have no effect here.
    pub warnings: Vec<Problem>,
}

impl RuleSet {
    pub fn rule_count(&self) -> usize {
        self.rules().count()
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.phases.iter().flatten().filter_map(|i| match i {
            Item::Rule(r) => Some(r),
            Item::Marker(_) => None,
        })
    }

    /// The same rules with every link evaluated in full (no literal prefilter): what the
    /// prefilter must never differ from, for tests and measurements.
    pub fn without_prefilters(mut self) -> RuleSet {
        for item in self.phases.iter_mut().flatten() {
            if let Item::Rule(rule) = item {
                rule.links.iter_mut().for_each(|l| l.prefilter = None);
            }
        }
        self.prefilters = Default::default();
        self
    }

    /// How many links can remember values as clean, of how many that read variables, and
    /// in how many distinct value sets.
    pub fn remembering(&self) -> (usize, usize, usize) {
        let reading = self
            .rules()
            .flat_map(|r| &r.links)
            .filter(|l| l.targets.is_some())
            .count();
        (self.memo_links, reading, self.memo_sets.len())
    }

    /// How many links a literal prefilter can rule out, and in how many groups.
    pub fn prefiltered(&self) -> (usize, usize) {
        let links = self
            .rules()
            .flat_map(|r| &r.links)
            .filter(|l| l.prefilter.is_some())
            .count();
        (links, self.prefilters.groups.len())
    }

    /// Loads `entries` (files, in order) with the `Include`s they make.
    pub fn load(
        source: &dyn RuleSource,
        entries: &[String],
        options: LoadOptions,
    ) -> Result<RuleSet, LoadError> {
        let mut loader = Loader {
            source,
            set: RuleSet {
                phases: Default::default(),
                skip_after: Default::default(),
                engine: EngineMode::On,
                body: BodyConfig::default(),
                prefilters: Default::default(),
                memo_links: 0,
                memo_sets: Vec::new(),
                id: 0,
                start: Default::default(),
                warnings: Vec::new(),
            },
            defaults: Default::default(),
            errors: Vec::new(),
            pending: None,
            ids: BTreeMap::new(),
            depth: 0,
            chains: Default::default(),
        };
        for entry in entries {
            loader.file(entry);
        }
        loader.finish_chain_at_end();
        if !loader.errors.is_empty() && !options.skip_errors {
            return Err(LoadError {
                errors: loader.errors,
            });
        }
        let mut set = loader.set;
        set.warnings.extend(loader.errors.into_iter().map(|mut e| {
            e.message = format!("skipped: {}", e.message);
            e
        }));
        set.resolve_skips();
        set.prefilters = crate::prefilter::build(&mut set.phases);
        set.number_memo_links();
        crate::fold::fold(&mut set);
        static LOADED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        set.id = LOADED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(set)
    }

    /// Numbers the links whose verdict on a value depends on the value alone: they read
    /// request variables through pure transformations and an operator without macros.
    fn number_memo_links(&mut self) {
        let mut n = 0u32;
        let mut sets: BTreeMap<String, u32> = BTreeMap::new();
        for item in self.phases.iter_mut().flatten() {
            let Item::Rule(rule) = item else { continue };
            for link in &mut rule.links {
                let Some(targets) = &link.targets else {
                    continue;
                };
                if !link.operator.is_pure() {
                    continue;
                }
                link.memo = Some(n);
                n += 1;
                let request_data = targets
                    .include
                    .iter()
                    .all(|t| !t.count && crate::prefilter::sources(t.collection).is_some());
                if !request_data {
                    continue;
                }
                link.memo_sets = targets
                    .include
                    .iter()
                    .map(|t| {
                        let key = format!("{:?} {:?}", t.collection, t.selector);
                        let next = self.memo_sets.len() as u32;
                        *sets.entry(key).or_insert_with(|| {
                            self.memo_sets.push(t.clone());
                            next
                        })
                    })
                    .collect();
            }
        }
        self.memo_links = n as usize;
    }

    /// The same rules with every rule evaluated per request (no outcome known at load):
    /// what folding must never differ from, for tests and measurements.
    pub fn without_folds(mut self) -> RuleSet {
        for item in self.phases.iter_mut().flatten() {
            if let Item::Rule(rule) = item {
                rule.fold = None;
            }
        }
        self.start = Default::default();
        self
    }

    /// How many rules have an outcome known at load, and how many TX variables every
    /// transaction starts with.
    pub fn folded(&self) -> (usize, usize) {
        (
            self.rules().filter(|r| r.fold.is_some()).count(),
            self.start.tx.len(),
        )
    }

    /// The same rules with no link remembered as clean for a value: what the memo must
    /// never differ from, for tests and measurements.
    pub fn without_memo(mut self) -> RuleSet {
        for item in self.phases.iter_mut().flatten() {
            if let Item::Rule(rule) = item {
                rule.links.iter_mut().for_each(|l| {
                    l.memo = None;
                    l.memo_sets = Box::default();
                });
            }
        }
        self.memo_links = 0;
        self.memo_sets.clear();
        self
    }

    fn resolve_skips(&mut self) {
        for (phase, items) in self.phases.iter().enumerate() {
            let targets = items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Item::Rule(Rule {
                        flow: Some(Flow::SkipAfter(marker)),
                        ..
                    }) => items[i + 1..]
                        .iter()
                        .position(|it| matches!(it, Item::Marker(m) if m == marker))
                        .map_or(items.len(), |at| i + 1 + at + 1),
                    _ => items.len(),
                })
                .collect();
            self.skip_after[phase] = targets;
        }
    }

    /// Loads a list of rule files and folders from disk (folders: their `*.conf` files in
    /// name order).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_paths(
        paths: &[std::path::PathBuf],
        options: LoadOptions,
    ) -> Result<RuleSet, LoadError> {
        let mut entries = Vec::new();
        for path in paths {
            if path.is_dir() {
                let pattern = format!("{}/*.conf", path.display());
                match DiskSource.glob(&pattern) {
                    Ok(files) => entries.extend(files),
                    Err(message) => {
                        return Err(LoadError {
                            errors: vec![Problem {
                                file: path.display().to_string(),
                                line: 0,
                                rule_id: None,
                                message,
                            }],
                        })
                    }
                }
            } else {
                entries.push(path.display().to_string());
            }
        }
        RuleSet::load(&DiskSource, &entries, options)
    }
}

/// Rule files on the local disk.
#[cfg(not(target_arch = "wasm32"))]
pub struct DiskSource;

#[cfg(not(target_arch = "wasm32"))]
impl RuleSource for DiskSource {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        let (dir, name) = match pattern.rsplit_once('/') {
            Some((d, n)) => (if d.is_empty() { "/" } else { d }, n),
            None => (".", pattern),
        };
        if dir.contains('*') {
            return Err(format!("`{pattern}`: `*` is only allowed in the file name"));
        }
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{dir}: {e}"))? {
            let entry = entry.map_err(|e| e.to_string())?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if glob_match(name, &file) && entry.path().is_file() {
                out.push(format!("{}/{}", dir.trim_end_matches('/'), file));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A rule whose `chain` is still open: the next `SecRule` joins it.
struct Pending {
    rule: Rule,
    open: bool,
}

struct Loader<'a> {
    source: &'a dyn RuleSource,
    set: RuleSet,
    /// `SecDefaultAction` per phase.
    defaults: [Option<Actions>; 5],
    errors: Vec<Problem>,
    pending: Option<Pending>,
    /// Where each id was defined, to refuse duplicates.
    ids: BTreeMap<u32, (String, usize)>,
    depth: usize,
    /// Transformation lists seen so far, numbered (`Link::chain`).
    chains: std::cell::RefCell<std::collections::HashMap<Vec<Transform>, u32>>,
}

impl Loader<'_> {
    fn chain_id(&self, transforms: &[Transform]) -> u32 {
        let mut chains = self.chains.borrow_mut();
        let next = chains.len() as u32;
        *chains.entry(transforms.to_vec()).or_insert(next)
    }

    fn problem(
        &mut self,
        file: &str,
        line: usize,
        rule_id: Option<u32>,
        message: impl Into<String>,
    ) {
        self.errors.push(Problem {
            file: file.to_string(),
            line,
            rule_id,
            message: message.into(),
        });
    }

    fn warn(&mut self, file: &str, line: usize, rule_id: Option<u32>, message: impl Into<String>) {
        self.set.warnings.push(Problem {
            file: file.to_string(),
            line,
            rule_id,
            message: message.into(),
        });
    }

    fn file(&mut self, path: &str) {
        if self.depth > 16 {
            self.problem(path, 0, None, "Include nested more than 16 deep (a loop?)");
            return;
        }
        let text = match self.source.read(path) {
            Ok(t) => t,
            Err(e) => return self.problem(path, 0, None, format!("cannot read: {e}")),
        };
        let directives = match seclang::directives(&text) {
            Ok(d) => d,
            Err(e) => return self.problem(path, e.line, None, e.reason),
        };
        let file: Arc<str> = Arc::from(path);
        for d in directives {
            self.directive(&file, d);
        }
    }

    fn directive(&mut self, file: &Arc<str>, d: Directive) {
        let name = d.name.to_ascii_lowercase();
        // Anything but a SecRule closes an open chain: the chain was incomplete.
        if name != "secrule" {
            if let Some(p) = &self.pending {
                if p.open {
                    let (line, id) = (p.rule.line, p.rule.id);
                    self.pending = None;
                    self.problem(file, line, Some(id), "chain without a following SecRule");
                }
            }
            self.flush();
        }
        let arity = |n: usize| -> Result<(), String> {
            if d.args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{} takes {n} argument(s), got {}",
                    d.name,
                    d.args.len()
                ))
            }
        };
        let result: Result<(), String> = (|| match name.as_str() {
            "secrule" => {
                if d.args.len() != 2 && d.args.len() != 3 {
                    return Err(format!(
                        "SecRule takes VARIABLES OPERATOR [ACTIONS], got {} argument(s)",
                        d.args.len()
                    ));
                }
                let actions = d.args.get(2).map(String::as_str).unwrap_or("");
                self.rule(file, d.line, Some((&d.args[0], &d.args[1])), actions)
            }
            "secaction" => {
                arity(1)?;
                self.rule(file, d.line, None, &d.args[0])
            }
            "secmarker" => {
                arity(1)?;
                for phase in &mut self.set.phases {
                    phase.push(Item::Marker(d.args[0].clone()));
                }
                Ok(())
            }
            "secdefaultaction" => {
                arity(1)?;
                let a = action::parse(&d.args[0])?;
                let phase = a.phase.ok_or("SecDefaultAction needs a phase")?;
                if a.id.is_some() || a.chain || a.flow.is_some() {
                    return Err("SecDefaultAction cannot carry id, chain, skip or skipAfter".into());
                }
                match a.disruptive {
                    None => {
                        return Err(
                            "SecDefaultAction needs a disruptive action (pass, deny, block...)"
                                .into(),
                        )
                    }
                    Some(Disruptive::Block) => {
                        return Err("SecDefaultAction cannot be `block`".into())
                    }
                    _ => {}
                }
                self.defaults[phase as usize - 1] = Some(a);
                Ok(())
            }
            "secruleengine" => {
                arity(1)?;
                self.set.engine =
                    EngineMode::parse(&d.args[0]).ok_or("takes On, Off or DetectionOnly")?;
                Ok(())
            }
            "secrequestbodyaccess" => {
                arity(1)?;
                self.set.body.access = on_off(&d.args[0])?;
                Ok(())
            }
            "secrequestbodylimit" => {
                arity(1)?;
                self.set.body.limit = size(&d.args[0])?;
                Ok(())
            }
            "secrequestbodynofileslimit" => {
                arity(1)?;
                self.set.body.no_files_limit = size(&d.args[0])?;
                Ok(())
            }
            "secrequestbodyjsondepthlimit" => {
                arity(1)?;
                self.set.body.json_depth = size(&d.args[0])?;
                Ok(())
            }
            "secargumentslimit" => {
                arity(1)?;
                self.set.body.arguments_limit = size(&d.args[0])?;
                Ok(())
            }
            "secrequestbodylimitaction" => {
                arity(1)?;
                self.set.body.limit_action = match d.args[0].to_ascii_lowercase().as_str() {
                    "reject" => BodyLimitAction::Reject,
                    "processpartial" => BodyLimitAction::ProcessPartial,
                    _ => return Err("takes Reject or ProcessPartial".into()),
                };
                Ok(())
            }
            "secruleremovebyid" => {
                let ranges = action::id_ranges(&d.args.join(" "))?;
                self.remove(|r| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&r.id)));
                Ok(())
            }
            "secruleremovebytag" => {
                arity(1)?;
                let tag = d.args[0].clone();
                self.remove(|r| r.has_tag(&tag));
                Ok(())
            }
            "secruleremovebymsg" => {
                arity(1)?;
                let msg = d.args[0].clone();
                self.remove(|r| r.msg.as_ref().and_then(|m| m.literal()) == Some(msg.as_str()));
                Ok(())
            }
            "secruleupdatetargetbyid" | "secruleupdatetargetbytag" => {
                if d.args.len() != 2 {
                    return Err(format!("{} takes ID|TAG VARIABLES", d.name));
                }
                let targets = seclang::targets(&d.args[1])?;
                let by_id = name == "secruleupdatetargetbyid";
                let ranges = if by_id {
                    action::id_ranges(&d.args[0])?
                } else {
                    Vec::new()
                };
                let mut found = false;
                for item in self.set.phases.iter_mut().flatten() {
                    if let Item::Rule(r) = item {
                        let hit = if by_id {
                            in_ranges(&ranges, r.id)
                        } else {
                            r.has_tag(&d.args[0])
                        };
                        if hit {
                            found = true;
                            if let Some(t) = r.links[0].targets.as_mut() {
                                for raw in &targets {
                                    t.add(raw)?;
                                }
                            }
                        }
                    }
                }
                if !found {
                    return Err(format!(
                        "no rule matches `{}` (update directives must come after the rules)",
                        d.args[0]
                    ));
                }
                Ok(())
            }
            "include" => {
                arity(1)?;
                let target = relative_to(file, &d.args[0]);
                let files = if target.contains('*') {
                    self.source.glob(&target)?
                } else {
                    vec![target]
                };
                self.depth += 1;
                for f in files {
                    self.file(&f);
                }
                self.depth -= 1;
                Ok(())
            }
            // Accepted for compatibility with ModSecurity configurations; they configure
            // logging, storage or response inspection, which this engine does not do.
            "seccomponentsignature"
            | "seccollectiontimeout"
            | "secresponsebodyaccess"
            | "secresponsebodymimetype"
            | "secresponsebodylimit"
            | "secresponsebodylimitaction"
            | "secauditengine"
            | "secauditlog"
            | "secauditlogparts"
            | "secauditlogtype"
            | "secauditlogformat"
            | "secauditlogrelevantstatus"
            | "secauditlogstoragedir"
            | "secauditlogdirmode"
            | "secauditlogfilemode"
            | "secdebuglog"
            | "secdebugloglevel"
            | "sectmpdir"
            | "secdatadir"
            | "secuploaddir"
            | "secuploadkeepfiles"
            | "secpcrematchlimit"
            | "secpcrematchlimitrecursion"
            | "secunicodemapfile"
            | "secargumentseparator"
            | "seccookieformat"
            | "secstatusengine"
            | "secserversignature"
            | "sechashengine"
            | "sectmpsaveuploadedfiles"
            | "secuploadfilemode"
            | "secuploadfilelimit"
            | "secxmlexternalentity"
            | "secrequestbodyinmemorylimit"
            | "secgeolookupdb"
            | "secwebappid"
            | "secsensorid" => {
                if name != "seccomponentsignature" {
                    self.warn(
                        file,
                        d.line,
                        None,
                        format!("{} has no effect in this engine", d.name),
                    );
                }
                Ok(())
            }
            _ => Err(format!("unknown directive `{}`", d.name)),
        })();
        if let Err(message) = result {
            let id = d.args.iter().find_map(|a| id_in(a));
            self.problem(file, d.line, id, message);
        }
    }

    /// Removes already-loaded rules (ModSecurity applies removal to the rules before the
    /// directive, which is how CRS exclusion files work).
    fn remove(&mut self, doomed: impl Fn(&Rule) -> bool) {
        for phase in &mut self.set.phases {
            phase.retain(|i| !matches!(i, Item::Rule(r) if doomed(r)));
        }
    }

    fn rule(
        &mut self,
        file: &Arc<str>,
        line: usize,
        condition: Option<(&str, &str)>,
        actions: &str,
    ) -> Result<(), String> {
        let a = action::parse(actions)?;
        for ignored in &a.ignored {
            self.warn(file, line, a.id, format!("{ignored} ignored"));
        }
        let source = self.source;
        let link = |a: &Actions, defaults: Option<&Actions>| -> Result<Link, String> {
            let (targets, operator, negated) = match condition {
                Some((vars, op)) => {
                    let raw = seclang::operator(op);
                    let dir = file.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
                    let data = move |name: &str| -> Result<String, String> {
                        let path = if name.starts_with('/') {
                            name.to_string()
                        } else {
                            format!("{dir}/{name}")
                        };
                        source
                            .read(&path)
                            .map_err(|e| format!("data file `{path}`: {e}"))
                    };
                    let operator = Operator::compile(&raw.name, &raw.argument, &data)?;
                    (
                        Some(Targets::parse(&seclang::targets(vars)?)?),
                        operator,
                        raw.negated,
                    )
                }
                None => (None, Operator::UnconditionalMatch, false),
            };
            let mut transforms = Vec::new();
            if let Some(d) = defaults {
                if !a.transforms_reset {
                    transforms.extend(d.transforms.iter().copied());
                }
            }
            transforms.extend(a.transforms.iter().copied());
            Ok(Link {
                line,
                targets,
                operator,
                negated,
                transforms,
                chain: 0,
                capture: a.capture,
                multi_match: a.multi_match,
                setvars: a.setvars.clone(),
                ctls: a.ctls.clone(),
                prefilter: None,
                memo: None,
                memo_sets: Box::default(),
            })
        };

        // A link of an open chain: only its condition, transformations and setvar/ctl.
        if let Some(p) = self.pending.as_mut().filter(|p| p.open) {
            if a.id.is_some() || a.phase.is_some() || a.disruptive.is_some() || a.flow.is_some() {
                return Err(format!(
                    "a chained rule cannot carry id, phase, disruptive actions, skip or skipAfter (chain of rule {})",
                    p.rule.id
                ));
            }
            let phase = p.rule.phase as usize;
            let mut next = link(&a, self.defaults[phase - 1].as_ref())?;
            next.chain = self.chain_id(&next.transforms);
            let p = self.pending.as_mut().expect("checked above");
            p.rule.links.push(next);
            p.open = a.chain;
            if !p.open {
                self.flush();
            }
            return Ok(());
        }
        self.flush();

        let id = a.id.ok_or("every rule needs an `id`")?;
        if let Some((f, l)) = self.ids.get(&id) {
            return Err(format!("duplicate rule id {id} (first defined at {f}:{l})"));
        }
        let phase = a.phase.unwrap_or(2);
        let defaults = self.defaults[phase as usize - 1].as_ref();
        let mut first = link(&a, defaults)?;
        first.chain = self.chain_id(&first.transforms);
        let disruptive = match a.disruptive.clone() {
            Some(Disruptive::Block) | None => defaults
                .and_then(|d| d.disruptive.clone())
                .unwrap_or(Disruptive::Pass),
            Some(d) => d,
        };
        let status = a
            .status
            .or_else(|| defaults.and_then(|d| d.status))
            .unwrap_or(403);
        let rule = Rule {
            id,
            phase,
            file: file.clone(),
            line,
            links: vec![first],
            msg: a.msg.clone(),
            logdata: a.logdata.clone(),
            tags: a.tags.clone().into(),
            severity: a.severity,
            ver: a.ver.clone(),
            disruptive,
            status,
            log: a
                .log
                .or_else(|| defaults.and_then(|d| d.log))
                .unwrap_or(true),
            auditlog: a
                .auditlog
                .or_else(|| defaults.and_then(|d| d.auditlog))
                .unwrap_or(true),
            flow: a.flow.clone(),
            fold: None,
        };
        self.ids.insert(id, (file.to_string(), line));
        self.pending = Some(Pending {
            rule,
            open: a.chain,
        });
        if !a.chain {
            self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) {
        if let Some(p) = self.pending.take() {
            if p.open {
                self.pending = Some(p);
                return;
            }
            let phase = p.rule.phase as usize - 1;
            self.set.phases[phase].push(Item::Rule(p.rule));
        }
    }

    fn finish_chain_at_end(&mut self) {
        if let Some(p) = self.pending.take() {
            if p.open {
                let (file, line, id) = (p.rule.file.to_string(), p.rule.line, p.rule.id);
                self.problem(&file, line, Some(id), "chain without a following SecRule");
            } else {
                self.pending = Some(p);
                self.flush();
            }
        }
    }
}

pub fn in_ranges(ranges: &[IdRange], id: u32) -> bool {
    ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&id))
}

fn relative_to(file: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    match file.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{target}"),
        None => target.to_string(),
    }
}

fn on_off(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{value}` is not On or Off")),
    }
}

fn size(value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a size in bytes"))
}

/// The `id:N` of an action list, for naming a rule that failed to load.
fn id_in(actions: &str) -> Option<u32> {
    let at = actions.find("id:")?;
    if at > 0 && actions.as_bytes()[at - 1].is_ascii_alphanumeric() {
        return None;
    }
    let digits: String = actions[at + 3..]
        .trim_start_matches('\'')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RuleSet, LoadError> {
        let mut files = MemorySource::default();
        files.files.insert("rules/main.conf".into(), text.into());
        files
            .files
            .insert("rules/words.data".into(), "alpha\nbeta\n".into());
        files.files.insert(
            "rules/extra/a.conf".into(),
            "SecAction \"id:10,phase:1,pass,nolog\"".into(),
        );
        files.files.insert(
            "rules/extra/b.conf".into(),
            "SecAction \"id:11,phase:1,pass,nolog\"".into(),
        );
        RuleSet::load(&files, &["rules/main.conf".into()], LoadOptions::default())
    }

    #[test]
    fn chains_defaults_and_includes_load() {
        let set = load(
            "SecDefaultAction \"phase:2,log,auditlog,pass\"\n\
             Include extra/*.conf\n\
             SecRule ARGS \"@pmFromFile words.data\" \"id:1,phase:2,block,t:lowercase,chain\"\n\
             \tSecRule MATCHED_VARS \"@rx a\" \"t:none,setvar:tx.x=1\"\n\
             SecMarker END\n",
        )
        .unwrap();
        assert_eq!(set.rule_count(), 3);
        let rule = set.rules().find(|r| r.id == 1).unwrap();
        assert_eq!(rule.links.len(), 2);
        assert_eq!(
            rule.disruptive,
            Disruptive::Pass,
            "block resolves to the default"
        );
        assert!(rule.log);
        assert_eq!(set.phases[0].len(), 3, "two includes and the marker");
    }

    #[test]
    fn every_error_is_named_by_file_line_and_id() {
        let e = load(
            "SecRule ARGS \"@rx (\" \"id:5,deny\"\n\
             SecRule ARGS \"@rx a\" \"deny\"\n\
             SecRule NOPE \"@rx a\" \"id:6\"\n\
             SecRule ARGS \"@rx a\" \"id:7,chain\"\n\
             SecAction \"id:8\"\n\
             SecRule ARGS \"@rx a\" \"id:8\"\n\
             SecFrobnicate On\n\
             SecRule ARGS \"@pmFromFile none.data\" \"id:9\"\n",
        )
        .unwrap_err();
        let shown: Vec<String> = e.errors.iter().map(|p| p.to_string()).collect();
        assert!(
            shown[0].starts_with("rules/main.conf:1 (rule 5): regular expression does not compile"),
            "{shown:?}"
        );
        assert!(
            shown[1].contains(":2: every rule needs an `id`"),
            "{shown:?}"
        );
        assert!(
            shown[2].contains(":3 (rule 6): unknown variable `NOPE`"),
            "{shown:?}"
        );
        assert!(
            shown[3].contains(":4 (rule 7): chain without a following SecRule"),
            "{shown:?}"
        );
        assert!(
            shown[4].contains(":6 (rule 8): duplicate rule id 8"),
            "{shown:?}"
        );
        assert!(
            shown[5].contains(":7: unknown directive `SecFrobnicate`"),
            "{shown:?}"
        );
        assert!(shown[6].contains("rules/none.data"), "{shown:?}");
        assert_eq!(shown.len(), 7);
    }

    #[test]
    fn skip_errors_keeps_the_good_rules_and_says_what_it_skipped() {
        let mut files = MemorySource::default();
        files.files.insert(
            "r.conf".into(),
            "SecRule ARGS \"@rx (\" \"id:5\"\nSecRule ARGS \"@rx a\" \"id:6\"\n".into(),
        );
        let set = RuleSet::load(
            &files,
            &["r.conf".into()],
            LoadOptions { skip_errors: true },
        )
        .unwrap();
        assert_eq!(set.rule_count(), 1);
        assert!(set
            .warnings
            .iter()
            .any(|w| w.rule_id == Some(5) && w.message.starts_with("skipped:")));
    }

    #[test]
    fn removal_and_target_updates_apply_to_earlier_rules() {
        let set = load(
            "SecRule ARGS \"@rx a\" \"id:1,tag:'x'\"\n\
             SecRule ARGS \"@rx a\" \"id:2,tag:'y'\"\n\
             SecRule ARGS \"@rx a\" \"id:3\"\n\
             SecRuleRemoveById 1\n\
             SecRuleRemoveByTag y\n\
             SecRuleUpdateTargetById 3 \"!ARGS:foo|REQUEST_HEADERS\"\n",
        )
        .unwrap();
        let ids: Vec<u32> = set.rules().map(|r| r.id).collect();
        assert_eq!(ids, vec![3]);
        let t = set.rules().next().unwrap().links[0]
            .targets
            .as_ref()
            .unwrap();
        assert_eq!(t.include.len(), 2);
        assert_eq!(t.exclude.len(), 1);
        let e = load("SecRuleUpdateTargetById 99 \"!ARGS:foo\"\n").unwrap_err();
        assert!(e.errors[0].message.contains("no rule matches"));
    }

    #[test]
    fn globs_match_file_names() {
        assert!(glob_match("rules/*.conf", "rules/REQUEST-901.conf"));
        assert!(!glob_match("rules/*.conf", "rules/sub/x.conf"));
        assert!(!glob_match("rules/*.conf", "rules/x.data"));
    }
}
