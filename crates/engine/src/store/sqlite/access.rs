//! Users and the audit log in SQLite, on a connection of their own.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::EpochMs;
use crate::store::{
    AccessStore, AuditEntry, AuditQuery, NewAuditEntry, Result, Role, StoreError, User,
    MAX_AUDIT_ROWS,
};

pub struct SqliteAccessStore {
    conn: Connection,
}

impl SqliteAccessStore {
    /// Open the users' and audit tables in the database at `db_path` (already migrated).
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
        Ok(Self { conn })
    }
}

const USER_COLUMNS: &str = "id, name, role, created_ms, revoked_ms, token_sha256 FROM users";

fn user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    let hash: String = r.get(5)?;
    Ok(User::from_stored(
        r.get(0)?,
        r.get(1)?,
        &role,
        r.get(3)?,
        r.get(4)?,
        &hash,
    ))
}

impl AccessStore for SqliteAccessStore {
    fn add_user(
        &self,
        name: &str,
        role: Role,
        token_sha256: &str,
        now: EpochMs,
    ) -> Result<Option<User>> {
        let added = self.conn.execute(
            "INSERT OR IGNORE INTO users (name, role, token_sha256, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), token_sha256, now],
        )?;
        if added == 0 {
            return Ok(None);
        }
        let id = self.conn.last_insert_rowid();
        Ok(self
            .conn
            .query_row(&format!("SELECT {USER_COLUMNS} WHERE id = ?1"), [id], user)
            .optional()?)
    }

    fn users(&self) -> Result<Vec<User>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {USER_COLUMNS} ORDER BY id"))?;
        let rows = stmt.query_map([], user)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn user_by_token(&self, token_sha256: &str) -> Result<Option<User>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {USER_COLUMNS} WHERE token_sha256 = ?1"))?;
        Ok(stmt.query_row([token_sha256], user).optional()?)
    }

    fn revoke_user(&self, id: i64, now: EpochMs) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE users SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1",
            params![id, now],
        )?;
        Ok(n > 0)
    }

    fn set_role(&self, id: i64, role: Role) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE users SET role = ?2 WHERE id = ?1",
            params![id, role.as_str()],
        )?;
        Ok(n > 0)
    }

    fn append_audit(&self, e: &NewAuditEntry) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO audit (time_ms, user_name, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.time_ms, e.user, e.action, e.target, e.detail],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let limit = q.limit.unwrap_or(500).clamp(1, MAX_AUDIT_ROWS);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, time_ms, user_name, action, target, detail FROM audit
             WHERE (?1 IS NULL OR time_ms >= ?1) AND (?2 IS NULL OR user_name = ?2)
               AND (?3 IS NULL OR target = ?3)
             ORDER BY id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![q.since_ms, q.user, q.target, limit], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                time_ms: r.get(1)?,
                user: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
