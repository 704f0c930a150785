//! Compiles TF Serving's gRPC API (proto/, see proto/README.md) into tonic services and prost
//! messages. protox parses the .proto files in Rust, so building needs no system `protoc`.
//! TensorFlow's own messages (TensorProto, SignatureDef) are not generated again: the ones
//! savedmodel-format already reads SavedModels with are used, so a request's tensors go through
//! the same decoder as a graph's constants.

use std::error::Error;

const PROTOS: [&str; 2] = [
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(PROTOS, ["proto"])?;
    // Only TF Serving's package is included (src/grpc.rs); TensorFlow's messages it carries are
    // savedmodel-format's (the generated `tensorflow` module is left unused).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(
            ".tensorflow.TensorProto",
            "::savedmodel_format::proto::TensorProto",
        )
        .extern_path(
            ".tensorflow.SignatureDef",
            "::savedmodel_format::proto::SignatureDef",
        )
        .compile_fds(files)?;
    Ok(())
}
