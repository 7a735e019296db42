//! Reused threads for phase output. Starting a thread per phase costs more than the rest
//! of the phase's bookkeeping; idle threads wait for the next phase and exit after a while.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Idle workers: (id, sender).
static IDLE: Mutex<Vec<(u64, Sender<Job>)>> = Mutex::new(Vec::new());
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const IDLE_EXIT: Duration = Duration::from_secs(30);

/// Run `job` on an idle worker, or on a new one.
pub(super) fn run(job: Job) {
    let mut job = job;
    loop {
        let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some((_, tx)) => match tx.send(job) {
                Ok(()) => return,
                // That worker timed out and left; try the next.
                Err(e) => job = e.0,
            },
            None => break,
        }
    }
    let (tx, rx) = channel::<Job>();
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::thread::Builder::new()
        .name("testbay-output".into())
        .spawn(move || {
            let mut next = Some(job);
            while let Some(j) = next.take() {
                j();
                IDLE.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((id, tx.clone()));
                match rx.recv_timeout(IDLE_EXIT) {
                    Ok(j) => next = Some(j),
                    Err(RecvTimeoutError::Disconnected) => {}
                    Err(RecvTimeoutError::Timeout) => {
                        let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
                        match idle.iter().position(|(i, _)| *i == id) {
                            // Still listed: nobody will send; leave.
                            Some(pos) => {
                                idle.swap_remove(pos);
                            }
                            // Taken by a sender that is about to send: take the job.
                            None => {
                                drop(idle);
                                next = rx.recv().ok();
                            }
                        }
                    }
                }
            }
        })
        .expect("spawn output thread");
}
