//! Plugins: discovery, manifests and the compile cache.
//!
//! `host run --plugins DIR` looks at DIR (a plugin folder itself when it holds a `plugin.toml`)
//! and at each of its sub-folders holding a `plugin.toml`. A plugin folder holds the manifest,
//! `<name>.wasm`, and optionally a `data/` folder. Every plugin is checked against the WIT world,
//! compiled (or loaded from the cache), pre-instantiated and described once at start. A plugin
//! that fails any step is reported with the reason and skipped; the others load.

pub mod cache;
pub mod manifest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use manifest::{Manifest, ManifestError, RetryPolicy};

use crate::sandbox::{Capabilities, PreparedPlugin, Sandbox, TaskLimits};

/// A plugin ready to run tasks.
pub struct LoadedPlugin {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its folder.
    pub dir: PathBuf,
    /// Hex SHA-256 of its component.
    pub wasm_sha256: String,
    /// The pre-instantiated component.
    pub prepared: PreparedPlugin,
    /// What `describe` returned.
    pub description: serde_json::Value,
    /// Default limits for its tasks (host defaults and manifest).
    pub limits: TaskLimits,
    /// What its tasks are granted.
    pub capabilities: Capabilities,
    /// Whether it came from the compile cache.
    pub cache: cache::CacheUse,
    /// Time to compile or load it.
    pub load_time: Duration,
}

/// A plugin folder that could not be loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LoadProblem {
    /// The folder.
    pub dir: PathBuf,
    /// What went wrong.
    pub error: String,
}

/// Why loading could not even start.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A `--plugins` folder does not exist.
    #[error(
        "plugins folder {0} does not exist (build the plugins with `cargo xtask plugins`, or pass --plugins DIR)"
    )]
    MissingFolder(PathBuf),
    /// A folder could not be read.
    #[error("cannot read plugins folder {path}: {error}")]
    Unreadable {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        error: String,
    },
}

/// The plugins this host serves.
#[derive(Default)]
pub struct PluginRegistry {
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    problems: Vec<LoadProblem>,
}

impl PluginRegistry {
    /// Finds and loads every plugin in `dirs`, caching compiled code in `cache_dir`.
    pub async fn load(sandbox: &Sandbox, dirs: &[PathBuf], cache_dir: &Path) -> Result<Self, PluginError> {
        let mut registry = PluginRegistry::default();
        for dir in dirs {
            for plugin_dir in plugin_folders(dir)? {
                match load_one(sandbox, &plugin_dir, cache_dir).await {
                    Ok(plugin) => {
                        let name = plugin.manifest.name.clone();
                        if let Some(existing) = registry.plugins.get(&name) {
                            registry.problems.push(LoadProblem {
                                dir: plugin_dir.clone(),
                                error: format!(
                                    "a plugin named {name:?} is already loaded from {}",
                                    existing.dir.display()
                                ),
                            });
                            continue;
                        }
                        tracing::info!(
                            plugin = %name,
                            version = %plugin.manifest.version,
                            cached = plugin.cache == cache::CacheUse::Hit,
                            load_ms = plugin.load_time.as_millis() as u64,
                            "plugin loaded"
                        );
                        registry.plugins.insert(name, Arc::new(plugin));
                    }
                    Err(error) => {
                        tracing::error!(dir = %plugin_dir.display(), %error, "plugin skipped");
                        registry.problems.push(LoadProblem { dir: plugin_dir, error });
                    }
                }
            }
        }
        Ok(registry)
    }

    /// A plugin by name.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(name)
    }

    /// Resolves what a client asked for: a plugin name (its first task) or a task name that
    /// exactly one plugin serves.
    pub fn resolve(&self, name: &str) -> Option<(&Arc<LoadedPlugin>, String)> {
        if let Some(p) = self.plugins.get(name) {
            return Some((p, p.manifest.tasks[0].clone()));
        }
        let mut serving = self.plugins.values().filter(|p| p.manifest.tasks.iter().any(|t| t == name));
        match (serving.next(), serving.next()) {
            (Some(p), None) => Some((p, name.to_owned())),
            _ => None,
        }
    }

    /// All loaded plugins, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }

    /// Plugin folders that were skipped, with the reason.
    pub fn problems(&self) -> &[LoadProblem] {
        &self.problems
    }

    /// The queues the loaded plugins listen on.
    pub fn queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = self.plugins.values().map(|p| p.manifest.queue.clone()).collect();
        queues.sort();
        queues.dedup();
        queues
    }

    /// Number of loaded plugins.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// True when no plugin loaded.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}

/// `dir` itself when it is a plugin folder, else its sub-folders that are.
fn plugin_folders(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    if !dir.is_dir() {
        return Err(PluginError::MissingFolder(dir.to_path_buf()));
    }
    if dir.join("plugin.toml").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PluginError::Unreadable { path: dir.to_path_buf(), error: e.to_string() })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("plugin.toml").is_file())
        .collect();
    found.sort();
    Ok(found)
}

async fn load_one(sandbox: &Sandbox, dir: &Path, cache_dir: &Path) -> Result<LoadedPlugin, String> {
    let manifest_path = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let manifest =
        Manifest::parse(&text).map_err(|e| format!("bad manifest {}: {e}", manifest_path.display()))?;
    let wasm_path = dir.join(format!("{}.wasm", manifest.name));
    let wasm = std::fs::read(&wasm_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{} is missing (build it with `cargo xtask plugins`)", wasm_path.display())
        } else {
            format!("cannot read {}: {e}", wasm_path.display())
        }
    })?;
    let wasm_sha256 = cache::wasm_digest(&wasm);
    let (component, cache_use, load_time) = cache::load_or_compile(sandbox, cache_dir, wasm)
        .await
        .map_err(|e| format!("{}: {e}", wasm_path.display()))?;
    let prepared = sandbox.prepare(&component).map_err(|e| format!("{}: {e}", wasm_path.display()))?;
    let description =
        sandbox.describe(&prepared).await.map_err(|e| format!("{}: {e}", wasm_path.display()))?;
    let description = serde_json::from_str(&description).unwrap_or(serde_json::Value::Null);
    let data_dir = dir.join("data");
    let capabilities = Capabilities {
        data_dir: if manifest.capabilities.data {
            if !data_dir.is_dir() {
                return Err(format!(
                    "the manifest asks for data, but {} is not a folder",
                    data_dir.display()
                ));
            }
            Some(data_dir)
        } else {
            None
        },
        scratch: manifest.capabilities.scratch,
        input_dir: None,
    };
    let limits = TaskLimits::default().with_manifest(&manifest.limits);
    Ok(LoadedPlugin {
        manifest,
        dir: dir.to_path_buf(),
        wasm_sha256,
        prepared,
        description,
        limits,
        capabilities,
        cache: cache_use,
        load_time,
    })
}
