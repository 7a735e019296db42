//! Which store a console opens: SQLite in a file (the default, `testbay.db` in the data
//! directory) or a PostgreSQL database, named by a URL (`sqlite://PATH`,
//! `postgres://USER@HOST[:PORT]/DB`), as `--store` and `TESTBAY_STORE` give it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{PgStore, Result, SqliteStore, Store};

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: its connection URL.
    Postgres(String),
}

impl StoreLocation {
    /// Parse `sqlite://PATH` or `postgres://…` (`postgresql://…`); anything else is
    /// refused with what is accepted.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(
                    "sqlite:// needs a file path (sqlite:///var/lib/testbay/testbay.db)".into(),
                );
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            s.parse::<tokio_postgres::Config>()
                .map_err(|e| format!("{}: {e}", super::postgres::redact(s)))?;
            return Ok(Self::Postgres(s.to_string()));
        }
        Err(format!(
            "{}: a store is sqlite://PATH or postgres://USER@HOST[:PORT]/DB",
            super::postgres::redact(s)
        ))
    }

    /// The default: SQLite's `testbay.db` in `data_dir`.
    pub fn default_in(data_dir: &Path) -> Self {
        Self::Sqlite(data_dir.join("testbay.db"))
    }

    /// The location as it may be shown (a URL without its password).
    pub fn display(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Postgres(url) => super::postgres::redact(url),
        }
    }

    /// Open the store here (creating a SQLite file's folder if need be), its schema
    /// brought up to date.
    pub fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Self::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| super::StoreError::Open {
                        path: dir.to_path_buf(),
                        source: e.into(),
                    })?;
                }
                Arc::new(SqliteStore::open(path)?)
            }
            Self::Postgres(url) => Arc::new(PgStore::open(url)?),
        })
    }
}

impl std::str::FromStr for StoreLocation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::parse(s)
    }
}
