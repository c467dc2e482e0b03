//! The template language: Mustache (<https://mustache.github.io/mustache.5.html>) without
//! partials and without delimiter changes, which it refuses with a clear error.
//!
//! - `{{name}}`, `{{{name}}}`, `{{& name}}`: a variable; `{{.}}` the current item; dotted names
//!   (`{{customer.name}}`) walk into objects. Names are made of `A-Z a-z 0-9 _ -`, dot-separated.
//! - `{{#name}}…{{/name}}`: a section, rendered once for a true value or an object (which
//!   becomes the context), once per item of a list, and not at all for `false`, `null`, `""`,
//!   `[]` or a name that is absent. `{{^name}}…{{/name}}` is its inverse.
//! - `{{! comment }}` renders nothing.
//! - A section tag or comment alone on its line takes the whole line with it (the spec's
//!   "standalone" rule), so templates can be laid out one tag per line.
//!
//! Escaping is a choice of the caller ([`Escape`]): SMS text is plain, so the component never
//! escapes (HTML entities would only corrupt a text message) and `{{x}}`, `{{{x}}}` and `{{&x}}`
//! print the same; the spec's HTML escaping is kept for the spec's own tests.
//!
//! A variable the data does not have is, as the caller chooses ([`Missing`]), an error (what a
//! send wants: never a message with a hole in it) or empty text that is reported (a preview).
//! Values print as text: numbers as JSON writes them, `true`/`false`, `null` as nothing, and a
//! list or an object as its JSON.

use serde_json::Value;

/// The most output a render may produce, in bytes: far past any SMS, short of exhausting memory.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// The most nodes a render may visit: nested sections over lists multiply quickly.
const MAX_STEPS: usize = 200_000;

/// How a printed value is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Printed as it is (SMS text).
    None,
    /// `{{x}}` escapes `& " < >` as HTML entities, `{{{x}}}` and `{{&x}}` do not (the spec).
    Html,
}

/// What a variable absent from the data does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Rendering fails with [`RenderError::Missing`].
    Refuse,
    /// It prints as nothing and is listed in [`Rendered::missing`].
    Report,
}

/// Why a template is invalid, and where (1-based; the column counts characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What is wrong.
    pub message: String,
    /// Line of the offending tag, from 1.
    pub line: u32,
    /// Column of the offending tag, from 1, in characters.
    pub column: u32,
}

/// Why rendering failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The template prints a variable the data does not have (with [`Missing::Refuse`]).
    Missing(String),
    /// The template is invalid, or its output would be unreasonably large.
    Invalid(Error),
}

/// A rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// The variables printed without a value (with [`Missing::Report`]), in first-use order.
    pub missing: Vec<String>,
}

/// A tag's name: `.` or dot-separated keys.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name<'a> {
    text: &'a str,
}

impl<'a> Name<'a> {
    fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.text.split('.')
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node<'a> {
    /// Text copied as is.
    Text(&'a str),
    /// A variable; `escaped` for `{{x}}`, not for `{{{x}}}` or `{{&x}}`.
    Variable { name: Name<'a>, escaped: bool },
    /// A section (`{{#x}}`) or an inverted section (`{{^x}}`).
    Section {
        name: Name<'a>,
        inverted: bool,
        children: Vec<Node<'a>>,
    },
}

/// What a tag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Variable { escaped: bool },
    Open { inverted: bool },
    Close,
    Comment,
}

impl Kind {
    /// Whether the tag may stand alone on its line (and then takes the line with it).
    fn can_stand_alone(self) -> bool {
        !matches!(self, Kind::Variable { .. })
    }
}

/// A token of the template: text, or a tag with its name and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Text(&'a str),
    Tag {
        kind: Kind,
        name: &'a str,
        at: usize,
    },
}

/// Parses `template` into its tree.
fn parse(template: &str) -> Result<Vec<Node<'_>>, Error> {
    let tokens = standalone(tokenize(template)?);
    // A stack of open sections: their name, kind, offset and children so far.
    let mut stack: Vec<(&str, bool, usize, Vec<Node<'_>>)> = Vec::new();
    let mut nodes: Vec<Node<'_>> = Vec::new();
    for token in tokens {
        let current = match stack.last_mut() {
            Some((_, _, _, children)) => children,
            None => &mut nodes,
        };
        match token {
            Token::Text("") => {}
            Token::Text(text) => current.push(Node::Text(text)),
            Token::Tag { kind, name, at } => match kind {
                Kind::Comment => {}
                Kind::Variable { escaped } => current.push(Node::Variable {
                    name: Name { text: name },
                    escaped,
                }),
                Kind::Open { inverted } => stack.push((name, inverted, at, Vec::new())),
                Kind::Close => {
                    let Some((open, inverted, _, children)) = stack.pop() else {
                        return Err(error_at(
                            template,
                            at,
                            format!("`{{{{/{name}}}}}` closes no open section"),
                        ));
                    };
                    if open != name {
                        return Err(error_at(
                            template,
                            at,
                            format!(
                                "`{{{{/{name}}}}}` closes the section `{open}`; close it first"
                            ),
                        ));
                    }
                    let section = Node::Section {
                        name: Name { text: name },
                        inverted,
                        children,
                    };
                    match stack.last_mut() {
                        Some((_, _, _, children)) => children.push(section),
                        None => nodes.push(section),
                    }
                }
            },
        }
    }
    if let Some((name, _, at, _)) = stack.pop() {
        return Err(error_at(
            template,
            at,
            format!("the section `{name}` is never closed (add `{{{{/{name}}}}}`)"),
        ));
    }
    Ok(nodes)
}

/// Splits `template` into text and tags, refusing what this renderer does not do.
fn tokenize(template: &str) -> Result<Vec<Token<'_>>, Error> {
    let mut tokens = Vec::new();
    let mut rest = 0;
    while let Some(found) = template[rest..].find("{{") {
        let at = rest + found;
        if at > rest {
            tokens.push(Token::Text(&template[rest..at]));
        }
        let inner_start = at + 2;
        let (kind, body_start, closing) = match template[inner_start..].chars().next() {
            Some('{') => (Kind::Variable { escaped: false }, inner_start + 1, "}}}"),
            Some('&') => (Kind::Variable { escaped: false }, inner_start + 1, "}}"),
            Some('#') => (Kind::Open { inverted: false }, inner_start + 1, "}}"),
            Some('^') => (Kind::Open { inverted: true }, inner_start + 1, "}}"),
            Some('/') => (Kind::Close, inner_start + 1, "}}"),
            Some('!') => (Kind::Comment, inner_start + 1, "}}"),
            Some('>') => {
                return Err(error_at(
                    template,
                    at,
                    "partials (`{{> name}}`) are not supported: put the text in the template"
                        .to_string(),
                ));
            }
            Some('=') => {
                return Err(error_at(
                    template,
                    at,
                    "changing delimiters (`{{=<% %>=}}`) is not supported".to_string(),
                ));
            }
            _ => (Kind::Variable { escaped: true }, inner_start, "}}"),
        };
        let Some(length) = template[body_start..].find(closing) else {
            return Err(error_at(
                template,
                at,
                format!("unclosed tag: `{{{{` without `{closing}`"),
            ));
        };
        let body = &template[body_start..body_start + length];
        rest = body_start + length + closing.len();
        if kind == Kind::Comment {
            tokens.push(Token::Tag { kind, name: "", at });
            continue;
        }
        let name = body.trim_matches([' ', '\t', '\r', '\n']);
        check_name(template, at, name)?;
        tokens.push(Token::Tag { kind, name, at });
    }
    if rest < template.len() {
        tokens.push(Token::Text(&template[rest..]));
    }
    Ok(tokens)
}

/// Refuses an empty or malformed name.
fn check_name(template: &str, at: usize, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(error_at(template, at, "empty variable name".to_string()));
    }
    let keys_ok = name == "."
        || name.split('.').all(|key| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        });
    if !keys_ok {
        return Err(error_at(
            template,
            at,
            format!(
                "invalid variable name `{name}` (use letters, digits, `_` and `-`, with `.` between names)"
            ),
        ));
    }
    Ok(())
}

/// Applies the standalone rule: a section tag or comment with only spaces or tabs around it
/// on its line removes that whitespace and the line's end (`\n` or `\r\n`).
fn standalone(mut tokens: Vec<Token<'_>>) -> Vec<Token<'_>> {
    let blank = |text: &str| text.chars().all(|c| matches!(c, ' ' | '\t' | '\r'));
    // Decided on the tokens as written, then applied, so that a line between two standalone
    // tags is judged by its own text.
    let mut trims: Vec<(usize, Trim)> = Vec::new();
    for (index, token) in tokens.iter().enumerate() {
        let Token::Tag { kind, .. } = token else {
            continue;
        };
        if !kind.can_stand_alone() {
            continue;
        }
        let before = match index.checked_sub(1).map(|i| &tokens[i]) {
            None => Some(None),
            Some(Token::Text(text)) => match text.rfind('\n') {
                Some(newline) if blank(&text[newline + 1..]) => Some(Some(index - 1)),
                None if blank(text) && index == 1 => Some(Some(index - 1)),
                _ => None,
            },
            Some(Token::Tag { .. }) => None,
        };
        let after = match tokens.get(index + 1) {
            None => Some(None),
            Some(Token::Text(text)) => match text.find('\n') {
                Some(newline) if blank(&text[..newline]) => Some(Some(index + 1)),
                None if blank(text) && index + 2 == tokens.len() => Some(Some(index + 1)),
                _ => None,
            },
            Some(Token::Tag { .. }) => None,
        };
        if let (Some(before), Some(after)) = (before, after) {
            if let Some(i) = before {
                trims.push((i, Trim::Tail));
            }
            if let Some(i) = after {
                trims.push((i, Trim::Head));
            }
        }
    }
    for (index, trim) in trims {
        if let Token::Text(text) = &mut tokens[index] {
            *text = match trim {
                // Everything after the last line break (or all of it, on the first line).
                Trim::Tail => &text[..text.rfind('\n').map_or(0, |n| n + 1)],
                // Everything up to and including the first line break (or all of it).
                Trim::Head => &text[text.find('\n').map_or(text.len(), |n| n + 1)..],
            };
        }
    }
    tokens
}

/// Which end of a text a standalone tag removes.
#[derive(Debug, Clone, Copy)]
enum Trim {
    Tail,
    Head,
}

/// The variables `template` uses (printed or tested by a section), in first-use order, each
/// once; `.` is not listed.
pub fn variables(template: &str) -> Result<Vec<String>, Error> {
    fn walk(nodes: &[Node<'_>], names: &mut Vec<String>) {
        for node in nodes {
            let (name, children) = match node {
                Node::Text(_) => continue,
                Node::Variable { name, .. } => (name, None),
                Node::Section { name, children, .. } => (name, Some(children)),
            };
            if name.text != "." && !names.iter().any(|seen| seen == name.text) {
                names.push(name.text.to_string());
            }
            if let Some(children) = children {
                walk(children, names);
            }
        }
    }
    let mut names = Vec::new();
    walk(&parse(template)?, &mut names);
    Ok(names)
}

/// Renders `template` with `data` (usually a JSON object).
pub fn render(
    template: &str,
    data: &Value,
    escape: Escape,
    missing: Missing,
) -> Result<Rendered, RenderError> {
    let nodes = parse(template).map_err(RenderError::Invalid)?;
    let mut renderer = Renderer {
        template,
        escape,
        policy: missing,
        out: String::with_capacity(template.len()),
        missing: Vec::new(),
        steps: 0,
    };
    let mut stack = vec![data];
    renderer.nodes(&nodes, &mut stack)?;
    Ok(Rendered {
        text: renderer.out,
        missing: renderer.missing,
    })
}

/// The state of one render.
struct Renderer<'t> {
    template: &'t str,
    escape: Escape,
    policy: Missing,
    out: String,
    missing: Vec<String>,
    steps: usize,
}

impl Renderer<'_> {
    fn nodes(&mut self, nodes: &[Node<'_>], stack: &mut Vec<&Value>) -> Result<(), RenderError> {
        for node in nodes {
            self.steps += 1;
            if self.steps > MAX_STEPS || self.out.len() > MAX_OUTPUT_BYTES {
                return Err(RenderError::Invalid(error_at(
                    self.template,
                    0,
                    format!(
                        "the rendered text would be longer than {MAX_OUTPUT_BYTES} bytes; check the sections over lists"
                    ),
                )));
            }
            match node {
                Node::Text(text) => self.out.push_str(text),
                Node::Variable { name, escaped } => match lookup(stack, name) {
                    Some(value) => self.print(value, *escaped),
                    None => match self.policy {
                        Missing::Refuse => return Err(RenderError::Missing(name.text.to_string())),
                        Missing::Report => {
                            if !self.missing.iter().any(|seen| seen == name.text) {
                                self.missing.push(name.text.to_string());
                            }
                        }
                    },
                },
                Node::Section {
                    name,
                    inverted,
                    children,
                } => {
                    let value = lookup(stack, name);
                    let truthy = value.is_some_and(is_truthy);
                    if *inverted {
                        if !truthy {
                            self.nodes(children, stack)?;
                        }
                        continue;
                    }
                    let Some(value) = value.filter(|_| truthy) else {
                        continue;
                    };
                    let items: Vec<&Value> = match value {
                        Value::Array(items) => items.iter().collect(),
                        other => vec![other],
                    };
                    for item in items {
                        stack.push(item);
                        let result = self.nodes(children, stack);
                        stack.pop();
                        result?;
                    }
                }
            }
        }
        Ok(())
    }

    fn print(&mut self, value: &Value, escaped: bool) {
        let text = match value {
            Value::Null => return,
            Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
            other => std::borrow::Cow::Owned(other.to_string()),
        };
        if escaped && self.escape == Escape::Html {
            for c in text.chars() {
                match c {
                    '&' => self.out.push_str("&amp;"),
                    '"' => self.out.push_str("&quot;"),
                    '<' => self.out.push_str("&lt;"),
                    '>' => self.out.push_str("&gt;"),
                    c => self.out.push(c),
                }
            }
        } else {
            self.out.push_str(&text);
        }
    }
}

/// Resolves `name` on the context stack: `.` is the top; otherwise the first key is looked up
/// from the top of the stack down, and the rest only inside what it found (a dotted name never
/// falls back to an outer context halfway).
fn lookup<'v>(stack: &[&'v Value], name: &Name<'_>) -> Option<&'v Value> {
    if name.text == "." {
        return stack.last().copied();
    }
    let mut keys = name.keys();
    let first = keys.next()?;
    let mut value = stack
        .iter()
        .rev()
        .find_map(|context| context.as_object().and_then(|map| map.get(first)))?;
    for key in keys {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// Whether a section renders for `value`.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => true,
    }
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
mod tests;
