//! Golden fixtures: the bytes of every released event type, committed in
//! `tests/fixtures/events/<TypeName>.v1.bin`, must still decode to exactly
//! the sample and be exactly what encoding the sample gives today. This is
//! what keeps a change to a frozen payload struct from shipping.
//!
//! A missing fixture fails the test. `UPDATE_GOLDEN=1 cargo test -p
//! segmentd-log --test golden` writes missing fixtures (never overwrites one).

mod support;

use segmentd_log::codec::{self, EVENT_TYPES};
use std::path::{Path, PathBuf};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/events")
}

fn fixture_path(type_name: &str) -> PathBuf {
    fixtures_dir().join(format!("{type_name}.v1.bin"))
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

#[test]
fn every_sample_matches_its_golden_fixture() {
    let mut problems = Vec::new();
    for sample in support::samples() {
        let name = sample.event.type_name();
        let path = fixture_path(name);
        let encoded = codec::encode(&sample);
        match std::fs::read(&path) {
            Ok(golden) => {
                match codec::decode(&golden) {
                    Ok(decoded) if decoded == sample => {}
                    Ok(decoded) => problems.push(format!("{name}: the fixture decodes to {decoded:#?}")),
                    Err(e) => problems.push(format!("{name}: the fixture no longer decodes: {e}")),
                }
                if encoded != golden {
                    problems.push(format!(
                        "{name}: encoding the sample no longer gives the fixture's bytes; a released \
                         payload changed. Add a V2 type and an upcaster instead (see codec.rs)"
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && updating() => {
                std::fs::create_dir_all(fixtures_dir()).unwrap();
                std::fs::write(&path, &encoded).unwrap();
                eprintln!("wrote {}", path.display());
            }
            Err(e) => problems.push(format!(
                "{name}: cannot read {}: {e}; if this is a new event type, run once with UPDATE_GOLDEN=1 \
                 and commit the file",
                path.display()
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_released_type_has_a_sample_and_a_fixture() {
    let samples = support::samples();
    for (code, name) in EVENT_TYPES {
        let sample = samples.iter().find(|s| s.event.type_name() == *name);
        let sample = sample.unwrap_or_else(|| panic!("released type {name} has no sample in tests/support"));
        assert_eq!(codec::event_type_code(&sample.event), *code, "{name}'s code");
        if !updating() {
            let bytes = std::fs::read(fixture_path(name))
                .unwrap_or_else(|e| panic!("released type {name} has no golden fixture: {e}"));
            assert_eq!(u16::from_le_bytes([bytes[1], bytes[2]]), *code, "{name}'s fixture carries its code");
        }
    }
    assert_eq!(samples.len(), EVENT_TYPES.len(), "one sample per released type, no more");
}

#[test]
fn every_fixture_file_is_a_released_type_that_decodes() {
    let Ok(entries) = std::fs::read_dir(fixtures_dir()) else {
        assert!(updating(), "{} is missing", fixtures_dir().display());
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        // The JSON renderings beside the bytes are the server's golden files
        // (crates/server/tests/event_json_golden.rs checks them).
        if file.ends_with(".v1.json") {
            continue;
        }
        let name = file.strip_suffix(".v1.bin").unwrap_or_else(|| panic!("unexpected fixture {file}"));
        assert!(EVENT_TYPES.iter().any(|(_, n)| *n == name), "fixture {file} is not a released type");
        let decoded = codec::decode(&std::fs::read(&path).unwrap());
        assert_eq!(decoded.map(|e| e.event.type_name()), Ok(name), "{file}");
    }
}
