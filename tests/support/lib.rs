//! Shared set-up for the black-box tests: a server in-process on a free
//! port with its own temporary data directory, and gRPC clients for it.
//!
//! **Must not** reach around the API: tests observe the server only through
//! gRPC (plus the log's last sequence, to prove a refusal appended nothing).

use segmentd_log_nats::testkit::NatsServer;
use segmentd_proto::v1 as pb;
use segmentd_proto::v1::commands_client::CommandsClient;
use segmentd_proto::v1::queries_client::QueriesClient;
use segmentd_server::auth::ApiKeys;
use segmentd_server::{ServeConfig, Served};
use std::path::Path;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};

pub struct TestServer {
    pub served: Served,
    pub commands: CommandsClient<Channel>,
    pub queries: QueriesClient<Channel>,
    pub channel: Channel,
}

pub async fn start(dir: &Path) -> TestServer {
    start_with(dir, ApiKeys::default()).await
}

pub async fn start_with(dir: &Path, keys: ApiKeys) -> TestServer {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
    config.api_keys = keys;
    start_config(config).await
}

/// Starts a server as `config` says (it should listen on port 0) and connects.
pub async fn start_config(config: ServeConfig) -> TestServer {
    let served = segmentd_server::serve(config).await.expect("server starts");
    let channel = Endpoint::from_shared(format!("http://{}", served.addr))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("client connects");
    TestServer {
        commands: CommandsClient::new(channel.clone()),
        queries: QueriesClient::new(channel.clone()),
        channel,
        served,
    }
}

/// A server on one backend with everything it owns. Fields drop in order:
/// the server before the log it uses, the directory last.
pub struct OnBackend {
    pub server: TestServer,
    pub nats: Option<NatsServer>,
    pub dir: TempDir,
}

/// Starts a server on `backend` in a fresh directory; `adjust` may change
/// its configuration (keys, clock) first.
pub async fn start_on(backend: Backend, adjust: impl FnOnce(&mut ServeConfig)) -> OnBackend {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let nats = backend.log_server().await;
    let mut config = config_on(dir.path(), nats.as_ref());
    adjust(&mut config);
    OnBackend { server: start_config(config).await, nats, dir }
}

/// One `#[tokio::test]` per scenario and backend: `embedded::<scenario>` and
/// `nats::<scenario>`; each scenario is an `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_logs {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::Backend::Embedded).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::Backend::Nats).await;
                }
            )*
        }
    };
}

impl TestServer {
    pub async fn last_seq(&self) -> u64 {
        self.served.log.as_ref().expect("the server has a log").last_seq().await.expect("log readable")
    }
}

/// The event logs a black-box scenario can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded file log under the server's data directory.
    Embedded,
    /// A real nats-server of the test's own (free port, temporary store).
    Nats,
}

impl Backend {
    /// The nats-server this backend needs, if any; it must outlive every
    /// server started on it.
    pub async fn log_server(self) -> Option<NatsServer> {
        match self {
            Backend::Embedded => None,
            Backend::Nats => Some(NatsServer::start().await),
        }
    }
}

/// A server listening on a free port with its data under `dir`, on `nats`
/// or (without it) on the embedded log.
pub fn config_on(dir: &Path, nats: Option<&NatsServer>) -> ServeConfig {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
    if let Some(nats) = nats {
        config.backend = segmentd_server::LogBackend::Nats(Box::new(nats.log_config()));
    }
    config
}

pub fn text(criteria: &str) -> Option<pb::CriteriaInput> {
    Some(pb::CriteriaInput { kind: Some(pb::criteria_input::Kind::Text(criteria.to_owned())) })
}

pub fn by_name(name: &str) -> Option<pb::SegmentRef> {
    Some(pb::SegmentRef { by: Some(pb::segment_ref::By::Name(name.to_owned())) })
}

pub fn contact(email: &str, fields: &[(&str, &str)]) -> pb::ContactInput {
    pb::ContactInput {
        email: email.to_owned(),
        fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// Upserts contacts in batches of 1000 and returns the last sequence.
pub async fn import(commands: &mut CommandsClient<Channel>, contacts: Vec<pb::ContactInput>) -> u64 {
    let mut seq = 0;
    for (i, chunk) in contacts.chunks(1000).enumerate() {
        let reply = commands
            .upsert_contacts(pb::UpsertContactsRequest { command_id: format!("import-{i}"), contacts: chunk.to_vec() })
            .await
            .expect("import batch accepted")
            .into_inner();
        seq = seq.max(reply.sequence);
    }
    seq
}

/// `msg` with `x-api-key: key`.
pub fn with_key<T>(key: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(segmentd_server::auth::API_KEY_HEADER, key.parse().expect("a key is ASCII"));
    r
}

/// Every RPC of the compiled proto as a full path (`/segments.v1.Commands/CreateSegment`),
/// read from the file descriptor set the server's reflection serves.
pub fn proto_methods() -> Vec<String> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(segmentd_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut paths = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                paths.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
            }
        }
    }
    paths
}

/// Calls any RPC by path with an empty request message (every field at its
/// default), so a test can exercise every RPC without knowing its types.
/// Answers once the server has answered the call: for a unary RPC that is
/// the handler's result; for a server-streaming one, that the stream was
/// opened (then it is dropped: some streams, like WatchJobs, never end).
pub async fn call_empty(channel: &Channel, path: &str, key: Option<&str>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let request = match key {
        Some(key) => with_key(key, ()),
        None => tonic::Request::new(()),
    };
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).expect("a method path");
    grpc.server_streaming(request, path, codec).await.map(drop)
}

/// Calls the RPC at `path` with `body` as the request's protobuf bytes, as
/// they are (so a test can send what no typed client would: invalid UTF-8,
/// unknown enum numbers, nesting past the decoder's limit), and awaits the
/// first answer: the reply of a unary RPC, the first message or the error
/// of a stream. A stream that stays open without a message for `patience`
/// counts as answered (watch streams wait for changes).
pub async fn call_raw(
    channel: &Channel,
    path: &str,
    body: Vec<u8>,
    patience: std::time::Duration,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).expect("a method path");
    // A unary RPC answers a server-streaming call with one message: the
    // same wire exchange.
    let mut stream = grpc.server_streaming(tonic::Request::new(body), path, RawCodec).await?.into_inner();
    match tokio::time::timeout(patience, stream.message()).await {
        Ok(answer) => answer.map(drop),
        Err(_) => Ok(()),
    }
}

/// Sends bytes as they are; reads and drops the answers' bytes.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        use prost::bytes::Buf as _;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
