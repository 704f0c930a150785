//! The ops the runtime can execute: attr parsing at compile time ([`compile_kernel`]) and the
//! math at run time ([`Kernel::run`]).
//!
//! Float math runs on candle in f32; integer/bool ops (shapes, axes, slice bounds, class ids)
//! run on the host (see `value.rs`). Each kernel checks its `T` attr at compile time, so a graph
//! that applies, say, `Relu` to int32 is reported as unsupported when the model loads rather
//! than failing on the first request.

use candle_core::{D, DType, Device, Tensor};
use savedmodel_format::DataType;

use crate::value::{HostVals, HostValue, Value, candle_message, is_float};

/// Attr access for one node while compiling (with defaults and function bindings applied).
pub(crate) trait Attrs {
    fn attr_type(&self, name: &str) -> Option<Result<DataType, i32>>;
    fn attr_bool(&self, name: &str) -> Option<bool>;
    fn attr_int(&self, name: &str) -> Option<i64>;
    fn attr_float(&self, name: &str) -> Option<f32>;
    fn attr_ints(&self, name: &str) -> Option<Vec<i64>>;
    fn attr_string(&self, name: &str) -> Option<Vec<u8>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    SquaredDifference,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Relu,
    Relu6,
    Elu,
    Selu,
    Softplus,
    Softsign,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Log1p,
    Sqrt,
    Rsqrt,
    Square,
    Neg,
    Abs,
    Erf,
    Floor,
    Reciprocal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SliceMasks {
    pub begin: i64,
    pub end: i64,
    pub ellipsis: i64,
    pub new_axis: i64,
    pub shrink_axis: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kernel {
    /// Forwards input 0 (Identity, Snapshot, StopGradient, unfed PlaceholderWithDefault, …).
    Identity,
    /// Forwards every input to the output with the same index.
    IdentityN,
    ReadVariable,
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },
    BatchMatMul {
        adj_x: bool,
        adj_y: bool,
    },
    BiasAdd {
        channels_first: bool,
    },
    Binary(BinaryOp),
    AddN,
    Unary(UnaryOp),
    LeakyRelu {
        alpha: f32,
    },
    Softmax {
        log: bool,
    },
    ArgReduce {
        min: bool,
        output: DataType,
    },
    Cast {
        to: DataType,
    },
    Reshape,
    Shape {
        output: DataType,
    },
    Size {
        output: DataType,
    },
    Rank,
    ExpandDims,
    Squeeze {
        dims: Vec<i64>,
    },
    StridedSlice(SliceMasks),
    Pack {
        axis: i64,
    },
    Concat,
    Reduce {
        op: ReduceOp,
        keep_dims: bool,
    },
    Fill,
    ZerosLike,
    OnesLike,
    Transpose,
    ClipByValue,
    LogicalNot,
    /// `MatMul` or `Conv2D`, with a following `BiasAdd` and `Relu`/`Relu6` fused in by the
    /// planner, on the `cpu-kernels` GEMM (see `nn.rs`).
    Dense(std::sync::Arc<crate::nn::DenseChain>),
    /// `MatMul` chains that feed only each other, run row block by row block through all of
    /// them (planner-built, see `nn.rs`).
    DenseStack(std::sync::Arc<crate::nn::DenseStack>),
    /// Depthwise and transposed convolution, pooling, batch norm, padding (see `nn.rs`).
    Nn(crate::nn::NnKernel),
}

/// Why a node cannot be compiled.
pub(crate) enum CompileError {
    /// The op (or this use of it) is not supported: reported in the aggregated list.
    Unsupported(String),
    /// The node is malformed (missing required attr, …).
    Invalid(String),
}

const INT_TYPES: &[DataType] = &[
    DataType::Int32,
    DataType::Int64,
    DataType::Int16,
    DataType::Int8,
    DataType::UInt8,
];

fn type_attr(attrs: &dyn Attrs, op: &str, name: &str) -> Result<DataType, CompileError> {
    match attrs.attr_type(name) {
        Some(Ok(t)) => Ok(t),
        Some(Err(raw)) => Err(CompileError::Unsupported(format!(
            "{op} ({name}=dtype enum {raw})"
        ))),
        None => Err(CompileError::Invalid(format!(
            "{op} node has no `{name}` attr"
        ))),
    }
}

/// Checks that `T` is one of `allowed`.
fn require_type(
    attrs: &dyn Attrs,
    op: &str,
    name: &str,
    allowed: &[DataType],
) -> Result<DataType, CompileError> {
    let t = type_attr(attrs, op, name)?;
    if allowed.contains(&t) {
        Ok(t)
    } else {
        Err(CompileError::Unsupported(format!(
            "{op} ({name}={})",
            t.tf_name()
        )))
    }
}

fn floats() -> Vec<DataType> {
    vec![DataType::Float, DataType::Double, DataType::Half]
}

fn numbers() -> Vec<DataType> {
    let mut all = floats();
    all.extend_from_slice(INT_TYPES);
    all
}

/// Builds the kernel for an op, checking its attrs. `None` means the op is not a kernel at all
/// (sources, control flow and variables are handled by the planner).
pub(crate) fn compile_kernel(op: &str, attrs: &dyn Attrs) -> Result<Kernel, CompileError> {
    let unary = |u: UnaryOp| -> Result<Kernel, CompileError> {
        let allowed = match u {
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Square => numbers(),
            _ => floats(),
        };
        require_type(attrs, op, "T", &allowed)?;
        Ok(Kernel::Unary(u))
    };
    let binary = |b: BinaryOp| -> Result<Kernel, CompileError> {
        let allowed = match b {
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Maximum
            | BinaryOp::Minimum => numbers(),
            _ => floats(),
        };
        require_type(attrs, op, "T", &allowed)?;
        Ok(Kernel::Binary(b))
    };
    let any_type =
        |name: &str| -> Result<(), CompileError> { type_attr(attrs, op, name).map(|_| ()) };
    let masks = || SliceMasks {
        begin: attrs.attr_int("begin_mask").unwrap_or(0),
        end: attrs.attr_int("end_mask").unwrap_or(0),
        ellipsis: attrs.attr_int("ellipsis_mask").unwrap_or(0),
        new_axis: attrs.attr_int("new_axis_mask").unwrap_or(0),
        shrink_axis: attrs.attr_int("shrink_axis_mask").unwrap_or(0),
    };
    let out_type = |name: &str, default: DataType| -> Result<DataType, CompileError> {
        match attrs.attr_type(name) {
            None => Ok(default),
            Some(Ok(t)) if t == DataType::Int32 || t == DataType::Int64 => Ok(t),
            Some(Ok(t)) => Err(CompileError::Unsupported(format!(
                "{op} ({name}={})",
                t.tf_name()
            ))),
            Some(Err(raw)) => Err(CompileError::Unsupported(format!(
                "{op} ({name}=dtype enum {raw})"
            ))),
        }
    };
    if let Some(kernel) = crate::nn::compile(op, attrs) {
        return kernel;
    }
    Ok(match op {
        "Identity" | "Snapshot" | "StopGradient" | "PreventGradient" | "PlaceholderWithDefault" => {
            Kernel::Identity
        }
        "IdentityN" => Kernel::IdentityN,
        "ReadVariableOp" => Kernel::ReadVariable,
        "MatMul" => {
            require_type(attrs, op, "T", &floats())?;
            let transpose_a = attrs.attr_bool("transpose_a").unwrap_or(false);
            let transpose_b = attrs.attr_bool("transpose_b").unwrap_or(false);
            if transpose_a {
                Kernel::MatMul {
                    transpose_a,
                    transpose_b,
                }
            } else {
                Kernel::Dense(std::sync::Arc::new(crate::nn::DenseChain::new(
                    crate::nn::Head::MatMul { transpose_b },
                )))
            }
        }
        "BatchMatMulV2" | "BatchMatMulV3" => {
            if op == "BatchMatMulV3" {
                require_type(attrs, op, "Ta", &floats())?;
                require_type(attrs, op, "Tb", &floats())?;
            } else {
                require_type(attrs, op, "T", &floats())?;
            }
            Kernel::BatchMatMul {
                adj_x: attrs.attr_bool("adj_x").unwrap_or(false),
                adj_y: attrs.attr_bool("adj_y").unwrap_or(false),
            }
        }
        "BiasAdd" => {
            require_type(attrs, op, "T", &floats())?;
            let format = attrs
                .attr_string("data_format")
                .unwrap_or_else(|| b"NHWC".to_vec());
            let channels_first = match format.as_slice() {
                b"NHWC" => false,
                b"NCHW" => true,
                other => {
                    return Err(CompileError::Unsupported(format!(
                        "BiasAdd (data_format={})",
                        String::from_utf8_lossy(other)
                    )));
                }
            };
            Kernel::BiasAdd { channels_first }
        }
        "Add" | "AddV2" => binary(BinaryOp::Add)?,
        "Sub" => binary(BinaryOp::Sub)?,
        "Mul" => binary(BinaryOp::Mul)?,
        "RealDiv" => binary(BinaryOp::Div)?,
        "Div" => {
            // Div on integers rounds toward zero in TF; only the float form is supported.
            require_type(attrs, op, "T", &floats())?;
            Kernel::Binary(BinaryOp::Div)
        }
        "Maximum" => binary(BinaryOp::Maximum)?,
        "Minimum" => binary(BinaryOp::Minimum)?,
        "SquaredDifference" => binary(BinaryOp::SquaredDifference)?,
        "Pow" => binary(BinaryOp::Pow)?,
        "AddN" => {
            require_type(attrs, op, "T", &numbers())?;
            Kernel::AddN
        }
        "Relu" => unary(UnaryOp::Relu)?,
        "Relu6" => unary(UnaryOp::Relu6)?,
        "Elu" => unary(UnaryOp::Elu)?,
        "Selu" => unary(UnaryOp::Selu)?,
        "Softplus" => unary(UnaryOp::Softplus)?,
        "Softsign" => unary(UnaryOp::Softsign)?,
        "Sigmoid" => unary(UnaryOp::Sigmoid)?,
        "Tanh" => unary(UnaryOp::Tanh)?,
        "Exp" => unary(UnaryOp::Exp)?,
        "Log" => unary(UnaryOp::Log)?,
        "Log1p" => unary(UnaryOp::Log1p)?,
        "Sqrt" => unary(UnaryOp::Sqrt)?,
        "Rsqrt" => unary(UnaryOp::Rsqrt)?,
        "Square" => unary(UnaryOp::Square)?,
        "Neg" => unary(UnaryOp::Neg)?,
        "Abs" => unary(UnaryOp::Abs)?,
        "Erf" => unary(UnaryOp::Erf)?,
        "Floor" => unary(UnaryOp::Floor)?,
        "Reciprocal" | "Inv" => unary(UnaryOp::Reciprocal)?,
        "LeakyRelu" => {
            // T defaults to float in the op def.
            if attrs.attr_type("T").is_some() {
                require_type(attrs, op, "T", &floats())?;
            }
            Kernel::LeakyRelu {
                alpha: attrs.attr_float("alpha").unwrap_or(0.2),
            }
        }
        "Softmax" | "LogSoftmax" => {
            require_type(attrs, op, "T", &floats())?;
            Kernel::Softmax {
                log: op == "LogSoftmax",
            }
        }
        "ArgMax" | "ArgMin" => {
            require_type(attrs, op, "T", &numbers())?;
            Kernel::ArgReduce {
                min: op == "ArgMin",
                output: out_type("output_type", DataType::Int64)?,
            }
        }
        "Cast" => {
            let mut supported = numbers();
            supported.push(DataType::Bool);
            require_type(attrs, op, "SrcT", &supported)?;
            Kernel::Cast {
                to: require_type(attrs, op, "DstT", &supported)?,
            }
        }
        "Reshape" => {
            any_type("T")?;
            Kernel::Reshape
        }
        "Shape" => Kernel::Shape {
            output: out_type("out_type", DataType::Int32)?,
        },
        "Size" => Kernel::Size {
            output: out_type("out_type", DataType::Int32)?,
        },
        "Rank" => Kernel::Rank,
        "ExpandDims" => Kernel::ExpandDims,
        "Squeeze" => Kernel::Squeeze {
            dims: attrs.attr_ints("squeeze_dims").unwrap_or_default(),
        },
        "StridedSlice" => {
            require_type(attrs, op, "Index", &[DataType::Int32, DataType::Int64])?;
            Kernel::StridedSlice(masks())
        }
        "Pack" => Kernel::Pack {
            axis: attrs.attr_int("axis").unwrap_or(0),
        },
        "ConcatV2" => Kernel::Concat,
        "Sum" | "Mean" | "Max" | "Min" | "Prod" => {
            let reduce = match op {
                "Sum" => ReduceOp::Sum,
                "Mean" => ReduceOp::Mean,
                "Max" => ReduceOp::Max,
                "Min" => ReduceOp::Min,
                _ => ReduceOp::Prod,
            };
            require_type(attrs, op, "T", &numbers())?;
            Kernel::Reduce {
                op: reduce,
                keep_dims: attrs.attr_bool("keep_dims").unwrap_or(false),
            }
        }
        "Fill" => Kernel::Fill,
        "ZerosLike" => Kernel::ZerosLike,
        "OnesLike" => Kernel::OnesLike,
        "Transpose" => Kernel::Transpose,
        "ClipByValue" => {
            require_type(attrs, op, "T", &floats())?;
            Kernel::ClipByValue
        }
        "LogicalNot" => Kernel::LogicalNot,
        _ => return Err(CompileError::Unsupported(op.to_string())),
    })
}

/// The names of all ops the runtime executes (kernels plus what the planner handles itself),
/// for documentation and tests.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "AddN",
    "AddV2",
    "ArgMax",
    "ArgMin",
    "AvgPool",
    "BatchMatMulV2",
    "BatchMatMulV3",
    "BiasAdd",
    "Cast",
    "ClipByValue",
    "ConcatV2",
    "Const",
    "Conv2D",
    "Conv2DBackpropInput",
    "DepthwiseConv2dNative",
    "Div",
    "Elu",
    "Erf",
    "Exp",
    "ExpandDims",
    "Fill",
    "Floor",
    "FusedBatchNorm",
    "FusedBatchNormV2",
    "FusedBatchNormV3",
    "Identity",
    "IdentityN",
    "Inv",
    "LeakyRelu",
    "Log",
    "Log1p",
    "LogSoftmax",
    "LogicalNot",
    "MatMul",
    "Max",
    "MaxPool",
    "Maximum",
    "Mean",
    "Merge",
    "Min",
    "Minimum",
    "Mul",
    "Neg",
    "NoOp",
    "OnesLike",
    "Pack",
    "Pad",
    "PadV2",
    "PartitionedCall",
    "Placeholder",
    "PlaceholderWithDefault",
    "Pow",
    "PreventGradient",
    "Prod",
    "Rank",
    "ReadVariableOp",
    "RealDiv",
    "Reciprocal",
    "RefIdentity",
    "RefMerge",
    "RefSwitch",
    "Relu",
    "Relu6",
    "Reshape",
    "Rsqrt",
    "Selu",
    "Shape",
    "Sigmoid",
    "Size",
    "Snapshot",
    "Softmax",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Square",
    "SquaredDifference",
    "Squeeze",
    "StatefulPartitionedCall",
    "StopGradient",
    "StridedSlice",
    "Sub",
    "Sum",
    "Switch",
    "Tanh",
    "Transpose",
    "VarHandleOp",
    "Variable",
    "VariableV2",
    "ZerosLike",
];

/// What a kernel may look at besides its inputs.
pub(crate) struct KernelContext<'r> {
    pub device: &'r Device,
    pub variables: &'r [Option<Value>],
}

fn ce(err: candle_core::Error) -> String {
    candle_message(err)
}

fn float_input(v: &Value) -> Result<(&Tensor, DataType), String> {
    match v {
        Value::Float { tensor, dtype } => Ok((tensor, *dtype)),
        other => Err(format!(
            "expected a floating-point tensor, got {}",
            other.dtype().tf_name()
        )),
    }
}

fn host_input(v: &Value) -> Result<&HostValue, String> {
    match v {
        Value::Host(h) => Ok(h),
        other => Err(format!(
            "expected an integer/bool/string tensor, got {}",
            other.dtype().tf_name()
        )),
    }
}

/// An integer tensor's values (shapes, axes, bounds).
fn int_values(v: &Value) -> Result<&[i64], String> {
    host_input(v)?
        .as_ints()
        .ok_or_else(|| format!("expected an integer tensor, got {}", v.dtype().tf_name()))
}

fn scalar_int(v: &Value, what: &str) -> Result<i64, String> {
    let values = int_values(v)?;
    match values {
        [x] => Ok(*x),
        _ => Err(format!(
            "{what} must be a scalar, got {} values",
            values.len()
        )),
    }
}

/// Normalises a possibly negative axis against `rank` (TF accepts `-rank..rank`).
fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Numpy-style broadcast of two shapes.
fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(format!(
                    "shapes {a:?} and {b:?} cannot be broadcast together"
                ));
            }
        };
    }
    // Broadcasting is the one place where small inputs make a large output; refuse absurd ones.
    if out
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .is_none_or(|n| n > MAX_FILL_ELEMENTS)
    {
        return Err(format!(
            "broadcasting {a:?} with {b:?} gives a tensor that is too large"
        ));
    }
    Ok(out)
}

/// For each element of the broadcast `out` shape, the flat index into a tensor of `shape`.
fn broadcast_indices(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let count: usize = out.iter().product();
    let offset = out.len() - shape.len();
    let strides = strides_of(shape);
    let out_strides = strides_of(out);
    (0..count)
        .map(|flat| {
            let mut index = 0;
            for (d, &size) in shape.iter().enumerate() {
                let coord = (flat / out_strides[d + offset]) % out[d + offset];
                if size != 1 {
                    index += coord * strides[d];
                }
            }
            index
        })
        .collect()
}

fn host_binary(a: &HostValue, b: &HostValue, op: BinaryOp) -> Result<HostValue, String> {
    let (Some(x), Some(y)) = (a.as_ints(), b.as_ints()) else {
        return Err("arithmetic needs integer tensors".into());
    };
    let shape = broadcast_shapes(&a.shape, &b.shape)?;
    let ia = broadcast_indices(&a.shape, &shape);
    let ib = broadcast_indices(&b.shape, &shape);
    let f = |p: i64, q: i64| -> i64 {
        match op {
            BinaryOp::Add => p.wrapping_add(q),
            BinaryOp::Sub => p.wrapping_sub(q),
            BinaryOp::Mul => p.wrapping_mul(q),
            BinaryOp::Maximum => p.max(q),
            BinaryOp::Minimum => p.min(q),
            BinaryOp::SquaredDifference => (p - q).wrapping_mul(p - q),
            BinaryOp::Div | BinaryOp::Pow => 0, // rejected at compile time
        }
    };
    let values = ia.iter().zip(&ib).map(|(&i, &j)| f(x[i], y[j])).collect();
    Ok(HostValue::ints(a.dtype, shape, values))
}

fn float_binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> candle_core::Result<Tensor> {
    match op {
        BinaryOp::Add => a.broadcast_add(b),
        BinaryOp::Sub => a.broadcast_sub(b),
        BinaryOp::Mul => a.broadcast_mul(b),
        BinaryOp::Div => a.broadcast_div(b),
        BinaryOp::Maximum => a.broadcast_maximum(b),
        BinaryOp::Minimum => a.broadcast_minimum(b),
        BinaryOp::SquaredDifference => a.broadcast_sub(b)?.sqr(),
        BinaryOp::Pow => a.broadcast_pow(b),
    }
}

/// `log(1 + y)` accurate for small `y` (Kahan's trick: `log(u) * y / (u - 1)` with `u = 1 + y`).
fn log1p(y: &Tensor) -> candle_core::Result<Tensor> {
    let u = (y + 1.0)?;
    let d = (&u - 1.0)?;
    let tiny = d.eq(0.0)?;
    let safe_d = tiny.where_cond(&d.ones_like()?, &d)?;
    let scaled = (u.log()? * y)?.div(&safe_d)?;
    tiny.where_cond(y, &scaled)
}

/// `exp(x) - 1` accurate near zero: Kahan's `(u - 1) * x / log(u)` with `u = exp(x)` for
/// `|x| < 0.5`; plain `exp(x) - 1` elsewhere, where it loses nothing.
fn expm1(x: &Tensor) -> candle_core::Result<Tensor> {
    let u = x.exp()?;
    let d = (&u - 1.0)?;
    let small = x.abs()?.lt(0.5f32)?;
    let exact_one = u.eq(1f32)?;
    // Keep log(u) away from 0 where u == 1, so the unused lanes hold no NaN.
    let log_u = exact_one.where_cond(&u.ones_like()?, &u.log()?)?;
    let kahan = exact_one.where_cond(x, &(d.mul(x)?.div(&log_u))?)?;
    small.where_cond(&kahan, &d)
}

fn float_unary(x: &Tensor, op: UnaryOp) -> candle_core::Result<Tensor> {
    match op {
        UnaryOp::Relu => x.relu(),
        UnaryOp::Relu6 => x.clamp(0f32, 6f32),
        // TF computes the negative side with expm1; `exp(x) - 1` would lose most digits
        // near zero.
        UnaryOp::Elu => x.gt(0f32)?.where_cond(x, &expm1(x)?),
        UnaryOp::Selu => {
            const ALPHA: f64 = 1.673_263_242_354_377_3;
            const SCALE: f64 = 1.050_700_987_355_480_5;
            x.gt(0f32)?
                .where_cond(&(x * SCALE)?, &(expm1(x)? * (ALPHA * SCALE))?)
        }
        UnaryOp::Softplus => {
            // max(x, 0) + log1p(exp(-|x|)): never overflows, and exact-ish for very negative x.
            x.relu()? + log1p(&x.abs()?.neg()?.exp()?)?
        }
        UnaryOp::Softsign => x.div(&(x.abs()? + 1.0)?),
        UnaryOp::Sigmoid => {
            // 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) for x < 0, both from e = exp(-|x|).
            let e = x.abs()?.neg()?.exp()?;
            let denom = (&e + 1.0)?;
            let positive = denom.recip()?;
            let negative = e.div(&denom)?;
            x.ge(0f32)?.where_cond(&positive, &negative)
        }
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.log(),
        UnaryOp::Log1p => log1p(x),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => x.sqrt()?.recip(),
        UnaryOp::Square => x.sqr(),
        UnaryOp::Neg => x.neg(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Erf => x.erf(),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Reciprocal => x.recip(),
    }
}

/// Per-dimension result of a strided slice.
struct SlicePlan {
    /// For every input dimension, the indices it keeps.
    indices: Vec<Vec<usize>>,
    /// Output shape (with new axes, without shrunk ones).
    output_shape: Vec<usize>,
}

/// TensorFlow's StridedSlice semantics (sparse spec with ellipsis/new-axis/shrink masks
/// expanded to one range per input dimension).
fn plan_strided_slice(
    shape: &[usize],
    begin: &[i64],
    end: &[i64],
    strides: &[i64],
    m: SliceMasks,
) -> Result<SlicePlan, String> {
    let k = begin.len();
    if end.len() != k || strides.len() != k {
        return Err(format!(
            "begin, end and strides have different lengths ({k}, {}, {})",
            end.len(),
            strides.len()
        ));
    }
    let bit = |mask: i64, i: usize| i < 63 && (mask >> i) & 1 == 1;
    let rank = shape.len();
    // Entries of the spec that consume an input dimension (everything but new axes and the ellipsis).
    let consuming = (0..k)
        .filter(|&i| !bit(m.new_axis, i) && !bit(m.ellipsis, i))
        .count();
    let mut indices: Vec<Vec<usize>> = Vec::with_capacity(rank);
    let mut output_shape = Vec::new();
    let mut dim = 0usize;
    let mut saw_ellipsis = false;
    let full = |d: usize| -> Vec<usize> { (0..shape[d]).collect() };
    for i in 0..k {
        if bit(m.ellipsis, i) {
            if saw_ellipsis {
                return Err("more than one ellipsis in a strided slice".into());
            }
            saw_ellipsis = true;
            let covered = rank
                .checked_sub(consuming)
                .ok_or("strided slice has more entries than the input has dimensions")?;
            for _ in 0..covered {
                indices.push(full(dim));
                output_shape.push(shape[dim]);
                dim += 1;
            }
            continue;
        }
        if bit(m.new_axis, i) {
            output_shape.push(1);
            continue;
        }
        if dim >= rank {
            return Err(format!(
                "strided slice has more entries than the input's {rank} dimensions"
            ));
        }
        let size = shape[dim] as i64;
        let stride = strides[i];
        if stride == 0 {
            return Err("strided slice stride is 0".into());
        }
        let norm = |x: i64| if x < 0 { x + size } else { x };
        if bit(m.shrink_axis, i) {
            let index = norm(begin[i]);
            if index < 0 || index >= size {
                return Err(format!(
                    "slice index {} of dimension {dim} is out of bounds [0, {size})",
                    begin[i]
                ));
            }
            indices.push(vec![index as usize]);
        } else {
            let kept: Vec<usize> = if stride > 0 {
                let b = if bit(m.begin, i) {
                    0
                } else {
                    norm(begin[i]).clamp(0, size)
                };
                let e = if bit(m.end, i) {
                    size
                } else {
                    norm(end[i]).clamp(0, size)
                };
                (b..e)
                    .step_by(stride as usize)
                    .map(|x| x as usize)
                    .collect()
            } else {
                let b = if bit(m.begin, i) {
                    size - 1
                } else {
                    norm(begin[i]).clamp(-1, size - 1)
                };
                let e = if bit(m.end, i) {
                    -1
                } else {
                    norm(end[i]).clamp(-1, size - 1)
                };
                let mut kept = Vec::new();
                let mut x = b;
                while x > e {
                    kept.push(x as usize);
                    x += stride;
                }
                kept
            };
            output_shape.push(kept.len());
            indices.push(kept);
        }
        dim += 1;
    }
    while dim < rank {
        indices.push(full(dim));
        output_shape.push(shape[dim]);
        dim += 1;
    }
    Ok(SlicePlan {
        indices,
        output_shape,
    })
}

/// Flat indices of the Cartesian product of per-dimension index lists.
fn product_indices(shape: &[usize], per_dim: &[Vec<usize>]) -> Vec<usize> {
    let strides = strides_of(shape);
    let mut out = vec![0usize];
    for (d, kept) in per_dim.iter().enumerate() {
        let mut next = Vec::with_capacity(out.len() * kept.len());
        for &base in &out {
            for &i in kept {
                next.push(base + i * strides[d]);
            }
        }
        out = next;
    }
    out
}

fn float_select(
    t: &Tensor,
    per_dim: &[Vec<usize>],
    device: &Device,
) -> candle_core::Result<Tensor> {
    let mut t = t.clone();
    for (d, kept) in per_dim.iter().enumerate() {
        if kept.len() == t.dims()[d] && kept.iter().enumerate().all(|(i, &x)| i == x) {
            continue;
        }
        let contiguous_run = kept.windows(2).all(|w| w[1] == w[0] + 1);
        if !kept.is_empty() && contiguous_run {
            t = t.narrow(d, kept[0], kept.len())?;
        } else {
            let ids: Vec<u32> = kept.iter().map(|&x| x as u32).collect();
            let ids = Tensor::from_vec(ids, kept.len(), device)?;
            t = t.contiguous()?.index_select(&ids, d)?;
        }
    }
    Ok(t)
}

fn reshape_value(v: &Value, shape: Vec<usize>) -> Result<Value, String> {
    Ok(match v {
        Value::Float { tensor, dtype } => Value::float(tensor.reshape(shape).map_err(ce)?, *dtype),
        Value::Host(h) => Value::host(HostValue {
            dtype: h.dtype,
            shape,
            vals: h.vals.clone(),
        }),
        Value::Resource(_) => return Err("cannot reshape a resource handle".into()),
    })
}

/// Concatenates host tensors along `axis`.
fn host_concat(parts: &[&HostValue], axis: usize) -> Result<HostValue, String> {
    let first = parts.first().ok_or("nothing to concatenate")?;
    let rank = first.shape.len();
    let mut out_shape = first.shape.clone();
    out_shape[axis] = 0;
    for p in parts {
        if p.shape.len() != rank
            || p.shape
                .iter()
                .enumerate()
                .any(|(d, &s)| d != axis && s != first.shape[d])
        {
            return Err(format!(
                "cannot concatenate shapes {:?} and {:?} along axis {axis}",
                first.shape, p.shape
            ));
        }
        out_shape[axis] += p.shape[axis];
    }
    let outer: usize = first.shape[..axis].iter().product();
    let mut vals = first.vals.empty_like();
    for o in 0..outer {
        for p in parts {
            let block: usize = p.shape[axis..].iter().product();
            vals.extend_from(&p.vals, o * block..(o + 1) * block)?;
        }
    }
    Ok(HostValue {
        dtype: first.dtype,
        shape: out_shape,
        vals,
    })
}

fn reduce_axes(axes: &Value, rank: usize) -> Result<Vec<usize>, String> {
    let mut out: Vec<usize> = int_values(axes)?
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Result<_, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn host_reduce(
    h: &HostValue,
    axes: &[usize],
    op: ReduceOp,
) -> Result<(Vec<usize>, Vec<i64>), String> {
    let values = h.as_ints().ok_or("reduction needs an integer tensor")?;
    let kept_shape: Vec<usize> = h
        .shape
        .iter()
        .enumerate()
        .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
        .collect();
    let count: usize = kept_shape.iter().product();
    let reduced: usize = axes.iter().map(|&a| h.shape[a]).product();
    let mut acc: Vec<Option<i64>> = vec![None; count];
    let strides = strides_of(&h.shape);
    let kept_strides = strides_of(&kept_shape);
    for (flat, &v) in values.iter().enumerate() {
        let mut target = 0;
        for d in 0..h.shape.len() {
            if !axes.contains(&d) {
                target += ((flat / strides[d]) % h.shape[d]) * kept_strides[d];
            }
        }
        acc[target] = Some(match (acc[target], op) {
            (None, _) => v,
            (Some(a), ReduceOp::Sum | ReduceOp::Mean) => a.wrapping_add(v),
            (Some(a), ReduceOp::Prod) => a.wrapping_mul(v),
            (Some(a), ReduceOp::Max) => a.max(v),
            (Some(a), ReduceOp::Min) => a.min(v),
        });
    }
    let identity = if op == ReduceOp::Prod { 1 } else { 0 };
    let mut out: Vec<i64> = acc.into_iter().map(|a| a.unwrap_or(identity)).collect();
    if op == ReduceOp::Mean && reduced > 0 {
        for v in &mut out {
            *v /= reduced as i64;
        }
    }
    Ok((kept_shape, out))
}

/// Shape from a host integer tensor, resolving one `-1`, checked against `count` elements.
fn target_shape(spec: &[i64], count: usize) -> Result<Vec<usize>, String> {
    let mut unknown = None;
    let mut known: usize = 1;
    let mut shape = Vec::with_capacity(spec.len());
    for (i, &d) in spec.iter().enumerate() {
        if d == -1 {
            if unknown.replace(i).is_some() {
                return Err(format!("shape {spec:?} has more than one -1"));
            }
            shape.push(0);
        } else {
            let d = usize::try_from(d)
                .map_err(|_| format!("shape {spec:?} has a negative dimension"))?;
            known = known
                .checked_mul(d)
                .ok_or_else(|| format!("shape {spec:?} overflows"))?;
            shape.push(d);
        }
    }
    match unknown {
        Some(i) => {
            if known == 0 || !count.is_multiple_of(known) {
                return Err(format!("cannot reshape {count} elements to {spec:?}"));
            }
            shape[i] = count / known;
        }
        None if known != count => {
            return Err(format!("cannot reshape {count} elements to {spec:?}"));
        }
        None => {}
    }
    Ok(shape)
}

fn shape_value(dims: &[usize], dtype: DataType) -> Value {
    Value::host(HostValue::ints(
        dtype,
        vec![dims.len()],
        dims.iter().map(|&d| d as i64).collect(),
    ))
}

fn dims_from(v: &Value) -> Result<Vec<usize>, String> {
    int_values(v)?
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect()
}

/// Fill beyond this many elements (1 GiB of f32) is refused rather than attempted.
const MAX_FILL_ELEMENTS: usize = 1 << 28;

impl Kernel {
    /// Runs the kernel. Errors are plain messages; the executor adds node, op and signature.
    pub(crate) fn run(
        &self,
        inputs: &[&Value],
        ctx: &KernelContext<'_>,
    ) -> Result<Vec<Value>, String> {
        let input = |i: usize| -> Result<&Value, String> {
            inputs
                .get(i)
                .copied()
                .ok_or_else(|| format!("missing input {i}"))
        };
        let one = |v: Value| Ok(vec![v]);
        match self {
            Kernel::Identity => one(input(0)?.clone()),
            Kernel::IdentityN => Ok(inputs.iter().map(|v| (*v).clone()).collect()),
            Kernel::Dense(chain) => one(chain.run(inputs, ctx)?),
            Kernel::DenseStack(stack) => one(stack.run(inputs, ctx)?),
            Kernel::Nn(kernel) => kernel.run(inputs, ctx),
            Kernel::ReadVariable => match input(0)? {
                Value::Resource(id) => {
                    let value = ctx.variables.get(*id).and_then(|v| v.clone());
                    value
                        .map(|v| vec![v])
                        .ok_or_else(|| "reads a variable that was not restored".to_string())
                }
                other => Err(format!(
                    "expected a resource handle, got {}",
                    other.dtype().tf_name()
                )),
            },
            Kernel::MatMul {
                transpose_a,
                transpose_b,
            } => {
                let (a, dtype) = float_input(input(0)?)?;
                let (b, _) = float_input(input(1)?)?;
                if a.rank() != 2 || b.rank() != 2 {
                    return Err(format!(
                        "MatMul needs two matrices, got shapes {:?} and {:?}",
                        a.dims(),
                        b.dims()
                    ));
                }
                let a = if *transpose_a {
                    a.t().and_then(|t| t.contiguous()).map_err(ce)?
                } else {
                    a.clone()
                };
                let b = if *transpose_b {
                    b.t().and_then(|t| t.contiguous()).map_err(ce)?
                } else {
                    b.clone()
                };
                if a.dims()[1] != b.dims()[0] {
                    return Err(format!(
                        "matrix shapes {:?} and {:?} do not fit (inner dimensions {} ≠ {})",
                        a.dims(),
                        b.dims(),
                        a.dims()[1],
                        b.dims()[0]
                    ));
                }
                one(Value::float(a.matmul(&b).map_err(ce)?, dtype))
            }
            Kernel::BatchMatMul { adj_x, adj_y } => {
                let (a, dtype) = float_input(input(0)?)?;
                let (b, _) = float_input(input(1)?)?;
                if a.rank() < 2 || b.rank() < 2 {
                    return Err("BatchMatMul needs tensors of rank >= 2".into());
                }
                let a = if *adj_x {
                    a.transpose(D::Minus2, D::Minus1).map_err(ce)?
                } else {
                    a.clone()
                };
                let b = if *adj_y {
                    b.transpose(D::Minus2, D::Minus1).map_err(ce)?
                } else {
                    b.clone()
                };
                let a = a.contiguous().map_err(ce)?;
                let b = b.contiguous().map_err(ce)?;
                one(Value::float(a.broadcast_matmul(&b).map_err(ce)?, dtype))
            }
            Kernel::BiasAdd { channels_first } => {
                let (value, dtype) = float_input(input(0)?)?;
                let (bias, _) = float_input(input(1)?)?;
                if bias.rank() != 1 {
                    return Err(format!(
                        "bias must be a vector, got shape {:?}",
                        bias.dims()
                    ));
                }
                let channel_dim = if *channels_first {
                    1
                } else {
                    value.rank().saturating_sub(1)
                };
                if value.rank() < 2 || value.dims()[channel_dim] != bias.dims()[0] {
                    return Err(format!(
                        "bias of shape {:?} does not match value of shape {:?}",
                        bias.dims(),
                        value.dims()
                    ));
                }
                let bias = if *channels_first {
                    let mut shape = vec![1usize; value.rank()];
                    shape[1] = bias.dims()[0];
                    bias.reshape(shape).map_err(ce)?
                } else {
                    bias.clone()
                };
                one(Value::float(value.broadcast_add(&bias).map_err(ce)?, dtype))
            }
            Kernel::Binary(op) => match (input(0)?, input(1)?) {
                (Value::Float { tensor: a, dtype }, Value::Float { tensor: b, .. }) => {
                    // candle checks broadcastability; give TF-like wording on failure.
                    broadcast_shapes(a.dims(), b.dims())?;
                    one(Value::float(float_binary(a, b, *op).map_err(ce)?, *dtype))
                }
                (Value::Host(a), Value::Host(b)) => one(Value::host(host_binary(a, b, *op)?)),
                (a, b) => Err(format!(
                    "operands have different types: {} and {}",
                    a.dtype().tf_name(),
                    b.dtype().tf_name()
                )),
            },
            Kernel::AddN => {
                let mut acc = input(0)?.clone();
                for next in &inputs[1..] {
                    acc = Kernel::Binary(BinaryOp::Add)
                        .run(&[&acc, next], ctx)?
                        .remove(0);
                }
                one(acc)
            }
            Kernel::Unary(op) => match input(0)? {
                Value::Float { tensor, dtype } => {
                    one(Value::float(float_unary(tensor, *op).map_err(ce)?, *dtype))
                }
                Value::Host(h) => {
                    let values = h.as_ints().ok_or("expected an integer tensor")?;
                    let mapped = values
                        .iter()
                        .map(|&v| match op {
                            UnaryOp::Neg => Ok(v.wrapping_neg()),
                            UnaryOp::Abs => Ok(v.wrapping_abs()),
                            UnaryOp::Square => Ok(v.wrapping_mul(v)),
                            _ => Err(format!("{op:?} needs a floating-point tensor")),
                        })
                        .collect::<Result<Vec<i64>, String>>()?;
                    one(Value::host(HostValue::ints(
                        h.dtype,
                        h.shape.clone(),
                        mapped,
                    )))
                }
                Value::Resource(_) => Err("expected a tensor, got a resource handle".into()),
            },
            Kernel::LeakyRelu { alpha } => {
                let (x, dtype) = float_input(input(0)?)?;
                let scaled = (x * f64::from(*alpha)).map_err(ce)?;
                let out = x
                    .ge(0f32)
                    .and_then(|mask| mask.where_cond(x, &scaled))
                    .map_err(ce)?;
                one(Value::float(out, dtype))
            }
            Kernel::Softmax { log } => {
                let (x, dtype) = float_input(input(0)?)?;
                if x.rank() == 0 {
                    return Err("softmax needs a tensor of rank >= 1".into());
                }
                if x.elem_count() == 0 {
                    return one(Value::float(x.clone(), dtype));
                }
                let compute = || -> candle_core::Result<Tensor> {
                    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?;
                    let exp = shifted.exp()?;
                    let sum = exp.sum_keepdim(D::Minus1)?;
                    if *log {
                        shifted.broadcast_sub(&sum.log()?)
                    } else {
                        exp.broadcast_div(&sum)
                    }
                };
                one(Value::float(compute().map_err(ce)?, dtype))
            }
            Kernel::ArgReduce { min, output } => {
                let x = input(0)?;
                let dims = x.dims();
                if dims.is_empty() {
                    return Err("ArgMax/ArgMin need a tensor of rank >= 1".into());
                }
                let axis = normalize_axis(scalar_int(input(1)?, "dimension")?, dims.len())?;
                // Computed on the host: TF returns the *first* extreme index on ties, on every device.
                let values: Vec<f64> = match x {
                    Value::Float { .. } => x.float_values()?.into_iter().map(f64::from).collect(),
                    Value::Host(h) => h
                        .as_ints()
                        .ok_or("expected numbers")?
                        .iter()
                        .map(|&v| v as f64)
                        .collect(),
                    Value::Resource(_) => return Err("expected a tensor".into()),
                };
                let size = dims[axis];
                if size == 0 {
                    return Err("ArgMax/ArgMin over an empty dimension".into());
                }
                let inner: usize = dims[axis + 1..].iter().product();
                let outer: usize = dims[..axis].iter().product();
                let mut result = Vec::with_capacity(outer * inner);
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |k: usize| values[(o * size + k) * inner + i];
                        let mut best = 0;
                        for k in 1..size {
                            let better = if *min {
                                at(k) < at(best)
                            } else {
                                at(k) > at(best)
                            };
                            if better {
                                best = k;
                            }
                        }
                        result.push(best as i64);
                    }
                }
                let mut shape = dims.clone();
                shape.remove(axis);
                one(Value::host(HostValue::ints(*output, shape, result)))
            }
            Kernel::Cast { to } => cast(input(0)?, *to, ctx.device).map(|v| vec![v]),
            Kernel::Reshape => {
                let x = input(0)?;
                let count: usize = x.dims().iter().product();
                let shape = target_shape(int_values(input(1)?)?, count)?;
                one(reshape_value(x, shape)?)
            }
            Kernel::Shape { output } => one(shape_value(&input(0)?.dims(), *output)),
            Kernel::Size { output } => {
                let count: usize = input(0)?.dims().iter().product();
                one(Value::host(HostValue::ints(
                    *output,
                    vec![],
                    vec![count as i64],
                )))
            }
            Kernel::Rank => one(Value::host(HostValue::ints(
                DataType::Int32,
                vec![],
                vec![input(0)?.dims().len() as i64],
            ))),
            Kernel::ExpandDims => {
                let x = input(0)?;
                let mut dims = x.dims();
                let axis = normalize_axis(scalar_int(input(1)?, "dim")?, dims.len() + 1)?;
                dims.insert(axis, 1);
                one(reshape_value(x, dims)?)
            }
            Kernel::Squeeze { dims: squeeze } => {
                let x = input(0)?;
                let dims = x.dims();
                let axes: Vec<usize> = squeeze
                    .iter()
                    .map(|&a| normalize_axis(a, dims.len()))
                    .collect::<Result<_, _>>()?;
                let mut shape = Vec::new();
                for (d, &size) in dims.iter().enumerate() {
                    let listed = axes.contains(&d);
                    if listed && size != 1 {
                        return Err(format!(
                            "cannot squeeze dimension {d} of shape {dims:?}: its size is not 1"
                        ));
                    }
                    if !(listed || (axes.is_empty() && size == 1)) {
                        shape.push(size);
                    }
                }
                one(reshape_value(x, shape)?)
            }
            Kernel::StridedSlice(masks) => {
                let x = input(0)?;
                let dims = x.dims();
                let plan = plan_strided_slice(
                    &dims,
                    int_values(input(1)?)?,
                    int_values(input(2)?)?,
                    int_values(input(3)?)?,
                    *masks,
                )?;
                let out = match x {
                    Value::Float { tensor, dtype } => {
                        let t = float_select(tensor, &plan.indices, ctx.device).map_err(ce)?;
                        Value::float(t.reshape(plan.output_shape).map_err(ce)?, *dtype)
                    }
                    Value::Host(h) => {
                        let idx = product_indices(&h.shape, &plan.indices);
                        Value::host(HostValue {
                            dtype: h.dtype,
                            shape: plan.output_shape,
                            vals: h.vals.gather(&idx),
                        })
                    }
                    Value::Resource(_) => return Err("cannot slice a resource handle".into()),
                };
                one(out)
            }
            Kernel::Pack { axis } => {
                let first = input(0)?;
                let dims = first.dims();
                let axis = normalize_axis(*axis, dims.len() + 1)?;
                if inputs.iter().any(|v| v.dims() != dims) {
                    return Err("Pack inputs have different shapes".into());
                }
                let mut expanded_dims = dims.clone();
                expanded_dims.insert(axis, 1);
                let expanded: Vec<Value> = inputs
                    .iter()
                    .map(|v| reshape_value(v, expanded_dims.clone()))
                    .collect::<Result<_, _>>()?;
                concat(&expanded.iter().collect::<Vec<_>>(), axis).map(|v| vec![v])
            }
            Kernel::Concat => {
                let (axis_value, values) = inputs.split_last().ok_or("ConcatV2 without inputs")?;
                let first = values.first().ok_or("ConcatV2 without values")?;
                let axis = normalize_axis(scalar_int(axis_value, "axis")?, first.dims().len())?;
                concat(values, axis).map(|v| vec![v])
            }
            Kernel::Reduce { op, keep_dims } => {
                let x = input(0)?;
                let dims = x.dims();
                let axes = reduce_axes(input(1)?, dims.len())?;
                let out_shape: Vec<usize> = dims
                    .iter()
                    .enumerate()
                    .filter_map(|(d, &s)| match (axes.contains(&d), keep_dims) {
                        (false, _) => Some(s),
                        (true, true) => Some(1),
                        (true, false) => None,
                    })
                    .collect();
                let reduced = match x {
                    Value::Float { tensor, dtype } if *op != ReduceOp::Prod => {
                        let mut t = tensor.clone();
                        if !axes.is_empty() {
                            if axes.iter().any(|&a| dims[a] == 0)
                                && matches!(op, ReduceOp::Max | ReduceOp::Min)
                            {
                                return Err("Max/Min over an empty dimension".into());
                            }
                            let kept: Vec<usize> = dims
                                .iter()
                                .enumerate()
                                .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
                                .collect();
                            // candle refuses to reduce empty tensors; the results are known.
                            t = if t.elem_count() == 0 {
                                let fill = if *op == ReduceOp::Mean { f32::NAN } else { 0.0 };
                                Tensor::full(fill, kept, ctx.device)
                            } else {
                                match op {
                                    ReduceOp::Sum => t.sum_keepdim(axes.clone()),
                                    ReduceOp::Mean => t.mean_keepdim(axes.clone()),
                                    ReduceOp::Max => {
                                        axes.iter().try_fold(t, |acc, &a| acc.max_keepdim(a))
                                    }
                                    ReduceOp::Min => {
                                        axes.iter().try_fold(t, |acc, &a| acc.min_keepdim(a))
                                    }
                                    ReduceOp::Prod => unreachable_prod(),
                                }
                            }
                            .map_err(ce)?;
                        }
                        Value::float(t, *dtype)
                    }
                    Value::Float { dtype, .. } => {
                        let values = x.float_values()?;
                        let strides = strides_of(&dims);
                        let kept: Vec<usize> = dims
                            .iter()
                            .enumerate()
                            .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
                            .collect();
                        let kept_strides = strides_of(&kept);
                        let mut acc = vec![1f32; kept.iter().product()];
                        for (flat, v) in values.iter().enumerate() {
                            let mut target = 0;
                            for d in 0..dims.len() {
                                if !axes.contains(&d) {
                                    target += ((flat / strides[d]) % dims[d]) * kept_strides[d];
                                }
                            }
                            acc[target] *= v;
                        }
                        Value::float(Tensor::from_vec(acc, kept, ctx.device).map_err(ce)?, *dtype)
                    }
                    Value::Host(h) => {
                        let (shape, values) = host_reduce(h, &axes, *op)?;
                        Value::host(HostValue::ints(h.dtype, shape, values))
                    }
                    Value::Resource(_) => return Err("cannot reduce a resource handle".into()),
                };
                one(reshape_value(&reduced, out_shape)?)
            }
            Kernel::Fill => {
                let shape = dims_from(input(0)?)?;
                let count = shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .filter(|&c| c <= MAX_FILL_ELEMENTS);
                let count = count.ok_or_else(|| format!("Fill of shape {shape:?} is too large"))?;
                match input(1)? {
                    Value::Float { tensor, dtype } => {
                        let v = tensor
                            .flatten_all()
                            .and_then(|t| t.to_vec1::<f32>())
                            .map_err(ce)?;
                        let [v] = v[..] else {
                            return Err("Fill value must be a scalar".into());
                        };
                        one(Value::float(
                            Tensor::full(v, shape, ctx.device).map_err(ce)?,
                            *dtype,
                        ))
                    }
                    Value::Host(h) => {
                        if h.vals.len() != 1 {
                            return Err("Fill value must be a scalar".into());
                        }
                        one(Value::host(HostValue {
                            dtype: h.dtype,
                            shape,
                            vals: h.vals.repeat(0, count),
                        }))
                    }
                    Value::Resource(_) => Err("cannot fill with a resource handle".into()),
                }
            }
            Kernel::ZerosLike | Kernel::OnesLike => {
                let fill_value = i64::from(matches!(self, Kernel::OnesLike));
                match input(0)? {
                    Value::Float { tensor, dtype } => {
                        let t = if fill_value == 1 {
                            tensor.ones_like()
                        } else {
                            tensor.zeros_like()
                        };
                        one(Value::float(t.map_err(ce)?, *dtype))
                    }
                    Value::Host(h) => {
                        let vals = match &h.vals {
                            HostVals::Ints(v) => HostVals::Ints(vec![fill_value; v.len()]),
                            HostVals::Bools(v) => HostVals::Bools(vec![fill_value == 1; v.len()]),
                            HostVals::Strs(_) => return Err("ZerosLike/OnesLike of strings".into()),
                        };
                        one(Value::host(HostValue {
                            dtype: h.dtype,
                            shape: h.shape.clone(),
                            vals,
                        }))
                    }
                    Value::Resource(_) => Err("expected a tensor, got a resource handle".into()),
                }
            }
            Kernel::Transpose => {
                let x = input(0)?;
                let dims = x.dims();
                let perm: Vec<usize> = int_values(input(1)?)?
                    .iter()
                    .map(|&p| normalize_axis(p, dims.len()))
                    .collect::<Result<_, _>>()?;
                let mut seen = perm.clone();
                seen.sort_unstable();
                if perm.len() != dims.len() || seen.iter().enumerate().any(|(i, &p)| i != p) {
                    return Err(format!(
                        "{perm:?} is not a permutation of {} dimensions",
                        dims.len()
                    ));
                }
                match x {
                    Value::Float { tensor, dtype } => one(Value::float(
                        tensor
                            .permute(perm)
                            .and_then(|t| t.contiguous())
                            .map_err(ce)?,
                        *dtype,
                    )),
                    Value::Host(h) => {
                        let out_shape: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
                        let strides = strides_of(&dims);
                        let out_strides = strides_of(&out_shape);
                        let count: usize = out_shape.iter().product();
                        let idx: Vec<usize> = (0..count)
                            .map(|flat| {
                                perm.iter()
                                    .enumerate()
                                    .map(|(d, &p)| {
                                        ((flat / out_strides[d]) % out_shape[d]) * strides[p]
                                    })
                                    .sum()
                            })
                            .collect();
                        one(Value::host(HostValue {
                            dtype: h.dtype,
                            shape: out_shape,
                            vals: h.vals.gather(&idx),
                        }))
                    }
                    Value::Resource(_) => Err("cannot transpose a resource handle".into()),
                }
            }
            Kernel::ClipByValue => {
                let (t, dtype) = float_input(input(0)?)?;
                let (lo, _) = float_input(input(1)?)?;
                let (hi, _) = float_input(input(2)?)?;
                let out = t
                    .broadcast_minimum(hi)
                    .and_then(|x| x.broadcast_maximum(lo))
                    .map_err(ce)?;
                one(Value::float(out, dtype))
            }
            Kernel::LogicalNot => {
                let h = host_input(input(0)?)?;
                let HostVals::Bools(v) = &h.vals else {
                    return Err("LogicalNot needs a bool tensor".into());
                };
                let vals = HostVals::Bools(v.iter().map(|b| !b).collect());
                one(Value::host(HostValue {
                    dtype: DataType::Bool,
                    shape: h.shape.clone(),
                    vals,
                }))
            }
        }
    }
}

/// Float products are computed on the host above; the candle branch never sees them.
fn unreachable_prod() -> candle_core::Result<Tensor> {
    Err(candle_core::Error::Msg(
        "Prod is computed on the host".into(),
    ))
}

fn concat(values: &[&Value], axis: usize) -> Result<Value, String> {
    let first = values.first().ok_or("nothing to concatenate")?;
    match first {
        Value::Float { dtype, .. } => {
            let tensors: Vec<&Tensor> = values
                .iter()
                .map(|v| float_input(v).map(|(t, _)| t))
                .collect::<Result<_, _>>()?;
            let rank = tensors[0].rank();
            for t in &tensors {
                if t.rank() != rank
                    || t.dims()
                        .iter()
                        .enumerate()
                        .any(|(d, &s)| d != axis && s != tensors[0].dims()[d])
                {
                    return Err(format!(
                        "cannot concatenate shapes {:?} and {:?} along axis {axis}",
                        tensors[0].dims(),
                        t.dims()
                    ));
                }
            }
            Ok(Value::float(
                Tensor::cat(&tensors, axis).map_err(ce)?,
                *dtype,
            ))
        }
        Value::Host(_) => {
            let hosts: Vec<&HostValue> = values
                .iter()
                .map(|v| host_input(v))
                .collect::<Result<_, _>>()?;
            Ok(Value::host(host_concat(&hosts, axis)?))
        }
        Value::Resource(_) => Err("cannot concatenate resource handles".into()),
    }
}

fn cast(x: &Value, to: DataType, device: &Device) -> Result<Value, String> {
    match x {
        Value::Float { tensor, .. } if is_float(to) => {
            // Rounding to half precision is observable; double is computed in f32 anyway.
            let t = if to == DataType::Half {
                tensor
                    .to_dtype(DType::F16)
                    .and_then(|t| t.to_dtype(DType::F32))
                    .map_err(ce)?
            } else {
                tensor.clone()
            };
            Ok(Value::float(t, to))
        }
        Value::Float { tensor, .. } => {
            let shape = tensor.dims().to_vec();
            let values = x.float_values()?;
            let vals = if to == DataType::Bool {
                HostVals::Bools(values.iter().map(|&v| v != 0.0).collect())
            } else {
                // Truncation toward zero, as TF's static_cast does.
                HostVals::Ints(values.iter().map(|&v| v as i64).collect())
            };
            Ok(Value::host(HostValue {
                dtype: to,
                shape,
                vals,
            }))
        }
        Value::Host(h) => {
            let ints: Vec<i64> = match &h.vals {
                HostVals::Ints(v) => v.clone(),
                HostVals::Bools(v) => v.iter().map(|&b| i64::from(b)).collect(),
                HostVals::Strs(_) => return Err("cannot cast strings".into()),
            };
            if is_float(to) {
                let floats: Vec<f32> = ints.iter().map(|&v| v as f32).collect();
                return Ok(Value::float(
                    Tensor::from_vec(floats, h.shape.clone(), device).map_err(ce)?,
                    to,
                ));
            }
            let vals = match to {
                DataType::Bool => HostVals::Bools(ints.iter().map(|&v| v != 0).collect()),
                DataType::Int32 => {
                    HostVals::Ints(ints.iter().map(|&v| i64::from(v as i32)).collect())
                }
                DataType::Int16 => {
                    HostVals::Ints(ints.iter().map(|&v| i64::from(v as i16)).collect())
                }
                DataType::Int8 => {
                    HostVals::Ints(ints.iter().map(|&v| i64::from(v as i8)).collect())
                }
                DataType::UInt8 => {
                    HostVals::Ints(ints.iter().map(|&v| i64::from(v as u8)).collect())
                }
                _ => HostVals::Ints(ints),
            };
            Ok(Value::host(HostValue {
                dtype: to,
                shape: h.shape.clone(),
                vals,
            }))
        }
        Value::Resource(_) => Err("cannot cast a resource handle".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_ints(shape: Vec<usize>, v: Vec<i64>) -> Value {
        Value::host(HostValue::ints(DataType::Int32, shape, v))
    }

    fn ints_of(v: &Value) -> Vec<i64> {
        int_values(v).unwrap().to_vec()
    }

    fn ctx() -> (Device, Vec<Option<Value>>) {
        (Device::Cpu, Vec::new())
    }

    #[test]
    fn strided_slice_matches_keras_flatten_use() {
        // Shape(x)[0] with shrink_axis_mask = 1, as Keras 3's Flatten does.
        let (device, vars) = ctx();
        let k = KernelContext {
            device: &device,
            variables: &vars,
        };
        let shape = host_ints(vec![3], vec![20, 28, 28]);
        let out = Kernel::StridedSlice(SliceMasks {
            shrink_axis: 1,
            ..Default::default()
        })
        .run(
            &[
                &shape,
                &host_ints(vec![1], vec![0]),
                &host_ints(vec![1], vec![1]),
                &host_ints(vec![1], vec![1]),
            ],
            &k,
        )
        .unwrap();
        assert_eq!(out[0].dims(), Vec::<usize>::new());
        assert_eq!(ints_of(&out[0]), vec![20]);
    }

    #[test]
    fn strided_slice_negative_stride_and_masks() {
        let (device, vars) = ctx();
        let k = KernelContext {
            device: &device,
            variables: &vars,
        };
        let x = host_ints(vec![5], vec![0, 1, 2, 3, 4]);
        // x[::-2] = [4, 2, 0]
        let out = Kernel::StridedSlice(SliceMasks {
            begin: 1,
            end: 1,
            ..Default::default()
        })
        .run(
            &[
                &x,
                &host_ints(vec![1], vec![0]),
                &host_ints(vec![1], vec![0]),
                &host_ints(vec![1], vec![-2]),
            ],
            &k,
        )
        .unwrap();
        assert_eq!(ints_of(&out[0]), vec![4, 2, 0]);
        // x[1:-1] = [1, 2, 3]
        let out = Kernel::StridedSlice(SliceMasks::default())
            .run(
                &[
                    &x,
                    &host_ints(vec![1], vec![1]),
                    &host_ints(vec![1], vec![-1]),
                    &host_ints(vec![1], vec![1]),
                ],
                &k,
            )
            .unwrap();
        assert_eq!(ints_of(&out[0]), vec![1, 2, 3]);
    }

    #[test]
    fn strided_slice_on_floats_with_ellipsis_and_new_axis() {
        let (device, vars) = ctx();
        let k = KernelContext {
            device: &device,
            variables: &vars,
        };
        let t = Tensor::arange(0f32, 24f32, &device)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        let x = Value::float(t, DataType::Float);
        // x[..., 1:3, tf.newaxis] -> shape [2, 3, 2, 1]
        let m = SliceMasks {
            ellipsis: 1,
            new_axis: 4,
            ..Default::default()
        };
        let out = Kernel::StridedSlice(m)
            .run(
                &[
                    &x,
                    &host_ints(vec![3], vec![0, 1, 0]),
                    &host_ints(vec![3], vec![0, 3, 0]),
                    &host_ints(vec![3], vec![1, 1, 1]),
                ],
                &k,
            )
            .unwrap();
        assert_eq!(out[0].dims(), vec![2, 3, 2, 1]);
        let v = out[0].float_values().unwrap();
        assert_eq!(&v[..4], &[1.0, 2.0, 5.0, 6.0]);
    }

    #[test]
    fn reshape_resolves_minus_one_and_rejects_bad_counts() {
        assert_eq!(target_shape(&[-1, 784], 784 * 3).unwrap(), vec![3, 784]);
        assert!(
            target_shape(&[-1, 5], 12)
                .unwrap_err()
                .contains("cannot reshape")
        );
        assert!(
            target_shape(&[-1, -1], 12)
                .unwrap_err()
                .contains("more than one")
        );
    }

    #[test]
    fn host_broadcasting_arithmetic() {
        let a = HostValue::ints(DataType::Int32, vec![2, 1], vec![1, 2]);
        let b = HostValue::ints(DataType::Int32, vec![3], vec![10, 20, 30]);
        let out = host_binary(&a, &b, BinaryOp::Add).unwrap();
        assert_eq!(out.shape, vec![2, 3]);
        assert_eq!(out.as_ints().unwrap(), &[11, 21, 31, 12, 22, 32]);
        let bad = HostValue::ints(DataType::Int32, vec![2], vec![1, 2]);
        assert!(host_binary(&bad, &b, BinaryOp::Add).is_err());
    }

    #[test]
    fn argmax_takes_the_first_of_equal_values() {
        let (device, vars) = ctx();
        let k = KernelContext {
            device: &device,
            variables: &vars,
        };
        let x = Value::float(
            Tensor::new(&[[0.5f32, 0.5, 0.1], [0.1, 0.2, 0.7]], &device).unwrap(),
            DataType::Float,
        );
        let out = Kernel::ArgReduce {
            min: false,
            output: DataType::Int64,
        }
        .run(&[&x, &host_ints(vec![], vec![-1])], &k)
        .unwrap();
        assert_eq!(out[0].dtype(), DataType::Int64);
        assert_eq!(ints_of(&out[0]), vec![0, 2]);
    }

    #[test]
    fn stable_activations_do_not_overflow() {
        let device = Device::Cpu;
        let x = Tensor::new(&[-100f32, -1.0, 0.0, 1.0, 100.0], &device).unwrap();
        let sig = float_unary(&x, UnaryOp::Sigmoid)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(sig[0] > 0.0 && sig[0] < 1e-40, "{}", sig[0]);
        assert!((sig[1] - 0.268_941_43).abs() < 1e-7);
        assert_eq!(sig[4], 1.0);
        let sp = float_unary(&x, UnaryOp::Softplus)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(sp[0] > 0.0 && (sp[0] / (-100f32).exp() - 1.0).abs() < 1e-5);
        assert!((sp[3] - 1.313_261_7).abs() < 1e-6);
        assert_eq!(sp[4], 100.0);
    }

    #[test]
    fn reductions_on_host_and_device() {
        let (device, vars) = ctx();
        let k = KernelContext {
            device: &device,
            variables: &vars,
        };
        let x = Value::float(
            Tensor::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &device).unwrap(),
            DataType::Float,
        );
        let axes = host_ints(vec![1], vec![1]);
        let sum = Kernel::Reduce {
            op: ReduceOp::Sum,
            keep_dims: false,
        }
        .run(&[&x, &axes], &k)
        .unwrap();
        assert_eq!(sum[0].float_values().unwrap(), vec![6.0, 15.0]);
        let prod = Kernel::Reduce {
            op: ReduceOp::Prod,
            keep_dims: true,
        }
        .run(&[&x, &axes], &k)
        .unwrap();
        assert_eq!(prod[0].dims(), vec![2, 1]);
        assert_eq!(prod[0].float_values().unwrap(), vec![6.0, 120.0]);
        let shape = host_ints(vec![3], vec![5, 28, 28]);
        let tail = host_ints(vec![1], vec![0]);
        let p = Kernel::Reduce {
            op: ReduceOp::Prod,
            keep_dims: false,
        }
        .run(&[&shape, &tail], &k)
        .unwrap();
        assert_eq!(ints_of(&p[0]), vec![5 * 28 * 28]);
    }
}
