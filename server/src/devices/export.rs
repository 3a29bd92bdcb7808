//! Transaction exports (CSV for spreadsheets, JSON lines for programs),
//! read page by page so memory stays flat whatever their number.

use bytes::Bytes;
use futures_util::Stream;

use super::transactions::{self, Cursor, Scope, TransactionRow};
use crate::db::Db;
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    JsonLines,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::JsonLines => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::JsonLines => "jsonl",
        }
    }
}

const EXPORT_PAGE: i64 = 2000;
pub const CSV_HEADER: &str = "id,terminal_tx_id,occurred_at,device_id,location_id,type,amount_minor,currency,acquirer,\
masked_card,status,status_source,automatic_status,manual_set_by,manual_set_at,receipt_printed\n";

fn csv_field(out: &mut String, value: &str) {
    // A spreadsheet runs a cell that starts like a formula; what a terminal
    // sent must stay text.
    let neutralised;
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        neutralised = format!("'{value}");
        neutralised.as_str()
    } else {
        value
    };
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

pub fn csv_rows(rows: &[TransactionRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 160);
    for row in rows {
        let v = row.view();
        let fields = [
            v.id.to_string(),
            v.terminal_tx_id,
            v.occurred_at,
            v.device_id.to_string(),
            v.location_id.to_string(),
            v.tx_type,
            v.amount_minor.to_string(),
            v.currency,
            v.acquirer,
            v.masked_card,
            v.status,
            v.status_source,
            v.automatic_status,
            v.manual_set_by.map(|u| u.to_string()).unwrap_or_default(),
            v.manual_set_at.unwrap_or_default(),
            v.receipt_printed.to_string(),
        ];
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, field);
        }
        out.push('\n');
    }
    out
}

fn jsonl_rows(rows: &[TransactionRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 300);
    for row in rows {
        out.push_str(&serde_json::to_string(&row.view()).expect("views serialise"));
        out.push('\n');
    }
    out
}

enum Step {
    Header,
    Page(Option<Cursor>),
    Done,
}

/// The rows of `scope`, newest first, as chunks of the format. A failure
/// ends the stream after its error: by then the answer's headers are sent.
pub fn stream(db: Db, scope: Scope, format: ExportFormat) -> impl Stream<Item = Result<Bytes, Error>> {
    futures_util::stream::unfold(Step::Header, move |step| {
        let db = db.clone();
        let scope = scope.clone();
        async move {
            match step {
                Step::Header if format == ExportFormat::Csv => {
                    Some((Ok(Bytes::from_static(CSV_HEADER.as_bytes())), Step::Page(None)))
                }
                Step::Header => Some((Ok(Bytes::new()), Step::Page(None))),
                Step::Page(cursor) => {
                    match db.run(move |conn| transactions::page_rows(conn, &scope, cursor, EXPORT_PAGE)).await
                    {
                        Ok(rows) if rows.is_empty() => None,
                        Ok(rows) => {
                            let next = rows.last().map(Cursor::after);
                            let text = match format {
                                ExportFormat::Csv => csv_rows(&rows),
                                ExportFormat::JsonLines => jsonl_rows(&rows),
                            };
                            Some((Ok(Bytes::from(text)), Step::Page(next)))
                        }
                        Err(e) => Some((Err(e), Step::Done)),
                    }
                }
                Step::Done => None,
            }
        }
    })
}
