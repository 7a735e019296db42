//! `lab show` and `lab find` as a lab server's console answers them (`get_lab`,
//! `search_duts`): the server reads its own lab file.

use anyhow::bail;
use testbay_engine::api::{LabView, Request, Response, SlotState};
use testbay_engine::timefmt::fmt_ms;

use crate::console::{error_text, unexpected, Session};

/// Racks and slots with who holds what, and the resources in use.
pub(super) fn show(session: &Session, json: bool) -> anyhow::Result<i32> {
    let lab: LabView = match session.call(Request::GetLab) {
        Ok(Response::GetLab(v)) => *v,
        Ok(other) => return Err(unexpected("get_lab", other)),
        Err(e) => bail!("{}", error_text(&e)),
    };
    if json {
        crate::term::print_json(&lab)?;
        return Ok(0);
    }
    for d in &lab.diagnostics {
        say!("{d}");
    }
    match &lab.file {
        Some(file) => out!("lab {} ({file}, on the server)", lab.name),
        None => out!("the lab server runs without a lab file"),
    }
    if let Some(note) = &lab.book_note {
        out!("note: {note}");
    }
    for rack in &lab.racks {
        out!();
        out!(
            "rack {} — {} slots{}",
            rack.name,
            rack.slots.len(),
            if rack.description.is_empty() {
                String::new()
            } else {
                format!(", {}", rack.description)
            }
        );
        for s in &rack.slots {
            let Some(dut) = &s.dut else {
                out!("  slot {:>2}  (empty)", s.slot);
                continue;
            };
            let state = match (s.state, &s.holder) {
                (SlotState::Offline, _) => "offline".to_string(),
                (SlotState::Free, _) | (_, None) => "free".to_string(),
                (_, Some(holder)) => format!(
                    "held by {holder}{}",
                    s.until
                        .map(|t| format!(" until {}", fmt_ms(t)))
                        .unwrap_or_default()
                ),
            };
            out!(
                "  slot {:>2}  {:<8} {:<8} {}",
                s.slot,
                dut,
                s.model.as_deref().unwrap_or("-"),
                state
            );
        }
    }
    if !lab.resources.is_empty() {
        out!();
        out!("resources");
        for r in &lab.resources {
            out!("  {:<16} {:?}, {} in use", r.name, r.kind, r.in_use);
        }
    }
    Ok(if lab.diagnostics.is_empty() { 0 } else { 1 })
}

/// DUTs matching StormTest terms, as the server's lab has them; exit 3 when none.
pub(super) fn find(session: &Session, terms: &[String], json: bool) -> anyhow::Result<i32> {
    let request = Request::SearchDuts {
        query: terms.join(" "),
        pack: None,
        ats: None,
    };
    let found = match session.call(request) {
        Ok(Response::SearchDuts(d)) => d,
        Ok(other) => return Err(unexpected("search_duts", other)),
        Err(e) => bail!("{}", error_text(&e)),
    };
    if json {
        crate::term::print_json(&found)?;
    } else if found.is_empty() {
        out!("no DUT matches");
    } else {
        super::print_duts(&found.iter().collect::<Vec<_>>());
    }
    Ok(if found.is_empty() { 3 } else { 0 })
}
