//! TF Serving predict request bodies → input tensors, by TF Serving's REST rules
//! (`docs/reference/serving_api.md` A5): row (`instances`) and columnar (`inputs`) formats,
//! conversion by the signature's dtypes, `{"b64": …}` strings, and TF Serving's own error texts
//! (its `json_tensor.cc`).

use std::collections::BTreeMap;

use base64::Engine as _;
use savedmodel_format::{DEFAULT_SIGNATURE, DataType, HostTensor, SignatureInfo, TensorData};

use crate::PredictJsonError;
use crate::json::{self, Cursor, Json, Number, Rules};

/// TF Serving decodes with `absl::Base64Unescape`, which takes padded and unpadded text.
const TF_SERVING_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Which of TF Serving's two request layouts a body used; the response mirrors it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFormat {
    /// `{"instances": [...]}` → `{"predictions": [...]}`.
    Row,
    /// `{"inputs": ...}` → `{"outputs": ...}`.
    Columnar,
}

/// A predict request, converted against one signature of the model.
#[derive(Debug)]
pub struct TfServingRequest {
    pub signature_name: String,
    pub format: RequestFormat,
    pub inputs: BTreeMap<String, HostTensor>,
    /// Row format: the number of instances (dim 0 of every input).
    pub batch_size: Option<usize>,
}

/// Parses and converts a predict body for a model with `signatures`.
pub fn parse_tf_serving_request(
    body: &[u8],
    signatures: &BTreeMap<String, SignatureInfo>,
) -> Result<TfServingRequest, PredictJsonError> {
    match parse_plain_rows(body, signatures) {
        Some(request) => Ok(request),
        None => parse_document(body, signatures),
    }
}

/// The common request, `{"instances": [[x, x, …], …]}` (and perhaps `"signature_name"`), for a
/// signature with a single float input: the numbers go from the text straight into one `f32`
/// buffer, with no tree and no per-row allocation. Anything else (other keys or shapes, strings,
/// objects, a JSON or shape error) gives `None` and the request takes the general route, which
/// then produces the same tensors, or the error in TF Serving's words. The conversion is the
/// general route's too: each number is read as a double, then narrowed to `f32`.
fn parse_plain_rows(
    body: &[u8],
    signatures: &BTreeMap<String, SignatureInfo>,
) -> Option<TfServingRequest> {
    let mut cursor = Cursor::new(body, Rules::TfServing);
    if !cursor.eat(b'{') {
        return None;
    }
    let mut signature_name: Option<String> = None;
    let mut rows: Option<(Vec<f32>, usize, usize)> = None;
    loop {
        let key = cursor.string()?.ok()?;
        if !cursor.eat(b':') {
            return None;
        }
        match key.as_ref() {
            "instances" if rows.is_none() => rows = Some(plain_rows(&mut cursor, body.len())?),
            "signature_name" if signature_name.is_none() => {
                signature_name = Some(cursor.string()?.ok()?.into_owned());
            }
            _ => return None,
        }
        if cursor.eat(b'}') {
            break;
        }
        if !cursor.eat(b',') {
            return None;
        }
    }
    let (values, count, row_len) = rows?;
    let signature_name = signature_name.unwrap_or_else(|| DEFAULT_SIGNATURE.to_string());
    let signature = signatures.get(&signature_name)?;
    let mut names = signature.inputs.iter();
    let (Some((name, spec)), None) = (names.next(), names.next()) else {
        return None;
    };
    if spec.dtype != DataType::Float {
        return None;
    }
    let tensor = HostTensor::new(vec![count, row_len], TensorData::F32(values)).ok()?;
    let inputs = BTreeMap::from([(name.clone(), tensor)]);
    check_shapes(&inputs, signature).ok()?;
    Some(TfServingRequest {
        signature_name,
        format: RequestFormat::Row,
        inputs,
        batch_size: Some(count),
    })
}

/// `[[x, …], …]`: equally long, non-empty rows of numbers, as `(values, rows, row length)`.
pub(crate) fn plain_rows(
    cursor: &mut Cursor<'_>,
    body_len: usize,
) -> Option<(Vec<f32>, usize, usize)> {
    if !cursor.eat(b'[') {
        return None;
    }
    let mut values: Vec<f32> = Vec::new();
    let mut count = 0usize;
    let mut row_len = 0usize;
    loop {
        let row_start = cursor.offset();
        let len = cursor.f32_array(&mut values)?;
        if count == 0 {
            row_len = len;
            // Rows are alike: size the buffer for as many as the rest of the body can hold.
            let row_bytes = (cursor.offset() - row_start).max(1);
            values.reserve(len * (body_len.saturating_sub(cursor.offset()) / row_bytes));
        } else if len != row_len {
            return None;
        }
        count += 1;
        if cursor.eat(b']') {
            return Some((values, count, row_len));
        }
        if !cursor.eat(b',') {
            return None;
        }
    }
}

/// Any predict body: the whole document is read into a tree and converted by TF Serving's rules.
fn parse_document(
    body: &[u8],
    signatures: &BTreeMap<String, SignatureInfo>,
) -> Result<TfServingRequest, PredictJsonError> {
    let doc = json::parse(body, Rules::TfServing).map_err(|e| invalid(e.to_string()))?;
    let Json::Object(_) = doc else {
        return Err(invalid(format!(
            "JSON Value: {} Is not object",
            doc.to_compact()
        )));
    };
    let signature_name = match doc.get("signature_name") {
        None => DEFAULT_SIGNATURE.to_string(),
        Some(Json::Str(name)) => name.clone(),
        Some(other) => {
            return Err(invalid(format!(
                "JSON Value: {} 'signature_name' key must be a string value.",
                other.to_compact()
            )));
        }
    };
    let signature = signatures.get(&signature_name).ok_or_else(|| {
        invalid(format!(
            "Serving signature name: \"{signature_name}\" not found in signature def"
        ))
    })?;
    match (doc.get("instances"), doc.get("inputs")) {
        (Some(_), Some(_)) => Err(invalid(
            "JSON Value: Not formatted correctly expecting only one of 'inputs' or 'instances' \
             keys to exist",
        )),
        (None, None) => Err(invalid("Missing 'inputs' or 'instances' key")),
        (Some(instances), None) => {
            let (inputs, batch) = convert_instances(instances, signature)?;
            check_shapes(&inputs, signature)?;
            Ok(TfServingRequest {
                signature_name,
                format: RequestFormat::Row,
                inputs,
                batch_size: Some(batch),
            })
        }
        (None, Some(columns)) => {
            let inputs = convert_columns(columns, signature)?;
            check_shapes(&inputs, signature)?;
            Ok(TfServingRequest {
                signature_name,
                format: RequestFormat::Columnar,
                inputs,
                batch_size: None,
            })
        }
    }
}

fn convert_instances(
    instances: &Json,
    signature: &SignatureInfo,
) -> Result<(BTreeMap<String, HostTensor>, usize), PredictJsonError> {
    let materialized: Vec<Json>;
    let items: &[Json] = match instances {
        Json::Array(items) => items,
        // Scalar instances of a single input: rare, so they are simply unpacked.
        Json::Numbers(numbers) => {
            materialized = numbers.iter().map(|n| Json::Number(*n)).collect();
            &materialized
        }
        _ => {
            return Err(invalid("Expecting 'instances' to be an list/array"));
        }
    };
    let Some(first) = items.first() else {
        return Err(invalid("No values in 'instances' array"));
    };
    let named = matches!(first, Json::Object(_)) && first.as_b64().is_none();
    let mut per_input: BTreeMap<&str, Vec<&Json>> = BTreeMap::new();
    if named {
        let expected: Vec<&str> = signature.inputs.keys().map(String::as_str).collect();
        for (index, item) in items.iter().enumerate() {
            let Json::Object(members) = item else {
                return Err(invalid(format!(
                    "Expecting object but got list at item {index} of input list"
                )));
            };
            let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort_unstable();
            if keys != expected {
                return Err(invalid(format!(
                    "Failed to process element: {index} of 'instances' list. JSON object: {} keys \
                     must be equal to: {}",
                    item.to_compact(),
                    expected.join(",")
                )));
            }
            for (key, value) in members {
                per_input.entry(key.as_str()).or_default().push(value);
            }
        }
    } else {
        let mut names = signature.inputs.keys();
        let (Some(name), None) = (names.next(), names.next()) else {
            return Err(invalid(
                "instances is a plain list, but expecting list of objects as multiple input \
                 tensors required as per tensorinfo_map",
            ));
        };
        for (index, item) in items.iter().enumerate() {
            if matches!(item, Json::Object(_)) && item.as_b64().is_none() {
                return Err(invalid(format!(
                    "Expecting value/list but got object at item {index} of input list"
                )));
            }
        }
        per_input.insert(name.as_str(), items.iter().collect());
    }

    let mut tensors = BTreeMap::new();
    for (name, values) in per_input {
        let spec = &signature.inputs[name];
        let instance_shape = shape_of(values[0]);
        let mut column = storage(
            spec.dtype,
            values.len() * instance_shape.iter().product::<usize>(),
        )
        .map_err(|e| wrap_instance_error(0, e))?;
        for (index, value) in values.iter().enumerate() {
            fill(value, &instance_shape, 0, &mut column)
                .map_err(|e| wrap_instance_error(index, e))?;
        }
        let mut shape = Vec::with_capacity(instance_shape.len() + 1);
        shape.push(values.len());
        shape.extend_from_slice(&instance_shape);
        tensors.insert(name.to_string(), into_tensor(column, shape)?);
    }
    Ok((tensors, items.len()))
}

fn wrap_instance_error(index: usize, error: PredictJsonError) -> PredictJsonError {
    let code = match error {
        PredictJsonError::TfServingUnimplemented(_) => "UNIMPLEMENTED",
        _ => "INVALID_ARGUMENT",
    };
    invalid(format!(
        "Failed to process element: {index} of 'instances' list. Error: {code}: {error}"
    ))
}

/// An `INVALID_ARGUMENT` error in TF Serving's words.
fn invalid(message: impl Into<String>) -> PredictJsonError {
    PredictJsonError::TfServing(message.into())
}

fn convert_columns(
    columns: &Json,
    signature: &SignatureInfo,
) -> Result<BTreeMap<String, HostTensor>, PredictJsonError> {
    let mut tensors = BTreeMap::new();
    if matches!(columns, Json::Object(_)) && columns.as_b64().is_none() {
        for (name, spec) in &signature.inputs {
            let value = columns.get(name).ok_or_else(|| {
                invalid(format!("Missing named input: {name} in 'inputs' object."))
            })?;
            tensors.insert(name.clone(), convert_whole(value, spec.dtype)?);
        }
    } else {
        let mut names = signature.inputs.iter();
        let (Some((name, spec)), None) = (names.next(), names.next()) else {
            return Err(invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors \
                 required as per tensorinfo_map",
            ));
        };
        tensors.insert(name.clone(), convert_whole(columns, spec.dtype)?);
    }
    Ok(tensors)
}

fn convert_whole(value: &Json, dtype: DataType) -> Result<HostTensor, PredictJsonError> {
    let shape = shape_of(value);
    let mut column = storage(dtype, shape.iter().product())?;
    fill(value, &shape, 0, &mut column)?;
    into_tensor(column, shape)
}

/// The shape of a nested list, read from the first element at every level.
fn shape_of(mut value: &Json) -> Vec<usize> {
    let mut shape = Vec::new();
    loop {
        match value {
            Json::Array(items) => {
                shape.push(items.len());
                match items.first() {
                    Some(first) => value = first,
                    None => break,
                }
            }
            Json::Numbers(numbers) => {
                shape.push(numbers.len());
                break;
            }
            _ => break,
        }
    }
    shape
}

fn fill(
    value: &Json,
    shape: &[usize],
    level: usize,
    column: &mut TensorData,
) -> Result<(), PredictJsonError> {
    match (value, shape.split_first()) {
        (Json::Array(items), Some((&expected, rest))) => {
            if items.len() != expected {
                return Err(invalid(format!(
                    "Encountered list at unexpected size: {} at level: {level} expected size: \
                     {expected}",
                    items.len()
                )));
            }
            items
                .iter()
                .try_for_each(|item| fill(item, rest, level + 1, column))
        }
        (Json::Numbers(numbers), Some((&expected, rest))) => {
            if numbers.len() != expected {
                return Err(invalid(format!(
                    "Encountered list at unexpected size: {} at level: {level} expected size: \
                     {expected}",
                    numbers.len()
                )));
            }
            match numbers.first() {
                Some(first) if !rest.is_empty() => Err(invalid(format!(
                    "Encountered scalar at incorrect level: {}, expected a list: {}",
                    level + 1,
                    Json::Number(*first).to_compact()
                ))),
                _ => push_numbers(column, numbers),
            }
        }
        (Json::Array(_) | Json::Numbers(_), None) => Err(invalid(format!(
            "Encountered list at incorrect level: {level}, expected a scalar value: {}",
            value.to_compact()
        ))),
        (_, Some(_)) => Err(invalid(format!(
            "Encountered scalar at incorrect level: {level}, expected a list: {}",
            value.to_compact()
        ))),
        (_, None) => push(column, value),
    }
}

/// Rejects inputs whose shape contradicts the signature (rank, or a known dimension), so a
/// wrong instance length is reported against the input's name instead of deep in the graph.
fn check_shapes(
    inputs: &BTreeMap<String, HostTensor>,
    signature: &SignatureInfo,
) -> Result<(), PredictJsonError> {
    for (name, tensor) in inputs {
        let Some(expected) = signature.inputs.get(name).and_then(|s| s.shape.as_ref()) else {
            continue;
        };
        let got = tensor.shape();
        let compatible = expected.len() == got.len()
            && expected
                .iter()
                .zip(got)
                .all(|(&e, &g)| e < 0 || e as usize == g);
        if !compatible {
            return Err(invalid(format!(
                "input \"{name}\" of signature \"{}\" expects shape {} but the request gives {}",
                signature.name,
                dims_text(expected.iter().copied()),
                dims_text(got.iter().map(|&d| d as i64)),
            )));
        }
    }
    Ok(())
}

fn dims_text(dims: impl Iterator<Item = i64>) -> String {
    let parts: Vec<String> = dims.map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// TF's short dtype names, as its conversion errors print them.
fn short_name(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Float => "float",
        DataType::Double => "double",
        DataType::Int32 => "int32",
        DataType::UInt8 => "uint8",
        DataType::Int16 => "int16",
        DataType::Int8 => "int8",
        DataType::String => "string",
        DataType::Int64 => "int64",
        DataType::Bool => "bool",
        DataType::Half => "half",
        DataType::Resource => "resource",
        DataType::Variant => "variant",
    }
}

/// Empty storage for `dtype`, or TF Serving's error for a dtype JSON cannot be converted to.
fn storage(dtype: DataType, capacity: usize) -> Result<TensorData, PredictJsonError> {
    TensorData::with_capacity(dtype, capacity).ok_or_else(|| {
        PredictJsonError::TfServingUnimplemented(format!(
            "Conversion of JSON Value to type: {} is not supported",
            short_name(dtype)
        ))
    })
}

/// Appends one JSON scalar to `data`, converted by TF Serving's rules for `data`'s dtype.
fn push(data: &mut TensorData, value: &Json) -> Result<(), PredictJsonError> {
    let dtype = data.dtype();
    let mismatch = || {
        invalid(format!(
            "JSON Value: {} Type: {} is not of expected type: {}",
            value.to_compact(),
            value.type_name(),
            short_name(dtype)
        ))
    };
    let as_f64 = || match value {
        Json::Number(n) => Some(n.as_f64()),
        _ => None,
    };
    // TF Serving reads every narrow integer type as int32 and truncates afterwards.
    let as_i32 = || match value {
        Json::Number(Number::Int(i)) => i32::try_from(*i).ok(),
        _ => None,
    };
    match data {
        TensorData::F32(v) => v.push(as_f64().ok_or_else(mismatch)? as f32),
        TensorData::F64(v) => v.push(as_f64().ok_or_else(mismatch)?),
        TensorData::I32(v) => v.push(as_i32().ok_or_else(mismatch)?),
        TensorData::I16(v) => v.push(as_i32().ok_or_else(mismatch)? as i16),
        TensorData::I8(v) => v.push(as_i32().ok_or_else(mismatch)? as i8),
        TensorData::U8(v) => v.push(as_i32().ok_or_else(mismatch)? as u8),
        TensorData::I64(v) => match value {
            Json::Number(Number::Int(i)) => v.push(*i),
            _ => return Err(mismatch()),
        },
        TensorData::Bool(v) => match value {
            Json::Bool(b) => v.push(*b),
            _ => return Err(mismatch()),
        },
        TensorData::Str(v) => match value {
            Json::Str(s) => v.push(s.as_bytes().to_vec()),
            _ => match value.as_b64() {
                Some(text) => v.push(
                    TF_SERVING_BASE64
                        .decode(text)
                        .map_err(|_| invalid(format!("Unable to base64 decode: {text}")))?,
                ),
                None => return Err(mismatch()),
            },
        },
    }
    Ok(())
}

/// A run of numbers at the innermost level: the hot path of every float tensor.
fn push_numbers(data: &mut TensorData, numbers: &[Number]) -> Result<(), PredictJsonError> {
    match data {
        TensorData::F32(v) => v.extend(numbers.iter().map(|n| n.as_f64() as f32)),
        TensorData::F64(v) => v.extend(numbers.iter().map(|n| n.as_f64())),
        _ => {
            return numbers
                .iter()
                .try_for_each(|n| push(data, &Json::Number(*n)));
        }
    }
    Ok(())
}

fn into_tensor(data: TensorData, shape: Vec<usize>) -> Result<HostTensor, PredictJsonError> {
    HostTensor::new(shape, data).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use savedmodel_format::TensorSpec;

    fn signature(inputs: &[(&str, DataType, Option<Vec<i64>>)]) -> BTreeMap<String, SignatureInfo> {
        let inputs = inputs
            .iter()
            .map(|(name, dtype, shape)| {
                (
                    name.to_string(),
                    TensorSpec {
                        tensor_name: format!("{name}:0"),
                        dtype: *dtype,
                        shape: shape.clone(),
                    },
                )
            })
            .collect();
        let sig = SignatureInfo {
            name: DEFAULT_SIGNATURE.into(),
            method_name: "tensorflow/serving/predict".into(),
            inputs,
            outputs: BTreeMap::new(),
        };
        BTreeMap::from([(DEFAULT_SIGNATURE.to_string(), sig)])
    }

    fn err(body: &str, sigs: &BTreeMap<String, SignatureInfo>) -> String {
        parse_tf_serving_request(body.as_bytes(), sigs)
            .unwrap_err()
            .to_string()
    }

    /// The fast route for plain rows must either decline or agree exactly with the general one,
    /// on valid bodies of every layout and on randomly broken ones.
    #[test]
    fn plain_rows_fast_route_agrees_with_the_document_route() {
        let sigs = signature(&[("x", DataType::Float, Some(vec![-1, 3]))]);
        let seeds = [
            r#"{"instances": [[1, 2.5, -3e2], [0.0, 0.1, 18446744073709551615]]}"#,
            r#"{"signature_name": "serving_default", "instances": [[1,2,3]]}"#,
            r#"{"instances": [[1,2,3]], "signature_name": "serving_default"} trailing"#,
            r#" { "instances" : [ [ NaN , -Infinity , 1 ] , [4,5,6] ] } "#,
            r#"{"instances": [[1,2,3],[4,5,6],[7,8,9]], "other": 1}"#,
            r#"{"instances": [[1,2,3]], "instances": [[4,5,6]]}"#,
            r#"{"instances": [[0.3294117748737335, 1e-45, 3.4028236e38]]}"#,
        ];
        let bodies = crate::test_support::mutated_bodies(
            &seeds,
            0x9e37_79b9_7f4a_7c15,
            b"[]{},:\" -.e0159NIx",
        );
        let mut fast = 0;
        for body in &bodies {
            let Some(quick) = parse_plain_rows(body, &sigs) else {
                continue;
            };
            fast += 1;
            let general = parse_document(body, &sigs).unwrap_or_else(|e| {
                panic!(
                    "{}: fast route accepted, general refused: {e:?}",
                    String::from_utf8_lossy(body)
                )
            });
            assert_eq!(quick.signature_name, general.signature_name);
            assert_eq!(quick.format, general.format);
            assert_eq!(quick.batch_size, general.batch_size);
            assert_eq!(
                crate::test_support::float_bits(&quick.inputs),
                crate::test_support::float_bits(&general.inputs),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(fast > 1_000, "the fast route took only {fast} bodies");
        // And it does take the plain case.
        assert!(parse_plain_rows(seeds[0].as_bytes(), &sigs).is_some());
    }

    #[test]
    fn row_plain_instances_make_a_batch() {
        let sigs = signature(&[("x", DataType::Float, Some(vec![-1, 3]))]);
        let req =
            parse_tf_serving_request(br#"{"instances": [[1, 2, 3], [4.5, 5, 6]]}"#, &sigs).unwrap();
        assert_eq!(req.format, RequestFormat::Row);
        assert_eq!(req.batch_size, Some(2));
        let x = &req.inputs["x"];
        assert_eq!(x.shape(), &[2, 3]);
        assert_eq!(
            x.data(),
            &TensorData::F32(vec![1.0, 2.0, 3.0, 4.5, 5.0, 6.0])
        );
    }

    #[test]
    fn row_named_instances_for_two_inputs() {
        let sigs = signature(&[("a", DataType::Int64, None), ("b", DataType::String, None)]);
        let req = parse_tf_serving_request(
            br#"{"instances": [{"a": 1, "b": "x"}, {"b": {"b64": "AAE="}, "a": -2}]}"#,
            &sigs,
        )
        .unwrap();
        assert_eq!(req.inputs["a"].data(), &TensorData::I64(vec![1, -2]));
        assert_eq!(
            req.inputs["b"].data(),
            &TensorData::Str(vec![b"x".to_vec(), vec![0, 1]])
        );
        let e = err(r#"{"instances": [{"a": 1}]}"#, &sigs);
        assert!(e.contains("keys must be equal to: a,b"), "{}", e);
        let e = err(r#"{"instances": [1, 2]}"#, &sigs);
        assert!(e.starts_with("instances is a plain list"), "{}", e);
    }

    #[test]
    fn columnar_inputs() {
        let sigs = signature(&[("x", DataType::Float, None)]);
        let req = parse_tf_serving_request(br#"{"inputs": {"x": [[1], [2]]}, "other": 1}"#, &sigs)
            .unwrap();
        assert_eq!(req.format, RequestFormat::Columnar);
        assert_eq!(req.inputs["x"].shape(), &[2, 1]);
        let req = parse_tf_serving_request(br#"{"inputs": 5}"#, &sigs).unwrap();
        assert_eq!(req.inputs["x"].shape(), &[] as &[usize]);
        let sigs = signature(&[("a", DataType::Float, None), ("b", DataType::Float, None)]);
        assert_eq!(
            err(r#"{"inputs": {"a": 1}}"#, &sigs),
            "Missing named input: b in 'inputs' object."
        );
    }

    #[test]
    fn request_level_errors() {
        let sigs = signature(&[("x", DataType::Float, Some(vec![-1, 2]))]);
        assert!(err("{", &sigs).starts_with("JSON Parse error: "));
        assert_eq!(err("[1]", &sigs), "JSON Value: [1] Is not object");
        assert!(err(r#"{"instances": [[1,2]], "inputs": [[1,2]]}"#, &sigs).contains("only one of"));
        assert_eq!(err("{}", &sigs), "Missing 'inputs' or 'instances' key");
        assert_eq!(
            err(r#"{"signature_name": "nope", "instances": [[1,2]]}"#, &sigs),
            "Serving signature name: \"nope\" not found in signature def"
        );
        assert!(
            err(r#"{"signature_name": 3, "instances": [[1,2]]}"#, &sigs)
                .contains("must be a string")
        );
        assert_eq!(
            err(r#"{"instances": []}"#, &sigs),
            "No values in 'instances' array"
        );
        assert_eq!(
            err(r#"{"instances": 3}"#, &sigs),
            "Expecting 'instances' to be an list/array"
        );
    }

    #[test]
    fn element_errors_are_wrapped_with_the_index() {
        let sigs = signature(&[("x", DataType::Float, Some(vec![-1, 2]))]);
        assert_eq!(
            err(r#"{"instances": [[1, 2], [1, "a"]]}"#, &sigs),
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: JSON \
             Value: \"a\" Type: String is not of expected type: float"
        );
        let e = err(r#"{"instances": [[1, 2], [1, 2, 3]]}"#, &sigs);
        assert!(
            e.contains("Encountered list at unexpected size: 3"),
            "{}",
            e
        );
        let e = err(r#"{"instances": [[1, 2, 3]]}"#, &sigs);
        assert_eq!(
            e,
            "input \"x\" of signature \"serving_default\" expects shape [-1, 2] but the request gives [1, 3]"
        );
        let ints = signature(&[("i", DataType::Int32, None)]);
        assert!(err(r#"{"instances": [1.0]}"#, &ints).contains("is not of expected type: int32"));
        assert!(err(r#"{"instances": [3000000000]}"#, &ints).contains("int32"));
        let half = signature(&[("h", DataType::Half, None)]);
        assert!(matches!(
            parse_tf_serving_request(br#"{"inputs": [1]}"#, &half),
            Err(PredictJsonError::TfServingUnimplemented(_))
        ));
    }
}
