//! KServe V2 / Open Inference Protocol REST bodies ↔ tensors (`docs/reference/inference_protocols.md`
//! §2.1): `{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?}`
//! in, `{"model_name", "model_version"?, "id"?, "outputs": [{"name", "datatype", "shape", "data"}]}`
//! out.
//!
//! `data` may be flat (row-major) or nested; either way its element count must equal the product of
//! `shape`, and its elements must be of the declared `datatype`, which must be the signature's. Every
//! error names the input (or output) and the field at fault. The binary tensor extension
//! (`Inference-Header-Content-Length`) is not supported; the server refuses such bodies by name.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use savedmodel_format::{DataType, HostTensor, SignatureInfo, TensorData};

use crate::PredictJsonError;
use crate::json::{self, Cursor, Json, Number, Rules, write_string};

/// The V2 datatype name of a TensorFlow dtype (`FP32` for `DT_FLOAT`); `None` where V2 has none.
pub fn v2_datatype(dtype: DataType) -> Option<&'static str> {
    Some(match dtype {
        DataType::Float => "FP32",
        DataType::Double => "FP64",
        DataType::Int32 => "INT32",
        DataType::Int64 => "INT64",
        DataType::Int16 => "INT16",
        DataType::Int8 => "INT8",
        DataType::UInt8 => "UINT8",
        DataType::Bool => "BOOL",
        DataType::String => "BYTES",
        DataType::Half => "FP16",
        DataType::Resource | DataType::Variant => return None,
    })
}

/// A parsed V2 inference request, checked against the signature it addresses.
#[derive(Debug)]
pub struct V2InferRequest {
    /// The request's `id`, echoed in the response.
    pub id: Option<String>,
    pub inputs: BTreeMap<String, HostTensor>,
    /// The outputs asked for by name; `None` means all of them.
    pub outputs: Option<Vec<String>>,
}

fn v2_error(message: impl Into<String>) -> PredictJsonError {
    PredictJsonError::V2(message.into())
}

/// Parses a V2 `infer` body (plain JSON) and converts its inputs for `signature`.
pub fn parse_v2_infer_request(
    body: &[u8],
    signature: &SignatureInfo,
) -> Result<V2InferRequest, PredictJsonError> {
    match parse_plain_fp32(body, signature) {
        Some(request) => Ok(request),
        None => parse_document(body, signature),
    }
}

/// The common body, `{"id"?: "…", "inputs": [{"name", "shape", "datatype": "FP32", "data"}]}`
/// with flat or row-nested numbers, for a signature with a single float input: the numbers go
/// from the text straight into one `f32` buffer (the TF Serving row reader's loop), with no
/// tree. Anything else (other keys, several inputs, other datatypes, deeper nesting, any
/// mismatch or malformed text) gives `None`, and the general route then builds the same tensor
/// or names the error. Numbers convert as there: read as a double, narrowed to `f32`.
fn parse_plain_fp32(body: &[u8], signature: &SignatureInfo) -> Option<V2InferRequest> {
    let mut names = signature.inputs.iter();
    let (Some((input_name, spec)), None) = (names.next(), names.next()) else {
        return None;
    };
    if spec.dtype != DataType::Float {
        return None;
    }
    let mut cursor = Cursor::new(body, Rules::Gcloud);
    if !cursor.eat(b'{') {
        return None;
    }
    let mut id = None;
    let mut input = None;
    loop {
        let key = cursor.string()?.ok()?;
        if !cursor.eat(b':') {
            return None;
        }
        match key.as_ref() {
            "id" if id.is_none() => id = Some(cursor.string()?.ok()?.into_owned()),
            "inputs" if input.is_none() => {
                if !cursor.eat(b'[') {
                    return None;
                }
                input = Some(plain_fp32_input(&mut cursor, body)?);
                if !cursor.eat(b']') {
                    return None;
                }
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
    if !cursor.at_end() {
        return None;
    }
    let (name, shape, values) = input?;
    if &name != input_name {
        return None;
    }
    let dims = spec.shape.as_ref()?;
    let fits = dims.len() == shape.len()
        && dims
            .iter()
            .zip(&shape)
            .all(|(&d, &s)| d < 0 || d as usize == s);
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    if !fits || count != values.len() {
        return None;
    }
    let tensor = HostTensor::new(shape, TensorData::F32(values)).ok()?;
    Some(V2InferRequest {
        id,
        inputs: BTreeMap::from([(name, tensor)]),
        outputs: None,
    })
}

/// One `{"name", "shape", "datatype": "FP32", "data"}` object (keys in any order, each once), as
/// `(name, shape, values)`.
fn plain_fp32_input(
    cursor: &mut Cursor<'_>,
    body: &[u8],
) -> Option<(String, Vec<usize>, Vec<f32>)> {
    if !cursor.eat(b'{') {
        return None;
    }
    let (mut name, mut shape, mut datatype, mut data) = (None, None, None, None);
    loop {
        let key = cursor.string()?.ok()?;
        if !cursor.eat(b':') {
            return None;
        }
        match key.as_ref() {
            "name" if name.is_none() => name = Some(cursor.string()?.ok()?.into_owned()),
            "datatype" if datatype.is_none() => {
                datatype = Some(cursor.string()?.ok()? == "FP32");
            }
            "shape" if shape.is_none() => {
                // Dimensions must be plain non-negative integers, as the general route wants.
                let start = cursor.offset();
                let mut dims = Vec::new();
                cursor.f32_array(&mut dims)?;
                let text = body.get(start..cursor.offset())?;
                if !text
                    .iter()
                    .all(|b| b.is_ascii_digit() || b" \t\r\n,[]".contains(b))
                {
                    return None;
                }
                // f32 holds integers exactly up to 2^24; larger shapes take the general route.
                if dims.iter().any(|&d| d > 16_777_216.0) {
                    return None;
                }
                shape = Some(dims.iter().map(|&d| d as usize).collect::<Vec<_>>());
            }
            "data" if data.is_none() => {
                let mut values = Vec::new();
                if cursor.peek()? != b'[' {
                    return None;
                }
                // `[[…], …]`: rows; `[x, …]`: flat.
                let after = body[cursor.offset() + 1..]
                    .iter()
                    .find(|b| !b" \t\r\n".contains(b))?;
                if *after == b'[' {
                    let (rows, _, _) = crate::tf_serving_request::plain_rows(cursor, body.len())?;
                    values = rows;
                } else {
                    cursor.f32_array(&mut values)?;
                }
                data = Some(values);
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
    if datatype != Some(true) {
        return None;
    }
    Some((name?, shape?, data?))
}

/// Any V2 body: the document is read into a tree and converted.
fn parse_document(
    body: &[u8],
    signature: &SignatureInfo,
) -> Result<V2InferRequest, PredictJsonError> {
    let doc = json::parse(body, Rules::Gcloud)
        .map_err(|e| v2_error(format!("invalid JSON in the request body: {e}")))?;
    if !matches!(doc, Json::Object(_)) {
        return Err(v2_error(format!(
            "the request body must be a JSON object, found {}",
            doc.type_name()
        )));
    }
    let id = match doc.get("id") {
        None | Some(Json::Null) => None,
        Some(Json::Str(id)) => Some(id.clone()),
        Some(other) => {
            return Err(v2_error(format!(
                "\"id\" must be a string, found {}",
                other.type_name()
            )));
        }
    };
    let items = match doc.get("inputs") {
        Some(Json::Array(items)) if !items.is_empty() => items,
        Some(Json::Array(_)) => return Err(v2_error("\"inputs\" is empty")),
        Some(other) => {
            return Err(v2_error(format!(
                "\"inputs\" must be an array of tensors, found {}",
                other.type_name()
            )));
        }
        None => return Err(v2_error("the request has no \"inputs\"")),
    };
    let mut inputs = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        let (name, tensor) = convert_input(index, item, signature)?;
        if inputs.insert(name.clone(), tensor).is_some() {
            return Err(v2_error(format!("input \"{name}\" is given twice")));
        }
    }
    if let Some(missing) = signature.inputs.keys().find(|k| !inputs.contains_key(*k)) {
        return Err(v2_error(format!(
            "input \"{missing}\" is missing; the model expects inputs {}",
            quoted_names(signature.inputs.keys())
        )));
    }
    let outputs = match doc.get("outputs") {
        None | Some(Json::Null) => None,
        Some(Json::Array(items)) => {
            let mut names = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let Some(Json::Str(name)) = item.get("name") else {
                    return Err(v2_error(format!(
                        "outputs[{index}] must be an object with a string \"name\""
                    )));
                };
                if !signature.outputs.contains_key(name) {
                    return Err(v2_error(format!(
                        "outputs[{index}]: the model has no output \"{name}\"; its outputs are {}",
                        quoted_names(signature.outputs.keys())
                    )));
                }
                names.push(name.clone());
            }
            Some(names)
        }
        Some(other) => {
            return Err(v2_error(format!(
                "\"outputs\" must be an array, found {}",
                other.type_name()
            )));
        }
    };
    Ok(V2InferRequest {
        id,
        inputs,
        outputs,
    })
}

fn quoted_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn convert_input(
    index: usize,
    item: &Json,
    signature: &SignatureInfo,
) -> Result<(String, HostTensor), PredictJsonError> {
    let at = |field: &str| format!("inputs[{index}].{field}");
    if !matches!(item, Json::Object(_)) {
        return Err(v2_error(format!(
            "inputs[{index}] must be an object, found {}",
            item.type_name()
        )));
    }
    let Some(Json::Str(name)) = item.get("name") else {
        return Err(v2_error(format!("{} must be a string", at("name"))));
    };
    let spec = signature.inputs.get(name).ok_or_else(|| {
        v2_error(format!(
            "unexpected input \"{name}\"; the model expects inputs {}",
            quoted_names(signature.inputs.keys())
        ))
    })?;
    let Some(Json::Str(datatype)) = item.get("datatype") else {
        return Err(v2_error(format!("{} must be a string", at("datatype"))));
    };
    let expected = v2_datatype(spec.dtype).unwrap_or("(none)");
    if datatype != expected {
        return Err(v2_error(format!(
            "input \"{name}\" has datatype {datatype}, but the model expects {expected}"
        )));
    }
    let shape = shape_field(item.get("shape")).ok_or_else(|| {
        v2_error(format!(
            "{} must be an array of non-negative integers",
            at("shape")
        ))
    })?;
    if let Some(dims) = &spec.shape {
        let fits = dims.len() == shape.len()
            && dims
                .iter()
                .zip(&shape)
                .all(|(&d, &s)| d < 0 || d as usize == s);
        if !fits {
            return Err(v2_error(format!(
                "input \"{name}\" has shape {shape:?}, but the model expects {dims:?} (-1: any size)"
            )));
        }
    }
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| v2_error(format!("input \"{name}\": shape {shape:?} is too large")))?;
    let Some(data) = item.get("data") else {
        return Err(v2_error(format!(
            "input \"{name}\" has no \"data\" (binary tensor data is not supported)"
        )));
    };
    let mut values = TensorData::with_capacity(spec.dtype, count).ok_or_else(|| {
        v2_error(format!(
            "input \"{name}\" has datatype {expected}, which JSON data cannot be converted to"
        ))
    })?;
    flatten(data, &mut values, name)?;
    if values.len() != count {
        return Err(v2_error(format!(
            "input \"{name}\" has {} elements in \"data\", but shape {shape:?} needs {count}",
            values.len()
        )));
    }
    let tensor =
        HostTensor::new(shape, values).map_err(|e| v2_error(format!("input \"{name}\": {e}")))?;
    Ok((name.clone(), tensor))
}

fn shape_field(value: Option<&Json>) -> Option<Vec<usize>> {
    match value? {
        Json::Numbers(dims) => dims
            .iter()
            .map(|d| match d {
                Number::Int(i) => usize::try_from(*i).ok(),
                _ => None,
            })
            .collect(),
        Json::Array(items) if items.is_empty() => Some(Vec::new()),
        _ => None,
    }
}

/// Appends the elements of flat or nested `data` to `out`, checking each against its dtype.
fn flatten(data: &Json, out: &mut TensorData, name: &str) -> Result<(), PredictJsonError> {
    let datatype = v2_datatype(out.dtype()).unwrap_or("?");
    let wrong = |value: &Json| {
        v2_error(format!(
            "input \"{name}\": {} is not a valid {datatype} element",
            value.to_compact(),
        ))
    };
    match data {
        Json::Array(items) => items.iter().try_for_each(|item| flatten(item, out, name)),
        Json::Numbers(numbers) => match out {
            TensorData::F32(v) => {
                v.extend(numbers.iter().map(|n| n.as_f64() as f32));
                Ok(())
            }
            TensorData::F64(v) => {
                v.extend(numbers.iter().map(|n| n.as_f64()));
                Ok(())
            }
            _ => numbers.iter().try_for_each(|n| {
                push_scalar(&Json::Number(*n), out).ok_or_else(|| wrong(&Json::Number(*n)))
            }),
        },
        scalar => push_scalar(scalar, out).ok_or_else(|| wrong(scalar)),
    }
}

/// Appends one scalar if it fits the element type (integers must be integral and in range).
fn push_scalar(value: &Json, out: &mut TensorData) -> Option<()> {
    let int = || match value {
        Json::Number(Number::Int(i)) => Some(*i),
        Json::Number(Number::UInt(_)) => None,
        Json::Number(Number::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        _ => None,
    };
    match out {
        TensorData::F32(v) => match value {
            Json::Number(n) => v.push(n.as_f64() as f32),
            _ => return None,
        },
        TensorData::F64(v) => match value {
            Json::Number(n) => v.push(n.as_f64()),
            _ => return None,
        },
        TensorData::I32(v) => v.push(i32::try_from(int()?).ok()?),
        TensorData::I64(v) => v.push(int()?),
        TensorData::I16(v) => v.push(i16::try_from(int()?).ok()?),
        TensorData::I8(v) => v.push(i8::try_from(int()?).ok()?),
        TensorData::U8(v) => v.push(u8::try_from(int()?).ok()?),
        TensorData::Bool(v) => match value {
            Json::Bool(b) => v.push(*b),
            _ => return None,
        },
        TensorData::Str(v) => match value {
            Json::Str(s) => v.push(s.as_bytes().to_vec()),
            _ => return None,
        },
    }
    Some(())
}

/// The V2 response body: the outputs named in `selected` (all when `None`), flattened row-major.
pub fn v2_infer_response_json(
    model_name: &str,
    model_version: Option<&str>,
    id: Option<&str>,
    outputs: &BTreeMap<String, HostTensor>,
    selected: Option<&[String]>,
) -> Result<String, PredictJsonError> {
    let mut out = String::with_capacity(256);
    out.push_str("{\"model_name\":");
    write_string(&mut out, model_name);
    if let Some(version) = model_version {
        out.push_str(",\"model_version\":");
        write_string(&mut out, version);
    }
    if let Some(id) = id {
        out.push_str(",\"id\":");
        write_string(&mut out, id);
    }
    out.push_str(",\"outputs\":[");
    let mut first = true;
    for (name, tensor) in outputs {
        if selected.is_some_and(|names| !names.iter().any(|n| n == name)) {
            continue;
        }
        let datatype = v2_datatype(tensor.dtype()).ok_or_else(|| {
            v2_error(format!(
                "output \"{name}\" has dtype {}, which V2 cannot carry",
                tensor.dtype().tf_name()
            ))
        })?;
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"name\":");
        write_string(&mut out, name);
        let _ = write!(
            out,
            ",\"datatype\":\"{datatype}\",\"shape\":{:?},\"data\":[",
            tensor.shape()
        );
        write_elements(&mut out, tensor.data());
        out.push_str("]}");
    }
    out.push_str("]}");
    Ok(out)
}

fn write_elements(out: &mut String, data: &TensorData) {
    fn join<T>(out: &mut String, values: &[T], mut one: impl FnMut(&mut String, &T)) {
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            one(out, v);
        }
    }
    match data {
        TensorData::F32(v) => join(out, v, |o, x| {
            write_float(o, f64::from(*x), format_args!("{x:?}"))
        }),
        TensorData::F64(v) => join(out, v, |o, x| write_float(o, *x, format_args!("{x:?}"))),
        TensorData::I32(v) => join(out, v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        TensorData::I64(v) => join(out, v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        TensorData::I16(v) => join(out, v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        TensorData::I8(v) => join(out, v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        TensorData::U8(v) => join(out, v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        TensorData::Bool(v) => join(out, v, |o, x| o.push_str(if *x { "true" } else { "false" })),
        TensorData::Str(v) => join(out, v, |o, x| write_string(o, &String::from_utf8_lossy(x))),
    }
}

/// Shortest round-trip text (Rust's `Debug`, which uses an exponent for very large and small
/// magnitudes); non-finite values as Python's `json` writes them (KServe's own server does).
fn write_float(out: &mut String, value: f64, shortest: std::fmt::Arguments<'_>) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let _ = out.write_fmt(shortest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use savedmodel_format::TensorSpec;

    fn signature() -> SignatureInfo {
        let spec = |dtype, shape: Vec<i64>| TensorSpec {
            tensor_name: "t:0".into(),
            dtype,
            shape: Some(shape),
        };
        SignatureInfo {
            name: "serving_default".into(),
            method_name: "tensorflow/serving/predict".into(),
            inputs: BTreeMap::from([("image".to_string(), spec(DataType::Float, vec![-1, 3]))]),
            outputs: BTreeMap::from([
                ("class".to_string(), spec(DataType::Int64, vec![-1])),
                (
                    "probabilities".to_string(),
                    spec(DataType::Float, vec![-1, 2]),
                ),
            ]),
        }
    }

    /// The fast route for plain FP32 bodies must either decline or agree exactly with the
    /// document route, on valid bodies of every layout and on randomly broken ones.
    #[test]
    fn plain_fp32_fast_route_agrees_with_the_document_route() {
        let sig = signature();
        let seeds = [
            r#"{"id":"7","inputs":[{"name":"image","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6.5]}]}"#,
            r#"{"inputs":[{"data":[[1,2,3],[4,5,6.5]],"datatype":"FP32","shape":[2,3],"name":"image"}]}"#,
            r#" { "inputs" : [ { "name" : "image" , "shape" : [ 1 , 3 ] , "datatype" : "FP32" , "data" : [ [ 1e-45 , -0.0 , 3.4028236e38 ] ] } ] } "#,
            r#"{"inputs":[{"name":"image","shape":[1,3],"datatype":"FP32","data":[1,2,3]}],"outputs":[{"name":"class"}]}"#,
            r#"{"inputs":[{"name":"image","shape":[1,3],"datatype":"FP64","data":[1,2,3]}]}"#,
            r#"{"inputs":[{"name":"image","shape":[1.0,3],"datatype":"FP32","data":[1,2,3]}]}"#,
            r#"{"inputs":[{"name":"image","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]} x"#,
        ];
        let bodies =
            crate::test_support::mutated_bodies(&seeds, 0x5eed_0213, b"[]{},:\" -.e0159Nx");
        let mut fast = 0;
        for body in &bodies {
            let Some(quick) = parse_plain_fp32(body, &sig) else {
                continue;
            };
            fast += 1;
            let general = parse_document(body, &sig).unwrap_or_else(|e| {
                panic!(
                    "{}: fast route accepted, general refused: {e:?}",
                    String::from_utf8_lossy(body)
                )
            });
            assert_eq!(quick.id, general.id, "{}", String::from_utf8_lossy(body));
            assert_eq!(quick.outputs, general.outputs);
            assert_eq!(
                crate::test_support::float_bits(&quick.inputs),
                crate::test_support::float_bits(&general.inputs),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Three of the seeds are plain; about 500 of their mutations stay plain and valid.
        assert!(fast > 300, "the fast route took only {fast} bodies");
        assert!(parse_plain_fp32(seeds[0].as_bytes(), &sig).is_some());
        assert!(parse_plain_fp32(seeds[1].as_bytes(), &sig).is_some());
        for declined in &seeds[3..] {
            assert!(
                parse_plain_fp32(declined.as_bytes(), &sig).is_none(),
                "{declined}"
            );
        }
    }

    fn err(body: &str) -> String {
        parse_v2_infer_request(body.as_bytes(), &signature())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn flat_and_nested_data_make_the_same_tensor() {
        let flat = r#"{"id":"7","inputs":[{"name":"image","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6.5]}],"outputs":[{"name":"class"}]}"#;
        let nested = r#"{"inputs":[{"name":"image","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6.5]]}]}"#;
        let a = parse_v2_infer_request(flat.as_bytes(), &signature()).unwrap();
        let b = parse_v2_infer_request(nested.as_bytes(), &signature()).unwrap();
        assert_eq!(a.inputs, b.inputs);
        assert_eq!(a.inputs["image"].shape(), &[2, 3]);
        assert_eq!(
            a.inputs["image"].data(),
            &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5])
        );
        assert_eq!(a.id.as_deref(), Some("7"));
        assert_eq!(a.outputs, Some(vec!["class".to_string()]));
        assert_eq!(b.outputs, None);
    }

    #[test]
    fn bad_requests_name_the_field_at_fault() {
        assert!(err("{").starts_with("invalid JSON in the request body"));
        assert_eq!(
            err("[]"),
            "the request body must be a JSON object, found Array"
        );
        assert_eq!(err("{}"), "the request has no \"inputs\"");
        assert_eq!(
            err(r#"{"inputs":[{"name":"image","shape":[1,3],"datatype":"FP64","data":[1,2,3]}]}"#),
            "input \"image\" has datatype FP64, but the model expects FP32"
        );
        assert_eq!(
            err(
                r#"{"inputs":[{"name":"image","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#
            ),
            "input \"image\" has shape [1, 4], but the model expects [-1, 3] (-1: any size)"
        );
        assert_eq!(
            err(r#"{"inputs":[{"name":"image","shape":[2,3],"datatype":"FP32","data":[1,2,3]}]}"#),
            "input \"image\" has 3 elements in \"data\", but shape [2, 3] needs 6"
        );
        assert_eq!(
            err(
                r#"{"inputs":[{"name":"image","shape":[1,3],"datatype":"FP32","data":[1,"x",3]}]}"#
            ),
            "input \"image\": \"x\" is not a valid FP32 element"
        );
        assert_eq!(
            err(r#"{"inputs":[{"name":"pixels","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#),
            "unexpected input \"pixels\"; the model expects inputs \"image\""
        );
        assert_eq!(
            err(
                r#"{"inputs":[{"name":"image","shape":[1,3],"datatype":"FP32","data":[1,2,3]}],"outputs":[{"name":"logits"}]}"#
            ),
            "outputs[0]: the model has no output \"logits\"; its outputs are \"class\", \"probabilities\""
        );
        assert_eq!(
            err(r#"{"inputs":[{"name":"image","shape":[1,-3],"datatype":"FP32","data":[1,2,3]}]}"#),
            "inputs[0].shape must be an array of non-negative integers"
        );
    }

    #[test]
    fn response_carries_selected_outputs_flat() {
        let outputs = BTreeMap::from([
            (
                "class".to_string(),
                HostTensor::new(vec![2], TensorData::I64(vec![1, 0])).unwrap(),
            ),
            (
                "probabilities".to_string(),
                HostTensor::new(vec![2, 2], TensorData::F32(vec![0.25, 0.75, 1.0, f32::NAN]))
                    .unwrap(),
            ),
        ]);
        assert_eq!(
            v2_infer_response_json("mnist", Some("1"), Some("7"), &outputs, None).unwrap(),
            r#"{"model_name":"mnist","model_version":"1","id":"7","outputs":[{"name":"class","datatype":"INT64","shape":[2],"data":[1,0]},{"name":"probabilities","datatype":"FP32","shape":[2, 2],"data":[0.25,0.75,1.0,NaN]}]}"#
        );
        let only = ["class".to_string()];
        assert_eq!(
            v2_infer_response_json("mnist", None, None, &outputs, Some(&only)).unwrap(),
            r#"{"model_name":"mnist","outputs":[{"name":"class","datatype":"INT64","shape":[2],"data":[1,0]}]}"#
        );
    }
}
