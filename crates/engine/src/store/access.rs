//! Users, their roles and tokens, and the audit log as the store keeps them. A token is
//! never stored: only its SHA-256, so a copy of the database lets nobody in.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::Result;
use crate::clock::EpochMs;

/// What a user may do. `viewer` < `operator` < `admin`; `agent` is for rack agents and
/// may make only the agent's requests, which nobody else may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Role {
    /// Reads everything: runs, results, the lab, the queue, the audit log.
    Viewer,
    /// A viewer who also launches, stops, holds, releases and answers prompts.
    Operator,
    /// An operator who also manages users, webhooks and others' settings.
    Admin,
    /// A rack agent (`testbay agent`): its connection and its requests only.
    Agent,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a user of this role may make a request that needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        let rank = |r: Role| match r {
            Role::Viewer => Some(0),
            Role::Operator => Some(1),
            Role::Admin => Some(2),
            Role::Agent => None,
        };
        match (rank(self), rank(needed)) {
            (Some(have), Some(need)) => have >= need,
            // An agent's requests are an agent's alone.
            _ => self == needed,
        }
    }
}

/// A user as clients see it: never the token, only the first characters of its hash's
/// hex so two tokens of one user can be told apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct User {
    #[ts(type = "number")]
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_ms: EpochMs,
    /// When the token was revoked; a revoked user is refused everything.
    pub revoked_ms: Option<EpochMs>,
    /// The first 8 hex digits of the token's SHA-256.
    pub token_id: String,
}

impl User {
    /// A user from its stored columns: the role as stored (an unknown one, a newer
    /// Testbay's, gets the least: `agent`, refused everything) and the token's SHA-256
    /// hex, of which only the first 8 digits are kept.
    pub fn from_stored(
        id: i64,
        name: String,
        role: &str,
        created_ms: EpochMs,
        revoked_ms: Option<EpochMs>,
        token_sha256: &str,
    ) -> Self {
        User {
            id,
            name,
            role: Role::parse(role).unwrap_or(Role::Agent),
            created_ms,
            revoked_ms,
            token_id: token_sha256.chars().take(8).collect(),
        }
    }
}

/// One state-changing request as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct AuditEntry {
    #[ts(type = "number")]
    pub id: i64,
    pub time_ms: EpochMs,
    /// The user's name; `local` for a single-seat console's own operator (loopback, the
    /// shared token, the command line without users).
    pub user: String,
    /// The request's `cmd` (`launch`, `stop_run`, `hold`, ...).
    pub action: String,
    /// What it acted on: a run id, a resource, a reservation, a user; empty when none.
    pub target: String,
    /// The request's other fields as JSON (secrets left out), at most 1,000 characters.
    pub detail: String,
}

/// An entry to append ([`AuditEntry`] without its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub time_ms: EpochMs,
    pub user: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// The most entries one audit query answers.
pub const MAX_AUDIT_ROWS: u32 = 10_000;

/// Which audit entries to list: newest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(default, deny_unknown_fields)]
#[ts(export)]
pub struct AuditQuery {
    /// Only entries at or after this time.
    #[ts(optional)]
    pub since_ms: Option<EpochMs>,
    /// Only this user's entries.
    #[ts(optional)]
    pub user: Option<String>,
    /// Only entries acting on this target (a run id: who launched and stopped it).
    #[ts(optional)]
    pub target: Option<String>,
    /// At most this many (default 500, at most 10,000).
    #[ts(optional)]
    pub limit: Option<u32>,
}

/// Users and the audit log on a handle of their own (one connection), for the console's
/// access service. Names are unique among users, revoked ones included.
pub trait AccessStore: Send {
    /// Store a new user with the SHA-256 (hex) of its token; `None` when the name is
    /// taken.
    fn add_user(
        &self,
        name: &str,
        role: Role,
        token_sha256: &str,
        now: EpochMs,
    ) -> Result<Option<User>>;
    /// Every user, revoked ones included, by id.
    fn users(&self) -> Result<Vec<User>>;
    /// The user whose token has this SHA-256 (hex), revoked or not.
    fn user_by_token(&self, token_sha256: &str) -> Result<Option<User>>;
    /// Revoke user `id`'s token (a second revoke keeps the first time); `false` when
    /// there is no such user.
    fn revoke_user(&self, id: i64, now: EpochMs) -> Result<bool>;
    /// Give user `id` another role; `false` when there is no such user.
    fn set_role(&self, id: i64, role: Role) -> Result<bool>;
    /// Append one entry to the audit log; its id.
    fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64>;
    /// Entries matching `q`, newest first.
    fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>>;
}
