//! TF Serving's model status and metadata documents, laid out as TF Serving prints them.
//!
//! TF Serving answers these two routes with protobuf messages (`GetModelStatusResponse`,
//! `ModelSpec`, `SignatureDefMap`) printed by protobuf's JSON printer with whitespace: a
//! one-space indent, every field printed even when it holds its default, int64 as strings, enums
//! by name, fields in the printer's order (plain fields by number, then the members of a
//! `oneof`: that is why `TensorInfo.name` and `ModelSpec.version` come last) and a newline after
//! the closing brace. Plain structs keep that order when serialised (a `serde_json::Value`
//! object would sort its keys), so each message is a struct here.

use std::collections::BTreeMap;

use savedmodel_runtime::{SignatureInfo, TensorSpec};
use serde::Serialize;

/// One entry of `GetModelStatusResponse.model_version_status`.
#[derive(Serialize)]
pub struct ModelVersionStatus<'a> {
    pub version: String,
    /// `ModelVersionStatus.State` name (`LOADING`, `AVAILABLE`, `END`, …).
    pub state: &'a str,
    pub status: StatusProto<'a>,
}

/// `tensorflow.serving.StatusProto`.
#[derive(Serialize)]
pub struct StatusProto<'a> {
    pub error_code: &'a str,
    pub error_message: &'a str,
}

#[derive(Serialize)]
struct GetModelStatusResponse<'a> {
    model_version_status: &'a [ModelVersionStatus<'a>],
}

#[derive(Serialize)]
struct ModelSpec<'a> {
    name: &'a str,
    signature_name: &'a str,
    version: String,
}

#[derive(Serialize)]
struct SignatureDefMap<'a> {
    signature_def: BTreeMap<&'a str, SignatureDef<'a>>,
}

#[derive(Serialize)]
struct SignatureDef<'a> {
    inputs: BTreeMap<&'a str, TensorInfo<'a>>,
    outputs: BTreeMap<&'a str, TensorInfo<'a>>,
    method_name: &'a str,
    /// Default input values; SavedModels made by TF's usual exporters have none.
    defaults: BTreeMap<&'a str, ()>,
}

#[derive(Serialize)]
struct TensorInfo<'a> {
    dtype: &'a str,
    tensor_shape: TensorShape,
    name: &'a str,
}

#[derive(Serialize)]
struct TensorShape {
    dim: Vec<Dim>,
    unknown_rank: bool,
}

#[derive(Serialize)]
struct Dim {
    size: String,
    name: &'static str,
}

/// The body of `GET /v1/models/{name}[/versions/{v}]`.
pub fn status_body(statuses: &[ModelVersionStatus<'_>]) -> String {
    protobuf_json(&GetModelStatusResponse {
        model_version_status: statuses,
    })
}

/// The body of `GET /v1/models/{name}[/versions/{v}]/metadata`: TF Serving joins two printed
/// messages with a fixed skeleton rather than printing one `GetModelMetadataResponse`.
pub fn metadata_body(
    model: &str,
    version: i64,
    signatures: &BTreeMap<String, SignatureInfo>,
) -> String {
    let spec = ModelSpec {
        name: model,
        signature_name: "",
        version: version.to_string(),
    };
    let defs = SignatureDefMap {
        signature_def: signatures
            .iter()
            .map(|(key, signature)| (key.as_str(), signature_def(signature)))
            .collect(),
    };
    format!(
        "{{\n\"model_spec\":{},\n\"metadata\": {{\"signature_def\": {}}}\n}}\n",
        protobuf_json(&spec),
        protobuf_json(&defs)
    )
}

fn tensor_infos(map: &BTreeMap<String, TensorSpec>) -> BTreeMap<&str, TensorInfo<'_>> {
    map.iter()
        .map(|(alias, spec)| (alias.as_str(), tensor_info(spec)))
        .collect()
}

fn signature_def(signature: &SignatureInfo) -> SignatureDef<'_> {
    SignatureDef {
        inputs: tensor_infos(&signature.inputs),
        outputs: tensor_infos(&signature.outputs),
        method_name: &signature.method_name,
        defaults: BTreeMap::new(),
    }
}

fn tensor_info(spec: &TensorSpec) -> TensorInfo<'_> {
    let tensor_shape = match &spec.shape {
        Some(dims) => TensorShape {
            dim: dims
                .iter()
                .map(|d| Dim {
                    size: d.to_string(),
                    name: "",
                })
                .collect(),
            unknown_rank: false,
        },
        None => TensorShape {
            dim: Vec::new(),
            unknown_rank: true,
        },
    };
    TensorInfo {
        dtype: spec.dtype.tf_name(),
        tensor_shape,
        name: &spec.tensor_name,
    }
}

/// protobuf's JSON printer with whitespace: one-space indent, a newline after the document.
fn protobuf_json(message: &impl Serialize) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serialising these plain structs of strings, numbers and maps with string keys cannot
    // fail; an empty document would still be valid JSON to the caller.
    if message.serialize(&mut serializer).is_err() {
        return "{}\n".to_string();
    }
    out.push(b'\n');
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use savedmodel_runtime::DataType;

    #[test]
    fn status_fields_in_protobuf_order_with_trailing_newline() {
        let body = status_body(&[ModelVersionStatus {
            version: "3".into(),
            state: "END",
            status: StatusProto {
                error_code: "UNKNOWN",
                error_message: "cannot load",
            },
        }]);
        assert_eq!(
            body,
            "{\n \"model_version_status\": [\n  {\n   \"version\": \"3\",\n   \"state\": \"END\",\n   \
             \"status\": {\n    \"error_code\": \"UNKNOWN\",\n    \"error_message\": \"cannot load\"\n   }\n  }\n ]\n}\n"
        );
    }

    #[test]
    fn metadata_skeleton_and_tensor_info_order() {
        let spec = |name: &str, shape: Option<Vec<i64>>| TensorSpec {
            tensor_name: format!("{name}:0"),
            dtype: DataType::Float,
            shape,
        };
        let signature = SignatureInfo {
            name: "serving_default".into(),
            method_name: "tensorflow/serving/predict".into(),
            inputs: BTreeMap::from([("x".to_string(), spec("x", Some(vec![-1, 1])))]),
            outputs: BTreeMap::from([("y".to_string(), spec("y", None))]),
        };
        let body = metadata_body(
            "half",
            123,
            &BTreeMap::from([("serving_default".to_string(), signature)]),
        );
        let expected = "{\n\"model_spec\":{\n \"name\": \"half\",\n \"signature_name\": \"\",\n \"version\": \"123\"\n}\n,\n\
            \"metadata\": {\"signature_def\": {\n \"signature_def\": {\n  \"serving_default\": {\n   \"inputs\": {\n    \"x\": {\n     \
            \"dtype\": \"DT_FLOAT\",\n     \"tensor_shape\": {\n      \"dim\": [\n       {\n        \"size\": \"-1\",\n        \"name\": \"\"\n       },\n       \
            {\n        \"size\": \"1\",\n        \"name\": \"\"\n       }\n      ],\n      \"unknown_rank\": false\n     },\n     \"name\": \"x:0\"\n    }\n   },\n   \
            \"outputs\": {\n    \"y\": {\n     \"dtype\": \"DT_FLOAT\",\n     \"tensor_shape\": {\n      \"dim\": [],\n      \"unknown_rank\": true\n     },\n     \
            \"name\": \"y:0\"\n    }\n   },\n   \"method_name\": \"tensorflow/serving/predict\",\n   \"defaults\": {}\n  }\n }\n}\n}\n}\n";
        assert_eq!(body, expected);
    }
}
