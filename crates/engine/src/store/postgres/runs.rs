//! Runs in PostgreSQL: inserting a run with its planned tasks, its status, one run and
//! the listing (filters, sort, page, search), and recovery of runs whose console died.
//! The queries are the SQLite store's, in PostgreSQL's dialect: JSON columns read with
//! `jsonb` functions, text compared and sorted bytewise (`COLLATE "C"`) and searched
//! without case (`ILIKE`), as SQLite does.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use super::{big, small};
use crate::clock::EpochMs;
use crate::outcome::{RunStatus, RunVerdict, ABORTED};
use crate::store::{
    NewRun, NewTaskRow, RecoveryReport, Result, RunCounts, RunOwner, RunPage, RunQuery, RunRecord,
    RunSort, StoreError, MAX_SEARCH_CHARS,
};

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

/// Insert a run and its planned task occurrences (inside the caller's transaction),
/// owned by `owner`; the row id of each occurrence, in the order given.
pub(super) async fn insert(
    c: &Client,
    run: &NewRun,
    tasks: &[NewTaskRow],
    owner: RunOwner,
    server: Option<&str>,
) -> Result<Vec<i64>> {
    c.execute(
        "INSERT INTO runs (id, pack_name, pack_version, content_hash, pack_dir, snapshot_dir,
            groups_json, duts_json, ats, params_json, resource_mode, coverage_mode, status,
            reason, created_ms, est_run_time, owner_pid, owner_start, server_id)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)",
        &[
            &run.id,
            &run.pack_name,
            &run.pack_version,
            &run.content_hash,
            &run.pack_dir,
            &run.snapshot_dir,
            &to_json(&run.groups),
            &to_json(&run.duts),
            &run.ats,
            &run.params.to_string(),
            &run.resource_mode,
            &run.coverage_mode,
            &run.status.as_str(),
            &run.reason,
            &run.created_ms,
            &run.est_run_time,
            &owner.pid,
            &owner.start,
            &server,
        ],
    )
    .await?;
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    // One statement for every row: the ids come back in the order of `ord`.
    let seqs: Vec<i64> = tasks.iter().map(|t| big(t.seq)).collect();
    let lanes: Vec<Option<&str>> = tasks.iter().map(|t| t.lane.as_deref()).collect();
    let names: Vec<&str> = tasks.iter().map(|t| t.task.as_str()).collect();
    let kinds: Vec<&str> = tasks.iter().map(|t| t.kind.as_str()).collect();
    let groups: Vec<Option<&str>> = tasks.iter().map(|t| t.group.as_deref()).collect();
    let descs: Vec<&str> = tasks.iter().map(|t| t.description.as_str()).collect();
    let ests: Vec<f64> = tasks.iter().map(|t| t.est_task_time).collect();
    let rows = c
        .query(
            "INSERT INTO task_results (run_id, seq, lane, task, kind, grp, description, est_task_time)
             SELECT $1, u.seq, u.lane, u.task, u.kind, u.grp, u.description, u.est
             FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::float8[]) WITH ORDINALITY
                  AS u(seq, lane, task, kind, grp, description, est, ord)
             ORDER BY u.ord
             RETURNING id, seq",
            &[&run.id, &seqs, &lanes, &names, &kinds, &groups, &descs, &ests],
        )
        .await?;
    let by_seq: std::collections::HashMap<i64, i64> =
        rows.iter().map(|r| (r.get(1), r.get(0))).collect();
    Ok(seqs.iter().map(|s| by_seq[s]).collect())
}

pub(super) async fn set_status(
    c: &Client,
    id: &str,
    status: RunStatus,
    reason: Option<&str>,
    now: EpochMs,
) -> Result<()> {
    let n = c
        .execute(
            "UPDATE runs SET status = $2,
                reason = CASE WHEN $2 = 'running' THEN $3 ELSE COALESCE($3, reason) END,
                started_ms = CASE WHEN $2 = 'running' AND started_ms IS NULL THEN $4 ELSE started_ms END,
                finished_ms = CASE WHEN $5 THEN $4 ELSE finished_ms END
             WHERE id = $1",
            &[&id, &status.as_str(), &reason, &now, &status.is_finished()],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::RunNotFound(id.into()));
    }
    Ok(())
}

pub(super) async fn get(c: &Client, id: &str) -> Result<RunRecord> {
    let row = c
        .query_opt(
            &format!("SELECT {RUN_COLS} FROM runs r WHERE r.id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| StoreError::RunNotFound(id.into()))?;
    let mut runs = vec![run_from_row(&row)?];
    fill_counts(c, &mut runs).await?;
    Ok(runs.pop().expect("one run"))
}

/// One listing: the page and the number of matching runs in one query (`count(*) OVER
/// ()` over the matching ids and sort keys only, the page's rows joined after); a page
/// past the end, a page after a run (keyset) and the unfiltered listing (where counting
/// the table is cheaper) count in a query of their own.
pub(super) async fn list(c: &Client, sql: &ListSql) -> Result<RunPage> {
    let args = sql.args();
    let rows = c.query(&sql.page(), &args).await?;
    let mut runs = Vec::with_capacity(rows.len());
    for r in &rows {
        runs.push(run_from_row(r)?);
    }
    let total: i64 = match rows.first().and_then(|r| r.get(RUN_COL_COUNT)) {
        Some(n) => n,
        None if sql.offset == 0 && sql.windowed() => 0,
        None => {
            let count_args = &args[..args.len() - usize::from(sql.keyset.is_some())];
            c.query_one(&sql.count(), count_args).await?.get(0)
        }
    };
    fill_counts(c, &mut runs).await?;
    Ok(RunPage {
        total: small(total),
        runs,
    })
}

/// Whether the unfinished run in `row` (`id, owner_pid, owner_start, server_id, alive`,
/// see [`UNFINISHED`]) still has its console: a server's lease that runs, or, for a run
/// stored without a server, a live process.
pub(super) fn has_console(row: &tokio_postgres::Row) -> bool {
    match row.get::<_, Option<String>>(3) {
        Some(_) => row.get(4),
        None => RunOwner::alive(row.get(1), row.get(2)),
    }
}

/// Unfinished runs with what [`has_console`] judges by, oldest first.
pub(super) fn unfinished_sql() -> String {
    format!(
        "SELECT r.id, r.owner_pid, r.owner_start, r.server_id, {} FROM runs r
         WHERE r.status IN ('queued', 'running', 'stalled') ORDER BY r.created_ms",
        super::servers::SERVER_ALIVE
    )
}

/// Runs left queued, running or stalled by a console that is no longer alive (a server
/// whose lease lapsed, or a process that exited), oldest first.
/// `me` is this store's server: its own runs are never among them, even when its lease
/// lapsed while the database was out of reach (it still executes them).
pub(super) async fn interrupted(c: &Client, me: Option<&str>) -> Result<Vec<String>> {
    let rows = c.query(&unfinished_sql(), &[]).await?;
    Ok(rows
        .iter()
        .filter(|r| me.is_none() || r.get::<_, Option<&str>>(3) != me)
        .filter(|r| !has_console(r))
        .map(|r| r.get(0))
        .collect())
}

/// Mark `run_ids` interrupted and their unfinished tasks `Aborted`, one transaction per
/// run; a run no longer queued, running or stalled is left alone.
pub(super) async fn mark_interrupted(
    c: &Client,
    run_ids: &[String],
    now: EpochMs,
) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    for run_id in run_ids {
        let aborted = super::tx(c, async |c| {
            let marked = c
                .execute(
                    &format!(
                        "UPDATE runs r SET status = 'interrupted',
                        reason = CASE WHEN server_id IS NOT NULL
                            THEN 'server ' || server_id || ' stopped answering'
                            ELSE 'the console running it exited' || CASE WHEN owner_pid IS NULL THEN '' ELSE ' (pid ' || owner_pid || ')' END END,
                        finished_ms = $2
                     WHERE id = $1 AND status IN ('queued', 'running', 'stalled')
                        AND NOT (server_id IS NOT NULL AND {})",
                        super::servers::SERVER_ALIVE
                    ),
                    &[run_id, &now],
                )
                .await?;
            if marked == 0 {
                return Ok(None);
            }
            let aborted = c
                .execute(
                    "UPDATE task_results SET state = 'done', result = $2, failure = TRUE,
                        message = CASE WHEN state = 'running'
                            THEN 'the console exited while this task was running'
                            ELSE 'the console exited before this task ran' END,
                        finished_ms = $3, pgid = NULL, phase = NULL
                     WHERE run_id = $1 AND state != 'done'",
                    &[run_id, &ABORTED, &now],
                )
                .await?;
            Ok(Some(aborted))
        })
        .await?;
        let Some(aborted) = aborted else {
            continue;
        };
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

/// One argument of a listing.
enum Arg {
    Text(String),
    Int(i64),
}

/// The SQL of one listing: its filters, order and page.
pub(super) struct ListSql {
    where_sql: String,
    order: String,
    limit: u32,
    offset: u32,
    /// The keyset condition of `after`, if any: on the page, not on the count.
    keyset: Option<String>,
    args: Vec<Arg>,
}

/// The DUT names of run `r`.
const DUT_NAMES: &str = "jsonb_array_elements(r.duts_json::jsonb) d";

impl ListSql {
    pub(super) fn new(q: &RunQuery) -> Result<Self> {
        let mut wh: Vec<String> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        let mut arg = |v: Arg| {
            let cast = match v {
                Arg::Text(_) => "text",
                Arg::Int(_) => "bigint",
            };
            args.push(v);
            format!("${}::{cast}", args.len())
        };
        if let Some(p) = &q.pack {
            wh.push(format!("r.pack_name = {}", arg(Arg::Text(p.clone()))));
        }
        if let Some(g) = &q.group {
            wh.push(format!(
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text(r.groups_json::jsonb) g WHERE g = {})",
                arg(Arg::Text(g.clone()))
            ));
        }
        if let Some(d) = &q.dut {
            if d.contains('*') {
                let pat = like_escape(d).replace('*', "%");
                wh.push(format!(
                    "EXISTS (SELECT 1 FROM {DUT_NAMES} WHERE d->>'name' ILIKE {} ESCAPE '\\')",
                    arg(Arg::Text(pat))
                ));
            } else {
                wh.push(format!(
                    "EXISTS (SELECT 1 FROM {DUT_NAMES} WHERE d->>'name' = {})",
                    arg(Arg::Text(d.clone()))
                ));
            }
        }
        if let Some(a) = &q.ats {
            wh.push(format!("r.ats = {}", arg(Arg::Text(a.clone()))));
        }
        if let Some(s) = q.status {
            wh.push(format!("r.status = {}", arg(Arg::Text(s.as_str().into()))));
        }
        if let Some(res) = &q.result {
            wh.push(format!(
                "EXISTS (SELECT 1 FROM run_result_tallies x WHERE x.run_id = r.id
                         AND x.result = {} AND x.n > 0)",
                arg(Arg::Text(res.clone()))
            ));
        }
        if q.failed_only {
            wh.push("(r.status = 'errored' OR r.t_failure > 0)".into());
        }
        if let Some(f) = q.from_ms {
            wh.push(format!("r.created_ms >= {}", arg(Arg::Int(f))));
        }
        if let Some(t) = q.to_ms {
            wh.push(format!("r.created_ms <= {}", arg(Arg::Int(t))));
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
            let p = arg(Arg::Text(pat));
            wh.push(format!(
                "(r.id ILIKE {p} ESCAPE '\\' OR r.pack_name ILIKE {p} ESCAPE '\\' OR r.reason ILIKE {p} ESCAPE '\\'
                  OR EXISTS (SELECT 1 FROM {DUT_NAMES} WHERE d->>'name' ILIKE {p} ESCAPE '\\')
                  OR EXISTS (SELECT 1 FROM task_results t WHERE t.run_id = r.id
                             AND (t.task ILIKE {p} ESCAPE '\\' OR t.message ILIKE {p} ESCAPE '\\')))"
            ));
        }
        // Its argument comes last: the count, which has no keyset, leaves it out.
        let keyset = match q.keyset_after()? {
            None => None,
            Some(after) => {
                let p = arg(Arg::Text(after.to_string()));
                let (cmp, cmp_eq) = if q.ascending {
                    (">", ">=")
                } else {
                    ("<", "<=")
                };
                // The first half is a range of the index on creation; the second
                // breaks ties between runs created at one millisecond.
                Some(format!(
                    "(r.created_ms {cmp_eq} (SELECT c.created_ms FROM runs c WHERE c.id = {p})
                      AND (r.created_ms, r.id COLLATE \"C\") {cmp}
                          (SELECT c.created_ms, c.id COLLATE \"C\" FROM runs c WHERE c.id = {p}))"
                ))
            }
        };
        let where_sql = if wh.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", wh.join(" AND "))
        };
        // NULLs sort as SQLite sorts them: lowest.
        let (dir, nulls) = if q.ascending {
            ("ASC", "NULLS FIRST")
        } else {
            ("DESC", "NULLS LAST")
        };
        let order = match q.sort {
            RunSort::Created => format!("r.created_ms {dir}, r.id COLLATE \"C\" {dir}"),
            RunSort::Pack => format!("r.pack_name COLLATE \"C\" {dir}, r.created_ms DESC"),
            RunSort::Status => format!("r.status COLLATE \"C\" {dir}, r.created_ms DESC"),
            RunSort::Duration => format!(
                "(COALESCE(r.finished_ms, r.started_ms) - r.started_ms) {dir} {nulls}, r.created_ms DESC"
            ),
            // As `RunCounts::failures` counts them.
            RunSort::Failures => format!("{FAILURES} {dir}, r.created_ms DESC"),
        };
        let limit = if q.limit == 0 { 50 } else { q.limit.min(1000) };
        Ok(Self {
            where_sql,
            order,
            limit,
            offset: q.offset,
            keyset,
            args,
        })
    }

    fn args(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args
            .iter()
            .map(|a| match a {
                Arg::Text(s) => s as &(dyn ToSql + Sync),
                Arg::Int(i) => i as &(dyn ToSql + Sync),
            })
            .collect()
    }

    /// Whether the page counts the matching runs itself.
    fn windowed(&self) -> bool {
        self.keyset.is_none() && !self.where_sql.is_empty()
    }

    fn count(&self) -> String {
        format!("SELECT count(*) FROM runs r {}", self.where_sql)
    }

    /// The page, each row with the number of matching runs after its columns (`NULL`
    /// with a keyset or without filters: the count is then a query of its own).
    fn page(&self) -> String {
        if self.where_sql.is_empty() && self.keyset.is_none() {
            // Every run: counting the table beats counting the window.
            return format!(
                "SELECT {RUN_COLS}, NULL::bigint FROM runs r ORDER BY {} LIMIT {} OFFSET {}",
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
                "SELECT {RUN_COLS}, NULL::bigint FROM runs r {where_sql} ORDER BY {} LIMIT {} OFFSET {}",
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

fn run_from_row(r: &Row) -> Result<RunRecord> {
    let json = |i: usize| -> Result<serde_json::Value> {
        serde_json::from_str(r.get::<_, &str>(i)).map_err(|source| StoreError::Json {
            what: "runs",
            source,
        })
    };
    let jerr = |source| StoreError::Json {
        what: "runs",
        source,
    };
    let status: &str = r.get(12);
    Ok(RunRecord {
        launch: NewRun {
            id: r.get(0),
            pack_name: r.get(1),
            pack_version: r.get(2),
            content_hash: r.get(3),
            pack_dir: r.get(4),
            snapshot_dir: r.get(5),
            groups: serde_json::from_value(json(6)?).map_err(jerr)?,
            duts: serde_json::from_value(json(7)?).map_err(jerr)?,
            ats: r.get(8),
            params: json(9)?,
            resource_mode: r.get(10),
            coverage_mode: r.get(11),
            status: RunStatus::parse(status).unwrap_or(RunStatus::Interrupted),
            reason: r.get(13),
            created_ms: r.get(14),
            est_run_time: r.get(17),
        },
        started_ms: r.get(15),
        finished_ms: r.get(16),
        counts: RunCounts {
            total: small(r.get(18)),
            done: small(r.get(19)),
            failures: small(r.get(20)),
            aborted: small(r.get(21)),
            ..RunCounts::default()
        },
        verdict: None,
    })
}

/// Complete the tallies read with each run: the rows an errored run never finished
/// count as failures, the finished rows per result, and the verdict.
async fn fill_counts(c: &Client, runs: &mut [RunRecord]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let rows = c
        .query(
            "SELECT run_id, result, n FROM run_result_tallies
             WHERE run_id = ANY($1) AND n > 0",
            &[&ids],
        )
        .await?;
    let mut by_run: std::collections::HashMap<&str, Vec<&Row>> = Default::default();
    for r in &rows {
        by_run.entry(r.get(0)).or_default().push(r);
    }
    for run in runs.iter_mut() {
        let results = by_run.remove(run.launch.id.as_str()).unwrap_or_default();
        let c = &mut run.counts;
        if run.launch.status == RunStatus::Errored {
            // A row an errored run never finished: its result was lost.
            c.failures += c.total - c.done;
        }
        for r in results {
            c.by_result.insert(r.get(1), small(r.get(2)));
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
