//! Runs the real `trainer` binary on the small MNIST fixtures in `testdata/idx/` and checks its
//! output, `job.json` and the exported SavedModel; bad flags and bad data must fail cleanly.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{
    job_json, python, result_lines, small_mnist, text, train_small, trainer, workspace,
};

/// The value after `prefix` on the line that starts with it.
fn value_after(line: &str, prefix: &str) -> f64 {
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

struct Run {
    stdout: String,
    stderr: String,
    job: serde_json::Value,
    test_loss: f64,
    test_accuracy: f64,
}

fn train_ok(job_dir: &Path, extra: &[&str]) -> Run {
    let out = train_small(job_dir, extra);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "trainer failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 2, "{stdout}");
    let test_loss = value_after(lines[lines.len() - 2], "Test Loss: ");
    let test_accuracy = value_after(lines[lines.len() - 1], "Test Accuracy: ");
    let job = job_json(job_dir);
    Run {
        stdout,
        stderr,
        job,
        test_loss,
        test_accuracy,
    }
}

#[test]
fn trains_evaluates_exports_and_records_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let job_dir = tmp.path().join("job");
    let run = train_ok(
        &job_dir,
        &[
            "--epochs",
            "2",
            "--seed",
            "3",
            "--threads",
            "2",
            "--job-name",
            "unit",
        ],
    );

    // Output shape: "Epoch i/N" headers, one plain summary line per pass (stdout is a pipe
    // here, not a terminal), then the two result lines.
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "Epoch 1/2");
    assert!(lines[1].starts_with("32/32 - "), "{}", lines[1]);
    assert!(
        lines[1].contains(" - loss: ") && lines[1].contains(" - accuracy: "),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("/step"), "{}", lines[1]);
    assert_eq!(lines[2], "Epoch 2/2");
    assert!(
        lines[4].starts_with("7/7 - "),
        "evaluation line: {}",
        lines[4]
    );
    assert_eq!(lines.len(), 7, "{}", run.stdout);
    assert!(!run.stdout.contains('\r'), "no redraws in a log");
    assert!(
        run.stderr
            .contains("Loaded 1000 training and 200 test images"),
        "{}",
        run.stderr
    );

    assert!(
        run.test_loss.is_finite() && run.test_loss < 1.0,
        "loss {}",
        run.test_loss
    );
    assert!(run.test_accuracy > 0.75, "accuracy {}", run.test_accuracy);

    // job.json records what ran and what came out.
    let job = &run.job;
    assert_eq!(job["job_name"], "unit");
    let hp = &job["hyperparameters"];
    assert_eq!(hp["epochs"], 2);
    assert_eq!(hp["batch_size"], 32);
    assert_eq!(hp["learning_rate"], 0.01);
    assert_eq!(hp["momentum"], 0.9);
    assert_eq!(hp["seed"], 3);
    assert_eq!(hp["model"]["hidden_units"], serde_json::json!([512, 256]));
    assert_eq!(hp["model"]["dropout_rate"], 0.2);
    assert_eq!(job["metrics"]["test_loss"].as_f64(), Some(run.test_loss));
    assert_eq!(
        job["metrics"]["test_accuracy"].as_f64(),
        Some(run.test_accuracy)
    );
    assert_eq!(job["metrics"]["epochs"].as_array().unwrap().len(), 2);
    assert_eq!(job["metrics"]["epochs"][0]["steps"], 32);
    let timings = &job["timings_seconds"];
    for key in ["load_data", "evaluate", "export", "total", "train_total"] {
        assert!(timings[key].as_f64().unwrap() >= 0.0, "{key}");
    }
    assert_eq!(timings["train_epochs"].as_array().unwrap().len(), 2);
    assert_eq!(job["threads"], 2);
    assert!(
        job["device"].as_str().unwrap().starts_with("cpu"),
        "{}",
        job["device"]
    );
    assert_eq!(job["dataset"]["train_examples"], 1000);
    assert_eq!(job["dataset"]["image_dims"], serde_json::json!([28, 28]));
    let crates = job["versions"]["crates"].as_object().unwrap();
    assert!(
        crates["candle-core"].as_str().unwrap().starts_with("0.11"),
        "{crates:?}"
    );
    assert_eq!(crates["mnist-model"], env!("CARGO_PKG_VERSION"));

    // The SavedModel is all there.
    let model = job_dir.join("model");
    for file in [
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
    ] {
        let meta = std::fs::metadata(model.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.len() > 0, "{file} is empty");
    }
    // 535,818 float32 parameters (plus the bundle's small header/padding).
    let data_len = std::fs::metadata(model.join("variables/variables.data-00000-of-00001"))
        .unwrap()
        .len();
    assert!(
        data_len >= 535_818 * 4,
        "variables data is {data_len} bytes"
    );
}

#[test]
fn same_seed_and_threads_rerun_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let a = train_ok(&tmp.path().join("a"), &["--seed", "5", "--threads", "2"]);
    let b = train_ok(&tmp.path().join("b"), &["--seed", "5", "--threads", "2"]);
    let c = train_ok(&tmp.path().join("c"), &["--seed", "6", "--threads", "2"]);
    assert_eq!(
        result_lines(&a.stdout),
        result_lines(&b.stdout),
        "same seed, same output"
    );
    let weights = |dir: &str| {
        std::fs::read(
            tmp.path()
                .join(dir)
                .join("model/variables/variables.data-00000-of-00001"),
        )
        .unwrap()
    };
    assert_eq!(
        weights("a"),
        weights("b"),
        "same seed, same weights byte for byte"
    );
    assert_ne!(weights("a"), weights("c"), "another seed, other weights");
    assert_ne!(a.test_loss, c.test_loss);
    assert_eq!(a.job["metrics"]["epochs"], b.job["metrics"]["epochs"]);
}

#[test]
fn tensorflow_loads_the_export_and_agrees_with_the_reported_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let job_dir = tmp.path().join("job");
    let run = train_ok(&job_dir, &["--seed", "2"]);
    tensorflow_agrees(&job_dir, &run);
}

#[test]
fn other_widths_and_dropout_train_and_export_a_model_tensorflow_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let job_dir = tmp.path().join("job");
    // The `--name=value` form tuning trials use, a single hidden layer.
    let run = train_ok(
        &job_dir,
        &[
            "--hidden-units=48",
            "--dropout=0.1",
            "--seed=4",
            "--learning-rate=0.05",
        ],
    );
    let model = &run.job["hyperparameters"]["model"];
    assert_eq!(model["hidden_units"], serde_json::json!([48]));
    assert_eq!(model["dropout_rate"], 0.1);
    assert_eq!(model["parameters"], 784 * 48 + 48 + 48 * 10 + 10);
    assert_eq!(run.job["hyperparameters"]["learning_rate"], 0.05);
    tensorflow_agrees(&job_dir, &run);

    // Three hidden layers, dropout off.
    let deep_dir = tmp.path().join("deep");
    let deep = train_ok(
        &deep_dir,
        &["--hidden-units", "64, 32,16", "--dropout", "0"],
    );
    assert_eq!(
        deep.job["hyperparameters"]["model"]["hidden_units"],
        serde_json::json!([64, 32, 16])
    );
    tensorflow_agrees(&deep_dir, &deep);
}

#[test]
fn explicit_default_widths_and_dropout_train_the_same_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let a = train_ok(&tmp.path().join("a"), &["--seed", "7", "--threads", "2"]);
    let b = train_ok(
        &tmp.path().join("b"),
        &[
            "--seed",
            "7",
            "--threads",
            "2",
            "--hidden-units",
            "512,256",
            "--dropout",
            "0.2",
        ],
    );
    let weights = |dir: &str| {
        std::fs::read(
            tmp.path()
                .join(dir)
                .join("model/variables/variables.data-00000-of-00001"),
        )
        .unwrap()
    };
    assert_eq!(weights("a"), weights("b"));
    assert_eq!(a.test_loss, b.test_loss);
}

/// Real TensorFlow loads the export in `job_dir`, runs serving_default on the fixture's test
/// images and computes loss and accuracy its own way; they must match what the trainer printed.
// A helper of tests: a failed unwrap is a failed test.
#[allow(clippy::unwrap_used)]
fn tensorflow_agrees(job_dir: &Path, run: &Run) {
    let python = python();
    // Real TensorFlow loads the SavedModel, runs serving_default on the fixture's test images
    // and computes loss and accuracy its own way.
    let script = r#"
import gzip, json, struct, sys
import numpy as np
import tensorflow as tf
model_dir, data_dir = sys.argv[1], sys.argv[2]
def idx(name):
    raw = gzip.decompress(open(f"{data_dir}/{name}.gz", "rb").read())
    rank = raw[3]
    dims = struct.unpack(">" + "I" * rank, raw[4:4 + 4 * rank])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(dims)
x = idx("t10k-images-idx3-ubyte").reshape(-1, 784).astype(np.float32) / 255.0
y = idx("t10k-labels-idx1-ubyte").astype(np.int64)
serve = tf.saved_model.load(model_dir).signatures["serving_default"]
out = serve(image=tf.constant(x))
p = out["probabilities"].numpy().astype(np.float64)
cls = out["class"].numpy().reshape(-1)
loss = float(np.mean(-np.log(p[np.arange(len(y)), y])))
print(json.dumps({"loss": loss, "accuracy": float(np.mean(cls == y)),
                  "argmax_matches_class": bool(np.all(p.argmax(axis=1) == cls))}))
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(job_dir.join("model"))
        .arg(small_mnist())
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "TensorFlow failed:\n{}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let tf: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let tf_loss = tf["loss"].as_f64().unwrap();
    let tf_accuracy = tf["accuracy"].as_f64().unwrap();
    assert!(
        (tf_loss - run.test_loss).abs() < 1e-4 * (1.0 + run.test_loss),
        "TensorFlow loss {tf_loss} vs trainer {}",
        run.test_loss
    );
    // float32 differences may flip at most a borderline example out of 200.
    assert!(
        (tf_accuracy - run.test_accuracy).abs() <= 0.005 + 1e-9,
        "TensorFlow accuracy {tf_accuracy} vs trainer {}",
        run.test_accuracy
    );
    assert_eq!(tf["argmax_matches_class"], true);
}

fn fails_with(args: &[&str], needles: &[&str]) -> Output {
    let out = trainer(args);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert!(
        !stderr.contains("panicked"),
        "panic for {args:?}:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}:\n{stderr}"
        );
    }
    out
}

#[test]
fn bad_flags_are_reported_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_mnist();
    let data = data.to_str().unwrap();
    let job = tmp.path().join("job");
    let job = job.to_str().unwrap();
    // clap usage errors: exit status 2.
    let out = fails_with(&["--job-dir", job], &["--train-file"]);
    assert_eq!(out.status.code(), Some(2));
    let out = fails_with(
        &["--train-file", data, "--job-dir", job, "--epochs", "two"],
        &["--epochs"],
    );
    assert_eq!(out.status.code(), Some(2));
    fails_with(
        &["--train-file", data, "--job-dir", job, "--bogus"],
        &["--bogus"],
    );
    fails_with(
        &["--train-file", data, "--job-dir", job, "--threads", "0"],
        &["--threads"],
    );
    // Values clap accepts but training cannot use: exit status 1, one error line.
    for (value, needle) in [
        ("512,,256", "item 2 is \"\""),
        ("0", "item 1 is \"0\""),
        ("wide", "item 1 is \"wide\""),
    ] {
        let out = fails_with(
            &[
                "--train-file",
                data,
                "--job-dir",
                job,
                "--hidden-units",
                value,
            ],
            &["--hidden-units", needle],
        );
        assert_eq!(out.status.code(), Some(2), "--hidden-units {value}");
    }
    for (flag, value, needle) in [
        ("--dropout", "1", "--dropout"),
        ("--dropout", "-0.1", "--dropout"),
        ("--epochs", "0", "epochs"),
        ("--batch-size", "0", "batch_size"),
        ("--learning-rate", "NaN", "learning_rate"),
        ("--learning-rate", "-0.5", "learning_rate"),
        ("--momentum", "1.5", "momentum"),
        ("--job-name", " ", "--job-name"),
    ] {
        let out = fails_with(
            &["--train-file", data, "--job-dir", job, flag, value],
            &["error: ", needle],
        );
        assert_eq!(out.status.code(), Some(1), "{flag} {value}");
        assert_eq!(
            text(&out.stderr).lines().count(),
            1,
            "one line: {}",
            text(&out.stderr)
        );
    }
    // A device this build or machine does not have fails before any data is read.
    if !cfg!(feature = "cuda") {
        let out = fails_with(
            &["--train-file", data, "--job-dir", job, "--device", "cuda"],
            &["error: --device cuda", "cuda"],
        );
        assert!(
            !text(&out.stderr).contains("Loaded"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(
        !Path::new(job).exists(),
        "nothing written for a run that never started"
    );
}

#[test]
fn missing_or_broken_data_is_reported_with_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    let job = job.to_str().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = fails_with(
        &["--train-file", empty.to_str().unwrap(), "--job-dir", job],
        &["error: loading MNIST from", "train-images-idx3-ubyte"],
    );
    assert_eq!(out.status.code(), Some(1));
    let mismatch = workspace().join("testdata/idx/count-mismatch");
    fails_with(
        &["--train-file", mismatch.to_str().unwrap(), "--job-dir", job],
        &["error: loading MNIST from", "train"],
    );
    // A training file that is not IDX at all.
    let junk = tmp.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(junk.join(name), b"definitely not an IDX file").unwrap();
    }
    fails_with(
        &["--train-file", junk.to_str().unwrap(), "--job-dir", job],
        &["error: loading MNIST from", "train-images-idx3-ubyte"],
    );
    assert!(!Path::new(job).join("model").exists());
}

#[test]
fn unwritable_job_dir_fails_before_the_data_is_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    // A regular file where the job directory should be: nothing can be created under it.
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let job = blocker.join("job");
    // The training data does not exist either: the job directory must be the error, because
    // it is checked first (in well under a second, instead of after a whole training run).
    let missing_data = tmp.path().join("no-such-data");
    let out = fails_with(
        &[
            "--train-file",
            missing_data.to_str().unwrap(),
            "--job-dir",
            job.to_str().unwrap(),
        ],
        &[&format!(
            "error: --job-dir {} is not writable",
            job.display()
        )],
    );
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("no-such-data"), "{stderr}");
    assert!(!stderr.contains("Loaded"), "{stderr}");
}

/// The metric file of a tuning trial, as `cloudml-hypertune` writes it: one JSON object per
/// report with sorted keys and string values, a report per epoch (validation metric) and the
/// test metric last.
#[test]
fn a_tuning_trial_reports_its_metric_like_cloudml_hypertune() {
    let tmp = tempfile::tempdir().unwrap();
    let metric_file = tmp.path().join("hypertune/3/output.metrics");
    let run_trial = |job: &str, tag: &str| {
        let out = crate::common::train_small_command(
            &tmp.path().join(job),
            &[
                "--epochs=2",
                "--validation-split=0.2",
                "--batch-size=50",
                "--no-tensorboard",
            ],
        )
        .env("CLOUD_ML_HP_METRIC_FILE", &metric_file)
        .env("CLOUD_ML_TRIAL_ID", "3")
        .env("CLOUD_ML_HP_METRIC_TAG", tag)
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let lines: Vec<String> = std::fs::read_to_string(&metric_file)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        (
            text(&out.stdout),
            crate::common::job_json(&tmp.path().join(job)),
            lines,
        )
    };

    let (stdout, job, lines) = run_trial("accuracy", "accuracy");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let reports: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 800 training examples at batch 50: 16 steps per epoch.
    let steps: Vec<&str> = reports
        .iter()
        .map(|r| r["global_step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["16", "32", "32"]);
    for (report, epoch) in reports[..2]
        .iter()
        .zip(&job["metrics"]["epochs"].as_array().unwrap()[..])
    {
        let value: f64 = report["accuracy"].as_str().unwrap().parse().unwrap();
        assert_eq!(value, epoch["val_accuracy"].as_f64().unwrap());
    }
    let test_accuracy = value_after(stdout.lines().last().unwrap(), "Test Accuracy: ");
    assert_eq!(reports[2]["accuracy"], test_accuracy.to_string());
    assert!(reports.iter().all(|r| r["trial"] == "3"));
    assert!(reports[0]["timestamp"].as_f64().unwrap() > 1.7e9);
    assert!(
        lines[0].starts_with("{\"accuracy\": \"")
            && lines[0].contains("\", \"global_step\": \"16\", \"timestamp\": "),
        "{}",
        lines[0]
    );

    // A loss tag reports the loss; the file is rewritten for the new run.
    let (stdout, _, lines) = run_trial("loss", "val_loss");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let last: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    let test_loss = value_after(stdout.lines().rev().nth(1).unwrap(), "Test Loss: ");
    assert_eq!(last["val_loss"], test_loss.to_string());
}
