//! tfevents: TensorBoard event files, written the way Keras 3's `TensorBoard` callback writes
//! them, to a local directory or an object store (`gs://`) through the `storage` crate.
//!
//! # What a file holds
//! An event file is a sequence of TFRecord-framed [`proto::Event`] protobufs ([`record`]): first
//! `file_version = "brain.Event:2"`, then one event per scalar. [`EventWriter::write_scalar`]
//! writes each scalar exactly as Keras 3 (TF 2.21) does — checked byte for byte against a Keras
//! run in this crate's tests: a rank-0 `DT_FLOAT` tensor in `tensor_content`, summary metadata
//! with plugin name `scalars`, one value per event, `step` omitted when 0. Files are named
//! `events.out.tfevents.<secs>.<host>.<pid>.<n>.v2` like TensorFlow's. Tag names and run
//! directories (`train/`, `validation/`) are the caller's choice; the trainer uses Keras's.
//!
//! # Growing files, local and remote
//! TensorBoard re-reads each event file from the offset where it stopped, so a file must grow
//! in place. Locally, the writer appends each event to the file it created (not through
//! `storage`'s write, which replaces files by rename: TensorBoard would keep reading the old
//! inode). Object stores cannot append, so for `gs://` the writer re-uploads the whole object at
//! flush points (at most every [`WriterOptions::upload_interval`], and whenever the caller
//! flushes, e.g. at each epoch end); each upload extends the previous one, which TensorBoard's
//! ranged GCS reads handle. To bound the re-upload cost a file that reaches
//! [`WriterOptions::max_object_bytes`] is finished and the next one starts. This is what
//! TensorFlow's own GCS writer does too: rewrite the object whole on flush.
//!
//! # Why a crate of our own
//! The crates that write event files are unmaintained or pinned to old protobuf stacks:
//! `tensorboard-rs` 0.5.9 (last release 2022, `protobuf` 2, local files only) and `tfrecord`
//! 0.15 (`prost` 0.12 and `async-std`, local files only). Neither writes to an object store.
//! The format is small and frozen, and the workspace already has its pieces: `prost` for the
//! messages ([`proto`], hand-written like `savedmodel-format`'s, whose `TensorProto` it reuses)
//! and the masked CRC-32C from `savedmodel-format`'s `crc` module for the framing.
//!
//! # Reading back
//! [`read_events`] and [`scalars`] decode a file with both checksums of every record verified;
//! errors name the file and the byte offset. TensorBoard stays the reader that counts: the
//! tests load what this crate writes with the `tensorboard` package's own event reader.

mod error;
pub mod proto;
mod read;
pub mod record;
mod writer;

pub use error::TfEventsError;
pub use read::{Scalar, read_events, scalars};
pub use writer::{EventWriter, FILE_VERSION, SCALARS_PLUGIN, WriterOptions};

#[cfg(test)]
mod tests;
