//! The `origin` binary as a real process: ready line, generated library, live stream,
//! ranges, and the endpoints the edge tests rely on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str, extra: &str) -> (String, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: o\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    tcp.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (
        String::from_utf8_lossy(&all[..end]).into_owned(),
        all[end..].to_vec(),
    )
}

#[test]
fn serves_the_generated_library_live_stream_and_test_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_origin"))
        .args(["--listen", "127.0.0.1:0", "--name", "t", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = ready["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();

    let (head, body) = get(&addr, "/vod/sample/master.m3u8", "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/vnd.apple.mpegurl"));
    assert!(head.contains("x-origin-name: t"));
    assert!(body.starts_with(b"#EXTM3U"));

    let (head, body) = get(
        &addr,
        "/vod/sample/360p/seg_00000.ts",
        "Range: bytes=0-187\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert_eq!(body.len(), 188);
    assert_eq!(body[0], 0x47);

    let (head, _) = get(
        &addr,
        "/vod/sample/360p/seg_00000.ts",
        "Range: bytes=99999999-\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 416"), "{head}");

    let (_, body) = get(&addr, "/bytes/100000", "");
    assert_eq!(body.len(), 100_000);

    let (head, body) = get(&addr, "/live/x/index.m3u8", "");
    assert!(head.starts_with("HTTP/1.1 200"));
    let playlist = String::from_utf8(body).unwrap();
    let segment = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .expect("live playlist lists segments");
    let (head, body) = get(&addr, &format!("/live/x/{segment}"), "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body[0], 0x47);

    let (head, _) = get(&addr, "/../etc/passwd", "");
    assert!(
        head.starts_with("HTTP/1.1 400") || head.starts_with("HTTP/1.1 404"),
        "{head}"
    );
    let (head, _) = get(&addr, "/status/503", "");
    assert!(head.starts_with("HTTP/1.1 503"));
}
