//! The lab the desktop app joins, remembered per user: `desktop.json` in the OS config
//! folder (`$XDG_CONFIG_HOME/testbay/`, `~/.config/testbay/` when unset) says "this
//! computer" or a lab server's address. The server's token goes to the OS keyring (the
//! Secret Service, `keyring` crate; service `testbay-desktop`, the server's address as
//! the user) where one answers; else it sits beside the choice in `desktop.token`, a
//! file only its owner can read or write (mode 0600), and the first screen says so.

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

    /// The remembered token of the server at `url`: from the file when there is one
    /// (the keyring did not answer when it was saved), else from the keyring.
    pub fn token(&self, url: &str) -> Option<String> {
        if let Ok(t) = std::fs::read_to_string(self.token_file()) {
            return Some(t.trim().to_string()).filter(|t| !t.is_empty());
        }
        keyring::Entry::new(KEYRING_SERVICE, url)
            .and_then(|e| e.get_password())
            .ok()
            .filter(|t| !t.is_empty())
    }

    /// Remember `choice` and the token of its server (none: forget any); where the
    /// token went.
    pub fn save(&self, choice: &Choice, token: Option<&str>) -> std::io::Result<TokenPlace> {
        std::fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec_pretty(choice).map_err(std::io::Error::other)?;
        std::fs::write(self.choice_file(), json)?;
        let remove_file = || match std::fs::remove_file(self.token_file()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        let (Choice::Server { url }, Some(token)) = (choice, token) else {
            remove_file()?;
            return Ok(TokenPlace::None);
        };
        match keyring::Entry::new(KEYRING_SERVICE, url).and_then(|e| e.set_password(token)) {
            Ok(()) => {
                remove_file()?;
                Ok(TokenPlace::Keyring)
            }
            Err(e) => {
                tracing::info!(error = %e, "no OS keyring answers; the token goes to a private file");
                write_private(&self.token_file(), token.as_bytes())?;
                Ok(TokenPlace::File)
            }
        }
    }
}

/// The keyring's service name for the app's server tokens.
const KEYRING_SERVICE: &str = "testbay-desktop";

/// Where a remembered token is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPlace {
    None,
    Keyring,
    File,
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
        let place = m.save(&server, Some("tok")).unwrap();
        assert_eq!(m.choice(), Some(server));
        assert_eq!(m.token("http://lab:7780/").as_deref(), Some("tok"));
        if place == TokenPlace::File {
            let mode = std::fs::metadata(m.token_file())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(m.save(&Choice::Local, None).unwrap(), TokenPlace::None);
        assert_eq!(m.choice(), Some(Choice::Local));
        assert!(!m.token_file().exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
