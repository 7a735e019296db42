//! `testbay export RUN --format junit|yaml|json`: a stored run as a report.

use std::path::PathBuf;

use anyhow::Context as _;
use testbay_engine::report::{render, ReportFormat};

use super::run::open_store;
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Run id
    pub run: String,
    /// junit (XML), yaml (results.yaml tree) or json
    #[arg(long, short = 'f', default_value = "junit", value_parser = parse_format)]
    pub format: ReportFormat,
    /// Write to this file instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn parse_format(s: &str) -> Result<ReportFormat, String> {
    ReportFormat::parse(s).ok_or_else(|| format!("unknown format `{s}` (junit, yaml, json)"))
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let store = open_store(ctx)?;
    let run = store
        .get_run(&args.run)
        .with_context(|| format!("run {}", args.run))?;
    let tasks = store.run_tasks(&args.run)?;
    let text = render(args.format, &run, &tasks);
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(0)
}
