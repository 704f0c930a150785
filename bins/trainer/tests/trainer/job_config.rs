//! `trainer --config FILE`: the job configuration decides the device, refuses what one machine
//! cannot do, applies its args like flags, and is recorded in job.json. Runs the real binary on a
//! small MNIST subset.

use std::path::Path;
use std::process::Output;

use crate::common::{
    job_json, small_mnist, text, train_small, train_small_command, trainer, workspace,
};

fn example(name: &str) -> String {
    workspace().join("config").join(name).display().to_string()
}

/// `trainer --config <config>` on the small MNIST fixture into `job_dir`, then `extra`.
fn train_with_config(config: &str, job_dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--config", config];
    args.extend_from_slice(extra);
    train_small(job_dir, &args)
}

/// The message names the config, what it asks for and what is missing, and how to proceed.
#[test]
fn tutorial_config_on_a_machine_without_gpu_stops_with_a_clear_message() {
    if cfg!(feature = "cuda") {
        eprintln!(
            "skipped: a `cuda` build may find a GPU; the CPU-only message is tested without it"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let job_dir = dir.path().join("job");
    let config = example("config.yaml");
    let output = train_with_config(&config, &job_dir, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: {config}: masterType standard_p100 asks for 1 × NVIDIA_TESLA_P100 GPU, but this \
             trainer was built without the `cuda` feature. Run a build with `--features cuda` on a \
             machine with an NVIDIA GPU, or pass --allow-cpu to train on the CPU anyway\n"
        )
    );
    assert_eq!(text(&output.stdout), "");
    assert!(
        !job_dir.exists(),
        "nothing may be written when the run is refused"
    );
}

#[test]
fn tutorial_config_with_allow_cpu_trains_and_records_the_config() {
    if cfg!(feature = "cuda") {
        eprintln!("skipped: a `cuda` build may find a GPU and not fall back to the CPU");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let job_dir = dir.path().join("job");
    let config = example("config.yaml");
    let output = train_with_config(&config, &job_dir, &["--allow-cpu"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains(&format!(
            "warning: {config}: masterType standard_p100 asks for 1 × NVIDIA_TESLA_P100 GPU, but \
             this trainer was built without the `cuda` feature; training on the CPU because of \
             --allow-cpu\n"
        )),
        "{}",
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains("Test Accuracy: "),
        "{}",
        text(&output.stdout)
    );
    assert!(job_dir.join("model/saved_model.pb").is_file());

    let record = job_json(&job_dir);
    let job_config = &record["job_config"];
    assert_eq!(job_config["source"], config);
    assert_eq!(job_config["trainingInput"]["masterType"], "standard_p100");
    assert_eq!(job_config["trainingInput"]["pythonVersion"], "3.5");
    assert_eq!(job_config["resolved"]["master"]["device"], "gpu");
    assert_eq!(
        job_config["resolved"]["master"]["gpu_type"],
        "NVIDIA_TESLA_P100"
    );
    assert_eq!(job_config["resolved"]["worker_count"], 0);
    assert_eq!(job_config["applied"]["device"], "cpu");
    assert_eq!(job_config["applied"]["allow_cpu"], true);
    assert!(
        record["device"].as_str().unwrap().starts_with("cpu"),
        "{}",
        record["device"]
    );
}

#[test]
fn cpu_config_trains_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let job_dir = dir.path().join("job");
    // cpu-basic.yaml names a gs:// jobDir; the --job-dir given here wins over it.
    let output = train_with_config(&example("cpu-basic.yaml"), &job_dir, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        !text(&output.stderr).contains("warning"),
        "{}",
        text(&output.stderr)
    );
    let record = job_json(&job_dir);
    assert_eq!(record["job_config"]["jobId"], "mnist_cpu_basic");
    assert_eq!(record["job_config"]["applied"]["device"], "cpu");
    assert_eq!(
        record["job_config"]["resolved"]["job_dir"],
        "gs://mnist-example-bucket/jobs/mnist_cpu_basic"
    );
    // The model went to the command line's --job-dir, not the config's bucket.
    assert!(job_dir.join("model/saved_model.pb").is_file());
}

#[test]
fn workers_and_parameter_servers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = example("distributed.yaml");
    let output = train_with_config(&config, dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: {config}: the job asks for workerCount 2 and parameterServerCount 1 besides the \
             master, but this trainer runs on one machine (distributed training is not \
             implemented); set workerCount, parameterServerCount and evaluatorCount to 0\n"
        )
    );
}

/// `trainingInput.args` apply like flags, `jobDir` like `--job-dir`, and the command line wins.
#[test]
fn config_args_apply_and_command_line_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let from_config = dir.path().join("from-config");
    let config = dir.path().join("job.yaml");
    std::fs::write(
        &config,
        format!(
            "trainingInput:\n  scaleTier: BASIC\n  jobDir: {}\n  args: [--epochs, '3', --batch-size, '100', --seed=7, --job-name, from_config]\n",
            from_config.display()
        ),
    )
    .unwrap();
    let output = trainer(&[
        "--config",
        config.to_str().unwrap(),
        "--train-file",
        small_mnist().to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let record = job_json(&from_config);
    let hyperparameters = &record["hyperparameters"];
    assert_eq!(
        hyperparameters["epochs"], 1,
        "the command line's --epochs wins"
    );
    assert_eq!(hyperparameters["batch_size"], 100, "from the config's args");
    assert_eq!(hyperparameters["seed"], 7, "from the config's args");
    assert_eq!(record["job_name"], "from_config");
    assert_eq!(
        record["job_config"]["resolved"]["args"],
        serde_json::json!([
            "--epochs",
            "3",
            "--batch-size",
            "100",
            "--seed=7",
            "--job-name",
            "from_config"
        ])
    );
    // One epoch was run, as the command line said.
    assert_eq!(record["metrics"]["epochs"].as_array().unwrap().len(), 1);
}

#[test]
fn invalid_config_lists_every_problem_with_its_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "trainingInput:\n  scaleTier: CUSTOM\n  masterTyp: standard_p100\n  workerCount: -1\n",
    )
    .unwrap();
    let output = train_with_config(config.to_str().unwrap(), &dir.path().join("job"), &[]);
    assert_eq!(output.status.code(), Some(1));
    let path = config.display();
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: {path}: 3 problems:\n  \
             trainingInput.masterTyp: unknown field; did you mean masterType?\n  \
             trainingInput.workerCount: must be ≥ 0, found -1\n  \
             trainingInput.masterType: required when scaleTier is CUSTOM\n"
        )
    );
}

#[test]
fn unknown_flag_in_config_args_is_blamed_on_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("args.yaml");
    std::fs::write(&config, "trainingInput:\n  args: [--epochz, '2']\n").unwrap();
    let output = train_with_config(config.to_str().unwrap(), &dir.path().join("job"), &[]);
    assert_eq!(output.status.code(), Some(1));
    let message = text(&output.stderr);
    assert!(
        message.starts_with(&format!(
            "error: {}: trainingInput.args: unexpected argument '--epochz' found",
            config.display()
        )),
        "{message}"
    );
}

#[test]
fn distributed_tf_config_is_refused_and_a_broken_one_explained() {
    let dir = tempfile::tempdir().unwrap();
    let run = |tf_config: &str| {
        train_small_command(&dir.path().join("job"), &[])
            .env("TF_CONFIG", tf_config)
            .output()
            .unwrap()
    };
    let output = run(
        r#"{"cluster": {"chief": ["c:2222"], "worker": ["w:2222"]}, "task": {"type": "worker", "index": 0}}"#,
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "error: TF_CONFIG: the cluster lists 2 tasks, but this trainer runs on one machine \
         (distributed training is not implemented)\n"
    );
    let output = run(r#"{"cluster": {"chief": ["c:2222"]}, "task": {"type": "worker"}}"#);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "error: TF_CONFIG: task.type: \"worker\" is not in cluster (cluster has chief)\n"
    );
}

#[test]
fn hyperparameter_config_trains_once_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = example("hptuning.yaml");
    let output = train_with_config(&config, dir.path(), &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains(&format!(
            "note: {config}: trainingInput.hyperparameters is validated, but this trainer does not \
             run a hyperparameter search; training once with the flags as given\n"
        )),
        "{}",
        text(&output.stderr)
    );
    let record = job_json(dir.path());
    assert_eq!(
        record["job_config"]["resolved"]["hyperparameter_tuning"],
        true
    );
    assert_eq!(
        record["job_config"]["trainingInput"]["hyperparameters"]["params"][0]["parameterName"],
        "learning-rate"
    );
}
