//! Status-callback tokens: the host signs each status-callback URL it hands a provider, so a
//! callback can name its message only through the provider that was asked to send it.
//!
//! The URL carries `message_id` (so a callback finds its message even before the provider's id
//! is recorded) and `token`, an HMAC-SHA256 of the tenant, the message id and the provider name.
//! Without the token, any provider plugin that accepts its own webhooks could post
//! `/webhooks/<its name>/status?message_id=<another provider's message>` and rewrite that
//! message. The provider signs the whole callback URL, token included, so providers and their
//! plugins need no change.
//!
//! The key is derived from the host secret `runtime.artifact_key_file` (created `0600` with
//! random bytes when missing, outside any cache) as HMAC-SHA256(secret, [`LABEL`]): one secret to
//! keep, two unrelated keys. Processes that serve the same public URL must share that file, or a
//! callback for a message one of them sent is refused by the others (the reconciler still finds
//! the message's status).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::TenantId;

type HmacSha256 = Hmac<Sha256>;

/// The label the callback key is derived under, so it never equals the artifact key.
pub const LABEL: &[u8] = b"herald/status-callback-token/v1";

/// The key that signs status-callback URLs.
#[derive(Clone)]
pub struct CallbackKey([u8; 32]);

impl std::fmt::Debug for CallbackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackKey([redacted])")
    }
}

impl CallbackKey {
    /// The callback key derived from the host secret `secret`.
    #[must_use]
    pub fn derive(secret: &[u8]) -> Self {
        Self(mac(secret, &[LABEL]).finalize().into_bytes().into())
    }

    /// The token for `message_id` of `tenant`, sent through `provider`: 64 hex digits.
    #[must_use]
    pub fn token(&self, tenant: &TenantId, message_id: &str, provider: &str) -> String {
        hex::encode(
            self.mac(tenant, message_id, provider)
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `token` is the token for `message_id` of `tenant` through `provider`, compared in
    /// constant time.
    #[must_use]
    pub fn verify(&self, tenant: &TenantId, message_id: &str, provider: &str, token: &str) -> bool {
        let Ok(bytes) = hex::decode(token) else {
            return false;
        };
        self.mac(tenant, message_id, provider)
            .verify_slice(&bytes)
            .is_ok()
    }

    fn mac(&self, tenant: &TenantId, message_id: &str, provider: &str) -> HmacSha256 {
        mac(
            &self.0,
            &[
                tenant.as_str().as_bytes(),
                message_id.as_bytes(),
                provider.as_bytes(),
            ],
        )
    }
}

/// An HMAC over `parts`, each prefixed with its length so no two lists read alike.
fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::new(id).unwrap()
    }

    /// A token verifies for its own tenant, message and provider, and for nothing else.
    #[test]
    fn token_binds_tenant_message_and_provider() {
        let key = CallbackKey::derive(&[7; 32]);
        let token = key.token(&tenant("default"), "msg_1", "twilio");
        assert_eq!(token.len(), 64);
        assert!(key.verify(&tenant("default"), "msg_1", "twilio", &token));
        assert!(!key.verify(&tenant("acme"), "msg_1", "twilio", &token));
        assert!(!key.verify(&tenant("default"), "msg_2", "twilio", &token));
        assert!(!key.verify(&tenant("default"), "msg_1", "evil", &token));
        assert!(!key.verify(&tenant("default"), "msg_1", "twilio", ""));
        assert!(!key.verify(&tenant("default"), "msg_1", "twilio", "zz"));
        assert!(!key.verify(&tenant("default"), "msg_1", "twilio", &token[..32]));
        let other = CallbackKey::derive(&[8; 32]);
        assert!(!other.verify(&tenant("default"), "msg_1", "twilio", &token));
    }

    /// Length prefixes keep `("ab", "c")` and `("a", "bc")` apart.
    #[test]
    fn parts_do_not_run_together() {
        let key = CallbackKey::derive(&[7; 32]);
        assert_ne!(
            key.token(&tenant("default"), "msg_ab", "c"),
            key.token(&tenant("default"), "msg_a", "bc")
        );
    }
}
