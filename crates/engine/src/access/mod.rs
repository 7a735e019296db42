//! Users, roles and the audit log of a console (issue 15, lab mode): tokens made and
//! checked here, users and audit entries kept through the store's [`AccessStore`]. A
//! token is 256 random bits from the OS as 64 hex digits, shown once when its user is
//! added; the store keeps only its SHA-256. Which request needs which role is the API's
//! business (`api::access`); this module knows users, not requests.

use std::sync::{Arc, Mutex};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::clock::{Clock, EpochMs};
use crate::store::{
    AccessStore, AuditEntry, AuditQuery, NewAuditEntry, Role, Store, StoreError, User,
};

/// Longest user name, in bytes.
pub const MAX_USER_NAME: usize = 64;
/// Longest audit detail kept, in characters.
pub const MAX_AUDIT_DETAIL: usize = 1_000;

/// The audit actions that make a run (their target is the run's id).
const LAUNCHES: [&str; 3] = ["launch", "relaunch", "check_dut"];

/// Why an access change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("user name {0:?} is not allowed: 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadName(String),
    #[error("a user named {0:?} exists already (revoked users keep their names)")]
    NameTaken(String),
    #[error("no user {0:?} (give a name or an id)")]
    NoSuchUser(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The console's users and audit log.
pub struct Access {
    store: Mutex<Box<dyn AccessStore>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access")
    }
}

/// A fresh token: 256 random bits from the OS, as 64 lowercase hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The SHA-256 of a token as the store keeps it (hex).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

impl Access {
    /// The access service on a handle of its own; `None` when the store keeps no users.
    pub fn open(store: &dyn Store, clock: Arc<dyn Clock>) -> Result<Option<Self>, StoreError> {
        match store.open_access_store() {
            Ok(s) => Ok(Some(Self {
                store: Mutex::new(s),
                clock,
            })),
            Err(StoreError::InvalidQuery { key: "store", .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Box<dyn AccessStore>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> EpochMs {
        self.clock.now_ms()
    }

    /// Add a user; the user and its token (the only time the token is seen).
    pub fn add_user(&self, name: &str, role: Role) -> Result<(User, String), AccessError> {
        if !name_ok(name) {
            return Err(AccessError::BadName(name.to_string()));
        }
        let token = new_token();
        let user = self
            .db()
            .add_user(name, role, &token_hash(&token), self.now())?
            .ok_or_else(|| AccessError::NameTaken(name.to_string()))?;
        tracing::info!(user = %user.name, role = role.as_str(), "user added");
        Ok((user, token))
    }

    /// Every user, revoked ones included.
    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.db().users()
    }

    /// Whether any user was ever added: a serving console then runs in lab mode.
    pub fn has_users(&self) -> Result<bool, StoreError> {
        Ok(!self.db().users()?.is_empty())
    }

    /// The user `who` names: its name, else its id.
    pub fn find(&self, who: &str) -> Result<User, AccessError> {
        let users = self.users()?;
        users
            .iter()
            .find(|u| u.name == who)
            .or_else(|| {
                who.parse::<i64>()
                    .ok()
                    .and_then(|id| users.iter().find(|u| u.id == id))
            })
            .cloned()
            .ok_or_else(|| AccessError::NoSuchUser(who.to_string()))
    }

    /// Revoke a user's token: its next request is refused.
    pub fn revoke(&self, who: &str) -> Result<User, AccessError> {
        let user = self.find(who)?;
        self.db().revoke_user(user.id, self.now())?;
        tracing::info!(user = %user.name, "user revoked");
        self.find(&user.id.to_string())
    }

    /// Give a user another role.
    pub fn set_role(&self, who: &str, role: Role) -> Result<User, AccessError> {
        let user = self.find(who)?;
        self.db().set_role(user.id, role)?;
        self.find(&user.id.to_string())
    }

    /// The active (not revoked) user a token belongs to.
    pub fn authenticate(&self, token: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .db()
            .user_by_token(&token_hash(token))?
            .filter(|u| u.revoked_ms.is_none()))
    }

    /// Append to the audit log (the detail cut to [`MAX_AUDIT_DETAIL`] characters). A
    /// failure is logged, not returned: the change it records is made already.
    pub fn record(&self, user: &str, action: &str, target: &str, detail: &str) {
        let detail: String = detail.chars().take(MAX_AUDIT_DETAIL).collect();
        let entry = NewAuditEntry {
            time_ms: self.now(),
            user: user.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail,
        };
        if let Err(e) = self.db().append_audit(&entry) {
            tracing::error!(error = %e, action, "cannot append to the audit log");
        }
    }

    /// Who launched run `run_id` (the audit entry of the launch that made it).
    pub fn launched_by(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        self.first_by(run_id, &LAUNCHES)
    }

    /// Who made `target` with `action` (`add_schedule`: a schedule's id).
    pub fn made_by(&self, target: &str, action: &str) -> Result<Option<String>, StoreError> {
        self.first_by(target, &[action])
    }

    /// The user of the oldest entry on `target` with one of `actions`.
    fn first_by(&self, target: &str, actions: &[&str]) -> Result<Option<String>, StoreError> {
        let q = AuditQuery {
            target: Some(target.to_string()),
            limit: Some(crate::store::MAX_AUDIT_ROWS),
            ..AuditQuery::default()
        };
        Ok(self
            .audit(&q)?
            .into_iter()
            .rev()
            .find(|e| actions.contains(&e.action.as_str()))
            .map(|e| e.user))
    }

    /// Audit entries matching `q`, newest first.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.db().audit(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_of_hex_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(token_hash(&a), a);
        assert_eq!(token_hash(&a).len(), 64);
    }

    #[test]
    fn names() {
        assert!(name_ok("ada.l-ove_1@lab"));
        assert!(!name_ok(""));
        assert!(!name_ok("a b"));
        assert!(!name_ok(&"x".repeat(65)));
    }
}
