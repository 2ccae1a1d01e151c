//! proptest strategies for criteria trees, shared by the unit tests and the
//! fuzz target (`tests/fuzz_criteria.rs`), which differ only in the fields
//! and values they draw from. Built for tests and with the `strategies`
//! feature only; nothing in a server depends on it.

use super::{Condition, Criteria, Operator, Value};
use crate::contact::{Field, FieldKind};
use crate::time::Timestamp;
use proptest::prelude::*;

/// Years 0001 to 9999: what RFC 3339 can write.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    (-62_135_596_800_000i64..253_402_300_799_999).prop_map(Timestamp)
}

/// Where a condition's parts come from.
#[derive(Clone, Copy)]
pub struct Leaves {
    pub field: fn() -> BoxedStrategy<Field>,
    /// A value of a field of this kind.
    pub value: fn(FieldKind) -> BoxedStrategy<Value>,
    /// The operand of `contains`, `starts with` and the like.
    pub text: fn() -> BoxedStrategy<String>,
    /// The longest `in` / `not in` list.
    pub max_list: usize,
}

impl Leaves {
    /// Any operator that applies to a field of `kind`, with operands.
    pub fn operator(self, kind: FieldKind) -> BoxedStrategy<Operator> {
        let v = move || (self.value)(kind);
        let list = move || prop::collection::vec((self.value)(kind), 1..self.max_list + 1);
        let text = move || (self.text)();
        let common = prop_oneof![
            v().prop_map(Operator::Eq),
            v().prop_map(Operator::Ne),
            Just(Operator::IsEmpty),
            Just(Operator::IsNotEmpty),
        ];
        let ordered = move || {
            prop_oneof![
                v().prop_map(Operator::Lt),
                v().prop_map(Operator::Le),
                v().prop_map(Operator::Gt),
                v().prop_map(Operator::Ge),
                (v(), v()).prop_map(|(a, b)| Operator::Between(a, b)),
            ]
        };
        match kind {
            FieldKind::Text => prop_oneof![
                common,
                list().prop_map(Operator::In),
                list().prop_map(Operator::NotIn),
                text().prop_map(Operator::Contains),
                text().prop_map(Operator::NotContains),
                text().prop_map(Operator::StartsWith),
                text().prop_map(Operator::EndsWith),
            ]
            .boxed(),
            FieldKind::Integer | FieldKind::Decimal => {
                prop_oneof![common, list().prop_map(Operator::In), list().prop_map(Operator::NotIn), ordered()].boxed()
            }
            FieldKind::Time => prop_oneof![
                common,
                ordered(),
                timestamp().prop_map(Operator::Before),
                timestamp().prop_map(Operator::After),
                any::<u32>().prop_map(Operator::WithinLastDays),
                any::<u32>().prop_map(Operator::MoreThanDaysAgo),
            ]
            .boxed(),
        }
    }

    /// A well-typed condition on any field these leaves draw.
    pub fn condition(self) -> BoxedStrategy<Criteria> {
        (self.field)()
            .prop_flat_map(move |field| {
                self.operator(field.kind()).prop_map(move |op| {
                    Criteria::Condition(Condition::new(field.clone(), op).expect("generated conditions are well typed"))
                })
            })
            .boxed()
    }
}
