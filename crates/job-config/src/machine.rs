//! Machine types, accelerators, scale tiers and the small availability tables behind them.
//!
//! Facts and their sources:
//! - Legacy machine types and the GPUs they carry: the project's reference notes
//!   (`docs/reference/serving_api.md` B5), which follow Cloud's "Specifying machine types or scale tiers" page.
//! - Accelerator names: the `AcceleratorConfig.type` enum of the `ml.googleapis.com/v1` API
//!   (as generated into the gcloud SDK's `ml_v1_messages.py`).
//! - Compute Engine machine shapes (`n1-standard-8`, `a2-highgpu-1g`, …) and how many of each GPU
//!   an N1 machine can take: Compute Engine's machine-series and GPU pages. The tables check the
//!   *shape* of a name; they are not a live catalogue, and AI Platform Training accepted only a
//!   subset of these machines.
//! - GPU regions: the tutorial's list (us-east1, us-central1, asia-east1, europe-west1). The real
//!   service later offered GPUs in more regions and per GPU model; this table is deliberately the
//!   tutorial's, and the error says so, so a refusal is never mistaken for the service's verdict.

use std::fmt;

use serde::{Serialize, Serializer};

/// Defines an enum whose values are written as fixed API names, with `Display` and `Serialize`
/// producing exactly those names.
macro_rules! api_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $api:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in the API's documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name the API (and a config file) uses for this value.
            pub fn api_name(self) -> &'static str {
                match self { $($name::$variant => $api,)+ }
            }

            /// Parses an exact API name.
            pub fn from_api_name(text: &str) -> Option<Self> {
                crate::walk::parse_enum(text)
            }
        }

        impl crate::walk::ApiEnum for $name {
            const ALL: &'static [Self] = $name::ALL;
            fn api_name(self) -> &'static str { $name::api_name(self) }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.api_name())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.api_name())
            }
        }
    };
}
pub(crate) use api_enum;

api_enum! {
    /// `trainingInput.scaleTier`.
    pub enum ScaleTier {
        Basic => "BASIC",
        Standard1 => "STANDARD_1",
        Premium1 => "PREMIUM_1",
        BasicGpu => "BASIC_GPU",
        BasicTpu => "BASIC_TPU",
        Custom => "CUSTOM",
    }
}

api_enum! {
    /// `acceleratorConfig.type`. (`ACCELERATOR_TYPE_UNSPECIFIED` and the TPU pod slices exist in
    /// the API but cannot be used for a single training machine, so they are not accepted.)
    pub enum AcceleratorType {
        NvidiaTeslaK80 => "NVIDIA_TESLA_K80",
        NvidiaTeslaP4 => "NVIDIA_TESLA_P4",
        NvidiaTeslaP100 => "NVIDIA_TESLA_P100",
        NvidiaTeslaT4 => "NVIDIA_TESLA_T4",
        NvidiaTeslaV100 => "NVIDIA_TESLA_V100",
        NvidiaTeslaA100 => "NVIDIA_TESLA_A100",
        TpuV2 => "TPU_V2",
        TpuV3 => "TPU_V3",
    }
}

impl AcceleratorType {
    pub fn is_gpu(self) -> bool {
        !self.is_tpu()
    }

    pub fn is_tpu(self) -> bool {
        matches!(self, AcceleratorType::TpuV2 | AcceleratorType::TpuV3)
    }

    /// How many of this GPU one N1 machine can take (Compute Engine's GPU page); `None` for
    /// accelerators that do not attach to N1 machines at all.
    pub(crate) fn n1_counts(self) -> Option<&'static [u32]> {
        match self {
            AcceleratorType::NvidiaTeslaK80 | AcceleratorType::NvidiaTeslaV100 => {
                Some(&[1, 2, 4, 8])
            }
            AcceleratorType::NvidiaTeslaP4
            | AcceleratorType::NvidiaTeslaP100
            | AcceleratorType::NvidiaTeslaT4 => Some(&[1, 2, 4]),
            AcceleratorType::NvidiaTeslaA100 | AcceleratorType::TpuV2 | AcceleratorType::TpuV3 => {
                None
            }
        }
    }
}

/// The cores of one Cloud TPU device (v2-8 / v3-8), the only size a `cloud_tpu` worker gets.
pub const TPU_CORES_PER_DEVICE: u32 = 8;

api_enum! {
    /// The legacy AI Platform machine type names.
    pub enum LegacyMachineType {
        Standard => "standard",
        LargeModel => "large_model",
        ComplexModelS => "complex_model_s",
        ComplexModelM => "complex_model_m",
        ComplexModelL => "complex_model_l",
        StandardGpu => "standard_gpu",
        ComplexModelMGpu => "complex_model_m_gpu",
        ComplexModelLGpu => "complex_model_l_gpu",
        StandardP100 => "standard_p100",
        ComplexModelMP100 => "complex_model_m_p100",
        StandardV100 => "standard_v100",
        LargeModelV100 => "large_model_v100",
        ComplexModelMV100 => "complex_model_m_v100",
        ComplexModelLV100 => "complex_model_l_v100",
    }
}

impl LegacyMachineType {
    /// The GPUs built into this machine type (reference B5 table).
    pub fn gpus(self) -> Option<(AcceleratorType, u32)> {
        use AcceleratorType::{
            NvidiaTeslaK80 as K80, NvidiaTeslaP100 as P100, NvidiaTeslaV100 as V100,
        };
        use LegacyMachineType::*;
        match self {
            Standard | LargeModel | ComplexModelS | ComplexModelM | ComplexModelL => None,
            StandardGpu => Some((K80, 1)),
            ComplexModelMGpu => Some((K80, 4)),
            ComplexModelLGpu => Some((K80, 8)),
            StandardP100 => Some((P100, 1)),
            ComplexModelMP100 => Some((P100, 4)),
            StandardV100 | LargeModelV100 => Some((V100, 1)),
            ComplexModelMV100 => Some((V100, 4)),
            ComplexModelLV100 => Some((V100, 8)),
        }
    }
}

/// The special machine type name for a Cloud TPU worker.
pub const CLOUD_TPU: &str = "cloud_tpu";

/// A machine type as written in `masterType`, `workerType`, … after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineType {
    Legacy(LegacyMachineType),
    ComputeEngine(ComputeEngineMachine),
    /// `cloud_tpu`: a TPU worker; the TPU comes from `acceleratorConfig` (default TPU_V2).
    CloudTpu,
}

impl MachineType {
    pub fn name(&self) -> &str {
        match self {
            MachineType::Legacy(legacy) => legacy.api_name(),
            MachineType::ComputeEngine(machine) => &machine.name,
            MachineType::CloudTpu => CLOUD_TPU,
        }
    }

    /// "legacy" or "Compute Engine": the API requires all replicas of a job to use one kind.
    pub(crate) fn category(&self) -> Option<&'static str> {
        match self {
            MachineType::Legacy(_) => Some("a legacy machine type"),
            MachineType::ComputeEngine(_) => Some("a Compute Engine machine type"),
            MachineType::CloudTpu => None,
        }
    }
}

impl fmt::Display for MachineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for MachineType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A Compute Engine machine type name, checked against the series tables below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeEngineMachine {
    pub name: String,
    /// `n1`, `e2`, `a2`, …
    pub family: &'static str,
    pub vcpus: u32,
    /// GPUs that come with the machine (the A2 series); N1 machines get theirs from
    /// `acceleratorConfig` instead.
    pub built_in_gpus: Option<(AcceleratorType, u32)>,
}

impl ComputeEngineMachine {
    /// Whether `acceleratorConfig` may add GPUs to this machine (only the N1 series).
    pub(crate) fn takes_attached_gpus(&self) -> bool {
        self.family == "n1"
    }
}

/// One Compute Engine series: `family-kind-SIZE`.
struct Series {
    family: &'static str,
    kind: &'static str,
    /// vCPU counts; for the A2 GPU series, GPU counts written as `<n>g`.
    sizes: &'static [u32],
    a2_gpus: bool,
}

const fn series(family: &'static str, kind: &'static str, sizes: &'static [u32]) -> Series {
    Series {
        family,
        kind,
        sizes,
        a2_gpus: false,
    }
}

const SERIES: &[Series] = &[
    series("n1", "standard", &[1, 2, 4, 8, 16, 32, 64, 96]),
    series("n1", "highmem", &[2, 4, 8, 16, 32, 64, 96]),
    series("n1", "highcpu", &[2, 4, 8, 16, 32, 64, 96]),
    series("n2", "standard", &[2, 4, 8, 16, 32, 48, 64, 80, 96, 128]),
    series("n2", "highmem", &[2, 4, 8, 16, 32, 48, 64, 80, 96, 128]),
    series("n2", "highcpu", &[2, 4, 8, 16, 32, 48, 64, 80, 96]),
    series("e2", "standard", &[2, 4, 8, 16, 32]),
    series("e2", "highmem", &[2, 4, 8, 16]),
    series("e2", "highcpu", &[2, 4, 8, 16, 32]),
    series("c2", "standard", &[4, 8, 16, 30, 60]),
    series("m1", "ultramem", &[40, 80, 160]),
    series("m1", "megamem", &[96]),
    Series {
        family: "a2",
        kind: "highgpu",
        sizes: &[1, 2, 4, 8],
        a2_gpus: true,
    },
    Series {
        family: "a2",
        kind: "megagpu",
        sizes: &[16],
        a2_gpus: true,
    },
];

/// vCPUs per A100 in the A2 high-GPU series (a2-highgpu-1g has 12 vCPUs); the 16-GPU mega
/// machine has 96.
fn a2_vcpus(gpus: u32) -> u32 {
    if gpus == 16 { 96 } else { 12 * gpus }
}

/// Every machine type name this crate knows, for did-you-mean suggestions.
pub(crate) fn all_machine_type_names() -> Vec<String> {
    let mut names: Vec<String> = LegacyMachineType::ALL
        .iter()
        .map(|legacy| legacy.api_name().to_string())
        .collect();
    names.push(CLOUD_TPU.to_string());
    for series in SERIES {
        for size in series.sizes {
            let suffix = if series.a2_gpus { "g" } else { "" };
            names.push(format!("{}-{}-{size}{suffix}", series.family, series.kind));
        }
    }
    names
}

/// `a, b or c`.
pub(crate) fn join_or(values: &[String]) -> String {
    match values {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Parses a machine type name, or explains what is wrong with it.
pub(crate) fn parse_machine_type(name: &str) -> Result<MachineType, String> {
    if let Some(legacy) = LegacyMachineType::from_api_name(name) {
        return Ok(MachineType::Legacy(legacy));
    }
    if name == CLOUD_TPU {
        return Ok(MachineType::CloudTpu);
    }
    let parts: Vec<&str> = name.split('-').collect();
    if let [family, kind, size] = parts[..]
        && SERIES.iter().any(|series| series.family == family)
    {
        let kinds: Vec<&Series> = SERIES.iter().filter(|s| s.family == family).collect();
        let Some(series) = kinds.iter().find(|series| series.kind == kind) else {
            let shapes: Vec<String> = kinds
                .iter()
                .map(|s| {
                    let unit = if s.a2_gpus { "Ng" } else { "N" };
                    format!("{family}-{}-{unit}", s.kind)
                })
                .collect();
            return Err(format!(
                "unknown machine type {}: {family} machine types are {}",
                crate::node::quote(name),
                join_or(&shapes)
            ));
        };
        let (digits, unit) = if series.a2_gpus {
            (
                size.strip_suffix('g').unwrap_or("?"),
                " GPUs (written as <N>g)",
            )
        } else {
            (size, " vCPUs")
        };
        let parsed = digits
            .parse::<u32>()
            .ok()
            .filter(|n| series.sizes.contains(n));
        let Some(count) = parsed else {
            let sizes: Vec<String> = series.sizes.iter().map(u32::to_string).collect();
            return Err(format!(
                "unknown machine type {}: {family}-{kind} comes with {}{unit}",
                crate::node::quote(name),
                join_or(&sizes)
            ));
        };
        let (vcpus, built_in_gpus) = if series.a2_gpus {
            (
                a2_vcpus(count),
                Some((AcceleratorType::NvidiaTeslaA100, count)),
            )
        } else {
            (count, None)
        };
        return Ok(MachineType::ComputeEngine(ComputeEngineMachine {
            name: name.to_string(),
            family: series.family,
            vcpus,
            built_in_gpus,
        }));
    }
    let names = all_machine_type_names();
    match crate::walk::suggest(name, names.iter().map(String::as_str)) {
        Some(suggestion) => Err(format!(
            "unknown machine type {}; did you mean {suggestion}?",
            crate::node::quote(name)
        )),
        None => Err(format!(
            "unknown machine type {}; expected a legacy name such as standard, standard_gpu or \
             complex_model_m_v100, or a Compute Engine name such as n1-standard-8 or a2-highgpu-1g",
            crate::node::quote(name)
        )),
    }
}

/// Regions in which this tool accepts GPUs: the tutorial's list (see the module docs for why it
/// is not larger).
pub const GPU_REGIONS: &[&str] = &["us-east1", "us-central1", "asia-east1", "europe-west1"];

/// Regions in which this tool accepts Cloud TPUs (where Cloud TPU v2-8/v3-8 devices are offered:
/// Cloud TPU's regions-and-zones page).
pub const TPU_REGIONS: &[&str] = &["us-central1", "europe-west4"];

/// `us-central1`, `europe-west4`, `northamerica-northeast1`: a region name's shape.
pub(crate) fn is_region_name(region: &str) -> bool {
    let Some((area, rest)) = region.split_once('-') else {
        return false;
    };
    let digits_at = rest
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (direction, number) = rest.split_at(digits_at);
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && !direction.is_empty()
        && direction.bytes().all(|b| b.is_ascii_lowercase())
        && !number.is_empty()
        && number.len() <= 3
        && number.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_gpu_table_matches_reference() {
        use AcceleratorType::*;
        use LegacyMachineType::*;
        let table = [
            (Standard, None),
            (LargeModel, None),
            (ComplexModelS, None),
            (ComplexModelM, None),
            (ComplexModelL, None),
            (StandardGpu, Some((NvidiaTeslaK80, 1))),
            (ComplexModelMGpu, Some((NvidiaTeslaK80, 4))),
            (ComplexModelLGpu, Some((NvidiaTeslaK80, 8))),
            (StandardP100, Some((NvidiaTeslaP100, 1))),
            (ComplexModelMP100, Some((NvidiaTeslaP100, 4))),
            (StandardV100, Some((NvidiaTeslaV100, 1))),
            (LargeModelV100, Some((NvidiaTeslaV100, 1))),
            (ComplexModelMV100, Some((NvidiaTeslaV100, 4))),
            (ComplexModelLV100, Some((NvidiaTeslaV100, 8))),
        ];
        assert_eq!(table.len(), LegacyMachineType::ALL.len());
        for (machine, gpus) in table {
            assert_eq!(machine.gpus(), gpus, "{machine}");
        }
    }

    #[test]
    fn compute_engine_names() {
        let n1 = parse_machine_type("n1-highmem-8").unwrap();
        let MachineType::ComputeEngine(machine) = n1 else {
            panic!("not CE")
        };
        assert_eq!(
            (machine.family, machine.vcpus, machine.built_in_gpus),
            ("n1", 8, None)
        );
        let a2 = parse_machine_type("a2-highgpu-4g").unwrap();
        let MachineType::ComputeEngine(machine) = a2 else {
            panic!("not CE")
        };
        assert_eq!(machine.vcpus, 48);
        assert_eq!(
            machine.built_in_gpus,
            Some((AcceleratorType::NvidiaTeslaA100, 4))
        );
        assert_eq!(
            parse_machine_type("n1-standard-3").unwrap_err(),
            "unknown machine type \"n1-standard-3\": n1-standard comes with 1, 2, 4, 8, 16, 32, 64 or 96 vCPUs"
        );
        assert_eq!(
            parse_machine_type("a2-highgpu-3g").unwrap_err(),
            "unknown machine type \"a2-highgpu-3g\": a2-highgpu comes with 1, 2, 4 or 8 GPUs (written as <N>g)"
        );
        assert_eq!(
            parse_machine_type("n1-superfast-8").unwrap_err(),
            "unknown machine type \"n1-superfast-8\": n1 machine types are n1-standard-N, n1-highmem-N or n1-highcpu-N"
        );
        assert_eq!(
            parse_machine_type("standard-gpu").unwrap_err(),
            "unknown machine type \"standard-gpu\"; did you mean standard_gpu?"
        );
        assert_eq!(
            parse_machine_type("n1-standrd-8").unwrap_err(),
            "unknown machine type \"n1-standrd-8\": n1 machine types are n1-standard-N, n1-highmem-N or n1-highcpu-N"
        );
        assert_eq!(
            parse_machine_type("x9-standrd-8").unwrap_err(),
            "unknown machine type \"x9-standrd-8\"; did you mean n1-standard-8?"
        );
    }

    #[test]
    fn region_names() {
        for good in [
            "us-central1",
            "europe-west4",
            "northamerica-northeast1",
            "asia-east1",
        ] {
            assert!(is_region_name(good), "{good}");
        }
        for bad in [
            "us",
            "us-central",
            "US-central1",
            "us-central1-a",
            "-central1",
            "us-1",
        ] {
            assert!(!is_region_name(bad), "{bad}");
        }
    }
}
