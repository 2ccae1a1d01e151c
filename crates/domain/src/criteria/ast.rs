//! The criteria tree and the rules a well-formed tree obeys: which operators
//! and which kinds of value each kind of field takes, and the limits that keep
//! every accepted tree printable as text that parses back to it.

use super::{MAX_CONDITIONS, MAX_DEPTH, MAX_LIST_VALUES, MAX_TEXT_LEN};
use crate::contact::{Field, FieldError, FieldKind, is_valid_custom_name};
use crate::decimal::Decimal;
use crate::time::Timestamp;

/// A segment's criteria: groups (and NOT) over conditions.
///
/// Trees from [`Criteria::parse`] are always well formed; trees built by hand
/// (from structured input) must pass [`Criteria::check_limits`] before they
/// are stored or evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Criteria {
    /// Matches when every child matches.
    All(Vec<Criteria>),
    /// Matches when at least one child matches.
    Any(Vec<Criteria>),
    /// Matches when the child does not.
    Not(Box<Criteria>),
    Condition(Condition),
    /// Matches the members of another saved segment: `in segment 12`.
    /// Stored trees name the segment by id (so a rename changes nothing);
    /// a name is what a user writes, resolved when the tree is saved or
    /// queried.
    InSegment(SegmentRef),
}

/// The segment an `in segment` condition refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentRef {
    Id(u64),
    Name(String),
}

/// `field operator value(s)`. Build it with [`Condition::new`], which checks
/// the operator and values against the field's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub field: Field,
    pub op: Operator,
}

/// A comparison and its operand(s). Values must be of the field's kind (see
/// [`Condition::new`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Contains(String),
    NotContains(String),
    StartsWith(String),
    EndsWith(String),
    IsEmpty,
    IsNotEmpty,
    Lt(Value),
    Le(Value),
    Gt(Value),
    Ge(Value),
    /// Inclusive at both ends.
    Between(Value, Value),
    /// Strictly earlier than the instant (date-time fields only).
    Before(Timestamp),
    /// Strictly later than the instant (date-time fields only).
    After(Timestamp),
    /// From `at` minus N days up to `at`, both included (date-time fields only).
    WithinLastDays(u32),
    /// Strictly earlier than `at` minus N days (date-time fields only).
    MoreThanDaysAgo(u32),
}

/// A literal operand, of the kind of the field it is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Integer(i64),
    Decimal(Decimal),
    Time(Timestamp),
}

/// Why a criteria tree or condition is refused. Messages name the field, the
/// operator and what was expected, so they can go back to the caller as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CriteriaError {
    /// A custom field built by hand with a name `Field::parse` would refuse.
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("operator {operator} cannot be used with {kind} field {field}; {kind} fields take {allowed}")]
    OperatorNotAllowed { field: String, operator: &'static str, kind: &'static str, allowed: String },
    #[error("field {field}, operator {operator}: expected {expected}, found {found}")]
    WrongValue { field: String, operator: &'static str, expected: String, found: String },
    #[error("field {field}, operator {operator}: the list of values is empty; give at least one value")]
    EmptyList { field: String, operator: &'static str },
    #[error("field {field}, operator {operator}: the list has {count} values; at most {max} are allowed", max = MAX_LIST_VALUES)]
    TooManyValues { field: String, operator: &'static str, count: usize },
    #[error("an {group} group has no members; give it at least one condition")]
    EmptyGroup { group: &'static str },
    #[error(
        "the criteria nest deeper than {max} levels (each not, and each group inside another group, is a level)",
        max = MAX_DEPTH
    )]
    TooDeep,
    #[error("the criteria have more than {max} conditions", max = MAX_CONDITIONS)]
    TooManyConditions,
    #[error("the criteria's text form would be longer than {max} bytes", max = MAX_TEXT_LEN)]
    TextTooLong,
    #[error("an in segment condition names no segment; give a segment name or id")]
    EmptySegmentName,
}

// Canonical operator spellings, which are also the names used in errors.
const TEXT_OPERATORS: &[&str] =
    &["=", "!=", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with", "is_empty", "is_not_empty"];
const NUMBER_OPERATORS: &[&str] =
    &["=", "!=", "in", "not_in", "<", "<=", ">", ">=", "between", "is_empty", "is_not_empty"];
const TIME_OPERATORS: &[&str] = &[
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "between",
    "before",
    "after",
    "within_last",
    "more_than",
    "is_empty",
    "is_not_empty",
];

/// The operators (canonical spellings) a kind of field takes.
pub(crate) fn operators_for(kind: FieldKind) -> &'static [&'static str] {
    match kind {
        FieldKind::Text => TEXT_OPERATORS,
        FieldKind::Integer | FieldKind::Decimal => NUMBER_OPERATORS,
        FieldKind::Time => TIME_OPERATORS,
    }
}

/// A kind of field as an adjective: "integer field age".
pub(crate) fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "text",
        FieldKind::Integer => "integer",
        FieldKind::Decimal => "decimal",
        FieldKind::Time => "date-time",
    }
}

impl Operator {
    /// The canonical spelling of the operator (`=`, `not_in`, `within_last`,
    /// `more_than`, …), as the printer writes it and errors name it.
    pub fn name(&self) -> &'static str {
        match self {
            Operator::Eq(_) => "=",
            Operator::Ne(_) => "!=",
            Operator::In(_) => "in",
            Operator::NotIn(_) => "not_in",
            Operator::Contains(_) => "contains",
            Operator::NotContains(_) => "not_contains",
            Operator::StartsWith(_) => "starts_with",
            Operator::EndsWith(_) => "ends_with",
            Operator::IsEmpty => "is_empty",
            Operator::IsNotEmpty => "is_not_empty",
            Operator::Lt(_) => "<",
            Operator::Le(_) => "<=",
            Operator::Gt(_) => ">",
            Operator::Ge(_) => ">=",
            Operator::Between(..) => "between",
            Operator::Before(_) => "before",
            Operator::After(_) => "after",
            Operator::WithinLastDays(_) => "within_last",
            Operator::MoreThanDaysAgo(_) => "more_than",
        }
    }

    fn try_map_values(
        self,
        mut f: impl FnMut(Value) -> Result<Value, CriteriaError>,
    ) -> Result<Operator, CriteriaError> {
        use Operator as O;
        let list = |vs: Vec<Value>, f: &mut dyn FnMut(Value) -> Result<Value, CriteriaError>| {
            vs.into_iter().map(f).collect::<Result<Vec<_>, _>>()
        };
        Ok(match self {
            O::Eq(v) => O::Eq(f(v)?),
            O::Ne(v) => O::Ne(f(v)?),
            O::Lt(v) => O::Lt(f(v)?),
            O::Le(v) => O::Le(f(v)?),
            O::Gt(v) => O::Gt(f(v)?),
            O::Ge(v) => O::Ge(f(v)?),
            O::Between(a, b) => O::Between(f(a)?, f(b)?),
            O::In(vs) => O::In(list(vs, &mut f)?),
            O::NotIn(vs) => O::NotIn(list(vs, &mut f)?),
            other => other,
        })
    }
}

impl Value {
    /// The kind of field this value can be compared with.
    pub fn kind(&self) -> FieldKind {
        match self {
            Value::Text(_) => FieldKind::Text,
            Value::Integer(_) => FieldKind::Integer,
            Value::Decimal(_) => FieldKind::Decimal,
            Value::Time(_) => FieldKind::Time,
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Text(_) => format!("the text {self}"),
            Value::Integer(_) => format!("the integer {self}"),
            Value::Decimal(_) => format!("the decimal {self}"),
            Value::Time(_) => format!("the date-time {self}"),
        }
    }
}

impl Condition {
    /// Checks `op` against the kind of `field`: the operator must be one that
    /// kind takes, its values of that kind, and its list (if any) of 1 to
    /// [`MAX_LIST_VALUES`] values. Integer values given for a decimal field
    /// become decimals, so the tree is the one its text form parses to.
    pub fn new(field: Field, op: Operator) -> Result<Condition, CriteriaError> {
        check_operator(&field, &op)?;
        let op = if field.kind() == FieldKind::Decimal {
            let operator = op.name();
            op.try_map_values(|v| widen_to_decimal(&field, operator, v))?
        } else {
            op
        };
        check_values(&field, &op)?;
        Ok(Condition { field, op })
    }

    /// Whether the condition is one [`Condition::new`] would have built.
    pub(crate) fn check(&self) -> Result<(), CriteriaError> {
        check_operator(&self.field, &self.op)?;
        check_values(&self.field, &self.op)
    }
}

fn widen_to_decimal(field: &Field, operator: &'static str, v: Value) -> Result<Value, CriteriaError> {
    match v {
        Value::Integer(n) => Decimal::from_int(n).map(Value::Decimal).ok_or_else(|| CriteriaError::WrongValue {
            field: field.to_string(),
            operator,
            expected: format!("a decimal number from {} to {}", Decimal(i64::MIN + 1), Decimal(i64::MAX)),
            found: format!("the integer {n}"),
        }),
        other => Ok(other),
    }
}

fn check_operator(field: &Field, op: &Operator) -> Result<(), CriteriaError> {
    // Its text form would not parse back otherwise.
    if matches!(field, Field::Custom(name) if !is_valid_custom_name(name)) {
        return Err(FieldError::BadCustomName(field.to_string()).into());
    }
    let kind = field.kind();
    let allowed = operators_for(kind);
    if allowed.contains(&op.name()) {
        Ok(())
    } else {
        Err(CriteriaError::OperatorNotAllowed {
            field: field.to_string(),
            operator: op.name(),
            kind: kind_name(kind),
            allowed: allowed.join(", "),
        })
    }
}

fn check_values(field: &Field, op: &Operator) -> Result<(), CriteriaError> {
    let kind = field.kind();
    let check = |v: &Value| {
        if v.kind() == kind {
            Ok(())
        } else {
            Err(CriteriaError::WrongValue {
                field: field.to_string(),
                operator: op.name(),
                expected: kind.to_string(),
                found: v.describe(),
            })
        }
    };
    match op {
        Operator::Eq(v) | Operator::Ne(v) | Operator::Lt(v) | Operator::Le(v) | Operator::Gt(v) | Operator::Ge(v) => {
            check(v)
        }
        Operator::Between(low, high) => check(low).and_then(|()| check(high)),
        Operator::In(vs) | Operator::NotIn(vs) => {
            if vs.is_empty() {
                return Err(CriteriaError::EmptyList { field: field.to_string(), operator: op.name() });
            }
            if vs.len() > MAX_LIST_VALUES {
                return Err(CriteriaError::TooManyValues {
                    field: field.to_string(),
                    operator: op.name(),
                    count: vs.len(),
                });
            }
            vs.iter().try_for_each(check)
        }
        // The remaining operators carry no `Value`, and check_operator has
        // already limited them to the kinds their operand types fit.
        _ => Ok(()),
    }
}

impl Criteria {
    /// Checks a tree built from structured input: no empty group, every
    /// condition as [`Condition::new`] requires, at most [`MAX_DEPTH`] levels
    /// and [`MAX_CONDITIONS`] conditions, and a text form of at most
    /// [`MAX_TEXT_LEN`] bytes (so the stored text parses back). Never
    /// recurses, so a hostile, very deep tree cannot overflow the stack here.
    pub fn check_limits(&self) -> Result<(), CriteriaError> {
        let mut conditions = 0usize;
        let mut stack: Vec<(&Criteria, usize)> = vec![(self, 0)];
        while let Some((node, level)) = stack.pop() {
            if level > MAX_DEPTH {
                return Err(CriteriaError::TooDeep);
            }
            match node {
                Criteria::All(children) | Criteria::Any(children) => {
                    if children.is_empty() {
                        return Err(CriteriaError::EmptyGroup { group: node.group_name() });
                    }
                    if children.len() > MAX_CONDITIONS {
                        return Err(CriteriaError::TooManyConditions);
                    }
                    // Reversed so that errors report the first offender in text order.
                    for child in children.iter().rev() {
                        stack.push((child, level + usize::from(child.is_group())));
                    }
                }
                Criteria::Not(child) => stack.push((child, level + 1)),
                Criteria::Condition(_) | Criteria::InSegment(_) => {
                    conditions += 1;
                    if conditions > MAX_CONDITIONS {
                        return Err(CriteriaError::TooManyConditions);
                    }
                    match node {
                        Criteria::Condition(c) => c.check()?,
                        Criteria::InSegment(SegmentRef::Name(name)) if name.is_empty() => {
                            return Err(CriteriaError::EmptySegmentName);
                        }
                        _ => {}
                    }
                }
            }
        }
        if super::print::text_len_at_most(self, MAX_TEXT_LEN) { Ok(()) } else { Err(CriteriaError::TextTooLong) }
    }

    /// The leaves (conditions and `in segment`), in text order.
    fn leaves(&self) -> impl Iterator<Item = &Criteria> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            while let Some(node) = stack.pop() {
                match node {
                    Criteria::All(children) | Criteria::Any(children) => stack.extend(children.iter().rev()),
                    Criteria::Not(child) => stack.push(child),
                    leaf => return Some(leaf),
                }
            }
            None
        })
    }

    /// The fields the conditions refer to, in text order, repeats included.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.leaves().filter_map(|leaf| match leaf {
            Criteria::Condition(c) => Some(&c.field),
            _ => None,
        })
    }

    /// The segments `in segment` conditions refer to, in text order.
    pub fn segment_refs(&self) -> impl Iterator<Item = &SegmentRef> {
        self.leaves().filter_map(|leaf| match leaf {
            Criteria::InSegment(r) => Some(r),
            _ => None,
        })
    }

    /// The ids of the segments the tree refers to (a stored tree refers by
    /// id only), each once, ascending.
    pub fn segment_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .segment_refs()
            .filter_map(|r| match r {
                SegmentRef::Id(id) => Some(*id),
                SegmentRef::Name(_) => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Replaces every segment name with the id `id_of` gives it; the first
    /// name it does not know is the error.
    pub fn resolve_segment_names(&mut self, id_of: &dyn Fn(&str) -> Option<u64>) -> Result<(), String> {
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            match node {
                Criteria::All(children) | Criteria::Any(children) => stack.extend(children.iter_mut().rev()),
                Criteria::Not(child) => stack.push(child),
                Criteria::Condition(_) => {}
                Criteria::InSegment(r) => {
                    if let SegmentRef::Name(name) = r {
                        let id = id_of(name).ok_or_else(|| name.clone())?;
                        *r = SegmentRef::Id(id);
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn is_group(&self) -> bool {
        matches!(self, Criteria::All(_) | Criteria::Any(_))
    }

    fn group_name(&self) -> &'static str {
        match self {
            Criteria::Any(_) => "any",
            _ => "all",
        }
    }
}

impl From<Condition> for Criteria {
    fn from(c: Condition) -> Self {
        Criteria::Condition(c)
    }
}
