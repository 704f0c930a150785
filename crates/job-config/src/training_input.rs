//! `trainingInput` (`GoogleCloudMlV1TrainingInput`) as written, after per-field validation.
//!
//! Cross-field rules (CUSTOM tier, counts versus types, accelerators versus machine types, regions)
//! live in [`crate::resolve`], which turns this into the [`crate::ResolvedJob`].

use serde::Serialize;

use crate::hyperparameters::{HyperparameterSpec, parse_hyperparameters};
use crate::machine::{AcceleratorType, MachineType, ScaleTier, parse_machine_type};
use crate::node::{Node, quote};
use crate::walk::{Fields, Known, Problems, field, refused};

/// `trainingInput` with every field the API defines for a training job.
///
/// Serialises back to the API's JSON names (camelCase), with counts as plain numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_tier: Option<ScaleTier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_type: Option<MachineType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_type: Option<MachineType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_server_type: Option<MachineType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluator_type: Option<MachineType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_config: Option<ReplicaConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_config: Option<ReplicaConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_server_config: Option<ReplicaConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluator_config: Option<ReplicaConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_server_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluator_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_module: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub package_uris: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hyperparameters: Option<HyperparameterSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_config: Option<EncryptionConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_web_access: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_chief_in_tf_config: Option<bool>,
}

/// `masterConfig` / `workerConfig` / `parameterServerConfig` / `evaluatorConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator_config: Option<AcceleratorConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpu_tf_version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_config: Option<DiskConfig>,
    /// `acceleratorConfig` was written, even if invalid: rules about *whether* it may be given
    /// must not be skipped just because its contents had their own error.
    #[serde(skip)]
    pub(crate) accelerator_config_given: bool,
}

/// `acceleratorConfig {count, type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AcceleratorConfig {
    pub count: u32,
    #[serde(rename = "type")]
    pub accelerator_type: AcceleratorType,
}

/// `diskConfig {bootDiskType, bootDiskSizeGb}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_disk_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_disk_size_gb: Option<i32>,
}

/// `scheduling {maxRunningTime, maxWaitTime, priority}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// `encryptionConfig {kmsKeyName}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_name: Option<String>,
}

/// The replica roles of a training cluster, with their field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Master,
    Worker,
    ParameterServer,
    Evaluator,
}

impl Role {
    pub(crate) const ALL: [Role; 4] = [
        Role::Master,
        Role::Worker,
        Role::ParameterServer,
        Role::Evaluator,
    ];

    pub(crate) fn type_field(self) -> &'static str {
        match self {
            Role::Master => "masterType",
            Role::Worker => "workerType",
            Role::ParameterServer => "parameterServerType",
            Role::Evaluator => "evaluatorType",
        }
    }

    pub(crate) fn config_field(self) -> &'static str {
        match self {
            Role::Master => "masterConfig",
            Role::Worker => "workerConfig",
            Role::ParameterServer => "parameterServerConfig",
            Role::Evaluator => "evaluatorConfig",
        }
    }

    /// The master always runs exactly once, so it has no count field.
    pub(crate) fn count_field(self) -> Option<&'static str> {
        match self {
            Role::Master => None,
            Role::Worker => Some("workerCount"),
            Role::ParameterServer => Some("parameterServerCount"),
            Role::Evaluator => Some("evaluatorCount"),
        }
    }
}

impl TrainingInput {
    pub(crate) fn machine_type(&self, role: Role) -> Option<&MachineType> {
        match role {
            Role::Master => self.master_type.as_ref(),
            Role::Worker => self.worker_type.as_ref(),
            Role::ParameterServer => self.parameter_server_type.as_ref(),
            Role::Evaluator => self.evaluator_type.as_ref(),
        }
    }

    pub(crate) fn replica_config(&self, role: Role) -> Option<&ReplicaConfig> {
        match role {
            Role::Master => self.master_config.as_ref(),
            Role::Worker => self.worker_config.as_ref(),
            Role::ParameterServer => self.parameter_server_config.as_ref(),
            Role::Evaluator => self.evaluator_config.as_ref(),
        }
    }

    pub(crate) fn count(&self, role: Role) -> Option<u64> {
        match role {
            Role::Master => None,
            Role::Worker => self.worker_count,
            Role::ParameterServer => self.parameter_server_count,
            Role::Evaluator => self.evaluator_count,
        }
    }
}

/// Every `trainingInput` field name, for unknown-field checks and suggestions.
pub(crate) const TRAINING_INPUT_FIELDS: &[Known<'static>] = &[
    field("scaleTier"),
    field("masterType"),
    field("workerType"),
    field("parameterServerType"),
    field("evaluatorType"),
    field("masterConfig"),
    field("workerConfig"),
    field("parameterServerConfig"),
    field("evaluatorConfig"),
    field("workerCount"),
    field("parameterServerCount"),
    field("evaluatorCount"),
    field("pythonVersion"),
    field("runtimeVersion"),
    field("region"),
    field("jobDir"),
    field("pythonModule"),
    field("packageUris"),
    field("args"),
    field("hyperparameters"),
    field("scheduling"),
    field("serviceAccount"),
    field("network"),
    field("encryptionConfig"),
    field("enableWebAccess"),
    field("useChiefInTfConfig"),
    refused(
        "nasJobSpec",
        "Neural Architecture Search jobs are not supported by this trainer",
    ),
];

const REPLICA_CONFIG_FIELDS: &[Known<'static>] = &[
    field("acceleratorConfig"),
    field("imageUri"),
    field("tpuTfVersion"),
    field("containerCommand"),
    field("containerArgs"),
    field("diskConfig"),
];

/// The API allows at most this many training packages.
const MAX_PACKAGE_URIS: usize = 100;

/// Reads every `trainingInput` field from an already opened map. Field-level problems (types,
/// enum values, machine type names, ranges) are recorded; cross-field rules are left to
/// [`crate::resolve`].
pub(crate) fn parse_training_input(problems: &mut Problems, fields: &Fields<'_>) -> TrainingInput {
    let mut input = TrainingInput {
        scale_tier: fields.enumeration(problems, "scaleTier"),
        worker_count: count(problems, fields, "workerCount"),
        parameter_server_count: count(problems, fields, "parameterServerCount"),
        evaluator_count: count(problems, fields, "evaluatorCount"),
        python_version: fields.version_string(problems, "pythonVersion"),
        runtime_version: fields.version_string(problems, "runtimeVersion"),
        region: fields.string(problems, "region"),
        job_dir: fields.string(problems, "jobDir"),
        python_module: fields.string(problems, "pythonModule"),
        package_uris: fields
            .string_list(problems, "packageUris")
            .unwrap_or_default(),
        args: fields.string_list(problems, "args").unwrap_or_default(),
        service_account: fields.string(problems, "serviceAccount"),
        network: fields.string(problems, "network"),
        enable_web_access: fields.boolean(problems, "enableWebAccess"),
        use_chief_in_tf_config: fields.boolean(problems, "useChiefInTfConfig"),
        ..TrainingInput::default()
    };
    for role in Role::ALL {
        let machine = machine_type(problems, fields, role.type_field());
        let config = fields.node(role.config_field()).and_then(|node| {
            parse_replica_config(problems, node, &fields.path_of(role.config_field()))
        });
        match role {
            Role::Master => (input.master_type, input.master_config) = (machine, config),
            Role::Worker => (input.worker_type, input.worker_config) = (machine, config),
            Role::ParameterServer => {
                (input.parameter_server_type, input.parameter_server_config) = (machine, config)
            }
            Role::Evaluator => (input.evaluator_type, input.evaluator_config) = (machine, config),
        }
    }
    if let Some(region) = &input.region
        && !crate::machine::is_region_name(region)
    {
        problems.push(
            &fields.path_of("region"),
            format!(
                "expected a region name such as us-central1, found {}",
                quote(region)
            ),
        );
        input.region = None;
    }
    if let Some(job_dir) = &input.job_dir
        && job_dir.trim().is_empty()
    {
        problems.push(&fields.path_of("jobDir"), "must not be empty");
        input.job_dir = None;
    }
    if input.package_uris.len() > MAX_PACKAGE_URIS {
        problems.push(
            &fields.path_of("packageUris"),
            format!(
                "at most {MAX_PACKAGE_URIS} packages are allowed, found {}",
                input.package_uris.len()
            ),
        );
    }
    check_versions(problems, fields, &mut input);
    input.hyperparameters = fields
        .node("hyperparameters")
        .and_then(|node| parse_hyperparameters(problems, node, &fields.path_of("hyperparameters")));
    input.scheduling = fields
        .node("scheduling")
        .and_then(|node| parse_scheduling(problems, node, &fields.path_of("scheduling")));
    input.encryption_config = fields.node("encryptionConfig").and_then(|node| {
        let path = fields.path_of("encryptionConfig");
        let config = Fields::open(problems, node, &path, &[field("kmsKeyName")])?;
        Some(EncryptionConfig {
            kms_key_name: config.string(problems, "kmsKeyName"),
        })
    });
    input
}

fn count(problems: &mut Problems, fields: &Fields<'_>, name: &str) -> Option<u64> {
    let value = fields.int64(problems, name)?;
    match u64::try_from(value) {
        Ok(value) => Some(value),
        Err(_) => {
            problems.push(&fields.path_of(name), format!("must be ≥ 0, found {value}"));
            None
        }
    }
}

fn machine_type(problems: &mut Problems, fields: &Fields<'_>, name: &str) -> Option<MachineType> {
    let text = fields.string(problems, name)?;
    match parse_machine_type(&text) {
        Ok(machine) => Some(machine),
        Err(message) => {
            problems.push(&fields.path_of(name), message);
            None
        }
    }
}

fn parse_replica_config(problems: &mut Problems, node: &Node, path: &str) -> Option<ReplicaConfig> {
    let fields = Fields::open(problems, node, path, REPLICA_CONFIG_FIELDS)?;
    let accelerator_config = fields.node("acceleratorConfig").and_then(|node| {
        parse_accelerator_config(problems, node, &fields.path_of("acceleratorConfig"))
    });
    let disk_config = fields.node("diskConfig").and_then(|node| {
        let disk_path = fields.path_of("diskConfig");
        let disk = Fields::open(
            problems,
            node,
            &disk_path,
            &[field("bootDiskType"), field("bootDiskSizeGb")],
        )?;
        let boot_disk_type = disk.string(problems, "bootDiskType");
        if let Some(kind) = &boot_disk_type
            && kind != "pd-ssd"
            && kind != "pd-standard"
        {
            problems.push(
                &disk.path_of("bootDiskType"),
                format!("expected pd-ssd or pd-standard, found {}", quote(kind)),
            );
        }
        let boot_disk_size_gb = disk.int32(problems, "bootDiskSizeGb");
        if let Some(size) = boot_disk_size_gb
            && size < 1
        {
            problems.push(
                &disk.path_of("bootDiskSizeGb"),
                format!("must be ≥ 1, found {size}"),
            );
        }
        Some(DiskConfig {
            boot_disk_type,
            boot_disk_size_gb,
        })
    });
    let config = ReplicaConfig {
        accelerator_config,
        image_uri: fields.string(problems, "imageUri"),
        tpu_tf_version: fields.version_string(problems, "tpuTfVersion"),
        container_command: fields
            .string_list(problems, "containerCommand")
            .unwrap_or_default(),
        container_args: fields
            .string_list(problems, "containerArgs")
            .unwrap_or_default(),
        disk_config,
        accelerator_config_given: fields.has("acceleratorConfig"),
    };
    if config.image_uri.is_none() {
        for name in ["containerCommand", "containerArgs"] {
            if fields.has(name) {
                problems.push(
                    &fields.path_of(name),
                    format!("only allowed together with {}", fields.path_of("imageUri")),
                );
            }
        }
    }
    Some(config)
}

fn parse_accelerator_config(
    problems: &mut Problems,
    node: &Node,
    path: &str,
) -> Option<AcceleratorConfig> {
    let fields = Fields::open(problems, node, path, &[field("count"), field("type")])?;
    let accelerator_type = fields.enumeration::<AcceleratorType>(problems, "type");
    if !fields.has("type") {
        problems.push(&fields.path_of("type"), "required");
    }
    let count = match fields.int64(problems, "count") {
        None if !fields.has("count") => {
            problems.push(&fields.path_of("count"), "required");
            None
        }
        None => None,
        Some(count) if count < 1 => {
            problems.push(
                &fields.path_of("count"),
                format!("must be ≥ 1, found {count}"),
            );
            None
        }
        Some(count) => match u32::try_from(count) {
            Ok(count) => Some(count),
            Err(_) => {
                problems.push(
                    &fields.path_of("count"),
                    format!("{count} accelerators cannot be attached to one machine"),
                );
                None
            }
        },
    };
    Some(AcceleratorConfig {
        count: count?,
        accelerator_type: accelerator_type?,
    })
}

fn parse_scheduling(problems: &mut Problems, node: &Node, path: &str) -> Option<Scheduling> {
    let fields = Fields::open(
        problems,
        node,
        path,
        &[
            field("maxRunningTime"),
            field("maxWaitTime"),
            field("priority"),
        ],
    )?;
    let mut duration = |name: &str, minimum_seconds: f64| {
        let text = fields.string(problems, name)?;
        match parse_duration_seconds(&text) {
            Some(seconds) if seconds >= minimum_seconds => Some(text),
            Some(_) => {
                problems.push(
                    &fields.path_of(name),
                    format!(
                        "must be at least {minimum_seconds}s, found {}",
                        quote(&text)
                    ),
                );
                None
            }
            None => {
                problems.push(
                    &fields.path_of(name),
                    format!(
                        "expected a duration in seconds such as \"7200s\", found {}",
                        quote(&text)
                    ),
                );
                None
            }
        }
    };
    let max_running_time = duration("maxRunningTime", 0.0);
    // The API's minimum wait time is 30 minutes.
    let max_wait_time = duration("maxWaitTime", 1800.0);
    let priority = fields.int32(problems, "priority");
    if let Some(priority) = priority
        && !(0..=1000).contains(&priority)
    {
        problems.push(
            &fields.path_of("priority"),
            format!("must be between 0 and 1000, found {priority}"),
        );
    }
    Some(Scheduling {
        max_running_time,
        max_wait_time,
        priority,
    })
}

/// The protobuf JSON `Duration` form: seconds with up to nine fractional digits, then `s`.
fn parse_duration_seconds(text: &str) -> Option<f64> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = !whole.is_empty()
        && whole.len() <= 12
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 9
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(number.contains('.') && fraction.is_empty());
    digits_ok.then(|| number.parse::<f64>().ok()).flatten()
}

/// A runtime version as `(major, minor)`.
type RuntimeVersion = (u32, u32);

/// Python versions AI Platform Training offered, with the runtime versions each came with
/// (from the API's `pythonVersion` documentation): `(python, oldest runtime, newest runtime)`.
const PYTHON_VERSIONS: &[(&str, RuntimeVersion, Option<RuntimeVersion>)] = &[
    ("2.7", (0, 0), Some((1, 15))),
    ("3.5", (1, 4), Some((1, 14))),
    ("3.7", (1, 15), None),
];

fn parse_runtime_version(text: &str) -> Option<RuntimeVersion> {
    let (major, minor) = text.split_once('.')?;
    let is_number = |part: &str| {
        !part.is_empty() && part.len() <= 4 && part.bytes().all(|b| b.is_ascii_digit())
    };
    if !is_number(major) || !is_number(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn check_versions(problems: &mut Problems, fields: &Fields<'_>, input: &mut TrainingInput) {
    let runtime = input.runtime_version.as_deref().and_then(|text| {
        let parsed = parse_runtime_version(text);
        if parsed.is_none() {
            problems.push(
                &fields.path_of("runtimeVersion"),
                format!(
                    "expected a version such as \"2.11\" or \"1.15\", found {}",
                    quote(text)
                ),
            );
        }
        parsed
    });
    let Some(python) = input.python_version.as_deref() else {
        return;
    };
    let Some((_, oldest, newest)) = PYTHON_VERSIONS.iter().find(|(name, ..)| *name == python)
    else {
        problems.push(
            &fields.path_of("pythonVersion"),
            format!(
                "unknown value {}; AI Platform Training offers Python 2.7, 3.5 and 3.7",
                quote(python)
            ),
        );
        return;
    };
    if let Some(runtime) = runtime {
        let too_new = newest.is_some_and(|newest| runtime > newest);
        if runtime < *oldest || too_new {
            let range = match newest {
                Some(newest) if oldest.0 == 0 => format!("up to {}.{}", newest.0, newest.1),
                Some(newest) => format!("{}.{} to {}.{}", oldest.0, oldest.1, newest.0, newest.1),
                None => format!("{}.{} or later", oldest.0, oldest.1),
            };
            problems.push(
                &fields.path_of("pythonVersion"),
                format!(
                    "Python {python} comes with runtimeVersion {range}, but runtimeVersion is {}",
                    quote(input.runtime_version.as_deref().unwrap_or_default())
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_seconds("7200s"), Some(7200.0));
        assert_eq!(parse_duration_seconds("1.5s"), Some(1.5));
        assert_eq!(parse_duration_seconds("7200"), None);
        assert_eq!(parse_duration_seconds("1.s"), None);
        assert_eq!(parse_duration_seconds("-5s"), None);
        assert_eq!(parse_duration_seconds("2h"), None);
    }

    #[test]
    fn runtime_versions() {
        assert_eq!(parse_runtime_version("2.11"), Some((2, 11)));
        assert_eq!(parse_runtime_version("1.15"), Some((1, 15)));
        assert_eq!(parse_runtime_version("2"), None);
        assert_eq!(parse_runtime_version("2.x"), None);
    }
}
