//! predictor: runs predictions from TensorFlow SavedModels, like gcloud's Cloud ML Engine commands.
//!
//! Each subcommand lives in its own module and is one variant of [`Command`]; `main` only parses
//! the command line, dispatches, and turns an error into a message and a non-zero exit status.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod batch;
mod client;
mod jobs_client;
mod local;
mod log_writer;
mod serve;

#[derive(Parser)]
#[command(
    name = "predictor",
    version,
    about = "Predictions from TensorFlow SavedModels, the Cloud ML Engine way"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a prediction locally, like `gcloud ai-platform local predict`.
    Local(local::LocalArgs),
    /// Run a batch prediction job in the foreground, like `gcloud ai-platform jobs submit
    /// prediction`: input files in, prediction.results-* and prediction.errors_stats-* out.
    BatchPredict(batch::BatchPredictArgs),
    /// Serve models over HTTP: the Cloud ML Engine API and TensorFlow Serving's REST API.
    Serve(serve::ServeArgs),
    /// Manage models on a prediction server, like `gcloud ai-platform models`.
    Models(client::ModelsArgs),
    /// Manage model versions on a prediction server, like `gcloud ai-platform versions`.
    Versions(client::VersionsArgs),
    /// Online prediction against a server, like `gcloud ai-platform predict`.
    Predict(client::PredictArgs),
    /// Jobs on a server (submit training|prediction, list, describe, cancel, logs), like
    /// `gcloud ai-platform jobs`.
    Jobs(jobs_client::JobsArgs),
}

impl Command {
    /// The name used in error messages, as gcloud's `ERROR: (gcloud.ai-platform.local.predict)`.
    fn name(&self) -> &'static str {
        match self {
            Command::Local(_) => "predictor local",
            Command::BatchPredict(_) => "predictor batch-predict",
            Command::Serve(_) => "predictor serve",
            Command::Models(_) => "predictor models",
            Command::Versions(_) => "predictor versions",
            Command::Predict(_) => "predictor predict",
            Command::Jobs(_) => "predictor jobs",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli.command.name();
    let result = match cli.command {
        Command::Local(args) => local::run(args),
        Command::BatchPredict(args) => batch::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Models(args) => client::models(args),
        Command::Versions(args) => client::versions(args),
        Command::Predict(args) => client::predict(args),
        Command::Jobs(args) => jobs_client::jobs(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Each cause once: nested storage errors repeat their causes' text.
            let text = storage::error_chain_text(error.as_ref());
            eprintln!("ERROR: ({name}) {text}");
            ExitCode::FAILURE
        }
    }
}
