//! `list`: every container under the root, as runc's table or JSON.

use std::path::Path;

use crate::cli::{ListArgs, ListFormat};
use crate::state::{list_ids, oci_state_json, StateDir};
use crate::{Error, Result};

/// Prints the containers under `root`.
pub fn list(root: &Path, args: &ListArgs) -> Result<()> {
    let mut rows = Vec::new();
    for id in list_ids(root)? {
        let Ok(dir) = StateDir::open(root, &id) else {
            continue;
        };
        let Ok(st) = dir.load() else { continue };
        rows.push(oci_state_json(&st, dir.status(&st)));
    }
    if args.quiet {
        rows.iter()
            .for_each(|r| println!("{}", r["id"].as_str().unwrap_or_default()));
        return Ok(());
    }
    match args.format {
        ListFormat::Json => {
            let text = serde_json::to_string(&rows).map_err(|e| Error::sys("list", e))?;
            println!("{text}");
        }
        ListFormat::Table => print_table(&rows),
    }
    Ok(())
}

fn print_table(rows: &[serde_json::Value]) {
    let cols = ["id", "pid", "status", "bundle", "created", "owner"];
    let cell = |r: &serde_json::Value, c: &str| match &r[c] {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let widths: Vec<usize> = cols
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let padded: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", padded.join("   ").trim_end());
    };
    line(cols.iter().map(|c| c.to_uppercase()).collect());
    for r in rows {
        line(cols.iter().map(|c| cell(r, c)).collect());
    }
}
