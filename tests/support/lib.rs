//! Test support for the end-to-end suite: start the real `host` binary on a free loopback port
//! with its own data folder, talk to it over HTTP and WebSocket, and stop it by PID.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

pub mod redis;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repo").to_path_buf()
}

/// The `host` binary of this build (built by `cargo test` at the root, or on demand here).
pub fn host_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/host
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let host = profile_dir.join("host");
    if !host.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(repo_root())
            .args(["build", "-p", "taskhost", "--bin", "host"])
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the host binary failed");
    }
    host
}

/// A token and its hash, from `host token`.
pub fn new_token() -> (String, String) {
    let out = Command::new(host_binary()).arg("token").output().expect("host token");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .expect("host token output")
    };
    (field("token:"), field("token_sha256:"))
}

/// Writes `<dir>/tenants.toml` with one table per `(name, settings)`, each with a fresh token's
/// `token_sha256` then `settings` (TOML lines): `("admin", "")`, `("tenants.bob", "plugins =
/// [\"hello\"]")`. Returns the file and the tables' tokens, in order.
pub fn write_tenants_file(dir: &Path, tables: &[(&str, &str)]) -> (PathBuf, Vec<String>) {
    let mut toml = String::new();
    let mut tokens = Vec::with_capacity(tables.len());
    for (name, settings) in tables {
        let (token, hash) = new_token();
        toml.push_str(&format!("[{name}]\ntoken_sha256 = \"{hash}\"\n{settings}\n\n"));
        tokens.push(token);
    }
    let file = dir.join("tenants.toml");
    std::fs::write(&file, toml).expect("writing the tenants file");
    (file, tokens)
}

/// Plugin folders the tests serve: the shipped plugins, the example and the test fixtures (which
/// include a broken manifest and a mismatched component, reported and skipped at start).
pub fn plugin_dirs() -> Vec<PathBuf> {
    let root = repo_root();
    for built in ["examples/hello/hello.wasm", "tests/fixtures/hostile/hostile.wasm"] {
        assert!(
            root.join(built).is_file(),
            "{built} is missing: run `cargo xtask plugins` first (the README's test command does)"
        );
    }
    vec![root.join("plugins"), root.join("examples"), root.join("tests/fixtures")]
}

/// A running `host run` process.
pub struct Host {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its data folder.
    pub data_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

/// Options for [`Host::start`].
pub struct HostOptions {
    pub data_dir: PathBuf,
    pub concurrency: usize,
    pub grace_secs: f64,
    pub extra: Vec<String>,
}

impl HostOptions {
    pub fn new(data_dir: &Path) -> Self {
        HostOptions { data_dir: data_dir.to_path_buf(), concurrency: 2, grace_secs: 5.0, extra: Vec::new() }
    }
}

impl Host {
    /// Starts a host with a fresh data folder inside `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Host> {
        Host::start_with(HostOptions::new(&dir.join("data"))).await
    }

    /// Starts a host and waits until it prints its address.
    pub async fn start_with(options: HostOptions) -> anyhow::Result<Host> {
        let plugins: Vec<String> = plugin_dirs().iter().map(|p| p.display().to_string()).collect();
        let mut child = Command::new(host_binary())
            .arg("run")
            .arg("--plugins")
            .arg(plugins.join(","))
            .args(["--listen", "127.0.0.1:0"])
            .arg("--grace")
            .arg(options.grace_secs.to_string())
            .arg("--data-dir")
            .arg(&options.data_dir)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            // One compile cache for every host the tests start: each component compiles once.
            .arg("--compile-cache")
            .arg(repo_root().join("target").join("test-cache").join("e2e-compiled"))
            .args(&options.extra)
            .env("TASKHOST_LOG", "info")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the host binary")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().context("stderr")?;
        let stderr_reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            })
        };
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        {
            // The host logs to stdout: its lines join the log too.
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let _ = tx.send(addr.to_owned());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let base = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(base) => base,
            Err(timeout_or_exit) => {
                let _ = child.kill();
                let status = child.wait();
                // The host's stderr closes when it exits: read all of it before quoting it (an
                // exit is seen on stdout first, while its last lines may still be in the pipe).
                let _ = stderr_reader.join();
                let why = match timeout_or_exit {
                    RecvTimeoutError::Timeout => "did not start within 120 s".to_owned(),
                    RecvTimeoutError::Disconnected => format!("exited before listening ({status:?})"),
                };
                bail!("the host {why}; its log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Host { child, base, data_dir: options.data_dir, log, http })
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the host wrote so far, stdout (its log) and stderr.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Kills the host with SIGKILL (a crash) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `deadline` for a clean exit; returns whether it exited 0.
    pub fn terminate(mut self, deadline: Duration) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// `METHOD path` with an optional JSON body; returns status and JSON body.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Like [`Host::call`] with a bearer token; also returns the `Retry-After` header.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        (status, response.json().await.unwrap_or(Value::Null), retry_after)
    }

    /// POST with a raw body.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Submits a task; panics unless accepted.
    pub async fn submit(&self, body: Value) -> String {
        let (status, reply) = self.call(reqwest::Method::POST, "/api/v1/tasks", Some(body)).await;
        assert!(status == 202 || status == 200, "submit answered {status}: {reply}");
        reply["id"].as_str().unwrap().to_owned()
    }

    /// GET a task.
    pub async fn task(&self, id: &str) -> Value {
        let (status, task) = self.call(reqwest::Method::GET, &format!("/api/v1/tasks/{id}"), None).await;
        assert_eq!(status, 200, "{task}");
        task
    }

    /// Waits until `check` accepts the task, or fails after `deadline` with the last state seen.
    pub async fn wait_for(&self, id: &str, deadline: Duration, check: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_as(None, id, deadline, check).await
    }

    /// [`Host::wait_for`] with a bearer token.
    pub async fn wait_for_as(
        &self,
        token: Option<&str>,
        id: &str,
        deadline: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let (status, task, _) =
                self.call_as(token, reqwest::Method::GET, &format!("/api/v1/tasks/{id}"), None).await;
            assert_eq!(status, 200, "{task}");
            if check(&task) {
                return task;
            }
            assert!(
                Instant::now() < until,
                "task {id} did not reach the expected state within {deadline:?}: {task}\nhost log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `GET path` until `check` accepts the JSON body, or fails after `deadline`.
    pub async fn wait_until_json(
        &self,
        path: &str,
        deadline: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let (_, body) = self.call(reqwest::Method::GET, path, None).await;
            if check(&body) {
                return body;
            }
            assert!(
                Instant::now() < until,
                "GET {path} did not reach the expected state within {deadline:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the task reaches a terminal status.
    pub async fn wait_finished(&self, id: &str, deadline: Duration) -> Value {
        self.wait_for(id, deadline, is_finished).await
    }

    /// `ws://…` form of the base URL.
    pub fn ws(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http://", "ws://", 1))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a task's WebSocket stream until the server closes it after the terminal event (within a
/// minute); returns the events in the order received.
pub async fn read_task_stream(url: &str) -> Vec<Value> {
    read_task_stream_to_close(url).await.0
}

/// [`read_task_stream`], with the server's close frame (`None`: the connection ended without one).
pub async fn read_task_stream_to_close(url: &str) -> (Vec<Value>, Option<CloseFrame>) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connect");
    let mut events = Vec::new();
    let reading = async {
        while let Some(message) = socket.next().await {
            match message.expect("websocket message") {
                Message::Text(text) => {
                    events.push(serde_json::from_str::<Value>(&text).expect("JSON message"))
                }
                Message::Close(frame) => return frame,
                _ => {}
            }
        }
        None
    };
    let frame = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the stream closes after the terminal event");
    (events, frame)
}

/// Whether a task (its JSON) reached a terminal status.
pub fn is_finished(task: &Value) -> bool {
    matches!(task["status"].as_str(), Some("succeeded" | "failed" | "cancelled" | "expired" | "dead"))
}
