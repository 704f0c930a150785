//! hypertune: Cloud ML Engine hyperparameter tuning for our trainer — which trials to run, how
//! their metric is read, and what `trainingOutput` says about them.
//!
//! # Why a crate of its own
//! Tuning is a concept apart from running one training job (the `jobs` service: queue,
//! processes, logs) and from training (the `training` crate, which only *reports* a metric). The
//! jobs service hands this crate the validated `trainingInput.hyperparameters` (`job-config`'s
//! [`HyperparameterSpec`]) and a [`TrialLauncher`] that starts trainer processes; this crate
//! decides the trials, runs them with the allowed parallelism, reads each trial's metric file and
//! returns the typed `trainingOutput` ([`TuningOutput`]). Nothing here knows about HTTP, job
//! resources or processes, so every rule is testable with a closure as the launcher.
//!
//! # What's where
//! * [`space`]: parameters ↔ the unit cube (INTEGER / DOUBLE / CATEGORICAL / DISCRETE with
//!   `UNIT_LINEAR_SCALE`, `UNIT_LOG_SCALE`, `UNIT_REVERSE_LOG_SCALE`), the `--name=value` flags.
//! * [`planner`]: [`Planner`] — GRID_SEARCH, RANDOM_SEARCH and the default Bayesian search,
//!   `maxTrials`, `maxFailedTrials`.
//! * [`runner`]: [`run_tuning`] — trials in parallel through the launcher, cancellation,
//!   `enableTrialEarlyStopping` (median stopping rule).
//! * [`metrics`]: the `cloudml-hypertune` metric file ([`read_metric_file`]).
//! * [`output`]: `trainingOutput.trials[]` ([`TrialOutput`]) and the best-first order.
//!
//! # Libraries
//! The Bayesian search uses `egobox-ego` (efficient global optimisation: Gaussian-process
//! surrogates from `egobox-gp`, expected-improvement infill, batches of q points by Kriging
//! believer) through its ask-and-tell `EgorService`, which fits our loop exactly: we hold the
//! results, it suggests the next points. It is actively released (0.42, 2026), pure Rust (no
//! BLAS needed by default), Apache-2.0, and handles the optimisation of the GP's own
//! hyperparameters and of the acquisition function, which is where home-made Gaussian processes
//! go wrong. `friedrich` was the alternative: a GP regressor only (we would have written the
//! acquisition and its optimiser ourselves) and unreleased since 2023. Random draws use
//! `rand_chacha` (seeded, reproducible); the runner uses `futures` and `tokio::sync`/`time`.

pub mod metrics;
pub mod output;
pub mod planner;
pub mod runner;
pub mod space;

pub use job_config::{Goal, HyperparameterSpec, ParameterSpec, ParameterType, ScaleType};
pub use metrics::{MetricFile, MetricReport, parse_metric_reports, read_metric_file};
pub use output::{FinalMetric, TrialOutput, TrialState, TuningOutput, sort_best_first};
pub use planner::{Algorithm, Planner, Trial, TrialResult};
pub use runner::{
    CancelHandle, DEFAULT_METRIC_TAG, StopSignal, TrialExit, TrialLaunch, TrialLauncher,
    TuningEvent, TuningOptions, TuningOutcome, TuningState, best_metric, metric_tag, run_tuning,
};
pub use space::{ParamValue, SearchSpace, TrialParams};

/// Everything that can stop a tuning run before its trials decide it.
#[derive(Debug, thiserror::Error)]
pub enum HypertuneError {
    /// The spec cannot be searched (names the parameter and the rule).
    #[error("{0}")]
    InvalidSpec(String),
    /// A metric file or its directory could not be read or created.
    #[error("hypertune metric file {path}: {source}")]
    MetricFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
