//! Prediction jobs in the runner: small shell scripts stand in for `predictor batch-predict`
//! (the end-to-end tests in bins/predictor run the real one through gcloud), so each way the
//! command can end is produced on purpose: success with its counts, a failure with its ERROR
//! line, SIGTERM on cancel, and a model name looked up through the resolver.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs::{Job, JobState, Jobs, JobsError, ModelResolver, ModelSource, NewJob};
use serde_json::{Value, json};
use support::{messages, script, test_config, wait};

/// `mnist` has versions v1 (the default) and v2; everything else is unknown.
#[derive(Debug)]
struct Registry;

impl ModelResolver for Registry {
    fn model_dir(&self, source: &ModelSource) -> Result<String, String> {
        match source {
            ModelSource::Registry { model, version, .. } if model == "mnist" => Ok(format!(
                "/models/mnist/{}",
                version.as_deref().unwrap_or("v1")
            )),
            ModelSource::Registry { model, .. } => Err(format!("model {model:?} not found")),
            ModelSource::Uri(uri) if uri.starts_with("/forbidden") => Err(format!(
                "deploymentUri {uri:?} is outside the allowed origins"
            )),
            ModelSource::Uri(uri) => Ok(uri.clone()),
        }
    }
}

async fn open(dir: &Path, program: &Path) -> Arc<Jobs> {
    let mut config = test_config(dir);
    config.batch_predictor = Some(program.to_path_buf());
    config.model_resolver = Some(Arc::new(Registry));
    Jobs::open(config).await.unwrap()
}

fn prediction(id: &str, model: Value) -> NewJob {
    let mut input = json!({
        "dataFormat": "TEXT",
        "inputPaths": ["/data/in/*.json", "/data/more.json"],
        "outputPath": "/data/out",
        "region": "us-central1",
        "batchSize": "128",
    });
    for (key, value) in model.as_object().unwrap() {
        input[key] = value.clone();
    }
    serde_json::from_value(json!({"jobId": id, "predictionInput": input})).unwrap()
}

async fn wait_final(jobs: &Jobs, id: &str) -> Job {
    wait(jobs, id, |job| job.state.is_final()).await
}

async fn log(jobs: &Jobs, id: &str) -> String {
    messages(jobs, id).await.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_fills_prediction_output_from_the_commands_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let program = script(
        tmp.path(),
        "predictor",
        "echo \"args: $*\"; echo \"job: $CLOUD_ML_JOB_ID\"; \
         echo 'error: file:///data/more.json line 3: column 2: invalid JSON' >&2; \
         echo 'predictionCount: 41'; echo 'errorCount: 1'",
    );
    let jobs = open(tmp.path(), &program).await;
    let created = jobs
        .create(prediction(
            "by_version",
            json!({"versionName": "projects/default/models/mnist/versions/v2"}),
        ))
        .await
        .unwrap();
    assert_eq!(created.state, JobState::Queued);
    assert!(created.prediction_input.is_some() && created.training_input.is_none());
    let ended = wait_final(&jobs, "by_version").await;
    let text = log(&jobs, "by_version").await;
    assert_eq!(ended.state, JobState::Succeeded, "{ended:?}\n{text}");
    let output = ended.prediction_output.clone().unwrap();
    assert_eq!(
        (
            output.output_path.as_str(),
            output.prediction_count,
            output.error_count
        ),
        ("/data/out", 41, 1)
    );
    assert!(output.node_hours >= 0.0);
    assert!(ended.training_output.is_none(), "{ended:?}");
    // The API's JSON: int64 counts as strings.
    let as_json = serde_json::to_value(&ended).unwrap();
    assert_eq!(as_json["predictionOutput"]["predictionCount"], "41");
    assert_eq!(as_json["predictionOutput"]["errorCount"], "1");
    // The version resolved through the server's registry, the flags as gcloud's.
    assert!(
        text.contains("INFO service Model mnist, version v2: deploymentUri /models/mnist/v2"),
        "{text}"
    );
    assert!(
        text.contains(
            "INFO master-replica-0 args: batch-predict --model-dir /models/mnist/v2 \
             --data-format text --output-path /data/out --input-paths /data/in/*.json \
             --input-paths /data/more.json --batch-size 128 --device cpu"
        ),
        "{text}"
    );
    assert!(
        text.contains("INFO master-replica-0 job: by_version"),
        "{text}"
    );
    // The bad record's line is in the log as an error.
    assert!(
        text.contains("ERROR master-replica-0 error: file:///data/more.json line 3: column 2"),
        "{text}"
    );
    assert!(
        text.ends_with("INFO service Job completed successfully.\n"),
        "{text}"
    );

    // The model's default version when none is named.
    jobs.create(prediction(
        "by_model",
        json!({"modelName": "projects/default/models/mnist"}),
    ))
    .await
    .unwrap();
    wait_final(&jobs, "by_model").await;
    assert!(
        log(&jobs, "by_model")
            .await
            .contains("--model-dir /models/mnist/v1 "),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_name_the_field_and_failures_keep_the_commands_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let program = script(
        tmp.path(),
        "predictor",
        "echo 'loading' ; echo 'ERROR: (predictor batch-predict) predictionInput.inputPaths [\"/data/none/*\"] match no files' >&2; exit 1",
    );
    let jobs = open(tmp.path(), &program).await;
    let refused = |error: JobsError| match error {
        JobsError::InvalidArgument(message) => message,
        other => panic!("not INVALID_ARGUMENT: {other:?}"),
    };
    let unknown = jobs
        .create(prediction(
            "unknown_model",
            json!({"modelName": "projects/default/models/fashion"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        refused(unknown),
        "Field: job.prediction_input.model_name Error: model \"fashion\" not found"
    );
    let forbidden = jobs
        .create(prediction("forbidden", json!({"uri": "/forbidden/model"})))
        .await
        .unwrap_err();
    assert!(refused(forbidden).starts_with("Field: job.prediction_input.uri Error: deploymentUri"),);
    let mut both = NewJob::training("both", json!({"jobDir": "/tmp/j"}));
    both.prediction_input = Some(json!({}));
    let both = jobs.create(both).await.unwrap_err();
    assert!(refused(both).contains("either trainingInput or predictionInput, not both"));
    assert!(jobs.list().is_empty(), "refused jobs are not stored");

    jobs.create(prediction("no_inputs", json!({"uri": "/models/m"})))
        .await
        .unwrap();
    let ended = wait_final(&jobs, "no_inputs").await;
    assert_eq!(ended.state, JobState::Failed);
    assert_eq!(
        ended.error_message.as_deref(),
        Some("predictionInput.inputPaths [\"/data/none/*\"] match no files")
    );
    let output = ended.prediction_output.unwrap();
    assert_eq!((output.prediction_count, output.error_count), (0, 0));
    assert_eq!(output.output_path, "/data/out");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_the_command_and_ends_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("started");
    let program = script(
        tmp.path(),
        "predictor",
        &format!(
            "trap 'echo stopping; exit 1' TERM; touch {}; while true; do sleep 0.05; done",
            marker.display()
        ),
    );
    let jobs = open(tmp.path(), &program).await;
    jobs.create(prediction("long", json!({"uri": "/models/m"})))
        .await
        .unwrap();
    let started = Instant::now();
    while !marker.exists() {
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(jobs.get("long").unwrap().state, JobState::Running);
    jobs.cancel("long").await.unwrap();
    let ended = wait_final(&jobs, "long").await;
    let text = log(&jobs, "long").await;
    assert_eq!(ended.state, JobState::Cancelled, "{text}");
    assert_eq!(ended.error_message, None);
    assert!(
        text.contains("Sent SIGTERM to batch prediction (it stops without writing results)"),
        "{text}"
    );
    assert!(text.contains("INFO master-replica-0 stopping"), "{text}");
}
