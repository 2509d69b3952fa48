//! HLS: any bytes rewrite without panicking, and whatever comes out is a playlist the
//! rewriter itself reads again (same plan) without error.
#![no_main]

use edge_module_manifest_rewrite::{rewrite, Kind};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((plan, input)) = common::split(data) else {
        return;
    };
    if let Ok(out) = rewrite(Kind::Hls, input, &plan, 1 << 20) {
        if let Some(body) = out.body {
            let text = std::str::from_utf8(&body).expect("output is UTF-8");
            // Blank lines (ASCII whitespace) before the header pass as they came.
            let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
            assert!(text.trim_ascii_start().starts_with("#EXTM3U"));
            rewrite(Kind::Hls, &body, &plan, 2 << 20).expect("output parses");
        }
    }
});
