//! Checkpoints and resume with the real `trainer` binary on the small MNIST fixture: a run
//! killed (SIGKILL) at random steps and resumed ends with the same weights, byte for byte, as an
//! uninterrupted run; SIGTERM writes a checkpoint and exits with 75; TensorFlow reads our
//! checkpoints; corrupt or foreign checkpoints are refused; `--resume never` keeps the old ones
//! until its first checkpoint is written.
//!
//! Kills land at exact steps through the trainer's fault-injection variables
//! (`TRAINER_FAULT_SIGKILL_AFTER_STEP`, `TRAINER_FAULT_SIGTERM_AFTER_STEP`: the process sends
//! itself the real signal after that global step), because a small-data run is over in a few
//! tenths of a second. `bench/resume.sh` kills full-size runs at random wall-clock moments.

// Helpers outside #[test] functions unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{python, small_mnist, text, train_small_command};

/// 900 training examples after the split, 29 steps per epoch, 58 in all.
const FLAGS: &[&str] = &[
    "--epochs",
    "2",
    "--seed",
    "7",
    "--threads",
    "2",
    "--validation-split",
    "0.1",
    "--checkpoint-every-steps",
    "5",
];
const TOTAL_STEPS: u64 = 58;

/// Runs the trainer with [`FLAGS`], where `extra` flags replace the value of the same flag in
/// `FLAGS` or are added.
fn run(job_dir: &Path, extra: &[&str], env: &[(&str, String)]) -> Output {
    let mut flags: Vec<&str> = FLAGS.to_vec();
    for pair in extra.chunks(2) {
        match (flags.iter().position(|f| *f == pair[0]), pair.get(1)) {
            (Some(at), Some(value)) => flags[at + 1] = value,
            _ => flags.extend_from_slice(pair),
        }
    }
    let mut command = train_small_command(job_dir, &flags);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("trainer runs")
}

fn succeeded(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "trainer failed ({:?})\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        text(&out.stdout)
    );
    stderr
}

/// The exported weights (the SavedModel's variables data file) and the job's epoch records.
fn outcome(job_dir: &Path) -> (Vec<u8>, serde_json::Value, String) {
    let data =
        std::fs::read(job_dir.join("model/variables/variables.data-00000-of-00001")).unwrap();
    let job = crate::common::job_json(job_dir);
    let test_lines = job["metrics"]["test_loss"].to_string();
    (data, job["metrics"]["epochs"].clone(), test_lines)
}

/// Steps to kill at: distinct, increasing, from a seed the failure message prints.
fn random_steps(count: usize) -> (u64, Vec<u64>) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = test_rng::TestRng::new(seed);
    let mut steps = Vec::new();
    while steps.len() < count {
        let step = 1 + rng.next_u64() % (TOTAL_STEPS - 1);
        if !steps.contains(&step) {
            steps.push(step);
        }
    }
    steps.sort_unstable();
    (seed, steps)
}

#[test]
fn sigkill_at_random_steps_then_resume_ends_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let out = run(&reference, &[], &[]);
    succeeded(&out);
    // Keras's verbose=2 epoch line with the validation metrics, then the final test lines.
    let stdout = text(&out.stdout);
    let epoch_line = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        epoch_line.starts_with("29/29 - ")
            && epoch_line.contains(" - loss: ")
            && epoch_line.contains(" - val_loss: ")
            && epoch_line.contains(" - val_accuracy: "),
        "{stdout}"
    );
    assert!(stdout.contains("\nTest Loss: "), "{stdout}");
    let expected = outcome(&reference);

    let (seed, steps) = random_steps(4);
    let job = tmp.path().join("killed");
    for (i, step) in steps.iter().enumerate() {
        let out = run(
            &job,
            &[],
            &[("TRAINER_FAULT_SIGKILL_AFTER_STEP", step.to_string())],
        );
        assert_eq!(
            out.status.signal(),
            Some(9),
            "kill {i} after step {step} (steps {steps:?}, seed {seed}): {:?}\n{}",
            out.status,
            text(&out.stderr)
        );
        // A checkpoint exists once an earlier process got past step 5.
        if i > 0 && steps[i - 1] >= 5 {
            assert!(
                text(&out.stderr).contains("Resuming from checkpoint"),
                "{}",
                text(&out.stderr)
            );
        }
        assert!(!job.join("model/saved_model.pb").exists());
    }
    let stderr = succeeded(&run(&job, &[], &[]));
    assert!(stderr.contains("Resuming from checkpoint"), "{stderr}");
    let resumed = outcome(&job);
    assert!(
        resumed.0 == expected.0,
        "weights differ after kills at steps {steps:?} (seed {seed})"
    );
    assert_eq!(resumed.1, expected.1, "epoch records (steps {steps:?})");
    assert_eq!(resumed.2, expected.2, "test loss (steps {steps:?})");
    let job_json = crate::common::job_json(&job);
    assert!(job_json["resumed_from"]["global_step"].as_u64().is_some());
}

#[test]
fn sigterm_writes_a_checkpoint_and_exits_75_then_resume_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    succeeded(&run(&reference, &[], &[]));

    let job = tmp.path().join("preempted");
    let out = run(
        &job,
        &[],
        &[("TRAINER_FAULT_SIGTERM_AFTER_STEP", "12".to_string())],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(stderr.contains("checkpoint"), "{stderr}");
    let state = std::fs::read_to_string(job.join("checkpoints/checkpoint")).unwrap();
    // Step 12 is not a multiple of 5: this checkpoint is the SIGTERM's.
    assert!(
        state.starts_with("model_checkpoint_path: \"ckpt-12\"\n"),
        "{state}"
    );
    assert!(!job.join("model").exists());

    succeeded(&run(&job, &[], &[]));
    assert!(outcome(&job).0 == outcome(&reference).0, "weights differ");
}

#[test]
fn tensorflow_reads_the_checkpoint_and_gets_the_saved_models_weights() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    succeeded(&run(&job, &[], &[]));
    let script = r#"
import json, sys
import numpy as np
import tensorflow as tf
job = sys.argv[1]
reader = tf.train.load_checkpoint(job + "/checkpoints")
names = dict(tf.train.list_variables(job + "/checkpoints"))
# Load the SavedModel as TF Serving does (restore op included) and read every variable.
graph = tf.Graph()
with tf.compat.v1.Session(graph=graph) as sess:
    tf.compat.v1.saved_model.loader.load(sess, ["serve"], job + "/model")
    handles = [op for op in graph.get_operations() if op.type == "VarHandleOp"]
    with graph.as_default():
        reads = {op.name: tf.raw_ops.ReadVariableOp(resource=op.outputs[0], dtype=op.get_attr("dtype"))
                 for op in handles}
    saved = sess.run(reads)
compared = []
for name, value in sorted(saved.items()):
    ours = reader.get_tensor(name)
    assert ours.dtype == value.dtype and ours.shape == value.shape, (name, ours.shape, value.shape)
    assert np.array_equal(ours, value), name
    compared.append(name)
print(json.dumps({
    "compared": compared,
    "global_step": int(reader.get_tensor("global_step")),
    "momentum_shape": list(names["dense/kernel/Momentum"]),
    "latest": tf.train.latest_checkpoint(job + "/checkpoints"),
}))
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&job)
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "TensorFlow failed:\n{}",
        text(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        report["compared"],
        serde_json::json!([
            "dense/bias",
            "dense/kernel",
            "dense_1/bias",
            "dense_1/kernel",
            "dense_2/bias",
            "dense_2/kernel"
        ])
    );
    assert_eq!(report["global_step"], TOTAL_STEPS);
    assert_eq!(report["momentum_shape"], serde_json::json!([784, 512]));
    assert!(
        report["latest"]
            .as_str()
            .unwrap()
            .ends_with(&format!("checkpoints/ckpt-{TOTAL_STEPS}")),
        "{report}"
    );
}

fn failed(out: &Output, needles: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    stderr
}

#[test]
fn checkpoints_of_another_configuration_or_corrupt_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    let out = run(
        &job,
        &[],
        &[("TRAINER_FAULT_SIGKILL_AFTER_STEP", "7".to_string())],
    );
    assert_eq!(out.status.signal(), Some(9));
    let latest = job.join("checkpoints/ckpt-5.data-00000-of-00001");
    assert!(latest.exists());

    // Another seed, another batch size: refused, naming each difference.
    failed(
        &run(&job, &["--seed", "8", "--batch-size", "16"], &[]),
        &[
            "checkpoints/ckpt-5 was written by a run with another configuration",
            "batch_size: checkpoint 32, this run 16",
            "seed: checkpoint 7, this run 8",
            "--resume never",
        ],
    );
    // Other data: a different validation split changes what is trained on.
    failed(
        &run(&job, &["--validation-split", "0.2"], &[]),
        &["train_examples: checkpoint 900, this run 800"],
    );

    // One flipped byte in the data file: the checksum names the tensor; nothing is trained or
    // exported from a half-loaded state.
    let mut bytes = std::fs::read(&latest).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x40;
    std::fs::write(&latest, &bytes).unwrap();
    failed(
        &run(&job, &[], &[]),
        &["checkpoints/ckpt-5 is corrupt", "checksum"],
    );
    assert!(!job.join("model").exists());

    // A truncated index.
    let index = job.join("checkpoints/ckpt-5.index");
    let index_bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &index_bytes[..index_bytes.len() / 2]).unwrap();
    failed(&run(&job, &[], &[]), &["ckpt-5.index"]);

    // --resume never starts over (and replaces the broken checkpoint once it has its own).
    succeeded(&run(&job, &["--resume", "never"], &[]));
    assert!(!index.exists());
}

#[test]
fn resume_never_keeps_old_checkpoints_until_the_first_new_one_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    succeeded(&run(&job, &[], &[]));
    let state_file = job.join("checkpoints/checkpoint");
    let old_state = std::fs::read_to_string(&state_file).unwrap();
    let old_latest = job.join(format!("checkpoints/ckpt-{TOTAL_STEPS}.index"));
    let old_index = std::fs::read(&old_latest).unwrap();

    // Killed before its first checkpoint (step 5): the old ones are all still there.
    let out = run(
        &job,
        &["--resume", "never"],
        &[("TRAINER_FAULT_SIGKILL_AFTER_STEP", "4".to_string())],
    );
    assert_eq!(out.status.signal(), Some(9));
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), old_state);
    assert_eq!(std::fs::read(&old_latest).unwrap(), old_index);

    // Killed after its first checkpoint: only the new run's checkpoints are listed and kept.
    let out = run(
        &job,
        &["--resume", "never"],
        &[("TRAINER_FAULT_SIGKILL_AFTER_STEP", "6".to_string())],
    );
    assert_eq!(out.status.signal(), Some(9));
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert_eq!(
        state,
        "model_checkpoint_path: \"ckpt-5\"\nall_model_checkpoint_paths: \"ckpt-5\"\n"
    );
    assert!(!old_latest.exists());
    let mut files: Vec<String> = std::fs::read_dir(job.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["checkpoint", "ckpt-5.data-00000-of-00001", "ckpt-5.index"]
    );
}

#[test]
fn keeps_the_last_k_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    succeeded(&run(&job, &["--keep-checkpoints", "2"], &[]));
    let state = std::fs::read_to_string(job.join("checkpoints/checkpoint")).unwrap();
    assert_eq!(
        state,
        "model_checkpoint_path: \"ckpt-58\"\nall_model_checkpoint_paths: \"ckpt-55\"\nall_model_checkpoint_paths: \"ckpt-58\"\n"
    );
    let count = std::fs::read_dir(job.join("checkpoints")).unwrap().count();
    assert_eq!(count, 5, "state file + 2 bundles of 2 files");
    let _ = small_mnist();
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn a_kill_during_re_export_keeps_the_previous_model_and_a_consistent_job_json() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    succeeded(&run(&job, &["--epochs", "1"], &[]));
    let first_model = outcome(&job).0;
    let first_job = crate::common::job_json(&job);

    // Re-export a different model (another seed, no resume) into the same job dir, killed at
    // each stage of publishing.
    let other = ["--epochs", "1", "--seed", "9", "--resume", "never"];
    for stage in ["staged", "reported", "switched"] {
        let out = run(
            &job,
            &other,
            &[("TRAINER_FAULT_SIGKILL_AT_EXPORT", stage.to_string())],
        );
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{stage}: {}",
            text(&out.stderr)
        );
        // The live model is always whole (marker and variables); it is the previous one until
        // the switch, and job.json is never older than the model it sits beside.
        let model = tree(&job.join("model"));
        assert_eq!(
            model,
            [
                "saved_model.pb",
                "variables/variables.data-00000-of-00001",
                "variables/variables.index"
            ],
            "{stage}"
        );
        let (weights, _, _) = outcome(&job);
        let job_json = crate::common::job_json(&job);
        let seed = job_json["hyperparameters"]["seed"].as_u64();
        match stage {
            "staged" => {
                assert!(
                    weights == first_model,
                    "{stage}: the previous model is gone"
                );
                assert_eq!(job_json, first_job, "{stage}");
            }
            "reported" => {
                assert!(
                    weights == first_model,
                    "{stage}: the previous model is gone"
                );
                assert_eq!(
                    seed,
                    Some(9),
                    "{stage}: job.json is written before the switch"
                );
            }
            _ => {
                assert!(weights != first_model, "{stage}: the new model is live");
                assert_eq!(seed, Some(9), "{stage}");
            }
        }
    }
    // The next run cleans up the staging and previous-model directories and temp files.
    succeeded(&run(&job, &other, &[]));
    let mut top: Vec<String> = std::fs::read_dir(&job)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["checkpoints", "job.json", "logs", "model"]);
    assert!(
        tree(&job).iter().all(|f| !f.contains('#')),
        "{:?}",
        tree(&job)
    );
}
