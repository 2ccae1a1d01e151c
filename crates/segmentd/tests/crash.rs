//! SIGKILL during an import: after a restart no acknowledged contact is
//! missing, and the read model equals one rebuilt from the log.
//! Runs the real binary, so the crash is a real process death.

mod common;

use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use std::collections::BTreeSet;
use tonic::transport::Channel;

use common::spawn;

fn contact(i: usize) -> pb::ContactInput {
    pb::ContactInput {
        email: format!("k{i}@example.com"),
        fields: [("score".to_string(), (i % 500).to_string()), ("country".to_string(), "DE".to_string())].into(),
    }
}

/// Every contact and segment the server holds, read after `min_sequence`.
async fn snapshot(channel: &Channel, min_sequence: u64) -> (Vec<pb::Segment>, Vec<pb::Contact>) {
    let mut q = QueriesClient::new(channel.clone());
    let segments = q
        .list_segments(pb::ListSegmentsRequest { min_sequence, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .segments;
    let mut contacts = Vec::new();
    let mut token = String::new();
    loop {
        let page = q
            .list_members(pb::ListMembersRequest {
                segment: Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Name("everyone".into())) }),
                page_size: 1000,
                page_token: token,
                min_sequence,
                at: String::new(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        contacts.extend(page.contacts);
        if page.next_page_token.is_empty() {
            return (segments, contacts);
        }
        token = page.next_page_token;
    }
}

/// A write after a restart: its sequence is above everything already in the log.
async fn marker(channel: &Channel, name: &str) -> u64 {
    let mut c = CommandsClient::new(channel.clone());
    let reply = c
        .upsert_contacts(pb::UpsertContactsRequest {
            command_id: String::new(),
            contacts: vec![pb::ContactInput { email: format!("{name}@marker.example"), fields: Default::default() }],
        })
        .await
        .unwrap();
    reply.into_inner().sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_import_loses_no_acknowledged_contact() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), &[]).await;
    let mut commands = CommandsClient::new(server.channel.clone());
    commands
        .create_segment(pb::CreateSegmentRequest {
            command_id: String::new(),
            name: "everyone".into(),
            criteria: Some(pb::CriteriaInput {
                kind: Some(pb::criteria_input::Kind::Text("email is_not_empty".into())),
            }),
        })
        .await
        .unwrap();

    // Import in batches from a task; acknowledged batches are reported back.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let importer = tokio::spawn(async move {
        for batch in 0..1000usize {
            let contacts = (batch * 100..batch * 100 + 100).map(contact).collect();
            let request = pb::UpsertContactsRequest { command_id: format!("batch-{batch}"), contacts };
            match commands.upsert_contacts(request).await {
                Ok(_) => {
                    if acked_tx.send(batch).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    let mut acked = BTreeSet::new();
    while acked.len() < 25 {
        acked.insert(acked_rx.recv().await.expect("the import goes on until killed"));
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    importer.await.unwrap();
    while let Ok(batch) = acked_rx.try_recv() {
        acked.insert(batch);
    }

    let server = spawn(dir.path(), &[]).await;
    let seq = marker(&server.channel, "after-crash").await;
    let (segments, contacts) = snapshot(&server.channel, seq).await;
    let present: BTreeSet<String> = contacts.iter().map(|c| c.email.clone()).collect();
    for batch in &acked {
        for i in batch * 100..batch * 100 + 100 {
            assert!(present.contains(&format!("k{i}@example.com")), "acknowledged contact k{i} is missing");
        }
    }
    let mut server = server;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();

    std::fs::remove_dir_all(dir.path().join("readmodel")).unwrap();
    let rebuilt = spawn(dir.path(), &[]).await;
    let seq2 = marker(&rebuilt.channel, "after-rebuild").await;
    let (segments2, mut contacts2) = snapshot(&rebuilt.channel, seq2).await;
    contacts2.retain(|c| c.email != "after-rebuild@marker.example");
    assert_eq!(segments2, segments, "segments after a rebuild");
    assert_eq!(contacts2, contacts, "contacts after a rebuild");
}
