//! `testbay schedule`: add, list, show, pause, resume and remove stored schedules.
//! Through a console that starts nothing and fires nothing: the schedule goes to the
//! store, where the console serving the data directory (`testbay serve`, the desktop
//! app) reads it within a second and fires it.

use anyhow::bail;
use clap::Subcommand;
use serde_json::{json, Map, Value};
use testbay_engine::api::{
    BookUse, ConsoleOptions, Request, Response, ScheduleDef, ScheduleDetail, ScheduleView,
};
use testbay_engine::timefmt::fmt_ms;

use super::Ctx;
use crate::console::{error_text, unexpected, Session};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: ScheduleCmd,
}

// Parsed once per process: the size of the `add` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum ScheduleCmd {
    /// Store a new schedule; prints its id
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        pack: String,
        /// A group to run, in order; repeat for more [default: every group]
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// A DUT by name; repeat for more
        #[arg(long = "dut", value_name = "DUT")]
        duts: Vec<String>,
        /// StormTest DUT search resolved at each firing, e.g. 'ModelName==TP*'
        #[arg(long, value_name = "TERMS")]
        dut_search: Option<String>,
        #[arg(long = "type", value_parser = ["oneoff", "daily", "weekly", "weekdays", "weekends", "loop"])]
        kind: String,
        /// First firing, local `YYYY-MM-DDTHH:MM` in the zone [default: now]
        #[arg(long)]
        start: Option<String>,
        /// No firing after this local date and time
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        repeat_count: Option<u32>,
        /// daily: every how many days
        #[arg(long)]
        repeat_rate: Option<u32>,
        /// weekly: the days, e.g. mon,wed
        #[arg(long, value_delimiter = ',')]
        days: Vec<String>,
        /// IANA time zone, e.g. Europe/Paris
        #[arg(long = "tz", default_value = "UTC", value_name = "ZONE")]
        tz: String,
        /// Daily window `HH:MM-HH:MM` outside which no run starts
        #[arg(long)]
        window: Option<String>,
        /// Firings missed while the console was down: once or skip
        #[arg(long, value_parser = ["once", "skip"])]
        catch_up: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every schedule: id, name, type, next firing, runs
    List {
        #[arg(long)]
        json: bool,
    },
    /// One schedule with its history
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    Pause {
        id: String,
        #[arg(long)]
        json: bool,
    },
    Resume {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule (its runs stay)
    Rm {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let session = Session::open(
        ctx,
        ctx.paths.clone(),
        ConsoleOptions {
            book: BookUse::Client,
            owner_label: "testbay schedule",
            watch_packs: false,
            recover: false,
            serve_queue: false,
            ..ctx.options()
        },
    )?;
    let (request, json) = match args.cmd {
        ScheduleCmd::Add {
            name,
            pack,
            groups,
            duts,
            dut_search,
            kind,
            start,
            end,
            repeat_count,
            repeat_rate,
            days,
            tz,
            window,
            catch_up,
            json,
        } => {
            let start = start.unwrap_or_else(|| now_in(&tz));
            let mut when = Map::new();
            when.insert("type".into(), json!(kind));
            when.insert("start".into(), json!(start));
            when.insert("time_zone".into(), json!(tz));
            if let Some(e) = end {
                when.insert("end".into(), json!(e));
            }
            if let Some(n) = repeat_count {
                when.insert("repeat_count".into(), json!(n));
            }
            if let Some(n) = repeat_rate {
                when.insert("repeat_rate".into(), json!(n));
            }
            if !days.is_empty() {
                when.insert("days".into(), json!(days));
            }
            if let Some(w) = window {
                let Some((from, to)) = w.split_once('-') else {
                    bail!("--window {w:?}: give it as HH:MM-HH:MM");
                };
                when.insert("window".into(), json!({"from": from, "to": to}));
            }
            if let Some(c) = catch_up {
                when.insert("catch_up".into(), json!(c));
            }
            let def = json!({
                "name": name, "pack": pack, "groups": groups, "duts": duts,
                "dut_search": dut_search, "when": Value::Object(when),
            });
            let def: ScheduleDef = serde_json::from_value(def).map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    e.to_string().replace("unknown variant", "unknown value")
                )
            })?;
            (Request::AddSchedule(def), json)
        }
        ScheduleCmd::List { json } => (Request::ListSchedules, json),
        ScheduleCmd::Show { id, json } => (Request::GetSchedule { id }, json),
        ScheduleCmd::Pause { id, json } => (Request::PauseSchedule { id }, json),
        ScheduleCmd::Resume { id, json } => (Request::ResumeSchedule { id }, json),
        ScheduleCmd::Rm { id, json } => (Request::RemoveSchedule { id }, json),
    };
    match session.call(request) {
        Ok(Response::AddSchedule { id }) => {
            if json {
                crate::term::print_json(&json!({ "id": id }))?;
            } else {
                out!("{id}");
            }
        }
        Ok(Response::RemoveSchedule { id }) => {
            if json {
                crate::term::print_json(&json!({ "removed": id }))?;
            } else {
                out!("removed {id}");
            }
        }
        Ok(Response::ListSchedules(list)) => {
            if json {
                crate::term::print_json(&list)?;
            } else if list.is_empty() {
                out!("no schedules");
            } else {
                for s in &list {
                    print_schedule(s);
                }
            }
        }
        Ok(Response::GetSchedule(d)) => {
            if json {
                crate::term::print_json(&d)?;
            } else {
                print_detail(&d);
            }
        }
        Ok(Response::PauseSchedule(s) | Response::ResumeSchedule(s)) => {
            if json {
                crate::term::print_json(&s)?;
            } else {
                print_schedule(&s);
            }
        }
        Ok(other) => return Err(unexpected("schedule", other)),
        Err(e) => bail!("{}", error_text(&e)),
    }
    Ok(0)
}

/// Now as a local time in `tz` (UTC when the zone is unknown: the console names the
/// zone then).
fn now_in(tz: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let Some(now) = chrono::DateTime::from_timestamp_millis(ms) else {
        return fmt_ms(ms);
    };
    match tz.parse::<chrono_tz::Tz>() {
        Ok(z) => now
            .with_timezone(&z)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string(),
        Err(_) => now.format("%Y-%m-%dT%H:%M:%S").to_string(),
    }
}

fn print_schedule(s: &ScheduleView) {
    let next = s.next_firing_ms.map(fmt_ms).unwrap_or_else(|| {
        if s.paused {
            "paused".into()
        } else {
            "-".into()
        }
    });
    out!(
        "{}  {}  {}  next {}  fired {}  runs {}",
        s.id,
        s.name,
        s.kind,
        next,
        s.fired,
        s.run_ids.len()
    );
}

fn print_detail(d: &ScheduleDetail) {
    print_schedule(&d.schedule);
    for f in &d.history {
        out!(
            "  {}  {:<9}  {}  {}",
            fmt_ms(f.at_ms),
            f.kind,
            f.run_id.as_deref().unwrap_or("-"),
            f.note.as_deref().unwrap_or("")
        );
    }
}
