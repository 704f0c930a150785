//! `TF_CONFIG`: the JSON environment variable Cloud ML Engine (and `gcloud ai-platform local
//! train`) sets on every training VM to describe the cluster and this VM's place in it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::JobConfigError;
use crate::machine::api_enum;
use crate::node::{Node, SourceFormat, quote};
use crate::resolve::{ResolvedJob, resolve};
use crate::training_input::{TRAINING_INPUT_FIELDS, TrainingInput, parse_training_input};
use crate::walk::{Fields, Known, Problems, as_string, child, field, item};

api_enum! {
    /// `task.type` and the keys of `cluster`.
    pub enum TaskType {
        /// The primary node on runtime 2.1+.
        Chief => "chief",
        /// The primary node on TF 1.x runtimes.
        Master => "master",
        Worker => "worker",
        Ps => "ps",
        /// Evaluators are never listed in `cluster`; they only appear as `task.type`.
        Evaluator => "evaluator",
    }
}

/// One `host:port` address of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A host name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `task`: this VM's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskSpec {
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// 0-based position in `cluster[type]`.
    pub index: u64,
    /// The hyperparameter trial number (from 1), on tuning jobs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial: Option<u64>,
    /// The service's internal id for the VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
}

/// `job`: the job's `trainingInput` (or, from `gcloud ai-platform local train`, just
/// `job_name` and `args`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TfConfigJob {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    pub training_input: TrainingInput,
    pub resolved: ResolvedJob,
}

/// A validated `TF_CONFIG`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TfConfig {
    /// Addresses per task type; empty for a non-distributed local run.
    pub cluster: BTreeMap<TaskType, Vec<HostPort>>,
    /// `None` when `task` is absent or `{}` (non-distributed local run).
    pub task: Option<TaskSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<TfConfigJob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_layer: Option<String>,
}

const TF_CONFIG_FIELDS: &[Known<'static>] = &[
    field("cluster"),
    field("task"),
    field("environment"),
    field("job"),
    field("rpc_layer"),
];

/// Values of `environment` TensorFlow's run config understands.
const ENVIRONMENTS: &[&str] = &["cloud", "google", "local"];

impl TfConfig {
    /// The environment variable's name.
    pub const ENV_VAR: &'static str = "TF_CONFIG";

    /// Reads `TF_CONFIG` from the environment: `Ok(None)` when it is unset or blank.
    pub fn from_env() -> Result<Option<Self>, JobConfigError> {
        match std::env::var_os(Self::ENV_VAR) {
            None => Ok(None),
            Some(value) => {
                let text = value.into_string().map_err(|_| JobConfigError::NotUtf8 {
                    source_name: Self::ENV_VAR.to_string(),
                    byte_offset: 0,
                })?;
                if text.trim().is_empty() {
                    Ok(None)
                } else {
                    Self::parse(&text, Self::ENV_VAR).map(Some)
                }
            }
        }
    }

    /// Validates a `TF_CONFIG` JSON document; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, JobConfigError> {
        let root: Node = serde_json::from_str(text).map_err(|error| JobConfigError::Syntax {
            source_name: source_name.to_string(),
            format: SourceFormat::Json,
            message: error.to_string(),
        })?;
        let mut problems = Problems::default();
        let config = walk_tf_config(&mut problems, &root);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(JobConfigError::Invalid {
                source_name: source_name.to_string(),
                errors: problems.into_errors(),
            }),
        }
    }

    /// True when the cluster has more than one address, i.e. this VM is one of several.
    pub fn is_distributed(&self) -> bool {
        self.cluster.values().map(Vec::len).sum::<usize>() > 1
    }

    /// This task's own address, when it is listed in the cluster.
    pub fn task_address(&self) -> Option<&HostPort> {
        let task = self.task.as_ref()?;
        let index = usize::try_from(task.index).ok()?;
        self.cluster.get(&task.task_type)?.get(index)
    }
}

fn walk_tf_config(problems: &mut Problems, root: &Node) -> Option<TfConfig> {
    let fields = Fields::open(problems, root, "", TF_CONFIG_FIELDS)?;
    let cluster = fields
        .node("cluster")
        .map(|node| parse_cluster(problems, node, "cluster"))
        .unwrap_or(Some(BTreeMap::new()));
    let task = fields
        .node("task")
        .and_then(|node| parse_task(problems, node, "task"));
    let environment = fields.string(problems, "environment");
    if let Some(environment) = &environment
        && !ENVIRONMENTS.contains(&environment.as_str())
    {
        problems.push(
            "environment",
            format!(
                "unknown value {}; expected one of {}",
                quote(environment),
                ENVIRONMENTS.join(", ")
            ),
        );
    }
    let rpc_layer = fields.string(problems, "rpc_layer");
    let job = fields
        .node("job")
        .and_then(|node| parse_job(problems, node, "job"));

    if let (Some(cluster), Some(Some(task))) = (&cluster, &task) {
        check_task_in_cluster(problems, cluster, task);
    }
    if let (Some(cluster), Some(job)) = (&cluster, &job) {
        check_cluster_matches_job(problems, cluster, &job.resolved);
    }
    Some(TfConfig {
        cluster: cluster?,
        task: task.flatten(),
        environment,
        job,
        rpc_layer,
    })
}

fn parse_cluster(
    problems: &mut Problems,
    node: &Node,
    path: &str,
) -> Option<BTreeMap<TaskType, Vec<HostPort>>> {
    let known: Vec<Known<'static>> = TaskType::ALL
        .iter()
        .map(|task_type| field(task_type.api_name()))
        .collect();
    let fields = Fields::open(problems, node, path, &known)?;
    let errors_before = problems.len();
    let mut cluster = BTreeMap::new();
    let mut seen: BTreeMap<HostPort, String> = BTreeMap::new();
    for task_type in TaskType::ALL {
        let Some(list) = fields.list(problems, task_type.api_name()) else {
            continue;
        };
        let list_path = fields.path_of(task_type.api_name());
        if *task_type == TaskType::Evaluator {
            problems.push(
                &list_path,
                "evaluators are not part of the cluster; an evaluator's TF_CONFIG names it only in task",
            );
            continue;
        }
        if list.is_empty() {
            problems.push(
                &list_path,
                "must list at least one address; leave the key out instead",
            );
            continue;
        }
        if matches!(task_type, TaskType::Chief | TaskType::Master) && list.len() != 1 {
            problems.push(
                &list_path,
                format!("must list exactly one address, found {}", list.len()),
            );
        }
        let mut addresses = Vec::with_capacity(list.len());
        for (index, entry) in list.iter().enumerate() {
            let entry_path = item(&list_path, index);
            let Some(text) = as_string(problems, entry, &entry_path) else {
                continue;
            };
            match parse_host_port(&text) {
                Ok(address) => {
                    if let Some(first) = seen.get(&address) {
                        problems.push(
                            &entry_path,
                            format!("address {address} is also used by {first}"),
                        );
                    } else {
                        seen.insert(address.clone(), entry_path);
                    }
                    addresses.push(address);
                }
                Err(message) => problems.push(&entry_path, message),
            }
        }
        cluster.insert(*task_type, addresses);
    }
    if cluster.contains_key(&TaskType::Chief) && cluster.contains_key(&TaskType::Master) {
        problems.push(
            &fields.path_of("master"),
            "cannot be used together with cluster.chief; runtime 2.1+ names the primary node chief, TF 1.x names it master",
        );
    }
    (problems.len() == errors_before).then_some(cluster)
}

impl PartialOrd for HostPort {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HostPort {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.host.to_ascii_lowercase(), self.port)
            .cmp(&(other.host.to_ascii_lowercase(), other.port))
    }
}

/// `host:port`, `1.2.3.4:port` or `[::1]:port`.
fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let shape_error = || format!("expected host:port, found {}", quote(text));
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(shape_error)?;
        let valid_v6 = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !valid_v6 {
            return Err(format!("{} is not an IPv6 address", quote(host)));
        }
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(shape_error)?;
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && !host.starts_with(['-', '.'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !valid_name {
            return Err(format!(
                "{} is not a valid host name in {}",
                quote(host),
                quote(text)
            ));
        }
        (host, port)
    };
    let port_number =
        if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) {
            port.parse::<u32>().ok()
        } else {
            None
        };
    match port_number {
        Some(port) if (1..=65535).contains(&port) => Ok(HostPort {
            host: host.to_string(),
            port: port as u16,
        }),
        _ => Err(format!(
            "port must be a number from 1 to 65535, found {} in {}",
            quote(port),
            quote(text)
        )),
    }
}

/// `Some(None)` for an empty `task: {}` (what `gcloud ai-platform local train` sets without
/// `--distributed`); `None` when invalid.
fn parse_task(problems: &mut Problems, node: &Node, path: &str) -> Option<Option<TaskSpec>> {
    let fields = Fields::open(
        problems,
        node,
        path,
        &[
            field("type"),
            field("index"),
            field("trial"),
            field("cloud"),
        ],
    )?;
    if matches!(node, Node::Map(entries) if entries.is_empty()) {
        return Some(None);
    }
    let errors_before = problems.len();
    let task_type = fields.enumeration::<TaskType>(problems, "type");
    if !fields.has("type") {
        problems.push(&fields.path_of("type"), "required");
    }
    // TensorFlow treats a missing index as 0.
    let index = match fields.int64(problems, "index") {
        Some(index) if index < 0 => {
            problems.push(
                &fields.path_of("index"),
                format!("must be ≥ 0, found {index}"),
            );
            None
        }
        Some(index) => u64::try_from(index).ok(),
        None if fields.has("index") => None,
        None => Some(0),
    };
    let trial = fields.node("trial").and_then(|node| {
        let trial_path = fields.path_of("trial");
        let text = as_string(problems, node, &trial_path)?;
        match text.parse::<u64>() {
            Ok(trial) if trial >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Some(trial),
            _ => {
                problems.push(
                    &trial_path,
                    format!(
                        "expected a trial number such as \"1\", found {}",
                        quote(&text)
                    ),
                );
                None
            }
        }
    });
    let cloud = fields.string(problems, "cloud");
    if problems.len() != errors_before {
        return None;
    }
    Some(Some(TaskSpec {
        task_type: task_type?,
        index: index?,
        trial,
        cloud,
    }))
}

fn check_task_in_cluster(
    problems: &mut Problems,
    cluster: &BTreeMap<TaskType, Vec<HostPort>>,
    task: &TaskSpec,
) {
    if task.task_type == TaskType::Evaluator {
        return;
    }
    if cluster.is_empty() {
        problems.push(
            "cluster",
            format!("required when task.type is {}", task.task_type),
        );
        return;
    }
    let Some(addresses) = cluster.get(&task.task_type) else {
        let listed: Vec<&str> = cluster.keys().map(|t| t.api_name()).collect();
        problems.push(
            "task.type",
            format!(
                "{} is not in cluster (cluster has {})",
                quote(task.task_type.api_name()),
                listed.join(", ")
            ),
        );
        return;
    };
    if task.index >= addresses.len() as u64 {
        problems.push(
            "task.index",
            format!(
                "{} is out of range; cluster.{} has {} address{} (index 0 to {})",
                task.index,
                task.task_type,
                addresses.len(),
                if addresses.len() == 1 { "" } else { "es" },
                addresses.len() - 1
            ),
        );
    }
}

/// When `job` says how many replicas the job has (an explicit scale tier), the cluster must list
/// that many: a mismatch means the two halves of `TF_CONFIG` describe different jobs.
fn check_cluster_matches_job(
    problems: &mut Problems,
    cluster: &BTreeMap<TaskType, Vec<HostPort>>,
    job: &ResolvedJob,
) {
    if cluster.is_empty() || !job.scale_tier_given {
        return;
    }
    for (task_type, wanted, what) in [
        (TaskType::Worker, job.worker_count, "workers"),
        (
            TaskType::Ps,
            job.parameter_server_count,
            "parameter servers",
        ),
    ] {
        let listed = cluster.get(&task_type).map_or(0, Vec::len) as u64;
        if listed != wanted {
            problems.push(
                &child("cluster", task_type.api_name()),
                format!(
                    "lists {listed} address{}, but job asks for {wanted} {what}",
                    if listed == 1 { "" } else { "es" }
                ),
            );
        }
    }
}

fn parse_job(problems: &mut Problems, node: &Node, path: &str) -> Option<TfConfigJob> {
    let mut known: Vec<Known<'static>> = TRAINING_INPUT_FIELDS.to_vec();
    // `gcloud ai-platform local train` writes the module name as `job_name`.
    known.push(field("job_name"));
    let fields = Fields::open(problems, node, path, &known)?;
    let job_name = fields.string(problems, "job_name");
    let training_input = parse_training_input(problems, &fields);
    let resolved = resolve(problems, &fields, &training_input)?;
    Some(TfConfigJob {
        job_name,
        training_input,
        resolved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        assert_eq!(
            parse_host_port("cmle-training-worker-0:2222").unwrap(),
            HostPort {
                host: "cmle-training-worker-0".into(),
                port: 2222
            }
        );
        assert_eq!(parse_host_port("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert_eq!(parse_host_port("10.0.0.1:1").unwrap().port, 1);
        assert_eq!(
            parse_host_port("localhost").unwrap_err(),
            "expected host:port, found \"localhost\""
        );
        assert_eq!(
            parse_host_port("localhost:0").unwrap_err(),
            "port must be a number from 1 to 65535, found \"0\" in \"localhost:0\""
        );
        assert_eq!(
            parse_host_port("localhost:70000").unwrap_err(),
            "port must be a number from 1 to 65535, found \"70000\" in \"localhost:70000\""
        );
        assert_eq!(
            parse_host_port("bad host:22").unwrap_err(),
            "\"bad host\" is not a valid host name in \"bad host:22\""
        );
        assert_eq!(
            parse_host_port(":22").unwrap_err(),
            "\"\" is not a valid host name in \":22\""
        );
    }
}
