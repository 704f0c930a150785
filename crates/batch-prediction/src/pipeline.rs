//! The run: read → (parse → predict → format) × workers → reorder → write. See the crate docs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use predict_json::{InstanceAt, InstanceFormat, PyValue, RecordBatcher};
use savedmodel_runtime::{
    DEFAULT_SIGNATURE, DataType, HostTensor, LoadedModel, SignatureInfo, TensorData,
};
use storage::Location;

use crate::{
    BatchPredictionError, BatchPredictionOutput, BatchPredictionRequest, DEFAULT_BATCH_SIZE,
    DataFormat, ERRORS_FILE, MAX_ERRORS_KEPT, MIN_CHUNK_RECORDS, RESULTS_FILE, RecordError,
    RecordUnit, expand_input_paths,
};

/// Chunks in flight between the reader and the workers (bounds memory to a few chunks).
const CHANNEL_DEPTH: usize = 4;

/// Records of one file, cut into a chunk.
struct Chunk {
    seq: usize,
    file: Arc<str>,
    /// 1-based number of the first record in its file.
    first_record: usize,
    /// What records are numbered in (lines of text, TFRecord records).
    unit: RecordUnit,
    data: Vec<u8>,
    /// End offset of each record in `data`.
    ends: Vec<usize>,
}

impl Chunk {
    fn new(
        seq: usize,
        file: Arc<str>,
        first_record: usize,
        unit: RecordUnit,
        capacity: usize,
    ) -> Chunk {
        Chunk {
            seq,
            file,
            first_record,
            unit,
            data: Vec::new(),
            ends: Vec::with_capacity(capacity),
        }
    }

    fn records(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let record = &self.data[start..end];
            start = end;
            record
        })
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// What a worker made of a chunk.
struct Done {
    seq: usize,
    text: String,
    predictions: u64,
    errors: Vec<RecordError>,
}

/// How records become model inputs.
#[derive(Clone, Copy)]
enum Feed {
    /// The signature's only input is a string: each record is one element, as is.
    RawString,
    /// Each record is one JSON instance.
    Json,
}

/// Runs a batch prediction (blocking; the jobs service calls it from a blocking task). See the
/// crate docs for what is read and written.
pub fn run_batch_prediction(
    request: &BatchPredictionRequest,
) -> Result<BatchPredictionOutput, BatchPredictionError> {
    let started = Instant::now();
    let output_dir = Location::parse_with(&request.output_path, &request.storage)
        .map_err(BatchPredictionError::storage("predictionInput.outputPath"))?;
    let files = expand_input_paths(&request.input_paths, &request.storage)?;

    let batch_size = request.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1);
    let chunk_records = batch_size.max(MIN_CHUNK_RECORDS);
    let model_dir = Location::parse_with(&request.model_dir, &request.storage)
        .map_err(BatchPredictionError::storage("the model directory"))?;
    let limits = savedmodel_runtime::LoadLimits {
        memory_budget: request.memory_budget,
        max_batch: chunk_records,
    };
    let model = LoadedModel::load_blocking_with(&model_dir, &["serve"], &request.device, &limits)
        .map_err(|e| {
        BatchPredictionError::Model(format!("cannot load the SavedModel in {model_dir}: {e}"))
    })?;
    let signature = choose_signature(&model, request.signature_name.as_deref())?.clone();
    let feed = match signature.inputs.values().collect::<Vec<_>>().as_slice() {
        [only] if only.dtype == DataType::String => Feed::RawString,
        _ => Feed::Json,
    };
    if let Feed::Json = feed {
        // Refuse a signature JSON cannot feed now, not once per record.
        RecordBatcher::new(&signature, InstanceFormat::JsonLines).map_err(|e| {
            BatchPredictionError::Model(format!("signature \"{}\": {e}", signature.name))
        })?;
    }

    let threads = request
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let (done_tx, done_rx) = sync_channel::<Result<Done, BatchPredictionError>>(CHANNEL_DEPTH * 2);
    let cancelled = || {
        request
            .cancel
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    };

    let mut results = String::new();
    let mut prediction_count = 0u64;
    let mut error_count = 0u64;
    let mut errors: Vec<RecordError> = Vec::new();
    let mut error_stats: Vec<(String, u64)> = Vec::new();
    let outcome: Result<(), BatchPredictionError> = std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(CHANNEL_DEPTH);
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        let reader = scope.spawn({
            let files = &files;
            let format = request.data_format;
            let cancelled = &cancelled;
            move || read_all(files, format, chunk_records, chunk_tx, cancelled)
        });
        for _ in 0..threads {
            let chunk_rx = Arc::clone(&chunk_rx);
            let done_tx = done_tx.clone();
            let (model, signature) = (&model, &signature);
            scope.spawn(move || worker(model, signature, feed, &chunk_rx, &done_tx));
        }
        // The workers hold the only receivers now: when they stop, the reader stops too.
        drop(chunk_rx);
        drop(done_tx);
        // Reassemble in order; the first error stops the run (the reader and workers then stop
        // as their channels close).
        let mut pending: BTreeMap<usize, Done> = BTreeMap::new();
        let mut next = 0usize;
        let mut failure = None;
        for done in done_rx.iter() {
            let done = match done {
                Ok(done) => done,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            pending.insert(done.seq, done);
            while let Some(done) = pending.remove(&next) {
                next += 1;
                results.push_str(&done.text);
                prediction_count += done.predictions;
                error_count += done.errors.len() as u64;
                for error in done.errors {
                    match error_stats.iter_mut().find(|(m, _)| *m == error.message) {
                        Some((_, count)) => *count += 1,
                        None => error_stats.push((error.message.clone(), 1)),
                    }
                    if errors.len() < MAX_ERRORS_KEPT {
                        errors.push(error);
                    }
                }
            }
        }
        drop(done_rx);
        let read = reader
            .join()
            .map_err(|_| BatchPredictionError::Internal("the reader thread panicked".into()))?;
        match failure {
            Some(e) => Err(e),
            None => read,
        }
    });
    outcome?;
    if cancelled() {
        return Err(BatchPredictionError::Cancelled);
    }

    // Errors first, results last: a results file exists only for a run that finished.
    let errors_location = output_dir.join(ERRORS_FILE);
    let results_location = output_dir.join(RESULTS_FILE);
    let stats_text: String = error_stats
        .iter()
        .map(|(message, count)| {
            format!(
                "({}, {count})\n",
                PyValue::Str(message.clone()).to_python_repr()
            )
        })
        .collect();
    errors_location
        .write_blocking(Bytes::from(stats_text))
        .map_err(BatchPredictionError::storage(format!(
            "writing {errors_location}"
        )))?;
    if let Err(e) = results_location.write_blocking(Bytes::from(results)) {
        // Best effort: do not leave an errors file that suggests the run finished.
        let _ = errors_location.delete_blocking();
        return Err(BatchPredictionError::storage(format!(
            "writing {results_location}"
        ))(e));
    }
    Ok(BatchPredictionOutput {
        output_path: output_dir.url(),
        prediction_count,
        error_count,
        input_files: files.iter().map(Location::url).collect(),
        results_file: results_location.url(),
        errors_file: errors_location.url(),
        errors,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// gcloud's choice: the named signature; else the only one; else `serving_default`.
pub fn choose_signature<'m>(
    model: &'m LoadedModel,
    name: Option<&str>,
) -> Result<&'m SignatureInfo, BatchPredictionError> {
    let signatures = model.signatures();
    let available = || {
        signatures
            .keys()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key = match name {
        Some(name) => name,
        None if signatures.len() == 1 => signatures
            .keys()
            .next()
            .map_or(DEFAULT_SIGNATURE, String::as_str),
        None => DEFAULT_SIGNATURE,
    };
    match signatures.get(key) {
        Some(signature) => Ok(signature),
        None if name.is_some() => Err(BatchPredictionError::Model(format!(
            "the model has no signature \"{key}\"; its signatures are {}",
            available()
        ))),
        None => Err(BatchPredictionError::Model(format!(
            "the model has no signature \"{DEFAULT_SIGNATURE}\"; choose one of {} with --signature-name (signatureName)",
            available()
        ))),
    }
}

/// Reads every file into chunks, in order. Stops early (without error) when the workers are
/// gone; stops with `Cancelled` when asked to.
fn read_all(
    files: &[Location],
    format: DataFormat,
    chunk_records: usize,
    chunks: SyncSender<Chunk>,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<(), BatchPredictionError> {
    let mut seq = 0usize;
    let mut emit = |mut chunk: Chunk| -> Result<bool, BatchPredictionError> {
        if cancelled() {
            return Err(BatchPredictionError::Cancelled);
        }
        chunk.seq = seq;
        seq += 1;
        Ok(chunks.send(chunk).is_ok())
    };
    for file in files {
        let name: Arc<str> = Arc::from(file.url());
        let keep_going = if format.is_tfrecord() {
            read_tfrecords(file, &name, format, chunk_records, &mut emit)?
        } else {
            read_lines(file, &name, chunk_records, &mut emit)?
        };
        if !keep_going {
            break;
        }
    }
    Ok(())
}

/// Lines of a text file as records: streamed from local files, read whole from `gs://`.
/// `emit` returns `false` once nobody listens any more.
fn read_lines(
    file: &Location,
    name: &Arc<str>,
    chunk_records: usize,
    emit: &mut dyn FnMut(Chunk) -> Result<bool, BatchPredictionError>,
) -> Result<bool, BatchPredictionError> {
    let reader: Box<dyn BufRead> = match file.local_path() {
        Some(path) => {
            let opened = std::fs::File::open(&path).map_err(|source| BatchPredictionError::Io {
                path: path.clone(),
                source,
            })?;
            Box::new(BufReader::with_capacity(1 << 20, opened))
        }
        None => {
            let bytes = file
                .read_blocking()
                .map_err(BatchPredictionError::storage(format!("reading {file}")))?;
            Box::new(std::io::Cursor::new(bytes))
        }
    };
    let io_error = |source| BatchPredictionError::Io {
        path: file.url().into(),
        source,
    };
    let mut reader = reader;
    let mut line_no = 0usize;
    let mut chunk = new_chunk(name, 1, RecordUnit::Line, chunk_records);
    loop {
        let start = chunk.data.len();
        let read = reader
            .read_until(b'\n', &mut chunk.data)
            .map_err(io_error)?;
        if read == 0 {
            break;
        }
        line_no += 1;
        // Keep the record without its line end; a final line without '\n' is a record too.
        let mut end = chunk.data.len();
        if chunk.data[start..end].ends_with(b"\n") {
            end -= 1;
        }
        chunk.data.truncate(end);
        chunk.ends.push(end);
        if chunk.len() >= chunk_records {
            let next = new_chunk(name, line_no + 1, RecordUnit::Line, chunk_records);
            let full = std::mem::replace(&mut chunk, next);
            if !emit(full)? {
                return Ok(false);
            }
        }
    }
    if chunk.len() > 0 {
        return emit(chunk);
    }
    Ok(true)
}

fn new_chunk(
    name: &Arc<str>,
    first_record: usize,
    unit: RecordUnit,
    chunk_records: usize,
) -> Chunk {
    // `seq` is assigned when the chunk is emitted.
    Chunk::new(0, Arc::clone(name), first_record, unit, chunk_records)
}

fn read_tfrecords(
    file: &Location,
    name: &Arc<str>,
    format: DataFormat,
    chunk_records: usize,
    emit: &mut dyn FnMut(Chunk) -> Result<bool, BatchPredictionError>,
) -> Result<bool, BatchPredictionError> {
    let raw = match file.local_path() {
        Some(path) => std::fs::read(&path)
            .map(Bytes::from)
            .map_err(|source| BatchPredictionError::Io { path, source })?,
        None => file
            .read_blocking()
            .map_err(BatchPredictionError::storage(format!("reading {file}")))?,
    };
    let bytes: Bytes = if format == DataFormat::TfRecordGzip {
        let mut decoded = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut decoded)
            .map_err(|source| BatchPredictionError::Gzip {
                file: name.to_string(),
                source,
            })?;
        Bytes::from(decoded)
    } else {
        raw
    };
    // A corrupt record ends the file: the records before it are predicted, the rest cannot be
    // framed and is reported as one error at that record.
    let (records, corrupt) = match tfevents::record::read_records(&bytes, name) {
        Ok(records) => (records, None),
        Err(error) => {
            let valid = match &error {
                tfevents::TfEventsError::CorruptRecord { offset, .. } => *offset as usize,
                _ => 0,
            };
            let records = tfevents::record::read_records(&bytes[..valid.min(bytes.len())], name)
                .unwrap_or_default();
            (records, Some(error.to_string()))
        }
    };
    let mut chunk = new_chunk(name, 1, RecordUnit::Record, chunk_records);
    for (index, record) in records.iter().enumerate() {
        chunk.data.extend_from_slice(record);
        chunk.ends.push(chunk.data.len());
        if chunk.len() >= chunk_records {
            let next = new_chunk(name, index + 2, RecordUnit::Record, chunk_records);
            let full = std::mem::replace(&mut chunk, next);
            if !emit(full)? {
                return Ok(false);
            }
        }
    }
    if let Some(message) = corrupt {
        // An empty record with a marker: the worker turns it into this record's error.
        chunk.data.extend_from_slice(CORRUPT_MARKER);
        chunk.data.extend_from_slice(message.as_bytes());
        chunk.ends.push(chunk.data.len());
    }
    if chunk.len() > 0 {
        return emit(chunk);
    }
    Ok(true)
}

/// Prefix of the pseudo-record standing for a TFRecord file's corrupt tail (a NUL byte cannot
/// start a JSON instance, and a corrupt tail never reaches a raw-string model).
const CORRUPT_MARKER: &[u8] = b"\0corrupt TFRecord: ";

fn worker(
    model: &LoadedModel,
    signature: &SignatureInfo,
    feed: Feed,
    chunks: &Mutex<Receiver<Chunk>>,
    done: &SyncSender<Result<Done, BatchPredictionError>>,
) {
    loop {
        let chunk = {
            let Ok(receiver) = chunks.lock() else { return };
            match receiver.recv() {
                Ok(chunk) => chunk,
                Err(_) => return,
            }
        };
        let result = predict_chunk(model, signature, feed, &chunk);
        if done.send(result).is_err() {
            return;
        }
    }
}

fn predict_chunk(
    model: &LoadedModel,
    signature: &SignatureInfo,
    feed: Feed,
    chunk: &Chunk,
) -> Result<Done, BatchPredictionError> {
    let mut errors = Vec::new();
    let mut ok_rows: Vec<usize> = Vec::with_capacity(chunk.len());
    let record_error = |index: usize, message: String| RecordError {
        file: chunk.file.to_string(),
        record: chunk.first_record + index,
        unit: chunk.unit,
        message,
    };
    let inputs = match feed {
        Feed::RawString => {
            let mut elements = Vec::with_capacity(chunk.len());
            for (index, record) in chunk.records().enumerate() {
                if let Some(message) = record.strip_prefix(CORRUPT_MARKER) {
                    errors.push(record_error(index, corrupt_message(message)));
                    continue;
                }
                elements.push(record.to_vec());
                ok_rows.push(index);
            }
            let key = signature.inputs.keys().next().cloned().unwrap_or_default();
            let count = elements.len();
            let tensor = HostTensor::new(vec![count], TensorData::Str(elements))
                .map_err(|e| BatchPredictionError::Internal(e.to_string()))?;
            BTreeMap::from([(key, tensor)])
        }
        Feed::Json => {
            let mut batcher = RecordBatcher::new(signature, InstanceFormat::JsonLines)
                .map_err(|e| BatchPredictionError::Model(e.to_string()))?;
            for (index, record) in chunk.records().enumerate() {
                if let Some(message) = record.strip_prefix(CORRUPT_MARKER) {
                    errors.push(record_error(index, corrupt_message(message)));
                    continue;
                }
                // Records are numbered as lines; the message's own "line N" is dropped (the
                // position is kept apart, with the file).
                match batcher.push(record, InstanceAt::Line(1)) {
                    Ok(()) => ok_rows.push(index),
                    Err(e) => errors.push(record_error(index, strip_position(&e.to_string()))),
                }
            }
            if batcher.is_empty() {
                BTreeMap::new()
            } else {
                batcher
                    .take_batch(0)
                    .map_err(|e| BatchPredictionError::Internal(e.to_string()))?
                    .inputs
            }
        }
    };
    let mut text = String::new();
    let mut predictions = 0u64;
    if !ok_rows.is_empty() {
        let rows = model
            .run(&signature.name, &inputs)
            .map_err(|e| format!("running signature \"{}\": {e}", signature.name))
            .and_then(|outputs| {
                predict_json::gcloud_predictions(&outputs).map_err(|e| {
                    format!(
                        "signature \"{}\" returned outputs that cannot be written: {e}",
                        signature.name
                    )
                })
            });
        match rows {
            Ok(rows) if rows.len() == ok_rows.len() => {
                text.reserve(rows.len() * 256);
                for row in rows {
                    row.write_python_json_line(&mut text);
                    text.push('\n');
                }
                predictions = ok_rows.len() as u64;
            }
            Ok(rows) => {
                let message = format!(
                    "signature \"{}\" returned {} rows for {} instances",
                    signature.name,
                    rows.len(),
                    ok_rows.len()
                );
                errors.extend(ok_rows.iter().map(|&i| record_error(i, message.clone())));
            }
            // The whole forward pass failed: every record in it failed with it.
            Err(message) => {
                errors.extend(ok_rows.iter().map(|&i| record_error(i, message.clone())));
            }
        }
    }
    errors.sort_by_key(|e| e.record);
    Ok(Done {
        seq: chunk.seq,
        text,
        predictions,
        errors,
    })
}

fn corrupt_message(message: &[u8]) -> String {
    format!(
        "corrupt TFRecord, the rest of the file is unreadable: {}",
        String::from_utf8_lossy(message)
    )
}

/// `line 1, column 5: invalid JSON: …` → `column 5: invalid JSON: …`; `line 1: input …` →
/// `input …`.
fn strip_position(message: &str) -> String {
    let rest = message.strip_prefix("line 1").unwrap_or(message);
    rest.strip_prefix(", ")
        .or_else(|| rest.strip_prefix(": "))
        .unwrap_or(rest)
        .to_string()
}
