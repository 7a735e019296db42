//! The test bed: a run manager in a temp folder, on a real SQLite file, granting every
//! resource or reserving through a lab's book, on the system clock or a [`ManualClock`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use testbay_engine::clock::{Clock, ManualClock, SystemClock};
use testbay_engine::exec::ExecLimits;
use testbay_engine::lab::{self, Lab};
use testbay_engine::reserve::{BookBroker, BookConfig, BrokerConfig, Fence, LiveBook, NoFence};
use testbay_engine::run::{AlwaysGrant, ResourceBroker, RunManager};
use testbay_engine::store::{SqliteStore, Store};

use super::write;

/// Options of a [`Bed`]; [`Bed::new`] takes the defaults.
#[derive(Default)]
pub struct BedBuilder {
    lab: Option<String>,
    manual_clock: Option<i64>,
    broker_config: Option<BrokerConfig>,
    broker: Option<Arc<dyn ResourceBroker>>,
    limits: Option<ExecLimits>,
    fence: Option<Arc<dyn Fence>>,
}

impl BedBuilder {
    /// Reserve through a book on this lab (written to `lab.yaml` in the bed's folder).
    pub fn lab(mut self, yaml: &str) -> Self {
        self.lab = Some(yaml.into());
        self
    }

    /// Run on a [`ManualClock`] starting at `now_ms` instead of the system clock.
    pub fn manual_clock(mut self, now_ms: i64) -> Self {
        self.manual_clock = Some(now_ms);
        self
    }

    /// The book's broker takes this configuration (with a lab only).
    pub fn broker_config(mut self, cfg: BrokerConfig) -> Self {
        self.broker_config = Some(cfg);
        self
    }

    /// Runs ask this broker for their resources (without a lab only).
    pub fn broker(mut self, broker: Arc<dyn ResourceBroker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// The book's broker fences its claims in this database (with a lab only).
    pub fn fence(mut self, fence: Arc<dyn Fence>) -> Self {
        self.fence = Some(fence);
        self
    }

    /// Phases run with these limits instead of the defaults.
    pub fn limits(mut self, limits: ExecLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    pub fn build(self) -> Bed {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(&data).unwrap());
        let manual = self.manual_clock.map(ManualClock::new);
        let clock: Arc<dyn Clock> = match &manual {
            Some(m) => Arc::new(m.clone()),
            None => Arc::new(SystemClock),
        };
        let (book, book_broker, run_broker): (_, _, Arc<dyn ResourceBroker>) = match self.lab {
            Some(yaml) => {
                assert!(
                    self.broker.is_none(),
                    "a bed with a lab uses the book's broker"
                );
                let file = root.path().join("lab.yaml");
                write(&file, &yaml);
                let lab: Lab = lab::load(&file).unwrap();
                let book = LiveBook::open(
                    &*store,
                    clock.clone(),
                    BookConfig::default(),
                    lab.book_resources(),
                )
                .unwrap();
                let cfg = self.broker_config.unwrap_or_default();
                let fence = self.fence.unwrap_or_else(|| Arc::new(NoFence));
                let broker = BookBroker::with_fence(book.clone(), Some(Arc::new(lab)), cfg, fence);
                (Some(book), Some(broker.clone()), Arc::new(broker))
            }
            None => {
                assert!(self.broker_config.is_none(), "a broker config needs a lab");
                let broker = self.broker.unwrap_or_else(|| Arc::new(AlwaysGrant));
                (None, None, broker)
            }
        };
        let limits = self.limits.unwrap_or_default();
        let mgr = RunManager::with_limits(store.clone(), &data, run_broker, clock, limits);
        Bed {
            pack: root.path().join("pack"),
            root,
            data,
            store,
            manual,
            book,
            book_broker,
            mgr,
        }
    }
}

/// A run manager and what it stands on, in a temp folder removed on drop.
pub struct Bed {
    root: tempfile::TempDir,
    /// The data dir: the SQLite file, run folders.
    pub data: PathBuf,
    /// Where tests write their pack (`pack` in the bed's folder; not created).
    pub pack: PathBuf,
    pub store: Arc<dyn Store>,
    pub mgr: RunManager,
    manual: Option<ManualClock>,
    book: Option<LiveBook>,
    book_broker: Option<BookBroker>,
}

impl Bed {
    /// A bed granting every resource, on the system clock.
    pub fn new() -> Bed {
        Bed::builder().build()
    }

    pub fn builder() -> BedBuilder {
        BedBuilder::default()
    }

    /// The bed's folder.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The manual clock (a bed built with [`BedBuilder::manual_clock`]).
    pub fn clock(&self) -> &ManualClock {
        self.manual.as_ref().expect("a bed on a manual clock")
    }

    /// The lab's book (a bed built with [`BedBuilder::lab`]).
    pub fn book(&self) -> &LiveBook {
        self.book.as_ref().expect("a bed with a lab")
    }

    /// The broker reserving on the lab's book (a bed built with [`BedBuilder::lab`]).
    pub fn broker(&self) -> &BookBroker {
        self.book_broker.as_ref().expect("a bed with a lab")
    }
}
