//! The tonic services. Each handler has the same thin shape: authenticate →
//! parse the request → call the application → convert the answer.

mod commands;
mod export;
mod queries;
pub mod replay;

pub use commands::CommandsService;
pub use queries::{AS_OF_SEQUENCE_HEADER, QueriesService};
pub use replay::ReplayService;
