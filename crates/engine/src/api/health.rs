//! DUT health requests (see `crate::health`): a DUT's health and history, an operator's
//! restore, a check run now; the launch rule for DUTs in bad health; and the tick that
//! launches due health checks through the normal launch path.

use super::error::store_error;
use super::local::blocking;
use super::{ApiError, ErrorCode, HealthReport, LaunchSpec, LocalConsole, Response};
use crate::plan::DutTarget;
use crate::store::Health;

/// Longest note an operator gives with a restore, in bytes.
const MAX_NOTE_BYTES: usize = 2000;
/// Health changes a report shows.
const HISTORY: u32 = 100;

impl LocalConsole {
    /// Launch every due health check (DUTs of the lab with a check whose interval has
    /// passed or whose infrastructure failures reached `after_failures`, in service, not
    /// being checked) through the normal launch path; the runs launched.
    pub async fn health_tick(&self) -> Vec<String> {
        let health = self.health.clone();
        let due = match blocking(move || health.due().map_err(store_error)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot tell which health checks are due");
                return Vec::new();
            }
        };
        let mut launched = Vec::new();
        for d in due {
            tracing::info!(dut = %d.dut, why = d.why.as_str(), pack = %d.check.pack, "health check due");
            match self.launch_check(&d.dut).await {
                Ok(run_id) => launched.push(run_id),
                Err(e) => {
                    tracing::warn!(dut = %d.dut, error = %e.message, "cannot launch the health check")
                }
            }
        }
        launched
    }

    /// The health check of `dut`, launched now (forced: its DUT may be bad).
    async fn launch_check(&self, dut: &str) -> Result<String, ApiError> {
        let check = self.health.check_of(dut).ok_or_else(|| {
            ApiError::not_found(format!("DUT {dut} has no health check in the lab file"))
        })?;
        if self.health.checking(dut) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("a health check of {dut} is already running"),
            ));
        }
        let spec = LaunchSpec {
            pack: check.pack.clone(),
            groups: check.group.iter().cloned().collect(),
            duts: vec![dut.to_string()],
            force: true,
            ..Default::default()
        };
        let Response::Launch { run_id, .. } = self.launch(spec).await? else {
            return Err(ApiError::internal("launch answered something else"));
        };
        self.health.launched(dut, &run_id).map_err(store_error)?;
        Ok(run_id)
    }

    pub(super) async fn check_dut(&self, dut: String) -> Result<Response, ApiError> {
        self.lab()?;
        let run_id = self.launch_check(&dut).await?;
        Ok(Response::CheckDut { run_id })
    }

    fn report(&self, dut: &str) -> Result<HealthReport, ApiError> {
        let (health, history) = self.health.of(dut, HISTORY).map_err(store_error)?;
        Ok(HealthReport {
            health,
            check: self.health.check_of(dut),
            checking: self.health.checking(dut),
            history,
        })
    }

    fn known_dut(&self, dut: &str) -> Result<(), ApiError> {
        match self.lab()?.dut(dut) {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(format!("DUT {dut} is not in the lab"))),
        }
    }

    pub(super) async fn dut_health(&self, dut: String) -> Result<Response, ApiError> {
        self.known_dut(&dut)?;
        Ok(Response::DutHealth(self.report(&dut)?))
    }

    pub(super) async fn restore_dut(
        &self,
        dut: String,
        note: String,
    ) -> Result<Response, ApiError> {
        self.known_dut(&dut)?;
        let note = note.trim().to_string();
        if note.is_empty() {
            return Err(ApiError::invalid("note: say why the DUT is good again"));
        }
        if note.len() > MAX_NOTE_BYTES {
            return Err(ApiError::invalid(format!(
                "note: {} bytes; at most {MAX_NOTE_BYTES}",
                note.len()
            )));
        }
        self.health.restore(&dut, &note).map_err(store_error)?;
        self.queue.kick();
        Ok(Response::RestoreDut(self.report(&dut)?))
    }

    /// A launch on a DUT in bad health is refused (`dut_bad`) unless forced.
    pub(super) fn check_health(&self, duts: &[DutTarget]) -> Result<(), ApiError> {
        if self.lab.is_none() {
            return Ok(());
        }
        for d in duts {
            let (h, _) = self.health.of(&d.name, 0).map_err(store_error)?;
            if h.health == Health::Bad {
                return Err(ApiError::new(
                    ErrorCode::DutBad,
                    format!(
                        "DUT {} is in bad health{}: {}; restore it (testbay lab health {} --restore --note ...) or launch with force",
                        d.name,
                        h.since_ms
                            .map(|t| format!(" since {}", crate::timefmt::fmt_ms(t)))
                            .unwrap_or_default(),
                        h.reason.as_deref().unwrap_or("a health check failed"),
                        d.name
                    ),
                ));
            }
        }
        Ok(())
    }
}
