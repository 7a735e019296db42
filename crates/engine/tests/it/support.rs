//! Helpers shared by the test modules.

use std::path::Path;

use testbay_engine::api::Event;
use testbay_engine::outcome::RunStatus;
use testbay_engine::run::RunEvent;

/// Write `text` to `p`, creating its parent folders.
pub fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

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
