//! proto ⇄ domain, once. Requests are parsed into domain types here (parse,
//! don't validate); every error names the request field that was wrong.

use segmentd_domain::catalog::{CampaignDef, ListDef, TopicDef, parse_name};
use segmentd_domain::contact::{CUSTOM_PREFIX, FieldValue, MAX_EMAIL_LEN};
use segmentd_domain::contact_decide::{ContactPatch, FieldInput};
use segmentd_domain::criteria::{Condition, Operator, SegmentRef, Value};
use segmentd_domain::event::{Activity, JobKind};
use segmentd_domain::explain::Explained;
use segmentd_domain::segment::{MAX_SEGMENT_NAME_LEN, SegmentCatalog, SegmentDef};
use segmentd_domain::versions::SegmentVersion;
use segmentd_domain::{Contact, Criteria, Decimal, Email, Field, Timestamp};
use segmentd_proto::v1 as pb;
use segmentd_readmodel::{
    AffectedContact, Cause, ChangeRecord, JobStatus, JobView, SegmentLookup, StoredContact, TimeWindow, Until,
    VersionMeta,
};
use std::sync::Arc;

/// A request field that could not be parsed; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn bad(msg: impl Into<String>) -> BadRequest {
    BadRequest(msg.into())
}

pub fn email(field: &str, raw: &str) -> Result<Email, BadRequest> {
    if raw.len() > MAX_EMAIL_LEN * 4 {
        return Err(bad(format!("{field}: the email is too long")));
    }
    Email::parse(raw).map_err(|e| bad(format!("{field}: {e}")))
}

pub fn contact_patch(index: usize, input: &pb::ContactInput) -> Result<ContactPatch, BadRequest> {
    let at = |what: &str| format!("contacts[{index}].{what}");
    let email = email(&at("email"), &input.email)?;
    let mut set = Vec::with_capacity(input.fields.len());
    for (name, raw) in &input.fields {
        let field = Field::parse(name).map_err(|e| bad(format!("{}: {e}", at("fields"))))?;
        if field == Field::Email {
            if Email::parse(raw).ok().as_ref() != Some(&email) {
                return Err(bad(format!("{}: fields.email differs from email", at("fields"))));
            }
            continue;
        }
        let value = FieldInput::parse(&field, raw).map_err(|e| bad(format!("{}: {e}", at("fields"))))?;
        set.push((field, value));
    }
    // The map's order is arbitrary; a fixed order keeps decisions reproducible.
    set.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ContactPatch { email, set })
}

pub fn contact(c: &Contact) -> pb::Contact {
    api_contact(&c.email, |f| c.value(f), c.custom.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// As [`contact`], reading the stored bytes in place: member pages hand
/// contacts out this way, without decoding each into a `Contact` first.
pub fn stored_contact(c: &StoredContact) -> pb::Contact {
    let fields = c.fields();
    let FieldValue::Text(email) = fields.value(&Field::Email) else { unreachable!("email is a text field") };
    api_contact(email, |f| fields.value(f), fields.customs().iter().copied())
}

/// Built-in fields without a value are left out; custom fields are all
/// there, as the contact holds them.
fn api_contact<'a>(
    email: &str,
    value: impl Fn(&Field) -> FieldValue<'a>,
    customs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> pb::Contact {
    // Sized once: a page builds a hundred of these maps.
    let mut fields = std::collections::HashMap::with_capacity(Field::BUILTIN.len() - 1 + customs.len());
    for f in Field::BUILTIN.iter().filter(|f| **f != Field::Email) {
        if let Some(v) = value(f).text() {
            fields.insert(f.name().to_owned(), v);
        }
    }
    for (k, v) in customs {
        fields.insert(format!("{CUSTOM_PREFIX}{k}"), v.to_owned());
    }
    pb::Contact { email: email.to_owned(), fields }
}

/// Membership changes as the wire carries them, at most `per_message` each.
pub fn membership_changes(records: &[Arc<ChangeRecord>], per_message: usize) -> Vec<pb::MembershipChanges> {
    let mut messages = Vec::new();
    let mut changes = Vec::new();
    for record in records {
        let at = record.at.to_string();
        for change in &record.changes {
            changes.push(pb::MembershipChange {
                segment_id: record.segment,
                email: change.contact.email().to_owned(),
                entered: change.entered,
                sequence: change.seq,
                cause: membership_cause(record.cause).into(),
                at: at.clone(),
            });
            if changes.len() == per_message {
                messages.push(pb::MembershipChanges { changes: std::mem::take(&mut changes) });
            }
        }
    }
    if !changes.is_empty() {
        messages.push(pb::MembershipChanges { changes });
    }
    messages
}

pub fn membership_cause(cause: Cause) -> pb::MembershipCause {
    match cause {
        Cause::ContactChanged => pb::MembershipCause::ContactChanged,
        Cause::SegmentDefined => pb::MembershipCause::SegmentDefined,
        Cause::SegmentDeleted => pb::MembershipCause::SegmentDeleted,
        Cause::TimePassed => pb::MembershipCause::TimePassed,
    }
}

/// A segment as the API shows it; `catalog` names its topics.
pub fn segment(def: &SegmentDef, catalog: &SegmentCatalog) -> pb::Segment {
    let parsed = Criteria::parse(&def.criteria).ok();
    let tree = parsed.as_ref().map(criteria_to_proto);
    let uses = parsed.map(|c| c.segment_ids()).unwrap_or_default();
    pb::Segment {
        id: def.id,
        name: def.name.clone(),
        criteria_text: def.criteria.clone(),
        criteria: tree,
        version: def.version,
        created_at: def.created_at.to_string(),
        updated_at: def.updated_at.to_string(),
        legacy: def.is_legacy(),
        legacy_list: def.legacy_list.clone().unwrap_or_default(),
        topics: def.topics.iter().filter_map(|id| catalog.extras.topics.get(id)).map(topic).collect(),
        bulk_parent_id: def.bulk_parent.unwrap_or_default(),
        cloned_from_id: def.cloned_from.unwrap_or_default(),
        uses: uses.into_iter().map(|id| segment_name(id, catalog)).collect(),
        used_by: Vec::new(),
    }
}

/// Segment `id` by id and name (no name for one the catalogue lacks).
pub fn segment_name(id: u64, catalog: &SegmentCatalog) -> pb::SegmentName {
    pb::SegmentName { id, name: catalog.segments.get(&id).map(|s| s.name.clone()).unwrap_or_default() }
}

pub fn topic(t: &TopicDef) -> pb::Topic {
    pb::Topic { id: t.id, name: t.name.clone(), created_at: t.created_at.to_string() }
}

pub fn static_list(l: &ListDef) -> pb::StaticList {
    pb::StaticList {
        id: l.id,
        name: l.name.clone(),
        segment_id: l.segment_id,
        criteria_text: l.criteria.clone(),
        at_sequence: l.at_sequence,
        member_count: l.member_count,
        created_at: l.created_at.to_string(),
    }
}

pub fn campaign(c: &CampaignDef) -> pb::Campaign {
    pb::Campaign {
        id: c.id,
        name: c.name.clone(),
        subject: c.subject.clone(),
        sender: c.sender.clone(),
        segment_id: c.segment_id,
        created_at: c.created_at.to_string(),
    }
}

/// A name given to a new topic, list or campaign (`field` names it in errors).
pub fn name(field: &str, raw: &str) -> Result<String, BadRequest> {
    parse_name(field, raw).map_err(|e| bad(e.to_string()))
}

/// How a request names a topic, list or campaign.
#[derive(Clone, Debug)]
pub enum Lookup<'a> {
    Id(u64),
    Name(&'a str),
}

impl Lookup<'_> {
    /// The NOT_FOUND message for a `what` ("topic", "list", "campaign").
    pub fn missing(&self, what: &str) -> String {
        match self {
            Lookup::Id(id) => format!("{what} {id} does not exist"),
            Lookup::Name(name) => format!("no {what} is named {name:?}"),
        }
    }
}

fn lookup<'a>(field: &str, id: Option<u64>, name: Option<&'a str>) -> Result<Lookup<'a>, BadRequest> {
    match (id, name) {
        (Some(0), _) | (None, None) => Err(bad(format!("{field}: give an id or a name"))),
        (Some(id), _) => Ok(Lookup::Id(id)),
        (None, Some(n)) if n.trim().is_empty() => Err(bad(format!("{field}: the name is empty"))),
        (None, Some(n)) => Ok(Lookup::Name(n.trim())),
    }
}

pub fn topic_ref<'a>(field: &str, r: Option<&'a pb::TopicRef>) -> Result<Lookup<'a>, BadRequest> {
    use pb::topic_ref::By;
    let by = r.and_then(|r| r.by.as_ref());
    lookup(
        field,
        by.and_then(|b| if let By::Id(id) = b { Some(*id) } else { None }),
        by.and_then(|b| if let By::Name(n) = b { Some(n.as_str()) } else { None }),
    )
}

pub fn list_ref<'a>(field: &str, r: Option<&'a pb::ListRef>) -> Result<Lookup<'a>, BadRequest> {
    use pb::list_ref::By;
    let by = r.and_then(|r| r.by.as_ref());
    lookup(
        field,
        by.and_then(|b| if let By::Id(id) = b { Some(*id) } else { None }),
        by.and_then(|b| if let By::Name(n) = b { Some(n.as_str()) } else { None }),
    )
}

pub fn campaign_ref<'a>(field: &str, r: Option<&'a pb::CampaignRef>) -> Result<Lookup<'a>, BadRequest> {
    use pb::campaign_ref::By;
    let by = r.and_then(|r| r.by.as_ref());
    lookup(
        field,
        by.and_then(|b| if let By::Id(id) = b { Some(*id) } else { None }),
        by.and_then(|b| if let By::Name(n) = b { Some(n.as_str()) } else { None }),
    )
}

/// The topic `lookup` names in `catalog`.
pub fn find_topic<'c>(catalog: &'c SegmentCatalog, l: &Lookup<'_>) -> Option<&'c TopicDef> {
    match l {
        Lookup::Id(id) => catalog.extras.topics.get(id),
        Lookup::Name(n) => catalog.extras.topic_by_name(n),
    }
}

pub fn find_list<'c>(catalog: &'c SegmentCatalog, l: &Lookup<'_>) -> Option<&'c ListDef> {
    match l {
        Lookup::Id(id) => catalog.extras.lists.get(id),
        Lookup::Name(n) => catalog.extras.list_by_name(n),
    }
}

pub fn find_campaign<'c>(catalog: &'c SegmentCatalog, l: &Lookup<'_>) -> Option<&'c CampaignDef> {
    match l {
        Lookup::Id(id) => catalog.extras.campaigns.get(id),
        Lookup::Name(n) => catalog.extras.campaign_by_name(n),
    }
}

/// A contact field named in a request (e.g. "country", "custom.plan").
pub fn field(name: &str, raw: &str) -> Result<Field, BadRequest> {
    Field::parse(raw.trim()).map_err(|e| bad(format!("{name}: {e}")))
}

/// The most columns an export may name.
pub const MAX_EXPORT_FIELDS: usize = 100;

/// The columns of an export: contact fields, each once; none named means
/// every built-in field, in the column order of an import file.
pub fn export_fields(raw: &[String]) -> Result<Vec<Field>, BadRequest> {
    if raw.is_empty() {
        return Ok(Field::BUILTIN.to_vec());
    }
    if raw.len() > MAX_EXPORT_FIELDS {
        return Err(bad(format!("fields: at most {MAX_EXPORT_FIELDS} columns, not {}", raw.len())));
    }
    let mut fields: Vec<Field> = Vec::with_capacity(raw.len());
    for (i, name) in raw.iter().enumerate() {
        let f = field(&format!("fields[{i}]"), name)?;
        if fields.contains(&f) {
            return Err(bad(format!("fields[{i}]: {f} is named twice")));
        }
        fields.push(f);
    }
    Ok(fields)
}

/// How a page of members goes on the wire (`ListMembersRequest.layout`).
pub enum PageForm {
    Contacts,
    /// One row of these columns per member.
    Rows(Vec<Field>),
}

pub fn page_form(layout: i32, fields: &[String]) -> Result<PageForm, BadRequest> {
    match pb::PageLayout::try_from(layout) {
        Ok(pb::PageLayout::Contacts) if fields.is_empty() => Ok(PageForm::Contacts),
        Ok(pb::PageLayout::Contacts) => {
            Err(bad("fields: columns are for layout PAGE_LAYOUT_ROWS; contacts carry every field"))
        }
        Ok(pb::PageLayout::Rows) => Ok(PageForm::Rows(export_fields(fields)?)),
        Err(_) => Err(bad(format!("layout: unknown layout {layout}"))),
    }
}

/// One row of `fields`, read from the stored bytes in place (no contact is
/// decoded for it).
pub fn export_row(contact: &StoredContact, fields: &[Field]) -> pb::ExportRow {
    let stored = contact.fields();
    pb::ExportRow { values: fields.iter().map(|f| stored.value(f).text().unwrap_or_default()).collect() }
}

/// An export's date filter: which members by when they were added or last
/// updated; `None` for all of them.
pub fn export_window(
    filter: Option<&pb::export_contacts_request::DateFilter>,
) -> Result<Option<TimeWindow>, BadRequest> {
    use pb::export_contacts_request::DateFilter;
    let (name, field, range) = match filter {
        None => return Ok(None),
        Some(DateFilter::AddedBetween(r)) => ("added_between", Field::AddedAt, r),
        Some(DateFilter::UpdatedBetween(r)) => ("updated_between", Field::UpdatedAt, r),
    };
    let from = instant(&format!("{name}.from"), &range.from)?;
    let to = instant(&format!("{name}.to"), &range.to)?;
    match (from, to) {
        (None, None) => Err(bad(format!("{name}: give from, to or both (RFC 3339)"))),
        (Some(f), Some(t)) if f > t => Err(bad(format!("{name}: from ({f}) is after to ({t})"))),
        _ => Ok(Some(TimeWindow { field, from, to })),
    }
}

pub fn segment_ref<'a>(field: &str, r: Option<&'a pb::SegmentRef>) -> Result<SegmentLookup<'a>, BadRequest> {
    match r.and_then(|r| r.by.as_ref()) {
        Some(pb::segment_ref::By::Id(0)) | None => Err(bad(format!("{field}: give a segment id or name"))),
        Some(pb::segment_ref::By::Id(id)) => Ok(SegmentLookup::Id(*id)),
        Some(pb::segment_ref::By::Name(n)) if n.trim().is_empty() => Err(bad(format!("{field}: the name is empty"))),
        // Longer than any segment name can be: a mistake, not a name that
        // might exist (and a filter by it must not quietly match nothing).
        Some(pb::segment_ref::By::Name(n)) if n.trim().chars().count() > MAX_SEGMENT_NAME_LEN => {
            Err(bad(format!("{field}: a segment name has at most {MAX_SEGMENT_NAME_LEN} characters")))
        }
        Some(pb::segment_ref::By::Name(n)) => Ok(SegmentLookup::Name(n.trim())),
    }
}

/// Most references (topics, segments, event types) one request may list.
pub const MAX_REFS: usize = 1000;

/// Refuses a list of references longer than [`MAX_REFS`].
pub fn at_most_refs<T>(field: &str, items: &[T]) -> Result<(), BadRequest> {
    if items.len() > MAX_REFS {
        return Err(bad(format!("{field}: at most {MAX_REFS} per request, not {}", items.len())));
    }
    Ok(())
}

/// Longest actor name a filter may give; key names are shorter.
pub const MAX_ACTOR_LEN: usize = 256;

/// The clock relative conditions use: `at` when given, else now.
pub fn clock(raw: &str) -> Result<Timestamp, BadRequest> {
    Ok(pinned_clock(raw)?.unwrap_or_else(crate::write::now))
}

/// `at` when given; `None` leaves the choice of clock to the query.
pub fn pinned_clock(raw: &str) -> Result<Option<Timestamp>, BadRequest> {
    if raw.is_empty() {
        return Ok(None);
    }
    Timestamp::parse_rfc3339(raw).map(Some).map_err(|e| bad(format!("at: {e}")))
}

/// The point a time-travel query asks for; `None` for the current state.
pub fn as_of(field: &str, input: Option<&pb::AsOf>) -> Result<Option<Until>, BadRequest> {
    let Some(input) = input else { return Ok(None) };
    match &input.point {
        None => Err(bad(format!("{field}: give a sequence or a time"))),
        Some(pb::as_of::Point::Sequence(0)) => Err(bad(format!("{field}.sequence: sequences start at 1"))),
        Some(pb::as_of::Point::Sequence(seq)) => Ok(Some(Until::Sequence(*seq))),
        Some(pb::as_of::Point::Time(raw)) if raw.is_empty() => {
            Err(bad(format!("{field}.time: give an RFC 3339 instant")))
        }
        Some(pb::as_of::Point::Time(raw)) => {
            Timestamp::parse_rfc3339(raw).map(|t| Some(Until::Time(t))).map_err(|e| bad(format!("{field}.time: {e}")))
        }
    }
}

pub fn criteria(field: &str, input: Option<&pb::CriteriaInput>) -> Result<Criteria, BadRequest> {
    match input.and_then(|c| c.kind.as_ref()) {
        None => Err(bad(format!("{field}: criteria are required (as text or as a tree)"))),
        Some(pb::criteria_input::Kind::Text(text)) => {
            Criteria::parse(text).map_err(|e| bad(format!("{field}.text: {e}")))
        }
        Some(pb::criteria_input::Kind::Tree(tree)) => {
            let c = criteria_from_proto(tree, &format!("{field}.tree"), 0)?;
            c.check_limits().map_err(|e| bad(format!("{field}.tree: {e}")))?;
            Ok(c)
        }
    }
}

fn criteria_from_proto(node: &pb::Criteria, path: &str, depth: usize) -> Result<Criteria, BadRequest> {
    use pb::criteria::Node;
    if depth > segmentd_domain::criteria::MAX_DEPTH {
        return Err(bad(format!("{path}: nested deeper than {}", segmentd_domain::criteria::MAX_DEPTH)));
    }
    let group = |g: &pb::Group, kind: &str| -> Result<Vec<Criteria>, BadRequest> {
        if g.children.is_empty() {
            return Err(bad(format!("{path}.{kind}: a group needs at least one child")));
        }
        g.children
            .iter()
            .enumerate()
            .map(|(i, c)| criteria_from_proto(c, &format!("{path}.{kind}.children[{i}]"), depth + 1))
            .collect()
    };
    match node.node.as_ref() {
        None => Err(bad(format!("{path}: empty node; set all, any, not or condition"))),
        Some(Node::All(g)) => Ok(single_or(group(g, "all")?, Criteria::All)),
        Some(Node::Any(g)) => Ok(single_or(group(g, "any")?, Criteria::Any)),
        Some(Node::Not(inner)) => {
            Ok(Criteria::Not(Box::new(criteria_from_proto(inner, &format!("{path}.not"), depth + 1)?)))
        }
        Some(Node::Condition(c)) => condition_from_proto(c, &format!("{path}.condition")).map(Criteria::Condition),
        Some(Node::InSegment(r)) => {
            Ok(Criteria::InSegment(match segment_ref(&format!("{path}.in_segment"), Some(r))? {
                SegmentLookup::Id(id) => SegmentRef::Id(id),
                SegmentLookup::Name(name) => SegmentRef::Name(name.to_owned()),
            }))
        }
    }
}

/// A one-child group means its child; keeping it would not survive the text form.
fn single_or(mut children: Vec<Criteria>, group: fn(Vec<Criteria>) -> Criteria) -> Criteria {
    if children.len() == 1 { children.remove(0) } else { group(children) }
}

fn condition_from_proto(c: &pb::Condition, path: &str) -> Result<Condition, BadRequest> {
    use pb::Operator as P;
    let field = Field::parse(&c.field).map_err(|e| bad(format!("{path}.field: {e}")))?;
    let op = P::try_from(c.operator).map_err(|_| bad(format!("{path}.operator: unknown value {}", c.operator)))?;
    let values: Vec<Value> = c
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| value_from_proto(v, &format!("{path}.values[{i}]")))
        .collect::<Result<_, _>>()?;
    let count = |n: usize| -> Result<(), BadRequest> {
        if values.len() == n {
            Ok(())
        } else {
            Err(bad(format!("{path}.values: {op:?} takes {n} value(s), got {}", values.len())))
        }
    };
    let one = |values: &[Value]| -> Result<Value, BadRequest> {
        count(1)?;
        Ok(values[0].clone())
    };
    let text = |values: &[Value]| -> Result<String, BadRequest> {
        match one(values)? {
            Value::Text(s) => Ok(s),
            _ => Err(bad(format!("{path}.values[0]: {op:?} compares text; give a text value"))),
        }
    };
    let time = |values: &[Value]| -> Result<Timestamp, BadRequest> {
        match one(values)? {
            Value::Time(t) => Ok(t),
            _ => Err(bad(format!("{path}.values[0]: {op:?} needs a time value"))),
        }
    };
    let op = match op {
        P::Unspecified => return Err(bad(format!("{path}.operator: required"))),
        P::Equals => Operator::Eq(one(&values)?),
        P::NotEquals => Operator::Ne(one(&values)?),
        P::In | P::NotIn if values.is_empty() => {
            return Err(bad(format!("{path}.values: {op:?} needs at least one value")));
        }
        P::In => Operator::In(values),
        P::NotIn => Operator::NotIn(values),
        P::Contains => Operator::Contains(text(&values)?),
        P::NotContains => Operator::NotContains(text(&values)?),
        P::StartsWith => Operator::StartsWith(text(&values)?),
        P::EndsWith => Operator::EndsWith(text(&values)?),
        P::IsEmpty => {
            count(0)?;
            Operator::IsEmpty
        }
        P::IsNotEmpty => {
            count(0)?;
            Operator::IsNotEmpty
        }
        P::LessThan => Operator::Lt(one(&values)?),
        P::LessOrEqual => Operator::Le(one(&values)?),
        P::GreaterThan => Operator::Gt(one(&values)?),
        P::GreaterOrEqual => Operator::Ge(one(&values)?),
        P::Between => {
            count(2)?;
            Operator::Between(values[0].clone(), values[1].clone())
        }
        P::Before => Operator::Before(time(&values)?),
        P::After => Operator::After(time(&values)?),
        P::WithinLastDays => {
            count(0)?;
            Operator::WithinLastDays(c.days)
        }
        P::MoreThanDaysAgo => {
            count(0)?;
            Operator::MoreThanDaysAgo(c.days)
        }
    };
    Condition::new(field, op).map_err(|e| bad(format!("{path}: {e}")))
}

fn value_from_proto(v: &pb::Value, path: &str) -> Result<Value, BadRequest> {
    use pb::value::Kind;
    match v.kind.as_ref() {
        None => Err(bad(format!("{path}: empty value; set text, integer, decimal or time"))),
        Some(Kind::Text(s)) => Ok(Value::Text(s.clone())),
        Some(Kind::Integer(i)) => Ok(Value::Integer(*i)),
        Some(Kind::Decimal(d)) => Decimal::parse(d).map(Value::Decimal).map_err(|e| bad(format!("{path}: {e}"))),
        Some(Kind::Time(t)) => Timestamp::parse_rfc3339(t).map(Value::Time).map_err(|e| bad(format!("{path}: {e}"))),
    }
}

pub fn criteria_to_proto(c: &Criteria) -> pb::Criteria {
    use pb::criteria::Node;
    let group = |children: &[Criteria]| pb::Group { children: children.iter().map(criteria_to_proto).collect() };
    let node = match c {
        Criteria::All(children) => Node::All(group(children)),
        Criteria::Any(children) => Node::Any(group(children)),
        Criteria::Not(inner) => Node::Not(Box::new(criteria_to_proto(inner))),
        Criteria::Condition(cond) => Node::Condition(condition_to_proto(cond)),
        Criteria::InSegment(r) => Node::InSegment(pb::SegmentRef {
            by: Some(match r {
                SegmentRef::Id(id) => pb::segment_ref::By::Id(*id),
                SegmentRef::Name(name) => pb::segment_ref::By::Name(name.clone()),
            }),
        }),
    };
    pb::Criteria { node: Some(node) }
}

fn condition_to_proto(c: &Condition) -> pb::Condition {
    use pb::Operator as P;
    let text = |s: &String| vec![Value::Text(s.clone())];
    let (op, values, days) = match &c.op {
        Operator::Eq(v) => (P::Equals, vec![v.clone()], 0),
        Operator::Ne(v) => (P::NotEquals, vec![v.clone()], 0),
        Operator::In(vs) => (P::In, vs.clone(), 0),
        Operator::NotIn(vs) => (P::NotIn, vs.clone(), 0),
        Operator::Contains(s) => (P::Contains, text(s), 0),
        Operator::NotContains(s) => (P::NotContains, text(s), 0),
        Operator::StartsWith(s) => (P::StartsWith, text(s), 0),
        Operator::EndsWith(s) => (P::EndsWith, text(s), 0),
        Operator::IsEmpty => (P::IsEmpty, vec![], 0),
        Operator::IsNotEmpty => (P::IsNotEmpty, vec![], 0),
        Operator::Lt(v) => (P::LessThan, vec![v.clone()], 0),
        Operator::Le(v) => (P::LessOrEqual, vec![v.clone()], 0),
        Operator::Gt(v) => (P::GreaterThan, vec![v.clone()], 0),
        Operator::Ge(v) => (P::GreaterOrEqual, vec![v.clone()], 0),
        Operator::Between(a, b) => (P::Between, vec![a.clone(), b.clone()], 0),
        Operator::Before(t) => (P::Before, vec![Value::Time(*t)], 0),
        Operator::After(t) => (P::After, vec![Value::Time(*t)], 0),
        Operator::WithinLastDays(d) => (P::WithinLastDays, vec![], *d),
        Operator::MoreThanDaysAgo(d) => (P::MoreThanDaysAgo, vec![], *d),
    };
    pb::Condition {
        field: c.field.to_string(),
        operator: op as i32,
        values: values.iter().map(value_to_proto).collect(),
        days,
    }
}

fn value_to_proto(v: &Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Value::Text(s) => Kind::Text(s.clone()),
        Value::Integer(i) => Kind::Integer(*i),
        Value::Decimal(d) => Kind::Decimal(d.to_string()),
        Value::Time(t) => Kind::Time(t.to_string()),
    };
    pb::Value { kind: Some(kind) }
}

/// An optional RFC 3339 instant in request field `field`.
pub fn instant(field: &str, raw: &str) -> Result<Option<Timestamp>, BadRequest> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    Timestamp::parse_rfc3339(raw).map(Some).map_err(|e| bad(format!("{field}: {e}")))
}

/// A job id as requests name it (the command id that started the job).
pub fn job_id(field: &str, raw: &str) -> Result<String, BadRequest> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad(format!("{field}: give the job id (the command id that started it)")));
    }
    crate::write::command_id(raw).map_err(|_| bad(format!("{field}: {raw:?} is not a job id")))
}

/// What a contact did, from `RecordActivity`'s fields.
pub fn activity(req: &pb::RecordActivityRequest) -> Result<Activity, BadRequest> {
    let no = |what: &str, kind: &str| Err(bad(format!("{what}: only a {kind} carries it")));
    match pb::ActivityKind::try_from(req.kind) {
        Ok(pb::ActivityKind::EmailOpened) => {
            if !req.amount.is_empty() {
                return no("amount", "PURCHASE");
            }
            if !req.url.is_empty() {
                return no("url", "LINK_CLICKED");
            }
            Ok(Activity::EmailOpened)
        }
        Ok(pb::ActivityKind::LinkClicked) => {
            if !req.amount.is_empty() {
                return no("amount", "PURCHASE");
            }
            Ok(Activity::LinkClicked { url: req.url.clone() })
        }
        Ok(pb::ActivityKind::Purchase) => {
            if !req.url.is_empty() {
                return no("url", "LINK_CLICKED");
            }
            if req.amount.trim().is_empty() {
                return Err(bad("amount: a PURCHASE needs an amount, e.g. \"49.90\""));
            }
            let amount = Decimal::parse(req.amount.trim()).map_err(|e| bad(format!("amount: {e}")))?;
            Ok(Activity::Purchase { amount })
        }
        Ok(pb::ActivityKind::Unspecified) | Err(_) => Err(bad("kind: give EMAIL_OPENED, LINK_CLICKED or PURCHASE")),
    }
}

fn job_state(status: JobStatus) -> pb::JobState {
    match status {
        JobStatus::Running => pb::JobState::Running,
        JobStatus::Completed => pb::JobState::Completed,
        JobStatus::Abandoned => pb::JobState::Abandoned,
        JobStatus::Cancelled => pb::JobState::Cancelled,
    }
}

pub fn job(j: &JobView) -> pb::Job {
    let (kind, field, value, reason) = match &j.kind {
        JobKind::MassUpdate { field, value } => (pb::JobKind::MassUpdate, field.clone(), value.clone(), String::new()),
        JobKind::DeleteContacts => (pb::JobKind::DeleteContacts, String::new(), String::new(), String::new()),
        JobKind::ResetScores { reason } => (pb::JobKind::ResetScores, String::new(), String::new(), reason.clone()),
    };
    pb::Job {
        id: j.id.clone(),
        kind: kind.into(),
        state: job_state(j.status).into(),
        segment_id: j.segment_id,
        segment_name: j.segment_name.clone(),
        criteria_text: j.criteria.clone(),
        position: j.position,
        total: j.total,
        processed: j.processed,
        changed: j.changed,
        skipped: j.skipped,
        actor: j.actor.clone(),
        started_at: j.started_at.to_string(),
        finished_at: j.finished_at.map(|t| t.to_string()).unwrap_or_default(),
        field,
        value,
        reason,
        abandon_reason: j.abandon_reason.clone(),
        sequence: j.last_seq,
        cancel_requested: j.cancel.is_some(),
        cancelled_by: j.cancel.as_ref().map(|c| c.actor.clone()).unwrap_or_default(),
        cancel_requested_at: j.cancel.as_ref().map(|c| c.at.to_string()).unwrap_or_default(),
        cancel_reason: j.cancel.as_ref().map(|c| c.reason.clone()).unwrap_or_default(),
    }
}

pub fn explanation(e: &crate::explain::Explanation) -> pb::MembershipExplanation {
    use crate::explain::Cause;
    let since = e.since.as_ref().map(|cause| {
        let (kind, rec) = match cause {
            Cause::ContactChanged(rec) => (pb::MembershipCause::ContactChanged, Some(rec)),
            Cause::SegmentDefined(rec) => (pb::MembershipCause::SegmentDefined, Some(rec)),
            Cause::TimePassed(rec) => (pb::MembershipCause::TimePassed, rec.as_ref()),
        };
        pb::ExplainedSince {
            cause: kind.into(),
            sequence: rec.map_or(0, |r| r.seq),
            event_type: rec.map(|r| r.envelope.event.type_name().to_owned()).unwrap_or_default(),
            actor: rec.map(|r| r.envelope.actor.clone()).unwrap_or_default(),
            time: rec.map(|r| r.envelope.time.to_string()).unwrap_or_default(),
        }
    });
    pb::MembershipExplanation {
        segment_id: e.segment.id,
        segment_name: e.segment.name.clone(),
        criteria_text: e.segment.criteria.clone(),
        email: e.contact.email.clone(),
        member: e.tree.result(),
        tree: Some(explained(&e.tree)),
        since,
        history_note: e.history_note.clone(),
        at: e.at.to_string(),
        sequence: e.seq,
    }
}

fn explained(node: &Explained) -> pb::ExplainedNode {
    match node {
        Explained::Group { kind, result, children } => pb::ExplainedNode {
            kind: kind.as_str().to_owned(),
            result: *result,
            children: children.iter().map(explained).collect(),
            ..Default::default()
        },
        Explained::Condition { condition, field, value, result } => pb::ExplainedNode {
            kind: "condition".to_owned(),
            result: *result,
            condition: condition.clone(),
            field: field.clone(),
            value: value.clone().unwrap_or_default(),
            has_value: value.is_some(),
            ..Default::default()
        },
        Explained::InSegment { condition, segment, result, tree } => pb::ExplainedNode {
            kind: "segment".to_owned(),
            result: *result,
            condition: condition.clone(),
            children: tree.iter().map(|t| explained(t)).collect(),
            segment_id: segment.as_ref().map_or(0, |(id, _)| *id),
            segment_name: segment.as_ref().map(|(_, name)| name.clone()).unwrap_or_default(),
            ..Default::default()
        },
    }
}

pub fn segment_version(v: &SegmentVersion, meta: Option<&VersionMeta>) -> pb::SegmentVersion {
    pb::SegmentVersion {
        version: v.version,
        name: v.name.clone(),
        criteria_text: v.criteria.clone(),
        actor: meta.map(|m| m.actor.clone()).unwrap_or_default(),
        time: v.time.to_string(),
        event_type: meta.map(|m| m.event_type.to_owned()).unwrap_or_default(),
        sequence: meta.map_or(0, |m| m.seq),
        rolled_back_to: v.rolled_back_to.unwrap_or_default(),
    }
}

pub fn dry_run(report: &crate::jobs::DryRunReport) -> pb::DryRun {
    pb::DryRun {
        position: report.position,
        members: report.preview.members,
        affected: report.preview.affected,
        sample: report.sample.iter().map(|c| contact(c)).collect(),
        segment_id: report.segment.id,
        segment_name: report.segment.name.clone(),
        criteria_text: report.segment.criteria.clone(),
    }
}

pub fn score_reset(j: &JobView, affected: usize) -> pb::ScoreResetSummary {
    pb::ScoreResetSummary {
        job_id: j.id.clone(),
        actor: j.actor.clone(),
        time: j.started_at.to_string(),
        reason: j.reset_reason().unwrap_or_default().to_owned(),
        segment_id: j.segment_id,
        segment_name: j.segment_name.clone(),
        affected: affected as u64,
        state: job_state(j.status).into(),
        position: j.position,
    }
}

pub fn affected_contact(a: &AffectedContact) -> pb::AffectedContact {
    pb::AffectedContact { email: a.email.clone(), previous_score: a.previous_score }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_contact_converts_as_the_decoded_one() {
        let bare = Contact::new(Email::parse("a@x.com").unwrap(), Timestamp(1_750_000_000_000));
        let mut full = bare.clone();
        full.contact_id = Some(7);
        full.first_name = "Ünal".into();
        full.age = Some(41);
        full.total_spent = Some(Decimal(12_345_000));
        full.last_opened_at = Some(Timestamp(1_760_000_000_123));
        full.custom.insert("plan".into(), "pro".into());
        full.custom.insert("note".into(), String::new());
        for c in [bare, full] {
            let stored = StoredContact::encode(&c);
            assert_eq!(stored_contact(&stored), contact(&c));
        }
        let stored = stored_contact(&StoredContact::encode(&Contact {
            custom: [("plan".to_owned(), "pro".to_owned())].into(),
            ..Contact::new(Email::parse("b@x.com").unwrap(), Timestamp(0))
        }));
        assert_eq!(stored.fields.get("custom.plan").map(String::as_str), Some("pro"));
        assert!(!stored.fields.contains_key("first_name"), "empty built-in fields are left out");
    }
}
