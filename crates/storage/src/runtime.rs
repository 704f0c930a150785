//! The crate's own I/O runtime.
//!
//! Every storage operation, async or blocking, runs as a task on one process-wide tokio runtime
//! owned by this crate. Two reasons:
//! - The HTTP client inside a cached `gs://` store keeps pooled connections whose driver tasks
//!   live on the runtime that opened them. If callers' runtimes did the I/O, a connection opened
//!   by one `#[tokio::test]` runtime would be reused after that runtime shut down and fail.
//! - The blocking twins can then wait on a plain channel, which works from any thread, including
//!   a thread that is itself driving a tokio runtime (no "Cannot start a runtime from within a
//!   runtime" panic, no deadlock: the work never needs the caller's runtime).

use std::future::Future;
use std::sync::OnceLock;

use crate::StorageError;

/// Two workers: storage work is I/O-bound, and the project's machines have few cores that the
/// numeric code needs more.
const IO_WORKER_THREADS: usize = 2;

static IO_RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

fn io_runtime(
    operation: &'static str,
    location: &str,
) -> Result<&'static tokio::runtime::Runtime, StorageError> {
    let runtime = IO_RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(IO_WORKER_THREADS)
            .thread_name("storage-io")
            .enable_all()
            .build()
            .map_err(|error| error.to_string())
    });
    runtime.as_ref().map_err(|reason| StorageError::Runtime {
        location: location.to_string(),
        operation,
        reason: format!("cannot start: {reason}"),
    })
}

/// Runs `work` on the I/O runtime and awaits it from whatever runtime the caller uses.
/// If the caller stops waiting, the operation still runs to completion.
pub(crate) async fn run_io<T, F>(
    operation: &'static str,
    location: &str,
    work: F,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, StorageError>> + Send + 'static,
{
    let runtime = io_runtime(operation, location)?;
    match runtime.spawn(work).await {
        Ok(result) => result,
        Err(join_error) => Err(StorageError::Runtime {
            location: location.to_string(),
            operation,
            reason: join_error.to_string(),
        }),
    }
}

/// Runs `work` on the I/O runtime and blocks the calling thread until it is done. The error is
/// the runtime's own failure; whatever `work` returns, errors included, is the `Ok` value.
pub(crate) fn block_on_io<T, F>(
    operation: &'static str,
    location: &str,
    work: F,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let runtime = io_runtime(operation, location)?;
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        // The receiver only disappears if the waiting thread is gone; nothing to report then.
        let _ = sender.send(work.await);
    });
    match receiver.recv() {
        Ok(result) => Ok(result),
        Err(_) => Err(StorageError::Runtime {
            location: location.to_string(),
            operation,
            reason: "the I/O task ended without a result (it panicked)".to_string(),
        }),
    }
}
