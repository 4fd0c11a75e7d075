//! The container files agree with the binary: every flag the compose file and the Dockerfile
//! pass exists, the compose file has Redis and two hosts on it, and the example tenants file
//! parses. (`docker compose config` needs the compose plugin, which this machine lacks: the YAML
//! is read with PyYAML from the test venv instead.)

use std::process::Command;

use serde_json::Value;
use taskhost_e2e::{host_binary, repo_root};

fn run_help() -> String {
    let out = Command::new(host_binary()).args(["run", "--help"]).output().expect("host run --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flags(args: &[String]) -> Vec<String> {
    args.iter().filter(|a| a.starts_with("--")).map(|a| a.split('=').next().unwrap_or(a).to_owned()).collect()
}

#[test]
fn the_compose_file_runs_two_hosts_on_one_redis_with_flags_the_binary_knows() {
    let python = std::env::var("TASKHOST_PYTHON")
        .expect("TASKHOST_PYTHON is not set: run `cargo xtask ci`, or point it at a python with PyYAML");
    let compose = repo_root().join("docker/compose.yaml");
    let out = Command::new(python)
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(&compose)
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
        for flag in flags(&command) {
            assert!(help.contains(&flag), "`host run` has no {flag}");
        }
    }
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
