//! `--train-file gs://…` and `--job-dir gs://…` against a real GCS emulator (fake-gcs-server on
//! a loopback port, started by the `gcs-emulator` test crate).

use gcs_emulator::GcsEmulator;
use storage::Location;

use crate::common::{result_lines, small_mnist, train_small, trainer_command};

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

#[test]
fn trains_from_and_exports_to_gcs() {
    let emulator = GcsEmulator::start_with_buckets(&["mnist-bucket"]).expect("emulator starts");
    let options = emulator.storage_options();
    let gs =
        |path: &str| Location::parse_with(&format!("gs://mnist-bucket/{path}"), &options).unwrap();

    let fixture = small_mnist();
    for name in FILES {
        let bytes = std::fs::read(fixture.join(name)).unwrap();
        gs(&format!("data/mnist/{name}"))
            .write_blocking(bytes.into())
            .unwrap();
    }

    let out = trainer_command()
        .args([
            "--train-file",
            "gs://mnist-bucket/data/mnist",
            "--job-dir",
            "gs://mnist-bucket/jobs/run-1",
            "--seed",
            "4",
            "--threads",
            "2",
        ])
        .env("STORAGE_EMULATOR_HOST", emulator.endpoint())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "trainer failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nemulator:\n{}",
        emulator.stderr()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let n = lines.len();
    assert!(lines[n - 2].starts_with("Test Loss: "), "{stdout}");
    assert!(lines[n - 1].starts_with("Test Accuracy: "), "{stdout}");
    assert!(
        stderr.contains("from gs://mnist-bucket/data/mnist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Model exported to gs://mnist-bucket/jobs/run-1/model"),
        "{stderr}"
    );

    let mut listed = gs("jobs/run-1").list_blocking().unwrap();
    listed.sort();
    // One TensorBoard event file (its name holds time, host and pid; the tensorboard tests read it).
    let logs: Vec<String> = listed
        .iter()
        .filter(|name| name.starts_with("logs/"))
        .cloned()
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0].starts_with("logs/train/events.out.tfevents."),
        "{logs:?}"
    );
    listed.retain(|name| !name.starts_with("logs/"));
    assert_eq!(
        listed,
        [
            // The epoch-end checkpoint; no staging prefix or write probe is left behind.
            "checkpoints/checkpoint",
            "checkpoints/ckpt-32.data-00000-of-00001",
            "checkpoints/ckpt-32.index",
            "job.json",
            "model/saved_model.pb",
            "model/variables/variables.data-00000-of-00001",
            "model/variables/variables.index",
        ]
    );
    let job: serde_json::Value =
        serde_json::from_slice(&gs("jobs/run-1/job.json").read_blocking().unwrap()).unwrap();
    assert_eq!(job["model_dir"], "gs://mnist-bucket/jobs/run-1/model");
    assert_eq!(job["train_file"], "gs://mnist-bucket/data/mnist");
    let accuracy: f64 = lines[n - 1]["Test Accuracy: ".len()..].parse().unwrap();
    assert_eq!(job["metrics"]["test_accuracy"].as_f64(), Some(accuracy));
    assert!(accuracy > 0.7, "{accuracy}");

    // Same run from local files gives the same numbers: gs:// changes where bytes come from,
    // nothing else.
    let tmp = tempfile::tempdir().unwrap();
    let local = train_small(tmp.path(), &["--seed", "4", "--threads", "2"]);
    assert!(local.status.success());
    let local_stdout = String::from_utf8_lossy(&local.stdout);
    assert_eq!(result_lines(&local_stdout), result_lines(&stdout));
    assert_eq!(
        std::fs::read(
            tmp.path()
                .join("model/variables/variables.data-00000-of-00001")
        )
        .unwrap(),
        gs("jobs/run-1/model/variables/variables.data-00000-of-00001")
            .read_blocking()
            .unwrap()
            .to_vec()
    );
}

#[test]
fn a_job_dir_in_a_missing_bucket_fails_before_the_data_is_loaded() {
    let emulator = GcsEmulator::start_with_buckets(&["mnist-bucket"]).expect("emulator starts");
    let out = trainer_command()
        .args([
            "--train-file",
            small_mnist().to_str().unwrap(),
            "--job-dir",
            "gs://no-such-bucket/jobs/run-1",
        ])
        .env("STORAGE_EMULATOR_HOST", emulator.endpoint())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: --job-dir gs://no-such-bucket/jobs/run-1 is not writable"),
        "{stderr}"
    );
    assert!(!stderr.contains("Loaded"), "{stderr}");
}
