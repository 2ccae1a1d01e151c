//! Segment criteria: the tree of ALL / ANY / NOT groups over
//! `field operator value` conditions that decides which contacts belong to a
//! segment, its readable text form (parser and canonical printer), and how a
//! contact is matched against it.
//!
//! The canonical text (`Display`) is what events store, so every tree that
//! passes [`Criteria::check_limits`] prints to text that [`Criteria::parse`]
//! turns back into the same tree, except that a group of one child (which
//! only a hand-built tree has) prints as that child and comes back as it:
//! the same contacts match. The limits below keep that true and keep
//! parsing, matching and printing bounded in time and stack.
//!
//! Semantics (see DESIGN.md, Criteria): text comparisons are case-insensitive
//! (Unicode lowercase, char by char, as PostgreSQL citext's `lower()`); an
//! empty value (`""` or none) makes every comparison false except `is_empty`
//! and the negative operators `!=`, `not_in`, `not_contains`, which are true
//! on it; `not` negates its child as a plain boolean. `in segment X` is
//! true when X's criteria match the contact (evaluated, not read from a
//! kept member set, so it holds at any clock instant and in any order).

mod ast;
mod eval;
mod parse;
mod print;
#[cfg(any(test, feature = "strategies"))]
pub mod strategies;
#[cfg(test)]
mod tests;

pub use ast::{Condition, Criteria, CriteriaError, Operator, SegmentRef, Value};
pub use eval::SegmentCriteria;
pub use parse::ParseError;

/// Most levels of nesting: each `not`, and each group inside another group,
/// is one level; the top-level group and conditions add none. In text, each
/// `not` and each parenthesis not directly after `not` is one level.
pub const MAX_DEPTH: usize = 32;
/// Most conditions in one criteria tree.
pub const MAX_CONDITIONS: usize = 256;
/// Most bytes of criteria text, both as given to the parser and as printed.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Most values in one `in` / `not_in` list.
pub const MAX_LIST_VALUES: usize = 1000;
/// Most segments in a chain of `in segment` conditions (B in A, C in B, …):
/// each link is a whole tree more to evaluate per contact.
pub const MAX_SEGMENT_NESTING: usize = 8;
