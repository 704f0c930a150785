//! Host-side tensors: the currency between the format, the runtime and the servers.

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
    fn ref_types_map_to_base_types() {
        assert_eq!(DataType::from_tf(101), Some(DataType::Float));
        assert_eq!(DataType::from_tf(9), Some(DataType::Int64));
        assert_eq!(DataType::from_tf(8), None); // complex64 is not handled
    }
}
