//! Prediction values as Python's `json` module holds them, and Python's two ways of printing them.
//!
//! gcloud turns predictions into Python objects (`numpy.tolist()` locally, `json.loads` of the
//! HTTP body online) and prints those, so byte-exact output needs Python's data model: floats are
//! doubles (a float32 output is its exact double widening, NaN and infinities allowed), integers
//! are unbounded, and dicts remember insertion order (`str(dict)` shows it; `json.dumps(...,
//! sort_keys=True)` does not).

use std::fmt::Write as _;

use crate::float_format::{NonFinite, python_repr};
use crate::json::{write_delimited, write_escaped};

/// A JSON-like value with Python semantics; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    /// Key/value pairs in insertion order.
    Dict(Vec<(String, PyValue)>),
}

impl PyValue {
    /// The value stored under `key` if this is a dict.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// `json.dumps(self, indent=2, sort_keys=True, separators=(',', ': '), ensure_ascii=False)`,
    /// the layout of gcloud's `--format json` (without the final newline gcloud adds).
    pub fn to_python_json_pretty(&self) -> String {
        let mut out = String::new();
        write_json(self, 0, &mut out);
        out
    }

    /// `json.dumps(self)` with Python's defaults: `", "` and `": "` separators, keys in insertion
    /// order, non-ASCII escaped as `\uXXXX` (`ensure_ascii=True`). Batch prediction writes one
    /// such line per prediction.
    pub fn to_python_json_line(&self) -> String {
        let mut out = String::new();
        self.write_python_json_line(&mut out);
        out
    }

    /// [`PyValue::to_python_json_line`], appended to `out`.
    pub fn write_python_json_line(&self, out: &mut String) {
        match self {
            PyValue::None => out.push_str("null"),
            PyValue::Bool(true) => out.push_str("true"),
            PyValue::Bool(false) => out.push_str("false"),
            PyValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            PyValue::Float(f) => out.push_str(&python_repr(*f, NonFinite::Json)),
            PyValue::Str(s) => write_ascii_json_string(s, out),
            PyValue::List(items) => {
                write_delimited(out, ('[', ", ", ']'), items, |out, item| {
                    item.write_python_json_line(out)
                });
            }
            PyValue::Dict(pairs) => {
                write_delimited(out, ('{', ", ", '}'), pairs, |out, (key, item)| {
                    write_ascii_json_string(key, out);
                    out.push_str(": ");
                    item.write_python_json_line(out);
                });
            }
        }
    }

    /// Python's `repr(self)` (for a string: quoted, as in a printed tuple).
    pub fn to_python_repr(&self) -> String {
        let mut out = String::new();
        write_repr(self, &mut out);
        out
    }

    /// Python's `str(self)`: what gcloud's table shows for a list or dict cell.
    pub fn to_python_str(&self) -> String {
        match self {
            PyValue::Str(s) => s.clone(),
            other => {
                let mut out = String::new();
                write_repr(other, &mut out);
                out
            }
        }
    }
}

impl From<&serde_json::Value> for PyValue {
    /// What `json.loads` gives for the same text (for HTTP responses), as far as serde_json can
    /// represent it: integers too large for 64 bits arrive as floats.
    fn from(value: &serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => PyValue::None,
            serde_json::Value::Bool(b) => PyValue::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    PyValue::Int(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    PyValue::Int(i128::from(u))
                } else {
                    PyValue::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => PyValue::Str(s.clone()),
            serde_json::Value::Array(items) => {
                PyValue::List(items.iter().map(PyValue::from).collect())
            }
            serde_json::Value::Object(map) => PyValue::Dict(
                map.iter()
                    .map(|(k, v)| (k.clone(), PyValue::from(v)))
                    .collect(),
            ),
        }
    }
}

const INDENT: &str = "  ";

fn push_indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str(INDENT);
    }
}

fn write_json(value: &PyValue, level: usize, out: &mut String) {
    match value {
        PyValue::None => out.push_str("null"),
        PyValue::Bool(true) => out.push_str("true"),
        PyValue::Bool(false) => out.push_str("false"),
        PyValue::Int(i) => out.push_str(&i.to_string()),
        PyValue::Float(f) => out.push_str(&python_repr(*f, NonFinite::Json)),
        PyValue::Str(s) => write_json_string(s, out),
        PyValue::List(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                push_indent(level + 1, out);
                write_json(item, level + 1, out);
            }
            out.push('\n');
            push_indent(level, out);
            out.push(']');
        }
        PyValue::Dict(pairs) => {
            if pairs.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut sorted: Vec<&(String, PyValue)> = pairs.iter().collect();
            // sort_keys=True compares str by code point, which is UTF-8 byte order.
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push_str("{\n");
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                push_indent(level + 1, out);
                write_json_string(key, out);
                out.push_str(": ");
                write_json(item, level + 1, out);
            }
            out.push('\n');
            push_indent(level, out);
            out.push('}');
        }
    }
}

/// Python's `json` string encoder with `ensure_ascii=False`: only `"`, `\` and control
/// characters below U+0020 are escaped.
fn write_json_string(s: &str, out: &mut String) {
    write_escaped(out, s, false);
}

/// Python's `json` string encoder with `ensure_ascii=True` (its default): like
/// [`write_json_string`], and every character past U+007F as `\uXXXX` (UTF-16 surrogate pairs
/// above U+FFFF).
fn write_ascii_json_string(s: &str, out: &mut String) {
    if s.is_ascii() {
        write_escaped(out, s, false);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            c if c.is_ascii() => {
                let mut buf = [0u8; 4];
                let mut one = String::new();
                write_escaped(&mut one, c.encode_utf8(&mut buf), false);
                out.push_str(&one[1..one.len() - 1]);
            }
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr` of a value (what `str(list)` uses for the list's elements).
fn write_repr(value: &PyValue, out: &mut String) {
    match value {
        PyValue::None => out.push_str("None"),
        PyValue::Bool(true) => out.push_str("True"),
        PyValue::Bool(false) => out.push_str("False"),
        PyValue::Int(i) => out.push_str(&i.to_string()),
        PyValue::Float(f) => out.push_str(&python_repr(*f, NonFinite::Repr)),
        PyValue::Str(s) => write_str_repr(s, out),
        PyValue::List(items) => {
            write_delimited(out, ('[', ", ", ']'), items, |out, item| {
                write_repr(item, out)
            });
        }
        PyValue::Dict(pairs) => {
            write_delimited(out, ('{', ", ", '}'), pairs, |out, (key, item)| {
                write_str_repr(key, out);
                out.push_str(": ");
                write_repr(item, out);
            });
        }
    }
}

/// Python's `repr(str)`: single quotes unless the text has a `'` and no `"`; backslash escapes
/// for the quote, `\`, `\t\n\r` and other control characters. (Python also escapes
/// non-printable non-ASCII characters such as U+2028; model outputs with those are not expected
/// and are printed as they are.)
fn write_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(pairs: &[(&str, PyValue)]) -> PyValue {
        PyValue::Dict(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    /// Expected text is CPython's `json.dumps(v, indent=2, sort_keys=True, separators=(',', ': '),
    /// ensure_ascii=False)`.
    #[test]
    fn pretty_json_matches_python_layout() {
        let v = dict(&[(
            "predictions",
            PyValue::List(vec![dict(&[
                (
                    "probabilities",
                    PyValue::List(vec![PyValue::Float(0.5), PyValue::Float(1e-5)]),
                ),
                ("class", PyValue::Int(7)),
                ("empty", PyValue::List(vec![])),
                ("name", PyValue::Str("a\"b\\c\u{1}é".into())),
            ])]),
        )]);
        let expected = "{\n  \"predictions\": [\n    {\n      \"class\": 7,\n      \"empty\": [],\n      \
                        \"name\": \"a\\\"b\\\\c\\u0001é\",\n      \"probabilities\": [\n        0.5,\n        \
                        1e-05\n      ]\n    }\n  ]\n}";
        assert_eq!(v.to_python_json_pretty(), expected);
    }

    /// Expected text is CPython's `json.dumps(v)`.
    #[test]
    fn json_line_matches_python_defaults() {
        let v = dict(&[
            (
                "probabilities",
                PyValue::List(vec![PyValue::Float(0.5), PyValue::Float(1e-5)]),
            ),
            ("classes", PyValue::Int(7)),
            ("name", PyValue::Str("é\u{1F600}\"\n".into())),
            ("none", PyValue::None),
        ]);
        assert_eq!(
            v.to_python_json_line(),
            "{\"probabilities\": [0.5, 1e-05], \"classes\": 7, \"name\": \"\\u00e9\\ud83d\\ude00\\\"\\n\", \"none\": null}"
        );
        assert_eq!(PyValue::Str("it's".into()).to_python_repr(), "\"it's\"");
    }

    /// Expected text is CPython's `str(v)`.
    #[test]
    fn str_matches_python() {
        let v = PyValue::List(vec![
            PyValue::Float(0.1),
            PyValue::Int(-3),
            PyValue::Bool(true),
            PyValue::None,
            PyValue::Str("it's".into()),
            PyValue::Str("say \"hi\" it's".into()),
            PyValue::List(vec![
                PyValue::Float(f64::NAN),
                PyValue::Float(f64::NEG_INFINITY),
            ]),
            dict(&[("b64", PyValue::Str("AAE=".into()))]),
        ]);
        assert_eq!(
            v.to_python_str(),
            "[0.1, -3, True, None, \"it's\", 'say \"hi\" it\\'s', [nan, -inf], {'b64': 'AAE='}]"
        );
        assert_eq!(PyValue::Str("plain".into()).to_python_str(), "plain");
    }

    #[test]
    fn from_serde_json_keeps_floats_and_ints_apart() {
        let parsed: serde_json::Value =
            serde_json::from_str(r#"{"a": 2, "b": 2.0, "c": 0.0830649659, "d": [true, null]}"#)
                .unwrap();
        let v = PyValue::from(&parsed);
        assert_eq!(v.get("a"), Some(&PyValue::Int(2)));
        assert_eq!(v.get("b"), Some(&PyValue::Float(2.0)));
        assert_eq!(
            v.get("c").map(PyValue::to_python_str),
            Some("0.0830649659".to_string())
        );
        assert_eq!(
            v.get("d"),
            Some(&PyValue::List(vec![PyValue::Bool(true), PyValue::None]))
        );
    }
}
