//! Tests of the criteria module: the text form (parsing, errors, canonical
//! printing and the round trip), the limits, and the matching semantics,
//! written as given / when / then.

use super::eval::{contains_ci, ends_with_ci, eq_ci, starts_with_ci};
use super::strategies::{Leaves, timestamp};
use super::*;
use crate::contact::{Contact, Email, Field};
use crate::decimal::Decimal;
use crate::time::Timestamp;
use proptest::prelude::*;

// ---------------------------------------------------------------- helpers

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

/// The pinned clock of the benchmark's relative criterion Q7.
fn at() -> Timestamp {
    ts("2026-11-01T00:00:00Z")
}

fn contact() -> Contact {
    Contact::new(Email::parse("ann@example.com").unwrap(), ts("2025-06-01T00:00:00Z"))
}

fn parse(text: &str) -> Criteria {
    Criteria::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn parse_err(text: &str) -> ParseError {
    match Criteria::parse(text) {
        Ok(c) => panic!("{text:?} should not parse, got {c:?}"),
        Err(e) => e,
    }
}

fn matches(text: &str, c: &Contact) -> bool {
    parse(text).matches(c, at())
}

fn cond(field: Field, op: Operator) -> Criteria {
    Criteria::Condition(Condition::new(field, op).unwrap())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn assert_round_trips(c: &Criteria) {
    let printed = c.to_string();
    assert_eq!(Criteria::parse(&printed).as_ref(), Ok(c), "printed as {printed:?}");
}

const STANDARD: [&str; 12] = [
    r#"country = "DE""#,
    r#"country in ("US","CA","MX")"#,
    r#"age between 25 and 34"#,
    r#"country = "US" and lifecycle_stage = "customer" and score > 200"#,
    r#"country in ("DE","FR") and (age between 25 and 34 or score >= 150)"#,
    r#"email ends_with "@gmail.com" and company starts_with "acme""#,
    r#"last_opened_at >= "2026-08-03T00:00:00Z" and lifecycle_stage != "subscriber""#,
    r#"company is_not_empty and age is_empty"#,
    r#"custom.plan = "enterprise" and custom.industry in ("software","finance")"#,
    r#"gender != "unknown""#,
    r#"country = "JP" and purchase_count >= 5 and total_spent > 1000"#,
    r#"last_name contains "son" and added_at between "2025-01-01T00:00:00Z" and "2025-12-31T23:59:59Z" and not (country = "US")"#,
];

// ---------------------------------------------------------------- the standard criteria

#[test]
fn given_the_twelve_standard_criteria_when_parsed_and_printed_then_they_parse_back_to_the_same_tree() {
    for text in STANDARD {
        let c = parse(text);
        assert_eq!(c.check_limits(), Ok(()), "{text}");
        assert_round_trips(&c);
    }
}

#[test]
fn given_q5_when_parsed_then_the_or_group_sits_inside_the_and_group() {
    let c = parse(STANDARD[4]);
    let expected = Criteria::All(vec![
        cond(Field::Country, Operator::In(vec![text("DE"), text("FR")])),
        Criteria::Any(vec![
            cond(Field::Age, Operator::Between(Value::Integer(25), Value::Integer(34))),
            cond(Field::Score, Operator::Ge(Value::Integer(150))),
        ]),
    ]);
    assert_eq!(c, expected);
    assert_eq!(c.to_string(), r#"country in ("DE", "FR") and (age between 25 and 34 or score >= 150)"#);
}

#[test]
fn given_q12_when_parsed_then_between_keeps_its_and_and_not_wraps_the_group() {
    let c = parse(STANDARD[11]);
    let expected = Criteria::All(vec![
        cond(Field::LastName, Operator::Contains("son".into())),
        cond(
            Field::AddedAt,
            Operator::Between(Value::Time(ts("2025-01-01T00:00:00Z")), Value::Time(ts("2025-12-31T23:59:59Z"))),
        ),
        Criteria::Not(Box::new(cond(Field::Country, Operator::Eq(text("US"))))),
    ]);
    assert_eq!(c, expected);
    assert_eq!(c.to_string(), STANDARD[11]);
}

#[test]
fn given_q11_when_parsed_then_the_decimal_field_gets_a_decimal_value() {
    let c = parse(STANDARD[10]);
    let Criteria::All(children) = &c else { panic!("{c:?}") };
    assert_eq!(children[2], cond(Field::TotalSpent, Operator::Gt(Value::Decimal(Decimal::from_int(1000).unwrap()))));
}

// ---------------------------------------------------------------- grammar

#[test]
fn given_chained_ands_when_parsed_then_they_form_one_group() {
    let c = parse(r#"age = 1 and age = 2 and age = 3"#);
    assert!(matches!(&c, Criteria::All(v) if v.len() == 3), "{c:?}");
    let c = parse(r#"age = 1 or age = 2 or age = 3"#);
    assert!(matches!(&c, Criteria::Any(v) if v.len() == 3), "{c:?}");
}

#[test]
fn given_a_parenthesized_group_when_parsed_then_it_stays_its_own_node() {
    let a = cond(Field::Age, Operator::Eq(Value::Integer(1)));
    let b = cond(Field::Age, Operator::Eq(Value::Integer(2)));
    let c3 = cond(Field::Age, Operator::Eq(Value::Integer(3)));
    assert_eq!(
        parse("(age = 1 and age = 2) and age = 3"),
        Criteria::All(vec![Criteria::All(vec![a.clone(), b.clone()]), c3.clone()])
    );
    // A condition in parentheses is just the condition.
    assert_eq!(parse("((age = 1))"), a);
    assert_eq!(parse("(age = 1) and ((age = 2))"), Criteria::All(vec![a.clone(), b.clone()]));
    // `and` binds tighter than `or`.
    assert_eq!(
        parse("age = 1 and age = 2 or age = 3"),
        Criteria::Any(vec![Criteria::All(vec![a.clone(), b.clone()]), c3.clone()])
    );
    assert_eq!(
        parse("age = 1 or age = 2 and age = 3"),
        Criteria::Any(vec![a.clone(), Criteria::All(vec![b.clone(), c3.clone()])])
    );
    // `not` takes a single unary operand.
    assert_eq!(parse("not age = 1 and age = 2"), Criteria::All(vec![Criteria::Not(Box::new(a.clone())), b.clone()]));
    assert_eq!(
        parse("not not (age = 1 or age = 2)"),
        Criteria::Not(Box::new(Criteria::Not(Box::new(Criteria::Any(vec![a, b])))))
    );
}

#[test]
fn given_keywords_in_any_case_and_alternative_spellings_when_parsed_then_they_mean_the_same() {
    let pairs = [
        (r#"country = "DE" AND age > 3 Or NOT (score < 1)"#, r#"country = "DE" and age > 3 or not (score < 1)"#),
        (r#"country <> "DE""#, r#"country != "DE""#),
        (r#"country NOT IN ("DE")"#, r#"country not_in ("DE")"#),
        (r#"country not contains "x""#, r#"country NOT_CONTAINS "x""#),
        (r#"country is empty"#, r#"country is_empty"#),
        (r#"country IS NOT EMPTY"#, r#"country is_not_empty"#),
        (r#"added_at more_than 3 days_ago"#, r#"added_at more_than 3 days ago"#),
        (r#"added_at WITHIN_LAST 3 DAYS"#, r#"added_at within_last 3 days"#),
        ("age>=3 and(country=\"x\")", r#"age >= 3 and country = "x""#),
        ("  age\t=\n3  ", "age = 3"),
        (r#"total_spent = 1000.50"#, r#"total_spent = 1000.5"#),
        (r#"total_spent = -3"#, r#"total_spent = -3.0"#),
        (r#"added_at = "2025-01-01T02:00:00+02:00""#, r#"added_at = "2025-01-01T00:00:00Z""#),
    ];
    for (a, b) in pairs {
        assert_eq!(parse(a), parse(b), "{a} vs {b}");
    }
}

#[test]
fn given_strings_with_escapes_when_parsed_then_escapes_are_resolved_and_printed_back() {
    let c = parse(r#"city = "a \"quoted\" \\ back\tslash\n""#);
    assert_eq!(c, cond(Field::City, Operator::Eq(text("a \"quoted\" \\ back\tslash\n"))));
    assert_eq!(c.to_string(), r#"city = "a \"quoted\" \\ back\tslash\n""#);
    // Keywords and parentheses inside strings are just text.
    let c = parse(r#"city = "x and (y or not z)""#);
    assert_eq!(c, cond(Field::City, Operator::Eq(text("x and (y or not z)"))));
}

#[test]
fn given_custom_fields_when_parsed_then_the_prefix_is_stripped_and_printed_back() {
    let c = parse(r#"custom.my-plan_2 starts_with "pro""#);
    assert_eq!(c, cond(Field::Custom("my-plan_2".into()), Operator::StartsWith("pro".into())));
    assert_eq!(c.to_string(), r#"custom.my-plan_2 starts_with "pro""#);
}

#[test]
fn given_every_operator_when_printed_then_it_uses_the_canonical_spelling() {
    let cases = [
        (r#"city = "a""#, r#"city = "a""#),
        (r#"city <> "a""#, r#"city != "a""#),
        (r#"city in ("a","b")"#, r#"city in ("a", "b")"#),
        (r#"city not in ("a")"#, r#"city not_in ("a")"#),
        (r#"city contains "a""#, r#"city contains "a""#),
        (r#"city not contains "a""#, r#"city not_contains "a""#),
        (r#"city starts_with "a""#, r#"city starts_with "a""#),
        (r#"city ends_with "a""#, r#"city ends_with "a""#),
        (r#"city is empty"#, r#"city is_empty"#),
        (r#"city is not empty"#, r#"city is_not_empty"#),
        ("age < 1", "age < 1"),
        ("age <= 1", "age <= 1"),
        ("age > -1", "age > -1"),
        ("age >= 1", "age >= 1"),
        ("total_spent between 0.10 and 2", "total_spent between 0.1 and 2"),
        (r#"added_at before "2025-01-01T00:00:00.5Z""#, r#"added_at before "2025-01-01T00:00:00.500Z""#),
        (r#"added_at after "2025-01-01T00:00:00Z""#, r#"added_at after "2025-01-01T00:00:00Z""#),
        ("added_at within_last 90 days", "added_at within_last 90 days"),
        ("added_at more_than 90 days_ago", "added_at more_than 90 days ago"),
        ("not age = 1", "not (age = 1)"),
        ("(age = 1 or age = 2) and (age = 3 and age = 4)", "(age = 1 or age = 2) and (age = 3 and age = 4)"),
        ("((age = 1 or age = 2))", "age = 1 or age = 2"),
        ("not (age = 1 or age = 2 and age = 3)", "not (age = 1 or (age = 2 and age = 3))"),
    ];
    for (input, canonical) in cases {
        let c = parse(input);
        assert_eq!(c.to_string(), canonical, "{input}");
        assert_round_trips(&c);
    }
}

#[test]
fn given_a_one_child_group_when_printed_then_it_prints_as_its_child() {
    let a = cond(Field::Age, Operator::Eq(Value::Integer(1)));
    let b = cond(Field::Age, Operator::Eq(Value::Integer(2)));
    let c = Criteria::All(vec![Criteria::Any(vec![a.clone()]), Criteria::All(vec![Criteria::Any(vec![a, b])])]);
    assert_eq!(c.to_string(), "age = 1 and (age = 1 or age = 2)");
}

#[test]
fn given_criteria_when_asked_for_fields_then_they_come_in_text_order() {
    let c = parse(r#"country = "x" and (not (age > 1) or custom.plan is_empty) and country = "y""#);
    let fields: Vec<&Field> = c.fields().collect();
    assert_eq!(fields, [&Field::Country, &Field::Age, &Field::Custom("plan".into()), &Field::Country]);
}

// ---------------------------------------------------------------- parse errors

#[test]
fn given_an_unclosed_parenthesis_when_parsed_then_the_error_expects_a_closing_one_at_the_end() {
    let e = parse_err("(age = 1");
    assert_eq!(e, ParseError { position: 9, expected: "\")\"".into(), found: "end of input".into() });
    assert_eq!(e.to_string(), r#"at column 9: expected ")", found end of input"#);
    let e = parse_err("(age = 1 age = 2");
    assert_eq!((e.position, e.found.as_str()), (10, "`age`"));
    assert!(e.expected.contains(")") && e.expected.contains("column 1"), "{e}");
}

#[test]
fn given_an_extra_closing_parenthesis_when_parsed_then_it_is_reported_where_it_is() {
    let e = parse_err("age = 1)");
    assert_eq!((e.position, e.found.as_str()), (8, "`)`"));
    assert!(e.expected.contains("end of input"), "{e}");
    let e = parse_err(")");
    assert_eq!((e.position, e.found.as_str()), (1, "`)`"));
}

#[test]
fn given_a_missing_value_when_parsed_then_the_column_counts_characters_not_bytes() {
    let e = parse_err(r#"city = "München" and age = )"#);
    assert_eq!(e.position, 28);
    assert_eq!(e.to_string(), "at column 28: expected an integer for field age, found `)`");
}

#[test]
fn given_an_unknown_field_when_parsed_then_the_error_has_the_field_error_text() {
    let e = parse_err(r#"age = 1 and shoe_size = 3"#);
    assert_eq!((e.position, e.found.as_str()), (13, "`shoe_size`"));
    let field_error = Field::parse("shoe_size").unwrap_err().to_string();
    assert!(e.expected.contains(&field_error), "{e}");
    let e = parse_err(r#"custom.a+b = "x""#);
    assert!(e.to_string().contains("custom"), "{e}");
}

#[test]
fn given_a_literal_of_the_wrong_type_when_parsed_then_the_error_names_field_and_expected_type() {
    let e = parse_err(r#"age = "abc""#);
    assert_eq!(e.to_string(), r#"at column 7: expected an integer for field age, found "abc""#);
    let e = parse_err("country = DE");
    assert_eq!(e.to_string(), "at column 11: expected a quoted string for field country, found `DE`");
    let e = parse_err("age = 2.5");
    assert_eq!(e.expected, "an integer for field age");
    let e = parse_err("age = 99999999999999999999");
    assert!(e.expected.contains("9223372036854775807"), "{e}");
    let e = parse_err("total_spent > 1.1234567");
    assert!(e.expected.contains("decimal places"), "{e}");
    let e = parse_err("total_spent > \"1\"");
    assert_eq!(e.expected, "a number for field total_spent");
    let e = parse_err("added_at > 5");
    assert_eq!(e.expected, "a quoted RFC 3339 date-time for field added_at");
    let e = parse_err(r#"country in ("a", 1)"#);
    assert_eq!((e.position, e.found.as_str()), (18, "`1`"));
    let e = parse_err("added_at within_last -1 days");
    assert!(e.expected.contains("whole number of days"), "{e}");
}

#[test]
fn given_a_bad_date_when_parsed_then_the_error_points_at_the_string() {
    let e = parse_err(r#"age = 3 and added_at < "2025-02-30T00:00:00Z""#);
    assert_eq!(e.position, 24);
    assert_eq!(e.found, r#""2025-02-30T00:00:00Z""#);
    assert!(e.expected.contains("a day that exists in that month"), "{e}");
    assert!(parse_err(r#"added_at before "yesterday""#).expected.contains("RFC 3339"));
}

#[test]
fn given_an_operator_the_field_kind_does_not_take_when_parsed_then_the_error_lists_the_allowed_ones() {
    let e = parse_err(r#"age contains "3""#);
    assert_eq!((e.position, e.found.as_str()), (5, "`contains`"));
    assert!(e.expected.contains("integer field age") && e.expected.contains("between"), "{e}");
    let e = parse_err(r#"country > "a""#);
    assert!(e.expected.contains("text field country") && e.expected.contains("starts_with"), "{e}");
    let e = parse_err(r#"added_at in ("2025-01-01T00:00:00Z")"#);
    assert!(e.expected.contains("date-time field added_at"), "{e}");
    let e = parse_err(r#"country not in_list ("a")"#);
    assert_eq!(e.found, "`in_list`");
    let e = parse_err(r#"country is not_empty"#);
    assert_eq!(e.found, "`not_empty`");
    let e = parse_err(r#"country == "a""#);
    assert_eq!((e.position, e.found.as_str()), (10, "`=`"));
    let e = parse_err(r#"country ! "a""#);
    assert_eq!((e.position, e.found.as_str()), (9, "`!`"));
    let e = parse_err(r#"country not is_empty"#);
    assert!(e.expected.contains("\"in\" or \"contains\""), "{e}");
    let e = parse_err(r#"country not_in ("a") or age between 1 or 2"#);
    assert!(e.expected.contains("\"and\""), "{e}");
}

#[test]
fn given_empty_or_dangling_input_when_parsed_then_the_error_says_a_condition_was_expected() {
    for (input, position, found) in [
        ("", 1, "end of input"),
        ("   ", 4, "end of input"),
        ("age = 1 and", 12, "end of input"),
        ("and age = 1", 1, "`and`"),
        ("age = 1 or or age = 2", 12, "`or`"),
        ("not", 4, "end of input"),
        ("()", 2, "`)`"),
        ("@", 1, "`@`"),
    ] {
        let e = parse_err(input);
        assert_eq!((e.position, e.found.as_str()), (position, found), "{input:?}: {e}");
        assert!(e.expected.contains("a condition"), "{input:?}: {e}");
    }
}

#[test]
fn given_trailing_garbage_when_parsed_then_it_is_reported() {
    let e = parse_err(r#"age = 1 country = "x""#);
    assert_eq!((e.position, e.found.as_str()), (9, "`country`"));
    assert!(e.expected.contains("\"and\", \"or\""), "{e}");
    let e = parse_err("age = 1 2");
    assert_eq!(e.position, 9);
}

#[test]
fn given_an_unterminated_string_or_bad_escape_when_parsed_then_the_error_says_where() {
    let e = parse_err(r#"city = "abc"#);
    assert_eq!((e.position, e.found.as_str()), (12, "end of input"));
    assert!(e.expected.contains("column 8"), "{e}");
    let e = parse_err(r#"city = "abc\"#);
    assert_eq!(e.found, "end of input");
    let e = parse_err(r#"city = "a\qb""#);
    assert_eq!((e.position, e.found.as_str()), (10, r"`\q`"));
}

#[test]
fn given_text_longer_than_the_limit_when_parsed_then_it_is_refused_before_parsing() {
    let long = format!("city = \"{}\"", "x".repeat(MAX_TEXT_LEN));
    let e = parse_err(&long);
    assert_eq!(e.position, MAX_TEXT_LEN + 1);
    assert!(e.expected.contains("16384"), "{e}");
    // Exactly at the limit is fine.
    let fits = format!("city = \"{}\"", "x".repeat(MAX_TEXT_LEN - 9));
    assert_eq!(fits.len(), MAX_TEXT_LEN);
    parse(&fits);
}

#[test]
fn given_compact_text_whose_canonical_form_is_too_long_when_parsed_then_it_is_refused() {
    // `city="…" or ` grows by two bytes per condition when printed.
    let unit = format!(r#"city="{}" or "#, "x".repeat(69));
    let compact = unit.repeat(204) + "age=1";
    assert!(compact.len() <= MAX_TEXT_LEN);
    assert!(compact.replace('=', " = ").len() > MAX_TEXT_LEN);
    let e = parse_err(&compact);
    assert!(e.expected.contains("canonical"), "{e}");
}

#[test]
fn given_very_deep_nesting_when_parsed_then_it_fails_with_a_position_instead_of_overflowing() {
    // 100k deep is refused by the length limit before parsing starts ...
    assert!(parse_err(&("(".repeat(100_000) + "age = 1")).expected.contains("bytes"));
    // ... and as deep as fits in the limit, by the depth check while parsing.
    for opener in ["(", "not ", "not (", "(not "] {
        let text = opener.repeat((MAX_TEXT_LEN - 7) / opener.len()) + "age = 1";
        let e = parse_err(&text);
        assert!(e.expected.contains("levels of nesting"), "{e}");
        assert!(e.position > MAX_DEPTH && e.position <= 5 * MAX_DEPTH + 1, "{opener}: {e}");
    }
}

#[test]
fn given_nesting_at_the_limit_when_parsed_then_it_is_accepted_and_one_more_is_refused() {
    let ok = "(".repeat(MAX_DEPTH) + "age = 1" + &")".repeat(MAX_DEPTH);
    parse(&ok);
    let too_deep = "(".repeat(MAX_DEPTH + 1) + "age = 1" + &")".repeat(MAX_DEPTH + 1);
    let e = parse_err(&too_deep);
    assert_eq!((e.position, e.found.as_str()), (MAX_DEPTH + 1, "`(`"));
    let nots = "not ".repeat(MAX_DEPTH) + "age = 1";
    assert_round_trips(&parse(&nots));
    let e = parse_err(&("not ".repeat(MAX_DEPTH + 1) + "age = 1"));
    assert_eq!(e.position, 4 * MAX_DEPTH + 1);
}

#[test]
fn given_groups_nested_by_precedence_beyond_the_limit_when_parsed_then_the_tree_depth_is_refused() {
    // Each level is `age = 1 and (…) or age = 2`: one parenthesis but two
    // levels of groups (an ALL inside an ANY).
    let mut text = "age = 0".to_owned();
    for _ in 0..20 {
        text = format!("age = 1 and ({text}) or age = 2");
    }
    let e = parse_err(&text);
    assert!(e.expected.contains("levels of nesting"), "{e}");
    let mut text = "age = 0".to_owned();
    for _ in 0..15 {
        text = format!("age = 1 and ({text}) or age = 2");
    }
    assert_round_trips(&parse(&text));
}

#[test]
fn given_too_many_conditions_or_list_values_when_parsed_then_the_first_one_over_is_reported() {
    let many = vec!["age = 1"; MAX_CONDITIONS].join(" or ");
    parse(&many);
    let e = parse_err(&(many.clone() + " or age = 2"));
    assert_eq!(e.position, many.len() + 5);
    assert!(e.expected.contains("256 conditions"), "{e}");

    let list = |n: usize| format!("age in ({})", vec!["7"; n].join(","));
    parse(&list(MAX_LIST_VALUES));
    let e = parse_err(&list(MAX_LIST_VALUES + 1));
    assert_eq!(e.position, "age in (".len() + 2 * MAX_LIST_VALUES + 1);
    assert!(e.expected.contains("1000 values"), "{e}");
}

// ---------------------------------------------------------------- Condition::new and check_limits

#[test]
fn given_mismatched_operators_or_values_when_building_a_condition_then_the_error_names_field_operator_and_expectation()
{
    let e = Condition::new(Field::Age, Operator::Contains("3".into())).unwrap_err();
    assert!(matches!(e, CriteriaError::OperatorNotAllowed { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("age") && msg.contains("contains") && msg.contains("between"), "{msg}");

    let msg = Condition::new(Field::Age, Operator::Eq(text("x"))).unwrap_err().to_string();
    assert_eq!(msg, r#"field age, operator =: expected an integer, found the text "x""#);

    let msg = Condition::new(Field::Country, Operator::Gt(text("a"))).unwrap_err().to_string();
    assert!(msg.contains("country") && msg.contains('>') && msg.contains("not_contains"), "{msg}");

    let e = Condition::new(Field::AddedAt, Operator::Before(ts("2025-01-01T00:00:00Z")));
    assert!(e.is_ok());
    let msg = Condition::new(Field::Age, Operator::WithinLastDays(3)).unwrap_err().to_string();
    assert!(msg.contains("within_last"), "{msg}");
    let msg = Condition::new(Field::AddedAt, Operator::Between(Value::Time(Timestamp(0)), Value::Integer(1)))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("added_at") && msg.contains("between") && msg.contains("RFC 3339"), "{msg}");
}

#[test]
fn given_lists_when_building_a_condition_then_empty_and_oversized_lists_are_refused() {
    let e = Condition::new(Field::Country, Operator::In(vec![])).unwrap_err();
    assert_eq!(e, CriteriaError::EmptyList { field: "country".into(), operator: "in" });
    let e = Condition::new(Field::Age, Operator::NotIn(vec![Value::Integer(1); MAX_LIST_VALUES + 1])).unwrap_err();
    assert!(matches!(e, CriteriaError::TooManyValues { count: 1001, .. }), "{e:?}");
}

#[test]
fn given_an_integer_for_a_decimal_field_when_building_a_condition_then_it_becomes_a_decimal() {
    let c = Condition::new(Field::TotalSpent, Operator::Between(Value::Integer(2), Value::Decimal(Decimal(3_500_000))))
        .unwrap();
    assert_eq!(c.op, Operator::Between(Value::Decimal(Decimal(2_000_000)), Value::Decimal(Decimal(3_500_000))));
    assert!(Condition::new(Field::TotalSpent, Operator::Eq(Value::Integer(i64::MAX))).is_err());
}

#[test]
fn given_structured_trees_when_checked_then_bad_shapes_are_refused() {
    let a = cond(Field::Age, Operator::Eq(Value::Integer(1)));
    assert_eq!(Criteria::All(vec![]).check_limits(), Err(CriteriaError::EmptyGroup { group: "all" }));
    assert_eq!(
        Criteria::All(vec![a.clone(), Criteria::Any(vec![])]).check_limits(),
        Err(CriteriaError::EmptyGroup { group: "any" })
    );
    let bad_name = Criteria::Condition(Condition { field: Field::Custom("a b".into()), op: Operator::IsEmpty });
    let e = bad_name.check_limits().unwrap_err();
    assert!(matches!(e, CriteriaError::Field(_)) && e.to_string().contains("custom.a b"), "{e}");
    let bypassed = Criteria::Condition(Condition { field: Field::Age, op: Operator::Eq(text("x")) });
    assert!(matches!(bypassed.check_limits(), Err(CriteriaError::WrongValue { .. })));
    let too_many = Criteria::Any(vec![a.clone(); MAX_CONDITIONS + 1]);
    assert_eq!(too_many.check_limits(), Err(CriteriaError::TooManyConditions));
    let long = cond(Field::City, Operator::Eq(text(&"x".repeat(MAX_TEXT_LEN))));
    assert_eq!(long.check_limits(), Err(CriteriaError::TextTooLong));
    assert_eq!(Criteria::Any(vec![a]).check_limits(), Ok(()));
}

#[test]
fn given_deep_structured_trees_when_checked_then_the_limit_matches_what_the_parser_accepts() {
    let a = cond(Field::Age, Operator::Eq(Value::Integer(1)));
    let nest_groups = |n: usize| {
        let mut c = Criteria::All(vec![a.clone(), a.clone()]);
        for _ in 1..n {
            c = Criteria::All(vec![a.clone(), c]);
        }
        c
    };
    // The top group is level 0, so MAX_DEPTH + 1 groups reach level MAX_DEPTH.
    let deepest = nest_groups(MAX_DEPTH + 1);
    assert_eq!(deepest.check_limits(), Ok(()));
    assert_round_trips(&deepest);
    assert_eq!(nest_groups(MAX_DEPTH + 2).check_limits(), Err(CriteriaError::TooDeep));

    let nest_nots = |n: usize| (0..n).fold(a.clone(), |c, _| Criteria::Not(Box::new(c)));
    assert_eq!(nest_nots(MAX_DEPTH).check_limits(), Ok(()));
    assert_round_trips(&nest_nots(MAX_DEPTH));
    assert_eq!(nest_nots(MAX_DEPTH + 1).check_limits(), Err(CriteriaError::TooDeep));
    // Deep enough to overflow a recursive check; this one must not recurse.
    let very_deep = nest_nots(200_000);
    assert_eq!(very_deep.check_limits(), Err(CriteriaError::TooDeep));
    // Dropping it recursively would overflow the test thread's stack.
    let mut node = very_deep;
    while let Criteria::Not(child) = node {
        node = *child;
    }
}

// ---------------------------------------------------------------- matching

#[test]
fn given_a_text_field_when_compared_then_case_is_ignored_unicode_included() {
    let mut c = contact();
    c.city = "München".into();
    c.country = "DE".into();
    assert!(matches(r#"city = "münchen""#, &c));
    assert!(matches(r#"city = "MÜNCHEN""#, &c));
    assert!(!matches(r#"city = "munchen""#, &c));
    assert!(matches(r#"country in ("us", "de")"#, &c));
    assert!(matches(r#"city contains "ÜNC""#, &c));
    assert!(matches(r#"city starts_with "mü""#, &c));
    assert!(matches(r#"city ends_with "HEN""#, &c));
    assert!(!matches(r#"city ends_with "münchenx""#, &c));
    // İ lowercases to two chars, i and a combining dot above.
    c.city = "İSTANBUL".into();
    let dot = '\u{307}';
    assert!(matches(&format!(r#"city = "i{dot}stanbul""#), &c));
    assert!(!matches(r#"city = "istanbul""#, &c));
    assert!(matches(&format!(r#"city starts_with "i{dot}st""#), &c));
    assert!(matches(r#"city ends_with "bul""#, &c));
    assert!(matches(&format!(r#"city contains "{dot}sta""#), &c));
}

#[test]
fn given_each_text_operator_when_the_value_is_present_then_it_behaves_as_named() {
    let mut c = contact();
    c.last_name = "Johnson".into();
    for (text, expected) in [
        (r#"last_name = "johnson""#, true),
        (r#"last_name = "john""#, false),
        (r#"last_name != "john""#, true),
        (r#"last_name != "JOHNSON""#, false),
        (r#"last_name in ("smith", "johnson")"#, true),
        (r#"last_name not_in ("smith", "johnson")"#, false),
        (r#"last_name not_in ("smith")"#, true),
        (r#"last_name contains "son""#, true),
        (r#"last_name contains """#, true),
        (r#"last_name contains "sonx""#, false),
        (r#"last_name not_contains "son""#, false),
        (r#"last_name not_contains "x""#, true),
        (r#"last_name starts_with "JOHN""#, true),
        (r#"last_name starts_with "son""#, false),
        (r#"last_name ends_with "son""#, true),
        (r#"last_name ends_with "john""#, false),
        (r#"last_name is_empty"#, false),
        (r#"last_name is_not_empty"#, true),
    ] {
        assert_eq!(matches(text, &c), expected, "{text}");
    }
}

#[test]
fn given_an_empty_value_when_compared_then_only_is_empty_and_the_negatives_are_true() {
    let c = contact(); // every optional field empty, custom fields absent
    let truths = [
        r#"last_name is_empty"#,
        r#"last_name != "x""#,
        r#"last_name not_in ("x")"#,
        r#"last_name not_contains "x""#,
        r#"custom.plan != "x""#,
        r#"custom.plan is_empty"#,
        "age is_empty",
        "age != 3",
        "age not_in (3)",
        "total_spent != 1",
        "last_opened_at is_empty",
        r#"last_opened_at != "2025-01-01T00:00:00Z""#,
        "not (age > 30)",
    ];
    for text in truths {
        assert!(matches(text, &c), "{text} should hold on an empty value");
    }
    let falsehoods = [
        r#"last_name = """#,
        r#"last_name = "x""#,
        r#"last_name in ("x", "")"#,
        r#"last_name contains """#,
        r#"last_name starts_with """#,
        r#"last_name ends_with """#,
        r#"last_name is_not_empty"#,
        r#"custom.plan = "x""#,
        "age = 0",
        "age in (0)",
        "age < 100",
        "age <= 100",
        "age > -100",
        "age >= -100",
        "age between -100 and 100",
        "age is_not_empty",
        "total_spent < 1",
        r#"last_opened_at < "2100-01-01T00:00:00Z""#,
        r#"last_opened_at before "2100-01-01T00:00:00Z""#,
        r#"last_opened_at after "1900-01-01T00:00:00Z""#,
        r#"last_opened_at between "1900-01-01T00:00:00Z" and "2100-01-01T00:00:00Z""#,
        "last_opened_at within_last 100000 days",
        "last_opened_at more_than 0 days ago",
    ];
    for text in falsehoods {
        assert!(!matches(text, &c), "{text} should not hold on an empty value");
    }
}

#[test]
fn given_numbers_when_compared_then_they_compare_numerically_and_between_is_inclusive() {
    let mut c = contact();
    c.age = Some(30);
    c.total_spent = Some(Decimal::parse("1000.10").unwrap());
    for (text, expected) in [
        ("age = 30", true),
        ("age != 30", false),
        ("age in (1, 30)", true),
        ("age < 30", false),
        ("age <= 30", true),
        ("age > 29", true),
        ("age >= 31", false),
        ("age between 30 and 34", true),
        ("age between 25 and 30", true),
        ("age between 31 and 34", false),
        ("age between 34 and 25", false),
        ("total_spent = 1000.1", true),
        ("total_spent = 1000.100001", false),
        ("total_spent > 1000.09", true),
        ("total_spent > 1000", true),
        ("total_spent < 1000.10", false),
        ("total_spent between 1000.1 and 1000.1", true),
        ("total_spent not_in (1000.1, 3)", false),
    ] {
        assert_eq!(matches(text, &c), expected, "{text}");
    }
}

#[test]
fn given_dates_when_compared_then_before_and_after_are_strict() {
    let mut c = contact();
    c.last_purchase_at = Some(ts("2025-03-01T12:00:00Z"));
    for (text, expected) in [
        (r#"last_purchase_at = "2025-03-01T14:00:00+02:00""#, true),
        (r#"last_purchase_at before "2025-03-01T12:00:00Z""#, false),
        (r#"last_purchase_at before "2025-03-01T12:00:00.001Z""#, true),
        (r#"last_purchase_at after "2025-03-01T12:00:00Z""#, false),
        (r#"last_purchase_at after "2025-03-01T11:59:59.999Z""#, true),
        (r#"last_purchase_at <= "2025-03-01T12:00:00Z""#, true),
        (r#"last_purchase_at between "2025-03-01T12:00:00Z" and "2025-03-01T12:00:00Z""#, true),
        (r#"added_at > "2025-05-31T23:59:59Z""#, true),
    ] {
        assert_eq!(matches(text, &c), expected, "{text}");
    }
}

#[test]
fn given_a_pinned_clock_when_relative_dates_are_evaluated_then_the_bounds_are_exact() {
    // given `at` = 2026-11-01T00:00:00Z; 90 days before is 2026-08-03T00:00:00Z
    let mut c = contact();
    let bound = ts("2026-08-03T00:00:00Z");
    assert_eq!(at().minus_days(90), bound);
    let check = |c: &Contact, within: bool, older: bool| {
        assert_eq!(matches("last_opened_at within_last 90 days", c), within, "{:?}", c.last_opened_at);
        assert_eq!(matches("last_opened_at more_than 90 days ago", c), older, "{:?}", c.last_opened_at);
    };
    // when the value is exactly on the bound, then it is within (inclusive)
    c.last_opened_at = Some(bound);
    check(&c, true, false);
    c.last_opened_at = Some(Timestamp(bound.0 - 1));
    check(&c, false, true);
    c.last_opened_at = Some(at());
    check(&c, true, false);
    // a value after `at` is in the future: not within the last days
    c.last_opened_at = Some(Timestamp(at().0 + 1));
    check(&c, false, false);
    // and the relative form of Q7 agrees with its absolute form at this clock
    c.lifecycle_stage = "customer".into();
    for t in [bound.0 - 1, bound.0, bound.0 + 1, at().0] {
        c.last_opened_at = Some(Timestamp(t));
        assert_eq!(
            matches(r#"last_opened_at within_last 90 days and lifecycle_stage != "subscriber""#, &c),
            matches(STANDARD[6], &c)
        );
    }
}

#[test]
fn given_groups_when_evaluated_then_all_any_and_not_combine_as_booleans() {
    let mut c = contact();
    c.country = "FR".into();
    c.age = Some(40);
    c.score = Some(160);
    assert!(matches(STANDARD[4], &c));
    c.score = Some(10);
    assert!(!matches(STANDARD[4], &c));
    assert!(matches(r#"not (country = "US")"#, &c));
    assert!(!matches(r#"not (country = "fr")"#, &c));
    assert!(matches(r#"not not (country = "fr")"#, &c));
    assert!(matches(r#"country = "x" or age = 40"#, &c));
    assert!(!matches(r#"country = "x" and age = 40"#, &c));
    // NOT of a comparison on an empty value is true (a plain boolean NOT).
    assert!(matches("not (purchase_count > 0)", &c));
    // Vacuous groups, which check_limits refuses, still evaluate sensibly.
    assert!(Criteria::All(vec![]).matches(&c, at()));
    assert!(!Criteria::Any(vec![]).matches(&c, at()));
}

#[test]
fn given_custom_fields_when_evaluated_then_missing_ones_are_empty() {
    let mut c = contact();
    c.custom.insert("plan".into(), "Enterprise".into());
    c.custom.insert("industry".into(), "Software".into());
    assert!(matches(STANDARD[8], &c));
    assert!(matches("custom.region is_empty", &c));
    assert!(!matches(r#"custom.region = "x""#, &c));
}

// ---------------------------------------------------------------- properties

fn field_strategy() -> impl Strategy<Value = Field> {
    prop_oneof![
        prop::sample::select(Field::BUILTIN.to_vec()),
        prop::sample::select(vec!["plan", "industry", "a-b_C9"]).prop_map(|n| Field::Custom(n.to_owned())),
    ]
}

fn awkward_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        "[a-zA-Z \"\\\\()]{0,10}",
        prop::sample::select(vec![
            "",
            "and",
            "or",
            "not",
            "NOT (",
            ")",
            "(",
            "\"",
            "\\",
            "\\\"",
            "\"\\",
            "München",
            "İstanbul",
            "ΣΑΣ",
            "日本語",
            "a\"b\\c",
            " x in (\"y\") ",
            "\n\t\r",
            "\u{0}",
            "🦀",
            "between 1 and 2",
        ])
        .prop_map(str::to_owned),
    ]
}

fn value_for(kind: crate::contact::FieldKind) -> BoxedStrategy<Value> {
    use crate::contact::FieldKind as K;
    match kind {
        K::Text => awkward_text().prop_map(Value::Text).boxed(),
        K::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
        K::Decimal => prop_oneof![((i64::MIN + 1)..=i64::MAX), -10_000_000i64..10_000_000]
            .prop_map(|v| Value::Decimal(Decimal(v)))
            .boxed(),
        K::Time => timestamp().prop_map(Value::Time).boxed(),
    }
}

const LEAVES: Leaves =
    Leaves { field: || field_strategy().boxed(), value: value_for, text: || awkward_text().boxed(), max_list: 4 };

fn condition_strategy() -> impl Strategy<Value = Criteria> {
    LEAVES.condition()
}

fn segment_ref_strategy() -> impl Strategy<Value = Criteria> {
    prop_oneof![
        any::<u64>().prop_map(SegmentRef::Id),
        "[A-Za-z\"\\\\é][A-Za-z0-9 \"\\\\é()]{0,8}[A-Za-z]".prop_map(SegmentRef::Name),
    ]
    .prop_map(Criteria::InSegment)
}

fn criteria_strategy() -> impl Strategy<Value = Criteria> {
    prop_oneof![9 => condition_strategy(), 1 => segment_ref_strategy()].prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..5).prop_map(Criteria::All),
            prop::collection::vec(inner.clone(), 2..5).prop_map(Criteria::Any),
            inner.prop_map(|c| Criteria::Not(Box::new(c))),
        ]
    })
}

fn token_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "(",
        ")",
        "and",
        "or",
        "not",
        "age",
        "country",
        "custom.x",
        "added_at",
        "total_spent",
        "=",
        "!=",
        "<>",
        "<",
        ">=",
        "in",
        "not_in",
        "is",
        "empty",
        "between",
        "contains",
        "within_last",
        "more_than",
        "days",
        "ago",
        "1",
        "-2",
        "3.5",
        "\"x\"",
        "\"2025-01-01T00:00:00Z\"",
        ",",
        "\"",
        "\\",
        "é",
    ]);
    prop::collection::vec(token, 0..24).prop_map(|t| t.join(" "))
}

fn lower(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn case_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'A', 'ß', 'İ', 'i', '\u{307}', 'Σ', 'σ', 'ς', '\u{212A}', 'k', 'é']),
        0..6,
    )
    .prop_map(String::from_iter)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printing_then_parsing_gives_back_the_tree(c in criteria_strategy()) {
        prop_assert_eq!(c.check_limits(), Ok(()));
        let printed = c.to_string();
        prop_assert_eq!(Criteria::parse(&printed), Ok(c), "printed as {}", printed);
    }

    #[test]
    fn not_negates_whatever_the_contact(c in criteria_strategy(), age in prop::option::of(-5i64..100), city in awkward_text()) {
        let mut contact = contact();
        contact.age = age;
        contact.city = city;
        let negated = Criteria::Not(Box::new(c.clone()));
        prop_assert_eq!(negated.matches(&contact, at()), !c.matches(&contact, at()));
    }

    #[test]
    fn arbitrary_text_never_panics_and_what_parses_round_trips(text in prop_oneof![any::<String>(), token_soup()]) {
        if let Ok(c) = Criteria::parse(&text) {
            prop_assert_eq!(c.check_limits(), Ok(()));
            prop_assert_eq!(Criteria::parse(&c.to_string()), Ok(c));
        }
    }

    #[test]
    fn errors_point_inside_the_text(text in token_soup()) {
        if let Err(e) = Criteria::parse(&text) {
            prop_assert!(e.position >= 1 && e.position <= text.chars().count() + 1, "{}", e);
            prop_assert!(!e.expected.is_empty() && !e.found.is_empty());
        }
    }

    #[test]
    fn case_insensitive_helpers_agree_with_lowercasing_both_sides(a in case_text(), b in case_text()) {
        let (la, lb) = (lower(&a), lower(&b));
        prop_assert_eq!(eq_ci(&a, &b), la == lb);
        prop_assert_eq!(starts_with_ci(&a, &b), la.starts_with(&lb));
        prop_assert_eq!(ends_with_ci(&a, &b), la.ends_with(&lb));
        prop_assert_eq!(contains_ci(&a, &b), la.contains(&lb));
    }

    #[test]
    fn ascii_fast_paths_agree_with_lowercasing_both_sides(a in "[a-cA-C]{0,6}", b in "[a-cA-C]{0,3}") {
        let (la, lb) = (lower(&a), lower(&b));
        prop_assert_eq!(eq_ci(&a, &b), la == lb);
        prop_assert_eq!(starts_with_ci(&a, &b), la.starts_with(&lb));
        prop_assert_eq!(ends_with_ci(&a, &b), la.ends_with(&lb));
        prop_assert_eq!(contains_ci(&a, &b), la.contains(&lb));
    }
}

// ---------------------------------------------------------- in segment

#[test]
fn given_in_segment_by_name_or_id_when_parsed_then_printed_canonically() {
    assert_eq!(parse(r#"IN SEGMENT "Young EU""#), Criteria::InSegment(SegmentRef::Name("Young EU".into())));
    assert_eq!(parse("in segment 12").to_string(), "in segment 12");
    let text = r#"not in segment "Buyers" and (in segment 3 or age > 30)"#;
    assert_eq!(parse(text).to_string(), r#"not (in segment "Buyers") and (in segment 3 or age > 30)"#);
    assert_eq!(parse(&parse(text).to_string()), parse(text));
}

#[test]
fn given_a_malformed_in_segment_when_parsed_then_the_error_says_what_was_expected() {
    let e = parse_err("in segmnt 3");
    assert!(e.expected.contains("\"segment\" after \"in\""), "{e}");
    let e = parse_err("in segment age");
    assert!(e.expected.contains("segment name in quotes or a segment id"), "{e}");
    let e = parse_err(r#"in segment "  ""#);
    assert_eq!(e.position, 12, "{e}");
    let e = parse_err("in segment -3");
    assert!(e.expected.contains("segment id"), "{e}");
}

#[test]
fn given_segments_when_matched_in_then_in_segment_follows_their_criteria() {
    let young = parse("age < 30");
    let young_de = parse(r#"in segment 1 and country = "DE""#);
    let lookup = |id: u64| match id {
        1 => Some(&young),
        2 => Some(&young_de),
        _ => None,
    };
    let c = Contact { age: Some(25), country: "de".into(), ..contact() };
    assert!(parse("in segment 2").matches_in(&c, at(), &lookup));
    assert!(!parse("not in segment 2").matches_in(&c, at(), &lookup));
    assert!(!parse("in segment 9").matches_in(&c, at(), &lookup), "an unknown segment matches no one");
    assert!(!parse("in segment 2").matches(&c, at()), "without segments, in segment is false");
    let old = Contact { age: Some(45), ..c };
    assert!(!parse("in segment 2").matches_in(&old, at(), &lookup));
}

#[test]
fn given_a_cycle_that_slipped_through_when_matched_then_the_nesting_limit_stops_it() {
    let selfish = parse("in segment 1 or age < 30");
    let lookup = |_: u64| Some(&selfish);
    let c = Contact { age: Some(45), ..contact() };
    assert!(!selfish.matches_in(&c, at(), &lookup));
}
