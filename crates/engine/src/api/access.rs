//! Who may make which request, and the audit log of what they changed: the one place a
//! [`Request`] is mapped to the [`Role`] it needs ([`Request::role`]), the [`Caller`] a
//! transport dispatches for ([`super::Console::dispatch_as`]), and the handlers of the
//! user and audit requests.
//!
//! Read-only requests need `viewer`; launching, stopping, holds, prompt answers, queue
//! moves, schedules and the like need `operator`; users, webhooks and a schedule another
//! user made need `admin`. An `agent` may make only a rack agent's requests
//! (`agent_snapshot`), and nobody else may make those.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::local::blocking;
use super::{ApiError, ErrorCode, LocalConsole, Request, Response};
use crate::access::AccessError;
use crate::store::{Role, User};

/// Who a request comes from, as the transport established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The signed-in user; `None` for the single seat's own operator (loopback, the
    /// shared token, the command line of the console's own machine).
    pub user: Option<String>,
    pub role: Role,
}

impl Caller {
    /// The single seat's operator: may do everything, recorded as `local`.
    pub fn local() -> Self {
        Self {
            user: None,
            role: Role::Admin,
        }
    }

    /// A signed-in user.
    pub fn user(user: &User) -> Self {
        Self {
            user: Some(user.name.clone()),
            role: user.role,
        }
    }

    /// The name the audit log and the records of holds and answers give this caller.
    pub fn name(&self) -> &str {
        self.user.as_deref().unwrap_or("local")
    }
}

/// Who the console takes the caller for (the side bar shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct CallerView {
    /// `None` for the single seat's own operator.
    pub user: Option<String>,
    pub role: Role,
}

impl Request {
    /// The least role that may make this request. Every variant is named, so a new one
    /// must be classified here.
    pub fn role(&self) -> Role {
        self.access().0
    }

    /// Whether this request changes state (and so is written to the audit log).
    pub fn changes_state(&self) -> bool {
        self.access().1
    }

    fn access(&self) -> (Role, bool) {
        use Request::*;
        const READ: (Role, bool) = (Role::Viewer, false);
        const OPERATE: (Role, bool) = (Role::Operator, true);
        const ADMINISTER: (Role, bool) = (Role::Admin, true);
        match self {
            Info
            | ListPacks
            | GetPack { .. }
            | ActiveRuns
            | RunView { .. }
            | ReadLog { .. }
            | ReadFile { .. }
            | ListRuns(_)
            | GetRun { .. }
            | Export { .. }
            | GetLab
            | SearchDuts { .. }
            | Reservations
            | Queue
            | ListSchedules
            | GetSchedule { .. }
            | ListWebhooks
            | WebhookDeliveries { .. }
            | DutHealth { .. }
            | TaskHistory(_)
            | MeasurementHistory(_)
            | MeasurementYield { .. }
            | Flaky(_)
            | CompareRuns { .. }
            | Baselines { .. }
            | ListPrompts
            | ReservationHistory { .. }
            | TaskSections { .. }
            | WhoAmI
            | Audit(_)
            | TriageRules
            | RunTriage { .. }
            | TriageSummary { .. }
            | DataUsage
            | Agents
            | RunKeep { .. } => READ,
            Launch(_)
            | StopRun { .. }
            | Hold { .. }
            | Release { .. }
            | ExtendHold { .. }
            | MoveQueued { .. }
            | SetQueuedPriority { .. }
            | CancelQueued { .. }
            | AddSchedule(_)
            | UpdateSchedule { .. }
            | PauseSchedule { .. }
            | ResumeSchedule { .. }
            | RemoveSchedule { .. }
            | RestoreDut { .. }
            | CheckDut { .. }
            | Relaunch { .. }
            | AnswerPrompt { .. }
            | PinBaseline { .. }
            | UnpinBaseline { .. }
            | SetRunKeep { .. }
            | DrainAgent { .. }
            | RenewHold { .. }
            | PushPack { .. }
            | PublishPack { .. } => OPERATE,
            AddWebhook { .. }
            | UpdateWebhook { .. }
            | RemoveWebhook { .. }
            | AddUser { .. }
            | RevokeUser { .. }
            | SetUserRole { .. }
            | AddTriageRule { .. }
            | RemoveTriageRule { .. } => ADMINISTER,
            // Retention: a dry run only reads, a prune removes stored runs for everyone.
            Prune { dry_run: true } => (Role::Viewer, false),
            Prune { dry_run: false } => ADMINISTER,
            ListUsers => (Role::Admin, false),
            // A rack agent's own requests: only an agent makes them.
            AgentSnapshot { .. } => (Role::Agent, false),
        }
    }

    /// The request's `cmd` name on the wire.
    pub fn cmd(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("cmd")?.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// What the request acts on, for the audit log.
    fn target(&self) -> String {
        use Request::*;
        match self {
            Launch(spec) => spec.pack.clone(),
            StopRun { run_id }
            | MoveQueued { run_id, .. }
            | SetQueuedPriority { run_id, .. }
            | CancelQueued { run_id }
            | Relaunch { run_id, .. }
            | PinBaseline { run_id, .. } => run_id.clone(),
            Hold { resource, .. } => resource.clone(),
            Release { id } | ExtendHold { id, .. } => id.to_string(),
            AddSchedule(def) => def.name.clone(),
            UpdateSchedule { id, .. }
            | PauseSchedule { id }
            | ResumeSchedule { id }
            | RemoveSchedule { id } => id.clone(),
            RestoreDut { dut, .. } | CheckDut { dut } => dut.clone(),
            AnswerPrompt { id, .. } => id.to_string(),
            UnpinBaseline { pack, .. } => pack.clone(),
            AddWebhook { url, .. } => url.clone(),
            UpdateWebhook { id, .. } | RemoveWebhook { id } => id.to_string(),
            AddUser { name, .. } => name.clone(),
            RevokeUser { user } | SetUserRole { user, .. } => user.clone(),
            PublishPack { pack } => pack.clone(),
            DrainAgent { name, .. } => name.clone(),
            _ => String::new(),
        }
    }

    /// The request's fields as JSON for the audit log: without `cmd` and secrets.
    fn detail(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.remove("cmd");
            if let Some(secret) = map.get_mut("secret") {
                if !secret.is_null() {
                    *secret = serde_json::Value::String("(hidden)".into());
                }
            }
            // A pushed pack's files: their size, not their bytes.
            if let Some(serde_json::Value::String(archive)) = map.get_mut("archive") {
                *archive = format!("({} bytes of base64)", archive.len());
            }
        }
        v.to_string()
    }
}

/// Refuse a request the caller's role does not allow (`forbidden`, naming the role it
/// needs).
pub fn authorize(caller: &Caller, request: &Request) -> Result<(), ApiError> {
    let needed = request.role();
    if caller.role.allows(needed) {
        return Ok(());
    }
    let why = if caller.role == Role::Agent {
        format!(
            "{} is a rack agent; agents may make only the agent's requests ({} needs the {} role)",
            caller.name(),
            request.cmd(),
            needed.as_str()
        )
    } else {
        format!(
            "{} needs the {} role; {} is a {}",
            request.cmd(),
            needed.as_str(),
            caller.name(),
            caller.role.as_str()
        )
    };
    Err(ApiError::new(ErrorCode::Forbidden, why))
}

/// The caller's name where a request records who acted (a hold's `by`, a prompt
/// answer's `by`): a signed-in user cannot act under another name.
fn stamp(caller: &Caller, request: Request) -> Request {
    let Some(user) = &caller.user else {
        return request;
    };
    match request {
        Request::Hold {
            resource,
            duration_s,
            from_ms,
            next_available,
            mode,
            config,
            lease_s,
            ..
        } => Request::Hold {
            resource,
            by: user.clone(),
            duration_s,
            from_ms,
            next_available,
            mode,
            config,
            lease_s,
        },
        Request::AnswerPrompt {
            id, answer, run_id, ..
        } => Request::AnswerPrompt {
            id,
            answer,
            by: Some(user.clone()),
            run_id,
        },
        other => other,
    }
}

/// The answer to `who_am_i`.
pub(super) fn who_am_i(caller: &Caller) -> Response {
    Response::WhoAmI(CallerView {
        user: caller.user.clone(),
        role: caller.role,
    })
}

fn access_error(e: AccessError) -> ApiError {
    match e {
        AccessError::BadName(_) => ApiError::invalid(e.to_string()),
        AccessError::NameTaken(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
        AccessError::NoSuchUser(_) => ApiError::not_found(e.to_string()),
        AccessError::Store(s) => super::error::store_error(s),
    }
}

impl LocalConsole {
    /// Answer `request` for `caller`: refused when the role does not allow it, who acted
    /// recorded on holds and prompt answers, and a change written to the audit log once
    /// it is made.
    pub(super) async fn route_as(
        &self,
        caller: &Caller,
        request: Request,
    ) -> Result<Response, ApiError> {
        self.route_as_with(caller, request, None).await
    }

    /// [`Self::route_as`], with a `push_pack`'s archive as bytes (`uploaded`, as a
    /// transport received it) in place of the request's base64 text.
    pub(super) async fn route_as_with(
        &self,
        caller: &Caller,
        request: Request,
        uploaded: Option<Vec<u8>>,
    ) -> Result<Response, ApiError> {
        authorize(caller, &request)?;
        self.own_schedule(caller, &request).await?;
        let request = stamp(caller, request);
        let audit = request.changes_state().then(|| {
            let detail = match (&request, &uploaded) {
                (Request::PushPack { private, .. }, Some(bytes)) => serde_json::json!({
                    "archive": format!("({} bytes uploaded)", bytes.len()),
                    "private": private,
                })
                .to_string(),
                _ => request.detail(),
            };
            (request.cmd(), request.target(), detail)
        });
        let answer = match request {
            Request::WhoAmI => Ok(who_am_i(caller)),
            Request::AgentSnapshot { hash } => self.agent_snapshot(caller.name(), hash).await,
            other => self.route_packs(caller, other, uploaded).await,
        };
        if let (Ok(res), Some((action, target, detail)), Some(access)) =
            (&answer, audit, &self.access)
        {
            // A launch's target is the run it made, a new schedule's its id.
            let target = match res {
                Response::Launch { run_id, .. }
                | Response::Relaunch { run_id, .. }
                | Response::CheckDut { run_id } => run_id.clone(),
                Response::AddSchedule { id } => id.clone(),
                Response::PushPack(p) => p
                    .pack
                    .library
                    .as_ref()
                    .map(|l| l.reference.clone())
                    .unwrap_or(target),
                _ => target,
            };
            let access = access.clone();
            let user = caller.name().to_string();
            let _ = blocking(move || {
                access.record(&user, &action, &target, &detail);
                Ok(())
            })
            .await;
        }
        answer
    }

    /// A signed-in operator changes only the schedules they made (the audit log knows
    /// who); another's, or one made before the log, needs the admin role.
    async fn own_schedule(&self, caller: &Caller, request: &Request) -> Result<(), ApiError> {
        let (Some(user), Some(access)) = (&caller.user, &self.access) else {
            return Ok(());
        };
        let id = match request {
            Request::UpdateSchedule { id, .. }
            | Request::PauseSchedule { id }
            | Request::ResumeSchedule { id }
            | Request::RemoveSchedule { id } => id.clone(),
            _ => return Ok(()),
        };
        if caller.role.allows(Role::Admin) {
            return Ok(());
        }
        let access = access.clone();
        let schedule = id.clone();
        let owner = blocking(move || {
            access
                .made_by(&schedule, "add_schedule")
                .map_err(super::error::store_error)
        })
        .await?;
        if owner.as_deref() == Some(user.as_str()) {
            return Ok(());
        }
        let whose = match owner {
            Some(o) => format!("it is {o}'s"),
            None => "who made it is not on record".to_string(),
        };
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{} of schedule {id} needs the admin role: {whose}, and {user} is an {}",
                request.cmd(),
                caller.role.as_str()
            ),
        ))
    }

    pub(super) async fn access_request(&self, request: Request) -> Result<Response, ApiError> {
        let Some(access) = self.access.clone() else {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "this console's store keeps no users or audit log",
            ));
        };
        blocking(move || match request {
            Request::ListUsers => access
                .users()
                .map(Response::ListUsers)
                .map_err(super::error::store_error),
            Request::AddUser { name, role } => access
                .add_user(&name, role)
                .map(|(user, token)| Response::AddUser { user, token })
                .map_err(access_error),
            Request::RevokeUser { user } => access
                .revoke(&user)
                .map(Response::RevokeUser)
                .map_err(access_error),
            Request::SetUserRole { user, role } => access
                .set_role(&user, role)
                .map(Response::SetUserRole)
                .map_err(access_error),
            Request::Audit(q) => access
                .audit(&q)
                .map(Response::Audit)
                .map_err(super::error::store_error),
            other => Err(ApiError::internal(format!(
                "{} is not an access request",
                other.cmd()
            ))),
        })
        .await
    }
}
