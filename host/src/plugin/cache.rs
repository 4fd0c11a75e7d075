//! The compile cache: each component compiled once, kept on disk as native code.
//!
//! Artifacts live in `<data-dir>/compiled/<sha256 of the .wasm>-<engine key>.cwasm`. The engine
//! key changes with the wasmtime version and every setting that affects generated code, so an
//! artifact is only ever loaded by an engine that could have produced it. Files are written to a
//! temporary name and renamed, so a crash never leaves a half-written artifact under a real name;
//! an artifact that fails to load anyway is deleted and rebuilt.
//!
//! Loading native code is only as safe as the folder it comes from: the cache folder must be
//! writable by the host's user alone, like the binary itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::sandbox::{Sandbox, SandboxError};

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Loaded from a cached artifact.
    Hit,
    /// Compiled now (and cached).
    Compiled,
}

/// Hex SHA-256 of a component's bytes.
pub fn wasm_digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// Loads `wasm` from the cache in `dir`, or compiles and caches it.
pub async fn load_or_compile(
    sandbox: &Sandbox,
    dir: &Path,
    wasm: Vec<u8>,
) -> Result<(Component, CacheUse, Duration), SandboxError> {
    let started = Instant::now();
    let path = artifact_path(sandbox, dir, &wasm);
    if path.is_file() {
        match sandbox.load_precompiled(&path) {
            Ok(component) => return Ok((component, CacheUse::Hit, started.elapsed())),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding an unusable compiled artifact");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    // Compiling takes tens of milliseconds to seconds of CPU: keep it off the async threads.
    let compiled = tokio::task::spawn_blocking(sandbox.precompile(wasm))
        .await
        .map_err(|e| SandboxError::Compile(format!("the compiler thread failed: {e}")))??;
    // A uniquely named temporary file renamed into place: concurrent loads of the same component
    // (two hosts on one data folder's cache, or tests in one process) never see a partial file.
    std::fs::create_dir_all(dir)
        .and_then(|_| {
            use std::io::Write;
            let mut tmp = tempfile::Builder::new().prefix(".compiling-").tempfile_in(dir)?;
            tmp.write_all(&compiled)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        })
        .map_err(|e| SandboxError::Compile(format!("cannot write {}: {e}", path.display())))?;
    let component = sandbox.load_precompiled(&path)?;
    Ok((component, CacheUse::Compiled, started.elapsed()))
}

fn artifact_path(sandbox: &Sandbox, dir: &Path, wasm: &[u8]) -> PathBuf {
    dir.join(format!("{}-{}.cwasm", wasm_digest(wasm), sandbox.compatibility_key()))
}
