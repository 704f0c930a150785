//! Softmax, categorical cross-entropy on the logits path, and arg-max: one row at a time.
//!
//! Keras computes `categorical_crossentropy` of a softmax layer from its logits (no clipping):
//! `L = logsumexp(z) - z[label]`, evaluated stably around `max(z)`. With mean reduction over a
//! batch of `B` rows the logits gradient is `(softmax(z) - onehot) / B`.

/// Result for one example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowOutcome {
    pub loss: f32,
    /// Arg-max of the probabilities, first index on ties (TF's CPU ArgMax).
    pub class: usize,
}

/// Writes `softmax(logits)` into `probs` and returns the arg-max class.
pub(crate) fn softmax_row(logits: &[f32], probs: &mut [f32]) -> usize {
    let probs = &mut probs[..logits.len()];
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for (p, &z) in probs.iter_mut().zip(logits) {
        *p = (z - max).exp();
        sum += *p;
    }
    let inv = 1.0 / sum;
    for p in probs.iter_mut() {
        *p *= inv;
    }
    argmax(probs).unwrap_or(0)
}

/// First index of the largest value; `None` for an empty slice. NaN never wins.
pub(crate) fn argmax(values: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        match best {
            _ if v.is_nan() => {}
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

/// Cross-entropy of one row against `label`; when `grad` is given, also writes
/// `(softmax - onehot) * grad_scale` into it (its length may exceed the class count: the extra
/// layout padding is zeroed). `probs` is scratch of at least `logits.len()` values.
pub(crate) fn cross_entropy_row(
    logits: &[f32],
    label: usize,
    probs: &mut [f32],
    grad: Option<(&mut [f32], f32)>,
) -> RowOutcome {
    let classes = logits.len();
    let probs = &mut probs[..classes];
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for (p, &z) in probs.iter_mut().zip(logits) {
        *p = (z - max).exp();
        sum += *p;
    }
    let loss = max + sum.ln() - logits[label];
    let inv = 1.0 / sum;
    for p in probs.iter_mut() {
        *p *= inv;
    }
    if let Some((grad, scale)) = grad {
        let (live, padding) = grad.split_at_mut(classes);
        for (c, (g, &p)) in live.iter_mut().zip(probs.iter()).enumerate() {
            let target = if c == label { 1.0 } else { 0.0 };
            *g = (p - target) * scale;
        }
        padding.fill(0.0);
    }
    RowOutcome {
        loss,
        class: argmax(probs).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_keras_reference_values() {
        // keras_semantics.md 4.1 (verified against tf_keras): logits [30, 0, -30], class 2 -> 60;
        // logits [1, 2, 3], class 1 -> 1.4076059.
        let mut probs = [0f32; 3];
        let r = cross_entropy_row(&[30.0, 0.0, -30.0], 2, &mut probs, None);
        assert!((r.loss - 60.0).abs() < 1e-4, "{}", r.loss);
        assert_eq!(r.class, 0);
        let r = cross_entropy_row(&[1.0, 2.0, 3.0], 1, &mut probs, None);
        assert!((r.loss - 1.407_605_9).abs() < 1e-6, "{}", r.loss);
        assert_eq!(r.class, 2);
    }

    #[test]
    fn gradient_is_softmax_minus_onehot_scaled_and_padding_zeroed() {
        let logits = [0.5f32, -1.0, 2.0];
        let mut probs = [0f32; 3];
        let mut grad = [7f32; 5];
        cross_entropy_row(&logits, 0, &mut probs, Some((&mut grad, 0.25)));
        let e: Vec<f32> = logits.iter().map(|z| z.exp()).collect();
        let s: f32 = e.iter().sum();
        for c in 0..3 {
            let want = (e[c] / s - if c == 0 { 1.0 } else { 0.0 }) * 0.25;
            assert!((grad[c] - want).abs() < 1e-7);
        }
        assert_eq!(&grad[3..], &[0.0, 0.0]);
        // Finite differences agree with the analytic gradient.
        for c in 0..3 {
            let h = 1e-2f32;
            let mut plus = logits;
            plus[c] += h;
            let mut minus = logits;
            minus[c] -= h;
            let lp = cross_entropy_row(&plus, 0, &mut probs, None).loss;
            let lm = cross_entropy_row(&minus, 0, &mut probs, None).loss;
            let numeric = (lp - lm) / (2.0 * h) * 0.25;
            assert!((numeric - grad[c]).abs() < 1e-3, "{numeric} vs {}", grad[c]);
        }
    }

    #[test]
    fn argmax_takes_first_of_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), Some(1));
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.2]), Some(1));
        assert_eq!(argmax(&[]), None);
        let mut p = [0f32; 3];
        assert_eq!(softmax_row(&[0.0, 0.0, 1.0], &mut p), 2);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
