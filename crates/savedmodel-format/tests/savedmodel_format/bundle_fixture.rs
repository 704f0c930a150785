//! Our bundle writer against a bundle TensorFlow 2.21 wrote (scripts/make-bundle-fixture.py):
//! the same tensors, added in the same order, must give byte-identical files, and our reader must
//! recover the recorded values from TF's files.

// Test helpers outside #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
use std::path::PathBuf;

use savedmodel_format::bundle::{BundleIndex, VARIABLES_INDEX, write_bundle};
use savedmodel_format::{HostTensor, TensorData};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/savedmodels/bundle-fixture")
}

fn read(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/make-bundle-fixture.py)",
            path.display()
        )
    })
}

/// The fixture's tensors, in the order TF wrote them to the data file.
fn expected_tensors() -> Vec<(String, HostTensor)> {
    let description: Value = serde_json::from_slice(&read("tensors.json")).unwrap();
    let tensors = description["tensors"].as_array().unwrap();
    assert!(tensors.len() >= 5, "fixture has too few tensors");
    tensors
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap().to_string();
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let values = t["values"].as_array().unwrap();
            let data = match t["dtype"].as_str().unwrap() {
                "float32" => {
                    TensorData::F32(values.iter().map(|v| v.as_f64().unwrap() as f32).collect())
                }
                "float64" => TensorData::F64(values.iter().map(|v| v.as_f64().unwrap()).collect()),
                "int64" => TensorData::I64(values.iter().map(|v| v.as_i64().unwrap()).collect()),
                "bool" => TensorData::Bool(values.iter().map(|v| v.as_bool().unwrap()).collect()),
                "string" => TensorData::Str(
                    values
                        .iter()
                        .map(|v| v.as_str().unwrap().as_bytes().to_vec())
                        .collect(),
                ),
                other => panic!("fixture dtype {other} not handled by this test"),
            };
            (name, HostTensor::new(shape, data).unwrap())
        })
        .collect()
}

#[test]
fn our_writer_reproduces_tensorflows_bundle_byte_for_byte() {
    let tensors = expected_tensors();
    let ours = write_bundle(tensors.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
    let tf_index = read("variables.index");
    let tf_data = read("variables.data-00000-of-00001");
    assert_eq!(ours.data, tf_data, "data file differs from TensorFlow's");
    if ours.index != tf_index {
        let first = ours.index.iter().zip(&tf_index).position(|(a, b)| a != b);
        panic!(
            "index differs from TensorFlow's: ours {} bytes, TF {} bytes, first difference at {:?}",
            ours.index.len(),
            tf_index.len(),
            first
        );
    }
}

#[test]
fn our_reader_recovers_tensorflows_values() {
    let index = BundleIndex::parse(VARIABLES_INDEX, &read("variables.index")).unwrap();
    let data = read("variables.data-00000-of-00001");
    let shards = [Some(data.as_slice())];
    let expected = expected_tensors();
    assert_eq!(index.len(), expected.len());
    for (name, tensor) in &expected {
        let spec = index.tensor_spec(name).unwrap();
        assert_eq!(spec.dtype, tensor.dtype(), "{name}");
        assert_eq!(spec.shape, tensor.shape(), "{name}");
        assert_eq!(&index.read_tensor(name, &shards).unwrap(), tensor, "{name}");
    }
}

#[test]
fn flipping_any_byte_of_tensorflows_data_file_is_detected() {
    let index = BundleIndex::parse(VARIABLES_INDEX, &read("variables.index")).unwrap();
    let data = read("variables.data-00000-of-00001");
    for position in 0..data.len() {
        let mut corrupt = data.clone();
        corrupt[position] ^= 0x10;
        let shards = [Some(corrupt.as_slice())];
        let failures: Vec<String> = index
            .tensor_names()
            .filter_map(|name| {
                index
                    .read_tensor(name, &shards)
                    .err()
                    .map(|e| e.to_string())
            })
            .collect();
        assert_eq!(failures.len(), 1, "byte {position}: {failures:?}");
        assert!(
            failures[0].contains("checksum") || failures[0].contains("string tensor"),
            "{}",
            failures[0]
        );
    }
}

#[test]
fn flipping_any_byte_of_tensorflows_index_never_panics_and_is_mostly_detected() {
    let index_bytes = read("variables.index");
    let data = read("variables.data-00000-of-00001");
    let mut undetected = 0;
    for position in 0..index_bytes.len() {
        let mut corrupt = index_bytes.clone();
        corrupt[position] ^= 0x01;
        let outcome = BundleIndex::parse(VARIABLES_INDEX, &corrupt)
            .and_then(|index| index.read_all(&[Some(data.as_slice())]));
        if outcome.is_ok() {
            undetected += 1;
        }
    }
    // Only the footer's zero padding is not covered by a checksum.
    assert!(undetected <= 34, "{undetected} corruptions went unnoticed");
}
