//! `testbay queue`: the run queue — list it, move a run up or down, change its priority,
//! cancel it. Through a console that never owns the book and starts nothing: it reads
//! the stored queue, and its changes go to the store, where the console serving the data
//! directory (`testbay serve`, the desktop app) picks them up within a second.

use anyhow::bail;
use clap::Subcommand;
use testbay_engine::api::{
    BookUse, ConsoleOptions, ConsolePaths, Move, Priority, QueueView, Request, Response,
};
use testbay_engine::timefmt::fmt_ms;

use super::Ctx;
use crate::console::{error_text, unexpected, Session};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<QueueCmd>,
    /// Print the answer as JSON
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum QueueCmd {
    /// Move a queued run ahead of (`up`) or behind (`down`) its neighbour of the same priority
    Move {
        run_id: String,
        #[arg(value_parser = ["up", "down"])]
        to: String,
    },
    /// Give a queued run another priority
    Priority {
        run_id: String,
        #[arg(value_parser = ["low", "normal", "high"])]
        priority: String,
    },
    /// Take a run out of the queue (it is stored `stopped`)
    Cancel { run_id: String },
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let session = Session::open(
        ctx,
        ConsolePaths {
            pack_roots: Vec::new(),
            ..ctx.paths.clone()
        },
        ConsoleOptions {
            book: BookUse::Client,
            owner_label: "testbay queue",
            watch_packs: false,
            recover: false,
            serve_queue: false,
            ..ctx.options()
        },
    )?;
    let request = match args.cmd {
        None => Request::Queue,
        Some(QueueCmd::Move { run_id, to }) => Request::MoveQueued {
            run_id,
            to: if to == "up" { Move::Up } else { Move::Down },
        },
        Some(QueueCmd::Priority { run_id, priority }) => Request::SetQueuedPriority {
            run_id,
            priority: Priority::parse(&priority).unwrap_or_default(),
        },
        Some(QueueCmd::Cancel { run_id }) => Request::CancelQueued { run_id },
    };
    let queue = match session.call(request) {
        Ok(Response::Queue(q) | Response::MoveQueued(q) | Response::SetQueuedPriority(q)) => q,
        Ok(Response::CancelQueued { run_id }) => {
            if args.json {
                crate::term::print_json(&serde_json::json!({ "cancelled": run_id }))?;
            } else {
                out!("cancelled {run_id}");
            }
            return Ok(0);
        }
        Ok(other) => return Err(unexpected("queue", other)),
        Err(e) => bail!("{}", error_text(&e)),
    };
    if args.json {
        crate::term::print_json(&queue)?;
    } else {
        print_queue(&queue);
    }
    Ok(0)
}

fn print_queue(q: &QueueView) {
    if q.runs.is_empty() {
        out!("the run queue is empty");
        return;
    }
    if let Some(h) = &q.held_back {
        out!("held back: {h}");
    }
    for r in &q.runs {
        out!(
            "{:>3}. {}  {}  {:<6}  {}  queued {}  est. start {}",
            r.position,
            r.run_id,
            r.pack,
            r.priority.as_str(),
            r.duts.join(","),
            fmt_ms(r.enqueued_ms),
            fmt_ms(r.est_start_ms)
        );
        out!("       {}", r.waits_for);
    }
}
