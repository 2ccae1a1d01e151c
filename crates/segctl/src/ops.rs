//! The marketer's segment operations: legacy imports, clones, topics,
//! static lists saved from segments, campaigns and bulk segments.
//!
//! Like the rest of segctl, **must not depend on** any server crate: wire
//! API only.

use crate::client::{Api, command_id, with_segment};
use crate::output::{ContactPages, cell, segment_json, segment_text};
use crate::{Output, criteria, emit, emit_json};
use clap::Subcommand;
use segmentd_proto::v1 as pb;
use serde_json::{Value, json};

/// Segment operations beyond create/update/delete (flattened into
/// `segctl segments`).
#[derive(Subcommand, Debug)]
pub(crate) enum SegmentOps {
    /// Import a list-level segment from before org-level segments: it is
    /// marked legacy, tied to LIST, and read-only (clone it to change it).
    ImportLegacy {
        name: String,
        #[arg(long)]
        criteria: String,
        /// The list it belonged to.
        #[arg(long = "list", value_name = "LIST")]
        list_name: String,
    },
    /// Make an editable org-level segment from any segment (legacy or not).
    Clone {
        #[arg(value_name = "SOURCE (NAME|ID)")]
        source: String,
        /// The new segment's name.
        name: String,
        /// New criteria [default: the source's].
        #[arg(long)]
        criteria: Option<String>,
    },
    /// Give a segment one or more topics (by name).
    AssignTopics {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        #[arg(required = true, value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Take topics (by name) off a segment.
    UnassignTopics {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        #[arg(required = true, value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Save a segment's members now as a static list that never changes.
    SaveAsList {
        #[arg(value_name = "NAME|ID")]
        segment: String,
        /// The list's name.
        list: String,
        /// Read the members once the server has applied this log sequence.
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
    /// The distinct values of a text field and how many contacts each
    /// `bulk-create` segment would hold.
    BulkPreview {
        /// A text field, e.g. country or custom.plan.
        field: String,
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
    /// One `FIELD = value` segment per distinct value, named "BASE - value".
    BulkCreate {
        base_name: String,
        #[arg(long)]
        field: String,
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TopicsCommand {
    /// Create a topic.
    Create { name: String },
    /// List the topics.
    List {
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ListsCommand {
    /// List the static lists.
    List {
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
    /// Show one static list.
    Get {
        name: String,
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
    /// A static list's members, in the order they were saved.
    Members {
        name: String,
        /// Members to print; 0 prints all of them.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Columns to print (comma-separated) [default: email,first_name,last_name,country].
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum CampaignsCommand {
    /// Create a campaign for a segment.
    Create {
        name: String,
        #[arg(long)]
        subject: String,
        /// The sender's email address.
        #[arg(long)]
        sender: String,
        #[arg(long, value_name = "NAME|ID")]
        segment: String,
    },
    /// List the campaigns.
    List {
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
    /// Show one campaign.
    Get {
        name: String,
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
    /// The campaign's recipients (its segment's members now), or their count.
    Recipients {
        name: String,
        /// Print only how many there are.
        #[arg(long)]
        count: bool,
        /// Recipients to print; 0 prints all of them.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Columns to print (comma-separated) [default: email,first_name,last_name,country].
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_sequence: u64,
    },
}

fn topic_ref(name: &str) -> pb::TopicRef {
    pb::TopicRef { by: Some(pb::topic_ref::By::Name(name.to_owned())) }
}

fn list_ref(name: &str) -> Option<pb::ListRef> {
    Some(pb::ListRef { by: Some(pb::list_ref::By::Name(name.to_owned())) })
}

fn campaign_ref(name: &str) -> Option<pb::CampaignRef> {
    Some(pb::CampaignRef { by: Some(pb::campaign_ref::By::Name(name.to_owned())) })
}

fn print_segment(out: Output, reply: &pb::SegmentReply) -> std::io::Result<()> {
    let segment = reply.segment.clone().unwrap_or_default();
    match out {
        Output::Text => emit(&segment_text(&segment, Some(reply.sequence))),
        Output::Json => emit_json(&json!({
            "segment": segment_json(&segment),
            "sequence": reply.sequence,
            "duplicate": reply.duplicate,
        })),
    }
}

pub(crate) async fn segment_op(api: &Api, out: Output, op: SegmentOps) -> anyhow::Result<()> {
    match op {
        SegmentOps::ImportLegacy { name, criteria: text, list_name } => {
            let reply = api
                .import_legacy_segment(pb::ImportLegacySegmentRequest {
                    command_id: command_id(),
                    name,
                    criteria: criteria(text),
                    list_name,
                })
                .await?;
            print_segment(out, &reply)?;
        }
        SegmentOps::Clone { source, name, criteria: text } => {
            let id = command_id();
            let (reply, _) = with_segment(&source, |r| {
                api.clone_segment(pb::CloneSegmentRequest {
                    command_id: id.clone(),
                    source: Some(r),
                    name: name.clone(),
                    criteria: text.clone().and_then(criteria),
                })
            })
            .await?;
            print_segment(out, &reply)?;
        }
        SegmentOps::AssignTopics { segment, topics } => {
            let id = command_id();
            let (reply, _) = with_segment(&segment, |r| {
                api.assign_topics(pb::AssignTopicsRequest {
                    command_id: id.clone(),
                    segment: Some(r),
                    topics: topics.iter().map(|t| topic_ref(t)).collect(),
                })
            })
            .await?;
            print_segment(out, &reply)?;
        }
        SegmentOps::UnassignTopics { segment, topics } => {
            let id = command_id();
            let (reply, _) = with_segment(&segment, |r| {
                api.unassign_topics(pb::UnassignTopicsRequest {
                    command_id: id.clone(),
                    segment: Some(r),
                    topics: topics.iter().map(|t| topic_ref(t)).collect(),
                })
            })
            .await?;
            print_segment(out, &reply)?;
        }
        SegmentOps::SaveAsList { segment, list, min_sequence } => {
            let id = command_id();
            let (reply, _) = with_segment(&segment, |r| {
                api.save_segment_as_list(pb::SaveSegmentAsListRequest {
                    command_id: id.clone(),
                    segment: Some(r),
                    list_name: list.clone(),
                    min_sequence,
                })
            })
            .await?;
            let l = reply.list.unwrap_or_default();
            match out {
                Output::Text => emit(&format!("{}sequence:  {}\n", list_text(&l), reply.sequence))?,
                Output::Json => emit_json(&json!({
                    "list": list_json(&l),
                    "sequence": reply.sequence,
                    "duplicate": reply.duplicate,
                }))?,
            }
        }
        SegmentOps::BulkPreview { field, min_sequence } => {
            let reply = api
                .preview_bulk_segments(pb::PreviewBulkSegmentsRequest { field: field.clone(), min_sequence })
                .await?;
            match out {
                Output::Text => {
                    let mut text = format!(
                        "{} value(s) of {field}; bulk-create makes at most {}\n",
                        reply.values.len(),
                        reply.limit
                    );
                    for v in &reply.values {
                        text.push_str(&format!("{}\t{}\n", v.count, cell(&v.value)));
                    }
                    emit(&text)?;
                }
                Output::Json => emit_json(&json!({
                    "field": field,
                    "limit": reply.limit,
                    "values": reply.values.iter().map(|v| json!({"value": v.value, "count": v.count})).collect::<Vec<_>>(),
                    "sequence": reply.sequence,
                }))?,
            }
        }
        SegmentOps::BulkCreate { base_name, field, min_sequence } => {
            let reply = api
                .create_bulk_segments(pb::CreateBulkSegmentsRequest {
                    command_id: command_id(),
                    base_name,
                    field,
                    min_sequence,
                })
                .await?;
            match out {
                Output::Text => {
                    let mut text = format!("bulk {}: {} segment(s)\n", reply.bulk_id, reply.segments.len());
                    for s in &reply.segments {
                        text.push_str(&format!("{}\t{}\t{}\n", s.id, cell(&s.name), cell(&s.criteria_text)));
                    }
                    text.push_str(&format!("sequence:  {}\n", reply.sequence));
                    emit(&text)?;
                }
                Output::Json => emit_json(&json!({
                    "bulk_id": reply.bulk_id,
                    "segments": reply.segments.iter().map(segment_json).collect::<Vec<_>>(),
                    "sequence": reply.sequence,
                    "duplicate": reply.duplicate,
                }))?,
            }
        }
    }
    Ok(())
}

pub(crate) async fn topics(api: &Api, out: Output, command: TopicsCommand) -> anyhow::Result<()> {
    match command {
        TopicsCommand::Create { name } => {
            let reply = api.create_topic(pb::CreateTopicRequest { command_id: command_id(), name }).await?;
            let t = reply.topic.unwrap_or_default();
            match out {
                Output::Text => emit(&format!("topic {}: {}\nsequence:  {}\n", t.id, cell(&t.name), reply.sequence))?,
                Output::Json => emit_json(&json!({
                    "topic": {"id": t.id, "name": t.name},
                    "sequence": reply.sequence,
                    "duplicate": reply.duplicate,
                }))?,
            }
        }
        TopicsCommand::List { min_sequence } => {
            let reply = api.list_topics(pb::ListTopicsRequest { min_sequence }).await?;
            match out {
                Output::Text => {
                    emit(&reply.topics.iter().map(|t| format!("{}\t{}\n", t.id, cell(&t.name))).collect::<String>())?
                }
                Output::Json => emit_json(&json!({
                    "topics": reply.topics.iter().map(|t| json!({"id": t.id, "name": t.name})).collect::<Vec<_>>(),
                    "sequence": reply.sequence,
                }))?,
            }
        }
    }
    Ok(())
}

fn list_text(l: &pb::StaticList) -> String {
    format!(
        "list:      {} {}\nsegment:   {}\ncriteria:  {}\nmembers:   {}\nat:        sequence {}\n",
        l.id,
        cell(&l.name),
        l.segment_id,
        cell(&l.criteria_text),
        l.member_count,
        l.at_sequence
    )
}

fn list_json(l: &pb::StaticList) -> Value {
    json!({
        "id": l.id,
        "name": l.name,
        "segment_id": l.segment_id,
        "criteria_text": l.criteria_text,
        "at_sequence": l.at_sequence,
        "member_count": l.member_count,
        "created_at": l.created_at,
    })
}

pub(crate) async fn lists(api: &Api, out: Output, command: ListsCommand) -> anyhow::Result<()> {
    match command {
        ListsCommand::List { min_sequence } => {
            let reply = api.list_lists(pb::ListListsRequest { min_sequence }).await?;
            match out {
                Output::Text => emit(
                    &reply
                        .lists
                        .iter()
                        .map(|l| format!("{}\t{}\t{} member(s)\n", l.id, cell(&l.name), l.member_count))
                        .collect::<String>(),
                )?,
                Output::Json => emit_json(&json!({
                    "lists": reply.lists.iter().map(list_json).collect::<Vec<_>>(),
                    "sequence": reply.sequence,
                }))?,
            }
        }
        ListsCommand::Get { name, min_sequence } => {
            let l = api.get_list(pb::GetListRequest { list: list_ref(&name), min_sequence }).await?;
            match out {
                Output::Text => emit(&list_text(&l))?,
                Output::Json => emit_json(&list_json(&l))?,
            }
        }
        ListsCommand::Members { name, limit, fields, min_sequence } => {
            let mut pages = ContactPages::new(out, &fields, limit);
            let mut token = String::new();
            loop {
                let reply = api
                    .list_list_members(pb::ListListMembersRequest {
                        list: list_ref(&name),
                        page_size: pages.page_size(1000),
                        page_token: token,
                        min_sequence,
                    })
                    .await?;
                // A member deleted since the list was saved keeps its email.
                let contacts = reply.members.iter().map(|m| {
                    m.contact.clone().unwrap_or_else(|| pb::Contact { email: m.email.clone(), ..Default::default() })
                });
                if !pages.print(contacts, &reply.next_page_token)? {
                    return Ok(());
                }
                token = reply.next_page_token;
            }
        }
    }
    Ok(())
}

fn campaign_json(c: &pb::Campaign) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "subject": c.subject,
        "sender": c.sender,
        "segment_id": c.segment_id,
        "created_at": c.created_at,
    })
}

fn campaign_text(c: &pb::Campaign) -> String {
    format!(
        "campaign:  {} {}\nsubject:   {}\nsender:    {}\nsegment:   {}\n",
        c.id,
        cell(&c.name),
        cell(&c.subject),
        cell(&c.sender),
        c.segment_id
    )
}

pub(crate) async fn campaigns(api: &Api, out: Output, command: CampaignsCommand) -> anyhow::Result<()> {
    match command {
        CampaignsCommand::Create { name, subject, sender, segment } => {
            let id = command_id();
            let (reply, _) = with_segment(&segment, |r| {
                api.create_campaign(pb::CreateCampaignRequest {
                    command_id: id.clone(),
                    name: name.clone(),
                    subject: subject.clone(),
                    sender: sender.clone(),
                    segment: Some(r),
                })
            })
            .await?;
            let c = reply.campaign.unwrap_or_default();
            match out {
                Output::Text => emit(&format!("{}sequence:  {}\n", campaign_text(&c), reply.sequence))?,
                Output::Json => emit_json(&json!({
                    "campaign": campaign_json(&c),
                    "sequence": reply.sequence,
                    "duplicate": reply.duplicate,
                }))?,
            }
        }
        CampaignsCommand::List { min_sequence } => {
            let reply = api.list_campaigns(pb::ListCampaignsRequest { min_sequence }).await?;
            match out {
                Output::Text => emit(
                    &reply
                        .campaigns
                        .iter()
                        .map(|c| format!("{}\t{}\tsegment {}\n", c.id, cell(&c.name), c.segment_id))
                        .collect::<String>(),
                )?,
                Output::Json => emit_json(&json!({
                    "campaigns": reply.campaigns.iter().map(campaign_json).collect::<Vec<_>>(),
                    "sequence": reply.sequence,
                }))?,
            }
        }
        CampaignsCommand::Get { name, min_sequence } => {
            let c = api.get_campaign(pb::GetCampaignRequest { campaign: campaign_ref(&name), min_sequence }).await?;
            match out {
                Output::Text => emit(&campaign_text(&c))?,
                Output::Json => emit_json(&campaign_json(&c))?,
            }
        }
        CampaignsCommand::Recipients { name, count: true, min_sequence, .. } => {
            let reply = api
                .count_campaign_recipients(pb::CountCampaignRecipientsRequest {
                    campaign: campaign_ref(&name),
                    min_sequence,
                    at: String::new(),
                })
                .await?;
            match out {
                Output::Text => emit(&format!("{}\n", reply.count))?,
                Output::Json => {
                    emit_json(&json!({"campaign": name, "count": reply.count, "sequence": reply.sequence}))?
                }
            }
        }
        CampaignsCommand::Recipients { name, count: false, limit, fields, min_sequence } => {
            let mut pages = ContactPages::new(out, &fields, limit);
            let mut token = String::new();
            let mut min_sequence = min_sequence;
            loop {
                let reply = api
                    .list_campaign_recipients(pb::ListCampaignRecipientsRequest {
                        campaign: campaign_ref(&name),
                        page_size: pages.page_size(1000),
                        page_token: token,
                        min_sequence,
                        ..Default::default()
                    })
                    .await?;
                // Later pages read at least where the first one did.
                min_sequence = min_sequence.max(reply.sequence);
                if !pages.print(&reply.contacts, &reply.next_page_token)? {
                    return Ok(());
                }
                token = reply.next_page_token;
            }
        }
    }
    Ok(())
}
