//! Runtime values: what flows along the edges of a compiled plan.
//!
//! Floating-point tensors live on the model's candle device and are computed in f32 whatever
//! TensorFlow type they stand for (the tag keeps that type, so outputs convert back to it).
//! Integer, bool and string tensors live in host memory: in inference graphs they are shapes,
//! slice bounds, axes and class ids — tiny tensors whose values steer the computation and would
//! only cost device round trips on a GPU.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use savedmodel_format::{DataType, HostTensor, TensorData};

use crate::consts::ConstTensor;

/// A candle error as a message, without the backtrace candle attaches when `RUST_BACKTRACE`
/// is set (that would end up in HTTP error bodies).
pub(crate) fn candle_message(err: candle_core::Error) -> String {
    match err {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(*inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(*inner))
        }
        other => other.to_string(),
    }
}

/// Index of a model variable.
pub(crate) type VarId = usize;

/// Element storage of a host value, widened to one integer type so that shape arithmetic and
/// structural ops need one implementation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HostVals {
    Ints(Vec<i64>),
    Bools(Vec<bool>),
    Strs(Vec<Vec<u8>>),
}

impl HostVals {
    pub(crate) fn len(&self) -> usize {
        match self {
            HostVals::Ints(v) => v.len(),
            HostVals::Bools(v) => v.len(),
            HostVals::Strs(v) => v.len(),
        }
    }

    /// Elements at `indices`, in that order.
    pub(crate) fn gather(&self, indices: &[usize]) -> HostVals {
        match self {
            HostVals::Ints(v) => HostVals::Ints(indices.iter().map(|&i| v[i]).collect()),
            HostVals::Bools(v) => HostVals::Bools(indices.iter().map(|&i| v[i]).collect()),
            HostVals::Strs(v) => HostVals::Strs(indices.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    /// `count` copies of element `index`.
    pub(crate) fn repeat(&self, index: usize, count: usize) -> HostVals {
        match self {
            HostVals::Ints(v) => HostVals::Ints(vec![v[index]; count]),
            HostVals::Bools(v) => HostVals::Bools(vec![v[index]; count]),
            HostVals::Strs(v) => HostVals::Strs(vec![v[index].clone(); count]),
        }
    }

    /// Appends `other[range]` to `self`; both must hold the same kind of elements.
    pub(crate) fn extend_from(
        &mut self,
        other: &HostVals,
        range: std::ops::Range<usize>,
    ) -> Result<(), String> {
        match (self, other) {
            (HostVals::Ints(a), HostVals::Ints(b)) => a.extend_from_slice(&b[range]),
            (HostVals::Bools(a), HostVals::Bools(b)) => a.extend_from_slice(&b[range]),
            (HostVals::Strs(a), HostVals::Strs(b)) => a.extend_from_slice(&b[range]),
            _ => return Err("inputs have different element types".into()),
        }
        Ok(())
    }

    pub(crate) fn empty_like(&self) -> HostVals {
        match self {
            HostVals::Ints(_) => HostVals::Ints(Vec::new()),
            HostVals::Bools(_) => HostVals::Bools(Vec::new()),
            HostVals::Strs(_) => HostVals::Strs(Vec::new()),
        }
    }
}

/// An integer, bool or string tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostValue {
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub vals: HostVals,
}

impl HostValue {
    pub(crate) fn ints(dtype: DataType, shape: Vec<usize>, values: Vec<i64>) -> HostValue {
        HostValue {
            dtype,
            shape,
            vals: HostVals::Ints(values),
        }
    }

    pub(crate) fn as_ints(&self) -> Option<&[i64]> {
        match &self.vals {
            HostVals::Ints(v) => Some(v),
            _ => None,
        }
    }

    /// Converts to the public tensor type, narrowing integers to the tagged dtype.
    pub(crate) fn to_host_tensor(&self) -> Result<HostTensor, String> {
        let data = match (&self.vals, self.dtype) {
            (HostVals::Ints(v), DataType::Int64) => TensorData::I64(v.clone()),
            (HostVals::Ints(v), DataType::Int32) => {
                TensorData::I32(v.iter().map(|&x| x as i32).collect())
            }
            (HostVals::Ints(v), DataType::Int16) => {
                TensorData::I16(v.iter().map(|&x| x as i16).collect())
            }
            (HostVals::Ints(v), DataType::Int8) => {
                TensorData::I8(v.iter().map(|&x| x as i8).collect())
            }
            (HostVals::Ints(v), DataType::UInt8) => {
                TensorData::U8(v.iter().map(|&x| x as u8).collect())
            }
            (HostVals::Bools(v), _) => TensorData::Bool(v.clone()),
            (HostVals::Strs(v), _) => TensorData::Str(v.clone()),
            (HostVals::Ints(_), other) => {
                return Err(format!("integer values tagged {}", other.tf_name()));
            }
        };
        HostTensor::new(self.shape.clone(), data).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Floating-point data on the device, as f32; `dtype` is the TensorFlow type it stands for.
    Float { tensor: Tensor, dtype: DataType },
    /// Integer, bool and string data in host memory.
    Host(Arc<HostValue>),
    /// A handle to a model variable (`DT_RESOURCE`).
    Resource(VarId),
}

pub(crate) fn is_float(dtype: DataType) -> bool {
    matches!(dtype, DataType::Float | DataType::Double | DataType::Half)
}

impl Value {
    pub(crate) fn host(value: HostValue) -> Value {
        Value::Host(Arc::new(value))
    }

    pub(crate) fn float(tensor: Tensor, dtype: DataType) -> Value {
        Value::Float { tensor, dtype }
    }

    /// Brings host data into the runtime's representation: floats go to the device as f32.
    pub(crate) fn from_host_tensor(
        host: &HostTensor,
        dtype: DataType,
        device: &Device,
    ) -> Result<Value, String> {
        let shape = host.shape().to_vec();
        let e = candle_message;
        Ok(match host.data() {
            TensorData::F32(v) => {
                Value::float(Tensor::from_slice(v, shape, device).map_err(e)?, dtype)
            }
            TensorData::F64(v) => {
                let narrowed: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                Value::float(Tensor::from_vec(narrowed, shape, device).map_err(e)?, dtype)
            }
            TensorData::I32(v) => Value::host(HostValue::ints(
                dtype,
                shape,
                v.iter().map(|&x| x as i64).collect(),
            )),
            TensorData::I64(v) => Value::host(HostValue::ints(dtype, shape, v.clone())),
            TensorData::I16(v) => Value::host(HostValue::ints(
                dtype,
                shape,
                v.iter().map(|&x| x as i64).collect(),
            )),
            TensorData::I8(v) => Value::host(HostValue::ints(
                dtype,
                shape,
                v.iter().map(|&x| x as i64).collect(),
            )),
            TensorData::U8(v) => Value::host(HostValue::ints(
                dtype,
                shape,
                v.iter().map(|&x| x as i64).collect(),
            )),
            TensorData::Bool(v) => Value::host(HostValue {
                dtype,
                shape,
                vals: HostVals::Bools(v.clone()),
            }),
            TensorData::Str(v) => Value::host(HostValue {
                dtype,
                shape,
                vals: HostVals::Strs(v.clone()),
            }),
        })
    }

    pub(crate) fn from_const(c: &ConstTensor, device: &Device) -> Result<Value, String> {
        Value::from_host_tensor(&c.host, c.dtype, device)
    }

    pub(crate) fn dtype(&self) -> DataType {
        match self {
            Value::Float { dtype, .. } => *dtype,
            Value::Host(h) => h.dtype,
            Value::Resource(_) => DataType::Resource,
        }
    }

    pub(crate) fn dims(&self) -> Vec<usize> {
        match self {
            Value::Float { tensor, .. } => tensor.dims().to_vec(),
            Value::Host(h) => h.shape.clone(),
            Value::Resource(_) => Vec::new(),
        }
    }

    /// Copies the value into host memory as the public tensor type.
    pub(crate) fn to_host_tensor(&self) -> Result<HostTensor, String> {
        match self {
            Value::Float { tensor, dtype } => {
                let shape = tensor.dims().to_vec();
                let values: Vec<f32> = tensor
                    .flatten_all()
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(candle_message)?;
                let data = match dtype {
                    DataType::Double => {
                        TensorData::F64(values.into_iter().map(f64::from).collect())
                    }
                    _ => TensorData::F32(values),
                };
                HostTensor::new(shape, data).map_err(|e| e.to_string())
            }
            Value::Host(h) => h.to_host_tensor(),
            Value::Resource(_) => Err("a resource handle cannot be returned as a tensor".into()),
        }
    }

    /// Float data copied to the host (for ops that compute there, such as ArgMax).
    pub(crate) fn float_values(&self) -> Result<Vec<f32>, String> {
        match self {
            Value::Float { tensor, .. } => tensor
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(candle_message),
            other => Err(format!(
                "expected a floating-point tensor, got {}",
                other.dtype().tf_name()
            )),
        }
    }
}
