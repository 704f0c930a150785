//! A fixed team of worker threads that run one training step together, meeting at barriers
//! between dependent phases (layer l+1 needs all of layer l).
//!
//! A step has about six such phases and lasts well under a millisecond, so both the hand-off to
//! the team and the barriers must cost microseconds at most: the team is a dedicated rayon pool
//! driven by one `broadcast` per step, and the barrier spins (sleeping after a while, so an
//! oversubscribed machine still makes progress).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::ModelError;

/// Runs `work(thread_index, thread_count, barrier)` on every thread of the team.
pub(crate) enum Team {
    /// One thread: the caller's, with no synchronisation at all.
    Single,
    Pool {
        pool: rayon::ThreadPool,
        barrier: SpinBarrier,
        threads: usize,
    },
}

impl Team {
    pub(crate) fn new(threads: usize) -> Result<Self, ModelError> {
        if threads <= 1 {
            return Ok(Team::Single);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("mnist-model-{i}"))
            .build()
            .map_err(|source| ModelError::ThreadPool { threads, source })?;
        Ok(Team::Pool {
            pool,
            barrier: SpinBarrier::new(threads),
            threads,
        })
    }

    pub(crate) fn threads(&self) -> usize {
        match self {
            Team::Single => 1,
            Team::Pool { threads, .. } => *threads,
        }
    }

    /// Runs `work` on all threads and returns when every one has finished.
    ///
    /// `work` must call the barrier the same number of times on every thread, and must not
    /// panic between barriers (the others would wait forever); the kernels it calls do not.
    pub(crate) fn run<F>(&self, work: F)
    where
        F: Fn(usize, usize, &dyn Fn()) + Sync,
    {
        match self {
            Team::Single => work(0, 1, &|| {}),
            Team::Pool {
                pool,
                barrier,
                threads,
            } => {
                pool.broadcast(|ctx| work(ctx.index(), *threads, &|| barrier.wait()));
            }
        }
    }
}

/// Generation-counting barrier that spins briefly, then sleeps.
///
/// On an idle machine the team's phases are balanced and partners arrive within microseconds,
/// so spinning is what keeps the per-step overhead negligible. On a busy machine a partner may
/// have lost its core; spinning then burns the very time slice it needs, so after
/// [`SpinBarrier::SPIN`] a waiter blocks on a condition variable instead.
pub(crate) struct SpinBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    sleepers: AtomicUsize,
    threads: usize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl SpinBarrier {
    const SPIN: Duration = Duration::from_micros(50);

    pub(crate) fn new(threads: usize) -> Self {
        SpinBarrier {
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            threads,
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    pub(crate) fn wait(&self) {
        let generation = self.generation.load(Ordering::SeqCst);
        if self.arrived.fetch_add(1, Ordering::SeqCst) + 1 == self.threads {
            self.arrived.store(0, Ordering::SeqCst);
            self.generation
                .store(generation.wrapping_add(1), Ordering::SeqCst);
            // SeqCst pairs with the sleeper's increment-then-check below: either it sees the
            // new generation, or we see it counted and wake it under the lock.
            if self.sleepers.load(Ordering::SeqCst) > 0 {
                let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.wake.notify_all();
            }
            return;
        }
        let started = Instant::now();
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && started.elapsed() > Self::SPIN {
                let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                while self.generation.load(Ordering::SeqCst) == generation {
                    guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Splits `0..len` into `parts` contiguous chunks aligned to `align` and returns chunk `index`.
pub(crate) fn share(
    len: usize,
    align: usize,
    parts: usize,
    index: usize,
) -> std::ops::Range<usize> {
    let units = len.div_ceil(align);
    let start = (units * index / parts * align).min(len);
    let end = (units * (index + 1) / parts * align).min(len);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_covers_everything_once() {
        for len in [0, 1, 10, 16, 31, 512, 784] {
            for align in [1, 6, 16] {
                for parts in 1..5 {
                    let mut next = 0;
                    for i in 0..parts {
                        let r = share(len, align, parts, i);
                        assert_eq!(r.start, next);
                        assert!(r.start.is_multiple_of(align) || r.start == len);
                        next = r.end;
                    }
                    assert_eq!(next, len);
                }
            }
        }
    }

    #[test]
    fn barrier_orders_phases() {
        let team = Team::new(3).unwrap();
        let slots: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let ok = AtomicUsize::new(0);
        team.run(|t, n, barrier| {
            for round in 1..=200 {
                slots[t].store(round, Ordering::Relaxed);
                barrier();
                if (0..n).all(|o| slots[o].load(Ordering::Relaxed) == round) {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                barrier();
            }
        });
        assert_eq!(ok.load(Ordering::Relaxed), 600);
    }
}
