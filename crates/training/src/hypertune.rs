//! [`HypertuneObserver`]: reports the run's objective to a hyperparameter-tuning service the way
//! Google's `cloudml-hypertune` library does, so a tuning job (ours in the `hypertune` crate, or
//! Cloud ML Engine's) can read each trial's metric.
//!
//! # The file
//! `cloudml-hypertune` keeps the last 100 reports and rewrites the whole file at every report,
//! one `json.dumps(report, sort_keys=True)` per line:
//!
//! ```text
//! {"global_step": "1875", "accuracy": "0.9645", "timestamp": 1764851440.123456, "trial": "3"}
//! ```
//!
//! Values are strings (Python's `str()`), except `timestamp` (a float, seconds since the epoch);
//! the trial id comes from `CLOUD_ML_TRIAL_ID` (`"0"` without it). The path is
//! `$CLOUD_ML_HP_METRIC_FILE`, else `/tmp/hypertune/output.metrics`. We write a temporary file
//! beside it and rename it into place, so a reader never sees half a report (the Python library
//! truncates and rewrites in place).
//!
//! # What is reported
//! The tag (`hyperparameterMetricTag`, default `training/hptuning/metric`) decides the metric: a
//! tag containing `loss` reports a loss, any other tag an accuracy. After every epoch the
//! validation metric is reported (the epoch's training metric without a validation split), at
//! that epoch's global step; after the final test pass, the test metric at the last step. The
//! service takes the last report as the trial's final objective, so that is the test-set value.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use mnist_model::RunningMetrics;

use crate::observer::{Control, ControlResult, EpochEnd, EvalPass, FitContext, FitObserver};
use crate::{HookResult, TrainingError};

/// `cloudml-hypertune`'s tag when the job names none.
pub const DEFAULT_METRIC_TAG: &str = "training/hptuning/metric";
/// `cloudml-hypertune`'s file when `CLOUD_ML_HP_METRIC_FILE` is not set.
pub const DEFAULT_METRIC_FILE: &str = "/tmp/hypertune/output.metrics";
/// Environment variable naming the metric file.
pub const METRIC_FILE_ENV: &str = "CLOUD_ML_HP_METRIC_FILE";
/// Environment variable holding the trial id.
pub const TRIAL_ID_ENV: &str = "CLOUD_ML_TRIAL_ID";
/// Environment variable some trainers read the tag from (the job config's tag wins over it).
pub const METRIC_TAG_ENV: &str = "CLOUD_ML_HP_METRIC_TAG";
/// Reports kept in the file, as `cloudml-hypertune` keeps them.
pub const MAX_REPORTS_KEPT: usize = 100;

/// Which of the run's metrics a tag asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedMetric {
    Loss,
    Accuracy,
}

impl ReportedMetric {
    /// `loss` anywhere in the tag (any case) means a loss; anything else an accuracy.
    pub fn for_tag(tag: &str) -> ReportedMetric {
        if tag.to_ascii_lowercase().contains("loss") {
            ReportedMetric::Loss
        } else {
            ReportedMetric::Accuracy
        }
    }
}

/// Where and under which tag to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HypertuneSettings {
    pub metric_file: PathBuf,
    pub tag: String,
    pub trial_id: String,
}

impl HypertuneSettings {
    /// Reporting is on when the process runs as a tuning trial: `CLOUD_ML_HP_METRIC_FILE` or
    /// `CLOUD_ML_TRIAL_ID` is set, or the job config has a `hyperparameters` spec
    /// (`tuning_spec`). The tag is the spec's `config_tag`, else `CLOUD_ML_HP_METRIC_TAG`, else
    /// [`DEFAULT_METRIC_TAG`].
    pub fn from_env(tuning_spec: bool, config_tag: Option<&str>) -> Option<HypertuneSettings> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let file = var(METRIC_FILE_ENV);
        let trial = var(TRIAL_ID_ENV);
        if file.is_none() && trial.is_none() && !tuning_spec {
            return None;
        }
        let tag = config_tag
            .map(str::to_string)
            .or_else(|| var(METRIC_TAG_ENV))
            .unwrap_or_else(|| DEFAULT_METRIC_TAG.to_string());
        Some(HypertuneSettings {
            metric_file: PathBuf::from(file.unwrap_or_else(|| DEFAULT_METRIC_FILE.to_string())),
            tag,
            trial_id: trial.unwrap_or_else(|| "0".to_string()),
        })
    }
}

/// Writes the hypertune metric file; see the module docs.
pub struct HypertuneObserver {
    settings: HypertuneSettings,
    metric: ReportedMetric,
    /// Rendered lines, oldest first, at most [`MAX_REPORTS_KEPT`].
    lines: Vec<String>,
    global_step: u64,
}

impl HypertuneObserver {
    /// Creates the file's directory now, so a path that cannot be written fails the run before
    /// it trains.
    pub fn create(settings: HypertuneSettings) -> Result<HypertuneObserver, TrainingError> {
        if let Some(parent) = settings.metric_file.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| TrainingError::Io {
                context: format!(
                    "creating the directory of the hypertune metric file {} ({METRIC_FILE_ENV})",
                    settings.metric_file.display()
                ),
                source,
            })?;
        }
        Ok(HypertuneObserver {
            metric: ReportedMetric::for_tag(&settings.tag),
            settings,
            lines: Vec::new(),
            global_step: 0,
        })
    }

    pub fn metric(&self) -> ReportedMetric {
        self.metric
    }

    /// Appends one report and rewrites the file.
    pub fn report(&mut self, value: f64, global_step: u64) -> Result<(), TrainingError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.lines.push(report_line(
            &self.settings.tag,
            value,
            global_step,
            timestamp,
            &self.settings.trial_id,
        ));
        if self.lines.len() > MAX_REPORTS_KEPT {
            let excess = self.lines.len() - MAX_REPORTS_KEPT;
            self.lines.drain(..excess);
        }
        write_replacing(&self.settings.metric_file, &self.lines.concat())
    }

    fn pick(&self, loss: f64, accuracy: f64) -> f64 {
        match self.metric {
            ReportedMetric::Loss => loss,
            ReportedMetric::Accuracy => accuracy,
        }
    }
}

impl FitObserver for HypertuneObserver {
    fn on_epoch_end(&mut self, end: &EpochEnd<'_>, _: &FitContext<'_>) -> ControlResult {
        let record = end.record;
        let value = match (record.val_loss, record.val_accuracy) {
            (Some(loss), Some(accuracy)) => self.pick(loss, accuracy),
            _ => self.pick(record.loss, record.accuracy),
        };
        self.global_step = end.global_step;
        self.report(value, end.global_step)?;
        Ok(Control::Continue)
    }

    fn on_test_end(&mut self, pass: EvalPass, metrics: &RunningMetrics) -> HookResult {
        if pass == EvalPass::Test {
            let value = self.pick(metrics.loss(), metrics.accuracy());
            self.report(value, self.global_step)?;
        }
        Ok(())
    }
}

/// One report as `json.dumps(report, sort_keys=True)` renders it.
fn report_line(tag: &str, value: f64, global_step: u64, timestamp: f64, trial: &str) -> String {
    let mut fields = [
        ("global_step", json_string(&global_step.to_string())),
        (tag, json_string(&python_float_str(value))),
        ("timestamp", python_float_str(timestamp)),
        ("trial", json_string(trial)),
    ];
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}: {value}", json_string(key)))
        .collect();
    format!("{{{}}}\n", body.join(", "))
}

fn json_string(text: &str) -> String {
    // serde_json escapes like Python's json.dumps for everything a tag or an id holds, except
    // non-ASCII (Python escapes it as \uXXXX; both read back the same).
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

/// Python's `str(float)`: the shortest digits that round-trip (Rust's `{}`), in Python's layout
/// (`1.0`, `0.0001`, `1e-05`, `1.5e+16`, `nan`, `inf`).
pub fn python_float_str(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let magnitude = value.abs();
    if magnitude == 0.0 || (1e-4..1e16).contains(&magnitude) {
        let text = format!("{value}");
        return if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        };
    }
    // Scientific: Rust writes `1.5e-7`, Python `1.5e-07`.
    let text = format!("{value:e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(digits) => ('-', digits),
                None => ('+', exponent),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => text,
    }
}

fn write_replacing(path: &Path, text: &str) -> Result<(), TrainingError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let io = |what: &str| {
        let context = format!("{what} the hypertune metric file {}", path.display());
        move |source| TrainingError::Io { context, source }
    };
    std::fs::write(&temp, text).map_err(io("writing"))?;
    std::fs::rename(&temp, path).map_err(io("replacing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_str_does() {
        for (value, python) in [
            (0.9645, "0.9645"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (123456.5, "123456.5"),
            (0.11599738405942916, "0.11599738405942916"),
            (1764851440.123456, "1764851440.123456"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(python_float_str(value), python, "{value}");
        }
    }

    #[test]
    fn report_lines_are_sorted_json_with_string_values() {
        let line = report_line("accuracy", 0.987, 1000, 1525851440.123456, "1");
        assert_eq!(
            line,
            "{\"accuracy\": \"0.987\", \"global_step\": \"1000\", \"timestamp\": 1525851440.123456, \"trial\": \"1\"}\n"
        );
        // The default tag sorts between `timestamp` and `trial`, as json.dumps(sort_keys=True) puts it.
        let line = report_line(DEFAULT_METRIC_TAG, 0.5, 0, 1.5, "0");
        assert!(
            line.ends_with("\"training/hptuning/metric\": \"0.5\", \"trial\": \"0\"}\n"),
            "{line}"
        );
    }

    #[test]
    fn tags_pick_the_metric() {
        assert_eq!(ReportedMetric::for_tag("val_loss"), ReportedMetric::Loss);
        assert_eq!(ReportedMetric::for_tag("Loss"), ReportedMetric::Loss);
        assert_eq!(
            ReportedMetric::for_tag(DEFAULT_METRIC_TAG),
            ReportedMetric::Accuracy
        );
        assert_eq!(
            ReportedMetric::for_tag("accuracy"),
            ReportedMetric::Accuracy
        );
    }

    #[test]
    fn the_file_keeps_the_last_hundred_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/output.metrics");
        let mut observer = HypertuneObserver::create(HypertuneSettings {
            metric_file: path.clone(),
            tag: "loss".to_string(),
            trial_id: "7".to_string(),
        })
        .unwrap();
        for step in 1..=105u64 {
            observer.report(step as f64 / 1000.0, step).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), MAX_REPORTS_KEPT);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["global_step"], "6");
        let last: serde_json::Value = serde_json::from_str(lines[99]).unwrap();
        assert_eq!(last["loss"], "0.105");
        assert_eq!(last["trial"], "7");
        assert!(last["timestamp"].as_f64().unwrap() > 1.5e9);
        assert!(!dir.path().join("nested/output.metrics.tmp").exists());
    }
}
