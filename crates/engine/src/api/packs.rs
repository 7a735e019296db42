//! Handlers for the pack library: the list, one pack, a pack found by name for a launch.

use super::{ApiError, ErrorCode, LocalConsole, Response};
use crate::pack::LoadedPack;

impl LocalConsole {
    pub(super) fn list_packs(&self) -> Response {
        Response::ListPacks(self.library.summaries())
    }

    pub(super) fn get_pack(&self, name: &str) -> Result<Response, ApiError> {
        match self.library.detail(name) {
            Some(d) => Ok(Response::GetPack(Box::new(d))),
            None => Err(self.no_pack(name)),
        }
    }

    fn no_pack(&self, name: &str) -> ApiError {
        let names: Vec<String> = self.library.entries().iter().map(|e| e.name()).collect();
        ApiError::not_found(format!(
            "no pack named {name:?}; the library has: {}",
            names.join(", ")
        ))
    }

    /// The pack called `name`, loaded; `pack_broken` with its diagnostics when it has
    /// problems.
    pub(super) fn find_pack(&self, name: &str) -> Result<LoadedPack, ApiError> {
        if let Some(p) = self.library.get(name) {
            return Ok(p);
        }
        let broken = self
            .library
            .entries()
            .into_iter()
            .find(|e| e.name() == name)
            .and_then(|e| e.result.err());
        match broken {
            Some(errors) => Err(ApiError::new(
                ErrorCode::PackBroken,
                format!("pack {name} has {} problem(s)", errors.diagnostics.len()),
            )
            .with_diagnostics(errors.diagnostics)),
            None => Err(self.no_pack(name)),
        }
    }
}
