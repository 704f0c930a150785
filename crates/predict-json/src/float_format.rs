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
    let mut out = String::new();
    write_tf_serving_f32(&mut out, value);
    out
}

/// TF Serving's `WriteDecimal` for a float64 tensor element.
pub fn tf_serving_f64(value: f64) -> String {
    let mut out = String::new();
    write_tf_serving_f64(&mut out, value);
    out
}

/// [`tf_serving_f32`], appended to `out`.
pub(crate) fn write_tf_serving_f32(out: &mut String, value: f32) {
    let round_trips = |text: &str| text.parse::<f32>().ok() == Some(value);
    write_tf_serving(out, f64::from(value), 9, round_trips);
}

/// [`tf_serving_f64`], appended to `out`.
pub(crate) fn write_tf_serving_f64(out: &mut String, value: f64) {
    let round_trips = |text: &str| text.parse::<f64>().ok() == Some(value);
    write_tf_serving(out, value, 17, round_trips);
}

/// `WriteDecimal`: `%g` if that text `round_trips` to the tensor's value, else `%.{precision}g`.
/// Response bodies hold thousands of these, so the usual case allocates nothing: the digits come
/// from [`round_significant`]'s exact integer arithmetic and the round-trip test parses a stack
/// buffer.
fn write_tf_serving(
    out: &mut String,
    value: f64,
    precision: u32,
    round_trips: impl Fn(&str) -> bool,
) {
    if !value.is_finite() {
        out.push_str(&tf_serving_non_finite(value.is_nan(), value > 0.0));
        return;
    }
    let mut buf = GBuffer::new();
    if buf.printf_g(value, 6).is_some_and(&round_trips) || buf.printf_g(value, precision).is_some()
    {
        push_dot_zero(out, buf.as_str());
        return;
    }
    // Out of the exact fast path's range: the general (allocating) route.
    let mut text = printf_g(value, 6);
    if !round_trips(&text) {
        text = printf_g(value, precision as usize);
    }
    push_dot_zero(out, &text);
}

/// TF Serving appends `.0` to numbers written without a point or exponent (`4` -> `4.0`) so
/// that clients see a float.
fn push_dot_zero(out: &mut String, text: &str) {
    out.push_str(text);
    if !text.contains(['.', 'e']) {
        out.push_str(".0");
    }
}

/// `|value|` rounded to `precision` significant decimal digits, ties to even on the exact binary
/// value (what printf does): `(digits, exponent)` with `digits` in `[10^(p-1), 10^p)` and
/// `|value| ≈ digits × 10^(exponent - p + 1)`. `value` is finite and non-zero, `precision` at
/// most 17. The quotient is computed exactly in `u128`; `None` when the operands would not fit
/// (very large or very small magnitudes), and the caller takes the general route.
fn round_significant(value: f64, precision: u32) -> Option<(u64, i32)> {
    let bits = value.abs().to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mut mantissa, mut exp2) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    if mantissa == 0 {
        return None;
    }
    // Fewer significant bits leave more room in u128 (a float32's mantissa has at most 24).
    let zeros = mantissa.trailing_zeros();
    mantissa >>= zeros;
    exp2 += zeros as i32;
    let low = 10u64.pow(precision - 1);
    let high = low * 10;
    // floor(log2 |value|) × log10(2), rounded down (78913 / 2^18 ≈ log10 2), estimates the
    // decimal exponent to within one; the quotient's size corrects it below.
    let exp2_of_value = exp2 + 63 - mantissa.leading_zeros() as i32;
    let mut exp10 = ((i64::from(exp2_of_value) * 78913) >> 18) as i32;
    for _ in 0..4 {
        let (quotient, remainder, divisor) =
            scaled_quotient(mantissa, exp2, exp10 - precision as i32 + 1)?;
        if quotient >= u128::from(high) {
            exp10 += 1;
            continue;
        }
        if quotient < u128::from(low) {
            exp10 -= 1;
            continue;
        }
        let mut digits = quotient as u64;
        let twice = remainder << 1;
        if twice > divisor || (twice == divisor && digits % 2 == 1) {
            digits += 1;
        }
        if digits == high {
            return Some((low, exp10 + 1));
        }
        return Some((digits, exp10));
    }
    None
}

/// `mantissa × 2^exp2 / 10^scale` as quotient, remainder and divisor, all exact; `None` when an
/// operand would overflow `u128`.
fn scaled_quotient(mantissa: u64, exp2: i32, scale: i32) -> Option<(u128, u128, u128)> {
    // mantissa × 2^exp2 × 10^-scale = (mantissa × 5^-scale) × 2^(exp2 - scale) for scale <= 0,
    // and mantissa × 2^(exp2 - scale) / 5^scale for scale > 0.
    let mut numerator = u128::from(mantissa);
    let mut divisor: u128 = 1;
    if scale <= 0 {
        numerator = numerator.checked_mul(5u128.checked_pow(scale.unsigned_abs())?)?;
    } else {
        divisor = 5u128.checked_pow(scale as u32)?;
    }
    let shift = exp2 - scale;
    if shift >= 0 {
        let shift = shift as u32;
        if shift >= 128 || numerator.leading_zeros() <= shift {
            return None;
        }
        numerator <<= shift;
    } else {
        let shift = shift.unsigned_abs();
        if shift >= 128 || divisor.leading_zeros() <= shift {
            return None;
        }
        divisor <<= shift;
    }
    // Usually the divisor is a power of two (values below 10^(precision-1)) or everything fits
    // 64 bits: spare the slow 128-bit division.
    let quotient = if divisor.is_power_of_two() {
        numerator >> divisor.trailing_zeros()
    } else if let (Ok(n), Ok(d)) = (u64::try_from(numerator), u64::try_from(divisor)) {
        u128::from(n / d)
    } else {
        numerator / divisor
    };
    Some((quotient, numerator - quotient * divisor, divisor))
}

/// A stack buffer holding one `%g` text.
struct GBuffer {
    bytes: [u8; 40],
    len: usize,
}

impl GBuffer {
    fn new() -> GBuffer {
        GBuffer {
            bytes: [0; 40],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, signs, '.', 'e' and '0' are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// C's `printf("%.{precision}g", value)` for a finite value, into this buffer (replacing what
    /// it held); `None` (and nothing usable written) where [`round_significant`] gives up.
    fn printf_g(&mut self, value: f64, precision: u32) -> Option<&str> {
        self.len = 0;
        if value.is_sign_negative() {
            self.push(b'-');
        }
        if value == 0.0 {
            self.push(b'0');
            return Some(self.as_str());
        }
        let (mut digits, exponent) = round_significant(value, precision)?;
        let mut count = precision as usize;
        while count > 1 && digits % 10 == 0 {
            digits /= 10;
            count -= 1;
        }
        let mut text = [0u8; 20];
        for slot in text[..count].iter_mut().rev() {
            *slot = b'0' + (digits % 10) as u8;
            digits /= 10;
        }
        let text = &text[..count];
        if exponent < -4 || exponent >= precision as i32 {
            self.push(text[0]);
            if count > 1 {
                self.push(b'.');
                text[1..].iter().for_each(|&d| self.push(d));
            }
            self.push(b'e');
            self.push(if exponent < 0 { b'-' } else { b'+' });
            let magnitude = exponent.unsigned_abs();
            if magnitude >= 100 {
                self.push(b'0' + (magnitude / 100) as u8);
            }
            self.push(b'0' + (magnitude / 10 % 10) as u8);
            self.push(b'0' + (magnitude % 10) as u8);
        } else if exponent < 0 {
            self.push(b'0');
            self.push(b'.');
            (0..exponent.unsigned_abs() - 1).for_each(|_| self.push(b'0'));
            text.iter().for_each(|&d| self.push(d));
        } else {
            let point = exponent as usize + 1;
            for i in 0..point.max(count) {
                if i == point {
                    self.push(b'.');
                }
                self.push(text.get(i).copied().unwrap_or(b'0'));
            }
        }
        Some(self.as_str())
    }
}

fn tf_serving_non_finite(nan: bool, positive: bool) -> String {
    match (nan, positive) {
        (true, _) => "NaN".into(),
        (false, true) => "Infinity".into(),
        (false, false) => "-Infinity".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

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

    /// The general `%g` route (Rust's exactly rounded `{:e}` text, re-assembled).
    fn general(value: f64, precision: usize, round_trips: impl Fn(&str) -> bool) -> String {
        let mut text = printf_g(value, 6);
        if !round_trips(&text) {
            text = printf_g(value, precision);
        }
        let mut out = String::new();
        push_dot_zero(&mut out, &text);
        out
    }

    fn general_f32(value: f32) -> String {
        general(f64::from(value), 9, |t| {
            t.parse::<f32>().ok() == Some(value)
        })
    }

    fn general_f64(value: f64) -> String {
        general(value, 17, |t| t.parse::<f64>().ok() == Some(value))
    }

    fn routes_agree<T>(values: Vec<T>, fast: fn(T) -> String, general: fn(T) -> String)
    where
        T: Copy + std::ops::Neg<Output = T> + std::fmt::LowerExp,
    {
        for value in values {
            for v in [value, -value] {
                assert_eq!(fast(v), general(v), "{v:e}");
            }
        }
    }

    /// The allocation-free integer route must print exactly what the general route prints, for
    /// every kind of value: random bit patterns (all magnitudes, subnormals), values next to
    /// powers of ten (where the exponent estimate is off by one and rounding carries), and
    /// decimal ties.
    #[test]
    fn fast_tf_serving_text_equals_the_general_route() {
        let mut rng = StdRng::seed_from_u64(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.random::<u64>();
        let mut floats: Vec<f32> = (0..200_000)
            .map(|_| f32::from_bits(next() as u32))
            .collect();
        let mut doubles: Vec<f64> = (0..200_000).map(|_| f64::from_bits(next())).collect();
        for exp in -45..39 {
            let p = 10f64.powi(exp);
            for f in [p as f32, (p * 0.9999999) as f32, (p * 1.0000001) as f32] {
                floats.extend([
                    f,
                    f32::from_bits(f.to_bits() + 1),
                    f32::from_bits(f.to_bits().saturating_sub(1)),
                ]);
            }
        }
        for exp in -320..308 {
            let p = 10f64.powi(exp);
            doubles.extend([
                p,
                f64::from_bits(p.to_bits() + 1),
                f64::from_bits(p.to_bits().saturating_sub(1)),
            ]);
        }
        // 2^-14 = 0.00006103515625: a tie at 9 significant digits; the floats just below 10 and 1
        // round up to another power of ten.
        floats.extend([
            2f32.powi(-14),
            f32::from_bits(0x411f_ffff),
            f32::from_bits(0x3f7f_ffff),
            999_999.5,
            0.5,
            f32::MIN_POSITIVE,
            f32::MAX,
        ]);
        floats.extend((1..2000).map(|i| i as f32 / 1024.0));
        doubles.extend([f64::MIN_POSITIVE, 5e-324, f64::MAX, 0.1 + 0.2, 999_999.5]);
        // The comparison below is only meaningful if the integer route is taken: it must be for
        // every float32 of ordinary magnitude at both precisions.
        for &v in floats.iter().filter(|v| (1e-20..1e20).contains(&v.abs())) {
            assert!(round_significant(f64::from(v), 6).is_some(), "{v:e}");
            assert!(round_significant(f64::from(v), 9).is_some(), "{v:e}");
        }
        floats.retain(|v| v.is_finite());
        doubles.retain(|v| v.is_finite());
        routes_agree(floats, tf_serving_f32, general_f32);
        routes_agree(doubles, tf_serving_f64, general_f64);
    }
}
