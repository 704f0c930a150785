//! Conversions between [`HostTensor`] and the two serialized forms a SavedModel uses:
//! `TensorProto` (Const values, signature defaults) and raw little-endian buffers
//! (`TensorProto.tensor_content`, bundle data files).
//!
//! Every size is checked before allocating: a `TensorProto` may legally declare a big shape with a
//! single value that TensorFlow broadcasts (TF writes `zeros` initializers that way), so the
//! decoded size is bounded by [`MAX_BROADCAST_BYTES`] rather than trusted.

use crate::error::FormatError;
use crate::proto::{TensorProto, TensorShapeProto};
use crate::tensor::{DataType, HostTensor, TensorData};

/// Upper bound on the memory a `TensorProto` with fewer stored values than its shape needs may
/// expand to. Real values (tensor_content or one value per element) are bounded by the input's
/// own size instead.
pub const MAX_BROADCAST_BYTES: usize = 1 << 30;

/// TensorFlow's name for a `DataType` enum number (types.proto), for error messages.
pub fn dtype_name(code: i32) -> &'static str {
    const NAMES: [&str; 34] = [
        "DT_INVALID",
        "DT_FLOAT",
        "DT_DOUBLE",
        "DT_INT32",
        "DT_UINT8",
        "DT_INT16",
        "DT_INT8",
        "DT_STRING",
        "DT_COMPLEX64",
        "DT_INT64",
        "DT_BOOL",
        "DT_QINT8",
        "DT_QUINT8",
        "DT_QINT32",
        "DT_BFLOAT16",
        "DT_QINT16",
        "DT_QUINT16",
        "DT_UINT16",
        "DT_COMPLEX128",
        "DT_HALF",
        "DT_RESOURCE",
        "DT_VARIANT",
        "DT_UINT32",
        "DT_UINT64",
        "DT_FLOAT8_E5M2",
        "DT_FLOAT8_E4M3FN",
        "DT_FLOAT8_E4M3FNUZ",
        "DT_FLOAT8_E4M3B11FNUZ",
        "DT_FLOAT8_E5M2FNUZ",
        "DT_INT4",
        "DT_UINT4",
        "DT_INT2",
        "DT_UINT2",
        "DT_FLOAT4_E2M1FN",
    ];
    let base = if code > 100 { code - 100 } else { code };
    usize::try_from(base)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("unknown")
}

/// Bytes per element of a fixed-size dtype that [`TensorData`] can hold; `None` for strings
/// and for dtypes without a `TensorData` representation.
pub fn element_size(dtype: DataType) -> Option<usize> {
    Some(match dtype {
        DataType::Float | DataType::Int32 => 4,
        DataType::Double | DataType::Int64 => 8,
        DataType::Int16 => 2,
        DataType::UInt8 | DataType::Int8 | DataType::Bool => 1,
        DataType::String | DataType::Half | DataType::Resource | DataType::Variant => return None,
    })
}

/// Maps a wire dtype to a `DataType` that can be held in a [`TensorData`], or an
/// `UnsupportedDType` error saying where it was met.
pub fn value_dtype(code: i32, context: &str) -> Result<DataType, FormatError> {
    match DataType::from_tf(code) {
        Some(dt) if dt == DataType::String || element_size(dt).is_some() => Ok(dt),
        _ => Err(FormatError::UnsupportedDType {
            context: context.to_string(),
            dtype: code,
            name: dtype_name(code),
        }),
    }
}

/// A fully defined shape from a `TensorShapeProto` (absent = scalar).
pub fn shape_from_proto(
    shape: Option<&TensorShapeProto>,
    context: &str,
) -> Result<Vec<usize>, FormatError> {
    let Some(shape) = shape else {
        return Ok(Vec::new());
    };
    if shape.unknown_rank {
        return Err(FormatError::InvalidTensor {
            context: context.to_string(),
            reason: "shape has unknown rank".into(),
        });
    }
    let dims = shape
        .dim
        .iter()
        .map(|d| usize::try_from(d.size))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| FormatError::InvalidTensor {
            context: context.to_string(),
            reason: format!(
                "shape {:?} is not fully defined",
                shape.dims().unwrap_or_default()
            ),
        })?;
    element_count(&dims, context)?;
    Ok(dims)
}

/// `TensorShapeProto` of a concrete shape.
pub fn shape_to_proto(shape: &[usize]) -> TensorShapeProto {
    let dims: Vec<i64> = shape
        .iter()
        .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
        .collect();
    TensorShapeProto::from_dims(&dims)
}

/// Product of the dims, failing on overflow.
pub fn element_count(shape: &[usize], context: &str) -> Result<usize, FormatError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| FormatError::InvalidTensor {
            context: context.to_string(),
            reason: format!("shape {shape:?} has too many elements"),
        })
}

fn invalid(context: &str, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidTensor {
        context: context.to_string(),
        reason: reason.into(),
    }
}

fn tensor(shape: Vec<usize>, data: TensorData, context: &str) -> Result<HostTensor, FormatError> {
    HostTensor::new(shape, data).map_err(|e| invalid(context, e.to_string()))
}

/// Expands TF's typed-field encoding: exactly `n` values, or fewer with the last one repeated
/// (zeros/empty when there are none). `element_bytes` is what one element costs in memory, for
/// the [`MAX_BROADCAST_BYTES`] bound. Public for dtypes a [`HostTensor`] cannot hold, which the
/// runtime decodes itself (DT_HALF's `half_val`).
pub fn broadcast<T: Clone + Default>(
    values: &[T],
    n: usize,
    element_bytes: usize,
    context: &str,
) -> Result<Vec<T>, FormatError> {
    if values.len() == n {
        return Ok(values.to_vec());
    }
    if values.len() > n {
        return Err(invalid(
            context,
            format!(
                "{} values stored but the shape has {n} elements",
                values.len()
            ),
        ));
    }
    if n.saturating_mul(element_bytes) > MAX_BROADCAST_BYTES {
        return Err(invalid(
            context,
            format!(
                "{} stored values would expand to {n} elements, more than the {MAX_BROADCAST_BYTES}-byte limit",
                values.len()
            ),
        ));
    }
    let fill = values.last().cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(n);
    out.extend_from_slice(values);
    out.resize(n, fill);
    Ok(out)
}

/// Puts every value of `data` in its typed field of `proto` (narrow integers widen to `int_val`).
fn fill_typed(proto: &mut TensorProto, data: &TensorData) {
    match data {
        TensorData::Str(v) => proto.string_val = v.clone(),
        TensorData::F32(v) => proto.float_val = v.clone(),
        TensorData::F64(v) => proto.double_val = v.clone(),
        TensorData::I64(v) => proto.int64_val = v.clone(),
        TensorData::Bool(v) => proto.bool_val = v.clone(),
        TensorData::I32(v) => proto.int_val = v.clone(),
        TensorData::I16(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I8(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::U8(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
    }
}

impl HostTensor {
    /// Decodes a `TensorProto` (e.g. a Const's `value` attr). `context` names the node/field for
    /// error messages.
    pub fn from_tensor_proto(
        proto: &TensorProto,
        context: &str,
    ) -> Result<HostTensor, FormatError> {
        let dtype = value_dtype(proto.dtype, context)?;
        let shape = shape_from_proto(proto.tensor_shape.as_ref(), context)?;
        let n = element_count(&shape, context)?;
        if dtype == DataType::String {
            if !proto.tensor_content.is_empty() {
                return Err(invalid(context, "DT_STRING tensor uses tensor_content"));
            }
            let per_element =
                proto.string_val.last().map_or(0, Vec::len) + std::mem::size_of::<Vec<u8>>();
            let values = broadcast(&proto.string_val, n, per_element, context)?;
            return tensor(shape, TensorData::Str(values), context);
        }
        if !proto.tensor_content.is_empty() || n == 0 {
            return HostTensor::from_le_bytes(dtype, shape, &proto.tensor_content, context);
        }
        let data = match dtype {
            DataType::Float => TensorData::F32(broadcast(&proto.float_val, n, 4, context)?),
            DataType::Double => TensorData::F64(broadcast(&proto.double_val, n, 8, context)?),
            DataType::Int64 => TensorData::I64(broadcast(&proto.int64_val, n, 8, context)?),
            DataType::Bool => TensorData::Bool(broadcast(&proto.bool_val, n, 1, context)?),
            // TF stores all narrow integer types in int_val and narrows with a C cast.
            DataType::Int32 => TensorData::I32(broadcast(&proto.int_val, n, 4, context)?),
            DataType::Int16 => TensorData::I16(
                broadcast(&proto.int_val, n, 4, context)?
                    .into_iter()
                    .map(|v| v as i16)
                    .collect(),
            ),
            DataType::Int8 => TensorData::I8(
                broadcast(&proto.int_val, n, 4, context)?
                    .into_iter()
                    .map(|v| v as i8)
                    .collect(),
            ),
            DataType::UInt8 => TensorData::U8(
                broadcast(&proto.int_val, n, 4, context)?
                    .into_iter()
                    .map(|v| v as u8)
                    .collect(),
            ),
            other => {
                return Err(FormatError::UnsupportedDType {
                    context: context.to_string(),
                    dtype: other as i32,
                    name: other.tf_name(),
                });
            }
        };
        tensor(shape, data, context)
    }

    /// Encodes as a `TensorProto`: single elements in the typed field (as TensorFlow's Python
    /// writes scalars), larger numeric tensors as `tensor_content`, strings in `string_val`.
    pub fn to_tensor_proto(&self) -> TensorProto {
        let mut proto = TensorProto {
            dtype: self.dtype() as i32,
            tensor_shape: Some(shape_to_proto(self.shape())),
            ..Default::default()
        };
        match self.data() {
            data if matches!(data, TensorData::Str(_)) || data.len() == 1 => {
                fill_typed(&mut proto, data)
            }
            _ => proto.tensor_content = self.to_le_bytes().unwrap_or_default(),
        }
        proto
    }

    /// Encodes as a `TensorProto` with every value in its typed field (`float_val`, `int64_val`,
    /// …), never `tensor_content`: how TF Serving writes its gRPC answers by default
    /// (`PredictResponseTensorSerializationOption::kAsProtoField`).
    pub fn to_typed_tensor_proto(&self) -> TensorProto {
        let mut proto = TensorProto {
            dtype: self.dtype() as i32,
            tensor_shape: Some(shape_to_proto(self.shape())),
            ..Default::default()
        };
        fill_typed(&mut proto, self.data());
        proto
    }

    /// Decodes a row-major little-endian buffer of a fixed-size dtype.
    pub fn from_le_bytes(
        dtype: DataType,
        shape: Vec<usize>,
        bytes: &[u8],
        context: &str,
    ) -> Result<HostTensor, FormatError> {
        let n = element_count(&shape, context)?;
        let size = element_size(dtype).ok_or_else(|| FormatError::UnsupportedDType {
            context: context.to_string(),
            dtype: dtype as i32,
            name: dtype.tf_name(),
        })?;
        if n.checked_mul(size) != Some(bytes.len()) {
            return Err(invalid(
                context,
                format!(
                    "{} bytes do not hold {n} elements of {} ({size} bytes each) for shape {shape:?}",
                    bytes.len(),
                    dtype.tf_name()
                ),
            ));
        }
        let data = match dtype {
            DataType::Float => TensorData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DataType::Double => TensorData::F64(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            DataType::Int32 => TensorData::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DataType::Int64 => TensorData::I64(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            DataType::Int16 => TensorData::I16(
                bytes
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DataType::Int8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DataType::UInt8 => TensorData::U8(bytes.to_vec()),
            DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DataType::String | DataType::Half | DataType::Resource | DataType::Variant => {
                return Err(FormatError::UnsupportedDType {
                    context: context.to_string(),
                    dtype: dtype as i32,
                    name: dtype.tf_name(),
                });
            }
        };
        tensor(shape, data, context)
    }

    /// The row-major little-endian buffer of a fixed-size tensor; `None` for strings.
    pub fn to_le_bytes(&self) -> Option<Vec<u8>> {
        Some(match self.data() {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
            TensorData::Str(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_broadcast_the_last_value() {
        let mut p = TensorProto::with_shape(DataType::Float, &[4]);
        p.float_val = vec![1.0, 2.0];
        let t = HostTensor::from_tensor_proto(&p, "c").unwrap();
        assert_eq!(t.data(), &TensorData::F32(vec![1.0, 2.0, 2.0, 2.0]));

        let p = TensorProto::with_shape(DataType::Int64, &[2, 2]);
        let t = HostTensor::from_tensor_proto(&p, "c").unwrap();
        assert_eq!(t.data(), &TensorData::I64(vec![0; 4]));

        let mut p = TensorProto::with_shape(DataType::String, &[3]);
        p.string_val = vec![b"a".to_vec()];
        let t = HostTensor::from_tensor_proto(&p, "c").unwrap();
        assert_eq!(t.data(), &TensorData::Str(vec![b"a".to_vec(); 3]));
    }

    #[test]
    fn tensor_content_is_little_endian() {
        let mut p = TensorProto::with_shape(DataType::Int32, &[2]);
        p.tensor_content = vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        let t = HostTensor::from_tensor_proto(&p, "c").unwrap();
        assert_eq!(t.data(), &TensorData::I32(vec![1, -1]));
        p.tensor_content.pop();
        let err = HostTensor::from_tensor_proto(&p, "node 'c'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("node 'c'") && err.contains("7 bytes"), "{err}");
    }

    #[test]
    fn scalar_without_shape_is_rank_zero() {
        let p = TensorProto {
            dtype: DataType::Int32 as i32,
            int_val: vec![1],
            ..Default::default()
        };
        let t = HostTensor::from_tensor_proto(&p, "c").unwrap();
        assert!(t.shape().is_empty());
        assert_eq!(t.data(), &TensorData::I32(vec![1]));
    }

    #[test]
    fn bad_protos_are_errors() {
        let mut too_many = TensorProto::with_shape(DataType::Float, &[1]);
        too_many.float_val = vec![1.0, 2.0];
        assert!(HostTensor::from_tensor_proto(&too_many, "c").is_err());

        let unknown_dim = TensorProto::with_shape(DataType::Float, &[-1, 3]);
        assert!(
            HostTensor::from_tensor_proto(&unknown_dim, "c")
                .unwrap_err()
                .to_string()
                .contains("not fully defined")
        );

        let huge = TensorProto::with_shape(DataType::Float, &[1 << 20, 1 << 20]);
        assert!(
            HostTensor::from_tensor_proto(&huge, "c")
                .unwrap_err()
                .to_string()
                .contains("limit")
        );

        let overflow = TensorProto::with_shape(DataType::Float, &[i64::MAX, i64::MAX]);
        assert!(HostTensor::from_tensor_proto(&overflow, "c").is_err());

        let complex = TensorProto::with_shape(DataType::Float, &[1]);
        let complex = TensorProto {
            dtype: 8,
            ..complex
        };
        let err = HostTensor::from_tensor_proto(&complex, "node 'k'")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DT_COMPLEX64") && err.contains("node 'k'"),
            "{err}"
        );
    }

    #[test]
    fn proto_round_trip() {
        let tensors = [
            HostTensor::new(vec![2, 2], TensorData::F32(vec![1.0, -2.0, 3.5, 0.0])).unwrap(),
            HostTensor::new(vec![], TensorData::I32(vec![1])).unwrap(),
            HostTensor::new(vec![3], TensorData::I64(vec![1, -5, i64::MAX])).unwrap(),
            HostTensor::new(vec![2], TensorData::Str(vec![b"x".to_vec(), Vec::new()])).unwrap(),
            HostTensor::new(vec![2], TensorData::Bool(vec![true, false])).unwrap(),
            HostTensor::new(vec![2], TensorData::I8(vec![-1, 7])).unwrap(),
            HostTensor::new(vec![0, 3], TensorData::F64(vec![])).unwrap(),
        ];
        for t in tensors {
            let back = HostTensor::from_tensor_proto(&t.to_tensor_proto(), "c").unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn dtype_names() {
        assert_eq!(dtype_name(1), "DT_FLOAT");
        assert_eq!(dtype_name(101), "DT_FLOAT");
        assert_eq!(dtype_name(33), "DT_FLOAT4_E2M1FN");
        assert_eq!(dtype_name(-3), "unknown");
        assert_eq!(dtype_name(99), "unknown");
    }
}
