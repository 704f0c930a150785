//! TensorBoard's own readers load what [`tfevents::EventWriter`] writes: every scalar, with its
//! step, value and wall time, from local runs and from a `gs://` run written through a real
//! fake-gcs-server.
//!
//! The readers are those of the `tensorboard` PyPI package (scripts/requirements-test.txt), run
//! by `scripts/tensorboard-scalars.py` with the test Python (`$PYTHON`, or `.venv/bin/python`):
//! the Python event loader, and for local runs also a real `tensorboard` server with its default
//! (Rust) data server, queried over HTTP as the web page does. TensorBoard cannot be pointed at a
//! GCS emulator (its GCS hosts are hard-coded), so the gs:// run is read from a copy of the bucket.

// Helpers outside #[test] functions unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gcs_emulator::GcsEmulator;
use storage::Location;
use tfevents::{EventWriter, WriterOptions};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    let python = std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run scripts/setup-python.sh (or set PYTHON)",
        python.display()
    );
    python
}

/// `run -> tag -> [(step, value)]`, what a run should show.
type Expected = BTreeMap<String, BTreeMap<String, Vec<(i64, f32)>>>;

/// Runs TensorBoard's readers on `logdir`; `server` adds the HTTP data-server check.
fn tensorboard_scalars(logdir: &Path, server_points: Option<usize>) -> serde_json::Value {
    let mut command = Command::new(python());
    command
        .arg(workspace().join("scripts/tensorboard-scalars.py"))
        .arg(logdir);
    if let Some(points) = server_points {
        command.arg("--server").arg(points.to_string());
    }
    let output = command.output().expect("the test Python runs");
    assert!(
        output.status.success(),
        "tensorboard-scalars.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from tensorboard-scalars.py")
}

fn check_python_loader(read: &serde_json::Value, expected: &Expected, started: f64) {
    let loaded = read["python_loader"].as_object().expect("runs");
    assert_eq!(
        loaded.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "runs"
    );
    for (run, tags) in expected {
        let loaded_tags = loaded[run].as_object().expect("tags");
        assert_eq!(
            loaded_tags.keys().collect::<Vec<_>>(),
            tags.keys().collect::<Vec<_>>(),
            "tags of {run}"
        );
        for (tag, points) in tags {
            let got: Vec<(i64, String)> = loaded_tags[tag]
                .as_array()
                .expect("points")
                .iter()
                .map(|point| {
                    let wall_time = point[2].as_f64().expect("wall time");
                    assert!(
                        wall_time >= started.floor() && wall_time < started + 600.0,
                        "{run}/{tag}: wall time {wall_time}, run started at {started}"
                    );
                    (
                        point[0].as_i64().expect("step"),
                        point[1].as_str().expect("bits").to_string(),
                    )
                })
                .collect();
            let want: Vec<(i64, String)> = points
                .iter()
                .map(|(step, value)| (*step, hex_bits(*value)))
                .collect();
            assert_eq!(
                got, want,
                "{run}/{tag} as TensorBoard's Python loader reads it"
            );
        }
    }
}

fn check_data_server(read: &serde_json::Value, expected: &Expected) {
    let served = read["data_server"].as_object().expect("runs");
    for (run, tags) in expected {
        for (tag, points) in tags {
            let got: Vec<(i64, f32)> = served
                .get(run)
                .and_then(|tags| tags.get(tag))
                .and_then(|points| points.as_array())
                .unwrap_or_else(|| panic!("the data server has no {run}/{tag}: {served:?}"))
                .iter()
                .map(|point| {
                    (
                        point[1].as_i64().expect("step"),
                        point[2].as_f64().expect("value") as f32,
                    )
                })
                .collect();
            assert_eq!(
                &got, points,
                "{run}/{tag} as TensorBoard's data server serves it"
            );
        }
    }
}

fn hex_bits(value: f32) -> String {
    value
        .to_le_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Writes a Keras-shaped pair of runs (`train/`, `validation/`) and returns what they should show.
fn write_keras_shaped_runs(logdir: &Location, options: &WriterOptions) -> Expected {
    let mut expected = Expected::new();
    let mut train = EventWriter::create_with(&logdir.join("train"), options.clone()).unwrap();
    let mut validation =
        EventWriter::create_with(&logdir.join("validation"), options.clone()).unwrap();
    let mut record = |writer: &mut EventWriter, run: &str, tag: &str, step: i64, value: f32| {
        writer.write_scalar(tag, step, value).unwrap();
        expected
            .entry(run.to_string())
            .or_default()
            .entry(tag.to_string())
            .or_default()
            .push((step, value));
    };
    let batches_per_epoch = 7;
    for epoch in 0..3i64 {
        for batch in 1..=batches_per_epoch {
            let step = epoch * batches_per_epoch + batch;
            let loss = 2.3 / (step as f32).sqrt();
            record(&mut train, "train", "batch_loss", step, loss);
            record(
                &mut train,
                "train",
                "batch_accuracy",
                step,
                1.0 - loss / 3.0,
            );
        }
        let loss = 1.7 / (epoch as f32 + 1.0);
        record(&mut train, "train", "epoch_loss", epoch, loss);
        record(
            &mut train,
            "train",
            "epoch_accuracy",
            epoch,
            0.9 + epoch as f32 / 100.0,
        );
        record(&mut train, "train", "epoch_learning_rate", epoch, 0.01);
        record(
            &mut validation,
            "validation",
            "epoch_loss",
            epoch,
            loss * 1.1,
        );
        record(
            &mut validation,
            "validation",
            "epoch_accuracy",
            epoch,
            0.875,
        );
        train.flush().unwrap();
        validation.flush().unwrap();
    }
    // Steps beyond 32 bits and values TensorBoard must not round.
    record(
        &mut train,
        "train",
        "batch_loss",
        1 << 40,
        f32::MIN_POSITIVE,
    );
    record(&mut train, "train", "batch_accuracy", 1 << 40, 0.1);
    train.close().unwrap();
    validation.close().unwrap();
    expected
}

fn point_count(expected: &Expected) -> usize {
    expected
        .values()
        .flat_map(|tags| tags.values())
        .map(Vec::len)
        .sum()
}

#[test]
fn tensorboard_loads_every_scalar_of_a_local_run() {
    let temp = tempfile::tempdir().unwrap();
    let started = now();
    let logdir = Location::parse(temp.path().to_str().unwrap()).unwrap();
    let expected = write_keras_shaped_runs(&logdir, &WriterOptions::default());

    let read = tensorboard_scalars(temp.path(), Some(point_count(&expected)));
    check_python_loader(&read, &expected, started);
    check_data_server(&read, &expected);
}

#[test]
fn tensorboard_loads_a_gs_run_that_grew_by_whole_uploads() {
    let emulator = GcsEmulator::start_with_buckets(&["tb-bucket"]).unwrap();
    let options = emulator.storage_options();
    let logdir = Location::parse_with("gs://tb-bucket/job/logs", &options).unwrap();
    let started = now();
    // Every write is an upload here, so the object is seen growing record by record.
    let every_write = WriterOptions {
        upload_interval: Duration::ZERO,
        ..WriterOptions::default()
    };

    let mut train = EventWriter::create_with(&logdir.join("train"), every_write.clone()).unwrap();
    let names = logdir.list_blocking().unwrap();
    assert_eq!(
        names.len(),
        1,
        "the file exists as soon as the writer does: {names:?}"
    );
    let object = logdir.join(&names[0]);
    let mut previous = object.read_blocking().unwrap();
    for step in 1..=5 {
        train.write_scalar("batch_loss", step, step as f32).unwrap();
        let now_visible = object.read_blocking().unwrap();
        assert!(
            now_visible.len() > previous.len() && now_visible.starts_with(&previous),
            "each upload extends the last, as TensorBoard's ranged GCS reads need"
        );
        previous = now_visible;
    }
    train.close().unwrap();
    logdir.join("train").delete_tree_blocking().unwrap();

    let expected = write_keras_shaped_runs(&logdir, &WriterOptions::default());
    let copy = tempfile::tempdir().unwrap();
    for name in logdir.list_blocking().unwrap() {
        let bytes = logdir.join(&name).read_blocking().unwrap();
        let path = copy.path().join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let read = tensorboard_scalars(copy.path(), None);
    check_python_loader(&read, &expected, started);
}
