//! `dispatch`'s routing: each [`Request`] handed to the handler of its concern.

use crate::api::{ApiError, Request, Response};

use super::LocalConsole;

impl LocalConsole {
    /// Answer one request: route it to the handler of its concern (the caller's own
    /// requests go through `route_as`, `api::access`).
    pub(in crate::api) async fn route(&self, request: Request) -> Result<Response, ApiError> {
        tracing::debug!(?request, "dispatch");
        match request {
            Request::Info => Ok(Response::Info(self.info())),
            Request::ListPacks => self.list_packs(&crate::api::Caller::local()).await,
            Request::GetPack { name } => self.get_pack(&crate::api::Caller::local(), name).await,
            Request::PushPack { archive, private } => {
                self.push_pack(
                    &crate::api::Caller::local(),
                    crate::api::packs::Archive::Text(archive),
                    private,
                )
                .await
            }
            Request::PublishPack { pack } => {
                self.publish_pack(&crate::api::Caller::local(), pack).await
            }
            Request::Launch(spec) => match self.relay.get().filter(|_| self.launch_elsewhere()) {
                Some(relay) => relay.forward("launch", None, Request::Launch(spec)).await,
                None => self.launch(spec).await,
            },
            Request::StopRun { run_id } => self.stop_run(run_id).await,
            Request::ActiveRuns => Ok(self.active_runs()),
            Request::ListPrompts => Ok(Response::ListPrompts(self.runs.prompts().list())),
            Request::TriageRules => self.triage_rules(),
            Request::AddTriageRule { rule, position } => self.add_triage_rule(rule, position),
            Request::RemoveTriageRule { name } => self.remove_triage_rule(name),
            Request::RunTriage { run_id } => self.run_triage(run_id).await,
            Request::TriageSummary { pack, last_runs } => {
                self.triage_summary(pack, last_runs).await
            }
            Request::Prune { dry_run } => self.prune(dry_run).await,
            Request::DataUsage => self.data_usage().await,
            Request::RunKeep { run_id } => self.run_keep(run_id, None).await,
            Request::SetRunKeep { run_id, keep } => self.run_keep(run_id, Some(keep)).await,
            Request::TaskSections { run_id, item } => self
                .runs
                .task_sections(&run_id, item as usize)
                .map(Response::TaskSections)
                .ok_or_else(|| ApiError::not_found(format!("no live run {run_id}"))),
            Request::AnswerPrompt {
                id,
                answer,
                by,
                run_id,
            } => self.answer_prompt(id, answer, by, run_id).await,
            Request::RunView { run_id } => self.run_view(&run_id),
            Request::ReadLog {
                run_id,
                task_id,
                phase,
                offset,
                max_bytes,
            } => {
                self.read_log(run_id, task_id, phase, offset, max_bytes)
                    .await
            }
            Request::ReadFile { run_id, path } => self.read_file(run_id, path).await,
            Request::ListRuns(q) => self.list_runs(q).await,
            Request::GetRun {
                run_id,
                offset,
                limit,
            } => self.get_run(run_id, offset, limit).await,
            Request::Export {
                run_id,
                format,
                new_failures_since,
            } => self.export(run_id, format, new_failures_since).await,
            Request::GetLab => self.get_lab(),
            Request::SearchDuts { query, pack, ats } => self.search_duts(&query, pack, ats),
            Request::Reservations => self.reservations(),
            Request::Hold {
                resource,
                by,
                duration_s,
                from_ms,
                next_available,
                mode,
                config,
                lease_s,
            } => self.hold(
                resource,
                by,
                duration_s,
                from_ms,
                next_available,
                mode,
                config,
                lease_s,
            ),
            Request::RenewHold { id } => self.renew_hold(id),
            Request::Agents => Ok(Response::Agents(self.agents.list())),
            Request::DrainAgent { name, drain } => self.drain_agent(&name, drain),
            Request::AgentSnapshot { hash } => self.agent_snapshot("local", hash).await,
            Request::Release { id } => self.release(id),
            Request::ExtendHold { id, duration_s } => self.extend_hold(id, duration_s),
            Request::ReservationHistory { hours } => self.reservation_history(hours),
            Request::ListWebhooks
            | Request::AddWebhook { .. }
            | Request::UpdateWebhook { .. }
            | Request::RemoveWebhook { .. }
            | Request::WebhookDeliveries { .. } => self.webhook_request(request).await,
            Request::DutHealth { dut } => self.dut_health(dut).await,
            Request::RestoreDut { dut, note } => self.restore_dut(dut, note).await,
            Request::CheckDut { dut } => match self.relay.get().filter(|_| self.launch_elsewhere())
            {
                // A health check is a launch: the book's owner makes it.
                Some(relay) => {
                    relay
                        .forward("check_dut", None, Request::CheckDut { dut })
                        .await
                }
                None => self.check_dut(dut).await,
            },
            Request::Queue => Ok(self.queue_view()),
            Request::MoveQueued { run_id, to } => self.move_queued(&run_id, to),
            Request::SetQueuedPriority { run_id, priority } => {
                self.set_queued_priority(&run_id, priority)
            }
            Request::CancelQueued { run_id } => self.cancel_queued(run_id),
            Request::AddSchedule(def) => self.add_schedule(def),
            Request::UpdateSchedule { id, def } => self.update_schedule(&id, def),
            Request::ListSchedules => self.list_schedules(),
            Request::GetSchedule { id } => self.get_schedule(&id),
            Request::PauseSchedule { id } => self.pause_schedule(&id, true),
            Request::ResumeSchedule { id } => self.pause_schedule(&id, false),
            Request::RemoveSchedule { id } => self.remove_schedule(id),
            Request::Relaunch {
                run_id,
                only_failed,
            } => match self.relay.get().filter(|_| self.launch_elsewhere()) {
                // A launch again: the book's owner makes it.
                Some(relay) => {
                    let request = Request::Relaunch {
                        run_id,
                        only_failed,
                    };
                    relay.forward("relaunch", None, request).await
                }
                None => self.relaunch(run_id, only_failed.unwrap_or(false)).await,
            },
            Request::TaskHistory(q) => self.task_history(q).await,
            Request::MeasurementHistory(q) => self.measurement_history(q).await,
            Request::MeasurementYield { pack, last_runs } => {
                self.measurement_yield(pack, last_runs).await
            }
            Request::Flaky(q) => self.flaky(q).await,
            Request::CompareRuns { a, b, options } => {
                self.compare_runs(a, b, options.unwrap_or_default()).await
            }
            Request::PinBaseline { run_id, dut_model } => {
                self.pin_baseline(run_id, dut_model).await
            }
            Request::UnpinBaseline { pack, dut_model } => {
                self.unpin_baseline(pack, dut_model).await
            }
            Request::Baselines { pack } => self.baselines(pack).await,
            Request::WhoAmI => Ok(crate::api::access::who_am_i(&crate::api::Caller::local())),
            Request::ListUsers
            | Request::AddUser { .. }
            | Request::RevokeUser { .. }
            | Request::SetUserRole { .. }
            | Request::Audit(_) => self.access_request(request).await,
        }
    }
}
