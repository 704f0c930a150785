//! The one JSON reader behind every prediction input, with a switch for whose rules apply.
//!
//! Two tools we imitate read the same kind of text under different rules:
//!
//! * [`Rules::TfServing`]: TF Serving parses request bodies with RapidJSON. `NaN`, `Infinity`
//!   and `Inf` are numbers, parsing stops once the first value is complete (trailing text is
//!   ignored) and errors read `JSON Parse error: <reason> at offset: <n>`.
//! * [`Rules::Gcloud`]: gcloud reads instances with Python's `json` module; we are stricter and
//!   accept standard JSON only (no `NaN`/`Infinity`, which get an error of their own naming the
//!   token and its column, nothing after the value), with serde_json's wording and line/column
//!   positions for syntax errors (`expected value`, `trailing comma`, ...), which earlier versions
//!   of this crate printed and users and tests rely on.
//!
//! The lexical work (whitespace, numbers, strings, literals, nesting limits) is shared; what
//! differs is small and lives where it happens: which tokens are numbers, where an error is
//! reported and how it is worded ([`JsonError`] keeps both wordings' positions).
//!
//! Two ways to read a document:
//!
//! * [`parse`] builds a [`Json`] tree (TF Serving's converter inspects documents as a whole:
//!   `instances` vs `inputs`, named objects, shapes). Arrays whose elements are all numbers, i.e.
//!   tensor rows, are kept flat as [`Json::Numbers`] (no node per number), sized from the
//!   previous row so that rows of equal length never reallocate.
//! * [`Deserializer`] is a streaming serde `Deserializer`, so a `DeserializeSeed` can route every
//!   number straight into a typed tensor buffer (the gcloud instance converter does).
//! * [`Cursor`] reads token by token for callers that expect one shape of document and fall back
//!   to [`parse`] for anything else: the server reads rows of numbers straight into an `f32`
//!   buffer with [`Cursor::f32_array`].
//!
//! Errors are the first problem in the text. (The serde_json-based reader this replaced reported
//! a `NaN`/`Infinity` token anywhere on the line in preference to an earlier syntax error.)
//!
//! Numbers keep their integer-ness (`1` vs `1.0`: integer inputs refuse `1.0`) and are correctly
//! rounded: decimal literals of up to 19 significant digits take Clinger's exact fast path (one
//! multiplication or division of exact doubles), longer ones the standard library's parser.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Whose JSON rules a document is read with; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// TensorFlow Serving (RapidJSON with `kParseNanAndInfFlag`).
    TfServing,
    /// gcloud's instances: standard JSON, serde_json's error wording.
    Gcloud,
}

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

/// TF Serving rules: a value nested deeper than this is refused instead of recursing without
/// bound. (gcloud rules use serde_json's limit of 128 nested arrays and objects.)
const MAX_DEPTH: usize = 128;
const MAX_CONTAINERS: usize = 128;

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

    /// The first member named `key` of an object (RapidJSON's `FindMember`).
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
                write_delimited(out, ('[', ",", ']'), numbers, |out, n| n.write(out));
            }
            Json::Str(s) => write_string(out, s),
            Json::Array(items) => {
                write_delimited(out, ('[', ",", ']'), items, |out, item| {
                    item.write_compact(out)
                });
            }
            Json::Object(members) => {
                write_delimited(out, ('{', ",", '}'), members, |out, (k, v)| {
                    write_string(out, k);
                    out.push(':');
                    v.write_compact(out);
                });
            }
        }
    }
}

/// `open`, the items (each written by `write`) separated by `separator`, `close`: the layout
/// of every one-line list and mapping printed here (compact JSON, Python's `repr`).
pub(crate) fn write_delimited<T>(
    out: &mut String,
    (open, separator, close): (char, &str, char),
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        write(out, item);
    }
    out.push(close);
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

    fn from_lexed(lexed: Lexed) -> Number {
        match lexed {
            Lexed::UInt(u) => match i64::try_from(u) {
                Ok(i) => Number::Int(i),
                Err(_) => Number::UInt(u),
            },
            // -0 is the integer 0 here (RapidJSON's reading); magnitudes up to 2^63 fit i64.
            Lexed::NegInt(magnitude) if magnitude <= 1 << 63 => {
                Number::Int((magnitude as i64).wrapping_neg())
            }
            Lexed::NegInt(magnitude) => Number::Float(-(magnitude as f64)),
            Lexed::Float(f) => Number::Float(f),
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

/// A JSON string literal with the escapes JSON requires (`\u00XX` in upper-case hex, as
/// RapidJSON writes them).
pub fn write_string(out: &mut String, s: &str) {
    write_escaped(out, s, true);
}

/// A JSON string literal: `"`, `\` and control characters escaped, everything else as it is;
/// `\u00XX` escapes in upper- or lower-case hex (Python's `json` writes lower case).
pub(crate) fn write_escaped(out: &mut String, s: &str, upper_hex: bool) {
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
            c if (c as u32) < 0x20 && upper_hex => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Errors

/// What went wrong. Each kind has a RapidJSON and a serde_json wording; the situations are
/// split finely enough that both tools' texts follow from the kind alone.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    DocumentEmpty,
    /// The input ended where a value (or the rest of a literal or number) was due.
    ValueEof,
    ExpectedValue,
    ExpectedIdent,
    /// The input ended in a container: right after it opened (`first`) or after an item.
    ContainerEof {
        container: Container,
        first: bool,
    },
    /// Something other than `,` or the closing bracket after an item.
    CommaOrEnd(Container),
    TrailingComma(Container),
    /// The input ended after an item's comma.
    EofAfterComma(Container),
    KeyMustBeString,
    ObjectEofBeforeColon,
    ExpectedColon,
    StringEof,
    EscapeEof,
    InvalidEscape,
    InvalidHex,
    HexEof,
    LoneSurrogate,
    UnexpectedEndOfHexEscape,
    ControlCharacter,
    InvalidUtf8,
    InvalidNumber,
    MissFraction {
        eof: bool,
    },
    MissExponent {
        eof: bool,
    },
    NumberOutOfRange,
    NestingTooDeep,
    TrailingCharacters,
    /// `NaN`, `Infinity` or `-Infinity` under gcloud rules.
    NonFinite(&'static str),
    /// A message from the value being deserialized (serde's `Error::custom`).
    Custom(String),
}

impl Kind {
    fn rapidjson(&self) -> &str {
        match self {
            Kind::DocumentEmpty => "The document is empty.",
            Kind::ValueEof
            | Kind::ExpectedValue
            | Kind::ExpectedIdent
            | Kind::InvalidNumber
            | Kind::ContainerEof {
                container: Container::Array,
                first: true,
            }
            | Kind::TrailingComma(Container::Array)
            | Kind::EofAfterComma(Container::Array) => "Invalid value.",
            Kind::ContainerEof {
                container: Container::Array,
                first: false,
            }
            | Kind::CommaOrEnd(Container::Array) => {
                "Missing a comma or ']' after an array element."
            }
            Kind::ContainerEof {
                container: Container::Object,
                first: true,
            }
            | Kind::KeyMustBeString
            | Kind::TrailingComma(Container::Object)
            | Kind::EofAfterComma(Container::Object) => "Missing a name for object member.",
            Kind::ObjectEofBeforeColon | Kind::ExpectedColon => {
                "Missing a colon after a name of object member."
            }
            Kind::ContainerEof {
                container: Container::Object,
                first: false,
            }
            | Kind::CommaOrEnd(Container::Object) => {
                "Missing a comma or '}' after an object member."
            }
            Kind::StringEof => "Missing a closing quotation mark in string.",
            Kind::EscapeEof | Kind::InvalidEscape => "Invalid escape character in string.",
            Kind::InvalidHex | Kind::HexEof => "Incorrect hex digit after \\u escape in string.",
            Kind::LoneSurrogate | Kind::UnexpectedEndOfHexEscape => {
                "The surrogate pair in string is invalid."
            }
            Kind::ControlCharacter | Kind::InvalidUtf8 => "Invalid encoding in string.",
            Kind::MissFraction { .. } => "Miss fraction part in number.",
            Kind::MissExponent { .. } => "Miss exponent in number.",
            Kind::NumberOutOfRange => "Number too big to be stored in double.",
            Kind::NestingTooDeep => "Nesting too deep.",
            Kind::TrailingCharacters => "The document root must not be followed by other values.",
            Kind::NonFinite(_) => "Invalid value.",
            Kind::Custom(message) => message,
        }
    }

    fn serde(&self) -> &str {
        match self {
            Kind::DocumentEmpty
            | Kind::ValueEof
            | Kind::EofAfterComma(_)
            | Kind::MissFraction { eof: true }
            | Kind::MissExponent { eof: true } => "EOF while parsing a value",
            Kind::ExpectedValue => "expected value",
            Kind::ExpectedIdent => "expected ident",
            Kind::ContainerEof {
                container: Container::Array,
                ..
            } => "EOF while parsing a list",
            Kind::ContainerEof {
                container: Container::Object,
                ..
            }
            | Kind::ObjectEofBeforeColon => "EOF while parsing an object",
            Kind::CommaOrEnd(Container::Array) => "expected `,` or `]`",
            Kind::CommaOrEnd(Container::Object) => "expected `,` or `}`",
            Kind::TrailingComma(_) => "trailing comma",
            Kind::KeyMustBeString => "key must be a string",
            Kind::ExpectedColon => "expected `:`",
            Kind::StringEof | Kind::EscapeEof | Kind::HexEof => "EOF while parsing a string",
            Kind::InvalidEscape | Kind::InvalidHex => "invalid escape",
            Kind::LoneSurrogate => "lone leading surrogate in hex escape",
            Kind::UnexpectedEndOfHexEscape => "unexpected end of hex escape",
            Kind::ControlCharacter => {
                "control character (\\u0000-\\u001F) found while parsing a string"
            }
            Kind::InvalidUtf8 => "invalid unicode code point",
            Kind::InvalidNumber
            | Kind::MissFraction { eof: false }
            | Kind::MissExponent { eof: false } => "invalid number",
            Kind::NumberOutOfRange => "number out of range",
            Kind::NestingTooDeep => "recursion limit exceeded",
            Kind::TrailingCharacters => "trailing characters",
            Kind::NonFinite(_) => "expected value",
            Kind::Custom(message) => message,
        }
    }
}

/// A document that could not be read, or a value the deserialized type refused.
///
/// It carries both tools' positions: RapidJSON's byte `offset` and serde_json's 1-based `line`
/// and `column` (the column of the offending character, or of the last one at the end of the
/// input).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonError {
    rules: Rules,
    kind: Kind,
    offset: usize,
    line: usize,
    column: usize,
}

impl JsonError {
    /// The reason, worded as the rules' tool words it (without position).
    pub fn reason(&self) -> &str {
        match self.rules {
            Rules::TfServing => self.kind.rapidjson(),
            Rules::Gcloud => self.kind.serde(),
        }
    }

    /// Byte offset of the error (RapidJSON's `GetErrorOffset`).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// 1-based line of the error.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Column of the error on its line, counted as serde_json does.
    pub fn column(&self) -> usize {
        self.column
    }

    /// Under gcloud rules: the `NaN` / `Infinity` / `-Infinity` token that stopped the reader.
    pub fn non_finite_token(&self) -> Option<&'static str> {
        match self.kind {
            Kind::NonFinite(token) => Some(token),
            _ => None,
        }
    }

    /// Whether the error came from the value being deserialized rather than from the text.
    pub fn is_custom(&self) -> bool {
        matches!(self.kind, Kind::Custom(_))
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rules {
            Rules::TfServing => write!(
                f,
                "JSON Parse error: {} at offset: {}",
                self.reason(),
                self.offset
            ),
            Rules::Gcloud => write!(
                f,
                "{} at line {} column {}",
                self.reason(),
                self.line,
                self.column
            ),
        }
    }
}

impl std::error::Error for JsonError {}

impl de::Error for JsonError {
    fn custom<T: fmt::Display>(message: T) -> JsonError {
        // The position is filled in by the deserializer the error passes through.
        JsonError {
            rules: Rules::Gcloud,
            kind: Kind::Custom(message.to_string()),
            offset: 0,
            line: 0,
            column: 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shared lexer

/// A number as read, before a consumer maps it onto its own number model.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lexed {
    /// A non-negative integer literal that fits `u64`.
    UInt(u64),
    /// A negative integer literal whose magnitude fits `u64` (`-0` included).
    NegInt(u64),
    Float(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Array,
    Object,
}

impl Container {
    fn closing_byte(self) -> u8 {
        match self {
            Container::Array => b']',
            Container::Object => b'}',
        }
    }

    /// The container an opening byte (`[` or `{`) starts.
    fn opened_by(byte: u8) -> Container {
        if byte == b'{' {
            Container::Object
        } else {
            Container::Array
        }
    }
}

/// A string as read: borrowed from the input when it had no escapes.
enum Text<'a, 's> {
    Borrowed(&'a str),
    Copied(&'s str),
}

/// A number scanned as if it were a plain decimal, `-?d+` or `-?d+.d+`: the fast path of every
/// number read. Scanning checks nothing; [`lexed`](Self::lexed) says whether the text really is
/// such a decimal, short enough to convert exactly without the general route.
#[derive(Debug, Clone, Copy)]
struct PlainNumber {
    negative: bool,
    /// The digits, without the point; exact for up to 19 digits, wrapped beyond.
    mantissa: u64,
    int_digits: usize,
    fraction_digits: usize,
    has_point: bool,
    leading_zero: bool,
    /// Index after the scanned text.
    end: usize,
    /// An exponent follows: not plain.
    exponent: bool,
}

impl PlainNumber {
    #[inline(always)]
    fn scan(input: &[u8], at: usize) -> PlainNumber {
        let mut i = at;
        let negative = input.get(i) == Some(&b'-');
        i += usize::from(negative);
        let int_start = i;
        let mut mantissa: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = input.get(i) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            i += 1;
        }
        let int_digits = i - int_start;
        let has_point = input.get(i) == Some(&b'.');
        let mut fraction_digits = 0;
        if has_point {
            let fraction_start = i + 1;
            i = fraction_start;
            while let Some(&d @ b'0'..=b'9') = input.get(i) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                i += 1;
            }
            fraction_digits = i - fraction_start;
        }
        PlainNumber {
            negative,
            mantissa,
            int_digits,
            fraction_digits,
            has_point,
            leading_zero: int_digits > 1 && input[int_start] == b'0',
            end: i,
            exponent: matches!(input.get(i), Some(b'e' | b'E')),
        }
    }

    /// Whether the text is a plain decimal of at most 19 digits (no leading zero, no exponent).
    #[inline(always)]
    fn is_plain(&self) -> bool {
        self.int_digits > 0
            && !self.leading_zero
            && (!self.has_point || self.fraction_digits > 0)
            && self.int_digits + self.fraction_digits <= 19
            && !self.exponent
    }

    /// A decimal's magnitude when the fast path gets it exactly: digits that fit a double
    /// exactly, scaled by an exact power of ten (Clinger's fast path, as
    /// `Reader::number_general` uses it).
    #[inline(always)]
    fn decimal_magnitude(&self) -> Option<f64> {
        // No shortcut for 0: a data-dependent branch costs more than the division.
        (self.mantissa <= 1 << 53)
            .then(|| self.mantissa as f64 / POWERS_OF_TEN[self.fraction_digits])
    }

    /// The number, for a plain decimal the fast path reads exactly (any integer; decimals per
    /// [`decimal_magnitude`](Self::decimal_magnitude)).
    #[inline(always)]
    fn lexed(&self) -> Option<Lexed> {
        if !self.is_plain() {
            return None;
        }
        if !self.has_point {
            return Some(if self.negative {
                Lexed::NegInt(self.mantissa)
            } else {
                Lexed::UInt(self.mantissa)
            });
        }
        let value = self.decimal_magnitude()?;
        Some(Lexed::Float(if self.negative { -value } else { value }))
    }

    /// `Number::from_lexed(self.lexed()?).as_f64()`, without the detour through the enums (the
    /// innermost step of reading float tensors).
    #[inline(always)]
    fn as_f64(&self) -> Option<f64> {
        if !self.is_plain() {
            return None;
        }
        let magnitude = if self.has_point {
            self.decimal_magnitude()?
        } else {
            self.mantissa as f64
        };
        // `-0` is the integer 0 (see `Number::from_lexed`), `-0.0` the double -0.
        Some(if self.negative && (self.has_point || self.mantissa != 0) {
            -magnitude
        } else {
            magnitude
        })
    }
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    rules: Rules,
}

fn is_digit(b: Option<&u8>) -> bool {
    matches!(b, Some(b'0'..=b'9'))
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8], rules: Rules) -> Reader<'a> {
        Reader {
            input,
            pos: 0,
            rules,
        }
    }

    fn gcloud(&self) -> bool {
        self.rules == Rules::Gcloud
    }

    /// An error with RapidJSON offset `offset` and serde_json position index `serde_at` (the
    /// index `serde_json`'s `position_of_index` receives).
    #[cold]
    fn fail(&self, kind: Kind, offset: usize, serde_at: usize) -> JsonError {
        let serde_at = serde_at.min(self.input.len());
        let before = &self.input[..serde_at];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = 1 + before[..line_start].iter().filter(|&&b| b == b'\n').count();
        JsonError {
            rules: self.rules,
            kind,
            offset,
            line,
            column: serde_at - line_start,
        }
    }

    /// An error at the character at `at` (or the end of the input when `at` is its length): the
    /// position both tools report for most errors.
    #[cold]
    fn fail_at(&self, kind: Kind, at: usize) -> JsonError {
        self.fail(kind, at, at + 1)
    }

    /// A deserialized value's error gets the current position, as serde_json's `fix_position`.
    #[cold]
    fn place(&self, error: JsonError) -> JsonError {
        if error.is_custom() && error.line == 0 {
            let mut placed = self.fail(error.kind, self.pos, self.pos);
            placed.rules = self.rules;
            placed
        } else {
            error
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Skips whitespace; the next byte, if any.
    #[inline]
    fn skip_whitespace(&mut self) -> Option<u8> {
        while let Some(&b) = self.input.get(self.pos) {
            match b {
                b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                _ => return Some(b),
            }
        }
        None
    }

    /// Whether another element (array) or member (object) follows, at the start of the
    /// container (`first`) or after an element: consumes a separating comma and whitespace;
    /// leaves the closing byte for the caller. Trailing commas, missing separators and the end of
    /// the input are errors, with both tools' readings of where they are.
    fn next_item(&mut self, container: Container, first: bool) -> Result<bool, JsonError> {
        let close = container.closing_byte();
        let next = match self.skip_whitespace() {
            None => return Err(self.fail_at(Kind::ContainerEof { container, first }, self.pos)),
            Some(b) if b == close => return Ok(false),
            Some(b) if first => b,
            Some(b',') => {
                self.pos += 1;
                match self.skip_whitespace() {
                    None => return Err(self.fail_at(Kind::EofAfterComma(container), self.pos)),
                    Some(b) if b == close => {
                        return Err(self.fail_at(Kind::TrailingComma(container), self.pos));
                    }
                    Some(b) => b,
                }
            }
            Some(_) => return Err(self.fail_at(Kind::CommaOrEnd(container), self.pos)),
        };
        // An object's member starts with its key.
        if container == Container::Object && next != b'"' {
            return Err(self.fail_at(Kind::KeyMustBeString, self.pos));
        }
        Ok(true)
    }

    /// The colon after an object key.
    fn colon(&mut self) -> Result<(), JsonError> {
        match self.skip_whitespace() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.fail_at(Kind::ExpectedColon, self.pos)),
            None => Err(self.fail_at(Kind::ObjectEofBeforeColon, self.pos)),
        }
    }

    /// `true`, `false` or `null`; the cursor is at its first letter.
    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        let start = self.pos;
        if self.input[start..].starts_with(word) {
            self.pos += word.len();
            return Ok(());
        }
        match self.rules {
            Rules::TfServing => Err(self.fail_at(Kind::ExpectedIdent, start)),
            Rules::Gcloud => {
                // serde_json reads letter by letter and stops at the first one that differs.
                for (k, &expected) in word.iter().enumerate().skip(1) {
                    match self.input.get(start + k) {
                        None => return Err(self.fail_at(Kind::ValueEof, self.input.len())),
                        Some(&b) if b != expected => {
                            return Err(self.fail_at(Kind::ExpectedIdent, start + k));
                        }
                        Some(_) => {}
                    }
                }
                Err(self.fail_at(Kind::ExpectedIdent, start))
            }
        }
    }

    /// A value starting with `N` or `I` (or `-N`, `-I`); the cursor is at that letter and
    /// `start` at the value's first byte.
    #[cold]
    fn non_finite(&mut self, start: usize) -> Result<Lexed, JsonError> {
        let negative = start < self.pos;
        let rest = &self.input[self.pos..];
        match self.rules {
            Rules::TfServing => {
                // RapidJSON's kParseNanAndInfFlag tokens.
                for (token, value) in [
                    (&b"NaN"[..], f64::NAN),
                    (&b"Infinity"[..], f64::INFINITY),
                    (&b"Inf"[..], f64::INFINITY),
                ] {
                    if rest.starts_with(token) {
                        self.pos += token.len();
                        return Ok(Lexed::Float(if negative { -value } else { value }));
                    }
                }
                Err(self.fail_at(Kind::ExpectedValue, self.pos))
            }
            Rules::Gcloud => {
                if rest.starts_with(b"NaN") {
                    Err(self.fail_at(Kind::NonFinite("NaN"), self.pos))
                } else if rest.starts_with(b"Infinity") {
                    if negative {
                        Err(self.fail_at(Kind::NonFinite("-Infinity"), start))
                    } else {
                        Err(self.fail_at(Kind::NonFinite("Infinity"), self.pos))
                    }
                } else if negative {
                    Err(self.fail_at(Kind::InvalidNumber, self.pos))
                } else {
                    Err(self.fail_at(Kind::ExpectedValue, self.pos))
                }
            }
        }
    }

    /// A number; the cursor is at its first byte (`-`, a digit, or `N`/`I`).
    #[inline]
    fn number(&mut self) -> Result<Lexed, JsonError> {
        // Tensor data is mostly short plain decimals (`0.0`, `0.32941177`): read those in one
        // tight pass. Anything else (exponents, more than 19 digits, malformed text) takes the
        // general route, which starts over.
        let plain = PlainNumber::scan(self.input, self.pos);
        if let Some(lexed) = plain.lexed() {
            self.pos = plain.end;
            return Ok(lexed);
        }
        self.number_general()
    }

    /// Any number, with every rule and error; the cursor is at its first byte.
    fn number_general(&mut self) -> Result<Lexed, JsonError> {
        let input = self.input;
        let start = self.pos;
        let mut i = start;
        let negative = input.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        // Significant digits accumulate in `mantissa` while they fit; `exact` records whether
        // all of them did.
        let mut mantissa: u64 = 0;
        let mut exact = true;
        match input.get(i) {
            Some(b'0') => {
                i += 1;
                if self.gcloud() && is_digit(input.get(i)) {
                    return Err(self.fail_at(Kind::InvalidNumber, i));
                }
            }
            Some(b'1'..=b'9') => {
                while let Some(&d @ b'0'..=b'9') = input.get(i) {
                    if mantissa < 1_000_000_000_000_000_000 {
                        mantissa = mantissa * 10 + u64::from(d - b'0');
                    } else {
                        exact = false;
                    }
                    i += 1;
                }
            }
            Some(b'N' | b'I') => {
                self.pos = i;
                return self.non_finite(start);
            }
            Some(_) if self.gcloud() => return Err(self.fail_at(Kind::InvalidNumber, i)),
            Some(_) => return Err(self.fail_at(Kind::ExpectedValue, i)),
            None => return Err(self.fail_at(Kind::ValueEof, i)),
        }
        let mut is_integer = true;
        let mut fraction_digits: i32 = 0;
        if input.get(i) == Some(&b'.') {
            is_integer = false;
            i += 1;
            if !is_digit(input.get(i)) {
                let eof = i == input.len();
                return Err(self.fail_at(Kind::MissFraction { eof }, i));
            }
            while let Some(&d @ b'0'..=b'9') = input.get(i) {
                if mantissa < 1_000_000_000_000_000_000 {
                    mantissa = mantissa * 10 + u64::from(d - b'0');
                    fraction_digits += 1;
                } else {
                    exact = false;
                }
                i += 1;
            }
        }
        let mut exponent: i32 = 0;
        if let Some(b'e' | b'E') = input.get(i) {
            is_integer = false;
            i += 1;
            let exponent_negative = match input.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            if !is_digit(input.get(i)) {
                let eof = i == input.len();
                return Err(self.fail_at(Kind::MissExponent { eof }, i));
            }
            let mut overflowed_at = None;
            while let Some(&d @ b'0'..=b'9') = input.get(i) {
                let digit = i32::from(d - b'0');
                match exponent.checked_mul(10).and_then(|e| e.checked_add(digit)) {
                    Some(e) => exponent = e,
                    None => {
                        overflowed_at.get_or_insert(i + 1);
                        exponent = i32::MAX;
                    }
                }
                i += 1;
            }
            if let Some(at) = overflowed_at
                && self.gcloud()
                && !exponent_negative
                && (mantissa != 0 || !exact)
            {
                // serde_json stops at the digit that overflows its exponent.
                return Err(self.fail(Kind::NumberOutOfRange, start, at));
            }
            if exponent_negative {
                exponent = -exponent;
            }
        }
        self.pos = i;
        if is_integer {
            if exact {
                return Ok(if negative {
                    Lexed::NegInt(mantissa)
                } else {
                    Lexed::UInt(mantissa)
                });
            }
            // Up to 20 digits may still fit u64.
            let digits =
                std::str::from_utf8(&input[start + usize::from(negative)..i]).unwrap_or("");
            if let Ok(magnitude) = digits.parse::<u64>() {
                return Ok(if negative {
                    Lexed::NegInt(magnitude)
                } else {
                    Lexed::UInt(magnitude)
                });
            }
        } else if exact {
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
                return Ok(Lexed::Float(if negative { -value } else { value }));
            }
        }
        // The slice holds only ASCII sign/digit/'.'/'e' bytes, so it is valid UTF-8.
        let text = std::str::from_utf8(&input[start..i]).unwrap_or("");
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Lexed::Float(f)),
            _ => Err(self.fail(Kind::NumberOutOfRange, start, i)),
        }
    }

    /// Four hex digits of a `\u` escape starting at `at`: the code unit and the index after it.
    fn hex4(&self, at: usize) -> Result<u32, JsonError> {
        let mut value = 0u32;
        for k in 0..4 {
            let digit = self
                .input
                .get(at + k)
                .and_then(|&b| (b as char).to_digit(16));
            match digit {
                Some(d) => value = value * 16 + d,
                None => {
                    // RapidJSON points at the bad digit; serde_json reads four bytes first.
                    return Err(if at + 4 > self.input.len() {
                        self.fail(Kind::HexEof, at + k, self.input.len())
                    } else {
                        self.fail(Kind::InvalidHex, at + k, at + 4)
                    });
                }
            }
        }
        Ok(value)
    }

    /// The character of a `\u` escape whose `u` was at `self.pos - 1`; surrogate pairs
    /// combined. Advances past it.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4(self.pos)?;
        self.pos += 4;
        let len = self.input.len();
        let code = match self.rules {
            Rules::TfServing => {
                if (0xD800..0xDC00).contains(&first) {
                    if !self.input[self.pos..].starts_with(b"\\u") {
                        return Err(self.fail_at(Kind::LoneSurrogate, self.pos));
                    }
                    self.pos += 2;
                    let second = self.hex4(self.pos)?;
                    self.pos += 4;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err(self.fail_at(Kind::LoneSurrogate, self.pos));
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                }
            }
            Rules::Gcloud => {
                if (0xDC00..0xE000).contains(&first) {
                    return Err(self.fail(Kind::LoneSurrogate, self.pos, self.pos));
                }
                if (0xD800..0xDC00).contains(&first) {
                    for expected in [b'\\', b'u'] {
                        match self.input.get(self.pos) {
                            None => return Err(self.fail(Kind::StringEof, len, len)),
                            Some(&b) if b != expected => {
                                return Err(self.fail(
                                    Kind::UnexpectedEndOfHexEscape,
                                    self.pos,
                                    self.pos + 1,
                                ));
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                    let second = self.hex4(self.pos)?;
                    self.pos += 4;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err(self.fail(Kind::LoneSurrogate, self.pos, self.pos));
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                }
            }
        };
        char::from_u32(code).ok_or_else(|| self.fail_at(Kind::LoneSurrogate, self.pos))
    }

    /// A string that is not UTF-8; the cursor is after its closing quote. RapidJSON reports the
    /// start of the last run of plain bytes; serde_json the closing quote's column less the
    /// decoded bytes from the first invalid one on.
    #[cold]
    fn utf8_error(&self, run_start: usize, decoded_len: usize, valid_up_to: usize) -> JsonError {
        let mut error = self.fail(Kind::InvalidUtf8, run_start, self.pos);
        error.column = error.column.saturating_sub(decoded_len - valid_up_to);
        error
    }

    /// A string; the cursor is at its opening quote. Without escapes the text is borrowed from
    /// the input, else it is decoded into `scratch`.
    fn string<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Result<Text<'a, 's>, JsonError> {
        let input = self.input;
        self.pos += 1;
        scratch.clear();
        let mut escaped = false;
        loop {
            let run_start = self.pos;
            // Copy the run of plain bytes at once: most strings have no escapes.
            while let Some(&b) = input.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            let run = &input[run_start..self.pos];
            match input.get(self.pos) {
                None => return Err(self.fail_at(Kind::StringEof, self.pos)),
                Some(b'"') => {
                    self.pos += 1;
                    if !escaped {
                        let bytes = &input[run_start..self.pos - 1];
                        return match std::str::from_utf8(bytes) {
                            Ok(text) => Ok(Text::Borrowed(text)),
                            Err(e) => Err(self.utf8_error(run_start, bytes.len(), e.valid_up_to())),
                        };
                    }
                    scratch.extend_from_slice(run);
                    let decoded: &'s Vec<u8> = scratch;
                    return match std::str::from_utf8(decoded) {
                        Ok(text) => Ok(Text::Copied(text)),
                        Err(e) => Err(self.utf8_error(run_start, decoded.len(), e.valid_up_to())),
                    };
                }
                Some(b'\\') => {
                    escaped = true;
                    scratch.extend_from_slice(run);
                    self.pos += 1;
                    let decoded = match input.get(self.pos) {
                        None => return Err(self.fail_at(Kind::EscapeEof, self.pos)),
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
                            scratch.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        Some(_) => return Err(self.fail_at(Kind::InvalidEscape, self.pos)),
                    };
                    self.pos += 1;
                    scratch.push(decoded);
                }
                Some(_) => return Err(self.fail_at(Kind::ControlCharacter, self.pos)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Whole documents

/// Parses the first JSON value of `input` with `rules`. Under TF Serving rules whatever follows
/// the value is ignored (as TF Serving does); under gcloud rules it is an error.
pub fn parse(input: &[u8], rules: Rules) -> Result<Json, JsonError> {
    let mut builder = TreeBuilder {
        reader: Reader::new(input, rules),
        containers: 0,
        row_hint: 0,
        scratch: Vec::new(),
    };
    if builder.reader.skip_whitespace().is_none() {
        return Err(builder.reader.fail_at(Kind::DocumentEmpty, input.len()));
    }
    let value = builder.value(0)?;
    if rules == Rules::Gcloud && builder.reader.skip_whitespace().is_some() {
        let at = builder.reader.pos;
        return Err(builder.reader.fail_at(Kind::TrailingCharacters, at));
    }
    Ok(value)
}

struct TreeBuilder<'a> {
    reader: Reader<'a>,
    /// Open arrays and objects (gcloud rules' nesting limit).
    containers: usize,
    /// Length of the last numbers-only array: rows of a tensor have equal lengths.
    row_hint: usize,
    scratch: Vec<u8>,
}

impl TreeBuilder<'_> {
    /// The value at the cursor (which is on a non-whitespace byte or at the end).
    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        let r = &mut self.reader;
        if r.rules == Rules::TfServing && depth > MAX_DEPTH {
            return Err(r.fail_at(Kind::NestingTooDeep, r.pos));
        }
        match r.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => r.literal(b"true").map(|()| Json::Bool(true)),
            Some(b'f') => r.literal(b"false").map(|()| Json::Bool(false)),
            Some(b'n') => r.literal(b"null").map(|()| Json::Null),
            Some(b'-' | b'0'..=b'9' | b'N' | b'I') => {
                Ok(Json::Number(Number::from_lexed(r.number()?)))
            }
            Some(_) => Err(r.fail_at(Kind::ExpectedValue, r.pos)),
            None => Err(r.fail_at(Kind::ValueEof, r.pos)),
        }
    }

    fn string(&mut self) -> Result<String, JsonError> {
        Ok(match self.reader.string(&mut self.scratch)? {
            Text::Borrowed(s) => s.to_string(),
            Text::Copied(s) => s.to_string(),
        })
    }

    fn open_container(&mut self) -> Result<(), JsonError> {
        let r = &mut self.reader;
        if r.rules == Rules::Gcloud {
            self.containers += 1;
            if self.containers >= MAX_CONTAINERS {
                return Err(r.fail_at(Kind::NestingTooDeep, r.pos));
            }
        }
        r.pos += 1;
        Ok(())
    }

    /// After the closing byte of a container (which [`Reader::next_item`] left in place).
    fn close_container(&mut self) {
        self.reader.pos += 1;
        self.containers = self.containers.saturating_sub(1);
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.open_container()?;
        if !self.reader.next_item(Container::Array, true)? {
            self.close_container();
            return Ok(Json::Array(Vec::new()));
        }
        // Numbers-only arrays (the common case) are collected compactly; the first element that
        // is not a number turns the array into a general one.
        let mut numbers = Vec::with_capacity(self.row_hint);
        let mut items = loop {
            let r = &mut self.reader;
            if !matches!(r.peek(), Some(b'-' | b'0'..=b'9' | b'N' | b'I')) {
                break numbers.into_iter().map(Json::Number).collect::<Vec<_>>();
            }
            numbers.push(Number::from_lexed(r.number()?));
            if !r.next_item(Container::Array, false)? {
                self.close_container();
                self.row_hint = numbers.len();
                return Ok(Json::Numbers(numbers));
            }
        };
        loop {
            items.push(self.value(depth + 1)?);
            if !self.reader.next_item(Container::Array, false)? {
                self.close_container();
                return Ok(Json::Array(items));
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.open_container()?;
        let mut members = Vec::new();
        let mut first = true;
        while self.reader.next_item(Container::Object, first)? {
            first = false;
            let key = self.string()?;
            self.reader.colon()?;
            self.reader.skip_whitespace();
            let value = self.value(depth + 1)?;
            members.push((key, value));
        }
        self.close_container();
        Ok(Json::Object(members))
    }
}

/// Token-level reading for callers that expect one particular shape of document and hand
/// anything else to [`parse`] (a server's fast path for rows of numbers, say): the same lexer and
/// rules, without building anything.
pub struct Cursor<'a> {
    reader: Reader<'a>,
    scratch: Vec<u8>,
}

impl<'a> Cursor<'a> {
    pub fn new(input: &'a [u8], rules: Rules) -> Cursor<'a> {
        Cursor {
            reader: Reader::new(input, rules),
            scratch: Vec::new(),
        }
    }

    /// Skips whitespace and consumes `byte` if it comes next.
    #[inline]
    pub fn eat(&mut self, byte: u8) -> bool {
        if self.reader.skip_whitespace() == Some(byte) {
            self.reader.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips whitespace and reads an array of numbers (`[x, x, …]`, at least one), appending
    /// each as its double narrowed to `f32` (bit for bit `number().as_f64() as f32`); the count.
    /// `None` for anything else, malformed text included, with the cursor left inside: callers
    /// that get `None` start over with [`parse`]. This is the innermost loop of reading tensor
    /// rows, so plain decimals are read inline with a local position.
    pub fn f32_array(&mut self, out: &mut Vec<f32>) -> Option<usize> {
        let input = self.reader.input;
        let mut i = self.reader.pos;
        let skip = |mut i: usize| {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = input.get(i) {
                i += 1;
            }
            i
        };
        i = skip(i);
        if input.get(i) != Some(&b'[') {
            return None;
        }
        let first = out.len();
        loop {
            i = skip(i + 1);
            let start = i;
            let plain = PlainNumber::scan(input, i);
            let value = match plain.as_f64() {
                Some(value) => {
                    i = plain.end;
                    value
                }
                None => {
                    if !matches!(input.get(start), Some(b'-' | b'0'..=b'9' | b'N' | b'I')) {
                        return None;
                    }
                    self.reader.pos = start;
                    let value = Number::from_lexed(self.reader.number_general().ok()?).as_f64();
                    i = self.reader.pos;
                    value
                }
            };
            out.push(value as f32);
            i = skip(i);
            match input.get(i) {
                Some(b',') => {}
                Some(b']') => {
                    self.reader.pos = i + 1;
                    return Some(out.len() - first);
                }
                _ => return None,
            }
        }
    }

    /// Skips whitespace and reads a string (`None` if none starts here).
    pub fn string(&mut self) -> Option<Result<Cow<'a, str>, JsonError>> {
        if self.reader.skip_whitespace() != Some(b'"') {
            return None;
        }
        Some(match self.reader.string(&mut self.scratch) {
            Ok(Text::Borrowed(text)) => Ok(Cow::Borrowed(text)),
            Ok(Text::Copied(text)) => Ok(Cow::Owned(text.to_string())),
            Err(e) => Err(e),
        })
    }

    /// Byte offset of the cursor.
    pub fn offset(&self) -> usize {
        self.reader.pos
    }

    /// Skips whitespace and says whether the input ends there.
    pub fn at_end(&mut self) -> bool {
        self.reader.skip_whitespace().is_none()
    }

    /// Skips whitespace and says which byte comes next, without consuming it.
    pub fn peek(&mut self) -> Option<u8> {
        self.reader.skip_whitespace()
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming (serde)

/// A serde `Deserializer` over JSON text: values go straight to the visitor, nothing is built.
/// Call [`end`](Deserializer::end) after the value to apply the rules to what follows it.
pub struct Deserializer<'a> {
    reader: Reader<'a>,
    scratch: Vec<u8>,
    containers: usize,
}

impl<'a> Deserializer<'a> {
    pub fn new(input: &'a [u8], rules: Rules) -> Deserializer<'a> {
        Deserializer {
            reader: Reader::new(input, rules),
            scratch: Vec::new(),
            containers: 0,
        }
    }

    /// Gcloud rules: only whitespace may follow the value. TF Serving rules: anything may.
    pub fn end(&mut self) -> Result<(), JsonError> {
        let r = &mut self.reader;
        if r.rules == Rules::Gcloud && r.skip_whitespace().is_some() {
            return Err(r.fail_at(Kind::TrailingCharacters, r.pos));
        }
        Ok(())
    }

    fn open_container(&mut self) -> Result<(), JsonError> {
        self.containers += 1;
        if self.containers >= MAX_CONTAINERS {
            let r = &self.reader;
            return Err(r.fail_at(Kind::NestingTooDeep, r.pos));
        }
        self.reader.pos += 1;
        Ok(())
    }

    /// A container for a visitor: opened, visited, then closed as serde_json's `end_seq` and
    /// `end_map` close it (they run even after the visitor failed; its error wins).
    fn visit_container<T>(
        &mut self,
        container: Container,
        visit: impl FnOnce(ItemAccess<'_, 'a>) -> Result<T, JsonError>,
    ) -> Result<T, JsonError> {
        self.open_container()?;
        let visited = visit(ItemAccess {
            de: &mut *self,
            first: true,
        });
        let ended = self.end_container(container);
        self.containers -= 1;
        match (visited, ended) {
            (Ok(value), Ok(())) => Ok(value),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// The closing bracket after a visitor has seen the elements it wanted.
    fn end_container(&mut self, container: Container) -> Result<(), JsonError> {
        let r = &mut self.reader;
        let close = container.closing_byte();
        let eof = Kind::ContainerEof {
            container,
            first: false,
        };
        match r.skip_whitespace() {
            Some(b) if b == close => {
                r.pos += 1;
                Ok(())
            }
            // serde_json looks past an array's comma for the bracket; an object's comma is the
            // error itself.
            Some(b',') if container == Container::Array => {
                r.pos += 1;
                match r.skip_whitespace() {
                    Some(b']') => Err(r.fail_at(Kind::TrailingComma(container), r.pos)),
                    _ => Err(r.fail_at(Kind::TrailingCharacters, r.pos)),
                }
            }
            Some(b',') => Err(r.fail_at(Kind::TrailingComma(container), r.pos)),
            Some(_) => Err(r.fail_at(Kind::TrailingCharacters, r.pos)),
            None => Err(r.fail_at(eof, r.pos)),
        }
    }

    /// Skips one value without building or checking more than JSON syntax, as serde_json's
    /// `ignore_value` does (its checks and positions differ a little from a full read: numbers
    /// are not range-checked, strings not UTF-8-checked).
    fn skip_value(&mut self) -> Result<(), JsonError> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            let r = &mut self.reader;
            let len = r.input.len();
            let Some(peek) = r.skip_whitespace() else {
                return Err(r.fail_at(Kind::ValueEof, len));
            };
            let mut accept_comma = true;
            match peek {
                b'n' => r.literal(b"null")?,
                b't' => r.literal(b"true")?,
                b'f' => r.literal(b"false")?,
                b'-' | b'0'..=b'9' => r.skip_number()?,
                b'N' | b'I' => {
                    r.non_finite(r.pos)?;
                }
                b'"' => r.skip_string()?,
                b'[' | b'{' => {
                    r.pos += 1;
                    open.push(peek);
                    accept_comma = false;
                }
                _ => return Err(r.fail_at(Kind::ExpectedValue, r.pos)),
            }
            // Close what can be closed; find where the next value starts.
            loop {
                let Some(&frame) = open.last() else {
                    return Ok(());
                };
                let r = &mut self.reader;
                match r.skip_whitespace() {
                    Some(b',') if accept_comma => {
                        r.pos += 1;
                        break;
                    }
                    Some(b']') if frame == b'[' => {}
                    Some(b'}') if frame == b'{' => {}
                    Some(_) if accept_comma => {
                        let kind = Kind::CommaOrEnd(Container::opened_by(frame));
                        return Err(r.fail_at(kind, r.pos));
                    }
                    Some(_) => break,
                    None => {
                        let kind = Kind::ContainerEof {
                            container: Container::opened_by(frame),
                            first: false,
                        };
                        return Err(r.fail_at(kind, r.pos));
                    }
                }
                r.pos += 1;
                open.pop();
                accept_comma = true;
            }
            if open.last() == Some(&b'{') {
                let r = &mut self.reader;
                match r.skip_whitespace() {
                    Some(b'"') => r.skip_string()?,
                    Some(_) => return Err(r.fail_at(Kind::KeyMustBeString, r.pos)),
                    None => {
                        let kind = Kind::ContainerEof {
                            container: Container::Object,
                            first: true,
                        };
                        return Err(r.fail_at(kind, r.pos));
                    }
                }
                r.colon()?;
            }
        }
    }
}

impl Reader<'_> {
    /// serde_json's `ignore_integer` and friends: syntax only.
    fn skip_number(&mut self) -> Result<(), JsonError> {
        let input = self.input;
        let start = self.pos;
        let mut i = start;
        if input.get(i) == Some(&b'-') {
            i += 1;
            if matches!(input.get(i), Some(b'N' | b'I')) {
                self.pos = i;
                return self.non_finite(start).map(|_| ());
            }
        }
        match input.get(i) {
            Some(b'0') => {
                i += 1;
                if is_digit(input.get(i)) {
                    return Err(self.fail_at(Kind::InvalidNumber, i));
                }
            }
            Some(b'1'..=b'9') => {
                while is_digit(input.get(i)) {
                    i += 1;
                }
            }
            // An end of input reads as a NUL byte there: "invalid number", not "EOF".
            _ => return Err(self.fail(Kind::InvalidNumber, i, i + 1)),
        }
        if input.get(i) == Some(&b'.') {
            i += 1;
            if !is_digit(input.get(i)) {
                return Err(self.fail_at(Kind::MissFraction { eof: false }, i));
            }
            while is_digit(input.get(i)) {
                i += 1;
            }
        }
        if let Some(b'e' | b'E') = input.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = input.get(i) {
                i += 1;
            }
            if !is_digit(input.get(i)) {
                return Err(self.fail(Kind::MissExponent { eof: false }, i, i + 1));
            }
            while is_digit(input.get(i)) {
                i += 1;
            }
        }
        self.pos = i;
        Ok(())
    }

    /// serde_json's `ignore_str`: escapes checked, UTF-8 and surrogates not.
    fn skip_string(&mut self) -> Result<(), JsonError> {
        let input = self.input;
        let len = input.len();
        self.pos += 1;
        loop {
            while let Some(&b) = input.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            match input.get(self.pos) {
                None => return Err(self.fail_at(Kind::StringEof, len)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match input.get(self.pos) {
                        None => return Err(self.fail_at(Kind::EscapeEof, len)),
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1;
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            self.hex4(self.pos)?;
                            self.pos += 4;
                        }
                        Some(_) => return Err(self.fail_at(Kind::InvalidEscape, self.pos)),
                    }
                }
                // Reported before the byte is consumed, one column earlier than in a full read.
                Some(_) => return Err(self.fail(Kind::ControlCharacter, self.pos, self.pos)),
            }
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = JsonError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        let r = &mut self.reader;
        let Some(peek) = r.skip_whitespace() else {
            return Err(r.fail_at(Kind::ValueEof, r.pos));
        };
        let value = match peek {
            b'n' => {
                r.literal(b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                r.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                r.literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'-' | b'0'..=b'9' | b'N' | b'I' => match r.number()? {
                Lexed::UInt(u) => visitor.visit_u64(u),
                // serde_json: -0 is a float; -1 ..= -2^63 are i64; larger magnitudes floats.
                Lexed::NegInt(0) => visitor.visit_f64(-0.0),
                Lexed::NegInt(m) if m <= 1 << 63 => visitor.visit_i64((m as i64).wrapping_neg()),
                Lexed::NegInt(m) => visitor.visit_f64(-(m as f64)),
                Lexed::Float(f) => visitor.visit_f64(f),
            },
            b'"' => match r.string(&mut self.scratch)? {
                Text::Borrowed(s) => visitor.visit_borrowed_str(s),
                Text::Copied(s) => visitor.visit_str(s),
            },
            b'[' => self.visit_container(Container::Array, |items| visitor.visit_seq(items)),
            b'{' => self.visit_container(Container::Object, |items| visitor.visit_map(items)),
            _ => return Err(r.fail_at(Kind::ExpectedValue, r.pos)),
        };
        value.map_err(|e| self.reader.place(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.reader.rules {
            Rules::Gcloud => {
                self.skip_value()?;
                visitor.visit_unit()
            }
            Rules::TfServing => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
    }
}

/// The elements of an array (serde_json's `SeqAccess`) or the members of an object (its
/// `MapAccess`): the same walk over separators, [`Reader::next_item`].
struct ItemAccess<'d, 'de> {
    de: &'d mut Deserializer<'de>,
    first: bool,
}

impl<'de> ItemAccess<'_, 'de> {
    fn next(&mut self, container: Container) -> Result<bool, JsonError> {
        let more = self.de.reader.next_item(container, self.first)?;
        self.first = false;
        Ok(more)
    }
}

impl<'de> SeqAccess<'de> for ItemAccess<'_, 'de> {
    type Error = JsonError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, JsonError> {
        if !self.next(Container::Array)? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

impl<'de> MapAccess<'de> for ItemAccess<'_, 'de> {
    type Error = JsonError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, JsonError> {
        if !self.next(Container::Object)? {
            return Ok(None);
        }
        seed.deserialize(KeyDeserializer { de: &mut *self.de })
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, JsonError> {
        self.de.reader.colon()?;
        seed.deserialize(&mut *self.de)
    }
}

/// An object key: always a string (the cursor is at its opening quote).
struct KeyDeserializer<'d, 'de> {
    de: &'d mut Deserializer<'de>,
}

impl<'de> de::Deserializer<'de> for KeyDeserializer<'_, 'de> {
    type Error = JsonError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        let de = self.de;
        match de.reader.string(&mut de.scratch)? {
            Text::Borrowed(s) => visitor.visit_borrowed_str(s),
            Text::Copied(s) => visitor.visit_str(s),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    fn tfs(text: &[u8]) -> Result<Json, JsonError> {
        parse(text, Rules::TfServing)
    }

    #[test]
    fn parses_numbers_keeping_integerness() {
        let v =
            tfs(b"[1, -2, 1.0, 2e3, 18446744073709551615, NaN, -Infinity, -9223372036854775808]")
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
        let v = tfs(br#"{"a\n\"b": "\u00e9\ud83d\ude00x"}"#).unwrap();
        assert_eq!(v.get("a\n\"b"), Some(&Json::Str("é😀x".into())));
    }

    #[test]
    fn trailing_text_is_ignored_like_rapidjson_but_not_under_gcloud_rules() {
        assert_eq!(tfs(b"{} garbage").unwrap(), Json::Object(vec![]));
        let e = parse(b"{} garbage", Rules::Gcloud).unwrap_err();
        assert_eq!(
            (e.reason(), e.line(), e.column()),
            ("trailing characters", 1, 4)
        );
    }

    #[test]
    fn non_finite_tokens_depend_on_the_rules() {
        assert!(
            matches!(tfs(b"-Inf").unwrap(), Json::Number(Number::Float(f)) if f == f64::NEG_INFINITY)
        );
        let e = parse(b"[1,\n -Infinity]", Rules::Gcloud).unwrap_err();
        assert_eq!(e.non_finite_token(), Some("-Infinity"));
        assert_eq!((e.line(), e.column()), (2, 2));
        let e = parse(b"[Inf]", Rules::Gcloud).unwrap_err();
        assert_eq!((e.reason(), e.non_finite_token()), ("expected value", None));
    }

    #[test]
    fn errors_name_reason_and_offset() {
        assert_eq!(
            tfs(b"").unwrap_err().to_string(),
            "JSON Parse error: The document is empty. at offset: 0"
        );
        assert_eq!(
            tfs(b"  \n").unwrap_err().to_string(),
            "JSON Parse error: The document is empty. at offset: 3"
        );
        let e = tfs(b"{\"instances\": [1, 2,]}").unwrap_err();
        assert_eq!((e.reason(), e.offset()), ("Invalid value.", 20));
        let cases: [(&[u8], &str); 8] = [
            (
                b"{\"a\" 1}",
                "Missing a colon after a name of object member.",
            ),
            (b"[1 2]", "Missing a comma or ']' after an array element."),
            (b"[1.]", "Miss fraction part in number."),
            (b"[1e]", "Miss exponent in number."),
            (b"\"abc", "Missing a closing quotation mark in string."),
            (b"1e999", "Number too big to be stored in double."),
            (b"\"\xff\"", "Invalid encoding in string."),
            (b"{\"a\": 1,}", "Missing a name for object member."),
        ];
        for (text, reason) in cases {
            let text_shown = String::from_utf8_lossy(text);
            assert_eq!(tfs(text).unwrap_err().reason(), reason, "{text_shown}");
        }
    }

    /// `Cursor::f32_array`'s inline reading must equal the full reader's, narrowed: integers,
    /// `-0`, long mantissas, exponents and non-finite tokens included.
    #[test]
    fn f32_arrays_equal_full_numbers_narrowed() {
        let mut rng = StdRng::seed_from_u64(0x0123_4567_89ab_cdef);
        let mut next = move |n: u64| rng.random_range(0..n);
        let mut texts: Vec<String> = vec![
            "-0".into(),
            "0".into(),
            "-0.0".into(),
            "0.0".into(),
            "18446744073709551615".into(),
            "-9223372036854775809".into(),
            "9007199254740993".into(),
            "1e40".into(),
            "NaN".into(),
            "-Infinity".into(),
            "3.4028235e38".into(),
            "1.4e-45".into(),
            "0.30000000000000004".into(),
        ];
        for _ in 0..50_000 {
            let int: String = (0..1 + next(12))
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect();
            let int = int.trim_start_matches('0');
            let int = if int.is_empty() { "0" } else { int };
            let mut text = format!("{}{int}", if next(3) == 0 { "-" } else { "" });
            if next(4) != 0 {
                text.push('.');
                text.extend((0..1 + next(20)).map(|_| char::from(b'0' + next(10) as u8)));
            }
            if next(10) == 0 {
                text.push_str(&format!(
                    "e{}{}",
                    if next(2) == 0 { "-" } else { "" },
                    next(50)
                ));
            }
            texts.push(text);
        }
        for chunk in texts.chunks(37) {
            let array = format!("[{}]", chunk.join(" , "));
            let mut out = Vec::new();
            let mut cursor = Cursor::new(array.as_bytes(), Rules::TfServing);
            assert_eq!(cursor.f32_array(&mut out), Some(chunk.len()), "{array}");
            for (text, got) in chunk.iter().zip(&out) {
                let Json::Number(n) = tfs(text.as_bytes()).unwrap() else {
                    panic!("{text}")
                };
                assert_eq!(got.to_bits(), (n.as_f64() as f32).to_bits(), "{text}");
            }
        }
        for bad in [
            "[]", "[1,]", "[1 2]", "[\"a\"]", "[[1]]", "[1.]", "[01]", "1", "[1",
        ] {
            let mut cursor = Cursor::new(bad.as_bytes(), Rules::TfServing);
            assert_eq!(cursor.f32_array(&mut Vec::new()), None, "{bad}");
        }
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
            let parsed = match tfs(text.as_bytes()).unwrap() {
                Json::Number(n) => n.as_f64(),
                other => panic!("{other:?}"),
            };
            let expected: f64 = text.parse().unwrap();
            assert_eq!(parsed.to_bits(), expected.to_bits(), "{text}");
        }
    }

    #[test]
    fn mixed_arrays_become_general_arrays() {
        let v = tfs(b"[1, \"a\", [2, 3]]").unwrap();
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
            tfs(doc.as_bytes()).unwrap_err().reason(),
            "Nesting too deep."
        );
        assert_eq!(
            parse(doc.as_bytes(), Rules::Gcloud).unwrap_err().reason(),
            "recursion limit exceeded"
        );
    }

    #[test]
    fn compact_text_round_trips() {
        let v = tfs(br#"{"x": [1, 2.5, "s", true, null, {"b64": "AA=="}]}"#).unwrap();
        assert_eq!(
            v.to_compact(),
            r#"{"x":[1,2.5,"s",true,null,{"b64":"AA=="}]}"#
        );
        assert_eq!(Json::Number(Number::Float(153.0)).to_compact(), "153.0");
    }
}
