//! `predictor jobs list|describe|cancel|logs`: Cloud ML Engine jobs on a `predictor serve`, like
//! `gcloud ai-platform jobs …`. Logs are read from the server's Cloud Logging route
//! (`/v2/entries:list`), the same one gcloud's `jobs stream-logs` uses.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

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
    /// List jobs, newest first: JOB_ID, STATUS, CREATED.
    List,
    /// Print a job (the API's `Job` resource) as JSON.
    Describe { job: String },
    /// Cancel a job: its trainer gets SIGTERM (it checkpoints), the job ends CANCELLED.
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

pub fn jobs(args: JobsArgs) -> Result<()> {
    let client = Client::new(&args.connection)?;
    runtime()?.block_on(async {
        match args.command {
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
            } => {
                let interval = Duration::try_from_secs_f64(polling_interval).map_err(|_| {
                    anyhow::anyhow!("--polling-interval must be a non-negative number")
                })?;
                logs(&client, &job, follow, interval).await
            }
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
