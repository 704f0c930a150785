//! `TF_CONFIG` as Cloud ML Engine and `gcloud ai-platform local train` set it.

use job_config::{DeviceKind, HostPort, ScaleTier, TaskType, TfConfig};

/// The reference's example (worker 0 of a runtime ≥ 2.1 tuning job, trial 1).
const CLOUD_WORKER: &str = r#"{"cluster": {"chief": ["cmle-training-chief-abc-0:2222"],
             "ps": ["cmle-training-ps-abc-0:2222"],
             "worker": ["cmle-training-worker-abc-0:2222", "cmle-training-worker-abc-1:2222"]},
 "environment": "cloud",
 "job": {"args": ["--epochs", "3"], "jobDir": "gs://b/j", "masterType": "n1-standard-8",
         "workerType": "n1-standard-8", "parameterServerType": "n1-highmem-8",
         "workerCount": "2", "parameterServerCount": "1",
         "pythonVersion": "3.7", "region": "us-central1", "runtimeVersion": "2.1", "scaleTier": "CUSTOM",
         "hyperparameters": {"goal": "MAXIMIZE", "params": [{"parameterName": "lr", "type": "DOUBLE", "minValue": 0.001, "maxValue": 0.1}]}},
 "task": {"cloud": "abc", "index": 0, "trial": "1", "type": "worker"}}"#;

#[test]
fn cloud_worker_config() {
    let config = TfConfig::parse(CLOUD_WORKER, "TF_CONFIG").unwrap();
    assert!(config.is_distributed());
    let task = config.task.as_ref().unwrap();
    assert_eq!(task.task_type, TaskType::Worker);
    assert_eq!(task.index, 0);
    assert_eq!(task.trial, Some(1));
    assert_eq!(task.cloud.as_deref(), Some("abc"));
    assert_eq!(
        config.task_address(),
        Some(&HostPort {
            host: "cmle-training-worker-abc-0".into(),
            port: 2222
        })
    );
    assert_eq!(config.cluster[&TaskType::Worker].len(), 2);
    assert_eq!(config.environment.as_deref(), Some("cloud"));
    let job = config.job.as_ref().unwrap();
    assert_eq!(job.resolved.scale_tier, ScaleTier::Custom);
    assert_eq!(job.resolved.worker_count, 2);
    assert_eq!(job.resolved.master.device, DeviceKind::Cpu);
    assert!(job.resolved.hyperparameter_tuning);
    assert_eq!(job.training_input.args, ["--epochs", "3"]);
}

#[test]
fn local_non_distributed_config() {
    // What `gcloud ai-platform local train` sets without --distributed.
    let text = r#"{"cluster": {}, "task": {}, "job": {"job_name": "trainer.task", "args": ["--epochs=1"]}, "environment": "cloud"}"#;
    let config = TfConfig::parse(text, "TF_CONFIG").unwrap();
    assert!(!config.is_distributed());
    assert_eq!(config.task, None);
    assert_eq!(config.task_address(), None);
    let job = config.job.unwrap();
    assert_eq!(job.job_name.as_deref(), Some("trainer.task"));
    assert_eq!(job.resolved.scale_tier, ScaleTier::Basic);
    assert_eq!(job.resolved.args, ["--epochs=1"]);
}

#[test]
fn local_distributed_master_config() {
    let text = r#"{"cluster": {"master": ["localhost:27182"], "ps": ["localhost:27183"], "worker": ["localhost:27184", "[::1]:27185"]},
                   "task": {"type": "master", "index": 0}, "environment": "cloud"}"#;
    let config = TfConfig::parse(text, "TF_CONFIG").unwrap();
    assert_eq!(
        config.task_address().unwrap().to_string(),
        "localhost:27182"
    );
    assert_eq!(
        config.cluster[&TaskType::Worker][1],
        HostPort {
            host: "::1".into(),
            port: 27185
        }
    );
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["cluster"]["worker"][1], "[::1]:27185");
    assert_eq!(json["task"]["type"], "master");
}

#[test]
fn evaluator_is_not_in_the_cluster() {
    let text = r#"{"cluster": {"chief": ["c:1"]}, "task": {"type": "evaluator", "index": 0}}"#;
    let config = TfConfig::parse(text, "TF_CONFIG").unwrap();
    assert_eq!(config.task_address(), None);
    assert_eq!(config.task.unwrap().task_type, TaskType::Evaluator);
}

const BAD: &[(&str, &str, &[&str])] = &[
    (
        "task type not in cluster",
        r#"{"cluster": {"chief": ["c:2222"], "ps": ["p:2222"]}, "task": {"type": "worker", "index": 0}}"#,
        &["task.type: \"worker\" is not in cluster (cluster has chief, ps)"],
    ),
    (
        "index out of range",
        r#"{"cluster": {"chief": ["c:2222"], "worker": ["w0:2222", "w1:2222"]}, "task": {"type": "worker", "index": 2}}"#,
        &["task.index: 2 is out of range; cluster.worker has 2 addresses (index 0 to 1)"],
    ),
    (
        "negative index",
        r#"{"cluster": {"chief": ["c:2222"]}, "task": {"type": "chief", "index": -1}}"#,
        &["task.index: must be ≥ 0, found -1"],
    ),
    (
        "address syntax",
        r#"{"cluster": {"chief": ["c"], "worker": ["w0:99999", "bad host:1", 7]}}"#,
        &[
            "cluster.chief[0]: expected host:port, found \"c\"",
            "cluster.worker[0]: port must be a number from 1 to 65535, found \"99999\" in \"w0:99999\"",
            "cluster.worker[1]: \"bad host\" is not a valid host name in \"bad host:1\"",
            "cluster.worker[2]: expected a string, found number 7",
        ],
    ),
    (
        "two chiefs, chief with master, duplicate address",
        r#"{"cluster": {"chief": ["a:1", "b:1"], "master": ["m:1"], "worker": ["a:1"]}}"#,
        &[
            "cluster.chief: must list exactly one address, found 2",
            "cluster.worker[0]: address a:1 is also used by cluster.chief[0]",
            "cluster.master: cannot be used together with cluster.chief; runtime 2.1+ names the primary node chief, TF 1.x names it master",
        ],
    ),
    (
        "misspelt keys",
        r#"{"clustr": {}, "task": {"typ": "worker"}, "cluster": {"workers": ["w:1"]}}"#,
        &[
            "clustr: unknown field; did you mean cluster?",
            "cluster.workers: unknown field; did you mean worker?",
            "task.typ: unknown field; did you mean type?",
            "task.type: required",
        ],
    ),
    (
        "evaluator listed in cluster, empty list, unknown environment",
        r#"{"cluster": {"chief": ["c:1"], "evaluator": ["e:1"], "ps": []}, "environment": "aws"}"#,
        &[
            "cluster.ps: must list at least one address; leave the key out instead",
            "cluster.evaluator: evaluators are not part of the cluster; an evaluator's TF_CONFIG names it only in task",
            "environment: unknown value \"aws\"; expected one of cloud, google, local",
        ],
    ),
    (
        "task without cluster, bad trial",
        r#"{"task": {"type": "master", "index": 0, "trial": "0"}}"#,
        &["task.trial: expected a trial number such as \"1\", found \"0\""],
    ),
    (
        "task without cluster",
        r#"{"task": {"type": "master", "index": 0, "trial": "3"}}"#,
        &["cluster: required when task.type is master"],
    ),
    (
        "job validated like a config, with its own paths",
        r#"{"cluster": {"chief": ["c:1"]}, "job": {"scaleTier": "CUSTOM", "masterTyp": "standard"}}"#,
        &[
            "job.masterTyp: unknown field; did you mean masterType?",
            "job.masterType: required when scaleTier is CUSTOM",
        ],
    ),
    (
        "cluster disagrees with job",
        r#"{"cluster": {"chief": ["c:1"], "worker": ["w:1"]}, "job": {"scaleTier": "STANDARD_1"}}"#,
        &[
            "cluster.worker: lists 1 address, but job asks for 4 workers",
            "cluster.ps: lists 0 addresses, but job asks for 3 parameter servers",
        ],
    ),
    (
        "not an object",
        r#"["cluster"]"#,
        &["expected a map, found a list"],
    ),
];

#[test]
fn bad_tf_configs_give_their_exact_errors() {
    let mut failures = Vec::new();
    for (what, text, expected) in BAD {
        let actual: Vec<String> = match TfConfig::parse(text, "TF_CONFIG") {
            Ok(config) => vec![format!("accepted: {config:?}")],
            Err(error) => error
                .field_errors()
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        if actual != *expected {
            failures.push(format!(
                "{what}:\n  expected {expected:#?}\n  actual   {actual:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn tf_config_must_be_json() {
    let error = TfConfig::parse("cluster: {}", "TF_CONFIG").unwrap_err();
    assert!(
        error.to_string().starts_with("TF_CONFIG: not valid JSON: "),
        "{error}"
    );
    let error = TfConfig::parse(r#"{"task": {"type": "worker"}}"#, "TF_CONFIG").unwrap_err();
    assert_eq!(
        error.to_string(),
        "TF_CONFIG: cluster: required when task.type is worker"
    );
}
