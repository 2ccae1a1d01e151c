//! Read models: the projector folds the event log, in order, into a sled
//! database and into in-memory views that queries read.
//!
//! Every batch of events goes to sled in one atomic batch together with the
//! last sequence it contains, so after a crash the model resumes exactly
//! where its durable state ends: no event applied twice, none skipped. The
//! model can be deleted at any time and rebuilt from the log, up to its end
//! or up to any earlier point (`project_until`): past states for time-travel
//! queries (`past`) are rebuilt that way, in memory.
//!
//! **Must not depend on** tonic or prost (queries are answered in domain
//! types; the API crate converts), nor on a particular log backend: the
//! projector only sees the `EventLog` port.

mod clock;
mod export;
mod index;
mod jobs;
mod membership;
mod model;
mod past;
mod projector;
mod store;
mod stored;

pub use clock::Clock;
pub use export::TimeWindow;
pub use jobs::{AffectedContact, CancelRequest, JobNotice, JobStatus, JobView};
pub use membership::{Cause, ChangeRecord, FeedError, MemberChange, Watch, WatchFilter, run_membership_clock};
pub use model::{Members, OrgView, ReadModel, ReadModelError, SegmentLookup, VersionMeta};
pub use past::{PastModels, PastState, PastView};
pub use projector::{CATCH_UP_MIN, ProjectorError, Reached, Until, catch_up, project_until, run_projector};
pub use stored::{ContactFields, StoredContact};
