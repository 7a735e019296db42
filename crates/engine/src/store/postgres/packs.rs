//! The lab's pack library in PostgreSQL, on pooled connections: every server of the
//! database sees the same library.

use std::sync::Arc;

use tokio_postgres::Row;

use super::Core;
use crate::store::packs::{PackStore, PutPack, StoredPack};
use crate::store::Result;

pub struct PgPackStore {
    core: Arc<Core>,
}

impl PgPackStore {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

const COLUMNS: &str = "p.name, p.version, p.content_hash, p.owner, p.private, p.pushed_ms, a.bytes
     FROM library_packs p JOIN pack_archives a ON a.content_hash = p.content_hash";

fn stored(r: &Row) -> StoredPack {
    StoredPack {
        name: r.get(0),
        version: r.get(1),
        content_hash: r.get(2),
        owner: r.get(3),
        private: r.get(4),
        pushed_ms: r.get(5),
        archive_bytes: r.get(6),
    }
}

impl PackStore for PgPackStore {
    fn put_pack(&self, pack: &StoredPack, archive: &[u8]) -> Result<PutPack> {
        self.core.block(self.core.in_tx(async |c| {
            // Two servers pushing one name and version at once take turns here.
            c.execute(
                "SELECT pg_advisory_xact_lock(hashtext('testbay library ' || $1 || '@' || $2))",
                &[&pack.name, &pack.version],
            )
            .await?;
            let select = format!("SELECT {COLUMNS} WHERE p.name = $1 AND p.version = $2");
            if let Some(e) = c
                .query_opt(&select, &[&pack.name, &pack.version])
                .await?
                .as_ref()
                .map(stored)
            {
                return Ok(if e.content_hash == pack.content_hash {
                    PutPack::Unchanged(e)
                } else {
                    PutPack::Conflict(e)
                });
            }
            c.execute(
                "INSERT INTO pack_archives (content_hash, archive, bytes) VALUES ($1, $2, $3)
                 ON CONFLICT (content_hash) DO NOTHING",
                &[&pack.content_hash, &archive, &(archive.len() as i64)],
            )
            .await?;
            c.execute(
                "INSERT INTO library_packs (name, version, content_hash, owner, private, pushed_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &pack.name,
                    &pack.version,
                    &pack.content_hash,
                    &pack.owner,
                    &pack.private,
                    &pack.pushed_ms,
                ],
            )
            .await?;
            let row = c.query_one(&select, &[&pack.name, &pack.version]).await?;
            Ok(PutPack::Added(stored(&row)))
        }))
    }

    fn packs(&self) -> Result<Vec<StoredPack>> {
        self.core.block(self.core.on_conn(async |c| {
            let rows = c
                .query(
                    &format!("SELECT {COLUMNS} ORDER BY p.name, p.pushed_ms DESC, p.version DESC"),
                    &[],
                )
                .await?;
            Ok(rows.iter().map(stored).collect())
        }))
    }

    fn pack_archive(&self, content_hash: &str) -> Result<Option<Vec<u8>>> {
        self.core.block(self.core.on_conn(async |c| {
            let row = c
                .query_opt(
                    "SELECT archive FROM pack_archives WHERE content_hash = $1",
                    &[&content_hash],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        }))
    }

    fn publish_pack(&self, name: &str, version: &str) -> Result<bool> {
        self.core.block(self.core.on_conn(async |c| {
            let n = c
                .execute(
                    "UPDATE library_packs SET private = false WHERE name = $1 AND version = $2",
                    &[&name, &version],
                )
                .await?;
            Ok(n > 0)
        }))
    }
}
