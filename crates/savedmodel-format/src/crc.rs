//! CRC-32C with LevelDB/TensorFlow masking.
//!
//! Every checksum stored in a bundle (block trailers, `BundleEntryProto.crc32c`, the
//! string-length checksum of DT_STRING tensors) is *masked*: a CRC computed over data that
//! itself contains CRCs is otherwise prone to trivial collisions, so LevelDB rotates it and adds
//! a constant before storing it.

const MASK_DELTA: u32 = 0xa282_ead8;

/// Masks a CRC the way TensorFlow stores it: rotate right by 15 bits, then add a constant.
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Inverse of [`mask`].
pub fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// Plain CRC-32C (Castagnoli) of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Masked CRC-32C of `bytes`, as stored in bundle files.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    mask(crc32c(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_and_mask_examples() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        // docs/reference/tensor_bundle.md §5: 12 zero bytes.
        assert_eq!(crc32c(&[0u8; 12]), 0x2b60_b55d);
        assert_eq!(masked_crc32c(&[0u8; 12]), 0x0d3d_4199);
    }

    #[test]
    fn unmask_inverts_mask() {
        for value in [0u32, 1, 0xffff_ffff, 0xdead_beef, 0x2b60_b55d] {
            assert_eq!(unmask(mask(value)), value);
        }
    }
}
