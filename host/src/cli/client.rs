//! The client commands: they talk to a running host over its REST and WebSocket API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

/// Where the host is.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The host's API address.
    #[arg(long, env = "TASKHOST_SERVER", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    server: String,
    /// Bearer token (when the host has tenants).
    #[arg(long, env = "TASKHOST_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// A task id and where the host is.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Task id.
    id: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Arguments of `host tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only tasks in this status (queued, running, succeeded, failed, ...).
    #[arg(long)]
    status: Option<String>,
    /// Only this plugin's tasks.
    #[arg(long)]
    plugin: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    server: ServerArgs,
}

/// Arguments of `host submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Plugin (or task) name.
    plugin: String,
    /// The input: JSON text, or @FILE to read it from a file.
    #[arg(long, default_value = "{}", value_name = "JSON|@FILE")]
    input: String,
    /// Queue (default: the plugin's).
    #[arg(long, value_name = "Q")]
    queue: Option<String>,
    /// high, normal or low.
    #[arg(long, value_name = "P")]
    priority: Option<String>,
    /// Client-chosen task id (submitting the same id twice makes one task).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Start no sooner than this many milliseconds from now.
    #[arg(long, value_name = "MS")]
    delay_ms: Option<u64>,
    /// Wait for the task to finish and print its result.
    #[arg(long, conflicts_with = "follow")]
    wait: bool,
    /// Draw a progress bar and print events as they come, until the task finishes.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    server: ServerArgs,
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(server: &ServerArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Api { http, base: server.server.trim_end_matches('/').to_owned(), token: server.token.clone() })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the host at {} (is `host run` running?)", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let kind = body["error"]["kind"].as_str().unwrap_or("error");
            let message = body["error"]["message"].as_str().unwrap_or("(no message)");
            bail!("{status}: {kind}: {message}");
        }
        Ok(body)
    }

    fn ws_url(&self, path: &str) -> String {
        let base = self.base.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
        format!("{base}{path}")
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

fn exit_for(task: &Value) -> ExitCode {
    if task["status"] == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `host submit`.
pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server)?;
    let text = match args.input.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read the input file {path}"))?
        }
        None => args.input.clone(),
    };
    let input: Value = serde_json::from_str(&text).context("--input is not valid JSON")?;
    let mut body = json!({"plugin": args.plugin, "input": input});
    for (key, value) in [
        ("queue", args.queue.map(Value::from)),
        ("priority", args.priority.map(Value::from)),
        ("id", args.id.map(Value::from)),
        ("delay_ms", args.delay_ms.map(Value::from)),
    ] {
        if let Some(value) = value {
            body[key] = value;
        }
    }
    let accepted = api.call(reqwest::Method::POST, "/api/v1/tasks", Some(body)).await?;
    let id = accepted["id"].as_str().context("the host answered without an id")?.to_owned();
    if !args.wait && !args.follow {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("task {id} {}", accepted["status"].as_str().unwrap_or(""));
    if args.follow {
        follow(&api, &id).await?;
    } else {
        wait(&api, &id).await?;
    }
    let task = api.call(reqwest::Method::GET, &format!("/api/v1/tasks/{id}"), None).await?;
    print_json(&task);
    Ok(exit_for(&task))
}

async fn wait(api: &Api, id: &str) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(50);
    loop {
        let task = api.call(reqwest::Method::GET, &format!("/api/v1/tasks/{id}"), None).await?;
        if matches!(task["status"].as_str(), Some("succeeded" | "failed" | "cancelled" | "expired" | "dead"))
        {
            return Ok(());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Streams the task's events over WebSocket with a progress bar, reconnecting from the last
/// sequence id if the connection drops.
async fn follow(api: &Api, id: &str) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(100);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos:>3}% {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    // Without a terminal the bar is hidden: print event lines plainly instead.
    let say = |line: String| if bar.is_hidden() { println!("{line}") } else { bar.println(line) };
    let mut since = 0u64;
    let mut failures = 0u32;
    loop {
        let mut url = api.ws_url(&format!("/ws/tasks/{id}?since={since}"));
        if let Some(token) = &api.token {
            url.push_str(&format!("&token={token}"));
        }
        let (mut socket, _) = match tokio_tungstenite::connect_async(&url).await {
            Ok(ok) => ok,
            Err(e) if failures < 10 => {
                failures += 1;
                say(format!("connection failed ({e}); retrying"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => bail!("cannot follow task {id}: {e}"),
        };
        while let Some(message) = socket.next().await {
            let text = match message {
                Ok(tungstenite::Message::Text(text)) => text,
                Ok(tungstenite::Message::Close(_)) => break,
                Ok(_) => continue,
                Err(_) => break,
            };
            let Ok(event) = serde_json::from_str::<Value>(&text) else { continue };
            since = event["seq"].as_u64().unwrap_or(since);
            let kind = event["event_type"].as_str().unwrap_or("?");
            let data = &event["data"];
            match kind {
                "progress_update" if data.get("percent").is_some() => {
                    bar.set_position(data["percent"].as_f64().unwrap_or(0.0) as u64);
                    bar.set_message(data["message"].as_str().unwrap_or("").to_owned());
                }
                "log" => say(format!(
                    "  [{}] {}",
                    data["level"].as_str().unwrap_or(""),
                    data["message"].as_str().unwrap_or("")
                )),
                _ => say(format!("#{since} {kind} {data}")),
            }
            if matches!(kind, "run_completed" | "run_failed" | "run_cancelled") {
                if kind == "run_completed" {
                    bar.set_position(100);
                }
                bar.finish_and_clear();
                return Ok(());
            }
        }
        // Dropped before the terminal event: resume from the last id seen.
        failures += 1;
        if failures > 10 {
            bail!("lost the connection to the host while following task {id}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `host status`.
pub async fn status(args: IdArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server)?;
    let task = api.call(reqwest::Method::GET, &format!("/api/v1/tasks/{}", args.id), None).await?;
    print_json(&task);
    Ok(ExitCode::SUCCESS)
}

/// `host cancel`.
pub async fn cancel(args: IdArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server)?;
    print_json(&api.call(reqwest::Method::POST, &format!("/api/v1/tasks/{}/cancel", args.id), None).await?);
    Ok(ExitCode::SUCCESS)
}

/// `host queues`.
pub async fn queues(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args)?;
    print_json(&api.call(reqwest::Method::GET, "/api/v1/queues", None).await?);
    Ok(ExitCode::SUCCESS)
}

/// `host plugins`.
pub async fn plugins(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args)?;
    let body = api.call(reqwest::Method::GET, "/api/v1/plugins", None).await?;
    for p in body["plugins"].as_array().into_iter().flatten() {
        println!(
            "{:<12} {:<8} queue={:<10} tasks={} timeout={}ms memory={}MiB fuel={}",
            p["name"].as_str().unwrap_or(""),
            p["version"].as_str().unwrap_or(""),
            p["queue"].as_str().unwrap_or(""),
            p["tasks"],
            p["limits"]["timeout_ms"],
            p["limits"]["memory_bytes"].as_u64().unwrap_or(0) >> 20,
            p["limits"]["fuel"],
        );
    }
    for problem in body["problems"].as_array().into_iter().flatten() {
        println!(
            "skipped      {}: {}",
            problem["dir"].as_str().unwrap_or(""),
            problem["error"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn short_time(rfc3339: &Value) -> String {
    rfc3339.as_str().and_then(|t| t.get(11..19)).unwrap_or("").to_owned()
}

/// `host tasks`.
pub async fn tasks(args: TasksArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server)?;
    let mut query = format!("/api/v1/tasks?limit={}", args.limit);
    if let Some(status) = &args.status {
        query.push_str(&format!("&status={status}"));
    }
    if let Some(plugin) = &args.plugin {
        query.push_str(&format!("&plugin={plugin}"));
    }
    let body = api.call(reqwest::Method::GET, &query, None).await?;
    println!(
        "{:<38} {:<10} {:<10} {:>5} {:>8} {:<8} ERROR",
        "ID", "PLUGIN", "STATUS", "TRIES", "PROGRESS", "CREATED"
    );
    for t in body["tasks"].as_array().into_iter().flatten() {
        println!(
            "{:<38} {:<10} {:<10} {:>5} {:>7.0}% {:<8} {}",
            t["id"].as_str().unwrap_or(""),
            t["plugin"].as_str().unwrap_or(""),
            t["status"].as_str().unwrap_or(""),
            t["attempts"].as_u64().unwrap_or(0),
            t["progress"].as_f64().unwrap_or(0.0),
            short_time(&t["created_at"]),
            t["error"]["kind"].as_str().unwrap_or(""),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `host watch`: redraws the queue and the running tasks as `/ws/queue` reports changes.
pub async fn watch(args: ServerArgs) -> anyhow::Result<ExitCode> {
    use std::collections::BTreeMap;
    use std::io::IsTerminal;
    let api = Api::new(&args)?;
    let tty = std::io::stdout().is_terminal();
    let mut running: BTreeMap<String, (String, f64, String)> = BTreeMap::new();
    let initial = api.call(reqwest::Method::GET, "/api/v1/tasks?status=running&limit=100", None).await?;
    for t in initial["tasks"].as_array().into_iter().flatten() {
        let id = t["id"].as_str().unwrap_or("").to_owned();
        running.insert(
            id,
            (
                t["plugin"].as_str().unwrap_or("").to_owned(),
                t["progress"].as_f64().unwrap_or(0.0),
                t["message"].as_str().unwrap_or("").to_owned(),
            ),
        );
    }
    let mut url = api.ws_url("/ws/queue");
    if let Some(token) = &api.token {
        url.push_str(&format!("?token={token}"));
    }
    let (mut socket, _) =
        tokio_tungstenite::connect_async(&url).await.with_context(|| format!("cannot watch {url}"))?;
    let mut status = Value::Null;
    while let Some(message) = socket.next().await {
        let Ok(tungstenite::Message::Text(text)) = message else { continue };
        let Ok(m) = serde_json::from_str::<Value>(&text) else { continue };
        match m["type"].as_str() {
            Some("queue_status") => status = m,
            Some("task_status") => {
                let id = m["task_id"].as_str().unwrap_or("").to_owned();
                if m["status"] == "running" {
                    let entry = running.entry(id).or_insert_with(|| {
                        (m["plugin"].as_str().unwrap_or("").to_owned(), 0.0, String::new())
                    });
                    if let Some(p) = m["progress"].as_f64() {
                        entry.1 = p;
                    }
                    if let Some(msg) = m["message"].as_str() {
                        entry.2 = msg.to_owned();
                    }
                } else {
                    running.remove(&id);
                    if !tty {
                        println!(
                            "{} {} {}",
                            id,
                            m["status"].as_str().unwrap_or(""),
                            m["message"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            _ => continue,
        }
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        println!(
            "queue: {} total, {} running, {} pending, {} scheduled, {} dead; {} host(s) online",
            status["total_tasks"],
            status["active_tasks"],
            status["pending_tasks"],
            status["scheduled_tasks"],
            status["dead_tasks"],
            status["workers_online"]
        );
        if tty {
            for (id, (plugin, progress, message)) in &running {
                let filled = (progress / 5.0).round().clamp(0.0, 20.0) as usize;
                println!(
                    "{id:<38} {plugin:<10} [{}{}] {progress:>5.1}% {message}",
                    "#".repeat(filled),
                    ".".repeat(20 - filled)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
