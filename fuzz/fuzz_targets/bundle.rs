//! The variables tensor bundle: an index (SSTable of BundleEntryProtos) and one data shard,
//! every tensor read back. Input: a 4-byte little-endian index length, the index, the shard.
#![no_main]

use libfuzzer_sys::fuzz_target;
use savedmodel_format::bundle::BundleIndex;

fuzz_target!(|data: &[u8]| {
    let Some((length, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let length = (u32::from_le_bytes(*length) as usize).min(rest.len());
    let (index, shard) = rest.split_at(length);
    let Ok(index) = BundleIndex::parse("variables.index", index) else {
        return;
    };
    let shards: Vec<Option<&[u8]>> = (0..index.num_shards().min(4))
        .map(|i| (i == 0).then_some(shard))
        .collect();
    let names: Vec<String> = index.tensor_names().map(str::to_string).collect();
    for name in names.iter().take(64) {
        let _ = index.tensor_spec(name);
        let _ = index.read_tensor(name, &shards);
    }
});
