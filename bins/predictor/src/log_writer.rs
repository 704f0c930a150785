//! Buffered log output for `predictor serve`.
//!
//! The server logs one line per request. Written straight to stderr, each line is a `write`
//! system call of its own, which at 20,000 requests per second on two cores is a few percent of
//! the machine. Lines are appended to a shared buffer instead and written out together: when
//! the buffer passes [`FLUSH_BYTES`], at least every [`FLUSH_INTERVAL`] by a background thread,
//! at once for warnings and errors (so problems are never late), and when the [`FlushOnDrop`]
//! guard held by `serve` is dropped at exit. Lines stay whole and in order: they are appended and
//! written under one lock.

use std::io::Write as _;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Buffered bytes that trigger a write by the logging thread itself.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Longest a line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct BufferedStderr {
    buffer: Arc<Mutex<Vec<u8>>>,
}

/// Writes out what is buffered when dropped.
pub struct FlushOnDrop(BufferedStderr);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.0.flush();
    }
}

impl BufferedStderr {
    /// The writer, its exit guard, and a thread that flushes every [`FLUSH_INTERVAL`] (it ends
    /// once the writer and the guard are gone).
    pub fn start() -> (BufferedStderr, FlushOnDrop) {
        let writer = BufferedStderr {
            buffer: Arc::new(Mutex::new(Vec::with_capacity(FLUSH_BYTES))),
        };
        let weak: Weak<Mutex<Vec<u8>>> = Arc::downgrade(&writer.buffer);
        // Without the thread lines would still be written, only later: not worth failing for.
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                while let Some(buffer) = weak.upgrade() {
                    BufferedStderr { buffer }.flush();
                    std::thread::sleep(FLUSH_INTERVAL);
                }
            });
        (writer.clone(), FlushOnDrop(writer))
    }

    fn flush(&self) {
        if let Ok(mut buffer) = self.buffer.lock() {
            write_out(&mut buffer);
        }
    }
}

fn write_out(buffer: &mut Vec<u8>) {
    if !buffer.is_empty() {
        // Nowhere to report a failing stderr: the lines are dropped, as an unbuffered write's
        // would be.
        let _ = std::io::stderr().lock().write_all(buffer);
        buffer.clear();
    }
}

/// One event's output.
pub struct EventWriter<'a> {
    target: &'a BufferedStderr,
    urgent: bool,
}

impl std::io::Write for EventWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self
            .target
            .buffer
            .lock()
            .map_err(|_| std::io::Error::other("log buffer lock poisoned"))?;
        buffer.extend_from_slice(bytes);
        if self.urgent || buffer.len() >= FLUSH_BYTES {
            write_out(&mut buffer);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> EventWriter<'a> {
        EventWriter {
            target: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EventWriter<'a> {
        EventWriter {
            target: self,
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_for_the_flush_and_warnings_do_not() {
        let (writer, guard) = BufferedStderr::start();
        let mut line = writer.make_writer();
        line.write_all(b"buffered\n").unwrap();
        assert_eq!(writer.buffer.lock().unwrap().as_slice(), b"buffered\n");
        let mut urgent = EventWriter {
            target: &writer,
            urgent: true,
        };
        urgent.write_all(b"warning\n").unwrap();
        assert!(writer.buffer.lock().unwrap().is_empty());
        line.write_all(&vec![b'x'; FLUSH_BYTES]).unwrap();
        assert!(
            writer.buffer.lock().unwrap().is_empty(),
            "a full buffer is written out"
        );
        line.write_all(b"last\n").unwrap();
        drop(guard);
        assert!(
            writer.buffer.lock().unwrap().is_empty(),
            "the guard flushes"
        );
    }
}
