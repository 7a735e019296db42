//! Moving a single seat's history into a lab: every row of every table of a SQLite
//! store (`measurements` and `sub_results`: the rows of its task results'
//! `measurements_json` and `sub_results_json` arrays, as PostgreSQL keeps them) copied
//! into a PostgreSQL one ([`import_sqlite`]), then checked table by table
//! ([`TableCheck`]): the count of rows and a content hash computed the same way on both
//! sides.
//!
//! The hash of a table: each row rendered as text by the PostgreSQL column's type (an
//! integer in decimal, a flag as `0`/`1`, a real as Rust prints an `f64`, NULL as `\N`),
//! its values joined by `\x1f`; the rendered rows sorted (so neither database's order or
//! collation matters) and fed to SHA-256, each followed by `\x1e`.

use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::PgStore;
use crate::store::{Result, SqliteStore, StoreError};

/// The tables copied, parents before children.
pub const TABLES: &[&str] = &[
    "runs",
    "run_result_tallies",
    "task_results",
    "sub_results",
    "task_attempts",
    "sections",
    "measurements",
    "measurement_tallies",
    "baselines",
    "lab",
    "lab_duts",
    "reservations",
    "book_events",
    "reservation_history",
    "book_inbox",
    "webhooks",
    "webhook_deliveries",
    "dut_health",
    "dut_health_history",
    "health_runs",
    "run_queue",
    "schedules",
    "schedule_firings",
    "users",
    "audit",
    "run_keep",
    "pack_archives",
    "library_packs",
];

/// Rows inserted per statement.
const BATCH: usize = 200;

/// One table compared after the copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableCheck {
    pub table: String,
    pub source_rows: u64,
    pub target_rows: u64,
    pub source_sha256: String,
    pub target_sha256: String,
}

impl TableCheck {
    pub fn same(&self) -> bool {
        self.source_rows == self.target_rows && self.source_sha256 == self.target_sha256
    }
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the target already holds rows ({0}); pass --force to replace them")]
    NotEmpty(String),
}

/// PostgreSQL's kind of a column, which decides how its values are read and rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int8,
    Int4,
    Bool,
    Float,
    Text,
    Bytes,
}

/// One value, read from either side.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Int(i64),
    Bool(bool),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Val {
    fn render(&self) -> String {
        match self {
            Val::Null => "\\N".into(),
            Val::Int(i) => i.to_string(),
            Val::Bool(b) => (*b as u8).to_string(),
            Val::Float(f) => format!("{f:?}"),
            Val::Text(s) => s.clone(),
            Val::Bytes(b) => format!("\\x{}", hex::encode(b)),
        }
    }
}

struct Column {
    name: String,
    kind: Kind,
}

/// Columns only a lab has (`table`, `column`): a single seat's store has nothing for
/// them, so they are neither copied nor compared (`runs.server_id`: the lab server
/// executing a run).
const LAB_ONLY: &[(&str, &str)] = &[("runs", "server_id")];

/// The columns of `table` in the PostgreSQL schema, in order, but those of [`LAB_ONLY`].
async fn columns(c: &Client, table: &str) -> Result<Vec<Column>> {
    let rows = c
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await?;
    Ok(rows
        .iter()
        .filter(|r| !LAB_ONLY.contains(&(table, r.get::<_, &str>(0))))
        .map(|r| {
            let ty: &str = r.get(1);
            Column {
                name: r.get(0),
                kind: match ty {
                    "bigint" => Kind::Int8,
                    "integer" => Kind::Int4,
                    "boolean" => Kind::Bool,
                    "double precision" => Kind::Float,
                    "bytea" => Kind::Bytes,
                    _ => Kind::Text,
                },
            }
        })
        .collect())
}

fn sqlite_val(v: rusqlite::types::ValueRef<'_>, kind: Kind) -> Val {
    use rusqlite::types::ValueRef as V;
    match (v, kind) {
        (V::Null, _) => Val::Null,
        (V::Integer(i), Kind::Bool) => Val::Bool(i != 0),
        (V::Integer(i), Kind::Float) => Val::Float(i as f64),
        (V::Integer(i), Kind::Text) => Val::Text(i.to_string()),
        (V::Integer(i), _) => Val::Int(i),
        (V::Real(f), Kind::Int8 | Kind::Int4) => Val::Int(f as i64),
        (V::Real(f), _) => Val::Float(f),
        (V::Text(b), Kind::Bytes) | (V::Blob(b), Kind::Bytes) => Val::Bytes(b.to_vec()),
        (V::Text(t), _) | (V::Blob(t), _) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

/// PostgreSQL's `measurements` rows out of a SQLite store, which keeps a task result's
/// measurements in its row (`task_results.measurements_json`): one row per array
/// element, numbered in (task result, position) order.
const SQLITE_MEASUREMENTS: &str = "(SELECT
        row_number() OVER (ORDER BY t.id, m.key) AS id, t.id AS task_result_id,
        r.pack_name, t.task, COALESCE(m.value ->> 's', '') AS sub_result,
        m.value ->> 'n' AS name, m.value ->> 'v' AS value, m.value ->> 'u' AS units,
        m.value ->> 'lo' AS low, m.value ->> 'hi' AS high, m.value ->> 'c' AS comparison,
        m.value ->> 'p' AS passed
     FROM task_results t JOIN runs r ON r.id = t.run_id JOIN json_each(t.measurements_json) m
     WHERE t.measurements_json IS NOT NULL) measurements";

/// PostgreSQL's `sub_results` rows out of a SQLite store, which keeps a task result's
/// sub-results in its row (`task_results.sub_results_json`, `sqlite::sub_results`): one
/// row per array element, numbered in (task result, position) order; `->>` gives an
/// object's metadata as JSON text and the text kept of metadata that was not JSON as it
/// was, so each reads as it did from the table.
const SQLITE_SUB_RESULTS: &str = "(SELECT
        row_number() OVER (ORDER BY t.id, s.key) AS id, t.id AS task_result_id, s.key AS idx,
        s.value ->> 'n' AS name, COALESCE(s.value ->> 'd', '') AS description,
        s.value ->> 'r' AS result, COALESCE(s.value ->> 'f', 0) AS failure,
        COALESCE(s.value ->> 'm', '') AS message,
        CASE WHEN COALESCE(json_type(s.value, '$.md'), 'null') = 'null' THEN NULL
             ELSE s.value ->> 'md' END AS metadata_json
     FROM task_results t JOIN json_each(t.sub_results_json) s
     WHERE t.sub_results_json IS NOT NULL) sub_results";

/// Where a PostgreSQL table's rows are read in a SQLite store: the table of that name,
/// but for [`SQLITE_MEASUREMENTS`] and [`SQLITE_SUB_RESULTS`].
fn sqlite_source(table: &str) -> &str {
    match table {
        "measurements" => SQLITE_MEASUREMENTS,
        "sub_results" => SQLITE_SUB_RESULTS,
        t => t,
    }
}

fn sqlite_rows(conn: &rusqlite::Connection, table: &str, cols: &[Column]) -> Result<Vec<Vec<Val>>> {
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    let mut stmt = conn.prepare(&format!(
        "SELECT {} FROM {}",
        names.join(", "),
        sqlite_source(table)
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(cols.len());
        for (i, c) in cols.iter().enumerate() {
            row.push(sqlite_val(r.get_ref(i)?, c.kind));
        }
        out.push(row);
    }
    Ok(out)
}

async fn pg_rows(c: &Client, table: &str, cols: &[Column]) -> Result<Vec<Vec<Val>>> {
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    let rows = c
        .query(&format!("SELECT {} FROM {table}", names.join(", ")), &[])
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            cols.iter()
                .enumerate()
                .map(|(i, col)| match col.kind {
                    Kind::Int8 => r.get::<_, Option<i64>>(i).map_or(Val::Null, Val::Int),
                    Kind::Int4 => r
                        .get::<_, Option<i32>>(i)
                        .map_or(Val::Null, |v| Val::Int(v.into())),
                    Kind::Bool => r.get::<_, Option<bool>>(i).map_or(Val::Null, Val::Bool),
                    Kind::Float => r.get::<_, Option<f64>>(i).map_or(Val::Null, Val::Float),
                    Kind::Text => r.get::<_, Option<String>>(i).map_or(Val::Null, Val::Text),
                    Kind::Bytes => r.get::<_, Option<Vec<u8>>>(i).map_or(Val::Null, Val::Bytes),
                })
                .collect()
        })
        .collect())
}

/// (rows, SHA-256) of rendered rows, as the module doc says.
fn digest(rows: &[Vec<Val>]) -> (u64, String) {
    let mut rendered: Vec<String> = rows
        .iter()
        .map(|r| r.iter().map(Val::render).collect::<Vec<_>>().join("\x1f"))
        .collect();
    rendered.sort_unstable();
    let mut h = Sha256::new();
    for r in &rendered {
        h.update(r.as_bytes());
        h.update(b"\x1e");
    }
    (rows.len() as u64, hex::encode(h.finalize()))
}

fn to_sql(v: &Val, kind: Kind) -> Box<dyn ToSql + Sync + Send> {
    match (v, kind) {
        (Val::Null, Kind::Int8) => Box::new(None::<i64>),
        (Val::Null, Kind::Int4) => Box::new(None::<i32>),
        (Val::Null, Kind::Bool) => Box::new(None::<bool>),
        (Val::Null, Kind::Float) => Box::new(None::<f64>),
        (Val::Null, Kind::Text) => Box::new(None::<String>),
        (Val::Null, Kind::Bytes) => Box::new(None::<Vec<u8>>),
        (Val::Bytes(b), _) => Box::new(b.clone()),
        (Val::Int(i), Kind::Int4) => Box::new(i32::try_from(*i).unwrap_or(i32::MAX)),
        (Val::Int(i), _) => Box::new(*i),
        (Val::Bool(b), _) => Box::new(*b),
        (Val::Float(f), _) => Box::new(*f),
        (Val::Text(s), _) => Box::new(s.clone()),
    }
}

async fn insert_rows(c: &Client, table: &str, cols: &[Column], rows: &[Vec<Val>]) -> Result<()> {
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    for chunk in rows.chunks(BATCH) {
        let mut values = Vec::with_capacity(chunk.len());
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        for row in chunk {
            let mut marks = Vec::with_capacity(cols.len());
            for (v, col) in row.iter().zip(cols) {
                params.push(to_sql(v, col.kind));
                marks.push(format!("${}", params.len()));
            }
            values.push(format!("({})", marks.join(", ")));
        }
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        c.execute(
            &format!(
                "INSERT INTO {table} ({}) VALUES {}",
                names.join(", "),
                values.join(", ")
            ),
            &refs,
        )
        .await?;
    }
    // Identity columns go on after the highest id copied.
    if cols.iter().any(|c| c.name == "id" && c.kind == Kind::Int8) {
        c.execute(
            &format!(
                "SELECT setval(seq::regclass, m, true) FROM
                   (SELECT pg_get_serial_sequence('{table}', 'id') AS seq, MAX(id) AS m FROM {table}) x
                 WHERE seq IS NOT NULL AND m IS NOT NULL"
            ),
            &[],
        )
        .await?;
    }
    Ok(())
}

/// Copy every table of the SQLite store at `sqlite_path` into the PostgreSQL database at
/// `pg_url` (both brought to the newest schema first), then compare them. A target that
/// holds rows is refused unless `force`, which empties it first. The copy is one
/// transaction: it lands whole or not at all.
pub fn import_sqlite(
    sqlite_path: &std::path::Path,
    pg_url: &str,
    force: bool,
) -> std::result::Result<Vec<TableCheck>, ImportError> {
    drop(SqliteStore::open(sqlite_path)?);
    let src = rusqlite::Connection::open_with_flags(
        sqlite_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .map_err(StoreError::from)?;
    let target = PgStore::open(pg_url)?;
    let core = &target.core;
    core.block(async {
        let c = core.conn().await?;
        let mut full = Vec::new();
        for t in TABLES {
            let n: i64 = c
                .query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await
                .map_err(StoreError::from)?
                .get(0);
            if n > 0 {
                full.push(format!("{t}: {n}"));
            }
        }
        if !full.is_empty() && !force {
            return Err(ImportError::NotEmpty(full.join(", ")));
        }
        super::tx(&c, async |c| {
            if !full.is_empty() {
                c.batch_execute(&format!("TRUNCATE {} CASCADE", TABLES.join(", ")))
                    .await?;
            }
            // The runs' tallies are copied with them: the trigger that keeps them
            // would count each task result a second time.
            c.batch_execute("ALTER TABLE task_results DISABLE TRIGGER task_results_tally_insert")
                .await?;
            for t in TABLES {
                let cols = columns(c, t).await?;
                let rows = sqlite_rows(&src, t, &cols)?;
                insert_rows(c, t, &cols, &rows).await?;
                tracing::info!(table = t, rows = rows.len(), "copied");
            }
            c.batch_execute("ALTER TABLE task_results ENABLE TRIGGER task_results_tally_insert")
                .await?;
            Ok(())
        })
        .await?;
        let mut checks = Vec::new();
        for t in TABLES {
            let cols = columns(&c, t).await?;
            let (source_rows, source_sha256) = digest(&sqlite_rows(&src, t, &cols)?);
            let (target_rows, target_sha256) = digest(&pg_rows(&c, t, &cols).await?);
            checks.push(TableCheck {
                table: t.to_string(),
                source_rows,
                target_rows,
                source_sha256,
                target_sha256,
            });
        }
        Ok(checks)
    })
}
