//! Every example in the repository's `config/` directory parses and resolves to what it says.

use std::path::{Path, PathBuf};

use job_config::{
    AcceleratorType, DeviceKind, DocumentShape, JobConfig, MachineType, ReplicaRequirement,
    ScaleTier, SourceFormat,
};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

fn load(name: &str) -> JobConfig {
    let path = config_dir().join(name);
    JobConfig::from_path(&path).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn gpu(machine: &str, gpu_type: AcceleratorType, count: u32) -> ReplicaRequirement {
    ReplicaRequirement {
        machine_type: machine.to_string(),
        device: DeviceKind::Gpu,
        gpu_type: Some(gpu_type),
        gpu_count: count,
        tpu_type: None,
    }
}

fn cpu(machine: &str) -> ReplicaRequirement {
    ReplicaRequirement {
        machine_type: machine.to_string(),
        device: DeviceKind::Cpu,
        gpu_type: None,
        gpu_count: 0,
        tpu_type: None,
    }
}

/// The tests below must cover every file in `config/`; a new example without a test fails here.
#[test]
fn every_example_is_covered() {
    let mut names: Vec<String> = std::fs::read_dir(config_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "compute-engine-a100.yaml",
            "compute-engine-t4.yaml",
            "config.yaml",
            "cpu-basic.yaml",
            "custom-v100.json",
            "distributed.yaml",
            "hptuning.yaml",
            "one-gpu.yaml",
        ]
    );
}

#[test]
fn tutorial_config_asks_for_one_p100_and_no_other_replicas() {
    let config = load("config.yaml");
    assert_eq!(config.format, SourceFormat::Yaml);
    assert_eq!(config.shape, DocumentShape::Job);
    let input = &config.training_input;
    assert_eq!(input.python_version.as_deref(), Some("3.5"));
    assert_eq!(input.scale_tier, Some(ScaleTier::Custom));
    assert_eq!(input.worker_count, Some(0));
    assert_eq!(input.parameter_server_count, Some(0));
    assert_eq!(
        input.parameter_server_type.as_ref().map(MachineType::name),
        Some("large_model")
    );
    let resolved = &config.resolved;
    assert_eq!(resolved.scale_tier, ScaleTier::Custom);
    assert_eq!(
        resolved.master,
        gpu("standard_p100", AcceleratorType::NvidiaTeslaP100, 1)
    );
    assert!(resolved.is_single_machine());
    assert_eq!(resolved.worker, None);
    assert_eq!(resolved.parameter_server, None);
    assert_eq!(resolved.region, None);
    assert_eq!(
        resolved.master.describe(),
        "standard_p100 (1 × NVIDIA_TESLA_P100 GPU)"
    );
}

#[test]
fn cpu_basic_is_one_cpu_machine_with_job_fields() {
    let config = load("cpu-basic.yaml");
    assert_eq!(config.job_id.as_deref(), Some("mnist_cpu_basic"));
    assert_eq!(config.labels.get("tier").map(String::as_str), Some("basic"));
    let resolved = &config.resolved;
    assert_eq!(resolved.scale_tier, ScaleTier::Basic);
    assert!(resolved.scale_tier_given);
    assert_eq!(resolved.master.device, DeviceKind::Cpu);
    assert_eq!(resolved.master.gpu_count, 0);
    assert!(resolved.is_single_machine());
    assert_eq!(resolved.region.as_deref(), Some("us-central1"));
    assert_eq!(
        resolved.job_dir.as_deref(),
        Some("gs://mnist-example-bucket/jobs/mnist_cpu_basic")
    );
    assert_eq!(resolved.runtime_version.as_deref(), Some("2.11"));
}

#[test]
fn one_gpu_is_a_single_k80() {
    let config = load("one-gpu.yaml");
    let resolved = &config.resolved;
    assert_eq!(resolved.scale_tier, ScaleTier::BasicGpu);
    assert_eq!(resolved.master.device, DeviceKind::Gpu);
    assert_eq!(
        resolved.master.gpu_type,
        Some(AcceleratorType::NvidiaTeslaK80)
    );
    assert_eq!(resolved.master.gpu_count, 1);
    assert!(resolved.is_single_machine());
}

#[test]
fn compute_engine_a100_machine_brings_its_gpu() {
    let config = load("compute-engine-a100.yaml");
    assert_eq!(
        config.resolved.master,
        gpu("a2-highgpu-1g", AcceleratorType::NvidiaTeslaA100, 1)
    );
    let Some(MachineType::ComputeEngine(machine)) = &config.training_input.master_type else {
        panic!("expected a Compute Engine machine type");
    };
    assert_eq!((machine.family, machine.vcpus), ("a2", 12));
}

#[test]
fn compute_engine_t4_attaches_one_gpu_to_an_n1_machine() {
    let config = load("compute-engine-t4.yaml");
    assert_eq!(
        config.resolved.master,
        gpu("n1-standard-8", AcceleratorType::NvidiaTeslaT4, 1)
    );
}

#[test]
fn json_example_uses_int64_strings() {
    let config = load("custom-v100.json");
    assert_eq!(config.format, SourceFormat::Json);
    assert_eq!(config.job_id.as_deref(), Some("mnist_two_v100"));
    assert_eq!(config.training_input.worker_count, Some(0));
    assert_eq!(
        config.resolved.master,
        gpu("n1-highmem-8", AcceleratorType::NvidiaTeslaV100, 2)
    );
    assert_eq!(config.resolved.region.as_deref(), Some("europe-west1"));
}

#[test]
fn distributed_example_resolves_every_replica() {
    let config = load("distributed.yaml");
    let resolved = &config.resolved;
    assert_eq!(resolved.master, cpu("n1-highcpu-16"));
    assert_eq!(resolved.worker, Some(cpu("n1-highcpu-16")));
    assert_eq!(resolved.worker_count, 2);
    assert_eq!(resolved.parameter_server, Some(cpu("n1-highmem-8")));
    assert_eq!(resolved.parameter_server_count, 1);
    assert_eq!(resolved.evaluator, None);
    assert!(!resolved.is_single_machine());
    assert_eq!(
        resolved.extra_replicas(),
        [("workerCount", 2), ("parameterServerCount", 1)]
    );
}

#[test]
fn hyperparameter_example_is_parsed_and_validated() {
    use job_config::{Goal, ParameterType, ScaleType};
    let config = load("hptuning.yaml");
    assert!(config.resolved.hyperparameter_tuning);
    assert_eq!(config.resolved.master.device, DeviceKind::Cpu);
    let spec = config.training_input.hyperparameters.as_ref().unwrap();
    assert_eq!(spec.goal, Goal::Maximize);
    assert_eq!(spec.max_trials, 8);
    assert_eq!(spec.max_parallel_trials, 2);
    assert_eq!(spec.max_failed_trials, 0);
    assert_eq!(spec.hyperparameter_metric_tag.as_deref(), Some("accuracy"));
    let summary: Vec<(&str, ParameterType, Option<ScaleType>)> = spec
        .params
        .iter()
        .map(|param| {
            (
                param.parameter_name.as_str(),
                param.parameter_type,
                param.scale_type,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "learning-rate",
                ParameterType::Double,
                Some(ScaleType::UnitLogScale)
            ),
            (
                "hidden-units",
                ParameterType::Integer,
                Some(ScaleType::UnitLinearScale)
            ),
            ("batch-size", ParameterType::Discrete, None),
            ("optimizer", ParameterType::Categorical, None),
        ]
    );
    assert_eq!(spec.params[0].min_value, Some(0.0001));
    assert_eq!(spec.params[2].discrete_values, [32.0, 64.0, 128.0]);
    assert_eq!(spec.params[3].categorical_values, ["adam", "sgd"]);
}

/// The same document as YAML and as JSON resolves identically.
#[test]
fn yaml_and_json_forms_agree() {
    let yaml = std::fs::read_to_string(config_dir().join("config.yaml")).unwrap();
    let as_value: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    let json = serde_json::to_string_pretty(&as_value).unwrap();
    let from_yaml = JobConfig::parse(&yaml, "a.yaml").unwrap();
    let from_json = JobConfig::parse(&json, "a.json").unwrap();
    assert_eq!(from_json.format, SourceFormat::Json);
    assert_eq!(from_yaml.training_input, from_json.training_input);
    assert_eq!(from_yaml.resolved, from_json.resolved);
}

/// A bare TrainingInput (no `trainingInput:` wrapper) is accepted too.
#[test]
fn bare_training_input_is_accepted() {
    let config = JobConfig::parse("scaleTier: BASIC_GPU\nregion: asia-east1\n", "bare").unwrap();
    assert_eq!(config.shape, DocumentShape::BareTrainingInput);
    assert_eq!(config.training_input_path(), "");
    assert_eq!(config.resolved.master.gpu_count, 1);
}

/// Output-only fields from `gcloud ai-platform jobs describe` are ignored; a Job without
/// trainingInput is BASIC; `null` means "not set".
#[test]
fn described_job_and_defaults() {
    let text = "jobId: j1\nstate: SUCCEEDED\ncreateTime: '2019-01-01T00:00:00Z'\n\
                trainingOutput: {consumedMLUnits: 1.5}\n";
    let config = JobConfig::parse(text, "described").unwrap();
    assert_eq!(config.resolved.scale_tier, ScaleTier::Basic);
    assert!(!config.resolved.scale_tier_given);
    assert_eq!(config.resolved.master.device, DeviceKind::Cpu);

    let config =
        JobConfig::parse("trainingInput:\n  masterType:\n  region: null\n", "nulls").unwrap();
    assert_eq!(config.training_input.master_type, None);
}

/// Scale tiers resolve to the documented replica counts.
#[test]
fn preset_tiers() {
    let tier = |name: &str| {
        JobConfig::parse(&format!("trainingInput: {{scaleTier: {name}}}"), name)
            .unwrap()
            .resolved
    };
    let standard = tier("STANDARD_1");
    assert_eq!(
        (standard.worker_count, standard.parameter_server_count),
        (4, 3)
    );
    let premium = tier("PREMIUM_1");
    assert_eq!(
        (premium.worker_count, premium.parameter_server_count),
        (19, 11)
    );
    let tpu = tier("BASIC_TPU");
    assert_eq!(tpu.master.device, DeviceKind::Cpu);
    assert_eq!(tpu.worker_count, 1);
    let worker = tpu.worker.unwrap();
    assert_eq!(worker.device, DeviceKind::Tpu);
    assert_eq!(worker.tpu_type, Some(AcceleratorType::TpuV2));
    assert_eq!(worker.describe(), "cloud_tpu (TPU_V2, 8 cores)");
}

/// The resolved config serialises to the JSON the trainer writes into job.json.
#[test]
fn serialises_with_api_names() {
    let config = load("config.yaml");
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["trainingInput"]["masterType"], "standard_p100");
    assert_eq!(json["trainingInput"]["scaleTier"], "CUSTOM");
    assert_eq!(json["trainingInput"]["workerCount"], 0);
    assert_eq!(json["resolved"]["master"]["device"], "gpu");
    assert_eq!(json["resolved"]["master"]["gpu_type"], "NVIDIA_TESLA_P100");
    assert_eq!(json["resolved"]["master"]["gpu_count"], 1);
    assert_eq!(json["format"], "yaml");
    assert!(json["source"].as_str().unwrap().ends_with("config.yaml"));
}
