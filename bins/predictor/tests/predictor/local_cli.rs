//! `predictor local` as a user runs it: the real binary on the SavedModel fixtures TensorFlow wrote
//! (testdata/savedmodels) and the tutorial's testdata/sample.json; bad files each with their exact
//! message, a non-zero exit and nothing on stdout.

// Test code: a failed unwrap is a failed test.
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::serve_support::{fixture, sample_json, write_json_request};

pub(crate) fn predictor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_predictor"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn local(model: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["local", "--model-dir", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    predictor(&args)
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "predictor failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Runs `predictor local` on an instances file with `content` and returns its stderr, checking
/// that it failed and printed no predictions.
fn failure(model: &Path, content: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("instances.json");
    std::fs::write(&file, content).unwrap();
    let output = local(model, &["--json-instances", file.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "expected a failure for {content:.80}"
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        output.stdout.is_empty(),
        "printed predictions: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    (
        String::from_utf8(output.stderr).unwrap(),
        file.display().to_string(),
    )
}

/// The 784 pixels of an all-black image, with `len` values.
fn flat_instance(len: usize) -> String {
    format!("[{}]", vec!["0.0"; len].join(", "))
}

/// The first `n` lines of testdata/sample.json.
fn sample_lines(n: usize) -> String {
    let text = std::fs::read_to_string(sample_json()).unwrap();
    text.lines().take(n).map(|l| format!("{l}\n")).collect()
}

fn expected_outputs(model: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(model).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn sample_json_on_the_tutorial_model_matches_tensorflow() {
    let output = local(
        &fixture("tf1-tutorial"),
        &[
            "--json-instances",
            sample_json().to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let printed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let predictions = printed["predictions"].as_array().unwrap();
    assert_eq!(
        predictions.len(),
        10,
        "one prediction per line of sample.json"
    );
    // expected.json holds TensorFlow's outputs for the first 20 MNIST test images (sample.json's 10 first).
    let expected = expected_outputs("tf1-tutorial");
    let classes = expected["outputs"]["class"]["values"].as_array().unwrap();
    let probabilities = expected["outputs"]["probabilities"]["values"]
        .as_array()
        .unwrap();
    for (i, prediction) in predictions.iter().enumerate() {
        assert_eq!(prediction["class"], classes[i], "class of instance {i}");
        let ours = prediction["probabilities"].as_array().unwrap();
        assert_eq!(ours.len(), 10);
        for (k, p) in ours.iter().enumerate() {
            let (a, b) = (
                p.as_f64().unwrap(),
                probabilities[i * 10 + k].as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(b.abs()) + 1e-9,
                "instance {i} class {k}: {a} vs TF {b}"
            );
        }
    }
}

#[test]
fn default_output_is_gcloud_table() {
    let text = stdout(&local(
        &fixture("tf1-tutorial"),
        &["--json-instances", sample_json().to_str().unwrap()],
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 11);
    assert_eq!(lines[0], "CLASS  PROBABILITIES");
    for line in &lines[1..] {
        let (class, probabilities) = line.split_once("  ").unwrap();
        assert!(class.trim().parse::<u8>().unwrap() < 10, "{line}");
        assert!(
            probabilities.trim_start().starts_with('[') && line.ends_with(']'),
            "{line}"
        );
        assert_eq!(probabilities.matches(", ").count(), 9, "{line}");
    }
    assert!(
        !text.lines().any(|l| l.ends_with(' ')),
        "no trailing spaces"
    );
}

#[test]
fn other_instance_sources_give_the_same_predictions() {
    let model = fixture("tf1-tutorial");
    let from_lines = stdout(&local(
        &model,
        &[
            "--json-instances",
            sample_json().to_str().unwrap(),
            "--format",
            "json",
        ],
    ));
    let dir = tempfile::tempdir().unwrap();
    // --json-request with the same instances.
    let request = dir.path().join("request.json");
    write_json_request(&sample_lines(10), &request);
    let from_request = stdout(&local(
        &model,
        &[
            "--json-request",
            request.to_str().unwrap(),
            "--format",
            "json",
        ],
    ));
    assert_eq!(from_request, from_lines);
    // stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_predictor"))
        .args([
            "local",
            "--model-dir",
            model.to_str().unwrap(),
            "--json-instances",
            "-",
            "--format",
            "json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sample_lines(10).as_bytes())
        .unwrap();
    assert_eq!(stdout(&child.wait_with_output().unwrap()), from_lines);
    // Several batches give the same classes as one (the model runs them separately).
    let chunked = stdout(&local(
        &model,
        &[
            "--json-instances",
            sample_json().to_str().unwrap(),
            "--format",
            "json",
            "--max-batch-size",
            "3",
        ],
    ));
    let classes = |text: &str| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["class"].clone())
            .collect()
    };
    assert_eq!(classes(&chunked), classes(&from_lines));
}

#[test]
fn named_signatures_and_28x28_models() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("images.json");
    // The same images as [28][28] rows, for models whose input is [-1, 28, 28].
    let reshaped: String = sample_lines(3)
        .lines()
        .map(|line| {
            let values: Vec<f64> = serde_json::from_str(line).unwrap();
            let rows: Vec<&[f64]> = values.chunks(28).collect();
            format!("{}\n", serde_json::to_string(&rows).unwrap())
        })
        .collect();
    std::fs::write(&file, reshaped).unwrap();
    let model = fixture("tf2-module");
    let text = stdout(&local(
        &model,
        &[
            "--json-instances",
            file.to_str().unwrap(),
            "--signature-name",
            "logits",
        ],
    ));
    assert_eq!(text.lines().next(), Some("LOGITS"));
    assert_eq!(text.lines().count(), 4);
    let text = stdout(&local(
        &model,
        &["--json-instances", file.to_str().unwrap()],
    ));
    assert_eq!(text.lines().next(), Some("PREDICTED_CLASS  SCORES"));
    let output = local(
        &model,
        &[
            "--json-instances",
            file.to_str().unwrap(),
            "--signature-name",
            "nope",
        ],
    );
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "ERROR: (predictor local) the model has no signature \"nope\"; its signatures are \"logits\", \"serving_default\"\n"
    );
}

// ---- bad files: each with its exact message ----

#[test]
fn empty_file() {
    let (stderr, file) = failure(&fixture("tf1-tutorial"), "");
    assert_eq!(
        stderr,
        format!("ERROR: (predictor local) {file}: no instances: the input is empty\n")
    );
}

#[test]
fn invalid_json_on_line_k() {
    let content = format!(
        "{}\n{}\n[0.0, 0.5,, 1.0]\n",
        flat_instance(784),
        flat_instance(784)
    );
    let (stderr, file) = failure(&fixture("tf1-tutorial"), &content);
    assert_eq!(
        stderr,
        format!(
            "ERROR: (predictor local) {file}: line 3, column 11: invalid JSON: expected value\n"
        )
    );
}

#[test]
fn wrong_length() {
    let content = format!(
        "{}\n{}\n{}\n",
        flat_instance(784),
        flat_instance(784),
        flat_instance(783)
    );
    let (stderr, file) = failure(&fixture("tf1-tutorial"), &content);
    assert_eq!(
        stderr,
        format!(
            "ERROR: (predictor local) {file}: line 3: input \"image\" expects 784 numbers, found 783\n"
        )
    );
}

#[test]
fn string_where_a_number_is_expected() {
    let content = format!("{}\n", flat_instance(784).replacen("0.0", "\"0.5\"", 1));
    let (stderr, file) = failure(&fixture("tf1-tutorial"), &content);
    assert_eq!(
        stderr,
        format!(
            "ERROR: (predictor local) {file}: line 1: input \"image\" expects a number (float32) at [0], found the \
             string \"0.5\"\n"
        )
    );
}

#[test]
fn nan_and_infinity() {
    for (token, column) in [("NaN", 7), ("Infinity", 7), ("-Infinity", 7)] {
        let content = format!(
            "{}\n{}\n",
            flat_instance(784),
            flat_instance(784).replacen("0.0, 0.0", &format!("0.0, {token}"), 1)
        );
        let (stderr, file) = failure(&fixture("tf1-tutorial"), &content);
        assert_eq!(
            stderr,
            format!(
                "ERROR: (predictor local) {file}: line 2, column {column}: {token} is not a JSON number (JSON has no \
                 NaN or Infinity, so instances cannot contain them)\n"
            )
        );
    }
}

#[test]
fn unknown_input_name() {
    let content = format!("{{\"images\": {}}}\n", flat_instance(784));
    let (stderr, file) = failure(&fixture("tf1-tutorial"), &content);
    assert_eq!(
        stderr,
        format!(
            "ERROR: (predictor local) {file}: line 1: unknown input \"images\"; the signature \"serving_default\" has \
             one input, \"image\"\n"
        )
    );
}

#[test]
fn missing_model_dir() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model");
    let (stderr, _) = failure(&missing, &sample_lines(1));
    assert_eq!(
        stderr,
        format!(
            "ERROR: (predictor local) the model directory {} does not exist\n",
            missing.display()
        )
    );
}

#[test]
fn model_dir_without_saved_model_pb() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("variables")).unwrap();
    let (stderr, _) = failure(dir.path(), &sample_lines(1));
    assert_eq!(
        stderr,
        format!(
            "ERROR: (predictor local) {} is not a SavedModel directory: it has no saved_model.pb (give the directory \
             that holds saved_model.pb and variables/)\n",
            dir.path().display()
        )
    );
}

#[test]
fn more_bad_input() {
    let model = fixture("tf1-tutorial");
    let (stderr, file) = failure(
        &model,
        &format!("{}\n\n{}\n", flat_instance(784), flat_instance(784)),
    );
    assert_eq!(
        stderr,
        format!(
            "ERROR: (predictor local) {file}: line 2 is empty; every line must hold one instance\n"
        )
    );
    // A bad line after many good ones still prints nothing (the whole file is checked first).
    let many = format!("{}[1]\n", sample_lines(10).repeat(30));
    let (stderr, file) = failure(&model, &many);
    assert_eq!(
        stderr,
        format!(
            "ERROR: (predictor local) {file}: line 301: input \"image\" expects 784 numbers, found 1\n"
        )
    );
    // Exactly one instances flag.
    let output = predictor(&["local", "--model-dir", model.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--json-instances"));
    let path = sample_json();
    let path = path.to_str().unwrap();
    let output = predictor(&[
        "local",
        "--model-dir",
        model.to_str().unwrap(),
        "--json-instances",
        path,
        "--json-request",
        path,
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot be used with"));
    // A file that does not exist.
    let output = local(&model, &["--json-instances", "/nonexistent/instances.json"]);
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "ERROR: (predictor local) cannot open the instances file /nonexistent/instances.json: No such file or \
         directory (os error 2)\n"
    );
}
