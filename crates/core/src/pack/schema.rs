//! JSON Schemas of the pack author's files, generated from the model types.
//!
//! `schemas/*.schema.json` in the repository are these values pretty-printed; the test
//! `schemas::committed_schemas_match_code` fails when they drift and rewrites them when run
//! with `TESTBAY_BLESS=1`.

use serde_json::Value;

use super::model::{GlobalParams, PackDef, Reporting, TaskDef, TaskReturn};
pub use crate::schema::schema_of;

/// Every committed schema: (file name under `schemas/`, schema).
pub fn all_schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("pack.schema.json", schema_of::<PackDef>()),
        ("task.schema.json", schema_of::<TaskDef>()),
        ("global-params.schema.json", schema_of::<GlobalParams>()),
        ("task-return.schema.json", schema_of::<TaskReturn>()),
        ("reporting.schema.json", schema_of::<Reporting>()),
        ("lab.schema.json", schema_of::<crate::lab::LabFile>()),
        (
            "schedule.schema.json",
            schema_of::<crate::schedule::ScheduleSpec>(),
        ),
        (
            "settings.schema.json",
            schema_of::<crate::settings::ConsoleSettings>(),
        ),
        (
            "reporter.schema.json",
            schema_of::<crate::reporter::ReporterProtocol>(),
        ),
        (
            "triage.schema.json",
            schema_of::<crate::triage::TriageFile>(),
        ),
    ]
}
