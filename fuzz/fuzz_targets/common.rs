//! The plans every fuzz input is rewritten with: one operation at a time and all at once.

use edge_module_manifest_rewrite::{parse_config, Plan, Viewer};

pub const CONFIGS: &[&str] = &[
    r#"{"append_query":"t=1&u=a$b"}"#,
    r#"{"append_query":"t=1","rewrite":[{"from":"http://a.example/","to":"/"}],"token_hosts":["b.example"]}"#,
    r#"{"base_url":"https://cdn.example/x"}"#,
    r#"{"max_bandwidth":1000000,"max_height":720,"deny_codecs":["hvc1"]}"#,
    r#"{"live_window_s":10}"#,
    r#"{"steering":{"server_uri":"/steer","pathway":"A"}}"#,
    r#"{"append_query":"t=1","max_height":480,"live_window_s":4,"steering":{"server_uri":"/s"},"base_url":"https://c.example"}"#,
];

/// The plan the input's first byte picks, and the manifest (the rest).
pub fn split(data: &[u8]) -> Option<(Plan, &[u8])> {
    let (&pick, rest) = data.split_first()?;
    let config = parse_config(CONFIGS[pick as usize % CONFIGS.len()]).expect("fuzz config");
    let plan = config.plan(&Viewer {
        host: Some("edge.example"),
        path: "/a/b/index",
        ..Viewer::default()
    });
    Some((plan, rest))
}
