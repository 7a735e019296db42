//! The lab's pack library in SQLite, on a connection of its own.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::store::packs::{PackStore, PutPack, StoredPack};
use crate::store::{Result, StoreError};

pub struct SqlitePackStore {
    conn: std::sync::Mutex<Connection>,
}

impl SqlitePackStore {
    /// Open the library's tables in the database at `db_path` (already migrated).
    pub fn open(db_path: &Path) -> Result<Self> {
        let open_err = |source: rusqlite::Error| StoreError::Open {
            path: db_path.to_path_buf(),
            source: source.into(),
        };
        let conn = Connection::open(db_path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(open_err)?;
        Ok(Self {
            conn: std::sync::Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const COLUMNS: &str = "p.name, p.version, p.content_hash, p.owner, p.private, p.pushed_ms, a.bytes
     FROM library_packs p JOIN pack_archives a ON a.content_hash = p.content_hash";

fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredPack> {
    Ok(StoredPack {
        name: r.get(0)?,
        version: r.get(1)?,
        content_hash: r.get(2)?,
        owner: r.get(3)?,
        private: r.get(4)?,
        pushed_ms: r.get(5)?,
        archive_bytes: r.get(6)?,
    })
}

impl PackStore for SqlitePackStore {
    fn put_pack(&self, pack: &StoredPack, archive: &[u8]) -> Result<PutPack> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing = tx
            .query_row(
                &format!("SELECT {COLUMNS} WHERE p.name = ?1 AND p.version = ?2"),
                params![pack.name, pack.version],
                stored,
            )
            .optional()?;
        if let Some(e) = existing {
            return Ok(if e.content_hash == pack.content_hash {
                PutPack::Unchanged(e)
            } else {
                PutPack::Conflict(e)
            });
        }
        tx.execute(
            "INSERT OR IGNORE INTO pack_archives (content_hash, archive, bytes) VALUES (?1, ?2, ?3)",
            params![pack.content_hash, archive, archive.len() as i64],
        )?;
        tx.execute(
            "INSERT INTO library_packs (name, version, content_hash, owner, private, pushed_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                pack.name,
                pack.version,
                pack.content_hash,
                pack.owner,
                pack.private,
                pack.pushed_ms
            ],
        )?;
        let added = tx.query_row(
            &format!("SELECT {COLUMNS} WHERE p.name = ?1 AND p.version = ?2"),
            params![pack.name, pack.version],
            stored,
        )?;
        tx.commit()?;
        Ok(PutPack::Added(added))
    }

    fn packs(&self) -> Result<Vec<StoredPack>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} ORDER BY p.name, p.pushed_ms DESC, p.version DESC"
        ))?;
        let rows = stmt.query_map([], stored)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn pack_archive(&self, content_hash: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT archive FROM pack_archives WHERE content_hash = ?1",
                [content_hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn publish_pack(&self, name: &str, version: &str) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE library_packs SET private = 0 WHERE name = ?1 AND version = ?2",
            params![name, version],
        )?;
        Ok(n > 0)
    }
}
