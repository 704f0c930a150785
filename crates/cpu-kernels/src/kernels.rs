//! The three products a Dense layer needs per training step, each fused with its element-wise
//! neighbours so every matrix is read once:
//!
//! * [`dense_forward`]: `out = act(x . W + b) * mask` (bias, ReLU and dropout in the epilogue);
//! * [`dense_input_grad`]: `dx = (dy . W^T) * [act_prev > 0] * scale` (the previous layer's
//!   ReLU and dropout derivative in the epilogue);
//! * [`dense_weight_update`]: `g = x^T . dy; accum = m * accum + g; W -= lr * accum` (the
//!   gradient never exists as a matrix: each register tile goes straight into the momentum update).
//!
//! Activations and gradients are row-major with an explicit leading dimension. Weights (and
//! their momentum slots) are *panel-major* ([`Packed`]): blocks of [`PANEL`] columns, each block
//! stored as `k` contiguous 64-byte rows. The forward pass then streams each block linearly, and
//! the weight update touches contiguous memory; a plain row-major `[k, n]` with `n = 512` makes
//! every row of a column block land in the same few cache sets, and the forward pass stalls on
//! loads. Column counts of `W`, `b`, `dy` and `out` are multiples of [`PANEL`] (the engine pads
//! layers to that), which keeps the inner loops free of edge cases; row counts and `k` are
//! arbitrary.
//!
//! Every output element is one sequential reduction in a fixed order, whatever tile or thread
//! computes it, so results do not depend on how work is split between threads.

use std::ops::Range;

/// Column granularity of weights and activations (two 8-lane AVX vectors).
pub const PANEL: usize = 16;

/// Instruction set of the kernels, chosen at run time from the CPU's features.
///
/// Every ISA computes each output element as the same sequence of fused multiply-adds, in the
/// same order (see the module docs), so training gives the same bits on any of them; the
/// `training_is_bit_identical_on_every_isa` test of `mnist-model` checks that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust loops (`f32::mul_add`): any CPU.
    Portable,
    /// 256-bit AVX2 with fused multiply-add (x86-64 since Haswell / Zen).
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// 512-bit AVX-512F (Skylake-SP, Ice Lake, Zen 4 and later): forward pass and weight
    /// update on `zmm` registers, the input gradient on the AVX2 kernel (its horizontal
    /// reduction is what fixes the summation order).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Environment variable that caps the ISA [`Isa::detect`] picks (`portable`, `avx2`,
/// `avx512`): for comparing ISAs on one machine, and for reproducing an AVX2-only machine.
pub const ISA_ENV: &str = "CPU_KERNELS_ISA";

impl Isa {
    /// The best ISA this CPU supports, capped by [`ISA_ENV`] when that is set to a known name.
    pub fn detect() -> Self {
        let best = Self::available().into_iter().max().unwrap_or(Isa::Portable);
        match std::env::var(ISA_ENV)
            .ok()
            .and_then(|v| Isa::from_name(v.trim()))
        {
            Some(cap) => best.min(cap),
            None => best,
        }
    }

    /// Every ISA this CPU can run, the portable one first.
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            isas.push(Isa::Avx2Fma);
            if std::arch::is_x86_feature_detected!("avx512f") {
                isas.push(Isa::Avx512);
            }
        }
        isas
    }

    /// Parses a name as [`Isa::name`] prints it (`avx2` and `avx2+fma` are the same).
    pub fn from_name(name: &str) -> Option<Isa> {
        match name {
            "portable" => Some(Isa::Portable),
            #[cfg(target_arch = "x86_64")]
            "avx2" | "avx2+fma" => Some(Isa::Avx2Fma),
            #[cfg(target_arch = "x86_64")]
            "avx512" | "avx512f" => Some(Isa::Avx512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => "avx2+fma",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512f",
        }
    }
}

/// Read-only row-major matrix: element `(r, c)` is at `ptr + r * ld + c`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef {
    pub ptr: *const f32,
    pub ld: usize,
}

/// Writable row-major matrix.
#[derive(Debug, Clone, Copy)]
pub struct MatMut {
    pub ptr: *mut f32,
    pub ld: usize,
}

impl MatRef {
    /// Pointer to element `(r, c)`.
    ///
    /// # Safety
    /// `(r, c)` must lie inside the matrix the view was made from.
    #[inline(always)]
    pub unsafe fn at(self, r: usize, c: usize) -> *const f32 {
        // SAFETY: the caller guarantees (r, c) lies inside the matrix.
        unsafe { self.ptr.add(r * self.ld + c) }
    }
}

impl MatMut {
    /// Pointer to element `(r, c)`.
    ///
    /// # Safety
    /// `(r, c)` must lie inside the matrix the view was made from.
    #[inline(always)]
    pub unsafe fn at(self, r: usize, c: usize) -> *mut f32 {
        // SAFETY: the caller guarantees (r, c) lies inside the matrix.
        unsafe { self.ptr.add(r * self.ld + c) }
    }

    pub fn as_ref(self) -> MatRef {
        MatRef {
            ptr: self.ptr,
            ld: self.ld,
        }
    }
}

/// Panel-major matrix: element `(r, c)` is at `ptr + (c / PANEL) * panel_stride + r * PANEL + c % PANEL`.
///
/// `panel_stride` is a little more than `rows * PANEL` so that element `(r, c)` and `(r, c + PANEL)`
/// are not a multiple of 4 KiB apart (which would put a whole row in one cache set).
#[derive(Debug, Clone, Copy)]
pub struct Packed {
    pub ptr: *mut f32,
    pub panel_stride: usize,
}

impl Packed {
    /// Start of row `r` within the panel holding column `c` (`c` a multiple of 8).
    ///
    /// # Safety
    /// `(r, c)` must lie inside the matrix the view was made from.
    #[inline(always)]
    pub unsafe fn at(self, r: usize, c: usize) -> *mut f32 {
        // SAFETY: the caller guarantees (r, c) lies inside the matrix.
        unsafe {
            self.ptr
                .add((c / PANEL) * self.panel_stride + r * PANEL + c % PANEL)
        }
    }
}

/// `out[rows, cols] = act(x[rows, :k] . w[:k, cols] + bias[cols]) * mask[rows, cols]`.
#[derive(Debug, Clone, Copy)]
pub struct Forward {
    pub x: MatRef,
    pub k: usize,
    pub w: Packed,
    pub bias: *const f32,
    pub out: MatMut,
    pub relu: bool,
    /// Dropout multipliers (0 or 1/(1-rate)); `None` outside training or for the output layer.
    pub mask: Option<MatRef>,
}

/// For the `W` rows in a range: `accum = momentum * accum + x^T . dy; w -= lr * accum`.
#[derive(Debug, Clone, Copy)]
pub struct WeightUpdate {
    /// Layer input, `[m, k]`.
    pub x: MatRef,
    pub m: usize,
    /// Gradient of the layer's pre-activation, `[m, n]`.
    pub dy: MatRef,
    /// Padded width of the layer (multiple of [`PANEL`]).
    pub n: usize,
    pub accum: Packed,
    pub w: Packed,
    pub momentum: f32,
    pub learning_rate: f32,
}

/// For input columns `k` in a range: `out[i, k] = (sum_j dy[i, j] w[k, j]) * (act_prev[i, k] > 0 ? scale : 0)`.
///
/// `act_prev` is the previous layer's output *after* ReLU and dropout, so `act_prev > 0` is
/// exactly "ReLU was active and dropout kept the unit", and `scale` is the dropout factor.
#[derive(Debug, Clone, Copy)]
pub struct InputGrad {
    pub dy: MatRef,
    pub m: usize,
    /// Padded width of the layer (multiple of [`PANEL`]).
    pub n: usize,
    pub w: Packed,
    pub act_prev: MatRef,
    pub scale: f32,
    pub out: MatMut,
}

/// Row tiles for an `m`-row block: sixes, but never a lone 1- or 2-row tile when it can be
/// avoided, since short tiles leave the FMA pipes idle (32 rows -> 6,6,6,6,4,4).
pub fn row_tiles(rows: Range<usize>, mut visit: impl FnMut(usize, usize)) {
    let mut start = rows.start;
    let mut left = rows.len();
    while left > 0 {
        let tile = match left {
            7 => 4,
            8 => 4,
            l if l >= 6 => 6,
            l => l,
        };
        visit(start, tile);
        start += tile;
        left -= tile;
    }
}

/// # Safety
/// Every matrix must cover the rows and columns the call touches; `cols` must be
/// [`PANEL`]-aligned; `out` must not overlap the inputs nor be written by another thread.
pub unsafe fn dense_forward(isa: Isa, f: &Forward, rows: Range<usize>, cols: Range<usize>) {
    debug_assert!(cols.start.is_multiple_of(PANEL) && cols.end.is_multiple_of(PANEL));
    match isa {
        // SAFETY: forwarded contract; the CPU supports AVX2 and FMA (an `Isa` other than
        // `Portable` is only produced by `Isa::available`, which checks).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { crate::avx2::dense_forward(f, rows, cols) },
        // SAFETY: forwarded contract; AVX-512F checked by `Isa::available`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { crate::avx512::dense_forward(f, rows, cols) },
        // SAFETY: forwarded contract.
        Isa::Portable => unsafe { portable::dense_forward(f, rows, cols) },
    }
}

/// # Safety
/// As for [`dense_forward`]; `krows` are rows of `w`/`accum` owned by this caller.
pub unsafe fn dense_weight_update(isa: Isa, u: &WeightUpdate, krows: Range<usize>) {
    debug_assert!(u.n.is_multiple_of(PANEL));
    match isa {
        // SAFETY: forwarded contract; CPU features checked by `Isa::detect`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { crate::avx2::dense_weight_update(u, krows) },
        // SAFETY: forwarded contract; AVX-512F checked by `Isa::available`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { crate::avx512::dense_weight_update(u, krows) },
        // SAFETY: forwarded contract.
        Isa::Portable => unsafe { portable::dense_weight_update(u, krows) },
    }
}

/// # Safety
/// As for [`dense_forward`]; `kcols` are columns of `out` owned by this caller.
pub unsafe fn dense_input_grad(isa: Isa, g: &InputGrad, kcols: Range<usize>) {
    debug_assert!(g.n.is_multiple_of(PANEL));
    match isa {
        // SAFETY: forwarded contract; CPU features checked by `Isa::detect`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma | Isa::Avx512 => unsafe { crate::avx2::dense_input_grad(g, kcols) },
        // SAFETY: forwarded contract.
        Isa::Portable => unsafe { portable::dense_input_grad(g, kcols) },
    }
}

/// `accum_b = momentum * accum_b + sum_i dy[i, cols]; b -= lr * accum_b` for bias columns `cols`.
///
/// # Safety
/// `dy` covers `m` rows and `cols`; `accum` and `bias` cover `cols` and are owned by the caller.
#[allow(clippy::too_many_arguments)]
pub unsafe fn bias_update(
    dy: MatRef,
    m: usize,
    cols: Range<usize>,
    accum: *mut f32,
    bias: *mut f32,
    momentum: f32,
    learning_rate: f32,
) {
    const CHUNK: usize = 64;
    let mut start = cols.start;
    while start < cols.end {
        let width = CHUNK.min(cols.end - start);
        let mut sum = [0f32; CHUNK];
        for i in 0..m {
            // SAFETY: row i, columns start..start+width are inside dy.
            let row = unsafe { std::slice::from_raw_parts(dy.at(i, start), width) };
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v;
            }
        }
        for (c, &g) in sum[..width].iter().enumerate() {
            // SAFETY: column start + c is inside `cols`, owned by the caller.
            unsafe {
                let a = accum.add(start + c);
                let b = bias.add(start + c);
                *a = momentum * *a + g;
                *b -= learning_rate * *a;
            }
        }
        start += width;
    }
}

/// Reference implementations: straightforward loops with exactly the operations of the SIMD
/// kernels (fused multiply-adds in the same order, the input gradient's eight lanes and their
/// pairwise reduction), so they give the same bits; used on CPUs without AVX2/FMA.
pub mod portable {
    use super::*;

    /// # Safety
    /// See [`super::dense_forward`].
    pub unsafe fn dense_forward(f: &Forward, rows: Range<usize>, cols: Range<usize>) {
        for i in rows {
            for j in cols.clone() {
                // SAFETY: indices inside the matrices by the caller's contract.
                unsafe {
                    let mut acc = 0f32;
                    for kk in 0..f.k {
                        acc = (*f.x.at(i, kk)).mul_add(*f.w.at(kk, j), acc);
                    }
                    let mut v = acc + *f.bias.add(j);
                    if f.relu {
                        // `max(0, v)` as the SIMD kernels compute it: NaN and -0 pass through.
                        v = if v < 0.0 { 0.0 } else { v };
                    }
                    if let Some(mask) = f.mask {
                        v *= *mask.at(i, j);
                    }
                    *f.out.at(i, j) = v;
                }
            }
        }
    }

    /// # Safety
    /// See [`super::dense_weight_update`].
    pub unsafe fn dense_weight_update(u: &WeightUpdate, krows: Range<usize>) {
        for kk in krows {
            for j in 0..u.n {
                // SAFETY: indices inside the matrices by the caller's contract.
                unsafe {
                    let mut g = 0f32;
                    for i in 0..u.m {
                        g = (*u.x.at(i, kk)).mul_add(*u.dy.at(i, j), g);
                    }
                    let a = u.accum.at(kk, j);
                    *a = u.momentum.mul_add(*a, g);
                    let w = u.w.at(kk, j);
                    *w = (-u.learning_rate).mul_add(*a, *w);
                }
            }
        }
    }

    /// # Safety
    /// See [`super::dense_input_grad`].
    pub unsafe fn dense_input_grad(g: &InputGrad, kcols: Range<usize>) {
        for i in 0..g.m {
            for kk in kcols.clone() {
                // SAFETY: indices inside the matrices by the caller's contract.
                unsafe {
                    // Eight lanes, as the AVX2 kernel keeps them, reduced in its order.
                    let mut lanes = [0f32; 8];
                    for j in 0..g.n {
                        let lane = &mut lanes[j % 8];
                        *lane = (*g.dy.at(i, j)).mul_add(*g.w.at(kk, j), *lane);
                    }
                    let l = lanes;
                    let s = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
                    // A select, not a multiply by 0, like TF's ReluGrad / dropout SelectV2.
                    *g.out.at(i, kk) = if *g.act_prev.at(i, kk) > 0.0 {
                        s * g.scale
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic pseudo-random values in [-1, 1), some exactly zero or negative so
    /// that ReLU masks are exercised.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        test_rng::signed_values(n, seed, 7)
    }

    struct Case {
        m: usize,
        k: usize,
        n: usize,
    }

    const CASES: [Case; 4] = [
        Case {
            m: 32,
            k: 40,
            n: 32,
        },
        Case { m: 7, k: 13, n: 16 },
        Case { m: 1, k: 1, n: 48 },
        Case {
            m: 33,
            k: 29,
            n: 64,
        },
    ];

    fn packed(data: &mut [f32], k: usize) -> Packed {
        Packed {
            ptr: data.as_mut_ptr(),
            panel_stride: k * PANEL + PANEL,
        }
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let tol = 1e-5 * (1.0 + x.abs().max(y.abs()));
            assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Runs `f` with every available ISA and returns their outputs.
    fn each_isa<T>(f: impl FnMut(Isa) -> T) -> Vec<T> {
        Isa::available().into_iter().map(f).collect()
    }

    #[test]
    fn forward_matches_reference_on_every_isa() {
        for (c, case) in CASES.iter().enumerate() {
            let ld = case.n + 16;
            let x = values(case.m * case.k, 1 + c as u64);
            let mut w = values((case.n / PANEL) * (case.k * PANEL + PANEL), 2 + c as u64);
            let bias = values(case.n, 3);
            let mask: Vec<f32> = values(case.m * ld, 4)
                .iter()
                .map(|v| if *v > 0.0 { 1.25 } else { 0.0 })
                .collect();
            let wp = packed(&mut w, case.k);
            // Straightforward reference in f64.
            let mut want = vec![0f32; case.m * ld];
            for i in 0..case.m {
                for j in 0..case.n {
                    let mut s = bias[j] as f64;
                    for kk in 0..case.k {
                        // SAFETY: inside the packed matrix.
                        s += x[i * case.k + kk] as f64 * unsafe { *wp.at(kk, j) } as f64;
                    }
                    want[i * ld + j] = (s.max(0.0) as f32) * mask[i * ld + j];
                }
            }
            for got in each_isa(|isa| {
                let mut out = vec![0f32; case.m * ld];
                let f = Forward {
                    x: MatRef {
                        ptr: x.as_ptr(),
                        ld: case.k,
                    },
                    k: case.k,
                    w: wp,
                    bias: bias.as_ptr(),
                    out: MatMut {
                        ptr: out.as_mut_ptr(),
                        ld,
                    },
                    relu: true,
                    mask: Some(MatRef {
                        ptr: mask.as_ptr(),
                        ld,
                    }),
                };
                // Two calls over split rows/columns must equal one call over everything.
                let half = (case.n / PANEL / 2) * PANEL;
                // SAFETY: all buffers cover m x n.
                unsafe {
                    dense_forward(isa, &f, 0..case.m, 0..half);
                    dense_forward(isa, &f, 0..case.m / 2, half..case.n);
                    dense_forward(isa, &f, case.m / 2..case.m, half..case.n);
                }
                out
            }) {
                close(&got, &want, "forward");
            }
        }
    }

    #[test]
    fn weight_update_matches_reference_on_every_isa() {
        for (c, case) in CASES.iter().enumerate() {
            let ldy = case.n + 16;
            let x = values(case.m * case.k, 10 + c as u64);
            let dy = values(case.m * ldy, 11 + c as u64);
            let len = (case.n / PANEL) * (case.k * PANEL + PANEL);
            let w0 = values(len, 12);
            let a0 = values(len, 13);
            let (momentum, lr) = (0.9f32, 0.01f32);
            let mut want_w = w0.clone();
            let mut want_a = a0.clone();
            {
                let wp = packed(&mut want_w, case.k);
                let ap = packed(&mut want_a, case.k);
                for kk in 0..case.k {
                    for j in 0..case.n {
                        let mut g = 0f64;
                        for i in 0..case.m {
                            g += x[i * case.k + kk] as f64 * dy[i * ldy + j] as f64;
                        }
                        // SAFETY: inside the packed matrices.
                        unsafe {
                            let a = ap.at(kk, j);
                            *a = (momentum as f64 * *a as f64 + g) as f32;
                            *wp.at(kk, j) -= lr * *a;
                        }
                    }
                }
            }
            for (got_w, got_a) in each_isa(|isa| {
                let mut w = w0.clone();
                let mut a = a0.clone();
                let u = WeightUpdate {
                    x: MatRef {
                        ptr: x.as_ptr(),
                        ld: case.k,
                    },
                    m: case.m,
                    dy: MatRef {
                        ptr: dy.as_ptr(),
                        ld: ldy,
                    },
                    n: case.n,
                    accum: packed(&mut a, case.k),
                    w: packed(&mut w, case.k),
                    momentum,
                    learning_rate: lr,
                };
                let split = case.k / 3;
                // SAFETY: all buffers cover the shapes.
                unsafe {
                    dense_weight_update(isa, &u, 0..split);
                    dense_weight_update(isa, &u, split..case.k);
                }
                (w, a)
            }) {
                close(&got_w, &want_w, "weights");
                close(&got_a, &want_a, "accumulators");
            }
        }
    }

    #[test]
    fn input_grad_matches_reference_on_every_isa() {
        for (c, case) in CASES.iter().enumerate() {
            let ldy = case.n + 16;
            let ldo = case.k + 3;
            let dy = values(case.m * ldy, 20 + c as u64);
            let mut w = values((case.n / PANEL) * (case.k * PANEL + PANEL), 21 + c as u64);
            let act = values(case.m * ldo, 22 + c as u64);
            let wp = packed(&mut w, case.k);
            let scale = 1.25f32;
            let mut want = vec![0f32; case.m * ldo];
            for i in 0..case.m {
                for kk in 0..case.k {
                    let mut s = 0f64;
                    for j in 0..case.n {
                        // SAFETY: inside the packed matrix.
                        s += dy[i * ldy + j] as f64 * unsafe { *wp.at(kk, j) } as f64;
                    }
                    want[i * ldo + kk] = if act[i * ldo + kk] > 0.0 {
                        s as f32 * scale
                    } else {
                        0.0
                    };
                }
            }
            for got in each_isa(|isa| {
                let mut out = vec![0f32; case.m * ldo];
                let g = InputGrad {
                    dy: MatRef {
                        ptr: dy.as_ptr(),
                        ld: ldy,
                    },
                    m: case.m,
                    n: case.n,
                    w: wp,
                    act_prev: MatRef {
                        ptr: act.as_ptr(),
                        ld: ldo,
                    },
                    scale,
                    out: MatMut {
                        ptr: out.as_mut_ptr(),
                        ld: ldo,
                    },
                };
                // SAFETY: all buffers cover the shapes.
                unsafe {
                    dense_input_grad(isa, &g, 0..case.k / 2);
                    dense_input_grad(isa, &g, case.k / 2..case.k);
                }
                out
            }) {
                close(&got, &want, "input grad");
            }
        }
    }

    #[test]
    fn bias_update_applies_momentum_to_column_sums() {
        let dy = values(5 * 80, 30);
        let mut accum = values(80, 31);
        let mut bias = values(80, 32);
        let (a0, b0) = (accum.clone(), bias.clone());
        // SAFETY: buffers cover 5 x 80.
        unsafe {
            bias_update(
                MatRef {
                    ptr: dy.as_ptr(),
                    ld: 80,
                },
                5,
                0..80,
                accum.as_mut_ptr(),
                bias.as_mut_ptr(),
                0.5,
                0.1,
            );
        }
        for j in 0..80 {
            let g: f32 = (0..5).map(|i| dy[i * 80 + j]).sum();
            let a = 0.5 * a0[j] + g;
            assert!((accum[j] - a).abs() < 1e-5);
            assert!((bias[j] - (b0[j] - 0.1 * a)).abs() < 1e-5);
        }
    }

    #[test]
    fn row_tiles_avoid_short_tiles() {
        let mut tiles = vec![];
        row_tiles(0..32, |_, t| tiles.push(t));
        assert_eq!(tiles, [6, 6, 6, 6, 4, 4]);
        for m in 0..40 {
            let mut next = 3;
            row_tiles(3..3 + m, |s, t| {
                assert_eq!(s, next);
                assert!((1..=6).contains(&t));
                next += t;
            });
            assert_eq!(next, 3 + m);
        }
    }
}
