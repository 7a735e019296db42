//! What of a run's record could not be written: a run whose record is not whole ends
//! `errored`, saying what and why.

/// Writes of one run that failed. Any of them makes the run end `errored`, saying which
/// and why (`Driver::drive`): a run must not look complete when its record is not.
#[derive(Debug, Default)]
pub(crate) struct StorageTrouble {
    /// Results, phase starts, statuses and commits the store refused.
    pub store_writes: u32,
    pub store_error: Option<String>,
    /// Tasks whose folder or files (params, logs) could not be made; they end Errored.
    pub task_files: u32,
    pub file_error: Option<String>,
}

impl StorageTrouble {
    pub fn store_failed(&mut self, error: &dyn std::fmt::Display) {
        self.store_writes += 1;
        self.store_error.get_or_insert_with(|| error.to_string());
    }

    pub fn files_failed(&mut self, error: &str) {
        self.task_files += 1;
        self.file_error.get_or_insert_with(|| error.to_string());
    }

    /// Why the run is `errored`, if it is; `lost` = results found missing from the store
    /// at the end.
    pub fn reason(&self, lost: u32) -> Option<String> {
        let mut parts = Vec::new();
        let store_error = self
            .store_error
            .as_deref()
            .unwrap_or("the database did not keep them");
        if lost > 0 {
            parts.push(format!(
                "{lost} task result(s) could not be stored ({store_error})"
            ));
        } else if self.store_writes > 0 {
            parts.push(format!(
                "{} write(s) to the store failed ({store_error})",
                self.store_writes
            ));
        }
        if let Some(e) = &self.file_error {
            parts.push(format!(
                "{} task(s) could not be prepared ({e})",
                self.task_files
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}
