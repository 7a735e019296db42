//! Handlers for results across runs: a task's history, a measurement's history, yield
//! per DUT model, flaky tasks and the comparison of two runs.

use super::error::store_error;
use super::local::blocking;
use super::{ApiError, LocalConsole, Response};
use crate::analysis::{self, CompareOptions, FlakyQuery};
use crate::store::{MeasurementQuery, TaskHistoryQuery};

fn need(key: &str, v: &str) -> Result<(), ApiError> {
    if v.trim().is_empty() {
        return Err(ApiError::invalid(format!("`{key}` must not be empty")));
    }
    Ok(())
}

impl LocalConsole {
    pub(super) async fn task_history(&self, q: TaskHistoryQuery) -> Result<Response, ApiError> {
        need("pack", &q.pack)?;
        need("task", &q.task)?;
        let store = self.store.clone();
        let rows = blocking(move || store.task_history(&q).map_err(store_error)).await?;
        Ok(Response::TaskHistory(rows))
    }

    pub(super) async fn measurement_history(
        &self,
        q: MeasurementQuery,
    ) -> Result<Response, ApiError> {
        need("pack", &q.pack)?;
        need("task", &q.task)?;
        need("name", &q.name)?;
        let store = self.store.clone();
        let rows = blocking(move || store.measurement_history(&q).map_err(store_error)).await?;
        Ok(Response::MeasurementHistory(rows))
    }

    pub(super) async fn measurement_yield(
        &self,
        pack: String,
        last_runs: u32,
    ) -> Result<Response, ApiError> {
        need("pack", &pack)?;
        let store = self.store.clone();
        let rows = blocking(move || {
            store
                .measurement_yield(&pack, last_runs)
                .map_err(store_error)
        })
        .await?;
        Ok(Response::MeasurementYield(rows))
    }

    pub(super) async fn flaky(&self, q: FlakyQuery) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let rows = blocking(move || analysis::flaky_tasks(store.as_ref(), &q).map_err(store_error))
            .await?;
        Ok(Response::Flaky(rows))
    }

    pub(super) async fn compare_runs(
        &self,
        a: String,
        b: String,
        opts: CompareOptions,
    ) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let out = blocking(move || {
            let ra = store.get_run(&a).map_err(store_error)?;
            let rb = store.get_run(&b).map_err(store_error)?;
            if ra.pack_name != rb.pack_name {
                return Err(ApiError::invalid(format!(
                    "runs {a} ({}) and {b} ({}) are of different packs",
                    ra.pack_name, rb.pack_name
                )));
            }
            let ta = store.run_tasks(&a).map_err(store_error)?;
            let tb = store.run_tasks(&b).map_err(store_error)?;
            Ok(analysis::compare_runs(&ra, &ta, &rb, &tb, &opts))
        })
        .await?;
        Ok(Response::CompareRuns(Box::new(out)))
    }

    pub(super) async fn pin_baseline(
        &self,
        run_id: String,
        dut_model: Option<String>,
    ) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let now = self.clock.now_ms();
        let b = blocking(move || {
            store
                .pin_baseline(&run_id, dut_model.as_deref(), now)
                .map_err(store_error)
        })
        .await?;
        Ok(Response::PinBaseline(b))
    }

    pub(super) async fn unpin_baseline(
        &self,
        pack: String,
        dut_model: Option<String>,
    ) -> Result<Response, ApiError> {
        need("pack", &pack)?;
        let store = self.store.clone();
        let removed = blocking(move || {
            store
                .unpin_baseline(&pack, dut_model.as_deref())
                .map_err(store_error)
        })
        .await?;
        Ok(Response::UnpinBaseline { removed })
    }

    pub(super) async fn baselines(&self, pack: Option<String>) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let rows = blocking(move || store.baselines(pack.as_deref()).map_err(store_error)).await?;
        Ok(Response::Baselines(rows))
    }
}
