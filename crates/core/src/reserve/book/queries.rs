//! What the book answers without changing a reservation: availability of a window and the
//! next free one (kissats `get_resource_availability`), the resources and their units in
//! use, their configuration, one or every live reservation, and who holds, is booked for
//! and waits for each resource.

use serde_json::Value;

use super::{Book, Index};
use crate::clock::EpochMs;
use crate::reserve::error::BookError;
use crate::reserve::types::*;

impl Book {
    /// kissats `get_resource_availability`: whether `[start, end)` is free for an exclusive
    /// request, else the soonest window of the same length.
    pub fn availability(
        &mut self,
        resource: &str,
        start: EpochMs,
        end: EpochMs,
    ) -> Result<Availability, BookError> {
        self.availability_for(resource, start, end, ReservationMode::Exclusive)
    }

    /// As [`Book::availability`] for a request in `mode`.
    pub fn availability_for(
        &mut self,
        resource: &str,
        start: EpochMs,
        end: EpochMs,
        mode: ReservationMode,
    ) -> Result<Availability, BookError> {
        let w = self.next_window(resource, start, end.saturating_sub(start), mode)?;
        Ok(Availability {
            available: w.start == start.max(self.now()),
            avail_start: w.start,
            avail_end: w.end,
        })
    }

    /// The next free window of `duration_ms` at or after `from` (never before now).
    pub fn next_window(
        &mut self,
        resource: &str,
        from: EpochMs,
        duration_ms: i64,
        mode: ReservationMode,
    ) -> Result<Window, BookError> {
        let now = self.now();
        self.sweep(now);
        if duration_ms <= 0 {
            return Err(BookError::InvalidDuration(duration_ms));
        }
        let r = self.res_idx(resource)?;
        let weight = self.weight_for(r, mode)?;
        let start = self.find_slot(r, from.max(now), duration_ms, weight, None);
        Ok(Window {
            start,
            end: start.saturating_add(duration_ms),
        })
    }

    fn in_use_at(&self, r: u32, t: EpochMs) -> u32 {
        match &self.resources[r as usize].index {
            Index::Exclusive(ix) => u32::from(ix.busy_at(t)),
            Index::Shared(p) => p.usage_at(t),
        }
    }

    /// kissats `get_all_resources`, with the units in use now.
    pub fn resources(&mut self) -> Vec<ResourceInfo> {
        let now = self.now();
        self.sweep(now);
        (0..self.resources.len() as u32)
            .map(|r| {
                let res = &self.resources[r as usize];
                ResourceInfo {
                    name: res.name.to_string(),
                    kind: res.kind,
                    in_use: self.in_use_at(r, now),
                    config: res.config.clone(),
                }
            })
            .collect()
    }

    /// kissats `get_available_resources`: resources with at least one free unit now.
    pub fn available_resources(&mut self) -> Vec<String> {
        self.resources()
            .into_iter()
            .filter(|r| r.in_use < r.kind.capacity())
            .map(|r| r.name)
            .collect()
    }

    /// kissats `get_resource_config`.
    pub fn resource_config(&self, resource: &str) -> Result<Value, BookError> {
        let r = self.res_idx(resource)?;
        Ok(self.resources[r as usize].config.clone())
    }

    pub fn resource_kind(&self, resource: &str) -> Result<ResourceKind, BookError> {
        let r = self.res_idx(resource)?;
        Ok(self.resources[r as usize].kind)
    }

    pub fn has_resource(&self, resource: &str) -> bool {
        self.by_name.contains_key(resource)
    }

    /// One live reservation.
    pub fn get(&mut self, id: ResId) -> Option<ReservationView> {
        let now = self.now();
        self.sweep(now);
        self.entries.get(&id.0).map(|e| self.view(id.0, e))
    }

    /// Every live reservation and pre-reservation, by id.
    pub fn reservations(&mut self) -> Vec<ReservationView> {
        let now = self.now();
        self.sweep(now);
        let mut ids: Vec<u64> = self.entries.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| self.view(id, &self.entries[&id]))
            .collect()
    }

    /// Who holds what, who is booked next and who waits, per resource that has any.
    pub fn holds(&mut self) -> Vec<ResourceHolds> {
        let all = self.reservations();
        let mut per: Vec<Option<ResourceHolds>> = (0..self.resources.len()).map(|_| None).collect();
        for v in all {
            let r = self.by_name[&v.resource] as usize;
            let slot = per[r].get_or_insert_with(|| ResourceHolds {
                resource: self.resources[r].name.to_string(),
                kind: self.resources[r].kind,
                holders: Vec::new(),
                booked: Vec::new(),
                waiters: Vec::new(),
            });
            match v.status {
                ReservationStatus::Held => slot.holders.push(v),
                ReservationStatus::Booked => slot.booked.push(v),
                ReservationStatus::Waiting => slot.waiters.push(v),
            }
        }
        per.into_iter()
            .flatten()
            .map(|mut h| {
                h.holders.sort_by_key(|v| (v.start, v.id));
                h.booked.sort_by_key(|v| (v.start, v.id));
                h.waiters.sort_by_key(|v| (v.start, v.id));
                h
            })
            .collect()
    }
}
