//! The OWASP CRS v4 rule set shipped in `crs/` loads whole, and its regression tests pass
//! through the engine.

use edge_module_waf::ftw;
use edge_module_waf::ruleset::{LoadOptions, RuleSet};
use std::path::PathBuf;

fn crs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crs")
}

#[test]
fn every_crs_rule_file_loads_without_errors() {
    let set =
        RuleSet::load_paths(&[crs().join("rules")], LoadOptions::default()).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.errors
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
    assert!(set.rule_count() > 500, "{} rules", set.rule_count());
}

#[test]
fn crs_regression_tests_pass() {
    let set = ftw::load_for_tests(&[crs().join("rules")], 4).expect("CRS loads");
    let files = ftw::load_tests(&crs().join("tests")).expect("tests load");
    let report = ftw::run(&set, &files, None);
    println!("{}", report.table());
    for t in report
        .tests
        .iter()
        .filter(|t| t.result == ftw::Outcome::Failed)
    {
        println!("FAIL {} ({}): {}", t.id, t.file, t.reason);
    }
    // Every request-side test passes (docs/waf.md says why the skipped ones are
    // skipped): a new failure is a regression.
    assert_eq!(
        report.totals.failed,
        0,
        "pass rate {:.1}%",
        report.totals.pass_rate()
    );
}
