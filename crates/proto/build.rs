//! Generates segments.v1 from the top-level proto/ with the vendored protoc,
//! so a fresh machine needs no protoc installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("segments/v1/segments.proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // Requests that do not decode are INVALID_ARGUMENT (see src/codec.rs).
        .codec_path("crate::codec::RequestCodec")
        .file_descriptor_set_path(out.join("segments_v1_descriptor.bin"))
        .compile_with_config(config, &[file], std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
