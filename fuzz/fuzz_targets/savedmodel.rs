//! `saved_model.pb` bytes through the whole loader: protobuf decoding, meta graph selection,
//! function inlining, signature planning, constant decoding and the memory budget. Loads under
//! a small budget, so a graph that asks for much memory is an error, not an out-of-memory.
#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use savedmodel_runtime::{LoadLimits, LoadedModel};

fuzz_target!(|data: &[u8]| {
    let limits = LoadLimits {
        memory_budget: 64 << 20,
        max_batch: 2,
    };
    let _ = LoadedModel::from_files_with(data, None, None, &["serve"], &Device::Cpu, &limits);
});
