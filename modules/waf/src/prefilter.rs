//! Literal prefilters for `@rx`: the strings at least one of which must occur in any value a
//! regular expression matches ("necessary factors"). A request's values are scanned once per
//! transformation list for the factors of every rule that uses that list; a rule none of
//! whose factors occurs in any value cannot match and is not evaluated at all. On a benign
//! request that skips most of CRS, whose detection rules are alternations of keywords.
//!
//! Written by hand because the `regex` crate keeps its own literal analysis private and
//! `regex-syntax`'s extractor gives prefixes only; CRS's patterns usually start with a
//! class or a repetition and carry their keywords inside.
//!
//! The factors are lower-case ASCII and matched ignoring ASCII case, so a pattern's case
//! variants need no expansion. Non-ASCII members of classes are dropped while factors are
//! built: a value with any byte ≥ 0x80 is therefore never used to rule a pattern out (see
//! [`Factors::sound_for`]).

use crate::operator::Operator;
use crate::ruleset::{Item, Link};
use crate::transform::Transform;
use crate::variable::Collection;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// Sets larger than this stop being tracked exactly (a class like `[a-z]`, a cross product
/// of alternations).
const MAX_EXACT: usize = 64;
/// More factors than this for one pattern: not worth a prefilter.
const MAX_FACTORS: usize = 256;

/// What one piece of a pattern can match.
#[derive(Clone, Debug)]
struct Info {
    /// Every string it can match (on ASCII input), when that set is small.
    exact: Option<Vec<Vec<u8>>>,
    /// Strings one of which occurs in every match; `None` when nothing is known.
    required: Option<Vec<Vec<u8>>>,
}

impl Info {
    fn exact(set: Vec<Vec<u8>>) -> Info {
        Info {
            required: None,
            exact: Some(dedup(set)),
        }
    }

    fn unknown() -> Info {
        Info {
            exact: None,
            required: None,
        }
    }

    /// The best set this piece guarantees: its exact set, else its required set.
    fn factors(&self) -> Option<&Vec<Vec<u8>>> {
        self.exact.as_ref().or(self.required.as_ref())
    }
}

fn dedup(mut set: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    set.sort();
    set.dedup();
    set
}

/// How well a set filters: its shortest string's length (longer is rarer), then fewer
/// strings. A set holding the empty string filters nothing.
fn score(set: &[Vec<u8>]) -> (usize, std::cmp::Reverse<usize>) {
    let shortest = set.iter().map(Vec::len).min().unwrap_or(usize::MAX);
    (shortest, std::cmp::Reverse(set.len()))
}

fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if score(&b) > score(&a) { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

fn lower(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_lowercase()
}

fn analyze(hir: &Hir) -> Info {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Info::exact(vec![Vec::new()]),
        HirKind::Literal(lit) => {
            if lit.0.iter().any(|b| !b.is_ascii()) {
                // A non-ASCII literal never occurs in an ASCII value: nothing matches there.
                Info::exact(Vec::new())
            } else {
                Info::exact(vec![lower(&lit.0)])
            }
        }
        HirKind::Class(class) => class_info(class),
        HirKind::Capture(cap) => analyze(&cap.sub),
        HirKind::Repetition(rep) => {
            let sub = analyze(&rep.sub);
            if rep.min == 0 {
                let exact = match (&sub.exact, rep.max) {
                    (Some(set), Some(1)) if set.len() < MAX_EXACT => {
                        let mut set = set.clone();
                        set.push(Vec::new());
                        Some(dedup(set))
                    }
                    _ => None,
                };
                Info {
                    exact,
                    required: None,
                }
            } else {
                let exact = if rep.max == Some(1) {
                    sub.exact.clone()
                } else {
                    None
                };
                Info {
                    exact,
                    required: sub.factors().cloned(),
                }
            }
        }
        HirKind::Concat(subs) => {
            let infos: Vec<Info> = subs.iter().map(analyze).collect();
            let mut best: Option<Vec<Vec<u8>>> = None;
            // A run of exact pieces joins into longer strings (`select` `\s` would not, but
            // `un` `ion` would).
            let mut run: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
            let mut whole_exact = true;
            for info in &infos {
                match (&run, &info.exact) {
                    (Some(prefixes), Some(set)) if prefixes.len() * set.len() <= MAX_EXACT => {
                        let mut joined = Vec::with_capacity(prefixes.len() * set.len());
                        for p in prefixes {
                            for s in set {
                                let mut j = p.clone();
                                j.extend_from_slice(s);
                                joined.push(j);
                            }
                        }
                        run = Some(dedup(joined));
                    }
                    _ => {
                        whole_exact = false;
                        best = better(best, run.take());
                        best = better(best, info.factors().cloned());
                        // A new run starts after this piece.
                        run = info.exact.clone().filter(|s| s.len() <= MAX_EXACT);
                    }
                }
            }
            if whole_exact {
                return Info::exact(run.unwrap_or_default());
            }
            best = better(best, run);
            Info {
                exact: None,
                required: best,
            }
        }
        HirKind::Alternation(subs) => {
            let infos: Vec<Info> = subs.iter().map(analyze).collect();
            if infos.iter().all(|i| i.exact.is_some()) {
                let all: Vec<Vec<u8>> = infos
                    .iter()
                    .flat_map(|i| i.exact.clone().unwrap_or_default())
                    .collect();
                if all.len() <= MAX_EXACT {
                    return Info::exact(all);
                }
            }
            let mut union = Vec::new();
            for info in &infos {
                match info.factors() {
                    Some(set) => union.extend(set.iter().cloned()),
                    None => return Info::unknown(),
                }
            }
            if union.len() > MAX_FACTORS {
                return Info::unknown();
            }
            Info {
                exact: None,
                required: Some(dedup(union)),
            }
        }
    }
}

/// A class's ASCII members, lower-cased, when they are few.
fn class_info(class: &Class) -> Info {
    let mut members: Vec<u8> = Vec::new();
    let mut count = 0usize;
    match class {
        Class::Bytes(c) => {
            for r in c.iter() {
                let (lo, hi) = (r.start(), r.end().min(0x7f));
                if lo > hi {
                    continue;
                }
                count += usize::from(hi - lo) + 1;
                if count > MAX_EXACT * 2 {
                    return Info::unknown();
                }
                members.extend((lo..=hi).map(|b| b.to_ascii_lowercase()));
            }
        }
        Class::Unicode(c) => {
            for r in c.iter() {
                let (lo, hi) = (u32::from(r.start()), u32::from(r.end()).min(0x7f));
                if lo > hi {
                    continue;
                }
                count += (hi - lo) as usize + 1;
                if count > MAX_EXACT * 2 {
                    return Info::unknown();
                }
                members.extend((lo..=hi).map(|b| (b as u8).to_ascii_lowercase()));
            }
        }
    }
    members.sort_unstable();
    members.dedup();
    if members.len() > MAX_EXACT / 4 {
        return Info::unknown();
    }
    Info::exact(members.into_iter().map(|b| vec![b]).collect())
}

/// A pattern's necessary factors, or why it has none worth using.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Factors(pub Vec<Vec<u8>>);

impl Factors {
    /// The factors of `pattern` as the engine compiles it (`compile_regex`: bytes mode first,
    /// Unicode mode when that fails; `.` matches a newline). `None` when any string could
    /// match (the pattern can match the empty string, or starts and ends in wide classes).
    pub fn of(pattern: &str, unicode: bool) -> Option<Factors> {
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(unicode)
            .utf8(false)
            .dot_matches_new_line(true)
            .build()
            .parse(pattern)
            .ok()?;
        let info = analyze(&hir);
        let set = info.factors()?.clone();
        if set.iter().any(Vec::is_empty) || set.is_empty() && info.exact.is_none() {
            return None;
        }
        Some(Factors(set))
    }

    /// Whether this prefilter may rule out a match in `value`: only in pure-ASCII values,
    /// since non-ASCII alternatives were left out of the factors.
    pub fn sound_for(value: &[u8]) -> bool {
        value.is_ascii()
    }
}

/// Where a request's values come from, for the scan: each source is read once per list of
/// transformations, whichever collections name it (`ARGS` and `ARGS_GET` share theirs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    GetValues,
    GetNames,
    PostValues,
    PostNames,
    CookieValues,
    CookieNames,
    HeaderValues,
    HeaderNames,
    FileNames,
    FileFieldNames,
    PartHeaders,
    Xml,
    Uri,
    UriRaw,
    Filename,
    Basename,
    RequestLine,
    Method,
    Protocol,
    QueryString,
    RequestBody,
}

impl Source {
    pub const ALL: [Source; 21] = [
        Source::GetValues,
        Source::GetNames,
        Source::PostValues,
        Source::PostNames,
        Source::CookieValues,
        Source::CookieNames,
        Source::HeaderValues,
        Source::HeaderNames,
        Source::FileNames,
        Source::FileFieldNames,
        Source::PartHeaders,
        Source::Xml,
        Source::Uri,
        Source::UriRaw,
        Source::Filename,
        Source::Basename,
        Source::RequestLine,
        Source::Method,
        Source::Protocol,
        Source::QueryString,
        Source::RequestBody,
    ];

    fn bit(self) -> u32 {
        1 << self as u8
    }
}

/// The sources a collection's values come from; `None` for what a rule can change while the
/// request runs (`TX`, `MATCHED_VAR`...) or the engine derives (counts, sizes, flags): rules
/// on those are always evaluated.
pub(crate) fn sources(c: Collection) -> Option<u32> {
    use Source as S;
    let bits = |list: &[Source]| list.iter().fold(0, |acc, s| acc | s.bit());
    Some(match c {
        Collection::Args => bits(&[S::GetValues, S::PostValues]),
        Collection::ArgsGet => S::GetValues.bit(),
        Collection::ArgsPost => S::PostValues.bit(),
        Collection::ArgsNames => bits(&[S::GetNames, S::PostNames]),
        Collection::ArgsGetNames => S::GetNames.bit(),
        Collection::ArgsPostNames => S::PostNames.bit(),
        Collection::RequestCookies => S::CookieValues.bit(),
        Collection::RequestCookiesNames => S::CookieNames.bit(),
        Collection::RequestHeaders => S::HeaderValues.bit(),
        Collection::RequestHeadersNames => S::HeaderNames.bit(),
        Collection::Files => S::FileNames.bit(),
        Collection::FilesNames => S::FileFieldNames.bit(),
        Collection::MultipartPartHeaders => S::PartHeaders.bit(),
        Collection::Xml => S::Xml.bit(),
        Collection::RequestUri => S::Uri.bit(),
        Collection::RequestUriRaw => S::UriRaw.bit(),
        Collection::RequestFilename => S::Filename.bit(),
        Collection::RequestBasename => S::Basename.bit(),
        Collection::RequestLine => S::RequestLine.bit(),
        Collection::RequestMethod => S::Method.bit(),
        Collection::RequestProtocol => S::Protocol.bit(),
        Collection::QueryString => S::QueryString.bit(),
        Collection::RequestBody => S::RequestBody.bit(),
        _ => return None,
    })
}

/// The prefiltered links that share one list of transformations: per source, one automaton
/// over the factors of the links that read it.
#[derive(Debug)]
pub struct Group {
    pub transforms: Vec<Transform>,
    /// `Link::chain` of the list (the request's transformation cache key).
    pub chain: u32,
    pub slots: usize,
    /// Where the group's slot bits start in a request's bits of all groups (in 64-bit
    /// words).
    pub word_offset: usize,
    /// Indexed by `Source as usize`.
    scanners: Vec<Option<Scanner>>,
}

#[derive(Debug)]
struct Scanner {
    /// `None` when the automaton could not be built (past the crate's size limits): the
    /// source then rules nothing out. A speed aid never refuses a rule set.
    automaton: Option<AhoCorasick>,
    /// The slot of each automaton pattern.
    pattern_slot: Vec<u32>,
    /// Every slot reading this source: what a value the scan cannot judge (non-ASCII) marks.
    slots: Vec<u32>,
}

impl Group {
    /// Marks in `hits` the slot of every factor found in `value` (transformed), a value of
    /// `source`; a value that is not pure ASCII marks every slot reading the source.
    pub fn scan(&self, source: Source, value: &[u8], hits: &mut [u64]) {
        let Some(scanner) = &self.scanners[source as usize] else {
            return;
        };
        let mut mark = |slot: u32| hits[slot as usize / 64] |= 1 << (slot % 64);
        let automaton = match &scanner.automaton {
            Some(a) if Factors::sound_for(value) => a,
            _ => {
                scanner.slots.iter().for_each(|&s| mark(s));
                return;
            }
        };
        for m in automaton.find_overlapping_iter(value) {
            mark(scanner.pattern_slot[m.pattern().as_usize()]);
        }
    }
}

/// A link's place in the prefilter: its group, its slot there, and the sources its
/// variables read (a bit set of [`Source`]).
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub group: u32,
    pub slot: u32,
    pub sources: u32,
}

impl Slot {
    pub fn sources(&self) -> impl Iterator<Item = Source> + '_ {
        Source::ALL
            .into_iter()
            .filter(|s| self.sources & s.bit() != 0)
    }
}

/// Every group of a rule set.
#[derive(Debug, Default)]
pub struct Prefilters {
    pub groups: Vec<Group>,
    /// The slot bits of all groups, in 64-bit words.
    pub words: usize,
}

/// A factor ordinary requests are full of: a letter, digit or URL punctuation alone, or two
/// letters. A link with one is left to its operator: the scan would find it everywhere and
/// only cost time.
fn common(factor: &[u8]) -> bool {
    match factor {
        [b] => b.is_ascii_alphanumeric() || b" ./-_=&%:,+".contains(b),
        [a, b] => a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric(),
        _ => false,
    }
}

/// The factors of a link the prefilter can stand for: a positive `@rx` on request values
/// only, the operator run once on the fully transformed value, with factors worth a scan.
fn link_factors(link: &Link) -> Option<(Factors, u32)> {
    let Operator::Rx(regex) = &link.operator else {
        return None;
    };
    if link.negated || link.multi_match {
        return None;
    }
    let targets = link.targets.as_ref()?;
    let mut bits = 0;
    for t in &targets.include {
        if t.count {
            return None;
        }
        bits |= sources(t.collection)?;
    }
    // The same modes `compile_regex` tries, in its order.
    let factors =
        Factors::of(regex.as_str(), false).or_else(|| Factors::of(regex.as_str(), true))?;
    if factors.0.iter().any(|f| common(f)) {
        return None;
    }
    Some((factors, bits))
}

/// Gives every link that can be prefiltered its slot, and builds the groups' automata.
pub fn build(phases: &mut [Vec<Item>]) -> Prefilters {
    #[derive(Default)]
    struct Building {
        patterns: Vec<Vec<u8>>,
        pattern_slot: Vec<u32>,
        slots: Vec<u32>,
    }
    struct Grouping {
        transforms: Vec<Transform>,
        chain: u32,
        slots: u32,
        sources: Vec<Building>,
    }
    let mut groups: Vec<Grouping> = Vec::new();
    for item in phases.iter_mut().flatten() {
        let Item::Rule(rule) = item else { continue };
        for link in &mut rule.links {
            let Some((factors, sources)) = link_factors(link) else {
                continue;
            };
            let at = match groups.iter().position(|g| g.chain == link.chain) {
                Some(at) => at,
                None => {
                    groups.push(Grouping {
                        transforms: link.transforms.clone(),
                        chain: link.chain,
                        slots: 0,
                        sources: Source::ALL.iter().map(|_| Building::default()).collect(),
                    });
                    groups.len() - 1
                }
            };
            let g = &mut groups[at];
            let slot = Slot {
                group: at as u32,
                slot: g.slots,
                sources,
            };
            g.slots += 1;
            for source in slot.sources() {
                let b = &mut g.sources[source as usize];
                b.slots.push(slot.slot);
                for f in &factors.0 {
                    b.patterns.push(f.clone());
                    b.pattern_slot.push(slot.slot);
                }
            }
            link.prefilter = Some(slot);
        }
    }
    let mut words = 0;
    let groups = groups
        .into_iter()
        .map(|g| Group {
            word_offset: {
                let at = words;
                words += (g.slots as usize).div_ceil(64);
                at
            },
            scanners: g
                .sources
                .into_iter()
                .map(|b| {
                    (!b.slots.is_empty()).then(|| Scanner {
                        automaton: AhoCorasickBuilder::new()
                            .ascii_case_insensitive(true)
                            .match_kind(MatchKind::Standard)
                            .build(&b.patterns)
                            .ok(),
                        pattern_slot: b.pattern_slot,
                        slots: b.slots,
                    })
                })
                .collect(),
            transforms: g.transforms,
            chain: g.chain,
            slots: g.slots as usize,
        })
        .collect();
    Prefilters { groups, words }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factors(p: &str) -> Option<Vec<String>> {
        Factors::of(p, false).map(|f| {
            f.0.into_iter()
                .map(|s| String::from_utf8(s).unwrap())
                .collect()
        })
    }

    #[test]
    fn keywords_inside_a_pattern_are_found() {
        assert_eq!(
            factors(r"(?i)\b(?:union\s+select|sleep\s*\()"),
            // `select` is the longer of the two required words.
            Some(vec!["select".into(), "sleep".into()])
        );
        assert_eq!(factors(r"abc"), Some(vec!["abc".into()]));
        assert_eq!(
            factors(r"(?i)a[bc]d"),
            Some(vec!["abd".into(), "acd".into()])
        );
        assert_eq!(
            factors(r"\.\./|/\.\."),
            Some(vec!["../".into(), "/..".into()])
        );
    }

    #[test]
    fn patterns_that_match_anything_have_none() {
        assert_eq!(factors(r".*"), None);
        assert_eq!(factors(r"^.*$"), None);
        assert_eq!(factors(r"a?"), None);
        assert_eq!(factors(r"[a-z]*\d*"), None);
        assert_eq!(factors(r"\w+"), None);
        assert_eq!(factors(r"foo|.*"), None);
    }

    #[test]
    fn every_match_holds_a_factor() {
        // The property the prefilter rests on, checked against the regex engine itself.
        let cases = [
            (r"(?i)(?:select|union)\s+\w+", "UnIoN   all"),
            (r"<script[^>]*>", "<script src=x>"),
            (r"(?i)on(?:load|error)\s*=", "onError ="),
            (r"\$\{[^}]+\}", "${jndi:ldap}"),
            (r"a(?:b|c)+d", "acbcd"),
        ];
        for (pattern, value) in cases {
            let re = regex::bytes::Regex::new(pattern).unwrap();
            assert!(re.is_match(value.as_bytes()), "{pattern} on {value}");
            let f = Factors::of(pattern, false).unwrap_or_else(|| panic!("{pattern}"));
            let lower = value.as_bytes().to_ascii_lowercase();
            assert!(
                f.0.iter()
                    .any(|s| memchr::memmem::find(&lower, s).is_some()),
                "{pattern}: {f:?} not in {value}"
            );
        }
    }

    /// A source whose automaton could not be built, or a non-ASCII value, rules out none
    /// of the links reading it.
    #[test]
    fn what_cannot_be_scanned_rules_nothing_out() {
        let scanner = |automaton: Option<AhoCorasick>| Scanner {
            automaton,
            pattern_slot: vec![0],
            slots: vec![0, 1],
        };
        let group = |automaton: Option<AhoCorasick>| Group {
            transforms: Vec::new(),
            chain: 0,
            slots: 2,
            word_offset: 0,
            scanners: Source::ALL
                .iter()
                .map(|&s| (s == Source::GetValues).then(|| scanner(automaton.clone())))
                .collect(),
        };
        let built = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(["select"])
            .ok();
        let mut hits = [0u64];
        group(built.clone()).scan(Source::GetValues, b"plain", &mut hits);
        assert_eq!(hits[0], 0, "no factor: nothing may match");
        group(built.clone()).scan(Source::GetValues, b"a SELECT b", &mut hits);
        assert_eq!(hits[0], 0b01);
        let mut hits = [0u64];
        group(built).scan(Source::GetValues, "caf\u{e9}".as_bytes(), &mut hits);
        assert_eq!(hits[0], 0b11, "non-ASCII: every slot may match");
        let mut hits = [0u64];
        group(None).scan(Source::GetValues, b"plain", &mut hits);
        assert_eq!(hits[0], 0b11, "no automaton: every slot may match");
    }
}
