//! What the server needs from a model: its signatures and a way to run one. The
//! [`Predictor`] trait keeps the HTTP, registry and batching layers independent of the
//! SavedModel runtime, so they can be unit-tested with a small fake model; the server itself
//! always uses [`SavedModelLoader`], i.e. the real runtime.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use savedmodel_runtime::{
    DEFAULT_SIGNATURE, DataType, HostTensor, LoadLimits, LoadedModel, SignatureInfo, TensorData,
};

use crate::status::ApiError;

/// A loaded model that can run its signatures. `run` is CPU-bound: callers run it off the async
/// reactor (the batcher's threads or `spawn_blocking`).
pub trait Predictor: Send + Sync + 'static {
    fn signatures(&self) -> &BTreeMap<String, SignatureInfo>;
    fn run(
        &self,
        signature: &str,
        inputs: &BTreeMap<String, HostTensor>,
    ) -> Result<BTreeMap<String, HostTensor>, ApiError>;
}

impl Predictor for LoadedModel {
    fn signatures(&self) -> &BTreeMap<String, SignatureInfo> {
        LoadedModel::signatures(self)
    }

    fn run(
        &self,
        signature: &str,
        inputs: &BTreeMap<String, HostTensor>,
    ) -> Result<BTreeMap<String, HostTensor>, ApiError> {
        // Request-shaped mistakes are caught while converting the JSON; what the graph still
        // refuses is reported as TF does for a failing op: INVALID_ARGUMENT.
        LoadedModel::run(self, signature, inputs).map_err(|e| ApiError::invalid(e.to_string()))
    }
}

pub type LoadFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn Predictor>, String>> + Send>>;

/// Loads the model stored at a location URL (local path or `gs://`).
pub trait ModelLoader: Send + Sync + 'static {
    fn load(&self, location: storage::Location) -> LoadFuture;
}

/// Loads SavedModels (tag set `serve`) with the real runtime, onto one device, each within
/// the load limits (memory budget, file sizes).
pub struct SavedModelLoader {
    device: candle_core::Device,
    limits: LoadLimits,
}

impl SavedModelLoader {
    /// A loader whose models run on `device` (the CPU, or a CUDA GPU in a `cuda` build).
    pub fn new(device: candle_core::Device) -> SavedModelLoader {
        SavedModelLoader::with_limits(device, LoadLimits::default())
    }

    /// A loader that refuses models over `limits`.
    pub fn with_limits(device: candle_core::Device, limits: LoadLimits) -> SavedModelLoader {
        SavedModelLoader { device, limits }
    }
}

impl ModelLoader for SavedModelLoader {
    fn load(&self, location: storage::Location) -> LoadFuture {
        let device = self.device.clone();
        let limits = self.limits;
        Box::pin(async move {
            // Parsing the graph and restoring variables is CPU work: keep it off the reactor.
            let model = tokio::task::spawn_blocking(move || {
                LoadedModel::load_blocking_with(&location, &["serve"], &device, &limits)
                    .map_err(|e| storage::error_chain_text(&e))
            })
            .await
            .map_err(|e| format!("the loading task failed: {e}"))??;
            Ok(Arc::new(model) as Arc<dyn Predictor>)
        })
    }
}

/// The signature a request without `signature_name` uses, as TF Serving picks it.
pub fn default_signature(predictor: &dyn Predictor) -> Option<&SignatureInfo> {
    predictor.signatures().get(DEFAULT_SIGNATURE)
}

/// What the check prediction learnt about a freshly loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    /// Rows of several requests may be concatenated into one run of the default signature:
    /// every input is `[-1, fixed…]` and every output has the batch as its first dimension.
    pub batchable: bool,
}

/// Runs the default signature once on zeros (two rows where the batch dimension is free), so a
/// version is only served once it has actually produced a prediction.
pub fn check_prediction(predictor: &dyn Predictor) -> Result<CheckReport, String> {
    let signature = default_signature(predictor).ok_or_else(|| {
        let keys: Vec<&str> = predictor.signatures().keys().map(String::as_str).collect();
        format!(
            "the model has no \"{DEFAULT_SIGNATURE}\" signature (it has: {}); TF Serving and \
             online prediction need one",
            if keys.is_empty() {
                "none".to_string()
            } else {
                keys.join(", ")
            }
        )
    })?;
    const ROWS: usize = 2;
    let mut batchable = !signature.inputs.is_empty();
    let mut inputs = BTreeMap::new();
    for (name, spec) in &signature.inputs {
        let dims = spec.shape.clone().unwrap_or_else(|| vec![-1]);
        batchable &= dims.first() == Some(&-1) && dims[1..].iter().all(|&d| d >= 0);
        let shape: Vec<usize> = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if d >= 0 {
                    d as usize
                } else if i == 0 {
                    ROWS
                } else {
                    1
                }
            })
            .collect();
        let count: usize = shape.iter().product();
        if count > 1 << 24 {
            return Err(format!(
                "input \"{name}\" has {count} elements for two rows; too large to check"
            ));
        }
        let data = zeros(spec.dtype, count).ok_or_else(|| {
            format!(
                "input \"{name}\" has dtype {}, which cannot be served",
                spec.dtype.tf_name()
            )
        })?;
        let tensor = HostTensor::new(shape, data).map_err(|e| e.to_string())?;
        inputs.insert(name.clone(), tensor);
    }
    let outputs = predictor
        .run(DEFAULT_SIGNATURE, &inputs)
        .map_err(|e| format!("check prediction failed: {}", e.message))?;
    for name in signature.outputs.keys() {
        let Some(tensor) = outputs.get(name) else {
            return Err(format!("check prediction returned no output \"{name}\""));
        };
        batchable &= tensor.shape().first() == Some(&ROWS);
    }
    Ok(CheckReport { batchable })
}

fn zeros(dtype: DataType, count: usize) -> Option<TensorData> {
    Some(match dtype {
        DataType::Float => TensorData::F32(vec![0.0; count]),
        DataType::Double => TensorData::F64(vec![0.0; count]),
        DataType::Int32 => TensorData::I32(vec![0; count]),
        DataType::Int64 => TensorData::I64(vec![0; count]),
        DataType::UInt8 => TensorData::U8(vec![0; count]),
        DataType::Int16 => TensorData::I16(vec![0; count]),
        DataType::Int8 => TensorData::I8(vec![0; count]),
        DataType::Bool => TensorData::Bool(vec![false; count]),
        DataType::String => TensorData::Str(vec![Vec::new(); count]),
        DataType::Half | DataType::Resource | DataType::Variant => return None,
    })
}

#[cfg(test)]
pub(crate) mod fake {
    //! A tiny stand-in model for unit tests of the layers above the runtime: `y = 2x + 1` on
    //! `x: float [-1, 2]`, plus `argmax` per row.
    use super::*;
    use crate::status::ApiError;
    use savedmodel_runtime::TensorSpec;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Affine {
        signatures: BTreeMap<String, SignatureInfo>,
        pub runs: AtomicUsize,
        pub rows_seen: std::sync::Mutex<Vec<usize>>,
        pub delay: std::time::Duration,
    }

    impl Affine {
        pub fn new() -> Affine {
            let spec = |name: &str, dtype, shape: Vec<i64>| TensorSpec {
                tensor_name: format!("{name}:0"),
                dtype,
                shape: Some(shape),
            };
            let sig = SignatureInfo {
                name: DEFAULT_SIGNATURE.into(),
                method_name: "tensorflow/serving/predict".into(),
                inputs: BTreeMap::from([("x".into(), spec("x", DataType::Float, vec![-1, 2]))]),
                outputs: BTreeMap::from([
                    ("y".into(), spec("y", DataType::Float, vec![-1, 2])),
                    ("k".into(), spec("k", DataType::Int64, vec![-1])),
                ]),
            };
            Affine {
                signatures: BTreeMap::from([(DEFAULT_SIGNATURE.to_string(), sig)]),
                runs: AtomicUsize::new(0),
                rows_seen: std::sync::Mutex::new(Vec::new()),
                delay: std::time::Duration::ZERO,
            }
        }
    }

    impl Predictor for Affine {
        fn signatures(&self) -> &BTreeMap<String, SignatureInfo> {
            &self.signatures
        }
        fn run(
            &self,
            signature: &str,
            inputs: &BTreeMap<String, HostTensor>,
        ) -> Result<BTreeMap<String, HostTensor>, ApiError> {
            if signature != DEFAULT_SIGNATURE {
                return Err(ApiError::invalid("no such signature"));
            }
            std::thread::sleep(self.delay);
            self.runs.fetch_add(1, Ordering::SeqCst);
            let x = &inputs["x"];
            let TensorData::F32(values) = x.data() else {
                return Err(ApiError::invalid("x not f32"));
            };
            let rows = x.shape()[0];
            self.rows_seen.lock().unwrap().push(rows);
            let y: Vec<f32> = values.iter().map(|v| 2.0 * v + 1.0).collect();
            let k: Vec<i64> = values
                .chunks(2)
                .map(|r| if r[1] > r[0] { 1 } else { 0 })
                .collect();
            Ok(BTreeMap::from([
                (
                    "y".into(),
                    HostTensor::new(vec![rows, 2], TensorData::F32(y)).unwrap(),
                ),
                (
                    "k".into(),
                    HostTensor::new(vec![rows], TensorData::I64(k)).unwrap(),
                ),
            ]))
        }
    }

    #[test]
    fn check_prediction_reports_batchable() {
        let report = check_prediction(&Affine::new()).unwrap();
        assert!(report.batchable);
    }
}
