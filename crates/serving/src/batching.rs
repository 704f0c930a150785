//! Merges concurrent row-format requests for one model version into one forward pass.
//!
//! Each served version that can be batched (see `predictor::CheckReport`) owns a bounded queue
//! and a few worker threads. A worker takes the first waiting request, then everything already
//! queued, up to `max_batch_size` rows; if requests for this version are still being read or
//! parsed and one like the first could still fit, it waits for them at most `batch_timeout`.
//! So a lone client pays no wait, while under load the rows that piled up during the previous
//! forward pass go out together. A full queue answers 503 UNAVAILABLE at once, as TF Serving's
//! batching does, instead of queueing without bound. Dropping the [`Batcher`] closes the queue
//! and the workers finish what they hold, then exit.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use savedmodel_runtime::HostTensor;
use tokio::sync::oneshot;

use crate::lifecycle::predictor::Predictor;
use crate::metrics::Metrics;
use crate::status::ApiError;
use savedmodel_runtime::DEFAULT_SIGNATURE;

/// Batching knobs (TF Serving's `BatchingParameters`, the subset that applies here).
#[derive(Debug, Clone)]
pub struct BatchingConfig {
    pub max_batch_size: usize,
    pub batch_timeout: Duration,
    pub max_enqueued: usize,
    pub threads: usize,
}

impl Default for BatchingConfig {
    fn default() -> BatchingConfig {
        BatchingConfig {
            max_batch_size: 128,
            batch_timeout: Duration::from_micros(500),
            max_enqueued: 1024,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

/// The outputs of a forward pass, shared by every request in it; `rows` is a request's part.
pub struct BatchOutput {
    pub outputs: Arc<BTreeMap<String, HostTensor>>,
    pub rows: Range<usize>,
}

struct Job {
    inputs: BTreeMap<String, HostTensor>,
    rows: usize,
    reply: oneshot::Sender<Result<BatchOutput, ApiError>>,
}

/// The queue of one served version's default signature.
pub struct Batcher {
    queue: SyncSender<Job>,
    /// Requests for this version that have arrived but are not queued yet (still being parsed).
    arriving: Arc<AtomicUsize>,
    max_batch_size: usize,
}

/// Marks a request as on its way to the batcher until it is queued or dropped.
pub struct Arrival {
    arriving: Arc<AtomicUsize>,
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.arriving.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Batcher {
    pub fn start(
        predictor: Arc<dyn Predictor>,
        config: &BatchingConfig,
        metrics: Arc<Metrics>,
        label: &str,
    ) -> std::io::Result<Batcher> {
        let (queue, receiver) = std::sync::mpsc::sync_channel(config.max_enqueued.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let arriving = Arc::new(AtomicUsize::new(0));
        for index in 0..config.threads.max(1) {
            let worker = Worker {
                predictor: predictor.clone(),
                receiver: receiver.clone(),
                arriving: arriving.clone(),
                max_batch_size: config.max_batch_size.max(1),
                batch_timeout: config.batch_timeout,
                metrics: metrics.clone(),
            };
            std::thread::Builder::new()
                .name(format!("batch-{label}-{index}"))
                .spawn(move || worker.run())?;
        }
        Ok(Batcher {
            queue,
            arriving,
            max_batch_size: config.max_batch_size.max(1),
        })
    }

    /// Call when a request for this version starts being read, so workers wait for it.
    pub fn arrival(&self) -> Arrival {
        self.arriving.fetch_add(1, Ordering::SeqCst);
        Arrival {
            arriving: self.arriving.clone(),
        }
    }

    /// Whether a request of `rows` instances should go through the queue; bigger ones are
    /// batches already and run on their own.
    pub fn accepts(&self, rows: usize) -> bool {
        rows > 0 && rows < self.max_batch_size
    }

    /// Queues a row-format request (inputs of the default signature, `rows` instances).
    pub async fn predict(
        &self,
        inputs: BTreeMap<String, HostTensor>,
        rows: usize,
        arrival: Arrival,
    ) -> Result<BatchOutput, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            reply,
        };
        // No longer "arriving" once queued: a worker that sees it queued must not also wait for
        // it (that wait would delay a lone client by the whole batch timeout).
        drop(arrival);
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::unavailable(
                    "The batching queue is full; retry later",
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::unavailable("The model version is being unloaded"));
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::internal(
                "the batch worker stopped before answering",
            ))
        })
    }
}

struct Worker {
    predictor: Arc<dyn Predictor>,
    receiver: Arc<Mutex<Receiver<Job>>>,
    arriving: Arc<AtomicUsize>,
    max_batch_size: usize,
    batch_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run(self) {
        // A job that did not fit into the previous batch opens the next one.
        let mut carried: Option<Job> = None;
        loop {
            let batch = match self.collect(carried.take()) {
                Some((batch, next)) => {
                    carried = next;
                    batch
                }
                None => return,
            };
            self.execute(batch);
        }
    }

    /// Gathers one batch. `None` once the queue is closed and drained.
    fn collect(&self, carried: Option<Job>) -> Option<(Vec<Job>, Option<Job>)> {
        let receiver = match carried {
            // A carried job runs now, alone if need be. Waiting for the lock would wait for the
            // next request: another worker holds it while blocked in `recv`, so at the end of a
            // burst the carried job would hang until new traffic (or the request timeout).
            Some(job) => match self.receiver.try_lock() {
                Ok(receiver) => Some((receiver, job)),
                Err(std::sync::TryLockError::WouldBlock) => return Some((vec![job], None)),
                Err(std::sync::TryLockError::Poisoned(_)) => None,
            },
            None => None,
        };
        let (receiver, first) = match receiver {
            Some(locked) => locked,
            None => {
                let Ok(receiver) = self.receiver.lock() else {
                    return None;
                };
                let first = receiver.recv().ok()?;
                (receiver, first)
            }
        };
        let mut rows = first.rows;
        // Requests tend to be alike: once another one as large as the first cannot fit, waiting
        // for more would only delay this batch (100-instance requests with a limit of 128 run
        // at once instead of each waiting for the next to arrive and be turned away).
        let first_rows = first.rows;
        let room_for_alike = |rows: usize| rows + first_rows <= self.max_batch_size;
        let mut batch = vec![first];
        let deadline = Instant::now() + self.batch_timeout;
        while rows < self.max_batch_size {
            let next = match receiver.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    // Wait only for requests that are already on their way, and could join.
                    if self.arriving.load(Ordering::SeqCst) == 0 || !room_for_alike(rows) {
                        break;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match receiver.recv_timeout(deadline - now) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            if rows + next.rows > self.max_batch_size {
                return Some((batch, Some(next)));
            }
            rows += next.rows;
            batch.push(next);
        }
        Some((batch, None))
    }

    fn execute(&self, batch: Vec<Job>) {
        // Replies to requests whose client went away are simply dropped.
        let batch: Vec<Job> = batch
            .into_iter()
            .filter(|job| !job.reply.is_closed())
            .collect();
        if batch.is_empty() {
            return;
        }
        let total: usize = batch.iter().map(|job| job.rows).sum();
        self.metrics.observe_batch(total);
        let result = if batch.len() == 1 {
            self.predictor.run(DEFAULT_SIGNATURE, &batch[0].inputs)
        } else {
            concat_inputs(&batch).and_then(|inputs| self.predictor.run(DEFAULT_SIGNATURE, &inputs))
        };
        match result {
            Ok(outputs) => {
                let outputs = Arc::new(outputs);
                let mut start = 0;
                for job in batch {
                    let rows = start..start + job.rows;
                    start += job.rows;
                    let _ = job.reply.send(Ok(BatchOutput {
                        outputs: outputs.clone(),
                        rows,
                    }));
                }
            }
            Err(error) if batch.len() > 1 => {
                // One bad request must not fail its neighbours: rerun each on its own.
                let _ = error;
                for job in batch {
                    let answer =
                        self.predictor
                            .run(DEFAULT_SIGNATURE, &job.inputs)
                            .map(|outputs| BatchOutput {
                                outputs: Arc::new(outputs),
                                rows: 0..job.rows,
                            });
                    let _ = job.reply.send(answer);
                }
            }
            Err(error) => {
                for job in batch {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Concatenates every input along dimension 0. Shapes past dimension 0 agree: they were checked
/// against the signature's fixed dimensions while parsing.
fn concat_inputs(batch: &[Job]) -> Result<BTreeMap<String, HostTensor>, ApiError> {
    let mut merged = BTreeMap::new();
    for name in batch[0].inputs.keys() {
        let parts: Vec<&HostTensor> = batch
            .iter()
            .map(|job| {
                job.inputs.get(name).ok_or_else(|| {
                    ApiError::internal(format!("batched request lacks input {name}"))
                })
            })
            .collect::<Result<_, _>>()?;
        merged.insert(
            name.clone(),
            HostTensor::concat_rows(&parts).map_err(|e| ApiError::internal(e.to_string()))?,
        );
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::predictor::fake::Affine;
    use savedmodel_runtime::TensorData;

    fn input(values: &[f32]) -> BTreeMap<String, HostTensor> {
        let rows = values.len() / 2;
        BTreeMap::from([(
            "x".to_string(),
            HostTensor::new(vec![rows, 2], TensorData::F32(values.to_vec())).unwrap(),
        )])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_share_forward_passes_and_get_their_own_rows() {
        let mut model = Affine::new();
        model.delay = Duration::from_millis(20);
        let model = Arc::new(model);
        let config = BatchingConfig {
            threads: 1,
            ..BatchingConfig::default()
        };
        let batcher = Arc::new(
            Batcher::start(model.clone(), &config, Arc::new(Metrics::default()), "t").unwrap(),
        );
        let mut tasks = Vec::new();
        for i in 0..32 {
            let batcher = batcher.clone();
            tasks.push(tokio::spawn(async move {
                let arrival = batcher.arrival();
                let out = batcher
                    .predict(input(&[i as f32, 0.0]), 1, arrival)
                    .await
                    .unwrap();
                let TensorData::F32(y) = out.outputs["y"].data() else {
                    panic!()
                };
                assert_eq!(out.rows.len(), 1);
                assert_eq!(y[out.rows.start * 2], 2.0 * i as f32 + 1.0);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let runs = model.runs.load(Ordering::SeqCst);
        assert!(
            runs < 32,
            "32 requests took {runs} forward passes: nothing was batched"
        );
        assert_eq!(model.rows_seen.lock().unwrap().iter().sum::<usize>(), 32);
    }

    /// A forming batch waits for requests still being read only while one like its first could
    /// still join; a lone small request never waits at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_wait_only_for_requests_that_could_join() {
        let model = Arc::new(Affine::new());
        let config = BatchingConfig {
            threads: 1,
            max_batch_size: 4,
            batch_timeout: Duration::from_secs(3),
            ..BatchingConfig::default()
        };
        let batcher =
            Batcher::start(model.clone(), &config, Arc::new(Metrics::default()), "t").unwrap();
        // Another request is being read all along.
        let _still_arriving = batcher.arrival();
        // Three rows: another three could not fit in four, so nothing is worth waiting for.
        let started = Instant::now();
        let arrival = batcher.arrival();
        let out = batcher
            .predict(input(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 3, arrival)
            .await
            .unwrap();
        assert_eq!(out.rows, 0..3);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a batch that nothing alike can join waited {:?}",
            started.elapsed()
        );
        // One row: the batch waits for the arriving request, up to the timeout.
        let started = Instant::now();
        let arrival = batcher.arrival();
        batcher
            .predict(input(&[1.0, 2.0]), 1, arrival)
            .await
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "the batch did not wait for the request being read: {:?}",
            started.elapsed()
        );
    }

    /// A request that did not fit into the batch before it is answered at once, even when no
    /// request follows it (another worker is blocked waiting for one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_carried_to_the_next_batch_does_not_wait_for_new_traffic() {
        let mut model = Affine::new();
        // Long enough that the second worker is waiting in the queue while the first runs.
        model.delay = Duration::from_millis(100);
        let config = BatchingConfig {
            threads: 2,
            max_batch_size: 4,
            batch_timeout: Duration::from_secs(5),
            ..BatchingConfig::default()
        };
        let batcher = Arc::new(
            Batcher::start(Arc::new(model), &config, Arc::new(Metrics::default()), "t").unwrap(),
        );
        // The one-row request is queued while the four-row one is announced, so the worker
        // waits for it, finds it too large for the batch and carries it.
        let announced = batcher.arrival();
        let first = {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let arrival = batcher.arrival();
                batcher.predict(input(&[1.0, 2.0]), 1, arrival).await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = batcher.predict(
            input(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
            4,
            announced,
        );
        let started = Instant::now();
        let answers = tokio::time::timeout(Duration::from_secs(10), async {
            (second.await, first.await.unwrap())
        })
        .await
        .expect("a request carried to the next batch hung with no new traffic");
        assert_eq!(answers.0.unwrap().rows, 0..4);
        assert_eq!(answers.1.unwrap().rows, 0..1);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn full_queue_is_unavailable() {
        let mut model = Affine::new();
        model.delay = Duration::from_millis(200);
        let config = BatchingConfig {
            threads: 1,
            max_enqueued: 1,
            max_batch_size: 1,
            ..BatchingConfig::default()
        };
        let batcher = Arc::new(
            Batcher::start(Arc::new(model), &config, Arc::new(Metrics::default()), "t").unwrap(),
        );
        let mut results = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let batcher = batcher.clone();
            tasks.push(tokio::spawn(async move {
                let arrival = batcher.arrival();
                batcher
                    .predict(input(&[1.0, 2.0]), 1, arrival)
                    .await
                    .map(|_| ())
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for task in tasks {
            results.push(task.await.unwrap());
        }
        let rejected = results
            .iter()
            .filter(|r| {
                r.as_ref()
                    .is_err_and(|e| e.code == crate::status::Code::Unavailable)
            })
            .count();
        assert!(rejected >= 1, "{results:?}");
        assert!(results.iter().any(|r| r.is_ok()));
    }
}
