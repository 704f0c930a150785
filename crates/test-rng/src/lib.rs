//! test-rng: the one seeded random generator of the workspace's tests and examples.
//!
//! Why it exists: kernel tests, toy training sets, fuzz-style model mutations and the trainer's
//! random kill steps all need random data that is the same on every run (a failure must be
//! reproducible from its seed). Each used to hand-roll its own xorshift; this crate is the one
//! place for it. It is a dev-dependency only: no library or binary links it.
//!
//! It wraps a well-kept library rather than another hand-written generator: `rand`'s `StdRng`
//! seeded with `seed_from_u64` (already in the workspace). Its stream is fixed for a given `rand`
//! release, and may change with a new major version, so tests must not hard-code values drawn
//! from it: what they check is computed from the same draws, or holds for any draw.
//!
//! `TestRng` draws exactly what the earlier `StdRng` wrappers in predict-json's and
//! savedmodel-format's tests drew (`random::<u64>()`, `random_range(0..n)`, `random::<f32>()`), so
//! their cases did not change by moving here.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// A seeded generator: the same seed gives the same values on every run and machine.
pub struct TestRng(StdRng);

impl TestRng {
    pub fn new(seed: u64) -> TestRng {
        TestRng(StdRng::seed_from_u64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.random()
    }

    /// A number in `0..n` (`n` must be positive).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        self.0.random()
    }

    /// A number in `[-scale, scale)`.
    pub fn symmetric(&mut self, scale: f32) -> f32 {
        (self.unit() * 2.0 - 1.0) * scale
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.0.random()).collect()
    }
}

/// `n` values in `[0, 1)` from `seed`.
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = TestRng::new(seed);
    (0..n).map(|_| rng.unit()).collect()
}

/// `n` values in `[-1, 1)` from `seed`, about one in `zero_one_in` exactly zero (0: none; zeros
/// exercise ReLU masks and zero-skipping paths), about half of the rest negative.
pub fn signed_values(n: usize, seed: u64, zero_one_in: usize) -> Vec<f32> {
    let mut rng = TestRng::new(seed);
    (0..n)
        .map(|_| {
            if zero_one_in > 0 && rng.below(zero_one_in) == 0 {
                0.0
            } else {
                rng.symmetric(1.0)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_stream_and_another_seed_another() {
        let a: Vec<u64> = {
            let mut rng = TestRng::new(7);
            (0..8).map(|_| rng.next_u64()).collect()
        };
        let again: Vec<u64> = {
            let mut rng = TestRng::new(7);
            (0..8).map(|_| rng.next_u64()).collect()
        };
        let other: Vec<u64> = {
            let mut rng = TestRng::new(8);
            (0..8).map(|_| rng.next_u64()).collect()
        };
        assert_eq!(a, again);
        assert_ne!(a, other);
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut rng = TestRng::new(1);
        for _ in 0..10_000 {
            assert!(rng.below(3) < 3);
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u), "{u}");
            let s = rng.symmetric(0.5);
            assert!((-0.5..0.5).contains(&s), "{s}");
        }
        assert_eq!(rng.bytes(5).len(), 5);
        let values = signed_values(10_000, 3, 7);
        let zeros = values.iter().filter(|&&v| v == 0.0).count();
        let negative = values.iter().filter(|&&v| v < 0.0).count();
        assert!((1_000..2_000).contains(&zeros), "{zeros} zeros");
        assert!((3_500..5_000).contains(&negative), "{negative} negative");
        assert!(values.iter().all(|v| (-1.0..1.0).contains(v)));
        assert!(signed_values(1_000, 4, 0).iter().all(|&v| v != 0.0));
    }
}
