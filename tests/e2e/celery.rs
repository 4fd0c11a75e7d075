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

use taskhost_e2e::redis::RedisServer;
use taskhost_e2e::{Host, HostOptions, repo_root};

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
