//! Instances files and request bodies -> batched input tensors.

use std::collections::BTreeMap;
use std::io::BufRead;

use savedmodel_format::{HostTensor, SignatureInfo, TensorData};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::convert::{Column, InstanceSeed, Problem, columns_for};
use crate::json::{self, JsonError, Rules};
use crate::{InstanceAt, PredictJsonError};

/// How the instances are written, as gcloud's three flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceFormat {
    /// `--json-instances`: one JSON instance per line.
    JsonLines,
    /// `--json-request`: one JSON document `{"instances": [...]}`.
    JsonRequest,
    /// `--text-instances`: every line is one string instance.
    TextLines,
}

/// Instances stacked into one tensor per signature input (`[n, ...instance dims]`).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceBatch {
    /// Keyed by signature input name; what `LoadedModel::run` takes.
    pub inputs: BTreeMap<String, HostTensor>,
    pub num_instances: usize,
    /// Index (0-based) of this batch's first instance in the whole input.
    pub first_instance: usize,
}

/// The longest line accepted, so a file without newlines cannot make us allocate without bound.
pub const MAX_LINE_BYTES: usize = 256 << 20;

/// Reads every instance of `reader` into one batch. See [`read_instances`] for the rules.
pub fn parse_instances<R: BufRead>(
    reader: R,
    format: InstanceFormat,
    signature: &SignatureInfo,
) -> Result<InstanceBatch, PredictJsonError> {
    let mut batches = read_instances(reader, format, signature, usize::MAX)?;
    match batches.next() {
        Some(batch) => batch,
        None => Err(PredictJsonError::NoInstances),
    }
}

/// Streams the instances of `reader` as batches of at most `max_batch` instances, checking each
/// against `signature` (gcloud's rules, `docs/reference/serving_api.md` B2-B3):
///
/// * a single-input signature takes a bare value per instance, or an object whose only key is
///   the input name; several inputs need an object with exactly the input names as keys;
/// * values must have the input's dtype and the shape of the signature without its batch
///   dimension (unknown dims are fixed by the first instance); `{"b64": "..."}` gives the bytes
///   of a string element;
/// * line-based formats: no empty lines, a UTF-8 BOM is ignored, `\r\n` endings are fine.
///
/// Lines are read one at a time, so a large file is never held whole (a `JsonRequest` body is one
/// JSON document and is read whole, as gcloud does). The first error stops the stream, and the
/// stream yields an error, not an empty batch, when there are no instances at all.
pub fn read_instances<R: BufRead>(
    reader: R,
    format: InstanceFormat,
    signature: &SignatureInfo,
    max_batch: usize,
) -> Result<InstanceBatches<R>, PredictJsonError> {
    let (columns, records) = match format {
        InstanceFormat::JsonRequest => (
            columns_for(signature).map_err(PredictJsonError::UnsupportedSignature)?,
            None,
        ),
        InstanceFormat::JsonLines | InstanceFormat::TextLines => {
            (Vec::new(), Some(RecordBatcher::new(signature, format)?))
        }
    };
    Ok(InstanceBatches {
        reader: Some(reader),
        format,
        columns,
        records,
        signature: signature.name.clone(),
        max_batch: max_batch.max(1),
        lines_read: 0,
        instances_read: 0,
        pending: None,
        line: Vec::new(),
        failed: false,
    })
}

/// Converts already-parsed instances (e.g. the `instances` array of an HTTP request body) with the
/// same rules as [`read_instances`]; errors name the instance as `instances[i]`.
pub fn instances_from_json_values(
    values: &[serde_json::Value],
    signature: &SignatureInfo,
) -> Result<InstanceBatch, PredictJsonError> {
    let mut columns = columns_for(signature).map_err(PredictJsonError::UnsupportedSignature)?;
    if values.is_empty() {
        return Err(PredictJsonError::NoInstances);
    }
    for (index, value) in values.iter().enumerate() {
        let mut problem: Problem = None;
        let seed = InstanceSeed {
            columns: &mut columns,
            signature: &signature.name,
            problem: &mut problem,
        };
        if let Err(e) = seed.deserialize(value) {
            return Err(instance_error(
                InstanceAt::Index(index),
                problem,
                &e.to_string(),
            ));
        }
    }
    finish_batch(&mut columns, 0)
}

/// Converts the text of a JSON array of instances (`[inst, inst, ...]`, e.g. the raw `instances`
/// value of a request body) without building a `serde_json::Value` per number: the fast path for
/// servers. Same rules and messages as [`instances_from_json_values`].
pub fn instances_from_json_array(
    text: &[u8],
    signature: &SignatureInfo,
) -> Result<InstanceBatch, PredictJsonError> {
    let mut columns = columns_for(signature).map_err(PredictJsonError::UnsupportedSignature)?;
    let mut problem: Problem = None;
    let mut request_problem: Option<String> = None;
    let mut failed_at = 0usize;
    let mut de = json::Deserializer::new(text, Rules::Gcloud);
    let seed = InstanceArraySeed {
        columns: &mut columns,
        signature: &signature.name,
        problem: &mut problem,
        request_problem: &mut request_problem,
        failed_at: &mut failed_at,
    };
    let parsed = seed
        .deserialize(&mut de)
        .and_then(|count| de.end().map(|()| count));
    match parsed {
        Ok(0) => Err(PredictJsonError::NoInstances),
        Ok(_) => finish_batch(&mut columns, 0),
        Err(e) => match (request_problem, problem) {
            (Some(message), _) => Err(PredictJsonError::InvalidRequest(message)),
            (None, Some(message)) => Err(PredictJsonError::InvalidInstance {
                at: InstanceAt::Index(failed_at),
                message,
            }),
            (None, None) => Err(json_syntax_error(InstanceAt::Line(e.line()), &e)),
        },
    }
}

/// Iterator of [`InstanceBatch`]es; see [`read_instances`].
pub struct InstanceBatches<R> {
    reader: Option<R>,
    format: InstanceFormat,
    /// A `JsonRequest`'s instances (empty for the line formats).
    columns: Vec<Column>,
    /// Line formats: each line is a record of the same batcher batch prediction uses (with its
    /// fast path for rows of numbers).
    records: Option<RecordBatcher>,
    signature: String,
    max_batch: usize,
    lines_read: usize,
    instances_read: usize,
    /// A whole `JsonRequest` batch, handed out `max_batch` rows at a time.
    pending: Option<(InstanceBatch, usize)>,
    line: Vec<u8>,
    failed: bool,
}

impl<R: BufRead> Iterator for InstanceBatches<R> {
    type Item = Result<InstanceBatch, PredictJsonError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = match self.format {
            InstanceFormat::JsonRequest => self.next_from_request(),
            InstanceFormat::JsonLines | InstanceFormat::TextLines => self.next_from_lines(),
        };
        if matches!(result, Some(Err(_))) {
            self.failed = true;
        }
        result
    }
}

impl<R: BufRead> InstanceBatches<R> {
    fn next_from_lines(&mut self) -> Option<Result<InstanceBatch, PredictJsonError>> {
        let first_instance = self.instances_read;
        let mut in_batch = 0usize;
        while in_batch < self.max_batch {
            let reader = self.reader.as_mut()?;
            match read_line(reader, &mut self.line) {
                Err(e) => return Some(Err(PredictJsonError::Read(e))),
                Ok(false) => {
                    self.reader = None;
                    break;
                }
                Ok(true) => {}
            }
            self.lines_read += 1;
            let at = InstanceAt::Line(self.lines_read);
            let records = self.records.as_mut()?;
            if let Err(e) = records.push(&self.line, at) {
                return Some(Err(e));
            }
            in_batch += 1;
            self.instances_read += 1;
        }
        if in_batch == 0 {
            if self.instances_read == 0 {
                self.reader = None;
                return Some(Err(PredictJsonError::NoInstances));
            }
            return None;
        }
        Some(self.records.as_mut()?.take_batch(first_instance))
    }

    fn next_from_request(&mut self) -> Option<Result<InstanceBatch, PredictJsonError>> {
        if let Some(mut reader) = self.reader.take() {
            let mut body = Vec::new();
            if let Err(e) = reader.read_to_end(&mut body) {
                return Some(Err(PredictJsonError::Read(e)));
            }
            match parse_request(&body, &mut self.columns, &self.signature) {
                Ok(batch) => self.pending = Some((batch, 0)),
                Err(e) => return Some(Err(e)),
            }
        }
        let (batch, offset) = self.pending.as_mut()?;
        if *offset >= batch.num_instances {
            self.pending = None;
            return None;
        }
        let end = batch
            .num_instances
            .min(offset.saturating_add(self.max_batch));
        if *offset == 0 && end == batch.num_instances {
            return self.pending.take().map(|(batch, _)| Ok(batch));
        }
        let chunk = InstanceBatch {
            inputs: batch
                .inputs
                .iter()
                .map(|(k, t)| (k.clone(), slice_rows(t, *offset, end)))
                .collect(),
            num_instances: end - *offset,
            first_instance: *offset,
        };
        *offset = end;
        Some(Ok(chunk))
    }
}

/// One instance from one record (a line without its end, or a TFRecord's data) into `columns`:
/// the shared rules of every line-based input.
fn parse_record(
    columns: &mut [Column],
    signature: &str,
    format: InstanceFormat,
    line: &[u8],
    at: InstanceAt,
) -> Result<(), PredictJsonError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(PredictJsonError::LineTooLong {
            at,
            max: MAX_LINE_BYTES,
        });
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(PredictJsonError::EmptyLine { at });
    }
    let mut problem: Problem = None;
    let seed = InstanceSeed {
        columns,
        signature,
        problem: &mut problem,
    };
    if format == InstanceFormat::TextLines {
        let Ok(text) = std::str::from_utf8(line) else {
            return Err(PredictJsonError::InvalidUtf8 { at });
        };
        return seed
            .visit_str::<de::value::Error>(text)
            .map_err(|e| instance_error(at, problem, &e.to_string()));
    }
    let mut de = json::Deserializer::new(line, Rules::Gcloud);
    match seed.deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(()),
        Err(e) => match problem {
            Some(message) => Err(PredictJsonError::InvalidInstance { at, message }),
            None => Err(json_syntax_error(at, &e)),
        },
    }
}

/// Instances added one record at a time, where a bad record is rejected alone and the batch
/// carries on (batch prediction: one malformed line must not cost its neighbours). Same rules
/// and messages as [`read_instances`] for `JsonLines` / `TextLines`.
#[derive(Debug)]
pub struct RecordBatcher {
    columns: Vec<Column>,
    signature: String,
    format: InstanceFormat,
    /// Width of the single flat float32 input, when there is one (the fast path).
    flat_width: Option<usize>,
    row: Vec<f32>,
}

/// Integers past 2^53 would be rounded twice on the fast path (to a double, then to a float);
/// the general path rounds them once.
const FAST_PATH_LIMIT: f32 = 9.0e15;

impl RecordBatcher {
    /// `format` is `JsonLines` (each record one JSON instance) or `TextLines` (each record one
    /// string instance); `JsonRequest` is not record-based and is refused.
    pub fn new(
        signature: &SignatureInfo,
        format: InstanceFormat,
    ) -> Result<RecordBatcher, PredictJsonError> {
        if format == InstanceFormat::JsonRequest {
            return Err(PredictJsonError::InvalidRequest(
                "a request body is not a sequence of records".to_string(),
            ));
        }
        let columns = columns_for(signature).map_err(PredictJsonError::UnsupportedSignature)?;
        let flat_width = match columns.as_slice() {
            [only] if format == InstanceFormat::JsonLines => only.flat_f32_width(),
            _ => None,
        };
        Ok(RecordBatcher {
            columns,
            signature: signature.name.clone(),
            format,
            flat_width,
            row: Vec::new(),
        })
    }

    /// Adds the instance in `record` (a UTF-8 BOM and a trailing `\r\n` are ignored). On error
    /// the batch is as it was before the call.
    pub fn push(&mut self, record: &[u8], at: InstanceAt) -> Result<(), PredictJsonError> {
        // The common case, a bare row of numbers for a `[-1, width]` float input, read straight
        // into floats (the same values the general path gives); anything else, and any row
        // that does not fit, goes the general way, which also words the errors.
        if let Some(width) = self.flat_width
            && record.len() <= MAX_LINE_BYTES
        {
            let line = trim_line(record);
            let mut cursor = json::Cursor::new(line, Rules::Gcloud);
            self.row.clear();
            if cursor.f32_array(&mut self.row) == Some(width)
                && line[cursor.offset()..].iter().all(u8::is_ascii_whitespace)
                && self
                    .row
                    .iter()
                    .all(|v| v.is_finite() && v.abs() < FAST_PATH_LIMIT)
                && let [column] = self.columns.as_mut_slice()
            {
                column.push_f32_row(&self.row);
                return Ok(());
            }
        }
        let marks: Vec<_> = self.columns.iter().map(Column::mark).collect();
        let result = parse_record(
            &mut self.columns,
            &self.signature,
            self.format,
            trim_line(record),
            at,
        );
        if result.is_err() {
            for (column, mark) in self.columns.iter_mut().zip(&marks) {
                column.rollback(mark);
            }
        }
        result
    }

    /// Instances added since the last [`RecordBatcher::take_batch`].
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, Column::instances)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The instances added so far as one batch (its `first_instance` is the caller's count);
    /// the batcher starts empty again, keeping the dims learned from the first instance.
    pub fn take_batch(&mut self, first_instance: usize) -> Result<InstanceBatch, PredictJsonError> {
        finish_batch(&mut self.columns, first_instance)
    }
}

/// Reads one line (without its `\n`) into `buf`; `false` at end of input. Reads at most one byte
/// past [`MAX_LINE_BYTES`], so an endless line is detected without storing it.
fn read_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    use std::io::Read as _;
    buf.clear();
    let limit = MAX_LINE_BYTES as u64 + 3; // + "\r\n" + one byte too many
    let n = reader.by_ref().take(limit).read_until(b'\n', buf)?;
    Ok(n > 0)
}

/// gcloud's per-line clean-up: `line.decode('utf-8-sig').rstrip('\r\n')`.
fn trim_line(line: &[u8]) -> &[u8] {
    let mut line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    while let Some((last, rest)) = line.split_last() {
        if *last == b'\n' || *last == b'\r' {
            line = rest;
        } else {
            break;
        }
    }
    line
}

fn finish_batch(
    columns: &mut [Column],
    first_instance: usize,
) -> Result<InstanceBatch, PredictJsonError> {
    let num_instances = columns.first().map_or(0, Column::instances);
    let mut inputs = BTreeMap::new();
    for col in columns.iter_mut() {
        let tensor = col
            .take_tensor()
            .map_err(|message| PredictJsonError::InvalidInstance {
                at: InstanceAt::Batch,
                message,
            })?;
        inputs.insert(col.name.clone(), tensor);
    }
    Ok(InstanceBatch {
        inputs,
        num_instances,
        first_instance,
    })
}

fn instance_error(at: InstanceAt, problem: Problem, fallback: &str) -> PredictJsonError {
    PredictJsonError::InvalidInstance {
        at,
        message: problem.unwrap_or_else(|| fallback.to_string()),
    }
}

/// A JSON syntax error (gcloud rules); the literal tokens `NaN`/`Infinity` (which Python's json
/// accepts but JSON does not) get their own message.
fn json_syntax_error(at: InstanceAt, error: &JsonError) -> PredictJsonError {
    match error.non_finite_token() {
        Some(token) => PredictJsonError::NonFiniteNumber {
            at,
            token: token.to_string(),
            column: error.column(),
        },
        None => PredictJsonError::InvalidJson {
            at,
            column: error.column(),
            message: error.reason().to_string(),
        },
    }
}

/// `{"instances": [...]}` -> one batch. Other keys are ignored, as gcloud does.
fn parse_request(
    body: &[u8],
    columns: &mut [Column],
    signature: &str,
) -> Result<InstanceBatch, PredictJsonError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut problem: Problem = None;
    let mut request_problem: Option<String> = None;
    let mut failed_at = 0usize;
    let mut found_instances = false;
    let mut de = json::Deserializer::new(body, Rules::Gcloud);
    let seed = RequestSeed {
        columns: &mut *columns,
        signature,
        problem: &mut problem,
        request_problem: &mut request_problem,
        failed_at: &mut failed_at,
        found_instances: &mut found_instances,
    };
    let result = seed
        .deserialize(&mut de)
        .and_then(|count| de.end().map(|()| count));
    match result {
        Ok(_) if !found_instances => Err(PredictJsonError::InvalidRequest(
            "the request has no \"instances\" key".to_string(),
        )),
        Ok(0) => Err(PredictJsonError::NoInstances),
        Ok(_) => finish_batch(columns, 0),
        Err(e) => match (request_problem, problem) {
            (Some(message), _) => Err(PredictJsonError::InvalidRequest(message)),
            (None, Some(message)) => Err(PredictJsonError::InvalidInstance {
                at: InstanceAt::Index(failed_at),
                message,
            }),
            (None, None) => Err(json_syntax_error(InstanceAt::Line(e.line()), &e)),
        },
    }
}

struct RequestSeed<'a> {
    columns: &'a mut [Column],
    signature: &'a str,
    problem: &'a mut Problem,
    /// A problem with the request's structure rather than with one instance.
    request_problem: &'a mut Option<String>,
    failed_at: &'a mut usize,
    found_instances: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object with an \"instances\" list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while let Some(key) = map.next_key::<String>()? {
            if key != "instances" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if *self.found_instances {
                *self.request_problem = Some("\"instances\" appears twice".to_string());
                return Err(de::Error::custom("invalid request"));
            }
            *self.found_instances = true;
            count = map.next_value_seed(InstanceArraySeed {
                columns: &mut *self.columns,
                signature: self.signature,
                problem: &mut *self.problem,
                request_problem: &mut *self.request_problem,
                failed_at: &mut *self.failed_at,
            })?;
        }
        Ok(count)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<usize, A::Error> {
        *self.request_problem =
            Some("expected a JSON object with an \"instances\" list, found a list".to_string());
        Err(de::Error::custom("invalid request"))
    }

    fn visit_str<E: de::Error>(self, _v: &str) -> Result<usize, E> {
        self.not_an_object("a string")
    }

    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<usize, E> {
        self.not_an_object("a number")
    }

    fn visit_i64<E: de::Error>(self, _v: i64) -> Result<usize, E> {
        self.not_an_object("a number")
    }

    fn visit_u64<E: de::Error>(self, _v: u64) -> Result<usize, E> {
        self.not_an_object("a number")
    }

    fn visit_bool<E: de::Error>(self, _v: bool) -> Result<usize, E> {
        self.not_an_object("a boolean")
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        self.not_an_object("null")
    }
}

impl RequestSeed<'_> {
    fn not_an_object<E: de::Error>(self, found: &str) -> Result<usize, E> {
        *self.request_problem = Some(format!(
            "expected a JSON object with an \"instances\" list, found {found}"
        ));
        Err(E::custom("invalid request"))
    }
}

/// A JSON array of instances; yields how many there were.
struct InstanceArraySeed<'a> {
    columns: &'a mut [Column],
    signature: &'a str,
    problem: &'a mut Problem,
    request_problem: &'a mut Option<String>,
    failed_at: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for InstanceArraySeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InstanceArraySeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of instances")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0usize;
        loop {
            *self.failed_at = count;
            let seed = InstanceSeed {
                columns: &mut *self.columns,
                signature: self.signature,
                problem: &mut *self.problem,
            };
            match seq.next_element_seed(seed)? {
                Some(()) => count += 1,
                None => return Ok(count),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<usize, A::Error> {
        *self.request_problem = Some("\"instances\" must be a list, found an object".to_string());
        Err(de::Error::custom("invalid request"))
    }

    fn visit_str<E: de::Error>(self, _v: &str) -> Result<usize, E> {
        self.not_a_list("a string")
    }

    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<usize, E> {
        self.not_a_list("a number")
    }

    fn visit_i64<E: de::Error>(self, _v: i64) -> Result<usize, E> {
        self.not_a_list("a number")
    }

    fn visit_u64<E: de::Error>(self, _v: u64) -> Result<usize, E> {
        self.not_a_list("a number")
    }

    fn visit_bool<E: de::Error>(self, _v: bool) -> Result<usize, E> {
        self.not_a_list("a boolean")
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        self.not_a_list("null")
    }
}

impl InstanceArraySeed<'_> {
    fn not_a_list<E: de::Error>(self, found: &str) -> Result<usize, E> {
        *self.request_problem = Some(format!("\"instances\" must be a list, found {found}"));
        Err(E::custom("invalid request"))
    }
}

/// Rows `start..end` (along dim 0) of `tensor`.
fn slice_rows(tensor: &HostTensor, start: usize, end: usize) -> HostTensor {
    let rows = tensor.shape().first().copied().unwrap_or(0);
    let row_len = tensor.shape()[1..].iter().product::<usize>();
    let (a, b) = (start * row_len, end.min(rows) * row_len);
    let data = match tensor.data() {
        TensorData::F32(v) => TensorData::F32(v[a..b].to_vec()),
        TensorData::F64(v) => TensorData::F64(v[a..b].to_vec()),
        TensorData::I32(v) => TensorData::I32(v[a..b].to_vec()),
        TensorData::I64(v) => TensorData::I64(v[a..b].to_vec()),
        TensorData::U8(v) => TensorData::U8(v[a..b].to_vec()),
        TensorData::I16(v) => TensorData::I16(v[a..b].to_vec()),
        TensorData::I8(v) => TensorData::I8(v[a..b].to_vec()),
        TensorData::Bool(v) => TensorData::Bool(v[a..b].to_vec()),
        TensorData::Str(v) => TensorData::Str(v[a..b].to_vec()),
    };
    let mut shape = tensor.shape().to_vec();
    shape[0] = end.min(rows) - start;
    // The element count matches the shape by construction.
    HostTensor::new(shape, data).unwrap_or_else(|_| tensor.clone())
}
