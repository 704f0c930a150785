//! Parity with the real `gcloud ai-platform local predict` (Google Cloud SDK, running TensorFlow
//! 2.21 from the test virtualenv) on the same models and instance files: the MLP SavedModel
//! fixtures of testdata/savedmodels, the Keras CNN (`keras-cnn`, instances `[28][28][1]`) and a
//! model written by our own trainer.
//!
//! Two properties are checked, and the summary printed at the end says how each case fared:
//!
//! 1. **Printing is byte for byte gcloud's.** gcloud's `--format json` output is parsed back into
//!    values and printed by predict-json; the text must equal gcloud's table and JSON exactly.
//!    This is the part `predictor local` controls completely.
//! 2. **`predictor local` prints what gcloud prints.** Same table heading and layout, same keys,
//!    same classes, and every float within 1e-5 relative of TensorFlow's (plus 1e-6 of the
//!    largest magnitude in its list, for values near zero such as logits). Whole-output
//!    byte equality also needs every float32 to be bit-identical to TensorFlow's kernels, which
//!    is not the case: TF's own results change in the last bits with the batch size (MatMul
//!    blocking), and our runtime sums in a different order. The summary reports how many floats
//!    are bit-identical and whether the whole output happened to be.
//!
//! Requirements (the test fails, never skips, without them): `gcloud` on PATH and a virtualenv
//! with TensorFlow at `$PREDICTOR_TF_VENV`, else the directory of `$PYTHON`'s venv, else
//! `<workspace>/.venv` (scripts/setup-python.sh makes it). gcloud takes about 10 s per call; the
//! calls run two at a time (`PREDICTOR_PARITY_JOBS` to change).

// Test code: a failed unwrap is a failed test.

use crate::serve_support;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use predict_json::{PyValue, format_gcloud_json, format_gcloud_table};
use serde_json::Value;

/// The venv whose `bin/python` gcloud must find first on PATH.
pub(crate) fn tf_venv() -> PathBuf {
    if let Ok(dir) = std::env::var("PREDICTOR_TF_VENV") {
        return PathBuf::from(dir);
    }
    if let Ok(python) = std::env::var("PYTHON")
        && let Some(venv) = Path::new(&python).parent().and_then(Path::parent)
        && venv.join("pyvenv.cfg").exists()
    {
        return venv.to_path_buf();
    }
    serve_support::workspace_root().join(".venv")
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    label: String,
    model_dir: PathBuf,
    /// `--json-instances` or `--json-request`.
    input_flag: &'static str,
    input: PathBuf,
    signature: Option<&'static str>,
}

impl Case {
    fn args(&self, format: Format) -> Vec<String> {
        let mut args = vec![
            "--model-dir".to_string(),
            self.model_dir.display().to_string(),
            self.input_flag.to_string(),
            self.input.display().to_string(),
        ];
        if let Some(signature) = self.signature {
            args.extend(["--signature-name".to_string(), signature.to_string()]);
        }
        if format == Format::Json {
            args.extend(["--format".to_string(), "json".to_string()]);
        }
        args
    }
}

fn run_gcloud(case: &Case, format: Format, venv: &Path) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![venv.join("bin")];
    dirs.extend(std::env::split_paths(&path));
    let output = Command::new("gcloud")
        .args(["ai-platform", "local", "predict"])
        .args(case.args(format))
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .stdin(Stdio::null())
        .output()
        .expect("running gcloud");
    assert!(
        output.status.success(),
        "gcloud failed for {} ({}): {}",
        case.label,
        format.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("gcloud printed UTF-8")
}

fn run_predictor(case: &Case, format: Format) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_predictor"))
        .arg("local")
        .args(case.args(format))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "predictor local failed for {} ({}): {}",
        case.label,
        format.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs gcloud for every (case, format) on a few threads; results in job order.
fn run_gcloud_jobs(jobs: &[(Case, Format)], venv: &Path) -> Vec<String> {
    let threads: usize = std::env::var("PREDICTOR_PARITY_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let queue = Arc::new(Mutex::new(
        jobs.iter().cloned().enumerate().collect::<VecDeque<_>>(),
    ));
    let results = Arc::new(Mutex::new(vec![None; jobs.len()]));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let results = Arc::clone(&results);
            scope.spawn(move || {
                loop {
                    let job = queue.lock().unwrap().pop_front();
                    let Some((index, (case, format))) = job else {
                        break;
                    };
                    let text = run_gcloud(&case, format, venv);
                    results.lock().unwrap()[index] = Some(text);
                }
            });
        }
    });
    let results = Arc::try_unwrap(results).unwrap().into_inner().unwrap();
    results
        .into_iter()
        .map(|r| r.expect("every gcloud job ran"))
        .collect()
}

/// Closeness of two float texts from the two tools; counts exact matches.
#[derive(Default)]
struct FloatStats {
    floats: usize,
    identical: usize,
    max_relative: f64,
    max_absolute: f64,
    problems: Vec<String>,
}

/// Relative tolerance, the runtime's bar against TensorFlow (issue 3) ...
const RELATIVE_TOLERANCE: f64 = 1e-5;
/// ... plus this fraction of the largest magnitude in the same list: a logit near zero that came
/// from summing terms of size 10 carries float32 rounding of that size, not of its own.
const SCALE_TOLERANCE: f64 = 1e-6;

impl FloatStats {
    /// `scale`: the largest magnitude among the values this one sits with (at least 1).
    fn compare(&mut self, where_: &str, ours: f64, theirs: f64, scale: f64) {
        self.floats += 1;
        if ours.to_bits() == theirs.to_bits() {
            self.identical += 1;
            return;
        }
        let relative = (ours - theirs).abs() / ours.abs().max(theirs.abs());
        self.max_relative = self.max_relative.max(relative);
        self.max_absolute = self.max_absolute.max((ours - theirs).abs());
        if (ours - theirs).abs()
            > RELATIVE_TOLERANCE * ours.abs().max(theirs.abs()) + SCALE_TOLERANCE * scale
        {
            self.problems
                .push(format!("{where_}: {ours} vs gcloud {theirs}"));
        }
    }

    fn values(&mut self, where_: &str, ours: &Value, theirs: &Value) {
        self.values_at_scale(where_, ours, theirs, 1.0);
    }

    fn values_at_scale(&mut self, where_: &str, ours: &Value, theirs: &Value, scale: f64) {
        match (ours, theirs) {
            (Value::Number(a), Value::Number(b)) if a.is_f64() && b.is_f64() => {
                self.compare(where_, a.as_f64().unwrap(), b.as_f64().unwrap(), scale);
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                let largest = a
                    .iter()
                    .chain(b)
                    .filter_map(Value::as_f64)
                    .fold(1.0f64, |m, x| m.max(x.abs()));
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    self.values_at_scale(&format!("{where_}[{i}]"), x, y, largest);
                }
            }
            (Value::Object(a), Value::Object(b)) if a.keys().eq(b.keys()) => {
                for ((key, x), y) in a.iter().zip(b.values()) {
                    self.values(&format!("{where_}.{key}"), x, y);
                }
            }
            (a, b) if a == b => {}
            (a, b) => self.problems.push(format!("{where_}: {a} vs gcloud {b}")),
        }
    }
}

/// Compares two gcloud tables cell by cell (columns are 2+ spaces apart; list cells are
/// Python lists of numbers, which parse as JSON).
fn compare_tables(ours: &str, theirs: &str, stats: &mut FloatStats) {
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (ours_lines, their_lines): (Vec<&str>, Vec<&str>) =
        (ours.lines().collect(), theirs.lines().collect());
    if ours_lines.len() != their_lines.len() {
        stats.problems.push(format!(
            "{} lines vs gcloud {}",
            ours_lines.len(),
            their_lines.len()
        ));
        return;
    }
    if ours_lines.first() != their_lines.first() {
        stats.problems.push(format!(
            "heading {:?} vs gcloud {:?}",
            ours_lines.first(),
            their_lines.first()
        ));
    }
    for (row, (a, b)) in ours_lines.iter().zip(&their_lines).enumerate().skip(1) {
        let (a, b) = (cells(a), cells(b));
        if a.len() != b.len() {
            stats.problems.push(format!(
                "row {row}: {} cells vs gcloud {}",
                a.len(),
                b.len()
            ));
            continue;
        }
        for (column, (x, y)) in a.iter().zip(&b).enumerate() {
            match (
                serde_json::from_str::<Value>(x),
                serde_json::from_str::<Value>(y),
            ) {
                (Ok(x), Ok(y)) => stats.values(&format!("row {row} column {column}"), &x, &y),
                _ if x == y => {}
                _ => stats
                    .problems
                    .push(format!("row {row} column {column}: {x} vs gcloud {y}")),
            }
        }
    }
}

/// `--format json` output -> the predictions as Python values, to print them again ourselves.
fn predictions_of(json_text: &str) -> Vec<PyValue> {
    let parsed: Value = serde_json::from_str(json_text).expect("gcloud printed JSON");
    match PyValue::from(&parsed).get("predictions") {
        Some(PyValue::List(items)) => items.clone(),
        other => panic!("no predictions list in gcloud's output: {other:?}"),
    }
}

/// testdata/sample.json with each image as 28 rows of 28, for models taking [-1, 28, 28]; with
/// `channel`, every pixel is a one-value list, for CNNs taking [-1, 28, 28, 1].
fn sample_28x28(dir: &Path, channel: bool) -> PathBuf {
    let text = std::fs::read_to_string(serve_support::sample_json()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let values: Vec<f64> = serde_json::from_str(line).unwrap();
        // Re-emit each number exactly as written in sample.json (serde_json would re-format them).
        let texts: Vec<&str> = line
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .collect();
        assert_eq!(texts.len(), values.len());
        let pixels: Vec<String> = texts
            .iter()
            .map(|t| {
                if channel {
                    format!("[{t}]")
                } else {
                    t.to_string()
                }
            })
            .collect();
        let rows: Vec<String> = pixels
            .chunks(28)
            .map(|row| format!("[{}]", row.join(", ")))
            .collect();
        out.push_str(&format!("[{}]\n", rows.join(", ")));
    }
    let path = dir.join(if channel {
        "sample-28x28x1.json"
    } else {
        "sample-28x28.json"
    });
    std::fs::write(&path, out).unwrap();
    path
}

/// A model written by our trainer: `$PREDICTOR_PARITY_TRAINER_MODEL` if set, else one epoch of
/// this tree's trainer binary on testdata/idx/mnist-small.
fn trainer_model(dir: &Path) -> PathBuf {
    if let Ok(model) = std::env::var("PREDICTOR_PARITY_TRAINER_MODEL") {
        return PathBuf::from(model);
    }
    serve_support::trainer_model(dir, 1)
}

#[test]
fn predictor_local_prints_what_gcloud_prints() {
    let venv = tf_venv();
    assert!(
        find_on_path("gcloud").is_some(),
        "gcloud is not on PATH: the parity test needs the Google Cloud SDK (gcloud ai-platform local predict)"
    );
    assert!(
        venv.join("bin/python").exists(),
        "no TensorFlow virtualenv at {} (run scripts/setup-python.sh, or set PREDICTOR_TF_VENV)",
        venv.display()
    );

    let tmp = tempfile::tempdir().unwrap();
    let fixtures = serve_support::workspace_root().join("testdata/savedmodels");
    let sample = serve_support::sample_json();
    let sample28 = sample_28x28(tmp.path(), false);
    let sample28x1 = sample_28x28(tmp.path(), true);
    let request = tmp.path().join("request.json");
    serve_support::write_json_request(&std::fs::read_to_string(&sample).unwrap(), &request);

    let case = |label: &str, model_dir: PathBuf, input: &Path| Case {
        label: label.to_string(),
        model_dir,
        input_flag: "--json-instances",
        input: input.to_path_buf(),
        signature: None,
    };
    let mut jobs: Vec<(Case, Format)> = Vec::new();
    let both = |jobs: &mut Vec<(Case, Format)>, c: Case| {
        jobs.push((c.clone(), Format::Table));
        jobs.push((c, Format::Json));
    };
    both(
        &mut jobs,
        case("trainer model", trainer_model(tmp.path()), &sample),
    );
    both(
        &mut jobs,
        case("tf1-tutorial", fixtures.join("tf1-tutorial"), &sample),
    );
    both(
        &mut jobs,
        case(
            "tf1-training-graph",
            fixtures.join("tf1-training-graph"),
            &sample,
        ),
    );
    both(
        &mut jobs,
        case("tf2-module", fixtures.join("tf2-module"), &sample28),
    );
    both(
        &mut jobs,
        case("keras3-export", fixtures.join("keras3-export"), &sample28),
    );
    both(
        &mut jobs,
        case("keras-cnn", fixtures.join("keras-cnn"), &sample28x1),
    );
    let mut logits = case(
        "tf2-module --signature-name logits",
        fixtures.join("tf2-module"),
        &sample28,
    );
    logits.signature = Some("logits");
    jobs.push((logits, Format::Json));
    let mut from_request = case(
        "tf1-tutorial --json-request",
        fixtures.join("tf1-tutorial"),
        &request,
    );
    from_request.input_flag = "--json-request";
    jobs.push((from_request, Format::Table));

    let gcloud = run_gcloud_jobs(&jobs, &venv);
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for ((case, format), theirs) in jobs.iter().zip(&gcloud) {
        let what = format!("{} ({})", case.label, format.name());
        // 1. Our printer on gcloud's own values gives gcloud's bytes.
        let json_of_case = jobs
            .iter()
            .zip(&gcloud)
            .find(|((c, f), _)| c.label == case.label && *f == Format::Json)
            .map(|(_, text)| text.as_str());
        let mut printing = "n/a";
        if let Some(json_text) = json_of_case {
            printing = "identical";
            let predictions = predictions_of(json_text);
            let reprinted = match format {
                Format::Table => format_gcloud_table(&predictions),
                Format::Json => format_gcloud_json(&predict_json::gcloud_response(predictions)),
            };
            if reprinted != *theirs {
                printing = "DIFFERS";
                failures.push(format!("{what}: printing gcloud's values does not give gcloud's bytes:\n--- ours\n{reprinted}\n--- gcloud\n{theirs}"));
            }
        }
        // 2. predictor local against gcloud.
        let ours = run_predictor(case, *format);
        let mut stats = FloatStats::default();
        match format {
            Format::Json => {
                let (a, b): (Value, Value) = (
                    serde_json::from_str(&ours).unwrap(),
                    serde_json::from_str(theirs).unwrap(),
                );
                stats.values("", &a, &b);
            }
            Format::Table => compare_tables(&ours, theirs, &mut stats),
        }
        if !stats.problems.is_empty() {
            failures.push(format!(
                "{what}: {} differences, first: {:?}",
                stats.problems.len(),
                &stats.problems[..stats.problems.len().min(5)]
            ));
        }
        summary.push(format!(
            "{what:44} {printing:9}  {:9}  {:>4}/{:<4}  {:7.1e}  {:7.1e}",
            if ours == *theirs {
                "identical"
            } else {
                "differ"
            },
            stats.identical,
            stats.floats,
            stats.max_absolute,
            stats.max_relative
        ));
    }
    eprintln!(
        "gcloud parity ({} gcloud runs)\n{:44} {:9}  {:9}  {:9}  {:7}  {:7}\n{}",
        jobs.len(),
        "case (format)",
        "printing",
        "output",
        "floats ==",
        "max abs",
        "max rel",
        summary.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
