//! The lab as the console shows it: racks with their slots' state, DUTs, resources, and
//! who holds or waits for what (from the reservation book).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::diag::Diagnostic;
use crate::lab::{Dut, Lab};
use crate::pack::LoadedPack;
use crate::plan::pattern_matches;
use crate::reserve::{Holder, ReservationStatus, ReservationView, ResourceHolds, ResourceKind};

/// State of a rack slot, for the rack view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// No DUT, or a DUT nobody holds.
    Free,
    /// Held by an operator (a debug hold).
    Held,
    /// Held by a run.
    InUse,
    /// The DUT is out of service.
    Offline,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct SlotView {
    pub slot: u32,
    pub dut: Option<String>,
    pub model: Option<String>,
    pub state: SlotState,
    /// Who holds the DUT now (`run <id>/<lane>` or `operator <name>`).
    pub holder: Option<String>,
    /// End of the current hold.
    pub until: Option<EpochMs>,
    /// Reservations waiting for this DUT.
    pub waiting: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct RackView {
    pub name: String,
    pub description: String,
    pub slots: Vec<SlotView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ResourceView {
    pub name: String,
    pub description: String,
    pub kind: ResourceKind,
    /// Units held now.
    pub in_use: u32,
    #[ts(type = "unknown")]
    pub config: Value,
}

/// The lab screen: inventory with live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct LabView {
    /// The lab file; none when the console runs without a lab.
    pub file: Option<String>,
    pub name: String,
    pub description: String,
    pub racks: Vec<RackView>,
    pub duts: Vec<Dut>,
    pub resources: Vec<ResourceView>,
    /// Problems of the lab file, each with file and line; the lab is empty while any.
    pub diagnostics: Vec<Diagnostic>,
    /// Why reservations are not live here (another console owns the book), if so.
    pub book_note: Option<String>,
    /// The stored health of the lab's DUTs (those never checked are not listed).
    #[serde(default)]
    pub health: Vec<crate::store::DutHealth>,
}

/// Who holds what, who is booked and who waits, per resource, at `now`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Reservations {
    pub now: EpochMs,
    pub resources: Vec<ResourceHolds>,
}

/// Group a flat reservation list (as another process's book stored it) by resource.
pub fn holds_from_list(lab: &Lab, list: Vec<ReservationView>) -> Vec<ResourceHolds> {
    let mut by: BTreeMap<String, ResourceHolds> = BTreeMap::new();
    for spec in lab.book_resources() {
        by.insert(
            spec.name.clone(),
            ResourceHolds {
                resource: spec.name,
                kind: spec.kind,
                holders: vec![],
                booked: vec![],
                waiters: vec![],
            },
        );
    }
    for r in list {
        if let Some(h) = by.get_mut(&*r.resource) {
            match r.status {
                ReservationStatus::Held => h.holders.push(r),
                ReservationStatus::Booked => h.booked.push(r),
                ReservationStatus::Waiting => h.waiters.push(r),
            }
        }
    }
    by.into_values().collect()
}

pub fn lab_view(lab: &Lab, holds: &[ResourceHolds], book_note: Option<String>) -> LabView {
    let holds_of = |name: &str| holds.iter().find(|h| h.resource == name);
    let racks = lab
        .def
        .racks
        .iter()
        .map(|rack| RackView {
            name: rack.name.clone(),
            description: rack.description.clone(),
            slots: (1..=rack.slots)
                .map(|slot| {
                    let dut = lab.def.duts.iter().find(|d| {
                        d.location
                            .as_ref()
                            .is_some_and(|l| l.rack == rack.name && l.slot == slot)
                    });
                    let h = dut.and_then(|d| holds_of(&d.name));
                    let current = h.and_then(|h| h.holders.first());
                    let state = match (dut, current) {
                        (Some(d), _) if d.offline => SlotState::Offline,
                        (Some(_), Some(r)) => match &*r.holder {
                            Holder::Run { .. } => SlotState::InUse,
                            Holder::Operator { .. } => SlotState::Held,
                        },
                        _ => SlotState::Free,
                    };
                    SlotView {
                        slot,
                        dut: dut.map(|d| d.name.clone()),
                        model: dut.map(|d| d.model.clone()),
                        state,
                        holder: current.map(|r| r.holder.to_string()),
                        until: current.map(|r| r.end),
                        waiting: h.map_or(0, |h| (h.waiters.len() + h.booked.len()) as u32),
                    }
                })
                .collect(),
        })
        .collect();
    let resources = lab
        .def
        .resources
        .iter()
        .map(|r| ResourceView {
            name: r.name.clone(),
            description: r.description.clone(),
            kind: r.kind(),
            in_use: holds_of(&r.name).map_or(0, |h| h.holders.len() as u32),
            config: r.config.clone(),
        })
        .collect();
    LabView {
        file: Some(lab.file.display().to_string()),
        name: lab.def.name.clone(),
        description: lab.def.description.clone(),
        racks,
        duts: lab.def.duts.clone(),
        resources,
        diagnostics: vec![],
        book_note,
        health: Vec::new(),
    }
}

/// Whether `dut` (at `ats`) is a target of `pack`: among the tasks that restrict
/// `valid_duts` (`valid_ats`), at least one accepts it by name or model, matched as the
/// run's plan matches them. Tasks valid for `any` do not narrow it; a pack whose tasks
/// are all `any` takes every DUT. (Tasks a DUT does not suit are Skipped in the run.)
pub fn dut_valid_for(pack: &LoadedPack, dut: &Dut, ats: Option<&str>) -> bool {
    let restricting = |list: &[String]| !list.iter().any(|p| p.eq_ignore_ascii_case("any"));
    let accepts = |lists: Vec<&Vec<String>>, values: &[&str]| {
        let restricted: Vec<_> = lists.into_iter().filter(|l| restricting(l)).collect();
        restricted.is_empty()
            || restricted.iter().any(|l| {
                l.iter()
                    .any(|p| values.iter().any(|v| pattern_matches(p, v)))
            })
    };
    let tasks = || pack.tasks.values().map(|t| &t.def);
    accepts(
        tasks().map(|t| &t.valid_duts).collect(),
        &[&dut.name, &dut.model],
    ) && ats.is_none_or(|a| accepts(tasks().map(|t| &t.valid_ats).collect(), &[a]))
}
