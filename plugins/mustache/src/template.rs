//! The template language: text with `{{name}}` placeholders (spaces allowed inside the braces,
//! names made of `A-Z a-z 0-9 _ . -`). There are no sections, partials or escaping: SMS text is
//! plain, so HTML escaping would only corrupt it.

// A BTreeMap rather than a HashMap: HashMap's random seed would make the component import
// `wasi:random`, which a pure renderer has no reason to need.
use std::collections::BTreeMap;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// Text copied as is.
    Text(&'a str),
    /// A placeholder, by variable name.
    Variable(&'a str),
}

/// Why a template is invalid, and where (1-based; the column counts characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What is wrong.
    pub message: String,
    /// Line of the offending `{{`, from 1.
    pub line: u32,
    /// Column of the offending `{{`, from 1, in characters.
    pub column: u32,
}

/// Why rendering failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The template uses a variable that was not supplied.
    Missing(String),
    /// The template is invalid.
    Invalid(Error),
}

/// Splits `template` into text and placeholders.
pub fn parse(template: &str) -> Result<Vec<Part<'_>>, Error> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let tag_start = template.len() - rest.len() + open;
        let inner_and_after = &rest[open + 2..];
        let Some(close) = inner_and_after.find("}}") else {
            return Err(error_at(template, tag_start, "unclosed `{{`".to_string()));
        };
        let name = inner_and_after[..close].trim_matches([' ', '\t']);
        if name.is_empty() {
            return Err(error_at(
                template,
                tag_start,
                "empty variable name".to_string(),
            ));
        }
        if !name.chars().all(is_name_char) {
            return Err(error_at(
                template,
                tag_start,
                format!("invalid variable name `{name}` (use letters, digits, `_`, `.` and `-`)"),
            ));
        }
        parts.push(Part::Variable(name));
        rest = &inner_and_after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

/// The variables `template` uses, in first-use order, each once.
pub fn variables(template: &str) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = Vec::new();
    for part in parse(template)? {
        if let Part::Variable(name) = part
            && !names.iter().any(|seen| seen == name)
        {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Renders `template`; every variable it uses must be supplied (the first value of a name wins).
pub fn render(template: &str, values: &[(String, String)]) -> Result<String, RenderError> {
    let parts = parse(template).map_err(RenderError::Invalid)?;
    let mut lookup: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, value) in values {
        lookup.entry(name.as_str()).or_insert(value.as_str());
    }
    let mut out = String::with_capacity(template.len());
    for part in parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Variable(name) => match lookup.get(name) {
                Some(value) => out.push_str(value),
                None => return Err(RenderError::Missing(name.to_string())),
            },
        }
    }
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Builds an error for the byte offset `at` in `template`, as a 1-based line and column.
fn error_at(template: &str, at: usize, message: String) -> Error {
    let before = &template[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Error {
        message,
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn values(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(template: &str) -> (u32, u32) {
        let e = parse(template).unwrap_err();
        (e.line, e.column)
    }

    #[test]
    fn substitutes_with_and_without_spaces() {
        let out = render(
            "Hi {{name}}, code {{ code }}{{\tcode\t}}.",
            &values(&[("name", "Ana"), ("code", "42")]),
        )
        .unwrap();
        assert_eq!(out, "Hi Ana, code 4242.");
    }

    #[test]
    fn no_html_escaping_and_values_are_not_reparsed() {
        let out = render("{{a}}", &values(&[("a", "<b> & \"q\" {{b}}")])).unwrap();
        assert_eq!(out, "<b> & \"q\" {{b}}");
    }

    #[test]
    fn name_characters() {
        let out = render(
            "{{user.first_name}} {{order-id}} {{X9}}",
            &values(&[("user.first_name", "A"), ("order-id", "B"), ("X9", "C")]),
        )
        .unwrap();
        assert_eq!(out, "A B C");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = render("{{a}} {{b}}", &values(&[("a", "1")])).unwrap_err();
        assert_eq!(err, RenderError::Missing("b".to_string()));
    }

    #[test]
    fn empty_value_is_supplied_and_first_value_wins() {
        let out = render("[{{a}}]", &values(&[("a", ""), ("a", "x")])).unwrap();
        assert_eq!(out, "[]");
    }

    #[test]
    fn variables_in_first_use_order_without_duplicates() {
        let names = variables("{{ b }} {{a}} {{b}} {{c}} {{a}}").unwrap();
        assert_eq!(names, ["b", "a", "c"]);
        assert!(variables("plain text } {").unwrap().is_empty());
    }

    #[test]
    fn text_around_braces_is_kept() {
        assert_eq!(
            render("}} {a} {{x}}}", &values(&[("x", "1")])).unwrap(),
            "}} {a} 1}"
        );
        assert_eq!(render("", &[]).unwrap(), "");
    }

    #[test]
    fn unclosed_tag_position() {
        assert_eq!(error("Hello {{name"), (1, 7));
        assert_eq!(error("line one\nline {{two}}\n  {{"), (3, 3));
        // Columns count characters, not bytes.
        assert_eq!(error("héllo ✓ {{x"), (1, 9));
    }

    #[test]
    fn empty_and_invalid_names() {
        assert_eq!(error("a {{}} b"), (1, 3));
        assert_eq!(error("a\n{{   }}"), (2, 1));
        assert_eq!(error("{{first name}}"), (1, 1));
        assert_eq!(error("x {{{name}}}"), (1, 3));
        assert_eq!(error("{{na\nme}}"), (1, 1));
        let e = parse("{{a!}}").unwrap_err();
        assert!(e.message.contains("a!"));
    }

    #[test]
    fn render_reports_invalid_templates() {
        let err = render("{{", &[]).unwrap_err();
        assert!(matches!(
            err,
            RenderError::Invalid(Error {
                line: 1,
                column: 1,
                ..
            })
        ));
    }
}
