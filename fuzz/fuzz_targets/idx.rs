//! IDX files (raw or gzip), both kinds, then a dataset from an images/labels pair: any bytes
//! give a value or an error, never a panic, and never an allocation the input does not justify.
#![no_main]

use idx_dataset::{Dataset, IdxKind, decode_idx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_idx("images", data, IdxKind::Images);
    let _ = decode_idx("labels", data, IdxKind::Labels);
    // The first byte splits the rest into an images file and a labels file.
    if let Some((&split, rest)) = data.split_first() {
        let at = (split as usize * rest.len()) / 255;
        let (images, labels) = rest.split_at(at.min(rest.len()));
        let _ = Dataset::from_idx_bytes("images", images, "labels", labels);
    }
});
