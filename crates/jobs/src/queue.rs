//! The machine's job slots: one job per GPU, and `--max-concurrent-jobs` jobs on the CPU.
//!
//! Jobs wait first come, first served within their kind (a GPU job never waits behind a CPU job
//! or the other way round). A waiting job's place is its `jobPosition`. Giving up a wait (the job
//! was cancelled while QUEUED) or dropping a slot (the job ended) lets the next one in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    Cpu,
    Gpu,
}

#[derive(Debug)]
struct QueueState {
    waiting: VecDeque<(String, SlotKind)>,
    free_cpu: usize,
    free_gpu: usize,
}

/// The slots and the jobs waiting for them.
#[derive(Debug)]
pub struct JobQueue {
    state: Mutex<QueueState>,
    changed: Notify,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    queue: Arc<JobQueue>,
    kind: SlotKind,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut state) = self.queue.state.lock() {
            match self.kind {
                SlotKind::Cpu => state.free_cpu += 1,
                SlotKind::Gpu => state.free_gpu += 1,
            }
        }
        self.queue.changed.notify_waiters();
    }
}

/// Removes a job from the waiting line if its wait is abandoned (the future is dropped).
struct WaitGuard<'a> {
    queue: &'a JobQueue,
    job_id: &'a str,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.queue.state.lock() {
            state.waiting.retain(|(id, _)| id != self.job_id);
        }
        self.queue.changed.notify_waiters();
    }
}

impl JobQueue {
    pub fn new(cpu_slots: usize, gpu_slots: usize) -> Arc<JobQueue> {
        Arc::new(JobQueue {
            state: Mutex::new(QueueState {
                waiting: VecDeque::new(),
                free_cpu: cpu_slots.max(1),
                free_gpu: gpu_slots,
            }),
            changed: Notify::new(),
        })
    }

    /// Waits for a slot of `kind` for `job_id`, behind the jobs of that kind that asked first.
    pub async fn acquire(self: &Arc<Self>, job_id: &str, kind: SlotKind) -> Slot {
        if let Ok(mut state) = self.state.lock() {
            state.waiting.push_back((job_id.to_string(), kind));
        }
        let _guard = WaitGuard {
            queue: self,
            job_id,
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.try_take(job_id, kind) {
                return Slot {
                    queue: self.clone(),
                    kind,
                };
            }
            notified.await;
        }
    }

    fn try_take(&self, job_id: &str, kind: SlotKind) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let first_of_kind = state
            .waiting
            .iter()
            .find(|(_, k)| *k == kind)
            .is_some_and(|(id, _)| id == job_id);
        let free = match kind {
            SlotKind::Cpu => &mut state.free_cpu,
            SlotKind::Gpu => &mut state.free_gpu,
        };
        if !first_of_kind || *free == 0 {
            return false;
        }
        *free -= 1;
        state.waiting.retain(|(id, _)| id != job_id);
        true
    }

    /// How many jobs wait ahead of `job_id` (any kind), or `None` when it is not waiting.
    pub fn position(&self, job_id: &str) -> Option<i64> {
        let state = self.state.lock().ok()?;
        let index = state.waiting.iter().position(|(id, _)| id == job_id)?;
        i64::try_from(index).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn slots_are_shared_first_come_first_served() {
        let queue = JobQueue::new(1, 0);
        let first = queue.acquire("a", SlotKind::Cpu).await;
        let q = queue.clone();
        let second = tokio::spawn(async move { q.acquire("b", SlotKind::Cpu).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(queue.position("b"), Some(0));
        assert!(!second.is_finished());
        // An abandoned wait leaves the line.
        let q = queue.clone();
        let third = tokio::spawn(async move { q.acquire("c", SlotKind::Cpu).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(queue.position("c"), Some(1));
        third.abort();
        let _ = third.await;
        assert_eq!(queue.position("c"), None);
        drop(first);
        let slot = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second job got the freed slot")
            .unwrap();
        assert_eq!(queue.position("b"), None);
        drop(slot);
    }
}
