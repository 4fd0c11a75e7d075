//! Shared helpers for the host's integration tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use taskhost::plugin::{LoadedPlugin, PluginRegistry};
use taskhost::sandbox::{
    Capabilities, LimitsRequest, Report, RunReport, Sandbox, SandboxConfig, TaskIdentity, TaskLimits, TaskRun,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A plugin folder built by `cargo xtask plugins`; fails with instructions when it was not built.
pub fn plugin_dir(relative: &str) -> PathBuf {
    let dir = repo_root().join(relative);
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        dir.join(format!("{name}.wasm")).is_file(),
        "{}/{name}.wasm is missing: run `cargo xtask plugins` first (the README's test command does)",
        dir.display()
    );
    dir
}

/// A compile cache shared by all tests, so each fixture compiles once per engine setting.
pub fn cache_dir() -> PathBuf {
    repo_root().join("target").join("test-cache").join("compiled")
}

/// A sandbox with `slots` slots and default settings.
pub fn sandbox(slots: u32) -> Sandbox {
    let scratch = tempfile::tempdir().unwrap().keep();
    let mut c = SandboxConfig::new(slots, scratch);
    c.pooling = std::env::var("NOPOOL").is_err();
    Sandbox::new(c).unwrap()
}

/// Loads one plugin folder into `sandbox`.
pub async fn load(sandbox: &Sandbox, relative: &str) -> Arc<LoadedPlugin> {
    let dir = plugin_dir(relative);
    let registry = PluginRegistry::load(sandbox, &[dir], &cache_dir()).await.unwrap();
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
    registry.iter().next().unwrap().clone()
}

/// Everything one run produced.
pub struct Ran {
    pub report: RunReport,
    pub reports: Vec<Report>,
}

/// Runs one task of `plugin` with `input`, narrowing its limits by `request`.
pub async fn run(
    sandbox: &Sandbox,
    plugin: &LoadedPlugin,
    input: serde_json::Value,
    request: LimitsRequest,
) -> Ran {
    run_with(sandbox, plugin, input, plugin.limits.narrowed_by(&request), CancellationToken::new()).await
}

/// Runs one task with explicit limits and a cancellation token.
pub async fn run_with(
    sandbox: &Sandbox,
    plugin: &LoadedPlugin,
    input: serde_json::Value,
    limits: TaskLimits,
    cancel: CancellationToken,
) -> Ran {
    run_signalling(sandbox, plugin, input, limits, cancel, None).await
}

/// Like [`run_with`]; `first_report` fires when the plugin reports anything (it is running).
pub async fn run_signalling(
    sandbox: &Sandbox,
    plugin: &LoadedPlugin,
    input: serde_json::Value,
    limits: TaskLimits,
    cancel: CancellationToken,
    first_report: Option<tokio::sync::oneshot::Sender<()>>,
) -> Ran {
    let (tx, mut rx) = mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut first_report = first_report;
        let mut all = Vec::new();
        while let Some(r) = rx.recv().await {
            if let Some(signal) = first_report.take() {
                let _ = signal.send(());
            }
            all.push(r);
        }
        all
    });
    let task = TaskIdentity {
        id: "t-1".into(),
        name: plugin.manifest.tasks[0].clone(),
        tenant: "default".into(),
        attempt: 1,
    };
    let caps: Capabilities = plugin.capabilities.clone();
    let report = sandbox
        .run(
            &plugin.prepared,
            TaskRun { task: &task, input: &input.to_string(), limits, capabilities: &caps },
            tx,
            cancel,
        )
        .await;
    let reports = collector.await.unwrap();
    Ran { report, reports }
}
