//! The WAF module: a ModSecurity SecLang rule engine that loads the OWASP Core Rule Set v4
//! as it is, compiles every rule once, and evaluates requests against it.
//!
//! - [`seclang`] reads rule files into directives (file, line, arguments);
//! - [`ruleset`] turns directives into compiled rules ([`RuleSet`]), with every error
//!   named by file, line and rule id;
//! - [`transaction`] evaluates one request ([`Request`]) against a rule set and gives a
//!   [`Verdict`]: the matched rules, the anomaly score and whether to block.

pub mod action;
pub mod body;
pub mod config;
pub mod fold;
#[cfg(feature = "ftw")]
pub mod ftw;
pub mod injection;
pub mod macros;
pub mod memo;
pub mod operator;
pub mod prefilter;
pub mod request;
pub mod ruleset;
pub mod seclang;
pub mod transaction;
pub mod transform;
pub mod variable;

#[cfg(all(target_arch = "wasm32", feature = "module"))]
mod export;

pub use memo::CleanValues;
pub use request::Request;
pub use ruleset::{LoadError, RuleSet, RuleSource};
pub use transaction::{evaluate, evaluate_remembering, Verdict};
