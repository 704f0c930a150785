//! `--config FILE`: a Cloud ML Engine job configuration applied to this run.
//!
//! What the config means here, following issue 6:
//! * `trainingInput.args` are applied like command-line flags, placed *before* the real command
//!   line and parsed with "last occurrence wins", so a flag given on the command line beats the
//!   same flag from the config. `trainingInput.jobDir` is passed as `--job-dir`, as the service
//!   does, ahead of the args.
//! * A master that needs a GPU trains on CUDA when this binary has the `cuda` feature and a GPU
//!   is present; otherwise the run stops and says what was asked and what is missing, unless
//!   `--allow-cpu` is given (then it trains on the CPU and says so on stderr). An explicit
//!   `--device` wins over the config, like any other flag.
//! * Workers, parameter servers or evaluators (`workerCount` … > 0, or a preset tier that has
//!   them) are refused: this trainer runs on one machine. A distributed `TF_CONFIG` is refused for
//!   the same reason.
//! * The validated config, what it resolved to and what was applied go into `job.json`.
//!
//! Reading the command line (and merging a config's `args` into it) is `settings.rs`'s job; this
//! module only decides what a loaded config means for the run, so it never needs the `Cli` type.

use anyhow::{Context, Result, bail};
use compute_device::DeviceChoice;
use job_config::{DeviceKind, JobConfig, ResolvedJob, ScaleTier, TfConfig};
use serde_json::json;

/// `trainingInput.<name>`, or `<name>` for a bare TrainingInput document.
pub(crate) fn field_path(config: &JobConfig, name: &str) -> String {
    match config.training_input_path() {
        "" => name.to_string(),
        prefix => format!("{prefix}.{name}"),
    }
}

/// Whether this process can train on a CUDA GPU, and if not, why.
pub fn probe_cuda() -> std::result::Result<(), String> {
    compute_device::probe_cuda("trainer")
}

/// The device a run uses, and the config record for `job.json`.
pub struct AppliedJob {
    pub device: DeviceChoice,
    /// `None` without `--config`.
    pub record: Option<serde_json::Value>,
}

/// What the command line asked for that the config may override or must respect.
#[derive(Debug, Clone, Copy)]
pub struct Requested<'a> {
    /// The validated `--config`, if given.
    pub config: Option<&'a JobConfig>,
    /// `--device`, if given.
    pub device: Option<DeviceChoice>,
    /// `--allow-cpu`.
    pub allow_cpu: bool,
}

/// [`apply`] with `TF_CONFIG` read from the environment and CUDA probed for real.
pub fn apply_to_run(requested: Requested<'_>) -> Result<AppliedJob> {
    let tf_config = TfConfig::from_env()?;
    apply(requested, tf_config, probe_cuda)
}

/// Applies `--config` (if any) and `TF_CONFIG` (if set): refuses what this trainer cannot do,
/// and decides the device. `probe` says whether CUDA is usable (see [`probe_cuda`]).
pub fn apply(
    requested: Requested<'_>,
    tf_config: Option<TfConfig>,
    probe: impl FnOnce() -> std::result::Result<(), String>,
) -> Result<AppliedJob> {
    if let Some(tf_config) = &tf_config
        && tf_config.is_distributed()
    {
        let tasks: usize = tf_config.cluster.values().map(Vec::len).sum();
        bail!(
            "{}: the cluster lists {tasks} tasks, but this trainer runs on one machine \
             (distributed training is not implemented)",
            TfConfig::ENV_VAR
        );
    }
    let Some(config) = requested.config else {
        return Ok(AppliedJob {
            device: requested.device.unwrap_or(DeviceChoice::Auto),
            record: None,
        });
    };
    refuse_extra_replicas(config)?;
    let decision = decide_device(config, requested.device, requested.allow_cpu, probe)?;
    for note in &decision.notes {
        eprintln!("{note}");
    }
    if config.resolved.hyperparameter_tuning
        && let Ok(trial) = std::env::var(training::hypertune::TRIAL_ID_ENV)
    {
        eprintln!(
            "note: {}: running as trial {trial} of a hyperparameter-tuning job",
            config.source
        );
    } else if config.resolved.hyperparameter_tuning {
        eprintln!(
            "note: {}: {} is validated, but this trainer does not run a hyperparameter search; \
             training once with the flags as given",
            config.source,
            field_path(config, "hyperparameters")
        );
    }
    let mut record = serde_json::to_value(config).context("encoding the job config")?;
    if let Some(object) = record.as_object_mut() {
        object.insert(
            "applied".to_string(),
            json!({
                "device": decision.device.name(),
                "allow_cpu": requested.allow_cpu,
                "notes": decision.notes,
            }),
        );
        if let Some(tf_config) = &tf_config {
            object.insert(
                "tf_config".to_string(),
                serde_json::to_value(tf_config).context("encoding TF_CONFIG")?,
            );
        }
    }
    Ok(AppliedJob {
        device: decision.device,
        record: Some(record),
    })
}

fn refuse_extra_replicas(config: &JobConfig) -> Result<()> {
    match config.resolved.single_machine_refusal(&config.source) {
        Some(refusal) => bail!("{refusal}"),
        None => Ok(()),
    }
}

struct DeviceDecision {
    device: DeviceChoice,
    /// What the run should tell the user on stderr.
    notes: Vec<String>,
}

fn decide_device(
    config: &JobConfig,
    requested: Option<DeviceChoice>,
    allow_cpu: bool,
    probe: impl FnOnce() -> std::result::Result<(), String>,
) -> Result<DeviceDecision> {
    let master = &config.resolved.master;
    let asked = asked_for(&config.resolved);
    let decided = |device, notes| Ok(DeviceDecision { device, notes });
    match (master.device, requested) {
        // A CPU master: the config asks for nothing special, so honour an explicit --device and
        // otherwise train where the config says, on the CPU.
        (DeviceKind::Cpu, Some(device)) => decided(device, vec![]),
        (DeviceKind::Cpu, None) => decided(DeviceChoice::Cpu, vec![]),
        (_, Some(DeviceChoice::Cpu)) => decided(
            DeviceChoice::Cpu,
            vec![format!(
                "warning: {}: {asked}; training on the CPU because --device cpu was given",
                config.source
            )],
        ),
        (DeviceKind::Gpu, Some(DeviceChoice::Cuda)) => {
            decided(DeviceChoice::Cuda, gpu_notes(config))
        }
        (DeviceKind::Gpu, None | Some(DeviceChoice::Auto)) => match probe() {
            Ok(()) => decided(DeviceChoice::Cuda, gpu_notes(config)),
            Err(missing) => cpu_fallback(config, &asked, &missing, allow_cpu),
        },
        (DeviceKind::Tpu, _) => cpu_fallback(
            config,
            &asked,
            "this trainer cannot use Cloud TPUs",
            allow_cpu,
        ),
    }
}

/// "masterType standard_p100 asks for 1 × NVIDIA_TESLA_P100 GPU" or the scale tier's equivalent.
fn asked_for(resolved: &ResolvedJob) -> String {
    let master = &resolved.master;
    let who = if resolved.scale_tier == ScaleTier::Custom {
        format!("masterType {}", master.machine_type)
    } else {
        format!("scaleTier {}", resolved.scale_tier)
    };
    match (master.gpu_type, master.tpu_type) {
        (Some(gpu), _) => {
            let plural = if master.gpu_count == 1 { "" } else { "s" };
            format!("{who} asks for {} × {gpu} GPU{plural}", master.gpu_count)
        }
        (_, Some(tpu)) => format!("{who} asks for a Cloud TPU ({tpu})"),
        _ => format!("{who} asks for a CPU machine"),
    }
}

fn gpu_notes(config: &JobConfig) -> Vec<String> {
    let master = &config.resolved.master;
    if master.gpu_count > 1 {
        vec![format!(
            "note: {}: {}; this trainer uses one GPU (CUDA device 0)",
            config.source,
            asked_for(&config.resolved)
        )]
    } else {
        vec![]
    }
}

fn cpu_fallback(
    config: &JobConfig,
    asked: &str,
    missing: &str,
    allow_cpu: bool,
) -> Result<DeviceDecision> {
    if allow_cpu {
        Ok(DeviceDecision {
            device: DeviceChoice::Cpu,
            notes: vec![format!(
                "warning: {}: {asked}, but {missing}; training on the CPU because of --allow-cpu",
                config.source
            )],
        })
    } else {
        bail!(
            "{}: {asked}, but {missing}. Run a build with `--features cuda` on a machine with an \
             NVIDIA GPU, or pass --allow-cpu to train on the CPU anyway",
            config.source
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> JobConfig {
        JobConfig::parse(text, "c.yaml").unwrap()
    }

    const TUTORIAL: &str = "trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard_p100\n";
    const NO_CUDA: fn() -> std::result::Result<(), String> =
        || Err("this trainer was built without the `cuda` feature".to_string());
    const CUDA: fn() -> std::result::Result<(), String> = || Ok(());

    #[test]
    fn gpu_master_without_cuda_stops_with_what_was_asked_and_what_is_missing() {
        let error = decide_device(&config(TUTORIAL), None, false, NO_CUDA)
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "c.yaml: masterType standard_p100 asks for 1 × NVIDIA_TESLA_P100 GPU, but this \
             trainer was built without the `cuda` feature. Run a build with `--features cuda` on \
             a machine with an NVIDIA GPU, or pass --allow-cpu to train on the CPU anyway"
        );
    }

    #[test]
    fn allow_cpu_proceeds_and_says_so() {
        let decision = decide_device(&config(TUTORIAL), None, true, NO_CUDA).unwrap();
        assert_eq!(decision.device, DeviceChoice::Cpu);
        assert_eq!(
            decision.notes,
            [
                "warning: c.yaml: masterType standard_p100 asks for 1 × NVIDIA_TESLA_P100 GPU, but \
              this trainer was built without the `cuda` feature; training on the CPU because of \
              --allow-cpu"
            ]
        );
    }

    #[test]
    fn gpu_master_with_cuda_uses_it() {
        let decision = decide_device(&config(TUTORIAL), None, false, CUDA).unwrap();
        assert_eq!(decision.device, DeviceChoice::Cuda);
        assert!(decision.notes.is_empty());
        let four = config("trainingInput: {scaleTier: CUSTOM, masterType: complex_model_m_gpu}");
        let decision = decide_device(&four, None, false, CUDA).unwrap();
        assert_eq!(
            decision.notes,
            [
                "note: c.yaml: masterType complex_model_m_gpu asks for 4 × NVIDIA_TESLA_K80 GPUs; \
              this trainer uses one GPU (CUDA device 0)"
            ]
        );
    }

    #[test]
    fn explicit_device_flag_wins() {
        let decision =
            decide_device(&config(TUTORIAL), Some(DeviceChoice::Cpu), false, NO_CUDA).unwrap();
        assert_eq!(decision.device, DeviceChoice::Cpu);
        assert_eq!(decision.notes.len(), 1);
        let basic = config("trainingInput: {scaleTier: BASIC}");
        let decision = decide_device(&basic, Some(DeviceChoice::Cuda), false, NO_CUDA).unwrap();
        assert_eq!(decision.device, DeviceChoice::Cuda);
        let decision = decide_device(&basic, None, false, || panic!("no probe needed")).unwrap();
        assert_eq!(decision.device, DeviceChoice::Cpu);
    }

    #[test]
    fn scale_tier_gpu_and_tpu_masters() {
        let basic_gpu = config("trainingInput: {scaleTier: BASIC_GPU}");
        let error = decide_device(&basic_gpu, None, false, NO_CUDA)
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("c.yaml: scaleTier BASIC_GPU asks for 1 × NVIDIA_TESLA_K80 GPU, but"),
            "{error}"
        );
        let tpu = config("trainingInput: {scaleTier: CUSTOM, masterType: cloud_tpu}");
        let error = decide_device(&tpu, None, false, CUDA).err().unwrap();
        assert!(
            error.to_string().starts_with(
                "c.yaml: masterType cloud_tpu asks for a Cloud TPU (TPU_V2), but this trainer cannot use Cloud TPUs."
            ),
            "{error}"
        );
    }

    #[test]
    fn extra_replicas_are_refused() {
        let custom = config(
            "trainingInput: {scaleTier: CUSTOM, masterType: standard, workerType: standard, workerCount: 2, parameterServerType: standard, parameterServerCount: 1}",
        );
        assert_eq!(
            refuse_extra_replicas(&custom).unwrap_err().to_string(),
            "c.yaml: the job asks for workerCount 2 and parameterServerCount 1 besides the master, \
             but this trainer runs on one machine (distributed training is not implemented); set \
             workerCount, parameterServerCount and evaluatorCount to 0"
        );
        let standard = config("trainingInput: {scaleTier: STANDARD_1}");
        assert_eq!(
            refuse_extra_replicas(&standard).unwrap_err().to_string(),
            "c.yaml: the job asks for scaleTier STANDARD_1, which means workerCount 4 and \
             parameterServerCount 3 besides the master, but this trainer runs on one machine \
             (distributed training is not implemented); use scaleTier BASIC or BASIC_GPU, or \
             CUSTOM without workers and parameter servers"
        );
        assert!(refuse_extra_replicas(&config(TUTORIAL)).is_ok());
    }
}
