//! The [`ResourceBroker`] calls. `begin_run` refuses an offline DUT and, in `all` mode,
//! pre-reserves each lane's whole set for the lane's estimated time. `acquire` takes the
//! lane's DUT first, then every resource the task needs, all or nothing: what this attempt
//! took, the DUT included, is given back when something is busy (a lane waiting for a
//! resource must not sit on a DUT another run's lane waits for), and the task waits for
//! what was busy. `release` gives back a task's own reservations, a pooled resource once
//! no remaining task of the lane needs it, and the DUT after the lane's last task;
//! `end_run` gives back everything the run still has.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tokio::sync::mpsc;

use super::take::{busy_reason, claim_now, holder, release_quietly, take_now, Busy, Claimed};
use super::{base_mode, wanted, BookBroker, Booked, Held, LaneState, RunState};
use crate::pack::ResourceMode;
use crate::reserve::fence::FenceId;
use crate::reserve::{Book, BookError, ResId, ReservationMode, ReservationRequest, ResourceKind};
use crate::run::{Grant, Holding, LostLeases, ResourceBroker, TaskNeeds, Wakes};

impl ResourceBroker for BookBroker {
    fn begin_run(
        &self,
        run_id: &str,
        mode: ResourceMode,
        tasks: &[TaskNeeds<'_>],
    ) -> Result<(), String> {
        let mode = base_mode(mode);
        let mut lanes: HashMap<String, LaneState> = HashMap::new();
        let mut duts: HashMap<String, String> = HashMap::new();
        for t in tasks {
            let lane = lanes.entry(t.lane.to_string()).or_default();
            let res: Vec<String> = wanted(t.exclusive, t.shared)
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            lane.remaining.push((t.item, res));
            lane.est_ms = lane
                .est_ms
                .saturating_add((t.est_task_time.max(0.0) * 1000.0) as i64);
            if let Some(d) = t.dut {
                duts.insert(t.lane.to_string(), d.name.clone());
            }
        }
        if let Some(lab) = &self.inner.lab {
            for dut in duts.values() {
                if lab.dut(dut).is_some_and(|d| d.offline) {
                    return Err(format!("DUT {dut} is offline"));
                }
            }
        }
        if mode == ResourceMode::All {
            // Pre-reserve each lane's whole set for the lane's estimated time.
            let cfg = self.inner.cfg;
            let result = self.inner.book.with(|b| -> Result<(), String> {
                for t in tasks {
                    let lane = lanes.get_mut(t.lane).expect("lane");
                    let dur = (((lane.est_ms as f64) * cfg.estimate_factor) as i64)
                        .saturating_add(cfg.margin_ms);
                    for (r, exclusive) in wanted(t.exclusive, t.shared) {
                        if lane.pooled.contains_key(&r) {
                            continue;
                        }
                        let mode = if exclusive {
                            ReservationMode::Exclusive
                        } else {
                            ReservationMode::Shared
                        };
                        let config = t.configs.get(&r).cloned().unwrap_or(Value::Null);
                        let pre = b
                            .request(
                                ReservationRequest::new(&r, holder(run_id, t.lane, None), dur)
                                    .mode(mode)
                                    .config(config)
                                    .lease(cfg.lease_ms),
                            )
                            .map_err(|e| e.to_string())?;
                        lane.pooled.insert(
                            r,
                            Booked::Pre {
                                id: pre.id,
                                from: pre.available_from,
                            },
                        );
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                self.inner.book.with(|b| {
                    for l in lanes.values() {
                        for bk in l.pooled.values() {
                            if let Booked::Pre { id, .. } = bk {
                                release_quietly(b, *id);
                            }
                        }
                    }
                });
                return Err(e);
            }
        }
        self.runs().insert(
            run_id.to_string(),
            RunState {
                mode,
                lanes,
                items: HashMap::new(),
            },
        );
        Ok(())
    }

    fn acquire(&self, needs: &TaskNeeds<'_>) -> Grant {
        let cfg = self.inner.cfg;
        let mut runs = self.runs();
        let run = runs
            .entry(needs.run_id.to_string())
            .or_insert_with(|| RunState {
                mode: ResourceMode::PerTaskSeparate,
                lanes: HashMap::new(),
                items: HashMap::new(),
            });
        let mode = run.mode;
        let lane_name = needs.lane.to_string();
        let lane = run.lanes.entry(lane_name.clone()).or_default();
        let want = wanted(needs.exclusive, needs.shared);
        let task_ms = self.reserve_ms(needs.est_task_time);
        let lane_ms = (((lane.est_ms.max(0) as f64) * cfg.estimate_factor) as i64)
            .saturating_add(cfg.margin_ms);
        let lab = self.inner.lab.clone();
        let key = (needs.run_id.to_string(), needs.item);
        let fence = &*self.inner.fence;
        let lease = cfg.lease_ms;
        let lane_who = holder(needs.run_id, needs.lane, None);
        let answer = self
            .inner
            .book
            .with(|b| -> Result<Result<Vec<Held>, Busy>, String> {
                // What this attempt books and gives back again if it ends busy.
                let mut quiet: Vec<ResId> = Vec::new();
                // Unknown resources can never be had.
                for (r, exclusive) in &want {
                    match b.resource_kind(r) {
                        Err(e) => return Err(e.to_string()),
                        Ok(ResourceKind::Exclusive) if !exclusive => {
                            return Err(format!("{r} is exclusive and cannot be shared"))
                        }
                        Ok(_) => {}
                    }
                }
                // The lane's DUT first. Taken by this attempt, it is given back with the
                // rest if the task cannot start: a lane waiting for a resource must not sit
                // on a DUT another run's lane is waiting for (hold and wait deadlocks).
                let mut dut_fresh: Option<(ResId, Option<FenceId>)> = None;
                if lane.dut.is_none() {
                    if let Some(d) = needs.dut.filter(|d| b.has_resource(&d.name)) {
                        if lab
                            .as_ref()
                            .and_then(|l| l.dut(&d.name))
                            .is_some_and(|d| d.offline)
                        {
                            return Err(format!("DUT {} is offline", d.name));
                        }
                        match take_now(
                            b,
                            fence,
                            &d.name,
                            true,
                            holder(needs.run_id, needs.lane, None),
                            Value::Null,
                            lane_ms,
                            cfg.lease_ms,
                        )
                        .map_err(|e| e.to_string())?
                        {
                            Ok(h) => {
                                dut_fresh = Some((h.id, h.fence));
                                lane.dut = Some(h);
                            }
                            Err((until, reason, probe)) => {
                                quiet.push(probe);
                                let mut busy = None;
                                Busy::add(&mut busy, until, reason, &d.name);
                                let busy = busy.expect("just added");
                                self.wait(key, &busy, quiet);
                                return Ok(Err(busy));
                            }
                        }
                    }
                }
                let now = b.now();
                let mut got: Vec<Held> = Vec::new();
                let mut fresh: Vec<(ResId, Option<FenceId>)> = Vec::new();
                let mut busy: Option<Busy> = None;
                // A resource the lane holds across tasks is booked for the lane's whole
                // estimate in mode `all`, for the task's otherwise.
                let pooled_ms = if mode == ResourceMode::All {
                    lane_ms
                } else {
                    task_ms
                };
                // Book a pooled resource again for this lane, from now.
                let book_pooled = |b: &mut Book, r: &str, exclusive: bool, config, dur| {
                    let m = if exclusive {
                        ReservationMode::Exclusive
                    } else {
                        ReservationMode::Shared
                    };
                    b.request(
                        ReservationRequest::new(r, holder(needs.run_id, needs.lane, None), dur)
                            .mode(m)
                            .config(config)
                            .lease(cfg.lease_ms),
                    )
                };
                for (r, exclusive) in &want {
                    let config = needs.configs.get(r).cloned().unwrap_or(Value::Null);
                    let pooled = matches!(mode, ResourceMode::All | ResourceMode::PerTaskCombine);
                    match (pooled, lane.pooled.get(r).cloned()) {
                        (true, Some(Booked::Held(h))) => got.push(h),
                        (true, Some(Booked::Pre { id, from })) => {
                            if from > now {
                                // Booked for later, but what stood before may have freed
                                // early: book again from now. The new window starts no
                                // later than the old one, and is claimed if it starts now.
                                release_quietly(b, id);
                                quiet.push(id);
                                let pre = book_pooled(b, r, *exclusive, config, pooled_ms)
                                    .map_err(|e| e.to_string())?;
                                let claimed = if pre.available_from <= now {
                                    claim_now(b, fence, pre.id, r, *exclusive, &lane_who, lease)
                                        .map_err(|e| e.to_string())?
                                } else {
                                    Claimed::Rebooked(pre.id, pre.available_from)
                                };
                                match claimed {
                                    Claimed::Held(h) => {
                                        lane.pooled.insert(r.clone(), Booked::Held(h.clone()));
                                        got.push(h);
                                    }
                                    Claimed::Rebooked(id, from) => {
                                        lane.pooled.insert(r.clone(), Booked::Pre { id, from });
                                        Busy::add(&mut busy, from, busy_reason(b, r), r);
                                    }
                                    Claimed::Refused { until, reason } => {
                                        quiet.push(pre.id);
                                        lane.pooled.remove(r);
                                        Busy::add(&mut busy, until, reason, r);
                                    }
                                }
                                continue;
                            }
                            match claim_now(b, fence, id, r, *exclusive, &lane_who, lease) {
                                Ok(Claimed::Held(h)) => {
                                    lane.pooled.insert(r.clone(), Booked::Held(h.clone()));
                                    got.push(h);
                                }
                                Ok(Claimed::Refused { until, reason }) => {
                                    // The database holds it for someone else: given back
                                    // here; the next attempt books it anew.
                                    quiet.push(id);
                                    lane.pooled.remove(r);
                                    Busy::add(&mut busy, until, reason, r);
                                }
                                Ok(Claimed::Rebooked(new_id, from)) => {
                                    // Claimed late and the window was gone: the book gave
                                    // a new pre-reservation; wait for it.
                                    lane.pooled
                                        .insert(r.clone(), Booked::Pre { id: new_id, from });
                                    Busy::add(&mut busy, from, busy_reason(b, r), r);
                                }
                                Err(BookError::UnknownId(_)) => {
                                    // Lapsed long ago and forgotten: book again.
                                    let pre = book_pooled(b, r, *exclusive, config, pooled_ms)
                                        .map_err(|e| e.to_string())?;
                                    lane.pooled.insert(
                                        r.clone(),
                                        Booked::Pre {
                                            id: pre.id,
                                            from: pre.available_from,
                                        },
                                    );
                                    Busy::add(&mut busy, pre.available_from, busy_reason(b, r), r);
                                }
                                Err(e) => return Err(e.to_string()),
                            }
                        }
                        (_, _) => {
                            let (who, dur) = if pooled {
                                (holder(needs.run_id, needs.lane, None), pooled_ms)
                            } else {
                                (holder(needs.run_id, needs.lane, Some(needs.task)), task_ms)
                            };
                            match take_now(b, fence, r, *exclusive, who, config, dur, lease)
                                .map_err(|e| e.to_string())?
                            {
                                Ok(h) => {
                                    fresh.push((h.id, h.fence));
                                    if pooled {
                                        lane.pooled.insert(r.clone(), Booked::Held(h.clone()));
                                    }
                                    got.push(h);
                                }
                                Err((until, reason, probe)) => {
                                    quiet.push(probe);
                                    Busy::add(&mut busy, until, reason, r);
                                }
                            }
                        }
                    }
                }
                if let Some(busy) = busy {
                    // All or nothing: give back what this attempt took.
                    if let Some((id, fenced)) = dut_fresh {
                        fenced.into_iter().for_each(|f| fence.release(f));
                        release_quietly(b, id);
                        quiet.push(id);
                        lane.dut = None;
                    }
                    for (id, fenced) in fresh {
                        fenced.into_iter().for_each(|f| fence.release(f));
                        release_quietly(b, id);
                        quiet.push(id);
                        lane.pooled
                            .retain(|_, bk| !matches!(bk, Booked::Held(h) if h.id == id));
                    }
                    self.wait(key, &busy, quiet);
                    return Ok(Err(busy));
                }
                Ok(Ok(got))
            });
        if !matches!(answer, Ok(Err(_))) {
            self.waiting()
                .items
                .remove(&(needs.run_id.to_string(), needs.item));
        }
        match answer {
            Err(reason) => Grant::Unavailable(reason),
            Ok(Err(Busy { until, reason, .. })) => Grant::Busy { until, reason },
            Ok(Ok(got)) => {
                let lane = &run.lanes[&lane_name];
                let mut holdings: Vec<Holding> = lane.dut.iter().map(Held::holding).collect();
                holdings.extend(got.iter().map(Held::holding));
                if mode == ResourceMode::PerTaskSeparate {
                    run.items.insert(needs.item, got);
                }
                Grant::Granted(holdings)
            }
        }
    }

    fn release(&self, run_id: &str, item: usize, _holdings: &[Holding]) {
        self.waiting().items.remove(&(run_id.to_string(), item));
        let mut runs = self.runs();
        let Some(run) = runs.get_mut(run_id) else {
            return;
        };
        let separate = run.items.remove(&item).unwrap_or_default();
        let mut to_release: Vec<ResId> = separate.iter().map(|h| h.id).collect();
        let mut fences: Vec<FenceId> = separate.iter().filter_map(|h| h.fence).collect();
        for lane in run.lanes.values_mut() {
            let before = lane.remaining.len();
            lane.remaining.retain(|(i, _)| *i != item);
            if lane.remaining.len() == before {
                continue;
            }
            // Keep pooled resources only while a remaining item of the lane needs them.
            let still: HashSet<&String> = lane.remaining.iter().flat_map(|(_, r)| r).collect();
            let drop: Vec<String> = lane
                .pooled
                .keys()
                .filter(|r| !still.contains(r))
                .cloned()
                .collect();
            for r in drop {
                if let Some(bk) = lane.pooled.remove(&r) {
                    to_release.push(match bk {
                        Booked::Pre { id, .. } => id,
                        Booked::Held(h) => {
                            fences.extend(h.fence);
                            h.id
                        }
                    });
                }
            }
            if lane.remaining.is_empty() {
                if let Some(d) = lane.dut.take() {
                    fences.extend(d.fence);
                    to_release.push(d.id);
                }
            }
        }
        drop(runs);
        // The database first: a task of this server woken by the book's release then
        // finds the resource free there too.
        for f in fences {
            self.inner.fence.release(f);
        }
        self.inner.book.with(|b| {
            for id in to_release {
                release_quietly(b, id);
            }
        });
    }

    fn end_run(&self, run_id: &str) {
        {
            let mut w = self.waiting();
            w.runs.remove(run_id);
            w.items.retain(|(r, _), _| r != run_id);
        }
        self.inner
            .lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(run_id);
        for f in self.fences_of(run_id) {
            self.inner.fence.release(f);
        }
        let ids = self.reservations_of(run_id);
        self.runs().remove(run_id);
        self.inner.book.with(|b| {
            for id in ids {
                release_quietly(b, id);
            }
        });
    }

    fn wakes(&self, run_id: &str) -> Option<Wakes> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiting().runs.insert(run_id.to_string(), tx);
        Some(rx)
    }

    fn lost_leases(&self, run_id: &str) -> Option<LostLeases> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run_id.to_string(), tx);
        Some(rx)
    }
}
