//! `segctl segments export`, run for real against a demo server: the same
//! members written as CSV, JSON lines and an Excel workbook, each read back
//! (csv, serde_json, calamine) and compared with the demo data; values that
//! need quoting survive; date filters and bad input behave.

use calamine::{Data, Reader, Xlsx, open_workbook};
use std::path::Path;

mod common;

use common::{segctl, serve_demo, stdout};

const FIELDS: [&str; 6] = ["email", "first_name", "city", "age", "added_at", "custom.note"];

/// The odd contact: quotes, commas and non-ASCII in its values (values may
/// hold no control characters).
const ZOE: [&str; 6] =
    ["zoe@example.de", "Zoë \"Z\", Jr.", "Köln", "41", "2026-01-02T03:04:05Z", "a, b; \"c\" 'd' ⟨e⟩"];

fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_path(path).unwrap();
    reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect()
}

/// Rows of a JSON-lines export, checking every object has exactly the
/// columns as keys, in column order.
fn read_jsonl(path: &Path, columns: &[&str]) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
            assert_eq!(object.len(), columns.len(), "{line}");
            // A parsed map sorts its keys: find them in the line instead.
            let at: Vec<usize> = columns
                .iter()
                .map(|c| line.find(&format!("{}:", serde_json::Value::from(*c))).expect("every column is a key"))
                .collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "keys out of column order: {line}");
            columns.iter().map(|c| object[*c].as_str().unwrap().to_owned()).collect()
        })
        .collect()
}

fn read_xlsx(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut workbook: Xlsx<_> = open_workbook(path).unwrap();
    let names = workbook.sheet_names();
    let range = workbook.worksheet_range("members").unwrap();
    let rows = range
        .rows()
        .map(|row| {
            row.iter()
                .map(|cell| match cell {
                    Data::String(s) => s.clone(),
                    Data::Empty => String::new(),
                    other => panic!("every cell is text or empty, not {other:?}"),
                })
                .collect()
        })
        .collect();
    (names, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_csv_jsonl_and_xlsx_that_read_back_as_the_members() {
    let dir = tempfile::tempdir().unwrap();
    let (served, server) = serve_demo(dir.path().join("data"), |_| {}).await;

    // The expected rows: the demo's Germans in file order, then Zoë.
    let demo = segmentd_server::demo::demo_contacts().unwrap();
    let value = |c: &segmentd_proto::v1::ContactInput, f: &str| {
        if f == "email" { c.email.clone() } else { c.fields.get(f).cloned().unwrap_or_default() }
    };
    let mut expected: Vec<Vec<String>> = demo
        .iter()
        .filter(|c| c.fields["country"] == "DE")
        .map(|c| FIELDS.iter().map(|f| value(c, f)).collect())
        .collect();
    // Demo contacts have no custom.note: that column is empty for them.
    assert!(expected.iter().all(|r| r[5].is_empty()));
    expected.push(ZOE.iter().map(|v| (*v).to_owned()).collect());
    let since_2025 = expected.iter().filter(|r| r[4].as_str() >= "2025-01-01T00:00:00Z").count();

    let path = |name: &str| dir.path().join(name);
    let zoe_csv = path("zoe.csv");
    let mut w = csv::Writer::from_path(&zoe_csv).unwrap();
    w.write_record(FIELDS.iter().chain(&["country"])).unwrap();
    w.write_record(ZOE.iter().chain(&["DE"])).unwrap();
    w.flush().unwrap();
    let files = [path("de.csv"), path("de.jsonl"), path("de.xlsx"), path("recent.csv")];
    let fields = FIELDS.join(",");
    let unwritten = path("refused.csv").to_str().unwrap().to_owned();
    let s = server.clone();
    let columns = fields.clone();
    let (imported, reports, recent, bad) = tokio::task::spawn_blocking(move || {
        let fields = columns;
        let json = |args: &[&str]| -> serde_json::Value {
            let mut all = vec!["--output", "json"];
            all.extend_from_slice(args);
            serde_json::from_str(stdout(&segctl(&s, &all)).trim()).unwrap()
        };
        let imported = json(&["contacts", "import", zoe_csv.to_str().unwrap()]);
        let seq = imported["sequence"].as_u64().unwrap().to_string();
        let reports: Vec<String> = files[..3]
            .iter()
            .map(|file| {
                // The format comes from the extension.
                let args = ["segments", "export", "germany", "--fields", &fields, "--min-sequence", &seq, "--out"];
                stdout(&segctl(&s, &[&args[..], &[file.to_str().unwrap()]].concat()))
            })
            .collect();
        let recent = json(&[
            "segments",
            "export",
            "germany",
            "--fields",
            &fields,
            "--since",
            "2025-01-01T00:00:00Z",
            "--format",
            "csv",
            "--out",
            files[3].to_str().unwrap(),
        ]);
        let bad = [
            segctl(&s, &["segments", "export", "germany", "--fields", "email,shoe_size", "--out", &unwritten]),
            segctl(&s, &["segments", "export", "nobody", "--out", &unwritten]),
            segctl(&s, &["segments", "export", "germany", "--format", "xlsx"]),
        ];
        (imported, reports, recent, bad)
    })
    .await
    .unwrap();
    assert_eq!(imported["created"].as_u64(), Some(1));

    let n = expected.len();
    for (report, file) in reports.iter().zip(["de.csv", "de.jsonl", "de.xlsx"]) {
        let out = dir.path().join(file);
        assert!(
            report.starts_with(&format!("wrote {n} rows of segment germany ({fields}) to {}", out.display())),
            "{report}"
        );
        assert!(!dir.path().join(format!("{file}.partial")).exists());
    }

    let csv_rows = read_csv(&dir.path().join("de.csv"));
    assert_eq!(csv_rows[0], FIELDS);
    assert_eq!(csv_rows[1..], expected[..]);

    assert_eq!(read_jsonl(&dir.path().join("de.jsonl"), &FIELDS), expected);

    let (sheets, xlsx_rows) = read_xlsx(&dir.path().join("de.xlsx"));
    assert_eq!(sheets, ["members"]);
    // Calamine leaves off trailing empty cells of the range: compare padded.
    let padded: Vec<Vec<String>> = xlsx_rows
        .into_iter()
        .map(|mut r| {
            r.resize(FIELDS.len(), String::new());
            r
        })
        .collect();
    assert_eq!(padded[0], FIELDS);
    assert_eq!(padded[1..], expected[..]);

    assert_eq!(recent["rows"].as_u64(), Some(since_2025 as u64), "{recent}");
    assert_eq!(recent["fields"].as_array().unwrap().len(), FIELDS.len());
    let recent_rows = read_csv(&dir.path().join("recent.csv"));
    assert_eq!(recent_rows.len(), since_2025 + 1);
    assert!(recent_rows[1..].iter().all(|r| r[4].as_str() >= "2025-01-01T00:00:00Z"));

    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        stderr(&bad[0]).contains("INVALID_ARGUMENT") && stderr(&bad[0]).contains("shoe_size"),
        "{}",
        stderr(&bad[0])
    );
    assert!(stderr(&bad[1]).contains("NOT_FOUND") && stderr(&bad[1]).contains("nobody"), "{}", stderr(&bad[1]));
    assert!(stderr(&bad[2]).contains("--out"), "{}", stderr(&bad[2]));
    assert!(bad.iter().all(|o| o.status.code() == Some(1)));
    assert!(!dir.path().join("refused.csv").exists() && !dir.path().join("refused.csv.partial").exists());
    served.stop().await.unwrap();
}
