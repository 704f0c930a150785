//! A small JSON reader with TF Serving's parsing rules.
//!
//! TF Serving parses request bodies with RapidJSON: `NaN`/`Infinity` tokens are accepted,
//! parsing stops once the first value is complete (trailing text is ignored), and errors read
//! `JSON Parse error: <reason> at offset: <n>`. serde_json rejects the non-finite tokens and
//! words its errors differently, so requests are read here; responses are written by
//! `tensor_json`. Numbers keep their integer-ness (`1` vs `1.0`) because integer inputs must
//! reject `1.0` (serving_api.md A5.4).

use std::fmt::Write as _;

/// A parsed JSON value. Objects keep their members in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// An integer literal that fits `i64`.
    Int(i64),
    /// A non-negative integer literal above `i64::MAX` that fits `u64`.
    UInt(u64),
    /// Any other number (fraction, exponent, too large for an integer, `NaN`, `Infinity`).
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Deeper nesting than this is refused instead of recursing without bound.
const MAX_DEPTH: usize = 128;

impl Json {
    /// RapidJSON's type names, used in TF Serving's conversion errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "Null",
            Json::Bool(true) => "True",
            Json::Bool(false) => "False",
            Json::Int(_) | Json::UInt(_) | Json::Float(_) => "Number",
            Json::Str(_) => "String",
            Json::Array(_) => "Array",
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
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            Json::Float(f) => write_plain_double(out, *f),
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
            Some(b'-' | b'0'..=b'9' | b'N' | b'I') => self.number(),
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
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
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

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        // RapidJSON's kParseNanAndInfFlag tokens.
        for (token, value) in [
            (&b"NaN"[..], f64::NAN),
            (&b"Infinity"[..], f64::INFINITY),
            (&b"Inf"[..], f64::INFINITY),
        ] {
            if self.input[self.pos..].starts_with(token) {
                self.pos += token.len();
                return Ok(Json::Float(if negative { -value } else { value }));
            }
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return self.error("Invalid value."),
        }
        let mut is_integer = true;
        if self.peek() == Some(b'.') {
            is_integer = false;
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.error("Miss fraction part in number.");
            }
            self.skip_digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            is_integer = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.error("Miss exponent in number.");
            }
            self.skip_digits();
        }
        // The slice holds only ASCII sign/digit/'.'/'e' bytes, so it is valid UTF-8.
        let text = std::str::from_utf8(&self.input[start..self.pos]).unwrap_or("");
        if is_integer {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Json::Int(i));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Json::UInt(u));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Json::Float(f)),
            _ => Err(ParseError {
                reason: "Number too big to be stored in double.",
                offset: start,
            }),
        }
    }

    fn skip_digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_keeping_integerness() {
        let v = parse(b"[1, -2, 1.0, 2e3, 18446744073709551615, NaN, -Infinity]").unwrap();
        let Json::Array(items) = v else {
            panic!("not an array")
        };
        assert_eq!(items[0], Json::Int(1));
        assert_eq!(items[1], Json::Int(-2));
        assert_eq!(items[2], Json::Float(1.0));
        assert_eq!(items[3], Json::Float(2000.0));
        assert_eq!(items[4], Json::UInt(u64::MAX));
        assert!(matches!(items[5], Json::Float(f) if f.is_nan()));
        assert_eq!(items[6], Json::Float(f64::NEG_INFINITY));
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
        assert_eq!(Json::Float(153.0).to_compact(), "153.0");
    }
}
