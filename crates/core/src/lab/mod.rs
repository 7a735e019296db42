//! The lab inventory: ATS racks and their slots, DUTs with searchable attributes and a
//! location, and lab resources (exclusive, or shared with a capacity) with their current
//! configuration. Loaded from a YAML lab file; every DUT and resource becomes a resource
//! of the reservation book.

pub mod health;
mod search;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::diag::Diagnostic;
use crate::doc::{self, Located};
use crate::model::DutTarget;
use crate::reserve::{ReservationMode, ResourceKind, ResourceSpec};

pub use health::{HealthCheck, HealthDue};
pub use search::{DutQuery, SearchError, SearchField};

/// The demo lab shipped with Testbay (seeded as `<data dir>/lab.yaml` on first start).
pub const DEMO_LAB: &str = include_str!("../../../../lab/demo-lab.yaml");

/// A lab file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct LabFile {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// ATS racks (StormTest servers) and their slots.
    #[serde(default)]
    pub racks: Vec<Rack>,
    #[serde(default)]
    pub duts: Vec<Dut>,
    /// Lab resources tasks reserve (`exclusive_resources` / `shared_resources`).
    #[serde(default)]
    pub resources: Vec<LabResource>,
    /// Device health checks (LAVA), per DUT or per DUT model.
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
}

/// An ATS rack with slots numbered `1..=slots`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct Rack {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Number of slots, 1 to 1,024; slot numbers run from 1.
    #[schemars(range(min = 1, max = "crate::bounds::MAX_RACK_SLOTS"))]
    pub slots: u32,
    /// The rack's phases run on its rack agent (`testbay agent --rack NAME` on the
    /// machine wired to it), not on the server; with no agent connected a run on it
    /// could not start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agent: bool,
}

/// Where a DUT sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct Location {
    pub rack: String,
    /// Slot number, from 1 to the rack's `slots`.
    #[schemars(range(min = 1, max = "crate::bounds::MAX_RACK_SLOTS"))]
    pub slot: u32,
}

/// A device under test, with StormTest's searchable attributes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct Dut {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub serial: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub manufacturer: String,
    #[serde(default)]
    pub hardware_version: String,
    /// Generic type, e.g. `stb` or `router`.
    #[serde(default, rename = "type")]
    #[ts(rename = "type")]
    pub dut_type: String,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Rack and slot; absent for a DUT not in a rack.
    #[serde(default)]
    pub location: Option<Location>,
    /// Out of service: not offered to runs.
    #[serde(default)]
    pub offline: bool,
}

/// A lab resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct LabResource {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `exclusive` (one holder at a time) or `shared` (up to `capacity` holders).
    #[serde(default)]
    pub mode: ReservationMode,
    /// Shared resources only: how many may hold it at once, 1 to 10,000.
    #[serde(default)]
    #[schemars(range(min = 1, max = "crate::bounds::MAX_CAPACITY"))]
    pub capacity: Option<u32>,
    /// Current configuration.
    #[serde(default)]
    #[ts(type = "unknown")]
    pub config: Value,
}

impl LabResource {
    pub fn kind(&self) -> ResourceKind {
        match self.mode {
            ReservationMode::Exclusive => ResourceKind::Exclusive,
            ReservationMode::Shared => ResourceKind::Shared {
                capacity: self.capacity.unwrap_or(1),
            },
        }
    }
}

/// Why the ATS of a launch does not fit its DUTs (see [`Lab::launch_ats`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtsError {
    #[error("ATS `{ats}` is not a rack of the lab{}", rack_hint(suggestion, racks))]
    Unknown {
        ats: String,
        suggestion: Option<String>,
        racks: Vec<String>,
    },
    #[error("ATS `{ats}` does not hold DUT `{dut}`: {}", match rack {
        Some(r) => format!("it sits in rack `{r}`"),
        None => "it sits in no rack".to_string(),
    })]
    DutNotInAts {
        ats: String,
        dut: String,
        rack: Option<String>,
    },
}

fn rack_hint(suggestion: &Option<String>, racks: &[String]) -> String {
    let guess = suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    if racks.is_empty() {
        format!("{guess}; it has no racks")
    } else {
        format!("{guess}; its racks: {}", racks.join(", "))
    }
}

/// Every problem of a lab file, each with file and line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct LabErrors(pub Vec<Diagnostic>);

/// A loaded, checked lab.
#[derive(Debug, Clone, PartialEq)]
pub struct Lab {
    pub file: PathBuf,
    pub def: LabFile,
}

/// Load and check a lab file.
pub fn load(path: &Path) -> Result<Lab, LabErrors> {
    let bytes = doc::read_limited(path).map_err(|d| LabErrors(vec![d]))?;
    from_bytes(path, &bytes)
}

/// Parse and check lab text (`file` names it in diagnostics).
pub fn parse(file: &Path, text: &str) -> Result<Lab, LabErrors> {
    from_bytes(file, text.as_bytes())
}

/// Schema and semantic problems at once. A document with schema problems still gets the
/// semantic checks when it reads as a lab at all (a number out of its range does); where
/// both speak about one key, the semantic message is kept: it says more (`rack r has no
/// slots` rather than `must be at least 1`).
fn from_bytes(file: &Path, bytes: &[u8]) -> Result<Lab, LabErrors> {
    let mut schema_diags = match doc::parse_document::<LabFile>(file, bytes) {
        Ok(doc) => {
            let diags = check(&doc);
            if !diags.is_empty() {
                return Err(LabErrors(diags));
            }
            return Ok(Lab {
                file: doc.file,
                def: doc.value,
            });
        }
        Err(diags) => diags,
    };
    let as_lab = doc::parse_document::<Value>(file, bytes)
        .ok()
        .and_then(|raw| {
            let lab = serde_json::from_value::<LabFile>(raw.value.clone()).ok()?;
            Some(raw.map(|_| lab))
        });
    if let Some(doc) = as_lab {
        let semantic = check(&doc);
        schema_diags
            .retain(|d| d.key_path.is_none() || !semantic.iter().any(|s| s.key_path == d.key_path));
        schema_diags.extend(semantic);
        doc::sort_diags(&mut schema_diags);
    }
    Err(LabErrors(schema_diags))
}

/// Semantic checks a schema cannot express.
fn check(doc: &Located<LabFile>) -> Vec<Diagnostic> {
    let lab = &doc.value;
    let mut out = Vec::new();
    let mut racks: HashMap<&str, u32> = HashMap::new();
    for (i, r) in lab.racks.iter().enumerate() {
        if racks.contains_key(r.name.as_str()) {
            out.push(doc.diag(
                &format!("racks[{i}].name"),
                format!("rack `{}` is defined twice", r.name),
            ));
        } else {
            racks.insert(&r.name, r.slots);
        }
        if r.slots == 0 {
            out.push(doc.diag(
                &format!("racks[{i}].slots"),
                format!("rack `{}` has no slots; give it at least 1", r.name),
            ));
        }
    }
    let mut names: HashSet<&str> = HashSet::new();
    let mut slots: HashMap<(&str, u32), &str> = HashMap::new();
    for (i, d) in lab.duts.iter().enumerate() {
        if !names.insert(&d.name) {
            out.push(doc.diag(
                &format!("duts[{i}].name"),
                format!("DUT `{}` is defined twice", d.name),
            ));
        }
        let Some(loc) = &d.location else { continue };
        match racks.get(loc.rack.as_str()) {
            None => {
                let hint =
                    crate::diag::did_you_mean(&loc.rack, lab.racks.iter().map(|r| r.name.as_str()))
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                out.push(doc.diag(
                    &format!("duts[{i}].location.rack"),
                    format!(
                        "DUT `{}` is in rack `{}`, which is not in the lab{hint}",
                        d.name, loc.rack
                    ),
                ));
            }
            Some(&n) if loc.slot == 0 || loc.slot > n => out.push(doc.diag(
                &format!("duts[{i}].location.slot"),
                format!(
                    "DUT `{}` is in slot {} of rack `{}`, which has slots 1-{n}",
                    d.name, loc.slot, loc.rack
                ),
            )),
            Some(_) => {
                if let Some(other) = slots.insert((&loc.rack, loc.slot), &d.name) {
                    out.push(doc.diag(
                        &format!("duts[{i}].location"),
                        format!(
                            "DUT `{}` is in slot {} of rack `{}`, where `{other}` already is",
                            d.name, loc.slot, loc.rack
                        ),
                    ));
                }
            }
        }
    }
    for (i, h) in lab.health_checks.iter().enumerate() {
        match (&h.dut, &h.model) {
            (Some(d), None) if !names.contains(d.as_str()) => out.push(doc.diag(
                &format!("health_checks[{i}].dut"),
                format!("DUT `{d}` is not in the lab"),
            )),
            (None, Some(m)) if !lab.duts.iter().any(|d| &d.model == m) => out.push(doc.diag(
                &format!("health_checks[{i}].model"),
                format!("no DUT of the lab has model `{m}`"),
            )),
            (Some(_), None) | (None, Some(_)) => {}
            _ => out.push(doc.diag(
                &format!("health_checks[{i}]"),
                "name exactly one of `dut` and `model`".to_string(),
            )),
        }
        if h.pack.trim().is_empty() {
            out.push(doc.diag(
                &format!("health_checks[{i}].pack"),
                "name the health pack".to_string(),
            ));
        }
    }
    let mut res_names: HashSet<&str> = HashSet::new();
    for (i, r) in lab.resources.iter().enumerate() {
        if names.contains(r.name.as_str()) {
            out.push(doc.diag(&format!("resources[{i}].name"), format!("resource `{}` has the name of a DUT; names must be unique across DUTs and resources", r.name)));
        } else if !res_names.insert(&r.name) {
            out.push(doc.diag(
                &format!("resources[{i}].name"),
                format!("resource `{}` is defined twice", r.name),
            ));
        }
        match (r.mode, r.capacity) {
            (ReservationMode::Shared, Some(0)) => out.push(doc.diag(
                &format!("resources[{i}].capacity"),
                format!(
                    "shared resource `{}` has capacity 0; give it at least 1",
                    r.name
                ),
            )),
            (ReservationMode::Shared, None) => out.push(doc.diag(
                &format!("resources[{i}]"),
                format!("shared resource `{}` needs a `capacity`", r.name),
            )),
            (ReservationMode::Exclusive, Some(c)) if c != 1 => out.push(doc.diag(
                &format!("resources[{i}].capacity"),
                format!(
                    "resource `{}` is exclusive; `capacity` applies to shared resources only",
                    r.name
                ),
            )),
            _ => {}
        }
    }
    out
}

impl Lab {
    /// Everything the reservation book manages: each DUT (exclusive, its configuration is
    /// its location and attributes) and each lab resource.
    pub fn book_resources(&self) -> Vec<ResourceSpec> {
        self.def
            .duts
            .iter()
            .map(|d| ResourceSpec {
                name: d.name.clone(),
                kind: ResourceKind::Exclusive,
                config: serde_json::json!({
                    "rack": d.location.as_ref().map(|l| &l.rack),
                    "slot": d.location.as_ref().map(|l| l.slot),
                    "model": d.model,
                }),
            })
            .chain(self.def.resources.iter().map(|r| ResourceSpec {
                name: r.name.clone(),
                kind: r.kind(),
                config: r.config.clone(),
            }))
            .collect()
    }

    /// The ATS of a launch on `duts`. A named ATS must be a rack of this lab and hold every
    /// DUT. Without one the run takes the rack its DUTs sit in; DUTs in different racks
    /// (or some in none) give it no ATS: each lane runs on its own DUT's rack (its phases
    /// on that rack's agent, if it has one), and no `valid_ats` is checked. A DUT that is
    /// not in this lab counts by the rack it names itself.
    pub fn launch_ats(
        &self,
        ats: Option<&str>,
        duts: &[DutTarget],
    ) -> Result<Option<String>, AtsError> {
        let rack_of = |t: &DutTarget| -> Option<String> {
            match self.dut(&t.name) {
                Some(d) => d.location.as_ref().map(|l| l.rack.clone()),
                None => t.rack.clone(),
            }
        };
        if let Some(ats) = ats {
            if !self.def.racks.iter().any(|r| r.name == ats) {
                let racks: Vec<String> = self.def.racks.iter().map(|r| r.name.clone()).collect();
                return Err(AtsError::Unknown {
                    ats: ats.to_string(),
                    suggestion: crate::diag::did_you_mean(ats, racks.iter().map(String::as_str))
                        .map(str::to_string),
                    racks,
                });
            }
            for t in duts {
                let rack = rack_of(t);
                if rack.as_deref() != Some(ats) {
                    return Err(AtsError::DutNotInAts {
                        ats: ats.to_string(),
                        dut: t.name.clone(),
                        rack,
                    });
                }
            }
            return Ok(Some(ats.to_string()));
        }
        let racks: Vec<Option<String>> = duts.iter().map(rack_of).collect();
        match racks.split_first() {
            Some((first, rest)) if rest.iter().all(|r| r == first) => Ok(first.clone()),
            _ => Ok(None),
        }
    }

    /// The health check of DUT `name`: its own entry, else its model's.
    pub fn health_check(&self, name: &str) -> Option<&HealthCheck> {
        let dut = self.dut(name)?;
        let checks = &self.def.health_checks;
        checks
            .iter()
            .find(|h| h.dut.as_deref() == Some(name))
            .or_else(|| {
                checks
                    .iter()
                    .find(|h| h.dut.is_none() && h.model.as_deref() == Some(dut.model.as_str()))
            })
    }

    pub fn dut(&self, name: &str) -> Option<&Dut> {
        self.def.duts.iter().find(|d| d.name == name)
    }

    pub fn resource(&self, name: &str) -> Option<&LabResource> {
        self.def.resources.iter().find(|r| r.name == name)
    }

    /// DUTs matching every StormTest-style term (`Field==pattern`, `*` wildcards).
    pub fn find<S: AsRef<str>>(&self, terms: &[S]) -> Result<Vec<&Dut>, SearchError> {
        let q = DutQuery::parse(terms)?;
        Ok(self.def.duts.iter().filter(|d| q.matches(d)).collect())
    }
}

/// Write the demo lab to `path` unless a file is already there. Returns whether it wrote.
pub fn seed_demo(path: &Path) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, DEMO_LAB)?;
    Ok(true)
}
