//! [`LabFence`]: the lab book as the [`Fence`] under a console's in-memory book (see
//! `reserve::fence`). A claim is `request` for exactly the database's now (the
//! exclusion constraint, or the row lock of a shared resource, decides) and `claim` at
//! once, both the lab book's own calls; renewals, extensions and releases are its
//! `renew`, `extend` and `release`.
//!
//! The broker's calls are synchronous, so a `LabFence` owns a small runtime (one worker
//! thread) that drives its connections and timers, and a call waits for its future on
//! the calling thread, as the PostgreSQL store's calls do. Every call gives up after
//! [`LabFence::call_timeout`] (a database that does not answer refuses a claim rather
//! than holding the book up).
//!
//! The fence listens on the lab book's channel (a [`BookListener`] on its runtime,
//! connected again after a lost connection): a reservation another server released, or
//! that was found lapsed, is told to [`Fence::on_freed`]'s listeners (the broker wakes
//! the tasks waiting for that resource).
//!
//! A lease is *lost* when the database says so (the row lapsed or was ended) or when a
//! renewal failed and the lease the last successful one granted (counted from that
//! call's start, capped where the database capped it at the window's end) would run out
//! before the next renewal (a renewal period, `lease / 3`, plus a call's timeout) could
//! get through: the run stops before the database may give the resource to another
//! server, not after. The call timeout is therefore kept at most `lease / 3`. An
//! extension the database did not take is asked again at each renewal.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{BookListener, LabBook, LabBookConfig, LabError, LabResult, LabState};
use crate::blocking::OwnedRuntime;
use crate::clock::EpochMs;
use crate::reserve::fence::{Fence, FenceClaim, FenceHold, FenceId, Freed, Refused};
use crate::reserve::{
    fmt_ms_short, ClaimOutcome, Holder, ResId, ReservationMode, ReservationRequest, ResourceSpec,
    Window,
};

/// How long to wait before asking again when the database could not be asked.
const UNREACHABLE_RETRY_MS: i64 = 5_000;
/// How soon to ask again when the resource is booked, not yet claimed, by another
/// server: its claim follows at once.
const BOOKED_RETRY_MS: i64 = 1_000;
/// How long to wait before listening again after the listener's connection ended.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// The fence's [`Fence::on_freed`] listeners.
type FreedList = Mutex<Vec<Freed>>;

/// A claim the database holds for this server.
#[derive(Debug, Clone)]
struct Fenced {
    resource: String,
    /// The lease runs at least until then (the start of the last call that set it, plus
    /// what the database granted: the lease, or less where it is capped at the window's
    /// end).
    confirmed_until: Instant,
    lease: Duration,
    /// The window's end by the database's clock.
    end: EpochMs,
    /// The end the book asked for (`end` plus the extensions not yet taken by the
    /// database); tried again each renewal until `end` reaches it.
    wanted_end: EpochMs,
}

/// See the module doc.
pub struct LabFence {
    book: LabBook,
    rt: OwnedRuntime,
    timeout: Duration,
    held: Mutex<HashMap<FenceId, Fenced>>,
    freed: Arc<FreedList>,
}

impl LabFence {
    /// Open the lab book at `url` as server `server` and make its resources `resources`
    /// (the lab file's). Calls give up after `timeout`.
    pub fn open(
        url: &str,
        server: &str,
        resources: &[ResourceSpec],
        timeout: Duration,
    ) -> LabResult<LabFence> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("testbay-fence")
            .enable_all()
            .build()
            .map_err(|e| LabError::Connect(Box::new(e)))?;
        let rt = OwnedRuntime::new(rt);
        let book = rt.block(async {
            // A fenced claim is requested and claimed at once: a pre-reservation left
            // unclaimed (its server died in between) is held only for as long as a call
            // may take.
            let cfg = LabBookConfig {
                claim_grace_ms: (2 * timeout.as_millis() as i64).max(1_000),
                ..LabBookConfig::default()
            };
            let book = LabBook::open_with(url, server, cfg).await?;
            book.sync_resources(resources).await?;
            Ok::<_, LabError>(book)
        });
        let book = book?;
        let freed: Arc<FreedList> = Arc::default();
        rt.get().spawn(listen(
            url.to_string(),
            server.to_string(),
            Arc::downgrade(&freed),
        ));
        Ok(LabFence {
            book,
            rt,
            timeout,
            held: Mutex::new(HashMap::new()),
            freed,
        })
    }

    /// The lab book under the fence.
    pub fn book(&self) -> &LabBook {
        &self.book
    }

    /// How long a call waits for the database.
    pub fn call_timeout(&self) -> Duration {
        self.timeout
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<FenceId, Fenced>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The database's id of the operator's hold `hold`, if it is live there.
    async fn hold_id(&self, hold: &FenceHold<'_>) -> LabResult<Option<ResId>> {
        self.book
            .find_hold(
                hold.resource,
                hold.operator,
                hold.start.max(hold.now),
                hold.end,
            )
            .await
    }

    /// Run `fut` on the fence's runtime, giving up after the timeout.
    fn call<T>(&self, fut: impl Future<Output = LabResult<T>>) -> LabResult<T> {
        let timeout = self.timeout;
        self.rt.block(async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(LabError::Connect(
                    format!("no answer within {} ms", timeout.as_millis()).into(),
                )),
            }
        })
    }

    /// Ask the database to move `id`'s end to the end the book wants; one it refuses
    /// (or does not answer) is asked again at the next renewal.
    fn extend_to(&self, id: FenceId) -> LabResult<()> {
        let Some(wanted) = self.held().get(&id).map(|f| f.wanted_end) else {
            return Ok(());
        };
        match self.call(self.book.extend(id, wanted)) {
            Ok(r) => {
                if let Some(f) = self.held().get_mut(&id) {
                    f.end = r.expire_time;
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "cannot extend a claim in the lab database; trying again at the next renewal");
                Err(e)
            }
        }
    }

    /// Why the database refused `claim`: who holds its resource there, and until when.
    async fn refusal(&self, claim: &FenceClaim<'_>) -> LabResult<Refused> {
        let now = self.book.now().await?;
        let w = Window {
            start: now,
            end: now.saturating_add(claim.duration_ms),
        };
        let holders: Vec<_> = self
            .book
            .live()
            .await?
            .into_iter()
            .filter(|r| r.resource == claim.resource && r.start < w.end && w.start < r.end)
            .collect();
        // A claim's lease or window ends; a row still booked is another server's claim
        // under way (or one whose server died between its request and its claim).
        let retry_at = holders
            .iter()
            .map(|r| {
                let until = r.expires.unwrap_or(r.end).min(r.end);
                if r.state == LabState::Booked {
                    until.min(now.saturating_add(BOOKED_RETRY_MS))
                } else {
                    until
                }
            })
            .min()
            .unwrap_or(now.saturating_add(UNREACHABLE_RETRY_MS));
        let by: Vec<String> = holders
            .iter()
            .map(|r| {
                format!(
                    "{} in the lab database by {} of server {} until {}",
                    if r.start <= now { "held" } else { "booked" },
                    r.holder,
                    r.server,
                    fmt_ms_short(r.expires.unwrap_or(r.end).min(r.end))
                )
            })
            .collect();
        let reason = if by.is_empty() {
            format!("{} is taken in the lab database", claim.resource)
        } else {
            format!("{} is {}", claim.resource, by.join(", "))
        };
        Ok(Refused {
            reason,
            retry_in_ms: retry_at.saturating_sub(now).max(1),
        })
    }
}

/// Hear the lab book's changes and tell `freed`'s listeners of each resource another
/// server than `server` let go; ends with the fence.
async fn listen(url: String, server: String, freed: std::sync::Weak<FreedList>) {
    while freed.strong_count() > 0 {
        match BookListener::connect(&url).await {
            Ok(mut l) => {
                while let Some(n) = l.next().await {
                    let Some(list) = freed.upgrade() else { return };
                    let let_go = matches!(n.change.as_str(), "released" | "expired");
                    if n.table != "reservation" || !let_go || n.by == server {
                        continue;
                    }
                    if let Some(resource) = &n.resource {
                        list.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .retain(|f| f(resource));
                    }
                }
                tracing::warn!(
                    "the fence's listener lost its connection to the lab database; listening again"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "the fence cannot listen to the lab database; trying again")
            }
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}

impl LabBook {
    /// Hold `claim`'s resource from the database's now: a request for exactly now, then
    /// its claim. A resource another server holds is [`LabError::Conflict`] (or
    /// [`LabError::Capacity`]); nothing is left booked.
    pub async fn take_now(&self, claim: &FenceClaim<'_>) -> LabResult<(FenceId, EpochMs)> {
        let mode = if claim.exclusive {
            ReservationMode::Exclusive
        } else {
            ReservationMode::Shared
        };
        let pre = self
            .request(
                ReservationRequest::new(claim.resource, claim.holder.clone(), claim.duration_ms)
                    .mode(mode)
                    .next_available(false)
                    .lease(claim.lease_ms.max(1)),
                None,
            )
            .await?;
        match self.claim(pre.id).await {
            Ok(ClaimOutcome::Claimed(r)) => Ok((pre.id, r.expire_time)),
            Ok(ClaimOutcome::Rebooked {
                pre_reservation_id,
                new_avail,
                ..
            }) => {
                self.release(pre_reservation_id).await?;
                Err(LabError::Conflict {
                    resource: claim.resource.to_string(),
                    requested: Window {
                        start: new_avail,
                        end: new_avail.saturating_add(claim.duration_ms),
                    },
                })
            }
            Err(e) => {
                if let Err(r) = self.release(pre.id).await {
                    tracing::warn!(id = %pre.id, error = %r, "cannot give back a claim the lab database refused");
                }
                Err(e)
            }
        }
    }
}

impl LabBook {
    /// The live hold of `operator` on `resource` whose window overlaps `start .. end`,
    /// the one starting nearest `start`.
    pub async fn find_hold(
        &self,
        resource: &str,
        operator: &str,
        start: EpochMs,
        end: EpochMs,
    ) -> LabResult<Option<ResId>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id FROM lab_live
                 WHERE resource = $1 AND holder_kind = 'operator' AND operator = $2
                   AND during && tstzrange(testbay_ts($3), testbay_ts($4))
                 ORDER BY abs(testbay_ms(lower(during)) - $3), id LIMIT 1",
                &[
                    &resource,
                    &operator,
                    &start,
                    &end.max(start.saturating_add(1)),
                ],
            )
            .await?;
        Ok(row.map(|r| ResId(r.get::<_, i64>(0) as u64)))
    }
}

impl Fence for LabFence {
    fn claim(&self, claim: &FenceClaim<'_>) -> Result<Option<FenceId>, Refused> {
        let started = Instant::now();
        match self.call(self.book.take_now(claim)) {
            Ok((id, end)) => {
                let lease = Duration::from_millis(claim.lease_ms.max(1) as u64);
                self.held().insert(
                    id,
                    Fenced {
                        resource: claim.resource.to_string(),
                        confirmed_until: started + lease,
                        lease,
                        end,
                        wanted_end: end,
                    },
                );
                Ok(Some(id))
            }
            Err(LabError::Conflict { .. } | LabError::Capacity { .. }) => {
                Err(self.call(self.refusal(claim)).unwrap_or_else(|e| Refused {
                    reason: format!("{} is taken in the lab database ({e})", claim.resource),
                    retry_in_ms: UNREACHABLE_RETRY_MS,
                }))
            }
            Err(e) => {
                tracing::warn!(resource = claim.resource, error = %e, "the lab database did not take a claim");
                Err(Refused {
                    reason: format!(
                        "{} cannot be claimed in the lab database: {e}",
                        claim.resource
                    ),
                    retry_in_ms: UNREACHABLE_RETRY_MS,
                })
            }
        }
    }

    fn renew(&self, ids: &[FenceId]) -> Vec<(FenceId, String)> {
        let mut lost = Vec::new();
        // Once the database could not be reached, the other leases are not tried again
        // this round (each would wait out the timeout); they are judged by when they
        // were last renewed.
        let mut unreachable: Option<LabError> = None;
        for &id in ids {
            let Some(f) = self.held().get(&id).cloned() else {
                continue;
            };
            if unreachable.is_none() && f.end < f.wanted_end {
                // An extension the database did not take yet (asked again each round
                // until it does), so the lease is not capped at the old end.
                if let Err(e @ LabError::Connect(_)) = self.extend_to(id) {
                    unreachable = Some(e);
                }
            }
            let started = Instant::now();
            let renewed = match &unreachable {
                Some(e) => Err(LabError::Connect(e.to_string().into())),
                None => self.call(async {
                    let r = self.book.renew(id).await?;
                    // Asked after the renewal: the lease left from `started` is at
                    // least `lease_until - now`.
                    let now = self.book.now().await?;
                    Ok((r, now))
                }),
            };
            match renewed {
                Ok((r, now)) => {
                    if let Some(f) = self.held().get_mut(&id) {
                        let granted = r.lease_until.saturating_sub(now).max(0) as u64;
                        f.confirmed_until = started + f.lease.min(Duration::from_millis(granted));
                        f.end = r.expire_time;
                    }
                }
                Err(e @ (LabError::LeaseLost(_) | LabError::UnknownId(_))) => {
                    // Released meanwhile (its task ended): not a loss.
                    if self.held().remove(&id).is_some() {
                        lost.push((
                            id,
                            format!("lost its lease on {} in the lab database ({e})", f.resource),
                        ));
                    }
                }
                Err(e) => {
                    // The next try comes a renewal period plus a call's timeout from
                    // now at the latest: the claim is given up before the database's
                    // lease can lapse, not after.
                    let margin = f.lease / 3 + self.timeout;
                    let give_up = f
                        .confirmed_until
                        .checked_sub(margin)
                        .unwrap_or(f.confirmed_until);
                    if Instant::now() >= give_up {
                        if self.held().remove(&id).is_some() {
                            lost.push((
                                id,
                                format!(
                                    "lost its lease on {} in the lab database (not renewed in time within its lease of {} ms: {e})",
                                    f.resource,
                                    f.lease.as_millis()
                                ),
                            ));
                        }
                    } else {
                        tracing::warn!(id = %id, resource = f.resource, error = %e, "cannot renew a lease in the lab database; trying again");
                    }
                    if matches!(e, LabError::Connect(_)) {
                        unreachable.get_or_insert(e);
                    }
                }
            }
        }
        lost
    }

    fn extend(&self, id: FenceId, by_ms: i64) {
        if let Some(f) = self.held().get_mut(&id) {
            f.wanted_end = f.wanted_end.max(f.end).saturating_add(by_ms);
        }
        // Taken by the database at the renewal, which the broker makes right after.
    }

    fn hold(&self, hold: &FenceHold<'_>) -> Result<(), Refused> {
        let from = hold.start.max(hold.now);
        let dur = hold.end.saturating_sub(from);
        if dur <= 0 {
            return Ok(());
        }
        let who = Holder::Operator {
            name: hold.operator.to_string(),
        };
        let mut req = ReservationRequest::new(hold.resource, who.clone(), dur)
            .at(from)
            .mode(hold.mode)
            .next_available(false)
            .auto_claim(true);
        if let Some(lease) = hold.lease_ms.filter(|l| *l > 0) {
            req = req.lease(lease);
        }
        match self.call(self.book.request(req, None)) {
            Ok(_) => Ok(()),
            Err(LabError::Conflict { .. } | LabError::Capacity { .. }) => {
                let claim = FenceClaim {
                    resource: hold.resource,
                    exclusive: hold.mode == ReservationMode::Exclusive,
                    holder: &who,
                    duration_ms: hold.end.saturating_sub(hold.now).max(1),
                    lease_ms: 1,
                };
                Err(self.call(self.refusal(&claim)).unwrap_or_else(|e| Refused {
                    reason: format!("{} is taken in the lab database ({e})", hold.resource),
                    retry_in_ms: UNREACHABLE_RETRY_MS,
                }))
            }
            Err(e) => Err(Refused {
                reason: format!("{} cannot be held in the lab database: {e}", hold.resource),
                retry_in_ms: UNREACHABLE_RETRY_MS,
            }),
        }
    }

    fn end_hold(&self, hold: &FenceHold<'_>) {
        let found = self.call(async {
            match self.hold_id(hold).await? {
                Some(id) => self.book.release(id).await.map(|()| true),
                None => Ok(false),
            }
        });
        if let Err(e) = found {
            // Unreleased, it ends with its window.
            tracing::warn!(resource = hold.resource, error = %e, "cannot end a hold in the lab database");
        }
    }

    fn extend_hold(&self, hold: &FenceHold<'_>, new_end: EpochMs) -> Result<(), Refused> {
        let done = self.call(async {
            match self.hold_id(hold).await? {
                Some(id) => self.book.extend(id, new_end).await.map(|_| ()),
                None => Ok(()),
            }
        });
        done.map_err(|e| {
            tracing::warn!(resource = hold.resource, error = %e, "cannot extend a hold in the lab database");
            Refused {
                reason: format!(
                    "the hold of {} by operator {} cannot be extended in the lab database: {e}",
                    hold.resource, hold.operator
                ),
                retry_in_ms: UNREACHABLE_RETRY_MS,
            }
        })
    }

    fn renew_hold(&self, hold: &FenceHold<'_>) -> Result<(), Refused> {
        let renewed = self.call(async {
            match self.hold_id(hold).await? {
                Some(id) => self.book.renew(id).await.map(|_| true),
                None => Ok(false),
            }
        });
        let lapsed = |why: String| Refused {
            reason: format!(
                "the hold of {} by operator {} lapsed in the lab database ({why})",
                hold.resource, hold.operator
            ),
            retry_in_ms: 1,
        };
        match renewed {
            Ok(true) => Ok(()),
            Ok(false) => Err(lapsed("not live there".into())),
            Err(e @ (LabError::LeaseLost(_) | LabError::UnknownId(_))) => {
                Err(lapsed(e.to_string()))
            }
            Err(e) => {
                // Not renewed, it lapses at its lease's end by the database's clock.
                tracing::warn!(resource = hold.resource, error = %e, "cannot renew a hold in the lab database");
                Ok(())
            }
        }
    }

    fn on_freed(&self, freed: Freed) {
        self.freed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(freed);
    }

    fn release(&self, id: FenceId) {
        if self.held().remove(&id).is_none() {
            return;
        }
        if let Err(e) = self.call(self.book.release(id)) {
            // Unreleased, it lapses at its lease's end by the database's clock.
            tracing::warn!(id = %id, error = %e, "cannot release a claim in the lab database");
        }
    }
}
