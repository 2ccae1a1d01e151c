//! `segments.v1.Replay`: the event history for analysts and auditors,
//! straight from the log. Thin like the other handlers: authenticate, parse
//! the filters (every refusal names its field), call [`crate::history`],
//! convert each event to the typed message plus its stable JSON rendering.

use crate::auth::ApiKeys;
use crate::convert::{self, BadRequest};
use crate::event_json;
use crate::history::{self, ReplayFilter};
use segmentd_domain::event::SEGMENT_CATALOG_ID;
use segmentd_domain::{AggregateKind, Timestamp};
use segmentd_log::codec::EVENT_TYPES;
use segmentd_log::{EventLog, Recorded};
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::replay_server::Replay;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// Response header of `ReplayEvents`: the sequence the stream ends at, so a
/// client can show progress before the last event arrives.
pub const END_SEQUENCE_HEADER: &str = "x-end-sequence";

/// Events buffered between the log reader and a slow client. Enough to keep
/// the reader a page ahead; a client that stops reading stops the reader.
const STREAM_BUFFER: usize = history::PAGE;

pub struct ReplayService {
    log: Arc<dyn EventLog>,
    keys: ApiKeys,
}

impl ReplayService {
    pub fn new(log: Arc<dyn EventLog>, keys: ApiKeys) -> Self {
        ReplayService { log, keys }
    }
}

fn bad(msg: String) -> BadRequest {
    BadRequest(msg)
}

/// The request's filters, scoped to `org`.
pub fn replay_filter(org: &str, req: &pb::ReplayEventsRequest) -> Result<ReplayFilter, BadRequest> {
    let aggregate_kind = match req.aggregate_type.trim() {
        "" => None,
        raw => Some(AggregateKind::parse(raw).ok_or_else(|| {
            bad(format!(
                "aggregate_type: unknown aggregate type {raw:?}; use \"contact\", \"segments\", \"job\" or \"list\""
            ))
        })?),
    };
    let aggregate_id = match (req.aggregate_id.trim(), aggregate_kind) {
        ("", _) => None,
        (_, None) => return Err(bad("aggregate_id: give aggregate_type too".into())),
        (raw, Some(AggregateKind::Contact)) => Some(convert::email("aggregate_id", raw)?.into_string()),
        (raw, Some(AggregateKind::Job)) => Some(raw.to_owned()),
        (SEGMENT_CATALOG_ID, Some(AggregateKind::Segments)) => Some(SEGMENT_CATALOG_ID.to_owned()),
        (raw, Some(AggregateKind::Segments)) => {
            return Err(bad(format!(
                "aggregate_id: the segments aggregate of an organisation is {SEGMENT_CATALOG_ID:?}, not {raw:?}; \
                 use SegmentHistory for one segment"
            )));
        }
        (raw, Some(AggregateKind::List)) => match raw.parse::<u64>() {
            Ok(id) if id > 0 => Some(id.to_string()),
            _ => return Err(bad(format!("aggregate_id: a list's id is a positive number, not {raw:?}"))),
        },
    };
    convert::at_most_refs("event_types", &req.event_types)?;
    let event_types = req
        .event_types
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            // Matched case-insensitively and stored as the canonical name,
            // because that is what the filter compares with.
            EVENT_TYPES
                .iter()
                .find(|(_, name)| name.eq_ignore_ascii_case(raw.trim()))
                .map(|(_, name)| name.to_string())
                .ok_or_else(|| {
                    let known: Vec<&str> = EVENT_TYPES.iter().map(|(_, n)| *n).collect();
                    bad(format!("event_types[{i}]: unknown event type {raw:?}; types are {}", known.join(", ")))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let to_seq = (req.to_sequence != 0).then_some(req.to_sequence);
    if let Some(to) = to_seq
        && req.from_sequence > to
    {
        return Err(bad(format!("from_sequence: {} is after to_sequence {to}", req.from_sequence)));
    }
    let from_time = time("from_time", &req.from_time)?;
    let to_time = time("to_time", &req.to_time)?;
    if let (Some(from), Some(to)) = (from_time, to_time)
        && from > to
    {
        return Err(bad(format!("from_time: {from} is after to_time {to}")));
    }
    Ok(ReplayFilter {
        org: org.to_owned(),
        aggregate_kind,
        aggregate_id,
        event_types,
        from_seq: req.from_sequence.max(1),
        to_seq,
        from_time,
        to_time,
    })
}

fn time(field: &str, raw: &str) -> Result<Option<Timestamp>, BadRequest> {
    match raw.trim() {
        "" => Ok(None),
        raw => Timestamp::parse_rfc3339(raw).map(Some).map_err(|e| bad(format!("{field}: {e}"))),
    }
}

/// The typed message, with the stable JSON rendering beside the fields.
pub fn recorded_event(rec: &Recorded) -> pb::RecordedEvent {
    let env = &rec.envelope;
    let rendered = event_json::render(rec);
    pb::RecordedEvent {
        sequence: rec.seq,
        event_id: event_json::event_id(env.event_id),
        r#type: env.event.type_name().to_owned(),
        org: env.aggregate.org.clone(),
        aggregate_type: env.aggregate.kind.as_str().to_owned(),
        aggregate_id: env.aggregate.id.clone(),
        actor: env.actor.clone(),
        command_id: env.command_id.clone(),
        time: env.time.to_string(),
        json: rendered.json,
        data_json: rendered.data,
    }
}

fn history_reply(h: history::History) -> pb::HistoryReply {
    pb::HistoryReply { events: h.events.iter().map(recorded_event).collect(), sequence: h.sequence }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::RecordedEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Replay for ReplayService {
    type ReplayEventsStream = EventStream;

    async fn replay_events(&self, request: Request<pb::ReplayEventsRequest>) -> Result<Response<EventStream>, Status> {
        let caller = self.keys.authenticate(&request)?;
        let filter = replay_filter(&caller.org, request.get_ref())?;
        let end = history::replay_end(&*self.log, &filter).await.map_err(crate::status::log)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(history::replay(Arc::clone(&self.log), filter, end, tx));
        let stream =
            ReceiverStream::new(rx).map(|item| item.map(|rec| recorded_event(&rec)).map_err(crate::status::log));
        let mut response = Response::new(Box::pin(stream) as EventStream);
        response.metadata_mut().insert(END_SEQUENCE_HEADER, end.into());
        Ok(response)
    }

    async fn segment_history(
        &self,
        request: Request<pb::SegmentHistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        let caller = self.keys.authenticate(&request)?;
        let lookup = convert::segment_ref("segment", request.get_ref().segment.as_ref())?;
        let history = history::segment_history(&*self.log, &caller.org, lookup).await?;
        Ok(Response::new(history_reply(history)))
    }

    async fn contact_history(
        &self,
        request: Request<pb::ContactHistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        let caller = self.keys.authenticate(&request)?;
        let email = convert::email("email", &request.get_ref().email)?;
        let history = history::contact_history(&*self.log, &caller.org, &email).await?;
        Ok(Response::new(history_reply(history)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::ReplayEventsRequest {
        pb::ReplayEventsRequest::default()
    }

    fn refusal(req: pb::ReplayEventsRequest) -> String {
        replay_filter("acme", &req).unwrap_err().0
    }

    #[test]
    fn an_empty_request_replays_the_whole_org() {
        assert_eq!(replay_filter("acme", &request()).unwrap(), ReplayFilter::org("acme"));
    }

    #[test]
    fn filters_are_parsed_and_normalised() {
        let f = replay_filter(
            "acme",
            &pb::ReplayEventsRequest {
                aggregate_type: "contact".into(),
                aggregate_id: "Ann@Example.com".into(),
                event_types: vec!["contactupdated".into()],
                from_sequence: 3,
                to_sequence: 9,
                from_time: "2025-01-01T00:00:00Z".into(),
                to_time: "2025-01-02T00:00:00+01:00".into(),
            },
        )
        .unwrap();
        assert_eq!(f.aggregate_id.as_deref(), Some("ann@example.com"));
        assert_eq!(f.event_types, ["ContactUpdated"]);
        assert_eq!((f.from_seq, f.to_seq), (3, Some(9)));
        assert!(f.from_time < f.to_time);
    }

    #[test]
    fn bad_filters_name_their_field() {
        let cases = [
            (pb::ReplayEventsRequest { aggregate_type: "segment".into(), ..request() }, "aggregate_type"),
            (pb::ReplayEventsRequest { aggregate_id: "a@x.com".into(), ..request() }, "aggregate_id"),
            (
                pb::ReplayEventsRequest { aggregate_type: "segments".into(), aggregate_id: "7".into(), ..request() },
                "aggregate_id",
            ),
            (
                pb::ReplayEventsRequest { aggregate_type: "contact".into(), aggregate_id: "nope".into(), ..request() },
                "aggregate_id",
            ),
            (
                pb::ReplayEventsRequest { event_types: vec!["ContactCreated".into(), "Nope".into()], ..request() },
                "event_types[1]",
            ),
            (pb::ReplayEventsRequest { from_sequence: 5, to_sequence: 4, ..request() }, "from_sequence"),
            (pb::ReplayEventsRequest { from_time: "yesterday".into(), ..request() }, "from_time"),
            (pb::ReplayEventsRequest { to_time: "2025-13-01T00:00:00Z".into(), ..request() }, "to_time"),
            (
                pb::ReplayEventsRequest {
                    from_time: "2025-02-01T00:00:00Z".into(),
                    to_time: "2025-01-01T00:00:00Z".into(),
                    ..request()
                },
                "from_time",
            ),
        ];
        for (req, field) in cases {
            let msg = refusal(req.clone());
            assert!(msg.starts_with(field), "{req:?} → {msg}");
        }
    }
}
