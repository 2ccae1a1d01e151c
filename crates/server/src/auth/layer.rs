//! A tower layer in front of every gRPC service: requests to `segments.v1`
//! are authenticated and checked against the role table before any handler
//! runs; the caller rides on to the handler in the request's extensions.
//! Health and reflection are not segmentd's API and pass unchecked, so load
//! balancers and `grpcurl describe` need no key.
//!
//! **Must not depend on** the services: it sees paths and headers only.

use super::{API_KEY_HEADER, ApiKeys, Authorized};
use futures::future::Either;
use std::future::Ready;
use std::task::{Context, Poll};

#[derive(Clone, Debug)]
pub struct AuthLayer {
    keys: ApiKeys,
}

impl AuthLayer {
    pub fn new(keys: ApiKeys) -> Self {
        AuthLayer { keys }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner, keys: self.keys.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    keys: ApiKeys,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if !path.starts_with(super::roles::GOVERNED_PREFIX) {
            return Either::Left(self.inner.call(request));
        }
        let key = request.headers().get(API_KEY_HEADER).map(|v| v.as_bytes());
        match self.keys.authorize(path, key) {
            Ok(caller) => {
                request.extensions_mut().insert(Authorized(caller));
                Either::Left(self.inner.call(request))
            }
            Err(refusal) => {
                let status = tonic::Status::from(refusal);
                tracing::debug!(path = request.uri().path(), code = ?status.code(), "request refused by auth");
                Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
