//! segmentd criteria as a PostgreSQL `WHERE` clause over the benchmark's
//! contacts table, with segmentd's semantics (DESIGN.md, Criteria), so that
//! the two systems count the same rows:
//!
//! - text columns are `citext` and hold `''` when empty (never NULL), so `=`,
//!   `IN` and `<>` compare case-insensitively as segmentd does; substring,
//!   prefix and suffix tests are `col::text ILIKE pattern`, which is as
//!   case-insensitive and can use a trigram index (a `LIKE` on citext cannot);
//! - numbers and instants are NULL when empty. A comparison on NULL is
//!   NULL, which a `WHERE` treats as false, as segmentd does, as long as no
//!   `NOT` is above it; under a `NOT` a nullable comparison gets an explicit
//!   `col IS NOT NULL AND …`, because `NOT NULL` is still NULL where segmentd
//!   negates a plain false;
//! - `!=`, `not in` and `not contains` are true on an empty value;
//! - relative conditions become absolute bounds from the pinned `at`, with
//!   the same inclusive ends as segmentd's evaluator.
//!
//! **Must not depend on** a database client or the server: it builds text
//! from the domain's criteria tree, which is what the server parses too.

use segmentd_domain::criteria::{Condition, Operator, Value};
use segmentd_domain::{Criteria, Field, Timestamp};
use std::fmt::Write as _;

/// A contact field as a column of the benchmark table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// citext, `''` when empty.
    Text,
    /// A number or an instant that is never empty in the data.
    Required,
    /// A number or an instant, NULL when empty.
    Nullable,
}

/// The table's column for a field: the generator's column names, custom
/// fields as their bare name (`custom.plan` → `plan`).
pub fn column(field: &Field) -> Result<Column, SqlError> {
    use ColumnKind::*;
    let (name, kind) = match field {
        Field::ContactId => ("contact_id", Required),
        Field::Email => ("email", Text),
        Field::FirstName => ("first_name", Text),
        Field::LastName => ("last_name", Text),
        Field::Company => ("company", Text),
        Field::City => ("city", Text),
        Field::State => ("state", Text),
        Field::Country => ("country", Text),
        Field::Age => ("age", Nullable),
        Field::Gender => ("gender", Text),
        Field::Score => ("score", Required),
        Field::LifecycleStage => ("lifecycle_stage", Text),
        Field::TotalSpent => ("total_spent", Required),
        Field::PurchaseCount => ("purchase_count", Required),
        Field::LastPurchaseAt => ("last_purchase_at", Nullable),
        Field::LastOpenedAt => ("last_opened_at", Nullable),
        Field::AddedAt => ("added_at", Required),
        Field::UpdatedAt => ("updated_at", Required),
        Field::Custom(name) if name == "plan" => ("plan", Text),
        Field::Custom(name) if name == "industry" => ("industry", Text),
        Field::Custom(_) => return Err(SqlError::UnknownField(field.to_string())),
    };
    Ok(Column { name, kind })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("field {0} has no column in the benchmark table")]
    UnknownField(String),
    #[error("field {field}: operator {operator} is not translated for this kind of field")]
    Unsupported { field: String, operator: &'static str },
    #[error("{0}: the benchmark's criteria do not use other segments")]
    InSegment(String),
}

/// The `WHERE` clause (without the keyword) that selects the rows `criteria`
/// matches when relative conditions are measured back from `at`.
pub fn where_clause(criteria: &Criteria, at: Timestamp) -> Result<String, SqlError> {
    let mut out = String::new();
    write_node(&mut out, criteria, at, false, false)?;
    Ok(out)
}

/// `negated`: a NOT is above this node (NULL must then become false);
/// `nested`: the node is inside a group and needs parentheses if it is one.
fn write_node(out: &mut String, node: &Criteria, at: Timestamp, negated: bool, nested: bool) -> Result<(), SqlError> {
    match node {
        Criteria::All(children) | Criteria::Any(children) => {
            let joiner = if matches!(node, Criteria::All(_)) { " AND " } else { " OR " };
            let parens = nested && children.len() > 1;
            if parens {
                out.push('(');
            }
            for (i, child) in children.iter().enumerate() {
                if i > 0 {
                    out.push_str(joiner);
                }
                write_node(out, child, at, negated, true)?;
            }
            if parens {
                out.push(')');
            }
        }
        Criteria::Not(child) => {
            out.push_str("NOT (");
            write_node(out, child, at, true, false)?;
            out.push(')');
        }
        Criteria::Condition(c) => write_condition(out, c, at, negated)?,
        Criteria::InSegment(_) => return Err(SqlError::InSegment(node.to_string())),
    }
    Ok(())
}

fn write_condition(out: &mut String, c: &Condition, at: Timestamp, negated: bool) -> Result<(), SqlError> {
    let col = column(&c.field)?;
    let name = col.name;
    let unsupported = || SqlError::Unsupported { field: c.field.to_string(), operator: c.op.name() };
    if col.kind == ColumnKind::Text {
        return write_text_condition(out, name, &c.op).ok_or_else(unsupported);
    }
    let nullable = col.kind == ColumnKind::Nullable;
    use Operator as O;
    let positive = match &c.op {
        // A required column is never empty (the table says NOT NULL).
        O::IsEmpty => {
            out.push_str(&if nullable { format!("{name} IS NULL") } else { "FALSE".to_owned() });
            return Ok(());
        }
        O::IsNotEmpty => {
            out.push_str(&if nullable { format!("{name} IS NOT NULL") } else { "TRUE".to_owned() });
            return Ok(());
        }
        O::Ne(v) => {
            write_negative(out, name, nullable, &format!("{name} <> {}", literal(v)));
            return Ok(());
        }
        O::NotIn(vs) => {
            write_negative(out, name, nullable, &format!("{name} NOT IN ({})", list(vs)));
            return Ok(());
        }
        O::Eq(v) => format!("{name} = {}", literal(v)),
        O::In(vs) => format!("{name} IN ({})", list(vs)),
        O::Lt(v) => format!("{name} < {}", literal(v)),
        O::Le(v) => format!("{name} <= {}", literal(v)),
        O::Gt(v) => format!("{name} > {}", literal(v)),
        O::Ge(v) => format!("{name} >= {}", literal(v)),
        O::Between(low, high) => format!("{name} BETWEEN {} AND {}", literal(low), literal(high)),
        O::Before(t) => format!("{name} < {}", time(*t)),
        O::After(t) => format!("{name} > {}", time(*t)),
        O::WithinLastDays(n) => {
            format!("{name} BETWEEN {} AND {}", time(at.minus_days(i64::from(*n))), time(at))
        }
        O::MoreThanDaysAgo(n) => format!("{name} < {}", time(at.minus_days(i64::from(*n)))),
        O::Contains(_) | O::NotContains(_) | O::StartsWith(_) | O::EndsWith(_) => return Err(unsupported()),
    };
    if nullable && negated {
        let _ = write!(out, "({name} IS NOT NULL AND {positive})");
    } else {
        out.push_str(&positive);
    }
    Ok(())
}

/// A negative operator: true on an empty (NULL) value.
fn write_negative(out: &mut String, name: &str, nullable: bool, comparison: &str) {
    if nullable {
        let _ = write!(out, "({name} IS NULL OR {comparison})");
    } else {
        out.push_str(comparison);
    }
}

/// Text columns hold `''` for empty. A positive comparison with a non-empty
/// operand is already false on `''`; an empty operand never matches a value
/// by `=`, and matches every non-empty value by substring.
fn write_text_condition(out: &mut String, name: &str, op: &Operator) -> Option<()> {
    use Operator as O;
    let text_values = |vs: &[Value]| -> Option<Vec<String>> {
        vs.iter().map(|v| if let Value::Text(t) = v { Some(t.clone()) } else { None }).collect()
    };
    let s = match op {
        O::IsEmpty => format!("{name} = ''"),
        O::IsNotEmpty => format!("{name} <> ''"),
        O::Eq(Value::Text(t)) if t.is_empty() => "FALSE".to_owned(),
        O::Eq(Value::Text(t)) => format!("{name} = {}", quote(t)),
        O::Ne(Value::Text(t)) if t.is_empty() => "TRUE".to_owned(),
        O::Ne(Value::Text(t)) => format!("{name} <> {}", quote(t)),
        O::In(vs) => {
            let vs: Vec<String> = text_values(vs)?.into_iter().filter(|t| !t.is_empty()).collect();
            if vs.is_empty() { "FALSE".to_owned() } else { format!("{name} IN ({})", quoted_list(&vs)) }
        }
        O::NotIn(vs) => {
            let all = text_values(vs)?;
            let vs: Vec<String> = all.iter().filter(|t| !t.is_empty()).cloned().collect();
            // segmentd: true on empty whatever the list holds.
            if vs.is_empty() {
                "TRUE".to_owned()
            } else if vs.len() < all.len() {
                format!("({name} = '' OR {name} NOT IN ({}))", quoted_list(&vs))
            } else {
                format!("{name} NOT IN ({})", quoted_list(&vs))
            }
        }
        O::Contains(t) | O::StartsWith(t) | O::EndsWith(t) if t.is_empty() => format!("{name} <> ''"),
        O::Contains(t) => format!("{name}::text ILIKE {}", quote(&format!("%{}%", like_escape(t)))),
        O::StartsWith(t) => format!("{name}::text ILIKE {}", quote(&format!("{}%", like_escape(t)))),
        O::EndsWith(t) => format!("{name}::text ILIKE {}", quote(&format!("%{}", like_escape(t)))),
        O::NotContains(t) if t.is_empty() => format!("{name} = ''"),
        O::NotContains(t) => format!("{name}::text NOT ILIKE {}", quote(&format!("%{}%", like_escape(t)))),
        _ => return None,
    };
    out.push_str(&s);
    Some(())
}

fn literal(v: &Value) -> String {
    match v {
        Value::Text(t) => quote(t),
        Value::Integer(n) => n.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Time(t) => time(*t),
    }
}

fn list(vs: &[Value]) -> String {
    vs.iter().map(literal).collect::<Vec<_>>().join(", ")
}

fn quoted_list(vs: &[String]) -> String {
    vs.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", ")
}

fn time(t: Timestamp) -> String {
    format!("'{t}'::timestamptz")
}

/// A string literal (standard_conforming_strings, PostgreSQL's default since
/// 9.1: only the quote is special).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `%`, `_` and the escape character itself are literal in segmentd's
/// substring tests; LIKE's default escape is the backslash.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::criteria_set::{REFERENCE_AT, STANDARD};

    fn at() -> Timestamp {
        Timestamp::parse_rfc3339(REFERENCE_AT).unwrap()
    }

    fn sql(text: &str) -> String {
        where_clause(&Criteria::parse(text).unwrap(), at()).unwrap()
    }

    /// Q1–Q12 as criteria.md writes them, but for Q6 and Q12's substring
    /// tests (`::text ILIKE`, which is as case-insensitive as citext's LIKE
    /// and can use the trigram index) and Q7 (its relative form at the
    /// reference instant, both ends included as in segmentd).
    #[test]
    fn q1_to_q12_translate_to_the_documented_sql() {
        let expected = [
            "country = 'DE'",
            "country IN ('US', 'CA', 'MX')",
            "age BETWEEN 25 AND 34",
            "country = 'US' AND lifecycle_stage = 'customer' AND score > 200",
            "country IN ('DE', 'FR') AND (age BETWEEN 25 AND 34 OR score >= 150)",
            "email::text ILIKE '%@gmail.com' AND company::text ILIKE 'acme%'",
            "last_opened_at BETWEEN '2026-08-03T00:00:00Z'::timestamptz AND '2026-11-01T00:00:00Z'::timestamptz \
             AND lifecycle_stage <> 'subscriber'",
            "company <> '' AND age IS NULL",
            "plan = 'enterprise' AND industry IN ('software', 'finance')",
            "gender <> 'unknown'",
            "country = 'JP' AND purchase_count >= 5 AND total_spent > 1000",
            "last_name::text ILIKE '%son%' AND added_at BETWEEN '2025-01-01T00:00:00Z'::timestamptz \
             AND '2025-12-31T23:59:59Z'::timestamptz AND NOT (country = 'US')",
        ];
        for ((name, text), want) in STANDARD.iter().zip(expected) {
            assert_eq!(sql(text), want, "{name}");
        }
    }

    #[test]
    fn negative_operators_are_true_on_empty_values() {
        // Nullable numbers and instants: NULL is empty.
        assert_eq!(sql("age != 30"), "(age IS NULL OR age <> 30)");
        assert_eq!(sql("age not_in (30, 31)"), "(age IS NULL OR age NOT IN (30, 31))");
        assert_eq!(
            sql(r#"last_purchase_at != "2025-01-01T00:00:00Z""#),
            "(last_purchase_at IS NULL OR last_purchase_at <> '2025-01-01T00:00:00Z'::timestamptz)"
        );
        // Never-empty columns need no guard.
        assert_eq!(sql("score != 3"), "score <> 3");
        // Text: '' is empty, and `'' <> 'x'` is already true.
        assert_eq!(sql(r#"company != "acme""#), "company <> 'acme'");
        assert_eq!(sql(r#"company not_contains "acme""#), "company::text NOT ILIKE '%acme%'");
    }

    #[test]
    fn not_over_a_nullable_comparison_turns_null_into_false() {
        // segmentd: not (age < 30) is true for an empty age; SQL NOT (NULL) is not.
        assert_eq!(sql("not (age < 30)"), "NOT ((age IS NOT NULL AND age < 30))");
        assert_eq!(
            sql(r#"not (country = "US" or last_opened_at within_last 7 days)"#),
            "NOT (country = 'US' OR (last_opened_at IS NOT NULL AND last_opened_at BETWEEN \
             '2026-10-25T00:00:00Z'::timestamptz AND '2026-11-01T00:00:00Z'::timestamptz))"
        );
        // Without a NOT above it, NULL already reads as false in a WHERE.
        assert_eq!(sql("age < 30 or score > 5"), "age < 30 OR score > 5");
    }

    #[test]
    fn relative_and_absolute_dates_use_segmentds_bounds() {
        assert_eq!(sql("last_opened_at more_than 30 days ago"), "last_opened_at < '2026-10-02T00:00:00Z'::timestamptz");
        assert_eq!(
            sql(r#"added_at before "2025-06-01T12:00:00.250Z""#),
            "added_at < '2025-06-01T12:00:00.250Z'::timestamptz"
        );
        assert_eq!(sql(r#"added_at after "2025-06-01T00:00:00Z""#), "added_at > '2025-06-01T00:00:00Z'::timestamptz");
    }

    #[test]
    fn empty_checks_follow_each_columns_representation() {
        assert_eq!(sql("age is_empty"), "age IS NULL");
        assert_eq!(sql("last_opened_at is_not_empty"), "last_opened_at IS NOT NULL");
        assert_eq!(sql("company is_empty"), "company = ''");
        assert_eq!(sql("custom.plan is_not_empty"), "plan <> ''");
        assert_eq!(sql("score is_empty"), "FALSE");
    }

    #[test]
    fn text_literals_and_patterns_are_escaped() {
        assert_eq!(sql(r#"last_name = "O'Brien""#), "last_name = 'O''Brien'");
        assert_eq!(sql(r#"company contains "50%_off\\""#), r"company::text ILIKE '%50\%\_off\\%'");
        assert_eq!(sql(r#"company starts_with "o'""#), "company::text ILIKE 'o''%'");
    }

    #[test]
    fn decimals_and_nested_groups() {
        assert_eq!(sql("total_spent between 10.5 and 20"), "total_spent BETWEEN 10.5 AND 20");
        assert_eq!(
            sql(r#"(country = "DE" or country = "FR") and (score > 1 or (age > 2 and age < 9))"#),
            "(country = 'DE' OR country = 'FR') AND (score > 1 OR (age > 2 AND age < 9))"
        );
    }

    #[test]
    fn a_field_without_a_column_is_refused() {
        let c = Criteria::parse(r#"custom.shoe_size = "42""#).unwrap();
        assert_eq!(where_clause(&c, at()), Err(SqlError::UnknownField("custom.shoe_size".into())));
    }
}
