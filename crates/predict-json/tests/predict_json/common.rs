//! Helpers shared by the integration tests.

// Each test crate uses its own subset.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// A seeded generator (rand's `StdRng`), so random cases are the same on every run.
pub struct Rng(StdRng);

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        Rng(StdRng::seed_from_u64(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0.random()
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }
}
