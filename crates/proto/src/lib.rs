//! The generated protobuf messages and gRPC stubs of `segments.v1`, and the
//! file descriptor set that server reflection serves.
//!
//! **Must not depend on** any segmentd crate: it is the wire format only;
//! conversions to domain types live in segmentd-server.

#![allow(unreachable_pub, clippy::all)] // generated code: not ours to lint

pub mod segments {
    pub mod v1 {
        tonic::include_proto!("segments.v1");
    }
}

pub use segments::v1;

pub mod codec;

/// For tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("segments_v1_descriptor");
