//! Loading plugins: the compile cache, broken folders, and the hello example end to end.

use serde_json::json;
use taskhost::plugin::{PluginRegistry, cache::CacheUse};
use taskhost::sandbox::{LimitsRequest, Outcome, Report};

use crate::support::{cache_dir, load, plugin_dir, repo_root, run, sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_greets_reports_progress_and_fails_on_request() {
    let sb = sandbox(2);
    let hello = load(&sb, "examples/hello").await;
    assert_eq!(hello.description["name"], "hello");
    let ran = run(&sb, &hello, json!({"name": "Ada", "spin_ms": 300}), LimitsRequest::default()).await;
    match &ran.report.outcome {
        Outcome::Succeeded { output } => {
            let v: serde_json::Value = serde_json::from_str(output).unwrap();
            assert_eq!(v["greeting"], "Hello, Ada!");
            assert!(v["rounds"].as_u64().unwrap() > 0);
        }
        other => panic!("{other:?}"),
    }
    let progress: Vec<f32> = ran
        .reports
        .iter()
        .filter_map(|r| match r {
            Report::Progress { percent, .. } => Some(*percent),
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 5, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(progress.last(), Some(&100.0));
    assert!(
        ran.reports
            .iter()
            .any(|r| matches!(r, Report::Log { level: "info", message } if message == "greeting Ada"))
    );

    let failed =
        run(&sb, &hello, json!({"name": "Ada", "fail": "no reagent"}), LimitsRequest::default()).await;
    assert_eq!(
        failed.report.outcome,
        Outcome::PluginError { message: "no reagent".into(), retryable: false }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_that_does_not_deserialize_is_invalid_input_with_serdes_message() {
    let sb = sandbox(2);
    let hello = load(&sb, "examples/hello").await;
    let ran = run(&sb, &hello, json!({"name": 42}), LimitsRequest::default()).await;
    match &ran.report.outcome {
        Outcome::InvalidInput { message } => {
            assert!(message.contains("name") && message.contains("invalid type"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let ran = run(&sb, &hello, json!({}), LimitsRequest::default()).await;
    match &ran.report.outcome {
        Outcome::InvalidInput { message } => assert!(message.contains("missing field `name`"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_load_comes_from_the_compile_cache() {
    let sb = sandbox(2);
    let dir = tempfile::tempdir().unwrap();
    let first = PluginRegistry::load(&sb, &[plugin_dir("examples/hello")], dir.path()).await.unwrap();
    assert_eq!(first.get("hello").unwrap().cache, CacheUse::Compiled);
    let sb2 = sandbox(2);
    let second = PluginRegistry::load(&sb2, &[plugin_dir("examples/hello")], dir.path()).await.unwrap();
    assert_eq!(second.get("hello").unwrap().cache, CacheUse::Hit);
    // A corrupted artifact is discarded and rebuilt, not trusted.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let third = PluginRegistry::load(&sb2, &[plugin_dir("examples/hello")], dir.path()).await.unwrap();
    assert_eq!(third.get("hello").unwrap().cache, CacheUse::Compiled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_plugins_are_reported_and_skipped_while_the_others_load() {
    let sb = sandbox(2);
    let fixtures = repo_root().join("tests/fixtures");
    let _ = plugin_dir("tests/fixtures/mismatched");
    let registry = PluginRegistry::load(&sb, &[fixtures], &cache_dir()).await.unwrap();
    assert!(registry.get("hostile").is_some());
    assert!(registry.get("kernels").is_some());
    let problem = |needle: &str| {
        registry
            .problems()
            .iter()
            .find(|p| p.dir.ends_with(needle))
            .map(|p| p.error.clone())
            .unwrap_or_else(|| panic!("no problem reported for {needle}: {:?}", registry.problems()))
    };
    let broken = problem("broken-manifest");
    assert!(broken.contains("tasks"), "{broken}");
    let mismatched = problem("mismatched");
    assert!(mismatched.contains("acme:evil/net@1.0.0"), "{mismatched}");
    assert!(mismatched.contains("does not export `run`"), "{mismatched}");
}

#[tokio::test]
async fn a_missing_plugins_folder_is_a_clear_error() {
    let sb = sandbox(1);
    let err =
        PluginRegistry::load(&sb, &[repo_root().join("no-such-folder")], &cache_dir()).await.err().unwrap();
    assert!(
        err.to_string().contains("no-such-folder") && err.to_string().contains("does not exist"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_without_its_component_is_reported() {
    let sb = sandbox(1);
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("ghost");
    std::fs::create_dir(&plugin).unwrap();
    std::fs::write(plugin.join("plugin.toml"), "name = \"ghost\"\nversion = \"1\"\ntasks = [\"ghost\"]\n")
        .unwrap();
    let registry = PluginRegistry::load(&sb, &[dir.path().to_path_buf()], &cache_dir()).await.unwrap();
    assert!(registry.is_empty());
    assert!(registry.problems()[0].error.contains("ghost.wasm is missing"), "{:?}", registry.problems());
}
