//! The clock that relative criteria ("within the last 30 days") are measured
//! against when the read model keeps saved segments' members: the system
//! clock in production, a pinned one that tests move by hand, so no test
//! waits on wall time.

use segmentd_domain::time::Timestamp;
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct Clock {
    /// `None`: the system clock.
    pinned: Option<Arc<watch::Sender<Timestamp>>>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { pinned: None }
    }

    /// A clock that stands at `at` until [`Clock::set`] moves it.
    pub fn pinned(at: Timestamp) -> Clock {
        Clock { pinned: Some(Arc::new(watch::channel(at).0)) }
    }

    pub fn now(&self) -> Timestamp {
        match &self.pinned {
            Some(at) => *at.borrow(),
            None => system_now(),
        }
    }

    /// Moves a pinned clock (forwards or back) and wakes whoever waits on
    /// it; false, and nothing happens, on the system clock.
    pub fn set(&self, at: Timestamp) -> bool {
        match &self.pinned {
            Some(clock) => {
                clock.send_replace(at);
                true
            }
            None => false,
        }
    }

    /// Changes of a pinned clock; `None` for the system clock, which moves
    /// all the time.
    pub(crate) fn moves(&self) -> Option<watch::Receiver<Timestamp>> {
        self.pinned.as_ref().map(|c| c.subscribe())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pinned {
            Some(at) => write!(f, "Clock::pinned({})", *at.borrow()),
            None => f.write_str("Clock::system()"),
        }
    }
}

fn system_now() -> Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}
