//! `testbay agent`: run the task phases of a lab's racks on this machine (the one wired
//! to them). It connects to the lab server given by `--server` with an agent user's
//! `--token` (in a lab of several servers, any of them, `--server` repeated: it is sent
//! to the one that owns the reservation book, and follows the book when it moves), names the racks it serves, heartbeats, and runs the phases the server sends
//! it from pack snapshots it fetches by content hash into `--work-dir` (four kept).
//! Ctrl-C, SIGTERM or SIGHUP end its phases and it.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use testbay_remote::agent::{run as serve_phases, AgentOptions};
use testbay_remote::Target;

use super::Ctx;
use crate::console::error_text;

#[derive(clap::Args)]
pub struct Args {
    /// A rack this machine runs the phases of (its lab-file entry says `agent: true`);
    /// repeat for more
    #[arg(long = "rack", value_name = "RACK", required = true)]
    racks: Vec<String>,
    /// Where pack snapshots and running phases' folders go
    /// [default: DATA_DIR/agent]
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    if ctx.servers.is_empty() {
        bail!("testbay agent needs --server URL (the lab server) and --token (an agent user's)");
    }
    if ctx.token.is_none() {
        bail!("testbay agent needs --token: the token of a user with the agent role (`testbay users add NAME --role agent` on the server)");
    }
    let targets = ctx
        .servers
        .iter()
        .map(|s| Target::parse(s, ctx.token.clone()).map_err(|e| anyhow::anyhow!(error_text(&e))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let work_dir = args.work_dir.unwrap_or_else(|| ctx.data_dir.join("agent"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let racks = args.racks;
    rt.block_on(async move {
        let stop = super::serve::stop_signal();
        say!(
            "testbay agent: racks {} on {}, work directory {}",
            racks.join(", "),
            targets
                .iter()
                .map(|t| t.url.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            work_dir.display()
        );
        serve_phases(
            AgentOptions {
                targets,
                racks,
                work_dir,
            },
            stop,
        )
        .await
        .map_err(|e| anyhow::anyhow!(error_text(&e)))
    })?;
    Ok(0)
}
