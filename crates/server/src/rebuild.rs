//! `segmentd rebuild`: the read models as they were at a point of the log,
//! built from the log's first event into a directory of their own, in the
//! layout `serve` uses, so the result can be served (`serve-snapshot`) or
//! opened like any read model. The live read model is never touched.

use crate::serve::read_model_dir;
use segmentd_domain::Timestamp;
use segmentd_log::EventLog;
use segmentd_readmodel::{ProjectorError, ReadModel, ReadModelError, project_until};
pub use segmentd_readmodel::{Reached, Until};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("{0} already exists; rebuild into a new directory")]
    Exists(PathBuf),
    #[error("--until {asked} is in the future (the clock here says {now})")]
    Future { asked: Timestamp, now: Timestamp },
    #[error("cannot create the read model in {dir}: {source}")]
    ReadModel { dir: PathBuf, source: ReadModelError },
    #[error("replaying the log failed: {0}")]
    Replay(#[from] ProjectorError),
}

/// Parses `--until`: digits are a log sequence, anything else an RFC 3339 instant.
pub fn parse_until(raw: &str) -> Result<Until, String> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return match raw.parse() {
            Ok(0) | Err(_) => Err(format!("{raw}: a sequence is 1 or more")),
            Ok(seq) => Ok(Until::Sequence(seq)),
        };
    }
    Timestamp::parse_rfc3339(raw).map(Until::Time).map_err(|e| format!("{raw}: neither a sequence nor {e}"))
}

/// Builds the read model of `data_dir` (which must not have one yet) from
/// `log` up to `until`, and flushes it. The same replay answers `as_of`.
pub async fn rebuild(
    log: &dyn EventLog,
    data_dir: &Path,
    until: Until,
    cache_bytes: u64,
) -> Result<Reached, RebuildError> {
    if let Until::Time(asked) = until {
        let now = crate::write::now();
        if asked > now {
            return Err(RebuildError::Future { asked, now });
        }
    }
    let dir = read_model_dir(data_dir);
    if dir.exists() {
        return Err(RebuildError::Exists(dir));
    }
    // Refused before the directory is made, so a refusal leaves nothing behind.
    if let Until::Sequence(wanted) = until {
        let last = log.last_seq().await.map_err(ProjectorError::from)?;
        if wanted > last {
            return Err(ProjectorError::BeyondLog { wanted, last }.into());
        }
    }
    let model =
        ReadModel::open(&dir, cache_bytes).map_err(|source| RebuildError::ReadModel { dir: dir.clone(), source })?;
    let reached = project_until(log, &model, until).await?;
    model.flush().await.map_err(|source| RebuildError::ReadModel { dir, source })?;
    Ok(reached)
}
