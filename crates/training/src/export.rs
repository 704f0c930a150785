//! The trained model as a TensorFlow SavedModel: `mnist-model`'s weights mapped onto
//! `savedmodel-format`'s MLP writer, and written to `<job-dir>/model/`.

use bytes::Bytes;
use mnist_model::DenseWeights;
use savedmodel_format::writer::{self, DenseLayer, MlpExport, SAVED_MODEL_MARKER};
use storage::Location;

use crate::TrainingError;

/// The SavedModel's files (relative path, bytes), `saved_model.pb` last, for these weights
/// (Keras layout and names, input layer first: what [`mnist_model::Mlp::weights`] returns).
pub fn saved_model_files(
    weights: Vec<DenseWeights>,
) -> Result<Vec<(String, Bytes)>, TrainingError> {
    let layers = weights
        .into_iter()
        .map(|w| DenseLayer {
            kernel: w.kernel,
            bias: w.bias,
            in_dim: w.in_dim,
            out_dim: w.out_dim,
            activation: match w.activation {
                mnist_model::Activation::Relu => writer::Activation::Relu,
                mnist_model::Activation::Linear => writer::Activation::Linear,
            },
        })
        .collect();
    writer::export_mlp(&MlpExport::new(layers)).map_err(|e| TrainingError::Export(Box::new(e)))
}

/// Writes the SavedModel for `weights` to `model_dir`, `saved_model.pb` last, so a reader never
/// sees a model whose variables are missing.
pub fn write_saved_model(
    model_dir: &Location,
    weights: Vec<DenseWeights>,
) -> Result<(), TrainingError> {
    let files = saved_model_files(weights)?;
    model_dir
        .write_tree_blocking(files, SAVED_MODEL_MARKER)
        .map_err(TrainingError::storage(format!(
            "writing the SavedModel to {model_dir}"
        )))
}
