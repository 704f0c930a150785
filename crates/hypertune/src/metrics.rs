//! Reading the hypertune metric file a trial writes (`CLOUD_ML_HP_METRIC_FILE`), in the format of
//! Google's `cloudml-hypertune` library (our trainer writes the same, see
//! `crates/training/src/hypertune.rs`):
//!
//! ```text
//! {"accuracy": "0.9645", "global_step": "1875", "timestamp": 1764851440.123456, "trial": "3"}
//! ```
//!
//! one JSON object per line, the file rewritten whole at each report. The value under the job's
//! `hyperparameterMetricTag` (a string, or a number from other writers) is the objective; the
//! final metric is the last report carrying that tag. Lines without the tag are other metrics
//! and are skipped; lines that are not JSON objects, or whose value is not a number, are skipped
//! and listed in [`MetricFile::problems`] (the writer may be caught mid-rewrite by a reader
//! polling during the run).

use std::path::Path;

use serde_json::Value;

use crate::HypertuneError;
use crate::output::FinalMetric;

/// One report for the tag.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReport {
    pub global_step: i64,
    pub value: f64,
    /// Seconds since the Unix epoch, when the writer recorded one.
    pub timestamp: Option<f64>,
}

/// The reports of one metric file for one tag.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricFile {
    /// In file order (oldest first).
    pub reports: Vec<MetricReport>,
    /// `line N: what is wrong` for each line that could not be read.
    pub problems: Vec<String>,
}

impl MetricFile {
    /// The trial's final metric: the last report.
    pub fn final_metric(&self) -> Option<FinalMetric> {
        self.reports.last().map(|r| FinalMetric {
            training_step: r.global_step,
            objective_value: r.value,
        })
    }
}

/// Reads `path` for `tag`. A file that does not exist (yet) holds no reports.
pub fn read_metric_file(path: &Path, tag: &str) -> Result<MetricFile, HypertuneError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_metric_reports(&text, tag)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MetricFile::default()),
        Err(source) => Err(HypertuneError::MetricFile {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Parses the text of a metric file; see the module docs.
pub fn parse_metric_reports(text: &str, tag: &str) -> MetricFile {
    let mut file = MetricFile::default();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                file.problems
                    .push(format!("line {line_no}: not a JSON object"));
                continue;
            }
            Err(e) => {
                file.problems.push(format!("line {line_no}: {e}"));
                continue;
            }
        };
        let Some(raw) = object.get(tag) else {
            continue;
        };
        let Some(value) = number(raw) else {
            file.problems
                .push(format!("line {line_no}: {tag:?} is {raw}, not a number"));
            continue;
        };
        let global_step = object
            .get("global_step")
            .and_then(number)
            .filter(|s| s.is_finite())
            .map_or(0, |s| s as i64);
        file.reports.push(MetricReport {
            global_step,
            value,
            timestamp: object.get("timestamp").and_then(number),
        });
    }
    file
}

/// A JSON number or a string holding one (`"0.987"`, Python's `str(float)`: also `nan`, `inf`).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_python_librarys_lines_and_takes_the_last() {
        // As cloudml-hypertune writes them (json.dumps(sort_keys=True)).
        let text = "{\"accuracy\": \"0.91\", \"global_step\": \"100\", \"timestamp\": 1525851440.123456, \"trial\": \"2\"}\n\
                    {\"global_step\": \"150\", \"loss\": \"0.3\", \"timestamp\": 1525851441.0, \"trial\": \"2\"}\n\
                    {\"accuracy\": \"0.95\", \"global_step\": \"200\", \"timestamp\": 1525851442.5, \"trial\": \"2\"}\n";
        let file = parse_metric_reports(text, "accuracy");
        assert_eq!(file.reports.len(), 2);
        assert!(file.problems.is_empty());
        assert_eq!(
            file.final_metric(),
            Some(FinalMetric {
                training_step: 200,
                objective_value: 0.95
            })
        );
        assert_eq!(file.reports[0].timestamp, Some(1525851440.123456));
        let loss = parse_metric_reports(text, "loss");
        assert_eq!(loss.final_metric().unwrap().training_step, 150);
    }

    #[test]
    fn torn_and_bad_lines_are_named_and_skipped() {
        let text = "{\"m\": \"0.5\", \"global_step\": \"1\"}\n{\"m\": \"abc\"}\n[1]\n{\"m\": \"0.";
        let file = parse_metric_reports(text, "m");
        assert_eq!(file.reports.len(), 1);
        assert_eq!(file.problems.len(), 3, "{:?}", file.problems);
        assert!(file.problems[0].starts_with("line 2: \"m\" is \"abc\""));
        assert!(file.problems[1].starts_with("line 3: not a JSON object"));
        assert!(file.problems[2].starts_with("line 4: "));
    }

    #[test]
    fn a_missing_file_has_no_reports() {
        let dir = tempfile::tempdir().unwrap();
        let file = read_metric_file(&dir.path().join("none"), "m").unwrap();
        assert_eq!(file, MetricFile::default());
        let error = read_metric_file(dir.path(), "m").unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&dir.path().display().to_string())
        );
    }
}
