//! Finished tasks written in bulk on PostgreSQL (`finish_tasks`), inside the caller's
//! transaction: every occurrence's row in one `UPDATE … FROM unnest(…)`, every
//! sub-result and every measurement in one `INSERT … SELECT … FROM unnest(…)` each, the
//! measurement tallies in one upsert; attempts and sections (rare) row by row as
//! `finish_task` writes them. One statement per kind of row, whatever the batch's size,
//! so the statement-level tally triggers run once per batch. It stores exactly what
//! `finish_task` stores for each item (the contract suite compares them).

use std::collections::HashSet;

use deadpool_postgres::ClientWrapper;

use super::tasks::{finish_writes, stored_paths, write_attempts, write_sections};
use crate::store::{MeasurementRecord, Result, StoreError, TaskFinish};

const UPDATE_ALL: &str = "UPDATE task_results t SET state = 'done', lane = COALESCE(v.lane, t.lane),
        result = v.result, failure = v.failure, message = v.message, metadata_json = v.metadata_json,
        raw_result = v.raw_result, run_time = v.run_time, run_time_delta = v.run_time_delta,
        started_ms = COALESCE(v.started_ms, t.started_ms), finished_ms = v.finished_ms,
        setup_ms = v.setup_ms, main_ms = v.main_ms, teardown_ms = v.teardown_ms,
        exit_code = v.exit_code, signal = v.signal, log_truncated = v.log_truncated, pgid = NULL,
        phase = NULL, task_dir = COALESCE(v.task_dir, t.task_dir),
        setup_log = COALESCE(v.setup_log, t.setup_log), main_log = COALESCE(v.main_log, t.main_log),
        teardown_log = COALESCE(v.teardown_log, t.teardown_log),
        artifacts_dir = COALESCE(v.artifacts_dir, t.artifacts_dir), flaky = v.flaky
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::text[],
                 $7::text[], $8::float8[], $9::float8[], $10::bigint[], $11::bigint[],
                 $12::bigint[], $13::bigint[], $14::bigint[], $15::int4[], $16::int4[],
                 $17::bool[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[],
                 $23::bool[])
          AS v(id, lane, result, failure, message, metadata_json, raw_result, run_time,
               run_time_delta, started_ms, finished_ms, setup_ms, main_ms, teardown_ms,
               exit_code, signal, log_truncated, task_dir, setup_log, main_log, teardown_log,
               artifacts_dir, flaky)
     WHERE t.id = v.id";

const INSERT_SUBS: &str = "INSERT INTO sub_results (task_result_id, idx, name, description,
        result, failure, message, metadata_json)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                          $6::bool[], $7::text[], $8::text[])";

/// In the order given (`ord`), so ids run as `finish_task` would give them; an unknown
/// occurrence drops its rows (counted by the caller).
const INSERT_MEASUREMENTS: &str = "INSERT INTO measurements (task_result_id, pack_name, task,
        sub_result, name, value, units, low, high, comparison, passed)
     SELECT t.id, r.pack_name, t.task, v.sub, v.name, v.value, v.units, v.low, v.high, v.cmp,
            v.passed
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::float8[],
                 $7::float8[], $8::text[], $9::bool[]) WITH ORDINALITY
          AS v(tid, sub, name, value, units, low, high, cmp, passed, ord)
     JOIN task_results t ON t.id = v.tid JOIN runs r ON r.id = t.run_id
     ORDER BY v.ord";

/// Each occurrence's measurements (`n`, `failed`) added to its run's tally for its lane.
const ADD_TALLIES: &str = "INSERT INTO measurement_tallies (run_id, lane, total, failed)
     SELECT t.run_id, COALESCE(t.lane, ''), sum(v.n)::bigint, sum(v.failed)::bigint
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(tid, n, failed)
     JOIN task_results t ON t.id = v.tid
     GROUP BY t.run_id, COALESCE(t.lane, '')
     ON CONFLICT (run_id, lane) DO UPDATE
       SET total = measurement_tallies.total + excluded.total,
           failed = measurement_tallies.failed + excluded.failed";

/// Write `items` inside the caller's transaction (which the caller rolls back on error).
pub(super) async fn finish(c: &ClientWrapper, items: &[(i64, TaskFinish)]) -> Result<()> {
    // An occurrence given twice: one `UPDATE` would apply only one of its finishes, so
    // such a batch is written item by item, in order, as `finish_task` would.
    let distinct: HashSet<i64> = items.iter().map(|(id, _)| *id).collect();
    if distinct.len() < items.len() {
        for (id, f) in items {
            finish_writes(c, *id, f).await?;
        }
        return Ok(());
    }
    // The rows, column by column.
    let mut ids = Vec::with_capacity(items.len());
    let [mut lane, mut metadata, mut raw] = [(); 3].map(|_| Vec::new());
    let [mut task_dir, mut setup_log, mut main_log, mut teardown_log, mut artifacts] =
        [(); 5].map(|_| Vec::new());
    let [mut started, mut setup, mut main, mut teardown] = [(); 4].map(|_| Vec::new());
    let [mut failure, mut truncated, mut flaky] = [(); 3].map(|_| Vec::new());
    let [mut run_time, mut delta] = [(); 2].map(|_| Vec::new());
    let [mut exit, mut signal] = [(); 2].map(|_| Vec::new());
    let [mut result, mut message] = [(); 2].map(|_| Vec::new());
    let mut finished = Vec::new();
    for (id, f) in items {
        let paths = stored_paths(c, *id, &f.paths).await?;
        ids.push(*id);
        lane.push(f.lane.clone());
        result.push(f.result.clone());
        failure.push(f.failure);
        message.push(f.message.clone());
        metadata.push(f.metadata.as_ref().map(|m| m.to_string()));
        raw.push(f.raw_result.clone());
        run_time.push(f.run_time);
        delta.push(f.run_time_delta);
        started.push(f.started_ms);
        finished.push(f.finished_ms);
        setup.push(f.setup_ms);
        main.push(f.main_ms);
        teardown.push(f.teardown_ms);
        exit.push(f.exit_code);
        signal.push(f.signal);
        truncated.push(f.log_truncated);
        flaky.push(f.flaky);
        task_dir.push(paths.task_dir);
        setup_log.push(paths.setup_log);
        main_log.push(paths.main_log);
        teardown_log.push(paths.teardown_log);
        artifacts.push(paths.artifacts_dir);
    }
    let stmt = c.prepare_cached(UPDATE_ALL).await?;
    c.execute(
        &stmt,
        &[
            &ids,
            &lane,
            &result,
            &failure,
            &message,
            &metadata,
            &raw,
            &run_time,
            &delta,
            &started,
            &finished,
            &setup,
            &main,
            &teardown,
            &exit,
            &signal,
            &truncated,
            &task_dir,
            &setup_log,
            &main_log,
            &teardown_log,
            &artifacts,
            &flaky,
        ],
    )
    .await?;

    for (id, f) in items {
        if !f.attempts.is_empty() {
            write_attempts(c, *id, &f.attempts).await?;
        }
        if !f.sections.is_empty() {
            write_sections(c, *id, &f.sections).await?;
        }
    }

    // Sub-results: the old ones of every occurrence given new ones, then all the new.
    let with_subs: Vec<i64> = items
        .iter()
        .filter(|(_, f)| !f.sub_results.is_empty())
        .map(|(id, _)| *id)
        .collect();
    if !with_subs.is_empty() {
        c.execute(
            "DELETE FROM sub_results WHERE task_result_id = ANY($1)",
            &[&with_subs],
        )
        .await?;
        let [mut tid, mut idx] = [(); 2].map(|_| Vec::new());
        let [mut name, mut desc, mut res, mut msg] = [(); 4].map(|_| Vec::new());
        let (mut fail, mut meta) = (Vec::new(), Vec::new());
        for (id, f) in items {
            for (i, s) in f.sub_results.iter().enumerate() {
                tid.push(*id);
                idx.push(i as i64);
                name.push(s.name.as_str());
                desc.push(s.description.as_str());
                res.push(s.result.as_str());
                fail.push(s.failure);
                msg.push(s.message.as_str());
                meta.push(s.metadata.as_ref().map(|m| m.to_string()));
            }
        }
        let stmt = c.prepare_cached(INSERT_SUBS).await?;
        c.execute(&stmt, &[&tid, &idx, &name, &desc, &res, &fail, &msg, &meta])
            .await?;
    }

    // Measurements: the sub-results' then the task's own, task by task, as
    // `finish_task` writes them.
    let [mut sub, mut cmp] = [(); 2].map(|_| Vec::new());
    let [mut low, mut high] = [(); 2].map(|_| Vec::new());
    let (mut name, mut units, mut value) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tid, mut passed) = (Vec::new(), Vec::new());
    let [mut tally_id, mut tally_n, mut tally_failed] = [(); 3].map(|_| Vec::new());
    for (id, f) in items {
        let of_subs = f
            .sub_results
            .iter()
            .flat_map(|s| s.measurements.iter().map(move |m| (s.name.as_str(), m)));
        let own = f.measurements.iter().map(|m| ("", m));
        let (mut n, mut failed) = (0i64, 0i64);
        for (s, m) in of_subs.chain(own) {
            let r = MeasurementRecord::judged(m);
            tid.push(*id);
            sub.push(s);
            value.push(r.value);
            low.push(r.low);
            high.push(r.high);
            cmp.push(r.comparison.as_str());
            passed.push(r.passed);
            name.push(r.name);
            units.push(r.units);
            n += 1;
            failed += i64::from(m.passed() == Some(false));
        }
        if n > 0 {
            tally_id.push(*id);
            tally_n.push(n);
            tally_failed.push(failed);
        }
    }
    if !tid.is_empty() {
        let stmt = c.prepare_cached(INSERT_MEASUREMENTS).await?;
        let stored = c
            .execute(
                &stmt,
                &[
                    &tid, &sub, &name, &value, &units, &low, &high, &cmp, &passed,
                ],
            )
            .await?;
        if stored as usize != tid.len() {
            let known: Vec<i64> = c
                .query(
                    "SELECT id FROM task_results WHERE id = ANY($1)",
                    &[&tally_id],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let unknown = tally_id.iter().find(|id| !known.contains(id)).copied();
            return Err(StoreError::InvalidQuery {
                key: "task_id",
                message: format!("no task occurrence {}", unknown.unwrap_or_default()),
            });
        }
        let stmt = c.prepare_cached(ADD_TALLIES).await?;
        c.execute(&stmt, &[&tally_id, &tally_n, &tally_failed])
            .await?;
    }
    Ok(())
}
