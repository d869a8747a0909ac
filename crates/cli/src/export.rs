//! `invoiceguard export trace FILE TRAIL...`: which export a file came from — and so who took it,
//! when and how. The file's watermark names its export (a CSV's trailing line, a JSON object's
//! `_export` member); without one, its SHA-256 is looked for among the exports' recorded hashes —
//! of the bytes delivered (an unaltered copy), and of the bytes without the watermark (a copy
//! whose watermark line or member was removed and nothing else changed). A copy edited in any
//! other way (rows cut, re-saved by a spreadsheet) is found only by its watermark.

use std::path::PathBuf;
use std::process::ExitCode;

use invoiceguard_audit::query::{self, Filter};
use serde_json::Value;

/// What `export trace` takes.
#[derive(clap::Args)]
pub(crate) struct TraceArgs {
    /// The file that leaked (or any copy of an export).
    file: PathBuf,
    /// Trails to search: spool folders or files a file sink wrote (several replicas' at once).
    #[arg(required = true)]
    trails: Vec<PathBuf>,
    /// A key that sealed segments (`[audit] encryption_key_file`, or an older one); repeatable.
    #[arg(long = "encryption-key", value_name = "FILE")]
    encryption_keys: Vec<PathBuf>,
}

/// How the file was matched to its export.
fn how(found_by: &str) -> &'static str {
    match found_by {
        "watermark" => "its watermark",
        "sha256" => "the SHA-256 of the bytes delivered (an unaltered copy)",
        _ => {
            "the SHA-256 of the bytes without their watermark (a copy whose watermark was removed)"
        }
    }
}

pub(crate) fn trace(args: &TraceArgs) -> ExitCode {
    if let Err(code) = crate::install_keys(&args.encryption_keys) {
        return code;
    }
    let bytes = match std::fs::read(&args.file) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!(
                "invoiceguard: cannot read `{}`: {error}",
                args.file.display()
            );
            return ExitCode::from(2);
        }
    };
    let mark = invoiceguard_gateway::find_mark(&bytes);
    let sha256 = hex_sha256(&bytes);
    let filter = Filter {
        all_stages: true,
        ..Filter::default()
    };
    let mut found: Vec<(&'static str, Value)> = Vec::new();
    let scanned = query::scan(&args.trails, &filter, |line, view| {
        if view.stage != "delivered" {
            return;
        }
        let Ok(event) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let delivery = &event["outcome"]["export_delivery"];
        let by = if mark.as_deref().is_some_and(|id| delivery["id"] == id) {
            "watermark"
        } else if delivery["sha256"] == sha256.as_str() {
            "sha256"
        } else if delivery["sha256_unmarked"] == sha256.as_str() {
            "sha256_unmarked"
        } else {
            return;
        };
        found.push((by, event));
    });
    if let Err(error) = scanned {
        eprintln!("invoiceguard: cannot read the trails: {error}");
        return ExitCode::from(2);
    }
    if found.is_empty() {
        match &mark {
            Some(id) => println!(
                "{}: its watermark names export {id}, which is in none of these trails (sha256 {sha256})",
                args.file.display()
            ),
            None => println!(
                "{}: no watermark, and no export delivered these bytes (sha256 {sha256})",
                args.file.display()
            ),
        }
        return ExitCode::FAILURE;
    }
    for (by, event) in &found {
        let delivery = &event["outcome"]["export_delivery"];
        let text = |pointer: &str| {
            event
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("-")
        };
        println!(
            "{}: export {}",
            args.file.display(),
            text("/outcome/export_delivery/id")
        );
        println!(
            "  taken by   {} ({}, {})",
            text("/actor/id"),
            text("/actor/type"),
            text("/actor/auth_method")
        );
        println!("  at         {} from {}", text("/time"), text("/source/ip"));
        println!(
            "  request    {} {} ({})",
            text("/request/method"),
            text("/request/path"),
            text("/request_id")
        );
        println!(
            "  delivered  {} bytes, {} rows, watermark {}{}",
            delivery["bytes"],
            event["outcome"]["export_rows"],
            text("/outcome/export_delivery/watermark"),
            if delivery["complete"] == true {
                ""
            } else {
                ", cut off before its end"
            }
        );
        println!("  found by   {}", how(by));
        if *by == "watermark"
            && delivery["sha256"] != sha256.as_str()
            && delivery["sha256_unmarked"] != sha256.as_str()
        {
            println!(
                "  note       the file differs from what was delivered: it was changed afterwards"
            );
        }
    }
    ExitCode::SUCCESS
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}
