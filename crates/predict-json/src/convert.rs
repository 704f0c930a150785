//! JSON instance -> column buffers, in one streaming pass.
//!
//! The instance is visited through serde's `Deserializer` (the crate's [`crate::json`] reader
//! under gcloud rules for files and request bodies, or a `serde_json::Value`), and every number
//! lands directly in the typed buffer of its input: no intermediate `Value` tree, which matters
//! for 10,000-instance files and for a server parsing 784 floats per instance.
//!
//! Problems are reported through a side channel (`Problem`) rather than serde's error type, so the
//! caller gets our message verbatim and can tell them apart from JSON syntax errors.

use std::fmt;

use base64::Engine as _;
use savedmodel_format::{DataType, HostTensor, SignatureInfo, TensorData, TensorSpec};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Standard base64 alphabet, padding optional: gcloud (Python `b64decode`) and TF Serving
/// (`absl::Base64Unescape`) both accept unpadded input.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The length of one level of an instance: from the signature, or learned from the first
/// instance (every instance of a batch must have the same shape: tensors are rectangular).
#[derive(Debug, Clone, Copy)]
struct Level {
    len: Option<usize>,
    from_signature: bool,
}

/// A column's state before an instance, to undo it if the instance turns out bad.
#[derive(Debug)]
pub(crate) struct ColumnMark {
    elements: usize,
    instances: usize,
    learned: Option<(Option<usize>, Vec<Level>)>,
}

/// One signature input being filled, instance after instance.
#[derive(Debug)]
pub(crate) struct Column {
    pub(crate) name: String,
    dtype: DataType,
    /// Fixed batch size demanded by the signature (a dim 0 other than -1), if any.
    fixed_batch: Option<usize>,
    /// Rank of one instance; `None` until learned when the signature's rank is unknown.
    rank: Option<usize>,
    levels: Vec<Level>,
    data: TensorData,
    instances: usize,
}

impl Column {
    pub(crate) fn new(name: &str, spec: &TensorSpec) -> Result<Column, String> {
        let data = match spec.dtype {
            DataType::Float => TensorData::F32(Vec::new()),
            DataType::Double => TensorData::F64(Vec::new()),
            DataType::Int32 => TensorData::I32(Vec::new()),
            DataType::Int64 => TensorData::I64(Vec::new()),
            DataType::Int16 => TensorData::I16(Vec::new()),
            DataType::Int8 => TensorData::I8(Vec::new()),
            DataType::UInt8 => TensorData::U8(Vec::new()),
            DataType::Bool => TensorData::Bool(Vec::new()),
            DataType::String => TensorData::Str(Vec::new()),
            other => {
                return Err(format!(
                    "input \"{name}\" has dtype {}, which JSON instances cannot be converted to",
                    other.tf_name()
                ));
            }
        };
        let (fixed_batch, rank, levels) = match &spec.shape {
            None => (None, None, Vec::new()),
            Some(dims) if dims.is_empty() => {
                return Err(format!(
                    "input \"{name}\" is a scalar (shape []) in the signature: it has no batch \
                     dimension to stack instances along"
                ));
            }
            Some(dims) => {
                let fixed_batch = usize::try_from(dims[0]).ok();
                let levels = dims[1..]
                    .iter()
                    .map(|&d| match usize::try_from(d) {
                        Ok(len) => Level {
                            len: Some(len),
                            from_signature: true,
                        },
                        Err(_) => Level {
                            len: None,
                            from_signature: false,
                        },
                    })
                    .collect::<Vec<_>>();
                (fixed_batch, Some(levels.len()), levels)
            }
        };
        Ok(Column {
            name: name.to_string(),
            dtype: spec.dtype,
            fixed_batch,
            rank,
            levels,
            data,
            instances: 0,
        })
    }

    pub(crate) fn instances(&self) -> usize {
        self.instances
    }

    /// `Some(width)` when every instance of this column is a flat list of `width` float32s fixed
    /// by the signature (`[-1, width]`): the shape [`Column::push_f32_row`] takes.
    pub(crate) fn flat_f32_width(&self) -> Option<usize> {
        match (&self.data, self.levels.as_slice()) {
            (
                TensorData::F32(_),
                [
                    Level {
                        len: Some(width),
                        from_signature: true,
                    },
                ],
            ) => Some(*width),
            _ => None,
        }
    }

    /// Appends one instance that is already a row of [`Column::flat_f32_width`] values.
    pub(crate) fn push_f32_row(&mut self, row: &[f32]) {
        if let TensorData::F32(values) = &mut self.data {
            values.extend_from_slice(row);
            self.finish_instance();
        }
    }

    /// What [`Column::rollback`] needs to undo a partly read instance.
    pub(crate) fn mark(&self) -> ColumnMark {
        ColumnMark {
            elements: self.data.len(),
            instances: self.instances,
            // Only the first instance learns dims; later ones never change them.
            learned: (self.instances == 0).then(|| (self.rank, self.levels.clone())),
        }
    }

    /// Forgets everything read since `mark` (elements, and dims learned by a first instance).
    pub(crate) fn rollback(&mut self, mark: &ColumnMark) {
        match &mut self.data {
            TensorData::F32(v) => v.truncate(mark.elements),
            TensorData::F64(v) => v.truncate(mark.elements),
            TensorData::I32(v) => v.truncate(mark.elements),
            TensorData::I64(v) => v.truncate(mark.elements),
            TensorData::U8(v) => v.truncate(mark.elements),
            TensorData::I16(v) => v.truncate(mark.elements),
            TensorData::I8(v) => v.truncate(mark.elements),
            TensorData::Bool(v) => v.truncate(mark.elements),
            TensorData::Str(v) => v.truncate(mark.elements),
        }
        self.instances = mark.instances;
        if let Some((rank, levels)) = &mark.learned {
            self.rank = *rank;
            self.levels.clone_from(levels);
        }
    }

    fn finish_instance(&mut self) {
        if self.rank.is_none() {
            self.rank = Some(self.levels.len());
        }
        self.instances += 1;
    }

    /// Moves the collected instances out as one `[n, ...]` tensor; learned dims are kept so the
    /// next chunk must have the same shape.
    pub(crate) fn take_tensor(&mut self) -> Result<HostTensor, String> {
        if let Some(batch) = self.fixed_batch
            && batch != self.instances
        {
            return Err(format!(
                "input \"{}\" has a fixed batch size of {batch} in the signature, found {} instance{}",
                self.name,
                self.instances,
                plural(self.instances)
            ));
        }
        let mut shape = vec![self.instances];
        shape.extend(self.levels.iter().map(|l| l.len.unwrap_or(0)));
        let empty = match &self.data {
            TensorData::F32(_) => TensorData::F32(Vec::new()),
            TensorData::F64(_) => TensorData::F64(Vec::new()),
            TensorData::I32(_) => TensorData::I32(Vec::new()),
            TensorData::I64(_) => TensorData::I64(Vec::new()),
            TensorData::U8(_) => TensorData::U8(Vec::new()),
            TensorData::I16(_) => TensorData::I16(Vec::new()),
            TensorData::I8(_) => TensorData::I8(Vec::new()),
            TensorData::Bool(_) => TensorData::Bool(Vec::new()),
            TensorData::Str(_) => TensorData::Str(Vec::new()),
        };
        let data = std::mem::replace(&mut self.data, empty);
        self.instances = 0;
        HostTensor::new(shape, data)
            .map_err(|e| format!("input \"{}\": internal shape error: {e}", self.name))
    }

    /// Singular noun for one element, for messages.
    fn element_noun(&self) -> &'static str {
        match self.dtype {
            DataType::Float | DataType::Double => "number",
            DataType::String => "string",
            DataType::Bool => "boolean",
            _ => "integer",
        }
    }

    fn dtype_name(&self) -> &'static str {
        match self.dtype {
            DataType::Float => "float32",
            DataType::Double => "float64",
            DataType::Int32 => "int32",
            DataType::Int64 => "int64",
            DataType::Int16 => "int16",
            DataType::Int8 => "int8",
            DataType::UInt8 => "uint8",
            DataType::Bool => "bool",
            DataType::String => "string",
            _ => "unsupported",
        }
    }

    /// "784 numbers" / "28 lists" for the elements of a list at `depth`.
    fn count_phrase(&self, depth: usize, count: usize) -> String {
        let leaf_level = self.rank.is_some_and(|r| depth + 1 == r);
        let noun = if leaf_level {
            self.element_noun()
        } else {
            "list"
        };
        format!("{count} {noun}{}", plural(count))
    }

    /// What one element at `depth` must be: "a number (float32)" or "a list of 28 numbers".
    fn expected_at(&self, depth: usize) -> String {
        match self.rank {
            Some(rank) if depth >= rank => {
                let noun = self.element_noun();
                let article = if noun.starts_with('i') { "an" } else { "a" };
                let extra = if self.dtype == DataType::String {
                    " or {\"b64\": ...}"
                } else {
                    ""
                };
                format!("{article} {noun}{extra} ({})", self.dtype_name())
            }
            _ => match self.levels.get(depth).and_then(|l| l.len) {
                Some(len) => format!("a list of {}", self.count_phrase(depth, len)),
                None => "a list".to_string(),
            },
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `[3][17]` for messages; empty at the top of an instance.
struct PathText<'a>(&'a [usize]);

impl fmt::Display for PathText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(" at ")?;
        for i in self.0 {
            write!(f, "[{i}]")?;
        }
        Ok(())
    }
}

/// A JSON scalar as met in the input, for "found ..." in messages.
enum Found<'a> {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
    Null,
    List,
    Object,
}

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Bool(b) => write!(f, "{b}"),
            Found::Int(i) => write!(f, "the number {i}"),
            Found::Float(x) => {
                write!(
                    f,
                    "the number {}",
                    crate::float_format::python_repr(*x, crate::float_format::NonFinite::Json)
                )
            }
            Found::Str(s) => {
                const MAX: usize = 40;
                let shown: String = s.chars().take(MAX).collect();
                let quoted = serde_json::to_string(&shown).unwrap_or_default();
                if s.chars().count() > MAX {
                    write!(f, "the string {quoted}...")
                } else {
                    write!(f, "the string {quoted}")
                }
            }
            Found::Null => f.write_str("null"),
            Found::List => f.write_str("a list"),
            Found::Object => f.write_str("an object"),
        }
    }
}

/// Where the message of the first problem goes; see the module docs.
pub(crate) type Problem = Option<String>;

fn fail<E: de::Error>(problem: &mut Problem, message: String) -> Result<(), E> {
    *problem = Some(message);
    Err(E::custom("invalid instance"))
}

/// Visits one value of input `col` at nesting `depth` within the instance.
struct ValueSeed<'a> {
    col: &'a mut Column,
    depth: usize,
    path: &'a mut Vec<usize>,
    problem: &'a mut Problem,
}

impl ValueSeed<'_> {
    fn mismatch<E: de::Error>(self, found: Found<'_>) -> Result<(), E> {
        let message = format!(
            "input \"{}\" expects {}{}, found {found}",
            self.col.name,
            self.col.expected_at(self.depth),
            PathText(self.path)
        );
        fail(self.problem, message)
    }

    /// Checks that a scalar may sit at this depth (learning the rank if unknown).
    fn at_leaf_level(&mut self) -> bool {
        match self.col.rank {
            Some(rank) => rank == self.depth,
            None => {
                if self.depth == self.col.levels.len() {
                    self.col.rank = Some(self.depth);
                    true
                } else {
                    false
                }
            }
        }
    }

    fn number<E: de::Error>(mut self, found: Found<'_>) -> Result<(), E> {
        if !self.at_leaf_level() {
            return self.mismatch(found);
        }
        let out_of_range = |seed: ValueSeed<'_>| {
            let message = format!(
                "input \"{}\" expects {}{}, found {found}, which is out of range",
                seed.col.name,
                seed.col.expected_at(seed.depth),
                PathText(seed.path)
            );
            fail(seed.problem, message)
        };
        let as_int = match found {
            Found::Int(i) => Some(i),
            _ => None,
        };
        match (&mut self.col.data, &found) {
            (TensorData::F32(v), Found::Int(i)) => v.push(*i as f32),
            (TensorData::F32(v), Found::Float(x)) => {
                let narrowed = *x as f32;
                if narrowed.is_infinite() {
                    return out_of_range(self);
                }
                v.push(narrowed);
            }
            (TensorData::F64(v), Found::Int(i)) => v.push(*i as f64),
            (TensorData::F64(v), Found::Float(x)) => v.push(*x),
            (TensorData::I32(v), _) => match as_int.and_then(|i| i32::try_from(i).ok()) {
                Some(i) => v.push(i),
                None if as_int.is_some() => return out_of_range(self),
                None => return self.mismatch(found),
            },
            (TensorData::I64(v), _) => match as_int.and_then(|i| i64::try_from(i).ok()) {
                Some(i) => v.push(i),
                None if as_int.is_some() => return out_of_range(self),
                None => return self.mismatch(found),
            },
            (TensorData::I16(v), _) => match as_int.and_then(|i| i16::try_from(i).ok()) {
                Some(i) => v.push(i),
                None if as_int.is_some() => return out_of_range(self),
                None => return self.mismatch(found),
            },
            (TensorData::I8(v), _) => match as_int.and_then(|i| i8::try_from(i).ok()) {
                Some(i) => v.push(i),
                None if as_int.is_some() => return out_of_range(self),
                None => return self.mismatch(found),
            },
            (TensorData::U8(v), _) => match as_int.and_then(|i| u8::try_from(i).ok()) {
                Some(i) => v.push(i),
                None if as_int.is_some() => return out_of_range(self),
                None => return self.mismatch(found),
            },
            _ => return self.mismatch(found),
        }
        Ok(())
    }

    fn string<E: de::Error>(mut self, s: &str) -> Result<(), E> {
        if !self.at_leaf_level() {
            return self.mismatch(Found::Str(s));
        }
        match &mut self.col.data {
            TensorData::Str(v) => {
                v.push(s.as_bytes().to_vec());
                Ok(())
            }
            _ => self.mismatch(Found::Str(s)),
        }
    }

    fn bytes<E: de::Error>(mut self, bytes: Vec<u8>) -> Result<(), E> {
        if !self.at_leaf_level() {
            return self.mismatch(Found::Object);
        }
        match &mut self.col.data {
            TensorData::Str(v) => {
                v.push(bytes);
                Ok(())
            }
            _ => self.mismatch(Found::Object),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.col.expected_at(self.depth))
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        if !self.at_leaf_level() {
            return self.mismatch(Found::Bool(v));
        }
        match &mut self.col.data {
            TensorData::Bool(values) => {
                values.push(v);
                Ok(())
            }
            _ => self.mismatch(Found::Bool(v)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(Found::Int(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(Found::Int(i128::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(Found::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.string(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.mismatch(Found::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.mismatch(Found::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth;
        let col = self.col;
        let path = self.path;
        let problem = self.problem;
        let too_deep = match col.rank {
            Some(rank) => depth >= rank,
            None => false,
        };
        if too_deep {
            return ValueSeed {
                col,
                depth,
                path,
                problem,
            }
            .mismatch(Found::List);
        }
        if depth == col.levels.len() {
            // Unknown rank: the first instance's nesting defines it.
            col.levels.push(Level {
                len: None,
                from_signature: false,
            });
        }
        let expected = col.levels[depth].len;
        let mut count = 0usize;
        loop {
            if expected == Some(count) {
                let mut extra = 0usize;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    extra += 1;
                }
                if extra == 0 {
                    break;
                }
                return fail(
                    problem,
                    length_message(col, depth, path, count, count + extra),
                );
            }
            path.push(count);
            let element = seq.next_element_seed(ValueSeed {
                col: &mut *col,
                depth: depth + 1,
                path: &mut *path,
                problem: &mut *problem,
            });
            path.pop();
            match element? {
                Some(()) => count += 1,
                None => break,
            }
        }
        match expected {
            None => col.levels[depth].len = Some(count),
            Some(len) if len != count => {
                return fail(problem, length_message(col, depth, path, len, count));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // The only object a tensor element may be: {"b64": "<base64>"} for a string input.
        if self.col.dtype != DataType::String {
            return self.mismatch(Found::Object);
        }
        let key: Option<String> = map.next_key()?;
        if key.as_deref() != Some("b64") {
            return self.mismatch(Found::Object);
        }
        let encoded: serde_json::Value = map.next_value()?;
        let more_keys = map.next_key::<IgnoredAny>()?.is_some();
        self.base64(encoded, more_keys)
    }
}

impl ValueSeed<'_> {
    /// The value of a `{"b64": ...}` object: decoded bytes for a string input.
    fn base64<E: de::Error>(self, encoded: serde_json::Value, more_keys: bool) -> Result<(), E> {
        let serde_json::Value::String(encoded) = encoded else {
            return self.mismatch(Found::Object);
        };
        if more_keys {
            let message = format!(
                "input \"{}\"{}: a {{\"b64\": ...}} object must have no other keys",
                self.col.name,
                PathText(self.path)
            );
            return fail(self.problem, message);
        }
        match BASE64.decode(encoded.trim()) {
            Ok(bytes) => self.bytes(bytes),
            Err(e) => {
                let message = format!(
                    "input \"{}\"{}: invalid base64 in {{\"b64\": ...}}: {e}",
                    self.col.name,
                    PathText(self.path)
                );
                fail(self.problem, message)
            }
        }
    }
}

fn length_message(
    col: &Column,
    depth: usize,
    path: &[usize],
    expected: usize,
    found: usize,
) -> String {
    let source = if col.levels[depth].from_signature {
        ""
    } else {
        " (as in the first instance)"
    };
    format!(
        "input \"{}\" expects {}{}{source}, found {found}",
        col.name,
        col.count_phrase(depth, expected),
        PathText(path)
    )
}

/// Visits one whole instance: a bare value for a single-input signature, or an object keyed by
/// input name (required for several inputs).
pub(crate) struct InstanceSeed<'a> {
    pub(crate) columns: &'a mut [Column],
    pub(crate) signature: &'a str,
    pub(crate) problem: &'a mut Problem,
}

impl InstanceSeed<'_> {
    fn input_list(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        match names.len() {
            1 => format!("one input, {}", names[0]),
            n => format!("{n} inputs: {}", names.join(", ")),
        }
    }

    /// A single-input signature given a bare value: it is that input's value.
    fn bare<E: de::Error, F>(self, visit: F) -> Result<(), E>
    where
        F: FnOnce(ValueSeed<'_>) -> Result<(), E>,
    {
        if self.columns.len() != 1 {
            let message = format!(
                "the signature \"{}\" has {}, so each instance must be a JSON object with exactly \
                 those keys",
                self.signature,
                self.input_list()
            );
            return fail(self.problem, message);
        }
        let mut path = Vec::new();
        let col = &mut self.columns[0];
        visit(ValueSeed {
            col: &mut *col,
            depth: 0,
            path: &mut path,
            problem: &mut *self.problem,
        })?;
        col.finish_instance();
        Ok(())
    }

    fn unknown_input<E: de::Error>(self, key: &str) -> Result<(), E> {
        let message = format!(
            "unknown input \"{key}\"; the signature \"{}\" has {}",
            self.signature,
            self.input_list()
        );
        fail(self.problem, message)
    }
}

impl<'de> DeserializeSeed<'de> for InstanceSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InstanceSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an instance")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.bare(|seed| seed.visit_bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.bare(|seed| seed.visit_i64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.bare(|seed| seed.visit_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.bare(|seed| seed.visit_f64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.bare(|seed| seed.visit_str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.bare(|seed| seed.visit_unit())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.bare(|seed| seed.visit_none())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.bare(|seed| seed.visit_seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let single_string_input =
            self.columns.len() == 1 && self.columns[0].dtype == DataType::String;
        let mut seen = vec![false; self.columns.len()];
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            let index = self.columns.iter().position(|c| c.name == key);
            let Some(index) = index else {
                if first && single_string_input && key == "b64" {
                    // gcloud decodes {"b64": ...} before wrapping a bare value under the input name.
                    let encoded: serde_json::Value = map.next_value()?;
                    let more_keys = map.next_key::<IgnoredAny>()?.is_some();
                    let mut path = Vec::new();
                    let col = &mut self.columns[0];
                    ValueSeed {
                        col: &mut *col,
                        depth: 0,
                        path: &mut path,
                        problem: &mut *self.problem,
                    }
                    .base64(encoded, more_keys)?;
                    col.finish_instance();
                    return Ok(());
                }
                return self.unknown_input(&key);
            };
            first = false;
            if seen[index] {
                let message = format!("input \"{key}\" appears twice");
                return fail(self.problem, message);
            }
            seen[index] = true;
            let mut path = Vec::new();
            map.next_value_seed(ValueSeed {
                col: &mut self.columns[index],
                depth: 0,
                path: &mut path,
                problem: &mut *self.problem,
            })?;
        }
        let missing: Vec<String> = self
            .columns
            .iter()
            .zip(&seen)
            .filter(|(_, seen)| !**seen)
            .map(|(c, _)| format!("\"{}\"", c.name))
            .collect();
        if !missing.is_empty() {
            let message = format!(
                "missing input{} {}; the signature \"{}\" has {}",
                plural(missing.len()),
                missing.join(", "),
                self.signature,
                self.input_list()
            );
            return fail(self.problem, message);
        }
        for col in self.columns.iter_mut() {
            col.finish_instance();
        }
        Ok(())
    }
}

/// Columns for every input of `signature`, in the signature's (sorted) input order.
pub(crate) fn columns_for(signature: &SignatureInfo) -> Result<Vec<Column>, String> {
    if signature.inputs.is_empty() {
        return Err(format!(
            "the signature \"{}\" has no inputs",
            signature.name
        ));
    }
    signature
        .inputs
        .iter()
        .map(|(name, spec)| Column::new(name, spec))
        .collect()
}
