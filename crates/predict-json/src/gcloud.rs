//! Output tensors -> what `gcloud ai-platform local predict` / `predict` print.

use std::collections::BTreeMap;

use base64::Engine as _;
use savedmodel_format::{HostTensor, TensorData};

use crate::PredictJsonError;
use crate::float_format::gcloud_table_float;
use crate::py_value::PyValue;

/// gcloud's prediction rows for a batch of outputs, as the Cloud ML SDK's `TensorFlowModel`
/// builds them for local prediction: one dict per instance keyed by output alias (even for a
/// single output), `numpy.tolist()` values (a float32 becomes its exact double), a scalar output
/// counted as a batch of one, string outputs decoded as UTF-8 text or, for aliases ending in
/// `_bytes`, `{"b64": ...}`.
pub fn gcloud_predictions(
    outputs: &BTreeMap<String, HostTensor>,
) -> Result<Vec<PyValue>, PredictJsonError> {
    if outputs.is_empty() {
        return Err(PredictJsonError::InvalidOutput {
            output: String::new(),
            message: "the signature has no outputs".to_string(),
        });
    }
    let mut columns: Vec<(&String, Vec<PyValue>)> = Vec::with_capacity(outputs.len());
    for (alias, tensor) in outputs {
        columns.push((alias, tensor_rows(alias, tensor)?));
    }
    let batch = columns[0].1.len();
    if columns.iter().any(|(_, rows)| rows.len() != batch) {
        let sizes: Vec<String> = columns
            .iter()
            .map(|(alias, rows)| format!("'{alias}': {}", rows.len()))
            .collect();
        return Err(PredictJsonError::OutputBatchMismatch(format!(
            "outputs had differing sizes in the batch (outer) dimension: {{{}}}",
            sizes.join(", ")
        )));
    }
    let mut iters: Vec<_> = columns
        .into_iter()
        .map(|(alias, rows)| (alias, rows.into_iter()))
        .collect();
    let mut predictions = Vec::with_capacity(batch);
    for _ in 0..batch {
        let row = iters
            .iter_mut()
            .filter_map(|(alias, rows)| rows.next().map(|value| ((*alias).clone(), value)))
            .collect();
        predictions.push(PyValue::Dict(row));
    }
    Ok(predictions)
}

/// One value per instance (row along dim 0) of `tensor`; a scalar is one row.
fn tensor_rows(alias: &str, tensor: &HostTensor) -> Result<Vec<PyValue>, PredictJsonError> {
    let (rows, row_dims) = match tensor.shape().split_first() {
        Some((rows, rest)) => (*rows, rest),
        None => (1, &[][..]),
    };
    let mut elements = elements(alias, tensor.data())?.into_iter();
    let mut out = Vec::with_capacity(rows);
    for _ in 0..rows {
        out.push(nest(row_dims, &mut elements));
    }
    Ok(out)
}

/// Builds nested lists of shape `dims` from the next elements.
fn nest(dims: &[usize], elements: &mut impl Iterator<Item = PyValue>) -> PyValue {
    match dims.split_first() {
        None => elements.next().unwrap_or(PyValue::None),
        Some((len, rest)) => PyValue::List((0..*len).map(|_| nest(rest, elements)).collect()),
    }
}

fn elements(alias: &str, data: &TensorData) -> Result<Vec<PyValue>, PredictJsonError> {
    Ok(match data {
        TensorData::F32(v) => v.iter().map(|x| PyValue::Float(f64::from(*x))).collect(),
        TensorData::F64(v) => v.iter().map(|x| PyValue::Float(*x)).collect(),
        TensorData::I32(v) => v.iter().map(|x| PyValue::Int(i128::from(*x))).collect(),
        TensorData::I64(v) => v.iter().map(|x| PyValue::Int(i128::from(*x))).collect(),
        TensorData::I16(v) => v.iter().map(|x| PyValue::Int(i128::from(*x))).collect(),
        TensorData::I8(v) => v.iter().map(|x| PyValue::Int(i128::from(*x))).collect(),
        TensorData::U8(v) => v.iter().map(|x| PyValue::Int(i128::from(*x))).collect(),
        TensorData::Bool(v) => v.iter().map(|x| PyValue::Bool(*x)).collect(),
        TensorData::Str(v) => {
            let as_bytes = alias.ends_with("_bytes");
            let mut out = Vec::with_capacity(v.len());
            for bytes in v {
                if as_bytes {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                    out.push(PyValue::Dict(vec![(
                        "b64".to_string(),
                        PyValue::Str(encoded),
                    )]));
                } else {
                    match String::from_utf8(bytes.clone()) {
                        Ok(text) => out.push(PyValue::Str(text)),
                        Err(_) => {
                            return Err(PredictJsonError::InvalidOutput {
                                output: alias.to_string(),
                                message:
                                    "a string output holds bytes that are not UTF-8 text; name the \
                                          output with a `_bytes` suffix to get them base64-encoded"
                                        .to_string(),
                            });
                        }
                    }
                }
            }
            out
        }
    })
}

/// `{"predictions": [...]}`, the object gcloud prints.
pub fn gcloud_response(predictions: Vec<PyValue>) -> PyValue {
    PyValue::Dict(vec![(
        "predictions".to_string(),
        PyValue::List(predictions),
    )])
}

/// gcloud's `--format json` output of `response`, final newline included.
pub fn format_gcloud_json(response: &PyValue) -> String {
    let mut out = response.to_python_json_pretty();
    out.push('\n');
    out
}

/// What gcloud prints for `response` without `--format` (`predict_utilities.GetDefaultFormat`):
/// a table when `predictions` is a list, the JSON of the whole response otherwise (an error
/// body).
pub fn format_gcloud_default(response: &PyValue) -> String {
    match response.get("predictions") {
        Some(PyValue::List(predictions)) => format_gcloud_table(predictions),
        _ => format_gcloud_json(response),
    }
}

/// How gcloud prints a prediction response: its default (a table, see
/// [`format_gcloud_default`]) or `--format json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

/// What `gcloud ai-platform predict` prints for an online prediction answer (the response body as
/// Python's `json.loads` sees it), in `format`.
pub fn format_online_response(
    response: &PyValue,
    format: OutputFormat,
) -> Result<String, PredictJsonError> {
    match format {
        OutputFormat::Table => Ok(format_gcloud_default(response)),
        OutputFormat::Json => Ok(format_gcloud_json(response)),
    }
}

/// gcloud's default table for a list of predictions:
/// * dicts: `table(predictions:format="table(<sorted keys of the first prediction>)")` - a
///   heading of upper-cased keys, left-aligned columns two spaces apart, no trailing spaces;
/// * anything else: `table[no-heading](predictions)` - the whole list, Python-style, on one line.
///
/// Cells are Python's `str()` of the value, except float cells which gcloud writes with 6
/// significant digits. Widths count characters (gcloud counts display columns, which differs
/// only for East Asian wide characters).
pub fn format_gcloud_table(predictions: &[PyValue]) -> String {
    let Some(first) = predictions.first() else {
        return String::new();
    };
    let PyValue::Dict(first_pairs) = first else {
        let cell = cell_text(&PyValue::List(predictions.to_vec()));
        return render_rows(&[vec![cell]]);
    };
    let mut keys: Vec<&str> = first_pairs.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut rows = Vec::with_capacity(predictions.len() + 1);
    rows.push(keys.iter().map(|k| angry_snake_case(k)).collect::<Vec<_>>());
    for prediction in predictions {
        rows.push(
            keys.iter()
                .map(|k| prediction.get(k).map(cell_text).unwrap_or_default())
                .collect(),
        );
    }
    render_rows(&rows)
}

/// gcloud's `_Stringify` of a cell.
fn cell_text(value: &PyValue) -> String {
    match value {
        PyValue::None => String::new(),
        PyValue::Float(f) => gcloud_table_float(*f),
        other => other.to_python_str(),
    }
}

/// Left-aligned columns, 2 spaces apart; trailing blanks are never written (gcloud's
/// `TablePrinter.Finish` carries padding forward and only writes it before a non-blank cell).
fn render_rows(rows: &[Vec<String>]) -> String {
    const PAD: usize = 2;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut pad = 0usize;
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            let justified_width = widths[i].max(width);
            if cell.trim().is_empty() {
                pad += PAD + justified_width;
                continue;
            }
            out.extend(std::iter::repeat_n(' ', pad));
            let stripped = cell.trim_end();
            out.push_str(stripped);
            pad = PAD + justified_width - stripped.chars().count();
        }
        out.push('\n');
    }
    out
}

/// gcloud's default column heading for a key: `camelCase` -> `CAMEL_CASE`, then upper case
/// (`resource_projection_parser._AngrySnakeCase`: an underscore goes before a run of capitals that
/// follows a lower-case letter or digit, and before a capital that starts a lower-case word).
pub fn angry_snake_case(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut out = String::with_capacity(key.len() + 4);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let after_lower_or_digit =
            i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
        if c.is_ascii_uppercase() && after_lower_or_digit {
            out.push('_');
            while i < chars.len() && chars[i].is_ascii_uppercase() {
                out.push(chars[i]);
                i += 1;
            }
            continue;
        }
        if c.is_ascii_uppercase() && i > 0 && chars.get(i + 1).is_some_and(char::is_ascii_lowercase)
        {
            out.push('_');
        }
        out.push(c);
        i += 1;
    }
    out.to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_follow_gcloud_snake_case() {
        assert_eq!(angry_snake_case("probabilities"), "PROBABILITIES");
        assert_eq!(angry_snake_case("dense_1"), "DENSE_1");
        assert_eq!(angry_snake_case("output_0"), "OUTPUT_0");
        assert_eq!(angry_snake_case("predictedClass"), "PREDICTED_CLASS");
        assert_eq!(angry_snake_case("HTTPServer"), "HTTP_SERVER");
        assert_eq!(angry_snake_case("a1BCd"), "A1_BCD");
    }

    fn tensor(shape: Vec<usize>, data: TensorData) -> HostTensor {
        HostTensor::new(shape, data).unwrap()
    }

    #[test]
    fn rows_are_dicts_keyed_by_alias() {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "class".to_string(),
            tensor(vec![2], TensorData::I64(vec![7, 2])),
        );
        outputs.insert(
            "probabilities".to_string(),
            tensor(vec![2, 2], TensorData::F32(vec![0.25, 0.75, 0.5, 0.5])),
        );
        let rows = gcloud_predictions(&outputs).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].get("class"), Some(&PyValue::Int(2)));
        assert_eq!(
            rows[0].get("probabilities"),
            Some(&PyValue::List(vec![
                PyValue::Float(0.25),
                PyValue::Float(0.75)
            ]))
        );
        // A scalar output is one row (gcloud's listify).
        let mut scalar = BTreeMap::new();
        scalar.insert("y".to_string(), tensor(vec![], TensorData::F32(vec![1.5])));
        assert_eq!(
            gcloud_predictions(&scalar).unwrap(),
            vec![PyValue::Dict(vec![("y".into(), PyValue::Float(1.5))])]
        );
    }

    #[test]
    fn differing_batch_sizes_are_an_error() {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "a".to_string(),
            tensor(vec![2], TensorData::I64(vec![1, 2])),
        );
        outputs.insert(
            "b".to_string(),
            tensor(vec![3], TensorData::I64(vec![1, 2, 3])),
        );
        let err = gcloud_predictions(&outputs).unwrap_err().to_string();
        assert!(err.contains("'a': 2, 'b': 3"), "{err}");
    }

    #[test]
    fn string_outputs_are_text_or_base64() {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "label".to_string(),
            tensor(vec![1], TensorData::Str(vec![b"seven".to_vec()])),
        );
        outputs.insert(
            "raw_bytes".to_string(),
            tensor(vec![1], TensorData::Str(vec![vec![0, 1, 255]])),
        );
        let rows = gcloud_predictions(&outputs).unwrap();
        assert_eq!(rows[0].get("label"), Some(&PyValue::Str("seven".into())));
        assert_eq!(
            rows[0].get("raw_bytes"),
            Some(&PyValue::Dict(vec![(
                "b64".into(),
                PyValue::Str("AAH/".into())
            )]))
        );
        let mut bad = BTreeMap::new();
        bad.insert(
            "label".to_string(),
            tensor(vec![1], TensorData::Str(vec![vec![0xff]])),
        );
        assert!(
            gcloud_predictions(&bad)
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
    }

    /// The expected table is gcloud 528's output for the same predictions (`docs/reference/serving_api.md` B2).
    #[test]
    fn table_matches_gcloud_example() {
        let row = |class: i128, p: [f32; 3]| {
            PyValue::Dict(vec![
                (
                    "probabilities".into(),
                    PyValue::List(p.iter().map(|x| PyValue::Float(f64::from(*x))).collect()),
                ),
                ("classes".into(), PyValue::Int(class)),
            ])
        };
        let predictions = vec![
            row(2, [0.083064966, 0.16727234, 0.7496627]),
            row(2, [0.30206415, 0.24730918, 0.45062676]),
        ];
        assert_eq!(
            format_gcloud_table(&predictions),
            "CLASSES  PROBABILITIES\n\
             2        [0.083064965903759, 0.16727234423160553, 0.7496626973152161]\n\
             2        [0.3020641505718231, 0.24730917811393738, 0.45062676072120667]\n"
        );
    }

    #[test]
    fn table_cells() {
        let predictions = vec![
            PyValue::Dict(vec![
                ("score".into(), PyValue::Float(0.16727234423160553)),
                ("name".into(), PyValue::Str(String::new())),
                ("ok".into(), PyValue::Bool(true)),
            ]),
            PyValue::Dict(vec![
                ("score".into(), PyValue::Float(123456.7)),
                ("name".into(), PyValue::Str("long name".into())),
                ("ok".into(), PyValue::Bool(false)),
            ]),
        ];
        // An empty cell leaves no trailing blanks; floats get 6 significant digits.
        assert_eq!(
            format_gcloud_table(&predictions),
            "NAME       OK     SCORE\n           True   0.167272\nlong name  False  123456.7\n"
        );
        // Lists of plain values print on one line without a heading.
        assert_eq!(
            format_gcloud_table(&[PyValue::Int(3), PyValue::Int(5)]),
            "[3, 5]\n"
        );
        assert_eq!(format_gcloud_table(&[]), "");
    }

    #[test]
    fn default_format_falls_back_to_json_for_errors() {
        let error = PyValue::Dict(vec![("error".into(), PyValue::Str("boom".into()))]);
        assert_eq!(
            format_gcloud_default(&error),
            "{\n  \"error\": \"boom\"\n}\n"
        );
    }
}
