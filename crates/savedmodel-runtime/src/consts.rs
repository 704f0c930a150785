//! Decoding `TensorProto` constants (`Const` nodes' `value` attr, signature defaults,
//! RestoreV2's name lists).
//!
//! The format crate's [`HostTensor::from_tensor_proto`] does the decoding (TensorFlow's typed
//! value lists and `tensor_content`), the same code that reads a SavedModel's constants there.
//! On top of it this module adds what the runtime needs: a tighter bound on how far a short
//! value list may be expanded, and DT_HALF, which a [`HostTensor`] cannot hold, widened to f32.

use savedmodel_format::convert::{broadcast, shape_from_proto};
use savedmodel_format::proto::TensorProto;
use savedmodel_format::{DataType, HostTensor, TensorData};

/// A typed value list (`float_val` …) is expanded to the full shape by repeating its last value;
/// beyond this many elements that expansion is refused, since a tiny malicious proto
/// (`tensor_shape: [1e12]`, one `float_val`) would otherwise make us fill gigabytes. (The format
/// crate's own bound, `MAX_BROADCAST_BYTES`, allows up to 1 GiB.) Constants stored in
/// `tensor_content` are bounded by the file size instead.
const MAX_EXPANDED_ELEMENTS: usize = 1 << 24;

/// What decoding errors name; the callers add the node or signature input.
const CONTEXT: &str = "constant";

/// A decoded constant. Half-precision values are widened to f32 (the runtime computes in f32);
/// `dtype` keeps the TensorFlow type they stand for.
#[derive(Debug, Clone)]
pub(crate) struct ConstTensor {
    pub dtype: DataType,
    pub host: HostTensor,
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
    let shape =
        shape_from_proto(proto.tensor_shape.as_ref(), CONTEXT).map_err(|e| e.to_string())?;
    // shape_from_proto has checked that the element count does not overflow.
    let count = shape.iter().product::<usize>();
    if proto.tensor_content.is_empty() && count > MAX_EXPANDED_ELEMENTS && typed_len(proto) < count
    {
        return Err(format!(
            "constant of shape {shape:?} is too large ({count} elements from a short value list)"
        ));
    }
    let host = if dtype == DataType::Half {
        decode_half(proto, shape, count)?
    } else {
        HostTensor::from_tensor_proto(proto, CONTEXT).map_err(|e| e.to_string())?
    };
    Ok(ConstTensor { dtype, host })
}

/// DT_HALF as f32: the bit patterns are 2-byte little-endian `tensor_content`, or the low 16
/// bits of each int32 in `half_val`.
fn decode_half(proto: &TensorProto, shape: Vec<usize>, count: usize) -> Result<HostTensor, String> {
    let content = &proto.tensor_content;
    let bits: Vec<u16> = if content.is_empty() {
        broadcast(&proto.half_val, count, 4, CONTEXT)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|b| b as u16)
            .collect()
    } else {
        if Some(content.len()) != count.checked_mul(2) {
            return Err(format!(
                "{CONTEXT}: tensor_content has {} bytes, expected {count} DT_HALF elements × 2 bytes",
                content.len()
            ));
        }
        content
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect()
    };
    let widened = bits
        .into_iter()
        .map(|b| half::f16::from_bits(b).to_f32())
        .collect();
    HostTensor::new(shape, TensorData::F32(widened)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_value_lists_repeat_the_last_value() {
        let mut p = TensorProto::with_shape(DataType::Int32, &[4]);
        p.int_val = vec![1, 2];
        let c = decode_tensor_proto(&p).unwrap();
        assert_eq!(c.host.data(), &TensorData::I32(vec![1, 2, 2, 2]));
    }

    #[test]
    fn empty_value_lists_mean_zeros() {
        let c = decode_tensor_proto(&TensorProto::with_shape(DataType::Float, &[2, 2])).unwrap();
        assert_eq!(c.host.data(), &TensorData::F32(vec![0.0; 4]));
        assert_eq!(c.host.shape(), &[2, 2]);
    }

    #[test]
    fn tensor_content_is_little_endian() {
        let mut p = TensorProto::with_shape(DataType::Float, &[2]);
        p.tensor_content = [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat();
        assert_eq!(
            decode_tensor_proto(&p).unwrap().host.data(),
            &TensorData::F32(vec![1.5, -2.0])
        );
    }

    #[test]
    fn wrong_content_length_is_an_error() {
        let mut p = TensorProto::with_shape(DataType::Float, &[3]);
        p.tensor_content = vec![0; 8];
        assert!(decode_tensor_proto(&p).unwrap_err().contains("8 bytes"));
    }

    #[test]
    fn huge_shapes_are_rejected_without_allocating() {
        let mut p = TensorProto::with_shape(DataType::Float, &[1 << 40]);
        p.float_val = vec![1.0];
        assert!(decode_tensor_proto(&p).unwrap_err().contains("too large"));
        let p = TensorProto::with_shape(DataType::Float, &[i64::MAX, i64::MAX]);
        assert!(
            decode_tensor_proto(&p)
                .unwrap_err()
                .contains("too many elements")
        );
        let p = TensorProto::with_shape(DataType::Float, &[-3]);
        assert!(
            decode_tensor_proto(&p)
                .unwrap_err()
                .contains("shape [-3] is not fully defined")
        );
    }

    #[test]
    fn half_values_are_widened() {
        let mut p = TensorProto::with_shape(DataType::Half, &[3]);
        p.half_val = vec![0x3C00, 0xC000];
        let c = decode_tensor_proto(&p).unwrap();
        assert_eq!(c.dtype, DataType::Half);
        assert_eq!(c.host.data(), &TensorData::F32(vec![1.0, -2.0, -2.0]));

        let mut p = TensorProto::with_shape(DataType::Half, &[2]);
        p.tensor_content = vec![0x00, 0x3C, 0x00, 0x38];
        let c = decode_tensor_proto(&p).unwrap();
        assert_eq!(c.host.data(), &TensorData::F32(vec![1.0, 0.5]));
        p.tensor_content.pop();
        let error = decode_tensor_proto(&p).unwrap_err();
        assert!(error.contains("tensor_content has 3 bytes"), "{error}");
    }

    #[test]
    fn strings_and_unsupported_dtypes() {
        let mut p = TensorProto::with_shape(DataType::String, &[2]);
        p.string_val = vec![b"a".to_vec()];
        let c = decode_tensor_proto(&p).unwrap();
        assert_eq!(
            c.host.data(),
            &TensorData::Str(vec![b"a".to_vec(), b"a".to_vec()])
        );
        let error =
            decode_tensor_proto(&TensorProto::with_shape(DataType::Resource, &[])).unwrap_err();
        assert!(error.contains("DT_RESOURCE"), "{error}");
        let mut p = TensorProto::with_shape(DataType::Float, &[]);
        p.dtype = 999;
        let error = decode_tensor_proto(&p).unwrap_err();
        assert!(error.contains("dtype enum 999"), "{error}");
    }
}
