//! `testbay serve`: the console for a browser (and for headless labs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use testbay_engine::api::LocalConsole;
use testbay_server::{AuthMode, Limits, ServeConfig, Server};

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on. Any non-loopback address requires the printed token.
    #[arg(long, default_value = "127.0.0.1:7780", value_name = "ADDR:PORT")]
    pub bind: SocketAddr,
    /// The built UI folder [default: ui/dist of the repository when run from a checkout]
    #[arg(long, env = "TESTBAY_UI_DIR", value_name = "DIR")]
    pub ui_dir: Option<PathBuf>,
    /// Who may talk to it: `users` (lab mode: every request needs a user's token, see
    /// `testbay users`), `token` (single seat: loopback trusted, the shared token
    /// elsewhere), `auto` (lab mode once the store has a user)
    #[arg(long, default_value = "auto", value_parser = ["auto", "users", "token"])]
    pub auth: String,
    /// The address the lab's other servers send rack agents to while this one owns the
    /// reservation book (servers on one PostgreSQL store) [default: http://ADDR:PORT
    /// this one listens on]
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    // The global `--token` (TESTBAY_TOKEN): the token this server requires off loopback.
    let token = ctx.token.clone();
    if let Some(t) = &token {
        anyhow::ensure!(
            testbay_server::token_is_url_safe(t),
            "--token may hold only letters, digits and -._~"
        );
    }
    let ui_dir = args.ui_dir.or_else(|| {
        testbay_engine::api::paths::repo_dir()
            .map(|r| r.join("ui/dist"))
            .filter(|d| d.join("index.html").is_file())
    });
    if ui_dir.is_none() {
        eprintln!("testbay serve: no built UI found (build it in ui/ or pass --ui-dir); serving the API only");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = rt.block_on(async move {
        let local = LocalConsole::open_with(ctx.paths.clone(), ctx.options())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let access = local.access();
        let console = local.shared();
        let bound = Server::bind(
            console.clone(),
            ServeConfig {
                bind: args.bind,
                ui_dir,
                token,
                limits: Limits::default(),
                access,
                auth: match args.auth.as_str() {
                    "users" => AuthMode::Users,
                    "token" => AuthMode::Token,
                    _ => AuthMode::Auto,
                },
            },
        )
        .await;
        // Serving shuts the console down as it stops; not serving at all does it here.
        let server = match bound {
            Ok(s) => s,
            Err(e) => {
                console.shutdown();
                return Err(e).with_context(|| format!("cannot listen on {}", args.bind));
            }
        };
        let address = args
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{}", server.local_addr()));
        let recorded = console.clone();
        tokio::task::spawn_blocking(move || recorded.serving_at(&address))
            .await
            .context("cannot record the address this server serves on")?;
        // Listen for the stop signals before telling anyone where the console is: a
        // signal sent the moment the address is printed must stop it cleanly.
        let stop = stop_signal();
        println!("testbay serve: console at {}", server.url());
        if server.lab_mode() {
            println!("testbay serve: lab mode; every request needs a user's token (sign in at /signin)");
        } else if server.token().is_some() {
            println!("testbay serve: bound to a non-loopback address; requests need the token in that address");
        }
        server.run(stop).await.context("server failed")?;
        anyhow::Ok(0)
    });
    // The server has closed its connections and shut the console down; work still on
    // the blocking pool (a read that was just ending) gets a moment, not a wait.
    rt.shutdown_timeout(Duration::from_millis(500));
    code
}

/// Ctrl-C, SIGTERM or SIGHUP (the terminal or session that started it went away). The
/// handlers are installed when this is called, not when the future is first polled. Must
/// be called within the runtime.
pub(crate) fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = streams else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
            _ = hup.recv() => {},
        }
    }
}
