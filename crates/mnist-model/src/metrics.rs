//! Loss and accuracy bookkeeping, aggregated the way Keras does (sample-weighted means).

/// Sums over one batch: total cross-entropy, correct predictions and examples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchMetrics {
    /// Sum of the per-example cross-entropy losses (not the mean: batches of different sizes
    /// then aggregate exactly).
    pub loss_sum: f64,
    pub correct: usize,
    pub examples: usize,
}

impl BatchMetrics {
    /// Mean loss over the batch (what the optimizer minimised for this step).
    pub fn mean_loss(&self) -> f64 {
        if self.examples == 0 {
            0.0
        } else {
            self.loss_sum / self.examples as f64
        }
    }

    /// Fraction of examples whose arg-max class equals the label.
    pub fn accuracy(&self) -> f64 {
        if self.examples == 0 {
            0.0
        } else {
            self.correct as f64 / self.examples as f64
        }
    }
}

/// Running epoch metrics: Keras's `loss` and `accuracy` after k batches are
/// `sum_b loss_sum_b / sum_b examples_b` and `sum_b correct_b / sum_b examples_b`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunningMetrics {
    total: BatchMetrics,
}

impl RunningMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, batch: &BatchMetrics) {
        self.total.loss_sum += batch.loss_sum;
        self.total.correct += batch.correct;
        self.total.examples += batch.examples;
    }

    pub fn loss(&self) -> f64 {
        self.total.mean_loss()
    }

    pub fn accuracy(&self) -> f64 {
        self.total.accuracy()
    }

    pub fn examples(&self) -> usize {
        self.total.examples
    }

    pub fn totals(&self) -> BatchMetrics {
        self.total
    }
}
