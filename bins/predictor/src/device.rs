//! `--device auto|cpu|cuda`: where `predictor local` and `predictor serve` run models.
//!
//! A GPU is only usable from a binary built with the `cuda` feature, so `auto` can only ever
//! pick one in such a build; there it says on stderr which device it picked and why, because the
//! same command may land on a machine with or without a GPU. A CPU-only build has no choice to
//! report and stays quiet (`predictor local` keeps gcloud's exact output). Asking for `cuda`
//! where it cannot work is an error, never a silent fallback.

use anyhow::{Result, bail};
use candle_core::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceChoice {
    /// A CUDA GPU when this build has the `cuda` feature and a GPU is present, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU 0; an error when the build or the machine cannot provide it.
    Cuda,
}

/// Opens the device `--device` asks for.
pub fn open(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => match open_cuda() {
            Ok(device) => Ok(device),
            Err(reason) => bail!("--device cuda: {reason}; use --device cpu or --device auto"),
        },
        DeviceChoice::Auto if cfg!(feature = "cuda") => match open_cuda() {
            Ok(device) => {
                eprintln!("Running models on CUDA GPU 0 (--device auto).");
                Ok(device)
            }
            Err(reason) => {
                eprintln!("Running models on the CPU (--device auto): {reason}.");
                Ok(Device::Cpu)
            }
        },
        DeviceChoice::Auto => Ok(Device::Cpu),
    }
}

/// CUDA GPU 0, or why it cannot be used.
fn open_cuda() -> Result<Device, String> {
    if !cfg!(feature = "cuda") {
        return Err(
            "this predictor was built without the `cuda` feature (build it with \
             `cargo build --release -p predictor --features cuda` on a machine with the CUDA toolkit)"
                .to_string(),
        );
    }
    Device::new_cuda(0).map_err(|error| format!("no usable CUDA GPU ({error})"))
}

/// A short name for logs: `cpu` or `cuda:0`.
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available() {
        assert!(matches!(open(DeviceChoice::Cpu), Ok(Device::Cpu)));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_an_error_naming_the_flag() {
        let error = open(DeviceChoice::Cuda)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with("--device cuda: "), "{error}");
        assert!(error.contains("without the `cuda` feature"), "{error}");
        assert!(matches!(open(DeviceChoice::Auto), Ok(Device::Cpu)));
    }
}
