//! The evidence pack as data: sections (one per control), their tables and charts. The HTML
//! report, the JSON file and the CSV files are all written from it.

use std::fmt::Write as _;

use serde::Serialize;

/// The whole pack.
#[derive(Debug, Clone, Serialize)]
pub struct Pack {
    /// When the pack was generated (RFC 3339, UTC).
    pub generated_at: String,
    /// The period asked for: `from` inclusive, `to` exclusive (`None`: open).
    pub period: Period,
    /// Where the evidence came from.
    pub sources: Sources,
    /// One section per control of the baseline's table, in its order.
    pub sections: Vec<Section>,
}

/// The period a pack covers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Period {
    /// Events at or after this time.
    pub from: Option<String>,
    /// Events before this time.
    pub to: Option<String>,
    /// The first event found in the period.
    pub first_event: Option<String>,
    /// The last event found in the period.
    pub last_event: Option<String>,
}

/// The inputs of a pack.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sources {
    /// The trails read (spool folders, sink files).
    pub trails: Vec<String>,
    /// Lines read from them.
    pub lines_read: u64,
    /// Events in the period (the `complete` ones: one per request or act).
    pub events: u64,
    /// Lines that were not audit events (skipped).
    pub skipped: u64,
    /// The configuration file.
    pub config: String,
    /// The policy folder.
    pub policy_dir: String,
    /// The version of the policy set in the folder now.
    pub policy_version: String,
}

/// One control of the baseline and its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// A short id (`mfa`, `rbac`…), the anchor in the HTML.
    pub id: &'static str,
    /// The control area, as the baseline's table names it.
    pub control: &'static str,
    /// The baseline's minimum requirement.
    pub requirement: &'static str,
    /// What this section shows, in one or two sentences.
    pub shows: String,
    /// Where it came from (trail, policies, configuration).
    pub source: String,
    /// The statements an auditor reads first, each with its numbers.
    pub findings: Vec<String>,
    /// Whether a finding needs attention (shown marked).
    pub attention: bool,
    /// The section's tables.
    pub tables: Vec<Table>,
    /// The section's charts.
    pub charts: Vec<Chart>,
}

/// A table: also written as `csv/<id>.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// The file name without `.csv`, and the anchor in the HTML.
    pub id: &'static str,
    /// The caption.
    pub title: String,
    /// The column names.
    pub columns: Vec<String>,
    /// The rows, each as many cells as columns.
    pub rows: Vec<Vec<String>>,
}

/// A bar chart: one bar group per label, one bar per series.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// The anchor in the HTML.
    pub id: &'static str,
    /// The caption.
    pub title: String,
    /// The bars' labels (times, people).
    pub labels: Vec<String>,
    /// The series, each with one value per label.
    pub series: Vec<Series>,
    /// The unit of the values (`requests`, `%`, `rows`).
    pub unit: &'static str,
}

/// One series of a chart.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Its name (the legend).
    pub name: &'static str,
    /// One value per label.
    pub values: Vec<f64>,
}

impl Table {
    /// An empty table.
    pub(crate) fn new(id: &'static str, title: &str, columns: &[&str]) -> Self {
        Self {
            id,
            title: title.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as CSV (RFC 4180: quoted where needed, CRLF line ends). A cell that a
    /// spreadsheet would read as a formula (`=`, `+`, `-`, `@`, a tab or a carriage return
    /// first; OWASP's CSV injection list) is prefixed with `'`, unless it is a plain number.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
            let mut first = true;
            for cell in cells {
                if !first {
                    out.push(',');
                }
                first = false;
                let guarded = if cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
                    && cell.parse::<f64>().is_err()
                {
                    format!("'{cell}")
                } else {
                    cell.to_owned()
                };
                if guarded.contains([',', '"', '\n', '\r']) {
                    let _ = write!(out, "\"{}\"", guarded.replace('"', "\"\""));
                } else {
                    out.push_str(&guarded);
                }
            }
            out.push_str("\r\n");
        };
        line(&mut out, &mut self.columns.iter().map(String::as_str));
        for row in &self.rows {
            line(&mut out, &mut row.iter().map(String::as_str));
        }
        out
    }
}

/// A ratio as a percentage with one decimal; `-` when there is nothing to divide.
pub(crate) fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}", part as f64 * 100.0 / whole as f64)
    }
}
