//! Repository tasks: `cargo xtask plugins` builds every plugin component; `cargo xtask ci` is the
//! one test command (README, `.ci/run`): it installs what is missing, builds the plugins, checks
//! formatting and lints, and runs every test.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const WASM_TARGET: &str = "wasm32-wasip2";
/// Folders whose sub-folders may hold plugin crates (a `Cargo.toml` beside a `plugin.toml`).
const PLUGIN_ROOTS: &[&str] = &["plugins", "examples", "tests/fixtures"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("plugins") => build_plugins(&root),
        Some("ci") => ci(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 plugins   build every plugin under plugins/, examples/ and tests/fixtures/ for {WASM_TARGET}\n  \
                 ci        install what is missing, build plugins, check fmt and clippy, run every test"
            );
            std::process::exit(2)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

struct PluginCrate {
    dir: PathBuf,
    package: String,
    plugin_name: String,
}

fn discover(root: &Path) -> Result<Vec<PluginCrate>> {
    let mut found = Vec::new();
    for base in PLUGIN_ROOTS {
        let Ok(entries) = std::fs::read_dir(root.join(base)) else { continue };
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let (cargo, manifest) = (dir.join("Cargo.toml"), dir.join("plugin.toml"));
            if !cargo.is_file() || !manifest.is_file() {
                continue;
            }
            let package = toml_str(&cargo, &["package", "name"])?;
            let plugin_name = toml_str(&manifest, &["name"])?;
            found.push(PluginCrate { dir, package, plugin_name });
        }
    }
    Ok(found)
}

fn toml_str(path: &Path, keys: &[&str]) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut value: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    for key in keys {
        value = value
            .get(key)
            .cloned()
            .with_context(|| format!("{} has no `{}`", path.display(), keys.join(".")))?;
    }
    value
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{}: `{}` is not a string", path.display(), keys.join(".")))
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == WASM_TARGET) => Ok(()),
        Ok(_) => run(Command::new("rustup").args(["target", "add", WASM_TARGET])),
        Err(_) => {
            eprintln!("xtask: rustup not found; assuming the {WASM_TARGET} target is installed");
            Ok(())
        }
    }
}

fn build_plugins(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    let crates = discover(root)?;
    if crates.is_empty() {
        bail!("no plugin crates found under {}", PLUGIN_ROOTS.join(", "));
    }
    let target_dir = root.join("target").join("wasm");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(root)
        .args(["build", "--release", "--target", WASM_TARGET, "--target-dir"])
        .arg(&target_dir);
    // Components without debug info are a third of the size and compile faster in the host.
    cargo.env("CARGO_PROFILE_RELEASE_DEBUG", "false").env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    for c in &crates {
        cargo.args(["-p", &c.package]);
    }
    run(&mut cargo)?;
    for c in &crates {
        let built = target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", c.package.replace('-', "_")));
        let placed = c.dir.join(format!("{}.wasm", c.plugin_name));
        let bytes = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
        if std::fs::read(&placed).ok().as_deref() != Some(&bytes[..]) {
            std::fs::write(&placed, &bytes).with_context(|| format!("writing {}", placed.display()))?;
        }
        println!(
            "  {:<12} {} ({} KiB)",
            c.plugin_name,
            placed.strip_prefix(root).unwrap_or(&placed).display(),
            bytes.len() / 1024
        );
    }
    Ok(())
}

fn ci(root: &Path) -> Result<()> {
    build_plugins(root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo).current_dir(root).args(["fmt", "--all", "--check"]))?;
    run(Command::new(&cargo).current_dir(root).args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    run(Command::new(&cargo).current_dir(root).args(["test", "--no-fail-fast"]))?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
