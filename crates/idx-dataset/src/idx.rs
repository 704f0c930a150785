//! The IDX file format, decoded defensively.
//!
//! An IDX file is a 4-byte magic number — two zero bytes, an element-type byte and a rank byte —
//! then `rank` big-endian `u32` dimension sizes, then the elements in row-major order. MNIST
//! uses unsigned bytes (type 0x08): images have rank 3 (`[n, rows, cols]`, magic 2051) and
//! labels rank 1 (`[n]`, magic 2049).
//!
//! Nothing here trusts the header: the payload size is computed with checked arithmetic and
//! compared with the bytes actually present before anything is allocated for them, and a gzip
//! stream is never decompressed beyond what the header allows (plus one byte to detect excess),
//! nor beyond [`MAX_IDX_BYTES`].

use std::io::Read;

use flate2::read::MultiGzDecoder;

use crate::IdxError;

/// Magic number of an IDX file of unsigned-byte images (`[n, rows, cols]`).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (`[n]`).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The only element type supported: unsigned byte.
pub const DTYPE_U8: u8 = 0x08;
/// The largest payload accepted, compressed or not (2 GiB). MNIST's largest file is 47 MB; the
/// cap is what stops a gzip bomb or a lying header from exhausting memory.
pub const MAX_IDX_BYTES: u64 = 2 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Deflate cannot expand data more than about 1032:1, so a buffer reserved up to this multiple
/// of the compressed size (itself already in memory) is never absurd, whatever the header says.
const GZIP_RESERVE_RATIO: usize = 8;

/// Which of the two MNIST IDX layouts a file must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxKind {
    /// Rank 3, `[n, rows, cols]`, magic 2051.
    Images,
    /// Rank 1, `[n]`, magic 2049.
    Labels,
}

impl IdxKind {
    /// The magic number files of this kind start with.
    pub fn magic(self) -> u32 {
        match self {
            IdxKind::Images => IMAGES_MAGIC,
            IdxKind::Labels => LABELS_MAGIC,
        }
    }

    /// The number of dimensions.
    pub fn rank(self) -> u8 {
        match self {
            IdxKind::Images => 3,
            IdxKind::Labels => 1,
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            IdxKind::Images => "an images file (unsigned bytes, rank 3)",
            IdxKind::Labels => "a labels file (unsigned bytes, rank 1)",
        }
    }

    fn dimension_names(self) -> &'static [&'static str] {
        match self {
            IdxKind::Images => &["image count", "rows", "columns"],
            IdxKind::Labels => &["label count"],
        }
    }
}

/// A decoded unsigned-byte IDX array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimension sizes from the header, outermost first.
    pub dims: Vec<u32>,
    /// The elements, row-major; its length is the product of `dims`.
    pub data: Vec<u8>,
}

/// True if `bytes` start with the gzip magic bytes (IDX files start with two zero bytes, so the
/// two can never be confused, whatever the file is called).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Decodes an IDX file of the given kind, raw or gzip-compressed (detected from the content).
/// `file` names the file in error messages.
pub fn decode_idx(file: &str, bytes: &[u8], kind: IdxKind) -> Result<IdxArray, IdxError> {
    if is_gzip(bytes) {
        decode_gzip(file, bytes, kind)
    } else {
        decode_raw(file, bytes, kind)
    }
}

fn decode_raw(file: &str, bytes: &[u8], kind: IdxKind) -> Result<IdxArray, IdxError> {
    let magic = prefix(file, bytes, 4, "the IDX magic number")?;
    let rank = check_magic(file, magic, kind)?;
    let header_len = 4 + 4 * usize::from(rank);
    let header = prefix(file, bytes, header_len, "the IDX dimension sizes")?;
    let dims = parse_dims(&header[4..]);
    let expected = payload_len(file, &dims, kind)?;
    let payload = &bytes[header_len..];
    let found = payload.len() as u64;
    if found != expected {
        return Err(IdxError::PayloadLength {
            file: file.to_string(),
            dims,
            expected,
            found,
        });
    }
    Ok(IdxArray {
        dims,
        data: payload.to_vec(),
    })
}

fn decode_gzip(file: &str, bytes: &[u8], kind: IdxKind) -> Result<IdxArray, IdxError> {
    let mut decoder = MultiGzDecoder::new(bytes);
    let mut magic = [0u8; 4];
    read_header_part(
        file,
        &mut decoder,
        &mut magic,
        0,
        "the IDX magic number (after gunzip)",
    )?;
    let rank = check_magic(file, &magic, kind)?;
    let mut dim_bytes = vec![0u8; 4 * usize::from(rank)];
    read_header_part(
        file,
        &mut decoder,
        &mut dim_bytes,
        4,
        "the IDX dimension sizes (after gunzip)",
    )?;
    let dims = parse_dims(&dim_bytes);
    let expected = payload_len(file, &dims, kind)?;

    let reserve = usize::try_from(expected)
        .unwrap_or(usize::MAX)
        .min(bytes.len().saturating_mul(GZIP_RESERVE_RATIO));
    let mut data = Vec::with_capacity(reserve);
    // One byte more than allowed tells "too long" from "exact" without inflating the excess.
    decoder
        .take(expected + 1)
        .read_to_end(&mut data)
        .map_err(|source| IdxError::Gzip {
            file: file.to_string(),
            source,
        })?;
    let found = data.len() as u64;
    if found > expected {
        return Err(IdxError::PayloadTooLong {
            file: file.to_string(),
            dims,
            expected,
        });
    }
    if found < expected {
        return Err(IdxError::PayloadLength {
            file: file.to_string(),
            dims,
            expected,
            found,
        });
    }
    Ok(IdxArray { dims, data })
}

/// Checks the 4-byte magic number against `kind` and returns the rank byte.
fn check_magic(file: &str, magic: &[u8], kind: IdxKind) -> Result<u8, IdxError> {
    let [zero0, zero1, dtype, rank] = [magic[0], magic[1], magic[2], magic[3]];
    if zero0 != 0 || zero1 != 0 {
        return Err(IdxError::NotIdx {
            file: file.to_string(),
            found: [zero0, zero1],
        });
    }
    if dtype != DTYPE_U8 {
        return Err(IdxError::UnsupportedDtype {
            file: file.to_string(),
            dtype,
        });
    }
    let found = u32::from_be_bytes([zero0, zero1, dtype, rank]);
    if found != kind.magic() {
        return Err(IdxError::WrongMagic {
            file: file.to_string(),
            kind,
            expected: kind.magic(),
            found,
        });
    }
    Ok(rank)
}

fn parse_dims(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|chunk| u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect()
}

/// The payload size the dimensions describe, refusing zero-sized images and anything above
/// [`MAX_IDX_BYTES`] (which also rules out overflow).
fn payload_len(file: &str, dims: &[u32], kind: IdxKind) -> Result<u64, IdxError> {
    // The element count (first dimension) may be 0: an empty set is valid, if useless.
    for (size, name) in dims.iter().zip(kind.dimension_names()).skip(1) {
        if *size == 0 {
            return Err(IdxError::ZeroDimension {
                file: file.to_string(),
                dimension: name,
            });
        }
    }
    dims.iter()
        .try_fold(1u64, |product, &size| product.checked_mul(u64::from(size)))
        .filter(|&total| total <= MAX_IDX_BYTES)
        .ok_or_else(|| IdxError::TooLarge {
            file: file.to_string(),
            dims: dims.to_vec(),
            limit: MAX_IDX_BYTES,
        })
}

fn prefix<'a>(
    file: &str,
    bytes: &'a [u8],
    needed: usize,
    what: &'static str,
) -> Result<&'a [u8], IdxError> {
    bytes.get(..needed).ok_or_else(|| IdxError::Truncated {
        file: file.to_string(),
        what,
        needed: needed as u64,
        found: bytes.len() as u64,
    })
}

/// Fills `buf` from the decompressed stream; `already` is how many bytes came before, so a
/// short file reports its true decompressed length.
fn read_header_part(
    file: &str,
    reader: &mut impl Read,
    buf: &mut [u8],
    already: usize,
    what: &'static str,
) -> Result<(), IdxError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(IdxError::Truncated {
                    file: file.to_string(),
                    what,
                    needed: (already + buf.len()) as u64,
                    found: (already + filled) as u64,
                });
            }
            Ok(count) => filled += count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(IdxError::Gzip {
                    file: file.to_string(),
                    source,
                });
            }
        }
    }
    Ok(())
}

pub(crate) fn dtype_name(dtype: u8) -> &'static str {
    match dtype {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "short",
        0x0C => "int",
        0x0D => "float",
        0x0E => "double",
        _ => "not an IDX type",
    }
}

pub(crate) fn magic_description(magic: u32) -> String {
    let [_, _, dtype, rank] = magic.to_be_bytes();
    let known = match magic {
        IMAGES_MAGIC => ", an images file",
        LABELS_MAGIC => ", a labels file",
        _ => "",
    };
    format!("{} elements, rank {rank}{known}", dtype_name(dtype))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// An IDX file with the given element type, dimensions and payload.
    pub(crate) fn idx_bytes(dtype: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, dtype, dims.len() as u8];
        for dim in dims {
            bytes.extend_from_slice(&dim.to_be_bytes());
        }
        bytes.extend_from_slice(payload);
        bytes
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
        let payload: Vec<u8> = (0..count * rows * cols).map(|i| (i % 251) as u8).collect();
        idx_bytes(DTYPE_U8, &[count, rows, cols], &payload)
    }

    /// Both encodings of the same file must fail the same way.
    fn both_encodings(bytes: &[u8], kind: IdxKind) -> [Result<IdxArray, IdxError>; 2] {
        [
            decode_idx("f", bytes, kind),
            decode_idx("f", &gzip(bytes), kind),
        ]
    }

    #[test]
    fn decodes_images_and_labels_raw_and_gzip_alike() {
        let raw = images(3, 2, 4);
        let [from_raw, from_gzip] = both_encodings(&raw, IdxKind::Images);
        let from_raw = from_raw.unwrap();
        assert_eq!(from_raw.dims, [3, 2, 4]);
        assert_eq!(from_raw.data, &raw[16..]);
        assert_eq!(from_gzip.unwrap(), from_raw);

        let labels = idx_bytes(DTYPE_U8, &[5], &[0, 1, 2, 9, 7]);
        let decoded = decode_idx("labels", &gzip(&labels), IdxKind::Labels).unwrap();
        assert_eq!(decoded.data, [0, 1, 2, 9, 7]);
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let raw = images(1, 1, 1);
        assert!(!is_gzip(&raw));
        assert!(is_gzip(&gzip(&raw)));
        // A raw file called .gz and a compressed one without the suffix both decode.
        assert!(decode_idx("train-images-idx3-ubyte.gz", &raw, IdxKind::Images).is_ok());
        assert!(decode_idx("train-images-idx3-ubyte", &gzip(&raw), IdxKind::Images).is_ok());
    }

    #[test]
    fn too_short_for_the_magic_number() {
        for bytes in [&[][..], &[0], &[0, 0, 8]] {
            match decode_idx("tiny", bytes, IdxKind::Images) {
                Err(IdxError::Truncated {
                    file,
                    needed: 4,
                    found,
                    ..
                }) => {
                    assert_eq!(file, "tiny");
                    assert_eq!(found, bytes.len() as u64);
                }
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        let error = decode_idx("tiny.gz", &gzip(&[0, 0]), IdxKind::Images).unwrap_err();
        assert!(
            matches!(
                error,
                IdxError::Truncated {
                    needed: 4,
                    found: 2,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn first_two_bytes_must_be_zero() {
        for result in both_encodings(b"PK\x03\x04 not an idx file", IdxKind::Images) {
            let error = result.unwrap_err();
            assert!(
                matches!(
                    error,
                    IdxError::NotIdx {
                        found: [b'P', b'K'],
                        ..
                    }
                ),
                "{error}"
            );
            assert_eq!(
                error.to_string(),
                "f: not an IDX file: expected the first two bytes to be 0x00 0x00, found 0x50 0x4b"
            );
        }
    }

    #[test]
    fn only_unsigned_bytes_are_supported() {
        for result in both_encodings(&idx_bytes(0x0D, &[1, 1, 1], &[0, 0, 0, 0]), IdxKind::Images) {
            let error = result.unwrap_err();
            assert!(
                matches!(error, IdxError::UnsupportedDtype { dtype: 0x0D, .. }),
                "{error}"
            );
            assert!(
                error.to_string().contains("0x0d (float): expected 0x08"),
                "{error}"
            );
        }
    }

    #[test]
    fn images_and_labels_magic_numbers_are_not_interchangeable() {
        let labels = idx_bytes(DTYPE_U8, &[2], &[1, 2]);
        for result in both_encodings(&labels, IdxKind::Images) {
            let error = result.unwrap_err();
            assert!(
                matches!(
                    error,
                    IdxError::WrongMagic {
                        expected: 2051,
                        found: 2049,
                        ..
                    }
                ),
                "{error}"
            );
            assert!(
                error.to_string().contains("expected 2051, found 2049"),
                "{error}"
            );
            assert!(error.to_string().contains("a labels file"), "{error}");
        }
        let error = decode_idx("f", &images(1, 1, 1), IdxKind::Labels).unwrap_err();
        assert!(
            matches!(
                error,
                IdxError::WrongMagic {
                    expected: 2049,
                    found: 2051,
                    ..
                }
            ),
            "{error}"
        );
        // Rank 2 unsigned bytes: right type, wrong rank.
        let error =
            decode_idx("f", &idx_bytes(DTYPE_U8, &[1, 1], &[0]), IdxKind::Images).unwrap_err();
        assert!(
            matches!(error, IdxError::WrongMagic { found: 2050, .. }),
            "{error}"
        );
    }

    #[test]
    fn dimension_sizes_must_be_complete() {
        let header = idx_bytes(DTYPE_U8, &[60000, 28, 28], &[]);
        for cut in 4..16 {
            for result in both_encodings(&header[..cut], IdxKind::Images) {
                let error = result.unwrap_err();
                assert!(
                    matches!(error, IdxError::Truncated { needed: 16, found, .. } if found == cut as u64),
                    "cut at {cut}: {error}"
                );
            }
        }
    }

    #[test]
    fn image_rows_and_columns_must_not_be_zero() {
        for (dims, dimension) in [([1, 0, 28], "rows"), ([1, 28, 0], "columns")] {
            let error =
                decode_idx("f", &idx_bytes(DTYPE_U8, &dims, &[]), IdxKind::Images).unwrap_err();
            assert!(
                matches!(error, IdxError::ZeroDimension { dimension: d, .. } if d == dimension),
                "{error}"
            );
        }
        // No images at all is valid.
        assert_eq!(
            decode_idx("f", &images(0, 28, 28), IdxKind::Images)
                .unwrap()
                .data
                .len(),
            0
        );
    }

    #[test]
    fn a_header_claiming_four_billion_images_fails_before_allocating() {
        let lying = idx_bytes(DTYPE_U8, &[4_000_000_000, 28, 28], &[0; 84]);
        assert_eq!(lying.len(), 100);
        for result in both_encodings(&lying, IdxKind::Images) {
            let error = result.unwrap_err();
            // 3.1e12 bytes is over the cap: refused from the header alone.
            assert!(matches!(error, IdxError::TooLarge { .. }), "{error}");
        }
        // Below the cap but far more than present: refused by the length check.
        let lying = idx_bytes(DTYPE_U8, &[1_000_000, 28, 28], &[0; 84]);
        for result in both_encodings(&lying, IdxKind::Images) {
            let error = result.unwrap_err();
            assert!(
                matches!(
                    error,
                    IdxError::PayloadLength {
                        expected: 784_000_000,
                        found: 84,
                        ..
                    }
                ),
                "{error}"
            );
        }
        // The largest possible claim overflows u64; checked arithmetic reports it as too large.
        let overflow = idx_bytes(DTYPE_U8, &[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert!(matches!(
            decode_idx("f", &overflow, IdxKind::Images),
            Err(IdxError::TooLarge { .. })
        ));
    }

    #[test]
    fn payload_length_must_match_exactly() {
        let exact = images(2, 3, 3);
        let short = &exact[..exact.len() - 1];
        for result in both_encodings(short, IdxKind::Images) {
            let error = result.unwrap_err();
            assert!(
                matches!(
                    error,
                    IdxError::PayloadLength {
                        expected: 18,
                        found: 17,
                        ..
                    }
                ),
                "{error}"
            );
            assert_eq!(
                error.to_string(),
                "f: payload length mismatch: dimensions [2, 3, 3] need 18 bytes, found 17"
            );
        }
        let mut long = exact.clone();
        long.push(0);
        let error = decode_idx("f", &long, IdxKind::Images).unwrap_err();
        assert!(
            matches!(
                error,
                IdxError::PayloadLength {
                    expected: 18,
                    found: 19,
                    ..
                }
            ),
            "{error}"
        );
        let error = decode_idx("f", &gzip(&long), IdxKind::Images).unwrap_err();
        assert!(
            matches!(error, IdxError::PayloadTooLong { expected: 18, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_gzip_bomb_is_not_inflated_beyond_the_header() {
        // 1 GiB of zeros behind a header that allows 784 bytes; compresses to about 1 MB.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(&idx_bytes(DTYPE_U8, &[1, 28, 28], &[]))
            .unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 8 << 20, "{}", bomb.len());
        let started = std::time::Instant::now();
        let error = decode_idx("bomb.gz", &bomb, IdxKind::Images).unwrap_err();
        assert!(
            matches!(error, IdxError::PayloadTooLong { expected: 784, .. }),
            "{error}"
        );
        // Inflating the whole gigabyte would take far longer than stopping after 785 bytes.
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn corrupt_and_truncated_gzip_are_gzip_errors() {
        let compressed = gzip(&images(4, 28, 28));
        let truncated = &compressed[..compressed.len() - 20];
        let error = decode_idx("cut.gz", truncated, IdxKind::Images).unwrap_err();
        assert!(
            matches!(
                error,
                IdxError::Gzip { .. } | IdxError::PayloadLength { .. }
            ),
            "{error}"
        );
        let mut flipped = compressed.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let error = decode_idx("flipped.gz", &flipped, IdxKind::Images).unwrap_err();
        assert!(error.to_string().starts_with("flipped.gz: "), "{error}");
        let mut trailing = compressed;
        trailing.extend_from_slice(b"garbage after the gzip member");
        let error = decode_idx("trailing.gz", &trailing, IdxKind::Images).unwrap_err();
        assert!(
            matches!(
                error,
                IdxError::Gzip { .. } | IdxError::PayloadTooLong { .. }
            ),
            "{error}"
        );
    }
}
