//! Property tests: no input makes the decoder panic, and no damaged file decodes.

// Helpers shared by the tests panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use idx_dataset::{Dataset, IdxKind, decode_idx};
use proptest::prelude::*;

fn idx_bytes(dtype: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, dtype, dims.len() as u8];
    for dim in dims {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(payload);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A valid images file of `count` images of `rows` x `cols`.
fn valid_images() -> impl Strategy<Value = Vec<u8>> {
    (0u32..6, 1u32..6, 1u32..6).prop_flat_map(|(count, rows, cols)| {
        proptest::collection::vec(any::<u8>(), (count * rows * cols) as usize)
            .prop_map(move |payload| idx_bytes(0x08, &[count, rows, cols], &payload))
    })
}

/// Checks the invariant of every successful decode: the data is exactly what the dims say.
fn check(bytes: &[u8], kind: IdxKind) {
    if let Ok(array) = decode_idx("fuzz", bytes, kind) {
        let product: u64 = array.dims.iter().map(|&d| u64::from(d)).product();
        assert_eq!(array.data.len() as u64, product);
        assert_eq!(array.dims.len(), usize::from(kind.rank()));
    }
}

proptest! {
    // Each case takes microseconds; many cases make the search worthwhile.
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes, IdxKind::Images);
        check(&bytes, IdxKind::Labels);
        let mut gz_prefixed = vec![0x1f, 0x8b];
        gz_prefixed.extend_from_slice(&bytes);
        check(&gz_prefixed, IdxKind::Images);
    }

    #[test]
    fn random_headers_with_short_payloads_never_panic(
        dtype in prop_oneof![Just(0x08u8), any::<u8>()],
        dims in proptest::collection::vec(any::<u32>(), 0..5),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let bytes = idx_bytes(dtype, &dims, &payload);
        check(&bytes, IdxKind::Images);
        check(&bytes, IdxKind::Labels);
        check(&gzip(&bytes), IdxKind::Images);
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_an_error(file in valid_images(), cut_fraction in 0.0f64..1.0) {
        prop_assert!(decode_idx("whole", &file, IdxKind::Images).is_ok());
        let cut = ((file.len() as f64) * cut_fraction) as usize;
        prop_assume!(cut < file.len());
        prop_assert!(decode_idx("cut", &file[..cut], IdxKind::Images).is_err());
        let compressed = gzip(&file[..cut]);
        prop_assert!(decode_idx("cut.gz", &compressed, IdxKind::Images).is_err());
        // A cut through the compressed stream itself.
        let whole = gzip(&file);
        let gz_cut = ((whole.len() as f64) * cut_fraction) as usize;
        prop_assert!(decode_idx("cut-stream.gz", &whole[..gz_cut], IdxKind::Images).is_err());
    }

    #[test]
    fn damaged_files_never_panic(file in valid_images(), position in any::<usize>(), flip in 1u8..=255) {
        let mut raw = file.clone();
        let at = position % raw.len();
        raw[at] ^= flip;
        check(&raw, IdxKind::Images);
        let mut compressed = gzip(&file);
        let at = position % compressed.len();
        compressed[at] ^= flip;
        check(&compressed, IdxKind::Images);
    }

    #[test]
    fn random_image_and_label_pairs_never_panic(
        images in proptest::collection::vec(any::<u8>(), 0..64),
        labels in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = Dataset::from_idx_bytes("images", &images, "labels", &labels);
    }
}
