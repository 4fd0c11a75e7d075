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
                 ci        install what is missing (wasm target, Debian packages, Python and npm oracles),\n            build plugins, check fmt, clippy and API docs, run every test"
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
    install_system_packages(root)?;
    let python = oracle_venv(root)?;
    install_npm_oracles(root)?;
    build_plugins(root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo).current_dir(root).args(["fmt", "--all", "--check"]))?;
    run(Command::new(&cargo).current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The SDK's and the host's API docs are references for plugin authors and contributors: no
    // broken or private links.
    run(Command::new(&cargo)
        .current_dir(root)
        .args(["doc", "--no-deps", "-p", "taskhost-sdk", "-p", "taskhost"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    run(Command::new(&cargo)
        .current_dir(root)
        .args(["test", "--workspace", "--no-fail-fast"])
        .env("TASKHOST_PYTHON", &python))?;
    Ok(())
}

/// Every `oracle/<file>` of the plugins (the tools their oracle tests compare against), plus the
/// repository's own `.ci/<file>`.
fn oracle_files(root: &Path, file: &str) -> Vec<PathBuf> {
    let mut files = vec![root.join(".ci").join(file)];
    if let Ok(entries) = std::fs::read_dir(root.join("plugins")) {
        let mut dirs: Vec<PathBuf> =
            entries.filter_map(|e| e.ok()).map(|e| e.path().join("oracle").join(file)).collect();
        dirs.sort();
        files.extend(dirs);
    }
    files.into_iter().filter(|f| f.is_file()).collect()
}

fn list_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Installs the Debian packages named in `apt.txt` files that are not installed yet.
fn install_system_packages(root: &Path) -> Result<()> {
    let mut wanted = Vec::new();
    for file in oracle_files(root, "apt.txt") {
        wanted.extend(list_lines(&file)?);
    }
    wanted.sort();
    wanted.dedup();
    let missing: Vec<String> = wanted
        .into_iter()
        .filter(|pkg| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", pkg])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let sudo = if std::env::var("USER").as_deref() == Ok("root") || is_root() {
        vec![]
    } else {
        vec!["sudo".to_string()]
    };
    let mut update = Command::new(sudo.first().map(String::as_str).unwrap_or("apt-get"));
    if !sudo.is_empty() {
        update.arg("apt-get");
    }
    update.args(["update", "-qq"]);
    run(&mut update)?;
    let mut install = Command::new(sudo.first().map(String::as_str).unwrap_or("apt-get"));
    if !sudo.is_empty() {
        install.arg("apt-get");
    }
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(&mut install)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A Python virtual environment with every `requirements.txt` of the oracles, created once in
/// `target/oracle-venv` and updated when the requirements change. Returns its interpreter.
fn oracle_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target").join("oracle-venv");
    let python = venv.join("bin").join("python");
    let requirements = oracle_files(root, "requirements.txt");
    let mut wanted = String::new();
    for file in &requirements {
        wanted.push_str(&std::fs::read_to_string(file)?);
        wanted.push('\n');
    }
    let stamp = venv.join("taskhost-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    if !python.is_file() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    if !requirements.is_empty() {
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
        for file in &requirements {
            pip.arg("-r").arg(file);
        }
        run(&mut pip)?;
    }
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

/// `npm install` in every `plugins/*/oracle` folder and in `tests/browser` when they have a
/// `package.json`.
fn install_npm_oracles(root: &Path) -> Result<()> {
    let mut packages = oracle_files(root, "package.json");
    let browser = root.join("tests").join("browser").join("package.json");
    if browser.is_file() {
        packages.push(browser);
    }
    for package in packages {
        let dir = package.parent().expect("a file has a folder");
        if dir.join("node_modules").is_dir() {
            continue;
        }
        run(Command::new("npm").current_dir(dir).args(["install", "--no-audit", "--no-fund", "--silent"]))?;
    }
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
