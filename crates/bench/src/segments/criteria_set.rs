//! The criteria the segment benchmark defines: the twelve standard ones of
//! `../shared/bench/criteria.md` (Q1–Q12) and, for the change-to-visible
//! measurement, enough further segments over the generated fields to reach
//! the requested number of saved segments.
//!
//! **Must not depend on** the server or a database: criteria as text.

/// The instant relative criteria are measured from (criteria.md: Q7's
/// reference instant), passed as `at` to segmentd and used for the SQL.
pub const REFERENCE_AT: &str = "2026-11-01T00:00:00Z";

/// Q1–Q12 in segmentd's text form. Q7 is in its relative form ("within the
/// last 90 days" of [`REFERENCE_AT`]), which criteria.md says must give the
/// same rows as its absolute bound 2026-08-03T00:00:00Z.
pub const STANDARD: [(&str, &str); 12] = [
    ("Q1", r#"country = "DE""#),
    ("Q2", r#"country in ("US","CA","MX")"#),
    ("Q3", r#"age between 25 and 34"#),
    ("Q4", r#"country = "US" and lifecycle_stage = "customer" and score > 200"#),
    ("Q5", r#"country in ("DE","FR") and (age between 25 and 34 or score >= 150)"#),
    ("Q6", r#"email ends_with "@gmail.com" and company starts_with "acme""#),
    ("Q7", r#"last_opened_at within_last 90 days and lifecycle_stage != "subscriber""#),
    ("Q8", r#"company is_not_empty and age is_empty"#),
    ("Q9", r#"custom.plan = "enterprise" and custom.industry in ("software","finance")"#),
    ("Q10", r#"gender != "unknown""#),
    ("Q11", r#"country = "JP" and purchase_count >= 5 and total_spent > 1000"#),
    (
        "Q12",
        r#"last_name contains "son" and added_at between "2025-01-01T00:00:00Z" and "2025-12-31T23:59:59Z" and not (country = "US")"#,
    ),
];

/// The counts `../shared/bench/README.md` publishes for 1,000,000 rows of
/// seed 42 (PostgreSQL and a plain Python pass agreed on them).
pub const PUBLISHED_COUNTS_1M_SEED_42: [u64; 12] =
    [66_780, 343_743, 403_746, 8_915, 60_987, 1_393, 176_043, 42_740, 4_036, 949_662, 713, 5_377];

const COUNTRIES: [&str; 20] = [
    "US", "IN", "GB", "DE", "FR", "BR", "CA", "AU", "JP", "ES", "IT", "NL", "MX", "SE", "PL", "CH", "SG", "ZA", "IE",
    "AE",
];
const STAGES: [&str; 5] = ["subscriber", "lead", "mql", "sql", "customer"];
const INDUSTRIES: [&str; 10] =
    ["software", "retail", "finance", "healthcare", "education", "manufacturing", "media", "travel", "energy", "legal"];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
const DOMAINS: [&str; 5] = ["gmail.com", "yahoo.com", "outlook.com", "gmx.de", "orange.fr"];
const NAME_PARTS: [&str; 5] = ["son", "ma", "er", "li", "ov"];

/// `n` criteria for saved segments (fewer only if `n` exceeds what the
/// generator can vary): Q1–Q12 first, then a deterministic mix of equality,
/// IN lists, ranges, relative dates, text matching, custom fields and
/// negations over the generated fields, every one distinct.
pub fn segment_criteria(n: usize) -> Vec<String> {
    let mut out: Vec<String> = STANDARD.iter().map(|(_, c)| (*c).to_owned()).collect();
    let mut more = Vec::new();
    for country in COUNTRIES {
        for stage in STAGES {
            more.push(format!(r#"country = "{country}" and lifecycle_stage = "{stage}""#));
        }
    }
    for (i, country) in COUNTRIES.iter().enumerate() {
        for low in (18..80).step_by(10) {
            more.push(format!(r#"country = "{country}" and age between {low} and {}"#, low + 9 + i % 3));
        }
    }
    for industry in INDUSTRIES {
        for plan in PLANS {
            more.push(format!(r#"custom.industry = "{industry}" and custom.plan = "{plan}""#));
            more.push(format!(r#"custom.industry = "{industry}" and not (custom.plan = "{plan}")"#));
        }
    }
    for score in (0..500).step_by(5) {
        more.push(format!("score >= {score} and score < {}", score + 50));
    }
    for days in (10..=360).step_by(10) {
        more.push(format!("last_opened_at within_last {days} days"));
        more.push(format!(r#"last_purchase_at more_than {days} days ago and lifecycle_stage = "customer""#));
    }
    for domain in DOMAINS {
        for part in NAME_PARTS {
            more.push(format!(r#"email ends_with "@{domain}" and last_name contains "{part}""#));
        }
    }
    for (i, a) in COUNTRIES.iter().enumerate() {
        let b = COUNTRIES[(i + 7) % COUNTRIES.len()];
        for spent in [100, 500, 1000] {
            more.push(format!(r#"country in ("{a}","{b}") and total_spent > {spent}"#));
        }
        for stage in STAGES {
            more.push(format!(r#"country not_in ("{a}","{b}") and lifecycle_stage = "{stage}" and age is_not_empty"#));
        }
    }
    for gender in ["female", "male", "nonbinary"] {
        for low in (0..500).step_by(25) {
            more.push(format!(
                r#"gender = "{gender}" and (score between {low} and {} or purchase_count >= 3)"#,
                low + 24
            ));
        }
    }
    for country in COUNTRIES {
        for score in (0..500).step_by(50) {
            more.push(format!(r#"country = "{country}" and score >= {score}"#));
        }
    }
    for industry in INDUSTRIES {
        for stage in STAGES {
            more.push(format!(r#"custom.industry = "{industry}" and lifecycle_stage != "{stage}""#));
        }
    }
    for purchases in 1..=40 {
        more.push(format!("purchase_count = {purchases}"));
    }
    for year in 2019..=2026 {
        for half in [("01-01", "06-30"), ("07-01", "12-31")] {
            more.push(format!(
                r#"added_at between "{year}-{}T00:00:00Z" and "{year}-{}T23:59:59Z" and company is_not_empty"#,
                half.0, half.1
            ));
        }
    }
    for c in more {
        if out.len() >= n {
            break;
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use segmentd_domain::Criteria;

    #[test]
    fn a_thousand_distinct_segments_that_all_parse() {
        let all = segment_criteria(1000);
        assert_eq!(all.len(), 1000);
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 1000);
        for c in &all {
            Criteria::parse(c).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
        assert_eq!(all[..12], STANDARD.map(|(_, c)| c.to_owned()));
    }
}
