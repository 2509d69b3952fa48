//! Any rule text loads or is refused with errors: never a panic, never a hang.

#![no_main]

use edge_module_waf::ruleset::{LoadOptions, MemorySource, RuleSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut files = MemorySource::default();
    files.files.insert("rules/a.conf".into(), text.into());
    files
        .files
        .insert("rules/words.data".into(), "alpha\nbeta\n".into());
    for skip_errors in [false, true] {
        let _ = RuleSet::load(
            &files,
            &["rules/a.conf".into()],
            LoadOptions { skip_errors },
        );
    }
});
