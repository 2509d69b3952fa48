//! Actions (`id:1,phase:2,deny,t:lowercase,setvar:tx.score=+5,...`) read into what a rule
//! does: its metadata, its transformations, its disruptive action, the variables it sets,
//! the per-request controls it applies and its flow (`skip`, `skipAfter`).

use crate::macros::Template;
use crate::seclang::{self, RawAction, RawTarget};
use crate::transform::Transform;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineMode {
    On,
    DetectionOnly,
    Off,
}

impl EngineMode {
    pub fn parse(value: &str) -> Option<EngineMode> {
        match value.to_ascii_lowercase().as_str() {
            "on" => Some(EngineMode::On),
            "detectiononly" => Some(EngineMode::DetectionOnly),
            "off" => Some(EngineMode::Off),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disruptive {
    Pass,
    Deny,
    Drop,
    /// The phase's `SecDefaultAction` decides (CRS: `pass`, so rules only score).
    Block,
    /// Stops rule processing: `allow` (every request phase), `allow:phase`, `allow:request`.
    Allow,
    AllowPhase,
    Redirect(Template),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    Skip(u32),
    SkipAfter(String),
}

/// `setvar`: only the TX collection lives per request; other collections (IP, GLOBAL,
/// SESSION) need persistent storage this engine does not keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetVar {
    Set { key: Template, value: Template },
    Add { key: Template, value: Template },
    Sub { key: Template, value: Template },
    Delete { key: Template },
}

/// An inclusive range of rule ids.
pub type IdRange = (u32, u32);

#[derive(Clone, Debug)]
pub enum Ctl {
    RuleRemoveById(Vec<IdRange>),
    RuleRemoveByTag(String),
    RuleRemoveTargetById(Vec<IdRange>, Vec<RawTarget>),
    RuleRemoveTargetByTag(String, Vec<RawTarget>),
    RuleEngine(EngineMode),
    RequestBodyProcessor(String),
    ForceRequestBodyVariable(bool),
    RequestBodyAccess(bool),
}

/// Everything the actions of one rule (or one link of a chain) say.
#[derive(Clone, Debug, Default)]
pub struct Actions {
    pub id: Option<u32>,
    pub phase: Option<u8>,
    pub msg: Option<Template>,
    pub logdata: Option<Template>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    pub ver: Option<String>,
    /// `t:` in order; `t:none` clears what came before (including the defaults').
    pub transforms: Vec<Transform>,
    pub transforms_reset: bool,
    pub capture: bool,
    pub multi_match: bool,
    pub chain: bool,
    pub log: Option<bool>,
    pub auditlog: Option<bool>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    pub flow: Option<Flow>,
    pub setvars: Vec<SetVar>,
    pub ctls: Vec<Ctl>,
    /// Accepted actions that do nothing here, with why (reported once at load).
    pub ignored: Vec<String>,
}

/// Reads an action list. Errors name the action.
pub fn parse(text: &str) -> Result<Actions, String> {
    let raw = seclang::actions(text)?;
    let mut a = Actions::default();
    for action in &raw {
        apply(&mut a, action).map_err(|e| format!("action `{action}`: {e}"))?;
    }
    Ok(a)
}

fn apply(a: &mut Actions, action: &RawAction) -> Result<(), String> {
    let value = || action.value.as_deref().ok_or("needs a value");
    match action.name.to_ascii_lowercase().as_str() {
        "id" => {
            let id: u32 = value()?
                .trim()
                .parse()
                .map_err(|_| "not a rule id (1 to 4294967295)")?;
            if id == 0 {
                return Err("rule id 0 is reserved".into());
            }
            a.id = Some(id);
        }
        "phase" => {
            a.phase = Some(match value()?.trim().to_ascii_lowercase().as_str() {
                "1" | "request" => 1,
                "2" => 2,
                "3" => 3,
                "4" | "response" => 4,
                "5" | "logging" => 5,
                _ => return Err("phase is 1 to 5, `request`, `response` or `logging`".into()),
            });
        }
        "msg" => a.msg = Some(Template::parse(value()?)),
        "logdata" => a.logdata = Some(Template::parse(value()?)),
        "tag" => a.tags.push(value()?.to_string()),
        "severity" => a.severity = Some(severity(value()?)?),
        "ver" => a.ver = Some(value()?.to_string()),
        "rev" | "maturity" | "accuracy" => {}
        "t" => {
            let name = value()?;
            if name.eq_ignore_ascii_case("none") {
                a.transforms.clear();
                a.transforms_reset = true;
            } else {
                let t = Transform::from_name(name)
                    .ok_or_else(|| format!("unknown transformation `{name}`"))?;
                a.transforms.push(t);
            }
        }
        "capture" => a.capture = true,
        "multimatch" => a.multi_match = true,
        "chain" => a.chain = true,
        "log" => a.log = Some(true),
        "nolog" => {
            a.log = Some(false);
            a.auditlog.get_or_insert(false);
        }
        "auditlog" => a.auditlog = Some(true),
        "noauditlog" => a.auditlog = Some(false),
        "pass" => a.disruptive = Some(Disruptive::Pass),
        "deny" => a.disruptive = Some(Disruptive::Deny),
        "drop" => a.disruptive = Some(Disruptive::Drop),
        "block" => a.disruptive = Some(Disruptive::Block),
        "allow" => {
            a.disruptive = Some(
                match action
                    .value
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("request") => Disruptive::Allow,
                    Some("phase") => Disruptive::AllowPhase,
                    Some(_) => return Err("allow takes `phase` or `request`".into()),
                },
            )
        }
        "redirect" => a.disruptive = Some(Disruptive::Redirect(Template::parse(value()?))),
        "status" => {
            let s: u16 = value()?.trim().parse().map_err(|_| "not an HTTP status")?;
            if !(100..=999).contains(&s) {
                return Err("status is 100 to 999".into());
            }
            a.status = Some(s);
        }
        "skip" => {
            let n: u32 = value()?
                .trim()
                .parse()
                .map_err(|_| "skip takes a positive count")?;
            if n == 0 {
                return Err("skip takes a positive count".into());
            }
            a.flow = Some(Flow::Skip(n));
        }
        "skipafter" => a.flow = Some(Flow::SkipAfter(value()?.trim().to_string())),
        "setvar" => a.setvars.push(setvar(value()?)?),
        "ctl" => {
            if let Some(ctl) = ctl(value()?)? {
                a.ctls.push(ctl);
            } else {
                a.ignored
                    .push(format!("ctl:{} (no effect in this engine)", value()?));
            }
        }
        "initcol" | "setuid" | "setsid" | "expirevar" | "deprecatevar" => a.ignored.push(format!(
            "{action} (persistent collections are not kept by this engine)"
        )),
        "sanitisearg"
        | "sanitisematched"
        | "sanitisematchedbytes"
        | "sanitiserequestheader"
        | "sanitiseresponseheader"
        | "append"
        | "prepend"
        | "exec"
        | "setenv"
        | "xmlns"
        | "proxy"
        | "pause" => a
            .ignored
            .push(format!("{action} (no effect in this engine)")),
        other => return Err(format!("unknown action `{other}`")),
    }
    Ok(())
}

fn severity(value: &str) -> Result<u8, String> {
    const NAMES: [&str; 8] = [
        "EMERGENCY",
        "ALERT",
        "CRITICAL",
        "ERROR",
        "WARNING",
        "NOTICE",
        "INFO",
        "DEBUG",
    ];
    let v = value.trim();
    if let Ok(n) = v.parse::<u8>() {
        if n < 8 {
            return Ok(n);
        }
    }
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(v))
        .map(|p| p as u8)
        .ok_or_else(|| format!("unknown severity `{v}`"))
}

pub fn severity_name(severity: u8) -> &'static str {
    [
        "EMERGENCY",
        "ALERT",
        "CRITICAL",
        "ERROR",
        "WARNING",
        "NOTICE",
        "INFO",
        "DEBUG",
    ]
    .get(severity as usize)
    .copied()
    .unwrap_or("UNKNOWN")
}

fn setvar(text: &str) -> Result<SetVar, String> {
    let (delete, text) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (name, value) = match text.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v)),
        None => (text.trim(), None),
    };
    let Some((collection, key)) = name.split_once('.') else {
        return Err(format!("`{name}` names no collection (`tx.name`)"));
    };
    if !collection.eq_ignore_ascii_case("tx") {
        return Err(format!(
            "collection `{collection}`: only TX is kept per request (persistent collections are not supported)"
        ));
    }
    if key.is_empty() {
        return Err("empty variable name".into());
    }
    let key = Template::parse(&key.to_ascii_lowercase());
    Ok(match (delete, value) {
        (true, _) => SetVar::Delete { key },
        (false, None) => SetVar::Set {
            key,
            value: Template::parse("1"),
        },
        (false, Some(v)) => {
            if let Some(n) = v.strip_prefix('+') {
                SetVar::Add {
                    key,
                    value: Template::parse(n),
                }
            } else if let Some(n) = v.strip_prefix('-') {
                SetVar::Sub {
                    key,
                    value: Template::parse(n),
                }
            } else {
                SetVar::Set {
                    key,
                    value: Template::parse(v),
                }
            }
        }
    })
}

/// `1-5,7` into id ranges.
pub fn id_ranges(text: &str) -> Result<Vec<IdRange>, String> {
    let mut out = Vec::new();
    for part in text
        .split([',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{part}` is not a rule id or id range"))
        };
        let range = match part.split_once('-') {
            Some((lo, hi)) => (parse(lo)?, parse(hi)?),
            None => (parse(part)?, parse(part)?),
        };
        if range.0 > range.1 {
            return Err(format!("id range `{part}` runs backwards"));
        }
        out.push(range);
    }
    if out.is_empty() {
        return Err("no rule id given".into());
    }
    Ok(out)
}

fn ctl(text: &str) -> Result<Option<Ctl>, String> {
    let (name, value) = text.split_once('=').ok_or("ctl takes `name=value`")?;
    let on_off = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{v}` is not On or Off")),
    };
    Ok(Some(match name.trim().to_ascii_lowercase().as_str() {
        "ruleremovebyid" => Ctl::RuleRemoveById(id_ranges(value)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(value.trim().to_string()),
        "ruleremovetargetbyid" => {
            let (ids, targets) = value.split_once(';').ok_or("takes `id;VARIABLES`")?;
            Ctl::RuleRemoveTargetById(id_ranges(ids)?, seclang::targets(targets)?)
        }
        "ruleremovetargetbytag" => {
            let (tag, targets) = value.split_once(';').ok_or("takes `tag;VARIABLES`")?;
            Ctl::RuleRemoveTargetByTag(tag.trim().to_string(), seclang::targets(targets)?)
        }
        "ruleengine" => {
            Ctl::RuleEngine(EngineMode::parse(value).ok_or("takes On, Off or DetectionOnly")?)
        }
        "requestbodyprocessor" => {
            let p = value.trim().to_ascii_uppercase();
            if !matches!(p.as_str(), "URLENCODED" | "MULTIPART" | "JSON" | "XML") {
                return Err(format!("unknown body processor `{value}`"));
            }
            Ctl::RequestBodyProcessor(p)
        }
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on_off(value)?),
        "requestbodyaccess" => Ctl::RequestBodyAccess(on_off(value)?),
        // Logging and response-side controls: nothing to do in a request inspector.
        "auditengine" | "auditlogparts" | "debugloglevel" | "responsebodyaccess" | "hashengine"
        | "hashenforcement" | "parsexmlintoargs" | "requestbodylimit" | "responsebodylimit" => {
            return Ok(None)
        }
        other => return Err(format!("unknown ctl `{other}`")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crs_rule_reads_whole() {
        let a = parse("id:942100,phase:2,block,capture,t:none,t:utf8toUnicode,t:urlDecodeUni,t:removeNulls,msg:'SQL Injection Attack Detected via libinjection',logdata:'Matched Data: %{TX.0} found within %{MATCHED_VAR_NAME}: %{MATCHED_VAR}',tag:'attack-sqli',tag:'paranoia-level/1',ver:'OWASP_CRS/4.29.0-dev',severity:'CRITICAL',setvar:'tx.sql_injection_score=+%{tx.critical_anomaly_score}',setvar:'tx.inbound_anomaly_score_pl1=+%{tx.critical_anomaly_score}'").unwrap();
        assert_eq!(a.id, Some(942100));
        assert_eq!(a.phase, Some(2));
        assert_eq!(a.disruptive, Some(Disruptive::Block));
        assert!(a.capture && a.transforms_reset);
        assert_eq!(a.transforms.len(), 3);
        assert_eq!(a.severity, Some(2));
        assert_eq!(a.tags, vec!["attack-sqli", "paranoia-level/1"]);
        assert_eq!(a.setvars.len(), 2);
        assert!(matches!(&a.setvars[0], SetVar::Add { .. }));
    }

    #[test]
    fn setvar_forms() {
        assert!(matches!(setvar("!tx.a").unwrap(), SetVar::Delete { .. }));
        assert!(matches!(setvar("tx.a").unwrap(), SetVar::Set { .. }));
        assert!(matches!(setvar("tx.a=-2").unwrap(), SetVar::Sub { .. }));
        assert!(setvar("ip.a=1").unwrap_err().contains("only TX"));
        assert!(setvar("a=1").is_err());
    }

    #[test]
    fn ctl_forms() {
        let a = parse("ctl:ruleRemoveById=920540,ctl:ruleRemoveTargetByTag=xss-perf-disable;REQUEST_FILENAME,ctl:ruleEngine=DetectionOnly,ctl:auditEngine=Off").unwrap();
        assert_eq!(a.ctls.len(), 3);
        assert_eq!(a.ignored.len(), 1);
        assert!(parse("ctl:ruleEngine=Maybe").is_err());
        assert!(parse("ctl:nothing=1").unwrap_err().contains("unknown ctl"));
        assert_eq!(id_ranges("1-3, 7").unwrap(), vec![(1, 3), (7, 7)]);
        assert!(id_ranges("5-1").is_err());
    }

    #[test]
    fn bad_actions_say_which() {
        for (text, needle) in [
            ("id:abc", "not a rule id"),
            ("phase:9", "phase is"),
            ("t:rot13", "unknown transformation"),
            ("status:42", "status is"),
            ("severity:LOUD", "unknown severity"),
            ("frobnicate", "unknown action"),
            ("skip:0", "positive"),
            ("msg", "needs a value"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
