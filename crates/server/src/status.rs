//! Every error → gRPC status, in one place. Infrastructure failures are
//! logged with their source and answered without internals.

use crate::convert::BadRequest;
use crate::history::HistoryError;
use crate::write::CommandError;
use segmentd_domain::DomainError;
use segmentd_log::LogError;
use segmentd_readmodel::ReadModelError;
use tonic::Status;

impl From<BadRequest> for Status {
    fn from(e: BadRequest) -> Status {
        Status::invalid_argument(e.0)
    }
}

impl From<CommandError> for Status {
    fn from(e: CommandError) -> Status {
        match e {
            CommandError::Invalid(msg) => Status::invalid_argument(msg),
            CommandError::Refused(d) => domain(d),
            CommandError::Contended(msg) => Status::aborted(msg),
            CommandError::Log(l) => log(l),
        }
    }
}

impl From<HistoryError> for Status {
    fn from(e: HistoryError) -> Status {
        match e {
            HistoryError::NotFound(msg) => Status::not_found(msg),
            HistoryError::Log(l) => log(l),
        }
    }
}

pub fn read_model(e: ReadModelError) -> Status {
    match e {
        ReadModelError::Lagging { .. } => Status::unavailable(e.to_string()),
        ReadModelError::Storage(_) | ReadModelError::Corrupt { .. } => {
            tracing::error!(error = %e, "read model failure");
            Status::internal("the read model failed; see the server log")
        }
    }
}

fn domain(e: DomainError) -> Status {
    let msg = e.to_string();
    match e {
        DomainError::SegmentNameTaken(_) => Status::already_exists(msg),
        DomainError::SegmentNotFound(_) | DomainError::ContactNotFound(_) => Status::not_found(msg),
        DomainError::StaleVersion { .. } => Status::aborted(msg),
        DomainError::NothingToUpdate | DomainError::InvalidValue(_) => Status::invalid_argument(msg),
    }
}

pub fn log(e: LogError) -> Status {
    match e {
        LogError::Unavailable(_) => Status::unavailable(e.to_string()),
        LogError::InvalidRequest(_) => Status::invalid_argument(e.to_string()),
        LogError::Io(_) | LogError::Corrupt { .. } => {
            tracing::error!(error = %e, "event log failure");
            Status::internal("the event log failed; see the server log")
        }
    }
}
