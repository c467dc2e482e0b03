//! Reading the webhook request Twilio sends: its headers and its `application/x-www-form-urlencoded`
//! body (`+` is a space, `%XX` escapes are decoded, invalid UTF-8 is replaced).

use crate::bindings::herald::plugin::types::HttpRequest;

/// The first value of header `name`, compared case-insensitively as HTTP requires.
pub fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Whether the body is a form. Twilio always labels its form posts; a missing content type is
/// accepted as a form too when the body is empty (nothing to misread).
pub fn is_form(request: &HttpRequest) -> bool {
    match header(request, "content-type") {
        Some(value) => value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded"),
        None => request.body.is_empty(),
    }
}

/// The decoded form fields, in body order, duplicates kept.
pub fn fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The value of query parameter `name` in `url`, decoded; `None` when absent.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let without_fragment = url.split('#').next().unwrap_or_default();
    let (_, query) = without_fragment.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Decoded form fields with lookup by name.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parses a form body.
    pub fn parse(body: &[u8]) -> Self {
        Self(fields(body))
    }

    /// The first value of `name`, trimmed; empty values count as absent because Twilio sends
    /// some fields (e.g. geo fields) empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The first of `names` that has a value.
    pub fn first_of(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|name| self.get(name))
    }

    /// The raw first value of `name`, untrimmed and possibly empty (a message body is kept as is).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent() {
        let fields = Fields::parse(b"Body=Hello+there%21+%2B1&Empty=&To=%2B1555");
        assert_eq!(fields.get("Body"), Some("Hello there! +1"));
        assert_eq!(fields.get("Empty"), None);
        assert_eq!(fields.raw("Empty"), Some(""));
        assert_eq!(fields.first_of(&["Nope", "To"]), Some("+1555"));
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("https://h/p?a=1&bodySHA256=abc#frag", "bodySHA256").as_deref(),
            Some("abc")
        );
        assert_eq!(query_param("https://h/p", "bodySHA256"), None);
    }
}
