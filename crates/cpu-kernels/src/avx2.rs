//! AVX2 + FMA versions of the kernels in [`crate::kernels`] (x86-64 only, selected at run time).
//!
//! Register tiles: forward and weight update keep a `rows x 16` block of outputs in
//! `2 * rows` ymm accumulators (12 for 6 rows, enough independent FMA chains to hide latency on
//! two FMA pipes); the input gradient is a set of dot products over the layer width, 4 rows x 2
//! inputs at a time, reduced horizontally once at the end.

use std::arch::x86_64::*;
use std::ops::Range;

use crate::infer::{Activation, InferTile};
use crate::kernels::{Forward, InputGrad, PANEL, WeightUpdate, row_tiles};

/// # Safety
/// See [`crate::kernels::dense_forward`]; the CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dense_forward(f: &Forward, rows: Range<usize>, cols: Range<usize>) {
    let mut j = cols.start;
    while j < cols.end {
        row_tiles(rows.clone(), |i, tile| {
            // SAFETY: the tile lies inside `rows` x `j..j+PANEL`, covered by the caller's contract.
            unsafe {
                match tile {
                    6 => forward_tile::<6>(f, i, j),
                    5 => forward_tile::<5>(f, i, j),
                    4 => forward_tile::<4>(f, i, j),
                    3 => forward_tile::<3>(f, i, j),
                    2 => forward_tile::<2>(f, i, j),
                    _ => forward_tile::<1>(f, i, j),
                }
            }
        });
        j += PANEL;
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn forward_tile<const MR: usize>(f: &Forward, i: usize, j: usize) {
    // SAFETY (whole body): rows i..i+MR and columns j..j+16 are inside every matrix.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let x = f.x.at(i, 0);
        let mut w = f.w.at(0, j).cast_const();
        for kk in 0..f.k {
            let w0 = _mm256_loadu_ps(w);
            let w1 = _mm256_loadu_ps(w.add(8));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let xv = _mm256_broadcast_ss(&*x.add(r * f.x.ld + kk));
                acc_r[0] = _mm256_fmadd_ps(xv, w0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(xv, w1, acc_r[1]);
            }
            w = w.add(PANEL);
        }
        let bias = [
            _mm256_loadu_ps(f.bias.add(j)),
            _mm256_loadu_ps(f.bias.add(j + 8)),
        ];
        let zero = _mm256_setzero_ps();
        for (r, acc_r) in acc.iter().enumerate() {
            for h in 0..2 {
                let mut v = _mm256_add_ps(acc_r[h], bias[h]);
                if f.relu {
                    // max(0, v) returns v when v is NaN, so NaNs propagate like tf.nn.relu.
                    v = _mm256_max_ps(zero, v);
                }
                if let Some(mask) = f.mask {
                    v = _mm256_mul_ps(v, _mm256_loadu_ps(mask.at(i + r, j + 8 * h)));
                }
                _mm256_storeu_ps(f.out.at(i + r, j + 8 * h), v);
            }
        }
    }
}

/// # Safety
/// See [`crate::kernels::dense_weight_update`]; the CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dense_weight_update(u: &WeightUpdate, krows: Range<usize>) {
    // Panel by panel, so that `w` and `accum` are streamed linearly (panel-major storage) and
    // the hardware prefetcher keeps up; within a panel, tiles of W rows (the x^T block is the
    // "row" side here, so the same tiling rule as the forward pass applies).
    let mut j = 0;
    while j < u.n {
        row_tiles(krows.clone(), |k0, tile| {
            // SAFETY: rows k0..k0+tile and columns j..j+16 are inside W/accum; x and dy cover them.
            unsafe {
                match tile {
                    6 => update_tile::<6>(u, k0, j),
                    5 => update_tile::<5>(u, k0, j),
                    4 => update_tile::<4>(u, k0, j),
                    3 => update_tile::<3>(u, k0, j),
                    2 => update_tile::<2>(u, k0, j),
                    _ => update_tile::<1>(u, k0, j),
                }
            }
        });
        j += PANEL;
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn update_tile<const KR: usize>(u: &WeightUpdate, k0: usize, j: usize) {
    // SAFETY (whole body): see `dense_weight_update`.
    unsafe {
        let mut g = [[_mm256_setzero_ps(); 2]; KR];
        for i in 0..u.m {
            let dy = u.dy.at(i, j);
            let d0 = _mm256_loadu_ps(dy);
            let d1 = _mm256_loadu_ps(dy.add(8));
            let x = u.x.at(i, k0);
            for (r, g_r) in g.iter_mut().enumerate() {
                let xv = _mm256_broadcast_ss(&*x.add(r));
                g_r[0] = _mm256_fmadd_ps(xv, d0, g_r[0]);
                g_r[1] = _mm256_fmadd_ps(xv, d1, g_r[1]);
            }
        }
        let momentum = _mm256_set1_ps(u.momentum);
        let lr = _mm256_set1_ps(u.learning_rate);
        for (r, g_r) in g.iter().enumerate() {
            for (h, &grad) in g_r.iter().enumerate() {
                let a_ptr = u.accum.at(k0 + r, j).add(8 * h);
                let w_ptr = u.w.at(k0 + r, j).add(8 * h);
                let a = _mm256_fmadd_ps(momentum, _mm256_loadu_ps(a_ptr), grad);
                _mm256_storeu_ps(a_ptr, a);
                _mm256_storeu_ps(w_ptr, _mm256_fnmadd_ps(lr, a, _mm256_loadu_ps(w_ptr)));
            }
        }
    }
}

/// # Safety
/// See [`crate::kernels::dense_input_grad`]; the CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dense_input_grad(g: &InputGrad, kcols: Range<usize>) {
    const IR: usize = 4;
    const KR: usize = 2;
    let mut k = kcols.start;
    while k < kcols.end {
        let kn = KR.min(kcols.end - k);
        let mut i = 0;
        while i < g.m {
            let im = IR.min(g.m - i);
            // SAFETY: rows i..i+im and inputs k..k+kn are inside every matrix.
            unsafe {
                match (im, kn) {
                    (4, 2) => grad_tile::<4, 2>(g, i, k),
                    (4, _) => grad_tile::<4, 1>(g, i, k),
                    (3, 2) => grad_tile::<3, 2>(g, i, k),
                    (3, _) => grad_tile::<3, 1>(g, i, k),
                    (2, 2) => grad_tile::<2, 2>(g, i, k),
                    (2, _) => grad_tile::<2, 1>(g, i, k),
                    (_, 2) => grad_tile::<1, 2>(g, i, k),
                    _ => grad_tile::<1, 1>(g, i, k),
                }
            }
            i += im;
        }
        k += kn;
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn grad_tile<const IR: usize, const KR: usize>(g: &InputGrad, i0: usize, k0: usize) {
    // SAFETY (whole body): see `dense_input_grad`.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); KR]; IR];
        let mut j = 0;
        while j < g.n {
            let mut wv = [_mm256_setzero_ps(); KR];
            for (r, w_r) in wv.iter_mut().enumerate() {
                *w_r = _mm256_loadu_ps(g.w.at(k0 + r, j));
            }
            for (a, acc_a) in acc.iter_mut().enumerate() {
                let d = _mm256_loadu_ps(g.dy.at(i0 + a, j));
                for r in 0..KR {
                    acc_a[r] = _mm256_fmadd_ps(d, wv[r], acc_a[r]);
                }
            }
            j += 8;
        }
        for (a, acc_a) in acc.iter().enumerate() {
            for (r, &v) in acc_a.iter().enumerate() {
                let s = horizontal_sum(v);
                let act = *g.act_prev.at(i0 + a, k0 + r);
                *g.out.at(i0 + a, k0 + r) = if act > 0.0 { s * g.scale } else { 0.0 };
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn horizontal_sum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Appends one bit per input of `row` (whose length is a multiple of 32) to `masks`: bit `j % 32`
/// of word `j / 32` is set when input `j` is not zero (NaN included), as
/// `crate::infer::nonzero_mask` defines it.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn nonzero_mask(row: &[f32], masks: &mut Vec<u32>) {
    let zero = _mm256_setzero_ps();
    for chunk in row.chunks_exact(32) {
        let mut m = 0u32;
        for q in 0..4 {
            // SAFETY: `chunk` holds 32 floats, so 8 from `8 * q` are inside it.
            let v = unsafe { _mm256_loadu_ps(chunk.as_ptr().add(8 * q)) };
            let bits = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero)) as u32;
            m |= bits << (8 * q);
        }
        masks.push(m);
    }
}

/// One inference tile (see [`crate::avx512::dense_infer`], of which this is the AVX2 twin).
/// Every shape keeps 12 of the 16 `ymm` registers as accumulators (two per row and panel), so
/// that each fused multiply-add chain has a dozen independent neighbours to hide its latency
/// behind: 6 rows x 1 panel, 4 rows x 1 panel (8), 3 rows x 2 panels, 2 rows x 3 panels, and
/// 1 row x 4 panels (8). The shorter tiles matter most: they run over the union of fewer rows'
/// non-zero inputs (see `crate::infer`), and with 6 accumulators (3 x 1) or 8 (2 x 2) they
/// were latency-bound.
///
/// # Safety
/// See [`crate::infer::InferTile`]; the CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dense_infer(t: &InferTile<'_>) {
    let mut p = t.panels.start;
    // SAFETY (every call): forwarded contract; panels p..p + NP are inside `t.panels`; every
    // arm's row count is `t.rows.len()`.
    unsafe {
        match t.rows.len() {
            1 => {
                while p + 4 <= t.panels.end {
                    infer_tile::<1, 4>(t, p);
                    p += 4;
                }
            }
            2 => {
                while p + 3 <= t.panels.end {
                    infer_tile::<2, 3>(t, p);
                    p += 3;
                }
                while p + 2 <= t.panels.end {
                    infer_tile::<2, 2>(t, p);
                    p += 2;
                }
            }
            3 => {
                while p + 2 <= t.panels.end {
                    infer_tile::<3, 2>(t, p);
                    p += 2;
                }
            }
            _ => {}
        }
        while p < t.panels.end {
            match t.rows.len() {
                6 => infer_tile::<6, 1>(t, p),
                5 => infer_tile::<5, 1>(t, p),
                4 => infer_tile::<4, 1>(t, p),
                3 => infer_tile::<3, 1>(t, p),
                2 => infer_tile::<2, 1>(t, p),
                1 => infer_tile::<1, 1>(t, p),
                _ => {}
            }
            p += 1;
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn infer_tile<const MR: usize, const NP: usize>(t: &InferTile<'_>, panel: usize) {
    // SAFETY (whole body): `t.ks` are valid input columns, rows `t.rows` are inside `x` and
    // `out`, panels `panel..panel + NP` exist in the packed weights.
    unsafe {
        let layer = t.layer;
        let mut acc = [[[_mm256_setzero_ps(); 2]; NP]; MR];
        let x = t.x.as_ptr().add(t.rows.start * t.x_ld);
        let w0 = layer.panel_ptr(panel);
        let stride = layer.panel_stride();
        for &kk in t.ks {
            let kk = kk as usize;
            // Each weight and each input is loaded once per column `kk`. Whichever of the two
            // has fewer registers' worth is loaded up front and the other one at a time, so
            // that with the 12 accumulators everything fits in the 16 registers: 6 x 1 holds
            // its 2 weight vectors (15 registers), 3 x 2 and 2 x 3 hold their inputs (16 and
            // 15). Holding both spilled (3 x 2 and 2 x 3 then cost twice as much per
            // multiply-add as 6 x 1).
            if 2 * NP < MR {
                let mut wv = [[_mm256_setzero_ps(); 2]; NP];
                for (h, w_h) in wv.iter_mut().enumerate() {
                    let w = w0.add(h * stride + kk * PANEL);
                    w_h[0] = _mm256_loadu_ps(w);
                    w_h[1] = _mm256_loadu_ps(w.add(8));
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let xv = _mm256_broadcast_ss(&*x.add(r * t.x_ld + kk));
                    for (acc_rh, w_h) in acc_r.iter_mut().zip(&wv) {
                        acc_rh[0] = _mm256_fmadd_ps(xv, w_h[0], acc_rh[0]);
                        acc_rh[1] = _mm256_fmadd_ps(xv, w_h[1], acc_rh[1]);
                    }
                }
            } else {
                let mut xv = [_mm256_setzero_ps(); MR];
                for (r, x_r) in xv.iter_mut().enumerate() {
                    *x_r = _mm256_broadcast_ss(&*x.add(r * t.x_ld + kk));
                }
                for h in 0..NP {
                    for half in 0..2 {
                        let w = _mm256_loadu_ps(w0.add(h * stride + kk * PANEL + 8 * half));
                        for (acc_r, x_r) in acc.iter_mut().zip(&xv) {
                            acc_r[h][half] = _mm256_fmadd_ps(*x_r, w, acc_r[h][half]);
                        }
                    }
                }
            }
        }
        let zero = _mm256_setzero_ps();
        let six = _mm256_set1_ps(6.0);
        for h in 0..NP {
            let c = (panel + h) * PANEL;
            let live = layer.cols().saturating_sub(c).min(PANEL);
            let bias = [
                _mm256_loadu_ps(layer.bias_ptr().add(c)),
                _mm256_loadu_ps(layer.bias_ptr().add(c + 8)),
            ];
            for (r, acc_r) in acc.iter().enumerate() {
                let mut v = [zero; 2];
                for half in 0..2 {
                    v[half] = _mm256_add_ps(acc_r[h][half], bias[half]);
                    match layer.activation() {
                        Activation::None => {}
                        Activation::Relu => v[half] = _mm256_max_ps(zero, v[half]),
                        Activation::Relu6 => {
                            v[half] = _mm256_min_ps(six, _mm256_max_ps(zero, v[half]))
                        }
                    }
                }
                let out = t.out.add((t.rows.start + r) * t.out_ld + c);
                if live == PANEL {
                    _mm256_storeu_ps(out, v[0]);
                    _mm256_storeu_ps(out.add(8), v[1]);
                } else {
                    let mut row = [0f32; PANEL];
                    _mm256_storeu_ps(row.as_mut_ptr(), v[0]);
                    _mm256_storeu_ps(row.as_mut_ptr().add(8), v[1]);
                    std::ptr::copy_nonoverlapping(row.as_ptr(), out, live);
                }
            }
        }
    }
}
