//! The lab's book in PostgreSQL: one reservation book that several servers share, kept
//! right by the database itself rather than by one owner process.
//!
//! - **Exclusive resources** (every DUT) cannot be double-booked because the exclusion
//!   constraint `lab_no_double_booking` (`btree_gist`: resource `=`, `tstzrange` `&&`)
//!   says so. A writer checks first and books; if another server booked the same window
//!   meanwhile, the constraint refuses the insert (SQLSTATE 23P01) and the writer tries
//!   again from the start, or answers [`LabError::Conflict`].
//! - **Shared resources** are booked under a row lock on the resource (`SELECT ... FOR
//!   UPDATE`), the overlapping units summed in the same transaction.
//! - **Leases expire by the database's clock**: a reservation is live while its deadline
//!   is after `now()` (see [`schema`]), so a dead server's claims stop counting at their
//!   lease's end with nobody deleting them; the next writer on the resource records them
//!   as `expired`. `renew` moves `lease_until`, `release` ends the range.
//! - **The run queue** ([`queue`]) is taken with `FOR UPDATE SKIP LOCKED`, so two servers
//!   never start the same queued run.
//! - **Every change is told** on channel `testbay_book` by a trigger; [`BookListener`]
//!   hears them on a connection of its own.
//!
//! The calls mirror `testbay_core::reserve::Book` (kissats' ATS client) where they fit:
//! `request` (a pre-reservation for the earliest window), `claim` (on time, late, or
//! rebooked), `renew`, `extend`, `release`, operator holds (`hold`, claimed from their
//! window's start). Not carried over: holds booked later than asked are not moved up when
//! time frees, and resources carry no configuration.
//!
//! Files: `schema` (the DDL as migration steps), `error` (`LabError`, stable codes),
//! `slots` (the earliest free window, pure), `lifecycle` (request, claim, renew, extend,
//! release, hold), `queries` (live reservations, history, sweep, the audit the tests and
//! the benchmark run), `queue` (the shared run queue), `listen` (notifications),
//! `fence` ([`LabFence`]: this book as the fence under a console's in-memory book, see
//! `reserve::fence`).

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

mod error;
mod fence;
mod lifecycle;
mod listen;
mod queries;
mod queue;
pub mod schema;
mod slots;

pub use error::{LabError, LabResult, EXCLUSION_VIOLATION};
pub use fence::LabFence;
pub use listen::{BookListener, BookNotice, CHANNEL};
pub use queries::{BookAudit, LabReservation, LabState};
pub use queue::QueuedRun;
pub use schema::SCHEMA;

use crate::clock::EpochMs;
use crate::reserve::{ResourceKind, ResourceSpec};

/// Tunables of the lab book (the same meaning as `testbay_core::reserve::BookConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabBookConfig {
    /// How long after its window's start a pre-reservation may be claimed.
    pub claim_grace_ms: i64,
    /// A claim this soon after its window's start gets the window as booked.
    pub on_time_ms: i64,
    /// How long a lapsed pre-reservation may still be claimed (and is then booked anew).
    pub lapsed_memory_ms: i64,
    /// Connections in this server's pool.
    pub pool_size: usize,
}

impl Default for LabBookConfig {
    fn default() -> Self {
        Self {
            claim_grace_ms: 60_000,
            on_time_ms: 1_000,
            lapsed_memory_ms: 3_600_000,
            pool_size: 16,
        }
    }
}

/// How many times a write that lost a race (another server booked the same window in
/// between) is tried again from the start.
const MAX_TRIES: usize = 8;

/// One server's handle on the lab book. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct LabBook {
    pool: Pool,
    server: Arc<str>,
    url: Arc<str>,
    cfg: LabBookConfig,
}

impl LabBook {
    /// Connect to the lab database at `url` (`postgres://USER@HOST[:PORT]/DB`, no TLS) as
    /// server `server`, creating or updating the book's tables (`btree_gist` is a trusted
    /// extension: the database's owner may create it, no superuser needed).
    pub async fn open(url: &str, server: &str) -> LabResult<LabBook> {
        Self::open_with(url, server, LabBookConfig::default()).await
    }

    pub async fn open_with(url: &str, server: &str, cfg: LabBookConfig) -> LabResult<LabBook> {
        let pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| LabError::Connect(Box::new(e)))?;
        let mgr = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(cfg.pool_size.max(1))
            .build()
            .map_err(|e| LabError::Connect(Box::new(e)))?;
        let book = LabBook {
            pool,
            server: server.into(),
            url: url.into(),
            cfg,
        };
        book.migrate().await?;
        Ok(book)
    }

    /// Apply [`SCHEMA`] under an advisory lock, so servers opening at once do not race
    /// on `CREATE`.
    async fn migrate(&self) -> LabResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(7415020315)")
            .await?;
        for step in SCHEMA {
            tx.batch_execute(step).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The server this handle books for.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The database URL it was opened on (for [`BookListener::connect`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> LabBookConfig {
        self.cfg
    }

    /// The database's clock, in epoch milliseconds: the time every lease is judged by.
    pub async fn now(&self) -> LabResult<EpochMs> {
        let client = self.pool.get().await?;
        let row = client.query_one("SELECT testbay_ms(now())", &[]).await?;
        Ok(row.get(0))
    }

    /// Make the book's resources these (added or changed; none removed, since ended
    /// reservations refer to them). A kind change applies to reservations made after it.
    pub async fn sync_resources(&self, specs: &[ResourceSpec]) -> LabResult<()> {
        let mut names = Vec::with_capacity(specs.len());
        let mut kinds = Vec::with_capacity(specs.len());
        let mut caps = Vec::with_capacity(specs.len());
        for s in specs {
            let (kind, cap) = match s.kind {
                ResourceKind::Exclusive => ("exclusive", 1),
                ResourceKind::Shared { capacity } => ("shared", capacity),
            };
            if cap == 0 {
                return Err(LabError::InvalidResource {
                    name: s.name.clone(),
                    why: "a shared resource needs a capacity of at least 1",
                });
            }
            let cap = i32::try_from(cap).map_err(|_| LabError::InvalidResource {
                name: s.name.clone(),
                why: "capacity too large",
            })?;
            names.push(s.name.clone());
            kinds.push(kind.to_string());
            caps.push(cap);
        }
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO lab_resources (name, kind, capacity)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int[])
                 ON CONFLICT (name) DO UPDATE
                    SET kind = EXCLUDED.kind, capacity = EXCLUDED.capacity
                    WHERE (lab_resources.kind, lab_resources.capacity)
                        IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.capacity)",
                &[&names, &kinds, &caps],
            )
            .await?;
        Ok(())
    }

    /// Every resource of the book.
    pub async fn resources(&self) -> LabResult<Vec<ResourceSpec>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT name, kind, capacity FROM lab_resources ORDER BY name",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ResourceSpec {
                name: r.get(0),
                kind: resource_kind(r.get(1), r.get(2)),
                config: serde_json::Value::Null,
            })
            .collect())
    }
}

fn resource_kind(kind: &str, capacity: i32) -> ResourceKind {
    if kind == "shared" {
        ResourceKind::Shared {
            capacity: capacity.max(0) as u32,
        }
    } else {
        ResourceKind::Exclusive
    }
}
