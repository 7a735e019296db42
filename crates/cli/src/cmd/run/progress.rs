//! What `testbay run` shows while the run goes: JSON lines (`--json`), progress bars per
//! lane on a terminal, else one line per task state.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use testbay_engine::api::{Console, Request, Response, RunEvent, RunView, TaskState};

use super::fmt_dur;
use crate::term::safe;

pub enum Output {
    Json,
    Plain,
    Bars {
        mp: MultiProgress,
        bars: HashMap<String, ProgressBar>,
        /// The section each (lane, task) reported opening last and has not closed.
        sections: HashMap<(String, String), String>,
    },
}

impl Output {
    /// How the run is shown, and its first lines.
    pub async fn start(json: bool, console: &dyn Console, run_id: &str) -> Self {
        if json {
            return Output::Json;
        }
        if !std::io::stderr().is_terminal() {
            say!("run {run_id} started");
            return Output::Plain;
        }
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let style = ProgressStyle::with_template(
            "{prefix:>12.bold} [{bar:28.cyan/blue}] {pos:>3}/{len:<3} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let mut bars = HashMap::new();
        if let Some(view) = live_view(console, run_id).await {
            say!(
                "run {run_id}: {} {} on {} lane(s)",
                view.pack_name,
                view.pack_version,
                view.lanes.len()
            );
            for lane in &view.lanes {
                let pb = mp.add(ProgressBar::new(lane.progress.total as u64));
                pb.set_style(style.clone());
                pb.set_prefix(safe(&lane.name).into_owned());
                bars.insert(lane.name.clone(), pb);
            }
        }
        Output::Bars {
            mp,
            bars,
            sections: HashMap::new(),
        }
    }

    pub fn show(&mut self, ev: &RunEvent) {
        show_event(self, ev)
    }

    /// Bring the bars up to the run's live state.
    pub async fn refresh(&self, console: &dyn Console, run_id: &str) {
        if let Output::Bars { .. } = self {
            if let Some(view) = live_view(console, run_id).await {
                refresh_bars(self, &view);
            }
        }
    }

    /// The run is over: last figures, bars cleared.
    pub async fn finish(&self, console: &dyn Console, run_id: &str) {
        self.refresh(console, run_id).await;
        if let Output::Bars { bars, mp, .. } = self {
            for pb in bars.values() {
                pb.finish();
            }
            let _ = mp.clear();
        }
    }
}

async fn live_view(console: &dyn Console, run_id: &str) -> Option<RunView> {
    let request = Request::RunView {
        run_id: run_id.to_string(),
    };
    match console.dispatch(request).await {
        Ok(Response::RunView(v)) => Some(*v),
        _ => None,
    }
}

fn show_event(out: &mut Output, ev: &RunEvent) {
    match out {
        Output::Json => {
            let mut so = std::io::stdout().lock();
            let _ = serde_json::to_writer(&mut so, ev);
            let _ = so.write_all(b"\n");
        }
        Output::Plain => match ev {
            RunEvent::TaskState {
                task,
                lane,
                state:
                    TaskState::Done {
                        result,
                        message,
                        flaky,
                        ..
                    },
                ..
            } => {
                let lane = lane.as_deref().unwrap_or("-");
                let result = if *flaky {
                    format!("{result} (flaky: passed on a retry)")
                } else {
                    result.clone()
                };
                if message.is_empty() {
                    say!("[{lane}] {task}: {result}");
                } else {
                    say!("[{lane}] {task}: {result} - {message}");
                }
            }
            RunEvent::TaskState {
                task,
                lane,
                state: TaskState::Running { phase, waiting },
                ..
            } => match waiting {
                None => say!(
                    "[{}] {task}: {} ...",
                    lane.as_deref().unwrap_or("-"),
                    phase.as_str()
                ),
                Some(w) => say!("[{}] {task}: {w}", lane.as_deref().unwrap_or("-")),
            },
            RunEvent::TaskState {
                task,
                lane,
                state: TaskState::Waiting { reason },
                ..
            } => say!(
                "[{}] {task}: waiting - {reason}",
                lane.as_deref().unwrap_or("-")
            ),
            RunEvent::RunStatus { status, reason, .. } => match reason {
                Some(r) => say!("run {}: {r}", status.as_str()),
                None => say!("run {}", status.as_str()),
            },
            RunEvent::Section {
                task,
                lane,
                section,
                ..
            } => match &section.result {
                None => say!("[{lane}] {task}: section {} ...", section.name),
                Some(r) if section.message.is_empty() => {
                    say!("[{lane}] {task}: section {}: {r}", section.name)
                }
                Some(r) => say!(
                    "[{lane}] {task}: section {}: {r} - {}",
                    section.name,
                    section.message
                ),
            },
            RunEvent::Prompt {
                task, lane, prompt, ..
            } => say!(
                "[{lane}] {task} asks the operator (prompt {}): {}{}",
                prompt.id,
                prompt.message,
                if prompt.choices.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", prompt.choices.join(" / "))
                }
            ),
            RunEvent::PromptAnswered {
                task, lane, answer, ..
            } => {
                if answer.timed_out {
                    say!("[{lane}] {task}: nobody answered in time");
                } else {
                    say!("[{lane}] {task}: answered {:?}", answer.text);
                }
            }
            RunEvent::Measurement {
                task,
                lane,
                measurement: m,
                passed,
                ..
            } => say!(
                "[{lane}] {task}: {} = {}{}{}",
                m.name,
                m.value,
                m.units
                    .as_deref()
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default(),
                match passed {
                    Some(true) => " (within limits)",
                    Some(false) => " (OUT OF LIMITS)",
                    None => "",
                }
            ),
            _ => {}
        },
        Output::Bars { mp, sections, .. } => {
            if let RunEvent::Section {
                task,
                lane,
                section,
                ..
            } = ev
            {
                let key = (lane.clone(), task.clone());
                match &section.result {
                    None => {
                        sections.insert(key, section.name.clone());
                    }
                    Some(_) => {
                        if sections.get(&key) == Some(&section.name) {
                            sections.remove(&key);
                        }
                    }
                }
            }
            if let RunEvent::TaskState {
                task,
                lane,
                state:
                    TaskState::Done {
                        result,
                        message,
                        failure,
                        ..
                    },
                ..
            } = ev
            {
                if *failure {
                    let line = format!(
                        "  {} {task}: {result}{}",
                        lane.as_deref().unwrap_or("-"),
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(" - {message}")
                        }
                    );
                    let _ = mp.println(safe(&line));
                }
            }
        }
    }
}

fn refresh_bars(out: &Output, view: &RunView) {
    let Output::Bars { bars, sections, .. } = out else {
        return;
    };
    for lane in &view.lanes {
        let Some(pb) = bars.get(&lane.name) else {
            continue;
        };
        pb.set_length(lane.progress.total as u64);
        pb.set_position(lane.progress.done as u64);
        let running: Vec<String> = lane
            .setup
            .iter()
            .chain(&lane.test)
            .chain(&lane.teardown)
            .filter_map(|t| match &t.state {
                TaskState::Running { phase, waiting } => Some(
                    match (waiting, sections.get(&(lane.name.clone(), t.task.clone()))) {
                        (Some(w), _) => format!("{} ({}) › {w}", t.task, phase.as_str()),
                        (None, Some(s)) => format!("{} ({}) › {s}", t.task, phase.as_str()),
                        (None, None) => format!("{} ({})", t.task, phase.as_str()),
                    },
                ),
                _ => None,
            })
            .collect();
        let eta = lane
            .progress
            .eta_ms
            .filter(|_| lane.progress.done < lane.progress.total)
            .map(|ms| format!(" · ETA {}", fmt_dur(ms)))
            .unwrap_or_default();
        let fails = if lane.progress.failures > 0 {
            format!(" · {} failed", lane.progress.failures)
        } else {
            String::new()
        };
        let now = if running.is_empty() {
            if lane.progress.done == lane.progress.total {
                "done".to_string()
            } else {
                "waiting".to_string()
            }
        } else {
            running.join(", ")
        };
        pb.set_message(safe(&format!("{now}{eta}{fails}")).into_owned());
    }
}
