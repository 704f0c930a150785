//! TensorFlow tensor bundles (V2 checkpoints): the `variables/` directory of a SavedModel.
//!
//! A bundle is an `.index` SSTable (header entry under the empty key, then one
//! `BundleEntryProto` per tensor, sorted by name) plus data shards holding the raw tensor bytes
//! (docs/reference/tensor_bundle.md). The writer produces exactly what TensorFlow's `BundleWriter` produces for
//! the same tensors added in the same order (one shard, no alignment padding, TF's table
//! options), so the index is byte-identical to TF's. The reader checks everything it uses:
//! header version, shard ids, byte ranges, sizes against shapes, and the masked CRC-32C of each
//! tensor.

use std::collections::BTreeMap;

use prost::Message;

use crate::convert::{
    dtype_name, element_count, element_size, shape_from_proto, shape_to_proto, value_dtype,
};
use crate::crc;
use crate::error::FormatError;
use crate::proto::{BundleEntryProto, BundleHeaderProto, VersionDef};
use crate::sstable::{Table, TableOptions, build_table};
use crate::tensor::{DataType, HostTensor, TensorData};

/// Bundle prefix inside a SavedModel directory.
pub const VARIABLES_PREFIX: &str = "variables/variables";
/// The index file of a SavedModel's variables.
pub const VARIABLES_INDEX: &str = "variables/variables.index";
/// The single data shard our writer produces.
pub const VARIABLES_DATA: &str = "variables/variables.data-00000-of-00001";

/// The bundle format version TF writes (`kTensorBundleVersion`) and accepts.
const BUNDLE_VERSION: i32 = 1;
/// More shards than any real checkpoint uses; bounds the list of data file names.
const MAX_SHARDS: i32 = 1 << 16;

/// `<prefix>.data-SSSSS-of-NNNNN`, TensorFlow's data shard naming.
pub fn data_file_name(prefix: &str, shard_id: u32, num_shards: u32) -> String {
    format!("{prefix}.data-{shard_id:05}-of-{num_shards:05}")
}

/// The two files of a single-shard bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFiles {
    /// `<prefix>.index`
    pub index: Vec<u8>,
    /// `<prefix>.data-00000-of-00001`
    pub data: Vec<u8>,
}

/// Writes a single-shard bundle.
///
/// Tensors are appended to the data file in the given order (TF's `BundleWriter` does the
/// same: the data file follows insertion order, the index is sorted by name). Names must be
/// unique and non-empty (the empty key is the header).
pub fn write_bundle<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a HostTensor)>,
) -> Result<BundleFiles, FormatError> {
    let mut data = Vec::new();
    let mut entries: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (name, tensor) in tensors {
        if name.is_empty() {
            return Err(FormatError::entry(
                VARIABLES_INDEX,
                name,
                "tensor names must not be empty",
            ));
        }
        if entries.contains_key(name) {
            return Err(FormatError::entry(
                VARIABLES_INDEX,
                name,
                "duplicate tensor name",
            ));
        }
        let bytes = match tensor.data() {
            TensorData::Str(strings) => encode_strings(strings),
            _ => tensor.to_le_bytes().unwrap_or_default(),
        };
        let entry = BundleEntryProto {
            dtype: tensor.dtype() as i32,
            shape: Some(shape_to_proto(tensor.shape())),
            shard_id: 0,
            offset: data.len() as i64,
            size: bytes.len() as i64,
            crc32c: match tensor.data() {
                TensorData::Str(strings) => string_tensor_checksum(strings, &bytes),
                _ => crc::masked_crc32c(&bytes),
            },
            slices: Vec::new(),
        };
        data.extend_from_slice(&bytes);
        entries.insert(name, entry.encode_to_vec());
    }
    let header = BundleHeaderProto {
        num_shards: 1,
        endianness: BundleHeaderProto::LITTLE_ENDIAN,
        version: Some(VersionDef {
            producer: BUNDLE_VERSION,
            ..Default::default()
        }),
    }
    .encode_to_vec();
    let table_entries = std::iter::once((b"".as_slice(), header.as_slice())).chain(
        entries
            .iter()
            .map(|(name, entry)| (name.as_bytes(), entry.as_slice())),
    );
    let index = build_table(TableOptions::TENSORFLOW, table_entries)?;
    Ok(BundleFiles { index, data })
}

/// DT_STRING layout: varint lengths, masked CRC of the lengths (each as u32, or u64 when it
/// does not fit), then the concatenated bytes.
fn encode_strings(strings: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        let mut len = s.len() as u64;
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(
        &crc::mask(crc::crc32c(&fixed_width_lengths(
            strings.iter().map(|s| s.len() as u64),
        )))
        .to_le_bytes(),
    );
    for s in strings {
        out.extend_from_slice(s);
    }
    out
}

/// Lengths as TF feeds them to its checksums: u32 LE, or u64 LE for lengths that need it.
fn fixed_width_lengths(lengths: impl Iterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for len in lengths {
        match u32::try_from(len) {
            Ok(short) => out.extend_from_slice(&short.to_le_bytes()),
            Err(_) => out.extend_from_slice(&len.to_le_bytes()),
        }
    }
    out
}

/// The entry checksum of a string tensor covers the fixed-width lengths, the stored (masked)
/// length checksum, and the string bytes — not the varints.
fn string_tensor_checksum(strings: &[Vec<u8>], encoded: &[u8]) -> u32 {
    let lengths = fixed_width_lengths(strings.iter().map(|s| s.len() as u64));
    let total: usize = strings.iter().map(Vec::len).sum();
    let crc_at = encoded.len() - total - 4;
    let mut crc = crc::crc32c(&lengths);
    crc = crc32c::crc32c_append(crc, &encoded[crc_at..crc_at + 4]);
    for s in strings {
        crc = crc32c::crc32c_append(crc, s);
    }
    crc::mask(crc)
}

/// Dtype and shape of a bundle tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub dtype: DataType,
    pub shape: Vec<usize>,
}

/// A parsed `.index` file: the header and every entry, without the data.
#[derive(Debug, Clone)]
pub struct BundleIndex {
    /// Name of the index file, for messages (e.g. `variables/variables.index`).
    index_file: String,
    /// The bundle prefix (index file name without `.index`), for data file names.
    prefix: String,
    header: BundleHeaderProto,
    entries: BTreeMap<String, BundleEntryProto>,
}

impl BundleIndex {
    /// Parses an index file. `index_file` is its name (ending in `.index`), used in error
    /// messages and to derive the data file names.
    pub fn parse(index_file: &str, bytes: &[u8]) -> Result<BundleIndex, FormatError> {
        let table = Table::open(index_file, bytes)?;
        let mut rows = table.entries()?.into_iter();
        let header_bytes = match rows.next() {
            Some((key, value)) if key.is_empty() => value,
            _ => {
                return Err(FormatError::table(
                    index_file,
                    "the first entry is not the bundle header (empty key)",
                ));
            }
        };
        let header = BundleHeaderProto::decode(header_bytes.as_slice())
            .map_err(|e| FormatError::decode(index_file, "BundleHeaderProto", e))?;
        let header_error =
            |reason: String| FormatError::entry(index_file, "", format!("bundle header: {reason}"));
        if !(1..=MAX_SHARDS).contains(&header.num_shards) {
            return Err(header_error(format!(
                "num_shards is {}, expected 1..={MAX_SHARDS}",
                header.num_shards
            )));
        }
        if header.endianness != BundleHeaderProto::LITTLE_ENDIAN
            && header.endianness != BundleHeaderProto::BIG_ENDIAN
        {
            return Err(header_error(format!(
                "unknown endianness {}",
                header.endianness
            )));
        }
        let version = header.version.clone().unwrap_or_default();
        if version.producer < 0
            || version.min_consumer > BUNDLE_VERSION
            || version.bad_consumers.contains(&BUNDLE_VERSION)
        {
            return Err(header_error(format!(
                "version (producer {}, min_consumer {}, bad_consumers {:?}) cannot be read by bundle reader version {BUNDLE_VERSION}",
                version.producer, version.min_consumer, version.bad_consumers
            )));
        }
        let mut entries = BTreeMap::new();
        for (key, value) in rows {
            let name = String::from_utf8(key).map_err(|e| {
                FormatError::table(
                    index_file,
                    format!(
                        "tensor name {:?} is not UTF-8",
                        String::from_utf8_lossy(e.as_bytes())
                    ),
                )
            })?;
            let entry =
                BundleEntryProto::decode(value.as_slice()).map_err(|e| FormatError::Decode {
                    file: index_file.to_string(),
                    message: "BundleEntryProto",
                    source: e,
                })?;
            entries.insert(name, entry);
        }
        let prefix = index_file
            .strip_suffix(".index")
            .unwrap_or(index_file)
            .to_string();
        Ok(BundleIndex {
            index_file: index_file.to_string(),
            prefix,
            header,
            entries,
        })
    }

    pub fn header(&self) -> &BundleHeaderProto {
        &self.header
    }

    pub fn num_shards(&self) -> u32 {
        // Validated to 1..=MAX_SHARDS in `parse`.
        self.header.num_shards as u32
    }

    /// The data file names, indexed by shard id (e.g. `variables/variables.data-00000-of-00001`).
    pub fn data_file_names(&self) -> Vec<String> {
        (0..self.num_shards())
            .map(|i| data_file_name(&self.prefix, i, self.num_shards()))
            .collect()
    }

    /// Tensor names in sorted order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, name: &str) -> Option<&BundleEntryProto> {
        self.entries.get(name)
    }

    fn entry_or_error(&self, name: &str) -> Result<&BundleEntryProto, FormatError> {
        self.entries
            .get(name)
            .ok_or_else(|| FormatError::TensorNotFound {
                file: self.index_file.clone(),
                tensor: name.to_string(),
            })
    }

    /// The dtype and shape the index records for a tensor.
    pub fn tensor_spec(&self, name: &str) -> Result<TensorSpec, FormatError> {
        let entry = self.entry_or_error(name)?;
        let context = format!("{}: tensor '{name}'", self.index_file);
        let dtype = value_dtype(entry.dtype, &context)?;
        let shape = shape_from_proto(entry.shape.as_ref(), &context)?;
        Ok(TensorSpec { dtype, shape })
    }

    /// Reads one tensor. `shards[i]` holds the bytes of data file `i` (see
    /// [`data_file_names`](Self::data_file_names)), or `None` if that file does not exist.
    pub fn read_tensor(
        &self,
        name: &str,
        shards: &[Option<&[u8]>],
    ) -> Result<HostTensor, FormatError> {
        let entry = self.entry_or_error(name)?;
        if !entry.slices.is_empty() {
            return Err(FormatError::entry(
                &self.index_file,
                name,
                "partitioned (sliced) variables are not supported",
            ));
        }
        let TensorSpec { dtype, shape } = self.tensor_spec(name)?;
        let n = element_count(&shape, name)?;
        let shard = u32::try_from(entry.shard_id)
            .ok()
            .filter(|&s| s < self.num_shards())
            .ok_or_else(|| {
                FormatError::entry(
                    &self.index_file,
                    name,
                    format!(
                        "shard_id {} is outside 0..{}",
                        entry.shard_id,
                        self.num_shards()
                    ),
                )
            })?;
        let data_file = data_file_name(&self.prefix, shard, self.num_shards());
        let data = shards
            .get(shard as usize)
            .copied()
            .flatten()
            .ok_or_else(|| FormatError::MissingDataFile {
                file: data_file.clone(),
                tensor: name.to_string(),
            })?;
        let (Ok(offset), Ok(size)) = (u64::try_from(entry.offset), u64::try_from(entry.size))
        else {
            return Err(FormatError::entry(
                &self.index_file,
                name,
                format!("negative offset {} or size {}", entry.offset, entry.size),
            ));
        };
        let end = offset
            .checked_add(size)
            .filter(|&end| end <= data.len() as u64)
            .ok_or_else(|| FormatError::DataOutOfRange {
                file: data_file.clone(),
                tensor: name.to_string(),
                offset,
                end: offset.saturating_add(size),
                file_len: data.len() as u64,
            })?;
        // Within `data.len()`, so the casts cannot truncate.
        let bytes = &data[offset as usize..end as usize];
        let context = format!("{data_file}: tensor '{name}'");

        if dtype == DataType::String {
            let (strings, computed) = decode_strings(bytes, n).map_err(|reason| {
                FormatError::entry(
                    &self.index_file,
                    name,
                    format!("invalid string tensor: {reason}"),
                )
            })?;
            if computed != entry.crc32c {
                return Err(self.checksum_error(&data_file, name, entry.crc32c, computed));
            }
            return HostTensor::new(shape, TensorData::Str(strings))
                .map_err(|e| FormatError::entry(&self.index_file, name, e.to_string()));
        }

        let element = element_size(dtype).unwrap_or(1);
        if n.checked_mul(element) != Some(bytes.len()) {
            return Err(FormatError::entry(
                &self.index_file,
                name,
                format!(
                    "invalid size in bundle entry: {} bytes stored, but {} {shape:?} needs {}",
                    bytes.len(),
                    dtype_name(dtype as i32),
                    n.saturating_mul(element)
                ),
            ));
        }
        let computed = crc::masked_crc32c(bytes);
        if computed != entry.crc32c {
            return Err(self.checksum_error(&data_file, name, entry.crc32c, computed));
        }
        if self.header.endianness == BundleHeaderProto::BIG_ENDIAN && element > 1 {
            let mut swapped = bytes.to_vec();
            for chunk in swapped.chunks_exact_mut(element) {
                chunk.reverse();
            }
            return HostTensor::from_le_bytes(dtype, shape, &swapped, &context);
        }
        HostTensor::from_le_bytes(dtype, shape, bytes, &context)
    }

    fn checksum_error(
        &self,
        data_file: &str,
        name: &str,
        stored: u32,
        computed: u32,
    ) -> FormatError {
        FormatError::TensorChecksum {
            file: data_file.to_string(),
            tensor: name.to_string(),
            stored,
            computed,
        }
    }

    /// Reads every tensor, in name order.
    pub fn read_all(
        &self,
        shards: &[Option<&[u8]>],
    ) -> Result<Vec<(String, HostTensor)>, FormatError> {
        self.tensor_names()
            .map(|name| Ok((name.to_string(), self.read_tensor(name, shards)?)))
            .collect()
    }
}

/// Parses a DT_STRING tensor of `n` elements; returns the strings and the entry checksum.
fn decode_strings(bytes: &[u8], n: usize) -> Result<(Vec<Vec<u8>>, u32), String> {
    // Each length takes at least one byte, so a count larger than the buffer is corrupt; this
    // also bounds the allocation below.
    if n > bytes.len() {
        return Err(format!("{n} elements cannot fit in {} bytes", bytes.len()));
    }
    let mut lengths = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let (len, used) = crate::sstable::get_varint64(&bytes[at..])
            .ok_or_else(|| format!("bad length varint of element {i}"))?;
        lengths.push(len);
        at += used;
    }
    let crc_bytes = bytes.get(at..at + 4).ok_or("missing length checksum")?;
    let stored_length_crc =
        u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let fixed_lengths = fixed_width_lengths(lengths.iter().copied());
    let computed_length_crc = crc::masked_crc32c(&fixed_lengths);
    if stored_length_crc != computed_length_crc {
        return Err(format!(
            "length checksum mismatch (stored {stored_length_crc:#010x}, computed {computed_length_crc:#010x})"
        ));
    }
    at += 4;
    let mut crc = crc32c::crc32c_append(crc::crc32c(&fixed_lengths), crc_bytes);
    let mut strings = Vec::with_capacity(n);
    for (i, len) in lengths.into_iter().enumerate() {
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                format!(
                    "element {i} ({len} bytes) extends past the entry's {} bytes",
                    bytes.len()
                )
            })?;
        crc = crc32c::crc32c_append(crc, &bytes[at..end]);
        strings.push(bytes[at..end].to_vec());
        at = end;
    }
    Ok((strings, crc::mask(crc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_tensor(shape: Vec<usize>, values: Vec<f32>) -> HostTensor {
        HostTensor::new(shape, TensorData::F32(values)).unwrap()
    }

    /// docs/reference/tensor_bundle.md §3.7: the 160-byte index TF 2.21 wrote for zeros bias + kernel.
    #[test]
    fn matches_the_documented_tensorflow_index() {
        let bias = f32_tensor(vec![3], vec![0.0; 3]);
        let kernel = f32_tensor(vec![4, 3], (0..12).map(|i| i as f32).collect());
        let files = write_bundle([("dense/bias", &bias), ("dense/kernel", &kernel)]).unwrap();
        assert_eq!(files.index.len(), 160);
        assert_eq!(
            &files.index[..9],
            [0x00, 0x00, 0x06, 0x08, 0x01, 0x1a, 0x02, 0x08, 0x01]
        );
        // dense/bias entry with TF's checksum of 12 zero bytes.
        let mut bias_entry = vec![0x00, 0x0a, 0x0f];
        bias_entry.extend_from_slice(b"dense/bias");
        bias_entry.extend_from_slice(&[
            0x08, 0x01, 0x12, 0x04, 0x12, 0x02, 0x08, 0x03, 0x28, 0x0c, 0x35, 0x99, 0x41, 0x3d,
            0x0d,
        ]);
        assert_eq!(&files.index[9..0x25], bias_entry.as_slice());
        // footer handles: metaindex (80, 8), index (93, 14)
        assert_eq!(&files.index[0x70..0x74], [0x50, 0x08, 0x5d, 0x0e]);
        // The index block's only key is FindShortSuccessor("dense/kernel") = "e".
        assert_eq!(
            &files.index[0x5d..0x63],
            [0x00, 0x01, 0x02, b'e', 0x00, 0x4b]
        );
    }

    #[test]
    fn string_tensor_layout_matches_tensorflow() {
        // docs/reference/tensor_bundle.md §2.2 worked example.
        let strings = vec![b"abc".to_vec(), Vec::new(), b"hello world".to_vec()];
        let encoded = encode_strings(&strings);
        let mut expected = vec![0x03, 0x00, 0x0b, 0x00, 0xc4, 0x28, 0xea];
        expected.extend_from_slice(b"abchello world");
        assert_eq!(encoded, expected);
        let (decoded, crc) = decode_strings(&encoded, 3).unwrap();
        assert_eq!(decoded, strings);
        assert_eq!(crc, string_tensor_checksum(&strings, &encoded));
    }

    #[test]
    fn round_trip_all_supported_dtypes() {
        let tensors = vec![
            (
                "a/f32",
                f32_tensor(vec![2, 2], vec![1.0, -0.5, f32::MAX, 0.0]),
            ),
            (
                "b/f64",
                HostTensor::new(vec![], TensorData::F64(vec![3.25])).unwrap(),
            ),
            (
                "c/i64",
                HostTensor::new(vec![3], TensorData::I64(vec![i64::MIN, 0, 7])).unwrap(),
            ),
            (
                "d/i32",
                HostTensor::new(vec![1, 2], TensorData::I32(vec![-3, 9])).unwrap(),
            ),
            (
                "e/bool",
                HostTensor::new(vec![3], TensorData::Bool(vec![true, false, true])).unwrap(),
            ),
            (
                "f/u8",
                HostTensor::new(vec![2], TensorData::U8(vec![0, 255])).unwrap(),
            ),
            (
                "g/i16",
                HostTensor::new(vec![2], TensorData::I16(vec![-300, 300])).unwrap(),
            ),
            (
                "h/i8",
                HostTensor::new(vec![2], TensorData::I8(vec![-128, 127])).unwrap(),
            ),
            (
                "i/str",
                HostTensor::new(
                    vec![2],
                    TensorData::Str(vec![b"x".to_vec(), vec![0u8; 200]]),
                )
                .unwrap(),
            ),
            ("j/empty", f32_tensor(vec![0, 5], vec![])),
        ];
        // Insert in reverse to check the data file follows insertion order and the index sorts.
        let files = write_bundle(tensors.iter().rev().map(|(n, t)| (*n, t))).unwrap();
        let index = BundleIndex::parse(VARIABLES_INDEX, &files.index).unwrap();
        assert_eq!(index.data_file_names(), vec![VARIABLES_DATA.to_string()]);
        assert_eq!(
            index.tensor_names().collect::<Vec<_>>(),
            tensors.iter().map(|(n, _)| *n).collect::<Vec<_>>()
        );
        assert_eq!(index.entry("j/empty").unwrap().offset, 0);
        let shards = [Some(files.data.as_slice())];
        for (name, tensor) in &tensors {
            assert_eq!(&index.read_tensor(name, &shards).unwrap(), tensor, "{name}");
        }
        assert_eq!(index.read_all(&shards).unwrap().len(), tensors.len());
    }

    fn sample() -> (BundleFiles, BundleIndex) {
        let bias = f32_tensor(vec![3], vec![0.1, 0.2, 0.3]);
        let kernel = f32_tensor(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let files = write_bundle([("dense/bias", &bias), ("dense/kernel", &kernel)]).unwrap();
        let index = BundleIndex::parse(VARIABLES_INDEX, &files.index).unwrap();
        (files, index)
    }

    #[test]
    fn flipped_data_byte_names_the_tensor() {
        let (mut files, index) = sample();
        files.data[13] ^= 0x01; // inside dense/kernel (bias takes bytes 0..12)
        let shards = [Some(files.data.as_slice())];
        assert!(index.read_tensor("dense/bias", &shards).is_ok());
        let err = index
            .read_tensor("dense/kernel", &shards)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dense/kernel")
                && err.contains("checksum mismatch")
                && err.contains(VARIABLES_DATA),
            "{err}"
        );
    }

    #[test]
    fn missing_or_short_data_file_names_file_and_tensor() {
        let (files, index) = sample();
        let err = index
            .read_tensor("dense/bias", &[None])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(VARIABLES_DATA) && err.contains("missing") && err.contains("dense/bias"),
            "{err}"
        );
        let err = index
            .read_tensor("dense/bias", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
        let short = &files.data[..20];
        let err = index
            .read_tensor("dense/kernel", &[Some(short)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(VARIABLES_DATA)
                && err.contains("dense/kernel")
                && err.contains("only 20 bytes"),
            "{err}"
        );
    }

    #[test]
    fn bad_entries_are_errors_not_panics() {
        let (files, _) = sample();
        let shards = [Some(files.data.as_slice())];
        let header = BundleHeaderProto {
            num_shards: 1,
            version: Some(VersionDef {
                producer: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let make_index = |entry: BundleEntryProto| {
            let h = header.encode_to_vec();
            let e = entry.encode_to_vec();
            let bytes = build_table(
                TableOptions::TENSORFLOW,
                [
                    (b"".as_slice(), h.as_slice()),
                    (b"t".as_slice(), e.as_slice()),
                ],
            )
            .unwrap();
            BundleIndex::parse(VARIABLES_INDEX, &bytes).unwrap()
        };
        let base = BundleEntryProto {
            dtype: 1,
            shape: Some(shape_to_proto(&[3])),
            size: 12,
            ..Default::default()
        };
        let cases: Vec<(BundleEntryProto, &str)> = vec![
            (
                BundleEntryProto {
                    dtype: 8,
                    ..base.clone()
                },
                "DT_COMPLEX64",
            ),
            (
                BundleEntryProto {
                    dtype: 77,
                    ..base.clone()
                },
                "unsupported dtype 77",
            ),
            (
                BundleEntryProto {
                    size: 8,
                    ..base.clone()
                },
                "invalid size",
            ),
            (
                BundleEntryProto {
                    offset: i64::MAX,
                    ..base.clone()
                },
                "needs bytes",
            ),
            (
                BundleEntryProto {
                    offset: -1,
                    ..base.clone()
                },
                "negative offset",
            ),
            (
                BundleEntryProto {
                    shard_id: 3,
                    ..base.clone()
                },
                "shard_id 3",
            ),
            (
                BundleEntryProto {
                    shape: Some(shape_to_proto(&[1 << 40, 1 << 40])),
                    ..base.clone()
                },
                "too many elements",
            ),
            (
                BundleEntryProto {
                    shape: Some(crate::proto::TensorShapeProto::from_dims(&[-1])),
                    ..base.clone()
                },
                "not fully defined",
            ),
            (
                BundleEntryProto {
                    slices: vec![Default::default()],
                    ..base.clone()
                },
                "partitioned",
            ),
            (
                BundleEntryProto {
                    dtype: 7,
                    size: 12,
                    shape: Some(shape_to_proto(&[1_000_000_000])),
                    ..base.clone()
                },
                "cannot fit",
            ),
        ];
        for (entry, expected) in cases {
            let index = make_index(entry.clone());
            let err = index.read_tensor("t", &shards).unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains("'t'"),
                "{entry:?}: {err}"
            );
        }
        let err = make_index(base)
            .read_tensor("nope", &shards)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'nope' not found"), "{err}");
    }

    #[test]
    fn header_is_validated() {
        let table_with_header = |header: &[u8]| {
            build_table(TableOptions::TENSORFLOW, [(b"".as_slice(), header)]).unwrap()
        };
        let zero_shards = BundleHeaderProto {
            num_shards: 0,
            ..Default::default()
        }
        .encode_to_vec();
        let err = BundleIndex::parse(VARIABLES_INDEX, &table_with_header(&zero_shards))
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_shards is 0"), "{err}");
        let future = BundleHeaderProto {
            num_shards: 1,
            version: Some(VersionDef {
                producer: 5,
                min_consumer: 4,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let err = BundleIndex::parse(VARIABLES_INDEX, &table_with_header(&future))
            .unwrap_err()
            .to_string();
        assert!(err.contains("min_consumer 4"), "{err}");
        let no_header = build_table(
            TableOptions::TENSORFLOW,
            [(b"x".as_slice(), b"".as_slice())],
        )
        .unwrap();
        let err = BundleIndex::parse(VARIABLES_INDEX, &no_header)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not the bundle header"), "{err}");
    }

    #[test]
    fn big_endian_bundles_are_byte_swapped() {
        let values = [1.5f32, -2.0];
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        let header = BundleHeaderProto {
            num_shards: 1,
            endianness: BundleHeaderProto::BIG_ENDIAN,
            version: Some(VersionDef {
                producer: 1,
                ..Default::default()
            }),
        }
        .encode_to_vec();
        let entry = BundleEntryProto {
            dtype: 1,
            shape: Some(shape_to_proto(&[2])),
            size: 8,
            crc32c: crc::masked_crc32c(&data),
            ..Default::default()
        }
        .encode_to_vec();
        let bytes = build_table(
            TableOptions::TENSORFLOW,
            [
                (b"".as_slice(), header.as_slice()),
                (b"v".as_slice(), entry.as_slice()),
            ],
        )
        .unwrap();
        let index = BundleIndex::parse("ckpt.index", &bytes).unwrap();
        assert_eq!(
            index.data_file_names(),
            vec!["ckpt.data-00000-of-00001".to_string()]
        );
        let t = index.read_tensor("v", &[Some(&data)]).unwrap();
        assert_eq!(t.data(), &TensorData::F32(values.to_vec()));
    }

    #[test]
    fn writer_rejects_bad_names() {
        let t = f32_tensor(vec![1], vec![1.0]);
        assert!(write_bundle([("", &t)]).is_err());
        assert!(write_bundle([("a", &t), ("a", &t)]).is_err());
    }
}
