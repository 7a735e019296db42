//! `testbay triage list|add|remove|apply`: the known-issue rules of
//! `<data_dir>/triage.yaml` and what they make of stored failures, through the console
//! (`Request::TriageRules`, `AddTriageRule`, `RemoveTriageRule`, `RunTriage`,
//! `TriageSummary`). Rules are applied when results are read, so a rule added now
//! classifies past failures too.

use clap::Subcommand;
use testbay_engine::api::{Request, Response, TriageRule, TriageRules};

use super::Ctx;
use crate::console::{error_text, unexpected, Session};
use crate::term::{print_json, safe};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: TriageCmd,
}

#[derive(Subcommand)]
enum TriageCmd {
    /// The rules in precedence order (a failure takes the first that matches)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a rule (last unless --position); give --message, --log or both
    Add {
        /// Unique name of the rule
        name: String,
        /// Category of the failures it matches: infrastructure, product, test bug, ...
        #[arg(long)]
        category: String,
        /// Regular expression on the task's message (and its failed sub-results')
        #[arg(long)]
        message: Option<String>,
        /// Regular expression on the end of the task's logs
        #[arg(long)]
        log: Option<String>,
        /// Link to the issue that tracks it
        #[arg(long)]
        issue: Option<String>,
        /// Place in the list, 0 first (default: last)
        #[arg(long)]
        position: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule by name
    Remove {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Classify stored failures: one run's (RUN), or failures per category over the
    /// last runs (of --pack)
    Apply {
        run: Option<String>,
        #[arg(long)]
        pack: Option<String>,
        /// Last runs looked at without RUN (1 to 500)
        #[arg(long, default_value_t = 50)]
        last: u32,
        #[arg(long)]
        json: bool,
    },
}

fn call(session: &Session, request: Request) -> anyhow::Result<Response> {
    session
        .call(request)
        .map_err(|e| anyhow::anyhow!("triage: {}", error_text(&e)))
}

fn print_rules(r: &TriageRules, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(r);
    }
    if r.rules.is_empty() {
        out!("no triage rules ({})", safe(&r.file));
    }
    for (i, rule) in r.rules.iter().enumerate() {
        out!(
            "{i:>3}  {:<24}  {:<16}  {}{}{}",
            safe(&rule.name),
            safe(&rule.category),
            rule.message
                .as_deref()
                .map_or(String::new(), |m| format!("message /{}/ ", safe(m))),
            rule.log
                .as_deref()
                .map_or(String::new(), |m| format!("log /{}/ ", safe(m))),
            rule.issue
                .as_deref()
                .map_or(String::new(), |m| format!("-> {}", safe(m)))
        );
    }
    Ok(())
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let session = Session::reading(ctx)?;
    match args.cmd {
        TriageCmd::List { json } => match call(&session, Request::TriageRules)? {
            Response::TriageRules(r) => print_rules(&r, json)?,
            other => return Err(unexpected("triage_rules", other)),
        },
        TriageCmd::Add {
            name,
            category,
            message,
            log,
            issue,
            position,
            json,
        } => {
            let rule = TriageRule {
                name,
                category,
                message,
                log,
                issue,
            };
            match call(&session, Request::AddTriageRule { rule, position })? {
                Response::AddTriageRule(r) => print_rules(&r, json)?,
                other => return Err(unexpected("add_triage_rule", other)),
            }
        }
        TriageCmd::Remove { name, json } => {
            match call(&session, Request::RemoveTriageRule { name })? {
                Response::RemoveTriageRule(r) => print_rules(&r, json)?,
                other => return Err(unexpected("remove_triage_rule", other)),
            }
        }
        TriageCmd::Apply {
            run: Some(run_id),
            json,
            ..
        } => match call(&session, Request::RunTriage { run_id })? {
            Response::RunTriage(rows) => {
                if json {
                    print_json(&rows)?;
                    return Ok(0);
                }
                if rows.is_empty() {
                    out!("no failures");
                }
                for f in &rows {
                    out!(
                        "{:<24}  {:<12}  {:<10}  {:<16}  {}{}",
                        safe(&f.task),
                        safe(f.lane.as_deref().unwrap_or("-")),
                        safe(f.result.as_deref().unwrap_or("-")),
                        safe(f.category.as_deref().unwrap_or("(unknown)")),
                        safe(f.message.as_deref().unwrap_or("")),
                        f.issue
                            .as_deref()
                            .map_or(String::new(), |i| format!("  -> {}", safe(i)))
                    );
                }
            }
            other => return Err(unexpected("run_triage", other)),
        },
        TriageCmd::Apply {
            run: None,
            pack,
            last,
            json,
        } => match call(
            &session,
            Request::TriageSummary {
                pack,
                last_runs: last.max(1),
            },
        )? {
            Response::TriageSummary(s) => {
                if json {
                    print_json(&s)?;
                    return Ok(0);
                }
                out!(
                    "{} failures in {} runs, {} known{}",
                    s.failures,
                    s.runs,
                    s.known,
                    if s.truncated {
                        " (older runs not counted)"
                    } else {
                        ""
                    }
                );
                for c in &s.categories {
                    out!("{:>6}  {}", c.count, safe(&c.category));
                }
                out!("{:>6}  (unknown)", s.failures - s.known);
            }
            other => return Err(unexpected("triage_summary", other)),
        },
    }
    Ok(0)
}
