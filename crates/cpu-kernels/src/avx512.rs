//! AVX-512F versions of the kernels (x86-64 only, selected at run time).
//!
//! A [`PANEL`] of 16 columns is exactly one `zmm` register, so the training kernels keep a
//! `rows x 16` block of outputs in `rows` accumulators and run the same fused multiply-adds in
//! the same order as the AVX2 kernels (which use two `ymm` halves): bit-identical results,
//! fewer instructions. The inference kernel ([`dense_infer`]) works on tiles of up to 6 rows
//! by 4 panels (8 panels for 1-2 rows), over the input columns the caller lists, and writes
//! the last partial panel with a masked store.

use std::arch::x86_64::*;
use std::ops::Range;

use crate::infer::{Activation, InferTile};
use crate::kernels::{Forward, PANEL, WeightUpdate, row_tiles};

/// # Safety
/// See [`crate::kernels::dense_forward`]; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
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

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn forward_tile<const MR: usize>(f: &Forward, i: usize, j: usize) {
    // SAFETY (whole body): rows i..i+MR and columns j..j+16 are inside every matrix.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); MR];
        let x = f.x.at(i, 0);
        let mut w = f.w.at(0, j).cast_const();
        for kk in 0..f.k {
            let wv = _mm512_loadu_ps(w);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.add(r * f.x.ld + kk));
                *acc_r = _mm512_fmadd_ps(xv, wv, *acc_r);
            }
            w = w.add(PANEL);
        }
        let bias = _mm512_loadu_ps(f.bias.add(j));
        let zero = _mm512_setzero_ps();
        for (r, &acc_r) in acc.iter().enumerate() {
            let mut v = _mm512_add_ps(acc_r, bias);
            if f.relu {
                // max(0, v) returns v when v is NaN, as the AVX2 kernel does.
                v = _mm512_max_ps(zero, v);
            }
            if let Some(mask) = f.mask {
                v = _mm512_mul_ps(v, _mm512_loadu_ps(mask.at(i + r, j)));
            }
            _mm512_storeu_ps(f.out.at(i + r, j), v);
        }
    }
}

/// # Safety
/// See [`crate::kernels::dense_weight_update`]; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dense_weight_update(u: &WeightUpdate, krows: Range<usize>) {
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

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn update_tile<const KR: usize>(u: &WeightUpdate, k0: usize, j: usize) {
    // SAFETY (whole body): see `dense_weight_update`.
    unsafe {
        let mut g = [_mm512_setzero_ps(); KR];
        for i in 0..u.m {
            let d = _mm512_loadu_ps(u.dy.at(i, j));
            let x = u.x.at(i, k0);
            for (r, g_r) in g.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.add(r));
                *g_r = _mm512_fmadd_ps(xv, d, *g_r);
            }
        }
        let momentum = _mm512_set1_ps(u.momentum);
        let lr = _mm512_set1_ps(u.learning_rate);
        for (r, &grad) in g.iter().enumerate() {
            let a_ptr = u.accum.at(k0 + r, j);
            let w_ptr = u.w.at(k0 + r, j);
            let a = _mm512_fmadd_ps(momentum, _mm512_loadu_ps(a_ptr), grad);
            _mm512_storeu_ps(a_ptr, a);
            _mm512_storeu_ps(w_ptr, _mm512_fnmadd_ps(lr, a, _mm512_loadu_ps(w_ptr)));
        }
    }
}

/// One inference tile: rows `t.rows` (at most 6), panels `t.panels`, over the input columns
/// listed in `t.ks`.
///
/// # Safety
/// See [`crate::infer::InferTile`]; the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dense_infer(t: &InferTile<'_>) {
    // SAFETY: forwarded contract; every arm's row count is `t.rows.len()`.
    unsafe {
        match t.rows.len() {
            6 => infer_rows::<6>(t),
            5 => infer_rows::<5>(t),
            4 => infer_rows::<4>(t),
            3 => infer_rows::<3>(t),
            2 => infer_rows::<2>(t),
            1 => infer_rows::<1>(t),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn infer_rows<const MR: usize>(t: &InferTile<'_>) {
    let mut p = t.panels.start;
    // SAFETY (every call): panels p..p + NP are inside `t.panels`, which exist in the packed
    // weights; rows are inside x and out (caller's contract).
    unsafe {
        if MR <= 2 {
            // One or two rows: few broadcasts per weight load, so as many panels at once as
            // the registers hold, for independent FMA chains.
            while p + 8 <= t.panels.end {
                infer_tile::<MR, 8>(t, p);
                p += 8;
            }
        }
        while p + 4 <= t.panels.end {
            infer_tile::<MR, 4>(t, p);
            p += 4;
        }
        while p + 2 <= t.panels.end {
            infer_tile::<MR, 2>(t, p);
            p += 2;
        }
        if p < t.panels.end {
            infer_tile::<MR, 1>(t, p);
        }
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn infer_tile<const MR: usize, const NP: usize>(t: &InferTile<'_>, panel: usize) {
    // SAFETY (whole body): `t.ks` are valid input columns, rows `t.rows` are inside `x` and
    // `out`, panels `panel..panel + NP` exist in the packed weights.
    unsafe {
        let layer = t.layer;
        let mut acc = [[_mm512_setzero_ps(); NP]; MR];
        let x = t.x.as_ptr().add(t.rows.start * t.x_ld);
        let w0 = layer.panel_ptr(panel);
        let stride = layer.panel_stride();
        for &kk in t.ks {
            let kk = kk as usize;
            let mut wv = [_mm512_setzero_ps(); NP];
            for (h, w_h) in wv.iter_mut().enumerate() {
                *w_h = _mm512_loadu_ps(w0.add(h * stride + kk * PANEL));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.add(r * t.x_ld + kk));
                for h in 0..NP {
                    acc_r[h] = _mm512_fmadd_ps(xv, wv[h], acc_r[h]);
                }
            }
        }
        let zero = _mm512_setzero_ps();
        let six = _mm512_set1_ps(6.0);
        let n = layer.cols();
        for h in 0..NP {
            let c = (panel + h) * PANEL;
            let bias = _mm512_loadu_ps(layer.bias_ptr().add(c));
            let live = n.saturating_sub(c).min(PANEL);
            let mask: __mmask16 = if live == PANEL {
                0xFFFF
            } else {
                ((1u32 << live) - 1) as __mmask16
            };
            for (r, acc_r) in acc.iter().enumerate() {
                let mut v = _mm512_add_ps(acc_r[h], bias);
                match layer.activation() {
                    Activation::None => {}
                    Activation::Relu => v = _mm512_max_ps(zero, v),
                    Activation::Relu6 => v = _mm512_min_ps(six, _mm512_max_ps(zero, v)),
                }
                let out = t.out.add((t.rows.start + r) * t.out_ld + c);
                _mm512_mask_storeu_ps(out, mask, v);
            }
        }
    }
}
