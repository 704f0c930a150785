//! Predict request bodies → input tensors, and output tensors → response bodies, following TF
//! Serving's REST rules (serving_api.md A5): row (`instances`) and columnar (`inputs`) formats,
//! conversion by the signature's dtypes, `{"b64": …}` strings, `%g`-style float text and the
//! RapidJSON `PrettyWriter` layout of its responses.

use base64::Engine as _;
use savedmodel_runtime::{DataType, HostTensor, SignatureInfo, TensorData};
use std::collections::BTreeMap;

use crate::status::{ApiError, Code};
use predict_json::json::{self, Cursor, Json, Number, Rules};

/// TF Serving decodes with `absl::Base64Unescape`, which takes padded and unpadded text.
const TF_SERVING_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The signature used when a request names none.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

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
pub struct PredictRequest {
    pub signature_name: String,
    pub format: RequestFormat,
    pub inputs: BTreeMap<String, HostTensor>,
    /// Row format: the number of instances (dim 0 of every input).
    pub batch_size: Option<usize>,
}

/// Parses and converts a predict body for a model with `signatures`.
pub fn parse_predict_request(
    body: &[u8],
    signatures: &BTreeMap<String, SignatureInfo>,
) -> Result<PredictRequest, ApiError> {
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
) -> Option<PredictRequest> {
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
    Some(PredictRequest {
        signature_name,
        format: RequestFormat::Row,
        inputs,
        batch_size: Some(count),
    })
}

/// `[[x, …], …]`: equally long, non-empty rows of numbers, as `(values, rows, row length)`.
fn plain_rows(cursor: &mut Cursor<'_>, body_len: usize) -> Option<(Vec<f32>, usize, usize)> {
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
) -> Result<PredictRequest, ApiError> {
    let doc = json::parse(body, Rules::TfServing).map_err(|e| ApiError::invalid(e.to_string()))?;
    let Json::Object(_) = doc else {
        return Err(ApiError::invalid(format!(
            "JSON Value: {} Is not object",
            doc.to_compact()
        )));
    };
    let signature_name = match doc.get("signature_name") {
        None => DEFAULT_SIGNATURE.to_string(),
        Some(Json::Str(name)) => name.clone(),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "JSON Value: {} 'signature_name' key must be a string value.",
                other.to_compact()
            )));
        }
    };
    let signature = signatures.get(&signature_name).ok_or_else(|| {
        ApiError::invalid(format!(
            "Serving signature name: \"{signature_name}\" not found in signature def"
        ))
    })?;
    match (doc.get("instances"), doc.get("inputs")) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "JSON Value: Not formatted correctly expecting only one of 'inputs' or 'instances' \
             keys to exist",
        )),
        (None, None) => Err(ApiError::invalid("Missing 'inputs' or 'instances' key")),
        (Some(instances), None) => {
            let (inputs, batch) = convert_instances(instances, signature)?;
            check_shapes(&inputs, signature)?;
            Ok(PredictRequest {
                signature_name,
                format: RequestFormat::Row,
                inputs,
                batch_size: Some(batch),
            })
        }
        (None, Some(columns)) => {
            let inputs = convert_columns(columns, signature)?;
            check_shapes(&inputs, signature)?;
            Ok(PredictRequest {
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
) -> Result<(BTreeMap<String, HostTensor>, usize), ApiError> {
    let materialized: Vec<Json>;
    let items: &[Json] = match instances {
        Json::Array(items) => items,
        // Scalar instances of a single input: rare, so they are simply unpacked.
        Json::Numbers(numbers) => {
            materialized = numbers.iter().map(|n| Json::Number(*n)).collect();
            &materialized
        }
        _ => {
            return Err(ApiError::invalid(
                "Expecting 'instances' to be an list/array",
            ));
        }
    };
    let Some(first) = items.first() else {
        return Err(ApiError::invalid("No values in 'instances' array"));
    };
    let named = matches!(first, Json::Object(_)) && first.as_b64().is_none();
    let mut per_input: BTreeMap<&str, Vec<&Json>> = BTreeMap::new();
    if named {
        let expected: Vec<&str> = signature.inputs.keys().map(String::as_str).collect();
        for (index, item) in items.iter().enumerate() {
            let Json::Object(members) = item else {
                return Err(ApiError::invalid(format!(
                    "Expecting object but got list at item {index} of input list"
                )));
            };
            let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort_unstable();
            if keys != expected {
                return Err(ApiError::invalid(format!(
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
            return Err(ApiError::invalid(
                "instances is a plain list, but expecting list of objects as multiple input \
                 tensors required as per tensorinfo_map",
            ));
        };
        for (index, item) in items.iter().enumerate() {
            if matches!(item, Json::Object(_)) && item.as_b64().is_none() {
                return Err(ApiError::invalid(format!(
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
        let mut column = Column::new(
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
        tensors.insert(name.to_string(), column.into_tensor(shape)?);
    }
    Ok((tensors, items.len()))
}

fn wrap_instance_error(index: usize, error: ApiError) -> ApiError {
    ApiError::invalid(format!(
        "Failed to process element: {index} of 'instances' list. Error: {}: {}",
        error.code.name(),
        error.message
    ))
}

fn convert_columns(
    columns: &Json,
    signature: &SignatureInfo,
) -> Result<BTreeMap<String, HostTensor>, ApiError> {
    let mut tensors = BTreeMap::new();
    if matches!(columns, Json::Object(_)) && columns.as_b64().is_none() {
        for (name, spec) in &signature.inputs {
            let value = columns.get(name).ok_or_else(|| {
                ApiError::invalid(format!("Missing named input: {name} in 'inputs' object."))
            })?;
            tensors.insert(name.clone(), convert_whole(value, spec.dtype)?);
        }
    } else {
        let mut names = signature.inputs.iter();
        let (Some((name, spec)), None) = (names.next(), names.next()) else {
            return Err(ApiError::invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors \
                 required as per tensorinfo_map",
            ));
        };
        tensors.insert(name.clone(), convert_whole(columns, spec.dtype)?);
    }
    Ok(tensors)
}

fn convert_whole(value: &Json, dtype: DataType) -> Result<HostTensor, ApiError> {
    let shape = shape_of(value);
    let mut column = Column::new(dtype, shape.iter().product())?;
    fill(value, &shape, 0, &mut column)?;
    column.into_tensor(shape)
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

fn fill(value: &Json, shape: &[usize], level: usize, column: &mut Column) -> Result<(), ApiError> {
    match (value, shape.split_first()) {
        (Json::Array(items), Some((&expected, rest))) => {
            if items.len() != expected {
                return Err(ApiError::invalid(format!(
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
                return Err(ApiError::invalid(format!(
                    "Encountered list at unexpected size: {} at level: {level} expected size: \
                     {expected}",
                    numbers.len()
                )));
            }
            match numbers.first() {
                Some(first) if !rest.is_empty() => Err(ApiError::invalid(format!(
                    "Encountered scalar at incorrect level: {}, expected a list: {}",
                    level + 1,
                    Json::Number(*first).to_compact()
                ))),
                _ => column.push_numbers(numbers),
            }
        }
        (Json::Array(_) | Json::Numbers(_), None) => Err(ApiError::invalid(format!(
            "Encountered list at incorrect level: {level}, expected a scalar value: {}",
            value.to_compact()
        ))),
        (_, Some(_)) => Err(ApiError::invalid(format!(
            "Encountered scalar at incorrect level: {level}, expected a list: {}",
            value.to_compact()
        ))),
        (_, None) => column.push(value),
    }
}

/// Rejects inputs whose shape contradicts the signature (rank, or a known dimension), so a
/// wrong instance length is reported against the input's name instead of deep in the graph.
fn check_shapes(
    inputs: &BTreeMap<String, HostTensor>,
    signature: &SignatureInfo,
) -> Result<(), ApiError> {
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
            return Err(ApiError::invalid(format!(
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

/// Element values of one input tensor while they are being converted.
enum Column {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    Bool(Vec<bool>),
    Str(Vec<Vec<u8>>),
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

impl Column {
    fn new(dtype: DataType, capacity: usize) -> Result<Column, ApiError> {
        Ok(match dtype {
            DataType::Float => Column::F32(Vec::with_capacity(capacity)),
            DataType::Double => Column::F64(Vec::with_capacity(capacity)),
            DataType::Int32 => Column::I32(Vec::with_capacity(capacity)),
            DataType::Int64 => Column::I64(Vec::with_capacity(capacity)),
            DataType::UInt8 => Column::U8(Vec::with_capacity(capacity)),
            DataType::Int16 => Column::I16(Vec::with_capacity(capacity)),
            DataType::Int8 => Column::I8(Vec::with_capacity(capacity)),
            DataType::Bool => Column::Bool(Vec::with_capacity(capacity)),
            DataType::String => Column::Str(Vec::with_capacity(capacity)),
            DataType::Half | DataType::Resource | DataType::Variant => {
                return Err(ApiError::new(
                    Code::Unimplemented,
                    format!(
                        "Conversion of JSON Value to type: {} is not supported",
                        short_name(dtype)
                    ),
                ));
            }
        })
    }

    fn dtype(&self) -> DataType {
        match self {
            Column::F32(_) => DataType::Float,
            Column::F64(_) => DataType::Double,
            Column::I32(_) => DataType::Int32,
            Column::I64(_) => DataType::Int64,
            Column::U8(_) => DataType::UInt8,
            Column::I16(_) => DataType::Int16,
            Column::I8(_) => DataType::Int8,
            Column::Bool(_) => DataType::Bool,
            Column::Str(_) => DataType::String,
        }
    }

    fn push(&mut self, value: &Json) -> Result<(), ApiError> {
        let dtype = self.dtype();
        let mismatch = || {
            ApiError::invalid(format!(
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
        match self {
            Column::F32(v) => v.push(as_f64().ok_or_else(mismatch)? as f32),
            Column::F64(v) => v.push(as_f64().ok_or_else(mismatch)?),
            Column::I32(v) => v.push(as_i32().ok_or_else(mismatch)?),
            Column::I16(v) => v.push(as_i32().ok_or_else(mismatch)? as i16),
            Column::I8(v) => v.push(as_i32().ok_or_else(mismatch)? as i8),
            Column::U8(v) => v.push(as_i32().ok_or_else(mismatch)? as u8),
            Column::I64(v) => match value {
                Json::Number(Number::Int(i)) => v.push(*i),
                _ => return Err(mismatch()),
            },
            Column::Bool(v) => match value {
                Json::Bool(b) => v.push(*b),
                _ => return Err(mismatch()),
            },
            Column::Str(v) => match value {
                Json::Str(s) => v.push(s.as_bytes().to_vec()),
                _ => match value.as_b64() {
                    Some(text) => v.push(TF_SERVING_BASE64.decode(text).map_err(|_| {
                        ApiError::invalid(format!("Unable to base64 decode: {text}"))
                    })?),
                    None => return Err(mismatch()),
                },
            },
        }
        Ok(())
    }

    /// A run of numbers at the innermost level: the hot path of every float tensor.
    fn push_numbers(&mut self, numbers: &[Number]) -> Result<(), ApiError> {
        match self {
            Column::F32(v) => v.extend(numbers.iter().map(|n| n.as_f64() as f32)),
            Column::F64(v) => v.extend(numbers.iter().map(|n| n.as_f64())),
            _ => {
                return numbers
                    .iter()
                    .try_for_each(|n| self.push(&Json::Number(*n)));
            }
        }
        Ok(())
    }

    fn into_tensor(self, shape: Vec<usize>) -> Result<HostTensor, ApiError> {
        let data = match self {
            Column::F32(v) => TensorData::F32(v),
            Column::F64(v) => TensorData::F64(v),
            Column::I32(v) => TensorData::I32(v),
            Column::I64(v) => TensorData::I64(v),
            Column::U8(v) => TensorData::U8(v),
            Column::I16(v) => TensorData::I16(v),
            Column::I8(v) => TensorData::I8(v),
            Column::Bool(v) => TensorData::Bool(v),
            Column::Str(v) => TensorData::Str(v),
        };
        HostTensor::new(shape, data).map_err(|e| ApiError::internal(e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Responses: predict-json writes TF Serving's bodies; these adapt its errors to `ApiError`.

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
            predict_json::tf_serving_predictions_json(&crate::batching::slice_rows(outputs, rows)?)
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
    use savedmodel_runtime::TensorSpec;

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

    fn err(body: &str, sigs: &BTreeMap<String, SignatureInfo>) -> ApiError {
        parse_predict_request(body.as_bytes(), sigs).unwrap_err()
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
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let noise = b"[]{},:\" -.e0159NIx";
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
            // Bit for bit (NaN payloads and the sign of zero included).
            let bits =
                |inputs: &BTreeMap<String, HostTensor>| -> Vec<(String, Vec<usize>, Vec<u32>)> {
                    inputs
                        .iter()
                        .map(|(name, t)| match t.data() {
                            TensorData::F32(v) => (
                                name.clone(),
                                t.shape().to_vec(),
                                v.iter().map(|x| x.to_bits()).collect(),
                            ),
                            other => panic!("{other:?}"),
                        })
                        .collect()
                };
            assert_eq!(
                bits(&quick.inputs),
                bits(&general.inputs),
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
            parse_predict_request(br#"{"instances": [[1, 2, 3], [4.5, 5, 6]]}"#, &sigs).unwrap();
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
        let req = parse_predict_request(
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
        assert!(
            e.message.contains("keys must be equal to: a,b"),
            "{}",
            e.message
        );
        let e = err(r#"{"instances": [1, 2]}"#, &sigs);
        assert!(
            e.message.starts_with("instances is a plain list"),
            "{}",
            e.message
        );
    }

    #[test]
    fn columnar_inputs() {
        let sigs = signature(&[("x", DataType::Float, None)]);
        let req =
            parse_predict_request(br#"{"inputs": {"x": [[1], [2]]}, "other": 1}"#, &sigs).unwrap();
        assert_eq!(req.format, RequestFormat::Columnar);
        assert_eq!(req.inputs["x"].shape(), &[2, 1]);
        let req = parse_predict_request(br#"{"inputs": 5}"#, &sigs).unwrap();
        assert_eq!(req.inputs["x"].shape(), &[] as &[usize]);
        let sigs = signature(&[("a", DataType::Float, None), ("b", DataType::Float, None)]);
        assert_eq!(
            err(r#"{"inputs": {"a": 1}}"#, &sigs).message,
            "Missing named input: b in 'inputs' object."
        );
    }

    #[test]
    fn request_level_errors() {
        let sigs = signature(&[("x", DataType::Float, Some(vec![-1, 2]))]);
        assert!(err("{", &sigs).message.starts_with("JSON Parse error: "));
        assert_eq!(err("[1]", &sigs).message, "JSON Value: [1] Is not object");
        assert!(
            err(r#"{"instances": [[1,2]], "inputs": [[1,2]]}"#, &sigs)
                .message
                .contains("only one of")
        );
        assert_eq!(
            err("{}", &sigs).message,
            "Missing 'inputs' or 'instances' key"
        );
        assert_eq!(
            err(r#"{"signature_name": "nope", "instances": [[1,2]]}"#, &sigs).message,
            "Serving signature name: \"nope\" not found in signature def"
        );
        assert!(
            err(r#"{"signature_name": 3, "instances": [[1,2]]}"#, &sigs)
                .message
                .contains("must be a string")
        );
        assert_eq!(
            err(r#"{"instances": []}"#, &sigs).message,
            "No values in 'instances' array"
        );
        assert_eq!(
            err(r#"{"instances": 3}"#, &sigs).message,
            "Expecting 'instances' to be an list/array"
        );
    }

    #[test]
    fn element_errors_are_wrapped_with_the_index() {
        let sigs = signature(&[("x", DataType::Float, Some(vec![-1, 2]))]);
        assert_eq!(
            err(r#"{"instances": [[1, 2], [1, "a"]]}"#, &sigs).message,
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: JSON \
             Value: \"a\" Type: String is not of expected type: float"
        );
        let e = err(r#"{"instances": [[1, 2], [1, 2, 3]]}"#, &sigs);
        assert!(
            e.message.contains("Encountered list at unexpected size: 3"),
            "{}",
            e.message
        );
        let e = err(r#"{"instances": [[1, 2, 3]]}"#, &sigs);
        assert_eq!(
            e.message,
            "input \"x\" of signature \"serving_default\" expects shape [-1, 2] but the request gives [1, 3]"
        );
        let ints = signature(&[("i", DataType::Int32, None)]);
        assert!(
            err(r#"{"instances": [1.0]}"#, &ints)
                .message
                .contains("is not of expected type: int32")
        );
        assert!(
            err(r#"{"instances": [3000000000]}"#, &ints)
                .message
                .contains("int32")
        );
        let half = signature(&[("h", DataType::Half, None)]);
        assert_eq!(err(r#"{"inputs": [1]}"#, &half).code, Code::Unimplemented);
    }

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
