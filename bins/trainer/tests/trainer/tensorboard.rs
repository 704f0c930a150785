//! The trainer's TensorBoard logs, read by TensorBoard's own event loader (the `tensorboard`
//! PyPI package, via scripts/tensorboard-scalars.py and the test Python): Keras's run
//! directories, tags and steps, and values equal to what job.json records.

// Helpers outside #[test] functions unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use gcs_emulator::GcsEmulator;
use storage::Location;

use crate::common::{job_json, python, small_mnist, text, train_small, trainer_command, workspace};

/// `run -> tag -> [(step, f32 bits)]` as TensorBoard's Python loader reads `logdir`.
type Loaded = BTreeMap<String, BTreeMap<String, Vec<(i64, u32)>>>;

fn tensorboard_scalars(logdir: &Path) -> Loaded {
    let output = Command::new(python())
        .arg(workspace().join("scripts/tensorboard-scalars.py"))
        .arg(logdir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut loaded = Loaded::new();
    for (run, tags) in json["python_loader"].as_object().unwrap() {
        for (tag, points) in tags.as_object().unwrap() {
            let points = points
                .as_array()
                .unwrap()
                .iter()
                .map(|point| {
                    let bits = u32::from_le_bytes(
                        u32::from_str_radix(point[1].as_str().unwrap(), 16)
                            .unwrap()
                            .to_be_bytes(),
                    );
                    (point[0].as_i64().unwrap(), bits)
                })
                .collect();
            loaded
                .entry(run.clone())
                .or_default()
                .insert(tag.clone(), points);
        }
    }
    loaded
}

fn bits(value: &serde_json::Value) -> u32 {
    (value.as_f64().unwrap() as f32).to_bits()
}

fn tags(loaded: &Loaded, run: &str) -> Vec<String> {
    loaded[run].keys().cloned().collect()
}

#[test]
fn tensorboard_reads_keras_tags_steps_and_the_values_job_json_records() {
    let temp = tempfile::tempdir().unwrap();
    let job_dir = temp.path().join("job");
    // 1000 images, 20% held out: 800 to train on, 25 steps per epoch, 50 in all.
    let out = train_small(
        &job_dir,
        &[
            "--epochs",
            "2",
            "--validation-split",
            "0.2",
            "--log-every-steps",
            "5",
            "--threads",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job = job_json(&job_dir);
    let epochs = job["metrics"]["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);

    let loaded = tensorboard_scalars(&job_dir.join("logs"));
    assert_eq!(
        loaded.keys().collect::<Vec<_>>(),
        ["train", "validation"],
        "Keras's run directories"
    );
    assert_eq!(
        tags(&loaded, "train"),
        [
            "batch_accuracy",
            "batch_loss",
            "epoch_accuracy",
            "epoch_learning_rate",
            "epoch_loss"
        ]
    );
    assert_eq!(
        tags(&loaded, "validation"),
        [
            "epoch_accuracy",
            "epoch_loss",
            "evaluation_accuracy_vs_iterations",
            "evaluation_loss_vs_iterations"
        ]
    );

    let train = &loaded["train"];
    let validation = &loaded["validation"];
    let steps = |points: &Vec<(i64, u32)>| points.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(
        steps(&train["batch_loss"]),
        (1..=10).map(|i| i * 5).collect::<Vec<_>>()
    );
    assert_eq!(steps(&train["batch_accuracy"]), steps(&train["batch_loss"]));
    for (epoch, record) in epochs.iter().enumerate() {
        let epoch_step = epoch as i64;
        let global_step = 25 * (epoch_step + 1);
        assert_eq!(
            train["epoch_loss"][epoch],
            (epoch_step, bits(&record["loss"]))
        );
        assert_eq!(
            train["epoch_accuracy"][epoch],
            (epoch_step, bits(&record["accuracy"]))
        );
        assert_eq!(
            train["epoch_learning_rate"][epoch],
            (epoch_step, 0.01f32.to_bits())
        );
        // At an epoch's last step the running means are the epoch's means.
        let last_batch = train["batch_loss"]
            .iter()
            .find(|point| point.0 == global_step)
            .unwrap();
        assert_eq!(
            last_batch.1,
            bits(&record["loss"]),
            "batch_loss at {global_step}"
        );
        assert_eq!(
            validation["epoch_loss"][epoch],
            (epoch_step, bits(&record["val_loss"]))
        );
        assert_eq!(
            validation["epoch_accuracy"][epoch],
            (epoch_step, bits(&record["val_accuracy"]))
        );
        assert_eq!(
            validation["evaluation_loss_vs_iterations"][epoch],
            (global_step, bits(&record["val_loss"]))
        );
        assert_eq!(
            validation["evaluation_accuracy_vs_iterations"][epoch],
            (global_step, bits(&record["val_accuracy"]))
        );
    }
    for (_, value) in &train["batch_accuracy"] {
        let accuracy = f32::from_bits(*value);
        assert!((0.0..=1.0).contains(&accuracy), "{accuracy}");
    }
}

#[test]
fn log_directory_flags_and_environment() {
    let temp = tempfile::tempdir().unwrap();

    // AIP_TENSORBOARD_LOG_DIR (Vertex AI) moves the logs out of the job dir; epoch scalars only.
    let aip_logs = temp.path().join("aip-logs");
    let out = crate::common::train_small_command(
        &temp.path().join("aip-job"),
        &["--log-every-steps", "0"],
    )
    .env("AIP_TENSORBOARD_LOG_DIR", &aip_logs)
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!temp.path().join("aip-job/logs").exists());
    let loaded = tensorboard_scalars(&aip_logs);
    assert_eq!(
        loaded.keys().collect::<Vec<_>>(),
        ["train"],
        "no validation without a split"
    );
    assert_eq!(
        tags(&loaded, "train"),
        ["epoch_accuracy", "epoch_learning_rate", "epoch_loss"]
    );

    // --tensorboard-dir wins over the environment.
    let flag_logs = temp.path().join("flag-logs");
    let out = crate::common::train_small_command(
        &temp.path().join("flag-job"),
        &["--tensorboard-dir", flag_logs.to_str().unwrap()],
    )
    .env("AIP_TENSORBOARD_LOG_DIR", &aip_logs)
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // 1000 images are 32 steps: no multiple of the default 100, so epoch scalars only.
    assert_eq!(tags(&tensorboard_scalars(&flag_logs), "train").len(), 3);

    let out = train_small(&temp.path().join("quiet-job"), &["--no-tensorboard"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!temp.path().join("quiet-job/logs").exists());
    assert!(temp.path().join("quiet-job/model/saved_model.pb").exists());
}

#[test]
fn an_unwritable_log_directory_stops_the_run_before_training() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let bad = file.join("logs");
    let out = train_small(
        &temp.path().join("job"),
        &["--tensorboard-dir", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: starting TensorBoard logs in") && stderr.contains("a-file"),
        "{stderr}"
    );
    assert!(!stderr.contains("Epoch 1/"), "{stderr}");
    assert!(!temp.path().join("job/model").exists());
}

#[test]
fn gs_logs_are_uploaded_and_tensorboard_reads_them() {
    let emulator = GcsEmulator::start_with_buckets(&["tb-bucket"]).unwrap();
    let out = trainer_command()
        .arg("--train-file")
        .arg(small_mnist())
        .args([
            "--job-dir",
            "gs://tb-bucket/jobs/run-1",
            "--log-every-steps",
            "8",
            "--threads",
            "2",
        ])
        .env("STORAGE_EMULATOR_HOST", emulator.endpoint())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let logs = Location::parse_with(
        "gs://tb-bucket/jobs/run-1/logs",
        &emulator.storage_options(),
    )
    .unwrap();
    let copy = tempfile::tempdir().unwrap();
    let names = logs.list_blocking().unwrap();
    assert_eq!(names.len(), 1, "{names:?}");
    for name in names {
        let path = copy.path().join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, logs.join(&name).read_blocking().unwrap()).unwrap();
    }
    let loaded = tensorboard_scalars(copy.path());
    let train = &loaded["train"];
    assert_eq!(
        train["batch_loss"].iter().map(|p| p.0).collect::<Vec<_>>(),
        [8, 16, 24, 32]
    );
    let job: serde_json::Value = serde_json::from_slice(
        &Location::parse_with(
            "gs://tb-bucket/jobs/run-1/job.json",
            &emulator.storage_options(),
        )
        .unwrap()
        .read_blocking()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        train["epoch_loss"],
        [(0, bits(&job["metrics"]["epochs"][0]["loss"]))]
    );
}

#[test]
fn a_preempted_and_resumed_run_continues_its_curves() {
    let temp = tempfile::tempdir().unwrap();
    let job_dir = temp.path().join("job");
    let flags = ["--epochs", "2", "--log-every-steps", "4", "--threads", "2"];
    // SIGTERM after step 45 of 64 (32 per epoch): a checkpoint, exit 75, logs flushed.
    let out = crate::common::train_small_command(&job_dir, &flags)
        .env("TRAINER_FAULT_SIGTERM_AFTER_STEP", "45")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let preempted = tensorboard_scalars(&job_dir.join("logs"));
    assert_eq!(
        preempted["train"]["batch_loss"].last().map(|point| point.0),
        Some(44)
    );

    let out = train_small(&job_dir, &flags);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job = job_json(&job_dir);
    let loaded = tensorboard_scalars(&job_dir.join("logs"));
    let train = &loaded["train"];
    assert_eq!(
        train["batch_loss"].iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=16).map(|i| i * 4).collect::<Vec<_>>(),
        "one series across both processes' files"
    );
    for epoch in 0..2 {
        assert_eq!(
            train["epoch_loss"][epoch],
            (epoch as i64, bits(&job["metrics"]["epochs"][epoch]["loss"]))
        );
    }
}
