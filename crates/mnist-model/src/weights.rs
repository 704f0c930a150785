//! Weights as they leave (and enter) the crate: Keras layout and Keras names.

/// Activation applied after a Dense layer's `x . kernel + bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// No activation on the layer itself; the model applies softmax to the last layer's output.
    Linear,
}

/// One Dense layer's parameters in Keras's layout: `kernel` is `[in_dim, out_dim]` row-major
/// (input-major, exactly what a checkpoint's `dense/kernel` holds) and `bias` is `[out_dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseWeights {
    /// Keras's automatic layer name: `dense`, `dense_1`, `dense_2`, ...
    pub name: String,
    pub in_dim: usize,
    pub out_dim: usize,
    pub kernel: Vec<f32>,
    pub bias: Vec<f32>,
    pub activation: Activation,
}

/// Keras names Dense layers `dense`, `dense_1`, `dense_2`, ... in creation order.
pub fn keras_layer_name(index: usize) -> String {
    if index == 0 {
        "dense".to_string()
    } else {
        format!("dense_{index}")
    }
}
