//! Fixed-point decimal numbers (money, mostly): exact to six decimal places,
//! so `total_spent > 1000.10` compares exactly where a float would not.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A decimal number stored as an integer count of millionths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Decimal(pub i64);

pub const DECIMAL_PLACES: u32 = 6;
const SCALE: i64 = 1_000_000;

impl Decimal {
    pub fn from_int(n: i64) -> Option<Self> {
        n.checked_mul(SCALE).map(Decimal)
    }

    /// Parses `12`, `-3.5`, `1000.25`; at most six decimal places.
    pub fn parse(s: &str) -> Result<Self, DecimalError> {
        let err = |why: &'static str| DecimalError { input: s.to_owned(), why };
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected digits before the decimal point"));
        }
        if body.contains('.') && frac.is_empty() {
            return Err(err("expected digits after the decimal point"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected only digits after the decimal point"));
        }
        if frac.len() > DECIMAL_PLACES as usize {
            return Err(err("at most 6 decimal places are supported"));
        }
        let too_big = || err("the number is too large");
        let mut v: i64 = 0;
        for b in int.bytes() {
            v = v.checked_mul(10).and_then(|v| v.checked_add(i64::from(b - b'0'))).ok_or_else(too_big)?;
        }
        v = v.checked_mul(SCALE).ok_or_else(too_big)?;
        let mut f: i64 = 0;
        for b in frac.bytes() {
            f = f * 10 + i64::from(b - b'0');
        }
        f *= 10i64.pow(DECIMAL_PLACES - frac.len() as u32);
        let v = v.checked_add(f).ok_or_else(too_big)?;
        Ok(Decimal(if neg { -v } else { v }))
    }
}

impl fmt::Display for Decimal {
    /// The shortest exact form: `1000`, `1000.5`, `-0.25`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let int = abs / SCALE as u64;
        let frac = abs % SCALE as u64;
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let digits = format!("{frac:06}");
        write!(f, "{sign}{int}.{}", digits.trim_end_matches('0'))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid decimal number {input:?}: {why}")]
pub struct DecimalError {
    pub input: String,
    pub why: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_exactly() {
        assert_eq!(Decimal::parse("1000").unwrap().to_string(), "1000");
        assert_eq!(Decimal::parse("1000.10").unwrap().to_string(), "1000.1");
        assert_eq!(Decimal::parse("-0.25").unwrap().to_string(), "-0.25");
        assert!(Decimal::parse("1000.10").unwrap() > Decimal::parse("1000.09").unwrap());
    }

    #[test]
    fn refuses_garbage_with_a_reason() {
        for bad in ["", "abc", "1.", ".5", "1.2.3", "1.1234567", "99999999999999999999"] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(v in (i64::MIN + 1)..i64::MAX) {
            prop_assert_eq!(Decimal::parse(&Decimal(v).to_string()).unwrap(), Decimal(v));
        }
    }
}
