//! Host-side tensors: the currency between the format, the runtime and the servers.

use std::ops::Range;

use crate::error::FormatError;

/// Applies `$body` to the vector inside any [`TensorData`], rebuilding the same variant.
macro_rules! map_data {
    ($data:expr, |$values:ident| $body:expr) => {
        match $data {
            TensorData::F32($values) => TensorData::F32($body),
            TensorData::F64($values) => TensorData::F64($body),
            TensorData::I32($values) => TensorData::I32($body),
            TensorData::I64($values) => TensorData::I64($body),
            TensorData::U8($values) => TensorData::U8($body),
            TensorData::I16($values) => TensorData::I16($body),
            TensorData::I8($values) => TensorData::I8($body),
            TensorData::Bool($values) => TensorData::Bool($body),
            TensorData::Str($values) => TensorData::Str($body),
        }
    };
}

/// TensorFlow `DataType` values (types.proto), the subset this project reads and writes.
/// The discriminants are TensorFlow's enum numbers, so `dt as i32` is what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    Float = 1,
    Double = 2,
    Int32 = 3,
    UInt8 = 4,
    Int16 = 5,
    Int8 = 6,
    String = 7,
    Int64 = 9,
    Bool = 10,
    Half = 19,
    Resource = 20,
    Variant = 21,
}

impl DataType {
    /// Maps TensorFlow's enum number to a `DataType`; `None` for types we do not handle
    /// (reference types `DT_FLOAT_REF` = 101 etc. are mapped to their base type).
    pub fn from_tf(value: i32) -> Option<DataType> {
        let base = if value > 100 { value - 100 } else { value };
        Some(match base {
            1 => DataType::Float,
            2 => DataType::Double,
            3 => DataType::Int32,
            4 => DataType::UInt8,
            5 => DataType::Int16,
            6 => DataType::Int8,
            7 => DataType::String,
            9 => DataType::Int64,
            10 => DataType::Bool,
            19 => DataType::Half,
            20 => DataType::Resource,
            21 => DataType::Variant,
            _ => return None,
        })
    }

    /// TensorFlow's name for the type, as TF Serving's metadata API prints it (`DT_FLOAT`).
    pub fn tf_name(self) -> &'static str {
        match self {
            DataType::Float => "DT_FLOAT",
            DataType::Double => "DT_DOUBLE",
            DataType::Int32 => "DT_INT32",
            DataType::UInt8 => "DT_UINT8",
            DataType::Int16 => "DT_INT16",
            DataType::Int8 => "DT_INT8",
            DataType::String => "DT_STRING",
            DataType::Int64 => "DT_INT64",
            DataType::Bool => "DT_BOOL",
            DataType::Half => "DT_HALF",
            DataType::Resource => "DT_RESOURCE",
            DataType::Variant => "DT_VARIANT",
        }
    }
}

/// Element storage of a [`HostTensor`], row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    Bool(Vec<bool>),
    /// DT_STRING: arbitrary bytes per element.
    Str(Vec<Vec<u8>>),
}

impl TensorData {
    /// Empty storage for `dtype` with room for `capacity` elements; `None` for the dtypes that
    /// have no host storage here (half, resource, variant).
    pub fn with_capacity(dtype: DataType, capacity: usize) -> Option<TensorData> {
        Some(match dtype {
            DataType::Float => TensorData::F32(Vec::with_capacity(capacity)),
            DataType::Double => TensorData::F64(Vec::with_capacity(capacity)),
            DataType::Int32 => TensorData::I32(Vec::with_capacity(capacity)),
            DataType::Int64 => TensorData::I64(Vec::with_capacity(capacity)),
            DataType::UInt8 => TensorData::U8(Vec::with_capacity(capacity)),
            DataType::Int16 => TensorData::I16(Vec::with_capacity(capacity)),
            DataType::Int8 => TensorData::I8(Vec::with_capacity(capacity)),
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::String => TensorData::Str(Vec::with_capacity(capacity)),
            DataType::Half | DataType::Resource | DataType::Variant => return None,
        })
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DataType {
        match self {
            TensorData::F32(_) => DataType::Float,
            TensorData::F64(_) => DataType::Double,
            TensorData::I32(_) => DataType::Int32,
            TensorData::I64(_) => DataType::Int64,
            TensorData::U8(_) => DataType::UInt8,
            TensorData::I16(_) => DataType::Int16,
            TensorData::I8(_) => DataType::Int8,
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Str(_) => DataType::String,
        }
    }
}

/// A dense tensor in host memory: a shape and row-major elements.
/// Invariant (checked by [`HostTensor::new`]): `shape.iter().product() == data.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    shape: Vec<usize>,
    data: TensorData,
}

/// The element count does not match the shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub shape: Vec<usize>,
    pub elements: usize,
}

impl std::fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shape {:?} needs {} elements, found {}",
            self.shape,
            self.shape.iter().product::<usize>(),
            self.elements
        )
    }
}

impl std::error::Error for ShapeMismatch {}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<HostTensor, ShapeMismatch> {
        let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if expected != Some(data.len()) {
            return Err(ShapeMismatch {
                shape,
                elements: data.len(),
            });
        }
        Ok(HostTensor { shape, data })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    pub fn num_elements(&self) -> usize {
        self.data.len()
    }

    /// Stacks tensors along dimension 0 (the batch dimension), in order: what a batcher does to
    /// run several requests as one. All parts must agree in dtype and in every other dimension.
    pub fn concat_rows(parts: &[&HostTensor]) -> Result<HostTensor, FormatError> {
        let Some(first) = parts.first() else {
            return Err(rows_error("no tensors to concatenate"));
        };
        if first.shape.is_empty() {
            return Err(rows_error("scalars have no rows to concatenate"));
        }
        let inner = &first.shape[1..];
        let mut rows = 0;
        for part in parts {
            if part.shape.len() != first.shape.len() || &part.shape[1..] != inner {
                return Err(rows_error(format!(
                    "shapes {:?} and {:?} disagree past dimension 0",
                    first.shape, part.shape
                )));
            }
            if part.dtype() != first.dtype() {
                return Err(rows_error(format!(
                    "dtypes {} and {} disagree",
                    first.dtype().tf_name(),
                    part.dtype().tf_name()
                )));
            }
            rows += part.shape[0];
        }
        let total = parts.iter().map(|p| p.num_elements()).sum();
        macro_rules! concat {
            ($variant:ident) => {{
                let mut all = Vec::with_capacity(total);
                for part in parts {
                    match &part.data {
                        TensorData::$variant(values) => all.extend_from_slice(values),
                        _ => return Err(rows_error("dtypes disagree")),
                    }
                }
                TensorData::$variant(all)
            }};
        }
        let data = match &first.data {
            TensorData::F32(_) => concat!(F32),
            TensorData::F64(_) => concat!(F64),
            TensorData::I32(_) => concat!(I32),
            TensorData::I64(_) => concat!(I64),
            TensorData::U8(_) => concat!(U8),
            TensorData::I16(_) => concat!(I16),
            TensorData::I8(_) => concat!(I8),
            TensorData::Bool(_) => concat!(Bool),
            TensorData::Str(_) => concat!(Str),
        };
        let mut shape = first.shape.clone();
        shape[0] = rows;
        HostTensor::new(shape, data).map_err(|e| rows_error(e.to_string()))
    }

    /// Rows `rows` (along dimension 0) as a new tensor: one request's share of a batch's outputs.
    pub fn slice_rows(&self, rows: Range<usize>) -> Result<HostTensor, FormatError> {
        if self.shape.first().is_none_or(|&n| n < rows.end) || rows.start > rows.end {
            return Err(rows_error(format!(
                "a tensor of shape {:?} has no rows {rows:?}",
                self.shape
            )));
        }
        let per_row: usize = self.shape[1..].iter().product();
        let range = rows.start * per_row..rows.end * per_row;
        let data = map_data!(&self.data, |values| values[range.clone()].to_vec());
        let mut shape = self.shape.clone();
        shape[0] = rows.len();
        HostTensor::new(shape, data).map_err(|e| rows_error(e.to_string()))
    }
}

fn rows_error(reason: impl Into<String>) -> FormatError {
    FormatError::InvalidTensor {
        context: "row operation".into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_wrong_element_count() {
        let err = HostTensor::new(vec![2, 3], TensorData::F32(vec![0.0; 5])).unwrap_err();
        assert_eq!(err.elements, 5);
        assert!(err.to_string().contains("needs 6 elements, found 5"));
    }

    #[test]
    fn concat_keeps_row_order_and_slice_takes_rows() {
        let a = HostTensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.0])).unwrap();
        let b = HostTensor::new(vec![2, 2], TensorData::F32(vec![3.0, 4.0, 5.0, 6.0])).unwrap();
        let c = HostTensor::concat_rows(&[&a, &b]).unwrap();
        assert_eq!(c.shape(), &[3, 2]);
        assert_eq!(
            c.data(),
            &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        let part = c.slice_rows(1..3).unwrap();
        assert_eq!(part.shape(), &[2, 2]);
        assert_eq!(part.data(), &TensorData::F32(vec![3.0, 4.0, 5.0, 6.0]));
        let k = HostTensor::new(vec![3], TensorData::I64(vec![7, 8, 9])).unwrap();
        assert_eq!(
            k.slice_rows(1..3).unwrap().data(),
            &TensorData::I64(vec![8, 9])
        );
        assert!(
            c.slice_rows(2..4)
                .unwrap_err()
                .to_string()
                .contains("no rows 2..4")
        );
    }

    #[test]
    fn concat_rejects_parts_that_disagree() {
        let a = HostTensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.0])).unwrap();
        let wide = HostTensor::new(vec![1, 3], TensorData::F32(vec![1.0; 3])).unwrap();
        let ints = HostTensor::new(vec![1, 2], TensorData::I32(vec![1, 2])).unwrap();
        let err = HostTensor::concat_rows(&[&a, &wide])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[1, 2] and [1, 3] disagree past dimension 0"),
            "{err}"
        );
        let err = HostTensor::concat_rows(&[&a, &ints])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DT_FLOAT and DT_INT32 disagree"), "{err}");
    }

    #[test]
    fn ref_types_map_to_base_types() {
        assert_eq!(DataType::from_tf(101), Some(DataType::Float));
        assert_eq!(DataType::from_tf(9), Some(DataType::Int64));
        assert_eq!(DataType::from_tf(8), None); // complex64 is not handled
    }
}
