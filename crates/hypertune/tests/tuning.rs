//! The planner's algorithms and the trial runner's rules, with closures as launchers that write
//! metric files the way a trainer does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hypertune::{
    CancelHandle, FinalMetric, HyperparameterSpec, ParamValue, Planner, TrialExit, TrialLaunch,
    TrialResult, TrialState, TuningEvent, TuningOptions, TuningState, run_tuning,
};

fn spec(yaml_params: &str, extra: &str) -> HyperparameterSpec {
    let yaml = format!(
        "trainingInput:\n  hyperparameters:\n    goal: MAXIMIZE\n{extra}    params:\n{yaml_params}"
    );
    job_config::JobConfig::parse(&yaml, "spec.yaml")
        .unwrap()
        .training_input
        .hyperparameters
        .unwrap()
}

fn number(params: &hypertune::TrialParams, name: &str) -> f64 {
    params.get(name).and_then(ParamValue::as_f64).unwrap()
}

#[test]
fn grid_search_covers_the_grid_once() {
    let spec = spec(
        "    - {parameterName: units, type: INTEGER, minValue: 1, maxValue: 3}\n\
         \x20   - {parameterName: opt, type: CATEGORICAL, categoricalValues: [adam, sgd]}\n\
         \x20   - {parameterName: batch, type: DISCRETE, discreteValues: [16, 64]}\n",
        "    algorithm: GRID_SEARCH\n    maxTrials: 50\n",
    );
    let mut planner = Planner::new(&spec, 1).unwrap();
    assert_eq!(planner.trial_budget(), 12);
    let trials = planner.next_trials(100);
    assert_eq!(trials.len(), 12);
    let distinct: BTreeSet<Vec<String>> = trials.iter().map(|t| t.params.to_args()).collect();
    assert_eq!(distinct.len(), 12, "every grid point once");
    for units in ["1", "2", "3"] {
        for opt in ["adam", "sgd"] {
            for batch in ["16", "64"] {
                let args = vec![
                    format!("--units={units}"),
                    format!("--opt={opt}"),
                    format!("--batch={batch}"),
                ];
                assert!(distinct.contains(&args), "{args:?} missing");
            }
        }
    }
    assert!(planner.next_trials(1).is_empty());
    // A smaller maxTrials takes the first points of the same order.
    let small = spec_with_max(&spec, 5);
    let mut planner = Planner::new(&small, 1).unwrap();
    let first: Vec<Vec<String>> = planner
        .next_trials(10)
        .iter()
        .map(|t| t.params.to_args())
        .collect();
    let all: Vec<Vec<String>> = trials.iter().map(|t| t.params.to_args()).collect();
    assert_eq!(first, all[..5]);
}

fn spec_with_max(spec: &HyperparameterSpec, max_trials: u32) -> HyperparameterSpec {
    HyperparameterSpec {
        max_trials,
        ..spec.clone()
    }
}

#[test]
fn random_search_is_seeded_within_bounds_and_follows_the_log_scale() {
    let spec = spec(
        "    - {parameterName: lr, type: DOUBLE, minValue: 0.0001, maxValue: 1, scaleType: UNIT_LOG_SCALE}\n\
         \x20   - {parameterName: units, type: INTEGER, minValue: 16, maxValue: 512, scaleType: UNIT_LINEAR_SCALE}\n\
         \x20   - {parameterName: m, type: DOUBLE, minValue: 0.5, maxValue: 0.99}\n",
        "    algorithm: RANDOM_SEARCH\n    maxTrials: 400\n",
    );
    let draw = |seed| {
        let mut planner = Planner::new(&spec, seed).unwrap();
        planner.next_trials(400)
    };
    let a = draw(7);
    assert_eq!(a.len(), 400);
    assert_eq!(a, draw(7), "same seed, same trials");
    assert_ne!(a, draw(8), "another seed, other trials");
    let mut below_centre = 0;
    for trial in &a {
        let lr = number(&trial.params, "lr");
        assert!((0.0001..=1.0).contains(&lr), "{lr}");
        let units = trial.params.get("units").unwrap();
        let ParamValue::Integer(units) = units else {
            panic!("{units:?}")
        };
        assert!((16..=512).contains(units));
        let m = number(&trial.params, "m");
        assert!((0.5..=0.99).contains(&m));
        if lr < 0.01 {
            below_centre += 1;
        }
    }
    // On a log scale half the draws fall below the geometric centre 0.01 (a linear draw would
    // put 1% there).
    assert!(
        (160..=240).contains(&below_centre),
        "{below_centre} of 400 below 0.01"
    );
}

/// Runs a planner sequentially on `f`, returning the best value found.
fn optimise(
    spec: &HyperparameterSpec,
    seed: u64,
    f: impl Fn(&hypertune::TrialParams) -> f64,
) -> f64 {
    let mut planner = Planner::new(spec, seed).unwrap();
    let mut best = f64::NEG_INFINITY;
    while !planner.is_finished() {
        for trial in planner.next_trials(1) {
            let value = f(&trial.params);
            best = best.max(value);
            planner.record(
                trial.id,
                &TrialResult::Completed {
                    final_metric: Some(FinalMetric {
                        training_step: 1,
                        objective_value: value,
                    }),
                },
            );
        }
    }
    best
}

#[test]
fn bayesian_search_beats_random_search_on_the_same_budget() {
    // A smooth 2-D objective with its maximum 0 at (0.73, 0.21), as a validation accuracy
    // surface over two tuned parameters would be.
    let params = "    - {parameterName: x, type: DOUBLE, minValue: 0, maxValue: 1}\n\
                  \x20   - {parameterName: y, type: DOUBLE, minValue: 0, maxValue: 1}\n";
    let bayes = spec(params, "    maxTrials: 14\n");
    let random = spec(params, "    algorithm: RANDOM_SEARCH\n    maxTrials: 14\n");
    let f = |p: &hypertune::TrialParams| {
        let (x, y) = (number(p, "x"), number(p, "y"));
        -((x - 0.73).powi(2) + (y - 0.21).powi(2))
    };
    let seeds = 0..6u64;
    let regrets = |spec: &HyperparameterSpec| -> Vec<f64> {
        seeds.clone().map(|seed| -optimise(spec, seed, f)).collect()
    };
    let bayes_regret = regrets(&bayes);
    let random_regret = regrets(&random);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let wins = bayes_regret
        .iter()
        .zip(&random_regret)
        .filter(|(b, r)| b < r)
        .count();
    assert!(
        mean(&bayes_regret) < mean(&random_regret) / 2.0 && wins >= 5,
        "Bayesian regrets {bayes_regret:?} vs random {random_regret:?}"
    );
}

fn options(dir: &std::path::Path) -> TuningOptions {
    TuningOptions {
        metric_dir: dir.to_path_buf(),
        seed: 3,
        poll_interval: Duration::from_millis(20),
        cancel: CancelHandle::new(),
    }
}

/// What our trainer writes: one report per line, the tag's value as a string.
fn write_reports(launch: &TrialLaunch, tag: &str, reports: &[(u64, f64)]) {
    let text: String = reports
        .iter()
        .map(|(step, value)| {
            format!(
                "{{\"global_step\": \"{step}\", \"{tag}\": \"{value}\", \"timestamp\": 1.5, \"trial\": \"{}\"}}\n",
                launch.trial_id
            )
        })
        .collect();
    std::fs::write(&launch.metric_file, text).unwrap();
}

#[tokio::test]
async fn parallel_trials_never_exceed_max_parallel_trials() {
    let spec = spec(
        "    - {parameterName: learning-rate, type: DOUBLE, minValue: 0.001, maxValue: 0.1, scaleType: UNIT_LOG_SCALE}\n\
         \x20   - {parameterName: hidden-units, type: DISCRETE, discreteValues: [64, 128, 256]}\n",
        "    algorithm: RANDOM_SEARCH\n    maxTrials: 7\n    maxParallelTrials: 3\n    hyperparameterMetricTag: accuracy\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let launcher = {
        let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
        move |launch: TrialLaunch| {
            let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(running, Ordering::SeqCst);
                assert!(launch.args[0].starts_with("--learning-rate="));
                assert!(
                    [
                        "--hidden-units=64",
                        "--hidden-units=128",
                        "--hidden-units=256"
                    ]
                    .contains(&launch.args[1].as_str()),
                    "{:?}",
                    launch.args
                );
                let env: std::collections::BTreeMap<_, _> = launch.env.iter().cloned().collect();
                assert_eq!(env["CLOUD_ML_TRIAL_ID"], launch.trial_id);
                assert_eq!(env["CLOUD_ML_HP_METRIC_TAG"], "accuracy");
                let id: f64 = launch.trial_id.parse().unwrap();
                tokio::time::sleep(Duration::from_millis(30 + 10 * (id as u64 % 3))).await;
                write_reports(&launch, "accuracy", &[(10, 0.5), (20, id / 10.0)]);
                now.fetch_sub(1, Ordering::SeqCst);
                TrialExit::Succeeded
            }
        }
    };
    let mut started = 0;
    let outcome = run_tuning(&spec, &options(dir.path()), &launcher, |event| {
        if let TuningEvent::TrialStarted { .. } = event {
            started += 1;
        }
    })
    .await
    .unwrap();
    assert_eq!(started, 7);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "exactly maxParallelTrials at once"
    );
    assert_eq!(outcome.state, TuningState::Succeeded);
    let output = &outcome.output;
    assert_eq!(output.completed_trial_count, 7);
    assert_eq!(output.hyperparameter_metric_tag, "accuracy");
    let ids: Vec<&str> = output.trials.iter().map(|t| t.trial_id.as_str()).collect();
    assert_eq!(ids, ["7", "6", "5", "4", "3", "2", "1"], "best first");
    let best = &output.trials[0];
    assert_eq!(
        best.final_metric,
        Some(FinalMetric {
            training_step: 20,
            objective_value: 0.7
        })
    );
    assert_eq!(best.state, TrialState::Succeeded);
    assert!(best.hyperparameters.contains_key("learning-rate"));
    let json = serde_json::to_value(output).unwrap();
    assert_eq!(json["completedTrialCount"], "7");
    assert_eq!(json["trials"][0]["finalMetric"]["trainingStep"], "20");
}

#[tokio::test]
async fn max_failed_trials_stops_the_search() {
    let spec = spec(
        "    - {parameterName: lr, type: DOUBLE, minValue: 0.001, maxValue: 0.1}\n",
        "    algorithm: RANDOM_SEARCH\n    maxTrials: 10\n    maxParallelTrials: 1\n    maxFailedTrials: 3\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let calls = AtomicUsize::new(0);
    let launcher = |launch: TrialLaunch| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            TrialExit::Failed(format!(
                "The replica master 0 exited with a non-zero status of 1 (trial {})",
                launch.trial_id
            ))
        }
    };
    let outcome = run_tuning(&spec, &options(dir.path()), &launcher, |_| {})
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let TuningState::Failed(message) = &outcome.state else {
        panic!("{:?}", outcome.state)
    };
    assert!(
        message.contains("3 trials failed, reaching maxFailedTrials (3)")
            && message.contains("trial 1: The replica master 0 exited"),
        "{message}"
    );
    assert!(
        outcome
            .output
            .trials
            .iter()
            .all(|t| t.state == TrialState::Failed && t.final_metric.is_none())
    );
}

#[tokio::test]
async fn cancelling_stops_running_trials_and_starts_no_more() {
    let spec = spec(
        "    - {parameterName: lr, type: DOUBLE, minValue: 0.001, maxValue: 0.1}\n",
        "    algorithm: RANDOM_SEARCH\n    maxTrials: 6\n    maxParallelTrials: 2\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let options = options(dir.path());
    let cancel = options.cancel.clone();
    let calls = AtomicUsize::new(0);
    let launcher = |mut launch: TrialLaunch| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            // A trial that runs until it is told to stop.
            launch.stop.raised().await;
            TrialExit::Succeeded
        }
    };
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    };
    let (outcome, ()) = tokio::join!(run_tuning(&spec, &options, &launcher, |_| {}), canceller);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.state, TuningState::Cancelled);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        outcome
            .output
            .trials
            .iter()
            .all(|t| t.state == TrialState::Cancelled)
    );
}

#[tokio::test]
async fn early_stopping_stops_a_trial_below_the_median() {
    let spec = spec(
        "    - {parameterName: lr, type: DOUBLE, minValue: 0.001, maxValue: 0.1}\n",
        "    algorithm: RANDOM_SEARCH\n    maxTrials: 3\n    maxParallelTrials: 1\n    enableTrialEarlyStopping: true\n    hyperparameterMetricTag: accuracy\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let launcher = |mut launch: TrialLaunch| async move {
        if launch.trial_id != "3" {
            write_reports(&launch, "accuracy", &[(100, 0.8), (200, 0.9)]);
            return TrialExit::Succeeded;
        }
        // The third trial reports a poor value and would run for a long time.
        write_reports(&launch, "accuracy", &[(100, 0.3)]);
        tokio::select! {
            () = launch.stop.raised() => TrialExit::Succeeded,
            () = tokio::time::sleep(Duration::from_secs(30)) => TrialExit::Failed("not stopped".into()),
        }
    };
    let mut stopping = Vec::new();
    let outcome = run_tuning(&spec, &options(dir.path()), &launcher, |event| {
        if let TuningEvent::TrialStoppingEarly { trial_id, .. } = event {
            stopping.push(trial_id);
        }
    })
    .await
    .unwrap();
    assert_eq!(stopping, ["3"]);
    assert_eq!(outcome.state, TuningState::Succeeded);
    let third = outcome
        .output
        .trials
        .iter()
        .find(|t| t.trial_id == "3")
        .unwrap();
    assert!(third.is_trial_stopped_early);
    assert_eq!(third.state, TrialState::Succeeded);
    assert_eq!(third.final_metric.as_ref().unwrap().objective_value, 0.3);
    assert_eq!(outcome.output.trials.last().unwrap().trial_id, "3");
}
