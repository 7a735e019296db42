//! What a phase reports as it runs (sections, measurements, operator prompts), sent to
//! the run's event stream and kept, section by section, in its live state.

use std::sync::Arc;

use crate::exec;
use crate::outcome::Phase;
use crate::run::events::{RunEvent, TaskState};
use crate::run::LiveRun;
use crate::store::SectionRecord;

use super::{ItemJob, RunCtx};

/// Sends what a phase reports to the event stream as it happens.
pub(super) fn report_sink(
    ctx: &Arc<RunCtx>,
    job: &ItemJob,
    phase: Phase,
) -> exec::reporter::ReportSink {
    let events = ctx.events.clone();
    let seq = ctx.seq.clone();
    let clock = ctx.clock.clone();
    let run_id = ctx.run_id.clone();
    let task = job.def.name.clone();
    let lane = job.lane.clone();
    let item = job.item as u32;
    let kind = job.kind;
    let group = job.group.clone();
    let live = ctx.live.clone();
    Box::new(move |event| {
        use crate::reporter::Change;
        use exec::reporter::ReportEvent;
        // The running task's wait reason follows its open prompt, listened to or not.
        let waiting = match event {
            ReportEvent::Asked(view) => Some(Some(view.message.clone())),
            ReportEvent::Answered(..) => Some(None),
            ReportEvent::Changed(..) => None,
        };
        if let Some(message) = waiting {
            let seq = {
                let mut l = live.lock().unwrap_or_else(|p| p.into_inner());
                l.operator[item as usize] = message.clone();
                events.has_listeners().then(|| seq.next())
            };
            if let Some(seq) = seq {
                events.send(RunEvent::TaskState {
                    run_id: run_id.clone(),
                    seq,
                    item,
                    task: task.clone(),
                    kind,
                    group: group.clone(),
                    lane: Some(lane.clone()),
                    state: TaskState::Running {
                        phase,
                        waiting: message.as_deref().map(crate::run::view::operator_wait),
                    },
                    ts: clock.now_ms(),
                });
            }
        }
        if let ReportEvent::Changed(change, report) = event {
            keep_section(&live, item as usize, phase, change, report);
        }
        if !events.has_listeners() {
            return;
        }
        let ts = clock.now_ms();
        let (change, report) = match event {
            ReportEvent::Changed(c, r) => (c, r),
            ReportEvent::Asked(view) => {
                events.send(RunEvent::Prompt {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    prompt: Box::new(view.clone()),
                    ts,
                });
                return;
            }
            ReportEvent::Answered(view, answer) => {
                events.send(RunEvent::PromptAnswered {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    id: view.id,
                    answer: answer.clone(),
                    ts,
                });
                return;
            }
        };
        let ev = match change {
            Change::Started(id) | Change::Stopped(id) => {
                let Some(s) = report.sections.get(*id as usize) else {
                    return;
                };
                RunEvent::Section {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    phase,
                    section: Box::new(crate::reporter::Section {
                        details: Vec::new(),
                        extra: Default::default(),
                        ..s.clone()
                    }),
                    ts,
                }
            }
            Change::Measured {
                section,
                measurement,
            } => RunEvent::Measurement {
                run_id: run_id.clone(),
                seq: seq.next(),
                item,
                task: task.clone(),
                lane: lane.clone(),
                phase,
                section: *section,
                passed: measurement.passed(),
                measurement: Box::new(measurement.clone()),
                ts,
            },
            Change::None | Change::Result => return,
        };
        events.send(ev);
    })
}

/// Keeps the section a change touched, as it stands now, in the run's live state.
fn keep_section(
    live: &std::sync::Mutex<LiveRun>,
    item: usize,
    phase: Phase,
    change: &crate::reporter::Change,
    report: &crate::reporter::PhaseReport,
) {
    use crate::reporter::Change;
    let id = match change {
        Change::Started(id) | Change::Stopped(id) => *id,
        Change::Measured {
            section: Some(id), ..
        } => *id,
        _ => return,
    };
    let Some(s) = report.sections.get(id as usize) else {
        return;
    };
    let section = crate::reporter::Section {
        details: Vec::new(),
        extra: Default::default(),
        ..s.clone()
    };
    let phase_name = phase.as_str();
    let mut l = live.lock().unwrap_or_else(|p| p.into_inner());
    let kept = l.sections.entry(item).or_default();
    match kept
        .iter_mut()
        .find(|k| k.phase == phase_name && k.section.id == id)
    {
        Some(k) => k.section = section,
        None => kept.push(SectionRecord {
            phase: phase_name.to_string(),
            section,
        }),
    }
}
