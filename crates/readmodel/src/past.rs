//! Time travel: read models of the past. A past state is built by replaying
//! the log from its first event up to the point asked for into a model that
//! lives in memory only, never derived from the current state; the last few
//! are kept, keyed by the sequence they end at, because analysts tend to ask
//! several questions of the same point (a count, then pages of members).
//!
//! **Must not** touch the live read model or its sled database: a past state
//! shares nothing with it but the log.

use crate::model::ReadModel;
use crate::projector::{ProjectorError, Reached, Until, project_until};
use segmentd_domain::time::Timestamp;
use segmentd_log::{EventLog, Seq};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{OnceCell, Semaphore};

/// One rebuilt point of the log's history.
pub struct PastState {
    model: ReadModel,
    reached: Reached,
    /// When the event after `reached.seq` was recorded, learnt when the
    /// state was built or later, once the log has grown past it.
    next_time: OnceLock<Timestamp>,
}

impl PastState {
    pub fn model(&self) -> &ReadModel {
        &self.model
    }

    pub fn seq(&self) -> Seq {
        self.reached.seq
    }

    /// Whether this state is the one `Until::Time(t)` resolves to, as far as
    /// this state alone can tell: every event in it was recorded at or before
    /// `t`, and the next one (if known) after it.
    fn covers(&self, t: Timestamp) -> Option<bool> {
        if self.reached.latest_time.is_some_and(|latest| latest > t) {
            return Some(false);
        }
        self.next_time.get().map(|next| *next > t)
    }
}

/// A past state and the clock its relative conditions are measured with.
#[derive(Clone)]
pub struct PastView {
    pub state: Arc<PastState>,
    /// The instant asked for, or, for a sequence, when that event was
    /// recorded (the epoch for a state before any event).
    pub clock: Timestamp,
}

type Slot = Arc<OnceCell<Arc<PastState>>>;

/// The cache of past states in front of the log.
pub struct PastModels {
    log: Arc<dyn EventLog>,
    capacity: usize,
    /// Least recently used first. A slot is shared by concurrent requests
    /// for the same sequence, so the state is built once.
    slots: Mutex<VecDeque<(Seq, Slot)>>,
    /// Builds run one at a time: each holds a whole model in memory.
    builds: Semaphore,
    built: AtomicU64,
}

impl PastModels {
    /// The log past states are rebuilt from.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// Keeps up to `capacity` past states (each as large in memory as the
    /// live model was at that point); 0 keeps none and rebuilds every time.
    pub fn new(log: Arc<dyn EventLog>, capacity: usize) -> Self {
        PastModels {
            log,
            capacity,
            slots: Mutex::new(VecDeque::new()),
            builds: Semaphore::new(1),
            built: AtomicU64::new(0),
        }
    }

    /// The state right after `until`, rebuilt from the log unless cached.
    pub async fn at(&self, until: Until) -> Result<PastView, ProjectorError> {
        match until {
            Until::Sequence(seq) => {
                let last = self.log.last_seq().await?;
                if seq > last {
                    return Err(ProjectorError::BeyondLog { wanted: seq, last });
                }
                let slot = self.slot(seq);
                let state = slot.get_or_try_init(|| self.build(until)).await?;
                let clock = state.reached.seq_time.unwrap_or(Timestamp(0));
                Ok(PastView { state: Arc::clone(state), clock })
            }
            Until::Time(t) => {
                let state = match self.cached_at(t).await? {
                    Some(state) => state,
                    None => {
                        let built = self.build(until).await?;
                        let slot = self.slot(built.seq());
                        // A request for the same sequence may have filled the
                        // slot meanwhile; both states are the same.
                        let _ = slot.set(Arc::clone(&built));
                        built
                    }
                };
                Ok(PastView { state, clock: t })
            }
        }
    }

    /// A cached state that `Until::Time(t)` resolves to, if any.
    async fn cached_at(&self, t: Timestamp) -> Result<Option<Arc<PastState>>, ProjectorError> {
        let states: Vec<Arc<PastState>> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.iter().rev().filter_map(|(_, slot)| slot.get().cloned()).collect()
        };
        for state in states {
            let covers = match state.covers(t) {
                Some(covers) => covers,
                None => {
                    // Built at the log's end: whether it still is decides.
                    match self.log.read(state.seq() + 1, 1).await?.first() {
                        Some(next) => {
                            let _ = state.next_time.set(next.envelope.time);
                            next.envelope.time > t
                        }
                        None => true,
                    }
                }
            };
            if covers {
                self.touch(state.seq());
                return Ok(Some(state));
            }
        }
        Ok(None)
    }

    async fn build(&self, until: Until) -> Result<Arc<PastState>, ProjectorError> {
        let _permit = self.builds.acquire().await.expect("the build semaphore is never closed");
        let started = std::time::Instant::now();
        let model = ReadModel::in_memory();
        let reached = project_until(&*self.log, &model, until).await?;
        self.built.fetch_add(1, Ordering::Relaxed);
        tracing::info!(?until, seq = reached.seq, took = ?started.elapsed(), "past state rebuilt from the log");
        let next_time = OnceLock::new();
        if let Some(next) = reached.next_time {
            let _ = next_time.set(next);
        }
        Ok(Arc::new(PastState { model, reached, next_time }))
    }

    /// The slot for `seq`, made most recently used; evicts the least
    /// recently used beyond capacity (requests still holding one keep it).
    fn slot(&self, seq: Seq) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match slots.iter().position(|(s, _)| *s == seq) {
            Some(i) => slots.remove(i).map(|(_, slot)| slot).unwrap_or_default(),
            None => Slot::default(),
        };
        slots.push_back((seq, Arc::clone(&slot)));
        while slots.len() > self.capacity {
            slots.pop_front();
        }
        slot
    }

    fn touch(&self, seq: Seq) {
        drop(self.slot(seq));
    }

    /// How many past states were built (for reports; a cache hit builds none).
    pub fn built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }

    /// The sequences of the cached states, least recently used first.
    pub fn cached(&self) -> Vec<Seq> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().filter(|(_, slot)| slot.initialized()).map(|(seq, _)| *seq).collect()
    }
}
