//! TF Serving's JSON reader: the generic parser under RapidJSON's rules (NaN/Infinity), then
//! the server's predict-request reader (row and columnar formats, the fast path for rows of
//! floats) against the MNIST tutorial signature.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use predict_json::json::{Rules, parse};
use savedmodel_runtime::{DataType, SignatureInfo, TensorSpec};

fn signatures() -> BTreeMap<String, SignatureInfo> {
    let spec = |name: &str, dtype, shape: Vec<i64>| TensorSpec {
        tensor_name: format!("{name}:0"),
        dtype,
        shape: Some(shape),
    };
    let signature = SignatureInfo {
        name: "serving_default".into(),
        method_name: "tensorflow/serving/predict".into(),
        inputs: BTreeMap::from([("image".into(), spec("image", DataType::Float, vec![-1, 784]))]),
        outputs: BTreeMap::from([("class".into(), spec("class", DataType::Int64, vec![-1]))]),
    };
    BTreeMap::from([("serving_default".to_string(), signature)])
}

fuzz_target!(|data: &[u8]| {
    let _ = parse(data, Rules::TfServing);
    let _ = predict_json::parse_tf_serving_request(data, &signatures());
});
