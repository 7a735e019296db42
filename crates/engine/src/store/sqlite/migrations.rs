//! Ordered schema migrations, applied with `PRAGMA user_version`: migration `i` (0-based)
//! moves the database from version `i` to `i + 1`. Never edit or reorder a migration that
//! has shipped; append a new one at the END of [`MIGRATIONS`].

pub use crate::store::Migration;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "runs, task results, sub-results",
        sql: r#"
CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    pack_name       TEXT NOT NULL,
    pack_version    TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    pack_dir        TEXT NOT NULL,
    snapshot_dir    TEXT,
    groups_json     TEXT NOT NULL,
    duts_json       TEXT NOT NULL,
    ats             TEXT,
    params_json     TEXT NOT NULL,
    resource_mode   TEXT NOT NULL,
    coverage_mode   TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT,
    created_ms      INTEGER NOT NULL,
    started_ms      INTEGER,
    finished_ms     INTEGER,
    est_run_time    REAL NOT NULL DEFAULT 0,
    owner_pid       INTEGER,
    owner_start     INTEGER
);
CREATE INDEX runs_created ON runs(created_ms);
CREATE INDEX runs_status ON runs(status);
CREATE INDEX runs_pack ON runs(pack_name);

CREATE TABLE task_results (
    id              INTEGER PRIMARY KEY,
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    lane            TEXT,
    task            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    grp             TEXT,
    description     TEXT NOT NULL DEFAULT '',
    state           TEXT NOT NULL DEFAULT 'pending',
    result          TEXT,
    failure         INTEGER,
    message         TEXT,
    metadata_json   TEXT,
    raw_result      TEXT,
    est_task_time   REAL NOT NULL DEFAULT 0,
    run_time        REAL,
    run_time_delta  REAL,
    started_ms      INTEGER,
    finished_ms     INTEGER,
    setup_ms        INTEGER,
    main_ms         INTEGER,
    teardown_ms     INTEGER,
    exit_code       INTEGER,
    signal          INTEGER,
    phase           TEXT,
    task_dir        TEXT,
    setup_log       TEXT,
    main_log        TEXT,
    teardown_log    TEXT,
    artifacts_dir   TEXT,
    log_truncated   INTEGER NOT NULL DEFAULT 0,
    pgid            INTEGER,
    UNIQUE(run_id, seq)
);
CREATE INDEX task_results_run ON task_results(run_id);
CREATE INDEX task_results_result ON task_results(result);
CREATE INDEX task_results_pgid ON task_results(pgid) WHERE pgid IS NOT NULL;

CREATE TABLE sub_results (
    id              INTEGER PRIMARY KEY,
    task_result_id  INTEGER NOT NULL REFERENCES task_results(id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    result          TEXT NOT NULL,
    failure         INTEGER NOT NULL DEFAULT 0,
    message         TEXT NOT NULL DEFAULT '',
    metadata_json   TEXT
);
CREATE INDEX sub_results_task ON sub_results(task_result_id);
"#,
    },
    Migration {
        name: "lab inventory, reservation book, book events, book inbox",
        sql: r#"
CREATE TABLE lab (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    path            TEXT NOT NULL,
    loaded_ms       INTEGER NOT NULL,
    lab_json        TEXT NOT NULL
);
CREATE TABLE lab_duts (
    name            TEXT PRIMARY KEY,
    rack            TEXT,
    slot            INTEGER,
    model           TEXT NOT NULL DEFAULT '',
    manufacturer    TEXT NOT NULL DEFAULT '',
    serial          TEXT NOT NULL DEFAULT '',
    offline         INTEGER NOT NULL DEFAULT 0,
    dut_json        TEXT NOT NULL
);
CREATE TABLE reservations (
    id              INTEGER PRIMARY KEY,
    resource        TEXT NOT NULL,
    status          TEXT NOT NULL,
    holder          TEXT NOT NULL,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,
    view_json       TEXT NOT NULL
);
CREATE INDEX reservations_resource ON reservations(resource, start_ms);
CREATE TABLE book_events (
    seq             INTEGER PRIMARY KEY,
    ts_ms           INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    reason          TEXT,
    reservation_id  INTEGER NOT NULL,
    resource        TEXT NOT NULL,
    event_json      TEXT NOT NULL
);
CREATE INDEX book_events_resource ON book_events(resource, ts_ms);
CREATE TABLE book_inbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms      INTEGER NOT NULL,
    command_json    TEXT NOT NULL,
    done_ms         INTEGER,
    result_json     TEXT
);
"#,
    },
    Migration {
        name: "compact book events, reservation history",
        sql: r#"
DROP TABLE book_events;
CREATE TABLE book_events (
    seq             INTEGER PRIMARY KEY,
    ts_ms           INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    reason          TEXT,
    reservation_id  INTEGER NOT NULL,
    resource        TEXT NOT NULL,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL
);
CREATE TABLE reservation_history (
    id              INTEGER PRIMARY KEY,
    resource        TEXT NOT NULL,
    holder          TEXT NOT NULL,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    ended_ms        INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    view_json       TEXT NOT NULL
);
CREATE INDEX reservation_history_resource ON reservation_history(resource, start_ms);
"#,
    },
    Migration {
        name: "task results indexed by run and result",
        // `list_runs`' `result=` filter looks up (run, result) pairs: with an index on
        // `result` alone SQLite walked every row of that result for each run (96 s at
        // 10,000 runs). The new index also serves every lookup by run.
        sql: r#"
CREATE INDEX task_results_run_result ON task_results(run_id, result);
DROP INDEX task_results_run;
DROP INDEX task_results_result;
"#,
    },
    Migration {
        name: "task attempts (max_retries) and flaky results",
        sql: r#"
ALTER TABLE task_results ADD COLUMN flaky INTEGER NOT NULL DEFAULT 0;
CREATE TABLE task_attempts (
    id              INTEGER PRIMARY KEY,
    task_result_id  INTEGER NOT NULL REFERENCES task_results(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    result          TEXT NOT NULL,
    failure         INTEGER NOT NULL,
    message         TEXT NOT NULL DEFAULT '',
    started_ms      INTEGER,
    finished_ms     INTEGER NOT NULL,
    exit_code       INTEGER,
    signal          INTEGER,
    task_dir        TEXT,
    setup_log       TEXT,
    main_log        TEXT,
    teardown_log    TEXT,
    artifacts_dir   TEXT
);
CREATE INDEX task_attempts_task ON task_attempts(task_result_id);
"#,
    },
    Migration {
        name: "webhooks and their deliveries",
        sql: r#"
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY,
    url             TEXT NOT NULL,
    events_json     TEXT NOT NULL,
    secret          TEXT,
    enabled         INTEGER NOT NULL DEFAULT 1,
    created_ms      INTEGER NOT NULL
);
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    webhook_id      INTEGER NOT NULL,
    url             TEXT NOT NULL,
    event           TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    http_status     INTEGER,
    error           TEXT,
    finished_ms     INTEGER,
    body            TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, id);
"#,
    },
    Migration {
        name: "DUT health and its history",
        sql: r#"
CREATE TABLE dut_health (
    dut             TEXT PRIMARY KEY,
    health          TEXT NOT NULL,
    since_ms        INTEGER,
    reason          TEXT,
    run_id          TEXT,
    infra_failures  INTEGER NOT NULL DEFAULT 0,
    last_check_ms   INTEGER
);
CREATE TABLE dut_health_history (
    id              INTEGER PRIMARY KEY,
    dut             TEXT NOT NULL,
    ts_ms           INTEGER NOT NULL,
    health          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    run_id          TEXT,
    note            TEXT
);
CREATE INDEX dut_health_history_dut ON dut_health_history(dut, id);
"#,
    },
    Migration {
        name: "the run queue",
        // Runs waiting for their DUTs (`api::queue`): the launch as it will start, so
        // the queue survives a restart.
        sql: r#"
CREATE TABLE run_queue (
    run_id          TEXT PRIMARY KEY,
    pack_name       TEXT NOT NULL,
    priority        TEXT NOT NULL,
    place           INTEGER NOT NULL,
    enqueued_ms     INTEGER NOT NULL,
    max_queue_ms    INTEGER,
    est_ms          INTEGER NOT NULL,
    duts_json       TEXT NOT NULL,
    request_json    TEXT NOT NULL,
    origin          TEXT NOT NULL,
    -- Raised on every write: another process's change shows in (count, max(rev)).
    rev             INTEGER NOT NULL
);
"#,
    },
    Migration {
        name: "stored schedules and their firings",
        // `api::schedules`: each schedule as its owner wrote it, where its calendar
        // stands, and every firing (fired, caught up, skipped) with the run it made.
        sql: r#"
CREATE TABLE schedules (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    def_json        TEXT NOT NULL,
    paused          INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    since_ms        INTEGER NOT NULL,
    fired           INTEGER NOT NULL,
    pending_ms      INTEGER,
    last_run_id     TEXT,
    rev             INTEGER NOT NULL
);
CREATE TABLE schedule_firings (
    id              INTEGER PRIMARY KEY,
    schedule_id     TEXT NOT NULL,
    due_ms          INTEGER,
    at_ms           INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    run_id          TEXT,
    note            TEXT
);
CREATE INDEX schedule_firings_schedule ON schedule_firings(schedule_id, id);
"#,
    },
    Migration {
        name: "measurements, baselines; indexes for a task's history and a pack's recent runs",
        // A measurement keeps its pack and task so one measurement's history is one walk
        // of `measurements_series`; per run and lane, measurements are tallied as they
        // are written (`measurement_tallies`), so yield reads one row per run and DUT; a
        // task's history walks `task_results_task` newest first; a pack's last runs come
        // from `runs_pack_created`, which serves every lookup `runs_pack` did (dropped).
        sql: r#"
CREATE TABLE measurements (
    id              INTEGER PRIMARY KEY,
    task_result_id  INTEGER NOT NULL REFERENCES task_results(id) ON DELETE CASCADE,
    pack_name       TEXT NOT NULL,
    task            TEXT NOT NULL,
    sub_result      TEXT NOT NULL DEFAULT '',
    name            TEXT NOT NULL,
    value           REAL NOT NULL,
    units           TEXT,
    low             REAL,
    high            REAL,
    comparison      TEXT NOT NULL,
    passed          INTEGER
);
CREATE INDEX measurements_task ON measurements(task_result_id);
CREATE INDEX measurements_series ON measurements(pack_name, task, sub_result, name, id);
CREATE INDEX task_results_task ON task_results(task, id);
CREATE INDEX runs_pack_created ON runs(pack_name, created_ms);
DROP INDEX runs_pack;
CREATE TABLE measurement_tallies (
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    lane            TEXT NOT NULL DEFAULT '',
    total           INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    PRIMARY KEY (run_id, lane)
) WITHOUT ROWID;
CREATE TABLE baselines (
    pack_name       TEXT NOT NULL,
    dut_model       TEXT NOT NULL DEFAULT '',
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    pinned_ms       INTEGER NOT NULL,
    PRIMARY KEY (pack_name, dut_model)
);
"#,
    },
    Migration {
        name: "sections tasks reported",
        sql: r#"
CREATE TABLE sections (
    task_result_id  INTEGER NOT NULL REFERENCES task_results(id) ON DELETE CASCADE,
    phase           TEXT NOT NULL,
    section_id      INTEGER NOT NULL,
    parent_id       INTEGER,
    name            TEXT NOT NULL,
    result          TEXT,
    started_ms      INTEGER NOT NULL,
    finished_ms     INTEGER,
    section_json    TEXT NOT NULL,
    PRIMARY KEY (task_result_id, phase, section_id)
);
"#,
    },
    Migration {
        name: "health runs not settled yet (they outlive a console restart)",
        sql: r#"
CREATE TABLE health_runs (
    run_id          TEXT PRIMARY KEY,
    dut             TEXT NOT NULL,
    started_ms      INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    },
    Migration {
        name: "users, their roles and token hashes, and the audit log",
        sql: r#"
CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL,
    token_sha256    TEXT NOT NULL UNIQUE,
    created_ms      INTEGER NOT NULL,
    revoked_ms      INTEGER
);
CREATE TABLE audit (
    id              INTEGER PRIMARY KEY,
    time_ms         INTEGER NOT NULL,
    user_name       TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_time ON audit(time_ms);
CREATE INDEX audit_user ON audit(user_name, id);
CREATE INDEX audit_target ON audit(target, id);
"#,
    },
    Migration {
        name: "runs marked keep (never pruned)",
        sql: r#"
CREATE TABLE run_keep (
    run_id          TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    kept_ms         INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    },
    Migration {
        name: "per-run tallies of task results, kept at write time",
        // `list_runs` filters and sorts on a run's tallies (result, failed only, sort by
        // failures) and shows them on every row: kept by triggers in the transaction of
        // each task result write (insert, finish, abort, delete), so a listing reads one
        // row per run instead of counting its task results. `t_failed` counts finished
        // rows that failed (not aborted), `t_aborted` aborted ones, `t_failure` every
        // row marked failed; `run_result_tallies` the finished rows per result.
        sql: r#"
ALTER TABLE runs ADD COLUMN t_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN t_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN t_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN t_aborted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN t_failure INTEGER NOT NULL DEFAULT 0;
CREATE TABLE run_result_tallies (
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    result          TEXT NOT NULL,
    n               INTEGER NOT NULL,
    PRIMARY KEY (run_id, result)
) WITHOUT ROWID;
UPDATE runs SET
    t_total = (SELECT count(*) FROM task_results t WHERE t.run_id = runs.id),
    t_done = (SELECT count(*) FROM task_results t WHERE t.run_id = runs.id AND t.state = 'done'),
    t_failed = (SELECT count(*) FROM task_results t WHERE t.run_id = runs.id AND t.state = 'done'
                AND t.failure IS 1 AND t.result IS NOT 'Aborted'),
    t_aborted = (SELECT count(*) FROM task_results t WHERE t.run_id = runs.id AND t.state = 'done'
                 AND t.result IS 'Aborted'),
    t_failure = (SELECT count(*) FROM task_results t WHERE t.run_id = runs.id AND t.failure IS 1);
INSERT INTO run_result_tallies (run_id, result, n)
    SELECT run_id, result, count(*) FROM task_results
    WHERE state = 'done' AND result IS NOT NULL GROUP BY run_id, result;
CREATE TRIGGER task_results_tally_insert AFTER INSERT ON task_results BEGIN
    UPDATE runs SET t_total = t_total + 1,
        t_done = t_done + (NEW.state IS 'done'),
        t_failed = t_failed + (NEW.state IS 'done' AND NEW.failure IS 1 AND NEW.result IS NOT 'Aborted'),
        t_aborted = t_aborted + (NEW.state IS 'done' AND NEW.result IS 'Aborted'),
        t_failure = t_failure + (NEW.failure IS 1)
    WHERE id = NEW.run_id;
    INSERT INTO run_result_tallies (run_id, result, n)
        SELECT NEW.run_id, NEW.result, 1 WHERE NEW.state IS 'done' AND NEW.result IS NOT NULL
        ON CONFLICT (run_id, result) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER task_results_tally_update AFTER UPDATE OF state, result, failure ON task_results
WHEN OLD.state IS NOT NEW.state OR OLD.result IS NOT NEW.result OR OLD.failure IS NOT NEW.failure
BEGIN
    UPDATE runs SET
        t_done = t_done + (NEW.state IS 'done') - (OLD.state IS 'done'),
        t_failed = t_failed
            + (NEW.state IS 'done' AND NEW.failure IS 1 AND NEW.result IS NOT 'Aborted')
            - (OLD.state IS 'done' AND OLD.failure IS 1 AND OLD.result IS NOT 'Aborted'),
        t_aborted = t_aborted + (NEW.state IS 'done' AND NEW.result IS 'Aborted')
            - (OLD.state IS 'done' AND OLD.result IS 'Aborted'),
        t_failure = t_failure + (NEW.failure IS 1) - (OLD.failure IS 1)
    WHERE id = NEW.run_id;
    UPDATE run_result_tallies SET n = n - 1
        WHERE OLD.state IS 'done' AND run_id = OLD.run_id AND result = OLD.result;
    DELETE FROM run_result_tallies
        WHERE OLD.state IS 'done' AND run_id = OLD.run_id AND result = OLD.result AND n <= 0;
    INSERT INTO run_result_tallies (run_id, result, n)
        SELECT NEW.run_id, NEW.result, 1 WHERE NEW.state IS 'done' AND NEW.result IS NOT NULL
        ON CONFLICT (run_id, result) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER task_results_tally_delete AFTER DELETE ON task_results BEGIN
    UPDATE runs SET t_total = t_total - 1,
        t_done = t_done - (OLD.state IS 'done'),
        t_failed = t_failed - (OLD.state IS 'done' AND OLD.failure IS 1 AND OLD.result IS NOT 'Aborted'),
        t_aborted = t_aborted - (OLD.state IS 'done' AND OLD.result IS 'Aborted'),
        t_failure = t_failure - (OLD.failure IS 1)
    WHERE id = OLD.run_id;
    UPDATE run_result_tallies SET n = n - 1
        WHERE OLD.state IS 'done' AND run_id = OLD.run_id AND result = OLD.result;
    DELETE FROM run_result_tallies
        WHERE OLD.state IS 'done' AND run_id = OLD.run_id AND result = OLD.result AND n <= 0;
END;
"#,
    },
    Migration {
        name: "the lab's pack library: pushed pack versions and their archives",
        sql: r#"
CREATE TABLE pack_archives (
    content_hash    TEXT PRIMARY KEY,
    archive         BLOB NOT NULL,
    bytes           INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE library_packs (
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    content_hash    TEXT NOT NULL REFERENCES pack_archives(content_hash),
    owner           TEXT NOT NULL,
    private         INTEGER NOT NULL,
    pushed_ms       INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;
CREATE INDEX library_packs_hash ON library_packs(content_hash);
"#,
    },
    Migration {
        name: "runs listed from indexes: by creation with their ids, by failures",
        // The listing orders by (created_ms, id): an index holding both walks a page
        // (and a deep page's offset) without reading a run's row or sorting the ties;
        // `sort=failures` walks an index on the failures as the listing computes them
        // (`runs::FAILURES`, the same expression) instead of sorting every run; `result=`
        // alone counts its runs from the tallies' index on result.
        sql: r#"
CREATE INDEX runs_created_id ON runs(created_ms, id);
DROP INDEX runs_created;
CREATE INDEX runs_failures ON runs(
    (t_failed + CASE WHEN status = 'errored' THEN t_total - t_done ELSE 0 END), created_ms);
CREATE INDEX run_result_tallies_result ON run_result_tallies(result);
"#,
    },
    Migration {
        name: "task paths stored relative to their run's folder",
        // `store::paths`: a run's folder is its snapshot path up to its last `/`
        // (`rtrim` strips every character but `/` from the right); a path under it keeps
        // the part after it, any other path stays as it is.
        sql: r#"
UPDATE task_results SET
    task_dir = CASE WHEN length(task_dir) > length(b.folder) AND substr(task_dir, 1, length(b.folder)) = b.folder
        THEN substr(task_dir, length(b.folder) + 1) ELSE task_dir END,
    setup_log = CASE WHEN length(setup_log) > length(b.folder) AND substr(setup_log, 1, length(b.folder)) = b.folder
        THEN substr(setup_log, length(b.folder) + 1) ELSE setup_log END,
    main_log = CASE WHEN length(main_log) > length(b.folder) AND substr(main_log, 1, length(b.folder)) = b.folder
        THEN substr(main_log, length(b.folder) + 1) ELSE main_log END,
    teardown_log = CASE WHEN length(teardown_log) > length(b.folder) AND substr(teardown_log, 1, length(b.folder)) = b.folder
        THEN substr(teardown_log, length(b.folder) + 1) ELSE teardown_log END,
    artifacts_dir = CASE WHEN length(artifacts_dir) > length(b.folder) AND substr(artifacts_dir, 1, length(b.folder)) = b.folder
        THEN substr(artifacts_dir, length(b.folder) + 1) ELSE artifacts_dir END
FROM (SELECT id AS run_id, rtrim(snapshot_dir, replace(snapshot_dir, '/', '')) AS folder
      FROM runs WHERE snapshot_dir LIKE '/%') b
WHERE b.run_id = task_results.run_id;
UPDATE task_attempts SET
    task_dir = CASE WHEN length(task_dir) > length(b.folder) AND substr(task_dir, 1, length(b.folder)) = b.folder
        THEN substr(task_dir, length(b.folder) + 1) ELSE task_dir END,
    setup_log = CASE WHEN length(setup_log) > length(b.folder) AND substr(setup_log, 1, length(b.folder)) = b.folder
        THEN substr(setup_log, length(b.folder) + 1) ELSE setup_log END,
    main_log = CASE WHEN length(main_log) > length(b.folder) AND substr(main_log, 1, length(b.folder)) = b.folder
        THEN substr(main_log, length(b.folder) + 1) ELSE main_log END,
    teardown_log = CASE WHEN length(teardown_log) > length(b.folder) AND substr(teardown_log, 1, length(b.folder)) = b.folder
        THEN substr(teardown_log, length(b.folder) + 1) ELSE teardown_log END,
    artifacts_dir = CASE WHEN length(artifacts_dir) > length(b.folder) AND substr(artifacts_dir, 1, length(b.folder)) = b.folder
        THEN substr(artifacts_dir, length(b.folder) + 1) ELSE artifacts_dir END
FROM (SELECT t.id AS task_id, rtrim(r.snapshot_dir, replace(r.snapshot_dir, '/', '')) AS folder
      FROM task_results t JOIN runs r ON r.id = t.run_id WHERE r.snapshot_dir LIKE '/%') b
WHERE b.task_id = task_attempts.task_result_id;
"#,
    },
    Migration {
        name: "tally triggers paused by a batch that counts its runs once",
        // `sqlite::tally`: a batch (finished tasks, a run's planned tasks) inserts a row in
        // `tally_paused` inside its transaction, writes its rows without the per-row
        // triggers, counts each run it touched again and deletes the row before it
        // commits; every other write keeps the triggers.
        sql: r#"
CREATE TABLE tally_paused (one INTEGER PRIMARY KEY CHECK (one = 1));
DROP TRIGGER task_results_tally_insert;
DROP TRIGGER task_results_tally_update;
CREATE TRIGGER task_results_tally_insert AFTER INSERT ON task_results
WHEN NOT EXISTS (SELECT 1 FROM tally_paused)
BEGIN
    UPDATE runs SET t_total = t_total + 1,
        t_done = t_done + (NEW.state IS 'done'),
        t_failed = t_failed + (NEW.state IS 'done' AND NEW.failure IS 1 AND NEW.result IS NOT 'Aborted'),
        t_aborted = t_aborted + (NEW.state IS 'done' AND NEW.result IS 'Aborted'),
        t_failure = t_failure + (NEW.failure IS 1)
    WHERE id = NEW.run_id;
    INSERT INTO run_result_tallies (run_id, result, n)
        SELECT NEW.run_id, NEW.result, 1 WHERE NEW.state IS 'done' AND NEW.result IS NOT NULL
        ON CONFLICT (run_id, result) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER task_results_tally_update AFTER UPDATE OF state, result, failure ON task_results
WHEN (OLD.state IS NOT NEW.state OR OLD.result IS NOT NEW.result OR OLD.failure IS NOT NEW.failure)
    AND NOT EXISTS (SELECT 1 FROM tally_paused)
BEGIN
    UPDATE runs SET
        t_done = t_done + (NEW.state IS 'done') - (OLD.state IS 'done'),
        t_failed = t_failed
            + (NEW.state IS 'done' AND NEW.failure IS 1 AND NEW.result IS NOT 'Aborted')
            - (OLD.state IS 'done' AND OLD.failure IS 1 AND OLD.result IS NOT 'Aborted'),
        t_aborted = t_aborted + (NEW.state IS 'done' AND NEW.result IS 'Aborted')
            - (OLD.state IS 'done' AND OLD.result IS 'Aborted'),
        t_failure = t_failure + (NEW.failure IS 1) - (OLD.failure IS 1)
    WHERE id = NEW.run_id;
    UPDATE run_result_tallies SET n = n - 1
        WHERE OLD.state IS 'done' AND run_id = OLD.run_id AND result = OLD.result;
    DELETE FROM run_result_tallies
        WHERE OLD.state IS 'done' AND run_id = OLD.run_id AND result = OLD.result AND n <= 0;
    INSERT INTO run_result_tallies (run_id, result, n)
        SELECT NEW.run_id, NEW.result, 1 WHERE NEW.state IS 'done' AND NEW.result IS NOT NULL
        ON CONFLICT (run_id, result) DO UPDATE SET n = n + 1;
END;
"#,
    },
    Migration {
        name: "task results' index on (run, result) dropped; failed runs indexed by pack",
        // `task_results_run_result` served lookups by run, which the key (run_id, seq)
        // serves as well, and the `result=` filter, which reads the tallies now: every
        // task result paid two writes of it (an entry at its insert, moved at its
        // finish) for no reader. `failed_only` (`runs::ListSql`, the same condition
        // word for word) walks the failed runs of a pack, not every run of it.
        sql: r#"
DROP INDEX task_results_run_result;
CREATE INDEX runs_failed ON runs(pack_name, created_ms) WHERE status = 'errored' OR t_failure > 0;
"#,
    },
    Migration {
        name: "measurements kept with their task result (measurements_json); table measurements dropped",
        // Per task result one JSON array of its measurements in the order written, each
        // `{"s": sub-result (omitted for the task's own), "n": name, "v": value, "u": units,
        // "lo": low, "hi": high, "c": comparison, "p": passed}`, nulls omitted
        // (`json_patch` onto `{}` drops them); numbers through `quote`, which keeps every
        // digit a real has (`json_object` alone keeps 15): a finished task is one row write, not one
        // row and two index entries per measurement. A measurement's history walks
        // `task_results_task` as a task's history does; `measurement_tallies` stays.
        sql: r#"
ALTER TABLE task_results ADD COLUMN measurements_json TEXT;
UPDATE task_results SET measurements_json = g.j
FROM (SELECT task_result_id,
             json_group_array(json(json_patch('{}', json_object(
                 's', NULLIF(sub_result, ''), 'n', name, 'v', json(quote(value)), 'u', units,
                 'lo', CASE WHEN low IS NULL THEN NULL ELSE json(quote(low)) END,
                 'hi', CASE WHEN high IS NULL THEN NULL ELSE json(quote(high)) END,
                 'c', comparison,
                 'p', json(CASE WHEN passed IS NULL THEN NULL WHEN passed = 0 THEN 'false' ELSE 'true' END))))
                 ORDER BY id) AS j
      FROM measurements GROUP BY task_result_id) g
WHERE g.task_result_id = task_results.id;
DROP TABLE measurements;
"#,
    },
    Migration {
        name: "task results indexed by task in two parts: finished, and not yet finished",
        // `task_results_task` (task, id) took an entry for every planned row at a run's
        // insert, one in a different leaf page per task of the run (the task name leads
        // the key): a run's insert wrote a page of a million-entry index per task. The
        // finished rows now have that index (an entry made at the finish, which commits
        // in groups), the others a small one of their own (`task_results_task_open`, a
        // few pages however long the history); `history::TASK_HISTORY` and
        // `MEASUREMENT_HISTORY` merge the two, newest first.
        sql: r#"
DROP INDEX task_results_task;
CREATE INDEX task_results_task ON task_results(task, id) WHERE state = 'done';
CREATE INDEX task_results_task_open ON task_results(task, id) WHERE state <> 'done';
"#,
    },
    Migration {
        name: "sub-results kept with their task result (sub_results_json); table sub_results dropped",
        // `sqlite::sub_results`: per task result one JSON array of its sub-results in
        // their order; moved rows carry every key (`f` as true/false, `md` the metadata as
        // JSON, or as a string where it was not JSON). `json_object`'s own nulls are kept,
        // not patched away, so a null inside a sub-result's metadata stays.
        sql: r#"
ALTER TABLE task_results ADD COLUMN sub_results_json TEXT;
UPDATE task_results SET sub_results_json = g.j
FROM (SELECT task_result_id,
             json_group_array(json_object(
                 'n', name, 'd', description, 'r', result,
                 'f', json(CASE WHEN failure THEN 'true' ELSE 'false' END), 'm', message,
                 'md', CASE WHEN metadata_json IS NULL THEN NULL
                            WHEN json_valid(metadata_json) THEN json(metadata_json)
                            ELSE metadata_json END)
                 ORDER BY idx, id) AS j
      FROM sub_results GROUP BY task_result_id) g
WHERE g.task_result_id = task_results.id;
DROP TABLE sub_results;
"#,
    },
    Migration {
        name: "failed runs of a pack indexed with their ids and DUT lists",
        // A pack's failed runs filtered by DUT (`runs::ListSql`: `instr` then `json_each`
        // on `duts_json`) read each run's row only to look at its DUT list: a thousand
        // table lookups for the few runs of one DUT. With the id and the list in the
        // partial index the filter (and the listing's count and order) is answered from
        // the index, and only the runs that pass are read.
        sql: r#"
DROP INDEX runs_failed;
CREATE INDEX runs_failed ON runs(pack_name, created_ms, id, duts_json)
    WHERE status = 'errored' OR t_failure > 0;
"#,
    },
];
