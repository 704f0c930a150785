//! The LevelDB table ("SSTable") format, in the flavour TensorFlow uses for bundle `.index`
//! files (docs/reference/tensor_bundle.md §3).
//!
//! Why our own: no crate on crates.io writes tables the way TensorFlow does (TF has no filter
//! block, uses a 256 KiB block size and restart interval 1 in the index block), and we want our
//! `variables.index` to be byte-identical to TF's for the same tensors.
//!
//! Layout: `[data block + trailer]* [metaindex block + trailer] [index block + trailer] [footer]`.
//! A block is `entry* restart[u32]* num_restarts:u32`, an entry is
//! `varint shared | varint non_shared | varint value_len | key_delta | value`.
//! A trailer is a compression-type byte (always 0 = none here) and the masked CRC-32C of the
//! block plus that byte. The footer is two block handles, zero padding to 40 bytes, and the
//! 8-byte magic number.
//!
//! The reader treats the input as untrusted: every offset and length is bounds-checked, every
//! checksum verified, and all allocations are bounded by the input's size.

use crate::crc;
use crate::error::FormatError;

/// `0xdb4775248b80fb57`, the LevelDB table magic number, stored little-endian at the file end.
pub const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Footer size: two block handles padded to 40 bytes, plus the 8-byte magic.
pub const FOOTER_LEN: usize = 48;
/// Block trailer size: compression type byte + fixed32 masked CRC.
pub const BLOCK_TRAILER_LEN: usize = 5;

const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_SNAPPY: u8 = 1;

/// A key/value pair of a table.
pub type TableEntry = (Vec<u8>, Vec<u8>);

/// Options that determine the exact bytes a [`TableBuilder`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// A data block is flushed once its size estimate reaches this many bytes.
    pub block_size: usize,
    /// Every n-th entry of a data/metaindex block stores its full key (a restart point).
    pub block_restart_interval: usize,
}

impl TableOptions {
    /// What TensorFlow's `BundleWriter` uses (TF's table defaults, compression off).
    pub const TENSORFLOW: TableOptions = TableOptions {
        block_size: 256 * 1024,
        block_restart_interval: 16,
    };
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions::TENSORFLOW
    }
}

/// Position and length (without trailer) of a block inside the table file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

impl BlockHandle {
    fn encode_to(&self, out: &mut Vec<u8>) {
        put_varint64(out, self.offset);
        put_varint64(out, self.size);
    }

    /// Decodes a handle from the front of `input`; returns it and the bytes consumed.
    fn decode(input: &[u8]) -> Option<(BlockHandle, usize)> {
        let (offset, a) = get_varint64(input)?;
        let (size, b) = get_varint64(&input[a..])?;
        Some((BlockHandle { offset, size }, a + b))
    }
}

// ---------------------------------------------------------------------------------------------
// varints
// ---------------------------------------------------------------------------------------------

fn put_varint64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint32(out: &mut Vec<u8>, value: u32) {
    put_varint64(out, u64::from(value));
}

/// Decodes an unsigned LEB128 varint of at most 10 bytes; `None` if truncated or overlong.
pub(crate) fn get_varint64(input: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None; // more than 64 bits
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn get_varint32(input: &[u8]) -> Option<(u32, usize)> {
    let (value, len) = get_varint64(input)?;
    if len > 5 {
        return None;
    }
    Some((u32::try_from(value).ok()?, len))
}

fn read_fixed32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
}

// ---------------------------------------------------------------------------------------------
// writing
// ---------------------------------------------------------------------------------------------

/// Builds one block (data, metaindex or index).
struct BlockBuilder {
    restart_interval: usize,
    buffer: Vec<u8>,
    restarts: Vec<u32>,
    entries_since_restart: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    fn new(restart_interval: usize) -> BlockBuilder {
        BlockBuilder {
            restart_interval: restart_interval.max(1),
            buffer: Vec::new(),
            restarts: vec![0],
            entries_since_restart: 0,
            last_key: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Same estimate as LevelDB's `CurrentSizeEstimate`: it decides where blocks are cut, so it
    /// must match for byte-identical output.
    fn size_estimate(&self) -> usize {
        self.buffer.len() + self.restarts.len() * 4 + 4
    }

    fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), FormatError> {
        let mut shared = 0;
        if self.entries_since_restart < self.restart_interval {
            shared = key
                .iter()
                .zip(&self.last_key)
                .take_while(|(a, b)| a == b)
                .count();
        } else {
            self.restarts.push(len_u32(self.buffer.len())?);
            self.entries_since_restart = 0;
        }
        let non_shared = key.len() - shared;
        put_varint32(&mut self.buffer, len_u32(shared)?);
        put_varint32(&mut self.buffer, len_u32(non_shared)?);
        put_varint32(&mut self.buffer, len_u32(value.len())?);
        self.buffer.extend_from_slice(&key[shared..]);
        self.buffer.extend_from_slice(value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.entries_since_restart += 1;
        Ok(())
    }

    /// Appends the restart array and returns the finished block, leaving the builder empty.
    fn finish(&mut self) -> Vec<u8> {
        let mut block = std::mem::take(&mut self.buffer);
        for restart in &self.restarts {
            block.extend_from_slice(&restart.to_le_bytes());
        }
        // The restart count always fits: restarts only exist for entries already in `buffer`,
        // whose offsets were checked by `len_u32`.
        block.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts = vec![0];
        self.entries_since_restart = 0;
        self.last_key.clear();
        block
    }
}

fn len_u32(len: usize) -> Result<u32, FormatError> {
    u32::try_from(len).map_err(|_| FormatError::TableWrite {
        reason: format!("length {len} exceeds 4 GiB"),
    })
}

/// Writes an SSTable into memory. Keys must be added in strictly increasing bytewise order.
pub struct TableBuilder {
    options: TableOptions,
    out: Vec<u8>,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    last_key: Vec<u8>,
    num_entries: usize,
    /// A data block was flushed but its index entry waits for the next key, so that the
    /// separator can be shortened (LevelDB's `pending_index_entry`).
    pending_handle: Option<BlockHandle>,
}

impl TableBuilder {
    pub fn new(options: TableOptions) -> TableBuilder {
        TableBuilder {
            options,
            out: Vec::new(),
            data_block: BlockBuilder::new(options.block_restart_interval),
            index_block: BlockBuilder::new(1),
            last_key: Vec::new(),
            num_entries: 0,
            pending_handle: None,
        }
    }

    /// Adds an entry; fails if `key` is not greater than the previous key.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), FormatError> {
        if self.num_entries > 0 && key <= self.last_key.as_slice() {
            return Err(FormatError::TableWrite {
                reason: format!(
                    "keys must be strictly increasing: {:?} after {:?}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(&self.last_key)
                ),
            });
        }
        // A huge entry gets a block of its own rather than bloating the current one.
        if !self.data_block.is_empty() && key.len() + value.len() >= 2 * self.options.block_size {
            self.flush()?;
        }
        if let Some(handle) = self.pending_handle.take() {
            let separator = shortest_separator(&self.last_key, key);
            let mut encoded = Vec::with_capacity(20);
            handle.encode_to(&mut encoded);
            self.index_block.add(&separator, &encoded)?;
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.num_entries += 1;
        self.data_block.add(key, value)?;
        if self.data_block.size_estimate() >= self.options.block_size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), FormatError> {
        if self.data_block.is_empty() {
            return Ok(());
        }
        let block = self.data_block.finish();
        self.pending_handle = Some(self.write_block(&block));
        Ok(())
    }

    fn write_block(&mut self, block: &[u8]) -> BlockHandle {
        let handle = BlockHandle {
            offset: self.out.len() as u64,
            size: block.len() as u64,
        };
        self.out.extend_from_slice(block);
        self.out.push(COMPRESSION_NONE);
        let crc = crc::mask(crc32c::crc32c_append(
            crc::crc32c(block),
            &[COMPRESSION_NONE],
        ));
        self.out.extend_from_slice(&crc.to_le_bytes());
        handle
    }

    /// Writes the pending data block, the (empty) metaindex block, the index block and the
    /// footer, and returns the table's bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, FormatError> {
        self.flush()?;
        let mut metaindex = BlockBuilder::new(self.options.block_restart_interval);
        let metaindex_handle = self.write_block(&metaindex.finish());
        if let Some(handle) = self.pending_handle.take() {
            let successor = short_successor(&self.last_key);
            let mut encoded = Vec::with_capacity(20);
            handle.encode_to(&mut encoded);
            self.index_block.add(&successor, &encoded)?;
        }
        let index = self.index_block.finish();
        let index_handle = self.write_block(&index);
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        metaindex_handle.encode_to(&mut footer);
        index_handle.encode_to(&mut footer);
        footer.resize(FOOTER_LEN - 8, 0);
        footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
        self.out.extend_from_slice(&footer);
        Ok(self.out)
    }
}

/// LevelDB's `BytewiseComparator::FindShortestSeparator`: a short key `k` with
/// `start <= k < limit`.
fn shortest_separator(start: &[u8], limit: &[u8]) -> Vec<u8> {
    let common = start.iter().zip(limit).take_while(|(a, b)| a == b).count();
    if common < start.len().min(limit.len()) {
        let byte = start[common];
        if byte < 0xff && byte + 1 < limit[common] {
            let mut separator = start[..=common].to_vec();
            separator[common] = byte + 1;
            return separator;
        }
    }
    start.to_vec()
}

/// LevelDB's `BytewiseComparator::FindShortSuccessor`: a short key `>= key`.
fn short_successor(key: &[u8]) -> Vec<u8> {
    match key.iter().position(|&b| b != 0xff) {
        Some(i) => {
            let mut successor = key[..=i].to_vec();
            successor[i] += 1;
            successor
        }
        None => key.to_vec(),
    }
}

/// Builds a table from entries that are already sorted by key.
pub fn build_table<'a>(
    options: TableOptions,
    entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Vec<u8>, FormatError> {
    let mut builder = TableBuilder::new(options);
    for (key, value) in entries {
        builder.add(key, value)?;
    }
    builder.finish()
}

// ---------------------------------------------------------------------------------------------
// reading
// ---------------------------------------------------------------------------------------------

/// A parsed view of an SSTable held in memory. `file` names the file in error messages.
#[derive(Debug)]
pub struct Table<'a> {
    file: String,
    bytes: &'a [u8],
    /// (separator key, data block handle) in file order.
    index: Vec<(Vec<u8>, BlockHandle)>,
}

impl<'a> Table<'a> {
    /// Checks the footer and reads the index block.
    pub fn open(file: &str, bytes: &'a [u8]) -> Result<Table<'a>, FormatError> {
        if bytes.len() < FOOTER_LEN {
            return Err(FormatError::table(
                file,
                format!(
                    "file is {} bytes, shorter than the {FOOTER_LEN}-byte table footer (truncated?)",
                    bytes.len()
                ),
            ));
        }
        let footer = &bytes[bytes.len() - FOOTER_LEN..];
        let magic = u64::from_le_bytes([
            footer[40], footer[41], footer[42], footer[43], footer[44], footer[45], footer[46],
            footer[47],
        ]);
        if magic != TABLE_MAGIC {
            return Err(FormatError::table(
                file,
                "not an sstable (bad magic number)",
            ));
        }
        let (metaindex_handle, used) = BlockHandle::decode(&footer[..40])
            .ok_or_else(|| FormatError::table(file, "bad metaindex handle in footer"))?;
        let (index_handle, _) = BlockHandle::decode(&footer[used..40])
            .ok_or_else(|| FormatError::table(file, "bad index handle in footer"))?;
        let mut table = Table {
            file: file.to_string(),
            bytes,
            index: Vec::new(),
        };
        // The metaindex block only ever holds filter-block handles, which TF neither writes nor
        // uses, so its entries are ignored; its checksum is still verified so that a damaged
        // file is not silently accepted.
        table.read_block(metaindex_handle, "metaindex")?;
        let index_block = table.read_block(index_handle, "index")?;
        for entry in BlockIter::new(file, "index", &index_block)? {
            let (key, value) = entry?;
            let (handle, used) = BlockHandle::decode(&value)
                .ok_or_else(|| FormatError::table(file, "bad block handle in index block"))?;
            if used != value.len() {
                return Err(FormatError::table(
                    file,
                    "trailing bytes after block handle in index block",
                ));
            }
            table.index.push((key, handle));
        }
        Ok(table)
    }

    /// Number of data blocks.
    pub fn num_data_blocks(&self) -> usize {
        self.index.len()
    }

    /// Reads a block and its trailer, checking bounds, checksum and compression type.
    fn read_block(&self, handle: BlockHandle, kind: &'static str) -> Result<Vec<u8>, FormatError> {
        let data_end = (self.bytes.len() - FOOTER_LEN) as u64;
        let end = handle
            .offset
            .checked_add(handle.size)
            .and_then(|e| e.checked_add(BLOCK_TRAILER_LEN as u64))
            .filter(|&e| e <= data_end)
            .ok_or_else(|| {
                FormatError::table(
                    &self.file,
                    format!(
                        "{kind} block handle (offset {}, size {}) points outside the file ({} bytes before the footer)",
                        handle.offset, handle.size, data_end
                    ),
                )
            })?;
        // In range of a slice length, so these conversions cannot truncate.
        let start = handle.offset as usize;
        let contents_end = end as usize - BLOCK_TRAILER_LEN;
        let contents = &self.bytes[start..contents_end];
        let compression = self.bytes[contents_end];
        let stored = read_fixed32(self.bytes, contents_end + 1).unwrap_or_default();
        let computed = crc::mask(crc32c::crc32c_append(crc::crc32c(contents), &[compression]));
        if stored != computed {
            return Err(FormatError::BlockChecksum {
                file: self.file.clone(),
                block: kind,
                offset: handle.offset,
                stored,
                computed,
            });
        }
        match compression {
            COMPRESSION_NONE => Ok(contents.to_vec()),
            COMPRESSION_SNAPPY => Err(FormatError::table(
                &self.file,
                format!(
                    "{kind} block at offset {} is Snappy-compressed, which is not supported (TensorFlow never compresses bundle indexes)",
                    handle.offset
                ),
            )),
            other => Err(FormatError::table(
                &self.file,
                format!(
                    "{kind} block at offset {} has unknown compression type {other}",
                    handle.offset
                ),
            )),
        }
    }

    /// All entries in file order. Fails if a block is corrupt or keys are not strictly
    /// increasing (a sign of a damaged table).
    pub fn entries(&self) -> Result<Vec<TableEntry>, FormatError> {
        let mut all: Vec<TableEntry> = Vec::new();
        for (separator, handle) in &self.index {
            let block = self.read_block(*handle, "data")?;
            for entry in BlockIter::new(&self.file, "data", &block)? {
                let (key, value) = entry?;
                if let Some((previous, _)) = all.last()
                    && key.as_slice() <= previous.as_slice()
                {
                    return Err(FormatError::table(
                        &self.file,
                        format!(
                            "keys out of order: {:?} after {:?}",
                            String::from_utf8_lossy(&key),
                            String::from_utf8_lossy(previous)
                        ),
                    ));
                }
                if key.as_slice() > separator.as_slice() {
                    return Err(FormatError::table(
                        &self.file,
                        format!(
                            "key {:?} lies beyond its index separator {:?}",
                            String::from_utf8_lossy(&key),
                            String::from_utf8_lossy(separator)
                        ),
                    ));
                }
                all.push((key, value));
            }
        }
        Ok(all)
    }

    /// Looks up one key: the first data block whose separator is `>= key` is the only one
    /// that can hold it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, FormatError> {
        let position = self
            .index
            .partition_point(|(separator, _)| separator.as_slice() < key);
        let Some((_, handle)) = self.index.get(position) else {
            return Ok(None);
        };
        let block = self.read_block(*handle, "data")?;
        for entry in BlockIter::new(&self.file, "data", &block)? {
            let (candidate, value) = entry?;
            if candidate == key {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

/// Iterates the entries of one block, validating every length against the block's bounds.
struct BlockIter<'b> {
    file: &'b str,
    kind: &'static str,
    block: &'b [u8],
    /// End of the entry area (start of the restart array).
    entries_end: usize,
    position: usize,
    key: Vec<u8>,
    failed: bool,
}

impl<'b> BlockIter<'b> {
    fn new(
        file: &'b str,
        kind: &'static str,
        block: &'b [u8],
    ) -> Result<BlockIter<'b>, FormatError> {
        let corrupt = |reason: String| FormatError::table(file, format!("{kind} block: {reason}"));
        let num_restarts = block
            .len()
            .checked_sub(4)
            .and_then(|at| read_fixed32(block, at))
            .ok_or_else(|| corrupt(format!("{} bytes is too short for a block", block.len())))?;
        let restart_bytes = (num_restarts as usize)
            .checked_mul(4)
            .and_then(|n| n.checked_add(4))
            .filter(|&n| n <= block.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "restart count {num_restarts} does not fit in {} bytes",
                    block.len()
                ))
            })?;
        if num_restarts == 0 {
            return Err(corrupt(
                "restart count is 0 (the first entry is always a restart point)".into(),
            ));
        }
        let entries_end = block.len() - restart_bytes;
        for i in 0..num_restarts as usize {
            let restart = read_fixed32(block, entries_end + 4 * i).unwrap_or(u32::MAX);
            if restart as usize > entries_end {
                return Err(corrupt(format!(
                    "restart point {restart} lies outside the entries"
                )));
            }
        }
        Ok(BlockIter {
            file,
            kind,
            block,
            entries_end,
            position: 0,
            key: Vec::new(),
            failed: false,
        })
    }

    fn next_entry(&mut self) -> Result<TableEntry, FormatError> {
        let corrupt = |at: usize, reason: &str| {
            FormatError::table(
                self.file,
                format!("{} block: entry at offset {at}: {reason}", self.kind),
            )
        };
        let start = self.position;
        let area = &self.block[..self.entries_end];
        let mut at = start;
        let next_varint = |at: &mut usize| -> Result<usize, FormatError> {
            let (value, used) =
                get_varint32(&area[*at..]).ok_or_else(|| corrupt(start, "bad varint"))?;
            *at += used;
            Ok(value as usize)
        };
        let shared = next_varint(&mut at)?;
        let non_shared = next_varint(&mut at)?;
        let value_len = next_varint(&mut at)?;
        if shared > self.key.len() {
            return Err(corrupt(
                start,
                "shares more key bytes than the previous key has",
            ));
        }
        let key_end = at.checked_add(non_shared).filter(|&e| e <= area.len());
        let value_end = key_end
            .and_then(|k| k.checked_add(value_len))
            .filter(|&e| e <= area.len());
        let (Some(key_end), Some(value_end)) = (key_end, value_end) else {
            return Err(corrupt(
                start,
                "key/value extends past the end of the block",
            ));
        };
        self.key.truncate(shared);
        self.key.extend_from_slice(&area[at..key_end]);
        self.position = value_end;
        Ok((self.key.clone(), area[key_end..value_end].to_vec()))
    }
}

impl Iterator for BlockIter<'_> {
    type Item = Result<TableEntry, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.entries_end {
            return None;
        }
        let entry = self.next_entry();
        self.failed = entry.is_err();
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_options() -> TableOptions {
        TableOptions {
            block_size: 64,
            block_restart_interval: 2,
        }
    }

    #[test]
    fn empty_block_is_eight_bytes() {
        assert_eq!(BlockBuilder::new(16).finish(), [0, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn block_shares_prefixes_and_places_restarts() {
        let mut block = BlockBuilder::new(2);
        block.add(b"dense/bias", b"A").unwrap();
        block.add(b"dense/kernel", b"B").unwrap(); // shares "dense/"
        block.add(b"dense_1/bias", b"C").unwrap(); // restart: full key
        let bytes = block.finish();
        let mut expected = vec![0, 10, 1];
        expected.extend_from_slice(b"dense/biasA");
        expected.extend_from_slice(&[6, 6, 1]);
        expected.extend_from_slice(b"kernelB");
        let third = expected.len() as u32;
        expected.extend_from_slice(&[0, 12, 1]);
        expected.extend_from_slice(b"dense_1/biasC");
        expected.extend_from_slice(&0u32.to_le_bytes());
        expected.extend_from_slice(&third.to_le_bytes());
        expected.extend_from_slice(&2u32.to_le_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn separators_follow_leveldb() {
        assert_eq!(shortest_separator(b"abc", b"abe"), b"abd");
        assert_eq!(shortest_separator(b"abc", b"abd"), b"abc"); // no room between c and d
        assert_eq!(shortest_separator(b"ab", b"abc"), b"ab"); // prefix: unchanged
        assert_eq!(shortest_separator(b"a\xff", b"b"), b"a\xff");
        assert_eq!(short_successor(b"dense/kernel"), b"e");
        assert_eq!(short_successor(b"strings"), b"t");
        assert_eq!(short_successor(b"\xff\xffa"), b"\xff\xffb");
        assert_eq!(short_successor(b"\xff"), b"\xff");
        assert_eq!(short_successor(b""), b"");
    }

    #[test]
    fn round_trip_with_many_blocks() {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
            .map(|i| {
                (
                    format!("key/{i:05}").into_bytes(),
                    format!("value-{i}").into_bytes(),
                )
            })
            .collect();
        let bytes = build_table(
            small_options(),
            entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        )
        .unwrap();
        let table = Table::open("t.index", &bytes).unwrap();
        assert!(
            table.num_data_blocks() > 10,
            "expected many blocks, got {}",
            table.num_data_blocks()
        );
        assert_eq!(table.entries().unwrap(), entries);
        for (key, value) in &entries {
            assert_eq!(table.get(key).unwrap().as_ref(), Some(value));
        }
        assert_eq!(table.get(b"key/").unwrap(), None);
        assert_eq!(table.get(b"key/00010x").unwrap(), None);
        assert_eq!(table.get(b"zzz").unwrap(), None);
    }

    #[test]
    fn empty_table_round_trips() {
        let bytes = build_table(TableOptions::TENSORFLOW, std::iter::empty()).unwrap();
        // metaindex (8+5) + index (8+5) + footer
        assert_eq!(bytes.len(), 13 + 13 + FOOTER_LEN);
        let table = Table::open("t.index", &bytes).unwrap();
        assert!(table.entries().unwrap().is_empty());
        assert_eq!(table.get(b"").unwrap(), None);
    }

    #[test]
    fn builder_rejects_unsorted_and_duplicate_keys() {
        let mut builder = TableBuilder::new(TableOptions::TENSORFLOW);
        builder.add(b"b", b"").unwrap();
        assert!(builder.add(b"a", b"").is_err());
        assert!(builder.add(b"b", b"").is_err());
    }

    #[test]
    fn huge_entry_gets_its_own_block() {
        let options = small_options();
        let big = vec![7u8; 2 * options.block_size];
        let bytes = build_table(
            options,
            [
                (b"a".as_slice(), b"x".as_slice()),
                (b"b".as_slice(), big.as_slice()),
            ],
        )
        .unwrap();
        let table = Table::open("t.index", &bytes).unwrap();
        assert_eq!(table.num_data_blocks(), 2);
        assert_eq!(table.get(b"b").unwrap(), Some(big));
    }

    #[test]
    fn footer_trailer_and_magic_are_checked() {
        let bytes = build_table(
            TableOptions::TENSORFLOW,
            [(b"k".as_slice(), b"v".as_slice())],
        )
        .unwrap();
        assert_eq!(
            &bytes[bytes.len() - 8..],
            [0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb]
        );
        // data block at offset 0: "00 01 01 'k' 'v'" + restarts (8) = 13 bytes, then trailer.
        assert_eq!(bytes[13], 0, "compression type byte");

        let mut bad_magic = bytes.clone();
        let last = bad_magic.len() - 1;
        bad_magic[last] ^= 1;
        let err = Table::open("x.index", &bad_magic).unwrap_err().to_string();
        assert!(
            err.contains("x.index") && err.contains("bad magic"),
            "{err}"
        );

        let mut bad_data = bytes.clone();
        bad_data[4] ^= 0x40; // the value byte 'v'
        let table = Table::open("x.index", &bad_data).unwrap();
        let err = table.entries().unwrap_err().to_string();
        assert!(
            err.contains("block checksum mismatch in data block"),
            "{err}"
        );

        let err = Table::open("x.index", &bytes[..20])
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter than"), "{err}");
    }

    #[test]
    fn handles_pointing_outside_are_errors() {
        let mut bytes = build_table(
            TableOptions::TENSORFLOW,
            [(b"k".as_slice(), b"v".as_slice())],
        )
        .unwrap();
        let footer_start = bytes.len() - FOOTER_LEN;
        // Replace the footer's handles with a huge index handle.
        let (metaindex, _) = BlockHandle::decode(&bytes[footer_start..]).unwrap();
        let mut footer = Vec::new();
        metaindex.encode_to(&mut footer);
        BlockHandle {
            offset: u64::MAX - 2,
            size: 10,
        }
        .encode_to(&mut footer);
        footer.resize(40, 0);
        bytes[footer_start..footer_start + 40].copy_from_slice(&footer);
        let err = Table::open("x.index", &bytes).unwrap_err().to_string();
        assert!(err.contains("points outside the file"), "{err}");
    }

    #[test]
    fn varint_decoding_rejects_overlong_input() {
        assert_eq!(get_varint64(&[0x80; 11]), None);
        assert_eq!(
            get_varint64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
        assert_eq!(
            get_varint64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Some((u64::MAX, 10))
        );
        assert_eq!(get_varint32(&[0xff, 0xff, 0xff, 0xff, 0x1f]), None);
        assert_eq!(get_varint64(&[]), None);
    }
}
