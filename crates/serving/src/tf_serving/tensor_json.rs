//! TF Serving response bodies for the server: predict-json writes them (and owns every
//! JSON ↔ tensor conversion); these adapt its errors to [`ApiError`] and take a request's rows out
//! of a batch's outputs.

use std::collections::BTreeMap;

use predict_json::{PredictJsonError, TfServingRequest};
use savedmodel_runtime::{HostTensor, SignatureInfo};

use crate::status::{ApiError, Code};

/// Parses and converts a TF Serving predict body for a model with `signatures`.
pub fn parse_predict_request(
    body: &[u8],
    signatures: &BTreeMap<String, SignatureInfo>,
) -> Result<TfServingRequest, ApiError> {
    predict_json::parse_tf_serving_request(body, signatures).map_err(|error| match error {
        PredictJsonError::TfServingUnimplemented(message) => {
            ApiError::new(Code::Unimplemented, message)
        }
        other => ApiError::invalid(other.to_string()),
    })
}

/// `{"error": "<message>"}` in TF Serving's layout.
pub fn error_body(message: &str) -> String {
    predict_json::tf_serving_error_json(message)
}

/// The row layout (`{"predictions": [...]}`) of `outputs`, or of the rows `rows` of them when the
/// outputs belong to a batch that was run together with other requests.
pub fn write_row_response(
    outputs: &BTreeMap<String, HostTensor>,
    rows: Option<std::ops::Range<usize>>,
) -> Result<String, ApiError> {
    let written = match rows {
        None => predict_json::tf_serving_predictions_json(outputs),
        Some(rows) => {
            let mine = outputs
                .iter()
                .map(|(name, tensor)| {
                    let part = tensor.slice_rows(rows.clone()).map_err(|e| {
                        ApiError::internal(format!("output {name}: {e} for this request"))
                    })?;
                    Ok((name.clone(), part))
                })
                .collect::<Result<BTreeMap<_, _>, ApiError>>()?;
            predict_json::tf_serving_predictions_json(&mine)
        }
    };
    written.map_err(|e| ApiError::invalid(e.to_string()))
}

/// The columnar layout (`{"outputs": ...}`) of `outputs`.
pub fn write_columnar_response(outputs: &BTreeMap<String, HostTensor>) -> Result<String, ApiError> {
    predict_json::tf_serving_outputs_json(outputs).map_err(|e| ApiError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use predict_json::json::{self, Json, Rules};
    use savedmodel_runtime::TensorData;

    #[test]
    fn row_response_layouts() {
        let probs = HostTensor::new(
            vec![2, 3],
            TensorData::F32(vec![0.5, 0.25, 0.25, 1.0, 0.0, 0.0]),
        )
        .unwrap();
        let classes = HostTensor::new(vec![2], TensorData::I64(vec![0, 0])).unwrap();
        let one = BTreeMap::from([("p".to_string(), probs.clone())]);
        assert_eq!(
            write_row_response(&one, None).unwrap(),
            "{\n    \"predictions\": [[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]\n    ]\n}"
        );
        assert_eq!(
            write_row_response(&one, Some(1..2)).unwrap(),
            "{\n    \"predictions\": [[1.0, 0.0, 0.0]\n    ]\n}"
        );
        let two = BTreeMap::from([
            ("classes".to_string(), classes),
            ("probabilities".to_string(), probs),
        ]);
        assert_eq!(
            write_row_response(&two, Some(0..1)).unwrap(),
            "{\n    \"predictions\": [\n        {\n            \"classes\": 0,\n            \
             \"probabilities\": [0.5, 0.25, 0.25]\n        }\n    ]\n}"
        );
        let bad = BTreeMap::from([
            (
                "a".to_string(),
                HostTensor::new(vec![2], TensorData::I64(vec![0, 0])).unwrap(),
            ),
            (
                "b".to_string(),
                HostTensor::new(vec![3], TensorData::I64(vec![0, 0, 0])).unwrap(),
            ),
        ]);
        assert_eq!(
            write_row_response(&bad, None).unwrap_err().message,
            "Tensor name: b has inconsistent batch size: 3 expecting: 2"
        );
        let scalar = BTreeMap::from([(
            "s".to_string(),
            HostTensor::new(vec![], TensorData::I64(vec![1])).unwrap(),
        )]);
        assert_eq!(
            write_row_response(&scalar, None).unwrap_err().message,
            "Tensor name: s has no shape information "
        );
    }

    #[test]
    fn columnar_response_is_expanded() {
        let y = HostTensor::new(vec![2, 1], TensorData::F32(vec![2.5, 3.0])).unwrap();
        let one = BTreeMap::from([("y".to_string(), y)]);
        assert_eq!(
            write_columnar_response(&one).unwrap(),
            "{\n    \"outputs\": [\n        [\n            2.5\n        ],\n        [\n            3.0\n        ]\n    ]\n}"
        );
        let bytes = BTreeMap::from([(
            "out_bytes".to_string(),
            HostTensor::new(vec![1], TensorData::Str(vec![vec![0, 1]])).unwrap(),
        )]);
        let text = write_columnar_response(&bytes).unwrap();
        let parsed = json::parse(text.as_bytes(), Rules::TfServing).unwrap();
        let b64 = match parsed.get("outputs") {
            Some(Json::Array(items)) => items.first().and_then(Json::as_b64),
            _ => None,
        };
        assert_eq!(b64, Some("AAE="), "{text}");
        assert_eq!(
            error_body("bad \"x\""),
            "{\n    \"error\": \"bad \\\"x\\\"\"\n}"
        );
    }
}
