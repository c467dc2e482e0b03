//! Uploading a draft batch's recipients as NDJSON (one [`Recipient`] object a line) or CSV (a
//! header line naming the columns, then one record a line), fed as the body arrives.
//!
//! The body is never held whole: bytes are cut into lines as they come ([`Lines`]), each line is
//! parsed and staged, and the stager writes a chunk at a time, so memory stays flat whatever the
//! size. A line that does not parse is reported by its number (the first line is 1) with
//! `malformed_line`, and the rest go on.
//!
//! CSV columns: `to_number` (required), `message`, `template_id`, `from_number`, `category`,
//! `customer_id`, `order_id`, `reservation_id`; any other column is a template variable of that
//! name. An empty cell is left out. Fields may be quoted (`"a, b"`, `""` for a quote); a record
//! may not span lines.

use std::collections::{BTreeMap, HashSet};

use super::Recipient;
use super::stage::{Staged, Stager};
use crate::domain::TenantId;
use crate::pipeline::Pipeline;
use crate::pipeline::error::{ErrorCode, PipelineError, Result};
use crate::pipeline::lines::{Lines, split_csv};
use crate::store::BatchState;

/// The most refused lines an upload reports one by one (all are counted).
pub const MAX_REPORTED: usize = 1_000;

/// How an upload's lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object a line (`application/x-ndjson`).
    Ndjson,
    /// Comma-separated values with a header line (`text/csv`).
    Csv,
}

/// An upload in progress: [`Upload::feed`] it the body's bytes as they arrive, then
/// [`Upload::finish`].
pub struct Upload<'p> {
    stager: Stager<'p>,
    format: Format,
    lines: Lines,
    /// The CSV header, once read.
    header: Option<Vec<String>>,
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("format", &self.format)
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

/// Starts an upload to draft batch `id` of `tenant`.
pub async fn start<'p>(
    pipeline: &'p Pipeline,
    tenant: &TenantId,
    id: &str,
    format: Format,
) -> Result<Upload<'p>> {
    crate::pipeline::tenants::ensure_active(pipeline, tenant).await?;
    let batch = super::batch(pipeline, tenant, id).await?;
    if batch.state != BatchState::Draft {
        return Err(super::not_draft(id));
    }
    Ok(Upload {
        stager: Stager::new(pipeline, batch, MAX_REPORTED).await?,
        format,
        lines: Lines::new(),
        header: None,
    })
}

impl Upload<'_> {
    /// Takes the next bytes of the body, staging every line they complete.
    pub async fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        while let Some((number, line)) = self.lines.next(&mut bytes) {
            stage_line(
                &mut self.stager,
                &mut self.header,
                self.format,
                number,
                line,
            )
            .await?;
        }
        Ok(())
    }

    /// Stages the last line (one without a final newline) and writes what is pending.
    pub async fn finish(mut self) -> Result<Staged> {
        if let Some((number, line)) = self.lines.last() {
            stage_line(
                &mut self.stager,
                &mut self.header,
                self.format,
                number,
                line,
            )
            .await?;
        }
        if self.format == Format::Csv && self.header.is_none() {
            return Err(PipelineError::new(
                ErrorCode::MalformedLine,
                "line 1: a CSV upload starts with a header line naming its columns",
            ));
        }
        self.stager.finish().await
    }
}

/// Parses and stages one line (the header, for a CSV upload's first).
async fn stage_line(
    stager: &mut Stager<'_>,
    header: &mut Option<Vec<String>>,
    format: Format,
    number: u64,
    line: std::result::Result<&str, String>,
) -> Result<()> {
    let text = match line {
        Ok(text) => text,
        Err(reason) => {
            stager.reject(number, malformed(reason));
            return Ok(());
        }
    };
    let parsed = match format {
        Format::Ndjson => ndjson(text),
        Format::Csv => match header {
            None => {
                *header = Some(read_header(text)?);
                return Ok(());
            }
            Some(header) => csv_record(header, text),
        },
    };
    match parsed {
        Ok(row) => stager.push(number, row).await,
        Err(error) => {
            stager.reject(number, error);
            Ok(())
        }
    }
}

fn malformed(message: String) -> PipelineError {
    PipelineError::new(ErrorCode::MalformedLine, message)
}

/// One NDJSON line as a recipient.
fn ndjson(text: &str) -> Result<Recipient> {
    serde_json::from_str(text).map_err(|e| {
        // serde's message names the field and the position in the line.
        malformed(format!("not a recipient object: {e}"))
    })
}

/// The CSV header: its column names, which must include `to_number` and be distinct.
fn read_header(text: &str) -> Result<Vec<String>> {
    let names = split_csv(text).map_err(|e| malformed(format!("line 1: {e}")))?;
    let mut seen = HashSet::new();
    for name in &names {
        if name.is_empty() || !seen.insert(name.as_str()) {
            return Err(malformed(format!(
                "line 1: the header names column `{name}` twice or leaves one unnamed"
            )));
        }
    }
    if !seen.contains("to_number") {
        return Err(malformed(
            "line 1: the header has no `to_number` column".into(),
        ));
    }
    Ok(names)
}

/// One CSV record as a recipient, its cells named by `header`.
fn csv_record(header: &[String], text: &str) -> Result<Recipient> {
    let cells = split_csv(text).map_err(malformed)?;
    if cells.len() != header.len() {
        return Err(malformed(format!(
            "{} fields where the header names {}",
            cells.len(),
            header.len()
        )));
    }
    let mut row = Recipient::default();
    let mut variables = BTreeMap::new();
    for (name, cell) in header.iter().zip(cells) {
        if cell.is_empty() {
            continue;
        }
        let slot = match name.as_str() {
            "to_number" => {
                row.to_number = cell;
                continue;
            }
            "message" => &mut row.message,
            "template_id" => &mut row.template_id,
            "from_number" => &mut row.from_number,
            "category" => &mut row.category,
            "customer_id" => &mut row.customer_id,
            "order_id" => &mut row.order_id,
            "reservation_id" => &mut row.reservation_id,
            _ => {
                variables.insert(name.clone(), serde_json::Value::String(cell));
                continue;
            }
        };
        *slot = Some(cell);
    }
    row.template_variables = variables;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known columns fill the row; the others are template variables; empty cells are absent.
    #[test]
    fn csv_records_name_their_cells() {
        let header = read_header("to_number,template_id,name,customer_id").unwrap();
        let row = csv_record(&header, "+14155552671,order_ready,Ann,").unwrap();
        assert_eq!(row.to_number, "+14155552671");
        assert_eq!(row.template_id.as_deref(), Some("order_ready"));
        assert_eq!(row.customer_id, None);
        assert_eq!(row.template_variables["name"], "Ann");
        assert!(csv_record(&header, "+14155552671,x").is_err());
        assert!(read_header("name,message").is_err());
        assert!(read_header("to_number,to_number").is_err());
    }
}
