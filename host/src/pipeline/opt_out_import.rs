//! CSV imports of the opt-out list (`POST /api/v1/sms/opt-outs/import`): a header
//! `phone_number,category[,reason]`, then one opt-out per line. Each row stands alone: a bad row
//! is reported (its line number, a stable code, a message) and the others are imported.
//!
//! The format is RFC 4180 on one line: fields separated by commas, a field in double quotes may
//! hold commas and doubled quotes (`""`), and a field cannot span lines. Blank lines are
//! skipped. An empty category means `all`.
//!
//! The file is read as it arrives ([`Import::feed`], a frame at a time, cut into [`Lines`]), and
//! each row is applied before the next is read, so memory stays flat whatever the file's size:
//! only the report's first [`MAX_REPORTED_ROWS`] refusals are kept.

use serde::Serialize;

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
use super::lines::{Lines, split_csv};
use super::opt_outs::{self, MAX_REPORTED_ROWS};
use crate::domain::TenantId;
use crate::store::{OptOutChange, OptOutMethod};

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Rows read (the header and blank lines not counted).
    pub rows: u64,
    /// Rows that added an opt-out.
    pub opted_out: u64,
    /// Rows whose opt-out was already in force.
    pub unchanged: u64,
    /// Rows refused.
    pub rejected: u64,
    /// The refused rows, in order; the first [`MAX_REPORTED_ROWS`] of them.
    pub errors: Vec<RowError>,
}

/// Why one row was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The row's line number in the file (the header is line 1).
    pub row: u64,
    /// The stable code: `invalid_csv`, `invalid_phone_number`, `invalid_category` or
    /// `invalid_field`.
    pub code: ErrorCode,
    /// What is wrong, for people.
    pub message: String,
}

/// An import in progress: [`Import::feed`] it the file's bytes as they arrive, then
/// [`Import::finish`].
#[derive(Debug)]
pub struct Import<'p> {
    pipeline: &'p Pipeline,
    tenant: TenantId,
    lines: Lines,
    /// Whether rows carry a reason, once the header is read.
    with_reason: Option<bool>,
    report: ImportReport,
}

impl<'p> Import<'p> {
    /// Starts importing opt-outs for `tenant`, each audited as made by `import`.
    pub fn start(pipeline: &'p Pipeline, tenant: &TenantId) -> Self {
        Self {
            pipeline,
            tenant: tenant.clone(),
            lines: Lines::new(),
            with_reason: None,
            report: ImportReport::default(),
        }
    }

    /// Takes the next bytes of the file, applying every row they complete.
    ///
    /// # Errors
    ///
    /// `invalid_csv` when the first line is not the header; storage errors end the import (rows
    /// before them stay imported).
    pub async fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        while let Some((number, line)) = self.lines.next(&mut bytes) {
            apply_line(
                self.pipeline,
                &self.tenant,
                &mut self.with_reason,
                &mut self.report,
                number,
                line,
            )
            .await?;
        }
        Ok(())
    }

    /// Applies the last row (one without a final newline) and answers the report.
    ///
    /// # Errors
    ///
    /// As [`Import::feed`]; also `invalid_csv` for a file without even a header.
    pub async fn finish(mut self) -> Result<ImportReport> {
        if let Some((number, line)) = self.lines.last() {
            apply_line(
                self.pipeline,
                &self.tenant,
                &mut self.with_reason,
                &mut self.report,
                number,
                line,
            )
            .await?;
        }
        if self.with_reason.is_none() {
            header_columns("")?;
        }
        Ok(self.report)
    }
}

/// Reads the header, or applies one row and counts it in `report`.
async fn apply_line(
    pipeline: &Pipeline,
    tenant: &TenantId,
    with_reason: &mut Option<bool>,
    report: &mut ImportReport,
    number: u64,
    line: std::result::Result<&str, String>,
) -> Result<()> {
    let Some(reason_column) = *with_reason else {
        let header = line.map_err(|message| invalid_csv(format!("the header: {message}")))?;
        *with_reason = Some(header_columns(header)?);
        return Ok(());
    };
    report.rows += 1;
    let parsed = line
        .map_err(invalid_csv)
        .and_then(|line| parse_row(tenant, line, reason_column, pipeline.now()));
    let change = match parsed {
        Ok(change) => change,
        Err(error) => {
            report.rejected += 1;
            if report.errors.len() < MAX_REPORTED_ROWS {
                report.errors.push(RowError {
                    row: number,
                    code: error.code,
                    message: error.message,
                });
            }
            return Ok(());
        }
    };
    if pipeline.store().opt_out(&change).await? {
        report.opted_out += 1;
    } else {
        report.unchanged += 1;
    }
    Ok(())
}

/// Checks the header; returns whether rows carry a reason.
fn header_columns(header: &str) -> Result<bool> {
    let names: Vec<String> = split_csv(header.trim_start_matches('\u{feff}'))
        .map_err(|message| invalid_csv(format!("the header: {message}")))?
        .iter()
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    match names.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["phone_number", "category"] => Ok(false),
        ["phone_number", "category", "reason"] => Ok(true),
        _ => Err(invalid_csv(
            "the first line must be the header `phone_number,category` or \
             `phone_number,category,reason`",
        )),
    }
}

/// Reads one row into the opt-out it asks for.
fn parse_row(tenant: &TenantId, line: &str, with_reason: bool, now: i64) -> Result<OptOutChange> {
    let fields = split_csv(line).map_err(invalid_csv)?;
    let expected = if with_reason { 3 } else { 2 };
    // A row may leave out a trailing empty reason.
    if fields.len() != expected && !(with_reason && fields.len() == 2) {
        return Err(invalid_csv(format!(
            "{} fields where the header has {expected}",
            fields.len()
        )));
    }
    let phone = opt_outs::phone(fields[0].trim())?;
    let category = fields[1].trim();
    let category = opt_outs::category((!category.is_empty()).then_some(category))?;
    let reason = fields.get(2).map(|r| r.trim()).filter(|r| !r.is_empty());
    if let Some(reason) = reason {
        opt_outs::check_reason(reason)?;
    }
    let change = OptOutChange::new(tenant, phone.as_str(), category, OptOutMethod::Import, now);
    Ok(match reason {
        Some(reason) => change.because(reason),
        None => change,
    })
}

fn invalid_csv(message: impl Into<String>) -> PipelineError {
    PipelineError::new(ErrorCode::InvalidCsv, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header decides whether rows carry a reason; anything else is refused.
    #[test]
    fn the_header_is_checked() {
        assert_eq!(header_columns("phone_number,category"), Ok(false));
        assert_eq!(
            header_columns("\u{feff}Phone_Number, Category ,reason"),
            Ok(true)
        );
        for bad in [
            "",
            "phone,category",
            "phone_number",
            "category,phone_number",
        ] {
            assert_eq!(
                header_columns(bad).unwrap_err().code,
                ErrorCode::InvalidCsv,
                "{bad:?}"
            );
        }
    }

    /// Each row's fields are checked with the API's own rules.
    #[test]
    fn rows_are_checked() {
        let tenant = TenantId::default_tenant();
        let ok = parse_row(&tenant, "+14155550100,marketing,asked", true, 5).unwrap();
        assert_eq!(ok.category.as_str(), "marketing");
        assert_eq!(ok.reason.as_deref(), Some("asked"));
        assert_eq!(ok.method, OptOutMethod::Import);
        let all = parse_row(&tenant, "+14155550100,", true, 5).unwrap();
        assert_eq!(all.category.as_str(), "all");
        for (line, code) in [
            ("12345,marketing", ErrorCode::InvalidPhoneNumber),
            ("+14155550100,no spaces", ErrorCode::InvalidCategory),
            ("+14155550100,compliance", ErrorCode::InvalidCategory),
            ("+14155550100,a,b,c", ErrorCode::InvalidCsv),
        ] {
            assert_eq!(
                parse_row(&tenant, line, true, 5).unwrap_err().code,
                code,
                "{line}"
            );
        }
    }
}
