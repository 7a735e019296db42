//! Handlers for packs: the list and one pack (the folders the console finds on disk and
//! the versions of the lab's pack library the caller sees), a pack found for a launch,
//! and pushing and publishing into the lab's library (`pack::lab_library`).
//!
//! A pack reference names a pack folder on disk by its name first (as it always has);
//! otherwise a version of the lab's library the caller sees: a content hash, a
//! `NAME@VERSION`, or a `NAME` (its newest push). A launch that names a library version
//! is pinned to its content hash before it is routed (or forwarded to the server that
//! owns the book), so the run launches exactly what the caller saw.

use std::sync::Arc;

use super::local::blocking;
use super::{ApiError, Caller, ErrorCode, LaunchSpec, LocalConsole, PushedPack, Request, Response};
use crate::pack::discover::PackEntry;
use crate::pack::view::{LibraryInfo, PackDetail, PackSummary};
use crate::pack::{LabLibrary, LabLibraryError, LoadedPack, Viewer};
use crate::store::{Role, StoredPack};

fn viewer(caller: &Caller) -> Viewer {
    Viewer {
        name: caller.name().to_string(),
        admin: caller.role.allows(Role::Admin),
    }
}

fn library_error(e: LabLibraryError) -> ApiError {
    match e {
        LabLibraryError::Broken(diagnostics) => ApiError::new(
            ErrorCode::PackBroken,
            format!("the pack has {} problem(s)", diagnostics.len()),
        )
        .with_diagnostics(diagnostics),
        LabLibraryError::BadArchive(m) => ApiError::invalid(m),
        e @ LabLibraryError::VersionTaken { .. } => {
            ApiError::new(ErrorCode::Conflict, e.to_string())
        }
        LabLibraryError::NotFound(m) => ApiError::not_found(m),
        LabLibraryError::NotOwner(m) => ApiError::new(ErrorCode::Forbidden, m),
        LabLibraryError::Store(s) => super::error::store_error(s),
        LabLibraryError::Io(m) => ApiError::internal(m),
    }
}

/// The library's side of a summary.
fn info(p: &StoredPack) -> LibraryInfo {
    LibraryInfo {
        owner: p.owner.clone(),
        private: p.private,
        pushed_ms: p.pushed_ms,
        reference: format!("{}@{}", p.name, p.version),
    }
}

/// A library version as the list shows it; one whose files cannot be had is listed
/// broken, with why.
fn summary(lib: &LabLibrary, p: &StoredPack) -> PackSummary {
    let mut s = match lib.load(p) {
        Ok(loaded) => PackSummary::of(&entry(loaded)),
        Err(e) => PackSummary {
            name: p.name.clone(),
            version: Some(p.version.clone()),
            description: String::new(),
            dir: String::new(),
            ok: false,
            diagnostics: match e {
                LabLibraryError::Broken(d) => d,
                other => vec![crate::diag::Diagnostic {
                    file: std::path::PathBuf::from(format!("{}@{}", p.name, p.version)),
                    line: None,
                    column: None,
                    key_path: None,
                    message: other.to_string(),
                }],
            },
            content_hash: Some(p.content_hash.clone()),
            task_count: 0,
            group_count: 0,
            groups: vec![],
            library: None,
        },
    };
    s.library = Some(info(p));
    s
}

/// A pushed pack's archive: base64 text in a `push_pack` request's JSON, or the bytes a
/// transport received as they are (`Console::push_pack_as`).
pub(crate) enum Archive {
    Text(String),
    Bytes(Vec<u8>),
}

impl Archive {
    fn into_bytes(self) -> Result<Vec<u8>, ApiError> {
        match self {
            Archive::Bytes(b) => Ok(b),
            Archive::Text(t) => crate::pack::archive::from_text(&t)
                .map_err(|e| ApiError::invalid(format!("archive: not base64: {e}"))),
        }
    }
}

/// The event that tells every client (and, through the relay, every server's clients)
/// to list the packs again: the version's library reference in `dirs`.
fn library_changed(p: &StoredPack) -> super::Event {
    super::Event::PacksChanged {
        dirs: vec![format!("{}@{}", p.name, p.version)],
    }
}

fn entry(loaded: LoadedPack) -> PackEntry {
    PackEntry {
        dir: loaded.dir.clone(),
        result: Ok(loaded),
    }
}

impl LocalConsole {
    /// Answer `request` for `caller` where the pack library decides what the caller
    /// sees; any other request goes to `route`.
    pub(super) async fn route_packs(
        &self,
        caller: &Caller,
        request: Request,
        uploaded: Option<Vec<u8>>,
    ) -> Result<Response, ApiError> {
        match request {
            Request::ListPacks => self.list_packs(caller).await,
            Request::GetPack { name } => self.get_pack(caller, name).await,
            Request::PushPack { archive, private } => {
                let archive = match uploaded {
                    Some(bytes) => Archive::Bytes(bytes),
                    None => Archive::Text(archive),
                };
                self.push_pack(caller, archive, private).await
            }
            Request::PublishPack { pack } => self.publish_pack(caller, pack).await,
            Request::Launch(spec) => {
                let spec = self.pin_launch(caller, spec).await?;
                self.route(Request::Launch(spec)).await
            }
            other => self.route(other).await,
        }
    }

    fn lab_library(&self) -> Result<Arc<LabLibrary>, ApiError> {
        self.lab_library.clone().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                "this console's store keeps no pack library",
            )
        })
    }

    /// The packs on disk, then the library's versions the caller sees.
    pub(super) async fn list_packs(&self, caller: &Caller) -> Result<Response, ApiError> {
        let mut all = self.library.summaries();
        if let Some(lib) = self.lab_library.clone() {
            let viewer = viewer(caller);
            let pushed = blocking(move || {
                let packs = lib.list(&viewer).map_err(library_error)?;
                Ok(packs.iter().map(|p| summary(&lib, p)).collect::<Vec<_>>())
            })
            .await?;
            all.extend(pushed);
        }
        Ok(Response::ListPacks(all))
    }

    pub(super) async fn get_pack(
        &self,
        caller: &Caller,
        name: String,
    ) -> Result<Response, ApiError> {
        if let Some(d) = self.library.detail(&name) {
            return Ok(Response::GetPack(Box::new(d)));
        }
        let Some(lib) = self.lab_library.clone() else {
            return Err(self.no_pack(&name));
        };
        let viewer = viewer(caller);
        let reference = name.clone();
        let found = blocking(move || {
            let Some(p) = lib.resolve(&reference, &viewer).map_err(library_error)? else {
                return Ok(None);
            };
            let loaded = lib.load(&p).map_err(library_error)?;
            let mut d = PackDetail::of(&entry(loaded));
            d.summary.library = Some(info(&p));
            Ok(Some(d))
        })
        .await?;
        match found {
            Some(d) => Ok(Response::GetPack(Box::new(d))),
            None => Err(self.no_pack(&name)),
        }
    }

    pub(super) async fn push_pack(
        &self,
        caller: &Caller,
        archive: Archive,
        private: bool,
    ) -> Result<Response, ApiError> {
        let lib = self.lab_library()?;
        let owner = caller.name().to_string();
        let now = self.clock.now_ms();
        let events = self.events.clone();
        blocking(move || {
            let bytes = archive.into_bytes()?;
            let pushed = lib
                .push(&bytes, &owner, private, now)
                .map_err(library_error)?;
            tracing::info!(
                pack = %pushed.stored.name,
                version = %pushed.stored.version,
                hash = %pushed.stored.content_hash,
                owner = %owner,
                private,
                unchanged = pushed.unchanged,
                "pack pushed into the lab's library"
            );
            if !pushed.unchanged {
                let _ = events.send(library_changed(&pushed.stored));
            }
            Ok(Response::PushPack(PushedPack {
                pack: summary(&lib, &pushed.stored),
                unchanged: pushed.unchanged,
            }))
        })
        .await
    }

    pub(super) async fn publish_pack(
        &self,
        caller: &Caller,
        pack: String,
    ) -> Result<Response, ApiError> {
        let lib = self.lab_library()?;
        let viewer = viewer(caller);
        let events = self.events.clone();
        blocking(move || {
            let p = lib.publish(&pack, &viewer).map_err(library_error)?;
            let _ = events.send(library_changed(&p));
            Ok(Response::PublishPack(summary(&lib, &p)))
        })
        .await
    }

    /// A launch of a library version, pinned to its content hash; one of a pack on disk
    /// as it came. A private version the caller does not see is not found.
    async fn pin_launch(
        &self,
        caller: &Caller,
        mut spec: LaunchSpec,
    ) -> Result<LaunchSpec, ApiError> {
        if self.library.get(&spec.pack).is_some() {
            return Ok(spec);
        }
        let Some(lib) = self.lab_library.clone() else {
            return Ok(spec);
        };
        let viewer = viewer(caller);
        let reference = spec.pack.clone();
        let pinned = blocking(move || {
            let seen = lib.resolve(&reference, &viewer).map_err(library_error)?;
            let hidden = seen.is_none()
                && lib
                    .resolve(
                        &reference,
                        &Viewer {
                            name: String::new(),
                            admin: true,
                        },
                    )
                    .map_err(library_error)?
                    .is_some();
            Ok((seen.map(|p| p.content_hash), hidden))
        })
        .await?;
        match pinned {
            (Some(hash), _) => spec.pack = hash,
            (None, true) => {
                return Err(ApiError::not_found(format!(
                    "no pack {} that {} may see",
                    spec.pack,
                    caller.name()
                )))
            }
            (None, false) => {}
        }
        Ok(spec)
    }

    fn no_pack(&self, name: &str) -> ApiError {
        let names: Vec<String> = self.library.entries().iter().map(|e| e.name()).collect();
        ApiError::not_found(format!(
            "no pack named {name:?}; the library has: {}",
            names.join(", ")
        ))
    }

    /// The pack called `name`, loaded; `pack_broken` with its diagnostics when it has
    /// problems. A pack folder on disk by name first, else a version of the lab's
    /// library (any, private ones included: callers are checked by `pin_launch`).
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
        if let Some(errors) = broken {
            return Err(ApiError::new(
                ErrorCode::PackBroken,
                format!("pack {name} has {} problem(s)", errors.diagnostics.len()),
            )
            .with_diagnostics(errors.diagnostics));
        }
        if let Some(lib) = &self.lab_library {
            let all = Viewer {
                name: String::new(),
                admin: true,
            };
            if let Some(p) = lib.resolve(name, &all).map_err(library_error)? {
                return lib.load(&p).map_err(library_error);
            }
        }
        Err(self.no_pack(name))
    }
}
