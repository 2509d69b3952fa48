//! DASH: any bytes rewrite without panicking; when the input is well-formed XML (read by
//! roxmltree, an independent parser), so is the output, and the rewriter reads it again.
#![no_main]

use edge_module_manifest_rewrite::{rewrite, Kind};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((plan, input)) = common::split(data) else {
        return;
    };
    if let Ok(out) = rewrite(Kind::Dash, input, &plan, 1 << 20) {
        if let Some(body) = out.body {
            let text = std::str::from_utf8(&body).expect("output is UTF-8");
            let well_formed =
                std::str::from_utf8(input).is_ok_and(|t| roxmltree::Document::parse(t).is_ok());
            if well_formed {
                roxmltree::Document::parse(text).expect("output is well-formed");
            }
            rewrite(Kind::Dash, &body, &plan, 2 << 20).expect("output parses");
        }
    }
});
