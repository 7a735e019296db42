//! `testbay`: run packs headless, serve the console to a browser, inspect packs, results
//! and the lab. Each subcommand lives in `cmd/<name>.rs`.

#[macro_use]
mod term;
mod cmd;
mod console;

pub use cmd::Ctx;

use clap::Parser;

fn main() {
    let cli = cmd::Cli::parse();
    init_tracing();
    if cli.command.runs_phases() {
        // While this process is small and has one thread (see `testbay_engine::exec`).
        testbay_engine::exec::start_guard();
    }
    let ctx = cli.global.ctx();
    let code = match cmd::run(cli.command, &ctx) {
        Ok(code) => code,
        Err(e) => {
            // Not `eprintln!`: stderr may be gone (a closed terminal).
            use std::io::Write as _;
            let e = format!("{e:#}");
            let _ = writeln!(std::io::stderr(), "error: {}", term::safe_lines(&e));
            2
        }
    };
    std::process::exit(code);
}

/// Log to stderr; `RUST_LOG` picks the level (default: warnings and errors).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Its own complaint about a stderr that is gone (a closed terminal) would panic.
        .log_internal_errors(false)
        .init();
}
