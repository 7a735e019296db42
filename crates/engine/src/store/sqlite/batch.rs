//! Finished tasks written in bulk: the rows, sub-results, attempts, measurements and
//! sections of any number of occurrences inside the caller's transaction (the batch path
//! `finish_tasks`, and `finish_task` for a result with child rows).
//!
//! Per occurrence one read (its run, lane and snapshot, [`OCCURRENCE`]) and one `UPDATE`
//! of its row, which carries its measurements too (a JSON array, `history::to_json`);
//! sub-results go in multi-row `INSERT`s of up to [`ROWS_PER_INSERT`] rows, each prepared
//! once per batch (cached), and measurements are tallied once per run and lane at the end.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension};

use super::history;
use super::tasks::{update_with, write_attempts, write_sections, UPDATE_FINISH};
use crate::store::{paths, MeasurementRecord, Result, StoreError, TaskFinish};

/// Rows per multi-row `INSERT` (a statement's parameters stay far below SQLite's bound).
pub(super) const ROWS_PER_INSERT: usize = 64;

/// What a batch reads of an occurrence before writing it: its run and lane (for the
/// tallies) and its run's snapshot (where its paths are stored relative to).
const OCCURRENCE: &str = "SELECT t.run_id, COALESCE(t.lane, ''), r.snapshot_dir
     FROM task_results t JOIN runs r ON r.id = t.run_id WHERE t.id = ?1";

const ADD_TALLY: &str = "INSERT INTO measurement_tallies (run_id, lane, total, failed)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (run_id, lane) DO UPDATE
       SET total = total + excluded.total, failed = failed + excluded.failed";

/// One occurrence as read by [`OCCURRENCE`].
struct Occurrence {
    run_id: String,
    lane: String,
    /// Its measurements in this batch: (count, failed ones).
    measured: (i64, i64),
}

/// One sub-result row to insert.
struct SubRow<'a> {
    task_id: i64,
    idx: i64,
    s: &'a crate::store::NewSubResult,
    metadata: Option<String>,
}

/// Write `items` (occurrence id, its finish) inside the caller's transaction; the runs
/// they belong to. An unknown occurrence with child rows (sub-results, attempts,
/// measurements, sections) is [`StoreError::InvalidQuery`]; one without is passed over,
/// as its `UPDATE` would be.
pub(super) fn finish<'a>(
    conn: &Connection,
    items: impl IntoIterator<Item = (i64, &'a TaskFinish)>,
) -> Result<BTreeSet<String>> {
    let mut occurrence = conn.prepare_cached(OCCURRENCE)?;
    let mut update = conn.prepare_cached(UPDATE_FINISH)?;
    let mut occs: Vec<Occurrence> = Vec::new();
    let mut subs: Vec<SubRow<'a>> = Vec::new();
    let mut with_subs: BTreeSet<i64> = BTreeSet::new();
    for (task_id, f) in items {
        let found = occurrence
            .query_row([task_id], |r| {
                Ok((
                    Occurrence {
                        run_id: r.get(0)?,
                        lane: r.get(1)?,
                        measured: (0, 0),
                    },
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .optional()?;
        let Some((mut occ, snapshot)) = found else {
            if f.sub_results.is_empty()
                && f.attempts.is_empty()
                && f.measurements.is_empty()
                && f.sections.is_empty()
            {
                continue;
            }
            return Err(StoreError::InvalidQuery {
                key: "task_id",
                message: format!("no task occurrence {task_id}"),
            });
        };
        let of_subs = f
            .sub_results
            .iter()
            .flat_map(|s| s.measurements.iter().map(move |m| (s.name.as_str(), m)));
        let own = f.measurements.iter().map(|m| ("", m));
        let records: Vec<(&str, MeasurementRecord)> = of_subs
            .chain(own)
            .map(|(sub, m)| (sub, MeasurementRecord::judged(m)))
            .collect();
        occ.measured = (
            records.len() as i64,
            records
                .iter()
                .filter(|(_, r)| r.passed == Some(false))
                .count() as i64,
        );
        let measurements = history::to_json(records.iter().map(|(s, r)| (*s, r)))?;
        let folder = paths::run_folder(snapshot.as_deref());
        update_with(
            &mut update,
            task_id,
            f,
            &paths::to_stored(&f.paths, folder),
            measurements.as_deref(),
        )?;
        if let Some(lane) = &f.lane {
            occ.lane.clone_from(lane);
        }
        if !f.attempts.is_empty() {
            write_attempts(conn, task_id, folder, &f.attempts)?;
        }
        if !f.sections.is_empty() {
            write_sections(conn, task_id, &f.sections)?;
        }
        if !f.sub_results.is_empty() {
            // Given twice in one batch: the later sub-results replace the earlier, as
            // two single finishes would.
            if !with_subs.insert(task_id) {
                subs.retain(|r| r.task_id != task_id);
            }
            subs.extend(f.sub_results.iter().enumerate().map(|(i, s)| SubRow {
                task_id,
                idx: i as i64,
                s,
                metadata: s.metadata.as_ref().map(|m| m.to_string()),
            }));
        }
        occs.push(occ);
    }
    if !with_subs.is_empty() {
        let mut del = conn.prepare_cached("DELETE FROM sub_results WHERE task_result_id = ?1")?;
        for id in with_subs {
            del.execute([id])?;
        }
    }
    insert_many(
        conn,
        "INSERT INTO sub_results (task_result_id, idx, name, description, result, failure, message, metadata_json) VALUES ",
        8,
        &subs,
        |row, out| {
            out.extend([
                &row.task_id as &dyn ToSql,
                &row.idx,
                &row.s.name,
                &row.s.description,
                &row.s.result,
                &row.s.failure,
                &row.s.message,
                &row.metadata,
            ])
        },
    )?;
    // (run, lane) -> (measurements, failed ones).
    let mut tallies: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    for occ in occs.iter().filter(|o| o.measured.0 > 0) {
        let t = tallies
            .entry((occ.run_id.as_str(), occ.lane.as_str()))
            .or_default();
        t.0 += occ.measured.0;
        t.1 += occ.measured.1;
    }
    if !tallies.is_empty() {
        let mut add = conn.prepare_cached(ADD_TALLY)?;
        for ((run_id, lane), (total, failed)) in tallies {
            add.execute(params![run_id, lane, total, failed])?;
        }
    }
    Ok(occs.into_iter().map(|o| o.run_id).collect())
}

/// Insert `rows` with `head` (`INSERT INTO t (cols…) VALUES `), `cols` values each as
/// `bind` lists them, [`ROWS_PER_INSERT`] rows per statement.
pub(super) fn insert_many<'r, R>(
    conn: &Connection,
    head: &str,
    cols: usize,
    rows: &'r [R],
    bind: impl Fn(&'r R, &mut Vec<&'r dyn ToSql>),
) -> Result<()> {
    let mut args: Vec<&'r dyn ToSql> = Vec::with_capacity(ROWS_PER_INSERT * cols);
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        args.clear();
        for row in chunk {
            bind(row, &mut args);
        }
        debug_assert_eq!(args.len(), chunk.len() * cols);
        conn.prepare_cached(&values_sql(head, cols, chunk.len()))?
            .execute(args.as_slice())?;
    }
    Ok(())
}

/// `head` followed by `rows` groups of `cols` placeholders.
pub(super) fn values_sql(head: &str, cols: usize, rows: usize) -> String {
    let group = format!("({})", vec!["?"; cols].join(","));
    format!("{head}{}", vec![group; rows].join(","))
}

#[cfg(test)]
mod tests {
    use super::values_sql;

    #[test]
    fn values_have_one_group_per_row() {
        assert_eq!(
            values_sql("INSERT INTO t (a, b) VALUES ", 2, 3),
            "INSERT INTO t (a, b) VALUES (?,?),(?,?),(?,?)"
        );
    }
}
