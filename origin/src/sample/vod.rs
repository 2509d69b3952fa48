//! The sample VOD library: one rendition ladder published as HLS and as DASH over the
//! same TS files, so both protocols can be exercised against identical cached objects.

use std::fs;
use std::io;
use std::path::Path;

use super::ts::{ts_segment, CODECS};

/// Number of segments in each VOD rendition.
pub const VOD_SEGMENTS: u64 = 6;
/// Duration of each VOD segment.
pub const VOD_SEGMENT_SECS: u32 = 4;

struct Rendition {
    name: &'static str,
    bandwidth: u32,
    width: u32,
    height: u32,
    segment_bytes: usize,
}

// The media is audio only (see `ts`); the resolutions label the ladder so players and
// ABR logic see two distinct, ordered variants.
const LADDER: [Rendition; 2] = [
    Rendition {
        name: "360p",
        bandwidth: 800_000,
        width: 640,
        height: 360,
        segment_bytes: 64 * 1024,
    },
    Rendition {
        name: "720p",
        bandwidth: 2_400_000,
        width: 1280,
        height: 720,
        segment_bytes: 192 * 1024,
    },
];

fn segment_name(seq: u64) -> String {
    format!("seg_{seq:05}.ts")
}

/// Writes the sample VOD library under `dir`:
///
/// - `vod/sample/master.m3u8`: HLS multivariant playlist with the 360p and 720p variants
/// - `vod/sample/{360p,720p}/index.m3u8`: VOD media playlists
/// - `vod/sample/{360p,720p}/seg_00000.ts` …: [`VOD_SEGMENTS`] segments of [`VOD_SEGMENT_SECS`] s
/// - `vod/sample/manifest.mpd`: static DASH MPD (mp2t-simple) over the same segments
///
/// All URIs are relative so the library can be served under any prefix. Existing files are
/// replaced (each via a rename, so a concurrent reader never sees a partial file). Returns
/// the relative paths written, with forward slashes.
///
/// # Errors
///
/// Any I/O error creating directories or writing files; files written before it remain.
pub fn generate_library(dir: &Path) -> io::Result<Vec<String>> {
    let root = dir.join("vod").join("sample");
    let mut written = Vec::new();
    let mut write = |rel: String, data: &[u8]| -> io::Result<()> {
        let path = root.join(&rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = root.join(format!("{rel}.tmp"));
        fs::write(&tmp, data)?;
        fs::rename(tmp, path)?;
        written.push(format!("vod/sample/{rel}"));
        Ok(())
    };
    write("master.m3u8".into(), master_playlist().as_bytes())?;
    for r in &LADDER {
        write(
            format!("{}/index.m3u8", r.name),
            media_playlist().as_bytes(),
        )?;
        for seq in 0..VOD_SEGMENTS {
            let segment = ts_segment(seq, f64::from(VOD_SEGMENT_SECS), r.segment_bytes);
            write(format!("{}/{}", r.name, segment_name(seq)), &segment)?;
        }
    }
    write("manifest.mpd".into(), mpd().as_bytes())?;
    Ok(written)
}

fn master_playlist() -> String {
    let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for r in &LADDER {
        m.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{CODECS}\"\n{}/index.m3u8\n",
            r.bandwidth, r.width, r.height, r.name
        ));
    }
    m
}

fn media_playlist() -> String {
    let mut m = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{VOD_SEGMENT_SECS}\n\
         #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    for seq in 0..VOD_SEGMENTS {
        m.push_str(&format!(
            "#EXTINF:{VOD_SEGMENT_SECS}.000,\n{}\n",
            segment_name(seq)
        ));
    }
    m.push_str("#EXT-X-ENDLIST\n");
    m
}

fn mpd() -> String {
    let total = VOD_SEGMENTS * u64::from(VOD_SEGMENT_SECS);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" profiles="urn:mpeg:dash:profile:mp2t-simple:2011" mediaPresentationDuration="PT{total}S" minBufferTime="PT{VOD_SEGMENT_SECS}S">"#
    ));
    x.push_str("\n  <Period id=\"0\" start=\"PT0S\">\n");
    // mp2t-simple requires aligned, switchable segments; each of ours starts with PAT/PMT.
    x.push_str(
        "    <AdaptationSet mimeType=\"video/mp2t\" segmentAlignment=\"true\" bitstreamSwitching=\"true\" startWithSAP=\"1\">\n",
    );
    for r in &LADDER {
        x.push_str(&format!(
            "      <Representation id=\"{}\" bandwidth=\"{}\" width=\"{}\" height=\"{}\" codecs=\"{CODECS}\">\n",
            r.name, r.bandwidth, r.width, r.height
        ));
        x.push_str(&format!(
            "        <SegmentList timescale=\"1\" duration=\"{VOD_SEGMENT_SECS}\">\n"
        ));
        for seq in 0..VOD_SEGMENTS {
            x.push_str(&format!(
                "          <SegmentURL media=\"{}/{}\"/>\n",
                r.name,
                segment_name(seq)
            ));
        }
        x.push_str("        </SegmentList>\n      </Representation>\n");
    }
    x.push_str("    </AdaptationSet>\n  </Period>\n</MPD>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that elements nest properly; returns the element names in document order.
    fn balanced_tags(xml: &str) -> Vec<String> {
        let (mut stack, mut seen): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for tag in xml.split('<').skip(1) {
            let tag = tag.split('>').next().expect("tag closes");
            if tag.starts_with('?') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "closing tag matches");
                continue;
            }
            let name = tag
                .split_whitespace()
                .next()
                .expect("tag name")
                .trim_end_matches('/')
                .to_string();
            seen.push(name.clone());
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        seen
    }

    fn uris(playlist: &str) -> Vec<&str> {
        playlist
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    }

    #[test]
    fn master_lists_both_variants() {
        let m = master_playlist();
        assert!(m.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"));
        assert!(m.contains(
            "BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"mp4a.40.2\"\n360p/index.m3u8\n"
        ));
        assert!(m.contains(
            "BANDWIDTH=2400000,RESOLUTION=1280x720,CODECS=\"mp4a.40.2\"\n720p/index.m3u8\n"
        ));
        assert_eq!(m.matches("#EXT-X-STREAM-INF:").count(), 2);
    }

    #[test]
    fn media_playlist_is_a_complete_vod() {
        let m = media_playlist();
        for tag in [
            "#EXT-X-TARGETDURATION:4\n",
            "#EXT-X-MEDIA-SEQUENCE:0\n",
            "#EXT-X-PLAYLIST-TYPE:VOD\n",
        ] {
            assert!(m.contains(tag), "{tag}");
        }
        assert_eq!(m.matches("#EXTINF:4.000,\n").count(), VOD_SEGMENTS as usize);
        assert_eq!(
            uris(&m),
            [
                "seg_00000.ts",
                "seg_00001.ts",
                "seg_00002.ts",
                "seg_00003.ts",
                "seg_00004.ts",
                "seg_00005.ts"
            ]
        );
        assert!(m.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn mpd_is_well_formed_and_complete() {
        let x = mpd();
        let tags = balanced_tags(&x);
        assert_eq!(tags.iter().filter(|t| *t == "Representation").count(), 2);
        assert_eq!(
            tags.iter().filter(|t| *t == "SegmentURL").count(),
            2 * VOD_SEGMENTS as usize
        );
        for needle in [
            r#"type="static""#,
            r#"profiles="urn:mpeg:dash:profile:mp2t-simple:2011""#,
            r#"mediaPresentationDuration="PT24S""#,
            r#"mimeType="video/mp2t""#,
            r#"<Representation id="360p" bandwidth="800000""#,
            r#"<Representation id="720p" bandwidth="2400000""#,
            r#"<SegmentList timescale="1" duration="4">"#,
            r#"<SegmentURL media="360p/seg_00000.ts"/>"#,
            r#"<SegmentURL media="720p/seg_00005.ts"/>"#,
        ] {
            assert!(x.contains(needle), "{needle}");
        }
    }

    #[test]
    fn library_is_written_and_self_consistent() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("origin-sample-{}-{nanos}", std::process::id()));
        let written = generate_library(&dir).expect("generate");
        // Running twice must overwrite cleanly.
        assert_eq!(generate_library(&dir).expect("regenerate"), written);
        assert_eq!(written.len(), 1 + 2 * (1 + VOD_SEGMENTS as usize) + 1);
        assert!(written.iter().any(|p| p == "vod/sample/720p/seg_00005.ts"));
        for rel in &written {
            assert!(dir.join(rel).is_file(), "{rel}");
        }
        let root = dir.join("vod/sample");
        let read = |rel: &str| fs::read_to_string(root.join(rel)).expect(rel);
        // Every URI resolves relative to the document that names it.
        for variant in uris(&read("master.m3u8")) {
            let base = variant.rsplit_once('/').map_or("", |(base, _)| base);
            for seg in uris(&read(variant)) {
                assert!(root.join(base).join(seg).is_file(), "{base}/{seg}");
            }
        }
        for url in read("manifest.mpd").split("media=\"").skip(1) {
            let url = url.split('"').next().expect("quoted");
            assert!(root.join(url).is_file(), "{url}");
        }
        for (r, seq) in [(&LADDER[0], 0), (&LADDER[1], 5)] {
            let seg =
                fs::read(root.join(format!("{}/{}", r.name, segment_name(seq)))).expect("segment");
            assert_eq!(seg.len(), r.segment_bytes.div_ceil(188) * 188);
            assert_eq!(seg, ts_segment(seq, 4.0, r.segment_bytes));
        }
        let is_tmp = |e: io::Result<fs::DirEntry>| {
            e.expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == "tmp")
        };
        assert!(
            !fs::read_dir(root.join("360p")).expect("dir").any(is_tmp),
            "no temporary files left"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
