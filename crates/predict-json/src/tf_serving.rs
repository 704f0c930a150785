//! Output tensors -> TensorFlow Serving's REST response bodies, byte for byte.
//!
//! TF Serving writes responses with RapidJSON's `PrettyWriter` (4-space indent), switching to
//! "single-line array" mode while it writes each row's values (`docs/reference/serving_api.md` A5.6). The small
//! writer below reproduces that writer's layout rules, so the bodies match TF Serving's exactly
//! (useful for golden tests and for clients that diff responses).

use std::collections::BTreeMap;

use base64::Engine as _;
use savedmodel_format::{HostTensor, TensorData};

use crate::PredictJsonError;
use crate::float_format::{write_tf_serving_f32, write_tf_serving_f64};

/// Row-format response (`{"predictions": ...}`) for a request that used `instances`.
/// One output: each prediction is that output's row value; several: an object per instance keyed
/// by output alias (sorted; TF Serving's own order is its map's, which clients must not rely on).
pub fn tf_serving_predictions_json(
    outputs: &BTreeMap<String, HostTensor>,
) -> Result<String, PredictJsonError> {
    if outputs.is_empty() {
        return Err(PredictJsonError::TfServing(
            "Cannot convert empty tensor map to JSON".into(),
        ));
    }
    let mut batch = 0usize;
    for (name, tensor) in outputs {
        let Some(&rows) = tensor.shape().first() else {
            return Err(PredictJsonError::TfServing(format!(
                "Tensor name: {name} has no shape information "
            )));
        };
        if rows < 1 {
            return Err(PredictJsonError::TfServing(format!(
                "Tensor name: {name} has invalid batch size: {rows}"
            )));
        }
        if batch != 0 && batch != rows {
            return Err(PredictJsonError::TfServing(format!(
                "Tensor name: {name} has inconsistent batch size: {rows} expecting: {batch}"
            )));
        }
        batch = rows;
    }
    let mut w = PrettyWriter::default();
    w.start_object();
    w.key("predictions");
    w.start_array();
    let objects = outputs.len() > 1;
    let mut offsets = vec![0usize; outputs.len()];
    for _ in 0..batch {
        if objects {
            w.start_object();
        }
        w.single_line_arrays = true;
        for ((name, tensor), offset) in outputs.iter().zip(offsets.iter_mut()) {
            if objects {
                w.key(name);
            }
            write_values(&mut w, name, tensor, 1, offset);
        }
        w.single_line_arrays = false;
        if objects {
            w.end_object();
        }
    }
    w.end_array();
    w.end_object();
    Ok(w.out)
}

/// Columnar response (`{"outputs": ...}`) for a request that used `inputs`: each output's whole
/// tensor (one number per line), under its alias when there are several outputs.
pub fn tf_serving_outputs_json(
    outputs: &BTreeMap<String, HostTensor>,
) -> Result<String, PredictJsonError> {
    if outputs.is_empty() {
        return Err(PredictJsonError::TfServing(
            "Cannot convert empty tensor map to JSON".into(),
        ));
    }
    let mut w = PrettyWriter::default();
    w.start_object();
    w.key("outputs");
    let objects = outputs.len() > 1;
    if objects {
        w.start_object();
    }
    for (name, tensor) in outputs {
        if objects {
            w.key(name);
        }
        let mut offset = 0;
        write_values(&mut w, name, tensor, 0, &mut offset);
    }
    if objects {
        w.end_object();
    }
    w.end_object();
    Ok(w.out)
}

/// TF Serving's error body, `{ "error": "<message>" }` in the same layout.
pub fn tf_serving_error_json(message: &str) -> String {
    let mut w = PrettyWriter::default();
    w.start_object();
    w.key("error");
    w.string(message.as_bytes());
    w.end_object();
    w.out
}

/// TF Serving's `AddTensorValues`: the values from dimension `dim` down, starting at element
/// `*offset`.
fn write_values(
    w: &mut PrettyWriter,
    name: &str,
    tensor: &HostTensor,
    dim: usize,
    offset: &mut usize,
) {
    let shape = tensor.shape();
    if dim >= shape.len() {
        write_element(w, name, tensor.data(), *offset);
        *offset += 1;
        return;
    }
    w.start_array();
    for _ in 0..shape[dim] {
        write_values(w, name, tensor, dim + 1, offset);
    }
    w.end_array();
}

fn write_element(w: &mut PrettyWriter, name: &str, data: &TensorData, i: usize) {
    match data {
        TensorData::F32(v) => {
            w.prefix();
            write_tf_serving_f32(&mut w.out, v[i]);
        }
        TensorData::F64(v) => {
            w.prefix();
            write_tf_serving_f64(&mut w.out, v[i]);
        }
        TensorData::I32(v) => w.raw(&v[i].to_string()),
        TensorData::I64(v) => w.raw(&v[i].to_string()),
        TensorData::I16(v) => w.raw(&v[i].to_string()),
        TensorData::I8(v) => w.raw(&v[i].to_string()),
        TensorData::U8(v) => w.raw(&v[i].to_string()),
        TensorData::Bool(v) => w.raw(if v[i] { "true" } else { "false" }),
        TensorData::Str(v) => {
            if name.ends_with("_bytes") {
                w.start_object();
                w.key("b64");
                w.string(
                    base64::engine::general_purpose::STANDARD
                        .encode(&v[i])
                        .as_bytes(),
                );
                w.end_object();
            } else {
                w.string(&v[i]);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Level {
    in_array: bool,
    values: usize,
}

/// RapidJSON `PrettyWriter` layout with a 4-space indent and the `kFormatSingleLineArray` option
/// as a flag.
#[derive(Default)]
struct PrettyWriter {
    out: String,
    stack: Vec<Level>,
    single_line_arrays: bool,
}

impl PrettyWriter {
    fn indent(&mut self) {
        let n = self.stack.len() * 4;
        self.out.extend(std::iter::repeat_n(' ', n));
    }

    /// Separator and indentation before a value (or key), as `PrettyWriter::PrettyPrefix`.
    fn prefix(&mut self) {
        let single_line = self.single_line_arrays;
        let Some(level) = self.stack.last_mut() else {
            return;
        };
        let Level { in_array, values } = *level;
        level.values += 1;
        if in_array {
            if values > 0 {
                self.out.push(',');
                if single_line {
                    self.out.push(' ');
                }
            }
            if !single_line {
                self.out.push('\n');
                self.indent();
            }
        } else {
            if values > 0 {
                self.out
                    .push_str(if values % 2 == 0 { ",\n" } else { ": " });
            } else {
                self.out.push('\n');
            }
            if values % 2 == 0 {
                self.indent();
            }
        }
    }

    fn start_object(&mut self) {
        self.prefix();
        self.out.push('{');
        self.stack.push(Level {
            in_array: false,
            values: 0,
        });
    }

    fn end_object(&mut self) {
        let empty = self.stack.pop().is_none_or(|l| l.values == 0);
        if !empty {
            self.out.push('\n');
            self.indent();
        }
        self.out.push('}');
    }

    fn start_array(&mut self) {
        self.prefix();
        self.out.push('[');
        self.stack.push(Level {
            in_array: true,
            values: 0,
        });
    }

    fn end_array(&mut self) {
        let empty = self.stack.pop().is_none_or(|l| l.values == 0);
        if !empty && !self.single_line_arrays {
            self.out.push('\n');
            self.indent();
        }
        self.out.push(']');
    }

    fn key(&mut self, key: &str) {
        self.string(key.as_bytes());
    }

    fn raw(&mut self, text: &str) {
        self.prefix();
        self.out.push_str(text);
    }

    /// A JSON string with RapidJSON's escapes (`\b \t \n \f \r`, `\u00XX` for other control
    /// bytes, upper-case hex). RapidJSON copies other bytes as they are; bytes that are not UTF-8
    /// become U+FFFD here since the body is a Rust `String`.
    fn string(&mut self, bytes: &[u8]) {
        self.prefix();
        self.out.push('"');
        for c in String::from_utf8_lossy(bytes).chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\u{08}' => self.out.push_str("\\b"),
                '\t' => self.out.push_str("\\t"),
                '\n' => self.out.push_str("\\n"),
                '\u{0c}' => self.out.push_str("\\f"),
                '\r' => self.out.push_str("\\r"),
                c if (c as u32) < 0x20 => self.out.push_str(&format!("\\u{:04X}", c as u32)),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: Vec<usize>, data: TensorData) -> HostTensor {
        HostTensor::new(shape, data).unwrap()
    }

    fn probabilities() -> HostTensor {
        tensor(
            vec![2, 3],
            TensorData::F32(vec![
                0.083064966,
                0.16727234,
                0.7496627,
                0.30206415,
                0.24730918,
                0.45062676,
            ]),
        )
    }

    /// Expected bodies: the layouts verified against TF Serving's writer (`docs/reference/serving_api.md` A5.6).
    #[test]
    fn single_output_rows() {
        let mut outputs = BTreeMap::new();
        outputs.insert("probabilities".to_string(), probabilities());
        assert_eq!(
            tf_serving_predictions_json(&outputs).unwrap(),
            "{\n    \"predictions\": [[0.0830649659, 0.167272344, 0.749662697], \
             [0.302064151, 0.247309178, 0.450626761]\n    ]\n}"
        );
        let mut scalars = BTreeMap::new();
        scalars.insert(
            "y".to_string(),
            tensor(vec![3], TensorData::F32(vec![2.5, 3.0, 4.5])),
        );
        assert_eq!(
            tf_serving_predictions_json(&scalars).unwrap(),
            "{\n    \"predictions\": [2.5, 3.0, 4.5\n    ]\n}"
        );
    }

    #[test]
    fn several_outputs_rows() {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "classes".to_string(),
            tensor(vec![2], TensorData::I64(vec![2, 2])),
        );
        outputs.insert("probabilities".to_string(), probabilities());
        assert_eq!(
            tf_serving_predictions_json(&outputs).unwrap(),
            "{\n    \"predictions\": [\n        {\n            \"classes\": 2,\n            \
             \"probabilities\": [0.0830649659, 0.167272344, 0.749662697]\n        },\n        {\n            \
             \"classes\": 2,\n            \"probabilities\": [0.302064151, 0.247309178, 0.450626761]\n        }\n    ]\n}"
        );
    }

    #[test]
    fn columnar_is_fully_expanded() {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "y".to_string(),
            tensor(vec![2, 1], TensorData::I64(vec![1, 2])),
        );
        assert_eq!(
            tf_serving_outputs_json(&outputs).unwrap(),
            "{\n    \"outputs\": [\n        [\n            1\n        ],\n        [\n            2\n        ]\n    ]\n}"
        );
    }

    #[test]
    fn row_format_errors() {
        let mut scalar = BTreeMap::new();
        scalar.insert("y".to_string(), tensor(vec![], TensorData::F32(vec![1.0])));
        assert_eq!(
            tf_serving_predictions_json(&scalar)
                .unwrap_err()
                .to_string(),
            "Tensor name: y has no shape information "
        );
        let mut mixed = BTreeMap::new();
        mixed.insert(
            "a".to_string(),
            tensor(vec![2], TensorData::I64(vec![1, 2])),
        );
        mixed.insert(
            "b".to_string(),
            tensor(vec![3], TensorData::I64(vec![1, 2, 3])),
        );
        assert_eq!(
            tf_serving_predictions_json(&mixed).unwrap_err().to_string(),
            "Tensor name: b has inconsistent batch size: 3 expecting: 2"
        );
    }

    #[test]
    fn strings_and_bytes() {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "label".to_string(),
            tensor(vec![1], TensorData::Str(vec![b"a\"b\x01".to_vec()])),
        );
        outputs.insert(
            "raw_bytes".to_string(),
            tensor(vec![1], TensorData::Str(vec![vec![0, 1, 255]])),
        );
        assert_eq!(
            tf_serving_predictions_json(&outputs).unwrap(),
            "{\n    \"predictions\": [\n        {\n            \"label\": \"a\\\"b\\u0001\",\n            \
             \"raw_bytes\": {\n                \"b64\": \"AAH/\"\n            }\n        }\n    ]\n}"
        );
        assert_eq!(
            tf_serving_error_json("bad \"x\""),
            "{\n    \"error\": \"bad \\\"x\\\"\"\n}"
        );
    }
}
