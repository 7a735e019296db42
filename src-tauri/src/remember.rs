//! The lab the desktop app joins, remembered per user: `desktop.json` in the OS config
//! folder (`$XDG_CONFIG_HOME/testbay/`, `~/.config/testbay/` when unset) says "this
//! computer" or a lab server's address; the server's token sits beside it in
//! `desktop.token`, a file only its owner can read or write (mode 0600). No OS keyring is
//! used yet: the first screen says where the token is kept.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the first screen chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "lab", rename_all = "snake_case")]
pub enum Choice {
    /// The embedded console on this computer's data directory.
    Local,
    /// A lab server (`testbay serve`) at `url`.
    Server { url: String },
}

/// Where the choice and the token are kept.
#[derive(Debug, Clone)]
pub struct Memory {
    pub dir: PathBuf,
}

impl Memory {
    /// `<config dir>/testbay`.
    pub fn in_config_dir(config_dir: &Path) -> Self {
        Self {
            dir: config_dir.join("testbay"),
        }
    }

    pub fn choice_file(&self) -> PathBuf {
        self.dir.join("desktop.json")
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.join("desktop.token")
    }

    /// The remembered choice; none when nothing (readable) is remembered.
    pub fn choice(&self) -> Option<Choice> {
        let text = std::fs::read(self.choice_file()).ok()?;
        match serde_json::from_slice(&text) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(file = %self.choice_file().display(), error = %e, "ignoring an unreadable remembered lab");
                None
            }
        }
    }

    /// The remembered server token.
    pub fn token(&self) -> Option<String> {
        let t = std::fs::read_to_string(self.token_file()).ok()?;
        Some(t.trim().to_string()).filter(|t| !t.is_empty())
    }

    /// Remember `choice` (and the server's token, or none).
    pub fn save(&self, choice: &Choice, token: Option<&str>) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec_pretty(choice).map_err(std::io::Error::other)?;
        std::fs::write(self.choice_file(), json)?;
        match token {
            Some(t) => write_private(&self.token_file(), t.as_bytes()),
            None => match std::fs::remove_file(self.token_file()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

/// Write `path` readable and writable by its owner only, whatever mode it had.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_server_and_keeps_its_token_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = std::env::temp_dir().join(format!("testbay-remember-{}", std::process::id()));
        let m = Memory::in_config_dir(&tmp);
        assert_eq!(m.choice(), None);
        let server = Choice::Server {
            url: "http://lab:7780/".into(),
        };
        m.save(&server, Some("tok")).unwrap();
        assert_eq!(m.choice(), Some(server));
        assert_eq!(m.token().as_deref(), Some("tok"));
        let mode = std::fs::metadata(m.token_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        m.save(&Choice::Local, None).unwrap();
        assert_eq!(m.choice(), Some(Choice::Local));
        assert_eq!(m.token(), None);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
