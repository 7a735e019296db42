//! The rack agents' requests: `agents` (the list), `drain_agent`, and an agent's own
//! `agent_snapshot` (a run's pack snapshot by its content hash). The agents themselves
//! are `crate::agents`; a transport connects them through [`super::Console::agent_hub`].

use super::local::blocking;
use super::{ApiError, LocalConsole, Response};
use crate::agents::AgentError;

impl LocalConsole {
    /// Drain (or undrain) an agent; its view after.
    pub(super) fn drain_agent(&self, name: &str, drain: bool) -> Result<Response, ApiError> {
        self.agents.drain(name, drain).map_err(agent_error)?;
        self.agents
            .list()
            .into_iter()
            .find(|a| a.name == name)
            .map(Response::DrainAgent)
            .ok_or_else(|| ApiError::not_found(format!("no agent named {name}")))
    }

    /// The files of the snapshot with `hash`, for the agent `agent`.
    pub(super) async fn agent_snapshot(
        &self,
        agent: &str,
        hash: String,
    ) -> Result<Response, ApiError> {
        let dir = self
            .agents
            .snapshot_dir(agent, &hash)
            .map_err(agent_error)?;
        blocking(move || {
            crate::agents::snapshot::read(&dir, &hash)
                .map(Response::AgentSnapshot)
                .map_err(|e| {
                    ApiError::internal(format!(
                        "cannot read the pack snapshot {}: {e}",
                        dir.display()
                    ))
                })
        })
        .await
    }
}

fn agent_error(e: AgentError) -> ApiError {
    match e {
        AgentError::NoSuchAgent(_) | AgentError::NoSnapshot(_) => {
            ApiError::not_found(e.to_string())
        }
        _ => ApiError::invalid(e.to_string()),
    }
}
