//! The text form's lexer and recursive-descent parser. Values are typed by
//! the field they are compared with, limits are enforced while parsing (so a
//! hostile input cannot exhaust the stack or memory), and every error says
//! where (1-based character column), what was expected and what was found.

use super::ast::{Condition, Criteria, Operator, SegmentRef, Value, kind_name, operators_for};
use super::print::text_len_at_most;
use super::{MAX_CONDITIONS, MAX_DEPTH, MAX_LIST_VALUES, MAX_TEXT_LEN};
use crate::contact::{Field, FieldKind};
use crate::decimal::Decimal;
use crate::time::Timestamp;
use std::str::FromStr;

/// Why a text is not valid criteria, displayed as, for example:
/// ``at column 23: expected a value, found `)` ``.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at column {position}: expected {expected}, found {found}")]
pub struct ParseError {
    /// 1-based column, counted in characters (not bytes).
    pub position: usize,
    pub expected: String,
    pub found: String,
}

impl Criteria {
    /// Parses the text form, e.g.
    /// `country in ("DE","FR") and (age between 25 and 34 or score > 200)`.
    /// The result always passes [`Criteria::check_limits`].
    pub fn parse(text: &str) -> Result<Criteria, ParseError> {
        if text.len() > MAX_TEXT_LEN {
            let mut cut = MAX_TEXT_LEN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            return Err(error_at(
                text,
                cut,
                format!("at most {MAX_TEXT_LEN} bytes of criteria text"),
                format!("{} bytes", text.len()),
            ));
        }
        let mut p = Parser { src: text, lexer: Lexer { src: text, pos: 0 }, peeked: None, conditions: 0 };
        let root = p.parse_or(0)?;
        let tok = p.next()?;
        if tok.tok != Tok::End {
            return Err(p.err(&tok, "\"and\", \"or\" or end of input"));
        }
        // The canonical text spaces things out, so input just under the limit
        // can print over it, and then the stored text would not parse back.
        if !text_len_at_most(&root.tree, MAX_TEXT_LEN) {
            return Err(error_at(
                text,
                0,
                format!("criteria whose canonical text form is at most {MAX_TEXT_LEN} bytes"),
                "criteria that print longer".to_owned(),
            ));
        }
        debug_assert_eq!(root.tree.check_limits(), Ok(()));
        Ok(root.tree)
    }
}

impl FromStr for Criteria {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Criteria::parse(s)
    }
}

fn error_at(src: &str, byte_pos: usize, expected: impl Into<String>, found: String) -> ParseError {
    ParseError { position: src[..byte_pos].chars().count() + 1, expected: expected.into(), found }
}

fn too_deep() -> String {
    format!("at most {MAX_DEPTH} levels of nesting (each not, and each group inside another group, is a level)")
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    /// Unvalidated: digits, an optional leading `-`, and whatever letters,
    /// digits, `_` or `.` follow, so that `25abc` is reported whole.
    Number(&'a str),
    /// With escapes resolved.
    Str(String),
    LParen,
    RParen,
    Comma,
    /// A comparison symbol in its canonical spelling (`<>` becomes `!=`).
    Cmp(&'static str),
    /// A character that starts no token; the parser says what it expected.
    Bad,
    End,
}

#[derive(Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    /// Byte offsets into the source.
    start: usize,
    end: usize,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn next(&mut self) -> Result<Token<'a>, ParseError> {
        let rest = &self.src[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let mut chars = trimmed.chars();
        let Some(c) = chars.next() else {
            return Ok(Token { tok: Tok::End, start, end: start });
        };
        let second = chars.next();
        let run_len = |from: usize, more: fn(char) -> bool| {
            trimmed[from..].find(|c: char| !more(c)).map_or(trimmed.len(), |i| from + i)
        };
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '=' => (Tok::Cmp("="), 1),
            '!' if second == Some('=') => (Tok::Cmp("!="), 2),
            '<' => match second {
                Some('=') => (Tok::Cmp("<="), 2),
                Some('>') => (Tok::Cmp("!="), 2),
                _ => (Tok::Cmp("<"), 1),
            },
            '>' => match second {
                Some('=') => (Tok::Cmp(">="), 2),
                _ => (Tok::Cmp(">"), 1),
            },
            '"' => return self.string(start),
            '0'..='9' | '-' if c != '-' || second.is_some_and(|d| d.is_ascii_digit()) => {
                let len = run_len(1, |c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                (Tok::Number(&trimmed[..len]), len)
            }
            c if c.is_alphabetic() || c == '_' => {
                let len = run_len(c.len_utf8(), |c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'));
                (Tok::Word(&trimmed[..len]), len)
            }
            c => (Tok::Bad, c.len_utf8()),
        };
        self.pos += len;
        Ok(Token { tok, start, end: self.pos })
    }

    fn string(&mut self, start: usize) -> Result<Token<'a>, ParseError> {
        let body = &self.src[start + 1..];
        let mut out = String::new();
        let mut chars = body.char_indices();
        let unterminated = || {
            let column = self.src[..start].chars().count() + 1;
            error_at(
                self.src,
                self.src.len(),
                format!("`\"` to end the string that starts at column {column}"),
                "end of input".to_owned(),
            )
        };
        loop {
            match chars.next() {
                None => return Err(unterminated()),
                Some((i, '"')) => {
                    self.pos = start + 1 + i + 1;
                    return Ok(Token { tok: Tok::Str(out), start, end: self.pos });
                }
                Some((i, '\\')) => match chars.next() {
                    None => return Err(unterminated()),
                    Some((_, c @ ('"' | '\\'))) => out.push(c),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, other)) => {
                        return Err(error_at(
                            self.src,
                            start + 1 + i,
                            r#"an escape: \" \\ \n \r or \t"#,
                            format!("`\\{other}`"),
                        ));
                    }
                },
                Some((_, c)) => out.push(c),
            }
        }
    }
}

/// A parsed sub-expression, with what the depth limit needs to know about it.
struct Node {
    tree: Criteria,
    /// Levels of nesting inside the node, counted as `check_limits` does.
    levels: usize,
    /// Byte offset of its first token, for errors about the whole node.
    start: usize,
}

struct Parser<'a> {
    src: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Token<'a>>,
    conditions: usize,
}

// Single-word operators, in their canonical spelling; matched ignoring case.
const WORD_OPERATORS: &[&str] = &[
    "in",
    "not_in",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "is_empty",
    "is_not_empty",
    "between",
    "before",
    "after",
    "within_last",
    "more_than",
];

fn is_keyword(tok: &Token<'_>, keyword: &str) -> bool {
    matches!(tok.tok, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Result<Token<'a>, ParseError> {
        match self.peeked.take() {
            Some(tok) => Ok(tok),
            None => self.lexer.next(),
        }
    }

    fn peek(&mut self) -> Result<&Token<'a>, ParseError> {
        let tok = match self.peeked.take() {
            Some(tok) => tok,
            None => self.lexer.next()?,
        };
        Ok(self.peeked.insert(tok))
    }

    fn peek_keyword(&mut self, keyword: &str) -> Result<bool, ParseError> {
        Ok(is_keyword(self.peek()?, keyword))
    }

    fn found(&self, tok: &Token<'_>) -> String {
        self.found_span(tok.start, tok.end, &tok.tok)
    }

    fn found_span(&self, start: usize, end: usize, tok: &Tok<'_>) -> String {
        const MAX_CHARS: usize = 40;
        let text = &self.src[start..end];
        let shown = match text.char_indices().nth(MAX_CHARS) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        };
        match tok {
            Tok::End => "end of input".to_owned(),
            // Already quoted.
            Tok::Str(_) => shown,
            _ => format!("`{shown}`"),
        }
    }

    fn err(&self, tok: &Token<'_>, expected: impl Into<String>) -> ParseError {
        error_at(self.src, tok.start, expected, self.found(tok))
    }

    /// For errors about a node already parsed: shows its first token.
    fn err_at_node(&self, start: usize, expected: impl Into<String>) -> ParseError {
        let found = match (Lexer { src: self.src, pos: start }).next() {
            Ok(tok) => self.found(&tok),
            Err(_) => "a string".to_owned(),
        };
        error_at(self.src, start, expected, found)
    }

    fn deeper(&self, nesting: usize, at: &Token<'_>) -> Result<usize, ParseError> {
        if nesting >= MAX_DEPTH { Err(self.err(at, too_deep())) } else { Ok(nesting + 1) }
    }

    /// `and_expr (or and_expr)*`; `nesting` counts the enclosing `not`s and
    /// parentheses, bounding the recursion.
    fn parse_or(&mut self, nesting: usize) -> Result<Node, ParseError> {
        let first = self.parse_and(nesting)?;
        if !self.peek_keyword("or")? {
            return Ok(first);
        }
        let mut children = vec![first];
        while self.peek_keyword("or")? {
            self.next()?;
            children.push(self.parse_and(nesting)?);
        }
        self.group(children, Criteria::Any)
    }

    fn parse_and(&mut self, nesting: usize) -> Result<Node, ParseError> {
        let first = self.parse_unary(nesting)?;
        if !self.peek_keyword("and")? {
            return Ok(first);
        }
        let mut children = vec![first];
        while self.peek_keyword("and")? {
            self.next()?;
            children.push(self.parse_unary(nesting)?);
        }
        self.group(children, Criteria::All)
    }

    fn group(&self, children: Vec<Node>, make: fn(Vec<Criteria>) -> Criteria) -> Result<Node, ParseError> {
        let start = children.first().map_or(0, |c| c.start);
        let mut levels = 0;
        for child in &children {
            // Precedence can nest groups without parentheses (`a and b or c`
            // is an ALL inside an ANY), so the depth is checked on the tree
            // too, not only on the parentheses.
            let at = child.levels + usize::from(child.tree.is_group());
            if at > MAX_DEPTH {
                return Err(self.err_at_node(child.start, too_deep()));
            }
            levels = levels.max(at);
        }
        Ok(Node { tree: make(children.into_iter().map(|c| c.tree).collect()), levels, start })
    }

    /// `not unary | ( expr ) | condition`.
    fn parse_unary(&mut self, nesting: usize) -> Result<Node, ParseError> {
        let tok = self.next()?;
        match tok.tok {
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => {
                let nesting = self.deeper(nesting, &tok)?;
                // `not (…)` is one level, as the printer writes every `not`.
                let child = if self.peek()?.tok == Tok::LParen {
                    let open = self.next()?;
                    let inner = self.parse_or(nesting)?;
                    self.close(&open)?;
                    inner
                } else {
                    self.parse_unary(nesting)?
                };
                let levels = child.levels + 1;
                if levels > MAX_DEPTH {
                    return Err(self.err(&tok, too_deep()));
                }
                Ok(Node { tree: Criteria::Not(Box::new(child.tree)), levels, start: tok.start })
            }
            Tok::LParen => {
                let nesting = self.deeper(nesting, &tok)?;
                let inner = self.parse_or(nesting)?;
                self.close(&tok)?;
                Ok(Node { start: tok.start, ..inner })
            }
            // No field is named `in` (custom fields carry a prefix).
            Tok::Word(w) if w.eq_ignore_ascii_case("in") => self.parse_in_segment(&tok),
            Tok::Word(w) if !w.eq_ignore_ascii_case("and") && !w.eq_ignore_ascii_case("or") => {
                self.parse_condition(w, &tok)
            }
            _ => Err(self.err(&tok, "a condition, \"not\" or \"(\"")),
        }
    }

    fn close(&mut self, open: &Token<'_>) -> Result<(), ParseError> {
        let tok = self.next()?;
        match tok.tok {
            Tok::RParen => Ok(()),
            Tok::End => Err(self.err(&tok, "\")\"")),
            _ => {
                let column = self.src[..open.start].chars().count() + 1;
                Err(self.err(&tok, format!("\"and\", \"or\" or \")\" to close the \"(\" at column {column}")))
            }
        }
    }

    /// `in segment "Name"` or `in segment 12` (an id), after `in`.
    fn parse_in_segment(&mut self, in_tok: &Token<'_>) -> Result<Node, ParseError> {
        self.count_condition(in_tok)?;
        self.keyword("segment", "\"segment\" after \"in\" (in segment \"Name\")")?;
        let tok = self.next()?;
        let target = match &tok.tok {
            Tok::Str(name) if !name.trim().is_empty() => SegmentRef::Name(name.trim().to_owned()),
            Tok::Number(n) => SegmentRef::Id(n.parse().map_err(|_| self.err(&tok, "a segment id (a whole number)"))?),
            _ => return Err(self.err(&tok, "a segment name in quotes or a segment id")),
        };
        Ok(Node { tree: Criteria::InSegment(target), levels: 0, start: in_tok.start })
    }

    fn count_condition(&mut self, at: &Token<'_>) -> Result<(), ParseError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(self.err(at, format!("at most {MAX_CONDITIONS} conditions")));
        }
        Ok(())
    }

    fn parse_condition(&mut self, name: &str, field_tok: &Token<'_>) -> Result<Node, ParseError> {
        let field = Field::parse(name).map_err(|e| self.err(field_tok, format!("a field name ({e})")))?;
        self.count_condition(field_tok)?;
        let kind = field.kind();
        let op_tok = self.next()?;
        let (name, op_end) = self.operator_name(&op_tok)?;
        let allowed = operators_for(kind);
        let Some(name) = name.filter(|n| allowed.contains(n)) else {
            let expected = format!("an operator that {} field {field} takes ({})", kind_name(kind), allowed.join(", "));
            let found = self.found_span(op_tok.start, op_end, &op_tok.tok);
            return Err(error_at(self.src, op_tok.start, expected, found));
        };
        let op = match name {
            "=" => Operator::Eq(self.value(&field)?),
            "!=" => Operator::Ne(self.value(&field)?),
            "<" => Operator::Lt(self.value(&field)?),
            "<=" => Operator::Le(self.value(&field)?),
            ">" => Operator::Gt(self.value(&field)?),
            ">=" => Operator::Ge(self.value(&field)?),
            "in" => Operator::In(self.list(&field)?),
            "not_in" => Operator::NotIn(self.list(&field)?),
            "contains" => Operator::Contains(self.string(&field)?),
            "not_contains" => Operator::NotContains(self.string(&field)?),
            "starts_with" => Operator::StartsWith(self.string(&field)?),
            "ends_with" => Operator::EndsWith(self.string(&field)?),
            "is_empty" => Operator::IsEmpty,
            "is_not_empty" => Operator::IsNotEmpty,
            "between" => {
                let low = self.value(&field)?;
                self.keyword("and", "\"and\" between the two values of between")?;
                Operator::Between(low, self.value(&field)?)
            }
            "before" => Operator::Before(self.timestamp(&field)?),
            "after" => Operator::After(self.timestamp(&field)?),
            "within_last" => {
                let days = self.days()?;
                self.keyword("days", "\"days\" after the number of days")?;
                Operator::WithinLastDays(days)
            }
            "more_than" => {
                let days = self.days()?;
                let tok = self.next()?;
                if is_keyword(&tok, "days") {
                    self.keyword("ago", "\"ago\" after \"days\"")?;
                } else if !is_keyword(&tok, "days_ago") {
                    return Err(self.err(&tok, "\"days ago\" after the number of days"));
                }
                Operator::MoreThanDaysAgo(days)
            }
            other => return Err(self.err(&op_tok, format!("a supported operator, not {other}"))),
        };
        // Cannot fail: the operator was checked against the field's kind and
        // every value was parsed as that kind.
        let condition = Condition::new(field, op).map_err(|e| self.err(&op_tok, format!("a valid condition ({e})")))?;
        Ok(Node { tree: Criteria::Condition(condition), levels: 0, start: field_tok.start })
    }

    /// Reads the operator starting at `tok` (two or three words for `not in`,
    /// `is not empty`, …): its canonical name, or `None` if it is no
    /// operator, and the byte offset where it ends.
    fn operator_name(&mut self, tok: &Token<'_>) -> Result<(Option<&'static str>, usize), ParseError> {
        let word = match tok.tok {
            Tok::Cmp(symbol) => return Ok((Some(symbol), tok.end)),
            Tok::Word(w) => w,
            _ => return Ok((None, tok.end)),
        };
        if word.eq_ignore_ascii_case("not") {
            let second = self.next()?;
            let name = if is_keyword(&second, "in") {
                "not_in"
            } else if is_keyword(&second, "contains") {
                "not_contains"
            } else {
                return Err(self.err(&second, "\"in\" or \"contains\" after \"not\""));
            };
            return Ok((Some(name), second.end));
        }
        if word.eq_ignore_ascii_case("is") {
            let second = self.next()?;
            if is_keyword(&second, "empty") {
                return Ok((Some("is_empty"), second.end));
            }
            if is_keyword(&second, "not") {
                let third = self.next()?;
                if is_keyword(&third, "empty") {
                    return Ok((Some("is_not_empty"), third.end));
                }
                return Err(self.err(&third, "\"empty\" after \"is not\""));
            }
            return Err(self.err(&second, "\"empty\" or \"not empty\" after \"is\""));
        }
        Ok((WORD_OPERATORS.iter().copied().find(|op| word.eq_ignore_ascii_case(op)), tok.end))
    }

    fn keyword(&mut self, keyword: &str, expected: &str) -> Result<(), ParseError> {
        let tok = self.next()?;
        if is_keyword(&tok, keyword) { Ok(()) } else { Err(self.err(&tok, expected)) }
    }

    /// A literal of the field's kind.
    fn value(&mut self, field: &Field) -> Result<Value, ParseError> {
        let kind = field.kind();
        if kind == FieldKind::Time {
            return self.timestamp(field).map(Value::Time);
        }
        let tok = self.next()?;
        match (kind, &tok.tok) {
            (FieldKind::Text, Tok::Str(s)) => Ok(Value::Text(s.clone())),
            (FieldKind::Integer, Tok::Number(n)) => n.parse().map(Value::Integer).map_err(|_| {
                let expected = if n.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit()) {
                    format!("an integer from {} to {} for field {field}", i64::MIN, i64::MAX)
                } else {
                    format!("an integer for field {field}")
                };
                self.err(&tok, expected)
            }),
            (FieldKind::Decimal, Tok::Number(n)) => Decimal::parse(n)
                .map(Value::Decimal)
                .map_err(|e| self.err(&tok, format!("a number for field {field} ({})", e.why))),
            _ => Err(self.err(&tok, format!("{} for field {field}", literal_for(kind)))),
        }
    }

    fn timestamp(&mut self, field: &Field) -> Result<Timestamp, ParseError> {
        let tok = self.next()?;
        match &tok.tok {
            Tok::Str(s) => Timestamp::parse_rfc3339(s)
                .map_err(|e| self.err(&tok, format!("an RFC 3339 date-time for field {field} ({})", e.expected))),
            _ => Err(self.err(&tok, format!("{} for field {field}", literal_for(FieldKind::Time)))),
        }
    }

    fn string(&mut self, field: &Field) -> Result<String, ParseError> {
        let tok = self.next()?;
        match tok.tok {
            Tok::Str(s) => Ok(s),
            _ => Err(self.err(&tok, format!("a quoted string for field {field}"))),
        }
    }

    fn list(&mut self, field: &Field) -> Result<Vec<Value>, ParseError> {
        let open = self.next()?;
        if open.tok != Tok::LParen {
            return Err(self.err(&open, "\"(\" and a list of values"));
        }
        let mut values = Vec::new();
        loop {
            if values.len() == MAX_LIST_VALUES {
                let tok = self.next()?;
                return Err(self.err(&tok, format!("at most {MAX_LIST_VALUES} values in a list")));
            }
            values.push(self.value(field)?);
            let sep = self.next()?;
            match sep.tok {
                Tok::Comma => {}
                Tok::RParen => return Ok(values),
                _ => return Err(self.err(&sep, "\",\" or \")\"")),
            }
        }
    }

    fn days(&mut self) -> Result<u32, ParseError> {
        let tok = self.next()?;
        match tok.tok {
            Tok::Number(n) => n.parse().map_err(|_| self.err(&tok, days_expected())),
            _ => Err(self.err(&tok, days_expected())),
        }
    }
}

fn days_expected() -> String {
    format!("a whole number of days from 0 to {}", u32::MAX)
}

/// How a literal of each kind is written, for "expected …" messages.
fn literal_for(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "a quoted string",
        FieldKind::Integer => "an integer",
        FieldKind::Decimal => "a number",
        FieldKind::Time => "a quoted RFC 3339 date-time",
    }
}
