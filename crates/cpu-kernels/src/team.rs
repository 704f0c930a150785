//! A fixed team of threads that run one step together: a training step of `mnist-model`'s
//! engine, or one inference call of [`crate::infer`].
//!
//! A step is a sequence of *phases* (dropout masks, each layer's forward pass, the loss, each
//! layer's backward pass); a phase needs all of the previous one, and is cut into a few
//! *chunks* (column panels, rows or weight rows) that can run in any order on any thread. The
//! chunks of a step are numbered in phase order and handed out through one atomic counter:
//! whoever is free claims the next chunk and waits, if needed, until every chunk of the earlier
//! phases is done. There is no fixed assignment of work to threads, which matters on a busy
//! machine: if another process takes a member's core, the others simply claim its chunks
//! instead of waiting at a barrier for it (a late member costs at most the chunk it holds).
//! On an idle machine the chunks alternate between members and the hand-off costs a couple of
//! atomic operations per chunk.
//!
//! Results do not depend on who runs a chunk: every chunk writes its own part of the outputs,
//! and the kernels reduce each output element in a fixed order. That also lets the caller run
//! stretches of steps alone when that turns out faster (see [`RunState`]).
//!
//! Why not a general-purpose pool: a step lasts well under a millisecond, and waking a sleeping
//! worker through the kernel costs tens of microseconds (20-70 us per
//! `rayon::ThreadPool::broadcast` measured here). The calling thread is member 0 and works too;
//! the other members spin for the next step for [`IDLE_SPIN`] (the caller prepares the next
//! batch in microseconds) before they go to sleep.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::CpuKernelsError;

/// How long an idle member spins for the next step before it sleeps.
const IDLE_SPIN: Duration = Duration::from_micros(500);

/// How long a thread spins for an earlier phase to finish before it starts yielding its core.
const PHASE_SPIN: Duration = Duration::from_micros(20);

/// `work(phase, chunk, chunks_in_phase)`.
type ChunkWork<'a> = dyn Fn(usize, usize, usize) + Sync + 'a;

/// The claim counter packs `generation (24 bits) | total chunks (20) | next chunk (20)`, so a
/// member can tell, in one atomic operation, whether a chunk of the step it saw is left.
const FIELD_BITS: u32 = 20;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
/// Most chunks one step may have.
pub const MAX_CHUNKS: usize = FIELD_MASK as usize;

fn pack(generation: u64, total: usize, next: usize) -> u64 {
    (generation << (2 * FIELD_BITS)) | ((total as u64) << FIELD_BITS) | next as u64
}

fn generation_of(claims: u64) -> u64 {
    claims >> (2 * FIELD_BITS)
}

/// Runs steps on a fixed set of threads; see the module docs.
pub struct Team {
    threads: usize,
    shared: Arc<Shared>,
    members: Vec<JoinHandle<()>>,
    /// One step at a time, even if the model is shared between threads; also the caller-side
    /// bookkeeping that decides when to run solo.
    running: Mutex<RunState>,
}

/// The caller's choice between running a step with the team or alone, re-examined
/// periodically by timing both (results are the same either way).
///
/// On an idle machine the team is about twice as fast. On a machine busy with other work a
/// member regularly loses its core while it holds a chunk, everyone waits for it for a
/// scheduler time slice, and one thread is faster than two. Nothing but measuring tells the two
/// apart, so the caller runs a few steps each way, keeps the faster way for a while, and
/// measures again. Probing the slower way costs a few percent at most.
#[derive(Debug, Default)]
struct RunState {
    generation: u64,
    /// Chunk layout `(phases, chunks)` of the steps being timed; another layout (inference after
    /// training, another batch size) starts the measurements over.
    layout: (usize, usize),
    mode: Mode,
    /// Steps left in the current mode.
    left: u32,
    /// Step times of the current probe.
    times: Vec<Duration>,
    /// Typical step time with the team, from the last team probe.
    team_step: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    /// Untimed team steps while caches and page tables warm up.
    #[default]
    WarmUp,
    TeamProbe,
    SoloProbe,
    /// Steps run the faster way found by the last probes.
    Exploit {
        solo: bool,
    },
}

const WARM_UP_STEPS: u32 = 8;
const TEAM_PROBE_STEPS: u32 = 32;
const SOLO_PROBE_STEPS: u32 = 16;
/// How long a decision for the team stands before both ways are measured again.
const TEAM_EXPLOIT_STEPS: u32 = 1024;
/// A decision to run alone is re-examined sooner: wrongly made (a disturbance during the team
/// probe), it halves the speed on an idle machine.
const SOLO_EXPLOIT_STEPS: u32 = 256;

/// Mean step time of a probe without its slowest eighth: one step that happened to be
/// preempted should not decide the next thousand.
fn typical(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    let kept = &times[..times.len() - times.len() / 8];
    kept.iter().sum::<Duration>() / kept.len().max(1) as u32
}

impl RunState {
    /// Whether the next step runs on the caller alone.
    fn solo_next(&mut self, layout: (usize, usize)) -> bool {
        if layout != self.layout {
            self.layout = layout;
            self.enter(Mode::WarmUp);
        }
        matches!(self.mode, Mode::SoloProbe | Mode::Exploit { solo: true })
    }

    fn enter(&mut self, mode: Mode) {
        self.mode = mode;
        self.times.clear();
        self.left = match mode {
            Mode::WarmUp => WARM_UP_STEPS,
            Mode::TeamProbe => TEAM_PROBE_STEPS,
            Mode::SoloProbe => SOLO_PROBE_STEPS,
            Mode::Exploit { solo: false } => TEAM_EXPLOIT_STEPS,
            Mode::Exploit { solo: true } => SOLO_EXPLOIT_STEPS,
        };
    }

    /// Records how long the step chosen by [`RunState::solo_next`] took.
    fn record(&mut self, time: Duration) {
        if matches!(self.mode, Mode::TeamProbe | Mode::SoloProbe) {
            self.times.push(time);
        }
        self.left = self.left.saturating_sub(1);
        if self.left > 0 {
            return;
        }
        match self.mode {
            Mode::WarmUp => self.enter(Mode::TeamProbe),
            Mode::TeamProbe => {
                self.team_step = typical(&mut self.times);
                self.enter(Mode::SoloProbe);
            }
            Mode::SoloProbe => {
                // Alone only when clearly faster: the team's advantage on an idle machine is
                // large, a small one for running alone is within the noise.
                let solo = typical(&mut self.times) * 5 < self.team_step * 4;
                self.enter(Mode::Exploit { solo });
            }
            Mode::Exploit { .. } => self.enter(Mode::TeamProbe),
        }
    }
}

/// What the current step is: written by the caller before it publishes a new generation.
struct Job {
    /// `starts[p]` is the first chunk of phase `p`; the last entry is the total.
    starts: Vec<usize>,
    work: Option<*const ChunkWork<'static>>,
}

struct Shared {
    claims: AtomicU64,
    completed: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    job: UnsafeCell<Job>,
    idle: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
}

// SAFETY: `job` is written only by `Team::run` (serialised by `Team::running`) before it
// publishes a new generation in `claims` (SeqCst store), and read only by a thread that then
// claimed a chunk of that generation (its compare-exchange reads that store). `Team::run` does
// not return, nor write `job` again, until every chunk of the generation has completed, so
// nobody reads `job` while it changes, and the erased `work` pointer is only called while the
// closure it points to is alive. The closure itself is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: see above.
unsafe impl Send for Shared {}

impl Shared {
    fn fresh() -> Arc<Shared> {
        Arc::new(Shared {
            claims: AtomicU64::new(0),
            completed: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            job: UnsafeCell::new(Job {
                starts: Vec::new(),
                work: None,
            }),
            idle: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
        })
    }

    /// Claims the next chunk of `generation`, if one is left.
    fn claim(&self, generation: u64) -> Option<usize> {
        let mut claims = self.claims.load(Ordering::Acquire);
        loop {
            let next = (claims & FIELD_MASK) as usize;
            let total = ((claims >> FIELD_BITS) & FIELD_MASK) as usize;
            if generation_of(claims) != generation || next >= total {
                return None;
            }
            match self.claims.compare_exchange_weak(
                claims,
                claims + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next),
                Err(current) => claims = current,
            }
        }
    }

    /// Runs a claimed chunk once the phases before it are complete.
    ///
    /// # Safety
    /// `chunk` must have been claimed for the current generation (so `job` is stable).
    unsafe fn run_chunk(&self, chunk: usize) {
        // SAFETY: guaranteed by the caller, see `Shared`.
        let job = unsafe { &*self.job.get() };
        let phase = job.starts.partition_point(|&start| start <= chunk) - 1;
        let start = job.starts[phase];
        wait_until(|| self.completed.load(Ordering::Acquire) >= start);
        if let Some(work) = job.work {
            // SAFETY: `Team::run` keeps the closure alive until every chunk has completed.
            let work = unsafe { &*work };
            let chunks = job.starts[phase + 1] - start;
            if catch_unwind(AssertUnwindSafe(|| work(phase, chunk - start, chunks))).is_err() {
                self.panicked.store(true, Ordering::SeqCst);
            }
        }
        // Release: the chunk's writes are visible to whoever sees the count (the increments
        // form one release sequence).
        self.completed.fetch_add(1, Ordering::AcqRel);
    }
}

/// Spins briefly, then yields the core until `done()`.
fn wait_until(done: impl Fn() -> bool) {
    if done() {
        return;
    }
    let started = Instant::now();
    let mut spins = 0u32;
    while !done() {
        spins = spins.wrapping_add(1);
        if spins < 64 || !spins.is_multiple_of(64) || started.elapsed() < PHASE_SPIN {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

impl Team {
    pub fn new(threads: usize) -> Result<Self, CpuKernelsError> {
        let threads = threads.max(1);
        let shared = Shared::fresh();
        let mut team = Team {
            threads,
            shared: shared.clone(),
            members: Vec::with_capacity(threads - 1),
            running: Mutex::new(RunState::default()),
        };
        for index in 1..threads {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("cpu-kernels-{index}"))
                .spawn(move || member_loop(&shared))
                .map_err(|source| CpuKernelsError::ThreadPool { threads, source })?;
            // On an early return `team` is dropped, which stops the members already started.
            team.members.push(handle);
        }
        Ok(team)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// A team of one: every step runs on the caller.
    pub fn solo() -> Self {
        Team {
            threads: 1,
            shared: Shared::fresh(),
            members: Vec::new(),
            running: Mutex::new(RunState::default()),
        }
    }

    /// As [`Team::run`], except that when another caller is running a step, this one runs
    /// its step alone on the calling thread instead of waiting (concurrent inference requests
    /// each keep a core busy rather than queueing behind each other).
    pub fn run_or_solo<F>(&self, chunks_per_phase: &[usize], work: F)
    where
        F: Fn(usize, usize, usize) + Sync,
    {
        let busy = matches!(
            self.running.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        );
        if busy {
            for (phase, &chunks) in chunks_per_phase.iter().enumerate() {
                for chunk in 0..chunks {
                    work(phase, chunk, chunks);
                }
            }
            return;
        }
        self.run(chunks_per_phase, work);
    }

    /// Runs a step: `work(phase, chunk, chunks_in_phase)` for every chunk of every phase, where
    /// `chunks_per_phase[p]` is the number of chunks of phase `p`; phases run in order, the
    /// chunks of one phase in any order and on any member. Returns when all are done.
    ///
    /// A panic in `work` is re-raised here after the step has run to the end.
    pub fn run<F>(&self, chunks_per_phase: &[usize], work: F)
    where
        F: Fn(usize, usize, usize) + Sync,
    {
        let solo = |work: &F| {
            for (phase, &chunks) in chunks_per_phase.iter().enumerate() {
                for chunk in 0..chunks {
                    work(phase, chunk, chunks);
                }
            }
        };
        let total: usize = chunks_per_phase.iter().sum();
        if self.threads == 1 || total <= 1 {
            return solo(&work);
        }
        assert!(total <= MAX_CHUNKS, "{total} chunks in one step");
        let shared = &*self.shared;
        let mut state = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        if state.solo_next((chunks_per_phase.len(), total)) {
            solo(&work);
            state.record(started.elapsed());
            return;
        }
        state.generation = (state.generation + 1) & ((1 << (64 - 2 * FIELD_BITS)) - 1);
        let generation = &state.generation;
        let work_ref: &ChunkWork<'_> = &work;
        // SAFETY: only the lifetime is erased; this function does not return (or unwind past
        // `work`) before every chunk has completed, and no member calls `work` after that.
        let erased: *const ChunkWork<'static> =
            unsafe { std::mem::transmute(work_ref as *const ChunkWork<'_>) };
        {
            // SAFETY: no chunk of the previous generation is running or left (we waited for
            // all of them), and the new generation is not published yet: nobody reads `job`.
            let job = unsafe { &mut *shared.job.get() };
            job.starts.clear();
            job.starts.push(0);
            let mut sum = 0;
            for &chunks in chunks_per_phase {
                sum += chunks;
                job.starts.push(sum);
            }
            job.work = Some(erased);
        }
        shared.completed.store(0, Ordering::Relaxed);
        shared
            .claims
            .store(pack(*generation, total, 0), Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = shared.idle.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        while let Some(chunk) = shared.claim(*generation) {
            // SAFETY: claimed for the current generation.
            unsafe { shared.run_chunk(chunk) };
        }
        wait_until(|| shared.completed.load(Ordering::Acquire) >= total);
        state.record(started.elapsed());
        if shared.panicked.swap(false, Ordering::SeqCst) {
            panic!("a chunk of a cpu-kernels step panicked");
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.idle.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for member in self.members.drain(..) {
            // A member never panics outside `catch_unwind`; nothing useful to do if it did.
            let _ = member.join();
        }
    }
}

fn member_loop(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        // Wait for a new step: spin first (steps follow each other within microseconds), then
        // sleep until `Team::run` or `Team::drop` wakes us.
        let started = Instant::now();
        let mut spins = 0u32;
        loop {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            let generation = generation_of(shared.claims.load(Ordering::Acquire));
            if generation != seen {
                seen = generation;
                break;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && started.elapsed() > IDLE_SPIN {
                let mut guard = shared.idle.lock().unwrap_or_else(|e| e.into_inner());
                shared.sleepers.fetch_add(1, Ordering::SeqCst);
                while generation_of(shared.claims.load(Ordering::SeqCst)) == seen
                    && !shared.shutdown.load(Ordering::SeqCst)
                {
                    guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                shared.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
        }
        while let Some(chunk) = shared.claim(seen) {
            // SAFETY: claimed for the generation it belongs to.
            unsafe { shared.run_chunk(chunk) };
        }
    }
}

/// Splits `0..len` into `parts` contiguous chunks aligned to `align` and returns chunk `index`.
pub fn share(len: usize, align: usize, parts: usize, index: usize) -> std::ops::Range<usize> {
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
    fn phases_run_in_order_and_every_chunk_exactly_once() {
        let team = Team::new(3).unwrap();
        let phases = [4usize, 1, 7, 3];
        for _ in 0..300 {
            let done: Vec<AtomicUsize> = phases.iter().map(|_| AtomicUsize::new(0)).collect();
            let seen: Vec<Vec<AtomicUsize>> = phases
                .iter()
                .map(|&n| (0..n).map(|_| AtomicUsize::new(0)).collect())
                .collect();
            let out_of_order = AtomicBool::new(false);
            team.run(&phases, |phase, chunk, chunks| {
                assert_eq!(chunks, phases[phase]);
                if phase > 0 && done[phase - 1].load(Ordering::Acquire) != phases[phase - 1] {
                    out_of_order.store(true, Ordering::Relaxed);
                }
                seen[phase][chunk].fetch_add(1, Ordering::Relaxed);
                done[phase].fetch_add(1, Ordering::Release);
            });
            assert!(!out_of_order.load(Ordering::Relaxed));
            for (p, chunks) in seen.iter().enumerate() {
                for (c, count) in chunks.iter().enumerate() {
                    assert_eq!(count.load(Ordering::Relaxed), 1, "phase {p} chunk {c}");
                }
            }
        }
    }

    #[test]
    fn a_panicking_chunk_is_reported_and_the_team_survives() {
        let team = Team::new(2).unwrap();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            team.run(&[2, 2], |phase, chunk, _| {
                if phase == 0 && chunk == 1 {
                    panic!("chunk failure");
                }
            })
        }));
        assert!(result.is_err());
        let count = AtomicUsize::new(0);
        team.run(&[3, 3], |_, _, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn sleeping_members_wake_up_and_share_the_work() {
        let team = Team::new(2).unwrap();
        let caller = std::thread::current().id();
        let helped = AtomicUsize::new(0);
        for _ in 0..3 {
            // Longer than IDLE_SPIN: the member is asleep and must be woken.
            std::thread::sleep(IDLE_SPIN * 3);
            team.run(&[8], |_, _, _| {
                std::thread::sleep(Duration::from_millis(2));
                if std::thread::current().id() != caller {
                    helped.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        assert!(
            helped.load(Ordering::Relaxed) > 0,
            "the member never took a chunk"
        );
    }

    #[test]
    fn the_faster_way_is_kept_after_probing_both() {
        let layout = (3, 12);
        let probes = WARM_UP_STEPS + TEAM_PROBE_STEPS + SOLO_PROBE_STEPS;
        let run = |state: &mut RunState, team: u64, solo: u64, steps: u32| {
            let mut solo_steps = 0;
            for _ in 0..steps {
                let is_solo = state.solo_next(layout);
                solo_steps += u32::from(is_solo);
                state.record(Duration::from_micros(if is_solo { solo } else { team }));
            }
            solo_steps
        };
        // Idle machine: the team is faster; only the probe runs solo.
        let mut state = RunState::default();
        assert_eq!(run(&mut state, 800, 1500, probes + 500), SOLO_PROBE_STEPS);
        assert_eq!(state.mode, Mode::Exploit { solo: false });
        // Busy machine: solo is clearly faster and is kept for a while...
        let mut state = RunState::default();
        assert_eq!(
            run(&mut state, 2500, 1600, probes + 200),
            SOLO_PROBE_STEPS + 200
        );
        // ...then both are measured again.
        run(&mut state, 2500, 1600, SOLO_EXPLOIT_STEPS - 200);
        assert_eq!(state.mode, Mode::TeamProbe);
        // Not clearly faster alone (within 20%): stay with the team.
        let mut state = RunState::default();
        assert_eq!(run(&mut state, 1000, 900, probes + 100), SOLO_PROBE_STEPS);
        // One preempted team step does not flip the decision.
        let mut state = RunState::default();
        let mut solo_steps = 0;
        for i in 0..probes + 100 {
            let is_solo = state.solo_next(layout);
            solo_steps += u32::from(is_solo);
            let team = if i == WARM_UP_STEPS + 3 { 50_000 } else { 800 };
            state.record(Duration::from_micros(if is_solo { 1500 } else { team }));
        }
        assert_eq!(solo_steps, SOLO_PROBE_STEPS);
        // Another layout starts over with team steps.
        assert!(!state.solo_next((1, 4)));
        assert_eq!(state.mode, Mode::WarmUp);
        // Solo steps run entirely on the caller.
        let team = Team::new(2).unwrap();
        {
            let mut state = team.running.lock().unwrap();
            state.layout = (2, 8);
            state.mode = Mode::Exploit { solo: true };
            state.left = 10;
        }
        let caller = std::thread::current().id();
        for _ in 0..3 {
            team.run(&[4, 4], |_, _, _| {
                assert_eq!(std::thread::current().id(), caller)
            });
        }
    }

    #[test]
    fn a_single_thread_team_runs_everything_in_order() {
        let team = Team::new(1).unwrap();
        let order = Mutex::new(Vec::new());
        team.run(&[2, 0, 1], |p, c, _| order.lock().unwrap().push((p, c)));
        assert_eq!(*order.lock().unwrap(), [(0, 0), (0, 1), (2, 0)]);
    }
}
