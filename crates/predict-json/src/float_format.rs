//! Number text exactly as the tools we imitate print it.
//!
//! Three printers matter and they all differ:
//! * Python `repr(float)` (gcloud's JSON output and Python-style list cells): the shortest digits
//!   that round-trip, fixed notation for decimal exponents in [-4, 16), otherwise `1e-05` style.
//! * gcloud's table `TransformFloat` for a float cell: `format(x, '.6')` and, when that used a
//!   positive exponent below 9, `format(x, '.1f')` instead.
//! * TF Serving's `WriteDecimal`: `%g` (6 significant digits) if that round-trips, else `%.9g`
//!   (float) / `%.17g` (double), with `.0` appended to bare integers.
//!
//! All of them are built from Rust's exactly rounded `{:e}` / `{:.N$e}` output (sign, digits,
//! decimal exponent), so no printf or libm is involved.

/// Sign, significant decimal digits (no leading/trailing zeros beyond the first digit) and the
/// decimal exponent of the first digit, as produced by Rust's `{:e}` formatting.
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i32,
}

/// Splits Rust's `{:e}`-style text (`-1.2345e-7`) into its parts. `text` always comes from
/// Rust's own formatter of a finite value, so its shape is known.
fn split_scientific(text: &str) -> Decimal {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = rest.split_once('e').unwrap_or((rest, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    Decimal {
        negative,
        digits,
        exponent: exponent.parse().unwrap_or(0),
    }
}

/// The shortest digits that round-trip `value` (finite), as Python's `repr` picks them: of the
/// shortest candidates, the one nearest to `value`, ties to even. Rust's `{:e}` finds the shortest
/// length but breaks exact ties upwards (`0.7218399047851563` where Python prints
/// `0.7218399047851562` for the float32 0.72183990478515625), so the digits are re-derived with
/// Rust's exactly rounded (ties-to-even) formatting at that length when that still round-trips.
fn shortest(value: f64) -> Decimal {
    let short = split_scientific(&format!("{value:e}"));
    let nearest_text = format!("{value:.prec$e}", prec = short.digits.len() - 1);
    if nearest_text.parse::<f64>().ok() == Some(value) {
        return strip_trailing_zeros(split_scientific(&nearest_text));
    }
    short
}

/// `value` rounded to `significant` digits (finite, `significant >= 1`), trailing zeros kept.
fn rounded(value: f64, significant: usize) -> Decimal {
    split_scientific(&format!("{value:.prec$e}", prec = significant - 1))
}

/// Writes `digits` × 10^(exponent) in fixed notation; `min_fraction` forces that many fraction
/// digits at least (padding with zeros), Python's `.0`.
fn fixed(decimal: &Decimal, min_fraction: usize) -> String {
    let mut out = String::new();
    if decimal.negative {
        out.push('-');
    }
    let digits = decimal.digits.as_bytes();
    let point = decimal.exponent + 1; // digits before the decimal point
    let mut integer = String::new();
    let mut fraction = String::new();
    if point <= 0 {
        integer.push('0');
        fraction.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        fraction.push_str(&decimal.digits);
    } else {
        let point = point as usize;
        for i in 0..point {
            integer.push(digits.get(i).map_or('0', |d| *d as char));
        }
        if digits.len() > point {
            fraction.push_str(&decimal.digits[point..]);
        }
    }
    while fraction.len() < min_fraction {
        fraction.push('0');
    }
    out.push_str(&integer);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(&fraction);
    }
    out
}

/// `d.ddde±XX` with at least two exponent digits, as C's printf and Python write it.
fn scientific(decimal: &Decimal) -> String {
    let mut out = String::new();
    if decimal.negative {
        out.push('-');
    }
    out.push_str(&decimal.digits[..1]);
    if decimal.digits.len() > 1 {
        out.push('.');
        out.push_str(&decimal.digits[1..]);
    }
    out.push('e');
    out.push(if decimal.exponent < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", decimal.exponent.unsigned_abs()));
    out
}

fn strip_trailing_zeros(mut decimal: Decimal) -> Decimal {
    while decimal.digits.len() > 1 && decimal.digits.ends_with('0') {
        decimal.digits.pop();
    }
    decimal
}

/// How non-finite values are spelled: Python's `json.dumps` writes `NaN`/`Infinity`, while
/// `repr`/`str` (used for list cells in gcloud tables) write `nan`/`inf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    Json,
    Repr,
}

/// Python's `repr(value)` for a float; non-finite values spelled per `non_finite`.
pub fn python_repr(value: f64, non_finite: NonFinite) -> String {
    if !value.is_finite() {
        return match (value.is_nan(), value > 0.0, non_finite) {
            (true, _, NonFinite::Json) => "NaN".into(),
            (true, _, NonFinite::Repr) => "nan".into(),
            (false, true, NonFinite::Json) => "Infinity".into(),
            (false, true, NonFinite::Repr) => "inf".into(),
            (false, false, NonFinite::Json) => "-Infinity".into(),
            (false, false, NonFinite::Repr) => "-inf".into(),
        };
    }
    let decimal = shortest(value);
    if value == 0.0 {
        return if decimal.negative {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    if (-4..16).contains(&decimal.exponent) {
        fixed(&decimal, 1)
    } else {
        scientific(&decimal)
    }
}

/// gcloud's `resource_transform.TransformFloat(value)` with its defaults (precision 6), used
/// for float cells of tables.
pub fn gcloud_table_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    // Python's format(value, '.6'): like '%.6g' but scientific from exponent 5 (p - 1) on, and
    // fixed notation keeps at least one fraction digit.
    let decimal = strip_trailing_zeros(rounded(value, 6));
    if decimal.exponent < -4 || decimal.exponent >= 5 {
        if decimal.exponent > 0 && decimal.exponent < 9 {
            // TransformFloat: a positive exponent below 9 is printed with '.1f' instead.
            return format!("{value:.1}");
        }
        scientific(&decimal)
    } else {
        fixed(&decimal, 1)
    }
}

/// C's `printf("%.{precision}g", value)` for a finite value (`precision >= 1`).
fn printf_g(value: f64, precision: usize) -> String {
    let decimal = rounded(value, precision);
    let exponent = decimal.exponent;
    let decimal = strip_trailing_zeros(decimal);
    if value == 0.0 {
        return if decimal.negative {
            "-0".into()
        } else {
            "0".into()
        };
    }
    if exponent < -4 || exponent >= precision as i32 {
        scientific(&decimal)
    } else {
        fixed(&decimal, 0)
    }
}

/// TF Serving's `WriteDecimal` for a float32 tensor element.
pub fn tf_serving_f32(value: f32) -> String {
    if !value.is_finite() {
        return tf_serving_non_finite(value.is_nan(), value > 0.0);
    }
    let mut text = printf_g(f64::from(value), 6);
    if text.parse::<f32>().ok() != Some(value) {
        text = printf_g(f64::from(value), 9);
    }
    dot_zero(text)
}

/// TF Serving's `WriteDecimal` for a float64 tensor element.
pub fn tf_serving_f64(value: f64) -> String {
    if !value.is_finite() {
        return tf_serving_non_finite(value.is_nan(), value > 0.0);
    }
    let mut text = printf_g(value, 6);
    if text.parse::<f64>().ok() != Some(value) {
        text = printf_g(value, 17);
    }
    dot_zero(text)
}

fn tf_serving_non_finite(nan: bool, positive: bool) -> String {
    match (nan, positive) {
        (true, _) => "NaN".into(),
        (false, true) => "Infinity".into(),
        (false, false) => "-Infinity".into(),
    }
}

/// TF Serving appends `.0` to numbers written without a point or exponent (`4` -> `4.0`) so
/// that clients see a float.
fn dot_zero(mut text: String) -> String {
    if !text.contains('.') && !text.contains('e') {
        text.push_str(".0");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are what CPython 3.11 prints for `repr(x)` (and `json.dumps`).
    #[test]
    fn python_repr_matches_cpython() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (123456.0, "123456.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (2.5e-7, "2.5e-07"),
            (1.2345e100, "1.2345e+100"),
            (f64::from(0.16727234_f32), "0.16727234423160553"),
            (f64::from(0.083064966_f32), "0.083064965903759"),
            (f64::from(1.5244027e-6_f32), "1.5244027053995524e-06"),
            (-3.25, "-3.25"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (value, expected) in cases {
            assert_eq!(
                python_repr(*value, NonFinite::Json),
                *expected,
                "repr({value:e})"
            );
        }
        assert_eq!(python_repr(f64::NAN, NonFinite::Json), "NaN");
        assert_eq!(python_repr(f64::NEG_INFINITY, NonFinite::Json), "-Infinity");
        assert_eq!(python_repr(f64::INFINITY, NonFinite::Repr), "inf");
    }

    /// Expected strings are CPython's `TransformFloat` results (gcloud 528).
    #[test]
    fn gcloud_table_float_matches_transform_float() {
        let cases: &[(f64, &str)] = &[
            (123456.0, "123456.0"),
            (12345.0, "12345.0"),
            (100000.0, "100000.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.16727234423160553, "0.167272"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e10, "1e+10"),
            (123456789.0, "123456789.0"),
            (1234567890.0, "1.23457e+09"),
            (-0.0, "-0.0"),
            (2.5e-7, "2.5e-07"),
            (999999.5, "999999.5"),
            (123456.7, "123456.7"),
            (0.1, "0.1"),
        ];
        for (value, expected) in cases {
            assert_eq!(
                gcloud_table_float(*value),
                *expected,
                "TransformFloat({value:e})"
            );
        }
        assert_eq!(gcloud_table_float(f64::NAN), "nan");
    }

    /// Expected strings follow TF Serving's json_tensor WriteDecimal rules: `%g` when it
    /// round-trips, else `%.9g`, `.0` for bare integers.
    #[test]
    fn tf_serving_floats() {
        assert_eq!(tf_serving_f32(0.083064966), "0.0830649659");
        assert_eq!(tf_serving_f32(0.5), "0.5");
        assert_eq!(tf_serving_f32(4.0), "4.0");
        assert_eq!(tf_serving_f32(9_000_000.0), "9e+06");
        assert_eq!(tf_serving_f32(0.00003), "3e-05");
        assert_eq!(tf_serving_f32(2.5), "2.5");
        assert_eq!(tf_serving_f32(0.2), "0.2");
        assert_eq!(tf_serving_f32(f32::NAN), "NaN");
        assert_eq!(tf_serving_f32(f32::NEG_INFINITY), "-Infinity");
        assert_eq!(tf_serving_f32(-0.0), "-0.0");
        assert_eq!(tf_serving_f64(0.1), "0.1");
        assert_eq!(tf_serving_f64(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(tf_serving_f64(100.0), "100.0");
        assert_eq!(tf_serving_f64(1e100), "1e+100");
    }
}
