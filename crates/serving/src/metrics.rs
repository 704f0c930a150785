//! Prometheus text-format metrics, kept in atomics so recording costs no lock on the hot path.
//! Served at `/monitoring/prometheus/metrics` (TF Serving's path for its Prometheus export).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// A cumulative histogram with fixed upper bounds.
struct Histogram {
    bounds: &'static [f64],
    /// One count per bound plus the `+Inf` bucket (not cumulative; summed when rendered).
    counts: Vec<AtomicU64>,
    /// Sum of observations, in millionths, so it fits an integer atomic.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// The server's counters.
pub struct Metrics {
    /// Responses by HTTP status code (index = code - 100).
    responses: Vec<AtomicU64>,
    latency: Histogram,
    batch_size: Histogram,
    predictions: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            responses: (100..600).map(|_| AtomicU64::new(0)).collect(),
            latency: Histogram::new(&LATENCY_BUCKETS_SECONDS),
            batch_size: Histogram::new(&BATCH_BUCKETS),
            predictions: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, status: u16, seconds: f64) {
        if let Some(counter) = self.responses.get(usize::from(status).wrapping_sub(100)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(seconds);
    }

    /// One forward pass of `rows` instances.
    pub fn observe_batch(&self, rows: usize) {
        self.batch_size.observe(rows as f64);
        self.predictions.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// The text exposition; `versions` are the (model, version, state) rows of what is loaded.
    pub fn render(&self, versions: &[(String, String, &'static str)]) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP predictor_requests_total HTTP responses by status code.\n# TYPE predictor_requests_total counter\n",
        );
        for (i, counter) in self.responses.iter().enumerate() {
            let count = counter.load(Ordering::Relaxed);
            if count > 0 {
                let _ = writeln!(
                    out,
                    "predictor_requests_total{{code=\"{}\"}} {count}",
                    i + 100
                );
            }
        }
        self.latency.render(
            &mut out,
            "predictor_request_latency_seconds",
            "Time from request to response.",
        );
        self.batch_size.render(
            &mut out,
            "predictor_batch_size",
            "Instances per forward pass.",
        );
        let _ = writeln!(
            out,
            "# HELP predictor_predictions_total Instances predicted.\n# TYPE predictor_predictions_total counter\npredictor_predictions_total {}",
            self.predictions.load(Ordering::Relaxed)
        );
        let loaded = versions
            .iter()
            .filter(|(_, _, state)| *state == "AVAILABLE")
            .count();
        let _ = writeln!(
            out,
            "# HELP predictor_loaded_versions Model versions loaded and serving.\n# TYPE predictor_loaded_versions gauge\npredictor_loaded_versions {loaded}"
        );
        out.push_str("# HELP predictor_version_state Model versions by state (1 = in this state).\n# TYPE predictor_version_state gauge\n");
        for (model, version, state) in versions {
            let _ = writeln!(
                out,
                "predictor_version_state{{model=\"{}\",version=\"{}\",state=\"{state}\"}} 1",
                escape_label(model),
                escape_label(version)
            );
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_histograms_and_versions() {
        let m = Metrics::default();
        m.observe_request(200, 0.002);
        m.observe_request(200, 0.0001);
        m.observe_request(404, 0.0001);
        m.observe_batch(3);
        let text = m.render(&[("mnist".into(), "1".into(), "AVAILABLE")]);
        assert!(
            text.contains("predictor_requests_total{code=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("predictor_requests_total{code=\"404\"} 1"));
        assert!(text.contains("predictor_request_latency_seconds_bucket{le=\"0.0005\"} 2"));
        assert!(text.contains("predictor_request_latency_seconds_bucket{le=\"0.0025\"} 3"));
        assert!(text.contains("predictor_request_latency_seconds_count 3"));
        assert!(text.contains("predictor_batch_size_bucket{le=\"2\"} 0"));
        assert!(text.contains("predictor_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("predictor_loaded_versions 1"));
        assert!(text.contains(
            "predictor_version_state{model=\"mnist\",version=\"1\",state=\"AVAILABLE\"} 1"
        ));
    }
}
