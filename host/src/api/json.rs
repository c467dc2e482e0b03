//! [`ApiJson`], the JSON body extractor of every API handler, and the wording of its refusals.
//!
//! Before a body is deserialized into its typed struct it is walked once, with a small serde
//! visitor that builds nothing, to refuse what serde would let through:
//! - a NUL character in any string or key (`\u0000`): PostgreSQL cannot store one, and no field
//!   needs one;
//! - a key given twice in one object: which of the two values wins is nobody's intent.
//!
//! Both are `422 invalid_field` naming the field, as is a body that is not an object (serde
//! would read a struct from an array by position). Serde's own wording ("invalid type: map,
//! expected a string at line 1 column 34") is rewritten into Herald's, naming the field and
//! what it must be ("`customer_id` must be a string or a number, not an object"); a body that
//! is not JSON at all is `400 malformed_json`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess};

use super::error::{ApiError, ApiResult};
use crate::domain::ErrorCode;

/// A request body parsed as JSON into `T`, refusing NUL characters and duplicate keys, with
/// every refusal in the API's error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state).await?;
        parse(&bytes).map(Self)
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses `bytes` as a JSON `T`: screened for NUL characters and duplicate keys first, then
/// deserialized, each refusal worded for people.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    screen(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        ApiError::new(
            ErrorCode::InvalidField,
            data_message(&path, &serde_message(e.inner())),
        )
    })
}

/// Walks the whole document once: syntax errors, NUL characters and duplicate keys.
fn screen(bytes: &[u8]) -> ApiResult<()> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::MalformedJson,
            "the body is empty: send a JSON object",
        ));
    }
    let problem = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let walked = Screen {
        path: String::new(),
        problem: &problem,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    if let Some(refused) = problem.into_inner() {
        return Err(refused);
    }
    walked.map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {}", syntax_message(&e)),
        )
    })?;
    // Serde would read a struct from an array, by position: every body is an object.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let kind = match first {
        Some(b'{') => return Ok(()),
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    };
    Err(ApiError::new(
        ErrorCode::InvalidField,
        format!("the body must be a JSON object, not {kind}"),
    ))
}

/// The screening visitor at one place in the document; it records the first problem it finds
/// in `problem` and stops the walk.
struct Screen<'a> {
    /// Where it is, as `metadata.items[2]` (empty at the top).
    path: String,
    problem: &'a RefCell<Option<ApiError>>,
}

impl Screen<'_> {
    fn at(&self, path: String) -> Self {
        Screen {
            path,
            problem: self.problem,
        }
    }

    fn key_path(&self, key: &str) -> String {
        let key: String = key.chars().take(64).collect();
        if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn refuse<E: de::Error>(&self, message: String) -> Result<(), E> {
        *self.problem.borrow_mut() = Some(ApiError::new(ErrorCode::InvalidField, message));
        Err(E::custom("refused while screening"))
    }

    /// `the body` or `` `path` ``.
    fn place(&self) -> String {
        if self.path.is_empty() {
            "the body".to_owned()
        } else {
            format!("`{}`", self.path)
        }
    }
}

impl<'de> DeserializeSeed<'de> for Screen<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for Screen<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        if text.contains('\0') {
            return self.refuse(format!(
                "{} contains a NUL character (\\u0000)",
                self.place()
            ));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while seq
            .next_element_seed(self.at(format!("{}[{index}]", self.path)))?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.contains('\0') {
                let within = if self.path.is_empty() {
                    String::new()
                } else {
                    format!(" in `{}`", self.path)
                };
                return self.refuse(format!(
                    "a field name{within} contains a NUL character (\\u0000)"
                ));
            }
            let path = self.key_path(&key);
            if !seen.insert(key) {
                return self.refuse(format!("duplicate field `{path}`: give each field once"));
            }
            map.next_value_seed(self.at(path))?;
        }
        Ok(())
    }
}

/// A serde_json error's message without the position serde_json appends to it.
fn serde_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// A syntax error as "what, at line L, column C".
fn syntax_message(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Eof => "it ends too early".to_owned(),
        _ => serde_message(error),
    };
    format!("{what} (line {}, column {})", error.line(), error.column())
}

/// Herald's wording of a deserialization error `raw` (serde's message) at `path` (`.` for the
/// whole body, `metadata.x`, `items[0]`).
pub(crate) fn data_message(path: &str, raw: &str) -> String {
    let whole = path == "." || path.is_empty();
    let child = |name: &str| {
        if whole {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = |rest: &str| rest.split('`').next().unwrap_or_default().to_owned();
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        // The path already ends with the unknown field.
        let name = if whole { quoted(rest) } else { path.to_owned() };
        return format!("unknown field `{name}`");
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        return format!("`{}` is required", child(&quoted(rest)));
    }
    if let Some(rest) = raw.strip_prefix("duplicate field `") {
        return format!(
            "duplicate field `{}`: give each field once",
            child(&quoted(rest))
        );
    }
    let subject = if whole {
        "the body".to_owned()
    } else {
        format!("`{path}`")
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, want)) = raw
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(", expected "))
        {
            return format!(
                "{subject} must be {}, not {}",
                expected(want),
                unexpected(got)
            );
        }
    }
    if let Some((_, want)) = raw
        .strip_prefix("invalid length ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        return format!("{subject} must be {}", expected(want));
    }
    format!("{subject} has a value of the wrong kind")
}

/// What serde says was expected, in JSON's words.
fn expected(want: &str) -> String {
    match want {
        "a map" => "an object".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "a whole number".to_owned()
        }
        "f32" | "f64" => "a number".to_owned(),
        struct_name if struct_name.starts_with("struct ") => "a JSON object".to_owned(),
        other => other.to_owned(),
    }
}

/// What serde says it found, in JSON's words: a number or boolean as itself (short), any other
/// value by its kind (a string might be long, and is the caller's own anyway).
fn unexpected(got: &str) -> String {
    let literal = ["integer `", "floating point `", "boolean `"]
        .iter()
        .find_map(|prefix| got.strip_prefix(prefix))
        .and_then(|rest| rest.strip_suffix('`'));
    if let Some(value) = literal {
        return value.chars().take(32).collect();
    }
    match got {
        "map" => "an object",
        "sequence" => "an array",
        "unit value" | "null" => "null",
        g if g.starts_with("string ") || g.starts_with("character ") => "a string",
        _ => "a value of another kind",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: Option<u32>,
        flag: Option<bool>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        extra: BTreeMap<String, serde_json::Value>,
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        inner: String,
    }

    fn refused(body: &str) -> ApiError {
        parse::<Body>(body.as_bytes()).unwrap_err()
    }

    /// A NUL character in any string or key is refused, naming where it is.
    #[test]
    fn nul_anywhere_is_refused() {
        for (body, place) in [
            (r#"{"name": "a\u0000b"}"#, "`name`"),
            (r#"{"name": "a", "tags": ["x", "\u0000"]}"#, "`tags[1]`"),
            (
                r#"{"name": "a", "extra": {"k": {"deep": "\u0000"}}}"#,
                "`extra.k.deep`",
            ),
            (r#"{"name": "a", "extra": {"k\u0000": 1}}"#, "in `extra`"),
            (r#"{"na\u0000me": "a"}"#, "a field name contains"),
        ] {
            let error = refused(body);
            assert_eq!(error.code, ErrorCode::InvalidField, "{body}");
            assert!(error.message.contains("NUL"), "{}", error.message);
            assert!(error.message.contains(place), "{}", error.message);
        }
        // An escaped backslash before `u0000` is text, not a NUL.
        assert!(parse::<Body>(br#"{"name": "\\u0000"}"#).is_ok());
    }

    /// A key given twice is refused, at the top and inside nested objects.
    #[test]
    fn duplicate_keys_are_refused() {
        let error = refused(r#"{"name": "a", "name": "b"}"#);
        assert_eq!(error.code, ErrorCode::InvalidField);
        assert!(
            error.message.contains("duplicate field `name`"),
            "{}",
            error.message
        );
        let error = refused(r#"{"name": "a", "extra": {"k": 1, "k": 2}}"#);
        assert!(error.message.contains("`extra.k`"), "{}", error.message);
        // The same key in two different objects is fine.
        assert!(
            parse::<Body>(br#"{"name": "a", "extra": {"name": 1}, "nested": {"inner": "x"}}"#)
                .is_ok()
        );
    }

    /// Wrong types, unknown and missing fields are worded in Herald's words, naming the field,
    /// with no trace of serde's.
    #[test]
    fn data_errors_name_the_field() {
        for (body, message) in [
            (r#"{"name": {}}"#, "`name` must be a string, not an object"),
            (r#"{"name": 5}"#, "`name` must be a string, not 5"),
            (r#"{"name": null}"#, "`name` must be a string, not null"),
            (
                r#"{"name": "a", "count": "7"}"#,
                "`count` must be a whole number, not a string",
            ),
            (
                r#"{"name": "a", "count": -1}"#,
                "`count` must be a whole number, not -1",
            ),
            (
                r#"{"name": "a", "count": 1.5}"#,
                "`count` must be a whole number, not 1.5",
            ),
            (
                r#"{"name": "a", "flag": null, "tags": "x"}"#,
                "`tags` must be an array, not a string",
            ),
            (
                r#"{"name": "a", "tags": [true]}"#,
                "`tags[0]` must be a string, not true",
            ),
            (
                r#"{"name": "a", "flag": 1}"#,
                "`flag` must be true or false, not 1",
            ),
            (
                r#"{"name": "a", "extra": []}"#,
                "`extra` must be an object, not an array",
            ),
            (
                r#"{"name": "a", "surprise": 1}"#,
                "unknown field `surprise`",
            ),
            (
                r#"{"name": "a", "nested": {"x": 1}}"#,
                "unknown field `nested.x`",
            ),
            (
                r#"{"name": "a", "nested": {}}"#,
                "`nested.inner` is required",
            ),
            (r#"{}"#, "`name` is required"),
            (r#"[1]"#, "the body must be a JSON object, not an array"),
            (r#""text""#, "the body must be a JSON object, not a string"),
            (
                r#"["a", 1]"#,
                "the body must be a JSON object, not an array",
            ),
            ("null", "the body must be a JSON object, not null"),
            (" 12", "the body must be a JSON object, not a number"),
        ] {
            let error = refused(body);
            assert_eq!(error.code, ErrorCode::InvalidField, "{body}");
            assert_eq!(error.message, message, "{body}");
        }
    }

    /// Text that is not JSON is a 400 `malformed_json` with where it went wrong.
    #[test]
    fn syntax_errors_are_malformed_json() {
        for body in [
            "",
            "  ",
            "{\"name\": ",
            "{\"name\" \"a\"}",
            "{\"name\": \"a\"} x",
            "nul",
        ] {
            let error = refused(body);
            assert_eq!(error.code, ErrorCode::MalformedJson, "{body:?}");
        }
        assert!(refused("{\"name\": ").message.contains("ends too early"));
        assert!(
            refused("{\"name\": \"a\"} x")
                .message
                .contains("line 1, column")
        );
    }

    /// JSON content types are recognised with parameters and `+json` suffixes, and only those.
    #[test]
    fn json_content_types() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
