//! The canonical text form, which events store: one spelling per operator,
//! single spaces, every group inside a group parenthesized and `not (…)`
//! always with parentheses, so that parsing it gives back the same tree.

use super::ast::{Condition, Criteria, Operator, SegmentRef, Value};
use std::fmt::{self, Write};

impl fmt::Display for Criteria {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_node(self, f, false)
    }
}

fn write_node(node: &Criteria, f: &mut fmt::Formatter<'_>, in_group: bool) -> fmt::Result {
    match node {
        Criteria::All(children) | Criteria::Any(children) => {
            let joiner = if matches!(node, Criteria::All(_)) { " and " } else { " or " };
            match children.as_slice() {
                // Not valid (check_limits refuses it); printed so that
                // parsing it fails loudly instead of meaning something else.
                [] => f.write_str("()"),
                [only] => write_node(only, f, in_group),
                _ => {
                    if in_group {
                        f.write_char('(')?;
                    }
                    for (i, child) in children.iter().enumerate() {
                        if i > 0 {
                            f.write_str(joiner)?;
                        }
                        write_node(child, f, true)?;
                    }
                    if in_group {
                        f.write_char(')')?;
                    }
                    Ok(())
                }
            }
        }
        Criteria::Not(child) => {
            f.write_str("not (")?;
            write_node(child, f, false)?;
            f.write_char(')')
        }
        Criteria::Condition(c) => write!(f, "{c}"),
        Criteria::InSegment(SegmentRef::Id(id)) => write!(f, "in segment {id}"),
        Criteria::InSegment(SegmentRef::Name(name)) => {
            f.write_str("in segment ")?;
            write_quoted(f, name)
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.op.name())?;
        match &self.op {
            Operator::Eq(v)
            | Operator::Ne(v)
            | Operator::Lt(v)
            | Operator::Le(v)
            | Operator::Gt(v)
            | Operator::Ge(v) => write!(f, " {v}"),
            Operator::In(vs) | Operator::NotIn(vs) => {
                f.write_str(" (")?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_char(')')
            }
            Operator::Contains(s) | Operator::NotContains(s) | Operator::StartsWith(s) | Operator::EndsWith(s) => {
                f.write_char(' ')?;
                write_quoted(f, s)
            }
            Operator::IsEmpty | Operator::IsNotEmpty => Ok(()),
            Operator::Between(low, high) => write!(f, " {low} and {high}"),
            Operator::Before(t) | Operator::After(t) => write!(f, " \"{t}\""),
            Operator::WithinLastDays(n) => write!(f, " {n} days"),
            Operator::MoreThanDaysAgo(n) => write!(f, " {n} days ago"),
        }
    }
}

impl fmt::Display for Value {
    /// As a literal in the text form: strings and date-times quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => write_quoted(f, s),
            Value::Integer(n) => write!(f, "{n}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Time(t) => write!(f, "\"{t}\""),
        }
    }
}

/// Escapes `"` and `\`, and writes line breaks and tabs as `\n`, `\r`, `\t`
/// so that the canonical text stays on one line; everything else is literal.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            _ => continue,
        };
        f.write_str(&s[plain_from..i])?;
        f.write_str(escape)?;
        plain_from = i + c.len_utf8();
    }
    f.write_str(&s[plain_from..])?;
    f.write_char('"')
}

/// Whether the canonical text of `c` is at most `limit` bytes, without
/// building it and stopping as soon as it is known to be longer.
pub(crate) fn text_len_at_most(c: &Criteria, limit: usize) -> bool {
    struct Counter {
        len: usize,
        limit: usize,
    }
    impl Write for Counter {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.len += s.len();
            if self.len > self.limit { Err(fmt::Error) } else { Ok(()) }
        }
    }
    write!(Counter { len: 0, limit }, "{c}").is_ok()
}
