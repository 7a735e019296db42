//! A run's tallies of its task results (`runs.t_*`, `run_result_tallies`) written once per
//! run by a batch instead of once per row by the tally triggers.
//!
//! The triggers keep the tallies on every single-row write. A batch (`finish_tasks`, a
//! run's insert) pauses them for its own transaction (a row in `tally_paused`, inserted
//! and deleted inside that transaction, so no other connection ever sees it) and then
//! counts each run it touched again from its task results: one write of the run's row
//! per batch instead of one per task result.

use rusqlite::{params, Connection};

use crate::store::Result;

/// Pause the tally triggers until [`recount`]; inside the caller's transaction.
pub(super) fn pause(conn: &Connection) -> Result<()> {
    conn.prepare_cached("INSERT INTO tally_paused (one) VALUES (1)")?
        .execute([])?;
    Ok(())
}

/// Count the runs `run_ids` again from their task results and resume the triggers.
pub(super) fn recount<'a>(
    conn: &Connection,
    run_ids: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let mut runs = conn.prepare_cached(
        "UPDATE runs SET (t_total, t_done, t_failed, t_aborted, t_failure) = (
            SELECT count(*),
                coalesce(sum(t.state IS 'done'), 0),
                coalesce(sum(t.state IS 'done' AND t.failure IS 1 AND t.result IS NOT 'Aborted'), 0),
                coalesce(sum(t.state IS 'done' AND t.result IS 'Aborted'), 0),
                coalesce(sum(t.failure IS 1), 0)
            FROM task_results t WHERE t.run_id = runs.id)
         WHERE id = ?1",
    )?;
    let mut clear = conn.prepare_cached("DELETE FROM run_result_tallies WHERE run_id = ?1")?;
    let mut results = conn.prepare_cached(
        "INSERT INTO run_result_tallies (run_id, result, n)
         SELECT run_id, result, count(*) FROM task_results
         WHERE run_id = ?1 AND result IS NOT NULL AND state = 'done' GROUP BY run_id, result",
    )?;
    for id in run_ids {
        runs.execute(params![id])?;
        clear.execute(params![id])?;
        results.execute(params![id])?;
    }
    conn.prepare_cached("DELETE FROM tally_paused")?
        .execute([])?;
    Ok(())
}
