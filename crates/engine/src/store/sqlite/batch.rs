//! Finished tasks written in bulk: the rows (with their sub-results and measurements),
//! attempts and sections of any number of occurrences inside the caller's transaction
//! (the batch path `finish_tasks`, and `finish_task` for a result with child rows).
//!
//! One read of the batch's occurrences (their runs, lanes and snapshots, [`OCCURRENCES`])
//! and one multi-row `UPDATE … FROM (VALUES …)` per chunk of rows ([`finish_sql`]):
//! a statement's setup, its statement journal and its parameters' round trip are paid
//! per chunk, not per task. A row's sub-results and measurements are JSON arrays in it
//! (`sub_results::to_json`, `history::to_json`); measurements are tallied once per run
//! and lane at the end.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rusqlite::types::ToSql;
use rusqlite::{params, Connection};

use super::tasks::{write_attempts, write_sections, FinishRow, FINISH_COLS, FINISH_SET};
use super::{history, sub_results};
use crate::store::{paths, MeasurementRecord, Result, StoreError, TaskFinish};

/// The most rows one multi-row `UPDATE` or `INSERT` writes: a statement's parameters
/// stay far below SQLite's bound. A batch's updates go in chunks of powers of two up to
/// it ([`chunk_len`]), so a batch of any size prepares a handful of distinct statements
/// (cached).
pub(super) const ROWS_PER_INSERT: usize = 64;

/// What a batch reads of its occurrences before writing them (`?1`, a JSON array of
/// their ids): each one's run and lane (for the tallies) and its run's snapshot (where
/// its paths are stored relative to).
const OCCURRENCES: &str = "SELECT t.id, t.run_id, COALESCE(t.lane, ''), r.snapshot_dir
     FROM task_results t JOIN runs r ON r.id = t.run_id
     WHERE t.id IN (SELECT value FROM json_each(?1))";

const ADD_TALLY: &str = "INSERT INTO measurement_tallies (run_id, lane, total, failed)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (run_id, lane) DO UPDATE
       SET total = total + excluded.total, failed = failed + excluded.failed";

/// Finish `rows` occurrences in one statement: [`FINISH_SET`] from each row `v` of a
/// `VALUES` list, each row bound from a [`FinishRow::values`].
pub(super) fn finish_sql(rows: usize) -> String {
    values_sql(
        &format!("UPDATE task_results SET {FINISH_SET}FROM (VALUES "),
        FINISH_COLS,
        rows,
    ) + ") AS v WHERE task_results.id = v.column1"
}

/// One occurrence as read by [`OCCURRENCES`].
struct Occurrence {
    run_id: String,
    lane: String,
    snapshot: Option<String>,
}

/// One row to write, and its occurrence as read (its run's folder, for its attempts'
/// paths).
struct Row<'a, 'o> {
    finish: FinishRow<'a>,
    occ: &'o Occurrence,
}

/// Write `items` (occurrence id, its finish) inside the caller's transaction; the runs
/// they belong to. An unknown occurrence with child rows (sub-results, attempts,
/// measurements, sections) is [`StoreError::InvalidQuery`]; one without is passed over,
/// as its `UPDATE` would be. An occurrence given twice is finished twice, in order: the
/// later sub-results replace the earlier, the later measurements follow them.
pub(super) fn finish<'a>(
    conn: &Connection,
    items: impl IntoIterator<Item = (i64, &'a TaskFinish)>,
) -> Result<BTreeSet<String>> {
    let items: Vec<(i64, &'a TaskFinish)> = items.into_iter().collect();
    let found = occurrences(conn, items.iter().map(|(id, _)| *id))?;
    let mut rows: Vec<Row<'a, '_>> = Vec::with_capacity(items.len());
    // (run, lane) -> (measurements, failed ones).
    let mut tallies: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    let mut runs = BTreeSet::new();
    // An occurrence's lane as its finishes so far in this batch leave it.
    let mut lanes: HashMap<i64, String> = HashMap::new();
    for (task_id, f) in items {
        let Some(occ) = found.get(&task_id) else {
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
        let lane = lanes.entry(task_id).or_insert_with(|| occ.lane.clone());
        if let Some(given) = &f.lane {
            lane.clone_from(given);
        }
        if !records.is_empty() {
            let t = tallies
                .entry((occ.run_id.clone(), lane.clone()))
                .or_default();
            t.0 += records.len() as i64;
            t.1 += records
                .iter()
                .filter(|(_, r)| r.passed == Some(false))
                .count() as i64;
        }
        rows.push(Row {
            finish: FinishRow::new(
                task_id,
                f,
                paths::to_stored(&f.paths, paths::run_folder(occ.snapshot.as_deref())),
                history::to_json(records.iter().map(|(s, r)| (*s, r)))?,
                sub_results::to_json(&f.sub_results)?,
            ),
            occ,
        });
        runs.insert(occ.run_id.clone());
    }
    // The first finish of each occurrence in multi-row statements; a second one after
    // them, one at a time, so it lands after the first.
    let mut seen = HashSet::with_capacity(rows.len());
    let (firsts, repeats): (Vec<&FinishRow<'_>>, Vec<&FinishRow<'_>>) = rows
        .iter()
        .map(|r| &r.finish)
        .partition(|r| seen.insert(r.task_id));
    update_many(conn, &firsts)?;
    if !repeats.is_empty() {
        let mut update = conn.prepare_cached(&finish_sql(1))?;
        for r in repeats {
            update.execute(r.values().as_slice())?;
        }
    }
    for Row { finish: r, occ } in &rows {
        if !r.f.attempts.is_empty() {
            let folder = paths::run_folder(occ.snapshot.as_deref());
            write_attempts(conn, r.task_id, folder, &r.f.attempts)?;
        }
        if !r.f.sections.is_empty() {
            write_sections(conn, r.task_id, &r.f.sections)?;
        }
    }
    if !tallies.is_empty() {
        let mut add = conn.prepare_cached(ADD_TALLY)?;
        for ((run_id, lane), (total, failed)) in tallies {
            add.execute(params![run_id, lane, total, failed])?;
        }
    }
    Ok(runs)
}

/// The occurrences among `ids` that exist, by id.
fn occurrences(
    conn: &Connection,
    ids: impl Iterator<Item = i64>,
) -> Result<HashMap<i64, Occurrence>> {
    let ids: Vec<i64> = ids.collect();
    let json = serde_json::to_string(&ids).expect("integers serialise");
    let mut stmt = conn.prepare_cached(OCCURRENCES)?;
    let rows = stmt.query_map([json], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Occurrence {
                run_id: r.get(1)?,
                lane: r.get(2)?,
                snapshot: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Finish `rows` (each occurrence once) with [`finish_sql`], in chunks.
fn update_many(conn: &Connection, rows: &[&FinishRow<'_>]) -> Result<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = chunk_len(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let args: Vec<&dyn ToSql> = chunk.iter().flat_map(|r| r.values()).collect();
        debug_assert_eq!(args.len(), n * FINISH_COLS);
        conn.prepare_cached(&finish_sql(n))?
            .execute(args.as_slice())?;
    }
    Ok(())
}

/// The largest power of two not above `left` nor [`ROWS_PER_INSERT`].
fn chunk_len(left: usize) -> usize {
    let n = ROWS_PER_INSERT.min(left);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// `head` followed by `rows` groups of `cols` placeholders.
pub(super) fn values_sql(head: &str, cols: usize, rows: usize) -> String {
    let group = format!("({})", vec!["?"; cols].join(","));
    format!("{head}{}", vec![group; rows].join(","))
}

#[cfg(test)]
mod tests {
    use super::{chunk_len, finish_sql, values_sql};

    #[test]
    fn values_have_one_group_per_row() {
        assert_eq!(
            values_sql("INSERT INTO t (a, b) VALUES ", 2, 3),
            "INSERT INTO t (a, b) VALUES (?,?),(?,?),(?,?)"
        );
    }

    #[test]
    fn chunks_are_powers_of_two() {
        let sizes: Vec<usize> = [1, 2, 3, 63, 64, 65, 100, 1000]
            .into_iter()
            .map(chunk_len)
            .collect();
        assert_eq!(sizes, [1, 2, 2, 32, 64, 64, 64, 64]);
    }

    #[test]
    fn a_finish_finds_each_occurrence_by_its_key() {
        let sql = finish_sql(2);
        assert!(
            sql.ends_with(") AS v WHERE task_results.id = v.column1"),
            "{sql}"
        );
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for m in super::super::migrations::MIGRATIONS {
            c.execute_batch(m.sql).unwrap();
        }
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(vec![None::<i64>; 50]), |r| {
                r.get(3)
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        // Each row of the values finds its occurrence by its key; no table is scanned.
        assert!(
            plan.iter()
                .any(|l| l.contains("task_results USING INTEGER PRIMARY KEY")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|l| l.starts_with("SCAN task_results")),
            "{plan:?}"
        );
    }
}
