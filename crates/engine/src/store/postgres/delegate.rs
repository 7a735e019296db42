//! The [`Store`] trait on [`PgStore`]: each call handed to the module of its concern
//! (runs, tasks, history, ...) on the writer or a read of its own.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::EpochMs;
use crate::lab::{Lab, LabFile};
use crate::outcome::RunStatus;
use crate::store::{
    AccessStore, Baseline, BookLock, BookStore, FiringRecord, HealthStore, MeasurementPoint,
    MeasurementQuery, NewRun, NewTaskRow, QueuedRunRecord, RecoveryReport, Result, RunPage,
    RunQuery, RunRecord, ScheduleRecord, Store, TaskFinish, TaskHistoryEntry, TaskHistoryQuery,
    TaskPaths, TaskRecord, WebhookStore, YieldRow,
};

use super::{
    access, batch, book, health, history, misc, packs, retention, runs, tasks, tx, webhooks,
    PgBookStore, PgStore,
};

impl Store for PgStore {
    fn location(&self) -> String {
        self.core.location.clone()
    }

    fn lock_book(&self, who: &str) -> Result<Option<Box<dyn BookLock>>> {
        book::lock(&self.core, who, self.server_id())
    }

    fn book_owner(&self) -> Option<String> {
        book::owner(&self.core)
    }

    fn set_server_address(&self, address: &str) -> Result<()> {
        match &self.server {
            Some(server) => server.set_address(&self.core, address),
            None => Ok(()),
        }
    }

    fn book_home(&self) -> Result<crate::store::BookHome> {
        super::servers::book_home(&self.core, self.server_id())
    }

    fn insert_run(&self, run: &NewRun, tasks: &[NewTaskRow]) -> Result<Vec<i64>> {
        let owner = self.owner;
        let server = self.server_id();
        self.write(async |c| {
            tx(c, async |c| {
                runs::insert(c, run, tasks, owner, server).await
            })
            .await
        })
    }

    fn set_run_status(
        &self,
        id: &str,
        status: RunStatus,
        reason: Option<&str>,
        now: EpochMs,
    ) -> Result<()> {
        self.write(async |c| runs::set_status(c, id, status, reason, now).await)
    }

    fn get_run(&self, id: &str) -> Result<RunRecord> {
        self.read(async |c| runs::get(c, id).await)
    }

    fn list_runs(&self, q: &RunQuery) -> Result<RunPage> {
        let sql = runs::ListSql::new(q)?;
        self.read(async |c| runs::list(c, &sql).await)
    }

    fn run_tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        self.read(async |c| tasks::of_run(c, run_id).await)
    }

    fn task_phase_started(
        &self,
        task_id: i64,
        lane: &str,
        phase: &str,
        started_ms: EpochMs,
        pgid: Option<i32>,
        paths: &TaskPaths,
    ) -> Result<()> {
        // Committed together with the finished tasks' results waiting (if any).
        self.write_later(async |c| {
            tasks::phase_started(c, task_id, lane, phase, started_ms, pgid, paths).await
        })?;
        self.commit_now_inner()
    }

    fn finish_task(&self, task_id: i64, f: &TaskFinish) -> Result<()> {
        self.write_later(async |c| tasks::finish_writes(c, task_id, f).await)
    }

    fn finish_tasks(&self, items: &[(i64, TaskFinish)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.write(async |c| {
            c.batch_execute("BEGIN").await?;
            if let Err(e) = batch::finish(c, items).await {
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(e);
            }
            Ok(c.batch_execute("COMMIT").await?)
        })
    }

    fn commit_now(&self) -> Result<()> {
        self.commit_promised.store(false, Ordering::Release);
        self.commit_now_inner()
    }

    fn promise_commit(&self) -> bool {
        !self.commit_promised.swap(true, Ordering::AcqRel)
    }

    fn task_history(&self, q: &TaskHistoryQuery) -> Result<Vec<TaskHistoryEntry>> {
        self.read(async |c| history::task_history(c, q).await)
    }

    fn measurement_history(&self, q: &MeasurementQuery) -> Result<Vec<MeasurementPoint>> {
        self.read(async |c| history::measurement_history(c, q).await)
    }

    fn measurement_yield(&self, pack: &str, last_runs: u32) -> Result<Vec<YieldRow>> {
        self.read(async |c| history::measurement_yield(c, pack, last_runs).await)
    }

    fn recent_results(
        &self,
        pack: &str,
        window: u32,
        most_runs: u32,
    ) -> Result<Vec<TaskHistoryEntry>> {
        self.read(async |c| history::recent_results(c, pack, window, most_runs).await)
    }

    fn run_packs(&self) -> Result<Vec<String>> {
        self.read(async |c| history::packs(c).await)
    }

    fn pin_baseline(
        &self,
        run_id: &str,
        dut_model: Option<&str>,
        now: EpochMs,
    ) -> Result<Baseline> {
        self.write(async |c| history::pin_baseline(c, run_id, dut_model, now).await)
    }

    fn unpin_baseline(&self, pack: &str, dut_model: Option<&str>) -> Result<bool> {
        self.write(async |c| history::unpin_baseline(c, pack, dut_model).await)
    }

    fn baselines(&self, pack: Option<&str>) -> Result<Vec<Baseline>> {
        self.read(async |c| history::baselines(c, pack).await)
    }

    fn interrupted_runs(&self) -> Result<Vec<String>> {
        let me = self.server_id();
        self.read(async |c| runs::interrupted(c, me).await)
    }

    fn mark_interrupted(&self, run_ids: &[String], now: EpochMs) -> Result<RecoveryReport> {
        self.write(async |c| runs::mark_interrupted(c, run_ids, now).await)
    }

    fn set_read_limit(&self, limit: Duration) {
        self.core
            .limit_ms
            .store(limit.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    fn close_reads(&self) {
        self.core.close_reads();
    }

    fn save_lab(&self, lab: &Lab, now: EpochMs) -> Result<()> {
        let path = lab.file.to_string_lossy();
        self.write(async |c| tx(c, async |c| misc::save_lab(c, &path, &lab.def, now).await).await)
    }

    fn stored_lab(&self) -> Result<Option<(String, EpochMs, LabFile)>> {
        self.read(async |c| misc::load_lab(c).await)
    }

    fn open_book_store(&self) -> Result<Box<dyn BookStore>> {
        Ok(Box::new(PgBookStore::new(self.core.clone())))
    }

    fn open_webhook_store(&self) -> Result<Box<dyn WebhookStore>> {
        Ok(Box::new(webhooks::PgWebhookStore::new(self.core.clone())))
    }

    fn open_health_store(&self) -> Result<Box<dyn HealthStore>> {
        Ok(Box::new(health::PgHealthStore::new(self.core.clone())))
    }

    fn open_access_store(&self) -> Result<Box<dyn AccessStore>> {
        Ok(Box::new(access::PgAccessStore::new(self.core.clone())))
    }

    fn open_pack_store(&self) -> Result<Box<dyn crate::store::PackStore>> {
        Ok(Box::new(packs::PgPackStore::new(self.core.clone())))
    }

    fn open_retention_store(&self) -> Result<Box<dyn crate::store::retention::RetentionStore>> {
        Ok(Box::new(retention::PgRetentionStore::new(
            self.core.clone(),
        )))
    }

    fn queue_put(&self, run: &QueuedRunRecord) -> Result<()> {
        self.write(async |c| misc::queue_put(c, run).await)
    }

    fn queue_remove(&self, run_id: &str) -> Result<bool> {
        self.write(async |c| misc::queue_remove(c, run_id).await)
    }

    fn queue_claim(&self, run_id: &str) -> Result<bool> {
        self.write(async |c| misc::queue_claim(c, run_id).await)
    }

    fn queue_list(&self) -> Result<Vec<QueuedRunRecord>> {
        self.read(async |c| misc::queue_list(c).await)
    }

    fn queue_signature(&self) -> Result<(i64, i64)> {
        self.read(async |c| misc::queue_signature(c).await)
    }

    fn schedule_put(&self, schedule: &ScheduleRecord) -> Result<()> {
        self.write(async |c| misc::schedule_put(c, schedule).await)
    }

    fn schedule_remove(&self, id: &str) -> Result<bool> {
        self.write(async |c| misc::schedule_remove(c, id).await)
    }

    fn schedule_list(&self) -> Result<Vec<ScheduleRecord>> {
        self.read(async |c| misc::schedule_list(c).await)
    }

    fn schedule_firing_add(&self, firing: &FiringRecord) -> Result<()> {
        self.write(async |c| misc::firing_add(c, firing).await)
    }

    fn schedule_firings(&self, id: &str, limit: u32) -> Result<Vec<FiringRecord>> {
        self.read(async |c| misc::firings(c, id, limit).await)
    }
}
