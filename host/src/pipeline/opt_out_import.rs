//! CSV imports of the opt-out list (`POST /api/v1/sms/opt-outs/import`): a header
//! `phone_number,category[,reason]`, then one opt-out per line. Each row stands alone: a bad row
//! is reported (its line number, a stable code, a message) and the others are imported.
//!
//! The format is RFC 4180 on one line: fields separated by commas, a field in double quotes may
//! hold commas and doubled quotes (`""`), and a field cannot span lines. Blank lines are
//! skipped. An empty category means `all`. The import is bounded by the request body limit
//! (`server.max_body_bytes`); a longer list is sent in several files.

use serde::Serialize;

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
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

/// Imports the opt-outs listed in `csv` for `tenant`, each audited as made by `import`.
///
/// # Errors
///
/// `invalid_csv` when the first line is not the header; storage errors end the import (rows
/// before them stay imported).
pub async fn import(pipeline: &Pipeline, tenant: &TenantId, csv: &str) -> Result<ImportReport> {
    let mut lines = csv.lines().enumerate();
    let header = lines.next().map(|(_, line)| line).unwrap_or_default();
    let with_reason = header_columns(header)?;
    let mut report = ImportReport::default();
    for (index, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        report.rows += 1;
        let row = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
        let change = match parse_row(tenant, line, with_reason, pipeline.now()) {
            Ok(change) => change,
            Err(error) => {
                report.rejected += 1;
                if report.errors.len() < MAX_REPORTED_ROWS {
                    report.errors.push(RowError {
                        row,
                        code: error.code,
                        message: error.message,
                    });
                }
                continue;
            }
        };
        if pipeline.store().opt_out(&change).await? {
            report.opted_out += 1;
        } else {
            report.unchanged += 1;
        }
    }
    Ok(report)
}

/// Checks the header; returns whether rows carry a reason.
fn header_columns(header: &str) -> Result<bool> {
    let names: Vec<String> = split(header.trim_start_matches('\u{feff}'))
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
    let fields = split(line).map_err(invalid_csv)?;
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

/// Splits one CSV line into its fields, unquoting quoted ones.
fn split(line: &str) -> std::result::Result<Vec<String>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.contains('\0') {
        return Err("the line contains a NUL character".into());
    }
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed on its line".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

fn invalid_csv(message: impl Into<String>) -> PipelineError {
    PipelineError::new(ErrorCode::InvalidCsv, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quoted fields keep their commas and doubled quotes; malformed quoting is refused.
    #[test]
    fn fields_split_as_rfc_4180_says() {
        assert_eq!(split("a,b,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split("+14155550100,marketing,\"said \"\"no\"\", twice\"\r").unwrap(),
            ["+14155550100", "marketing", "said \"no\", twice"]
        );
        assert_eq!(split("a,,").unwrap(), ["a", "", ""]);
        assert_eq!(split("").unwrap(), [""]);
        for bad in ["\"open,b", "a,b\"c", "\"a\"b,c", "a\0"] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
    }

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
