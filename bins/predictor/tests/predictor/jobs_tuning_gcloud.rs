//! A hyperparameter-tuning job submitted by the real gcloud (`ml-engine jobs submit training
//! --config tune.yaml`) to `predictor serve`: RANDOM_SEARCH, 4 trials, 2 at a time, over
//! `learning-rate` (DOUBLE, log scale) and `hidden-units` (DISCRETE). `jobs describe` shows the
//! trials with their objective values, each trial's model sits under `<jobDir>/<trialId>/model`
//! and loads in `predictor local`, and `jobs stream-logs` prints lines tagged with their trial.
//!
//! The setup (gcloud config, emulator with testdata/idx/mnist-small, server) is jobs_gcloud.rs's;
//! cancelling a tuning job and failing trials are covered with stand-in trainers in
//! crates/jobs/tests/lifecycle.rs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::jobs_gcloud::{
    BUCKET, Gcloud, assert_model_predicts, emulator_with_data, objects, start_server, stderr,
    submit_training, write_trainer_package,
};

const TUNING_CONFIG: &str = "\
trainingInput:
  scaleTier: BASIC
  hyperparameters:
    goal: MAXIMIZE
    hyperparameterMetricTag: accuracy
    algorithm: RANDOM_SEARCH
    maxTrials: 4
    maxParallelTrials: 2
    params:
      - parameterName: learning-rate
        type: DOUBLE
        minValue: 0.001
        maxValue: 0.3
        scaleType: UNIT_LOG_SCALE
      - parameterName: hidden-units
        type: DISCRETE
        discreteValues: [16, 32, 64]
";

#[tokio::test(flavor = "multi_thread")]
async fn random_search_tuning_job_runs_four_trials_with_their_own_models() {
    let tmp = tempfile::tempdir().unwrap();
    let emulator = emulator_with_data().await;
    let server = start_server(tmp.path(), &emulator);
    let gcloud = Gcloud::new(tmp.path(), &server, &emulator);
    write_trainer_package(tmp.path());
    std::fs::write(tmp.path().join("tune.yaml"), TUNING_CONFIG).unwrap();

    let job = "mnist_tune_1";
    let job_dir = format!("gs://{BUCKET}/{job}");
    let submitted = submit_training(&gcloud, job, &["--config", "tune.yaml"], &["--epochs", "1"]);
    assert!(
        submitted.status.success(),
        "submit failed: {}\nserver log:\n{}",
        stderr(&submitted),
        server.log()
    );
    let described = gcloud.wait_until_final(job, &server, Duration::from_secs(400));
    let ended = Instant::now();
    let log = server.cli_ok(&["jobs", "logs", job]);
    assert_eq!(
        described["state"], "SUCCEEDED",
        "job: {described}\njob log:\n{log}"
    );

    // trainingOutput as Cloud ML Engine fills it.
    let output = &described["trainingOutput"];
    assert_eq!(output["isHyperparameterTuningJob"], true, "{output}");
    assert_eq!(output["hyperparameterMetricTag"], "accuracy", "{output}");
    assert_eq!(output["completedTrialCount"], "4", "{output}");
    let trials = output["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4, "{output}");
    let ids: BTreeSet<&str> = trials
        .iter()
        .map(|t| t["trialId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["1", "2", "3", "4"]));
    let mut objectives = Vec::new();
    for trial in trials {
        assert_eq!(trial["state"], "SUCCEEDED", "{trial}");
        let value = trial["finalMetric"]["objectiveValue"]
            .as_f64()
            .unwrap_or_else(|| panic!("no objective value: {trial}"));
        assert!((0.0..=1.0).contains(&value), "{trial}");
        objectives.push(value);
        let step: i64 = trial["finalMetric"]["trainingStep"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(step > 0, "{trial}");
        let lr: f64 = trial["hyperparameters"]["learning-rate"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.001..=0.3).contains(&lr), "{trial}");
        // gcloud sends DISCRETE values as doubles; the trial gets integers.
        let units = trial["hyperparameters"]["hidden-units"].as_str().unwrap();
        assert!(["16", "32", "64"].contains(&units), "{trial}");
        for key in ["startTime", "endTime"] {
            assert!(trial[key].is_string(), "{key}: {trial}");
        }
        let id = trial["trialId"].as_str().unwrap();
        assert!(
            log.contains(&format!("--hidden-units={units}"))
                && log.contains(&format!("--job-dir={job_dir}/{id}")),
            "trial {id}'s command line: {log}"
        );
    }
    // Best first (MAXIMIZE).
    assert!(
        objectives.windows(2).all(|w| w[0] >= w[1]),
        "{objectives:?}"
    );

    // Each trial wrote its own model under <jobDir>/<trialId>/, and it loads.
    let written = objects(&emulator, job).await;
    assert!(
        !written.iter().any(|o| o.starts_with("model/")),
        "a model outside the trial dirs: {written:?}"
    );
    for id in &ids {
        assert!(
            written.contains(&format!("{id}/model/saved_model.pb")),
            "trial {id} has no model: {written:?}"
        );
        assert_model_predicts(&emulator, &format!("{job_dir}/{id}/model"));
    }

    // gcloud's stream-logs prints the trials' lines with their trial ids.
    let (streamed, streamed_text) = gcloud.stream_logs(job, ended);
    assert!(streamed.status.success(), "stream-logs: {streamed_text}");
    for id in &ids {
        assert!(
            streamed_text.contains(&format!("\tmaster-replica-0\t{id}\t")),
            "trial {id}: {streamed_text}"
        );
    }
    assert!(
        streamed_text.contains("Job completed successfully."),
        "{streamed_text}"
    );
}
