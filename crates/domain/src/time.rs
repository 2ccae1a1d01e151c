//! Instants as milliseconds since the Unix epoch, with the RFC 3339 text form
//! that criteria, imports and events use. Hand-written because the domain
//! crate takes no date library: the calendar maths is the proleptic
//! Gregorian civil-from-days algorithm and nothing else.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An instant, in whole milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

pub const MILLIS_PER_DAY: i64 = 86_400_000;

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// `self` moved back by `days` whole days, saturating at the ends of time.
    pub fn minus_days(self, days: i64) -> Self {
        Timestamp(self.0.saturating_sub(days.saturating_mul(MILLIS_PER_DAY)))
    }

    /// Parses an RFC 3339 date-time (`2025-01-01T00:00:00Z`,
    /// `2025-01-01T02:00:00.5+02:00`); fractions below a millisecond are cut.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimestampError> {
        let b = s.as_bytes();
        let err = |what: &'static str| TimestampError { input: s.to_owned(), expected: what };
        if b.len() < 20 {
            return Err(err("YYYY-MM-DDTHH:MM:SS followed by Z or an offset"));
        }
        let num = |from: usize, len: usize, what: &'static str| -> Result<i64, TimestampError> {
            let part = b.get(from..from + len).ok_or_else(|| err(what))?;
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(err(what));
            }
            Ok(part.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
        };
        let sep = |at: usize, chars: &[u8], what: &'static str| -> Result<(), TimestampError> {
            if chars.contains(&b[at]) { Ok(()) } else { Err(err(what)) }
        };
        let year = num(0, 4, "a four-digit year")?;
        sep(4, b"-", "'-' after the year")?;
        let month = num(5, 2, "a two-digit month")?;
        sep(7, b"-", "'-' after the month")?;
        let day = num(8, 2, "a two-digit day")?;
        sep(10, b"Tt ", "'T' between date and time")?;
        let hour = num(11, 2, "a two-digit hour")?;
        sep(13, b":", "':' after the hour")?;
        let minute = num(14, 2, "two-digit minutes")?;
        sep(16, b":", "':' after the minutes")?;
        let second = num(17, 2, "two-digit seconds")?;
        if !(1..=12).contains(&month) {
            return Err(err("a month from 01 to 12"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(err("a day that exists in that month"));
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err("a time of day from 00:00:00 to 23:59:60"));
        }
        let mut at = 19;
        let mut millis = 0i64;
        if b[at] == b'.' {
            at += 1;
            let start = at;
            while at < b.len() && b[at].is_ascii_digit() {
                if at - start < 3 {
                    millis = millis * 10 + i64::from(b[at] - b'0');
                }
                at += 1;
            }
            if at == start {
                return Err(err("digits after the decimal point"));
            }
            for _ in (at - start)..3 {
                millis *= 10;
            }
        }
        let offset_minutes = match b.get(at) {
            Some(b'Z' | b'z') if at + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if at + 6 == b.len() => {
                let oh = num(at + 1, 2, "a two-digit offset hour")?;
                sep(at + 3, b":", "':' in the offset")?;
                let om = num(at + 4, 2, "two-digit offset minutes")?;
                if oh > 23 || om > 59 {
                    return Err(err("an offset from -23:59 to +23:59"));
                }
                let m = oh * 60 + om;
                if *sign == b'-' { -m } else { m }
            }
            _ => return Err(err("Z or an offset like +02:00 at the end")),
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
        Ok(Timestamp(secs * 1000 + millis))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC; milliseconds only when there are some, so whole-second
    /// instants print as the generator and most tools write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1000);
        let millis = self.0.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)?;
            if millis != 0 {
                write!(f, ".{millis:03}")?;
            }
            return f.write_str("Z");
        }
        // Digits by hand: pages and exports print four instants per contact,
        // and `write!` with padded integers was most of a page's formatting.
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y);
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, rem / 3600);
        put(14, 2, rem / 60 % 60);
        put(17, 2, rem % 60);
        let text = if millis == 0 {
            out[19] = b'Z';
            &out[..20]
        } else {
            put(20, 3, millis);
            &out[..]
        };
        f.write_str(std::str::from_utf8(text).map_err(|_| fmt::Error)?)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 date-time {input:?}: expected {expected}")]
pub struct TimestampError {
    pub input: String,
    pub expected: &'static str,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_utc_and_offsets_to_the_same_instant() {
        let a = Timestamp::parse_rfc3339("2025-01-01T00:00:00Z").unwrap();
        let b = Timestamp::parse_rfc3339("2025-01-01T02:00:00+02:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0, 1_735_689_600_000);
        assert_eq!(a.to_string(), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn keeps_milliseconds() {
        let t = Timestamp::parse_rfc3339("2026-08-03T00:00:00.25Z").unwrap();
        assert_eq!(t.to_string(), "2026-08-03T00:00:00.250Z");
    }

    #[test]
    fn refuses_impossible_dates_and_says_what_was_expected() {
        for bad in ["2025-02-30T00:00:00Z", "2025-13-01T00:00:00Z", "2025-01-01", "2025-01-01T00:00:00", "yesterday"] {
            let e = Timestamp::parse_rfc3339(bad).unwrap_err();
            assert!(e.to_string().contains("expected"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
            let t = Timestamp(ms);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()).unwrap(), t);
        }

        #[test]
        fn display_prints_what_padded_formatting_prints(ms in -400_000_000_000_000i64..400_000_000_000_000) {
            let t = Timestamp(ms);
            let secs = ms.div_euclid(1000);
            let rem = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let mut expected = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
            if ms.rem_euclid(1000) != 0 {
                expected += &format!(".{:03}", ms.rem_euclid(1000));
            }
            prop_assert_eq!(t.to_string(), expected + "Z");
        }
    }
}
