//! `testbay audit`: the audit log, newest first: who changed what and when.

use anyhow::{bail, Context as _};
use testbay_engine::api::{AuditQuery, Request, Response};
use testbay_engine::timefmt::{fmt_ms, parse_duration_ms, parse_utc};

use super::Ctx;
use crate::console::{error_text, unexpected};

#[derive(clap::Args)]
pub struct Args {
    /// Only entries since this time: `YYYY-MM-DD[ HH:MM[:SS]]` (UTC) or a duration ago (`2h`)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only this user's entries (`local`: the single seat's own operator)
    #[arg(long)]
    user: Option<String>,
    /// Only entries acting on this target (a run id, a resource, a user)
    #[arg(long)]
    target: Option<String>,
    /// At most this many entries (default 500, at most 10,000)
    #[arg(long)]
    limit: Option<u32>,
    /// Print the entries as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let since_ms = match &args.since {
        None => None,
        Some(s) => Some(
            parse_utc(s)
                .or_else(|| {
                    parse_duration_ms(s).map(|d| {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |n| n.as_millis() as i64)
                            .saturating_sub(d)
                    })
                })
                .with_context(|| {
                    format!("--since {s:?}: give YYYY-MM-DD[ HH:MM[:SS]] (UTC) or a duration such as 2h")
                })?,
        ),
    };
    let session = super::users::session(ctx, "testbay audit")?;
    let q = AuditQuery {
        since_ms,
        user: args.user,
        target: args.target,
        limit: args.limit,
    };
    let entries = match session.call(Request::Audit(q)) {
        Ok(Response::Audit(e)) => e,
        Ok(other) => return Err(unexpected("audit", other)),
        Err(e) => bail!("{}", error_text(&e)),
    };
    if args.json {
        crate::term::print_json(&entries)?;
    } else if entries.is_empty() {
        out!("no audit entries");
    } else {
        for e in &entries {
            out!(
                "{}  {:<16} {:<20} {:<24} {}",
                fmt_ms(e.time_ms),
                e.user,
                e.action,
                e.target,
                e.detail
            );
        }
    }
    Ok(0)
}
