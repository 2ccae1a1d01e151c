//! `segctl segments export`: a segment's members as a file — CSV, JSON lines
//! or an Excel workbook — with the columns asked for, from one consistent
//! snapshot of the server's read model, with a progress bar.
//!
//! The server sends how many rows follow before the first one, so the bar
//! has a length and a stream cut short is noticed. The file is written
//! under a temporary name and renamed when complete, so a failed export
//! leaves no half file under the name asked for.

use crate::client::{Api, with_segment};
use crate::{Output, PastOption, ReadOptions, emit, emit_json};
use anyhow::{Context, bail};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pb::export_contacts_reply::Part;
use rust_xlsxwriter::{Format as CellFormat, Workbook};
use segmentd_proto::v1 as pb;
use serde_json::json;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A header of field names, then one row per member.
    Csv,
    /// One JSON object per member, keys in column order, values as text.
    Jsonl,
    /// An Excel workbook: a sheet "members" (more sheets past Excel's
    /// 1,048,576 rows), the field names in a frozen first row.
    Xlsx,
}

impl Format {
    /// The format a file name's extension names, if any.
    fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "xlsx" => Some(Format::Xlsx),
            _ => None,
        }
    }
}

/// Which members, which columns, and where they go.
#[derive(clap::Args, Debug)]
pub(crate) struct ExportArgs {
    #[arg(value_name = "NAME|ID")]
    segment: String,
    /// Columns, comma-separated, e.g. email,first_name,custom.plan
    /// [default: every built-in field, as `contacts import` reads them].
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Only members added at or after this instant.
    #[arg(long, value_name = "RFC3339", conflicts_with_all = ["added_between", "updated_between"])]
    since: Option<String>,
    /// Only members added at or after FROM and before TO ("" leaves a bound open).
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"], conflicts_with = "updated_between")]
    added_between: Option<Vec<String>>,
    /// Only members last updated at or after FROM and before TO.
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"])]
    updated_between: Option<Vec<String>>,
    /// File format [default: from the --out file's extension, else csv].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write to this file, with a progress bar (stdout otherwise; xlsx needs a file).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    read: ReadOptions,
    #[command(flatten)]
    past: PastOption,
}

impl ExportArgs {
    fn format(&self) -> Format {
        self.format.or_else(|| self.out.as_deref().and_then(Format::of)).unwrap_or(Format::Csv)
    }

    fn date_filter(&self) -> Option<pb::export_contacts_request::DateFilter> {
        use pb::export_contacts_request::DateFilter;
        let range = |bounds: &[String]| pb::TimeRange {
            from: bounds.first().cloned().unwrap_or_default(),
            to: bounds.get(1).cloned().unwrap_or_default(),
        };
        if let Some(since) = &self.since {
            return Some(DateFilter::AddedBetween(pb::TimeRange { from: since.clone(), to: String::new() }));
        }
        if let Some(bounds) = &self.added_between {
            return Some(DateFilter::AddedBetween(range(bounds)));
        }
        self.updated_between.as_deref().map(|bounds| DateFilter::UpdatedBetween(range(bounds)))
    }

    fn request(&self, segment: pb::SegmentRef) -> pb::ExportContactsRequest {
        pb::ExportContactsRequest {
            segment: Some(segment),
            fields: self.fields.iter().map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect(),
            date_filter: self.date_filter(),
            min_sequence: self.read.min_sequence,
            at: self.read.at.clone().unwrap_or_default(),
            as_of: self.past.as_of(),
        }
    }
}

/// Excel's rows per sheet, the header row included.
const SHEET_ROWS: u32 = 1_048_576;

/// Where rows go.
enum Sink {
    Csv(Box<csv::Writer<Box<dyn Write>>>),
    Jsonl { out: BufWriter<Box<dyn Write>>, keys: Vec<String> },
    Xlsx(Box<Sheets>),
}

/// An xlsx workbook being filled sheet by sheet, in constant memory.
struct Sheets {
    workbook: Workbook,
    header: Vec<String>,
    bold: CellFormat,
    sheet: usize,
    /// The next row of the current sheet.
    row: u32,
    /// Rows per sheet, the header included: Excel's limit (tests use less).
    per_sheet: u32,
}

impl Sheets {
    fn new(header: &[String], per_sheet: u32) -> anyhow::Result<Sheets> {
        let mut sheets = Sheets {
            workbook: Workbook::new(),
            header: header.to_vec(),
            bold: CellFormat::new().set_bold(),
            sheet: 0,
            row: 0,
            per_sheet,
        };
        sheets.start_sheet()?;
        Ok(sheets)
    }

    fn start_sheet(&mut self) -> anyhow::Result<()> {
        let n = self.workbook.worksheets().len();
        let sheet = self.workbook.add_worksheet_with_constant_memory()?;
        sheet.set_name(if n == 0 { "members".to_owned() } else { format!("members {}", n + 1) })?;
        sheet.write_row_with_format(0, 0, &self.header, &self.bold)?;
        sheet.set_freeze_panes(1, 0)?;
        self.sheet = n;
        self.row = 1;
        Ok(())
    }

    fn write(&mut self, values: &[String]) -> anyhow::Result<()> {
        if self.row == self.per_sheet {
            self.start_sheet()?;
        }
        let sheet = self.workbook.worksheet_from_index(self.sheet)?;
        for (col, value) in values.iter().enumerate() {
            // An empty value stays an empty cell, as Excel would have it.
            if !value.is_empty() {
                sheet.write_string(self.row, u16::try_from(col)?, value)?;
            }
        }
        self.row += 1;
        Ok(())
    }
}

impl Sink {
    fn new(format: Format, out: Option<&Path>, header: &[String]) -> anyhow::Result<Sink> {
        let writer = || -> anyhow::Result<Box<dyn Write>> {
            Ok(match out {
                Some(path) => {
                    Box::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
                }
                None => Box::new(std::io::stdout()),
            })
        };
        Ok(match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(writer()?);
                w.write_record(header)?;
                Sink::Csv(Box::new(w))
            }
            Format::Jsonl => Sink::Jsonl {
                out: BufWriter::with_capacity(1 << 16, writer()?),
                keys: header.iter().map(|f| serde_json::Value::from(f.as_str()).to_string()).collect(),
            },
            Format::Xlsx => Sink::Xlsx(Box::new(Sheets::new(header, SHEET_ROWS)?)),
        })
    }

    fn write(&mut self, values: &[String]) -> anyhow::Result<()> {
        match self {
            Sink::Csv(w) => w.write_record(values)?,
            // By hand, so keys keep the column order (a JSON map would sort them).
            Sink::Jsonl { out, keys } => {
                out.write_all(b"{")?;
                for (i, (key, value)) in keys.iter().zip(values).enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    write!(out, "{key}:{}", serde_json::Value::from(value.as_str()))?;
                }
                out.write_all(b"}\n")?;
            }
            Sink::Xlsx(sheets) => sheets.write(values)?,
        }
        Ok(())
    }

    fn finish(self, out: Option<&Path>) -> anyhow::Result<()> {
        match self {
            Sink::Csv(mut w) => w.flush()?,
            Sink::Jsonl { mut out, .. } => out.flush()?,
            Sink::Xlsx(mut sheets) => {
                let path = out.context("xlsx needs a file")?;
                sheets.workbook.save(path).with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// The bar: rows written out of the header's total; drawn only when rows
/// go to a file, for people, on a terminal.
fn progress(total: u64, visible: bool) -> ProgressBar {
    let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} rows ({per_sec}, {eta})") {
        bar.set_style(style);
    }
    bar
}

/// `FILE.partial`: where rows go until the export is complete.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

pub(crate) async fn run(api: &Api, output: Output, args: ExportArgs) -> anyhow::Result<()> {
    let format = args.format();
    if format == Format::Xlsx && args.out.is_none() {
        bail!("--format xlsx writes a file: give --out FILE.xlsx");
    }
    let (mut stream, _) = with_segment(&args.segment, |r| api.export_contacts(args.request(r))).await?;
    let header = match stream.message().await?.and_then(|m| m.part) {
        Some(Part::Header(header)) => header,
        other => bail!("the server's export did not start with a header: {other:?}"),
    };
    let temporary = args.out.as_deref().map(partial);
    let written = write_rows(&mut stream, &header, format, temporary.as_deref(), output).await;
    if let (Some(temporary), Some(out)) = (&temporary, &args.out) {
        match &written {
            Ok(_) => std::fs::rename(temporary, out)
                .with_context(|| format!("cannot rename {} to {}", temporary.display(), out.display()))?,
            Err(_) => {
                // Best effort: the error that ended the export is the one to report.
                let _ = std::fs::remove_file(temporary);
            }
        }
    }
    let written = written?;
    let fields = header.fields.join(",");
    match (output, &args.out) {
        (Output::Text, Some(out)) => emit(&format!(
            "wrote {written} rows of segment {} ({fields}) to {}, as of sequence {}\n",
            header.segment_name,
            out.display(),
            header.sequence
        ))?,
        // The rows went to stdout: the count goes beside them.
        (Output::Text, None) => eprintln!("wrote {written} rows, as of sequence {}", header.sequence),
        (Output::Json, _) => {
            let report = json!({
                "file": args.out.as_ref().map(|p| p.display().to_string()),
                "format": format!("{format:?}").to_lowercase(),
                "rows": written,
                "fields": header.fields,
                "segment_id": header.segment_id,
                "segment": header.segment_name,
                "sequence": header.sequence,
                "at": header.at,
            });
            if args.out.is_some() {
                emit_json(&report)?;
            } else {
                eprintln!("{report}");
            }
        }
    }
    Ok(())
}

/// Writes every row the stream brings; how many.
async fn write_rows(
    stream: &mut tonic::Streaming<pb::ExportContactsReply>,
    header: &pb::ExportHeader,
    format: Format,
    file: Option<&Path>,
    output: Output,
) -> anyhow::Result<u64> {
    let mut sink = Sink::new(format, file, &header.fields)?;
    let visible = file.is_some() && output == Output::Text && std::io::stderr().is_terminal();
    let bar = progress(header.total, visible);
    let mut written = 0u64;
    while let Some(message) = stream.message().await? {
        let Some(Part::Rows(rows)) = message.part else { bail!("the server sent a second header") };
        for row in &rows.rows {
            sink.write(&row.values)?;
        }
        written += rows.rows.len() as u64;
        bar.set_position(written);
    }
    if written != header.total {
        bail!("the export ended after {written} of {} rows", header.total);
    }
    sink.finish(file)?;
    bar.finish_and_clear();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_follows_the_flag_then_the_extension() {
        assert_eq!(Format::of(Path::new("a/b.XLSX")), Some(Format::Xlsx));
        assert_eq!(Format::of(Path::new("m.ndjson")), Some(Format::Jsonl));
        assert_eq!(Format::of(Path::new("m.txt")), None);
        assert_eq!(partial(Path::new("out/m.csv")), PathBuf::from("out/m.csv.partial"));
    }

    #[test]
    fn rows_past_a_sheets_limit_go_on_in_a_new_sheet_with_the_header() {
        use calamine::{Data, Reader, Xlsx, open_workbook};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.xlsx");
        let header = vec!["email".to_owned(), "age".to_owned()];
        let mut sheets = Sheets::new(&header, 3).unwrap();
        for i in 0..5 {
            sheets.write(&[format!("c{i}@x.com"), if i == 1 { String::new() } else { i.to_string() }]).unwrap();
        }
        sheets.workbook.save(&path).unwrap();

        let mut book: Xlsx<_> = open_workbook(&path).unwrap();
        assert_eq!(book.sheet_names(), ["members", "members 2", "members 3"]);
        let text = |d: &Data| match d {
            Data::String(s) => s.clone(),
            Data::Empty => String::new(),
            other => panic!("{other:?}"),
        };
        let rows: Vec<Vec<Vec<String>>> = book
            .worksheets()
            .iter()
            .map(|(_, range)| range.rows().map(|r| r.iter().map(text).collect()).collect())
            .collect();
        assert_eq!(rows[0], [vec!["email", "age"], vec!["c0@x.com", "0"], vec!["c1@x.com", ""]]);
        assert_eq!(rows[1], [vec!["email", "age"], vec!["c2@x.com", "2"], vec!["c3@x.com", "3"]]);
        assert_eq!(rows[2], [vec!["email", "age"], vec!["c4@x.com", "4"]]);
    }
}
