//! Decoding `TensorProto` constants (`Const` nodes' `value` attr, RestoreV2's name lists).

use savedmodel_format::proto::TensorProto;
use savedmodel_format::{DataType, HostTensor, TensorData};

/// A typed value list (`float_val` …) is expanded to the full shape by repeating its last value;
/// beyond this many elements that expansion is refused, since a tiny malicious proto
/// (`tensor_shape: [1e12]`, one `float_val`) would otherwise make us fill gigabytes. Constants
/// stored in `tensor_content` are bounded by the file size instead.
const MAX_EXPANDED_ELEMENTS: usize = 1 << 24;

/// A decoded constant. Half-precision values are widened to f32 (the runtime computes in f32);
/// `dtype` keeps the TensorFlow type they stand for.
#[derive(Debug, Clone)]
pub(crate) struct ConstTensor {
    pub dtype: DataType,
    pub host: HostTensor,
}

/// Element count of a shape with every dimension known, or an error for negative/overflowing dims.
pub(crate) fn checked_count(dims: &[i64]) -> Result<(Vec<usize>, usize), String> {
    let mut shape = Vec::with_capacity(dims.len());
    let mut count: usize = 1;
    for &d in dims {
        let d =
            usize::try_from(d).map_err(|_| format!("shape {dims:?} has a negative dimension"))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| format!("shape {dims:?} overflows"))?;
        shape.push(d);
    }
    Ok((shape, count))
}

/// TensorFlow's rule for typed value lists: fewer values than elements repeat the last one,
/// none at all means zeros.
fn fill<T: Clone + Default>(values: &[T], count: usize, what: &str) -> Result<Vec<T>, String> {
    if values.len() > count {
        return Err(format!(
            "{} {what} values for {count} elements",
            values.len()
        ));
    }
    let mut out = values.to_vec();
    let last = values.last().cloned().unwrap_or_default();
    out.resize(count, last);
    Ok(out)
}

fn from_content<T, const N: usize>(
    bytes: &[u8],
    count: usize,
    convert: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, String> {
    if Some(bytes.len()) != count.checked_mul(N) {
        return Err(format!(
            "tensor_content has {} bytes, expected {count} elements × {N} bytes",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut raw = [0u8; N];
            raw.copy_from_slice(chunk);
            convert(raw)
        })
        .collect())
}

/// Number of values in the typed list fields (whichever the dtype uses).
fn typed_len(proto: &TensorProto) -> usize {
    [
        proto.float_val.len(),
        proto.double_val.len(),
        proto.int_val.len(),
        proto.int64_val.len(),
        proto.bool_val.len(),
        proto.string_val.len(),
        proto.half_val.len(),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
}

/// Decodes a `TensorProto` into host memory.
pub(crate) fn decode_tensor_proto(proto: &TensorProto) -> Result<ConstTensor, String> {
    let dtype = DataType::from_tf(proto.dtype).ok_or_else(|| {
        format!(
            "constant has dtype enum {} which this runtime does not handle",
            proto.dtype
        )
    })?;
    let dims = match &proto.tensor_shape {
        None => Vec::new(),
        Some(shape) => shape.dims().ok_or("constant has unknown rank")?,
    };
    let (shape, count) = checked_count(&dims)?;
    let content = &proto.tensor_content;
    let raw = !content.is_empty();
    if !raw && count > MAX_EXPANDED_ELEMENTS && typed_len(proto) < count {
        return Err(format!(
            "constant of shape {dims:?} is too large ({count} elements from a short value list)"
        ));
    }
    let data = match dtype {
        DataType::Float => TensorData::F32(if raw {
            from_content(content, count, f32::from_le_bytes)?
        } else {
            fill(&proto.float_val, count, "float")?
        }),
        DataType::Double => TensorData::F64(if raw {
            from_content(content, count, f64::from_le_bytes)?
        } else {
            fill(&proto.double_val, count, "double")?
        }),
        DataType::Half => {
            let bits: Vec<u16> = if raw {
                from_content(content, count, u16::from_le_bytes)?
            } else {
                // half_val holds the bit patterns in int32s.
                fill(&proto.half_val, count, "half")?
                    .into_iter()
                    .map(|b| b as u16)
                    .collect()
            };
            TensorData::F32(
                bits.into_iter()
                    .map(|b| half::f16::from_bits(b).to_f32())
                    .collect(),
            )
        }
        DataType::Int32 => TensorData::I32(if raw {
            from_content(content, count, i32::from_le_bytes)?
        } else {
            fill(&proto.int_val, count, "int")?
        }),
        DataType::Int64 => TensorData::I64(if raw {
            from_content(content, count, i64::from_le_bytes)?
        } else {
            fill(&proto.int64_val, count, "int64")?
        }),
        DataType::Int16 => TensorData::I16(if raw {
            from_content(content, count, i16::from_le_bytes)?
        } else {
            fill(&proto.int_val, count, "int")?
                .into_iter()
                .map(|v| v as i16)
                .collect()
        }),
        DataType::Int8 => TensorData::I8(if raw {
            from_content(content, count, |b: [u8; 1]| b[0] as i8)?
        } else {
            fill(&proto.int_val, count, "int")?
                .into_iter()
                .map(|v| v as i8)
                .collect()
        }),
        DataType::UInt8 => TensorData::U8(if raw {
            from_content(content, count, |b: [u8; 1]| b[0])?
        } else {
            fill(&proto.int_val, count, "int")?
                .into_iter()
                .map(|v| v as u8)
                .collect()
        }),
        DataType::Bool => TensorData::Bool(if raw {
            from_content(content, count, |b: [u8; 1]| b[0] != 0)?
        } else {
            fill(&proto.bool_val, count, "bool")?
        }),
        DataType::String => {
            if raw {
                return Err("string constant in tensor_content form is not supported".into());
            }
            TensorData::Str(fill(&proto.string_val, count, "string")?)
        }
        DataType::Resource | DataType::Variant => {
            return Err(format!(
                "constants of type {} are not supported",
                dtype.tf_name()
            ));
        }
    };
    let host = HostTensor::new(shape, data).map_err(|e| e.to_string())?;
    Ok(ConstTensor { dtype, host })
}

#[cfg(test)]
mod tests {
    use super::*;
    use savedmodel_format::proto::TensorShapeProto;

    fn proto(dtype: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: dtype as i32,
            tensor_shape: Some(TensorShapeProto::from_dims(dims)),
            ..Default::default()
        }
    }

    #[test]
    fn short_value_lists_repeat_the_last_value() {
        let mut p = proto(DataType::Int32, &[4]);
        p.int_val = vec![1, 2];
        let c = decode_tensor_proto(&p).unwrap();
        assert_eq!(c.host.data(), &TensorData::I32(vec![1, 2, 2, 2]));
    }

    #[test]
    fn empty_value_lists_mean_zeros() {
        let c = decode_tensor_proto(&proto(DataType::Float, &[2, 2])).unwrap();
        assert_eq!(c.host.data(), &TensorData::F32(vec![0.0; 4]));
        assert_eq!(c.host.shape(), &[2, 2]);
    }

    #[test]
    fn tensor_content_is_little_endian() {
        let mut p = proto(DataType::Float, &[2]);
        p.tensor_content = [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat();
        assert_eq!(
            decode_tensor_proto(&p).unwrap().host.data(),
            &TensorData::F32(vec![1.5, -2.0])
        );
    }

    #[test]
    fn wrong_content_length_is_an_error() {
        let mut p = proto(DataType::Float, &[3]);
        p.tensor_content = vec![0; 8];
        assert!(decode_tensor_proto(&p).unwrap_err().contains("8 bytes"));
    }

    #[test]
    fn huge_shapes_are_rejected_without_allocating() {
        let mut p = proto(DataType::Float, &[1 << 40]);
        p.float_val = vec![1.0];
        assert!(decode_tensor_proto(&p).unwrap_err().contains("too large"));
        let p = proto(DataType::Float, &[i64::MAX, i64::MAX]);
        assert!(decode_tensor_proto(&p).unwrap_err().contains("overflows"));
        let p = proto(DataType::Float, &[-3]);
        assert!(decode_tensor_proto(&p).unwrap_err().contains("negative"));
    }

    #[test]
    fn half_values_are_widened() {
        let mut p = proto(DataType::Half, &[1]);
        p.half_val = vec![0x3C00];
        let c = decode_tensor_proto(&p).unwrap();
        assert_eq!(c.dtype, DataType::Half);
        assert_eq!(c.host.data(), &TensorData::F32(vec![1.0]));
    }
}
