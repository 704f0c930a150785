//! Cross-field rules of `trainingInput`, and its resolution into what the machines must provide.

use serde::Serialize;

use crate::machine::{
    AcceleratorType, GPU_REGIONS, MachineType, ScaleTier, TPU_CORES_PER_DEVICE, TPU_REGIONS,
    join_or,
};
use crate::training_input::{ReplicaConfig, Role, TrainingInput};
use crate::walk::{Fields, Problems, child};

/// The kind of device a replica computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Gpu,
    Tpu,
}

/// What one replica (the master, or each worker / parameter server / evaluator) needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaRequirement {
    /// The machine type as named in the config, or the scale tier's machine for preset tiers.
    pub machine_type: String,
    pub device: DeviceKind,
    /// The GPU model, when `device` is [`DeviceKind::Gpu`].
    pub gpu_type: Option<AcceleratorType>,
    /// GPUs per replica (0 unless `device` is [`DeviceKind::Gpu`]).
    pub gpu_count: u32,
    /// The TPU generation, when `device` is [`DeviceKind::Tpu`] (always one 8-core device).
    pub tpu_type: Option<AcceleratorType>,
}

impl ReplicaRequirement {
    fn cpu(machine_type: &str) -> Self {
        ReplicaRequirement {
            machine_type: machine_type.to_string(),
            device: DeviceKind::Cpu,
            gpu_type: None,
            gpu_count: 0,
            tpu_type: None,
        }
    }

    fn gpu(machine_type: &str, gpu_type: AcceleratorType, gpu_count: u32) -> Self {
        ReplicaRequirement {
            machine_type: machine_type.to_string(),
            device: DeviceKind::Gpu,
            gpu_type: Some(gpu_type),
            gpu_count,
            tpu_type: None,
        }
    }

    fn tpu(machine_type: &str, tpu_type: AcceleratorType) -> Self {
        ReplicaRequirement {
            machine_type: machine_type.to_string(),
            device: DeviceKind::Tpu,
            gpu_type: None,
            gpu_count: 0,
            tpu_type: Some(tpu_type),
        }
    }

    /// The accelerator this replica needs, if any.
    pub fn accelerator(&self) -> Option<AcceleratorType> {
        self.gpu_type.or(self.tpu_type)
    }

    /// A one-line description for messages: `standard_p100 (1 × NVIDIA_TESLA_P100 GPU)`.
    pub fn describe(&self) -> String {
        match (self.device, self.gpu_type, self.tpu_type) {
            (DeviceKind::Gpu, Some(gpu), _) => {
                let plural = if self.gpu_count == 1 { "" } else { "s" };
                format!(
                    "{} ({} × {gpu} GPU{plural})",
                    self.machine_type, self.gpu_count
                )
            }
            (DeviceKind::Tpu, _, Some(tpu)) => format!(
                "{} ({tpu}, {TPU_CORES_PER_DEVICE} cores)",
                self.machine_type
            ),
            _ => format!("{} (CPU only)", self.machine_type),
        }
    }
}

/// A validated `trainingInput`, resolved into the cluster it asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedJob {
    pub scale_tier: ScaleTier,
    /// Whether `scaleTier` was written, or BASIC was assumed.
    pub scale_tier_given: bool,
    pub master: ReplicaRequirement,
    /// Present when `worker_count > 0`.
    pub worker: Option<ReplicaRequirement>,
    pub worker_count: u64,
    /// Present when `parameter_server_count > 0`.
    pub parameter_server: Option<ReplicaRequirement>,
    pub parameter_server_count: u64,
    /// Present when `evaluator_count > 0`.
    pub evaluator: Option<ReplicaRequirement>,
    pub evaluator_count: u64,
    pub region: Option<String>,
    pub job_dir: Option<String>,
    /// `trainingInput.args`, to be applied like command-line flags.
    pub args: Vec<String>,
    pub python_version: Option<String>,
    pub runtime_version: Option<String>,
    /// Whether the config asks for hyperparameter tuning (`hyperparameters` is set).
    pub hyperparameter_tuning: bool,
}

impl ResolvedJob {
    /// True when the job is one master and nothing else.
    pub fn is_single_machine(&self) -> bool {
        self.worker_count == 0 && self.parameter_server_count == 0 && self.evaluator_count == 0
    }

    /// The replicas beyond the master, as `(field name, count)` for those with a count above 0:
    /// what a single-machine trainer cannot provide.
    pub fn extra_replicas(&self) -> Vec<(&'static str, u64)> {
        [
            ("workerCount", self.worker_count),
            ("parameterServerCount", self.parameter_server_count),
            ("evaluatorCount", self.evaluator_count),
        ]
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .collect()
    }

    /// Why a single-machine runner (our trainer, or the jobs server that starts it) must refuse
    /// this job, or `None` when it is one master and nothing else: "the job asks for workerCount 2
    /// … besides the master, …; <how to fix it>". `source` names the document.
    pub fn single_machine_refusal(&self, source: &str) -> Option<String> {
        let extra = self.extra_replicas();
        if extra.is_empty() {
            return None;
        }
        let listed: Vec<String> = extra
            .iter()
            .map(|(field, count)| format!("{field} {count}"))
            .collect();
        let (asked, fix) = if self.scale_tier == ScaleTier::Custom {
            (
                format!("asks for {}", listed.join(" and ")),
                "set workerCount, parameterServerCount and evaluatorCount to 0",
            )
        } else {
            (
                format!(
                    "asks for scaleTier {}, which means {}",
                    self.scale_tier,
                    listed.join(" and ")
                ),
                "use scaleTier BASIC or BASIC_GPU, or CUSTOM without workers and parameter servers",
            )
        };
        Some(format!(
            "{source}: the job {asked} besides the master, but this trainer runs on one machine \
             (distributed training is not implemented); {fix}"
        ))
    }
}

/// The preset cluster of a non-CUSTOM scale tier.
///
/// Replica counts follow Cloud's scale-tier documentation (STANDARD_1: 4 workers and 3 parameter
/// servers; PREMIUM_1: 19 workers and 11 parameter servers; BASIC_GPU: one K80; BASIC_TPU: one
/// Cloud TPU worker). The machine names are the Compute Engine types that documentation lists for
/// each tier; the reference notes give only the shapes, so treat the names as informative.
fn scale_tier_cluster(tier: ScaleTier) -> Option<[(ReplicaRequirement, u64); 3]> {
    use AcceleratorType::{NvidiaTeslaK80, TpuV2};
    let none = || (ReplicaRequirement::cpu(""), 0);
    Some(match tier {
        ScaleTier::Basic => [
            (ReplicaRequirement::cpu("n1-standard-4"), 1),
            none(),
            none(),
        ],
        ScaleTier::BasicGpu => [
            (
                ReplicaRequirement::gpu("n1-standard-8", NvidiaTeslaK80, 1),
                1,
            ),
            none(),
            none(),
        ],
        ScaleTier::BasicTpu => [
            (ReplicaRequirement::cpu("n1-standard-4"), 1),
            (ReplicaRequirement::tpu(crate::machine::CLOUD_TPU, TpuV2), 1),
            none(),
        ],
        ScaleTier::Standard1 => [
            (ReplicaRequirement::cpu("n1-highcpu-8"), 1),
            (ReplicaRequirement::cpu("n1-highcpu-8"), 4),
            (ReplicaRequirement::cpu("n1-standard-4"), 3),
        ],
        ScaleTier::Premium1 => [
            (ReplicaRequirement::cpu("n1-highcpu-16"), 1),
            (ReplicaRequirement::cpu("n1-highcpu-16"), 19),
            (ReplicaRequirement::cpu("n1-highmem-8"), 11),
        ],
        ScaleTier::Custom => return None,
    })
}

/// Applies the cross-field rules and resolves the cluster. Returns `None` when a rule failed or
/// a field it depends on was itself invalid (that field's error is already recorded).
pub(crate) fn resolve(
    problems: &mut Problems,
    fields: &Fields<'_>,
    input: &TrainingInput,
) -> Option<ResolvedJob> {
    let errors_before = problems.len();
    if fields.has("scaleTier") && input.scale_tier.is_none() {
        // An unknown tier was already reported; every rule below depends on the tier.
        return None;
    }
    let tier = input.scale_tier.unwrap_or(ScaleTier::Basic);
    check_custom_only_fields(problems, fields, input, tier);

    let mut replicas: [Option<ReplicaRequirement>; 4] = [None, None, None, None];
    for (slot, role) in replicas.iter_mut().zip(Role::ALL) {
        *slot = match input.machine_type(role) {
            Some(machine) => Some(replica_requirement(
                problems,
                fields,
                role,
                machine,
                input.replica_config(role),
            )),
            None => {
                check_accelerator_without_type(problems, fields, input, role, tier);
                None
            }
        };
    }
    check_same_machine_category(problems, fields, input);
    check_containers(problems, fields, input);

    let [master, worker, parameter_server, evaluator] = replicas;
    let cluster = match scale_tier_cluster(tier) {
        Some([master, worker, parameter_server]) => [
            Some(master),
            Some(worker),
            Some(parameter_server),
            Some((ReplicaRequirement::cpu(""), 0)),
        ],
        None => {
            let counted = |replica: Option<ReplicaRequirement>, role: Role| {
                let count = input.count(role).unwrap_or(0);
                match (replica, count) {
                    (_, 0) => Some((ReplicaRequirement::cpu(""), 0)),
                    (Some(replica), count) => Some((replica, count)),
                    (None, _) => None,
                }
            };
            [
                master.map(|master| (master, 1)),
                counted(worker, Role::Worker),
                counted(parameter_server, Role::ParameterServer),
                counted(evaluator, Role::Evaluator),
            ]
        }
    };
    let [master, worker, parameter_server, evaluator] = cluster;
    let (master, _) = master?;
    let (worker, worker_count) = worker?;
    let (parameter_server, parameter_server_count) = parameter_server?;
    let (evaluator, evaluator_count) = evaluator?;
    let present = |replica: ReplicaRequirement, count: u64| (count > 0).then_some(replica);
    let resolved = ResolvedJob {
        scale_tier: tier,
        scale_tier_given: input.scale_tier.is_some(),
        master,
        worker: present(worker, worker_count),
        worker_count,
        parameter_server: present(parameter_server, parameter_server_count),
        parameter_server_count,
        evaluator: present(evaluator, evaluator_count),
        evaluator_count,
        region: input.region.clone(),
        job_dir: input.job_dir.clone(),
        args: input.args.clone(),
        python_version: input.python_version.clone(),
        runtime_version: input.runtime_version.clone(),
        hyperparameter_tuning: input.hyperparameters.is_some(),
    };
    check_regions(problems, fields, &resolved);
    (problems.len() == errors_before).then_some(resolved)
}

fn tier_phrase(input: &TrainingInput, tier: ScaleTier) -> String {
    if input.scale_tier.is_some() {
        format!("scaleTier is {tier}")
    } else {
        "scaleTier is not set (which means BASIC)".to_string()
    }
}

/// Machine types and replica counts are the CUSTOM tier's knobs; the preset tiers fix them.
fn check_custom_only_fields(
    problems: &mut Problems,
    fields: &Fields<'_>,
    input: &TrainingInput,
    tier: ScaleTier,
) {
    if tier == ScaleTier::Custom {
        if !fields.has("masterType") {
            problems.push(
                &fields.path_of("masterType"),
                "required when scaleTier is CUSTOM",
            );
        }
        for role in Role::ALL {
            let (Some(count_field), Some(count)) = (role.count_field(), input.count(role)) else {
                continue;
            };
            if count > 0 && !fields.has(role.type_field()) {
                problems.push(
                    &fields.path_of(role.type_field()),
                    format!("required when {count_field} is {count}"),
                );
            }
        }
        return;
    }
    for role in Role::ALL {
        if fields.has(role.type_field()) {
            problems.push(
                &fields.path_of(role.type_field()),
                format!(
                    "only allowed when scaleTier is CUSTOM, but {}",
                    tier_phrase(input, tier)
                ),
            );
        }
        if let (Some(count_field), Some(count)) = (role.count_field(), input.count(role))
            && count > 0
        {
            problems.push(
                &fields.path_of(count_field),
                format!(
                    "only allowed when scaleTier is CUSTOM, but {}",
                    tier_phrase(input, tier)
                ),
            );
        }
    }
}

/// `acceleratorConfig` adds GPUs to a Compute Engine machine named in the matching type field;
/// without that field there is nothing to attach them to.
fn check_accelerator_without_type(
    problems: &mut Problems,
    fields: &Fields<'_>,
    input: &TrainingInput,
    role: Role,
    tier: ScaleTier,
) {
    let Some(config) = input.replica_config(role) else {
        return;
    };
    if !config.accelerator_config_given || fields.has(role.type_field()) {
        // An invalid type name was reported already; don't pile on.
        return;
    }
    if tier == ScaleTier::Custom
        && (role == Role::Master || input.count(role).is_some_and(|count| count > 0))
    {
        // "masterType: required" (or "workerType: required when workerCount is N") already
        // says what is missing.
        return;
    }
    let path = child(&fields.path_of(role.config_field()), "acceleratorConfig");
    let message = if tier == ScaleTier::Custom {
        format!(
            "only allowed together with {} (a Compute Engine machine type)",
            role.type_field()
        )
    } else {
        format!(
            "only allowed when scaleTier is CUSTOM and {} is a Compute Engine machine type, but {}",
            role.type_field(),
            tier_phrase(input, tier)
        )
    };
    problems.push(&path, message);
}

fn replica_requirement(
    problems: &mut Problems,
    fields: &Fields<'_>,
    role: Role,
    machine: &MachineType,
    config: Option<&ReplicaConfig>,
) -> ReplicaRequirement {
    let type_field = role.type_field();
    let accelerator_path = child(&fields.path_of(role.config_field()), "acceleratorConfig");
    let accelerator_given = config.is_some_and(|config| config.accelerator_config_given);
    let accelerator = config.and_then(|config| config.accelerator_config);
    let name = machine.name();
    match machine {
        MachineType::Legacy(legacy) => {
            if accelerator_given {
                let carried = match legacy.gpus() {
                    Some((gpu, count)) => format!(" that comes with {count} × {gpu}"),
                    None => String::new(),
                };
                problems.push(
                    &accelerator_path,
                    format!(
                        "only allowed with a Compute Engine machine type; {type_field} {name} is a legacy machine type{carried}"
                    ),
                );
            }
            match legacy.gpus() {
                Some((gpu, count)) => ReplicaRequirement::gpu(name, gpu, count),
                None => ReplicaRequirement::cpu(name),
            }
        }
        MachineType::ComputeEngine(machine) => {
            if let Some((gpu, count)) = machine.built_in_gpus {
                if let Some(asked) = accelerator {
                    if asked.accelerator_type != gpu {
                        problems.push(
                            &child(&accelerator_path, "type"),
                            format!(
                                "{name} comes with {gpu} GPUs, found {}",
                                asked.accelerator_type
                            ),
                        );
                    } else if asked.count != count {
                        problems.push(
                            &child(&accelerator_path, "count"),
                            format!(
                                "{name} comes with exactly {count} × {gpu}, found {}",
                                asked.count
                            ),
                        );
                    }
                }
                ReplicaRequirement::gpu(name, gpu, count)
            } else if machine.takes_attached_gpus() {
                let Some(asked) = accelerator else {
                    return ReplicaRequirement::cpu(name);
                };
                let gpu = asked.accelerator_type;
                match gpu.n1_counts() {
                    None if gpu.is_tpu() => problems.push(
                        &child(&accelerator_path, "type"),
                        format!("{gpu} only goes with machine type cloud_tpu, not {name}"),
                    ),
                    None => problems.push(
                        &child(&accelerator_path, "type"),
                        format!("{gpu} comes only with a2 machine types such as a2-highgpu-1g, not {name}"),
                    ),
                    Some(allowed) if !allowed.contains(&asked.count) => {
                        let allowed: Vec<String> = allowed.iter().map(u32::to_string).collect();
                        problems.push(
                            &child(&accelerator_path, "count"),
                            format!(
                                "{gpu} can be attached in counts of {}, found {}",
                                join_or(&allowed),
                                asked.count
                            ),
                        );
                    }
                    Some(_) => {}
                }
                ReplicaRequirement::gpu(name, gpu, asked.count)
            } else {
                if accelerator_given {
                    problems.push(
                        &accelerator_path,
                        format!(
                            "{name} cannot take accelerators; GPUs attach to n1 machine types, and a2 machine types come with A100 GPUs"
                        ),
                    );
                }
                ReplicaRequirement::cpu(name)
            }
        }
        MachineType::CloudTpu => {
            if matches!(role, Role::ParameterServer | Role::Evaluator) {
                problems.push(
                    &fields.path_of(type_field),
                    "cloud_tpu can only be the masterType or workerType",
                );
            }
            let mut tpu = AcceleratorType::TpuV2;
            if let Some(asked) = accelerator {
                if asked.accelerator_type.is_gpu() {
                    problems.push(
                        &child(&accelerator_path, "type"),
                        format!(
                            "cloud_tpu takes TPU_V2 or TPU_V3, found {}",
                            asked.accelerator_type
                        ),
                    );
                } else if asked.count != TPU_CORES_PER_DEVICE {
                    problems.push(
                        &child(&accelerator_path, "count"),
                        format!(
                            "a Cloud TPU device has {TPU_CORES_PER_DEVICE} cores, found {}",
                            asked.count
                        ),
                    );
                } else {
                    tpu = asked.accelerator_type;
                }
            }
            ReplicaRequirement::tpu(name, tpu)
        }
    }
}

/// The API requires the worker, parameter server and evaluator types to be the same kind
/// (legacy or Compute Engine) as the master type.
fn check_same_machine_category(
    problems: &mut Problems,
    fields: &Fields<'_>,
    input: &TrainingInput,
) {
    let Some(master) = &input.master_type else {
        return;
    };
    let Some(master_category) = master.category() else {
        return;
    };
    for role in [Role::Worker, Role::ParameterServer, Role::Evaluator] {
        let Some(machine) = input.machine_type(role) else {
            continue;
        };
        if let Some(category) = machine.category()
            && category != master_category
        {
            problems.push(
                &fields.path_of(role.type_field()),
                format!(
                    "{machine} is {category} but masterType {master} is {master_category}; use the same kind for every replica"
                ),
            );
        }
    }
}

/// Custom-container rules: `masterConfig.imageUri` replaces the runtime, and container
/// arguments replace `args`.
fn check_containers(problems: &mut Problems, fields: &Fields<'_>, input: &TrainingInput) {
    if input
        .master_config
        .as_ref()
        .is_some_and(|config| config.image_uri.is_some())
        && input.runtime_version.is_some()
    {
        problems.push(
            &child(&fields.path_of("masterConfig"), "imageUri"),
            "cannot be combined with runtimeVersion; a custom container brings its own runtime",
        );
    }
    if input.args.is_empty() {
        return;
    }
    for role in Role::ALL {
        if let Some(config) = input.replica_config(role)
            && !config.container_args.is_empty()
        {
            problems.push(
                &child(&fields.path_of(role.config_field()), "containerArgs"),
                format!("cannot be combined with {}", fields.path_of("args")),
            );
        }
    }
}

/// Accelerators must be offered in the job's region (checked only when `region` is given: a local
/// run has no region).
fn check_regions(problems: &mut Problems, fields: &Fields<'_>, resolved: &ResolvedJob) {
    let Some(region) = &resolved.region else {
        return;
    };
    let replicas = [
        ("masterType", Some(&resolved.master)),
        ("workerType", resolved.worker.as_ref()),
        ("parameterServerType", resolved.parameter_server.as_ref()),
        ("evaluatorType", resolved.evaluator.as_ref()),
    ];
    let mut reported: Vec<AcceleratorType> = Vec::new();
    for (type_field, replica) in replicas {
        let Some(replica) = replica else { continue };
        let Some(accelerator) = replica.accelerator() else {
            continue;
        };
        let (regions, kind) = if accelerator.is_gpu() {
            (GPU_REGIONS, "GPU")
        } else {
            (TPU_REGIONS, "TPU")
        };
        if regions.contains(&region.as_str()) || reported.contains(&accelerator) {
            continue;
        }
        reported.push(accelerator);
        let wanted_by = if resolved.scale_tier == ScaleTier::Custom {
            format!("{type_field} {}", replica.machine_type)
        } else {
            format!("scaleTier {}", resolved.scale_tier)
        };
        problems.push(
            &fields.path_of("region"),
            format!(
                "{accelerator} (for {wanted_by}) is not available in {region}; {kind} regions known to this tool: {}",
                regions.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::parse_machine_type;

    #[test]
    fn preset_tiers_have_the_documented_shape() {
        let shape = |tier| {
            scale_tier_cluster(tier)
                .map(|cluster| cluster.map(|(replica, count)| (replica.device, count)))
        };
        use DeviceKind::*;
        assert_eq!(
            shape(ScaleTier::Basic),
            Some([(Cpu, 1), (Cpu, 0), (Cpu, 0)])
        );
        assert_eq!(
            shape(ScaleTier::BasicGpu),
            Some([(Gpu, 1), (Cpu, 0), (Cpu, 0)])
        );
        assert_eq!(
            shape(ScaleTier::BasicTpu),
            Some([(Cpu, 1), (Tpu, 1), (Cpu, 0)])
        );
        assert_eq!(
            shape(ScaleTier::Standard1),
            Some([(Cpu, 1), (Cpu, 4), (Cpu, 3)])
        );
        assert_eq!(
            shape(ScaleTier::Premium1),
            Some([(Cpu, 1), (Cpu, 19), (Cpu, 11)])
        );
        assert_eq!(shape(ScaleTier::Custom), None);
        for tier in ScaleTier::ALL {
            for (replica, count) in scale_tier_cluster(*tier).into_iter().flatten() {
                if count > 0 && replica.machine_type != crate::machine::CLOUD_TPU {
                    assert!(
                        parse_machine_type(&replica.machine_type).is_ok(),
                        "{tier}: {}",
                        replica.machine_type
                    );
                }
            }
        }
    }
}
