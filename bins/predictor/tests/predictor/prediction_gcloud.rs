//! Batch prediction jobs driven by the real gcloud CLI (`gcloud ai-platform jobs submit
//! prediction`) against `predictor serve`, with `gs://` on fake-gcs-server (the setup of
//! jobs_gcloud.rs): text input, TFRecord input written by TensorFlow, and a model named with
//! `--model M --version V`, each with one malformed record. Their results must equal `predictor
//! local` on the same instances, in order; the errors file must hold the failure in Cloud ML
//! Engine's format; the job log must name the bad line (file and line number, or TFRecord record
//! number); `predictionOutput` must count right. Bad cases: input paths that match nothing, and a
//! model that does not load, each a FAILED job with the reason and no results file.
//!
//! Requirements (the tests fail, never skip, without them): `gcloud` on PATH and the test venv
//! with TensorFlow (see gcloud_parity.rs), fake-gcs-server (crates/gcs-emulator).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::jobs_gcloud::{BUCKET, Gcloud, emulator_with_data, objects, start_server, stderr};
use crate::serve_support::{self, Server, fixture, sample_json, upload_to_gcs};

const TOKEN_FILE: &str = "server-token";

/// The sample instances with a malformed line inserted after the first `bad_after`.
fn lines_with_bad(bad_after: usize) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(sample_json())
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.insert(bad_after, "[1, 2, oops]".to_string());
    lines
}

async fn write(emulator: &gcs_emulator::GcsEmulator, url: &str, data: Vec<u8>) {
    storage::Location::parse_with(url, &emulator.storage_options())
        .unwrap()
        .write(bytes::Bytes::from(data))
        .await
        .unwrap();
}

async fn read(emulator: &gcs_emulator::GcsEmulator, url: &str) -> String {
    let data = storage::Location::parse_with(url, &emulator.storage_options())
        .unwrap()
        .read()
        .await
        .unwrap_or_else(|e| panic!("reading {url}: {e}"));
    String::from_utf8(data.to_vec()).unwrap()
}

/// `lines` as a TFRecord file written by TensorFlow's own `tf.io.TFRecordWriter`.
fn tensorflow_tfrecord(dir: &Path, lines: &[String]) -> Vec<u8> {
    let text = dir.join("records.json");
    std::fs::write(&text, lines.join("\n") + "\n").unwrap();
    let out = dir.join("records.tfrecord");
    let python = crate::gcloud_parity::tf_venv().join("bin/python");
    let script = "import sys, tensorflow as tf\n\
                  with tf.io.TFRecordWriter(sys.argv[2]) as w:\n\
                  \x20   for line in open(sys.argv[1]).read().splitlines(): w.write(line.encode())\n";
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(&text)
        .arg(&out)
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        status.success(),
        "TensorFlow could not write the TFRecord file"
    );
    std::fs::read(out).unwrap()
}

/// `gcloud ai-platform jobs submit prediction JOB --input-paths … --output-path … --region
/// global --data-format FORMAT` plus the model flags.
fn submit(gcloud: &Gcloud, server: &Server, job: &str, model: &[&str], inputs: &str, format: &str) {
    let output = format!("gs://{BUCKET}/out/{job}");
    let mut args = vec!["ai-platform", "jobs", "submit", "prediction", job];
    args.extend_from_slice(model);
    args.extend_from_slice(&[
        "--input-paths",
        inputs,
        "--output-path",
        &output,
        "--region",
        "global",
        "--data-format",
        format,
    ]);
    let submitted = gcloud.api(&args);
    assert!(
        submitted.status.success(),
        "submit {job}: {}\nserver log:\n{}",
        stderr(&submitted),
        server.log()
    );
    let text = String::from_utf8(submitted.stdout).unwrap();
    assert!(text.contains(&format!("jobId: {job}")), "{text}");
}

/// Checks a finished job against `predictor local`'s rows: results, errors file, counts, log.
async fn check_job(
    emulator: &gcs_emulator::GcsEmulator,
    server: &Server,
    described: &Value,
    local_rows: &[Value],
    bad_position: &str,
) {
    let job = described["jobId"].as_str().unwrap();
    let log = server.cli_ok(&["jobs", "logs", job]);
    assert_eq!(described["state"], "SUCCEEDED", "{described}\n{log}");
    let output_path = format!("gs://{BUCKET}/out/{job}");
    let output = &described["predictionOutput"];
    assert_eq!(output["outputPath"], output_path.as_str(), "{described}");
    assert_eq!(output["predictionCount"], "10", "{described}");
    assert_eq!(output["errorCount"], "1", "{described}");
    // Wall hours to the second (a job of under a second is 0).
    assert!(output["nodeHours"].as_f64().unwrap() >= 0.0, "{described}");
    assert!(described.get("trainingOutput").is_none(), "{described}");

    let results = read(
        emulator,
        &format!("{output_path}/prediction.results-00000-of-00001"),
    )
    .await;
    let rows: Vec<Value> = results
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows, local_rows, "{job}: results equal predictor local's");
    // Cloud ML Engine's errors_stats: one Python tuple per distinct error, with its count.
    let stats = read(
        emulator,
        &format!("{output_path}/prediction.errors_stats-00000-of-00001"),
    )
    .await;
    assert!(
        stats.starts_with("('column 8: invalid JSON") && stats.ends_with("', 1)\n"),
        "{job}: {stats}"
    );
    assert_eq!(stats.lines().count(), 1, "{stats}");
    // The job log names the bad record where it is, as an error line of the job.
    let line = log
        .lines()
        .find(|l| l.contains(bad_position))
        .unwrap_or_else(|| panic!("{job}: the log does not name {bad_position}:\n{log}"));
    assert!(
        line.starts_with("ERROR\t") && line.contains("column 8: invalid JSON"),
        "{line}"
    );
    assert!(log.contains("predictionCount: 10"), "{log}");
    assert!(log.contains("Job completed successfully."), "{log}");
}

/// The emulator, a server (jobs_gcloud.rs's), gcloud pointed at both, and the tutorial model
/// (testdata/savedmodels/tf1-tutorial) at gs://BUCKET/models/tutorial.
async fn setup() -> (tempfile::TempDir, gcs_emulator::GcsEmulator, Server, Gcloud) {
    let tmp = tempfile::tempdir().unwrap();
    let emulator = emulator_with_data().await;
    let server = start_server(tmp.path(), &emulator);
    let gcloud = Gcloud::new(tmp.path(), &server, &emulator);
    let model_url = format!("gs://{BUCKET}/models/tutorial");
    upload_to_gcs(&emulator, &fixture("tf1-tutorial"), &model_url).await;
    (tmp, emulator, server, gcloud)
}

#[tokio::test(flavor = "multi_thread")]
async fn gcloud_prediction_jobs_match_predictor_local() {
    let (tmp, emulator, server, gcloud) = setup().await;
    let model_url = format!("gs://{BUCKET}/models/tutorial");
    let local_rows = serve_support::local_predictions(&fixture("tf1-tutorial"))
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(local_rows.len(), 10);

    // Text: two files matched by one wildcard, the malformed line is line 4 of the first.
    let lines = lines_with_bad(3);
    let (first, second) = lines.split_at(6);
    write(
        &emulator,
        &format!("gs://{BUCKET}/text/part-a.json"),
        (first.join("\n") + "\n").into_bytes(),
    )
    .await;
    // No final newline: the last line is a record too.
    write(
        &emulator,
        &format!("gs://{BUCKET}/text/part-b.json"),
        second.join("\n").into_bytes(),
    )
    .await;
    let text_inputs = format!("gs://{BUCKET}/text/*");
    submit(
        &gcloud,
        &server,
        "predict_text",
        &["--model-dir", &model_url],
        &text_inputs,
        "text",
    );

    // TFRecord written by TensorFlow: the malformed record is record 8.
    let records = tensorflow_tfrecord(tmp.path(), &lines_with_bad(7));
    write(
        &emulator,
        &format!("gs://{BUCKET}/tfrecord/data-00000.tfrecord"),
        records,
    )
    .await;
    let record_inputs = format!("gs://{BUCKET}/tfrecord/*");
    submit(
        &gcloud,
        &server,
        "predict_tfrecord",
        &["--model-dir", &model_url],
        &record_inputs,
        "tf-record",
    );

    // A deployed version, named with --model/--version (gcloud sends versionName).
    let token_file = tmp.path().join(TOKEN_FILE);
    let auth = ["--auth-token-file", token_file.to_str().unwrap()];
    server.deploy("mnist", "v1", &model_url, &auth);
    submit(
        &gcloud,
        &server,
        "predict_version",
        &["--model", "mnist", "--version", "v1"],
        &text_inputs,
        "text",
    );

    let limit = Duration::from_secs(240);
    let text = gcloud.wait_until_final("predict_text", &server, limit);
    check_job(
        &emulator,
        &server,
        &text,
        &local_rows,
        &format!("gs://{BUCKET}/text/part-a.json line 4: "),
    )
    .await;
    assert_eq!(text["predictionInput"]["dataFormat"], "TEXT");
    assert_eq!(text["predictionInput"]["uri"], model_url.as_str());

    let tfrecord = gcloud.wait_until_final("predict_tfrecord", &server, limit);
    check_job(
        &emulator,
        &server,
        &tfrecord,
        &local_rows,
        &format!("gs://{BUCKET}/tfrecord/data-00000.tfrecord record 8: "),
    )
    .await;
    assert_eq!(tfrecord["predictionInput"]["dataFormat"], "TF_RECORD");

    let by_version = gcloud.wait_until_final("predict_version", &server, limit);
    check_job(
        &emulator,
        &server,
        &by_version,
        &local_rows,
        &format!("gs://{BUCKET}/text/part-a.json line 4: "),
    )
    .await;
    assert_eq!(
        by_version["predictionInput"]["versionName"],
        "projects/default/models/mnist/versions/v1"
    );
    let log = server.cli_ok(&["jobs", "logs", "predict_version"]);
    assert!(
        log.contains(&format!(
            "Model mnist, version v1: deploymentUri {model_url}"
        )),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gcloud_prediction_jobs_fail_without_inputs_or_a_loadable_model() {
    let (_tmp, emulator, server, gcloud) = setup().await;
    let model_url = format!("gs://{BUCKET}/models/tutorial");
    write(
        &emulator,
        &format!("gs://{BUCKET}/text/in.json"),
        std::fs::read(sample_json()).unwrap(),
    )
    .await;
    // A SavedModel whose saved_model.pb is not a protobuf.
    let broken_url = format!("gs://{BUCKET}/models/broken");
    write(
        &emulator,
        &format!("{broken_url}/saved_model.pb"),
        b"this is not a SavedModel".to_vec(),
    )
    .await;

    let nothing = format!("gs://{BUCKET}/nothing/*");
    submit(
        &gcloud,
        &server,
        "no_inputs",
        &["--model-dir", &model_url],
        &nothing,
        "text",
    );
    let inputs = format!("gs://{BUCKET}/text/*");
    submit(
        &gcloud,
        &server,
        "broken_model",
        &["--model-dir", &broken_url],
        &inputs,
        "text",
    );

    let limit = Duration::from_secs(120);
    for (job, reason) in [
        ("no_inputs", format!("[\"{nothing}\"] match no files")),
        (
            "broken_model",
            format!("cannot load the SavedModel in {broken_url}"),
        ),
    ] {
        let described = gcloud.wait_until_final(job, &server, limit);
        let log = server.cli_ok(&["jobs", "logs", job]);
        assert_eq!(described["state"], "FAILED", "{described}\n{log}");
        let message = described["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains(&reason), "{job}: {message}");
        assert!(log.contains("Job failed."), "{log}");
        let output = &described["predictionOutput"];
        assert_eq!(output["predictionCount"], "0", "{described}");
        let written = objects(&emulator, &format!("out/{job}")).await;
        assert!(
            written.is_empty(),
            "a failed job wrote {written:?} to its output path"
        );
    }
    // gcloud shows the reason too.
    let described = gcloud.api_ok(
        &["ai-platform", "jobs", "describe", "broken_model"],
        &server,
    );
    assert!(described.contains("state: FAILED"), "{described}");
    assert!(
        described.contains("cannot load the SavedModel"),
        "{described}"
    );
}
