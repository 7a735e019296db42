//! The lab inventory in the store: the last loaded lab file, and its DUTs as rows so
//! results and other processes can look them up.

use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::EpochMs;
use crate::lab::LabFile;
use crate::store::{Result, StoreError};

/// Replace the stored inventory with `lab` (loaded from `path`) inside the caller's
/// transaction.
pub(super) fn save_lab(tx: &Connection, path: &str, lab: &LabFile, now: EpochMs) -> Result<()> {
    let json = serde_json::to_string(lab).map_err(|source| StoreError::Json {
        what: "lab",
        source,
    })?;
    tx.execute(
        "INSERT OR REPLACE INTO lab (id, path, loaded_ms, lab_json) VALUES (1, ?1, ?2, ?3)",
        params![path, now, json],
    )?;
    tx.execute("DELETE FROM lab_duts", [])?;
    {
        let mut ins = tx.prepare(
            "INSERT INTO lab_duts (name, rack, slot, model, manufacturer, serial, offline, dut_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for d in &lab.duts {
            let dj = serde_json::to_string(d).map_err(|source| StoreError::Json {
                what: "dut",
                source,
            })?;
            ins.execute(params![
                d.name,
                d.location.as_ref().map(|l| l.rack.clone()),
                d.location.as_ref().map(|l| l.slot),
                d.model,
                d.manufacturer,
                d.serial,
                d.offline,
                dj
            ])?;
        }
    }
    Ok(())
}

/// The stored inventory and where it was loaded from.
pub fn load_lab(conn: &Connection) -> Result<Option<(String, EpochMs, LabFile)>> {
    let row: Option<(String, EpochMs, String)> = conn
        .query_row(
            "SELECT path, loaded_ms, lab_json FROM lab WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    row.map(|(p, t, j)| {
        serde_json::from_str(&j)
            .map(|lab| (p, t, lab))
            .map_err(|source| StoreError::Json {
                what: "lab",
                source,
            })
    })
    .transpose()
}
