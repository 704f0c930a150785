//! compute-device: `--device auto|cpu|cuda`, the one place the trainer and the predictor decide
//! which candle [`Device`] they run on.
//!
//! Why a crate of its own: both binaries take the same flag with the same meaning, and before
//! this crate each carried its own copy that had already drifted (different messages, different
//! fallbacks). Neither `mnist-model` nor `savedmodel-runtime` is the right home, since each
//! binary uses only one of them; this crate depends on candle alone.
//!
//! The rules:
//! * A GPU is only usable from a binary built with the `cuda` feature (which turns on this
//!   crate's `cuda` feature), so `auto` can only ever pick one in such a build. There it says on
//!   stderr which device it picked and why, because the same command may land on a machine with
//!   or without a GPU. A CPU-only build has no choice to report and stays quiet (`predictor
//!   local` keeps gcloud's exact output).
//! * Asking for `cuda` where it cannot work is an error naming the flag, never a silent
//!   fallback.

use candle_core::Device;

/// The value of `--device`.
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

impl DeviceChoice {
    /// The flag value: `auto`, `cpu` or `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        }
    }
}

/// `--device cuda` could not be honoured.
#[derive(Debug, thiserror::Error)]
#[error("--device cuda: {reason}; use --device cpu or --device auto")]
pub struct DeviceError {
    /// Why CUDA GPU 0 cannot be used (no `cuda` feature in this build, or no usable GPU).
    pub reason: String,
}

/// Opens the device `choice` asks for. `binary` names the program in the hint about building
/// with CUDA (`cargo build --release -p <binary> --features cuda`); `purpose` is what runs there,
/// for the `auto` note on stderr ("training", "running models").
pub fn open(choice: DeviceChoice, binary: &str, purpose: &str) -> Result<Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => open_cuda(binary).map_err(|reason| DeviceError {
            reason: if cfg!(feature = "cuda") {
                reason
            } else {
                format!(
                    "{reason} (build it with `cargo build --release -p {binary} --features cuda` \
                     on a machine with the CUDA toolkit)"
                )
            },
        }),
        DeviceChoice::Auto if cfg!(feature = "cuda") => match open_cuda(binary) {
            Ok(device) => {
                eprintln!("{} on CUDA GPU 0 (--device auto).", capitalised(purpose));
                Ok(device)
            }
            Err(reason) => {
                eprintln!(
                    "{} on the CPU (--device auto): {reason}.",
                    capitalised(purpose)
                );
                Ok(Device::Cpu)
            }
        },
        DeviceChoice::Auto => Ok(Device::Cpu),
    }
}

/// Whether CUDA GPU 0 is usable by this build on this machine; `Err` says why not. Opens the
/// device and drops it again.
pub fn probe_cuda(binary: &str) -> Result<(), String> {
    open_cuda(binary).map(|_| ())
}

/// CUDA GPU 0, or why it cannot be used.
fn open_cuda(binary: &str) -> Result<Device, String> {
    if !cfg!(feature = "cuda") {
        return Err(format!(
            "this {binary} was built without the `cuda` feature"
        ));
    }
    Device::new_cuda(0).map_err(|error| format!("no usable CUDA GPU ({error})"))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
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
        assert!(matches!(
            open(DeviceChoice::Cpu, "trainer", "training"),
            Ok(Device::Cpu)
        ));
        assert_eq!(describe(&Device::Cpu), "cpu");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_an_error_naming_the_flag_and_the_build() {
        let error = open(DeviceChoice::Cuda, "predictor", "running models")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with("--device cuda: "), "{error}");
        assert!(
            error.contains("this predictor was built without the `cuda` feature"),
            "{error}"
        );
        assert!(error.contains("-p predictor --features cuda"), "{error}");
        assert!(matches!(
            open(DeviceChoice::Auto, "predictor", "running models"),
            Ok(Device::Cpu)
        ));
        assert!(probe_cuda("trainer").is_err());
    }

    #[test]
    fn names_are_the_flag_values() {
        use clap::ValueEnum;
        for choice in DeviceChoice::value_variants() {
            let parsed = DeviceChoice::from_str(choice.name(), false);
            assert_eq!(parsed.ok(), Some(*choice));
        }
    }
}
