//! NHWC convolutions and pooling, as TensorFlow defines them (`Conv2D`,
//! `DepthwiseConv2dNative`, `Conv2DBackpropInput`, `MaxPool`, `AvgPool`).
//!
//! A convolution is im2col + the inference GEMM: every output pixel's receptive field is
//! copied into one row of `kh * kw * c` values (zeros where it falls in the padding) and the
//! filter, packed once as a [`DenseLayer`] of `kh * kw * c` inputs and `c_out` outputs, runs
//! over those rows with bias and activation fused. A 1x1 convolution with stride 1 needs no
//! copy at all. The transposed convolution is the same GEMM the other way round followed by a
//! scatter-add (col2im). Depthwise convolution and pooling are direct loops: they do a few
//! operations per loaded value, and a GEMM would not help them.

use crate::CpuKernelsError;
use crate::infer::DenseLayer;

/// Padding as TensorFlow names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Padding {
    Valid,
    Same,
    /// `[top, bottom, left, right]`.
    Explicit([usize; 4]),
}

/// Window geometry along height and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
}

/// A window placed on an input: sizes and padding resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub window: Window,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

fn geometry(message: String) -> CpuKernelsError {
    CpuKernelsError::Geometry(message)
}

/// Output size and leading padding along one axis (TensorFlow's `GetWindowedOutputSize`).
fn axis(
    input: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    padding: (&Padding, usize, usize),
    name: &str,
) -> Result<(usize, usize), CpuKernelsError> {
    if k == 0 || stride == 0 || dilation == 0 {
        return Err(geometry(format!(
            "{name}: window {k}, stride {stride} and dilation {dilation} must all be at least 1"
        )));
    }
    let effective = (k - 1) * dilation + 1;
    match padding.0 {
        Padding::Valid => {
            if input < effective {
                return Err(geometry(format!(
                    "{name}: the window ({effective} with dilation) is larger than the input ({input}) with VALID padding"
                )));
            }
            Ok(((input - effective) / stride + 1, 0))
        }
        Padding::Same => {
            let out = input.div_ceil(stride);
            let needed = ((out.max(1) - 1) * stride + effective).saturating_sub(input);
            Ok((out, needed / 2))
        }
        Padding::Explicit(_) => {
            let (before, after) = (padding.1, padding.2);
            let padded = input + before + after;
            if padded < effective {
                return Err(geometry(format!(
                    "{name}: the window ({effective} with dilation) is larger than the padded input ({padded})"
                )));
            }
            Ok(((padded - effective) / stride + 1, before))
        }
    }
}

impl Placement {
    pub fn new(
        window: Window,
        in_h: usize,
        in_w: usize,
        padding: &Padding,
    ) -> Result<Placement, CpuKernelsError> {
        let [top, bottom, left, right] = match padding {
            Padding::Explicit(p) => *p,
            _ => [0; 4],
        };
        let (out_h, pad_top) = axis(
            in_h,
            window.kh,
            window.stride_h,
            window.dilation_h,
            (padding, top, bottom),
            "height",
        )?;
        let (out_w, pad_left) = axis(
            in_w,
            window.kw,
            window.stride_w,
            window.dilation_w,
            (padding, left, right),
            "width",
        )?;
        Ok(Placement {
            window,
            in_h,
            in_w,
            out_h,
            out_w,
            pad_top,
            pad_left,
        })
    }

    /// Input row of window row `ky` for output row `oy`, if inside the input.
    #[inline]
    fn in_y(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.window.stride_h + ky * self.window.dilation_h)
            .checked_sub(self.pad_top)
            .filter(|&y| y < self.in_h)
    }

    #[inline]
    fn in_x(&self, ox: usize, kx: usize) -> Option<usize> {
        (ox * self.window.stride_w + kx * self.window.dilation_w)
            .checked_sub(self.pad_left)
            .filter(|&x| x < self.in_w)
    }

    /// Calls `f(input_pixel, tap)` for every window position of output pixel `pixel` (counted
    /// over `[batch, out_h, out_w]`) that falls inside the input: `input_pixel` counts over
    /// `[batch, in_h, in_w]`, `tap` over `[kh, kw]`. Positions in the padding are skipped.
    #[inline]
    fn for_each_tap(&self, pixel: usize, mut f: impl FnMut(usize, usize)) {
        let b = pixel / (self.out_h * self.out_w);
        let oy = pixel / self.out_w % self.out_h;
        let ox = pixel % self.out_w;
        for ky in 0..self.window.kh {
            let Some(iy) = self.in_y(oy, ky) else {
                continue;
            };
            for kx in 0..self.window.kw {
                let Some(ix) = self.in_x(ox, kx) else {
                    continue;
                };
                f(
                    (b * self.in_h + iy) * self.in_w + ix,
                    ky * self.window.kw + kx,
                );
            }
        }
    }

    fn is_identity(&self) -> bool {
        let w = &self.window;
        w.kh == 1
            && w.kw == 1
            && w.stride_h == 1
            && w.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }
}

fn check_input(
    input: &[f32],
    batch: usize,
    p: &Placement,
    c: usize,
) -> Result<(), CpuKernelsError> {
    let expected = batch * p.in_h * p.in_w * c;
    if input.len() != expected {
        return Err(geometry(format!(
            "input holds {} values, expected {batch} x {} x {} x {c} = {expected}",
            input.len(),
            p.in_h,
            p.in_w
        )));
    }
    Ok(())
}

/// `Conv2D` (NHWC): `input` is `[batch, in_h, in_w, c]`, `filter` the packed
/// `[kh * kw * c, c_out]` layer (bias and activation fused); returns `[batch, out_h, out_w, c_out]`.
pub fn conv2d(
    input: &[f32],
    batch: usize,
    c: usize,
    p: &Placement,
    filter: &DenseLayer,
) -> Result<Vec<f32>, CpuKernelsError> {
    check_input(input, batch, p, c)?;
    let w = &p.window;
    let k = w.kh * w.kw * c;
    if filter.rows_in() != k {
        return Err(geometry(format!(
            "the filter takes {} values per output pixel, the window holds {} x {} x {c} = {k}",
            filter.rows_in(),
            w.kh,
            w.kw
        )));
    }
    if p.is_identity() {
        return filter.forward(input);
    }
    let rows = batch * p.out_h * p.out_w;
    let mut cols = vec![0f32; rows * k];
    for (row, dst) in cols.chunks_exact_mut(k.max(1)).enumerate() {
        p.for_each_tap(row, |pixel, tap| {
            dst[tap * c..(tap + 1) * c].copy_from_slice(&input[pixel * c..(pixel + 1) * c]);
        });
    }
    filter.forward(&cols)
}

/// `Conv2DBackpropInput` (transposed convolution, NHWC): `grad` is `[batch, out_h, out_w,
/// c_out]` where `p` describes the forward convolution from `[batch, in_h, in_w, c_in]`;
/// `filter_t` is the filter packed the other way round (`c_out` inputs, `kh * kw * c_in`
/// outputs, no bias or activation). Returns `[batch, in_h, in_w, c_in]`.
pub fn conv2d_transpose(
    grad: &[f32],
    batch: usize,
    c_in: usize,
    p: &Placement,
    filter_t: &DenseLayer,
) -> Result<Vec<f32>, CpuKernelsError> {
    let w = &p.window;
    let c_out = filter_t.rows_in();
    let expected = batch * p.out_h * p.out_w * c_out;
    if grad.len() != expected {
        return Err(geometry(format!(
            "out_backprop holds {} values, expected {batch} x {} x {} x {c_out} = {expected}",
            grad.len(),
            p.out_h,
            p.out_w
        )));
    }
    let k = w.kh * w.kw * c_in;
    if filter_t.cols() != k {
        return Err(geometry(format!(
            "the filter gives {} values per pixel, the window holds {} x {} x {c_in} = {k}",
            filter_t.cols(),
            w.kh,
            w.kw
        )));
    }
    let cols = filter_t.forward(grad)?;
    let mut out = vec![0f32; batch * p.in_h * p.in_w * c_in];
    for (row, src) in cols.chunks_exact(k.max(1)).enumerate() {
        p.for_each_tap(row, |pixel, tap| {
            let dst = &mut out[pixel * c_in..(pixel + 1) * c_in];
            for (d, s) in dst.iter_mut().zip(&src[tap * c_in..(tap + 1) * c_in]) {
                *d += s;
            }
        });
    }
    Ok(out)
}

/// `DepthwiseConv2dNative` (NHWC): `filter` is `[kh, kw, c, multiplier]`; returns
/// `[batch, out_h, out_w, c * multiplier]` (output channel `ch * multiplier + m`).
pub fn depthwise_conv2d(
    input: &[f32],
    batch: usize,
    c: usize,
    p: &Placement,
    filter: &[f32],
    multiplier: usize,
) -> Result<Vec<f32>, CpuKernelsError> {
    check_input(input, batch, p, c)?;
    let w = &p.window;
    let expected = w.kh * w.kw * c * multiplier;
    if filter.len() != expected {
        return Err(geometry(format!(
            "depthwise filter holds {} values, expected {} x {} x {c} x {multiplier} = {expected}",
            filter.len(),
            w.kh,
            w.kw
        )));
    }
    let oc = c * multiplier;
    let mut out = vec![0f32; batch * p.out_h * p.out_w * oc];
    for (out_pixel, dst) in out.chunks_exact_mut(oc.max(1)).enumerate() {
        p.for_each_tap(out_pixel, |pixel, tap| {
            let src = &input[pixel * c..(pixel + 1) * c];
            let f = &filter[tap * oc..(tap + 1) * oc];
            for (o, (d, fv)) in dst.iter_mut().zip(f).enumerate() {
                *d = src[o / multiplier].mul_add(*fv, *d);
            }
        });
    }
    Ok(out)
}

/// Pooling kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Max,
    /// Average over the window's positions inside the input (TensorFlow leaves padding out
    /// of the count).
    Avg,
}

/// `MaxPool` / `AvgPool` (NHWC): returns `[batch, out_h, out_w, c]`.
pub fn pool2d(
    input: &[f32],
    batch: usize,
    c: usize,
    p: &Placement,
    kind: Pool,
) -> Result<Vec<f32>, CpuKernelsError> {
    check_input(input, batch, p, c)?;
    let mut out = vec![0f32; batch * p.out_h * p.out_w * c];
    let mut acc = vec![0f32; c];
    for (out_pixel, dst) in out.chunks_exact_mut(c.max(1)).enumerate() {
        acc.fill(match kind {
            Pool::Max => f32::NEG_INFINITY,
            Pool::Avg => 0.0,
        });
        let mut count = 0usize;
        p.for_each_tap(out_pixel, |pixel, _| {
            count += 1;
            let src = &input[pixel * c..(pixel + 1) * c];
            match kind {
                Pool::Max => {
                    for (a, &v) in acc.iter_mut().zip(src) {
                        // NaN wins, as in TensorFlow's max pooling.
                        if v > *a || v.is_nan() {
                            *a = v;
                        }
                    }
                }
                Pool::Avg => {
                    for (a, &v) in acc.iter_mut().zip(src) {
                        *a += v;
                    }
                }
            }
        });
        match kind {
            Pool::Max => dst.copy_from_slice(&acc),
            Pool::Avg => {
                let scale = 1.0 / count.max(1) as f32;
                for (d, a) in dst.iter_mut().zip(&acc) {
                    *d = a * scale;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::Activation;

    fn window(k: usize, stride: usize, dilation: usize) -> Window {
        Window {
            kh: k,
            kw: k,
            stride_h: stride,
            stride_w: stride,
            dilation_h: dilation,
            dilation_w: dilation,
        }
    }

    #[test]
    fn output_sizes_follow_tensorflow() {
        let p = Placement::new(window(3, 2, 1), 28, 28, &Padding::Same).unwrap();
        assert_eq!((p.out_h, p.pad_top), (14, 0));
        let p = Placement::new(window(5, 1, 1), 28, 28, &Padding::Same).unwrap();
        assert_eq!((p.out_h, p.pad_top), (28, 2));
        let p = Placement::new(window(3, 1, 2), 16, 16, &Padding::Valid).unwrap();
        assert_eq!(p.out_h, 12);
        let p = Placement::new(window(3, 2, 1), 14, 14, &Padding::Explicit([1, 2, 2, 1])).unwrap();
        assert_eq!((p.out_h, p.out_w, p.pad_top, p.pad_left), (8, 8, 1, 2));
        let err = Placement::new(window(5, 1, 1), 3, 3, &Padding::Valid).unwrap_err();
        assert!(err.to_string().contains("larger than the input"), "{err}");
        assert!(Placement::new(window(3, 0, 1), 8, 8, &Padding::Same).is_err());
    }

    /// Direct convolution, for comparison.
    fn naive_conv(
        x: &[f32],
        (b, h, w, c): (usize, usize, usize, usize),
        f: &[f32],
        co: usize,
        p: &Placement,
    ) -> Vec<f32> {
        let win = p.window;
        let mut out = vec![0f32; b * p.out_h * p.out_w * co];
        for n in 0..b {
            for oy in 0..p.out_h {
                for ox in 0..p.out_w {
                    for o in 0..co {
                        let mut s = 0f64;
                        for ky in 0..win.kh {
                            for kx in 0..win.kw {
                                let iy = (oy * win.stride_h + ky * win.dilation_h) as isize
                                    - p.pad_top as isize;
                                let ix = (ox * win.stride_w + kx * win.dilation_w) as isize
                                    - p.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                for ci in 0..c {
                                    s += x[((n * h + iy as usize) * w + ix as usize) * c + ci]
                                        as f64
                                        * f[((ky * win.kw + kx) * c + ci) * co + o] as f64;
                                }
                            }
                        }
                        out[((n * p.out_h + oy) * p.out_w + ox) * co + o] = s as f32;
                    }
                }
            }
        }
        out
    }

    fn ramp(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * scale)
            .collect()
    }

    #[test]
    fn conv2d_matches_a_direct_convolution() {
        let (b, h, w, c, co) = (2, 9, 7, 3, 5);
        let x = ramp(b * h * w * c, 0.01);
        for (win, pad) in [
            (window(3, 1, 1), Padding::Same),
            (window(3, 2, 1), Padding::Valid),
            (window(2, 1, 2), Padding::Explicit([1, 0, 2, 1])),
            (window(1, 1, 1), Padding::Valid),
        ] {
            let f = ramp(win.kh * win.kw * c * co, 0.02);
            let p = Placement::new(win, h, w, &pad).unwrap();
            let layer = DenseLayer::new(&f, win.kh * win.kw * c, co, false, None, Activation::None)
                .unwrap();
            let got = conv2d(&x, b, c, &p, &layer).unwrap();
            let want = naive_conv(&x, (b, h, w, c), &f, co, &p);
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "{pad:?}: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn transposed_conv_is_the_adjoint_of_conv() {
        // <conv(x), y> == <x, conv_transpose(y)> for any x, y.
        let (b, h, w, c, co) = (1, 6, 5, 2, 3);
        let win = window(3, 2, 1);
        let p = Placement::new(win, h, w, &Padding::Same).unwrap();
        let f = ramp(win.kh * win.kw * c * co, 0.03);
        let x = ramp(b * h * w * c, 0.01);
        let y = ramp(b * p.out_h * p.out_w * co, 0.02);
        let fwd = DenseLayer::new(&f, 9 * c, co, false, None, Activation::None).unwrap();
        let back = DenseLayer::new(&f, co, 9 * c, true, None, Activation::None).unwrap();
        let cx = conv2d(&x, b, c, &p, &fwd).unwrap();
        let ty = conv2d_transpose(&y, b, c, &p, &back).unwrap();
        let lhs: f64 = cx.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let rhs: f64 = x.iter().zip(&ty).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn depthwise_is_a_grouped_convolution() {
        let (h, w, c, m) = (5, 5, 2, 2);
        let win = window(3, 1, 1);
        let p = Placement::new(win, h, w, &Padding::Same).unwrap();
        let x = ramp(h * w * c, 0.1);
        let f = ramp(9 * c * m, 0.05);
        let got = depthwise_conv2d(&x, 1, c, &p, &f, m).unwrap();
        // The same as a full convolution whose filter is zero across channels.
        let mut full = vec![0f32; 9 * c * c * m];
        for tap in 0..9 {
            for ch in 0..c {
                for mm in 0..m {
                    full[(tap * c + ch) * c * m + ch * m + mm] = f[(tap * c + ch) * m + mm];
                }
            }
        }
        let want = naive_conv(&x, (1, h, w, c), &full, c * m, &p);
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()));
        }
    }

    #[test]
    fn average_pooling_leaves_padding_out_and_max_pooling_keeps_nan() {
        let p = Placement::new(window(3, 2, 1), 4, 4, &Padding::Same).unwrap();
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let avg = pool2d(&x, 1, 1, &p, Pool::Avg).unwrap();
        // Top-left window covers rows 0..2, cols 0..2 (padding is after): 0,1,2,4,5,6,8,9,10.
        assert_eq!(avg[0], 5.0);
        // Bottom-right covers rows 2..4, cols 2..4: 10, 11, 14, 15.
        assert_eq!(avg[3], 12.5);
        let mut x = x;
        x[5] = f32::NAN;
        let max = pool2d(&x, 1, 1, &p, Pool::Max).unwrap();
        assert!(max[0].is_nan());
        assert_eq!(max[3], 15.0);
    }

    #[test]
    fn wrong_sizes_are_reported_not_panicked_on() {
        let p = Placement::new(window(3, 1, 1), 4, 4, &Padding::Same).unwrap();
        let err = pool2d(&[0.0; 15], 1, 1, &p, Pool::Max).unwrap_err();
        assert!(
            err.to_string().contains("expected 1 x 4 x 4 x 1 = 16"),
            "{err}"
        );
        let err = depthwise_conv2d(&[0.0; 16], 1, 1, &p, &[0.0; 8], 1).unwrap_err();
        assert!(err.to_string().contains("depthwise filter"), "{err}");
    }
}
