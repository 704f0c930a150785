//! Convolutional models end to end: the CNN fixtures TensorFlow wrote (testdata/savedmodels:
//! `keras-cnn`, `tf-module-cnn`, `mobilenet-cnn`; inputs `[-1, 28, 28, 1]`) through
//! `predictor local` (instances as nested JSON arrays, 28 rows of 28 one-pixel lists) and
//! `predictor serve` (TF Serving's row and columnar formats, Cloud ML Engine's predict route),
//! against TensorFlow's own outputs in each fixture's expected.json: classes identical, every
//! probability within 1e-5 relative (plus 1e-6 absolute for values near zero).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use crate::serve_support::{Server, expected, fixture, json as parse};
use serde_json::{Value, json};

const CNN_FIXTURES: [&str; 3] = ["keras-cnn", "tf-module-cnn", "mobilenet-cnn"];

/// A tensor's `shape` in expected.json.
fn shape_of(tensor: &Value) -> Vec<usize> {
    tensor["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// The fixture's signature input key and its instances as nested `[28][28][1]` JSON arrays.
fn nested_instances(name: &str) -> (String, Vec<Value>) {
    let doc = expected(name);
    let inputs = doc["inputs"].as_object().unwrap();
    assert_eq!(inputs.len(), 1, "{name}: one input expected");
    let (key, tensor) = inputs.iter().next().unwrap();
    let shape = shape_of(tensor);
    assert_eq!(shape[1..], [28, 28, 1], "{name}: input shape");
    let values = tensor["values"].as_array().unwrap();
    let rows = (0..shape[0])
        .map(|i| {
            Value::Array(
                (0..28)
                    .map(|y| {
                        Value::Array(
                            (0..28)
                                .map(|x| Value::Array(vec![values[(i * 28 + y) * 28 + x].clone()]))
                                .collect(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    (key.clone(), rows)
}

/// TensorFlow's outputs: key -> (values per instance).
fn tf_outputs(name: &str) -> Vec<(String, Vec<Value>)> {
    let doc = expected(name);
    doc["outputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, tensor)| {
            let shape = shape_of(tensor);
            let values = tensor["values"].as_array().unwrap();
            let per_row: usize = shape[1..].iter().product();
            let rows = (0..shape[0])
                .map(|r| {
                    if shape.len() == 1 {
                        values[r].clone()
                    } else {
                        Value::Array(values[r * per_row..(r + 1) * per_row].to_vec())
                    }
                })
                .collect();
            (key.clone(), rows)
        })
        .collect()
}

fn assert_close(what: &str, ours: &Value, theirs: &Value) {
    match (ours, theirs) {
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{what}: lengths");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close(&format!("{what}[{i}]"), x, y);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(b.abs()) + 1e-6,
                "{what}: {a} vs TensorFlow {b}"
            );
        }
        (a, b) => assert_eq!(a, b, "{what}"),
    }
}

/// Checks a `predictions` list (one object per instance, or bare values for a single output)
/// against TensorFlow's outputs.
fn check_predictions(label: &str, predictions: &Value, outputs: &[(String, Vec<Value>)]) {
    let predictions = predictions
        .as_array()
        .unwrap_or_else(|| panic!("{label}: no predictions list"));
    assert_eq!(predictions.len(), outputs[0].1.len(), "{label}: rows");
    for (row, prediction) in predictions.iter().enumerate() {
        if outputs.len() == 1 && !prediction.is_object() {
            // TF Serving's row format gives a lone output's value bare.
            assert_close(
                &format!("{label} row {row}"),
                prediction,
                &outputs[0].1[row],
            );
        } else {
            for (key, rows) in outputs {
                assert_close(
                    &format!("{label} row {row} {key}"),
                    &prediction[key],
                    &rows[row],
                );
            }
        }
    }
}

#[test]
fn predictor_local_runs_the_cnn_fixtures_like_tensorflow() {
    let dir = tempfile::tempdir().unwrap();
    for name in CNN_FIXTURES {
        let (_, instances) = nested_instances(name);
        let file = dir.path().join(format!("{name}.json"));
        let lines: Vec<String> = instances.iter().map(Value::to_string).collect();
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_predictor"))
            .args(["local", "--format", "json", "--model-dir"])
            .arg(fixture(name))
            .arg("--json-instances")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = parse(&String::from_utf8(output.stdout).unwrap());
        check_predictions(name, &printed["predictions"], &tf_outputs(name));
    }
}

#[test]
fn predictor_local_names_the_instance_of_the_wrong_shape() {
    // A flat 784-value image where [28, 28, 1] is expected: refused with the input's name.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flat.json");
    std::fs::write(&file, format!("{}\n", json!(vec![0.0; 784]))).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_predictor"))
        .args(["local", "--model-dir"])
        .arg(fixture("mobilenet-cnn"))
        .arg("--json-instances")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("images"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictor_serve_runs_the_cnn_fixtures_on_both_apis() {
    let mut args = Vec::new();
    for name in CNN_FIXTURES {
        args.push("--model".to_string());
        args.push(format!("{name}={}", fixture(name).display()));
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    args.extend(["--registry".to_string(), registry.display().to_string()]);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&arg_refs, &[]);
    // `--model` versions are loaded before the server listens: no wait for AVAILABLE.
    for name in CNN_FIXTURES {
        let (key, instances) = nested_instances(name);
        let outputs = tf_outputs(name);
        // TF Serving, row format.
        let body = json!({ "instances": instances }).to_string();
        let (status, text) = server
            .post(&format!("/v1/models/{name}:predict"), body.clone())
            .await;
        assert_eq!(status, 200, "{name}: {text}");
        check_predictions(
            &format!("{name} (TF Serving rows)"),
            &parse(&text)["predictions"],
            &outputs,
        );
        // Cloud ML Engine's route, same body.
        let (status, text) = server
            .post(&format!("/v1/projects/default/models/{name}:predict"), body)
            .await;
        assert_eq!(status, 200, "{name}: {text}");
        check_predictions(
            &format!("{name} (Cloud ML Engine)"),
            &parse(&text)["predictions"],
            &outputs,
        );
        // TF Serving, columnar format: outputs come back per key.
        let body = json!({ "inputs": { key: instances } }).to_string();
        let (status, text) = server
            .post(&format!("/v1/models/{name}:predict"), body)
            .await;
        assert_eq!(status, 200, "{name}: {text}");
        let columns = parse(&text)["outputs"].clone();
        for (key, rows) in &outputs {
            let got = if outputs.len() == 1 {
                &columns
            } else {
                &columns[key]
            };
            assert_close(
                &format!("{name} (TF Serving columns) {key}"),
                got,
                &Value::Array(rows.clone()),
            );
        }
    }
}
