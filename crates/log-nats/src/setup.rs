//! Creates the event stream, or checks that the one already there can hold
//! an audit log: file storage, no limits that would evict events, delete and
//! purge denied. What can be tightened in place (deny flags, duplicate
//! window, replicas) is updated; what cannot (storage, retention, limits,
//! subjects) is refused with a message naming the setting, because changing
//! an audit stream's shape is an operator's decision, not a side effect of
//! starting a process.
//!
//! **Must not depend on** tonic, prost or sled.

use crate::config::NatsConfig;
use crate::errors::unavailable;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::{Context, ErrorCode};
use segmentd_log::LogError;
use std::time::Duration;

/// The stream settings segmentd needs.
pub(crate) fn desired(config: &NatsConfig) -> Config {
    Config {
        name: config.stream.clone(),
        description: Some("segmentd event log: the only source of truth; never delete or purge".into()),
        subjects: vec![config.all_subjects()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        // Unlimited: an audit log must never evict an event to make room.
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        max_consumers: -1,
        discard: DiscardPolicy::Old,
        num_replicas: config.replicas,
        duplicate_window: config.duplicate_window,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        ..Default::default()
    }
}

/// Creates the stream or verifies (and tightens) the existing one.
pub(crate) async fn ensure_stream(js: &Context, config: &NatsConfig) -> Result<Stream, LogError> {
    let want = desired(config);
    // A cluster that has just started answers "no suitable peers" until its
    // metadata leader has heard from enough servers for the replicas.
    let placement_deadline = tokio::time::Instant::now() + config.append_timeout;
    let mut attempts = 0;
    while attempts < 3 {
        attempts += 1;
        match js.get_stream(&config.stream).await {
            Ok(stream) => {
                let have = stream.cached_info().config.clone();
                let Some(update) = reconcile(&have, &want)? else { return Ok(stream) };
                tracing::warn!(stream = %config.stream, "tightening the event stream's settings in place");
                js.update_stream(update)
                    .await
                    .map_err(|e| refused(config, &format!("updating its settings failed: {e}")))?;
                return js.get_stream(&config.stream).await.map_err(|e| unavailable("reading the stream back", e));
            }
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(ref js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                match js.create_stream(want.clone()).await {
                    Ok(stream) => {
                        tracing::info!(stream = %config.stream, subjects = %config.all_subjects(), "created the event stream");
                        return Ok(stream);
                    }
                    // Another node created it in the meantime: verify that one.
                    Err(e) if matches!(e.kind(), CreateStreamErrorKind::JetStream(ref js) if js.error_code() == ErrorCode::STREAM_NAME_EXIST) =>
                    {
                        continue;
                    }
                    Err(e)
                        if matches!(e.kind(), CreateStreamErrorKind::JetStream(ref js) if js.error_code() == ErrorCode::CLUSTER_NO_PEERS)
                            && tokio::time::Instant::now() < placement_deadline =>
                    {
                        tracing::info!(stream = %config.stream, error = %e, "the cluster cannot place the stream yet; asking again");
                        attempts -= 1;
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => return Err(unavailable(&format!("creating stream {}", config.stream), e)),
                }
            }
            Err(e) => {
                return Err(unavailable(
                    &format!("looking up stream {} (is JetStream enabled on {}?)", config.stream, config.url),
                    e,
                ));
            }
        }
    }
    Err(LogError::Unavailable(format!("stream {} kept appearing and disappearing while it was set up", config.stream)))
}

/// `Ok(None)`: the stream fits as it is. `Ok(Some(config))`: it fits once
/// updated to `config`. `Err`: it cannot hold segmentd's log.
pub(crate) fn reconcile(have: &Config, want: &Config) -> Result<Option<Config>, LogError> {
    let mut problems = Vec::new();
    if have.storage != StorageType::File {
        problems.push("storage is memory, not file".to_owned());
    }
    if have.retention != RetentionPolicy::Limits {
        problems.push(format!("retention is {:?}; only limits retention keeps every event", have.retention));
    }
    if have.subjects != want.subjects {
        problems.push(format!("subjects are {:?}, not {:?}", have.subjects, want.subjects));
    }
    let limited = |v: i64| v > 0;
    if limited(have.max_messages)
        || limited(have.max_bytes)
        || limited(have.max_messages_per_subject)
        || !have.max_age.is_zero()
    {
        problems.push(format!(
            "it has limits that evict events (max_msgs {}, max_bytes {}, max_msgs_per_subject {}, max_age {:?})",
            have.max_messages, have.max_bytes, have.max_messages_per_subject, have.max_age
        ));
    }
    if have.sealed {
        problems.push("it is sealed".to_owned());
    }
    if have.allow_rollup {
        problems.push("it allows rollups, which purge a subject".to_owned());
    }
    if have.no_ack {
        problems.push("it does not acknowledge publishes".to_owned());
    }
    if have.mirror.is_some() || have.sources.as_ref().is_some_and(|s| !s.is_empty()) {
        problems.push("it is a mirror or has sources".to_owned());
    }
    if !problems.is_empty() {
        return Err(LogError::InvalidRequest(format!(
            "stream {} exists with settings segmentd cannot use as its event log: {}. \
             Fix it with the nats CLI or name another stream",
            have.name,
            problems.join("; ")
        )));
    }
    let mut update = have.clone();
    update.deny_delete = true;
    update.deny_purge = true;
    update.duplicate_window = want.duplicate_window;
    update.num_replicas = want.num_replicas;
    Ok((update != *have).then_some(update))
}

fn refused(config: &NatsConfig, why: &str) -> LogError {
    LogError::InvalidRequest(format!("stream {} on {}: {why}", config.stream, config.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fitting_stream_is_kept_and_loose_flags_are_tightened() {
        let want = desired(&NatsConfig::new("nats://x"));
        // What the server reports back: limits normalised, the rest as sent.
        assert_eq!(reconcile(&want, &want).unwrap(), None);
        let loose =
            Config { deny_delete: false, deny_purge: false, duplicate_window: Duration::from_secs(1), ..want.clone() };
        let update = reconcile(&loose, &want).unwrap().expect("an update");
        assert!(update.deny_delete && update.deny_purge);
        assert_eq!(update.duplicate_window, want.duplicate_window);
    }

    #[test]
    fn unfit_streams_are_refused_naming_the_setting() {
        let want = desired(&NatsConfig::new("nats://x"));
        for (have, needle) in [
            (Config { storage: StorageType::Memory, ..want.clone() }, "storage"),
            (Config { max_age: Duration::from_secs(3600), ..want.clone() }, "max_age"),
            (Config { max_bytes: 1 << 30, ..want.clone() }, "max_bytes"),
            (Config { subjects: vec!["other.>".into()], ..want.clone() }, "subjects"),
            (Config { retention: RetentionPolicy::WorkQueue, ..want.clone() }, "retention"),
            (Config { allow_rollup: true, ..want.clone() }, "rollup"),
        ] {
            let err = reconcile(&have, &want).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
