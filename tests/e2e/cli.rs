//! The `host` command line, as a user types it.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use taskhost_e2e::{Host, host_binary, repo_root};

fn host_cmd(args: &[&str]) -> std::process::Output {
    Command::new(host_binary()).args(args).env_remove("REDIS_URL").output().expect("running host")
}

#[test]
fn a_missing_plugins_folder_is_named() {
    let out = host_cmd(&[
        "run",
        "--plugins",
        "/no/such/plugins",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        tempfile::tempdir().unwrap().path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/plugins") && err.contains("does not exist"), "{err}");
}

#[test]
fn listening_beyond_loopback_without_tenants_is_refused() {
    let plugins = repo_root().join("examples");
    let out = host_cmd(&[
        "run",
        "--plugins",
        plugins.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
        "--data-dir",
        tempfile::tempdir().unwrap().path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn help_lists_the_commands() {
    let out = host_cmd(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["run", "submit", "status", "cancel", "queues", "plugins"] {
        assert!(text.contains(command), "{text}");
    }
}

#[tokio::test]
async fn submit_wait_follow_status_and_plugins_work_against_a_running_host() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let base = host.base.clone();
    let run = move |args: Vec<String>| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let mut full = args;
            full.extend(["--server".to_string(), base]);
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            host_cmd(&refs)
        })
    };
    let out = run(vec![
        "submit".into(),
        "hello".into(),
        "--input".into(),
        r#"{"name":"cli"}"#.into(),
        "--wait".into(),
    ])
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["result"]["greeting"], "Hello, cli!");

    let out = run(vec![
        "submit".into(),
        "hello".into(),
        "--input".into(),
        r#"{"name":"f","spin_ms":300}"#.into(),
        "--follow".into(),
    ])
    .await
    .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("run_completed") && text.contains("Hello, f!"), "{text}");

    let out = run(vec![
        "submit".into(),
        "hello".into(),
        "--input".into(),
        r#"{"name":"x","fail":"nope"}"#.into(),
        "--wait".into(),
    ])
    .await
    .unwrap();
    assert!(!out.status.success(), "a failed task exits non-zero");

    let input_file = dir.path().join("input.json");
    std::fs::write(&input_file, r#"{"name":"from a file"}"#).unwrap();
    let out =
        run(vec!["submit".into(), "hello".into(), "--input".into(), format!("@{}", input_file.display())])
            .await
            .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    host.wait_finished(&id, Duration::from_secs(60)).await;
    let out = run(vec!["status".into(), id.clone()]).await.unwrap();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["result"]["greeting"], "Hello, from a file!");

    let out = run(vec!["tasks".into(), "--status".into(), "succeeded".into()]).await.unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("ID") && table.contains(&id) && table.contains("succeeded"), "{table}");

    let out = run(vec!["plugins".into()]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hello") && text.contains("mismatched"), "{text}");

    let out = run(vec!["submit".into(), "nope".into()]).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_plugin"));
}

#[test]
fn client_commands_say_when_no_host_is_running() {
    let out = host_cmd(&["status", "abc", "--server", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `host run` running"));
}

#[tokio::test]
async fn watch_prints_the_queue_and_finished_tasks_as_they_happen() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let mut watcher = Command::new(host_binary())
        .args(["watch", "--server", &host.base])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).expect("a queue line");
    assert!(first.starts_with("queue: "), "{first}");
    let id = host.submit(serde_json::json!({"plugin": "hello", "input": {"name": "watched"}})).await;
    let finished = loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("watch output");
        if line.starts_with(&id) {
            break line;
        }
    };
    assert!(finished.contains("succeeded"), "{finished}");
    let _ = watcher.kill();
    let _ = watcher.wait();
}

/// Each thread of `pid` whose name is `name`, with the time slice the kernel gives it (ns, from
/// `/proc/<pid>/task/<tid>/sched`).
#[cfg(target_os = "linux")]
fn thread_slices(pid: u32, name: &str) -> Vec<u64> {
    let mut slices = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map_while(Result::ok) {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let sched = std::fs::read_to_string(task.path().join("sched")).unwrap_or_default();
        let slice: Option<u64> = sched
            .lines()
            .find_map(|l| l.strip_prefix("se.slice"))
            .and_then(|l| l.trim_start_matches([' ', ':']).trim().parse().ok());
        slices.extend(slice);
    }
    slices
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_rest_threads_ask_for_the_api_slice_and_the_fanout_and_task_threads_keep_the_default() {
    use futures::StreamExt;
    for (flag, api_slice) in [(None, Some(100_000)), (Some("0"), None)] {
        let dir = tempfile::tempdir().unwrap();
        let mut options = taskhost_e2e::HostOptions::new(&dir.path().join("data"));
        if let Some(flag) = flag {
            options.extra = vec!["--api-slice-us".into(), flag.into()];
        }
        let host = Host::start_with(options).await.unwrap();
        // The fan-out runtime starts with the first WebSocket stream (on an API thread).
        let (mut socket, _) = tokio_tungstenite::connect_async(host.ws("/ws/queue")).await.unwrap();
        socket.next().await.unwrap().unwrap();
        let default = thread_slices(host.pid(), "host")[0];
        let api = thread_slices(host.pid(), "api");
        let fanout = thread_slices(host.pid(), "ws-fanout");
        assert!(!api.is_empty() && !fanout.is_empty(), "api {api:?}, ws-fanout {fanout:?}");
        let wanted = api_slice.unwrap_or(default);
        assert!(api.iter().all(|s| *s == wanted), "--api-slice-us {flag:?}: api threads {api:?}");
        assert!(fanout.iter().all(|s| *s == default), "ws-fanout {fanout:?}, default {default}");
        // The task runtime's threads (named by tokio's default) keep the default too.
        let tasks = thread_slices(host.pid(), "tokio-rt-worker");
        assert!(!tasks.is_empty() && tasks.iter().all(|s| *s == default), "task threads {tasks:?}");
    }
}
