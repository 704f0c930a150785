//! A table of bad configs and the exact errors each gives. Every message names the field path.

use job_config::{JobConfig, JobConfigError};

/// `(what is wrong, document, every field error expected, in order)`.
const CASES: &[(&str, &str, &[&str])] = &[
    (
        "misspelt field",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterTyp: standard\n",
        &[
            "trainingInput.masterTyp: unknown field; did you mean masterType?",
            "trainingInput.masterType: required when scaleTier is CUSTOM",
        ],
    ),
    (
        "snake_case field",
        "trainingInput:\n  scale_tier: BASIC\n",
        &["trainingInput.scale_tier: unknown field; did you mean scaleTier?"],
    ),
    (
        "field with no near match",
        "trainingInput:\n  gpus: 2\n",
        &["trainingInput.gpus: unknown field"],
    ),
    (
        "misspelt Job field",
        "jobID: mnist\ntrainingInput: {scaleTier: BASIC}\n",
        &["jobID: unknown field; did you mean jobId?"],
    ),
    (
        "misspelt trainingInput wrapper",
        "trainingInpt:\n  scaleTier: BASIC\n",
        &["trainingInpt: unknown field; did you mean trainingInput?"],
    ),
    (
        "CUSTOM without masterType",
        "trainingInput:\n  scaleTier: CUSTOM\n",
        &["trainingInput.masterType: required when scaleTier is CUSTOM"],
    ),
    (
        "workers without workerType",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard\n  workerCount: 3\n",
        &["trainingInput.workerType: required when workerCount is 3"],
    ),
    (
        "parameter servers without a type (int64 as string)",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard\n  parameterServerCount: \"2\"\n",
        &["trainingInput.parameterServerType: required when parameterServerCount is 2"],
    ),
    (
        "machine type without CUSTOM",
        "trainingInput:\n  scaleTier: BASIC_GPU\n  masterType: standard_gpu\n",
        &[
            "trainingInput.masterType: only allowed when scaleTier is CUSTOM, but scaleTier is BASIC_GPU",
        ],
    ),
    (
        "machine type and count without any scaleTier",
        "trainingInput:\n  masterType: standard_p100\n  workerCount: 2\n",
        &[
            "trainingInput.masterType: only allowed when scaleTier is CUSTOM, but scaleTier is not set (which means BASIC)",
            "trainingInput.workerCount: only allowed when scaleTier is CUSTOM, but scaleTier is not set (which means BASIC)",
        ],
    ),
    (
        "unknown legacy machine type",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard_p1000\n",
        &[
            "trainingInput.masterType: unknown machine type \"standard_p1000\"; did you mean standard_p100?",
        ],
    ),
    (
        "machine type nothing like a known one",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: supercomputer\n",
        &[
            "trainingInput.masterType: unknown machine type \"supercomputer\"; expected a legacy name such as standard, standard_gpu or complex_model_m_v100, or a Compute Engine name such as n1-standard-8 or a2-highgpu-1g",
        ],
    ),
    (
        "Compute Engine type with a size that does not exist",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: n1-standard-12\n",
        &[
            "trainingInput.masterType: unknown machine type \"n1-standard-12\": n1-standard comes with 1, 2, 4, 8, 16, 32, 64 or 96 vCPUs",
        ],
    ),
    (
        "negative count",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard\n  workerType: standard\n  workerCount: -1\n",
        &["trainingInput.workerCount: must be ≥ 0, found -1"],
    ),
    (
        "negative count as an int64 string",
        "{\"trainingInput\": {\"scaleTier\": \"CUSTOM\", \"masterType\": \"standard\", \"evaluatorCount\": \"-2\"}}",
        &["trainingInput.evaluatorCount: must be ≥ 0, found -2"],
    ),
    (
        "zero accelerators",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: n1-standard-8\n  masterConfig:\n    acceleratorConfig: {count: 0, type: NVIDIA_TESLA_T4}\n",
        &["trainingInput.masterConfig.acceleratorConfig.count: must be ≥ 1, found 0"],
    ),
    (
        "accelerator without count or type",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: n1-standard-8\n  masterConfig:\n    acceleratorConfig: {}\n",
        &[
            "trainingInput.masterConfig.acceleratorConfig.type: required",
            "trainingInput.masterConfig.acceleratorConfig.count: required",
        ],
    ),
    (
        "misspelt accelerator type",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: n1-standard-8\n  masterConfig:\n    acceleratorConfig: {count: 1, type: NVIDIA_TESLA_T5}\n",
        &[
            "trainingInput.masterConfig.acceleratorConfig.type: unknown value \"NVIDIA_TESLA_T5\"; did you mean NVIDIA_TESLA_T4?",
        ],
    ),
    (
        "GPU count the machine cannot take",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: n1-standard-8\n  masterConfig:\n    acceleratorConfig: {count: 3, type: NVIDIA_TESLA_T4}\n",
        &[
            "trainingInput.masterConfig.acceleratorConfig.count: NVIDIA_TESLA_T4 can be attached in counts of 1, 2 or 4, found 3",
        ],
    ),
    (
        "A100 on an n1 machine",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: n1-standard-8\n  masterConfig:\n    acceleratorConfig: {count: 1, type: NVIDIA_TESLA_A100}\n",
        &[
            "trainingInput.masterConfig.acceleratorConfig.type: NVIDIA_TESLA_A100 comes only with a2 machine types such as a2-highgpu-1g, not n1-standard-8",
        ],
    ),
    (
        "a2 machine with a different GPU count",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: a2-highgpu-1g\n  masterConfig:\n    acceleratorConfig: {count: 2, type: NVIDIA_TESLA_A100}\n",
        &[
            "trainingInput.masterConfig.acceleratorConfig.count: a2-highgpu-1g comes with exactly 1 × NVIDIA_TESLA_A100, found 2",
        ],
    ),
    (
        "accelerator on a machine series without GPUs",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: e2-standard-8\n  masterConfig:\n    acceleratorConfig: {count: 1, type: NVIDIA_TESLA_T4}\n",
        &[
            "trainingInput.masterConfig.acceleratorConfig: e2-standard-8 cannot take accelerators; GPUs attach to n1 machine types, and a2 machine types come with A100 GPUs",
        ],
    ),
    (
        "accelerator on a legacy machine type",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard_gpu\n  masterConfig:\n    acceleratorConfig: {count: 2, type: NVIDIA_TESLA_K80}\n",
        &[
            "trainingInput.masterConfig.acceleratorConfig: only allowed with a Compute Engine machine type; masterType standard_gpu is a legacy machine type that comes with 1 × NVIDIA_TESLA_K80",
        ],
    ),
    (
        "accelerator without a machine type",
        "trainingInput:\n  scaleTier: BASIC\n  masterConfig:\n    acceleratorConfig: {count: 1, type: NVIDIA_TESLA_T4}\n",
        &[
            "trainingInput.masterConfig.acceleratorConfig: only allowed when scaleTier is CUSTOM and masterType is a Compute Engine machine type, but scaleTier is BASIC",
        ],
    ),
    (
        "legacy and Compute Engine types mixed",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: n1-standard-8\n  workerType: standard_gpu\n  workerCount: 1\n",
        &[
            "trainingInput.workerType: standard_gpu is a legacy machine type but masterType n1-standard-8 is a Compute Engine machine type; use the same kind for every replica",
        ],
    ),
    (
        "cloud_tpu as a parameter server",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard\n  parameterServerType: cloud_tpu\n  parameterServerCount: 1\n",
        &["trainingInput.parameterServerType: cloud_tpu can only be the masterType or workerType"],
    ),
    (
        "GPU tier in a region without GPUs",
        "trainingInput:\n  scaleTier: BASIC_GPU\n  region: europe-north1\n",
        &[
            "trainingInput.region: NVIDIA_TESLA_K80 (for scaleTier BASIC_GPU) is not available in europe-north1; GPU regions known to this tool: us-east1, us-central1, asia-east1, europe-west1",
        ],
    ),
    (
        "GPU master type in a region without GPUs",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard_p100\n  region: us-west2\n",
        &[
            "trainingInput.region: NVIDIA_TESLA_P100 (for masterType standard_p100) is not available in us-west2; GPU regions known to this tool: us-east1, us-central1, asia-east1, europe-west1",
        ],
    ),
    (
        "region that is not a region name",
        "trainingInput:\n  region: US Central\n",
        &["trainingInput.region: expected a region name such as us-central1, found \"US Central\""],
    ),
    (
        "string where a number is expected",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard\n  workerCount: three\n",
        &[
            "trainingInput.workerCount: expected an integer (a number or a string of digits), found string \"three\"",
        ],
    ),
    (
        "fraction where an integer is expected",
        "{\"trainingInput\": {\"scaleTier\": \"CUSTOM\", \"masterType\": \"standard\", \"workerCount\": 1.5}}",
        &["trainingInput.workerCount: expected an integer, found number 1.5"],
    ),
    (
        "list where a map is expected",
        "trainingInput:\n  scaleTier: CUSTOM\n  masterType: n1-standard-4\n  masterConfig:\n    - acceleratorConfig\n",
        &["trainingInput.masterConfig: expected a map, found a list"],
    ),
    (
        "trainingInput itself a list",
        "trainingInput:\n  - scaleTier: BASIC\n",
        &["trainingInput: expected a map, found a list"],
    ),
    (
        "string where a list is expected, and a number where a string is",
        "trainingInput:\n  args: --epochs 3\n  jobDir: 7\n",
        &[
            "trainingInput.jobDir: expected a string, found number 7",
            "trainingInput.args: expected a list of strings, found string \"--epochs 3\"",
        ],
    ),
    (
        "number inside args",
        "trainingInput:\n  args: [--epochs, 3]\n",
        &["trainingInput.args[1]: expected a string, found number 3"],
    ),
    (
        "unquoted version number",
        "trainingInput:\n  pythonVersion: 3.5\n",
        &[
            "trainingInput.pythonVersion: expected a string, found number 3.5; put the version in quotes so YAML keeps it as text",
        ],
    ),
    (
        "Python version the runtime does not offer",
        "trainingInput:\n  runtimeVersion: \"2.11\"\n  pythonVersion: \"3.5\"\n",
        &[
            "trainingInput.pythonVersion: Python 3.5 comes with runtimeVersion 1.4 to 1.14, but runtimeVersion is \"2.11\"",
        ],
    ),
    (
        "malformed runtime version",
        "trainingInput:\n  runtimeVersion: \"2\"\n",
        &[
            "trainingInput.runtimeVersion: expected a version such as \"2.11\" or \"1.15\", found \"2\"",
        ],
    ),
    (
        "lower-case scale tier",
        "trainingInput:\n  scaleTier: custom\n  masterType: standard\n",
        &["trainingInput.scaleTier: unknown value \"custom\"; did you mean CUSTOM?"],
    ),
    (
        "scale tier nothing like a known one",
        "trainingInput:\n  scaleTier: ENORMOUS\n",
        &[
            "trainingInput.scaleTier: unknown value \"ENORMOUS\"; expected one of BASIC, STANDARD_1, PREMIUM_1, BASIC_GPU, BASIC_TPU, CUSTOM",
        ],
    ),
    (
        "key given twice (JSON)",
        "{\"trainingInput\": {\"scaleTier\": \"BASIC\", \"scaleTier\": \"CUSTOM\"}}",
        &["trainingInput.scaleTier: given more than once"],
    ),
    (
        "non-string key",
        "trainingInput:\n  1: BASIC\n",
        &["trainingInput: field names must be strings, found number 1"],
    ),
    (
        "bad job id and labels",
        "jobId: my-job\nlabels: [a, b]\ntrainingInput: {}\n",
        &[
            "jobId: must start with a letter and contain only letters, digits and underscores, found \"my-job\"",
            "labels: expected a map of strings, found a list",
        ],
    ),
    (
        "prediction job",
        "predictionInput: {dataFormat: JSON}\n",
        &[
            "predictionInput: batch prediction jobs are not run by this trainer; only trainingInput is used",
        ],
    ),
    (
        "document that is a list",
        "- scaleTier: BASIC\n",
        &["expected a map such as trainingInput: {...}, found a list"],
    ),
    (
        "empty document",
        "# nothing here\n",
        &["the document is empty; expected trainingInput: {...}"],
    ),
    (
        "container arguments without a container",
        "trainingInput:\n  masterConfig:\n    containerArgs: [--epochs=1]\n",
        &[
            "trainingInput.masterConfig.containerArgs: only allowed together with trainingInput.masterConfig.imageUri",
        ],
    ),
    (
        "bare TrainingInput paths start at the field",
        "scaleTier: CUSTOM\nmasterTyp: standard\n",
        &[
            "masterTyp: unknown field; did you mean masterType?",
            "masterType: required when scaleTier is CUSTOM",
        ],
    ),
    (
        "hyperparameters: missing goal and params",
        "trainingInput:\n  hyperparameters:\n    maxTrials: 0\n",
        &[
            "trainingInput.hyperparameters.goal: required (MAXIMIZE or MINIMIZE)",
            "trainingInput.hyperparameters.maxTrials: must be ≥ 1, found 0",
            "trainingInput.hyperparameters.params: required: list the parameters to tune",
        ],
    ),
    (
        "hyperparameters: bad parameter ranges",
        "trainingInput:
  hyperparameters:
    goal: MINIMIZE
    params:
      - parameterName: learning-rate
        type: DOUBLE
        minValue: 0.1
        maxValue: 0.01
      - parameterName: units
        type: INTEGER
        minValue: 0.5
        maxValue: 64
      - parameterName: decay
        type: DOUBLE
        minValue: 0
        maxValue: 1
        scaleType: UNIT_LOG_SCALE
      - parameterName: units
        type: CATEGORICAL
        categoricalValues: []
      - parameterName: batch
        type: DISCRETE
        discreteValues: [64, 32]
        minValue: 1
",
        &[
            "trainingInput.hyperparameters.params[0].maxValue: must be greater than minValue (0.1), found 0.01",
            "trainingInput.hyperparameters.params[1].minValue: must be a whole number for type INTEGER, found 0.5",
            "trainingInput.hyperparameters.params[2].minValue: UNIT_LOG_SCALE needs a strictly positive range, found minValue 0",
            "trainingInput.hyperparameters.params[3].categoricalValues: must list at least one value",
            "trainingInput.hyperparameters.params[4].discreteValues[1]: values must be strictly increasing, found 32 after 64",
            "trainingInput.hyperparameters.params[4].minValue: only allowed for type DOUBLE or INTEGER, not DISCRETE",
            "trainingInput.hyperparameters.params[3].parameterName: duplicate name \"units\" (also used by trainingInput.hyperparameters.params[1])",
        ],
    ),
    (
        "hyperparameters: CATEGORICAL and DISCRETE need their values",
        "trainingInput:
  hyperparameters:
    goal: MINIMIZE
    params:
      - parameterName: optimizer
        type: CATEGORICAL
      - parameterName: batch
        type: DISCRETE
      - parameterName: units
        type: DISCRETE
        discreteValues: []
",
        &[
            "trainingInput.hyperparameters.params[0].categoricalValues: required for type CATEGORICAL",
            "trainingInput.hyperparameters.params[1].discreteValues: required for type DISCRETE",
            "trainingInput.hyperparameters.params[2].discreteValues: must list at least one value",
        ],
    ),
    (
        "hyperparameters: grid search over a DOUBLE, bad type and name",
        "trainingInput:
  hyperparameters:
    goal: MAXIMISE
    algorithm: GRID_SEARCH
    params:
      - parameterName: learning-rate
        type: DOUBLE
        minValue: 0.001
        maxValue: 0.1
      - parameterName: 2nd
        type: FLOAT
",
        &[
            "trainingInput.hyperparameters.goal: unknown value \"MAXIMISE\"; did you mean MAXIMIZE?",
            "trainingInput.hyperparameters.params[1].parameterName: expected a name usable as a --flag (letters, digits, '_' or '-', starting with a letter), found \"2nd\"",
            "trainingInput.hyperparameters.params[1].type: unknown value \"FLOAT\"; expected one of DOUBLE, INTEGER, CATEGORICAL, DISCRETE",
        ],
    ),
    (
        "hyperparameters: grid search over a DOUBLE",
        "trainingInput:
  hyperparameters:
    goal: MAXIMIZE
    algorithm: GRID_SEARCH
    params:
      - {parameterName: learning-rate, type: DOUBLE, minValue: 0.001, maxValue: 0.1}
",
        &[
            "trainingInput.hyperparameters.algorithm: GRID_SEARCH needs every parameter to be INTEGER, CATEGORICAL or DISCRETE, but trainingInput.hyperparameters.params[0] (learning-rate) is DOUBLE",
        ],
    ),
    (
        "scheduling values",
        "trainingInput:\n  scheduling: {maxRunningTime: 2h, maxWaitTime: 60s, priority: 5000}\n",
        &[
            "trainingInput.scheduling.maxRunningTime: expected a duration in seconds such as \"7200s\", found \"2h\"",
            "trainingInput.scheduling.maxWaitTime: must be at least 1800s, found \"60s\"",
            "trainingInput.scheduling.priority: must be between 0 and 1000, found 5000",
        ],
    ),
];

fn field_errors(document: &str) -> Vec<String> {
    match JobConfig::parse(document, "bad.yaml") {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(error) => {
            let errors = error.field_errors();
            assert!(!errors.is_empty(), "not a field error: {error}");
            errors.iter().map(ToString::to_string).collect()
        }
    }
}

#[test]
fn every_bad_config_gives_its_exact_errors() {
    let mut failures = Vec::new();
    for (what, document, expected) in CASES {
        let actual = field_errors(document);
        if actual != *expected {
            failures.push(format!(
                "{what}:\n  expected {expected:#?}\n  actual   {actual:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The whole error, as the trainer prints it: the file, then one line per problem.
#[test]
fn several_problems_are_reported_together() {
    let document = "trainingInput:\n  scaleTier: CUSTOM\n  masterTyp: standard_p100\n  workerCount: -3\n  masterConfig:\n    acceleratorConfig: {count: 0, type: NVIDIA_TESLA_K80}\n";
    let error = JobConfig::parse(document, "config/bad.yaml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "config/bad.yaml: 4 problems:
  trainingInput.masterTyp: unknown field; did you mean masterType?
  trainingInput.workerCount: must be ≥ 0, found -3
  trainingInput.masterConfig.acceleratorConfig.count: must be ≥ 1, found 0
  trainingInput.masterType: required when scaleTier is CUSTOM"
    );
}

#[test]
fn single_problem_is_one_line() {
    let error = JobConfig::parse("trainingInput: {scaleTier: CUSTOM}", "c.yaml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "c.yaml: trainingInput.masterType: required when scaleTier is CUSTOM"
    );
}

#[test]
fn syntax_errors_name_the_format_and_position() {
    let error = JobConfig::parse("trainingInput: [unclosed\n", "c.yaml").unwrap_err();
    let JobConfigError::Syntax { format, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(format.to_string(), "YAML");
    let message = error.to_string();
    assert!(message.starts_with("c.yaml: not valid YAML: "), "{message}");
    assert!(message.contains("line 2"), "{message}");

    let error = JobConfig::parse("{\"trainingInput\": {\"scaleTier\": }}", "c.json").unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("c.json: not valid JSON: "), "{message}");
    assert!(message.contains("line 1 column 33"), "{message}");
}

#[test]
fn unreadable_and_oversized_files() {
    let missing = JobConfig::from_path("/nonexistent/config.yaml").unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("cannot read job config /nonexistent/config.yaml: "),
        "{missing}"
    );

    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let padding = "#".repeat(usize::try_from(job_config::MAX_CONFIG_BYTES).unwrap() + 1);
    std::fs::write(&big, padding).unwrap();
    let error = JobConfig::from_path(&big).unwrap_err();
    assert!(matches!(error, JobConfigError::TooLarge { .. }), "{error}");

    let binary = dir.path().join("binary.yaml");
    std::fs::write(&binary, b"trainingInput: {}\n\xff\xfe").unwrap();
    let error = JobConfig::from_path(&binary).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("not UTF-8 text (invalid byte at offset 18)"),
        "{error}"
    );
}

/// A deeply nested document is refused by the parser's recursion limit, not by a stack overflow.
#[test]
fn deep_nesting_is_refused() {
    let depth = 10_000;
    let document = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let error = JobConfig::parse(&document, "deep.json").unwrap_err();
    assert!(matches!(error, JobConfigError::Syntax { .. }), "{error}");
    let yaml = format!("a: {}{}", "[".repeat(depth), "]".repeat(depth));
    let error = JobConfig::parse(&yaml, "deep.yaml").unwrap_err();
    assert!(matches!(error, JobConfigError::Syntax { .. }), "{error}");
}
