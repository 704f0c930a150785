//! Shared by the trainer's integration tests: where the workspace, the small MNIST fixture and
//! the test Python are, and how the real `trainer` binary is run on them.

// Helpers outside #[test] functions unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// 1000 training and 200 test images, gzip-compressed.
pub fn small_mnist() -> PathBuf {
    workspace().join("testdata/idx/mnist-small")
}

/// The test virtualenv's Python with TensorFlow 2.21 (`$PYTHON` overrides). Fails, never skips,
/// without it: the TensorFlow checks are the point of the tests that call this.
pub fn python() -> PathBuf {
    let python = std::env::var("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run scripts/setup-python.sh (TensorFlow 2.21 checks the exported model)",
        python.display()
    );
    python
}

/// The trainer binary with the environment variables that would change what it does
/// (`STORAGE_EMULATOR_HOST`, `TF_CONFIG`, `AIP_TENSORBOARD_LOG_DIR`) cleared, so the developer's shell cannot leak into a
/// test; a test that wants one sets it on the returned command.
pub fn trainer_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
    command
        .env_remove("STORAGE_EMULATOR_HOST")
        .env_remove("TF_CONFIG")
        .env_remove("AIP_TENSORBOARD_LOG_DIR")
        .env_remove("AIP_CHECKPOINT_DIR");
    command
}

pub fn trainer(args: &[&str]) -> Output {
    trainer_command().args(args).output().expect("trainer runs")
}

/// `trainer --train-file <small MNIST> --job-dir <job_dir>` followed by `extra`, not yet run.
pub fn train_small_command(job_dir: &Path, extra: &[&str]) -> Command {
    let mut command = trainer_command();
    command
        .arg("--train-file")
        .arg(small_mnist())
        .arg("--job-dir")
        .arg(job_dir)
        .args(extra);
    command
}

pub fn train_small(job_dir: &Path, extra: &[&str]) -> Output {
    train_small_command(job_dir, extra)
        .output()
        .expect("trainer runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `job.json` the trainer wrote into a local job directory.
pub fn job_json(job_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(job_dir.join("job.json")).unwrap()).unwrap()
}

/// The last two lines of the trainer's stdout: `Test Loss: …` and `Test Accuracy: …`.
pub fn result_lines(stdout: &str) -> Vec<String> {
    stdout.lines().rev().take(2).map(String::from).collect()
}
