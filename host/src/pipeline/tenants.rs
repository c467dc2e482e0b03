//! Tenants: who may send, with which keys, through which plugins and with whose credentials.
//!
//! A tenant's settings override the operator's, per tenant: its routing (which provider and
//! which renderer), its plugins' settings (its own Twilio account, token and sender number), and
//! the numbers it owns, through which inbound messages find it. Secret settings are write-only:
//! they are shown as `[redacted]`, and writing `[redacted]` back keeps the stored value.
//!
//! API keys are random, shown once, and stored as SHA-256 hashes with a short visible prefix.
//! Every request looks its key up, so a revoked key stops working at once in every process; the
//! operator's `server.api_keys` are the bootstrap keys of the default tenant.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::{PhoneNumber, TenantId, TenantStatus};
use crate::plugin::{LoadedPlugin, PluginKind};
use crate::store::{ApiKey, NewApiKey, StoreError, Tenant, new_id};

/// What a redacted secret reads as, and what keeps a stored secret when written back.
pub const REDACTED: &str = "[redacted]";
/// How many characters of a key stay visible (`hk_` and eight more).
const PREFIX_LEN: usize = 11;
/// The longest tenant name accepted.
const MAX_NAME: usize = 128;

/// A tenant's own settings; everything left out falls back to the operator's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    /// Which plugins serve this tenant.
    pub routing: TenantRouting,
    /// Settings per plugin name, overriding the operator's values of the same keys.
    pub plugins: BTreeMap<String, BTreeMap<String, String>>,
    /// Numbers the tenant owns: inbound messages to them belong to it.
    pub numbers: Vec<PhoneNumber>,
    /// The tenant's own prices; an entry that fits a message overrides the operator's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing: Option<super::pricing::PriceTable>,
}

/// A tenant's routing; `None` takes the operator's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantRouting {
    /// The provider plugin that sends this tenant's messages.
    pub provider: Option<String>,
    /// The renderer plugin for this tenant's templates.
    pub renderer: Option<String>,
}

/// A new API key, the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedKey {
    /// The key as stored (id and prefix).
    #[serde(flatten)]
    pub key: ApiKey,
    /// The key itself: send it as `Authorization: Bearer <key>`.
    #[serde(rename = "key")]
    pub secret: String,
}

/// The SHA-256 of an API key, as stored.
fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a tenant called `name`, with the default templates.
pub async fn create_tenant(pipeline: &Pipeline, name: &str) -> Result<Tenant> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(PipelineError::new(
            ErrorCode::InvalidField,
            format!("name must be 1 to {MAX_NAME} characters, none of them control characters"),
        ));
    }
    let id = TenantId::new(new_id("ten")).map_err(PipelineError::internal)?;
    let tenant = Tenant {
        id,
        name: name.to_owned(),
        status: TenantStatus::Active,
        created_at: pipeline.now(),
    };
    pipeline.store().create_tenant(&tenant).await?;
    super::templates::defaults::seed(pipeline, &tenant.id).await?;
    Ok(tenant)
}

/// Every tenant, oldest first.
pub async fn list_tenants(pipeline: &Pipeline) -> Result<Vec<Tenant>> {
    Ok(pipeline.store().list_tenants().await?)
}

/// The tenant `id`.
pub async fn tenant(pipeline: &Pipeline, id: &TenantId) -> Result<Tenant> {
    pipeline
        .store()
        .get_tenant(id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Parses a tenant id from a path; an id that cannot exist reads as absent.
pub fn tenant_id(id: &str) -> Result<TenantId> {
    TenantId::new(id).map_err(|_| {
        let shown: String = id.chars().take(64).collect();
        PipelineError::new(ErrorCode::TenantNotFound, format!("no tenant `{shown}`"))
    })
}

fn not_found(id: &TenantId) -> PipelineError {
    PipelineError::new(ErrorCode::TenantNotFound, format!("no tenant `{id}`"))
}

/// Suspends or reactivates a tenant.
pub async fn set_status(
    pipeline: &Pipeline,
    id: &TenantId,
    status: TenantStatus,
) -> Result<Tenant> {
    pipeline
        .store()
        .set_tenant_status(id, status)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Refuses a send for a suspended tenant.
pub async fn ensure_active(pipeline: &Pipeline, id: &TenantId) -> Result<()> {
    match pipeline.store().get_tenant(id).await? {
        Some(t) if t.status == TenantStatus::Suspended => Err(PipelineError::new(
            ErrorCode::TenantSuspended,
            format!("tenant `{id}` is suspended; nothing was sent"),
        )),
        Some(_) => Ok(()),
        None => Err(not_found(id)),
    }
}

/// Issues a new API key for tenant `id`.
pub async fn create_api_key(pipeline: &Pipeline, id: &TenantId) -> Result<IssuedKey> {
    tenant(pipeline, id).await?;
    let bytes: [u8; 24] = rand::rng().random();
    let secret = format!("hk_{}", hex::encode(bytes));
    let new = NewApiKey {
        id: new_id("key"),
        tenant_id: id.clone(),
        prefix: secret[..PREFIX_LEN].to_owned(),
        key_hash: key_hash(&secret),
        now: pipeline.now(),
    };
    let key = pipeline.store().create_api_key(&new).await?;
    Ok(IssuedKey { key, secret })
}

/// Tenant `id`'s keys: ids and prefixes, never the keys.
pub async fn api_keys(pipeline: &Pipeline, id: &TenantId) -> Result<Vec<ApiKey>> {
    tenant(pipeline, id).await?;
    Ok(pipeline.store().list_api_keys(id).await?)
}

/// Revokes one of tenant `id`'s keys, at once.
pub async fn revoke_api_key(pipeline: &Pipeline, id: &TenantId, key_id: &str) -> Result<()> {
    tenant(pipeline, id).await?;
    // Key ids are Herald's own (`key_…`): anything else names no key, and never reaches SQL.
    let plausible = key_id.len() <= 64
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plausible
        && pipeline
            .store()
            .revoke_api_key(id, key_id, pipeline.now())
            .await?
    {
        Ok(())
    } else {
        let shown: String = key_id.chars().take(64).collect();
        Err(PipelineError::new(
            ErrorCode::ApiKeyNotFound,
            format!("tenant `{id}` has no live key `{shown}`"),
        ))
    }
}

/// The tenant an API key authenticates, if any: a key issued through the admin API, or one of
/// the operator's bootstrap keys (the default tenant).
pub async fn authenticate(pipeline: &Pipeline, key: &str) -> Result<Option<Tenant>> {
    if key.is_empty() {
        return Ok(None);
    }
    let bootstrap = pipeline
        .config()
        .server
        .api_keys
        .iter()
        .any(|k| !k.is_empty() && constant_time_eq(k.as_bytes(), key.as_bytes()));
    if bootstrap {
        return Ok(pipeline
            .store()
            .get_tenant(&TenantId::default_tenant())
            .await?);
    }
    Ok(pipeline.store().tenant_for_key(&key_hash(key)).await?)
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Tenant `id`'s settings as stored (secrets in clear: for Herald's own use, never shown).
pub async fn settings(pipeline: &Pipeline, id: &TenantId) -> Result<TenantSettings> {
    match pipeline.store().get_tenant_settings(id).await? {
        Some(stored) => serde_json::from_str(&stored.settings)
            .map_err(|e| PipelineError::internal(format!("settings of tenant {id}: {e}"))),
        None => Ok(TenantSettings::default()),
    }
}

/// Tenant `id`'s settings with every secret shown as `[redacted]`.
pub async fn redacted_settings(pipeline: &Pipeline, id: &TenantId) -> Result<TenantSettings> {
    tenant(pipeline, id).await?;
    let mut shown = settings(pipeline, id).await?;
    for (plugin, values) in &mut shown.plugins {
        let loaded = pipeline.plugins().get(plugin);
        for (key, value) in values.iter_mut() {
            let secret = loaded
                .as_ref()
                .map_or_else(|| crate::config::looks_secret(key), |p| p.is_secret(key));
            if secret && !value.is_empty() {
                *value = REDACTED.to_owned();
            }
        }
    }
    Ok(shown)
}

/// Replaces tenant `id`'s settings after checking them: named plugins exist in the right role,
/// every plugin setting is one the plugin declares, and no number belongs to another tenant.
/// A secret written as `[redacted]` keeps its stored value.
pub async fn put_settings(
    pipeline: &Pipeline,
    id: &TenantId,
    mut new: TenantSettings,
) -> Result<TenantSettings> {
    tenant(pipeline, id).await?;
    let invalid = |message: String| PipelineError::new(ErrorCode::InvalidField, message);
    let plugins = pipeline.plugins();
    for (role, name, kind) in [
        ("provider", &new.routing.provider, PluginKind::Provider),
        ("renderer", &new.routing.renderer, PluginKind::Renderer),
    ] {
        if let Some(name) = name
            && plugins.get(name).is_none_or(|p| p.kind() != kind)
        {
            return Err(invalid(format!(
                "routing.{role}: no {role} plugin `{name}` is loaded"
            )));
        }
    }
    if let Some(pricing) = &new.pricing {
        pricing
            .check()
            .map_err(|e| invalid(format!("pricing.{e}")))?;
    }
    let current = settings(pipeline, id).await?;
    for (plugin, values) in &mut new.plugins {
        let loaded = plugins
            .get(plugin)
            .ok_or_else(|| invalid(format!("plugins.{plugin}: no plugin `{plugin}` is loaded")))?;
        for (key, value) in values.iter_mut() {
            if !loaded.declares(key) {
                return Err(invalid(format!(
                    "plugins.{plugin}.{key}: the plugin has no setting `{key}`"
                )));
            }
            if value == REDACTED {
                *value = current
                    .plugins
                    .get(plugin)
                    .and_then(|old| old.get(key))
                    .cloned()
                    .ok_or_else(|| {
                        invalid(format!("plugins.{plugin}.{key}: no stored value to keep"))
                    })?;
            }
        }
    }
    let mut numbers: Vec<String> = new.numbers.iter().map(ToString::to_string).collect();
    numbers.sort();
    numbers.dedup();
    let text = serde_json::to_string(&new).map_err(PipelineError::internal)?;
    match pipeline
        .store()
        .put_tenant_settings(id, &text, &numbers, pipeline.now())
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(message)) => {
            return Err(PipelineError::new(ErrorCode::NumberTaken, message));
        }
        Err(e) => return Err(e.into()),
    }
    redacted_settings(pipeline, id).await
}

/// The provider plugin that sends tenant `id`'s messages, with its settings applied.
pub async fn provider(pipeline: &Pipeline, id: &TenantId) -> Result<Arc<LoadedPlugin>> {
    routed(pipeline, id, PluginKind::Provider).await
}

/// The renderer plugin for tenant `id`'s templates, with its settings applied.
pub async fn renderer(pipeline: &Pipeline, id: &TenantId) -> Result<Arc<LoadedPlugin>> {
    routed(pipeline, id, PluginKind::Renderer).await
}

/// The plugin routed for `kind` for tenant `id`: the tenant's choice, else the operator's.
async fn routed(pipeline: &Pipeline, id: &TenantId, kind: PluginKind) -> Result<Arc<LoadedPlugin>> {
    let settings = settings(pipeline, id).await?;
    let config = pipeline.config();
    let (chosen, operator, role, code) = match kind {
        PluginKind::Provider => (
            &settings.routing.provider,
            &config.routing.provider,
            "provider",
            ErrorCode::ProviderUnavailable,
        ),
        PluginKind::Renderer => (
            &settings.routing.renderer,
            &config.routing.renderer,
            "renderer",
            ErrorCode::RendererUnavailable,
        ),
    };
    let name = chosen.as_deref().unwrap_or(operator);
    scoped(pipeline, &settings, name, kind)
        .ok_or_else(|| PipelineError::new(code, format!("no {role} plugin `{name}` is loaded")))
}

/// The provider plugin `name` with tenant `id`'s settings applied (a keyword reply goes out
/// through the provider the keyword came in on; a webhook is verified with the tenant's
/// credentials).
pub async fn provider_named(
    pipeline: &Pipeline,
    id: &TenantId,
    name: &str,
) -> Result<Option<Arc<LoadedPlugin>>> {
    let settings = settings(pipeline, id).await?;
    Ok(scoped(pipeline, &settings, name, PluginKind::Provider))
}

fn scoped(
    pipeline: &Pipeline,
    settings: &TenantSettings,
    name: &str,
    kind: PluginKind,
) -> Option<Arc<LoadedPlugin>> {
    if name.is_empty() {
        return None;
    }
    let plugin = pipeline.plugins().get(name).filter(|p| p.kind() == kind)?;
    match settings.plugins.get(name) {
        Some(overrides) if !overrides.is_empty() => {
            Some(Arc::new(plugin.with_overrides(overrides)))
        }
        _ => Some(plugin),
    }
}

/// The tenant that owns the number an inbound message was sent to through `provider`: a tenant
/// whose settings list it, or the default tenant when the operator's own provider settings send
/// from it.
///
/// A tenant's number counts only through a provider that serves that tenant (its routed
/// provider, a provider it has its own settings for, or one whose operator settings name the
/// number): another loaded provider's webhook cannot speak for it, so a hostile plugin cannot
/// opt the tenant's recipients out or make it send keyword replies.
pub async fn owner_of_number(
    pipeline: &Pipeline,
    provider: &str,
    number: &str,
) -> Result<Option<TenantId>> {
    let config = pipeline.config();
    let operator_number = config
        .plugins
        .get(provider)
        .is_some_and(|p| p.config.values().any(|v| v == number));
    if let Some(owner) = pipeline.store().tenant_for_number(number).await? {
        let settings = settings(pipeline, &owner).await?;
        let routed = settings
            .routing
            .provider
            .as_deref()
            .unwrap_or(&config.routing.provider);
        let serves = routed == provider
            || settings
                .plugins
                .get(provider)
                .is_some_and(|p| !p.is_empty())
            || operator_number;
        if !serves {
            tracing::warn!(
                provider,
                tenant = %owner,
                "inbound message to a tenant's number through a provider that does not serve it"
            );
        }
        return Ok(serves.then_some(owner));
    }
    Ok(operator_number.then(TenantId::default_tenant))
}
