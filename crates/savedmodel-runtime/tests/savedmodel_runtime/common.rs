//! Helpers shared by the integration tests: fixture paths, `expected.json`, comparisons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use savedmodel_runtime::{HostTensor, TensorData};
use serde_json::Value as Json;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/savedmodels")
}

pub fn fixture_dir(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

pub fn read(name: &str, file: &str) -> Vec<u8> {
    let path = fixture_dir(name).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn location(path: &std::path::Path) -> storage::Location {
    storage::Location::parse(path.to_str().unwrap()).unwrap()
}

/// `expected.json` as written by scripts/make-savedmodel-fixtures.py.
pub struct Expected {
    pub signature: String,
    pub tags: Vec<String>,
    pub inputs: BTreeMap<String, HostTensor>,
    pub outputs: BTreeMap<String, HostTensor>,
    /// Other signatures' outputs for the same inputs.
    pub other_signatures: BTreeMap<String, BTreeMap<String, HostTensor>>,
    pub labels: Vec<Option<i64>>,
}

fn tensor(json: &Json) -> HostTensor {
    let shape: Vec<usize> = json["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let values = json["values"].as_array().unwrap();
    let data = match json["dtype"].as_str().unwrap() {
        // Parsed as f64 and rounded once to f32: the script wrote each float32 so that this
        // gives back exactly TensorFlow's value.
        "float32" => TensorData::F32(values.iter().map(|v| v.as_f64().unwrap() as f32).collect()),
        "int64" => TensorData::I64(values.iter().map(|v| v.as_i64().unwrap()).collect()),
        "int32" => TensorData::I32(values.iter().map(|v| v.as_i64().unwrap() as i32).collect()),
        other => panic!("unexpected dtype {other}"),
    };
    HostTensor::new(shape, data).unwrap()
}

fn tensors(json: &Json) -> BTreeMap<String, HostTensor> {
    json.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), tensor(v)))
        .collect()
}

pub fn expected(name: &str) -> Expected {
    let json: Json = serde_json::from_slice(&read(name, "expected.json")).unwrap();
    let other_signatures = json
        .get("other_signatures")
        .and_then(|o| o.as_object())
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), tensors(&v["outputs"])))
                .collect()
        })
        .unwrap_or_default();
    Expected {
        signature: json["signature"].as_str().unwrap().to_string(),
        tags: json["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect(),
        inputs: tensors(&json["inputs"]),
        outputs: tensors(&json["outputs"]),
        other_signatures,
        labels: json["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.get("label").and_then(|l| l.as_i64()))
            .collect(),
    }
}

/// How float outputs are compared.
#[derive(Clone, Copy, Debug)]
pub enum Scale {
    /// `|ours - tf| / |tf|` per element: for probabilities, which are products of exponentials
    /// and keep their relative precision down to tiny values.
    Element,
    /// `|ours - tf| / max|tf row|`: for raw linear outputs (logits), where an element near zero
    /// is the difference of much larger terms and its relative error only reflects summation
    /// order (TensorFlow's own f32 result is no closer to the exact value than ours there).
    Row,
}

/// Compares one output; returns the largest relative error (per `scale`) over the elements
/// (0 for integers, which must be equal).
pub fn compare_scaled(
    key: &str,
    ours: &HostTensor,
    theirs: &HostTensor,
    tolerance: f64,
    scale: Scale,
) -> f64 {
    assert_eq!(ours.shape(), theirs.shape(), "output {key}: shape");
    let row = ours.shape().last().copied().unwrap_or(1).max(1);
    match (ours.data(), theirs.data()) {
        (TensorData::F32(a), TensorData::F32(b)) => {
            let mut worst: f64 = 0.0;
            for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                let (x, y) = (f64::from(x), f64::from(y));
                let denominator = match scale {
                    Scale::Element => y.abs(),
                    Scale::Row => b[i / row * row..(i / row + 1) * row]
                        .iter()
                        .fold(0f64, |m, &v| m.max(f64::from(v).abs())),
                };
                let err = if denominator == 0.0 {
                    x.abs()
                } else {
                    (x - y).abs() / denominator
                };
                assert!(
                    err <= tolerance,
                    "output {key}[{i}]: ours {x:e}, TensorFlow {y:e}, relative error {err:e} > {tolerance:e}"
                );
                worst = worst.max(err);
            }
            worst
        }
        (a, b) => {
            assert_eq!(a, b, "output {key}: values");
            0.0
        }
    }
}

/// Element-wise relative comparison (see [`Scale::Element`]).
pub fn compare(key: &str, ours: &HostTensor, theirs: &HostTensor, tolerance: f64) -> f64 {
    compare_scaled(key, ours, theirs, tolerance, Scale::Element)
}
