//! Cloud ML Engine training jobs driven by the real gcloud CLI (SDK 528) against `predictor
//! serve`, with `gs://` on fake-gcs-server: the tutorial's `gcloud ml-engine jobs submit
//! training` verbatim (apart from the endpoint overrides and `--access-token-file`), `jobs
//! describe|list|stream-logs|cancel`, and the API's refusals.
//!
//! gcloud talks to our server through `api_endpoint_overrides/ml` and `/logging`, and to the
//! emulator through `/storage`, in a private `CLOUDSDK_CONFIG`. It packages `./trainer` (a stub
//! Python package, as the user's code would be) with the test venv's Python and uploads it; the
//! server records it and runs our trainer instead. The data is testdata/idx/mnist-small (1,000
//! training images), so a job trains in seconds.
//!
//! Requirements (the tests fail, never skip, without them): `gcloud` on PATH and the test venv
//! (see gcloud_parity.rs), fake-gcs-server (crates/gcs-emulator).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve_support::{self, Server, json, trainer_binary, workspace_root};

pub(crate) const BUCKET: &str = "mnist-tutorial";
const TOKEN: &str = "jobs-test-token";

/// A private gcloud installation state pointed at one server and one emulator.
pub(crate) struct Gcloud {
    config_dir: PathBuf,
    token_file: PathBuf,
    venv_bin: PathBuf,
    cwd: PathBuf,
}

impl Gcloud {
    pub(crate) fn new(dir: &Path, server: &Server, emulator: &gcs_emulator::GcsEmulator) -> Gcloud {
        let config_dir = dir.join("gcloud-config");
        std::fs::create_dir_all(&config_dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let gcloud = Gcloud {
            config_dir,
            token_file,
            venv_bin: crate::gcloud_parity::tf_venv().join("bin"),
            cwd: dir.to_path_buf(),
        };
        let server_url = format!("{}/", server.url);
        let storage = format!("{}/storage/v1/", emulator.endpoint().trim_end_matches('/'));
        for (key, value) in [
            ("core/project", "default"),
            ("core/disable_usage_reporting", "true"),
            ("component_manager/disable_update_check", "true"),
            ("api_endpoint_overrides/ml", server_url.as_str()),
            ("api_endpoint_overrides/logging", server_url.as_str()),
            ("api_endpoint_overrides/storage", storage.as_str()),
        ] {
            let out = gcloud.run(&["config", "set", key, value]);
            assert!(
                out.status.success(),
                "gcloud config set {key}: {}",
                stderr(&out)
            );
        }
        gcloud
    }

    /// Runs gcloud with this config (no token flag added).
    fn run(&self, args: &[&str]) -> Output {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.venv_bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        Command::new("gcloud")
            .args(args)
            .current_dir(&self.cwd)
            .env("CLOUDSDK_CONFIG", &self.config_dir)
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .stdin(Stdio::null())
            .output()
            .expect("running gcloud")
    }

    /// Runs a gcloud API command with `--access-token-file` (first: anything after `--` would
    /// go to the trainer).
    pub(crate) fn api(&self, args: &[&str]) -> Output {
        let mut all = vec!["--access-token-file", self.token_file.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    pub(crate) fn api_ok(&self, args: &[&str], server: &Server) -> String {
        let out = self.api(args);
        assert!(
            out.status.success(),
            "gcloud {args:?} failed: {}\nserver log:\n{}",
            stderr(&out),
            server.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn describe(&self, job: &str, server: &Server) -> Value {
        json(&self.api_ok(
            &["ml-engine", "jobs", "describe", job, "--format", "json"],
            server,
        ))
    }

    /// Polls `jobs describe` until the job is in a final state; returns the job.
    pub(crate) fn wait_until_final(&self, job: &str, server: &Server, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let described = self.describe(job, server);
            let state = described["state"].as_str().unwrap_or_default().to_string();
            if ["SUCCEEDED", "FAILED", "CANCELLED"].contains(&state.as_str()) {
                return described;
            }
            assert!(
                started.elapsed() < limit,
                "job {job} still {state} after {limit:?}; server log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The emulator with the bucket and testdata/idx/mnist-small copied to gs://BUCKET/data.
pub(crate) async fn emulator_with_data() -> gcs_emulator::GcsEmulator {
    let emulator = gcs_emulator::GcsEmulator::start_with_buckets(&[BUCKET]).unwrap();
    let source = workspace_root().join("testdata/idx/mnist-small");
    let data =
        storage::Location::parse_with(&format!("gs://{BUCKET}/data"), &emulator.storage_options())
            .unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        data.join(&name)
            .write(bytes::Bytes::from(std::fs::read(&path).unwrap()))
            .await
            .unwrap();
    }
    emulator
}

/// The object names under gs://BUCKET/<prefix>.
pub(crate) async fn objects(emulator: &gcs_emulator::GcsEmulator, prefix: &str) -> Vec<String> {
    storage::Location::parse_with(
        &format!("gs://{BUCKET}/{prefix}"),
        &emulator.storage_options(),
    )
    .unwrap()
    .list()
    .await
    .unwrap()
}

/// The tutorial's layout: ./trainer with a stub package and the tutorial's config.yaml.
fn write_trainer_package(dir: &Path) {
    let package = dir.join("trainer");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(package.join("__init__.py"), "").unwrap();
    std::fs::write(
        package.join("task.py"),
        "# The user's training code; predictor serve records the package and runs its own trainer.\n",
    )
    .unwrap();
    std::fs::copy(
        workspace_root().join("config/config.yaml"),
        package.join("config.yaml"),
    )
    .unwrap();
}

/// `ml-engine jobs submit training JOB --job-dir DIR --module-name trainer.task --package-path
/// ./trainer --region us-central1 -- --train-file gs://BUCKET/data [trainer_args]`.
fn submit_training(gcloud: &Gcloud, job: &str, trainer_args: &[&str]) -> Output {
    let job_dir = format!("gs://{BUCKET}/{job}");
    let train_file = format!("gs://{BUCKET}/data");
    let mut args = vec![
        "ml-engine",
        "jobs",
        "submit",
        "training",
        job,
        "--job-dir",
        &job_dir,
    ];
    args.extend_from_slice(&[
        "--module-name",
        "trainer.task",
        "--package-path",
        "./trainer",
        "--region",
        "us-central1",
        "--",
        "--train-file",
        &train_file,
    ]);
    args.extend_from_slice(trainer_args);
    gcloud.api(&args)
}

pub(crate) fn start_server(dir: &Path, emulator: &gcs_emulator::GcsEmulator) -> Server {
    // The trainer must sit beside the server binary (the server finds it there).
    trainer_binary();
    let token_file = dir.join("server-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    Server::start_in(
        dir,
        &[
            "--allow-cpu",
            "--auth-token-file",
            token_file.to_str().unwrap(),
            "--max-concurrent-jobs",
            "2",
            "--job-cancel-grace-seconds",
            "20",
        ],
        &[("STORAGE_EMULATOR_HOST", emulator.endpoint())],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tutorial_submit_training_runs_to_a_model_that_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let emulator = emulator_with_data().await;
    let server = start_server(tmp.path(), &emulator);
    let gcloud = Gcloud::new(tmp.path(), &server, &emulator);
    write_trainer_package(tmp.path());

    let job = "mnist_tutorial_1";
    let job_dir = format!("gs://{BUCKET}/{job}");
    let train_file = format!("gs://{BUCKET}/data");
    // The tutorial's command, verbatim apart from --access-token-file (added by `api`).
    #[rustfmt::skip]
    let submitted = gcloud.api(&[
        "ml-engine", "jobs", "submit", "training", job,
        "--job-dir", &job_dir,
        "--runtime-version", "1.8",
        "--module-name", "trainer.task",
        "--package-path", "./trainer",
        "--region", "us-central1",
        "--config", "trainer/config.yaml",
        "--", "--train-file", &train_file,
    ]);
    assert!(
        submitted.status.success(),
        "submit failed: {}\nserver log:\n{}",
        stderr(&submitted),
        server.log()
    );
    let stdout = String::from_utf8(submitted.stdout).unwrap();
    assert!(stdout.contains(&format!("jobId: {job}")), "{stdout}");
    assert!(stdout.contains("state: QUEUED"), "{stdout}");

    let described = gcloud.wait_until_final(job, &server, Duration::from_secs(300));
    let ended = Instant::now();
    let log = server.cli_ok(&["jobs", "logs", job]);
    assert_eq!(
        described["state"], "SUCCEEDED",
        "job: {described}\njob log:\n{log}"
    );
    // What gcloud sent is recorded as given: the package it uploaded, the module, the config.
    let input = &described["trainingInput"];
    assert_eq!(input["pythonModule"], "trainer.task");
    assert_eq!(input["masterType"], "standard_p100");
    assert_eq!(input["region"], "us-central1");
    assert_eq!(
        input["args"],
        serde_json::json!(["--train-file", train_file])
    );
    let package = input["packageUris"][0].as_str().unwrap();
    assert!(
        package.starts_with(&format!("{job_dir}/packages/"))
            && package.ends_with("trainer-0.0.0.tar.gz"),
        "{package}"
    );
    assert!(
        objects(&emulator, job)
            .await
            .iter()
            .any(|o| o.ends_with("trainer-0.0.0.tar.gz")),
        "gcloud uploaded the package"
    );
    for key in ["createTime", "startTime", "endTime"] {
        assert!(described[key].is_string(), "{key} missing: {described}");
    }
    // The job log: the service's note about the package, the trainer's own lines.
    assert!(log.contains("built-in trainer"), "{log}");
    assert!(log.contains("packageUris gs://"), "{log}");
    assert!(
        log.contains("\tmaster-replica-0\t\tTest Accuracy: "),
        "{log}"
    );
    // The tutorial's P100 master: the trainer says it trains on the CPU because of --allow-cpu.
    assert!(
        log.contains("WARNING\t") && log.contains("training on the CPU because of --allow-cpu"),
        "{log}"
    );

    // The model in the bucket loads in `predictor local`.
    let local = Command::new(serve_support::PREDICTOR)
        .args([
            "local",
            "--model-dir",
            &format!("{job_dir}/model"),
            "--json-instances",
        ])
        .arg(serve_support::sample_json())
        .args(["--format", "json"])
        .env("STORAGE_EMULATOR_HOST", emulator.endpoint())
        .output()
        .unwrap();
    assert!(
        local.status.success(),
        "predictor local: {}",
        stderr(&local)
    );
    let predictions = json(&String::from_utf8(local.stdout).unwrap())["predictions"].clone();
    assert_eq!(predictions.as_array().unwrap().len(), 10);

    // `jobs list` shows it.
    let listed = gcloud.api_ok(&["ml-engine", "jobs", "list"], &server);
    let row = listed
        .lines()
        .find(|l| l.starts_with(job))
        .unwrap_or_else(|| panic!("{job} not listed:\n{listed}"));
    assert!(row.contains("SUCCEEDED"), "{listed}");

    // `jobs stream-logs` prints the trainer's lines through the logging override and stops
    // once it sees the job ended.
    // gcloud asks only for entries older than 5 s; the last ones must be that old.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(ended.elapsed()));
    let streamed = gcloud.api(&[
        "ml-engine",
        "jobs",
        "stream-logs",
        job,
        "--polling-interval",
        "1",
    ]);
    // gcloud prints the entries on stdout and its own messages on stderr.
    let streamed_text = format!(
        "{}{}",
        String::from_utf8_lossy(&streamed.stdout),
        stderr(&streamed)
    );
    assert!(streamed.status.success(), "stream-logs: {streamed_text}");
    assert!(
        streamed_text.contains("master-replica-0"),
        "{streamed_text}\nserver log:\n{}",
        server.log()
    );
    assert!(streamed_text.contains("Test Accuracy: "), "{streamed_text}");
    assert!(
        streamed_text.contains("Job completed successfully."),
        "{streamed_text}"
    );

    // Submitting the same job id again: 409 ALREADY_EXISTS, as gcloud words it.
    let again = submit_training(&gcloud, job, &[]);
    assert!(!again.status.success());
    let text = stderr(&again);
    assert!(text.contains("is the subject of a conflict"), "{text}");
    assert!(text.contains("A job with this id already exists"), "{text}");

    // Cancelling a finished job: FAILED_PRECONDITION.
    let cancel = gcloud.api(&["ml-engine", "jobs", "cancel", job]);
    assert!(!cancel.status.success());
    assert!(
        stderr(&cancel).contains("it has already finished (SUCCEEDED)"),
        "{}",
        stderr(&cancel)
    );

    // An unknown job: NOT_FOUND.
    let unknown = gcloud.api(&["ml-engine", "jobs", "describe", "no_such_job"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("NOT_FOUND"),
        "{}",
        stderr(&unknown)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_job_ends_cancelled_without_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let emulator = emulator_with_data().await;
    let server = start_server(tmp.path(), &emulator);
    let gcloud = Gcloud::new(tmp.path(), &server, &emulator);
    write_trainer_package(tmp.path());

    let job = "mnist_cancel_1";
    let submitted = submit_training(&gcloud, job, &["--epochs", "500"]);
    assert!(
        submitted.status.success(),
        "submit failed: {}\nserver log:\n{}",
        stderr(&submitted),
        server.log()
    );
    // Wait until the trainer is in its epoch loop.
    let started = Instant::now();
    loop {
        let log = server.cli_ok(&["jobs", "logs", job]);
        if log.contains("Training on") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the trainer never started:\n{log}\nserver log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let running = gcloud.describe(job, &server);
    assert_eq!(running["state"], "RUNNING", "{running}");

    let cancelled = gcloud.api(&["ml-engine", "jobs", "cancel", job]);
    assert!(cancelled.status.success(), "cancel: {}", stderr(&cancelled));
    let described = gcloud.wait_until_final(job, &server, Duration::from_secs(60));
    let log = server.cli_ok(&["jobs", "logs", job]);
    assert_eq!(described["state"], "CANCELLED", "{described}\n{log}");
    assert!(described["endTime"].is_string());
    // The trainer stopped on SIGTERM after a checkpoint; no model was exported.
    assert!(log.contains("Sent SIGTERM to the trainer"), "{log}");
    assert!(log.contains("Stopped by SIGTERM"), "{log}");
    let written = objects(&emulator, job).await;
    assert!(
        !written.iter().any(|o| o.ends_with("saved_model.pb")),
        "a cancelled job left a model: {written:?}"
    );
    assert!(
        written.iter().any(|o| o.starts_with("checkpoints/ckpt-")),
        "the SIGTERM checkpoint is there: {written:?}"
    );
}
