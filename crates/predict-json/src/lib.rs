//! predict-json: prediction instances in JSON -> input tensors, and output tensors -> the exact
//! text that gcloud and TensorFlow Serving print.
//!
//! Three programs speak this JSON: `predictor local` (gcloud's `ai-platform local predict`), the
//! `predictor predict` client (gcloud's online `predict`) and the HTTP server (TF Serving's REST
//! API and Cloud ML Engine's `:predict`). They must agree on how instances become tensors and
//! how results are printed, so the conversions live here, in a crate of their own, free of I/O,
//! model loading and HTTP.
//!
//! **Reading JSON** ([`json`]): one reader for every prediction input, with a switch for whose
//! rules apply: TF Serving's (RapidJSON: `NaN`/`Infinity` are numbers, trailing text ignored,
//! RapidJSON's error texts and offsets) or gcloud's (standard JSON, serde_json's error texts
//! and line/column positions). It builds a tree for the server's TF Serving converter, streams
//! through serde for the gcloud instance converter, and reads rows of numbers straight into
//! `f32` buffers for the server's common case.
//!
//! **Input** ([`read_instances`], [`parse_instances`], [`instances_from_json_values`],
//! [`instances_from_json_array`]): gcloud's instance rules (`docs/reference/serving_api.md` B2-B3) checked
//! against a signature's inputs (dtype and shape from its `TensorSpec`s), stacking all instances
//! into one `[n, ...]` tensor per input. Files are streamed line by line and can be cut into
//! batches of bounded size; numbers go straight from the JSON text into typed buffers through
//! serde `DeserializeSeed`s driven by [`json::Deserializer`] (no value tree per number). Every rejected instance yields
//! one error naming where it is (`line 3`, `instances[2]`), the input, and what was expected vs
//! found: `line 3: input "image" expects 784 numbers, found 783`. Stricter than gcloud on purpose
//! in a few places: `NaN`/`Infinity` (not JSON; Python's parser takes them), fractional numbers
//! for integer inputs (numpy would truncate), ragged or wrongly shaped lists (TensorFlow would
//! fail later with a less helpful message).
//!
//! **Output for gcloud** ([`gcloud_predictions`], [`format_gcloud_json`], [`format_gcloud_table`],
//! [`format_gcloud_default`]): gcloud turns results into Python objects and prints those, so the
//! results are first converted to [`PyValue`] (Python's data model: a float32 becomes its exact
//! double) and then printed with Python's `json.dumps` layout or gcloud's table printer,
//! reimplemented here from their documented behaviour and checked against the real gcloud.
//!
//! **Input for TF Serving** ([`parse_tf_serving_request`]): TF Serving's REST predict bodies, row
//! (`instances`) and columnar (`inputs`), converted by the signature's dtypes with TF Serving's own
//! error texts; the common body (rows of numbers for one float input) is read straight into one
//! `f32` buffer.
//!
//! **KServe V2** ([`parse_v2_infer_request`], [`v2_infer_response_json`]): the Open Inference
//! Protocol's JSON tensors (`datatype`, `shape`, flat or nested `data`) checked against the
//! signature, and its response body with `outputs` selection.
//!
//! **Output for TF Serving** ([`tf_serving_predictions_json`], [`tf_serving_outputs_json`],
//! [`tf_serving_error_json`]): TF Serving's row and columnar bodies, with its float formatting
//! (`%g` if it round-trips, else 9 or 17 significant digits; computed with exact integer
//! arithmetic, no allocation per number) and RapidJSON's pretty layout.

mod convert;
mod float_format;
mod gcloud;
mod instances;
pub mod json;
mod py_value;
mod tf_serving;
mod tf_serving_request;
mod v2;

use std::fmt;

pub use float_format::{
    NonFinite, gcloud_table_float, python_repr, tf_serving_f32, tf_serving_f64,
};
pub use gcloud::{
    OutputFormat, angry_snake_case, format_gcloud_default, format_gcloud_json, format_gcloud_table,
    format_online_response, gcloud_predictions, gcloud_response,
};
pub use instances::{
    InstanceBatch, InstanceBatches, InstanceFormat, MAX_LINE_BYTES, RecordBatcher,
    instances_from_json_array, instances_from_json_values, parse_instances, read_instances,
};
pub use py_value::PyValue;
pub use tf_serving::{tf_serving_error_json, tf_serving_outputs_json, tf_serving_predictions_json};
pub use tf_serving_request::{RequestFormat, TfServingRequest, parse_tf_serving_request};
pub use v2::{V2InferRequest, parse_v2_infer_request, v2_datatype, v2_infer_response_json};

/// Where an instance came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAt {
    /// 1-based line of an instances file (or of a request body, for JSON syntax errors).
    Line(usize),
    /// 0-based element of an `instances` array.
    Index(usize),
    /// The batch as a whole.
    Batch,
}

impl fmt::Display for InstanceAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceAt::Line(line) => write!(f, "line {line}"),
            InstanceAt::Index(index) => write!(f, "instances[{index}]"),
            InstanceAt::Batch => f.write_str("instances"),
        }
    }
}

/// Everything that can go wrong between JSON and tensors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PredictJsonError {
    #[error("reading the instances failed: {0}")]
    Read(#[source] std::io::Error),
    #[error("no instances: the input is empty")]
    NoInstances,
    #[error("{at} is empty; every line must hold one instance")]
    EmptyLine { at: InstanceAt },
    #[error("{at} is not valid UTF-8")]
    InvalidUtf8 { at: InstanceAt },
    #[error("{at} is longer than {max} bytes")]
    LineTooLong { at: InstanceAt, max: usize },
    #[error("{at}, column {column}: invalid JSON: {message}")]
    InvalidJson {
        at: InstanceAt,
        column: usize,
        message: String,
    },
    #[error(
        "{at}, column {column}: {token} is not a JSON number (JSON has no NaN or Infinity, so instances cannot \
         contain them)"
    )]
    NonFiniteNumber {
        at: InstanceAt,
        token: String,
        column: usize,
    },
    #[error("{at}: {message}")]
    InvalidInstance { at: InstanceAt, message: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The signature has an input that JSON instances cannot feed.
    #[error("{0}")]
    UnsupportedSignature(String),
    #[error("output \"{output}\": {message}")]
    InvalidOutput { output: String, message: String },
    #[error("bad output from running the model: {0}")]
    OutputBatchMismatch(String),
    /// TF Serving's own wording, for its error bodies (status `INVALID_ARGUMENT`).
    #[error("{0}")]
    TfServing(String),
    /// TF Serving's own wording for a conversion it does not implement (status `UNIMPLEMENTED`).
    #[error("{0}")]
    TfServingUnimplemented(String),
    /// A KServe V2 request that does not fit the protocol or the model's signature.
    #[error("{0}")]
    V2(String),
}

/// Helpers shared by the unit tests of the readers.
#[cfg(test)]
pub(crate) mod test_support {
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    /// The `seeds` unchanged, then 20,000 copies of them with one or two random edits each
    /// (a byte removed, replaced or inserted from `noise`): bodies that a fast reader must either
    /// decline or read exactly as the general one does.
    pub fn mutated_bodies(seeds: &[&str], seed: u64, noise: &[u8]) -> Vec<Vec<u8>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut next = move |n: usize| rng.random_range(0..n);
        let mut bodies: Vec<Vec<u8>> = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
        for _ in 0..20_000 {
            let mut body = seeds[next(seeds.len())].as_bytes().to_vec();
            for _ in 0..1 + next(2) {
                let at = next(body.len() + 1);
                match next(3) {
                    0 if at < body.len() => {
                        body.remove(at);
                    }
                    1 if at < body.len() => body[at] = noise[next(noise.len())],
                    _ => body.insert(at, noise[next(noise.len())]),
                }
            }
            bodies.push(body);
        }
        bodies
    }

    /// Each float input's name, shape and value bits, so that two readers' tensors compare bit
    /// for bit (NaN payloads and the sign of zero included).
    pub fn float_bits(
        inputs: &std::collections::BTreeMap<String, savedmodel_format::HostTensor>,
    ) -> Vec<(String, Vec<usize>, Vec<u32>)> {
        inputs
            .iter()
            .map(|(name, t)| match t.data() {
                savedmodel_format::TensorData::F32(v) => (
                    name.clone(),
                    t.shape().to_vec(),
                    v.iter().map(|x| x.to_bits()).collect(),
                ),
                other => panic!("{other:?}"),
            })
            .collect()
    }
}
