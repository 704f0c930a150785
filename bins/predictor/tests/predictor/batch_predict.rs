//! `predictor batch-predict`: the same rows as `predictor local --format json` on the same
//! instances, a malformed line reported with its file and line, and the command-line summary.

use crate::local_cli::predictor;
use crate::serve_support::{fixture, sample_json};

#[test]
fn batch_predict_rows_equal_predictor_local() {
    let model = fixture("tf1-tutorial");
    let model = model.to_str().unwrap();
    let local = predictor(&[
        "local",
        "--model-dir",
        model,
        "--json-instances",
        sample_json().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    let local: serde_json::Value = serde_json::from_slice(&local.stdout).unwrap();
    let local_rows = local["predictions"].as_array().unwrap().clone();
    assert_eq!(local_rows.len(), 10);

    // The same instances with a malformed line in the middle.
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = std::fs::read_to_string(sample_json())
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut with_bad = lines[..6].to_vec();
    with_bad.push("[1, 2, oops]".to_string());
    with_bad.extend_from_slice(&lines[6..]);
    let input = dir.path().join("instances.json");
    std::fs::write(&input, with_bad.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    let batch = predictor(&[
        "batch-predict",
        "--model-dir",
        model,
        "--input-paths",
        input.to_str().unwrap(),
        "--output-path",
        out.to_str().unwrap(),
        "--data-format",
        "text",
    ]);
    let stderr = String::from_utf8_lossy(&batch.stderr);
    assert!(batch.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&batch.stdout),
        "predictionCount: 10\nerrorCount: 1\n"
    );
    assert!(
        stderr.contains(&format!(
            "error: file://{} line 7: column 8: invalid JSON",
            input.display()
        )),
        "{stderr}"
    );
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("prediction.results-00000-of-00001"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
    assert_eq!(rows, local_rows, "batch rows equal predictor local's");
    let stats =
        std::fs::read_to_string(out.join("prediction.errors_stats-00000-of-00001")).unwrap();
    assert!(
        stats.starts_with("('column 8: invalid JSON") && stats.ends_with("', 1)\n"),
        "{stats}"
    );
}
