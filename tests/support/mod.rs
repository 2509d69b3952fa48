//! Test harness for end-to-end tests: real `edge` and `origin` processes on 127.0.0.1,
//! real TLS with a generated certificate, and real HTTP/1.1, HTTP/2 and HTTP/3 clients.
#![allow(dead_code)]

pub mod clients;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn edge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edge"))
}

/// The `origin` binary is built by the same `cargo test` run (the origin crate has
/// integration tests, so cargo builds its binary) into the same folder as `edge`.
pub fn origin_bin() -> PathBuf {
    let path = edge_bin().with_file_name("origin");
    assert!(
        path.exists(),
        "{} is missing: run the tests from the workspace root (cargo test)",
        path.display()
    );
    path
}

/// A child process that is killed when the test ends, whatever happens.
pub struct Proc {
    pub child: Child,
    pub ready: serde_json::Value,
}

impl Proc {
    /// Owns a process started by the test (one without a ready line), so that it is
    /// killed when the test ends.
    pub fn adopt(child: Child) -> Proc {
        Proc {
            child,
            ready: serde_json::Value::Null,
        }
    }

    /// Starts `cmd` and waits for its one-line JSON ready message on stdout.
    pub fn start(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn test process");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                        if value["event"] == "ready" {
                            return Proc {
                                child,
                                ready: value,
                            };
                        }
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!("process did not become ready within {WAIT:?} (exit: {status:?})");
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process {} did not exit within {within:?}", self.pid());
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A sample origin process with its own library folder.
pub struct Origin {
    pub proc: Proc,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Origin {
    pub fn start(name: &str) -> Origin {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(origin_bin());
        cmd.args(["--listen", "127.0.0.1:0", "--name", name, "--dir"])
            .arg(dir.path())
            .stderr(Stdio::null());
        let proc = Proc::start(cmd);
        let url = proc.ready["url"].as_str().unwrap().to_owned();
        Origin {
            proc,
            url,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.url.trim_start_matches("http://").parse().unwrap()
    }

    /// The library folder the origin serves files from.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// GET `path` from the origin itself (plain HTTP/1.1), bypassing the node: the bytes
    /// to compare with, and the origin's own endpoints such as `/counts`.
    pub async fn direct(&self, path: &str) -> bytes::Bytes {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(self.addr()).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut all = Vec::new();
        tcp.read_to_end(&mut all).await.unwrap();
        let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        bytes::Bytes::from(all[head_end..].to_vec())
    }
}

/// An `edge serve` process with a generated certificate and a config written by the test.
pub struct Node {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub https: SocketAddr,
    pub plain: Option<SocketAddr>,
    pub ca: PathBuf,
    pub log: PathBuf,
}

impl Node {
    /// `config` is the TOML after `[server]`'s listen lines and the certificate, which
    /// the harness adds: origins, routes, limits...
    pub fn start(config: &str) -> Node {
        Node::start_with(config, "")
    }

    /// `server_extra` goes into the `[server]` table.
    pub fn start_with(config: &str, server_extra: &str) -> Node {
        Node::start_full(config, server_extra, &[])
    }

    /// As [`Node::start_with`], with extra environment variables for the process.
    pub fn start_full(config: &str, server_extra: &str, env: &[(&str, &str)]) -> Node {
        Node::start_wrapped(config, server_extra, env, &[])
    }

    /// As [`Node::start_full`], run through `wrapper` (a command that ends by executing
    /// its arguments in the same process, e.g. `unshare ... sh -c '...; exec "$@"'`).
    pub fn start_wrapped(
        config: &str,
        server_extra: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = edge_runtime::listener::tls::generate_self_signed(
            dir.path(),
            &["localhost", "127.0.0.1"],
        )
        .unwrap();
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nplain_listen = \"127.0.0.1:0\"\nworkers = 2\n{server_extra}\n\
             [[tls.certs]]\ncert = \"{}\"\nkey = \"{}\"\n\n{config}",
            cert.display(),
            key.display()
        );
        let config_path = dir.path().join("edge.toml");
        std::fs::write(&config_path, text).unwrap();
        let log = dir.path().join("edge.log");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(edge_bin());
                cmd
            }
            None => Command::new(edge_bin()),
        };
        cmd.args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(&log).unwrap());
        let proc = Proc::start(cmd);
        let https = proc.ready["tcp_addr"].as_str().unwrap().parse().unwrap();
        let plain = proc.ready["plain_url"]
            .as_str()
            .map(|u| u.trim_start_matches("http://").parse().unwrap());
        Node {
            proc,
            dir,
            https,
            plain,
            ca: cert,
            log,
        }
    }

    /// The admin listener's address (the config must have an `[admin]` table).
    pub fn admin_addr(&self) -> SocketAddr {
        self.proc.ready["admin_url"]
            .as_str()
            .expect("no admin listener")
            .trim_start_matches("http://")
            .parse()
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    /// Access-log lines (JSON) written so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        read_log(&self.log)
            .into_iter()
            .filter(|v| v["target"] == "access")
            .collect()
    }

    /// Waits (bounded) for an access-log line that satisfies `pred`.
    pub fn wait_for_access(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        self.wait_for_log(|l| l["target"] == "access" && pred(l))
    }

    /// Waits (bounded) for a log line with this message.
    pub fn wait_for_event(&self, message: &str) -> serde_json::Value {
        self.wait_for_log(|l| l["message"] == message)
    }

    /// Waits (bounded) for any log line (JSON) that satisfies `pred`.
    pub fn wait_for_log(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(line) = read_log(&self.log).into_iter().find(|l| pred(l)) {
                return line;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no matching log line; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

pub fn read_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The usual config: every host and path to one origin.
pub fn one_origin(url: &str) -> String {
    format!("[origins.media]\nprimary = \"{url}\"\n\n[[routes]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"media\"\n")
}

/// `edge` subcommands run as a process: (stdout, stderr), panicking on failure.
pub fn edge_cli(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new(edge_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "edge {args:?}: {stdout}\n{stderr}");
    (stdout, stderr)
}

/// A signing key pair made by `edge module keygen`: (private key path, public key).
pub fn keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let (public, _) = edge_cli(&["module", "keygen", "--out", key.to_str().unwrap()], &[]);
    (key.to_str().unwrap().to_owned(), public.trim().to_owned())
}

/// One request to an admin listener over plain HTTP/1.1, with the bearer token if given:
/// (status, body).
pub async fn admin_request(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut tcp = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("admin connect timed out")
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let text = clients::exchange(&mut tcp, &request).await;
    let status = clients::status_of(&text);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
