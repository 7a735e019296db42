//! The schedules' requests: add, edit, list, show, pause, resume, remove. Every rule a
//! schedule must pass is checked here, naming the field.

use super::scheduler::{self, Stored};
use super::{FiringView, ScheduleDef, ScheduleDetail, ScheduleView};
use crate::api::error::store_error;
use crate::api::{ApiError, LocalConsole, Response};
use crate::store::ScheduleRecord;

/// History lines and run ids a view carries.
const HISTORY: u32 = 200;

impl LocalConsole {
    /// Refused with the field named: an empty name, an unknown pack or DUT, DUTs and a
    /// DUT search both, a search that does not parse, a `when` the calendar refuses.
    fn check_schedule(&self, def: &ScheduleDef) -> Result<(), ApiError> {
        if def.name.trim().is_empty() {
            return Err(ApiError::invalid("name: give the schedule a name"));
        }
        self.find_pack(&def.pack)
            .map_err(|e| ApiError::invalid(format!("pack: {}", e.message)))?;
        if !def.duts.is_empty() && def.dut_search.is_some() {
            return Err(ApiError::invalid(
                "dut_search: give DUTs by name or a DUT search, not both",
            ));
        }
        for d in &def.duts {
            self.dut_target(d.clone())
                .map_err(|e| ApiError::invalid(format!("duts: {}", e.message)))?;
        }
        if let Some(q) = &def.dut_search {
            let terms: Vec<&str> = q.split_whitespace().collect();
            self.lab()
                .map_err(|e| ApiError::invalid(format!("dut_search: {}", e.message)))?
                .find(&terms)
                .map_err(|e| ApiError::invalid(format!("dut_search: {e}")))?;
        }
        def.when
            .validate(self.clock.now_ms())
            .map_err(|e| ApiError::invalid(format!("when.{}: {}", e.key, e.message)))?;
        Ok(())
    }

    pub(in crate::api) fn add_schedule(&self, def: ScheduleDef) -> Result<Response, ApiError> {
        self.check_schedule(&def)?;
        let now = self.clock.now_ms();
        // Firings from now on; a start in the last minute (`now`, as a form or the CLI
        // give it, to the second) still fires.
        let start = def.when.compile().map(|s| s.start_ms()).unwrap_or(now);
        let since_ms = if start <= now && now - start < scheduler::LATE_MS {
            start.saturating_sub(1)
        } else {
            now.saturating_sub(1)
        };
        let id = format!(
            "s{}-{:04x}",
            crate::timefmt::fmt_compact(now),
            uuid::Uuid::new_v4().as_u128() as u16
        );
        let rec = ScheduleRecord {
            id: id.clone(),
            name: def.name.clone(),
            def_json: serde_json::to_string(&def).expect("plain data serialises"),
            paused: false,
            created_ms: now,
            since_ms,
            fired: 0,
            pending_ms: None,
            last_run_id: None,
        };
        self.store.schedule_put(&rec).map_err(store_error)?;
        Ok(Response::AddSchedule { id })
    }

    pub(in crate::api) fn update_schedule(
        &self,
        id: &str,
        def: ScheduleDef,
    ) -> Result<Response, ApiError> {
        self.check_schedule(&def)?;
        let mut s = self.stored_schedule(id)?;
        s.rec.name = def.name.clone();
        s.rec.def_json = serde_json::to_string(&def).expect("plain data serialises");
        s.rec.pending_ms = None;
        self.store.schedule_put(&s.rec).map_err(store_error)?;
        Ok(Response::UpdateSchedule(self.schedule_view(id)?))
    }

    pub(in crate::api) fn list_schedules(&self) -> Result<Response, ApiError> {
        let all = scheduler::load(&*self.store).map_err(store_error)?;
        let now = self.clock.now_ms();
        let views = all
            .into_iter()
            .map(|s| self.view_of(s, now))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::ListSchedules(views))
    }

    pub(in crate::api) fn get_schedule(&self, id: &str) -> Result<Response, ApiError> {
        let mut schedule = self.schedule_view(id)?;
        let history: Vec<FiringView> = self
            .store
            .schedule_firings(id, HISTORY)
            .map_err(store_error)?
            .into_iter()
            .map(|f| FiringView {
                due_ms: f.due_ms,
                at_ms: f.at_ms,
                kind: f.kind,
                run_id: f.run_id,
                note: f.note,
            })
            .collect();
        // One read for both: the runs are those of the history shown.
        schedule.run_ids = history.iter().filter_map(|f| f.run_id.clone()).collect();
        Ok(Response::GetSchedule(Box::new(ScheduleDetail {
            schedule,
            history,
        })))
    }

    /// Pause or resume. A resumed schedule fires from now on: what fell due while it was
    /// paused is not caught up.
    pub(in crate::api) fn pause_schedule(
        &self,
        id: &str,
        pause: bool,
    ) -> Result<Response, ApiError> {
        let mut s = self.stored_schedule(id)?;
        s.rec.paused = pause;
        if !pause {
            s.rec.since_ms = s.rec.since_ms.max(self.clock.now_ms().saturating_sub(1));
            s.rec.pending_ms = None;
        }
        self.store.schedule_put(&s.rec).map_err(store_error)?;
        let view = self.schedule_view(id)?;
        Ok(if pause {
            Response::PauseSchedule(view)
        } else {
            Response::ResumeSchedule(view)
        })
    }

    pub(in crate::api) fn remove_schedule(&self, id: String) -> Result<Response, ApiError> {
        if !self.store.schedule_remove(&id).map_err(store_error)? {
            return Err(no_schedule(&id));
        }
        Ok(Response::RemoveSchedule { id })
    }

    fn stored_schedule(&self, id: &str) -> Result<Stored, ApiError> {
        scheduler::load(&*self.store)
            .map_err(store_error)?
            .into_iter()
            .find(|s| s.rec.id == id)
            .ok_or_else(|| no_schedule(id))
    }

    fn schedule_view(&self, id: &str) -> Result<ScheduleView, ApiError> {
        let s = self.stored_schedule(id)?;
        self.view_of(s, self.clock.now_ms())
    }

    fn view_of(&self, s: Stored, now: crate::clock::EpochMs) -> Result<ScheduleView, ApiError> {
        let run_ids = self
            .store
            .schedule_firings(&s.rec.id, HISTORY)
            .map_err(store_error)?
            .into_iter()
            .filter_map(|f| f.run_id)
            .collect();
        let upcoming = if s.rec.paused {
            Vec::new()
        } else {
            scheduler::upcoming(&s, now, 14)
        };
        Ok(ScheduleView {
            id: s.rec.id.clone(),
            name: s.rec.name.clone(),
            kind: s.def.when.kind.as_str().to_string(),
            paused: s.rec.paused,
            next_firing_ms: upcoming.first().copied(),
            upcoming_ms: upcoming,
            fired: s.rec.fired,
            run_ids,
            def: s.def,
        })
    }
}

fn no_schedule(id: &str) -> ApiError {
    ApiError::not_found(format!("no schedule with id {id}"))
}
