//! Tenants: who owns a task.
//!
//! Until tenant files and tokens arrive (`--tenants FILE`), the host serves one tenant,
//! [`DEFAULT_TENANT`], and listens on loopback only. The API passes a [`Tenant`] to every
//! storage call so that scoping is already in place.

/// The tenant of a host without a tenants file.
pub const DEFAULT_TENANT: &str = "default";

/// The caller of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant name.
    pub name: String,
    /// Admins see every tenant's tasks.
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
