//! The pack as one self-contained HTML page: inline CSS, charts as inline SVG, no scripts and
//! nothing fetched, so it opens anywhere and prints to PDF as it shows.

use std::fmt::Write as _;

use crate::pack::{Chart, Pack, Section, Table};

/// Rows of a table shown in the page; the CSV file holds them all.
const SHOWN_ROWS: usize = 200;

const STYLE: &str = "
body{font-family:'DejaVu Sans',Arial,sans-serif;font-size:13px;color:#1b1f24;margin:24px auto;max-width:1100px;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;border-bottom:2px solid #1f4e79;padding-bottom:3px;margin-top:28px}
h3{font-size:14px;margin:16px 0 6px}
.meta{color:#555}.meta td{padding:1px 12px 1px 0}
table.data{border-collapse:collapse;width:100%;margin:4px 0 10px}
table.data th,table.data td{border:1px solid #c8ccd1;padding:3px 6px;text-align:left;vertical-align:top;word-break:break-word}
table.data th{background:#eef2f6}
td.allow{background:#e3f4e1}td.mfa{background:#fff4d6}td.deny{background:#f6f6f6;color:#777}
.attention{color:#a4262c;font-weight:bold}.ok{color:#2d6a1f;font-weight:bold}
#controls td.attention,#controls td.ok{white-space:nowrap}td.glass{background:#fde2e1}
.findings li{margin:2px 0}.source{color:#555;font-size:12px}
.more{color:#555;font-size:12px}
svg text{font-family:'DejaVu Sans',Arial,sans-serif;font-size:10px;fill:#333}
@page{size:A4;margin:14mm}
@media print{body{margin:0;max-width:none}section{break-before:page}table.data tr{break-inside:avoid}h2,h3{break-after:avoid}}
";

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub(crate) fn render(pack: &Pack) -> String {
    let mut out = String::new();
    let period = format!(
        "{} to {}",
        pack.period
            .from
            .as_deref()
            .unwrap_or("the start of the trail"),
        pack.period.to.as_deref().unwrap_or("its end")
    );
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>invoiceguard evidence pack</title><style>{STYLE}</style></head><body>\n\
         <h1>Access baseline: evidence pack</h1>\n<table class=\"meta\">\
         <tr><td>Period</td><td>{}</td></tr>\
         <tr><td>Events in the period</td><td id=\"events\">{} ({} to {})</td></tr>\
         <tr><td>Trails</td><td>{}</td></tr>\
         <tr><td>Configuration</td><td>{}</td></tr>\
         <tr><td>Policy set</td><td>{} (version {})</td></tr>\
         <tr><td>Generated</td><td>{} by invoiceguard {}</td></tr></table>\n",
        esc(&period),
        pack.sources.events,
        esc(pack.period.first_event.as_deref().unwrap_or("-")),
        esc(pack.period.last_event.as_deref().unwrap_or("-")),
        esc(&pack.sources.trails.join(", ")),
        esc(&pack.sources.config),
        esc(&pack.sources.policy_dir),
        esc(&pack.sources.policy_version),
        esc(&pack.generated_at),
        env!("CARGO_PKG_VERSION"),
    );
    summary(&mut out, pack);
    for section in &pack.sections {
        render_section(&mut out, section);
    }
    out.push_str("</body></html>\n");
    out
}

/// The control table: each control, its requirement, its state and where its evidence is.
fn summary(out: &mut String, pack: &Pack) {
    out.push_str(
        "<h2>Controls</h2>\n<table class=\"data\" id=\"controls\"><tr><th>Control</th>\
         <th>Minimum requirement</th><th>State</th><th>Evidence</th></tr>\n",
    );
    for s in &pack.sections {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            s.id,
            esc(s.control),
            esc(s.requirement),
            if s.attention { "attention" } else { "ok" },
            if s.attention {
                "needs attention"
            } else {
                "in place"
            },
            esc(s.findings.first().map_or("", String::as_str)),
        );
    }
    out.push_str("</table>\n");
}

fn render_section(out: &mut String, s: &Section) {
    let _ = write!(
        out,
        "<section id=\"{}\"><h2>{}</h2>\n<p><b>Minimum requirement:</b> {}</p>\n<p>{}</p>\n\
         <p class=\"source\">Source: {}</p>\n<ul class=\"findings\">",
        s.id,
        esc(s.control),
        esc(s.requirement),
        esc(&s.shows),
        esc(&s.source)
    );
    for finding in &s.findings {
        let _ = write!(
            out,
            "<li class=\"{}\">{}</li>",
            if s.attention { "attention" } else { "" },
            esc(finding)
        );
    }
    out.push_str("</ul>\n");
    for chart in &s.charts {
        render_chart(out, chart);
    }
    for table in &s.tables {
        render_table(out, table);
    }
    out.push_str("</section>\n");
}

fn render_table(out: &mut String, table: &Table) {
    let _ = write!(
        out,
        "<h3>{}</h3>\n<table class=\"data\" id=\"{}\"><tr>",
        esc(&table.title),
        table.id
    );
    for column in &table.columns {
        let _ = write!(out, "<th>{}</th>", esc(column));
    }
    out.push_str("</tr>\n");
    if table.rows.is_empty() {
        let _ = writeln!(
            out,
            "<tr><td colspan=\"{}\">none in the period</td></tr>",
            table.columns.len().max(1)
        );
    }
    for row in table.rows.iter().take(SHOWN_ROWS) {
        out.push_str("<tr>");
        for cell in row {
            let class = match cell.as_str() {
                "allow" => " class=\"allow\"",
                "allow with MFA" | "fresh login" => " class=\"mfa\"",
                "break-glass reason" => " class=\"glass\"",
                "deny" => " class=\"deny\"",
                _ => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    if table.rows.len() > SHOWN_ROWS {
        let _ = writeln!(
            out,
            "<p class=\"more\">{} more rows in csv/{}.csv.</p>",
            table.rows.len() - SHOWN_ROWS,
            table.id
        );
    }
}

/// A bar chart as inline SVG: one group of bars per label, one colour per series.
fn render_chart(out: &mut String, chart: &Chart) {
    const COLOURS: [&str; 3] = ["#2e75b6", "#c0504d", "#9bbb59"];
    let (width, height, left, bottom) = (1000.0, 240.0, 50.0, 60.0);
    let plot = height - bottom - 20.0;
    let max = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let groups = chart.labels.len().max(1) as f64;
    let group = (width - left - 10.0) / groups;
    let bar = (group * 0.8 / chart.series.len().max(1) as f64).max(1.0);
    let _ = write!(
        out,
        "<h3>{}</h3>\n<svg id=\"{}\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"100%\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(&chart.title),
        chart.id,
        esc(&chart.title)
    );
    let base = height - bottom;
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#888\"/>\
         <text x=\"{}\" y=\"24\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        width - 10.0,
        left - 4.0,
        format_value(max),
        left - 4.0,
    );
    for (g, label) in chart.labels.iter().enumerate() {
        let x0 = left + g as f64 * group + group * 0.1;
        for (k, series) in chart.series.iter().enumerate() {
            let value = series.values.get(g).copied().unwrap_or(0.0);
            let h = value / max * plot;
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {} {}</title></rect>",
                x0 + k as f64 * bar,
                base - h,
                bar,
                h,
                COLOURS[k % COLOURS.len()],
                esc(label),
                format_value(value),
                chart.unit
            );
        }
        // Labels of many bars would overlap: every n-th one is written.
        let every = (chart.labels.len() / 24).max(1);
        if g % every == 0 {
            let x = x0 + group * 0.4;
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\" transform=\"rotate(40 {x:.1} {:.1})\">{}</text>",
                base + 12.0,
                base + 12.0,
                esc(label)
            );
        }
    }
    for (k, series) in chart.series.iter().enumerate() {
        let x = left + 10.0 + k as f64 * 110.0;
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"6\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"15\">{}</text>",
            COLOURS[k % COLOURS.len()],
            x + 14.0,
            esc(series.name)
        );
    }
    out.push_str("</svg>\n");
}

/// A value for a label: whole numbers without decimals.
fn format_value(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}
