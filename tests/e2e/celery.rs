//! Celery interoperability: unmodified Celery clients (the real `celery[redis]` package) against a
//! host started with `--redis URL --celery`, and a real Celery worker beside it for the
//! visibility-timeout comparison. The behaviour is checked in Python, in `tests/celery/`; this test
//! starts Redis and the host, runs pytest there, and fails with pytest's report.
//!
//! The Python interpreter comes from `TASKHOST_PYTHON` (a virtual environment with the packages of
//! `.ci/requirements.txt`, which `cargo xtask ci` creates and names). Without it the test fails:
//! it is never skipped.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use reqwest::Method;
use serde_json::{Value, json};
use taskhost_e2e::redis::RedisServer;
use taskhost_e2e::{Host, HostOptions, host_binary, repo_root, write_tenants_file};

/// The plugins the Celery tests use: manifests from `tests/celery/plugins`, components built by
/// `cargo xtask plugins` for the hello example and the kernels fixture.
fn celery_plugins(into: &Path) -> std::path::PathBuf {
    let root = repo_root();
    let plugins = into.join("celery-plugins");
    for (name, component) in [
        ("celery_hello", "examples/hello/hello.wasm"),
        ("celery_noop", "tests/fixtures/kernels/kernels.wasm"),
    ] {
        let dir = plugins.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            root.join("tests/celery/plugins").join(name).join("plugin.toml"),
            dir.join("plugin.toml"),
        )
        .unwrap();
        std::fs::copy(root.join(component), dir.join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("{component}: {e} (run `cargo xtask plugins` first)"));
    }
    plugins
}

fn python() -> String {
    std::env::var("TASKHOST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TASKHOST_PYTHON is not set: the Celery tests need a Python with the packages of \
             .ci/requirements.txt (celery[redis], flower, pytest). `cargo xtask ci` creates one in \
             target/oracle-venv and sets TASKHOST_PYTHON; or set it to such an interpreter yourself"
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn unmodified_celery_clients_send_watch_revoke_and_inspect_tasks_on_taskhost() {
    let python = python();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let plugins = celery_plugins(dir.path());
    let mut options = HostOptions::new(&dir.path().join("data"));
    options.concurrency = 3;
    options.extra = vec![
        "--redis".into(),
        redis.url(),
        "--celery".into(),
        "--plugins".into(),
        plugins.display().to_string(),
    ];
    let host = Host::start_with(options).await.unwrap();
    let started = Instant::now();
    let base = host.base.clone();
    let broker = format!("{}/0", redis.url());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"])
            .arg("tests/celery")
            .current_dir(repo_root())
            .env("CELERY_BROKER_URL", &broker)
            .env("TASKHOST_API", &base)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    println!("pytest took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        output.status.success(),
        "the Celery tests failed ({}):\n{stdout}\n{stderr}\nhost log:\n{}",
        output.status,
        host.log()
    );
    assert!(stdout.contains(" passed"), "pytest ran no test:\n{stdout}");
}

#[tokio::test]
async fn celery_without_redis_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(taskhost_e2e::host_binary())
        .args(["run", "--plugins"])
        .arg(repo_root().join("examples"))
        .args(["--listen", "127.0.0.1:0", "--celery", "--data-dir"])
        .arg(dir.path())
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--celery needs --redis"), "{stderr}");
}

/// Sends Celery tasks with the real client (`tests/celery/send_tasks.py`) and returns how each
/// ended, as `get()` saw it.
async fn send_celery_tasks(broker: &str, sends: Value) -> Vec<Value> {
    let python = python();
    let broker = broker.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg("tests/celery/send_tasks.py")
            .arg(sends.to_string())
            .current_dir(repo_root())
            .env("CELERY_BROKER_URL", &broker)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "send_tasks.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("send_tasks.py printed {stdout:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_celery_queue_claimed_by_a_tenant_gives_it_the_tasks_and_their_quotas() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let plugins = celery_plugins(dir.path());
    let (file, tokens) = write_tenants_file(
        dir.path(),
        &[
            ("admin", ""),
            ("tenants.alice", "celery_queues = [\"alice_jobs\"]\ntimeout_ms = 300"),
            ("tenants.bob", "celery_queues = [\"bob_jobs\"]\nplugins = [\"hello\"]"),
        ],
    );
    let [admin, alice, bob] = <[String; 3]>::try_from(tokens).unwrap();
    let mut options = HostOptions::new(&dir.path().join("data"));
    // No --celery-queues: the tenants' Celery queues are consumed by default.
    options.extra = vec![
        "--tenants".into(),
        file.display().to_string(),
        "--redis".into(),
        redis.url(),
        "--celery".into(),
        "--plugins".into(),
        plugins.display().to_string(),
    ];
    let host = Host::start_with(options).await.unwrap();
    let broker = format!("{}/0", redis.url());
    let outcomes = send_celery_tasks(
        &broker,
        json!([
            {"task": "tests.hello", "args": ["ada"], "queue": "alice_jobs"},
            {"task": "tests.hello", "args": ["slow", 20_000], "queue": "alice_jobs"},
            {"task": "tests.hello", "args": ["bob"], "queue": "bob_jobs"},
            {"task": "tests.hello", "args": ["nobody"], "queue": "celery"},
        ]),
    )
    .await;
    let log = host.log();
    let [done, slow, refused, unclaimed] = outcomes.as_slice() else { panic!("{outcomes:?}") };

    // Alice's queue: her task, hers alone.
    assert_eq!(done["state"], "SUCCESS", "{done}\n{log}");
    let id = done["id"].as_str().unwrap();
    let path = format!("/api/v1/tasks/{id}");
    let (status, task, _) = host.call_as(Some(&alice), Method::GET, &path, None).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["tenant"], "alice");
    assert_eq!(task["status"], "succeeded");
    let (status, body, _) = host.call_as(Some(&bob), Method::GET, &path, None).await;
    assert_eq!(status, 404, "bob sees alice's Celery task: {body}");
    let (status, body, _) = host.call_as(Some(&bob), Method::GET, &format!("{path}/events"), None).await;
    assert_eq!(status, 404, "{body}");

    // Her quota (timeout_ms = 300) bounds a 20 s task: Celery's TimeLimitExceeded.
    assert_eq!(slow["state"], "FAILURE", "{slow}");
    assert_eq!(slow["exc_type"], "TimeLimitExceeded", "{slow}");
    let slow_path = format!("/api/v1/tasks/{}", slow["id"].as_str().unwrap());
    let (status, task, _) = host.call_as(Some(&alice), Method::GET, &slow_path, None).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["error"]["kind"], "deadline_exceeded", "{task}");

    // Bob may only use the `hello` plugin; `tests.hello` is `celery_hello`'s: refused as Celery
    // refuses, in get().
    assert_eq!(refused["state"], "FAILURE", "{refused}");
    assert_eq!(refused["exc_type"], "PermissionError", "{refused}");
    assert!(refused["exc_message"].as_str().unwrap().contains("celery_hello"), "{refused}");

    // A queue nobody claims: the default tenant's, seen by the admin only.
    assert_eq!(unclaimed["state"], "SUCCESS", "{unclaimed}");
    let path = format!("/api/v1/tasks/{}", unclaimed["id"].as_str().unwrap());
    let (status, _, _) = host.call_as(Some(&alice), Method::GET, &path, None).await;
    assert_eq!(status, 404);
    let (status, task, _) = host.call_as(Some(&admin), Method::GET, &path, None).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["tenant"], "default");
}

#[test]
fn a_celery_queue_claimed_by_two_tenants_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_tenants_file(
        dir.path(),
        &[("tenants.a", "celery_queues = [\"cvd\"]"), ("tenants.b", "celery_queues = [\"cvd\"]")],
    );
    let output = Command::new(host_binary())
        .args(["run", "--plugins"])
        .arg(repo_root().join("examples"))
        .args(["--listen", "127.0.0.1:0", "--tenants"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("tenants.b.celery_queues") && stderr.contains("already claimed by tenant a"),
        "{stderr}"
    );
}
