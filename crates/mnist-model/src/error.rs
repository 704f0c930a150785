//! The crate's single error type.

/// Everything that can go wrong when building, training or running the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A configuration value is out of range (names the field and says why).
    #[error("invalid model configuration: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },

    /// The features slice does not hold `rows * input_dim` values.
    #[error(
        "features hold {found} values, expected {rows} rows x {input_dim} features = {expected}"
    )]
    FeatureShape {
        rows: usize,
        input_dim: usize,
        expected: usize,
        found: usize,
    },

    /// A batch with no rows was passed where at least one is needed.
    #[error("empty batch: at least one example is required")]
    EmptyBatch,

    /// The label slice length does not match the number of rows.
    #[error("{found} labels for {rows} rows")]
    LabelCount { rows: usize, found: usize },

    /// A label is not a valid class index.
    #[error("label {label} at row {row} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        row: usize,
        label: usize,
        num_classes: usize,
    },

    /// Imported weights do not fit the configuration.
    #[error("layer '{layer}': {what}: expected {expected}, found {found}")]
    WeightShape {
        layer: String,
        what: &'static str,
        expected: usize,
        found: usize,
    },

    /// A training hyper-parameter is unusable (not finite, negative, ...).
    #[error("invalid optimizer setting: {field} = {value}: {reason}")]
    InvalidOptimizer {
        field: &'static str,
        value: f32,
        reason: &'static str,
    },

    /// The CPU engine's worker threads could not be started.
    #[error("could not start the CPU engine's {threads} worker threads: {source}")]
    ThreadPool {
        threads: usize,
        #[source]
        source: std::io::Error,
    },

    /// An error reported by candle (device allocation, kernel launch, copy back to the host).
    #[error("candle {context}: {source}")]
    Candle {
        context: &'static str,
        #[source]
        source: candle_core::Error,
    },
}

impl ModelError {
    pub(crate) fn candle(context: &'static str) -> impl FnOnce(candle_core::Error) -> Self {
        move |source| ModelError::Candle { context, source }
    }
}
