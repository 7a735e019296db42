//! `testbay agents`: the lab's rack agents (racks, host, last heartbeat, CPU, the phases
//! they run, drained or not); `agents drain NAME` gives one no new runs, `--undo` takes
//! it back. Through the console (`--server` for a lab server's).

use anyhow::bail;
use clap::Subcommand;
use testbay_engine::agents::AgentView;
use testbay_engine::api::{Request, Response};
use testbay_engine::timefmt::fmt_ms;

use super::Ctx;
use crate::console::{error_text, unexpected, Session};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<AgentsCmd>,
    /// Print the answer as JSON
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum AgentsCmd {
    /// Give the agent no new runs; it finishes those it has
    Drain {
        name: String,
        /// Take it back instead
        #[arg(long)]
        undo: bool,
    },
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    if ctx.server.is_none() {
        bail!("rack agents connect to a serving console: name it with --server URL (and --token)");
    }
    let session = Session::reading(ctx)?;
    let request = match args.cmd {
        None => Request::Agents,
        Some(AgentsCmd::Drain { name, undo }) => Request::DrainAgent { name, drain: !undo },
    };
    let agents = match session.call(request) {
        Ok(Response::Agents(a)) => a,
        Ok(Response::DrainAgent(a)) => vec![a],
        Ok(other) => return Err(unexpected("agents", other)),
        Err(e) => bail!("{}", error_text(&e)),
    };
    if args.json {
        crate::term::print_json(&agents)?;
    } else if agents.is_empty() {
        out!("no rack agents have connected");
    } else {
        for a in &agents {
            print_agent(a);
        }
    }
    Ok(0)
}

fn print_agent(a: &AgentView) {
    let cpu = a.cpu.map_or("-".to_string(), |c| format!("{c:.0}%"));
    out!(
        "{}  racks {}  {}  host {}  version {}  heartbeat {}  cpu {}{}",
        a.name,
        a.racks.join(","),
        a.state,
        a.host,
        a.version,
        fmt_ms(a.last_heartbeat_ms),
        cpu,
        if a.draining { "  draining" } else { "" }
    );
    for p in &a.running {
        out!(
            "    {}  {}  {}  {}",
            p.run_id,
            p.lane,
            p.task,
            p.phase.as_str()
        );
    }
}
