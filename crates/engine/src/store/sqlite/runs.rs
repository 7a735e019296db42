//! Runs in SQLite: inserting a run with its planned tasks, its status, one run and the
//! listing (filters, sort, page, search), and recovery of runs whose console died.

use std::collections::HashMap;

use rusqlite::types::ToSql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::to_json;
use crate::clock::EpochMs;
use crate::outcome::{RunStatus, RunVerdict, ABORTED};
use crate::store::{
    NewRun, NewTaskRow, RecoveryReport, Result, RunCounts, RunOwner, RunPage, RunQuery, RunRecord,
    RunSort, StoreError, MAX_SEARCH_CHARS,
};

/// Insert a run and its planned task occurrences, owned by `owner`, inside the caller's
/// transaction; the row id of each occurrence, in the order given.
pub(super) fn insert(
    tx: &Connection,
    run: &NewRun,
    tasks: &[NewTaskRow],
    owner: RunOwner,
) -> Result<Vec<i64>> {
    tx.execute(
        "INSERT INTO runs (id, pack_name, pack_version, content_hash, pack_dir, snapshot_dir,
            groups_json, duts_json, ats, params_json, resource_mode, coverage_mode, status,
            reason, created_ms, est_run_time, owner_pid, owner_start)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
        params![
            run.id,
            run.pack_name,
            run.pack_version,
            run.content_hash,
            run.pack_dir,
            run.snapshot_dir,
            to_json(&run.groups),
            to_json(&run.duts),
            run.ats,
            run.params.to_string(),
            run.resource_mode,
            run.coverage_mode,
            run.status.as_str(),
            run.reason,
            run.created_ms,
            run.est_run_time,
            owner.pid,
            owner.start,
        ],
    )?;
    // The run's tallies counted once after its rows, not once per row.
    super::tally::pause(tx)?;
    // Multi-row inserts; each row's id comes back with its sequence number.
    let mut by_seq: HashMap<u32, i64> = HashMap::with_capacity(tasks.len());
    for chunk in tasks.chunks(super::batch::ROWS_PER_INSERT) {
        let kinds: Vec<&'static str> = chunk.iter().map(|t| t.kind.as_str()).collect();
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 8);
        for (t, kind) in chunk.iter().zip(&kinds) {
            args.extend([
                &run.id as &dyn ToSql,
                &t.seq,
                &t.lane,
                &t.task,
                kind,
                &t.group,
                &t.description,
                &t.est_task_time,
            ]);
        }
        let sql = format!(
            "{} RETURNING seq, id",
            super::batch::values_sql(
                "INSERT INTO task_results (run_id, seq, lane, task, kind, grp, description, est_task_time) VALUES ",
                8,
                chunk.len()
            )
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(args.as_slice())?;
        while let Some(r) = rows.next()? {
            by_seq.insert(r.get(0)?, r.get(1)?);
        }
    }
    let ids = tasks
        .iter()
        .map(|t| by_seq.get(&t.seq).copied().unwrap_or_default())
        .collect();
    super::tally::recount(tx, [run.id.as_str()])?;
    Ok(ids)
}

pub(super) fn set_status(
    conn: &Connection,
    id: &str,
    status: RunStatus,
    reason: Option<&str>,
    now: EpochMs,
) -> Result<()> {
    let n = conn.execute(
        "UPDATE runs SET status = ?2,
            reason = CASE WHEN ?2 = 'running' THEN ?3 ELSE COALESCE(?3, reason) END,
            started_ms = CASE WHEN ?2 = 'running' AND started_ms IS NULL THEN ?4 ELSE started_ms END,
            finished_ms = CASE WHEN ?5 THEN ?4 ELSE finished_ms END
         WHERE id = ?1",
        params![id, status.as_str(), reason, now, status.is_finished()],
    )?;
    if n == 0 {
        return Err(StoreError::RunNotFound(id.into()));
    }
    Ok(())
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<RunRecord> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs r WHERE r.id = ?1"))?;
    let run = stmt
        .query_row([id], run_from_row)
        .optional()?
        .ok_or_else(|| StoreError::RunNotFound(id.into()))?;
    let mut runs = vec![run.map_err(|e| StoreError::Json {
        what: "runs",
        source: e,
    })?];
    fill_counts(conn, &mut runs)?;
    Ok(runs.pop().expect("one run"))
}

/// One listing: the page and the number of matching runs in one query (`count(*) OVER
/// ()` over the matching ids and sort keys only, the page's rows joined after); a page
/// past the end, a page after a run (keyset) and the unfiltered listing (where counting
/// the table is cheaper) count in a query of their own.
pub(super) fn list(conn: &Connection, sql: &ListSql) -> Result<RunPage> {
    if let Some(page) = list_from_the_end(conn, sql)? {
        return Ok(page);
    }
    let mut stmt = conn.prepare(&sql.page())?;
    let mut total: Option<u32> = None;
    let rows = stmt.query_map(params_from_iter(sql.args.iter()), |r| {
        Ok((r.get::<_, Option<u32>>(RUN_COL_COUNT)?, run_from_row(r)?))
    })?;
    let mut runs = Vec::new();
    for r in rows {
        let (n, run) = r?;
        total = n;
        runs.push(run.map_err(|e| StoreError::Json {
            what: "runs",
            source: e,
        })?);
    }
    let total = match total {
        Some(n) => n,
        None if sql.offset == 0 && sql.windowed() => 0,
        None => conn.query_row(&sql.count(), params_from_iter(sql.count_args()), |r| {
            r.get(0)
        })?,
    };
    fill_counts(conn, &mut runs)?;
    Ok(RunPage { total, runs })
}

/// A page in the back half of the unfiltered listing by creation, read as a page of the
/// reverse order from its start and turned round: the last page reads its own runs,
/// not every run before it. `None` for any other listing.
fn list_from_the_end(conn: &Connection, sql: &ListSql) -> Result<Option<RunPage>> {
    let Some(reverse) = &sql.reverse_order else {
        return Ok(None);
    };
    if sql.offset == 0 || !sql.where_sql.is_empty() || sql.keyset.is_some() {
        return Ok(None);
    }
    let total: u32 = conn.query_row(&sql.count(), [], |r| r.get(0))?;
    if sql.offset <= total / 2 || sql.offset >= total {
        return Ok(None);
    }
    let end = sql.offset.saturating_add(sql.limit).min(total);
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUN_COLS}, NULL FROM runs r ORDER BY {reverse} LIMIT {} OFFSET {}",
        end - sql.offset,
        total - end
    ))?;
    let rows = stmt.query_map([], run_from_row)?;
    let mut runs = Vec::new();
    for r in rows {
        runs.push(r?.map_err(|e| StoreError::Json {
            what: "runs",
            source: e,
        })?);
    }
    runs.reverse();
    fill_counts(conn, &mut runs)?;
    Ok(Some(RunPage { total, runs }))
}

/// SQLite's plan for a listing (`EXPLAIN QUERY PLAN` of the page with its count, one
/// line per step).
pub(super) fn list_plan(conn: &Connection, sql: &ListSql) -> Result<Vec<String>> {
    let mut plan = Vec::new();
    let reverse = sql
        .reverse_order
        .as_ref()
        .filter(|_| sql.offset > 0 && sql.where_sql.is_empty() && sql.keyset.is_none())
        .map(|o| {
            format!(
                "SELECT {RUN_COLS}, NULL FROM runs r ORDER BY {o} LIMIT {}",
                sql.limit
            )
        });
    let count = sql.result_only.then(|| sql.count());
    for (s, args) in [(sql.page(), &sql.args[..])]
        .into_iter()
        .chain(count.map(|c| (c, sql.count_args())))
        .chain(reverse.map(|r| (r, &[][..])))
    {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {s}"))?;
        let rows = stmt.query_map(params_from_iter(args.iter()), |r| r.get::<_, String>(3))?;
        for r in rows {
            plan.push(r?);
        }
    }
    Ok(plan)
}

/// Runs left queued, running or stalled by a console that is no longer alive
/// ([`RunOwner::alive`]), oldest first.
pub(super) fn interrupted(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT id, owner_pid, owner_start FROM runs
         WHERE status IN ('queued', 'running', 'stalled') ORDER BY created_ms",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut dead = Vec::new();
    for row in rows {
        let (id, pid, start) = row?;
        // A run whose console is alive (same pid, same start time) is left alone.
        if !RunOwner::alive(pid, start) {
            dead.push(id);
        }
    }
    Ok(dead)
}

/// Mark `run_ids` interrupted and their unfinished tasks `Aborted`, inside the caller's
/// transaction; a run no longer queued, running or stalled is left alone.
pub(super) fn mark_interrupted(
    tx: &Connection,
    run_ids: &[String],
    now: EpochMs,
) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    for run_id in run_ids {
        let marked = tx.execute(
            "UPDATE runs SET status = 'interrupted',
                reason = 'the console running it exited' || CASE WHEN owner_pid IS NULL THEN '' ELSE ' (pid ' || owner_pid || ')' END,
                finished_ms = ?2
             WHERE id = ?1 AND status IN ('queued', 'running', 'stalled')",
            params![run_id, now],
        )?;
        if marked == 0 {
            continue;
        }
        let aborted = tx.execute(
            "UPDATE task_results SET state = 'done', result = ?2, failure = 1,
                message = CASE WHEN state = 'running'
                    THEN 'the console exited while this task was running'
                    ELSE 'the console exited before this task ran' END,
                finished_ms = ?3, pgid = NULL, phase = NULL
             WHERE run_id = ?1 AND state != 'done'",
            params![run_id, ABORTED, now],
        )?;
        tracing::warn!(run_id = %run_id, aborted, "marked interrupted run");
        report.aborted_tasks += aborted as u32;
        report.interrupted_runs.push(run_id.clone());
    }
    Ok(report)
}

const RUN_COLS: &str =
    "r.id, r.pack_name, r.pack_version, r.content_hash, r.pack_dir, r.snapshot_dir,
    r.groups_json, r.duts_json, r.ats, r.params_json, r.resource_mode, r.coverage_mode, r.status,
    r.reason, r.created_ms, r.started_ms, r.finished_ms, r.est_run_time,
    r.t_total, r.t_done, r.t_failed, r.t_aborted";

/// The number of columns of [`RUN_COLS`] (the listing's total comes after them).
const RUN_COL_COUNT: usize = 22;

/// A run's failures as [`RunCounts::failures`] counts them, from its tallies: failed
/// rows, and the rows an errored run never finished (their result was lost).
const FAILURES: &str =
    "(r.t_failed + CASE WHEN r.status = 'errored' THEN r.t_total - r.t_done ELSE 0 END)";

/// The SQL of one listing: its filters, order and page.
pub(super) struct ListSql {
    where_sql: String,
    order: String,
    /// The order turned round, where it is a total order (by creation, ties by id).
    reverse_order: Option<String>,
    limit: u32,
    offset: u32,
    /// The keyset condition of `after`, if any: on the page, not on the count.
    keyset: Option<String>,
    /// `result=` is the only filter: the runs with that result are counted from the
    /// tallies' index on result, not by walking every run.
    result_only: bool,
    args: Vec<rusqlite::types::Value>,
}

impl ListSql {
    pub(super) fn new(q: &RunQuery) -> Result<Self> {
        let mut wh: Vec<String> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |v: rusqlite::types::Value| {
            args.push(v);
            format!("?{}", args.len())
        };
        use rusqlite::types::Value as V;
        if let Some(p) = &q.pack {
            wh.push(format!("r.pack_name = {}", arg(V::Text(p.clone()))));
        }
        if let Some(a) = &q.ats {
            wh.push(format!("r.ats = {}", arg(V::Text(a.clone()))));
        }
        if let Some(s) = q.status {
            wh.push(format!("r.status = {}", arg(V::Text(s.as_str().into()))));
        }
        if let Some(res) = &q.result {
            wh.push(format!(
                "EXISTS (SELECT 1 FROM run_result_tallies x WHERE x.run_id = r.id AND x.result = {})",
                arg(V::Text(res.clone()))
            ));
        }
        if q.failed_only {
            // Word for word the condition of the partial index `runs_failed`.
            wh.push("(r.status = 'errored' OR r.t_failure > 0)".into());
        }
        if let Some(f) = q.from_ms {
            wh.push(format!("r.created_ms >= {}", arg(V::Integer(f))));
        }
        if let Some(t) = q.to_ms {
            wh.push(format!("r.created_ms <= {}", arg(V::Integer(t))));
        }
        // The filters that parse a run's lists come after those on its columns, and the
        // text search last: SQLite tries a run's conditions in the order written.
        if let Some(g) = &q.group {
            wh.push(format!(
                "EXISTS (SELECT 1 FROM json_each(r.groups_json) WHERE value = {})",
                arg(V::Text(g.clone()))
            ));
        }
        if let Some(d) = &q.dut {
            if d.contains('*') {
                let pat = like_escape(d).replace('*', "%");
                wh.push(format!(
                    "EXISTS (SELECT 1 FROM json_each(r.duts_json) WHERE json_extract(value, '$.name') LIKE {} ESCAPE '\\')",
                    arg(V::Text(pat))
                ));
            } else {
                // `instr` first: a run whose DUT list does not hold the name as a JSON
                // string is passed over without parsing its list.
                let p = arg(V::Text(d.clone()));
                wh.push(format!(
                    "instr(r.duts_json, json_quote({p})) > 0
                     AND EXISTS (SELECT 1 FROM json_each(r.duts_json) WHERE json_extract(value, '$.name') = {p})"
                ));
            }
        }
        if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
            let chars = text.chars().count();
            if chars > MAX_SEARCH_CHARS {
                return Err(StoreError::InvalidQuery {
                    key: "text",
                    message: format!(
                        "the search text has {chars} characters; at most {MAX_SEARCH_CHARS}"
                    ),
                });
            }
            let pat = format!("%{}%", like_escape(text));
            let p = arg(V::Text(pat));
            wh.push(format!(
                "(r.id LIKE {p} ESCAPE '\\' OR r.pack_name LIKE {p} ESCAPE '\\' OR r.reason LIKE {p} ESCAPE '\\'
                  OR EXISTS (SELECT 1 FROM json_each(r.duts_json)
                             WHERE json_extract(value, '$.name') LIKE {p} ESCAPE '\\')
                  OR EXISTS (SELECT 1 FROM task_results t WHERE t.run_id = r.id
                             AND (t.task LIKE {p} ESCAPE '\\' OR t.message LIKE {p} ESCAPE '\\')))"
            ));
        }
        // Its argument comes last: the count, which has no keyset, leaves it out.
        let keyset = match q.keyset_after()? {
            None => None,
            Some(after) => {
                let p = arg(V::Text(after.to_string()));
                let (cmp, cmp_eq) = if q.ascending {
                    (">", ">=")
                } else {
                    ("<", "<=")
                };
                // The first half is a range of the index on creation; the second
                // breaks ties between runs created at one millisecond.
                Some(format!(
                    "(r.created_ms {cmp_eq} (SELECT c.created_ms FROM runs c WHERE c.id = {p})
                      AND (r.created_ms, r.id) {cmp}
                          (SELECT c.created_ms, c.id FROM runs c WHERE c.id = {p}))"
                ))
            }
        };
        let where_sql = if wh.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", wh.join(" AND "))
        };
        let dir = if q.ascending { "ASC" } else { "DESC" };
        let order = match q.sort {
            RunSort::Created => format!("r.created_ms {dir}, r.id {dir}"),
            RunSort::Pack => format!("r.pack_name {dir}, r.created_ms DESC"),
            RunSort::Status => format!("r.status {dir}, r.created_ms DESC"),
            RunSort::Duration => format!(
                "(COALESCE(r.finished_ms, r.started_ms) - r.started_ms) {dir}, r.created_ms DESC"
            ),
            // As `RunCounts::failures` counts them.
            RunSort::Failures => format!("{FAILURES} {dir}, r.created_ms DESC"),
        };
        let result_only = q.result.is_some() && wh.len() == 1;
        let reverse_order = (q.sort == RunSort::Created).then(|| {
            let back = if q.ascending { "DESC" } else { "ASC" };
            format!("r.created_ms {back}, r.id {back}")
        });
        let limit = if q.limit == 0 { 50 } else { q.limit.min(1000) };
        Ok(Self {
            where_sql,
            order,
            reverse_order,
            result_only,
            limit,
            offset: q.offset,
            keyset,
            args,
        })
    }

    /// The arguments of [`Self::count`]: all but the keyset's.
    fn count_args(&self) -> &[rusqlite::types::Value] {
        &self.args[..self.args.len() - usize::from(self.keyset.is_some())]
    }

    /// Whether the page counts the matching runs itself.
    fn windowed(&self) -> bool {
        self.keyset.is_none() && !self.where_sql.is_empty() && !self.result_only
    }

    fn count(&self) -> String {
        if self.result_only {
            return "SELECT count(*) FROM run_result_tallies WHERE result = ?1".into();
        }
        format!("SELECT count(*) FROM runs r {}", self.where_sql)
    }

    /// The page, each row with the number of matching runs after its columns (`NULL`
    /// with a keyset or without filters: the count is then a query of its own).
    fn page(&self) -> String {
        if self.result_only && self.keyset.is_none() {
            // The page walks the runs by the listing's order until it has its runs; the
            // count is a query of its own.
            return format!(
                "SELECT {RUN_COLS}, NULL FROM runs r {} ORDER BY {} LIMIT {} OFFSET {}",
                self.where_sql, self.order, self.limit, self.offset
            );
        }
        if self.where_sql.is_empty() && self.keyset.is_none() {
            // Every run: counting the table beats counting the window.
            return format!(
                "SELECT {RUN_COLS}, NULL FROM runs r ORDER BY {} LIMIT {} OFFSET {}",
                self.order, self.limit, self.offset
            );
        }
        if let Some(keyset) = &self.keyset {
            let where_sql = if self.where_sql.is_empty() {
                format!("WHERE {keyset}")
            } else {
                format!("{} AND {keyset}", self.where_sql)
            };
            return format!(
                "SELECT {RUN_COLS}, NULL FROM runs r {where_sql} ORDER BY {} LIMIT {} OFFSET {}",
                self.order, self.limit, self.offset
            );
        }
        format!(
            "SELECT {RUN_COLS}, p.total FROM (
                SELECT r.id AS id, count(*) OVER () AS total FROM runs r {where_sql}
                ORDER BY {order} LIMIT {limit} OFFSET {offset}) p
             JOIN runs r ON r.id = p.id ORDER BY {order}",
            where_sql = self.where_sql,
            order = self.order,
            limit = self.limit,
            offset = self.offset
        )
    }
}

type JsonResult<T> = std::result::Result<T, serde_json::Error>;

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<JsonResult<RunRecord>> {
    let groups: String = r.get(6)?;
    let duts: String = r.get(7)?;
    let params: String = r.get(9)?;
    let status: String = r.get(12)?;
    let build = || -> JsonResult<RunRecord> {
        Ok(RunRecord {
            launch: NewRun {
                id: r.get(0).unwrap_or_default(),
                pack_name: r.get(1).unwrap_or_default(),
                pack_version: r.get(2).unwrap_or_default(),
                content_hash: r.get(3).unwrap_or_default(),
                pack_dir: r.get(4).unwrap_or_default(),
                snapshot_dir: r.get(5).unwrap_or_default(),
                groups: serde_json::from_str(&groups)?,
                duts: serde_json::from_str(&duts)?,
                ats: r.get(8).unwrap_or_default(),
                params: serde_json::from_str(&params)?,
                resource_mode: r.get(10).unwrap_or_default(),
                coverage_mode: r.get(11).unwrap_or_default(),
                status: RunStatus::parse(&status).unwrap_or(RunStatus::Interrupted),
                reason: r.get(13).unwrap_or_default(),
                created_ms: r.get(14).unwrap_or_default(),
                est_run_time: r.get(17).unwrap_or_default(),
            },
            started_ms: r.get(15).unwrap_or_default(),
            finished_ms: r.get(16).unwrap_or_default(),
            counts: RunCounts {
                total: r.get(18).unwrap_or_default(),
                done: r.get(19).unwrap_or_default(),
                failures: r.get(20).unwrap_or_default(),
                aborted: r.get(21).unwrap_or_default(),
                ..RunCounts::default()
            },
            verdict: None,
        })
    };
    Ok(build())
}

/// Complete the tallies read with each run: the rows an errored run never finished
/// count as failures, the finished rows per result, and the verdict.
fn fill_counts(conn: &Connection, runs: &mut [RunRecord]) -> Result<()> {
    let mut stmt =
        conn.prepare_cached("SELECT result, n FROM run_result_tallies WHERE run_id = ?1")?;
    for run in runs {
        let c = &mut run.counts;
        if run.launch.status == RunStatus::Errored {
            // A row an errored run never finished: its result was lost.
            c.failures += c.total - c.done;
        }
        let rows = stmt.query_map([&run.launch.id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })?;
        for row in rows {
            let (result, n) = row?;
            c.by_result.insert(result, n);
        }
        run.verdict = RunVerdict::of(run.launch.status, c.failures, c.aborted);
    }
    Ok(())
}

/// `text` for a `LIKE … ESCAPE '\'` pattern: its `\`, `%` and `_` taken literally.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
