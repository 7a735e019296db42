//! `testbay lab`: show and search the lab inventory, hold and release DUTs and resources
//! by hand, list who holds what and who waits.
//!
//! Through the console like the other transports: `hold` and `release` dispatch
//! `Request::Hold` / `Request::Release` (the console owns the book for the moment, or
//! posts to the process that does), `holds` and `show` ask for `Request::Reservations`
//! from a console that never owns the book (a look takes nothing over). None of them
//! marks the runs of dead consoles interrupted: that is left to the next run, which says
//! so. The lab file itself is read here (`lab::load`): `show` and `find` check and print
//! the file as written, with every problem named.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::Subcommand;
use testbay_engine::api::{
    ApiError, BookUse, ConsoleOptions, ConsolePaths, ErrorCode, Health, HealthReport, Request,
    ResId, ReservationMode, ReservationStatus, ReservationView, Response,
};
use testbay_engine::lab::{self, Lab};
use testbay_engine::timefmt::{fmt_ms, parse_duration_ms, parse_utc};

use super::Ctx;
use crate::console::{error_text, unexpected, Session};

mod viewed;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: LabCmd,
}

#[derive(Subcommand)]
enum LabCmd {
    /// Check the lab file; list racks and slots, DUTs and resources with who holds them
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Find DUTs with StormTest terms, e.g. 'ModelName==TP*' 'Manufacturer==Acme'
    /// (fields: Name, Description, SerialNumber, ModelName, Manufacturer, HardwareVersion,
    /// TypeName, Rack, Slot, Tag; `*` matches anything)
    Find {
        #[arg(required = true, value_name = "FIELD==PATTERN")]
        terms: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Hold a DUT or resource by hand for a time window
    Hold {
        /// DUT or resource name
        target: String,
        /// How long, e.g. 30m, 2h, 1h30m
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Who holds it [default: $USER]
        #[arg(long)]
        by: Option<String>,
        /// Start, UTC `YYYY-MM-DD HH:MM` [default: now]
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Fail instead of waiting for the next free window
        #[arg(long)]
        no_wait: bool,
    },
    /// Release a hold or reservation by id
    Release { id: String },
    /// Who holds what, since when, until when, and who waits
    Holds {
        #[arg(long)]
        json: bool,
    },
    /// A DUT's health (good, bad, unknown), its health check and history; with
    /// --restore, put a bad DUT back in service, saying why
    Health {
        dut: String,
        /// Mark the DUT good again (needs --note)
        #[arg(long, requires = "note")]
        restore: bool,
        /// Why the DUT is good again
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    if ctx.server.is_some() {
        // The lab is the server's: its file is read there, everything is asked of it.
        return ask(args.cmd, ctx);
    }
    let Some(path) = ctx.lab.clone() else {
        bail!(
            "no lab file: pass --lab FILE or put one at {}",
            ctx.data_dir.join("lab.yaml").display()
        );
    };
    let lab = match lab::load(&path) {
        Ok(l) => l,
        Err(errs) => {
            for d in &errs.0 {
                say!("{d}");
            }
            say!("{}: {} problem(s)", path.display(), errs.0.len());
            return Ok(1);
        }
    };
    match args.cmd {
        LabCmd::Show { json } => show(ctx, &lab, json),
        LabCmd::Find { terms, json } => {
            let found = lab.find(&terms)?;
            if json {
                crate::term::print_json(&found)?;
            } else if found.is_empty() {
                out!("no DUT matches");
            } else {
                print_duts(&found);
            }
            Ok(if found.is_empty() { 3 } else { 0 })
        }
        cmd => ask(cmd, ctx),
    }
}

/// A subcommand answered by the console alone. `show` and `find` come here only for a
/// lab server's console (locally they check and print the file as written).
fn ask(cmd: LabCmd, ctx: &Ctx) -> anyhow::Result<i32> {
    match cmd {
        LabCmd::Show { json } => viewed::show(&lab_session(ctx, BookUse::Client)?, json),
        LabCmd::Find { terms, json } => {
            viewed::find(&lab_session(ctx, BookUse::Client)?, &terms, json)
        }
        LabCmd::Hold {
            target,
            duration,
            by,
            from,
            no_wait,
        } => {
            let duration_ms = parse_duration_ms(&duration)
                .filter(|d| *d > 0)
                .with_context(|| {
                    format!("--for {duration:?}: give a duration such as 30m, 2h or 1h30m")
                })?;
            let from = from
                .map(|f| {
                    parse_utc(&f).with_context(|| {
                        format!("--from {f:?}: give a UTC time such as 2026-11-21 14:30")
                    })
                })
                .transpose()?;
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "operator".into());
            let request = Request::Hold {
                resource: target,
                by,
                duration_s: duration_ms as f64 / 1000.0,
                from_ms: from,
                next_available: !no_wait,
                mode: None,
                config: None,
                lease_s: None,
            };
            let v = match lab_session(ctx, BookUse::Own)?.call(request) {
                Ok(Response::Hold(v)) => v,
                Ok(other) => return Err(unexpected("hold", other)),
                // Bad arguments, an unknown DUT or resource: exit 2, naming the option.
                Err(
                    e @ ApiError {
                        code: ErrorCode::InvalidRequest | ErrorCode::TooLarge | ErrorCode::NotFound,
                        ..
                    },
                ) => bail!("{}", flag_named(&error_text(&e))),
                Err(e) => {
                    say!("{}", error_text(&e));
                    return Ok(1);
                }
            };
            match v.status {
                ReservationStatus::Held => out!(
                    "held {} (id {}) by {} until {}",
                    v.resource,
                    v.id,
                    v.holder,
                    fmt_ms(v.end)
                ),
                ReservationStatus::Waiting => out!(
                    "{} is busy; hold {} by {} starts {} and ends {}",
                    v.resource,
                    v.id,
                    v.holder,
                    fmt_ms(v.start),
                    fmt_ms(v.end)
                ),
                ReservationStatus::Booked => out!(
                    "booked {} (id {}) by {} from {} until {}",
                    v.resource,
                    v.id,
                    v.holder,
                    fmt_ms(v.start),
                    fmt_ms(v.end)
                ),
            }
            Ok(0)
        }
        LabCmd::Release { id } => {
            let id: ResId = id
                .parse()
                .with_context(|| format!("`{id}` is not a reservation id"))?;
            match lab_session(ctx, BookUse::Own)?.call(Request::Release { id }) {
                Ok(Response::Release { id }) => {
                    out!("released {id}");
                    Ok(0)
                }
                Ok(other) => Err(unexpected("release", other)),
                Err(e) if e.code == ErrorCode::InvalidRequest => bail!("{}", error_text(&e)),
                Err(e) => {
                    say!("{}", error_text(&e));
                    Ok(1)
                }
            }
        }
        LabCmd::Holds { json } => {
            let live = stored_live(ctx)?;
            if json {
                crate::term::print_json(&live)?;
            } else {
                print_holds(&live);
            }
            Ok(0)
        }
        LabCmd::Health {
            dut,
            restore,
            note,
            json,
        } => {
            let session = lab_session(ctx, BookUse::Client)?;
            let request = match (restore, note) {
                (true, Some(note)) => Request::RestoreDut { dut, note },
                _ => Request::DutHealth { dut },
            };
            let report = match session.call(request) {
                Ok(Response::DutHealth(r) | Response::RestoreDut(r)) => r,
                Ok(other) => return Err(unexpected("dut_health", other)),
                Err(e) => bail!("{}", error_text(&e)),
            };
            if json {
                crate::term::print_json(&report)?;
            } else {
                print_health(&report);
            }
            Ok(if report.health.health == Health::Bad {
                1
            } else {
                0
            })
        }
    }
}

fn print_health(r: &HealthReport) {
    let h = &r.health;
    out!(
        "{}: {}{}{}",
        &h.dut,
        h.health.as_str(),
        h.since_ms
            .map(|t| format!(" since {}", fmt_ms(t)))
            .unwrap_or_default(),
        if r.checking {
            " (a health check is running)"
        } else {
            ""
        }
    );
    if let Some(reason) = &h.reason {
        out!("  why: {}", reason);
    }
    match &r.check {
        Some(c) => out!(
            "  health check: pack {}{}, every {}s{}; last {}; {} infrastructure failure(s) in a row",
            &c.pack,
            c.group
                .as_deref()
                .map(|g| format!(" group {}", g))
                .unwrap_or_default(),
            c.interval,
            c.after_failures
                .map(|n| format!(", early after {n} infrastructure failures"))
                .unwrap_or_default(),
            h.last_check_ms.map(fmt_ms).unwrap_or_else(|| "never".into()),
            h.infra_failures
        ),
        None => out!("  no health check in the lab file"),
    }
    for c in &r.history {
        out!(
            "  {}  {:<7}  {}{}{}",
            fmt_ms(c.ts_ms),
            c.health.as_str(),
            &c.reason,
            c.run_id
                .as_deref()
                .map(|r| format!(" [run {r}]"))
                .unwrap_or_default(),
            c.note
                .as_deref()
                .map(|n| format!(" — note: {}", n))
                .unwrap_or_default()
        );
    }
}

/// The console of a `lab` subcommand: the lab and its book, no packs.
fn lab_session(ctx: &Ctx, book: BookUse) -> anyhow::Result<Session> {
    let paths = ConsolePaths {
        pack_roots: Vec::new(),
        ..ctx.paths.clone()
    };
    let options = ConsoleOptions {
        book,
        owner_label: "testbay lab",
        watch_packs: false,
        recover: false,
        serve_queue: false,
        ..ctx.options()
    };
    Session::open(ctx, paths, options)
}

/// A hold's error with the request's keys named as the options that set them.
fn flag_named(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duration_s: ") {
        format!("--for: {rest}")
    } else if let Some(rest) = message.strip_prefix("from_ms: ") {
        format!("--from: {rest}")
    } else {
        message.to_string()
    }
}

/// Live reservations as the book's owner (or its last one) stored them, minus any whose
/// lease or window has run out since.
fn stored_live(ctx: &Ctx) -> anyhow::Result<Vec<ReservationView>> {
    let session = lab_session(ctx, BookUse::Client)?;
    let r = match session.call(Request::Reservations) {
        Ok(Response::Reservations(r)) => r,
        Ok(other) => return Err(unexpected("reservations", other)),
        Err(e) => bail!("{}", error_text(&e)),
    };
    let now = r.now;
    Ok(r.resources
        .into_iter()
        .flat_map(|h| h.holders.into_iter().chain(h.booked).chain(h.waiters))
        .filter(|v| v.end > now && (v.status != ReservationStatus::Held || v.expires > now))
        .collect())
}

fn print_duts(duts: &[&lab::Dut]) {
    out!(
        "{:<10} {:<10} {:<9} {:<10} {:<8} {:<8} {:<6} TAGS",
        "NAME",
        "MODEL",
        "MAKER",
        "SERIAL",
        "HW",
        "RACK",
        "SLOT"
    );
    for d in duts {
        let (rack, slot) = d
            .location
            .as_ref()
            .map_or(("-".to_string(), "-".to_string()), |l| {
                (l.rack.clone(), l.slot.to_string())
            });
        out!(
            "{:<10} {:<10} {:<9} {:<10} {:<8} {:<8} {:<6} {}{}",
            d.name,
            d.model,
            d.manufacturer,
            d.serial,
            d.hardware_version,
            rack,
            slot,
            d.tags.join(","),
            if d.offline { "  (offline)" } else { "" }
        );
    }
}

fn holder_of(live: &[ReservationView], name: &str) -> String {
    live.iter()
        .find(|v| &*v.resource == name && v.status == ReservationStatus::Held)
        .map(|v| format!("held by {} until {}", v.holder, fmt_ms(v.end)))
        .unwrap_or_else(|| "free".into())
}

fn show(ctx: &Ctx, lab: &Lab, json: bool) -> anyhow::Result<i32> {
    if json {
        crate::term::print_json(&lab.def)?;
        return Ok(0);
    }
    let live = stored_live(ctx)?;
    out!("lab {} ({})", lab.def.name, lab.file.display());
    for rack in &lab.def.racks {
        out!();
        out!(
            "rack {} — {} slots{}",
            rack.name,
            rack.slots,
            if rack.description.is_empty() {
                String::new()
            } else {
                format!(", {}", rack.description)
            }
        );
        for slot in 1..=rack.slots {
            match lab.def.duts.iter().find(|d| {
                d.location
                    .as_ref()
                    .is_some_and(|l| l.rack == rack.name && l.slot == slot)
            }) {
                Some(d) => out!(
                    "  slot {slot:>2}  {:<8} {:<8} {:<8} {}",
                    d.name,
                    d.model,
                    d.manufacturer,
                    if d.offline {
                        "offline".to_string()
                    } else {
                        holder_of(&live, &d.name)
                    }
                ),
                None => out!("  slot {slot:>2}  (empty)"),
            }
        }
    }
    let loose: Vec<_> = lab
        .def
        .duts
        .iter()
        .filter(|d| d.location.is_none())
        .collect();
    if !loose.is_empty() {
        out!();
        out!("not in a rack:");
        for d in loose {
            out!(
                "  {:<8} {:<8} {}",
                d.name,
                d.model,
                holder_of(&live, &d.name)
            );
        }
    }
    out!();
    out!("resources:");
    for r in &lab.def.resources {
        let kind = match r.capacity {
            Some(c) if r.mode == ReservationMode::Shared => {
                let used = live
                    .iter()
                    .filter(|v| {
                        &*v.resource == r.name.as_str() && v.status == ReservationStatus::Held
                    })
                    .count();
                format!("shared {used}/{c} in use")
            }
            _ => holder_of(&live, &r.name),
        };
        out!("  {:<14} {:<24} config {}", r.name, kind, r.config);
    }
    Ok(0)
}

fn print_holds(live: &[ReservationView]) {
    if live.is_empty() {
        out!("nothing is held or booked");
        return;
    }
    let mut per: BTreeMap<&str, Vec<&ReservationView>> = BTreeMap::new();
    for v in live {
        per.entry(&v.resource).or_default().push(v);
    }
    out!(
        "{:<14} {:<6} {:<8} {:<32} {:<21} {:<21} LEASE",
        "RESOURCE",
        "ID",
        "STATUS",
        "WHO",
        "SINCE / FROM",
        "UNTIL"
    );
    for (res, mut vs) in per {
        vs.sort_by_key(|v| (v.status != ReservationStatus::Held, v.start, v.id));
        for v in vs {
            let status = match v.status {
                ReservationStatus::Held => "holds",
                ReservationStatus::Booked => "booked",
                ReservationStatus::Waiting => "waits",
            };
            let since = v.claimed_at.unwrap_or(v.start);
            let lease = match (v.status, v.lease_ms) {
                (ReservationStatus::Held, Some(_)) => format!("renew by {}", fmt_ms(v.expires)),
                (ReservationStatus::Held, None) => "-".into(),
                _ if !v.auto_claim => format!("claim by {}", fmt_ms(v.expires)),
                _ => "starts by itself".into(),
            };
            out!(
                "{:<14} {:<6} {:<8} {:<32} {:<21} {:<21} {lease}",
                res,
                v.id.to_string(),
                status,
                v.holder.to_string(),
                fmt_ms(since),
                fmt_ms(v.end)
            );
        }
    }
}
