//! Fuzz targets for the criteria parser, run as proptest properties (cargo-fuzz
//! needs a nightly toolchain; these run on stable, in `cargo test`).
//!
//! Whatever the text — arbitrary bytes read as UTF-8 lossily, arbitrary
//! Unicode, texts generated from the grammar (conditions and `in segment`
//! references) with every accepted spelling and then mutated, or
//! pathological shapes (10,000 open parentheses, strings past the size limit,
//! thousand-value lists) — [`Criteria::parse`] must not panic, and must either
//! refuse it with an error that points inside the text, or return a tree that
//! passes the limits and whose canonical text parses back to the same tree.
//! Texts generated from a tree, before mutation, must parse to exactly that
//! tree.
//!
//! `FUZZ_CASES=N` runs N cases per target instead of the few hundred that
//! keep `cargo test` short (see README, Production).

use proptest::prelude::*;
use proptest::sample::Index;
use segmentd_domain::criteria::strategies::{Leaves, timestamp};
use segmentd_domain::criteria::{Condition, MAX_DEPTH, MAX_TEXT_LEN, Operator, SegmentRef, Value};
use segmentd_domain::{Criteria, Decimal, Field, FieldKind};

/// Cases per target: `FUZZ_CASES` when set (a long run), else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = match std::env::var("FUZZ_CASES") {
        Ok(n) => n.parse().unwrap_or_else(|_| panic!("FUZZ_CASES must be a whole number, not {n:?}")),
        Err(_) => default,
    };
    ProptestConfig { cases, max_shrink_iters: 4096, ..ProptestConfig::default() }
}

/// The property every input must satisfy; see the module doc.
fn check(text: &str) -> Result<(), TestCaseError> {
    match Criteria::parse(text) {
        Err(e) => {
            let columns = text.chars().count() + 1;
            prop_assert!((1..=columns).contains(&e.position), "column {} outside 1..={columns}: {e}", e.position);
            prop_assert!(!e.expected.is_empty() && !e.found.is_empty(), "{e:?}");
        }
        Ok(tree) => {
            prop_assert_eq!(tree.check_limits(), Ok(()));
            let printed = tree.to_string();
            prop_assert!(printed.len() <= MAX_TEXT_LEN, "canonical text of {} bytes", printed.len());
            let again = Criteria::parse(&printed);
            prop_assert_eq!(again.as_ref(), Ok(&tree), "{:?} printed as {:?}", text, printed);
            // The canonical text is a fixed point: storing it twice changes nothing.
            prop_assert_eq!(again.map(|t| t.to_string()), Ok(printed));
        }
    }
    Ok(())
}

// ------------------------------------------------------------ trees to print

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => prop::sample::select(Field::BUILTIN.to_vec()),
        1 => "[A-Za-z0-9_-]{1,12}".prop_map(Field::Custom),
    ]
}

fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z \"\\\\()\n\t\r,]{0,12}",
        prop::sample::select(vec!["", "and", "or", "not (", ")", "\"", "\\", "München", "İ", "🦀", "\u{0}", "a\"b\\c"])
            .prop_map(str::to_owned),
    ]
}

fn value(kind: FieldKind) -> BoxedStrategy<Value> {
    match kind {
        FieldKind::Text => text_value().prop_map(Value::Text).boxed(),
        FieldKind::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
        // i64::MIN has no text form: its magnitude is one past what parses.
        FieldKind::Decimal => ((i64::MIN + 1)..=i64::MAX).prop_map(|v| Value::Decimal(Decimal(v))).boxed(),
        FieldKind::Time => timestamp().prop_map(Value::Time).boxed(),
    }
}

fn condition() -> impl Strategy<Value = Criteria> {
    Leaves { field: || field().boxed(), value, text: || text_value().boxed(), max_list: 5 }.condition()
}

/// `in segment 12` or `in segment "Name"`; the parser trims names and
/// refuses blank ones, so only those are trees it can give back.
fn in_segment() -> impl Strategy<Value = Criteria> {
    prop_oneof![
        any::<u64>().prop_map(SegmentRef::Id),
        text_value().prop_filter_map("a name that is not blank", |s| {
            let name = s.trim();
            (!name.is_empty()).then(|| SegmentRef::Name(name.to_owned()))
        }),
    ]
    .prop_map(Criteria::InSegment)
}

fn tree() -> impl Strategy<Value = Criteria> {
    prop_oneof![4 => condition(), 1 => in_segment()].prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..6).prop_map(Criteria::All),
            prop::collection::vec(inner.clone(), 2..6).prop_map(Criteria::Any),
            inner.prop_map(|c| Criteria::Not(Box::new(c))),
        ]
    })
}

// ------------------------------------------- the tree in one of its spellings

/// Writes a tree as a person might: any spelling the grammar accepts for each
/// keyword and operator, any whitespace, optional parentheses. `choices` are
/// random numbers consumed in order (cycled), so one strategy value fixes
/// every choice and proptest can shrink them.
struct Speller<'a> {
    choices: &'a [u8],
    next: usize,
    out: String,
}

impl Speller<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let c = self.choices[self.next % self.choices.len()];
        self.next += 1;
        usize::from(c) % n
    }

    /// One of the spellings of a keyword; all are the same to the parser.
    fn keyword(&mut self, canonical: &str) {
        let word = match self.pick(4) {
            0 => canonical.to_uppercase(),
            1 => {
                let mut cs = canonical.chars();
                cs.next().map(|c| c.to_uppercase().chain(cs).collect()).unwrap_or_default()
            }
            _ => canonical.to_owned(),
        };
        self.out.push_str(&word);
    }

    /// Whitespace between two tokens; none when `optional` (a symbol, a
    /// parenthesis or a string on one side separates them anyway).
    fn gap(&mut self, optional: bool) {
        let gap = match self.pick(8) {
            0 if optional => "",
            1 => "  ",
            2 => "\n",
            3 => "\t ",
            4 => " \r\n ",
            _ => " ",
        };
        self.out.push_str(gap);
    }

    fn node(&mut self, node: &Criteria, in_group: bool) {
        // Redundant parentheses around anything leave the tree alone.
        let extra = self.pick(10) == 0;
        if extra {
            self.out.push('(');
            self.gap(true);
        }
        match node {
            Criteria::All(children) | Criteria::Any(children) => {
                let joiner = if matches!(node, Criteria::All(_)) { "and" } else { "or" };
                if in_group {
                    self.out.push('(');
                    self.gap(true);
                }
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        self.gap(false);
                        self.keyword(joiner);
                        self.gap(false);
                    }
                    self.node(child, true);
                }
                if in_group {
                    self.gap(true);
                    self.out.push(')');
                }
            }
            Criteria::Not(child) => {
                self.keyword("not");
                // `not` before a condition or another `not` needs no parentheses.
                if !matches!(**child, Criteria::All(_) | Criteria::Any(_)) && self.pick(2) == 0 {
                    self.gap(false);
                    self.node(child, false);
                } else {
                    self.gap(true);
                    self.out.push('(');
                    self.gap(true);
                    self.node(child, false);
                    self.gap(true);
                    self.out.push(')');
                }
            }
            Criteria::Condition(c) => self.condition(c),
            Criteria::InSegment(target) => {
                self.keyword("in");
                self.gap(false);
                self.keyword("segment");
                match target {
                    SegmentRef::Id(id) => {
                        self.gap(false);
                        self.out.push_str(&id.to_string());
                    }
                    SegmentRef::Name(name) => {
                        self.gap(true);
                        self.value(&Value::Text(name.clone()));
                    }
                }
            }
        }
        if extra {
            self.gap(true);
            self.out.push(')');
        }
    }

    fn condition(&mut self, c: &Condition) {
        self.out.push_str(&c.field.to_string());
        let symbol = |s: &mut Self, symbol: &str| {
            s.gap(true);
            s.out.push_str(symbol);
            s.gap(true);
        };
        let word = |s: &mut Self, words: &[&str]| {
            for w in words {
                s.gap(false);
                s.keyword(w);
            }
            s.gap(false);
        };
        match &c.op {
            Operator::Eq(v) => {
                symbol(self, "=");
                self.value(v);
            }
            Operator::Ne(v) => {
                let spelling = if self.pick(2) == 0 { "!=" } else { "<>" };
                symbol(self, spelling);
                self.value(v);
            }
            Operator::Lt(v) => {
                symbol(self, "<");
                self.value(v);
            }
            Operator::Le(v) => {
                symbol(self, "<=");
                self.value(v);
            }
            Operator::Gt(v) => {
                symbol(self, ">");
                self.value(v);
            }
            Operator::Ge(v) => {
                symbol(self, ">=");
                self.value(v);
            }
            Operator::In(vs) | Operator::NotIn(vs) => {
                let words: &[&str] = match (&c.op, self.pick(2)) {
                    (Operator::In(_), _) => &["in"],
                    (_, 0) => &["not_in"],
                    _ => &["not", "in"],
                };
                for w in words {
                    self.gap(false);
                    self.keyword(w);
                }
                self.gap(true);
                self.out.push('(');
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        self.gap(true);
                        self.out.push(',');
                    }
                    self.gap(true);
                    self.value(v);
                }
                self.gap(true);
                self.out.push(')');
            }
            Operator::Contains(s) | Operator::NotContains(s) | Operator::StartsWith(s) | Operator::EndsWith(s) => {
                let words: &[&str] = match (&c.op, self.pick(2)) {
                    (Operator::Contains(_), _) => &["contains"],
                    (Operator::NotContains(_), 0) => &["not_contains"],
                    (Operator::NotContains(_), _) => &["not", "contains"],
                    (Operator::StartsWith(_), _) => &["starts_with"],
                    _ => &["ends_with"],
                };
                for w in words {
                    self.gap(false);
                    self.keyword(w);
                }
                self.gap(true);
                self.value(&Value::Text(s.clone()));
            }
            Operator::IsEmpty | Operator::IsNotEmpty => {
                let words: &[&str] = match (&c.op, self.pick(2)) {
                    (Operator::IsEmpty, 0) => &["is_empty"],
                    (Operator::IsEmpty, _) => &["is", "empty"],
                    (_, 0) => &["is_not_empty"],
                    _ => &["is", "not", "empty"],
                };
                for w in words {
                    self.gap(false);
                    self.keyword(w);
                }
            }
            Operator::Between(low, high) => {
                word(self, &["between"]);
                self.value(low);
                word(self, &["and"]);
                self.value(high);
            }
            Operator::Before(t) | Operator::After(t) => {
                word(self, &[if matches!(c.op, Operator::Before(_)) { "before" } else { "after" }]);
                self.value(&Value::Time(*t));
            }
            Operator::WithinLastDays(n) => {
                word(self, &["within_last"]);
                self.out.push_str(&n.to_string());
                word(self, &["days"]);
                self.out.truncate(self.out.trim_end().len());
            }
            Operator::MoreThanDaysAgo(n) => {
                word(self, &["more_than"]);
                self.out.push_str(&n.to_string());
                let tail: &[&str] = if self.pick(2) == 0 { &["days", "ago"] } else { &["days_ago"] };
                word(self, tail);
                self.out.truncate(self.out.trim_end().len());
            }
        }
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Text(s) => {
                self.out.push('"');
                for ch in s.chars() {
                    // Escapes are optional for line breaks and tabs, required
                    // for the quote and the backslash.
                    let literal = self.pick(2) == 0;
                    match ch {
                        '"' => self.out.push_str("\\\""),
                        '\\' => self.out.push_str("\\\\"),
                        '\n' if !literal => self.out.push_str("\\n"),
                        '\r' if !literal => self.out.push_str("\\r"),
                        '\t' if !literal => self.out.push_str("\\t"),
                        ch => self.out.push(ch),
                    }
                }
                self.out.push('"');
            }
            Value::Time(t) => {
                self.out.push('"');
                self.out.push_str(&t.to_string());
                self.out.push('"');
            }
            Value::Integer(n) => self.out.push_str(&n.to_string()),
            Value::Decimal(d) => self.out.push_str(&d.to_string()),
        }
    }
}

fn spell(tree: &Criteria, choices: &[u8]) -> String {
    let mut s = Speller { choices, next: 0, out: String::new() };
    s.gap(true);
    s.node(tree, false);
    s.gap(true);
    s.out
}

/// A tree that passes the limits, and one way of writing it.
fn spelled() -> impl Strategy<Value = (Criteria, String)> {
    (tree(), prop::collection::vec(any::<u8>(), 1..64))
        .prop_filter("within the limits", |(t, _)| t.check_limits().is_ok())
        .prop_map(|(t, choices)| {
            let text = spell(&t, &choices);
            (t, text)
        })
}

/// How deep the parser sees `text` nest: each `(` and each `not` is a level,
/// a `(` right after `not` is not (strings skipped).
fn text_levels(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped, mut after_not) = (0usize, 0usize, false, false, false);
    let mut word = String::new();
    let mut stack = Vec::new();
    for ch in text.chars().chain([' ']) {
        if in_string {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if ch.is_alphanumeric() || matches!(ch, '_' | '.' | '-') {
            word.push(ch);
            continue;
        }
        if !word.is_empty() {
            after_not = word.eq_ignore_ascii_case("not");
            if after_not {
                depth += 1;
                max = max.max(depth);
            }
            word.clear();
        }
        match ch {
            '"' => in_string = true,
            '(' => {
                stack.push(!after_not);
                if !after_not {
                    depth += 1;
                }
                max = max.max(depth);
            }
            ')' => depth -= usize::from(stack.pop().unwrap_or(false)),
            _ => {}
        }
        if !ch.is_whitespace() {
            after_not = false;
        }
    }
    max
}

// ---------------------------------------------------------------- mutations

/// Tokens a mutation may insert: fragments of the grammar and characters that
/// lexers get wrong.
const SOUP: &[&str] = &[
    "(",
    ")",
    "((",
    "))",
    ",",
    "\"",
    "\\",
    "\\\"",
    " and ",
    " or ",
    "not ",
    "not (",
    " in (",
    " not in ",
    " is ",
    " empty",
    " between ",
    " days",
    " ago",
    "in segment ",
    " segment",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "-",
    "--1",
    "0",
    "1.5",
    "-0",
    "9223372036854775808",
    "99999999999999999999.9",
    "4294967296",
    "\"2025-01-01T00:00:00Z\"",
    "\"2025-02-30T00:00:00Z\"",
    "custom.",
    "custom.x",
    "age",
    "country",
    "added_at",
    "total_spent",
    "é",
    "İ",
    "\u{0}",
    "\u{FEFF}",
    "\u{FFFD}",
    "\u{202E}",
    "🦀",
    "\n",
    "\t",
    " ",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete(Index, usize),
    Insert(Index, &'static str),
    InsertChar(Index, char),
    Duplicate(Index, usize),
    Truncate(Index),
    Swap(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1usize..8).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<Index>(), prop::sample::select(SOUP)).prop_map(|(at, s)| Mutation::Insert(at, s)),
        (any::<Index>(), any::<char>()).prop_map(|(at, c)| Mutation::InsertChar(at, c)),
        (any::<Index>(), 1usize..24).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
    ]
}

/// Applies `m` on character boundaries, so the text stays a `&str`.
fn mutate(text: &mut String, m: &Mutation) {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let at = |i: &Index| bounds[i.index(bounds.len())];
    let after = |from: usize, n: usize| bounds.iter().copied().find(|&b| b >= from + n).unwrap_or(text.len());
    match m {
        Mutation::Delete(i, n) => {
            let start = at(i);
            text.replace_range(start..after(start, *n), "");
        }
        Mutation::Insert(i, s) => text.insert_str(at(i), s),
        Mutation::InsertChar(i, c) => text.insert(at(i), *c),
        Mutation::Duplicate(i, n) => {
            let start = at(i);
            let span = text[start..after(start, *n)].to_owned();
            text.insert_str(start, &span);
        }
        Mutation::Truncate(i) => text.truncate(at(i)),
        Mutation::Swap(a, b) => {
            let (x, y) = (at(a).min(at(b)), at(a).max(at(b)));
            let mid = text[x..y].to_owned();
            let swapped: String = mid.chars().rev().collect();
            text.replace_range(x..y, &swapped);
        }
    }
}

// -------------------------------------------------------- pathological shapes

/// Inputs shaped to exhaust a recursive-descent parser or a careless lexer:
/// nesting far past the limit, values past every size limit, long runs.
fn pathological() -> impl Strategy<Value = String> {
    let cond = prop::sample::select(vec![
        "age > 1",
        "country = \"DE\"",
        "custom.x is empty",
        "added_at within_last 3 days",
        "in segment 7",
        "in segment \"Young\"",
    ]);
    prop_oneof![
        (0usize..20_000, cond.clone(), any::<bool>()).prop_map(|(n, c, close)| {
            format!("{}{c}{}", "(".repeat(n), if close { ")".repeat(n) } else { String::new() })
        }),
        (0usize..6_000, cond.clone()).prop_map(|(n, c)| format!("{}{c}", "not ".repeat(n))),
        (0usize..4_000, cond.clone()).prop_map(|(n, c)| format!("{}{c}{}", "not (".repeat(n), ")".repeat(n))),
        (1usize..600, cond.clone(), prop::sample::select(vec![" and ", " or "]))
            .prop_map(|(n, c, j)| vec![c; n].join(j)),
        (0usize..40_000, any::<char>()).prop_map(|(n, ch)| format!("city = \"{}\"", ch.to_string().repeat(n))),
        (0usize..20_000).prop_map(|n| format!("city = \"{}", "x".repeat(n))),
        (0usize..20_000).prop_map(|n| format!("city = \"{}\"", "\\".repeat(n))),
        (0usize..20_000).prop_map(|n| format!("age = {}", "9".repeat(n))),
        (0usize..20_000).prop_map(|n| format!("total_spent > 0.{}", "1".repeat(n))),
        (0usize..20_000).prop_map(|n| format!("custom.{} = \"a\"", "a".repeat(n))),
        (0usize..2_000)
            .prop_map(|n| format!("age in ({})", (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(","))),
        (0usize..2_000).prop_map(|n| format!("country in ({})", vec!["\"x\""; n].join(", "))),
        (0usize..20_000).prop_map(|n| " ".repeat(n)),
        (0usize..20_000).prop_map(|n| "\u{FFFD}".repeat(n)),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_bytes_read_lossily(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_unicode(text in prop_oneof![any::<String>(), ".{0,400}", "[ -~]{0,400}"]) {
        check(&text)?;
    }
}

proptest! {
    // Generating a tree takes longer than random text.
    #![proptest_config(config(500))]

    #[test]
    fn spelled_trees_parse_to_themselves((tree, text) in spelled()) {
        check(&text)?;
        // Redundant parentheses can take a valid tree's text past the depth
        // limit, and whitespace past the size limit; then a refusal is right.
        let expected = if text_levels(&text) > MAX_DEPTH || text.len() > MAX_TEXT_LEN { None } else { Some(&tree) };
        let parsed = Criteria::parse(&text);
        prop_assert_eq!(parsed.as_ref().ok(), expected, "{:?} gave {:?}", text, parsed);
    }

    #[test]
    fn mutated_trees((_, text) in spelled(), mutations in prop::collection::vec(mutation(), 1..8)) {
        let mut text = text;
        for m in &mutations {
            mutate(&mut text, m);
        }
        check(&text)?;
    }
}

proptest! {
    // Each case is up to tens of kilobytes; fewer are enough to cover the shapes.
    #![proptest_config(config(200))]

    #[test]
    fn pathological_shapes(text in pathological()) {
        check(&text)?;
    }
}

// Fixed seeds for the shapes a stack-based parser dies on.

#[test]
fn ten_thousand_open_parentheses_are_too_deep() {
    // Unclosed: with the closing ones the text would be past the size limit.
    let text = format!("{}age > 1", "(".repeat(10_000));
    let e = Criteria::parse(&text).unwrap_err();
    assert!(e.expected.contains("levels of nesting"), "{e}");
    assert_eq!(e.position, MAX_DEPTH + 1, "{e}");
}

#[test]
fn four_thousand_nots_are_too_deep() {
    // As many as fit in the size limit.
    let e = Criteria::parse(&format!("{}age > 1", "not ".repeat(4_000))).unwrap_err();
    assert!(e.expected.contains("levels of nesting"), "{e}");
}

#[test]
fn text_past_the_size_limit_is_refused_before_parsing() {
    let text = "(".repeat(MAX_TEXT_LEN + 1);
    let e = Criteria::parse(&text).unwrap_err();
    assert!(e.expected.contains(&MAX_TEXT_LEN.to_string()), "{e}");
}
