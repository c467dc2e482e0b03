//! Uploaded text read a line at a time as the body arrives (the NDJSON and CSV batch uploads,
//! the opt-out import), and the one CSV field splitter they share.
//!
//! A body is never held whole: [`Lines::next`] cuts the bytes of each arriving frame into lines,
//! keeping only the unfinished one, itself bounded by [`MAX_LINE_BYTES`]. Lines are numbered
//! from 1 as a text editor numbers them, blank ones counted but not returned, and a line ending
//! `\r\n` loses its `\r`.

/// The longest line accepted, in bytes; a longer one is reported and skipped.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The lines of a body fed a frame at a time.
#[derive(Debug)]
pub struct Lines {
    /// The current line so far.
    line: Vec<u8>,
    /// The number of the current line.
    number: u64,
    /// The current line passed [`MAX_LINE_BYTES`]: the rest of it is dropped.
    overlong: bool,
    /// `line` holds a line already returned, to be cleared on the next call.
    returned: bool,
}

impl Default for Lines {
    fn default() -> Self {
        Self::new()
    }
}

impl Lines {
    /// Before the first byte.
    pub const fn new() -> Self {
        Self {
            line: Vec::new(),
            number: 0,
            overlong: false,
            returned: false,
        }
    }

    /// The next line that `bytes` completes, with its number, taking its bytes (and the newline)
    /// off the front of `bytes`; `None` once `bytes` holds no more newlines (their start is kept
    /// for the next frame). A line that is too long or not UTF-8 comes back as the reason.
    pub fn next<'s>(
        &'s mut self,
        bytes: &mut &[u8],
    ) -> Option<(u64, std::result::Result<&'s str, String>)> {
        self.reset();
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.append(&bytes[..end]);
            *bytes = &bytes[end + 1..];
            if self.complete() {
                return Some(self.take());
            }
        }
        self.append(bytes);
        *bytes = &[];
        None
    }

    /// The last line, the one the body ended without a newline, if it holds anything.
    pub fn last(&mut self) -> Option<(u64, std::result::Result<&str, String>)> {
        self.reset();
        if self.complete() {
            Some(self.take())
        } else {
            None
        }
    }

    fn reset(&mut self) {
        if std::mem::take(&mut self.returned) {
            self.line.clear();
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            self.overlong = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// Ends the current line: whether it is one to return (not blank).
    fn complete(&mut self) -> bool {
        self.number += 1;
        if self.overlong {
            return true;
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.line.iter().all(u8::is_ascii_whitespace) {
            self.line.clear();
            return false;
        }
        true
    }

    fn take(&mut self) -> (u64, std::result::Result<&str, String>) {
        self.returned = true;
        if std::mem::take(&mut self.overlong) {
            return (
                self.number,
                Err(format!("the line is longer than {MAX_LINE_BYTES} bytes")),
            );
        }
        let text = std::str::from_utf8(&self.line).map_err(|_| "the line is not UTF-8".to_owned());
        (self.number, text)
    }
}

/// Splits one CSV record into its fields: RFC 4180 quoting (a quoted field may hold commas and
/// doubled quotes), within one line. A NUL character is refused (PostgreSQL cannot store it).
pub fn split_csv(text: &str) -> std::result::Result<Vec<String>, String> {
    if text.contains('\0') {
        return Err("the line contains a NUL character".into());
    }
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) if was_quoted => {
                return Err(format!("`{c}` after a closing quote"));
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed on its line".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `frames`, fed in that split, with its number.
    fn read(frames: &[&[u8]]) -> Vec<(u64, std::result::Result<String, String>)> {
        let mut lines = Lines::new();
        let mut out = Vec::new();
        for frame in frames {
            let mut bytes = *frame;
            while let Some((n, line)) = lines.next(&mut bytes) {
                out.push((n, line.map(str::to_owned)));
            }
        }
        if let Some((n, line)) = lines.last() {
            out.push((n, line.map(str::to_owned)));
        }
        out
    }

    /// Lines come out whole whatever the frames' split, numbered, blank ones skipped, CRLF
    /// trimmed, the last one without its newline too.
    #[test]
    fn lines_survive_any_split() {
        let text = b"one\r\n\ntwo\n  \nthree";
        let expected = vec![
            (1, Ok("one".to_owned())),
            (3, Ok("two".to_owned())),
            (5, Ok("three".to_owned())),
        ];
        assert_eq!(read(&[text]), expected);
        for at in 0..text.len() {
            let (a, b) = text.split_at(at);
            assert_eq!(read(&[a, b]), expected, "split at {at}");
        }
        let bytewise: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(read(&bytewise), expected);
        assert_eq!(read(&[b"a\n"]), vec![(1, Ok("a".to_owned()))]);
    }

    /// A line over the limit and one that is not UTF-8 are reported by number; the next line
    /// reads as usual.
    #[test]
    fn bad_lines_are_reported() {
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        let out = read(&[&long, b"\n\xff\xfe\nok\n"]);
        assert_eq!(out.len(), 3);
        assert!(out[0].1.as_ref().unwrap_err().contains("longer than"));
        assert_eq!(out[1].0, 2);
        assert!(out[1].1.as_ref().unwrap_err().contains("UTF-8"));
        assert_eq!(out[2], (3, Ok("ok".to_owned())));
        let exact = vec![b'y'; MAX_LINE_BYTES];
        assert!(read(&[&exact])[0].1.is_ok());
    }

    /// Quoted fields keep commas and doubled quotes; broken quoting and NUL are refused.
    #[test]
    fn csv_fields_split() {
        assert_eq!(split_csv("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            split_csv(r#""x, y","say ""hi""",z"#).unwrap(),
            ["x, y", r#"say "hi""#, "z"]
        );
        assert_eq!(split_csv("a,,").unwrap(), ["a", "", ""]);
        assert_eq!(split_csv("").unwrap(), [""]);
        for bad in [r#""open"#, r#"a"b"#, r#""a"b"#, "a\0"] {
            assert!(split_csv(bad).is_err(), "{bad:?}");
        }
    }
}
