//! Users and the audit log in PostgreSQL, on pooled connections.

use std::sync::Arc;

use tokio_postgres::Row;

use super::Core;
use crate::clock::EpochMs;
use crate::store::{
    AccessStore, AuditEntry, AuditQuery, NewAuditEntry, Result, Role, User, MAX_AUDIT_ROWS,
};

pub struct PgAccessStore {
    core: Arc<Core>,
}

impl PgAccessStore {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

const USER_COLUMNS: &str = "id, name, role, created_ms, revoked_ms, token_sha256 FROM users";

fn user(r: &Row) -> User {
    let role: String = r.get(2);
    let hash: String = r.get(5);
    User::from_stored(r.get(0), r.get(1), &role, r.get(3), r.get(4), &hash)
}

impl AccessStore for PgAccessStore {
    fn add_user(
        &self,
        name: &str,
        role: Role,
        token_sha256: &str,
        now: EpochMs,
    ) -> Result<Option<User>> {
        self.core.block(self.core.on_conn(async |c| {
            let row = c
                .query_opt(
                    &format!(
                        "INSERT INTO users (name, role, token_sha256, created_ms) VALUES ($1, $2, $3, $4)
                         ON CONFLICT DO NOTHING RETURNING {}",
                        USER_COLUMNS.trim_end_matches(" FROM users")
                    ),
                    &[&name, &role.as_str(), &token_sha256, &now],
                )
                .await?;
            Ok(row.as_ref().map(user))
        }))
    }

    fn users(&self) -> Result<Vec<User>> {
        self.core.block(self.core.on_conn(async |c| {
            let rows = c
                .query(&format!("SELECT {USER_COLUMNS} ORDER BY id"), &[])
                .await?;
            Ok(rows.iter().map(user).collect())
        }))
    }

    fn user_by_token(&self, token_sha256: &str) -> Result<Option<User>> {
        self.core.block(self.core.on_conn(async |c| {
            let row = c
                .query_opt(
                    &format!("SELECT {USER_COLUMNS} WHERE token_sha256 = $1"),
                    &[&token_sha256],
                )
                .await?;
            Ok(row.as_ref().map(user))
        }))
    }

    fn revoke_user(&self, id: i64, now: EpochMs) -> Result<bool> {
        self.core.block(self.core.on_conn(async |c| {
            let n = c
                .execute(
                    "UPDATE users SET revoked_ms = COALESCE(revoked_ms, $2) WHERE id = $1",
                    &[&id, &now],
                )
                .await?;
            Ok(n > 0)
        }))
    }

    fn set_role(&self, id: i64, role: Role) -> Result<bool> {
        self.core.block(self.core.on_conn(async |c| {
            let n = c
                .execute(
                    "UPDATE users SET role = $2 WHERE id = $1",
                    &[&id, &role.as_str()],
                )
                .await?;
            Ok(n > 0)
        }))
    }

    fn append_audit(&self, e: &NewAuditEntry) -> Result<i64> {
        self.core.block(self.core.on_conn(async |c| {
            let row = c
                .query_one(
                    "INSERT INTO audit (time_ms, user_name, action, target, detail)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&e.time_ms, &e.user, &e.action, &e.target, &e.detail],
                )
                .await?;
            Ok(row.get(0))
        }))
    }

    fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let limit = i64::from(q.limit.unwrap_or(500).clamp(1, MAX_AUDIT_ROWS));
        self.core.block(self.core.on_conn(async |c| {
            let rows = c
                .query(
                    "SELECT id, time_ms, user_name, action, target, detail FROM audit
                     WHERE ($1::BIGINT IS NULL OR time_ms >= $1)
                       AND ($2::TEXT IS NULL OR user_name = $2)
                       AND ($3::TEXT IS NULL OR target = $3)
                     ORDER BY id DESC LIMIT $4",
                    &[&q.since_ms, &q.user, &q.target, &limit],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| AuditEntry {
                    id: r.get(0),
                    time_ms: r.get(1),
                    user: r.get(2),
                    action: r.get(3),
                    target: r.get(4),
                    detail: r.get(5),
                })
                .collect())
        }))
    }
}
