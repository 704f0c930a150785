//! gcloud's JSON reader: the generic parser under gcloud's rules, then instances (newline-
//! delimited and `{"instances": …}`) checked against the MNIST tutorial signature.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use predict_json::json::{Rules, parse};
use predict_json::{InstanceFormat, parse_instances};
use savedmodel_runtime::{DataType, SignatureInfo, TensorSpec};

fn signature() -> SignatureInfo {
    let spec = |name: &str, dtype, shape: Vec<i64>| TensorSpec {
        tensor_name: format!("{name}:0"),
        dtype,
        shape: Some(shape),
    };
    SignatureInfo {
        name: "serving_default".into(),
        method_name: "tensorflow/serving/predict".into(),
        inputs: BTreeMap::from([("image".into(), spec("image", DataType::Float, vec![-1, 784]))]),
        outputs: BTreeMap::from([("class".into(), spec("class", DataType::Int64, vec![-1]))]),
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = parse(data, Rules::Gcloud);
    let signature = signature();
    for format in [InstanceFormat::JsonLines, InstanceFormat::JsonRequest] {
        let _ = parse_instances(data, format, &signature);
    }
});
