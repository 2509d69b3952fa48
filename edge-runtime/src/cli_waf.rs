//! `edge waf test` and `edge waf check`: the WAF module's engine run natively, for
//! security teams working on a rule set before they deploy it.
//!
//! Exit codes: 0 all good; 1 a test failed or the rule set has errors; 2 the arguments,
//! the tests or the rules cannot be read.

use clap::Subcommand;
use edge_module_waf::ftw;
use edge_module_waf::ruleset::{LoadOptions, RuleSet};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum WafCommand {
    /// Run CRS-format regression tests (go-ftw YAML) against the rule engine and print a
    /// pass/fail table per rule file.
    Test {
        /// Rule files or folders (their `*.conf`, in name order); repeatable.
        #[arg(long, required = true)]
        rules: Vec<PathBuf>,
        /// The tests folder: one sub-folder per rule file, one YAML file per rule.
        #[arg(long)]
        tests: PathBuf,
        /// Paranoia level of the test configuration (CRS's own CI runs at 4).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=4))]
        paranoia: u8,
        /// Only the tests whose id (`942100-3`) starts with this.
        #[arg(long)]
        only: Option<String>,
        /// One JSON document: totals (passed/failed/skipped), per file, per test.
        #[arg(long)]
        json: bool,
    },
    /// Bundle a rule set for `edge module deploy --data`: one JSON document with the setup
    /// and every file of the rules folder, checked to compile first.
    Bundle {
        /// The rules folder (its `*.conf` load in name order; `*.data` beside them).
        #[arg(long)]
        rules: PathBuf,
        /// The setup file (`crs-setup.conf`), loaded first.
        #[arg(long)]
        setup: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Load a rule set and report every error (file, line, rule id) and warning.
    Check {
        /// Rule files or folders; repeatable, loaded in order.
        #[arg(long, required = true)]
        rules: Vec<PathBuf>,
        /// Load what compiles and list what was skipped, instead of failing.
        #[arg(long)]
        skip_errors: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: WafCommand) -> ExitCode {
    match command {
        WafCommand::Test {
            rules,
            tests,
            paranoia,
            only,
            json,
        } => test(&rules, &tests, paranoia, only.as_deref(), json),
        WafCommand::Check {
            rules,
            skip_errors,
            json,
        } => check(&rules, skip_errors, json),
        WafCommand::Bundle { rules, setup, out } => bundle(&rules, setup.as_deref(), &out),
    }
}

fn test(
    rules: &[PathBuf],
    tests: &std::path::Path,
    paranoia: u8,
    only: Option<&str>,
    json: bool,
) -> ExitCode {
    let set = match ftw::load_for_tests(rules, paranoia) {
        Ok(set) => set,
        Err(e) => {
            for p in &e.errors {
                eprintln!("error: {p}");
            }
            return ExitCode::from(2);
        }
    };
    let files = match ftw::load_tests(tests) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: tests: {e}");
            return ExitCode::from(2);
        }
    };
    let report = ftw::run(&set, &files, only);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.table());
        for t in report
            .tests
            .iter()
            .filter(|t| t.result == ftw::Outcome::Failed)
        {
            println!("FAIL {} ({}): {}", t.id, t.file, t.reason);
        }
    }
    if report.totals.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn check(rules: &[PathBuf], skip_errors: bool, json: bool) -> ExitCode {
    match RuleSet::load_paths(rules, LoadOptions { skip_errors }) {
        Ok(set) => {
            let per_phase: Vec<usize> = set
                .phases
                .iter()
                .map(|p| {
                    p.iter()
                        .filter(|i| matches!(i, edge_module_waf::ruleset::Item::Rule(_)))
                        .count()
                })
                .collect();
            if json {
                let doc = serde_json::json!({
                    "ok": true,
                    "rules": set.rule_count(),
                    "rules_per_phase": per_phase,
                    "warnings": set.warnings,
                });
                println!("{doc}");
            } else {
                for w in &set.warnings {
                    println!("warning: {w}");
                }
                println!(
                    "ok: {} rules (phase 1: {}, 2: {}, 3: {}, 4: {}, 5: {}), {} warning(s)",
                    set.rule_count(),
                    per_phase[0],
                    per_phase[1],
                    per_phase[2],
                    per_phase[3],
                    per_phase[4],
                    set.warnings.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "ok": false, "errors": e.errors }));
            } else {
                for p in &e.errors {
                    println!("error: {p}");
                }
                println!("{} error(s); the rule set does not load", e.errors.len());
            }
            ExitCode::from(1)
        }
    }
}

fn bundle(
    rules: &std::path::Path,
    setup: Option<&std::path::Path>,
    out: &std::path::Path,
) -> ExitCode {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut files = serde_json::Map::new();
    let entries = match std::fs::read_dir(rules) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}: {e}", rules.display());
            return ExitCode::from(2);
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    for p in paths {
        match read(&p) {
            Ok(text) => {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                files.insert(name, text.into());
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut doc = serde_json::json!({ "rules": files });
    if let Some(setup) = setup {
        match read(setup) {
            Ok(text) => doc["setup"] = text.into(),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let text = doc.to_string();
    // The node checks it again when it is deployed; a bundle that does not load is not
    // written.
    let config = match edge_module_waf::config::Config::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match config.compile() {
        Ok(set) => {
            if let Err(e) = std::fs::write(out, &text) {
                eprintln!("error: {}: {e}", out.display());
                return ExitCode::from(2);
            }
            println!(
                "{}: {} rules, {} bytes; sign it (`edge module sign`) and deploy it (`edge module deploy --data --name waf`)",
                out.display(),
                set.rule_count(),
                text.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for p in &e.errors {
                println!("error: {p}");
            }
            println!("{} error(s); no bundle written", e.errors.len());
            ExitCode::from(1)
        }
    }
}
