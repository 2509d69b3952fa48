//! Rules whose outcome is known before any request arrives, decided once at load.
//!
//! CRS reads its own settings on every request: its initialization rules set some sixty
//! TX variables from constants, and every rule file opens with paranoia-level checks
//! (`SecRule TX:DETECTION_PARANOIA_LEVEL "@lt 2" "...,skipAfter:END-..."`) whose answer
//! depends on the route's configuration alone. A walk over the request phases at load
//! follows what TX holds: a variable is *known* while every rule that may have written it
//! so far wrote a constant on every path to that point. A rule that reads only known TX
//! variables has a known outcome, computed once by evaluating it on a probe transaction,
//! and is folded ([`Fold`]): per request it costs a lookup.
//!
//! - A rule certain to run (no rule whose outcome depends on the request jumps over it,
//!   no ctl met before may remove it) that only sets TX variables and steers, none of them
//!   read or written per request by an earlier rule, is folded with its writes moved into
//!   the state every transaction starts from ([`Start`]).
//! - Any rule whose first link never matches is folded: it has no effect (only that link's
//!   targets and operator argument need be known).
//! - A one-link rule that always matches and only steers (`pass`, `nolog`, no setvar, ctl
//!   or capture) is folded, wherever it is.
//!
//! Folded rules still honour per-request removals (`ctl:ruleRemoveById`), which are checked
//! before a rule's outcome is. A rule that a ctl met earlier may remove is not certain to
//! run (what it writes is not known afterwards, the rules it jumps over may run), and a ctl
//! that may remove TX targets from rules ends the folding there.

use crate::action::{Ctl, Disruptive, Flow, IdRange, SetVar};
use crate::macros::Template;
use crate::request::Request;
use crate::ruleset::BodyLimitAction;
use crate::ruleset::{in_ranges, Item, Link, Rule, RuleSet};
use crate::transaction::{Probe, TxMap, SCORE_VARIABLES};
use crate::variable::{Collection, Selector};
use std::collections::HashSet;

/// A rule's outcome, known at load.
#[derive(Debug)]
pub struct Fold {
    pub matches: bool,
    /// The last value it matched, MATCHED_VAR once it has run.
    pub leaves: Option<(String, Vec<u8>)>,
}

/// What every transaction starts from.
#[derive(Debug, Default)]
pub struct Start {
    /// The TX variables the folded rules certain to run set.
    pub(crate) tx: TxMap,
}

/// Decides the folds of `set` and its start. The rule set must not have been folded.
pub(crate) fn fold(set: &mut RuleSet) {
    let (start, folds) = {
        let request = Request::default();
        let shared: &RuleSet = set;
        let mut walk = Walk {
            set: shared,
            probe: Probe::new(shared, &request),
            unknown: Access::default(),
            per_request: Access::default(),
            may_have_ended: false,
            removable_ids: Vec::new(),
            removable_tags: Vec::new(),
            start: Start::default(),
            folds: Vec::new(),
        };
        walk.run();
        (walk.start, walk.folds)
    };
    for (phase, index, fold) in folds {
        if let Item::Rule(rule) = &mut set.phases[phase][index] {
            rule.fold = Some(Box::new(fold));
        }
    }
    set.start = start;
}

/// A set of TX variables, by name, by the prefix of names built with a macro
/// (`setvar:tx.header_name_%{tx.0}`) and by the selectors of `TX:/regex/` targets.
#[derive(Default)]
struct Access {
    keys: HashSet<String>,
    /// "" is every key.
    prefixes: Vec<String>,
    selectors: Vec<Selector>,
}

impl Access {
    fn contains(&self, key: &str) -> bool {
        self.keys.contains(key)
            || self.prefixes.iter().any(|p| key.starts_with(p))
            || self.selectors.iter().any(|s| s.matches(key.as_bytes()))
    }

    fn add_template_key(&mut self, key: &Template) {
        match key.literal() {
            Some(k) => {
                self.keys.insert(k.to_string());
            }
            None => self.prefixes.push(key.literal_prefix().to_string()),
        }
    }

    /// What the links may write.
    fn add_writes(&mut self, links: &[Link]) {
        for link in links {
            if link.capture {
                self.keys.extend((0..10).map(|n| n.to_string()));
            }
            for setvar in &link.setvars {
                self.add_template_key(setvar_key(setvar));
            }
        }
    }

    /// What the rule may read: TX targets, macros, the variables `=+`/`=-` change.
    fn add_reads(&mut self, rule: &Rule) {
        let mut templates: Vec<&Template> = rule.msg.iter().chain(&rule.logdata).collect();
        if let Disruptive::Redirect(t) = &rule.disruptive {
            templates.push(t);
        }
        for link in &rule.links {
            for t in link.targets.iter().flat_map(|t| &t.include) {
                if t.collection == Collection::Tx {
                    match &t.selector {
                        Selector::Key(k) => {
                            self.keys.insert(k.clone());
                        }
                        selector => self.selectors.push(selector.clone()),
                    }
                }
            }
            templates.extend(link.operator.template());
            for setvar in &link.setvars {
                match setvar {
                    SetVar::Set { key, value } => templates.extend([key, value]),
                    SetVar::Add { key, value } | SetVar::Sub { key, value } => {
                        self.add_template_key(key);
                        templates.extend([key, value]);
                    }
                    SetVar::Delete { key } => templates.push(key),
                }
            }
        }
        for var in templates.into_iter().flat_map(|t| t.vars()) {
            if var.collection == "TX" {
                match &var.key {
                    Some(k) => self.keys.insert(k.clone()),
                    None => {
                        self.prefixes.push(String::new());
                        true
                    }
                };
            }
        }
    }
}

struct Walk<'r> {
    set: &'r RuleSet,
    probe: Probe<'r>,
    /// TX variables whose value at this point may differ per request.
    unknown: Access,
    /// TX variables that rules evaluated per request so far may read or write.
    per_request: Access,
    /// A request may have ended before this point (a rule evaluated per request may deny,
    /// drop, redirect or allow; phase 2 after a body over the limit): the verdict, which
    /// reads the anomaly score from TX, may come from here, so no write to the score
    /// variables moves into the start past it.
    may_have_ended: bool,
    /// Rules that a ctl met so far may remove per request: they are not certain to run.
    removable_ids: Vec<IdRange>,
    removable_tags: Vec<String>,
    start: Start,
    folds: Vec<(usize, usize, Fold)>,
}

impl<'r> Walk<'r> {
    fn run(&mut self) {
        // The engine evaluates the request phases, 1 and 2.
        for phase in 0..2 {
            if !self.phase(phase) {
                return;
            }
        }
    }

    /// Walks one phase; false when folding must stop here.
    fn phase(&mut self, phase: usize) -> bool {
        let set: &'r RuleSet = self.set;
        let items = &set.phases[phase];
        if phase == 1 && set.body.limit_action == BodyLimitAction::Reject {
            self.may_have_ended = true;
        }
        // Rules before this index may be jumped over by a rule whose outcome is not known.
        let mut uncertain_until = 0;
        let mut i = 0;
        while i < items.len() {
            let Item::Rule(rule) = &items[i] else {
                i += 1;
                continue;
            };
            let certain = i >= uncertain_until && !self.removable(rule);
            let constant = self.constant(rule);
            if !constant && self.first_link_never_matches(rule) {
                // Nothing after its first link runs: no effect, whatever it would read.
                self.folds.push((
                    phase,
                    i,
                    Fold {
                        matches: false,
                        leaves: None,
                    },
                ));
                i += 1;
                continue;
            }
            if !constant {
                self.per_request(rule, &rule.links);
                self.unknown.add_writes(&rule.links);
                if !self.ctls(&rule.links) {
                    return false;
                }
                if let Some(to) = self.jump(phase, i, rule) {
                    uncertain_until = uncertain_until.max(to);
                }
                if matches!(rule.disruptive, Disruptive::Allow | Disruptive::AllowPhase) {
                    uncertain_until = items.len();
                }
                i += 1;
                continue;
            }
            let before = self.probe.save();
            let outcome = self.probe.evaluate(rule);
            let matched = outcome.links_matched == rule.links.len();
            let ran = &rule.links[..outcome.links_matched];
            let leaves = outcome.matched.into_iter().last();
            let sets_tx_only = !rule.log
                && matches!(rule.disruptive, Disruptive::Pass | Disruptive::Block)
                && ran.iter().all(|l| l.ctls.is_empty());
            let writes = literal_writes(ran);
            let moved = certain
                && sets_tx_only
                && writes.as_ref().is_some_and(|w| {
                    w.iter().all(|k| {
                        let score = SCORE_VARIABLES.contains(&k.as_str());
                        !(self.per_request.contains(k) || self.may_have_ended && score)
                    })
                });
            if moved {
                for key in writes.into_iter().flatten() {
                    match self.probe.tx_value(&key) {
                        Some(v) => self.start.tx.insert(key, v.to_vec()),
                        None => self.start.tx.remove(&key),
                    };
                }
            }
            if moved || outcome.links_matched == 0 || matched && steers_only(rule) {
                self.folds.push((
                    phase,
                    i,
                    Fold {
                        matches: matched,
                        leaves,
                    },
                ));
            } else {
                self.per_request(rule, ran);
                if !self.ctls(ran) {
                    return false;
                }
            }
            if outcome.links_matched > 0
                && matches!(rule.disruptive, Disruptive::Allow | Disruptive::AllowPhase)
            {
                uncertain_until = items.len();
            }
            let jump = matched.then(|| self.jump(phase, i, rule)).flatten();
            if certain {
                // The rule runs on every request that gets here, with this outcome: what it
                // wrote is known, and the rules it jumps over never run.
                if let Some(to) = jump {
                    i = to;
                    continue;
                }
            } else {
                self.probe.restore(before);
                self.unknown.add_writes(ran);
                if let Some(to) = jump {
                    uncertain_until = uncertain_until.max(to);
                }
            }
            i += 1;
        }
        true
    }

    /// Whether every value the rule reads, in targets, operator arguments and actions, is
    /// a known TX variable.
    fn constant(&self, rule: &Rule) -> bool {
        let mut keys = Vec::new();
        let logs = rule.log || !matches!(rule.disruptive, Disruptive::Pass | Disruptive::Block);
        let templates_read = |t: Option<&Template>, keys: &mut Vec<String>| {
            t.is_none_or(|t| template_reads(t, keys))
        };
        rule.links.iter().all(|l| link_reads(l, &mut keys))
            && (!logs
                || templates_read(rule.msg.as_ref(), &mut keys)
                    && templates_read(rule.logdata.as_ref(), &mut keys))
            && match &rule.disruptive {
                Disruptive::Redirect(t) => template_reads(t, &mut keys),
                _ => true,
            }
            && keys.iter().all(|k| !self.unknown.contains(k))
    }

    /// `rule` is evaluated per request, `links` of it may run.
    fn per_request(&mut self, rule: &Rule, links: &[Link]) {
        self.per_request.add_reads(rule);
        self.per_request.add_writes(links);
        if !matches!(rule.disruptive, Disruptive::Pass | Disruptive::Block) {
            self.may_have_ended = true;
        }
    }

    /// Whether the rule's first link reads only known TX variables (its targets and its
    /// operator's argument) and matches none of them.
    fn first_link_never_matches(&mut self, rule: &'r Rule) -> bool {
        let link = &rule.links[0];
        let mut keys = Vec::new();
        let reads_known = match &link.targets {
            Some(targets) => {
                targets.exclude.is_empty()
                    && targets
                        .include
                        .iter()
                        .all(|t| match (&t.collection, &t.selector) {
                            (Collection::Tx, Selector::Key(k)) => {
                                keys.push(k.clone());
                                true
                            }
                            _ => false,
                        })
            }
            // `SecAction` always matches.
            None => false,
        } && link
            .operator
            .template()
            .is_none_or(|t| template_reads(t, &mut keys))
            && keys.iter().all(|k| !self.unknown.contains(k));
        if !reads_known {
            return false;
        }
        let before = self.probe.save();
        let outcome = self.probe.evaluate(rule);
        self.probe.restore(before);
        outcome.links_matched == 0
    }

    /// Takes account of the ctls of links that may run; false when folding must stop.
    fn ctls(&mut self, links: &[Link]) -> bool {
        for ctl in links.iter().flat_map(|l| &l.ctls) {
            match ctl {
                Ctl::RuleRemoveById(ids) => self.removable_ids.extend(ids.iter().copied()),
                Ctl::RuleRemoveByTag(tag) => self.removable_tags.push(tag.clone()),
                Ctl::RuleRemoveTargetById(_, targets) | Ctl::RuleRemoveTargetByTag(_, targets)
                    if targets
                        .iter()
                        .any(|t| t.collection.eq_ignore_ascii_case("TX")) =>
                {
                    return false
                }
                _ => {}
            }
        }
        true
    }

    fn removable(&self, rule: &Rule) -> bool {
        in_ranges(&self.removable_ids, rule.id)
            || self.removable_tags.iter().any(|t| rule.has_tag(t))
    }

    /// Where the walk goes on when `rule` (at `index`) matches, if it jumps.
    fn jump(&self, phase: usize, index: usize, rule: &Rule) -> Option<usize> {
        let items = &self.set.phases[phase];
        match rule.flow.as_ref()? {
            Flow::Skip(n) => {
                let (mut to, mut left) = (index + 1, *n);
                while left > 0 && to < items.len() {
                    if matches!(items[to], Item::Rule(_)) {
                        left -= 1;
                    }
                    to += 1;
                }
                Some(to)
            }
            Flow::SkipAfter(_) => Some(
                self.set.skip_after[phase]
                    .get(index)
                    .copied()
                    .unwrap_or(items.len()),
            ),
        }
    }
}

fn setvar_key(setvar: &SetVar) -> &Template {
    match setvar {
        SetVar::Set { key, .. }
        | SetVar::Add { key, .. }
        | SetVar::Sub { key, .. }
        | SetVar::Delete { key } => key,
    }
}

/// The TX variables the links write, when every name is literal.
fn literal_writes(links: &[Link]) -> Option<Vec<String>> {
    let mut keys = Vec::new();
    for link in links {
        if link.capture {
            keys.extend((0..10).map(|n| n.to_string()));
        }
        for setvar in &link.setvars {
            keys.push(setvar_key(setvar).literal()?.to_string());
        }
    }
    Some(keys)
}

/// A one-link rule with no effect but its flow.
fn steers_only(rule: &Rule) -> bool {
    let [link] = rule.links.as_slice() else {
        return false;
    };
    link.setvars.is_empty()
        && link.ctls.is_empty()
        && !link.capture
        && !rule.log
        && matches!(rule.disruptive, Disruptive::Pass | Disruptive::Block)
}

/// Adds the TX keys a link reads to `keys`; false when it reads anything but named TX
/// variables.
fn link_reads(link: &Link, keys: &mut Vec<String>) -> bool {
    if let Some(targets) = &link.targets {
        if !targets.exclude.is_empty() {
            return false;
        }
        for t in &targets.include {
            match (&t.collection, &t.selector) {
                (Collection::Tx, Selector::Key(k)) => keys.push(k.clone()),
                _ => return false,
            }
        }
    }
    if let Some(t) = link.operator.template() {
        if !template_reads(t, keys) {
            return false;
        }
    }
    link.setvars.iter().all(|s| match s {
        SetVar::Set { key, value } => template_reads(key, keys) && template_reads(value, keys),
        // `=+`/`=-` read the variable they change.
        SetVar::Add { key, value } | SetVar::Sub { key, value } => {
            key.literal().is_some_and(|k| {
                keys.push(k.to_string());
                true
            }) && template_reads(value, keys)
        }
        SetVar::Delete { key } => template_reads(key, keys),
    })
}

/// Adds the TX keys a template's macros read to `keys`; false when one reads anything else
/// (`RULE`'s fields are constants).
fn template_reads(t: &Template, keys: &mut Vec<String>) -> bool {
    for v in t.vars() {
        match (v.collection.as_str(), v.key.as_deref()) {
            ("TX", Some(k)) => keys.push(k.to_string()),
            ("RULE", Some(_)) => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::ruleset::{LoadOptions, MemorySource, RuleSet};
    use crate::{evaluate, Request};

    fn rules(text: &str) -> RuleSet {
        let mut files = MemorySource::default();
        files.files.insert("r.conf".into(), text.into());
        RuleSet::load(&files, &["r.conf".into()], LoadOptions::default()).unwrap()
    }

    /// The rules that fired for `uri`, the same with and without folding.
    fn fired(text: &str, uri: &str) -> Vec<u32> {
        let request = Request {
            method: "GET".into(),
            uri: uri.into(),
            protocol: "HTTP/1.1".into(),
            ..Request::default()
        };
        let verdict = |set: &RuleSet| {
            let v = evaluate(set, &request);
            let ids: Vec<u32> = v.matches.iter().map(|m| m.id).collect();
            (ids, v.anomaly_score, v.interruption)
        };
        let folded = verdict(&rules(text));
        assert_eq!(folded, verdict(&rules(text).without_folds()), "{uri}");
        folded.0
    }

    fn folded_ids(text: &str) -> Vec<u32> {
        rules(text)
            .rules()
            .filter(|r| r.fold.is_some())
            .map(|r| r.id)
            .collect()
    }

    #[test]
    fn paranoia_level_checks_and_settings_are_folded() {
        let text = r#"
            SecAction "id:1,phase:1,pass,nolog,setvar:tx.pl=1,setvar:tx.limit=5"
            SecRule TX:pl "@lt 1" "id:2,phase:1,pass,nolog,skipAfter:END-PL1"
            SecRule ARGS "@rx attack" "id:3,phase:1,deny,log"
            SecMarker END-PL1
            SecRule TX:pl "@lt 2" "id:4,phase:1,pass,nolog,skipAfter:END-PL2"
            SecRule ARGS "@rx paranoid" "id:5,phase:1,deny,log"
            SecMarker END-PL2
        "#;
        assert_eq!(folded_ids(text), [1, 2, 4]);
        assert_eq!(rules(text).folded(), (3, 2));
        assert_eq!(fired(text, "/?q=attack"), [3]);
        assert_eq!(fired(text, "/?q=paranoid"), Vec::<u32>::new());
    }

    #[test]
    fn a_setting_read_per_request_before_it_is_set_is_not_moved_to_the_start() {
        let text = r#"
            SecRule ARGS:a "@streq x" "id:1,phase:1,pass,nolog,setvar:tx.seen=%{tx.flag}"
            SecAction "id:2,phase:1,pass,nolog,setvar:tx.flag=1"
            SecRule TX:seen "@streq 1" "id:3,phase:1,deny,log"
        "#;
        assert!(!folded_ids(text).contains(&2));
        assert_eq!(fired(text, "/?a=x"), Vec::<u32>::new());
    }

    #[test]
    fn a_rule_a_ctl_may_remove_is_not_certain_to_run() {
        let text = r#"
            SecRule ARGS:off "@streq 1" "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=2"
            SecAction "id:2,phase:1,pass,nolog,setvar:tx.score=5"
            SecRule TX:score "@ge 5" "id:3,phase:1,deny,log"
        "#;
        assert_eq!(folded_ids(text), Vec::<u32>::new());
        assert_eq!(fired(text, "/?off=1"), Vec::<u32>::new());
        assert_eq!(fired(text, "/"), [3]);
    }

    #[test]
    fn a_skip_that_depends_on_the_request_makes_what_it_skips_unknown() {
        let text = r#"
            SecRule ARGS:skip "@streq 1" "id:1,phase:1,pass,nolog,skip:1"
            SecAction "id:2,phase:1,pass,nolog,setvar:tx.score=5"
            SecRule TX:score "@ge 5" "id:3,phase:1,deny,log"
            SecRule TX:never "@eq 1" "id:4,phase:1,deny,log"
        "#;
        // 2 may not run: not moved; 3 reads what it may have set; 4 never matches.
        assert_eq!(folded_ids(text), [4]);
        assert_eq!(fired(text, "/?skip=1"), Vec::<u32>::new());
        assert_eq!(fired(text, "/"), [3]);
    }

    #[test]
    fn matched_var_after_a_folded_rule_is_what_it_matched() {
        let text = r#"
            SecAction "id:1,phase:1,pass,nolog,setvar:tx.pl=1"
            SecRule TX:pl "@lt 2" "id:2,phase:1,pass,nolog"
            SecAction "id:3,phase:1,pass,nolog,setvar:tx.mv=%{MATCHED_VAR}"
            SecRule TX:mv "@streq 1" "id:4,phase:1,deny,log"
        "#;
        assert_eq!(folded_ids(text), [1, 2]);
        assert_eq!(fired(text, "/"), [4]);
    }

    #[test]
    fn a_ctl_that_may_remove_tx_targets_ends_the_folding() {
        let text = r#"
            SecAction "id:1,phase:1,pass,nolog,setvar:tx.pl=1"
            SecRule ARGS:x "@streq 1" "id:2,phase:1,pass,nolog,ctl:ruleRemoveTargetById=3;TX:pl"
            SecRule TX:pl "@eq 1" "id:3,phase:1,deny,log"
        "#;
        assert_eq!(folded_ids(text), [1]);
        assert_eq!(fired(text, "/?x=1"), Vec::<u32>::new());
        assert_eq!(fired(text, "/"), [3]);
    }

    #[test]
    fn a_rule_whose_first_link_never_matches_is_folded_whatever_its_actions_read() {
        let text = r#"
            SecRule ARGS "@rx attack" "id:1,phase:1,pass,nolog,setvar:tx.score=+5"
            SecAction "id:2,phase:1,pass,nolog,setvar:tx.pl=1"
            SecRule TX:pl "@ge 2" "id:3,phase:2,pass,nolog,setvar:tx.total=+%{tx.score}"
            SecRule TX:pl "@ge 1" "id:4,phase:2,pass,nolog,setvar:tx.total=+%{tx.score}"
            SecRule TX:total "@ge 5" "id:5,phase:2,deny,log"
        "#;
        assert_eq!(folded_ids(text), [2, 3]);
        assert_eq!(fired(text, "/?q=attack"), [5]);
        assert_eq!(fired(text, "/"), Vec::<u32>::new());
    }

    #[test]
    fn the_score_of_a_request_that_ended_early_holds_no_later_write() {
        // Denied in phase 1, or allowed: rule 2 never runs, the verdict's score is 0.
        let text = r#"
            SecRule ARGS "@rx attack" "id:1,phase:1,deny,log"
            SecRule ARGS "@rx health" "id:3,phase:1,allow,nolog"
            SecAction "id:2,phase:2,pass,nolog,setvar:tx.anomaly_score=5,setvar:tx.other=1"
        "#;
        assert!(!folded_ids(text).contains(&2));
        assert_eq!(fired(text, "/?q=attack"), [1]);
        assert_eq!(fired(text, "/?q=health"), [3]);
        // With nothing that can end a request first, the same write moves to the start.
        let text = r#"
            SecAction "id:2,phase:1,pass,nolog,setvar:tx.anomaly_score=5"
            SecRule ARGS "@rx attack" "id:1,phase:1,deny,log"
        "#;
        assert_eq!(folded_ids(text), [2]);
        assert_eq!(fired(text, "/?q=attack"), [1]);
    }

    #[test]
    fn a_route_that_is_off_starts_from_nothing_folded() {
        let text = r#"
            SecRuleEngine Off
            SecAction "id:1,phase:1,pass,nolog,setvar:tx.anomaly_score=5"
        "#;
        assert_eq!(folded_ids(text), [1]);
        let request = Request {
            uri: "/".into(),
            ..Request::default()
        };
        assert_eq!(evaluate(&rules(text), &request).anomaly_score, 0);
        assert_eq!(fired(text, "/"), Vec::<u32>::new());
    }

    #[test]
    fn scores_added_per_request_stay_per_request() {
        let text = r#"
            SecAction "id:1,phase:1,pass,nolog,setvar:tx.score=0"
            SecRule ARGS "@rx attack" "id:2,phase:1,pass,nolog,setvar:tx.score=+5"
            SecAction "id:3,phase:1,pass,nolog,setvar:tx.score=+1"
            SecRule TX:score "@ge 6" "id:4,phase:2,deny,log"
        "#;
        assert_eq!(folded_ids(text), [1]);
        assert_eq!(fired(text, "/?q=attack"), [4]);
        assert_eq!(fired(text, "/"), Vec::<u32>::new());
    }
}
