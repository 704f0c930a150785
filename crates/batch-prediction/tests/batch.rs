//! Batch prediction end to end on the TensorFlow-written tutorial SavedModel
//! (testdata/savedmodels/tf1-tutorial): text, TFRecord and gzipped TFRecord inputs (ours and
//! TensorFlow's own writer), a malformed line, a corrupt record, gs:// through the GCS emulator,
//! and the failures that must write nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use batch_prediction::{
    BatchPredictionError, BatchPredictionRequest, DataFormat, ERRORS_FILE, RESULTS_FILE,
    run_batch_prediction,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model() -> String {
    workspace()
        .join("testdata/savedmodels/tf1-tutorial")
        .display()
        .to_string()
}

/// The ten MNIST test images of the tutorial's sample.json, one JSON instance per line.
fn sample_lines() -> Vec<String> {
    std::fs::read_to_string(workspace().join("testdata/sample.json"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// TensorFlow's classes for those images (from the fixture's expected.json).
fn tensorflow_classes() -> Vec<i64> {
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("testdata/savedmodels/tf1-tutorial/expected.json"))
            .unwrap(),
    )
    .unwrap();
    expected["outputs"]["class"]["values"].as_array().unwrap()[..10]
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn results(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(RESULTS_FILE))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn classes(rows: &[serde_json::Value]) -> Vec<i64> {
    rows.iter().map(|r| r["class"].as_i64().unwrap()).collect()
}

fn request(inputs: &[String], format: DataFormat, out: &Path) -> BatchPredictionRequest {
    BatchPredictionRequest {
        threads: Some(2),
        ..BatchPredictionRequest::new(inputs.to_vec(), format, out.display().to_string(), model())
    }
}

#[test]
fn text_input_with_a_malformed_line_predicts_the_rest_and_records_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = sample_lines();
    // Two files, matched by a wildcard; the second holds a malformed line 3 and a line with the
    // wrong number of pixels (line 5).
    std::fs::write(dir.path().join("in-a.json"), lines[..4].join("\n") + "\n").unwrap();
    let mut second = lines[4..6].to_vec();
    second.push("{\"image\": [0.0, 1.0,".to_string());
    second.push(lines[6].clone());
    second.push("[0.5, 0.5]".to_string());
    second.extend_from_slice(&lines[7..]);
    std::fs::write(dir.path().join("in-b.json"), second.join("\r\n")).unwrap();
    let out = dir.path().join("out");
    let pattern = format!("{}/in-*.json", dir.path().display());
    let output = run_batch_prediction(&request(&[pattern], DataFormat::Text, &out)).unwrap();

    assert_eq!(output.prediction_count, 10);
    assert_eq!(output.error_count, 2);
    assert_eq!(output.input_files.len(), 2);
    let rows = results(&out);
    assert_eq!(classes(&rows), tensorflow_classes());
    let probabilities = rows[0]["probabilities"].as_array().unwrap();
    assert_eq!(probabilities.len(), 10);
    let sum: f64 = probabilities.iter().map(|p| p.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    // Python's json.dumps layout: ", " and ": " separators, keys as the outputs are named.
    let first_line = std::fs::read_to_string(out.join(RESULTS_FILE))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(
        first_line.starts_with("{\"class\": 7, \"probabilities\": [") && first_line.contains(", "),
        "{first_line:.80}"
    );

    let file_b = format!("file://{}/in-b.json", dir.path().display());
    let positions: Vec<(String, usize)> = output
        .errors
        .iter()
        .map(|e| (e.file.clone(), e.record))
        .collect();
    assert_eq!(positions, [(file_b.clone(), 3), (file_b, 5)]);
    assert!(
        output.errors[0].message.contains("invalid JSON"),
        "{}",
        output.errors[0].message
    );
    assert!(
        output.errors[1]
            .message
            .contains("input \"image\" expects 784 numbers, found 2"),
        "{}",
        output.errors[1].message
    );
    // One Python tuple per distinct message, as Cloud ML Engine's errors_stats file.
    let stats = std::fs::read_to_string(out.join(ERRORS_FILE)).unwrap();
    let stats: Vec<&str> = stats.lines().collect();
    assert_eq!(stats.len(), 2, "{stats:?}");
    assert!(
        stats[0].starts_with("('column ") && stats[0].ends_with("', 1)"),
        "{stats:?}"
    );
    assert!(
        stats[1].contains("expects 784 numbers, found 2"),
        "{stats:?}"
    );
}

fn write_tfrecords(path: &Path, records: &[String], gzip: bool) {
    let mut framed = Vec::new();
    for record in records {
        tfevents::record::append_record(&mut framed, record.as_bytes());
    }
    let bytes = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&framed).unwrap();
        encoder.finish().unwrap()
    } else {
        framed
    };
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn tfrecord_and_gzip_give_the_text_results() {
    let dir = tempfile::tempdir().unwrap();
    let lines = sample_lines();
    std::fs::write(dir.path().join("in.json"), lines.join("\n")).unwrap();
    write_tfrecords(&dir.path().join("in.tfrecord"), &lines, false);
    write_tfrecords(&dir.path().join("in.tfrecord.gz"), &lines, true);
    let run = |name: &str, format| {
        let out = dir.path().join(format!("out-{name}"));
        let input = dir.path().join(name).display().to_string();
        let output = run_batch_prediction(&request(&[input], format, &out)).unwrap();
        assert_eq!((output.prediction_count, output.error_count), (10, 0));
        assert_eq!(std::fs::read_to_string(out.join(ERRORS_FILE)).unwrap(), "");
        std::fs::read_to_string(out.join(RESULTS_FILE)).unwrap()
    };
    let text = run("in.json", DataFormat::Json);
    assert_eq!(run("in.tfrecord", DataFormat::TfRecord), text);
    assert_eq!(run("in.tfrecord.gz", DataFormat::TfRecordGzip), text);
}

#[test]
fn tensorflow_written_gzip_tfrecords_are_read() {
    let python = std::env::var("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run scripts/setup-python.sh",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let lines = sample_lines();
    std::fs::write(dir.path().join("in.json"), lines.join("\n")).unwrap();
    let script = "import sys, tensorflow as tf\n\
                  lines = open(sys.argv[1]).read().splitlines()\n\
                  for path, kind in ((sys.argv[2], ''), (sys.argv[3], 'GZIP')):\n\
                  \x20   with tf.io.TFRecordWriter(path, options=kind) as w:\n\
                  \x20       for line in lines: w.write(line.encode())\n";
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(dir.path().join("in.json"))
        .arg(dir.path().join("tf.tfrecord"))
        .arg(dir.path().join("tf.tfrecord.gz"))
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .status()
        .unwrap();
    assert!(status.success());
    for (name, format) in [
        ("tf.tfrecord", DataFormat::TfRecord),
        ("tf.tfrecord.gz", DataFormat::TfRecordGzip),
    ] {
        let out = dir.path().join(format!("out-{name}"));
        let input = dir.path().join(name).display().to_string();
        let output = run_batch_prediction(&request(&[input], format, &out)).unwrap();
        assert_eq!((output.prediction_count, output.error_count), (10, 0));
        assert_eq!(classes(&results(&out)), tensorflow_classes());
    }
}

#[test]
fn a_corrupt_record_ends_its_file_with_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let lines = sample_lines();
    let path = dir.path().join("in.tfrecord");
    write_tfrecords(&path, &lines, false);
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip a byte in the data of the fourth record: its data checksum no longer matches.
    let offset: usize = lines[..3].iter().map(|l| l.len() + 16).sum::<usize>() + 12 + 5;
    bytes[offset] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let out = dir.path().join("out");
    let input = path.display().to_string();
    let output = run_batch_prediction(&request(&[input], DataFormat::TfRecord, &out)).unwrap();
    assert_eq!((output.prediction_count, output.error_count), (3, 1));
    assert_eq!(output.errors[0].record, 4);
    assert!(
        output.errors[0].message.contains("data checksum mismatch"),
        "{}",
        output.errors[0].message
    );
    assert_eq!(classes(&results(&out)), tensorflow_classes()[..3]);
}

#[test]
fn failures_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.json"), sample_lines().join("\n")).unwrap();
    let out = dir.path().join("out");
    let nothing = format!("{}/none-*.json", dir.path().display());
    let error = run_batch_prediction(&request(&[nothing], DataFormat::Json, &out)).unwrap_err();
    assert!(
        matches!(error, BatchPredictionError::NoInputs { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("match no files"));

    let input = dir.path().join("in.json").display().to_string();
    let bad_model = BatchPredictionRequest {
        model_dir: dir.path().display().to_string(),
        ..request(std::slice::from_ref(&input), DataFormat::Json, &out)
    };
    let error = run_batch_prediction(&bad_model).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot load the SavedModel in"),
        "{error}"
    );
    let bad_signature = BatchPredictionRequest {
        signature_name: Some("nope".to_string()),
        ..request(std::slice::from_ref(&input), DataFormat::Json, &out)
    };
    let error = run_batch_prediction(&bad_signature).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no signature \"nope\"; its signatures are \"serving_default\""),
        "{error}"
    );
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cancelled = BatchPredictionRequest {
        cancel: Some(cancel),
        ..request(&[input], DataFormat::Json, &out)
    };
    let error = run_batch_prediction(&cancelled).unwrap_err();
    assert!(matches!(error, BatchPredictionError::Cancelled), "{error}");
    assert!(!out.exists(), "a failed run wrote {}", out.display());
}

#[test]
fn gcs_inputs_and_outputs() {
    let emulator =
        gcs_emulator::GcsEmulator::start_with_buckets(&["batch-bucket"]).expect("emulator starts");
    let options = emulator.storage_options();
    let put = |name: &str, text: String| {
        storage::Location::parse_with(&format!("gs://batch-bucket/{name}"), &options)
            .unwrap()
            .write_blocking(bytes::Bytes::from(text))
            .unwrap();
    };
    let lines = sample_lines();
    put("in/part-1.json", lines[..5].join("\n"));
    put("in/part-2.json", lines[5..].join("\n") + "\n");
    put("in/other/part-3.json", "not matched\n".to_string());
    let request = BatchPredictionRequest {
        storage: options.clone(),
        threads: Some(2),
        ..BatchPredictionRequest::new(
            vec!["gs://batch-bucket/in/part-*".to_string()],
            DataFormat::Text,
            "gs://batch-bucket/out",
            model(),
        )
    };
    let output = run_batch_prediction(&request).unwrap();
    assert_eq!((output.prediction_count, output.error_count), (10, 0));
    assert_eq!(
        output.results_file,
        format!("gs://batch-bucket/out/{RESULTS_FILE}")
    );
    let text = storage::Location::parse_with(&output.results_file, &options)
        .unwrap()
        .read_blocking()
        .unwrap();
    let rows: Vec<serde_json::Value> = std::str::from_utf8(&text)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(classes(&rows), tensorflow_classes());
}
