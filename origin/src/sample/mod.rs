//! The sample media origin's content: a generated HLS + DASH VOD library and a live HLS
//! stream, so demos and tests have real, playable media without downloading anything.
//!
//! Every segment is an MPEG-TS file carrying silent AAC-LC audio (see [`ts_segment`]).

mod live;
mod ts;
mod vod;

pub use live::LiveStream;
pub use ts::ts_segment;
pub use vod::{generate_library, VOD_SEGMENTS, VOD_SEGMENT_SECS};

/// The media type to serve `path` with, chosen by its extension (case-insensitive).
pub fn content_type(path: &str) -> &'static str {
    // Query and fragment are ignored so callers may pass a raw request target.
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name
        .rsplit_once('.')
        .map_or("", |(_, ext)| ext)
        .to_ascii_lowercase();
    match ext.as_str() {
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "ts" => "video/mp2t",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "json" => "application/json",
        "html" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn content_types_by_extension() {
        let cases = [
            ("vod/sample/master.m3u8", "application/vnd.apple.mpegurl"),
            ("vod/sample/manifest.mpd", "application/dash+xml"),
            ("/live/x/seg_12.ts", "video/mp2t"),
            ("a/chunk.m4s", "video/iso.segment"),
            ("movie.MP4", "video/mp4"),
            ("stats.json", "application/json"),
            ("index.html", "text/html; charset=utf-8"),
            ("robots.txt", "text/plain; charset=utf-8"),
            ("seg.ts?token=abc", "video/mp2t"),
            ("archive.tar.gz", "application/octet-stream"),
            ("dir.ts/noext", "application/octet-stream"),
            ("", "application/octet-stream"),
        ];
        for (path, want) in cases {
            assert_eq!(content_type(path), want, "{path}");
        }
    }
}
