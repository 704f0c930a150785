//! TFRecord framing, the container of event files:
//! `u64 length (LE) | u32 masked CRC-32C of those 8 bytes | data | u32 masked CRC-32C of data`.
//!
//! The checksums use the LevelDB/TensorFlow masking from `savedmodel-format`'s `crc` module, the
//! same code that checks tensor bundles.

use savedmodel_format::crc::masked_crc32c;

use crate::TfEventsError;

/// Bytes of framing around each record's data: length, length CRC, data CRC.
pub const RECORD_OVERHEAD: usize = 8 + 4 + 4;

/// Appends one framed record holding `data` to `out`.
pub fn append_record(out: &mut Vec<u8>, data: &[u8]) {
    let length = (data.len() as u64).to_le_bytes();
    out.reserve(RECORD_OVERHEAD + data.len());
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// The data of every record in `bytes`, in order, with both checksums verified.
///
/// `file` names the source in errors. A record cut short (a file still being written, or a
/// truncated copy) is an error too, naming the byte offset where that record starts: a reader
/// that wants to tail a growing file can retry from there later.
pub fn read_records<'a>(bytes: &'a [u8], file: &str) -> Result<Vec<&'a [u8]>, TfEventsError> {
    let corrupt = |offset: usize, reason: String| TfEventsError::CorruptRecord {
        file: file.to_string(),
        offset: offset as u64,
        reason,
    };
    let mut records = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let (Some(length_bytes), Some(length_crc)) = (rest.get(..8), rest.get(8..12)) else {
            return Err(corrupt(
                offset,
                format!(
                    "record header cut short: {} of 12 bytes",
                    rest.len().min(12)
                ),
            ));
        };
        if masked_crc32c(length_bytes).to_le_bytes() != length_crc {
            return Err(corrupt(offset, "length checksum mismatch".to_string()));
        }
        let mut length_array = [0u8; 8];
        length_array.copy_from_slice(length_bytes);
        let length = u64::from_le_bytes(length_array);
        let available = (rest.len() - 12).saturating_sub(4) as u64;
        if length > available {
            return Err(corrupt(
                offset,
                format!(
                    "record of {length} bytes cut short: only {} bytes follow its header",
                    rest.len() - 12
                ),
            ));
        }
        // `length <= available < usize::MAX`, so the conversion cannot truncate.
        let length = length as usize;
        let data = &rest[12..12 + length];
        let data_crc = &rest[12 + length..12 + length + 4];
        if masked_crc32c(data).to_le_bytes() != data_crc {
            return Err(corrupt(offset, "data checksum mismatch".to_string()));
        }
        records.push(data);
        offset += RECORD_OVERHEAD + length;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TensorBoard's own golden vector (`tensorboard/data/server/tf_record.rs`): the first record
    /// of a TF2 event file, a `file_version` event.
    #[test]
    fn matches_tensorboards_golden_record() {
        let data = b"\x09\x00\x00\x80\x38\x99\xd6\xd7\x41\x1a\x0dbrain.Event:2";
        let mut framed = Vec::new();
        append_record(&mut framed, data);
        assert_eq!(
            &framed[..12],
            &[0x18, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0x7f, 0x4b, 0x22]
        );
        assert_eq!(&framed[12..12 + data.len()], data);
        assert_eq!(&framed[12 + data.len()..], &[0x12, 0x4b, 0x36, 0xab]);
        assert_eq!(read_records(&framed, "golden").unwrap(), [&data[..]]);
    }

    #[test]
    fn reads_back_several_records_including_empty_ones() {
        let mut framed = Vec::new();
        for data in [&b"first"[..], b"", b"third record"] {
            append_record(&mut framed, data);
        }
        assert_eq!(
            read_records(&framed, "f").unwrap(),
            [&b"first"[..], b"", b"third record"]
        );
        assert!(read_records(&[], "empty").unwrap().is_empty());
    }

    #[test]
    fn truncation_and_bit_flips_are_reported_with_the_record_offset() {
        let mut framed = Vec::new();
        append_record(&mut framed, b"one");
        let second = framed.len();
        append_record(&mut framed, b"two!");

        for cut in second + 1..framed.len() {
            let error = read_records(&framed[..cut], "run/events").unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains("run/events") && message.contains(&format!("byte {second}")),
                "cut at {cut}: {message}"
            );
            assert!(message.contains("cut short"), "cut at {cut}: {message}");
        }

        for (flip, expected) in [
            (second, "length checksum"),
            (second + 9, "length checksum"),
            (second + 13, "data checksum"),
            (framed.len() - 1, "data checksum"),
        ] {
            let mut damaged = framed.clone();
            damaged[flip] ^= 0x10;
            let message = read_records(&damaged, "f").unwrap_err().to_string();
            assert!(
                message.contains(expected) && message.contains(&format!("byte {second}")),
                "flip at {flip}: {message}"
            );
        }
    }

    #[test]
    fn a_huge_length_is_refused_without_allocating() {
        let mut framed = Vec::new();
        let length = u64::MAX.to_le_bytes();
        framed.extend_from_slice(&length);
        framed.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
        let message = read_records(&framed, "f").unwrap_err().to_string();
        assert!(message.contains("cut short"), "{message}");
    }

    proptest::proptest! {
        #[test]
        fn framing_round_trips_and_garbage_never_panics(
            datas in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..5),
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let mut framed = Vec::new();
            for data in &datas {
                append_record(&mut framed, data);
            }
            let read = read_records(&framed, "f").unwrap();
            proptest::prop_assert_eq!(read.len(), datas.len());
            for (read, data) in read.iter().zip(&datas) {
                proptest::prop_assert_eq!(*read, data.as_slice());
            }
            let _ = read_records(&garbage, "garbage");
        }
    }
}
