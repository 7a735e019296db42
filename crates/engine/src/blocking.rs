//! A tokio runtime owned by a synchronous service (the PostgreSQL store, the lab fence),
//! whose callers wait for its futures on their own threads.
//!
//! Kept by hand rather than `Runtime::block_on`: that panics when the caller is itself a
//! thread of another runtime (a console's handler calling the store), while parking the
//! calling thread and polling the future inside this runtime's context works from any
//! thread; this runtime's workers drive the I/O and the timers.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

use tokio::runtime::Runtime;

/// A runtime shut down in the background when dropped (not `Runtime`'s own drop, which
/// panics on a thread of another runtime).
pub(crate) struct OwnedRuntime(Option<Runtime>);

impl OwnedRuntime {
    pub(crate) fn new(rt: Runtime) -> Self {
        Self(Some(rt))
    }

    pub(crate) fn get(&self) -> &Runtime {
        self.0
            .as_ref()
            .expect("the runtime lives until its owner is dropped")
    }

    /// Wait on this thread for `fut`, inside the runtime's context.
    pub(crate) fn block<F: Future>(&self, fut: F) -> F::Output {
        let _inside = self.get().enter();
        let mut fut = std::pin::pin!(fut);
        let waker = Arc::new(ThreadWaker(std::thread::current())).into();
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
