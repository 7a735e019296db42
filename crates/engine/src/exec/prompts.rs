//! Operator prompts: what running tasks asked through the reporter (`prompt`) and wait
//! for. One list per console; the API lists and answers them, the reporter's connection
//! that asked waits for the answer or the prompt's timeout (TestStand's and OpenHTF's
//! operator prompts).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::outcome::Phase;

/// A prompt waiting for the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PromptView {
    #[ts(type = "number")]
    pub id: u64,
    pub run_id: String,
    pub task: String,
    pub lane: String,
    pub item: u32,
    pub phase: Phase,
    pub message: String,
    /// The answers it takes; empty: free text.
    pub choices: Vec<String>,
    /// A regular expression the whole free-text answer must match.
    pub pattern: Option<String>,
    pub timeout_s: f64,
    #[ts(type = "number")]
    pub asked_ms: EpochMs,
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    #[error("no prompt {0} is waiting (answered, timed out, or its task ended)")]
    NotFound(u64),
    #[error("`{answer}` is not one of the choices: {choices}")]
    NotAChoice { answer: String, choices: String },
    #[error("`{answer}` does not match the pattern `{pattern}`")]
    NoMatch { answer: String, pattern: String },
}

/// The answer and who gave it, as the asking connection receives them.
pub(crate) type Answered = oneshot::Receiver<(String, Option<String>)>;

struct Pending {
    view: PromptView,
    /// The phase that asked (its reporter token), so its end drops its prompts.
    phase: String,
    pattern: Option<regex::Regex>,
    tx: oneshot::Sender<(String, Option<String>)>,
}

/// The console's waiting prompts.
#[derive(Default)]
pub struct Prompts {
    next: AtomicU64,
    pending: Mutex<BTreeMap<u64, Pending>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Prompts {
    /// Every prompt waiting now, oldest first.
    pub fn list(&self) -> Vec<PromptView> {
        lock(&self.pending)
            .values()
            .map(|p| p.view.clone())
            .collect()
    }

    /// Answers prompt `id` with `text` (one of its choices, or matching its pattern).
    pub fn answer(
        &self,
        id: u64,
        text: String,
        by: Option<String>,
    ) -> Result<PromptView, AnswerError> {
        let mut pending = lock(&self.pending);
        let p = pending.get(&id).ok_or(AnswerError::NotFound(id))?;
        if !p.view.choices.is_empty() && !p.view.choices.contains(&text) {
            return Err(AnswerError::NotAChoice {
                answer: text,
                choices: p.view.choices.join(", "),
            });
        }
        if let Some(re) = &p.pattern {
            if !re.is_match(&text) {
                return Err(AnswerError::NoMatch {
                    answer: text,
                    pattern: p.view.pattern.clone().unwrap_or_default(),
                });
            }
        }
        let p = pending.remove(&id).expect("looked up");
        let _ = p.tx.send((text, by));
        Ok(p.view)
    }

    /// Registers a prompt (its `id` is given here); the receiver gets the answer and who
    /// gave it. `pattern` is compiled to match the whole answer; a bad one is refused.
    pub(crate) fn ask(
        &self,
        mut view: PromptView,
        phase: &str,
    ) -> Result<(PromptView, Answered), String> {
        let pattern = match &view.pattern {
            Some(p) => Some(
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| format!("pattern `{p}` is not a regular expression: {e}"))?,
            ),
            None => None,
        };
        view.id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(
            view.id,
            Pending {
                view: view.clone(),
                phase: phase.to_string(),
                pattern,
                tx,
            },
        );
        Ok((view, rx))
    }

    /// The prompt is not waiting any more (it timed out).
    pub(crate) fn forget(&self, id: u64) {
        lock(&self.pending).remove(&id);
    }

    /// The phase ended: its prompts stop waiting.
    pub(crate) fn drop_phase(&self, phase: &str) {
        lock(&self.pending).retain(|_, p| p.phase != phase);
    }
}
