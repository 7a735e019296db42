//! The queue's requests: list it, move a run, change its priority, cancel it.

use super::{Move, Priority};
use crate::api::ApiError;
use crate::api::{LocalConsole, Response};

impl LocalConsole {
    pub(in crate::api) fn queue_view(&self) -> Response {
        Response::Queue(self.queue.view())
    }

    pub(in crate::api) fn move_queued(&self, run_id: &str, to: Move) -> Result<Response, ApiError> {
        self.queue.move_run(run_id, to)?;
        Ok(Response::MoveQueued(self.queue.view()))
    }

    pub(in crate::api) fn set_queued_priority(
        &self,
        run_id: &str,
        priority: Priority,
    ) -> Result<Response, ApiError> {
        self.queue.set_priority(run_id, priority)?;
        Ok(Response::SetQueuedPriority(self.queue.view()))
    }

    pub(in crate::api) fn cancel_queued(&self, run_id: String) -> Result<Response, ApiError> {
        self.queue.cancel(&run_id)?;
        Ok(Response::CancelQueued { run_id })
    }
}
