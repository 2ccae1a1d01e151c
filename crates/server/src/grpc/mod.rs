//! The tonic services. Each handler has the same thin shape: authenticate →
//! parse the request → call the application → convert the answer.

mod commands;
mod export;
mod queries;
pub mod replay;

pub use commands::CommandsService;
pub use queries::{AS_OF_SEQUENCE_HEADER, QueriesService};
pub use replay::ReplayService;

/// Resolves once the server is stopping (never without a stop signal), so
/// that long streams end and a graceful stop does not wait on them.
pub(crate) async fn stopped(shutdown: Option<&mut tokio::sync::watch::Receiver<bool>>) {
    match shutdown {
        // An error means the sender is gone: the server is stopping too.
        Some(rx) => {
            let _ = rx.wait_for(|s| *s).await;
        }
        None => std::future::pending::<()>().await,
    }
}
