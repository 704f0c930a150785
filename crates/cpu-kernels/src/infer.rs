//! Inference: a Dense layer `act(x . W + b)` with its weights packed once ([`DenseLayer`]),
//! run over any number of rows on the shared thread team ([`DenseLayer::forward`]).
//!
//! The weights are stored panel-major like the training engine's ([`crate::Packed`]), padded
//! with zero columns to a multiple of [`PANEL`]. A call cuts the rows into tiles (12 rows with
//! AVX-512, 6 with AVX2); for each tile it lists the input columns that are non-zero in at
//! least one of its rows and runs the multiply-adds over those only. Skipping a zero input
//! changes nothing: `acc + 0 * w == acc` exactly for finite `w` (the accumulator starts at +0
//! and can never become -0), so the layer still gives each output as one ordered chain of
//! fused multiply-adds; layers whose weights are not all finite never skip. It matters for
//! images (MNIST digits are about 80% zeros) and after ReLU.
//!
//! # Threads
//!
//! Calls run on one process-wide [`Team`] with one member per available core
//! (`std::thread::available_parallelism`; `RAYON_NUM_THREADS` plays no part). How many chunks a
//! call is cut into follows from its work alone: one chunk per [`MACS_PER_CHUNK`]
//! multiply-adds, at most two per member, whole row tiles each. A call below that (a single
//! image through the reference MLP) runs on the calling thread and never waits for another
//! one. When another call already holds the team (concurrent requests in a server), the call
//! runs on its own thread instead of queueing. Results do not depend on any of this: each
//! output row is computed by one tile, whoever runs it.

use std::ops::Range;
use std::sync::OnceLock;

use crate::CpuKernelsError;
use crate::kernels::{Isa, PANEL};
use crate::team::{Team, share};

/// Multiply-adds worth handing to another thread (about 20-40 us of one core's work): the
/// hand-off costs a few microseconds when the members are spinning, more when they sleep.
pub const MACS_PER_CHUNK: usize = 1 << 20;

/// What follows the bias add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    /// `max(0, v)`; NaN passes through.
    Relu,
    /// `min(6, max(0, v))`.
    Relu6,
}

/// A Dense layer's weights, packed for the inference kernels.
#[derive(Debug, Clone)]
pub struct DenseLayer {
    k: usize,
    n: usize,
    np: usize,
    panel_stride: usize,
    /// Panel-major, `np / PANEL` panels of `panel_stride` floats.
    w: Vec<f32>,
    /// `np` entries, zero past `n`.
    bias: Vec<f32>,
    activation: Activation,
    /// Whether zero inputs may be skipped (all weights finite).
    skip_zeros: bool,
}

impl DenseLayer {
    /// `kernel` is `[k, n]` row-major (`transpose_b: false`) or `[n, k]` (`true`, as a
    /// `MatMul` with `transpose_b` stores it); `bias` is `[n]` or absent.
    pub fn new(
        kernel: &[f32],
        k: usize,
        n: usize,
        transposed: bool,
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<DenseLayer, CpuKernelsError> {
        if kernel.len() != k * n {
            return Err(CpuKernelsError::Weights {
                k,
                n,
                expected: k * n,
                found: kernel.len(),
            });
        }
        if let Some(b) = bias
            && b.len() != n
        {
            return Err(CpuKernelsError::Bias { n, found: b.len() });
        }
        let np = n.div_ceil(PANEL).max(1) * PANEL;
        // A spare cache line per panel keeps panels from being 4 KiB-aligned to each other.
        let panel_stride = k * PANEL + PANEL;
        let mut w = vec![0f32; panel_stride * (np / PANEL)];
        for r in 0..k {
            for c in 0..n {
                let v = if transposed {
                    kernel[c * k + r]
                } else {
                    kernel[r * n + c]
                };
                w[(c / PANEL) * panel_stride + r * PANEL + c % PANEL] = v;
            }
        }
        let mut padded_bias = vec![0f32; np];
        if let Some(b) = bias {
            padded_bias[..n].copy_from_slice(b);
        }
        Ok(DenseLayer {
            k,
            n,
            np,
            panel_stride,
            skip_zeros: kernel.iter().all(|v| v.is_finite()),
            w,
            bias: padded_bias,
            activation,
        })
    }

    /// Input width.
    pub fn rows_in(&self) -> usize {
        self.k
    }

    /// Output width.
    pub fn cols(&self) -> usize {
        self.n
    }

    pub(crate) fn padded_cols(&self) -> usize {
        self.np
    }

    pub(crate) fn panel_stride(&self) -> usize {
        self.panel_stride
    }

    pub fn activation(&self) -> Activation {
        self.activation
    }

    pub(crate) fn panel_ptr(&self, panel: usize) -> *const f32 {
        self.w[panel * self.panel_stride..].as_ptr()
    }

    pub(crate) fn bias_ptr(&self) -> *const f32 {
        self.bias.as_ptr()
    }

    /// Multiply-adds for `rows` rows (what the thread choice is based on).
    pub fn macs(&self, rows: usize) -> usize {
        rows.saturating_mul(self.k).saturating_mul(self.np)
    }

    /// `act(x . W + b)` for `x` `[rows, k]`, returned as `[rows, n]`, on the process-wide team
    /// with the detected ISA.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>, CpuKernelsError> {
        self.forward_with(Isa::detect(), x)
    }

    /// As [`DenseLayer::forward`], with a chosen ISA (which must be one of [`Isa::available`]).
    pub fn forward_with(&self, isa: Isa, x: &[f32]) -> Result<Vec<f32>, CpuKernelsError> {
        if self.k == 0 || !x.len().is_multiple_of(self.k) {
            return Err(CpuKernelsError::Input {
                k: self.k,
                found: x.len(),
            });
        }
        let rows = x.len() / self.k;
        let mut out = vec![0f32; rows * self.n];
        let tile_rows = tile_rows(isa);
        let chunks = chunks_for(self.macs(rows), rows, tile_rows);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let run = |_: usize, chunk: usize, chunks: usize| {
            let mine = share(rows, tile_rows, chunks, chunk);
            // SAFETY: `x` holds `rows` rows of `k`; `out` holds `rows` rows of `n` and this
            // chunk is the only writer of rows `mine` (chunks are disjoint).
            unsafe { self.run_rows(isa, x, out_ptr.get(), mine) };
        };
        if chunks <= 1 {
            run(0, 0, 1);
        } else {
            team().run_or_solo(&[chunks], run);
        }
        Ok(out)
    }

    /// Runs rows `rows` tile by tile.
    ///
    /// # Safety
    /// `x` holds at least `rows.end` rows of `k`; `out` points to at least `rows.end` rows of
    /// `n` floats that nobody else reads or writes during the call; `isa` is available.
    unsafe fn run_rows(&self, isa: Isa, x: &[f32], out: *mut f32, rows: Range<usize>) {
        let tile_rows = tile_rows(isa);
        let mut ks: Vec<u32> = Vec::with_capacity(self.k);
        let mut start = rows.start;
        while start < rows.end {
            let end = (start + tile_rows).min(rows.end);
            ks.clear();
            let block = &x[start * self.k..end * self.k];
            if self.skip_zeros {
                for kk in 0..self.k {
                    if block.iter().skip(kk).step_by(self.k).any(|&v| v != 0.0) {
                        ks.push(kk as u32);
                    }
                }
            } else {
                ks.extend(0..self.k as u32);
            }
            let tile = InferTile {
                layer: self,
                x,
                x_ld: self.k,
                rows: start..end,
                ks: &ks,
                out,
                out_ld: self.n,
            };
            // SAFETY: forwarded contract; the tile's rows are inside `rows`.
            unsafe { infer_tile(isa, &tile) };
            start = end;
        }
    }
}

/// One tile of an inference call (see [`DenseLayer::forward`]).
///
/// Contract of the kernels that take it: `x` holds rows `rows` of `x_ld >= layer.k` floats;
/// `ks` are ascending column indices `< layer.k`; `out` points to a buffer holding rows `rows`
/// of `out_ld >= layer.n` floats that only this tile writes; `rows.len()` is at most the ISA's
/// tile height.
pub(crate) struct InferTile<'a> {
    pub layer: &'a DenseLayer,
    pub x: &'a [f32],
    pub x_ld: usize,
    pub rows: Range<usize>,
    pub ks: &'a [u32],
    pub out: *mut f32,
    pub out_ld: usize,
}

fn tile_rows(isa: Isa) -> usize {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => crate::avx512::INFER_ROWS,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => crate::avx2::INFER_ROWS,
        Isa::Portable => 4,
    }
}

/// # Safety
/// See [`InferTile`]; `isa` must be available on this CPU.
unsafe fn infer_tile(isa: Isa, t: &InferTile<'_>) {
    match isa {
        // SAFETY: forwarded contract; AVX-512F checked by `Isa::available`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { crate::avx512::dense_infer(t) },
        // SAFETY: forwarded contract; AVX2 and FMA checked by `Isa::available`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { crate::avx2::dense_infer(t) },
        // SAFETY: forwarded contract.
        Isa::Portable => unsafe { portable_infer(t) },
    }
}

/// # Safety
/// See [`InferTile`].
unsafe fn portable_infer(t: &InferTile<'_>) {
    let layer = t.layer;
    for i in t.rows.clone() {
        for c in 0..layer.n {
            let mut acc = 0f32;
            let panel = &layer.w[(c / PANEL) * layer.panel_stride..];
            for &kk in t.ks {
                let kk = kk as usize;
                acc = t.x[i * t.x_ld + kk].mul_add(panel[kk * PANEL + c % PANEL], acc);
            }
            let v = apply(layer.activation, acc + layer.bias[c]);
            // SAFETY: row i, column c < n is inside `out` (contract of `InferTile`).
            unsafe { *t.out.add(i * t.out_ld + c) = v };
        }
    }
}

/// The activation as the SIMD kernels compute it (`max(0, v)` lets NaN through).
pub(crate) fn apply(activation: Activation, v: f32) -> f32 {
    let relu = if v < 0.0 { 0.0 } else { v };
    match activation {
        Activation::None => v,
        Activation::Relu => relu,
        Activation::Relu6 => {
            if relu > 6.0 {
                6.0
            } else {
                relu
            }
        }
    }
}

/// Number of chunks for a call of `macs` multiply-adds over `rows` rows: see the module docs.
pub fn chunks_for(macs: usize, rows: usize, tile_rows: usize) -> usize {
    let threads = team_threads();
    let by_work = macs / MACS_PER_CHUNK;
    let by_rows = rows.div_ceil(tile_rows.max(1));
    by_work.min(by_rows).min(2 * threads).max(1)
}

/// Threads of the process-wide team: one per available core, counted once. Asking the OS on
/// every call was the largest single cost of a batch-1 inference: `available_parallelism`
/// reads `/proc/self/cgroup` and the cgroup's `cpu.max` each time (tens of microseconds).
pub fn team_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process-wide team, started on first use.
pub(crate) fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        // A team that cannot start its members still runs everything on the caller.
        Team::new(team_threads()).unwrap_or_else(|_| Team::solo())
    })
}

/// A raw output pointer that the team's closures may share: each chunk writes its own rows.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: see `DenseLayer::forward_with`: the chunks write disjoint rows, and the team returns
// only after every chunk has finished.
unsafe impl Sync for SendPtr {}
// SAFETY: as above.
unsafe impl Send for SendPtr {}

impl SendPtr {
    /// Method access, so closures capture the `Sync` wrapper rather than its field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64, zeros_every: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if s.is_multiple_of(zeros_every) {
                    0.0
                } else {
                    ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
                }
            })
            .collect()
    }

    /// Straightforward f64 reference.
    fn reference(x: &[f32], w: &[f32], b: &[f32], k: usize, n: usize, act: Activation) -> Vec<f32> {
        let rows = x.len() / k;
        let mut out = vec![0f32; rows * n];
        for i in 0..rows {
            for c in 0..n {
                let mut s = b[c] as f64;
                for kk in 0..k {
                    s += x[i * k + kk] as f64 * w[kk * n + c] as f64;
                }
                out[i * n + c] = apply(act, s as f32);
            }
        }
        out
    }

    #[test]
    fn every_isa_matches_the_reference_and_each_other_bit_for_bit() {
        for (rows, k, n, act) in [
            (1, 784, 512, Activation::Relu),
            (13, 37, 10, Activation::None),
            (29, 64, 33, Activation::Relu6),
            (100, 5, 48, Activation::Relu),
        ] {
            let x: Vec<f32> = values(rows * k, 1, 3).iter().map(|v| v * 4.0).collect();
            let w = values(k * n, 2, 1000);
            let b = values(n, 3, 1000);
            let want = reference(&x, &w, &b, k, n, act);
            let layer = DenseLayer::new(&w, k, n, false, Some(&b), act).unwrap();
            let mut results = Vec::new();
            for isa in Isa::available() {
                let got = layer.forward_with(isa, &x).unwrap();
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (1.0 + g.abs().max(e.abs())) * (k as f32).sqrt();
                    assert!((g - e).abs() <= tol, "{isa:?} [{i}]: {g} vs {e}");
                }
                results.push((isa, got));
            }
            for (isa, got) in &results[1..] {
                assert!(
                    got.iter()
                        .zip(&results[0].1)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa:?} differs from the portable kernel"
                );
            }
        }
    }

    #[test]
    fn transposed_weights_give_the_same_layer() {
        let (k, n) = (9, 20);
        let w = values(k * n, 5, 1000);
        let mut wt = vec![0f32; k * n];
        for r in 0..k {
            for c in 0..n {
                wt[c * k + r] = w[r * n + c];
            }
        }
        let x = values(7 * k, 6, 4);
        let a = DenseLayer::new(&w, k, n, false, None, Activation::None).unwrap();
        let b = DenseLayer::new(&wt, k, n, true, None, Activation::None).unwrap();
        assert_eq!(a.forward(&x).unwrap(), b.forward(&x).unwrap());
    }

    #[test]
    fn non_finite_weights_are_not_skipped() {
        // 0 * inf is NaN in TensorFlow too: skipping the zero input would hide it.
        let w = [f32::INFINITY, 1.0];
        let layer = DenseLayer::new(&w, 2, 1, false, None, Activation::None).unwrap();
        let out = layer.forward(&[0.0, 1.0]).unwrap();
        assert!(out[0].is_nan());
    }

    #[test]
    fn bad_shapes_are_reported() {
        assert!(matches!(
            DenseLayer::new(&[0.0; 5], 2, 3, false, None, Activation::None),
            Err(CpuKernelsError::Weights {
                k: 2,
                n: 3,
                expected: 6,
                found: 5
            })
        ));
        let layer = DenseLayer::new(&[0.0; 6], 2, 3, false, None, Activation::None).unwrap();
        assert!(matches!(
            layer.forward(&[1.0; 3]),
            Err(CpuKernelsError::Input { k: 2, found: 3 })
        ));
        assert!(matches!(
            DenseLayer::new(&[0.0; 6], 2, 3, false, Some(&[0.0]), Activation::None),
            Err(CpuKernelsError::Bias { n: 3, found: 1 })
        ));
    }

    #[test]
    fn large_calls_are_split_and_give_the_same_rows() {
        let (k, n) = (300, 64);
        let w = values(k * n, 8, 1000);
        let x = values(500 * k, 9, 2);
        let layer = DenseLayer::new(&w, k, n, false, None, Activation::Relu).unwrap();
        assert!(chunks_for(layer.macs(500), 500, 12) > 1 || team_threads() == 1);
        let all = layer.forward(&x).unwrap();
        for r in [0, 17, 499] {
            let one = layer.forward(&x[r * k..(r + 1) * k]).unwrap();
            assert_eq!(one, all[r * n..(r + 1) * n]);
        }
    }
}
