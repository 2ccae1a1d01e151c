//! The shared `EventLog` conformance suite (`segmentd_log::conformance`)
//! against NatsLog on a real nats-server. Each case gets a fresh stream
//! (its own name and subject prefix) on one server; "restart" drops the
//! NatsLog and connects again, as the next process would.
//!
//! NATS 2.9 has no multi-subject atomic publish, so the factory declares
//! `ATOMIC_REQUESTS = false`: the suite then checks that a conflicting
//! request is completed by its retry without duplicates, and
//! `multi_aggregate_conflicts_are_not_atomic_on_nats` pins what is kept.
//!
//! **Must not depend on** tonic, prost or sled.

use async_trait::async_trait;
use segmentd_log::conformance::{self, LogFactory, contact, request};
use segmentd_log::{AppendError, Appended, EventLog};
use segmentd_log_nats::testkit::NatsServer;
use segmentd_log_nats::{NatsConfig, NatsLog};

struct Factory {
    server: NatsServer,
    streams: u32,
    current: Option<NatsConfig>,
}

#[async_trait]
impl LogFactory for Factory {
    type Log = NatsLog;
    const ATOMIC_REQUESTS: bool = false;

    async fn create(&mut self) -> NatsLog {
        self.streams += 1;
        let n = self.streams;
        let config = NatsConfig {
            stream: format!("CONF{n}"),
            subject_prefix: format!("conf{n}.evt"),
            ..self.server.log_config()
        };
        self.current = Some(config.clone());
        NatsLog::connect(config).await.expect("connect")
    }

    async fn restart(&mut self, log: NatsLog) -> NatsLog {
        drop(log);
        NatsLog::connect(self.current.clone().expect("a log was created")).await.expect("reconnect")
    }
}

async fn factory() -> Factory {
    Factory { server: NatsServer::start().await, streams: 0, current: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_log_passes_the_conformance_suite() {
    conformance::run_all(&mut factory().await).await;
}

/// The same scenario as the suite's atomicity case, with what NATS does.
#[tokio::test]
async fn multi_aggregate_conflicts_are_not_atomic_on_nats() {
    let mut f = factory().await;
    let log = f.create().await;
    let a = contact("org1", "ann@example.com");
    let b = contact("org1", "bob@example.com");
    let c = contact("org1", "cy@example.com");
    let sb = log.append(request("org1", "c1", vec![(b.clone(), 0, 1)])).await.unwrap().last_seq();
    let req = request("org1", "c2", vec![(a.clone(), 0, 2), (b.clone(), 0, 1), (c.clone(), 0, 1)]);
    match log.append(req).await {
        Err(AppendError::Conflict { aggregate, actual, .. }) => assert_eq!((aggregate, actual), (b.clone(), sb)),
        other => panic!("expected a conflict on {b}, got {other:?}"),
    }
    // Unlike the embedded log: the entries that did not conflict are in.
    assert_eq!(log.read_aggregate(&a, 0).await.unwrap().len(), 2);
    assert_eq!(log.read_aggregate(&c, 0).await.unwrap().len(), 1);
    // The retry, decided again, appends exactly what is missing.
    let ok = request("org1", "c2", vec![(a.clone(), 0, 2), (b.clone(), sb, 1), (c.clone(), 0, 1)]);
    let last = match log.append(ok.clone()).await.unwrap() {
        Appended::New { last_seq } => last_seq,
        other => panic!("the retry appends b's event, got {other:?}"),
    };
    assert_eq!(log.read(1, 100).await.unwrap().len(), 5);
    assert_eq!(log.last_of(&b).await.unwrap().unwrap().seq, last);
}
