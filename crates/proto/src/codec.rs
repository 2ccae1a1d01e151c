//! The codec every generated client and service uses: tonic-prost's, except
//! that a message that does not decode (invalid UTF-8 in a string, nesting
//! past prost's recursion limit, truncated bytes) is `INVALID_ARGUMENT`
//! naming the field prost names, not `INTERNAL`. The gRPC library default
//! follows grpc's status-code table, but for this service a request that
//! does not parse is the caller's mistake like any other bad input, and
//! `INTERNAL` is kept for failures of the server (metrics and alerts rely
//! on that).

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Encodes like `tonic_prost::ProstCodec`; see the module docs for decoding.
#[derive(Debug, Clone)]
pub struct RequestCodec<T, U> {
    inner: tonic_prost::ProstCodec<T, U>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        RequestCodec { inner: tonic_prost::ProstCodec::default() }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = InvalidArgumentDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        InvalidArgumentDecoder(self.inner.decoder())
    }
}

/// `ProstDecoder` with decode failures as `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct InvalidArgumentDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for InvalidArgumentDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0
            .decode(buf)
            .map_err(|status| Status::invalid_argument(format!("the message does not decode: {}", status.message())))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
