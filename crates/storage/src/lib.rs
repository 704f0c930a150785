//! One small storage API for the trainer, the predictor and the data loader: read, write,
//! list, exists and delete objects at a [`Location`], which is a local path, a `file://` URL,
//! `gs://bucket/prefix` (Google Cloud Storage or a GCS emulator) or `memory://name/prefix`
//! (a process-wide in-memory store per name, for tests).
//!
//! Why it is shaped this way:
//! - **One type, all backends.** Command-line flags such as `--job-dir` accept either a local
//!   directory or a `gs://` URL, so callers hold a [`Location`] and never branch on the scheme.
//!   Everything goes through `object_store`, whose local store already writes files through a
//!   temporary file and a rename.
//! - **Trees that never look half-written.** [`Location::write_tree`] writes a marker file
//!   (`saved_model.pb` for a SavedModel) strictly after every other file, and removes an old
//!   marker before it starts; [`Location::delete_tree_with_marker`] removes the marker first.
//!   A reader that checks for the marker therefore sees a whole tree or none.
//! - **Async and blocking twins that work anywhere.** All I/O runs on a small runtime owned by
//!   this crate (see the `runtime` module), so the `*_blocking` methods can be called from plain
//!   threads and from inside a tokio runtime alike. [`Location::block_on`] offers the same to
//!   crates built on this one, so their multi-file loaders are written once, async, and their
//!   blocking twins run that same code.
//! - **Errors say where and what.** [`StorageError`] names the location and the operation, and
//!   its variant tells not found from permission, network and bad-URL failures.
//! - **Emulator without environment juggling.** `gs://` talks to an emulator when
//!   `STORAGE_EMULATOR_HOST` is set, or when [`StorageOptions`] say so, which tests running in
//!   parallel use instead of the environment.
//!
//! ```no_run
//! # fn main() -> Result<(), storage::StorageError> {
//! let job_dir = storage::Location::parse("gs://my-bucket/jobs/run-1")?;
//! job_dir.join("job.json").write_blocking(bytes::Bytes::from_static(b"{}"))?;
//! for key in job_dir.list_blocking()? {
//!     println!("{key}");
//! }
//! # Ok(())
//! # }
//! ```

mod emulator;
mod error;
mod location;
mod options;
mod runtime;
mod stores;

pub use emulator::EMULATOR_PUBLIC_HOST;
pub use error::{StorageError, error_chain_text};
pub use location::Location;
pub use options::{STORAGE_EMULATOR_HOST, StorageOptions};
