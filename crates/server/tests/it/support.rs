//! Set-up shared by the test modules: a real server on a real TCP port, over a console in
//! a temp folder.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use testbay_engine::api::{ConsolePaths, LocalConsole, Role};
use testbay_server::{Limits, ServeConfig, Server};

/// Options of a served console; [`Serve::start`] opens it.
pub struct Serve {
    bind: String,
    ui: Option<PathBuf>,
    limits: Limits,
    packs: bool,
    prepare: Box<dyn FnOnce(&Path)>,
    users: Vec<(String, Role)>,
}

impl Serve {
    /// On 127.0.0.1 with an ephemeral port, default limits, no packs, no UI.
    pub fn new() -> Serve {
        Serve {
            bind: "127.0.0.1:0".into(),
            ui: None,
            limits: Limits::default(),
            packs: false,
            prepare: Box::new(|_| {}),
            users: Vec::new(),
        }
    }

    pub fn bind(mut self, addr: &str) -> Self {
        self.bind = addr.into();
        self
    }

    /// Serve the UI from `dir`.
    pub fn ui(mut self, dir: Option<&Path>) -> Self {
        self.ui = dir.map(Path::to_path_buf);
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The console reads packs from `packs` in the temp folder.
    pub fn packs(mut self) -> Self {
        self.packs = true;
        self
    }

    /// Add a user before the server starts (so it serves in lab mode); its token is in
    /// [`Running::tokens`].
    pub fn user(mut self, name: &str, role: Role) -> Self {
        self.users.push((name.into(), role));
        self
    }

    /// Called with the temp folder before the console opens (its data dir is `data`).
    pub fn prepare(mut self, f: impl FnOnce(&Path) + 'static) -> Self {
        self.prepare = Box::new(f);
        self
    }

    pub async fn start(self) -> Running {
        let dir = tempfile::tempdir().unwrap();
        (self.prepare)(dir.path());
        let paths = ConsolePaths {
            data_dir: dir.path().join("data"),
            pack_roots: if self.packs {
                vec![dir.path().join("packs")]
            } else {
                vec![]
            },
            lab_file: None,
        };
        let local = LocalConsole::open(paths).unwrap();
        let access = local.access();
        let mut tokens = HashMap::new();
        for (name, role) in &self.users {
            let (_, token) = access.as_ref().unwrap().add_user(name, *role).unwrap();
            tokens.insert(name.clone(), token);
        }
        let console = local.shared();
        let server = Server::bind(
            console,
            ServeConfig {
                bind: self.bind.parse().unwrap(),
                ui_dir: self.ui,
                token: None,
                limits: self.limits,
                access: access.clone(),
                auth: Default::default(),
            },
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        let token = server.token().map(str::to_string);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Running {
            addr,
            token,
            tokens,
            stop,
            task,
            dir,
        }
    }
}

/// A server running until [`Running::shutdown`] or a send on `stop`.
pub struct Running {
    pub addr: SocketAddr,
    /// The token it requires (bound off loopback).
    pub token: Option<String>,
    /// Users' tokens by name ([`Serve::user`]).
    pub tokens: HashMap<String, String>,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The temp folder: `data`, `packs`.
    pub dir: tempfile::TempDir,
}

impl Running {
    /// Stop it and wait for it to end without an error.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}
