//! `testbay results prune|keep|usage`: retention through the console (`Request::Prune`,
//! `SetRunKeep`, `RunKeep`, `DataUsage`). The policy is `retention` in
//! `<data_dir>/settings.yaml`.

use testbay_engine::api::{Request, Response};
use testbay_engine::timefmt::format_utc;

use super::Ctx;
use crate::console::{error_text, unexpected, Session};
use crate::term::{print_json, safe};

fn call(session: &Session, request: Request, what: &str) -> anyhow::Result<Response> {
    session
        .call(request)
        .map_err(|e| anyhow::anyhow!("{what}: {}", error_text(&e)))
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn policy_text(p: &testbay_engine::api::RetentionPolicy) -> String {
    match (p.days, p.runs_per_pack) {
        (None, None) => "none (settings.yaml has no `retention`: nothing is pruned)".into(),
        (d, n) => [
            d.map(|d| format!("runs of the last {d} days")),
            n.map(|n| format!("the newest {n} runs of each pack")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" and "),
    }
}

pub fn prune(ctx: &Ctx, dry_run: bool, json: bool) -> anyhow::Result<i32> {
    let session = Session::reading(ctx)?;
    let r = match call(&session, Request::Prune { dry_run }, "prune")? {
        Response::Prune(r) => r,
        other => return Err(unexpected("prune", other)),
    };
    if json {
        print_json(&r)?;
        return Ok(0);
    }
    out!("policy: keep {}", policy_text(&r.policy));
    for c in &r.runs {
        out!(
            "{}  {:<24}  {:<16}  {}",
            &format_utc(c.created_ms)[..19],
            safe(&c.run_id),
            safe(&c.pack),
            c.why
        );
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    out!(
        "{verb} {} run(s): {} of logs, artifacts and snapshots{}{}",
        r.runs.len(),
        bytes(r.files_bytes),
        if r.dry_run {
            String::new()
        } else {
            format!(", database {} smaller", bytes(r.database_bytes))
        },
        if r.more {
            "; more remain for the next prune"
        } else {
            ""
        }
    );
    Ok(0)
}

pub fn keep(ctx: &Ctx, run_id: String, off: bool, json: bool) -> anyhow::Result<i32> {
    let session = Session::reading(ctx)?;
    let r = match call(&session, Request::SetRunKeep { run_id, keep: !off }, "keep")? {
        Response::SetRunKeep(r) => r,
        other => return Err(unexpected("set_run_keep", other)),
    };
    if json {
        print_json(&r)?;
    } else if r.keep {
        out!("{} is kept: pruning never removes it", safe(&r.run_id));
    } else {
        out!("{} is no longer marked keep", safe(&r.run_id));
    }
    Ok(0)
}

pub fn usage(ctx: &Ctx, json: bool) -> anyhow::Result<i32> {
    let session = Session::reading(ctx)?;
    let u = match call(&session, Request::DataUsage, "usage")? {
        Response::DataUsage(u) => u,
        other => return Err(unexpected("data_usage", other)),
    };
    if json {
        print_json(&u)?;
        return Ok(0);
    }
    out!("data dir   {}", safe(&u.data_dir));
    out!(
        "database   {} ({} free)",
        bytes(u.database_bytes),
        bytes(u.database_free_bytes)
    );
    out!("logs       {}", bytes(u.logs_bytes));
    out!("artifacts  {}", bytes(u.artifacts_bytes));
    out!(
        "other      {} (pack snapshots, parameter and result files)",
        bytes(u.other_bytes)
    );
    out!(
        "runs       {} folder(s){}",
        u.run_folders,
        if u.partial { " (counted in part)" } else { "" }
    );
    out!("retention  keep {}", policy_text(&u.policy));
    Ok(0)
}
