//! Signatures as the runtime, the JSON converters and the servers see them: named dense tensors
//! with a dtype and a (possibly partly unknown) shape.
//!
//! These are plain data, so they live here rather than in `savedmodel-runtime`: `predict-json`
//! and the servers describe and check requests against a signature without depending on candle.

use std::collections::BTreeMap;

use crate::convert::value_dtype;
use crate::error::FormatError;
use crate::proto::SignatureDef;
use crate::reader::tensor_names;
use crate::tensor::DataType;

/// The signature key serving systems (TF Serving, gcloud, Vertex AI) use when a request names none.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

/// What a signature expects or returns for one named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The graph tensor it binds to, `"node:index"`.
    pub tensor_name: String,
    pub dtype: DataType,
    /// `None`: unknown rank. `Some(dims)`: `-1` marks an unknown dimension.
    pub shape: Option<Vec<i64>>,
}

/// One `SignatureDef` of a meta graph, inputs and outputs keyed (and so sorted) by name.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureInfo {
    pub name: String,
    pub method_name: String,
    pub inputs: BTreeMap<String, TensorSpec>,
    pub outputs: BTreeMap<String, TensorSpec>,
}

impl SignatureInfo {
    /// The signature as its `SignatureDef` declares it, for runtimes that only support dense
    /// tensors: fails naming the first sparse/composite entry or unsupported dtype. (A runtime
    /// that has the graph may fill a missing dtype or shape from the nodes' attributes instead.)
    pub fn from_def(key: &str, def: &SignatureDef) -> Result<SignatureInfo, FormatError> {
        let collect = |direction: &'static str,
                       map: &BTreeMap<String, crate::proto::TensorInfo>| {
            map.iter()
                .map(|(name, info)| {
                    let tensor_name =
                        info.dense_name()
                            .ok_or_else(|| FormatError::SignatureTensor {
                                signature: key.to_string(),
                                direction,
                                key: name.clone(),
                                tensor: tensor_names(info).join(","),
                                reason: "sparse and composite tensors are not supported".into(),
                            })?;
                    let dtype = value_dtype(
                        info.dtype,
                        &format!("signature '{key}' {direction} '{name}'"),
                    )?;
                    let spec = TensorSpec {
                        tensor_name: tensor_name.to_string(),
                        dtype,
                        shape: info.tensor_shape.as_ref().and_then(|s| s.dims()),
                    };
                    Ok((name.clone(), spec))
                })
                .collect::<Result<BTreeMap<_, _>, FormatError>>()
        };
        Ok(SignatureInfo {
            name: key.to_string(),
            method_name: def.method_name.clone(),
            inputs: collect("input", &def.inputs)?,
            outputs: collect("output", &def.outputs)?,
        })
    }
}
