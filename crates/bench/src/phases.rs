//! Where a command's time goes, read from the spans segmentd already emits:
//! `upsert_contacts` (the writer: per-contact `last_of` lookups, `decide`,
//! append) and `nats_log.append` (publishing and awaiting acks). A
//! `tracing` layer records each span's wall time from creation to close;
//! nothing else is enabled, so the product's other spans and events cost
//! nothing extra.
//!
//! **Must not depend on** segmentd internals: span names are the only
//! contract, and a renamed span shows up as a phase with no samples.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::span::{Attributes, Id};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The spans timed: the writer's command handling and the log's append.
pub const TIMED_SPANS: &[&str] = &["upsert_contacts", "nats_log.append"];

/// Count and total wall time per span name.
#[derive(Clone, Debug, Default)]
pub struct SpanTimes {
    totals: Arc<Mutex<BTreeMap<&'static str, (u64, Duration)>>>,
}

struct Started(Instant);

impl SpanTimes {
    /// Only the spans in [`TIMED_SPANS`] are enabled for this layer.
    pub fn is_timed(meta: &Metadata<'_>) -> bool {
        meta.is_span() && TIMED_SPANS.contains(&meta.name())
    }

    /// Takes the totals collected so far and starts again from zero.
    pub fn take(&self) -> BTreeMap<&'static str, (u64, Duration)> {
        std::mem::take(&mut *self.totals.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<S> Layer<S> for SpanTimes
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(elapsed) = span.extensions().get::<Started>().map(|s| s.0.elapsed()) else { return };
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let entry = totals.entry(span.metadata().name()).or_default();
        entry.0 += 1;
        entry.1 += elapsed;
    }
}

/// Mean milliseconds per span of `name`, if any closed.
pub fn mean_ms(totals: &BTreeMap<&'static str, (u64, Duration)>, name: &str) -> Option<f64> {
    let (n, total) = totals.get(name)?;
    (*n > 0).then(|| total.as_secs_f64() * 1e3 / *n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn only_the_named_spans_are_timed() {
        let times = SpanTimes::default();
        let subscriber = tracing_subscriber::registry().with(times.clone().with_filter(filter_fn(SpanTimes::is_timed)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("upsert_contacts").in_scope(|| {
                tracing::info_span!("other").in_scope(|| {});
            });
        });
        let totals = times.take();
        assert_eq!(totals.get("upsert_contacts").map(|t| t.0), Some(1));
        assert!(!totals.contains_key("other"));
        assert!(mean_ms(&totals, "upsert_contacts").is_some());
        assert!(times.take().is_empty());
    }
}
