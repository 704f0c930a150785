//! The crate's error type.

/// What can go wrong: a shape that does not fit, or threads that would not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CpuKernelsError {
    /// A team's worker threads could not be started.
    #[error("could not start {threads} worker threads: {source}")]
    ThreadPool {
        threads: usize,
        #[source]
        source: std::io::Error,
    },

    #[error("weights hold {found} values, expected {k} x {n} = {expected}")]
    Weights {
        k: usize,
        n: usize,
        expected: usize,
        found: usize,
    },
    #[error("bias holds {found} values, expected {n}")]
    Bias { n: usize, found: usize },
    #[error("input holds {found} values, which is not a whole number of rows of {k}")]
    Input { k: usize, found: usize },
    #[error("a stack of Dense layers needs at least one layer")]
    EmptyStack,
    #[error(
        "layer {layer} of the stack takes {k} inputs, but the layer before it gives {previous_n}"
    )]
    StackWidths {
        layer: usize,
        k: usize,
        previous_n: usize,
    },
    /// A convolution or pooling whose shapes do not fit (says which and why).
    #[error("{0}")]
    Geometry(String),
}
