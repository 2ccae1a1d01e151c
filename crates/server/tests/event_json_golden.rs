//! The JSON rendering is a published format: every released event type's
//! golden postcard fixture (`tests/fixtures/events/<Type>.v1.bin`) must
//! render to exactly the bytes of its golden JSON beside it
//! (`<Type>.v1.json`), and the README's "Event reference" must show each
//! one. A change to the rendering of a released type fails here.
//!
//! A missing JSON fixture fails the test. `UPDATE_GOLDEN=1 cargo test -p
//! segmentd-server --test event_json_golden` writes missing ones (never
//! overwrites one).

use segmentd_log::Recorded;
use segmentd_log::codec::{self, EVENT_TYPES};
use segmentd_server::event_json;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures_dir() -> PathBuf {
    root().join("tests/fixtures/events")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// The released type's golden event, at sequence `position + 1` in
/// EVENT_TYPES order (so the fixtures read like a short history).
fn golden_event(position: usize, name: &str) -> Recorded {
    let path = fixtures_dir().join(format!("{name}.v1.bin"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let envelope = codec::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Recorded { seq: position as u64 + 1, envelope }
}

fn rendered_line(position: usize, name: &str) -> String {
    format!("{}\n", event_json::render(&golden_event(position, name)).json)
}

#[test]
fn every_released_type_renders_to_its_golden_json() {
    let mut problems = Vec::new();
    for (position, (_, name)) in EVENT_TYPES.iter().enumerate() {
        let line = rendered_line(position, name);
        let path = fixtures_dir().join(format!("{name}.v1.json"));
        match std::fs::read_to_string(&path) {
            Ok(golden) if golden == line => {}
            Ok(golden) => problems.push(format!(
                "{name}: the rendering changed; consumers depend on it.\n  golden: {golden}  now:    {line}"
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && updating() => {
                std::fs::write(&path, &line).unwrap();
                eprintln!("wrote {}", path.display());
            }
            Err(e) => problems.push(format!(
                "{name}: cannot read {}: {e}; for a new event type run once with UPDATE_GOLDEN=1 and commit it",
                path.display()
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_released_type_renders_as_one_line_of_json_with_the_envelope() {
    for (position, (_, name)) in EVENT_TYPES.iter().enumerate() {
        let rec = golden_event(position, name);
        let rendered = event_json::render(&rec);
        assert!(!rendered.json.contains('\n'), "{name}: one line");
        let v: Value = serde_json::from_str(&rendered.json).unwrap_or_else(|e| panic!("{name}: {e}"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "actor",
            "aggregate_id",
            "aggregate_type",
            "command_id",
            "data",
            "event_id",
            "org",
            "sequence",
            "time",
            "type",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected, "{name}: the envelope keys");
        assert_eq!(v["type"], *name);
        assert_eq!(v["sequence"], position as u64 + 1);
        assert_eq!(v["event_id"].as_str().unwrap().len(), 32);
        assert_eq!(v["org"], rec.envelope.aggregate.org.as_str());
        assert_eq!(v["time"], rec.envelope.time.to_string().as_str());
        let data: Value = serde_json::from_str(&rendered.data).unwrap();
        assert!(data.is_object(), "{name}: data is an object");
        assert_eq!(v["data"], data, "{name}: `data` is the payload rendering");
    }
}

#[test]
fn every_json_fixture_is_a_released_type() {
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".v1.json") {
            assert!(EVENT_TYPES.iter().any(|(_, n)| *n == name), "fixture {file} is not a released type");
        }
    }
}

/// The ```json blocks of the README's "Event reference" section.
fn readme_examples() -> Vec<Value> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("\n## Event reference").expect("the README has an \"Event reference\" section");
    let section = &readme[start + 1..];
    let section = section[3..].find("\n## ").map_or(section, |end| &section[..end + 3]);
    section
        .split("```json\n")
        .skip(1)
        .map(|block| {
            let json = block.split("```").next().unwrap();
            serde_json::from_str(json).unwrap_or_else(|e| panic!("README example is not JSON ({e}):\n{json}"))
        })
        .collect()
}

#[test]
fn the_readme_shows_every_event_type_as_rendered() {
    let examples = readme_examples();
    for (position, (_, name)) in EVENT_TYPES.iter().enumerate() {
        let golden: Value = serde_json::from_str(&rendered_line(position, name)).unwrap();
        assert!(
            examples.contains(&golden),
            "the README's Event reference has no example equal to the {name} rendering:\n{}",
            serde_json::to_string_pretty(&golden).unwrap()
        );
    }
}
