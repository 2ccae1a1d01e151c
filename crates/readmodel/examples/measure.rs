//! Throwaway measurement (to be deleted): builds 1M contacts, reports RSS and query times.

use segmentd_domain::Contact;
use segmentd_domain::contact::Email;
use segmentd_domain::criteria::Criteria;
use segmentd_domain::decimal::Decimal;
use segmentd_domain::event::ContactCreated;
use segmentd_domain::time::Timestamp;
use segmentd_domain::{AggregateId, Envelope, Event};
use segmentd_log::Recorded;
use segmentd_readmodel::ReadModel;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

fn split(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut q = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if q {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    q = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' {
            q = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

pub fn load(path: &str) -> Vec<Arc<Contact>> {
    let text = std::fs::read_to_string(path).unwrap();
    let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
    let ot = |s: &str| if s.is_empty() { None } else { Some(t(s)) };
    let oi = |s: &str| if s.is_empty() { None } else { Some(s.parse::<i64>().unwrap()) };
    text.lines()
        .skip(1)
        .map(|l| {
            let f = split(l);
            let mut c = Contact::new(Email::parse(&f[1]).unwrap(), t(&f[16]));
            c.contact_id = oi(&f[0]);
            c.first_name = f[2].clone();
            c.last_name = f[3].clone();
            c.company = f[4].clone();
            c.city = f[5].clone();
            c.state = f[6].clone();
            c.country = f[7].clone();
            c.age = oi(&f[8]);
            c.gender = f[9].clone();
            c.score = oi(&f[10]);
            c.lifecycle_stage = f[11].clone();
            c.total_spent = if f[12].is_empty() { None } else { Some(Decimal::parse(&f[12]).unwrap()) };
            c.purchase_count = oi(&f[13]);
            c.last_purchase_at = ot(&f[14]);
            c.last_opened_at = ot(&f[15]);
            c.updated_at = t(&f[17]);
            let mut custom = BTreeMap::new();
            if !f[18].is_empty() {
                custom.insert("plan".to_owned(), f[18].clone());
            }
            if !f[19].is_empty() {
                custom.insert("industry".to_owned(), f[19].clone());
            }
            c.custom = custom;
            Arc::new(c)
        })
        .collect()
}

const Q: [&str; 13] = [
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
    r#"last_opened_at within_last 90 days and lifecycle_stage != "subscriber""#,
];
const EXTRA: [&str; 6] = [
    r#"email ends_with "@gmail.com""#,
    r#"email contains "smith""#,
    r#"email = "james.smith1@gmail.com""#,
    r#"added_at > "2020-01-01T00:00:00Z""#,
    r#"total_spent in (10.5, 99.99, 100)"#,
    r#"not (country = "US") or score > 300"#,
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<R>(f: impl Fn() -> R) -> (f64, R) {
    let _ = f();
    let mut times = Vec::new();
    let mut r = None;
    for _ in 0..7 {
        let t = Instant::now();
        r = Some(f());
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(times), r.unwrap())
}

fn build(dir: &str) {
    let contacts = load("/tmp/c1m.csv");
    eprintln!("parsed {} contacts, rss {:.0} MiB", contacts.len(), rss_mib());
    let model = ReadModel::open(std::path::Path::new(dir), 64 << 20).unwrap();
    let t = Instant::now();
    let mut seq = 0u64;
    for chunk in contacts.chunks(2048) {
        let events: Vec<Recorded> = chunk
            .iter()
            .map(|c| {
                seq += 1;
                Recorded {
                    seq,
                    envelope: Envelope {
                        event_id: u128::from(seq),
                        command_id: format!("c{seq}"),
                        aggregate: AggregateId::contact("bench", &c.email),
                        actor: "bench".into(),
                        time: Timestamp(0),
                        event: Event::ContactCreated(ContactCreated { contact: (**c).clone() }),
                    },
                }
            })
            .collect();
        model.apply(&events).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!("applied {seq} events in {secs:.1}s = {:.0} events/s; rss {:.0} MiB", seq as f64 / secs, rss_mib());
}

fn query(dir: &str, plain: bool) {
    let at = Timestamp::parse_rfc3339("2026-11-01T00:00:00Z").unwrap();
    let t = Instant::now();
    let model = ReadModel::open(std::path::Path::new(dir), 64 << 20).unwrap();
    eprintln!("opened (load + index rebuild) in {:.1}s, rss {:.0} MiB", t.elapsed().as_secs_f64(), rss_mib());
    model.read("bench", |view, _| {
        eprintln!("contacts {}, index ~{:.0} MiB", view.contact_count(), view.index_bytes() as f64 / 1048576.0);
        println!("| # | count | count ms (median of 7) | first page of 100 ms |");
        println!("|---|---:|---:|---:|");
        for (i, q) in Q.iter().chain(EXTRA.iter()).enumerate() {
            let c = Criteria::parse(q).unwrap();
            let (ms, n) = time(|| view.count(&c, at));
            let (pms, page) = time(|| view.members(&c, at, None, 100));
            let name = if i < 12 {
                format!("Q{}", i + 1)
            } else if i == 12 {
                "Q7 relative".into()
            } else {
                q.to_string()
            };
            println!("| {name} | {n} | {ms:.3} | {pms:.3} ({} rows) |", page.contacts.len());
        }
    });
    eprintln!("rss after queries {:.0} MiB", rss_mib());
    if plain {
        drop(model);
        let contacts = load("/tmp/c1m.csv");
        for (i, q) in Q.iter().enumerate() {
            let c = Criteria::parse(q).unwrap();
            let (ms, n) = time(|| contacts.iter().filter(|x| c.matches(x, at)).count());
            println!("plain Q{}: {n} in {ms:.1} ms", i + 1);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args[1].as_str() {
        "build" => build(&args[2]),
        _ => query(&args[2], args.len() > 3),
    }
}
