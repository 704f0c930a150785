//! A small JSON reader with TF Serving's parsing rules.
//!
//! TF Serving parses request bodies with RapidJSON: `NaN`/`Infinity` tokens are accepted,
//! parsing stops once the first value is complete (trailing text is ignored), and errors read
//! `JSON Parse error: <reason> at offset: <n>`. serde_json rejects the non-finite tokens and
//! words its errors differently, so requests are read here; responses are written by
//! `tensor_json`. Numbers keep their integer-ness (`1` vs `1.0`) because integer inputs must
//! reject `1.0` (serving_api.md A5.4).
//!
//! Speed matters: a predict body is mostly long lists of numbers (784 per MNIST image). Lists
//! whose elements are all numbers are kept as [`Json::Numbers`] (16 bytes per element, no tree),
//! and decimal literals of up to 19 significant digits are converted with Clinger's exact fast
//! path instead of the general text-to-float routine.

use std::fmt::Write as _;

/// A JSON number, keeping whether it was written as an integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer literal that fits `i64`.
    Int(i64),
    /// A non-negative integer literal above `i64::MAX` that fits `u64`.
    UInt(u64),
    /// Any other number (fraction, exponent, too large for an integer, `NaN`, `Infinity`).
    Float(f64),
}

/// A parsed JSON value. Objects keep their members in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(Number),
    Str(String),
    Array(Vec<Json>),
    /// An array whose elements are all numbers (the usual tensor row), stored compactly.
    Numbers(Vec<Number>),
    Object(Vec<(String, Json)>),
}

/// 10^0 … 10^22: the powers of ten that are exact doubles.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Deeper nesting than this is refused instead of recursing without bound.
const MAX_DEPTH: usize = 128;

impl Json {
    /// RapidJSON's type names, used in TF Serving's conversion errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "Null",
            Json::Bool(true) => "True",
            Json::Bool(false) => "False",
            Json::Number(_) => "Number",
            Json::Str(_) => "String",
            Json::Array(_) | Json::Numbers(_) => "Array",
            Json::Object(_) => "Object",
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A `{"b64": "<text>"}` object: TF Serving's encoding of binary strings.
    pub fn as_b64(&self) -> Option<&str> {
        match self {
            Json::Object(members) if members.len() == 1 && members[0].0 == "b64" => {
                match &members[0].1 {
                    Json::Str(s) => Some(s),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Compact JSON text, for error messages.
    pub fn to_compact(&self) -> String {
        let mut out = String::new();
        self.write_compact(&mut out);
        out
    }

    fn write_compact(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => n.write(out),
            Json::Numbers(numbers) => {
                out.push('[');
                for (i, n) in numbers.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    n.write(out);
                }
                out.push(']');
            }
            Json::Str(s) => write_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_compact(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, k);
                    out.push(':');
                    v.write_compact(out);
                }
                out.push('}');
            }
        }
    }
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::UInt(u) => u as f64,
            Number::Float(f) => f,
        }
    }

    fn write(self, out: &mut String) {
        match self {
            Number::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Number::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            Number::Float(f) => write_plain_double(out, f),
        }
    }
}

/// Shortest round-trip text of a double, always with a `.` or exponent; non-finite values as
/// RapidJSON writes them with `kWriteNanAndInfFlag`.
pub fn write_plain_double(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let start = out.len();
        let _ = write!(out, "{value:?}");
        if !out[start..].contains(['.', 'e', 'E']) {
            out.push_str(".0");
        }
    }
}

/// A JSON string literal with the escapes JSON requires.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why a document could not be parsed, worded as RapidJSON's `GetParseError_En`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub reason: &'static str,
    pub offset: usize,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JSON Parse error: {} at offset: {}",
            self.reason, self.offset
        )
    }
}

/// Parses the first JSON value of `input`; whatever follows it is ignored, as TF Serving does.
pub fn parse(input: &[u8]) -> Result<Json, ParseError> {
    let mut parser = Parser { input, pos: 0 };
    parser.skip_whitespace();
    if parser.pos >= input.len() {
        return Err(ParseError {
            reason: "The document is empty.",
            offset: parser.pos,
        });
    }
    parser.value(0)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error<T>(&self, reason: &'static str) -> Result<T, ParseError> {
        Err(ParseError {
            reason,
            offset: self.pos,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return self.error("Nesting too deep.");
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9' | b'N' | b'I') => Ok(Json::Number(self.number()?)),
            _ => self.error("Invalid value."),
        }
    }

    fn literal(&mut self, text: &[u8], value: Json) -> Result<Json, ParseError> {
        if self.input[self.pos..].starts_with(text) {
            self.pos += text.len();
            Ok(value)
        } else {
            self.error("Invalid value.")
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.pos += 1; // '{'
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            if self.peek() != Some(b'"') {
                return self.error("Missing a name for object member.");
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return self.error("Missing a colon after a name of object member.");
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                _ => return self.error("Missing a comma or '}' after an object member."),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.pos += 1; // '['
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(Vec::new()));
        }
        // Numbers-only arrays (the common case) are collected compactly; the first element that
        // is not a number turns the array into a general one.
        let mut numbers = Vec::new();
        let mut items = loop {
            if !matches!(self.peek(), Some(b'-' | b'0'..=b'9' | b'N' | b'I')) {
                break numbers.into_iter().map(Json::Number).collect::<Vec<_>>();
            }
            numbers.push(self.number()?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Numbers(numbers));
                }
                _ => return self.error("Missing a comma or ']' after an array element."),
            }
        };
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return self.error("Missing a comma or ']' after an array element."),
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1; // opening quote
        let mut bytes = Vec::new();
        loop {
            let start = self.pos;
            // Copy the run of plain bytes at once: most strings have no escapes.
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            bytes.extend_from_slice(&self.input[start..self.pos]);
            match self.peek() {
                None => return self.error("Missing a closing quotation mark in string."),
                Some(b'"') => {
                    self.pos += 1;
                    return match String::from_utf8(bytes) {
                        Ok(s) => Ok(s),
                        Err(_) => Err(ParseError {
                            reason: "Invalid encoding in string.",
                            offset: start,
                        }),
                    };
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = match self.peek() {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 8,
                        Some(b'f') => 12,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        _ => return self.error("Invalid escape character in string."),
                    };
                    self.pos += 1;
                    bytes.push(escaped);
                }
                Some(_) => return self.error("Invalid encoding in string."),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b) if b.is_ascii_hexdigit() => (b as char).to_digit(16).unwrap_or(0),
                _ => return self.error("Incorrect hex digit after \\u escape in string."),
            };
            value = value * 16 + digit;
            self.pos += 1;
        }
        Ok(value)
    }

    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.input[self.pos..].starts_with(b"\\u") {
                return self.error("The surrogate pair in string is invalid.");
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return self.error("The surrogate pair in string is invalid.");
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        match char::from_u32(code) {
            Some(c) => Ok(c),
            None => self.error("The surrogate pair in string is invalid."),
        }
    }

    fn number(&mut self) -> Result<Number, ParseError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        if let Some(b'N' | b'I') = self.peek() {
            // RapidJSON's kParseNanAndInfFlag tokens.
            for (token, value) in [
                (&b"NaN"[..], f64::NAN),
                (&b"Infinity"[..], f64::INFINITY),
                (&b"Inf"[..], f64::INFINITY),
            ] {
                if self.input[self.pos..].starts_with(token) {
                    self.pos += token.len();
                    return Ok(Number::Float(if negative { -value } else { value }));
                }
            }
            return self.error("Invalid value.");
        }
        // Significant digits accumulate in `mantissa` while they fit; `exact` records whether
        // all of them did.
        let mut mantissa: u64 = 0;
        let mut exact = true;
        let mut push_digit = |mantissa: &mut u64, digit: u8| {
            if *mantissa < 1_000_000_000_000_000_000 {
                *mantissa = *mantissa * 10 + u64::from(digit - b'0');
                true
            } else {
                exact = false;
                false
            }
        };
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    push_digit(&mut mantissa, d);
                    self.pos += 1;
                }
            }
            _ => return self.error("Invalid value."),
        }
        let mut is_integer = true;
        let mut fraction_digits: i32 = 0;
        if self.peek() == Some(b'.') {
            is_integer = false;
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.error("Miss fraction part in number.");
            }
            while let Some(d @ b'0'..=b'9') = self.peek() {
                if push_digit(&mut mantissa, d) {
                    fraction_digits += 1;
                }
                self.pos += 1;
            }
        }
        let mut exponent: i32 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            is_integer = false;
            self.pos += 1;
            let exponent_negative = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.error("Miss exponent in number.");
            }
            while let Some(d @ b'0'..=b'9') = self.peek() {
                exponent = exponent
                    .saturating_mul(10)
                    .saturating_add(i32::from(d - b'0'));
                self.pos += 1;
            }
            if exponent_negative {
                exponent = -exponent;
            }
        }
        if exact {
            if is_integer {
                if !negative {
                    return Ok(match i64::try_from(mantissa) {
                        Ok(i) => Number::Int(i),
                        Err(_) => Number::UInt(mantissa),
                    });
                }
                if let Ok(i) = i64::try_from(mantissa) {
                    return Ok(Number::Int(-i));
                }
            } else {
                // Clinger's fast path: both operands are exact doubles, so one correctly rounded
                // multiplication or division gives the correctly rounded result.
                let scale = exponent.saturating_sub(fraction_digits);
                if mantissa <= 1 << 53 && (-22..=22).contains(&scale) {
                    let value = mantissa as f64;
                    let value = if scale < 0 {
                        value / POWERS_OF_TEN[scale.unsigned_abs() as usize]
                    } else {
                        value * POWERS_OF_TEN[scale as usize]
                    };
                    return Ok(Number::Float(if negative { -value } else { value }));
                }
            }
        }
        // The slice holds only ASCII sign/digit/'.'/'e' bytes, so it is valid UTF-8.
        let text = std::str::from_utf8(&self.input[start..self.pos]).unwrap_or("");
        if is_integer {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Number::Int(i));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Number::UInt(u));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Number::Float(f)),
            _ => Err(ParseError {
                reason: "Number too big to be stored in double.",
                offset: start,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_keeping_integerness() {
        let v =
            parse(b"[1, -2, 1.0, 2e3, 18446744073709551615, NaN, -Infinity, -9223372036854775808]")
                .unwrap();
        let Json::Numbers(items) = v else {
            panic!("not a numbers array: {v:?}")
        };
        assert_eq!(items[0], Number::Int(1));
        assert_eq!(items[1], Number::Int(-2));
        assert_eq!(items[2], Number::Float(1.0));
        assert_eq!(items[3], Number::Float(2000.0));
        assert_eq!(items[4], Number::UInt(u64::MAX));
        assert!(matches!(items[5], Number::Float(f) if f.is_nan()));
        assert_eq!(items[6], Number::Float(f64::NEG_INFINITY));
        assert_eq!(items[7], Number::Int(i64::MIN));
    }

    #[test]
    fn strings_with_escapes_and_surrogates() {
        let v = parse(br#"{"a\n\"b": "\u00e9\ud83d\ude00x"}"#).unwrap();
        assert_eq!(v.get("a\n\"b"), Some(&Json::Str("é😀x".into())));
    }

    #[test]
    fn trailing_text_is_ignored_like_rapidjson() {
        assert_eq!(parse(b"{} garbage").unwrap(), Json::Object(vec![]));
    }

    #[test]
    fn errors_name_reason_and_offset() {
        assert_eq!(
            parse(b"").unwrap_err().to_string(),
            "JSON Parse error: The document is empty. at offset: 0"
        );
        assert_eq!(
            parse(b"  \n").unwrap_err().to_string(),
            "JSON Parse error: The document is empty. at offset: 3"
        );
        let e = parse(b"{\"instances\": [1, 2,]}").unwrap_err();
        assert_eq!(e.reason, "Invalid value.");
        assert_eq!(e.offset, 20);
        assert_eq!(
            parse(b"{\"a\" 1}").unwrap_err().reason,
            "Missing a colon after a name of object member."
        );
        assert_eq!(
            parse(b"[1 2]").unwrap_err().reason,
            "Missing a comma or ']' after an array element."
        );
        assert_eq!(
            parse(b"[1.]").unwrap_err().reason,
            "Miss fraction part in number."
        );
        assert_eq!(
            parse(b"[1e]").unwrap_err().reason,
            "Miss exponent in number."
        );
        assert_eq!(
            parse(b"\"abc").unwrap_err().reason,
            "Missing a closing quotation mark in string."
        );
        assert_eq!(
            parse(b"1e999").unwrap_err().reason,
            "Number too big to be stored in double."
        );
        assert_eq!(
            parse(b"\"\xff\"").unwrap_err().reason,
            "Invalid encoding in string."
        );
    }

    #[test]
    fn decimals_are_correctly_rounded() {
        // Fast-path and fallback cases alike must equal the standard library's conversion.
        let texts = [
            "0.3294117748737335",
            "0.0",
            "-0.0",
            "0.1",
            "123.456e-7",
            "1e22",
            "1e23",
            "9007199254740993.0",
            "0.30000000000000004",
            "1234567890123456789012.5",
            "4.9e-324",
            "1.7976931348623157e308",
            "0.000000000000000000000000001",
            "3.4028235e38",
            "12345678901234567890.0",
        ];
        for text in texts {
            let parsed = match parse(text.as_bytes()).unwrap() {
                Json::Number(n) => n.as_f64(),
                other => panic!("{other:?}"),
            };
            let expected: f64 = text.parse().unwrap();
            assert_eq!(parsed.to_bits(), expected.to_bits(), "{text}");
        }
    }

    #[test]
    fn mixed_arrays_become_general_arrays() {
        let v = parse(b"[1, \"a\", [2, 3]]").unwrap();
        assert_eq!(
            v,
            Json::Array(vec![
                Json::Number(Number::Int(1)),
                Json::Str("a".into()),
                Json::Numbers(vec![Number::Int(2), Number::Int(3)])
            ])
        );
        assert_eq!(v.to_compact(), "[1,\"a\",[2,3]]");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let doc = "[".repeat(100_000);
        assert_eq!(
            parse(doc.as_bytes()).unwrap_err().reason,
            "Nesting too deep."
        );
    }

    #[test]
    fn compact_text_round_trips() {
        let v = parse(br#"{"x": [1, 2.5, "s", true, null, {"b64": "AA=="}]}"#).unwrap();
        assert_eq!(
            v.to_compact(),
            r#"{"x":[1,2.5,"s",true,null,{"b64":"AA=="}]}"#
        );
        assert_eq!(Json::Number(Number::Float(153.0)).to_compact(), "153.0");
    }
}
