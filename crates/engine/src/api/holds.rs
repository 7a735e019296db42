//! Handlers for the lab and its reservation book: the lab view, DUT search, who holds
//! what, operators' holds and releases. A console that owns the book changes it here;
//! one that does not posts to its owner.

use std::sync::MutexGuard;

use super::error::{book_error, bound_error};
use super::lab_view::{self, LabView, Reservations};
use super::{ApiError, ErrorCode, LocalConsole, Response};
use crate::bounds;
use crate::clock::EpochMs;
use crate::lab::Lab;
use crate::reserve::{BookCommand, BookHandle, BookReply, Holder, LiveError, ResId};

impl LocalConsole {
    pub(super) fn get_lab(&self) -> Result<Response, ApiError> {
        let mut view = self.lab_view()?;
        view.health = self.health.all().map_err(super::error::store_error)?;
        Ok(Response::GetLab(Box::new(view)))
    }

    pub(super) fn reservations(&self) -> Result<Response, ApiError> {
        Ok(Response::Reservations(Reservations {
            now: self.clock.now_ms(),
            resources: self.holds()?,
        }))
    }

    #[allow(clippy::too_many_arguments)] // the fields of `Request::Hold`
    pub(super) fn hold(
        &self,
        resource: String,
        by: String,
        duration_s: f64,
        from_ms: Option<EpochMs>,
        next_available: bool,
        mode: Option<crate::reserve::ReservationMode>,
        config: Option<serde_json::Value>,
        lease_s: Option<f64>,
    ) -> Result<Response, ApiError> {
        let duration_ms = bounds::hold_duration_ms(duration_s).map_err(bound_error)?;
        bounds::check_hold(duration_ms, from_ms, self.clock.now_ms()).map_err(bound_error)?;
        if by.trim().is_empty() {
            return Err(ApiError::invalid("say who holds it (by)"));
        }
        let lease_ms = lease_s
            .map(|l| {
                if l.is_finite() && (1.0..=86_400.0).contains(&l) {
                    Ok((l * 1000.0).round() as i64)
                } else {
                    Err(ApiError::invalid(format!(
                        "lease_s: {l} is out of range (1 to 86,400 seconds)"
                    )))
                }
            })
            .transpose()?;
        if let Some(c) = &config {
            if serde_json::to_vec(c).map_or(0, |v| v.len()) > 64 * 1024 {
                return Err(ApiError::new(
                    ErrorCode::TooLarge,
                    "config: a requested configuration is at most 64 KiB as JSON",
                ));
            }
        }
        let cmd = BookCommand::Hold {
            resource,
            by,
            from: from_ms,
            duration_ms,
            next_available,
            options: crate::reserve::live::HoldOptions {
                mode: mode.unwrap_or_default(),
                config: config.unwrap_or(serde_json::Value::Null),
                lease_ms,
            },
        };
        match self.book_call(cmd)? {
            BookReply::Held { reservation } => Ok(Response::Hold(reservation)),
            other => Err(ApiError::internal(format!(
                "unexpected answer from the reservation book: {other:?}"
            ))),
        }
    }

    /// Renew the lease of an operator's hold made with one: it now lapses a lease from
    /// now (never after its window ends).
    pub(super) fn renew_hold(&self, id: ResId) -> Result<Response, ApiError> {
        let found = self
            .holds()?
            .into_iter()
            .flat_map(|r| r.holders.into_iter().chain(r.booked))
            .find(|r| r.id == id)
            .ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("id: no hold or booking {id}"))
            })?;
        if !matches!(*found.holder, Holder::Operator { .. }) {
            return Err(ApiError::invalid(format!(
                "id: {} is a run's reservation, not an operator's hold",
                found.resource
            )));
        }
        match self.book_call(BookCommand::Renew { id })? {
            BookReply::Held { reservation } => Ok(Response::RenewHold(reservation)),
            other => Err(ApiError::internal(format!(
                "unexpected answer from the reservation book: {other:?}"
            ))),
        }
    }

    pub(super) fn release(&self, id: ResId) -> Result<Response, ApiError> {
        match self.book_call(BookCommand::Release { id })? {
            BookReply::Released => Ok(Response::Release { id }),
            other => Err(ApiError::internal(format!(
                "unexpected answer from the reservation book: {other:?}"
            ))),
        }
    }

    /// Move the end of an operator's hold `duration_s` later; the hold stays within the
    /// bounds of a new one.
    pub(super) fn extend_hold(&self, id: ResId, duration_s: f64) -> Result<Response, ApiError> {
        let extra_ms = bounds::hold_duration_ms(duration_s).map_err(bound_error)?;
        let found = self
            .holds()?
            .into_iter()
            .flat_map(|r| r.holders.into_iter().chain(r.booked))
            .find(|r| r.id == id)
            .ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("id: no hold or booking {id}"))
            })?;
        if !matches!(*found.holder, Holder::Operator { .. }) {
            return Err(ApiError::invalid(format!(
                "id: {} is a run's reservation, not an operator's hold",
                found.resource
            )));
        }
        let end = found.end.saturating_add(extra_ms);
        bounds::check_hold(end.saturating_sub(found.start), None, self.clock.now_ms())
            .map_err(bound_error)?;
        match self.book_call(BookCommand::Extend { id, end })? {
            BookReply::Held { reservation } => Ok(Response::ExtendHold(reservation)),
            other => Err(ApiError::internal(format!(
                "unexpected answer from the reservation book: {other:?}"
            ))),
        }
    }

    pub(super) fn lab(&self) -> Result<&Lab, ApiError> {
        self.lab.as_ref().ok_or_else(|| match &self.paths.lab_file {
            None => ApiError::new(
                ErrorCode::Unavailable,
                "this console has no lab file (--lab / TESTBAY_LAB)",
            ),
            Some(f) => ApiError::new(
                ErrorCode::Unavailable,
                format!("the lab file {} has problems", f.display()),
            )
            .with_diagnostics(self.lab_errors.clone()),
        })
    }

    pub(super) fn book(&self) -> Result<MutexGuard<'_, BookHandle>, ApiError> {
        self.lab()?;
        let book = self.book.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                self.book_note
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or_else(|| "no reservation book".into()),
            )
        })?;
        Ok(book.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn holds(&self) -> Result<Vec<crate::reserve::ResourceHolds>, ApiError> {
        match &*self.book()? {
            BookHandle::Owner(b) => Ok(b.holds()),
            BookHandle::Client(c) => {
                let list = c
                    .reservations()
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(lab_view::holds_from_list(self.lab()?, list))
            }
        }
    }

    /// Change the book: here when this console owns it (typed errors), else through its
    /// owner's inbox.
    fn book_call(&self, cmd: BookCommand) -> Result<BookReply, ApiError> {
        let book = self.book()?;
        match &*book {
            BookHandle::Owner(b) => {
                let reply = match cmd {
                    BookCommand::Hold {
                        resource,
                        by,
                        from,
                        duration_ms,
                        next_available,
                        options,
                    } => b
                        .hold_with(&resource, &by, from, duration_ms, next_available, &options)
                        .map(|reservation| BookReply::Held { reservation }),
                    BookCommand::Release { id } => b.release(id).map(|()| BookReply::Released),
                    BookCommand::Renew { id } => b
                        .renew_view(id)
                        .map(|reservation| BookReply::Held { reservation }),
                    BookCommand::Extend { id, end } => b
                        .extend_to(id, end)
                        .map(|reservation| BookReply::Held { reservation }),
                };
                b.flush();
                reply.map_err(book_error)
            }
            client => match client.call(cmd, self.clock.now_ms()) {
                Ok(BookReply::Error { message }) => {
                    Err(ApiError::new(ErrorCode::Conflict, message))
                }
                Ok(r) => Ok(r),
                Err(e @ LiveError::NoAnswer(_)) => {
                    Err(ApiError::new(ErrorCode::Busy, e.to_string()))
                }
                Err(e) => Err(ApiError::internal(e.to_string())),
            },
        }
    }

    fn lab_view(&self) -> Result<LabView, ApiError> {
        match &self.lab {
            Some(l) => {
                let holds = if self.book.is_some() {
                    self.holds()?
                } else {
                    Vec::new()
                };
                Ok(lab_view::lab_view(
                    l,
                    &holds,
                    self.book_note
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                ))
            }
            None => Ok(LabView {
                file: self
                    .paths
                    .lab_file
                    .as_ref()
                    .map(|f| f.display().to_string()),
                name: String::new(),
                description: String::new(),
                racks: vec![],
                duts: vec![],
                resources: vec![],
                diagnostics: self.lab_errors.clone(),
                book_note: None,
                health: Vec::new(),
            }),
        }
    }

    pub(super) fn search_duts(
        &self,
        query: &str,
        pack: Option<String>,
        ats: Option<String>,
    ) -> Result<Response, ApiError> {
        let lab = self.lab()?;
        let terms: Vec<&str> = query.split_whitespace().collect();
        let found = lab
            .find(&terms)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let pack = pack.map(|p| self.find_pack(&p)).transpose()?;
        let duts = found
            .into_iter()
            .filter(|d| {
                ats.as_deref()
                    .is_none_or(|a| d.location.as_ref().is_some_and(|l| l.rack == a))
            })
            .filter(|d| {
                pack.as_ref()
                    .is_none_or(|p| lab_view::dut_valid_for(p, d, ats.as_deref()))
            })
            .cloned()
            .collect();
        Ok(Response::SearchDuts(duts))
    }
}
