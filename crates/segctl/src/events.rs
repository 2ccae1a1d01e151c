//! `segctl events`: the organisation's event history, replayed from the
//! server's log, as JSON lines (the server's stable rendering, one event per
//! line) or CSV, to stdout or to a file with a progress bar — so that it
//! goes straight into DuckDB or pandas.
//!
//! Progress is measured in log sequences (the server says where the replay
//! ends), not in events: filtered replays skip most sequences, and the bar
//! still moves at the pace the server scans the log.

use crate::Output;
use crate::client::Api;
use anyhow::Context;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use segmentd_proto::v1 as pb;
use serde_json::json;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line (the server's stable rendering).
    Jsonl,
    /// A header, then sequence,time,type,org,aggregate_type,aggregate_id,actor,command_id,data.
    Csv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AggregateType {
    Contact,
    Segments,
}

impl AggregateType {
    fn as_str(self) -> &'static str {
        match self {
            AggregateType::Contact => "contact",
            AggregateType::Segments => "segments",
        }
    }
}

/// Which events, and where they go.
#[derive(clap::Args, Debug)]
pub(crate) struct EventsArgs {
    /// First log sequence (inclusive).
    #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) from: Option<u64>,
    /// Last log sequence (inclusive) [default: the log's end when asked].
    #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) to: Option<u64>,
    /// Events recorded at or after this instant.
    #[arg(long, value_name = "RFC3339")]
    pub(crate) since: Option<String>,
    /// Events recorded before this instant (exclusive).
    #[arg(long, value_name = "RFC3339")]
    pub(crate) until: Option<String>,
    /// Only these event types (repeat or comma-separate), e.g. SegmentUpdated.
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub(crate) types: Vec<String>,
    /// Only events of this kind of aggregate.
    #[arg(long, value_enum)]
    pub(crate) aggregate_type: Option<AggregateType>,
    /// Only this aggregate: a contact's email, or `catalog` for the segments.
    #[arg(long, value_name = "ID", requires = "aggregate_type")]
    pub(crate) aggregate_id: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub(crate) format: Format,
    /// Write to this file (with a progress bar) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

impl EventsArgs {
    fn request(&self) -> pb::ReplayEventsRequest {
        pb::ReplayEventsRequest {
            aggregate_type: self.aggregate_type.map(|a| a.as_str().to_owned()).unwrap_or_default(),
            aggregate_id: self.aggregate_id.clone().unwrap_or_default(),
            event_types: self.types.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect(),
            from_sequence: self.from.unwrap_or(0),
            to_sequence: self.to.unwrap_or(0),
            from_time: self.since.clone().unwrap_or_default(),
            to_time: self.until.clone().unwrap_or_default(),
        }
    }
}

/// Where records go: JSON lines or CSV over one buffered writer.
enum Sink {
    Jsonl(BufWriter<Box<dyn Write>>),
    Csv(Box<csv::Writer<Box<dyn Write>>>),
}

impl Sink {
    fn new(format: Format, out: Box<dyn Write>) -> anyhow::Result<Sink> {
        Ok(match format {
            Format::Jsonl => Sink::Jsonl(BufWriter::with_capacity(1 << 16, out)),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(crate::output::EVENT_CSV_HEADER)?;
                Sink::Csv(Box::new(w))
            }
        })
    }

    fn write(&mut self, event: &pb::RecordedEvent) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(w) => {
                w.write_all(event.json.as_bytes())?;
                w.write_all(b"\n")?;
            }
            Sink::Csv(w) => w.write_record(crate::output::event_csv_record(event))?,
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(mut w) => w.flush()?,
            Sink::Csv(mut w) => w.flush()?,
        }
        Ok(())
    }
}

/// The progress bar: over log sequences when the end is known, else a
/// spinner; drawn only when writing to a file and printing for people.
fn progress(args: &EventsArgs, output: Output, end: Option<u64>) -> ProgressBar {
    let target = match (&args.out, output) {
        (Some(_), Output::Text) => ProgressDrawTarget::stderr(),
        _ => ProgressDrawTarget::hidden(),
    };
    let start = args.from.unwrap_or(1);
    match end {
        Some(end) => {
            let bar = ProgressBar::with_draw_target(Some((end + 1).saturating_sub(start)), target);
            if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} log sequences, {msg} ({eta})") {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, target);
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
            bar
        }
    }
}

pub(crate) async fn run(api: &Api, args: EventsArgs, output: Output) -> anyhow::Result<()> {
    let (end, mut stream) = api.replay_events(args.request()).await?;
    let out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?),
        None => Box::new(std::io::stdout()),
    };
    let mut sink = Sink::new(args.format, out)?;
    let bar = progress(&args, output, end);
    let start = args.from.unwrap_or(1);
    let mut written = 0u64;
    let mut last_sequence = None;
    while let Some(event) = stream.message().await? {
        sink.write(&event)?;
        written += 1;
        last_sequence = Some(event.sequence);
        bar.set_position((event.sequence + 1).saturating_sub(start));
        if written.is_multiple_of(1000) {
            bar.set_message(format!("{written} events"));
        }
    }
    sink.finish()?;
    if let Some(end) = end {
        bar.set_position((end + 1).saturating_sub(start));
    }
    bar.set_message(format!("{written} events"));
    bar.finish();
    if let Some(path) = &args.out {
        match output {
            Output::Text => crate::emit(&format!("wrote {written} events to {}\n", path.display()))?,
            Output::Json => crate::emit_json(&json!({
                "file": path.display().to_string(),
                "events": written,
                "last_sequence": last_sequence,
                "end_sequence": end,
            }))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_the_request() {
        let args = EventsArgs {
            from: Some(3),
            to: None,
            since: Some("2025-01-01T00:00:00Z".into()),
            until: None,
            types: vec!["SegmentUpdated".into(), " ".into()],
            aggregate_type: Some(AggregateType::Segments),
            aggregate_id: None,
            format: Format::Csv,
            out: None,
        };
        let r = args.request();
        assert_eq!((r.from_sequence, r.to_sequence), (3, 0));
        assert_eq!(r.event_types, ["SegmentUpdated"]);
        assert_eq!(r.aggregate_type, "segments");
        assert_eq!(r.from_time, "2025-01-01T00:00:00Z");
        assert!(r.to_time.is_empty());
    }
}
