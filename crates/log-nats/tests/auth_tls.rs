//! The NATS log against servers that demand credentials or TLS: a real
//! `nats-server` per test (testkit), configured with a user and password,
//! a token, or TLS with a throw-away CA; without the right settings the
//! connection is refused, with them the log works.

use segmentd_log::{EventLog, LogError};
use segmentd_log_nats::testkit::{NatsServer, TestPki};
use segmentd_log_nats::{NatsConfig, NatsLog, Secret};

async fn works(config: NatsConfig) {
    let log = NatsLog::connect(config).await.expect("connects with the right settings");
    assert_eq!(log.last_seq().await.unwrap(), 0);
}

async fn refused(config: NatsConfig) -> String {
    match NatsLog::connect(config).await {
        Ok(_) => panic!("connected without the right settings"),
        Err(e @ (LogError::Unavailable(_) | LogError::InvalidRequest(_))) => e.to_string(),
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
}

#[tokio::test]
async fn user_and_password_are_sent() {
    let server = NatsServer::start_with_config("authorization { user: segmentd, password: s3cr3t-pw }\n").await;
    let base = server.log_config();
    refused(base.clone()).await;
    refused(NatsConfig { user_password: Some(("segmentd".into(), Secret("wrong".into()))), ..base.clone() }).await;
    let good = NatsConfig { user_password: Some(("segmentd".into(), Secret("s3cr3t-pw".into()))), ..base };
    assert!(!format!("{good:?}").contains("s3cr3t-pw"), "settings print without the password");
    works(good).await;
}

#[tokio::test]
async fn a_token_is_sent() {
    let server = NatsServer::start_with_config("authorization { token: tok-0123456789 }\n").await;
    let base = server.log_config();
    refused(base.clone()).await;
    works(NatsConfig { token: Some(Secret("tok-0123456789".into())), ..base }).await;
}

#[tokio::test]
async fn tls_with_a_private_ca_and_client_certificates() {
    let pki = TestPki::generate();
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
        pki.path("server.pem").display(),
        pki.path("server-key.pem").display(),
        pki.path("ca.pem").display()
    );
    let server = NatsServer::start_with_config(&config).await;
    let base = NatsConfig { url: format!("tls://localhost:{}", server.port()), ..server.log_config() };
    // No CA: the server's certificate is not trusted.
    refused(base.clone()).await;
    // The CA but no client certificate: the server refuses us.
    let with_ca = NatsConfig { tls_ca: Some(pki.path("ca.pem")), ..base };
    refused(with_ca.clone()).await;
    works(NatsConfig { tls_client_cert: Some((pki.path("client.pem"), pki.path("client-key.pem"))), ..with_ca }).await;
}
