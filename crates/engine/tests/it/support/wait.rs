//! Waiting on a console's event stream.

use testbay_engine::api::Event;
use testbay_engine::outcome::RunStatus;
use testbay_engine::run::RunEvent;

/// Wait (30 s at most) on a console's event stream for run `run_id` to finish; its status.
pub async fn run_end(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    run_id: &str,
) -> RunStatus {
    loop {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(30), events.recv())
            .await
            .expect("the run ends within 30 s")
            .expect("the event stream stays open");
        if let Event::Run(RunEvent::RunStatus {
            status, run_id: id, ..
        }) = ev
        {
            if id == run_id && status.is_finished() {
                return status;
            }
        }
    }
}
