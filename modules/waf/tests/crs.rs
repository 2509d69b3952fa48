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

/// The literal prefilter only skips rules that cannot match: over every request of the CRS
/// regression tests (attacks and benign traffic, paranoia level 4 so every rule runs), the
/// verdict with it equals the verdict of the full evaluation, rule for rule.
#[test]
fn the_prefilter_never_changes_a_verdict() {
    let fast = ftw::load_for_tests(&[crs().join("rules")], 4).expect("CRS loads");
    let (links, groups) = fast.prefiltered();
    assert!(
        links > 100,
        "only {links} links prefiltered ({groups} groups)"
    );
    let full = ftw::load_for_tests(&[crs().join("rules")], 4)
        .expect("CRS loads")
        .without_prefilters();
    let files = ftw::load_tests(&crs().join("tests")).expect("tests load");
    let mut requests = 0;
    for file in &files {
        for case in &file.cases {
            for stage in &case.stages {
                let Ok(request) = &stage.request else {
                    continue;
                };
                requests += 1;
                let a = edge_module_waf::evaluate(&fast, request);
                let b = edge_module_waf::evaluate(&full, request);
                let ids = |v: &edge_module_waf::Verdict| {
                    v.matches
                        .iter()
                        .map(|m| (m.id, m.variable.clone(), m.data.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(ids(&a), ids(&b), "{}: matches differ", case.id);
                assert_eq!(a.anomaly_score, b.anomaly_score, "{}", case.id);
                assert_eq!(a.interruption, b.interruption, "{}", case.id);
            }
        }
    }
    assert!(requests > 4000, "{requests} requests");
}
