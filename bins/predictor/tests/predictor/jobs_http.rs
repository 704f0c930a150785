//! The jobs API over plain HTTP: refusals (bad bodies, bad training and prediction fields,
//! workers, unknown jobs and models, no token), the queue, trainer failures reported on the
//! job, and a job RUNNING when the server was killed becoming FAILED with the reason on restart.
//! Local registry and job dirs; the real trainer on testdata/idx/mnist-small.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::serve_support::{Server, json, trainer_binary, workspace_root};

const JOBS: &str = "/v1/projects/default/jobs";

fn google_error(body: &str) -> (String, String) {
    let error = &json(body)["error"];
    (
        error["status"].as_str().unwrap_or_default().to_string(),
        error["message"].as_str().unwrap_or_default().to_string(),
    )
}

async fn submit(server: &Server, token: &str, body: Value) -> (u16, String) {
    server
        .request(Method::POST, JOBS, Some(token), Some(body.to_string()))
        .await
}

async fn job(server: &Server, id: &str) -> Value {
    let (status, body) = server.get(&format!("{JOBS}/{id}")).await;
    assert_eq!(status, 200, "{body}");
    json(&body)
}

async fn wait_for(
    server: &Server,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let current = job(server, id).await;
        if done(&current) {
            return current;
        }
        assert!(
            started.elapsed() < limit,
            "job {id} never got there: {current}\nserver log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn training(id: &str, job_dir: &str, args: &[&str]) -> Value {
    json!({"jobId": id, "trainingInput": {"jobDir": job_dir, "region": "us-central1", "args": args}})
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_api_refuses_bad_requests_with_the_field_named() {
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "t0ken").unwrap();
    let server = Server::start_in(
        tmp.path(),
        &["--auth-token-file", token_file.to_str().unwrap()],
        &[],
    );
    let job_dir = tmp.path().join("job");
    let job_dir = job_dir.to_str().unwrap();

    let (status, body) = server.get(JOBS).await;
    assert_eq!((status, json(&body)), (200, json!({})));

    // No token: 401, nothing created.
    let (status, body) = server
        .request(
            Method::POST,
            JOBS,
            None,
            Some(training("a", job_dir, &[]).to_string()),
        )
        .await;
    assert_eq!(
        (status, google_error(&body).0.as_str()),
        (401, "UNAUTHENTICATED"),
        "{body}"
    );
    let (status, _) = server.get(&format!("{JOBS}/a")).await;
    assert_eq!(status, 404);

    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"jobId": "a", "trainingInputs": {}}),
            400,
            "INVALID_ARGUMENT",
            "unknown field `trainingInputs`",
        ),
        (
            json!({"trainingInput": {"jobDir": job_dir}}),
            400,
            "INVALID_ARGUMENT",
            "Field: job.job_id Error: A job id is required",
        ),
        (
            json!({"jobId": "9lives", "trainingInput": {"jobDir": job_dir}}),
            400,
            "INVALID_ARGUMENT",
            "\"9lives\" is not a valid job id",
        ),
        (
            json!({"jobId": "a", "trainingInput": {"jobDir": job_dir, "masterTyp": "standard"}}),
            400,
            "INVALID_ARGUMENT",
            "job a: trainingInput.masterTyp: unknown field; did you mean masterType?",
        ),
        (
            json!({"jobId": "a", "trainingInput": {"region": "us-central1"}}),
            400,
            "INVALID_ARGUMENT",
            "job a: trainingInput.jobDir: required",
        ),
        (
            json!({"jobId": "a", "trainingInput": {"jobDir": job_dir, "scaleTier": "CUSTOM", "masterType": "standard", "workerType": "standard", "workerCount": "2"}}),
            400,
            "INVALID_ARGUMENT",
            "job a: the job asks for workerCount 2 besides the master, but this trainer runs on one machine (distributed training is not implemented); set workerCount",
        ),
        (
            json!({"jobId": "a", "predictionInput": {"dataFormat": "CSV", "inputPaths": ["x"], "outputPath": "y", "region": "us-central1", "uri": "z"}}),
            400,
            "INVALID_ARGUMENT",
            "Field: job.prediction_input.data_format Error: CSV is not supported by this server",
        ),
        (
            json!({"jobId": "a", "predictionInput": {"dataFormat": "TEXT", "inputPaths": ["x"], "outputPath": "y", "region": "us-central1", "modelName": "projects/default/models/nope"}}),
            400,
            "INVALID_ARGUMENT",
            "Field: job.prediction_input.model_name Error: model \"nope\" not found",
        ),
        (
            json!({"jobId": "a", "predictionInput": {"dataFormat": "TEXT", "inputPaths": ["x"], "outputPath": "y", "region": "us-central1", "uri": "z"}, "trainingInput": {"jobDir": job_dir}}),
            400,
            "INVALID_ARGUMENT",
            "a job has either trainingInput or predictionInput, not both",
        ),
    ];
    for (body, want_status, want_code, want_message) in cases {
        let (status, answer) = submit(&server, "t0ken", body.clone()).await;
        let (code, message) = google_error(&answer);
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "{body} → {answer}"
        );
        assert!(message.contains(want_message), "{body} → {message}");
    }
    // A body that is not JSON at all.
    let (status, answer) = server
        .request(
            Method::POST,
            JOBS,
            Some("t0ken"),
            Some("{\"jobId\": ".into()),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        google_error(&answer)
            .1
            .starts_with("Invalid JSON payload received."),
        "{answer}"
    );

    // Unknown jobs.
    let (status, answer) = server.get(&format!("{JOBS}/nope")).await;
    assert_eq!(
        (status, google_error(&answer)),
        (404, ("NOT_FOUND".into(), "Job \"nope\" not found".into()))
    );
    let (status, answer) = server
        .request(
            Method::POST,
            &format!("{JOBS}/nope:cancel"),
            Some("t0ken"),
            Some("{}".into()),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    // The logging route wants a job.
    let (status, answer) = server
        .post("/v2/entries:list", r#"{"filter": "logName=\"x\""}"#)
        .await;
    assert_eq!(status, 400);
    assert!(
        google_error(&answer).1.contains("resource.labels.job_id"),
        "{answer}"
    );
    let (status, answer) = server
        .post(
            "/v2/entries:list",
            r#"{"filter": "resource.labels.job_id=\"nope\""}"#,
        )
        .await;
    assert_eq!((status, json(&answer)), (200, json!({})));
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_failures_and_a_server_crash_are_reported_on_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let trainer = trainer_binary();
    let args = ["--trainer-path", trainer.to_str().unwrap()];
    let data = workspace_root().join("testdata/idx/mnist-small");
    let data = data.to_str().unwrap();
    let job_dir = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();

    let mut server = Server::start_in(tmp.path(), &args, &[]);
    // A long job holds the one CPU slot; the next one waits QUEUED at position 0.
    let (status, answer) = submit(
        &server,
        "",
        training(
            "long_job",
            &job_dir("long"),
            &["--train-file", data, "--epochs", "500"],
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json(&answer)["state"], "QUEUED");
    wait_for(&server, "long_job", Duration::from_secs(60), |j| {
        j["state"] == "RUNNING"
    })
    .await;
    let (status, answer) = submit(
        &server,
        "",
        training(
            "bad_data",
            &job_dir("bad"),
            &["--train-file", "/no/such/mnist"],
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let queued = job(&server, "bad_data").await;
    assert_eq!(
        (&queued["state"], &queued["jobPosition"]),
        (&json!("QUEUED"), &json!("0")),
        "{queued}"
    );

    // The server dies without a chance to stop its jobs.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    server
        .wait_exit(Duration::from_secs(10))
        .expect("the server died");

    let server = Server::start_in(tmp.path(), &args, &[]);
    let long = job(&server, "long_job").await;
    assert_eq!(long["state"], "FAILED", "{long}");
    let message = long["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("stopped while the job was RUNNING"),
        "{message}"
    );
    assert!(long["endTime"].is_string());
    // The queued job is queued again, runs, and fails with the trainer's own error.
    let bad = wait_for(&server, "bad_data", Duration::from_secs(60), |j| {
        j["state"] == "FAILED"
    })
    .await;
    let message = bad["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("The replica master 0 exited with a non-zero status of 1.")
            && message.contains("/no/such/mnist"),
        "{message}"
    );
    let log = server.cli_ok(&["jobs", "logs", "bad_data"]);
    assert!(
        log.contains("The server restarted; the job is queued again."),
        "{log}"
    );
    assert!(log.contains("ERROR\t"), "{log}");

    // A GPU master on this CPU build, without --allow-cpu: FAILED, saying what is missing.
    let mut gpu = training("gpu_job", &job_dir("gpu"), &["--train-file", data]);
    gpu["trainingInput"]["scaleTier"] = json!("BASIC_GPU");
    let (status, answer) = submit(&server, "", gpu).await;
    assert_eq!(status, 200, "{answer}");
    let gpu = wait_for(&server, "gpu_job", Duration::from_secs(60), |j| {
        j["state"] == "FAILED"
    })
    .await;
    let message = gpu["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("NVIDIA_TESLA_K80") && message.contains("--allow-cpu"),
        "{message}"
    );
    assert!(
        !tmp.path().join("gpu/model/saved_model.pb").exists(),
        "a failed job left a model"
    );
    let listed = server.cli_ok(&["jobs", "list"]);
    for id in ["long_job", "bad_data", "gpu_job"] {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(id) && l.contains("FAILED")),
            "{listed}"
        );
    }
}
