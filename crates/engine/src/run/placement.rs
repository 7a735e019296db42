//! Where each lane of a run sends its phases: a lane whose DUT sits in a rack served by an
//! agent (`agent: true`) to that rack's agent, every other lane to this process. A run on
//! DUTs of several racks thus has several runners; their health is folded into one for
//! the driver (any runner lost: the run is lost; any silent: the run is stalled, with
//! that runner's reason).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::watch;

use super::runner::{PhaseRunner, RunnerHealth};

/// Why a launch waits for the agents of a rack it runs on: each is passed over (its CPU
/// above the threshold, StormTest 6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RackBusy {
    /// "agent rack-a-ctl busy: CPU 97% > 90%, passed over until 05:31:12Z".
    pub reason: String,
    /// When the first of them is taken again (whatever it reports by then).
    pub until_ms: crate::clock::EpochMs,
}

/// The racks a launch's lanes run on: each DUT's (else the run's ATS), or the ATS for a
/// launch without DUTs; each once.
pub fn launch_racks(req: &super::LaunchRequest) -> Vec<&str> {
    let ats = req.ats.as_deref();
    let lanes: Vec<Option<&str>> = if req.duts.is_empty() {
        vec![ats]
    } else {
        req.duts.iter().map(|d| d.rack.as_deref().or(ats)).collect()
    };
    let mut racks: Vec<&str> = Vec::new();
    for r in lanes.into_iter().flatten() {
        if !racks.contains(&r) {
            racks.push(r);
        }
    }
    racks
}

/// One run's runners, by lane.
pub struct LaneRunners {
    /// This process's runner: lanes on racks without an agent, and lanes without a rack.
    local: Arc<dyn PhaseRunner>,
    by_lane: HashMap<String, Arc<dyn PhaseRunner>>,
    health: Option<watch::Receiver<RunnerHealth>>,
}

impl LaneRunners {
    /// Every lane on `runner`.
    pub fn single(runner: Arc<dyn PhaseRunner>) -> Self {
        Self::new(runner, HashMap::new())
    }

    /// Lanes in `by_lane` on their runner, the others on `local`. With more than one
    /// runner that can go away, spawns the task folding their health (within a tokio
    /// runtime); it ends with the last of them, or when nobody watches any more.
    pub fn new(
        local: Arc<dyn PhaseRunner>,
        by_lane: HashMap<String, Arc<dyn PhaseRunner>>,
    ) -> Self {
        let mut distinct: Vec<&Arc<dyn PhaseRunner>> = Vec::new();
        for r in std::iter::once(&local).chain(by_lane.values()) {
            if !distinct.iter().any(|d| Arc::ptr_eq(d, r)) {
                distinct.push(r);
            }
        }
        let mut healths: Vec<watch::Receiver<RunnerHealth>> =
            distinct.iter().filter_map(|r| r.health()).collect();
        let health = match healths.len() {
            0 => None,
            1 => healths.pop(),
            _ => {
                let (tx, rx) = watch::channel(fold(healths.iter().map(|h| h.borrow().clone())));
                tokio::spawn(fold_health(healths, tx));
                Some(rx)
            }
        };
        Self {
            local,
            by_lane,
            health,
        }
    }

    /// The runner of lane `lane`.
    pub fn lane(&self, lane: &str) -> &Arc<dyn PhaseRunner> {
        self.by_lane.get(lane).unwrap_or(&self.local)
    }

    /// The run's health as its runners' health folds: `None` when none can go away.
    pub fn health(&self) -> Option<watch::Receiver<RunnerHealth>> {
        self.health.clone()
    }
}

/// Any runner lost: lost; else any stalled: stalled (the first one's reason); else healthy.
fn fold(all: impl Iterator<Item = RunnerHealth>) -> RunnerHealth {
    let mut stalled = None;
    for h in all {
        match h {
            RunnerHealth::Lost(_) => return h,
            RunnerHealth::Stalled(_) if stalled.is_none() => stalled = Some(h),
            _ => {}
        }
    }
    stalled.unwrap_or(RunnerHealth::Healthy)
}

/// Keeps `tx` the fold of `rxs` as they change. A runner whose sender is gone counts with
/// the last health it gave.
async fn fold_health(mut rxs: Vec<watch::Receiver<RunnerHealth>>, tx: watch::Sender<RunnerHealth>) {
    let mut ended: Vec<RunnerHealth> = Vec::new();
    loop {
        let now = fold(
            rxs.iter()
                .map(|r| r.borrow().clone())
                .chain(ended.iter().cloned()),
        );
        tx.send_if_modified(|h| {
            let changed = *h != now;
            *h = now;
            changed
        });
        if rxs.is_empty() {
            return;
        }
        let closed = {
            let changes = rxs.iter_mut().map(|r| Box::pin(r.changed()));
            tokio::select! {
                (res, i, _) = select_all(changes) => res.is_err().then_some(i),
                () = tx.closed() => return,
            }
        };
        if let Some(i) = closed {
            ended.push(rxs.remove(i).borrow().clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_beats_stalled_beats_healthy() {
        use RunnerHealth::*;
        assert_eq!(fold([Healthy, Healthy].into_iter()), Healthy);
        assert_eq!(
            fold([Healthy, Stalled("a".into()), Stalled("b".into())].into_iter()),
            Stalled("a".into())
        );
        assert_eq!(
            fold([Stalled("a".into()), Lost("b".into())].into_iter()),
            Lost("b".into())
        );
    }

    #[tokio::test]
    async fn the_fold_follows_its_runners() {
        let (a_tx, a) = watch::channel(RunnerHealth::Healthy);
        let (b_tx, b) = watch::channel(RunnerHealth::Healthy);
        let (tx, mut rx) = watch::channel(RunnerHealth::Healthy);
        tokio::spawn(fold_health(vec![a, b], tx));
        b_tx.send_replace(RunnerHealth::Stalled("agent b silent".into()));
        rx.changed().await.unwrap();
        assert_eq!(
            *rx.borrow_and_update(),
            RunnerHealth::Stalled("agent b silent".into())
        );
        b_tx.send_replace(RunnerHealth::Healthy);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), RunnerHealth::Healthy);
        // A runner lost and then gone (its sender dropped) keeps the run lost.
        a_tx.send_replace(RunnerHealth::Lost("agent a lost".into()));
        drop(a_tx);
        rx.changed().await.unwrap();
        assert_eq!(
            *rx.borrow_and_update(),
            RunnerHealth::Lost("agent a lost".into())
        );
    }
}
