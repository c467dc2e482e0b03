//! The URL's own input: [`ApiQuery`] for query strings and [`PathId`] for the id in a path,
//! each refusing a NUL character (`%00` decodes to one) and answering every refusal in the
//! API's error shape and Herald's words.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};
use super::json::data_message;
use crate::domain::ErrorCode;

/// A query string deserialized into `T`; a refusal is `422 invalid_query`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Self)
    }
}

/// Parses a query string (`a=1&b=2`, percent-decoded, `+` read as a space) into `T`.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> ApiResult<T> {
    let pairs = url::form_urlencoded::parse(query.as_bytes());
    for (name, value) in pairs {
        if name.contains('\0') {
            return Err(invalid(
                "a query parameter name contains a NUL character (%00)",
            ));
        }
        if value.contains('\0') {
            let name: String = name.chars().take(64).collect();
            return Err(invalid(format!(
                "query parameter `{name}` contains a NUL character (%00)"
            )));
        }
    }
    let deserializer = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        invalid(query_message(&path, &e.inner().to_string()))
    })
}

/// Herald's wording of a query refusal `raw` (serde's message) for parameter `path`.
fn query_message(path: &str, raw: &str) -> String {
    let quoted = |rest: &str| rest.split('`').next().unwrap_or_default().to_owned();
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        return format!("unknown query parameter `{}`", quoted(rest));
    }
    if let Some(rest) = raw.strip_prefix("duplicate field `") {
        return format!("query parameter `{}` is given more than once", quoted(rest));
    }
    if path == "." || path.is_empty() {
        return "the query string is not valid".to_owned();
    }
    if raw.starts_with("invalid type: ") || raw.starts_with("invalid value: ") {
        return format!("query parameter {}", data_message(path, raw));
    }
    // Number parsing errors ("invalid digit found in string") say nothing useful to a caller.
    format!("query parameter `{path}` has an invalid value")
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

/// The one id in a route's path (`/messages/{id}`); invalid UTF-8 or a NUL character is a
/// `422 invalid_field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidField,
                    "the id in the URL is not valid UTF-8 text",
                )
            })?;
        if id.contains('\0') {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "the id in the URL contains a NUL character (%00)",
            ));
        }
        Ok(Self(id))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Query {
        name: Option<String>,
        limit: Option<u32>,
    }

    fn refused(query: &str) -> ApiError {
        parse_query::<Query>(query).unwrap_err()
    }

    /// Values are percent-decoded; `%00` anywhere is refused, naming the parameter.
    #[test]
    fn nul_is_refused() {
        let parsed: Query = parse_query("name=a%2Bb+c&limit=5").unwrap();
        assert_eq!(
            parsed,
            Query {
                name: Some("a+b c".into()),
                limit: Some(5)
            }
        );
        let error = refused("name=%00");
        assert_eq!(error.code, ErrorCode::InvalidQuery);
        assert!(error.message.contains("`name`"), "{}", error.message);
        assert!(refused("na%00me=x").message.contains("NUL"));
    }

    /// Unknown, repeated and malformed parameters are worded in Herald's words.
    #[test]
    fn refusals_name_the_parameter() {
        for (query, message) in [
            ("surprise=1", "unknown query parameter `surprise`"),
            (
                "name=a&name=b",
                "query parameter `name` is given more than once",
            ),
            ("limit=ten", "query parameter `limit` has an invalid value"),
        ] {
            let error = refused(query);
            assert_eq!(error.code, ErrorCode::InvalidQuery, "{query}");
            assert_eq!(error.message, message, "{query}");
        }
    }
}
