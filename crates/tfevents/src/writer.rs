//! [`EventWriter`]: one event file in one run directory, local or in an object store.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use savedmodel_format::proto::{TensorProto, TensorShapeProto};
use storage::Location;

use crate::TfEventsError;
use crate::proto::{
    Event, PluginData, SourceMetadata, Summary, SummaryMetadata, SummaryValue, event, summary_value,
};
use crate::record::append_record;

/// `file_version` of every TF2 event file.
pub const FILE_VERSION: &str = "brain.Event:2";
/// What TensorFlow's C++ writer puts in `source_metadata.writer`; Keras runs carry the same.
const SOURCE_WRITER: &str = "tensorflow.core.util.events_writer";
/// The TensorBoard plugin that plots scalars.
pub const SCALARS_PLUGIN: &str = "scalars";
/// `DT_FLOAT` in TensorFlow's `DataType` enum.
const DT_FLOAT: i32 = 1;

/// The `<n>` of `events.out.tfevents.<secs>.<host>.<pid>.<n>.v2`: a per-process counter over
/// all writers, as TensorFlow keeps it, so two writers never pick the same name.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How an [`EventWriter`] makes its events visible.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Object stores only: the most time that may pass between writing an event and uploading
    /// it. The check runs when an event is written; [`EventWriter::flush`] uploads at once.
    /// Local files ignore this: every event is appended when it is written.
    pub upload_interval: Duration,
    /// Object stores only: once a file has reached this size it is finished and later events
    /// go to a new file, so the cost of re-uploading a file whole at each flush stays bounded.
    pub max_object_bytes: usize,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            upload_interval: Duration::from_secs(10),
            max_object_bytes: 1 << 20,
        }
    }
}

/// Writes scalar summaries into one TensorBoard run directory, in the layout Keras 3's
/// `TensorBoard` callback uses (see the crate docs).
///
/// Local directories: the file is created at once with its `file_version` record, and every
/// event is appended to it as it is written (one `write` per event), so TensorBoard, which
/// re-reads a growing file from where it stopped, shows each point within its reload interval.
///
/// Object stores (`gs://`, `memory://`), which cannot append: the writer keeps the file's bytes
/// and re-uploads the whole object at flush points: at creation, when [`WriterOptions::
/// upload_interval`] has passed since the last upload and an event is written, and on
/// [`EventWriter::flush`] / [`EventWriter::close`]. Each upload is the previous one plus new
/// records, which is exactly what TensorBoard's GCS reader (a ranged read from its last offset)
/// handles. A file that reaches [`WriterOptions::max_object_bytes`] is finished and a new one
/// (with a later name, so TensorBoard reads it after) is started.
///
/// Dropping the writer flushes what is pending and ignores errors; call [`EventWriter::close`]
/// to see them.
pub struct EventWriter {
    run_dir: Location,
    options: WriterOptions,
    sink: Sink,
    /// Seconds in the current file's name; a rotated file gets a larger one.
    name_seconds: u64,
    closed: bool,
}

enum Sink {
    Local {
        path: PathBuf,
        file: File,
    },
    Object {
        file: Location,
        /// The whole file as it will be uploaded.
        contents: Vec<u8>,
        /// How much of `contents` the store has.
        uploaded: usize,
        last_upload: Instant,
    },
}

impl EventWriter {
    /// Starts a new event file in `run_dir` (created if missing) with [`WriterOptions::default`].
    pub fn create(run_dir: &Location) -> Result<EventWriter, TfEventsError> {
        EventWriter::create_with(run_dir, WriterOptions::default())
    }

    /// Starts a new event file in `run_dir` and writes its `file_version` record, so that an
    /// unwritable directory or bucket is reported now rather than at the first scalar.
    pub fn create_with(
        run_dir: &Location,
        options: WriterOptions,
    ) -> Result<EventWriter, TfEventsError> {
        let now = unix_seconds(SystemTime::now());
        let name_seconds = now as u64;
        let sink = open_sink(run_dir, name_seconds)?;
        let mut writer = EventWriter {
            run_dir: run_dir.clone(),
            options,
            sink,
            name_seconds,
            closed: false,
        };
        writer.start_file(now.trunc())?;
        Ok(writer)
    }

    /// The event file being written now.
    pub fn file(&self) -> String {
        match &self.sink {
            Sink::Local { path, .. } => path.display().to_string(),
            Sink::Object { file, .. } => file.to_string(),
        }
    }

    /// Writes one scalar as Keras does: a rank-0 `DT_FLOAT` tensor under the `scalars` plugin, one
    /// value per event, `step` omitted when 0. Non-finite values are written as they are
    /// (TensorBoard shows them as such).
    pub fn write_scalar(&mut self, tag: &str, step: i64, value: f32) -> Result<(), TfEventsError> {
        if tag.is_empty() {
            return Err(TfEventsError::InvalidTag {
                file: self.file(),
                reason: "the tag is empty".to_string(),
            });
        }
        let event = scalar_event(tag, step, value, unix_seconds(SystemTime::now()));
        self.append(&event.encode_to_vec())?;
        if let Sink::Object { last_upload, .. } = &self.sink
            && last_upload.elapsed() >= self.options.upload_interval
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes everything written so far visible: a no-op for local files (already appended),
    /// an upload of the whole file for object stores. Starts a new file afterwards when this one
    /// has reached [`WriterOptions::max_object_bytes`].
    pub fn flush(&mut self) -> Result<(), TfEventsError> {
        let Sink::Object {
            file,
            contents,
            uploaded,
            last_upload,
        } = &mut self.sink
        else {
            return Ok(());
        };
        if *uploaded < contents.len() {
            file.write_blocking(Bytes::copy_from_slice(contents))
                .map_err(|source| TfEventsError::Storage {
                    file: file.to_string(),
                    source: Box::new(source),
                })?;
            *uploaded = contents.len();
        }
        *last_upload = Instant::now();
        if contents.len() >= self.options.max_object_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Flushes and finishes the file, reporting any error.
    pub fn close(mut self) -> Result<(), TfEventsError> {
        self.closed = true;
        self.flush()
    }

    /// Appends one framed record: straight to the file locally, to the pending bytes otherwise.
    fn append(&mut self, event_bytes: &[u8]) -> Result<(), TfEventsError> {
        match &mut self.sink {
            Sink::Local { path, file } => {
                let mut record = Vec::new();
                append_record(&mut record, event_bytes);
                file.write_all(&record)
                    .map_err(|source| TfEventsError::LocalIo {
                        operation: "append to",
                        path: path.clone(),
                        source,
                    })
            }
            Sink::Object { contents, .. } => {
                append_record(contents, event_bytes);
                Ok(())
            }
        }
    }

    /// Writes the `file_version` record that opens every file, and uploads it.
    fn start_file(&mut self, wall_time: f64) -> Result<(), TfEventsError> {
        let event = Event {
            wall_time,
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.to_string())),
            source_metadata: Some(SourceMetadata {
                writer: SOURCE_WRITER.to_string(),
            }),
        };
        self.append(&event.encode_to_vec())?;
        self.flush()
    }

    /// Finishes the current object and starts the next file, named at least one second later so
    /// that it sorts after this one (TensorBoard reads a run's files in name order).
    fn rotate(&mut self) -> Result<(), TfEventsError> {
        let now = unix_seconds(SystemTime::now());
        self.name_seconds = (now as u64).max(self.name_seconds + 1);
        self.sink = open_sink(&self.run_dir, self.name_seconds)?;
        self.start_file(now.trunc())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.closed {
            // Errors cannot be returned from `drop`; `close` is the way to see them.
            let _ = self.flush();
        }
    }
}

/// The event Keras's TensorBoard callback writes for one scalar.
pub(crate) fn scalar_event(tag: &str, step: i64, value: f32, wall_time: f64) -> Event {
    let tensor = TensorProto {
        dtype: DT_FLOAT,
        tensor_shape: Some(TensorShapeProto::default()),
        tensor_content: value.to_le_bytes().to_vec(),
        ..TensorProto::default()
    };
    Event {
        wall_time,
        step,
        what: Some(event::What::Summary(Summary {
            value: vec![SummaryValue {
                tag: tag.to_string(),
                metadata: Some(SummaryMetadata {
                    plugin_data: Some(PluginData {
                        plugin_name: SCALARS_PLUGIN.to_string(),
                        content: Vec::new(),
                    }),
                    ..SummaryMetadata::default()
                }),
                value: Some(summary_value::Value::Tensor(tensor)),
                ..SummaryValue::default()
            }],
        })),
        source_metadata: None,
    }
}

/// Creates the next file of `run_dir`: a new local file (never an existing one), or a new object
/// that exists once first flushed.
fn open_sink(run_dir: &Location, name_seconds: u64) -> Result<Sink, TfEventsError> {
    let host = hostname();
    let pid = std::process::id();
    loop {
        let counter = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("events.out.tfevents.{name_seconds}.{host}.{pid}.{counter}.v2");
        let file = run_dir
            .try_join(&name)
            .map_err(|source| TfEventsError::Storage {
                file: format!("{run_dir}/{name}"),
                source: Box::new(source),
            })?;
        let Some(path) = file.local_path() else {
            return Ok(Sink::Object {
                file,
                contents: Vec::new(),
                uploaded: 0,
                last_upload: Instant::now(),
            });
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| TfEventsError::LocalIo {
                operation: "create the directory of",
                path: path.clone(),
                source,
            })?;
        }
        match OpenOptions::new().append(true).create_new(true).open(&path) {
            Ok(handle) => return Ok(Sink::Local { path, file: handle }),
            // Another process with the same host, pid and second (a container restart): take
            // the next counter rather than writing into its file.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(TfEventsError::LocalIo {
                    operation: "create",
                    path,
                    source,
                });
            }
        }
    }
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// The host name for file names, as TensorFlow puts it there; `localhost` where the kernel does
/// not say. Characters that are not safe in an object name are replaced.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "localhost".to_string()
    } else {
        cleaned
    }
}
