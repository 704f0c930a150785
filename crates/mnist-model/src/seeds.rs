//! Every random number the model uses comes from one seed, through ChaCha8 streams.
//!
//! `ChaCha8Rng::seed_from_u64(seed)` gives a 256-bit key; each purpose reads its own *stream* of
//! that key, so they never share numbers and adding one purpose cannot shift another:
//!
//! | stream                 | purpose                                                  |
//! |------------------------|----------------------------------------------------------|
//! | 0                      | Glorot-uniform kernels, layer by layer, row-major        |
//! | 1 + hidden layer index | dropout masks of that layer                              |
//! | `u64::MAX`             | per-epoch shuffle seeds handed to the data pipeline      |
//!
//! Dropout masks are *addressed*, not drawn in sequence: the draw for training step `s`, row
//! `r`, unit `u` of a layer of width `n` is word `(s << 40) + r * n + u` of the layer's stream.
//! Worker threads can therefore fill disjoint rows in parallel and the masks do not depend on
//! how many threads there are (ChaCha seeks in O(1)). TensorFlow's Philox streams cannot be
//! reproduced anyway, so only the distribution matches Keras, not the numbers.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const INIT_STREAM: u64 = 0;
const SHUFFLE_STREAM: u64 = u64::MAX;

/// The 256-bit ChaCha key derived from a user seed.
pub fn key_from_seed(seed: u64) -> [u8; 32] {
    ChaCha8Rng::seed_from_u64(seed).get_seed()
}

/// Seed for shuffling the training set before `epoch` (0-based).
pub fn shuffle_seed(seed: u64, epoch: usize) -> u64 {
    let mut rng = ChaCha8Rng::from_seed(key_from_seed(seed));
    rng.set_stream(SHUFFLE_STREAM);
    rng.set_word_pos(2 * epoch as u128);
    rng.next_u64()
}

/// Uniform float in `[0, 1)` from the top 24 bits of a word (every value exactly representable).
fn unit_f32(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// Glorot-uniform kernels (`U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))`) for the given
/// `(fan_in, fan_out)` layers, each `[fan_in, fan_out]` row-major. Biases start at zero.
pub fn glorot_uniform_kernels(key: [u8; 32], dims: &[(usize, usize)]) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(INIT_STREAM);
    dims.iter()
        .map(|&(fan_in, fan_out)| {
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
            (0..fan_in * fan_out)
                .map(|_| limit * (2.0 * unit_f32(rng.next_u32()) - 1.0))
                .collect()
        })
        .collect()
}

/// Inverted dropout for one hidden layer: which units are kept and the factor kept ones get.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropoutMasks {
    key: [u8; 32],
    /// A unit is kept when its 32-bit draw `w` satisfies `w >= threshold`, i.e. `w / 2^32 >= rate`
    /// (Keras keeps `u >= rate` for `u ~ U[0, 1)`).
    threshold: u32,
    /// `1 / (1 - rate)`, so the expected activation is unchanged.
    pub(crate) scale: f32,
}

impl DropoutMasks {
    pub(crate) fn new(key: [u8; 32], rate: f32) -> Self {
        // rate < 1 (validated), so the threshold is below 2^32.
        let threshold = (f64::from(rate) * 4_294_967_296.0)
            .ceil()
            .min(f64::from(u32::MAX)) as u32;
        DropoutMasks {
            key,
            threshold,
            scale: 1.0 / (1.0 - rate),
        }
    }

    /// Writes the multipliers (`0` or `scale`) of rows `first_row..first_row + rows` at
    /// training `step` for the layer's `units` into `out`, row `r` at `out[r * ld..][..ld]`:
    /// `units` values, then `ld - units` zeros (layout padding).
    pub(crate) fn fill_rows(
        &self,
        hidden_layer: usize,
        step: u64,
        first_row: usize,
        units: usize,
        out: &mut [f32],
        ld: usize,
    ) {
        let units = units.min(ld);
        if self.threshold == 0 {
            for row in out.chunks_mut(ld) {
                let (live, padding) = row.split_at_mut(units.min(row.len()));
                live.fill(self.scale);
                padding.fill(0.0);
            }
            return;
        }
        // Consecutive rows are consecutive words of the stream: one seek per call.
        let mut rng = ChaCha8Rng::from_seed(self.key);
        rng.set_stream(1 + hidden_layer as u64);
        rng.set_word_pos(((step as u128) << 40) + (first_row * units) as u128);
        // Draw words in blocks (a bulk copy out of ChaCha's buffer) and turn them into
        // multipliers in a loop the compiler vectorises; per-word `next_u32` calls cost more
        // than the cipher itself here.
        const BLOCK: usize = 64;
        let mut bytes = [0u8; 4 * BLOCK];
        for row in out.chunks_mut(ld) {
            let (live, padding) = row.split_at_mut(units.min(row.len()));
            padding.fill(0.0);
            for chunk in live.chunks_mut(BLOCK) {
                let bytes = &mut bytes[..4 * chunk.len()];
                rng.fill_bytes(bytes);
                for (m, word) in chunk.iter_mut().zip(bytes.chunks_exact(4)) {
                    let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                    *m = if word >= self.threshold {
                        self.scale
                    } else {
                        0.0
                    };
                }
            }
        }
    }

    /// [`DropoutMasks::fill_rows`] for a single row.
    pub(crate) fn fill_row(
        &self,
        hidden_layer: usize,
        step: u64,
        row: usize,
        units: usize,
        out: &mut [f32],
    ) {
        let ld = out.len();
        self.fill_rows(hidden_layer, step, row, units, out, ld);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glorot_limits_and_spread() {
        let kernels = glorot_uniform_kernels(key_from_seed(7), &[(784, 512), (10, 6)]);
        let limit = (6.0f32 / (784.0 + 512.0)).sqrt();
        let k = &kernels[0];
        assert_eq!(k.len(), 784 * 512);
        let max = k.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            max <= limit && max > 0.999 * limit,
            "max {max} limit {limit}"
        );
        let mean = k.iter().map(|&v| v as f64).sum::<f64>() / k.len() as f64;
        assert!(mean.abs() < 1e-3 * limit as f64 * 10.0, "mean {mean}");
        // Variance of U(-l, l) is l^2 / 3.
        let var = k.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / k.len() as f64;
        let expected = (limit as f64).powi(2) / 3.0;
        assert!(
            (var / expected - 1.0).abs() < 0.01,
            "var {var} expected {expected}"
        );
        assert_eq!(kernels[1].len(), 60);
    }

    #[test]
    fn seeds_change_everything_and_repeat_exactly() {
        let a = glorot_uniform_kernels(key_from_seed(1), &[(20, 5)]);
        let b = glorot_uniform_kernels(key_from_seed(1), &[(20, 5)]);
        let c = glorot_uniform_kernels(key_from_seed(2), &[(20, 5)]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(shuffle_seed(1, 0), shuffle_seed(1, 1));
        assert_ne!(shuffle_seed(1, 0), shuffle_seed(2, 0));
        assert_eq!(shuffle_seed(3, 4), shuffle_seed(3, 4));
    }

    #[test]
    fn dropout_keeps_the_right_fraction_and_is_addressable() {
        let masks = DropoutMasks::new(key_from_seed(5), 0.2);
        let mut kept = 0usize;
        let mut total = 0usize;
        let mut row = vec![0f32; 520];
        for step in 0..20 {
            for r in 0..32 {
                masks.fill_row(0, step, r, 512, &mut row);
                assert!(row[512..].iter().all(|&v| v == 0.0));
                for &v in &row[..512] {
                    assert!(v == 0.0 || v == 1.25);
                    kept += usize::from(v != 0.0);
                }
                total += 512;
            }
        }
        let frac = kept as f64 / total as f64;
        assert!((frac - 0.8).abs() < 0.005, "kept {frac}");
        // Same address -> same mask; other layer, step or row -> different mask.
        let mut a = vec![0f32; 512];
        let mut b = vec![0f32; 512];
        masks.fill_row(1, 3, 4, 512, &mut a);
        masks.fill_row(1, 3, 4, 512, &mut b);
        assert_eq!(a, b);
        for (layer, step, r) in [(0, 3, 4), (1, 4, 4), (1, 3, 5)] {
            masks.fill_row(layer, step, r, 512, &mut b);
            assert_ne!(a, b);
        }
        // Filling several rows at once gives exactly the rows filled one at a time.
        let mut block = vec![9f32; 3 * 20];
        masks.fill_rows(1, 3, 4, 17, &mut block, 20);
        for r in 0..3 {
            let mut one = vec![0f32; 20];
            masks.fill_row(1, 3, 4 + r, 17, &mut one);
            assert_eq!(&block[r * 20..(r + 1) * 20], &one[..]);
        }
        let none = DropoutMasks::new(key_from_seed(5), 0.0);
        none.fill_row(0, 0, 0, 512, &mut a);
        assert!(a.iter().all(|&v| v == 1.0));
    }
}
