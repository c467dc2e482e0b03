//! The plugin's settings: the keys it declares to the host and how a call's `config` pairs are read.
//!
//! The host passes the operator's settings (secrets included) with every call, so nothing is cached
//! between calls. Error texts name the offending key but never echo a value: values may be secrets.

use crate::bindings::herald::plugin::types::ConfigKey;

/// Where Twilio's REST API lives unless `base_url` says otherwise (tests point it at a mock).
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// The settings declared in `describe`: (name, description, required, secret).
const KEYS: &[(&str, &str, bool, bool)] = &[
    (
        "account_sid",
        "The Twilio Account SID (AC followed by 32 hex digits).",
        true,
        false,
    ),
    (
        "auth_token",
        "The account's Auth Token; signs webhooks, and authenticates sends unless an API key is set.",
        true,
        true,
    ),
    (
        "api_key_sid",
        "Optional API key SID (SK…) used with api_key_secret instead of the Auth Token for sends.",
        false,
        false,
    ),
    (
        "api_key_secret",
        "The secret of the API key named by api_key_sid.",
        false,
        true,
    ),
    (
        "from",
        "Default sender (E.164 number, short code or alphanumeric ID) when a message names none.",
        false,
        false,
    ),
    (
        "messaging_service_sid",
        "Messaging Service SID (MG…) used when neither the message nor `from` names a sender.",
        false,
        false,
    ),
    (
        "base_url",
        "Base URL of the Twilio REST API; defaults to https://api.twilio.com.",
        false,
        false,
    ),
];

/// The config keys this plugin reads, for `describe`.
pub fn config_keys() -> Vec<ConfigKey> {
    KEYS.iter()
        .map(|&(name, description, required, secret)| ConfigKey {
            name: name.to_string(),
            description: description.to_string(),
            required,
            secret,
        })
        .collect()
}

/// Returns the first non-empty value for `key`; an empty value counts as unset, because operators
/// often leave optional settings present but blank.
pub fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(name, value)| name == key && !value.trim().is_empty())
        .map(|(_, value)| value.trim())
}

/// The HTTP Basic credentials used for REST calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The Basic-auth user: the Account SID or the API key SID.
    pub user: String,
    /// The Basic-auth password: the Auth Token or the API key secret.
    pub secret: String,
}

impl Credentials {
    /// The `Authorization` header value: HTTP Basic with these credentials.
    pub fn authorization(&self) -> String {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.secret));
        format!("Basic {basic}")
    }
}

/// The settings needed to call the Messages API: to send a message, or to read one back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConfig {
    /// The Account SID, which also appears in the request path.
    pub account_sid: String,
    /// Who to authenticate as.
    pub credentials: Credentials,
    /// The default sender phone number, short code or alphanumeric ID.
    pub from: Option<String>,
    /// The Messaging Service used when there is no other sender.
    pub messaging_service_sid: Option<String>,
    /// The API base URL without a trailing slash.
    pub base_url: String,
}

impl SendConfig {
    /// Reads and checks the settings; the error text is meant for operators.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, String> {
        let account_sid = lookup(pairs, "account_sid")
            .ok_or_else(|| "config key `account_sid` is required".to_string())?;
        // The SID goes into the request path, so checking its shape also rules out path tricks.
        if !is_sid(account_sid, "AC") {
            return Err(
                "config key `account_sid` is not an Account SID (AC followed by 32 hex digits)"
                    .to_string(),
            );
        }
        let credentials = match (
            lookup(pairs, "api_key_sid"),
            lookup(pairs, "api_key_secret"),
        ) {
            (Some(sid), Some(secret)) => Credentials {
                user: sid.to_string(),
                secret: secret.to_string(),
            },
            (Some(_), None) => {
                return Err("config key `api_key_sid` is set but `api_key_secret` is not".into());
            }
            (None, Some(_)) => {
                return Err("config key `api_key_secret` is set but `api_key_sid` is not".into());
            }
            (None, None) => Credentials {
                user: account_sid.to_string(),
                secret: lookup(pairs, "auth_token")
                    .ok_or_else(|| {
                        "config key `auth_token` is required (or `api_key_sid` and `api_key_secret`)"
                            .to_string()
                    })?
                    .to_string(),
            },
        };
        let base_url = lookup(pairs, "base_url")
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            account_sid: account_sid.to_string(),
            credentials,
            from: lookup(pairs, "from").map(str::to_string),
            messaging_service_sid: lookup(pairs, "messaging_service_sid").map(str::to_string),
            base_url,
        })
    }
}

/// Whether `value` is a Twilio SID: the two-letter `prefix` followed by exactly 32 hex digits.
pub fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34
        && value.starts_with(prefix)
        && value[prefix.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn auth_token_credentials_and_defaults() {
        let config =
            SendConfig::parse(&pairs(&[("account_sid", SID), ("auth_token", "tok")])).unwrap();
        assert_eq!(config.credentials.user, SID);
        assert_eq!(config.credentials.secret, "tok");
        assert_eq!(config.base_url, DEFAULT_BASE_URL);
        assert_eq!(config.from, None);
    }

    #[test]
    fn api_key_pair_wins_and_blank_values_are_unset() {
        let config = SendConfig::parse(&pairs(&[
            ("account_sid", SID),
            ("api_key_sid", "SKabc"),
            ("api_key_secret", "shh"),
            ("from", " "),
            ("base_url", "http://127.0.0.1:9000/"),
        ]))
        .unwrap();
        assert_eq!(config.credentials.user, "SKabc");
        assert_eq!(config.credentials.secret, "shh");
        assert_eq!(config.from, None);
        assert_eq!(config.base_url, "http://127.0.0.1:9000");
    }

    #[test]
    fn missing_or_bad_settings_are_reported_without_values() {
        let err = SendConfig::parse(&pairs(&[("auth_token", "secret-value")])).unwrap_err();
        assert!(err.contains("account_sid"));
        let err = SendConfig::parse(&pairs(&[("account_sid", "AC/../x")])).unwrap_err();
        assert!(err.contains("Account SID"));
        let err = SendConfig::parse(&pairs(&[("account_sid", SID)])).unwrap_err();
        assert!(err.contains("auth_token"));
        let err = SendConfig::parse(&pairs(&[("account_sid", SID), ("api_key_secret", "s3")]))
            .unwrap_err();
        assert!(!err.contains("s3"));
    }

    #[test]
    fn declared_keys_mark_secrets() {
        let keys = config_keys();
        let secret: Vec<_> = keys.iter().filter(|k| k.secret).map(|k| &k.name).collect();
        assert_eq!(secret, ["auth_token", "api_key_secret"]);
        assert!(keys.iter().any(|k| k.name == "account_sid" && k.required));
    }
}
