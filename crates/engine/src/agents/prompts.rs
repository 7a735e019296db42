//! The operator prompts a phase on a rack agent asks, raised on the server: each goes
//! into the console's list of waiting prompts, as a local phase's does (Live shows it,
//! `answer_prompt` answers it), and its answer goes back to the agent, whose reporter
//! hands it to the phase. The agent keeps the prompt's timeout (and the phase's
//! default answer); what the phase finally got comes back and takes the prompt off the
//! list.

use std::collections::HashMap;
use std::sync::Arc;

use super::Hub;
use crate::exec::prompts::{PromptView, Prompts};
use crate::exec::reporter::{ReportEvent, ReportSink};
use crate::reporter::PromptAnswer;

/// The prompts of one phase on an agent. Dropping it (the phase ended) takes those
/// still waiting off the console's list.
pub(super) struct Relayed<'a> {
    prompts: Option<&'a Arc<Prompts>>,
    hub: Arc<Hub>,
    agent: String,
    job: u64,
    /// Ties the phase's prompts in the console's list together.
    token: String,
    /// The console's view of each waiting prompt, by the agent's number for it.
    waiting: HashMap<u64, PromptView>,
}

impl<'a> Relayed<'a> {
    pub(super) fn new(
        prompts: Option<&'a Arc<Prompts>>,
        hub: Arc<Hub>,
        agent: &str,
        job: u64,
    ) -> Self {
        Self {
            prompts,
            token: format!("agent {agent} job {job}"),
            hub,
            agent: agent.to_string(),
            job,
            waiting: HashMap::new(),
        }
    }

    /// The phase asks `view` (numbered by the agent): raise it here; its answer goes to
    /// the agent.
    pub(super) fn asked(&mut self, view: PromptView, sink: Option<&mut ReportSink>) {
        let Some(prompts) = self.prompts else {
            return;
        };
        let on_agent = view.id;
        let (view, answered) = match prompts.ask(view, &self.token) {
            Ok(x) => x,
            Err(why) => {
                tracing::warn!(agent = %self.agent, job = self.job, why, "a prompt of a phase on an agent not raised; it waits for its timeout");
                return;
            }
        };
        if let Some(sink) = sink {
            sink(ReportEvent::Asked(&view));
        }
        self.waiting.insert(on_agent, view);
        let (hub, agent, job) = (self.hub.clone(), self.agent.clone(), self.job);
        tokio::spawn(async move {
            // An error: it timed out on the agent, or its phase ended.
            if let Ok((text, by)) = answered.await {
                hub.answer_prompt(&agent, job, on_agent, text, by);
            }
        });
    }

    /// The phase's prompt (numbered by the agent) got `answer`, or timed out.
    pub(super) fn answered(
        &mut self,
        on_agent: u64,
        answer: &PromptAnswer,
        sink: Option<&mut ReportSink>,
    ) {
        let Some(view) = self.waiting.remove(&on_agent) else {
            return;
        };
        if let Some(prompts) = self.prompts {
            prompts.forget(view.id);
        }
        if let Some(sink) = sink {
            sink(ReportEvent::Answered(&view, answer));
        }
    }
}

impl Drop for Relayed<'_> {
    fn drop(&mut self) {
        if let Some(prompts) = self.prompts {
            prompts.drop_phase(&self.token);
        }
    }
}
