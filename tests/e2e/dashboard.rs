//! The dashboard: the page at `/` and its assets come out of the binary with their types and
//! caching headers, and a real browser (Debian's headless Chromium, driven by
//! `tests/browser/dashboard.mjs` through playwright-core) uses it as people do: submits a task
//! through the form, watches its progress bar move, sees it finish, cancels a running one, reads
//! task pages and their event logs, keeps a stream gapless across lost connections, draws the CVD
//! and DFT charts; and, on a host with tenants, signs in with a token after the API's 401.
//!
//! Screenshots of every step land in `tests/artifacts/dashboard/` (git-ignored, kept by CI).
//! `cargo xtask ci` installs Chromium and playwright-core; here a missing `node_modules` is
//! installed with `npm install`, and a missing Chromium fails with a message that says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header;
use serde_json::Value;
use taskhost_e2e::{Host, HostOptions, host_binary, repo_root};

/// The longest a browser run may take before it is stopped (its own watchdog fires first).
const BROWSER_RUN_LIMIT: Duration = Duration::from_secs(360);

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// `tests/browser`, ready to run: Node.js and Chromium present, playwright-core installed.
fn browser_dir() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let chromium = chromium_path();
    assert!(
        chromium.is_file(),
        "{} is missing: the dashboard tests drive Debian's Chromium. Install it with \
         `apt-get install -y chromium` (`cargo xtask ci` installs every package in .ci/apt.txt), \
         or point CHROMIUM_PATH at another Chromium",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is missing: the dashboard tests run tests/browser/dashboard.mjs with Node.js 20 or newer"
    );
    let dir = repo_root().join("tests").join("browser");
    // Both browser tests may get here at once; one installs, the other waits.
    let _installing = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !dir.join("node_modules").join("playwright-core").is_dir() {
        let out = Command::new("npm")
            .current_dir(&dir)
            .args(["install", "--no-audit", "--no-fund"])
            .output()
            .expect("running npm install in tests/browser");
        assert!(
            out.status.success(),
            "npm install in tests/browser failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// A fresh artifact folder under `tests/artifacts/dashboard/`.
fn artifact_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("tests").join("artifacts").join("dashboard").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the artifact folder");
    dir
}

/// Runs `node dashboard.mjs BASE ARTIFACTS [TOKEN]`; panics with its output unless it passed.
fn run_browser(host: &Host, artifacts: &Path, token: Option<&str>) {
    let dir = browser_dir();
    let mut command = Command::new("node");
    command.current_dir(&dir).arg("dashboard.mjs").arg(&host.base).arg(artifacts);
    if let Some(token) = token {
        command.arg(token);
    }
    let mut child = command
        .env("CHROMIUM_PATH", chromium_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    let read = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let until = Instant::now() + BROWSER_RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break Some(status);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!("{}{}", stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    match status {
        Some(status) if status.success() => println!("{output}"),
        Some(status) => panic!(
            "the browser run failed ({status}); screenshots in {}\n{output}\nhost log:\n{}",
            artifacts.display(),
            host.log()
        ),
        None => panic!("the browser run took longer than {BROWSER_RUN_LIMIT:?}\n{output}"),
    }
}

#[tokio::test]
async fn a_person_submits_watches_cancels_and_reads_tasks_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    run_browser(&host, &artifact_dir("open"), None);
}

#[tokio::test]
async fn the_dashboard_asks_for_a_token_after_a_401_and_works_after_signing_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(host_binary()).arg("token").output().expect("host token");
    assert!(out.status.success(), "host token failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in the output of host token: {text}"))
    };
    let (token, hash) = (field("token:"), field("token_sha256:"));
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(&tenants, format!("[tenants.lab]\ntoken_sha256 = \"{hash}\"\n")).unwrap();
    let mut options = HostOptions::new(&dir.path().join("data"));
    options.extra = vec!["--tenants".into(), tenants.display().to_string()];
    let host = Host::start_with(options).await.unwrap();
    run_browser(&host, &artifact_dir("sign-in"), Some(&token));
}

fn header_of(response: &reqwest::Response, name: header::HeaderName) -> &str {
    response.headers().get(&name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types_and_caching_headers() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let http = reqwest::Client::new();

    let page = http.get(format!("{}/", host.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(header_of(&page, header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header_of(&page, header::CACHE_CONTROL), "no-cache", "the page is revalidated on every load");
    assert!(header_of(&page, header::CONTENT_SECURITY_POLICY).contains("default-src 'self'"));
    assert_eq!(header_of(&page, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    let page_etag = header_of(&page, header::ETAG).to_owned();
    assert!(page_etag.starts_with('"'), "a strong ETag: {page_etag:?}");
    let html = page.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");

    let again =
        http.get(format!("{}/", host.base)).header(header::IF_NONE_MATCH, &page_etag).send().await.unwrap();
    assert_eq!(again.status(), 304, "a matching If-None-Match is answered 304");
    let head = http.head(format!("{}/", host.base)).send().await.unwrap();
    assert_eq!(head.status(), 200);

    // Each asset the page names carries its content hash, and is served under it for a year.
    let linked: Vec<&str> =
        html.split('"').filter(|part| part.starts_with("/assets/") && part.contains("?v=")).collect();
    let expected = [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ];
    for (path, content_type) in expected {
        let versioned = linked
            .iter()
            .find(|url| url.starts_with(&format!("{path}?v=")))
            .unwrap_or_else(|| panic!("the page does not link {path} with its hash: {linked:?}"));
        let response = http.get(format!("{}{versioned}", host.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{versioned}");
        assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type, "{versioned}");
        assert_eq!(header_of(&response, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
        let etag = header_of(&response, header::ETAG).to_owned();
        assert_eq!(etag, format!("\"{}\"", versioned.split("?v=").nth(1).unwrap()), "the ETag is the hash");
        assert!(!response.bytes().await.unwrap().is_empty());

        let plain = http.get(format!("{}{path}", host.base)).send().await.unwrap();
        assert_eq!(plain.status(), 200);
        assert_eq!(
            header_of(&plain, header::CACHE_CONTROL),
            "no-cache",
            "{path} without its hash is revalidated"
        );
        let stale = http.get(format!("{}{path}?v=0000", host.base)).send().await.unwrap();
        assert_eq!(
            header_of(&stale, header::CACHE_CONTROL),
            "no-cache",
            "{path} under an old hash is revalidated"
        );
        let cached = http
            .get(format!("{}{versioned}", host.base))
            .header(header::IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), 304);
        assert_eq!(header_of(&cached, header::ETAG), etag);
    }

    // Unknown assets and routes still answer with the API's error shape.
    for path in ["/assets/nope.js", "/no/such/page"] {
        let response = http.get(format!("{}{path}", host.base)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "not_found", "{path}: {body}");
    }
}
