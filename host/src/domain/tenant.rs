//! Tenant ids: every row Herald stores belongs to exactly one tenant, and every query is scoped
//! by one.

use serde::{Deserialize, Serialize};

/// The longest tenant id accepted.
const MAX_LEN: usize = 64;

/// A tenant's id: 1–64 ASCII letters, digits, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a tenant id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tenant id is 1 to {MAX_LEN} ASCII letters, digits, `_` or `-`")]
pub struct TenantIdError;

impl TenantId {
    /// The tenant that `server.api_keys` belong to, and that a single-tenant Herald uses.
    pub const DEFAULT: &'static str = "default";

    /// Parses a tenant id.
    pub fn new(id: impl Into<String>) -> Result<Self, TenantIdError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(id))
        } else {
            Err(TenantIdError)
        }
    }

    /// The default tenant.
    #[must_use]
    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a tenant may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Sends are accepted and queued messages are dispatched.
    Active,
    /// Sends are refused (`tenant_suspended`) and queued messages are held, not sent.
    Suspended,
}

impl TenantStatus {
    /// The status's name, as stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    /// Parses a status name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Active, Self::Suspended]
            .into_iter()
            .find(|status| status.as_str() == name)
    }
}

impl std::str::FromStr for TenantId {
    type Err = TenantIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = TenantIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain ids parse; empty, overlong and punctuated ones do not.
    #[test]
    fn parses_ids() {
        assert_eq!(
            TenantId::new("acme-1").map(|t| t.to_string()),
            Ok("acme-1".into())
        );
        assert_eq!(TenantId::default_tenant().as_str(), "default");
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert_eq!(TenantId::new(bad), Err(TenantIdError), "{bad:?}");
        }
    }
}
