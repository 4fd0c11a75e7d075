//! Tenants: who owns a task, how a caller proves who they are, and what each tenant may use.
//!
//! Without a tenants file the host serves one tenant, [`DEFAULT_TENANT`], without tokens, and
//! listens on loopback only (`host run` refuses anything else). With `--tenants FILE`:
//!
//! ```toml
//! [admin]
//! token_sha256 = "9f86d0818..."      # hex SHA-256 of the admin's bearer token
//!
//! [tenants.fab-a]
//! token_sha256 = "3c9909afe..."      # the file never holds a token itself
//! weight = 2                         # share of workers when tenants compete (default 1)
//! concurrent_tasks = 4               # running at once on every host together, in all its queues
//! fuel = 100_000_000_000             # most fuel per task
//! memory_mb = 512                    # most memory per task
//! timeout_ms = 3_600_000             # longest run per attempt
//! submit_per_sec = 20.0              # sustained submissions per second
//! submit_burst = 100                 # submissions allowed at once above that
//! file_area_mb = 256                 # room in the tenant's file area
//! plugins = ["cvd", "dft"]           # allowed plugins (absent: all)
//! queues = ["cvd_runs", "simulations"]  # allowed queues (absent: all)
//! celery_queues = ["cvd"]            # Celery queues whose tasks this tenant owns (`--celery`)
//! ```
//!
//! A Celery queue belongs to at most one tenant; tasks taken from a Celery queue no tenant lists
//! belong to [`DEFAULT_TENANT`] (only the admin sees them when a tenants file is loaded).
//!
//! `host token` prints a new random token and the hash to put in the file. Tokens are compared by
//! their SHA-256, against every tenant, without early exit, in constant time per comparison.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::sandbox::LimitsRequest;

/// The tenant of a host without a tenants file.
pub const DEFAULT_TENANT: &str = "default";

/// The caller of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant name (`admin` for the admin).
    pub name: String,
    /// Admins see and manage every tenant's tasks.
    pub admin: bool,
}

impl Tenant {
    /// The single tenant of a host without a tenants file.
    pub fn default_tenant() -> Self {
        Tenant { name: DEFAULT_TENANT.into(), admin: false }
    }

    /// The tenant to restrict storage reads to (`None` for admins).
    pub fn scope(&self) -> Option<&str> {
        if self.admin { None } else { Some(&self.name) }
    }
}

/// One `[tenants.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Hex SHA-256 of the tenant's bearer token.
    pub token_sha256: String,
    /// Share of workers when tenants compete.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Tasks running at once.
    pub concurrent_tasks: Option<u32>,
    /// Most fuel per task.
    pub fuel: Option<u64>,
    /// Most memory per task, MiB.
    pub memory_mb: Option<u64>,
    /// Longest run per attempt, ms.
    pub timeout_ms: Option<u64>,
    /// Sustained submissions per second.
    pub submit_per_sec: Option<f64>,
    /// Burst of submissions above the sustained rate.
    pub submit_burst: Option<u32>,
    /// Room in the file area, MiB.
    pub file_area_mb: Option<u64>,
    /// Allowed plugins (all when absent).
    pub plugins: Option<Vec<String>>,
    /// Allowed queues (all when absent).
    pub queues: Option<Vec<String>>,
    /// Celery queues whose tasks this tenant owns (with `host run --celery`).
    #[serde(default)]
    pub celery_queues: Vec<String>,
}

fn default_weight() -> u32 {
    1
}

/// The `[admin]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Hex SHA-256 of the admin token.
    pub token_sha256: String,
}

/// A parsed tenants file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsFile {
    /// The admin, if any.
    pub admin: Option<AdminConfig>,
    /// Tenants by name.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
}

/// Why a tenants file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    /// Unreadable file.
    #[error("cannot read the tenants file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        error: String,
    },
    /// Bad TOML or bad values.
    #[error("bad tenants file {path}: {error}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        error: String,
    },
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s.trim()).ok()?;
    bytes.try_into().ok()
}

/// Compares two digests without an early exit.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random token and its hex SHA-256, for `host token`.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = format!("th_{}", hex::encode(bytes));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    Ok((token, hash))
}

/// A token bucket per tenant for the submit rate.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Who may call the API and what they may do.
#[derive(Debug)]
pub struct Tenants {
    /// `None`: no tenants file, the default tenant without tokens.
    file: Option<TenantsFile>,
    digests: Vec<(String, bool, [u8; 32])>,
    buckets: Mutex<BTreeMap<String, Bucket>>,
}

/// The outcome of an authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticated {
    /// A known tenant or the admin.
    Caller(Tenant),
    /// No token, or a token nobody holds.
    Refused,
}

impl Tenants {
    /// A host without a tenants file: everyone is the default tenant.
    pub fn open() -> Self {
        Tenants { file: None, digests: Vec::new(), buckets: Mutex::default() }
    }

    /// Loads and checks a tenants file.
    pub fn load(path: &Path) -> Result<Self, TenantsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| TenantsError::Read { path: shown.clone(), error: e.to_string() })?;
        Tenants::parse(&text).map_err(|error| TenantsError::Invalid { path: shown, error })
    }

    /// Parses tenants file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: TenantsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut digests = Vec::new();
        if let Some(admin) = &file.admin {
            let d = parse_hash(&admin.token_sha256).ok_or(
                "admin.token_sha256: expected 64 hex digits (the SHA-256 of the token, from `host token`)",
            )?;
            digests.push(("admin".to_owned(), true, d));
        }
        for (name, tenant) in &file.tenants {
            if !crate::plugin::manifest::valid_name(name) || name == "admin" {
                return Err(format!(
                    "tenants.{name}: a tenant name is 1-64 of a-z, A-Z, 0-9, '-', '_', '.' and not `admin`"
                ));
            }
            let d = parse_hash(&tenant.token_sha256)
                .ok_or_else(|| format!("tenants.{name}.token_sha256: expected 64 hex digits (the SHA-256 of the token, from `host token`)"))?;
            if digests.iter().any(|(_, _, other)| same_digest(other, &d)) {
                return Err(format!("tenants.{name}.token_sha256: the same token hash is used twice"));
            }
            if tenant.weight == 0 {
                return Err(format!("tenants.{name}.weight: must be at least 1"));
            }
            digests.push((name.clone(), false, d));
        }
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, tenant) in &file.tenants {
            for queue in &tenant.celery_queues {
                if let Some(other) = owners.insert(queue, name)
                    && other != name
                {
                    return Err(format!(
                        "tenants.{name}.celery_queues: Celery queue {queue:?} is already claimed by tenant {other}; a Celery queue belongs to one tenant"
                    ));
                }
            }
        }
        if digests.is_empty() {
            return Err("the file defines no tenant and no admin".into());
        }
        Ok(Tenants { file: Some(file), digests, buckets: Mutex::default() })
    }

    /// True when tokens are required.
    pub fn requires_tokens(&self) -> bool {
        self.file.is_some()
    }

    /// Who holds `token` (`None` when the request carried none).
    pub fn authenticate(&self, token: Option<&str>) -> Authenticated {
        if self.file.is_none() {
            return Authenticated::Caller(Tenant::default_tenant());
        }
        let Some(token) = token else { return Authenticated::Refused };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Every entry is compared, whatever matched, so timing says nothing about which one.
        for (name, admin, expected) in &self.digests {
            if same_digest(expected, &digest) && found.is_none() {
                found = Some(Tenant { name: name.clone(), admin: *admin });
            }
        }
        found.map_or(Authenticated::Refused, Authenticated::Caller)
    }

    /// The configuration of a tenant (none for the default tenant or the admin).
    pub fn config(&self, tenant: &str) -> Option<&TenantConfig> {
        self.file.as_ref()?.tenants.get(tenant)
    }

    /// The tenant of each Celery queue a tenant claims (`celery_queues`).
    pub fn celery_queue_tenants(&self) -> BTreeMap<String, String> {
        let Some(file) = &self.file else { return BTreeMap::new() };
        file.tenants
            .iter()
            .flat_map(|(name, t)| t.celery_queues.iter().map(move |q| (q.clone(), name.clone())))
            .collect()
    }

    /// Tenant names and weights (the default tenant with weight 1 without a file).
    pub fn weights(&self) -> Vec<(String, u32)> {
        match &self.file {
            None => vec![(DEFAULT_TENANT.into(), 1)],
            Some(f) => f.tenants.iter().map(|(n, t)| (n.clone(), t.weight)).collect(),
        }
    }

    /// May `tenant` use `plugin` on `queue`? `Err` names what is not allowed.
    pub fn check_allowed(&self, tenant: &Tenant, plugin: &str, queue: &str) -> Result<(), String> {
        let Some(config) = self.config(&tenant.name) else { return Ok(()) };
        if let Some(plugins) = &config.plugins
            && !plugins.iter().any(|p| p == plugin)
        {
            return Err(format!("tenant {} may not use plugin {plugin:?}", tenant.name));
        }
        if let Some(queues) = &config.queues
            && !queues.iter().any(|q| q == queue)
        {
            return Err(format!("tenant {} may not use queue {queue:?}", tenant.name));
        }
        Ok(())
    }

    /// Narrows a request's limits by the tenant's quotas.
    pub fn narrow_limits(&self, tenant: &Tenant, request: LimitsRequest) -> LimitsRequest {
        let Some(c) = self.config(&tenant.name) else { return request };
        let min = |asked: Option<u64>, quota: Option<u64>| match (asked, quota) {
            (Some(a), Some(q)) => Some(a.min(q)),
            (a, q) => a.or(q),
        };
        LimitsRequest {
            fuel: min(request.fuel, c.fuel),
            timeout_ms: min(request.timeout_ms, c.timeout_ms),
            memory_mb: min(request.memory_mb, c.memory_mb),
        }
    }

    /// Takes one submission from the tenant's rate budget; `Err(seconds)` says when to retry.
    pub fn take_submit(&self, tenant: &Tenant) -> Result<(), f64> {
        let Some(config) = self.config(&tenant.name) else { return Ok(()) };
        let Some(rate) = config.submit_per_sec.filter(|r| *r > 0.0) else { return Ok(()) };
        let burst = f64::from(config.submit_burst.unwrap_or(rate.ceil() as u32).max(1));
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let now = Instant::now();
        let bucket = buckets.entry(tenant.name.clone()).or_insert(Bucket { tokens: burst, last: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - bucket.tokens) / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(token: &str, extra: &str) -> String {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        format!("[tenants.acme]\ntoken_sha256 = \"{hash}\"\n{extra}\n")
    }

    #[test]
    fn a_token_is_known_by_its_hash_only() {
        let (token, hash) = new_token().unwrap();
        assert_eq!(hash.len(), 64);
        let tenants = Tenants::parse(&format!("[tenants.acme]\ntoken_sha256 = \"{hash}\"\n")).unwrap();
        assert_eq!(
            tenants.authenticate(Some(&token)),
            Authenticated::Caller(Tenant { name: "acme".into(), admin: false })
        );
        assert_eq!(tenants.authenticate(Some("th_wrong")), Authenticated::Refused);
        assert_eq!(tenants.authenticate(None), Authenticated::Refused);
        assert_eq!(tenants.authenticate(Some(&hash)), Authenticated::Refused, "the hash is not a token");
    }

    #[test]
    fn the_admin_sees_everything() {
        let (token, hash) = new_token().unwrap();
        let tenants = Tenants::parse(&format!("[admin]\ntoken_sha256 = \"{hash}\"\n")).unwrap();
        match tenants.authenticate(Some(&token)) {
            Authenticated::Caller(t) => assert!(t.admin && t.scope().is_none()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_files_are_refused_with_the_field() {
        assert!(
            Tenants::parse("[tenants.acme]\ntoken_sha256 = \"abc\"\n")
                .unwrap_err()
                .contains("tenants.acme.token_sha256")
        );
        assert!(Tenants::parse(&file_with("t", "token = \"t\"")).unwrap_err().contains("token"));
        assert!(Tenants::parse("").unwrap_err().contains("no tenant"));
    }

    #[test]
    fn quotas_narrow_limits_and_restrict_plugins() {
        let tenants = Tenants::parse(&file_with("t", "fuel = 100\nplugins = [\"cvd\"]")).unwrap();
        let acme = Tenant { name: "acme".into(), admin: false };
        let narrowed = tenants
            .narrow_limits(&acme, LimitsRequest { fuel: Some(1_000), timeout_ms: Some(5), memory_mb: None });
        assert_eq!(narrowed, LimitsRequest { fuel: Some(100), timeout_ms: Some(5), memory_mb: None });
        assert!(tenants.check_allowed(&acme, "cvd", "q").is_ok());
        assert!(tenants.check_allowed(&acme, "dft", "q").unwrap_err().contains("dft"));
    }

    #[test]
    fn a_celery_queue_belongs_to_one_tenant() {
        let (_, a) = new_token().unwrap();
        let (_, b) = new_token().unwrap();
        let text = format!(
            "[tenants.fab-a]\ntoken_sha256 = \"{a}\"\ncelery_queues = [\"cvd\", \"dft\"]\n\
             [tenants.fab-b]\ntoken_sha256 = \"{b}\"\ncelery_queues = [\"adr\"]\n"
        );
        let tenants = Tenants::parse(&text).unwrap();
        let owners = tenants.celery_queue_tenants();
        assert_eq!(owners.get("cvd").map(String::as_str), Some("fab-a"));
        assert_eq!(owners.get("adr").map(String::as_str), Some("fab-b"));
        assert_eq!(owners.len(), 3);
        assert!(Tenants::open().celery_queue_tenants().is_empty());
        let twice = text.replace("[\"adr\"]", "[\"adr\", \"cvd\"]");
        let e = Tenants::parse(&twice).unwrap_err();
        assert!(
            e.contains("tenants.fab-b.celery_queues") && e.contains("\"cvd\"") && e.contains("fab-a"),
            "{e}"
        );
    }

    #[test]
    fn the_submit_rate_refuses_past_the_burst_and_says_when_to_retry() {
        let tenants = Tenants::parse(&file_with("t", "submit_per_sec = 1.0\nsubmit_burst = 2")).unwrap();
        let acme = Tenant { name: "acme".into(), admin: false };
        assert!(tenants.take_submit(&acme).is_ok());
        assert!(tenants.take_submit(&acme).is_ok());
        let wait = tenants.take_submit(&acme).unwrap_err();
        assert!(wait > 0.0 && wait <= 1.0, "{wait}");
    }
}
