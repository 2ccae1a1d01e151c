//! Each kind of operator through the index, given a handful of contacts:
//! the rows it answers are the ones named, and the ones `Criteria::matches`
//! picks out one contact at a time.

use super::{ContactIndex, Evaluator};
use crate::stored::StoredContact;
use proptest::prelude::*;
use roaring::RoaringBitmap;
use segmentd_domain::Contact;
use segmentd_domain::contact::{Email, Field};
use segmentd_domain::criteria::{Condition, Criteria, Operator, Value};
use segmentd_domain::decimal::Decimal;
use segmentd_domain::time::{MILLIS_PER_DAY, Timestamp};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn at() -> Timestamp {
    ts("2026-11-01T00:00:00Z")
}

/// A contact named `name` (its email is `name@x.com`), changed by `f`.
fn contact(name: &str, f: impl FnOnce(&mut Contact)) -> Contact {
    let mut c = Contact::new(Email::parse(&format!("{name}@x.com")).unwrap(), ts("2025-06-01T00:00:00Z"));
    f(&mut c);
    c
}

struct Given {
    index: ContactIndex,
    rows: Vec<Option<StoredContact>>,
}

fn given(contacts: Vec<Contact>) -> Given {
    given_with(ContactIndex::default(), contacts)
}

fn given_with(mut index: ContactIndex, contacts: Vec<Contact>) -> Given {
    let rows: Vec<_> = contacts.iter().map(|c| Some(StoredContact::encode(c))).collect();
    for (row, c) in rows.iter().enumerate() {
        index.insert(row as u32, &c.as_ref().unwrap().fields());
    }
    Given { index, rows }
}

impl Given {
    /// The names of the contacts that `criteria` selects through the index,
    /// after checking that the plain evaluator selects the same ones.
    fn select(&self, criteria: &Criteria) -> Vec<String> {
        let found =
            Evaluator::new(&self.index, &self.rows, &Default::default(), at()).eval(criteria, self.index.live());
        let plain: RoaringBitmap = (0..self.rows.len() as u32)
            .filter(|&r| self.rows[r as usize].as_ref().is_some_and(|c| criteria.matches(&c.to_contact(), at())))
            .collect();
        assert_eq!(found, plain, "index and plain evaluator disagree on {criteria}");
        found.iter().map(|r| self.name(r)).collect()
    }

    fn name(&self, row: u32) -> String {
        let c = self.rows[row as usize].as_ref().unwrap();
        c.email().trim_end_matches("@x.com").to_owned()
    }

    fn query(&self, text: &str) -> Vec<String> {
        self.select(&Criteria::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")))
    }
}

fn cities() -> Given {
    given(vec![
        contact("muc", |c| {
            c.city = "München".into();
            c.country = "DE".into();
        }),
        contact("caps", |c| {
            c.city = "MÜNCHEN".into();
            c.country = "de".into();
        }),
        contact("nowhere", |_| {}),
        contact("ist", |c| {
            c.city = "İstanbul".into();
            c.country = "TR".into();
        }),
        contact("kelvin", |c| {
            c.city = "\u{212A}iel".into();
            c.country = "DE".into();
            c.custom.insert("plan".into(), "Pro".into());
        }),
        contact("sigma", |c| {
            c.city = "ΣΑΣ".into();
            c.country = "GR".into();
            c.custom.insert("plan".into(), "".into());
        }),
    ])
}

#[test]
fn given_text_values_in_any_case_when_compared_for_equality_then_case_is_ignored() {
    let g = cities();
    assert_eq!(g.query(r#"city = "münchen""#), ["muc", "caps"]);
    assert_eq!(g.query(r#"country = "De""#), ["muc", "caps", "kelvin"]);
    assert_eq!(g.query(r#"city = "kiel""#), ["kelvin"], "the Kelvin sign lowercases to k");
    assert_eq!(g.query(r#"city = "σας""#), [] as [&str; 0], "char-wise lowercase has no final sigma");
    assert_eq!(g.query(r#"city = "σασ""#), ["sigma"]);
    assert_eq!(g.query(r#"city in ("MÜNCHEN", "istanbul", "İSTANBUL")"#), ["muc", "caps", "ist"]);
    assert_eq!(g.query(r#"city = """#), [] as [&str; 0], "an empty value equals nothing");
}

#[test]
fn given_empty_values_when_negative_operators_apply_then_they_are_true_on_them() {
    let g = cities();
    assert_eq!(g.query(r#"city != "münchen""#), ["nowhere", "ist", "kelvin", "sigma"]);
    assert_eq!(g.query(r#"country not_in ("DE", "TR")"#), ["nowhere", "sigma"]);
    assert_eq!(g.query(r#"city not_contains "CH""#), ["nowhere", "ist", "kelvin", "sigma"]);
    assert_eq!(g.query(r#"city is_empty"#), ["nowhere"]);
    assert_eq!(g.query(r#"city is_not_empty"#), ["muc", "caps", "ist", "kelvin", "sigma"]);
    // A comparison on an empty value is false, even `contains ""`.
    assert_eq!(g.query(r#"city contains """#), ["muc", "caps", "ist", "kelvin", "sigma"]);
}

#[test]
fn given_custom_fields_when_queried_then_missing_and_blank_are_empty() {
    let g = cities();
    assert_eq!(g.query(r#"custom.plan = "PRO""#), ["kelvin"]);
    assert_eq!(g.query(r#"custom.plan is_empty"#), ["muc", "caps", "nowhere", "ist", "sigma"]);
    // A field no contact has ever had: every value is empty.
    assert_eq!(g.query(r#"custom.never = "x""#), [] as [&str; 0]);
    assert_eq!(g.query(r#"custom.never != "x""#).len(), 6);
    assert_eq!(g.query(r#"custom.never is_empty"#).len(), 6);
    assert_eq!(g.query(r#"custom.never not_contains "x""#).len(), 6);
}

#[test]
fn given_unicode_text_when_matched_by_pattern_then_lowercased_forms_are_compared() {
    let g = cities();
    assert_eq!(g.query(r#"city contains "ÜN""#), ["muc", "caps"]);
    assert_eq!(g.query(r#"city starts_with "mün""#), ["muc", "caps"]);
    assert_eq!(g.query(r#"city ends_with "CHEN""#), ["muc", "caps"]);
    assert_eq!(g.query(r#"city starts_with "i""#), ["ist"], "İ lowercases to i and a combining dot");
    assert_eq!(g.query("city contains \"\u{307}s\""), ["ist"], "the combining dot is a char of its own");
    assert_eq!(g.query(r#"city ends_with "σ""#), ["sigma"]);
}

#[test]
fn given_a_unique_field_when_few_rows_are_candidates_then_rows_are_scanned_with_the_same_answer() {
    // Twenty distinct emails: alone, `ends_with` tests the twenty values;
    // after `country = "DE"` leaves one row, it tests that row instead.
    let contacts = (0..20)
        .map(|i| {
            contact(&format!("n{i}"), |c| {
                c.country = if i == 7 { "DE".into() } else { "FR".into() };
            })
        })
        .collect();
    let g = given(contacts);
    assert_eq!(g.query(r#"email ends_with "7@X.COM""#), ["n7", "n17"]);
    assert_eq!(g.query(r#"email ends_with "7@x.com" and country = "de""#), ["n7"]);
    assert_eq!(g.query(r#"country = "de" and email not_contains "n7""#), [] as [&str; 0]);
    assert_eq!(g.query(r#"country = "de" and email starts_with "N""#), ["n7"]);
    assert_eq!(g.query(r#"country = "de" and not (email contains "1")"#), ["n7"]);
}

fn numbers() -> Given {
    given(vec![
        contact("young", |c| {
            c.age = Some(25);
            c.total_spent = Some(Decimal::parse("1000.01").unwrap());
            c.score = Some(-3);
        }),
        contact("old", |c| {
            c.age = Some(70);
            c.total_spent = Some(Decimal::parse("1000").unwrap());
            c.score = Some(i64::MAX);
        }),
        contact("ageless", |c| {
            c.score = Some(i64::MIN);
        }),
        contact("mid", |c| {
            c.age = Some(34);
            c.total_spent = Some(Decimal::parse("-5.5").unwrap());
            c.score = Some(0);
        }),
    ])
}

#[test]
fn given_integers_when_compared_then_ranges_are_inclusive_and_empty_never_compares() {
    let g = numbers();
    assert_eq!(g.query("age between 25 and 34"), ["young", "mid"]);
    assert_eq!(g.query("age between 34 and 25"), [] as [&str; 0]);
    assert_eq!(g.query("age < 34"), ["young"]);
    assert_eq!(g.query("age <= 34"), ["young", "mid"]);
    assert_eq!(g.query("age > 34"), ["old"]);
    assert_eq!(g.query("age >= 34"), ["old", "mid"]);
    assert_eq!(g.query("age = 70"), ["old"]);
    assert_eq!(g.query("age != 70"), ["young", "ageless", "mid"]);
    assert_eq!(g.query("age in (25, 70, 99)"), ["young", "old"]);
    assert_eq!(g.query("age not_in (25, 70)"), ["ageless", "mid"]);
    assert_eq!(g.query("age is_empty"), ["ageless"]);
    assert_eq!(g.query("age is_not_empty"), ["young", "old", "mid"]);
    assert_eq!(g.query("score < 0"), ["young", "ageless"]);
    assert_eq!(g.query(&format!("score >= {}", i64::MAX)), ["old"]);
    assert_eq!(g.query(&format!("score <= {}", i64::MIN)), ["ageless"]);
}

#[test]
fn given_decimals_when_compared_then_they_compare_exactly() {
    let g = numbers();
    assert_eq!(g.query("total_spent > 1000"), ["young"]);
    assert_eq!(g.query("total_spent >= 1000"), ["young", "old"]);
    assert_eq!(g.query("total_spent = 1000.0"), ["old"]);
    assert_eq!(g.query("total_spent < 0"), ["mid"]);
    assert_eq!(g.query("total_spent in (1000.01, -5.5)"), ["young", "mid"]);
}

#[test]
fn given_a_hand_built_condition_with_an_operand_of_another_kind_then_the_answer_is_still_the_evaluators() {
    let g = numbers();
    let odd = |field: Field, op: Operator| Criteria::Condition(Condition { field, op });
    // `!=` against text is true everywhere on a number; `=` nowhere.
    assert_eq!(g.select(&odd(Field::Age, Operator::Ne(Value::Text("x".into())))).len(), 4);
    assert_eq!(g.select(&odd(Field::Age, Operator::Eq(Value::Text("25".into())))), [] as [&str; 0]);
    // An integer operand on the decimal field, and a date operator on a number.
    assert_eq!(g.select(&odd(Field::TotalSpent, Operator::Gt(Value::Integer(0)))), [] as [&str; 0]);
    assert_eq!(g.select(&odd(Field::Age, Operator::Before(at()))), [] as [&str; 0]);
    assert_eq!(g.select(&odd(Field::Age, Operator::NotContains("2".into()))).len(), 4);
    assert_eq!(g.select(&odd(Field::City, Operator::Lt(Value::Integer(3)))), [] as [&str; 0]);
}

fn times() -> Given {
    let day = |n: i64| Timestamp(at().0 - n * MILLIS_PER_DAY);
    given(vec![
        contact("today", |c| c.last_opened_at = Some(at())),
        contact("edge", |c| c.last_opened_at = Some(day(30))),
        contact("before_edge", |c| c.last_opened_at = Some(Timestamp(day(30).0 - 1))),
        contact("future", |c| c.last_opened_at = Some(Timestamp(at().0 + 1))),
        contact("never", |_| {}),
    ])
}

#[test]
fn given_dates_when_relative_operators_apply_then_they_count_back_from_at() {
    let g = times();
    assert_eq!(g.query("last_opened_at within_last 30 days"), ["today", "edge"]);
    assert_eq!(g.query("last_opened_at within_last 0 days"), ["today"]);
    assert_eq!(g.query("last_opened_at more_than 30 days ago"), ["before_edge"]);
    assert_eq!(g.query(r#"last_opened_at before "2026-11-01T00:00:00Z""#), ["edge", "before_edge"]);
    assert_eq!(g.query(r#"last_opened_at after "2026-11-01T00:00:00Z""#), ["future"]);
    assert_eq!(g.query(r#"last_opened_at >= "2026-11-01T00:00:00Z""#), ["today", "future"]);
    assert_eq!(g.query(r#"last_opened_at != "2026-11-01T00:00:00Z""#), ["edge", "before_edge", "future", "never"]);
    assert_eq!(g.query("last_opened_at is_empty"), ["never"]);
    assert_eq!(g.query(r#"added_at = "2025-06-01T00:00:00Z""#).len(), 5);
}

#[test]
fn given_groups_when_evaluated_then_not_is_a_plain_boolean_and_groups_nest() {
    let g = numbers();
    assert_eq!(g.query("not (age > 30)"), ["young", "ageless"], "an empty age is not > 30, so NOT holds");
    assert_eq!(g.query("age < 30 or total_spent < 0 or age is_empty"), ["young", "ageless", "mid"]);
    assert_eq!(g.query("(age < 30 or age > 60) and total_spent >= 1000"), ["young", "old"]);
    assert_eq!(g.query("not (age < 30 or age > 60) and not age is_empty"), ["mid"]);
    assert_eq!(g.query("not not (age = 25)"), ["young"]);
}

#[test]
fn given_a_contact_changed_and_removed_when_queried_then_the_index_follows() {
    let mut g = cities();
    let old = g.rows[0].clone().unwrap();
    let new = StoredContact::encode(&contact("muc", |c| {
        c.city = "Berlin".into();
        c.country = "DE".into();
        c.age = Some(40);
        c.custom.insert("plan".into(), "free".into());
    }));
    g.index.replace(0, &old.fields(), &new.fields());
    g.rows[0] = Some(new);
    assert_eq!(g.query(r#"city = "münchen""#), ["caps"]);
    assert_eq!(g.query(r#"city = "berlin" and age = 40 and custom.plan = "free""#), ["muc"]);
    let caps = g.rows[1].take().unwrap();
    g.index.remove(1, &caps.fields());
    assert_eq!(g.query(r#"city contains "ü""#), [] as [&str; 0]);
    assert_eq!(g.query(r#"city != "x""#), ["muc", "nowhere", "ist", "kelvin", "sigma"]);
    assert_eq!(g.index.rows_with_email("CAPS@x.com").count(), 0);
    assert_eq!(g.index.rows_with_email("MUC@X.COM").collect::<Vec<_>>(), [0]);
}

const TEXTS: &[&str] = &["", "a", "Ab", "München", "MÜNCHEN", "İstanbul", "ΣΑΣ", "\u{212A}iel", "kiel", "x y"];
const PATTERNS: &[&str] = &["", "a", "B", "ün", "CHEN", "i", "\u{307}", "σ", "k", "y", "zz"];

fn text_condition() -> impl Strategy<Value = Criteria> {
    let field = prop::sample::select(vec![Field::City, Field::Email, Field::Custom("plan".into())]);
    let pattern = || prop::sample::select(PATTERNS).prop_map(str::to_owned);
    let value = || prop::sample::select(TEXTS).prop_map(|t| Value::Text(t.to_owned()));
    let op = prop_oneof![
        pattern().prop_map(Operator::Contains),
        pattern().prop_map(Operator::NotContains),
        pattern().prop_map(Operator::StartsWith),
        pattern().prop_map(Operator::EndsWith),
        value().prop_map(Operator::Eq),
        value().prop_map(Operator::Ne),
    ];
    (field, op).prop_map(|(field, op)| Criteria::Condition(Condition::new(field, op).unwrap()))
}

proptest! {
    /// Columns are built after a few distinct values here (a million in
    /// production), so that patterns read them, across replaced and removed
    /// rows and values too long to keep.
    #[test]
    fn given_fields_with_columns_when_patterns_apply_then_the_answer_is_the_evaluators(
        cells in prop::collection::vec((prop::sample::select(TEXTS), prop::sample::select(TEXTS)), 1..12),
        changes in prop::collection::vec((0usize..12, prop::sample::select(TEXTS), any::<bool>()), 0..12),
        column_after in 0usize..4,
        queries in prop::collection::vec(
            text_condition().prop_recursive(2, 8, 3, |inner| prop_oneof![
                prop::collection::vec(inner.clone(), 1..3).prop_map(Criteria::All),
                prop::collection::vec(inner.clone(), 1..3).prop_map(Criteria::Any),
                inner.prop_map(|c| Criteria::Not(Box::new(c))),
            ]),
            1..6,
        ),
    ) {
        let make = |i: usize, city: &str, plan: &str| {
            contact(&format!("N{i}"), |c| {
                c.city = city.to_owned();
                c.custom.insert("plan".into(), plan.to_owned());
            })
        };
        let contacts = cells.iter().enumerate().map(|(i, (city, plan))| make(i, city, plan)).collect();
        let mut g = given_with(ContactIndex::with_column_after(column_after), contacts);
        for (row, city, remove) in changes {
            let Some(Some(old)) = g.rows.get(row).cloned() else { continue };
            if remove {
                g.index.remove(row as u32, &old.fields());
                g.rows[row] = None;
            } else {
                let new = StoredContact::encode(&make(row, city, city));
                g.index.replace(row as u32, &old.fields(), &new.fields());
                g.rows[row] = Some(new);
            }
        }
        for q in &queries {
            g.select(q);
        }
    }
}

/// Everything an index answers from, as plain values: the live rows; per
/// text field (built-in, then custom by name) each value's rows, the rows
/// with a value and the column's cells; per ordered field its bit slices
/// and values.
type Shape = (Vec<u32>, Vec<TextShape>, Vec<(Vec<Vec<u32>>, Vec<(u32, i64)>)>);
type TextShape = (String, Vec<(String, Vec<u32>)>, Vec<u32>, Option<Vec<Option<String>>>);

fn shape(index: &ContactIndex, rows: usize) -> Shape {
    let text = |name: String, t: &super::text::TextIndex| -> TextShape {
        let mut values: Vec<(String, Vec<u32>)> = t.values().map(|(v, r)| (v.to_owned(), r.iter().collect())).collect();
        values.sort();
        let column = t.column().map(|c| {
            (0..rows as u32)
                .map(|row| match c.get(row) {
                    super::column::Cell::Empty => None,
                    super::column::Cell::Value(v) => Some(v.to_owned()),
                    super::column::Cell::Elsewhere => Some("<elsewhere>".to_owned()),
                })
                .collect()
        });
        (name, values, t.present().iter().collect(), column)
    };
    let mut texts: Vec<TextShape> = index.text.iter().map(|(f, t)| text(f.to_string(), t)).collect();
    let mut custom: Vec<TextShape> = index.custom.iter().map(|(name, t)| text(name.clone(), t)).collect();
    custom.sort_by(|a, b| a.0.cmp(&b.0));
    texts.extend(custom);
    let ordered = index
        .ordered
        .iter()
        .map(|(_, o)| {
            let (slices, values) = o.parts();
            (slices.iter().map(|s| s.iter().collect()).collect(), values)
        })
        .collect();
    (index.live.iter().collect(), texts, ordered)
}

fn any_contact() -> impl Strategy<Value = Option<Contact>> {
    let text = || prop::sample::select(TEXTS).prop_map(str::to_owned);
    let number = || prop::option::of(prop_oneof![-3i64..40, any::<i64>()]);
    let custom = prop::collection::btree_map(prop::sample::select(vec!["plan", "Plan", "tier"]), text(), 0..3);
    let fields = (
        prop::collection::vec(text(), 8),
        prop::collection::vec(number(), 7),
        (any::<i64>(), -5i64..5),
        custom,
        (0u8..8, prop::sample::select(vec!["ann", "Ann", "bob", "b\u{f6}b", "C"]), 0u8..3),
    );
    fields.prop_map(|(texts, numbers, (added, updated), custom, (gone, name, n))| {
        (gone != 0).then(|| {
            contact(&format!("{name}{n}"), |c| {
                let [_, first, last, company, city, state, country, gender] =
                    <[String; 8]>::try_from(texts.clone()).unwrap();
                (c.first_name, c.last_name, c.company, c.city, c.state, c.country, c.gender) =
                    (first, last, company, city, state, country, gender);
                c.lifecycle_stage = c.city.to_uppercase();
                crate::stored::set_numbers(c, &numbers);
                c.added_at = Timestamp(added);
                c.updated_at = Timestamp(updated);
                c.custom = custom.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            })
        })
    })
}

proptest! {
    /// The index built at once from all rows, in any number of runs, is
    /// the index made by inserting the rows one by one: the same values with
    /// the same rows, columns, bit slices.
    #[test]
    fn given_rows_when_built_at_once_in_runs_then_the_index_is_the_one_made_row_by_row(
        contacts in prop::collection::vec(any_contact(), 0..60),
        column_after in 0usize..6,
        parts in 1usize..6,
    ) {
        let rows: Vec<Option<StoredContact>> = contacts.iter().map(|c| c.as_ref().map(StoredContact::encode)).collect();
        let mut one_by_one = ContactIndex::with_column_after(column_after);
        for (row, c) in rows.iter().enumerate() {
            if let Some(c) = c {
                one_by_one.insert(row as u32, &c.fields());
            }
        }
        let mut at_once = ContactIndex::with_column_after(column_after);
        at_once.fill_in(&rows, true, parts);
        prop_assert_eq!(shape(&at_once, rows.len()), shape(&one_by_one, rows.len()));
    }
}
