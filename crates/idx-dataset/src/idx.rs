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
    read_header_part(file, &mut decoder, &mut magic, 0, "the IDX magic number (after gunzip)")?;
    let rank = check_magic(file, &magic, kind)?;
    let mut dim_bytes = vec![0u8; 4 * usize::from(rank)];
    read_header_part(file, &mut decoder, &mut dim_bytes, 4, "the IDX dimension sizes (after gunzip)")?;
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

fn prefix<'a>(file: &str, bytes: &'a [u8], needed: usize, what: &'static str) -> Result<&'a [u8], IdxError> {
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
