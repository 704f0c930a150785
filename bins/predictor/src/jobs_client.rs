//! `predictor jobs submit training|prediction`, `list|describe|cancel|logs`: Cloud ML Engine jobs
//! on a `predictor serve`, like `gcloud ai-platform jobs …`. A submit sends the `Job` gcloud
//! would send for the same flags; logs are read from the server's Cloud Logging route
//! (`/v2/entries:list`), the same one gcloud's `jobs stream-logs` uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::batch::PredictionFiles;
use crate::client::{Client, Connection, print_table, runtime};

/// `predictor jobs …`
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// Submit a job, like `gcloud ai-platform jobs submit training|prediction`.
    #[command(subcommand)]
    Submit(Box<SubmitCommand>),
    /// List jobs, newest first: JOB_ID, STATUS, CREATED.
    List,
    /// Print a job (the API's `Job` resource) as JSON.
    Describe { job: String },
    /// Cancel a job: its trainer (or batch prediction) gets SIGTERM, the job ends CANCELLED.
    Cancel { job: String },
    /// Print a job's log: severity, time, task, trial and message, tab-separated (gcloud's
    /// `jobs stream-logs` layout).
    Logs {
        job: String,
        /// Keep printing new lines until the job ends.
        #[arg(long)]
        follow: bool,
        /// Seconds between polls with --follow.
        #[arg(long, default_value_t = 1.0)]
        polling_interval: f64,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum SubmitCommand {
    /// A training job: the server runs its trainer with the job's args and jobDir.
    Training(TrainingArgs),
    /// A batch prediction job: the server runs `predictor batch-predict` on the input files.
    Prediction(PredictionArgs),
}

/// Flags every submit takes.
#[derive(Debug, clap::Args)]
pub struct SubmitCommon {
    /// The job id: a letter, then letters, digits and underscores.
    job: String,
    /// The region (recorded; the job runs on the server's machine).
    #[arg(long, default_value = "us-central1")]
    region: String,
    /// The runtime version (recorded; the server's own runtime runs the job).
    #[arg(long)]
    runtime_version: Option<String>,
    /// Job labels, KEY=VALUE[,…].
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    labels: Vec<String>,
    /// Print the job's log until it ends; exit with an error unless it SUCCEEDED.
    #[arg(long)]
    stream_logs: bool,
    /// Seconds between log polls with --stream-logs.
    #[arg(long, default_value_t = 1.0)]
    polling_interval: f64,
}

/// `predictor jobs submit training …`
#[derive(Debug, clap::Args)]
pub struct TrainingArgs {
    #[command(flatten)]
    common: SubmitCommon,
    /// Where the trainer writes checkpoints and the model (local path or gs:// URL).
    #[arg(long, value_name = "DIR|URL")]
    job_dir: Option<String>,
    /// A job config (YAML or JSON, gcloud's --config file): its trainingInput is the base that
    /// the flags override.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// trainingInput.scaleTier (BASIC, BASIC_GPU, CUSTOM, …).
    #[arg(long)]
    scale_tier: Option<String>,
    /// trainingInput.masterType (with --scale-tier CUSTOM).
    #[arg(long)]
    master_machine_type: Option<String>,
    /// Arguments for the trainer, after `--`.
    #[arg(last = true, value_name = "TRAINER_ARGS")]
    args: Vec<String>,
}

/// `predictor jobs submit prediction …`
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("model_source").required(true).args(["model_dir", "model"])))]
pub struct PredictionArgs {
    #[command(flatten)]
    common: SubmitCommon,
    /// The SavedModel directory (local path or gs:// URL).
    #[arg(long, value_name = "DIR|URL")]
    model_dir: Option<String>,
    /// A model deployed on the server (its default version unless --version is given).
    #[arg(long)]
    model: Option<String>,
    /// A version of --model.
    #[arg(long, requires = "model")]
    version: Option<String>,
    #[command(flatten)]
    files: PredictionFiles,
    /// Instances per forward pass at least.
    #[arg(long)]
    batch_size: Option<u64>,
    /// predictionInput.maxWorkerCount (recorded; one process runs the job).
    #[arg(long)]
    max_worker_count: Option<u64>,
}

/// `predictionInput` as gcloud builds it from the same flags (int64s as strings, full resource
/// names, `versionName` without `modelName`).
fn prediction_input(args: &PredictionArgs, project: &str) -> Value {
    let mut input = json!({
        "dataFormat": crate::batch::data_format(args.files.data_format).api_name(),
        "inputPaths": args.files.input_paths,
        "outputPath": args.files.output_path,
        "region": args.common.region,
    });
    match (&args.model_dir, &args.model, &args.version) {
        (Some(dir), _, _) => input["uri"] = json!(dir),
        (None, Some(model), Some(version)) => {
            input["versionName"] = json!(format!(
                "projects/{project}/models/{model}/versions/{version}"
            ));
        }
        (None, Some(model), None) => {
            input["modelName"] = json!(format!("projects/{project}/models/{model}"));
        }
        // clap requires one of --model-dir and --model.
        (None, None, _) => {}
    }
    if let Some(size) = args.batch_size {
        input["batchSize"] = json!(size.to_string());
    }
    if let Some(name) = &args.files.signature_name {
        input["signatureName"] = json!(name);
    }
    if let Some(count) = args.max_worker_count {
        input["maxWorkerCount"] = json!(count.to_string());
    }
    if let Some(version) = &args.common.runtime_version {
        input["runtimeVersion"] = json!(version);
    }
    input
}

/// The `Job` of `submit training`: the --config file's job, then the flags over its
/// trainingInput, as gcloud merges them.
fn training_job(args: &TrainingArgs) -> Result<Value> {
    let mut job = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --config {}", path.display()))?;
            let parsed: Value = serde_yaml::from_str(&text)
                .with_context(|| format!("--config {}: not a YAML or JSON job", path.display()))?;
            if !parsed.is_object() {
                bail!(
                    "--config {}: expected a job (trainingInput: …), found {parsed}",
                    path.display()
                );
            }
            parsed
        }
        None => json!({}),
    };
    let input = job
        .as_object_mut()
        .map(|job| job.entry("trainingInput").or_insert_with(|| json!({})))
        .filter(|input| input.is_object())
        .context("--config: trainingInput must be a mapping")?;
    let mut set = |key: &str, value: Option<&String>| {
        if let Some(value) = value {
            input[key] = json!(value);
        }
    };
    set("jobDir", args.job_dir.as_ref());
    set("scaleTier", args.scale_tier.as_ref());
    set("masterType", args.master_machine_type.as_ref());
    set("runtimeVersion", args.common.runtime_version.as_ref());
    set("region", Some(&args.common.region));
    if !args.args.is_empty() {
        input["args"] = json!(args.args);
    }
    Ok(job)
}

fn labels(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => bail!("--labels expects KEY=VALUE, got {pair:?}"),
        })
        .collect()
}

/// Sends the job; prints what gcloud prints (and, with --stream-logs, the log until it ends).
async fn submit(client: &Client, mut job: Value, common: &SubmitCommon) -> Result<()> {
    job["jobId"] = json!(common.job);
    let labels = labels(&common.labels)?;
    if !labels.is_empty() {
        job["labels"] = json!(labels);
    }
    let created = client
        .call(reqwest::Method::POST, "jobs", Some(&job))
        .await?;
    eprintln!("Job [{}] submitted successfully.", common.job);
    let text = |key: &str| created.get(key).and_then(Value::as_str).unwrap_or_default();
    println!("jobId: {}", text("jobId"));
    println!("state: {}", text("state"));
    if !common.stream_logs {
        eprintln!(
            "Your job is still active. You may view the status of your job with the command

               $ predictor jobs describe {0}

or continue streaming the logs with the command

               $ predictor jobs logs {0} --follow",
            common.job
        );
        return Ok(());
    }
    logs(
        client,
        &common.job,
        true,
        poll_every(common.polling_interval)?,
    )
    .await?;
    let ended = client
        .call(reqwest::Method::GET, &format!("jobs/{}", common.job), None)
        .await?;
    let state = ended
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default();
    eprintln!("Job [{}] ended {state}.", common.job);
    if state != "SUCCEEDED" {
        let reason = ended
            .get("errorMessage")
            .and_then(Value::as_str)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        bail!("job {} ended {state}{reason}", common.job);
    }
    Ok(())
}

fn poll_every(seconds: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| anyhow::anyhow!("--polling-interval must be a non-negative number"))
}

pub fn jobs(args: JobsArgs) -> Result<()> {
    let client = Client::new(&args.connection)?;
    runtime()?.block_on(async {
        match args.command {
            JobsCommand::Submit(submit_command) => match *submit_command {
                SubmitCommand::Training(training) => {
                    let job = training_job(&training)?;
                    submit(&client, job, &training.common).await
                }
                SubmitCommand::Prediction(prediction) => {
                    let input = prediction_input(&prediction, &client.project);
                    let job = json!({ "predictionInput": input });
                    submit(&client, job, &prediction.common).await
                }
            },
            JobsCommand::List => list(&client).await,
            JobsCommand::Describe { job } => {
                let answer = client
                    .call(reqwest::Method::GET, &format!("jobs/{job}"), None)
                    .await?;
                println!("{}", serde_json::to_string_pretty(&answer)?);
                Ok(())
            }
            JobsCommand::Cancel { job } => {
                client
                    .call(
                        reqwest::Method::POST,
                        &format!("jobs/{job}:cancel"),
                        Some(&json!({})),
                    )
                    .await?;
                eprintln!("Cancel requested for job [{job}].");
                Ok(())
            }
            JobsCommand::Logs {
                job,
                follow,
                polling_interval,
            } => logs(&client, &job, follow, poll_every(polling_interval)?).await,
        }
    })
}

async fn list(client: &Client) -> Result<()> {
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let resource = match &token {
            Some(t) => format!("jobs?pageSize=100&pageToken={t}"),
            None => "jobs?pageSize=100".to_string(),
        };
        let answer = client.call(reqwest::Method::GET, &resource, None).await?;
        for job in answer
            .get("jobs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = |key: &str| {
                job.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            rows.push(vec![text("jobId"), text("state"), text("createTime")]);
        }
        token = answer
            .get("nextPageToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    if rows.is_empty() {
        eprintln!("Listed 0 items.");
    } else {
        print_table(&["JOB_ID", "STATUS", "CREATED"], &rows);
    }
    Ok(())
}

/// Prints the job's entries from the start; with `follow`, polls for more until the job has
/// ended and a poll after that found nothing new.
async fn logs(client: &Client, job: &str, follow: bool, interval: Duration) -> Result<()> {
    let url = format!("{}/v2/entries:list", client.base);
    // (timestamp, insertId) of the last entry printed.
    let mut last: Option<(String, String)> = None;
    loop {
        // Read the job's state before the entries: entries written before it ended are then
        // all in this round's answer.
        let ended = if follow {
            let state = client
                .call(reqwest::Method::GET, &format!("jobs/{job}"), None)
                .await?;
            state.get("endTime").is_some()
        } else {
            true
        };
        let mut filter = format!("resource.labels.job_id=\"{job}\"");
        if let Some((at, id)) = &last {
            filter.push_str(&format!(
                " AND ((timestamp=\"{at}\" AND insertId>\"{id}\") OR timestamp>\"{at}\")"
            ));
        }
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"filter": filter, "orderBy": "timestamp asc", "pageSize": 1000, "resourceNames": [format!("projects/{}", client.project)]});
            if let Some(t) = &token {
                body["pageToken"] = json!(t);
            }
            let answer = client
                .call_url(reqwest::Method::POST, &url, Some(&body))
                .await?;
            for entry in answer
                .get("entries")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let text = |pointer: &str| {
                    entry
                        .pointer(pointer)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let timestamp = text("/timestamp");
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    text("/severity"),
                    timestamp,
                    text("/resource/labels/task_name"),
                    text("/labels/ml.googleapis.com~1trial_id"),
                    text("/textPayload")
                );
                last = Some((timestamp, text("/insertId")));
            }
            token = answer
                .get("nextPageToken")
                .and_then(Value::as_str)
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        if ended {
            break;
        }
        tokio::time::sleep(interval).await;
    }
    if last.is_none() && !follow {
        // An unknown job has no entries; say so rather than print nothing.
        client
            .call(reqwest::Method::GET, &format!("jobs/{job}"), None)
            .await?;
        eprintln!("Job [{job}] has no log entries yet.");
    }
    Ok(())
}
