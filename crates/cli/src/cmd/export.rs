//! `testbay export RUN --format junit|yaml|json`: a stored run as a report.

use std::path::PathBuf;

use anyhow::Context as _;
use testbay_engine::api::{ReportFormat, Request, Response};

use super::Ctx;
use crate::console::{error_text, unexpected, Session};

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
    /// Only the run's new failures against this earlier run of the pack (a baseline)
    #[arg(long, value_name = "RUN")]
    pub new_failures_since: Option<String>,
}

fn parse_format(s: &str) -> Result<ReportFormat, String> {
    ReportFormat::parse(s).ok_or_else(|| format!("unknown format `{s}` (junit, yaml, json)"))
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let session = Session::reading(ctx)?;
    let request = Request::Export {
        run_id: args.run.clone(),
        format: args.format,
        new_failures_since: args.new_failures_since.clone(),
    };
    let text = match session.call(request) {
        Ok(Response::Export(file)) => file.content,
        Ok(other) => return Err(unexpected("export", other)),
        Err(e) => anyhow::bail!("run {}: {}", args.run, error_text(&e)),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(0)
}
