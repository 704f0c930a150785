//! Dense and convolutional layers on the `cpu-kernels` crate: `MatMul` and `Conv2D` chains
//! (with the `BiasAdd` and `Relu`/`Relu6` that follow them fused in by the planner),
//! `DepthwiseConv2dNative`, `Conv2DBackpropInput`, `MaxPool`, `AvgPool`,
//! `FusedBatchNorm(V3)` in inference mode, and `Pad`/`PadV2`.
//!
//! Weights are packed once per weight tensor: a chain remembers the candle tensor ids of the
//! weights it packed (variables and constants keep their tensor for the model's life) and
//! repacks only when it is handed other tensors. Everything here is NHWC, as TensorFlow's CPU
//! kernels are; `data_format = "NCHW"` is refused when the model loads.
//!
//! On the CPU, inputs are read in place from candle's storage and outputs handed to candle
//! without a copy. On other devices the convolution ops copy their input to the host and the
//! result back (correct, not fast); a `MatMul` chain there runs as candle ops.

use std::sync::{Arc, Mutex};

use candle_core::{Device, Storage, Tensor, TensorId};
use cpu_kernels::conv::{self, Padding, Placement, Pool, Window};
use cpu_kernels::{Activation, DenseLayer};
use savedmodel_format::DataType;

use crate::kernels::{Attrs, CompileError, Kernel, KernelContext, UnaryOp};
use crate::value::{Value, candle_message};

/// What a chain computes before bias and activation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Head {
    /// `x . W` (`transpose_b`: `W` is stored `[n, k]`).
    MatMul {
        transpose_b: bool,
    },
    Conv2D(ConvSpec),
}

/// Strides, dilations and padding of a convolution or pooling node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConvSpec {
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
}

impl ConvSpec {
    pub(crate) fn window(&self, kh: usize, kw: usize) -> Window {
        Window {
            kh,
            kw,
            stride_h: self.strides[0],
            stride_w: self.strides[1],
            dilation_h: self.dilations[0],
            dilation_w: self.dilations[1],
        }
    }
}

/// Packed weights and the (weight, bias) tensors they were packed from.
type PackedFor = (TensorId, Option<TensorId>, Arc<DenseLayer>);

/// `head -> [BiasAdd] -> [Relu | Relu6]` as one step.
#[derive(Debug)]
pub(crate) struct DenseChain {
    pub head: Head,
    pub bias: bool,
    pub activation: Activation,
    /// The fused nodes, for error messages (empty for a lone `MatMul`/`Conv2D`).
    label: String,
    /// Weights packed for the last (weight, bias) tensors seen.
    packed: Mutex<Option<PackedFor>>,
}

impl PartialEq for DenseChain {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head && self.bias == other.bias && self.activation == other.activation
    }
}

impl DenseChain {
    pub(crate) fn new(head: Head) -> DenseChain {
        DenseChain {
            head,
            bias: false,
            activation: Activation::None,
            label: String::new(),
            packed: Mutex::new(None),
        }
    }

    /// The chain with a bias add and/or activation appended (used by the planner's fusion).
    pub(crate) fn extended(&self, bias: bool, activation: Activation, label: String) -> DenseChain {
        DenseChain {
            head: self.head.clone(),
            bias: self.bias || bias,
            activation,
            label,
            packed: Mutex::new(None),
        }
    }

    /// The fused nodes, `` `node` (Op) + … `` (empty when nothing was fused).
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Inputs: `x`, `W`, then the bias when the chain has one.
    pub(crate) fn run(&self, inputs: &[&Value], ctx: &KernelContext<'_>) -> Result<Value, String> {
        self.run_unlabelled(inputs, ctx)
            .map_err(|reason| self.labelled(reason))
    }

    /// `reason`, followed by the fused nodes it happened in.
    fn labelled(&self, reason: String) -> String {
        if self.label.is_empty() {
            reason
        } else {
            format!("{reason} (in the fused {})", self.label)
        }
    }

    fn run_unlabelled(&self, inputs: &[&Value], ctx: &KernelContext<'_>) -> Result<Value, String> {
        let get = |i: usize| inputs.get(i).copied().ok_or(format!("missing input {i}"));
        let (x, dtype) = float_tensor(get(0)?)?;
        let (w, _) = float_tensor(get(1)?)?;
        let bias = if self.bias {
            Some(float_tensor(get(2)?)?.0)
        } else {
            None
        };
        if let Head::MatMul { .. } = self.head
            && !matches!(ctx.device, Device::Cpu)
        {
            return self.run_candle(inputs, ctx);
        }
        let layer = self.layer(w, bias)?;
        let dims = x.dims().to_vec();
        let (out, shape) = match &self.head {
            Head::MatMul { .. } => {
                if dims.len() != 2 || dims[1] != layer.rows_in() {
                    return Err(matrices_do_not_fit(&dims, w.dims()));
                }
                let out =
                    with_host_f32(x, |data| layer.forward(data))?.map_err(|e| e.to_string())?;
                (out, vec![dims[0], layer.cols()])
            }
            Head::Conv2D(spec) => {
                let (batch, h, wd, c) = nhwc(&dims, "input")?;
                let fd = w.dims();
                if fd.len() != 4 || fd[2] != c {
                    return Err(format!(
                        "filter of shape {fd:?} does not fit an input of {c} channels (expected [kh, kw, {c}, out])"
                    ));
                }
                let p = Placement::new(spec.window(fd[0], fd[1]), h, wd, &spec.padding)
                    .map_err(|e| e.to_string())?;
                let out = with_host_f32(x, |data| conv::conv2d(data, batch, c, &p, &layer))?
                    .map_err(|e| e.to_string())?;
                (out, vec![batch, p.out_h, p.out_w, layer.cols()])
            }
        };
        to_value(out, shape, dtype, ctx.device)
    }

    /// The packed weights for `w` (and `bias`), packing them on first use.
    fn layer(&self, w: &Tensor, bias: Option<&Tensor>) -> Result<Arc<DenseLayer>, String> {
        let key = (w.id(), bias.map(Tensor::id));
        let mut cache = self.packed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((wid, bid, layer)) = cache.as_ref()
            && (*wid, *bid) == key
        {
            return Ok(layer.clone());
        }
        let wd = w.dims().to_vec();
        let (k, n, transposed) = match (&self.head, wd.as_slice()) {
            (Head::MatMul { transpose_b: false }, [k, n]) => (*k, *n, false),
            (Head::MatMul { transpose_b: true }, [n, k]) => (*k, *n, true),
            (Head::Conv2D(_), [kh, kw, c, o]) => (kh * kw * c, *o, false),
            _ => return Err(format!("weights of shape {wd:?} do not fit this op")),
        };
        let weights = host_f32(w)?;
        let bias_values = bias.map(host_f32).transpose()?;
        if let Some(b) = &bias_values
            && b.len() != n
        {
            return Err(format!(
                "bias of {} values does not match {n} output channels",
                b.len()
            ));
        }
        let layer = Arc::new(
            DenseLayer::new(
                &weights,
                k,
                n,
                transposed,
                bias_values.as_deref(),
                self.activation,
            )
            .map_err(|e| e.to_string())?,
        );
        *cache = Some((key.0, key.1, layer.clone()));
        Ok(layer)
    }

    /// The chain as separate candle ops (devices other than the CPU).
    fn run_candle(&self, inputs: &[&Value], ctx: &KernelContext<'_>) -> Result<Value, String> {
        let Head::MatMul { transpose_b } = self.head else {
            return Err("convolutions run on the host".into());
        };
        let matmul = Kernel::MatMul {
            transpose_a: false,
            transpose_b,
        };
        let mut value = single(matmul.run(&inputs[..2], ctx)?)?;
        if self.bias {
            let bias = Kernel::BiasAdd {
                channels_first: false,
            };
            value = single(bias.run(&[&value, inputs[2]], ctx)?)?;
        }
        let act = match self.activation {
            Activation::None => return Ok(value),
            Activation::Relu => UnaryOp::Relu,
            Activation::Relu6 => UnaryOp::Relu6,
        };
        single(Kernel::Unary(act).run(&[&value], ctx)?)
    }
}

/// Consecutive `MatMul` chains where each chain's value feeds only the next one (the layers
/// of an MLP), run as one step by `cpu_kernels::forward_stack`: each block of rows goes through
/// every layer while its activations are still in the core's cache, instead of each layer
/// writing its whole batch to memory for the next to read back (20 MB per layer for 10,000
/// rows of the reference MLP; with the AVX2 tile change, 10,000 rows take 0.82-0.89 of the
/// time they took before: `BENCHMARKS.md`, session 6). The results are the same
/// bits as running the chains one by one. The planner builds it (`plan.rs`).
#[derive(Debug, PartialEq)]
pub(crate) struct DenseStack {
    pub chains: Vec<Arc<DenseChain>>,
    /// The node whose value each chain but the last produced before stacking: the memory
    /// budget still counts those values as whole tensors (`budget.rs`).
    pub hidden_nodes: Vec<String>,
}

impl DenseStack {
    /// Where each chain's weights and bias are among the step's inputs: `x` comes first, then
    /// each chain's `W` and, when it has one, its bias.
    pub(crate) fn weight_inputs(
        &self,
    ) -> impl Iterator<Item = (&DenseChain, usize, Option<usize>)> {
        let mut at = 1;
        self.chains.iter().map(move |chain| {
            let w = at;
            at += 1 + usize::from(chain.bias);
            (&**chain, w, chain.bias.then_some(w + 1))
        })
    }

    pub(crate) fn run(&self, inputs: &[&Value], ctx: &KernelContext<'_>) -> Result<Value, String> {
        let get = |i: usize| inputs.get(i).copied().ok_or(format!("missing input {i}"));
        if !matches!(ctx.device, Device::Cpu) {
            // Chain by chain, as candle ops (see `DenseChain::run`).
            let mut value = get(0)?.clone();
            for (chain, w, bias) in self.weight_inputs() {
                let mut chain_inputs = vec![&value, get(w)?];
                if let Some(b) = bias {
                    chain_inputs.push(get(b)?);
                }
                value = chain.run(&chain_inputs, ctx)?;
            }
            return Ok(value);
        }
        let (x, dtype) = float_tensor(get(0)?)?;
        let dims = x.dims().to_vec();
        let mut layers = Vec::with_capacity(self.chains.len());
        let mut width = dims.get(1).copied().unwrap_or(0);
        for (chain, w, bias) in self.weight_inputs() {
            let (w, _) = float_tensor(get(w)?)?;
            let bias = bias
                .map(|b| float_tensor(get(b)?).map(|(t, _)| t))
                .transpose()?;
            let layer = chain.layer(w, bias).map_err(|r| chain.labelled(r))?;
            if dims.len() != 2 || layer.rows_in() != width {
                let x_dims = if layers.is_empty() {
                    dims.clone()
                } else {
                    vec![dims[0], width]
                };
                return Err(chain.labelled(matrices_do_not_fit(&x_dims, w.dims())));
            }
            width = layer.cols();
            layers.push(layer);
        }
        let layers: Vec<&DenseLayer> = layers.iter().map(|l| &**l).collect();
        let out = with_host_f32(x, |data| cpu_kernels::forward_stack(&layers, data))?
            .map_err(|e| e.to_string())?;
        to_value(out, vec![dims[0], width], dtype, ctx.device)
    }
}

/// A `MatMul` whose input `x` and weights `w` (as stored) cannot be multiplied.
fn matrices_do_not_fit(x: &[usize], w: &[usize]) -> String {
    format!("matrix shapes {x:?} and {w:?} do not fit")
}

fn single(mut values: Vec<Value>) -> Result<Value, String> {
    values.pop().ok_or_else(|| "kernel returned nothing".into())
}

/// The other layer ops.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NnKernel {
    Depthwise(ConvSpec),
    /// `Conv2DBackpropInput`: inputs `input_sizes`, `filter`, `out_backprop`.
    ConvTranspose(ConvSpec),
    Pool {
        kind: Pool,
        ksize: [usize; 2],
        spec: ConvSpec,
    },
    /// Inference batch norm: `(x - mean) * scale / sqrt(variance + epsilon) + offset`.
    BatchNorm {
        epsilon: f32,
        outputs: usize,
    },
    /// `Pad` (zeros) or `PadV2` (a given constant).
    Pad,
}

fn unsupported(op: &str, what: String) -> CompileError {
    CompileError::Unsupported(format!("{op} ({what})"))
}

fn nhwc_only(op: &str, attrs: &dyn Attrs) -> Result<(), CompileError> {
    match attrs.attr_string("data_format").as_deref() {
        None | Some(b"NHWC") => Ok(()),
        Some(other) => Err(unsupported(
            op,
            format!(
                "data_format={}; only NHWC is supported",
                String::from_utf8_lossy(other)
            ),
        )),
    }
}

/// `[1, h, w, 1]` as NHWC attrs write strides, dilations and window sizes.
fn spatial(
    op: &str,
    attrs: &dyn Attrs,
    name: &str,
    default: bool,
) -> Result<[usize; 2], CompileError> {
    let Some(v) = attrs.attr_ints(name) else {
        return if default {
            Ok([1, 1])
        } else {
            Err(CompileError::Invalid(format!(
                "{op} node has no `{name}` attr"
            )))
        };
    };
    match v.as_slice() {
        [1, h, w, 1] if *h >= 1 && *w >= 1 => Ok([*h as usize, *w as usize]),
        _ => Err(unsupported(
            op,
            format!("{name}={v:?}; only [1, h, w, 1] with h, w >= 1 is supported"),
        )),
    }
}

fn conv_spec(op: &str, attrs: &dyn Attrs) -> Result<ConvSpec, CompileError> {
    nhwc_only(op, attrs)?;
    let padding = match attrs.attr_string("padding").as_deref() {
        Some(b"SAME") => Padding::Same,
        Some(b"VALID") => Padding::Valid,
        Some(b"EXPLICIT") => {
            let p = attrs.attr_ints("explicit_paddings").unwrap_or_default();
            match p.as_slice() {
                [0, 0, t, b, l, r, 0, 0] if [t, b, l, r].iter().all(|v| **v >= 0) => {
                    Padding::Explicit([*t as usize, *b as usize, *l as usize, *r as usize])
                }
                _ => {
                    return Err(unsupported(
                        op,
                        format!(
                            "explicit_paddings={p:?}; expected 8 values, batch and channels unpadded"
                        ),
                    ));
                }
            }
        }
        Some(other) => {
            return Err(unsupported(
                op,
                format!("padding={}", String::from_utf8_lossy(other)),
            ));
        }
        None => {
            return Err(CompileError::Invalid(format!(
                "{op} node has no `padding` attr"
            )));
        }
    };
    Ok(ConvSpec {
        strides: spatial(op, attrs, "strides", false)?,
        dilations: spatial(op, attrs, "dilations", true)?,
        padding,
    })
}

fn float_type(op: &str, attrs: &dyn Attrs, name: &str) -> Result<(), CompileError> {
    match attrs.attr_type(name) {
        None | Some(Ok(DataType::Float | DataType::Double | DataType::Half)) => Ok(()),
        Some(Ok(t)) => Err(unsupported(op, format!("{name}={}", t.tf_name()))),
        Some(Err(raw)) => Err(unsupported(op, format!("{name}=dtype enum {raw}"))),
    }
}

/// Compiles the ops of this module; `None` for other ops.
pub(crate) fn compile(op: &str, attrs: &dyn Attrs) -> Option<Result<Kernel, CompileError>> {
    let kernel = || -> Result<Kernel, CompileError> {
        float_type(op, attrs, "T")?;
        Ok(match op {
            "Conv2D" => Kernel::Dense(Arc::new(DenseChain::new(Head::Conv2D(conv_spec(
                op, attrs,
            )?)))),
            "DepthwiseConv2dNative" => Kernel::Nn(NnKernel::Depthwise(conv_spec(op, attrs)?)),
            "Conv2DBackpropInput" => Kernel::Nn(NnKernel::ConvTranspose(conv_spec(op, attrs)?)),
            "MaxPool" | "AvgPool" => {
                let spec = ConvSpec {
                    dilations: [1, 1],
                    ..conv_spec(op, attrs)?
                };
                if matches!(spec.padding, Padding::Explicit(_)) {
                    return Err(unsupported(op, "padding=EXPLICIT".into()));
                }
                Kernel::Nn(NnKernel::Pool {
                    kind: if op == "MaxPool" {
                        Pool::Max
                    } else {
                        Pool::Avg
                    },
                    ksize: spatial(op, attrs, "ksize", false)?,
                    spec,
                })
            }
            "FusedBatchNorm" | "FusedBatchNormV2" | "FusedBatchNormV3" => {
                nhwc_only(op, attrs)?;
                float_type(op, attrs, "U")?;
                if attrs.attr_bool("is_training").unwrap_or(true) {
                    return Err(unsupported(
                        op,
                        "is_training=true; only inference batch norm is supported".into(),
                    ));
                }
                Kernel::Nn(NnKernel::BatchNorm {
                    epsilon: attrs.attr_float("epsilon").unwrap_or(1e-4),
                    outputs: if op == "FusedBatchNormV3" { 6 } else { 5 },
                })
            }
            "Pad" | "PadV2" => Kernel::Nn(NnKernel::Pad),
            _ => unreachable_op(op)?,
        })
    };
    match op {
        "Conv2D"
        | "DepthwiseConv2dNative"
        | "Conv2DBackpropInput"
        | "MaxPool"
        | "AvgPool"
        | "FusedBatchNorm"
        | "FusedBatchNormV2"
        | "FusedBatchNormV3"
        | "Pad"
        | "PadV2" => Some(kernel()),
        _ => None,
    }
}

fn unreachable_op(op: &str) -> Result<Kernel, CompileError> {
    Err(CompileError::Unsupported(op.to_string()))
}

/// Output layouts of this module's ops (TensorFlow's output arg names).
pub(crate) const OUTPUTS: &[(&str, &[(&str, &str)])] = &[
    ("Conv2D", &[("output", "")]),
    ("DepthwiseConv2dNative", &[("output", "")]),
    ("Conv2DBackpropInput", &[("output", "")]),
    ("MaxPool", &[("output", "")]),
    ("AvgPool", &[("output", "")]),
    (
        "FusedBatchNorm",
        &[
            ("y", ""),
            ("batch_mean", ""),
            ("batch_variance", ""),
            ("reserve_space_1", ""),
            ("reserve_space_2", ""),
        ],
    ),
    (
        "FusedBatchNormV2",
        &[
            ("y", ""),
            ("batch_mean", ""),
            ("batch_variance", ""),
            ("reserve_space_1", ""),
            ("reserve_space_2", ""),
        ],
    ),
    (
        "FusedBatchNormV3",
        &[
            ("y", ""),
            ("batch_mean", ""),
            ("batch_variance", ""),
            ("reserve_space_1", ""),
            ("reserve_space_2", ""),
            ("reserve_space_3", ""),
        ],
    ),
    ("Pad", &[("output", "")]),
    ("PadV2", &[("output", "")]),
];

impl NnKernel {
    pub(crate) fn run(
        &self,
        inputs: &[&Value],
        ctx: &KernelContext<'_>,
    ) -> Result<Vec<Value>, String> {
        let get = |i: usize| inputs.get(i).copied().ok_or(format!("missing input {i}"));
        match self {
            NnKernel::Depthwise(spec) => {
                let (x, dtype) = float_tensor(get(0)?)?;
                let (f, _) = float_tensor(get(1)?)?;
                let (batch, h, w, c) = nhwc(x.dims(), "input")?;
                let fd = f.dims();
                if fd.len() != 4 || fd[2] != c {
                    return Err(format!(
                        "filter of shape {fd:?} does not fit an input of {c} channels (expected [kh, kw, {c}, multiplier])"
                    ));
                }
                let p = Placement::new(spec.window(fd[0], fd[1]), h, w, &spec.padding)
                    .map_err(|e| e.to_string())?;
                let filter = host_f32(f)?;
                let out = with_host_f32(x, |data| {
                    conv::depthwise_conv2d(data, batch, c, &p, &filter, fd[3])
                })?
                .map_err(|e| e.to_string())?;
                Ok(vec![to_value(
                    out,
                    vec![batch, p.out_h, p.out_w, c * fd[3]],
                    dtype,
                    ctx.device,
                )?])
            }
            NnKernel::ConvTranspose(spec) => {
                let sizes = int_list(get(0)?, "input_sizes")?;
                let (f, _) = float_tensor(get(1)?)?;
                let (dy, dtype) = float_tensor(get(2)?)?;
                let [batch, h, w, c_in] = sizes.as_slice() else {
                    return Err(format!("input_sizes must hold 4 values, got {sizes:?}"));
                };
                let fd = f.dims();
                if fd.len() != 4 || fd[2] != *c_in {
                    return Err(format!(
                        "filter of shape {fd:?} does not fit {c_in} output channels (expected [kh, kw, {c_in}, in])"
                    ));
                }
                let p = Placement::new(spec.window(fd[0], fd[1]), *h, *w, &spec.padding)
                    .map_err(|e| e.to_string())?;
                let expected = [*batch, p.out_h, p.out_w, fd[3]];
                if dy.dims() != expected {
                    return Err(format!(
                        "out_backprop has shape {:?}, expected {expected:?} for input_sizes {sizes:?}",
                        dy.dims()
                    ));
                }
                // `[kh, kw, c_in, c_out]` is `[kh*kw*c_in, c_out]`: the transposed layer maps
                // c_out values to kh*kw*c_in.
                let filter = host_f32(f)?;
                let layer = DenseLayer::new(
                    &filter,
                    fd[3],
                    fd[0] * fd[1] * fd[2],
                    true,
                    None,
                    Activation::None,
                )
                .map_err(|e| e.to_string())?;
                let out = with_host_f32(dy, |data| {
                    conv::conv2d_transpose(data, *batch, *c_in, &p, &layer)
                })?
                .map_err(|e| e.to_string())?;
                Ok(vec![to_value(out, sizes.clone(), dtype, ctx.device)?])
            }
            NnKernel::Pool { kind, ksize, spec } => {
                let (x, dtype) = float_tensor(get(0)?)?;
                let (batch, h, w, c) = nhwc(x.dims(), "input")?;
                let p = Placement::new(spec.window(ksize[0], ksize[1]), h, w, &spec.padding)
                    .map_err(|e| e.to_string())?;
                let out = with_host_f32(x, |data| conv::pool2d(data, batch, c, &p, *kind))?
                    .map_err(|e| e.to_string())?;
                Ok(vec![to_value(
                    out,
                    vec![batch, p.out_h, p.out_w, c],
                    dtype,
                    ctx.device,
                )?])
            }
            NnKernel::BatchNorm { epsilon, outputs } => {
                let (x, dtype) = float_tensor(get(0)?)?;
                let c = *x.dims().last().ok_or("batch norm input is a scalar")?;
                let params: Vec<Vec<f32>> = (1..5)
                    .map(|i| {
                        let (t, _) = float_tensor(get(i)?)?;
                        let v = host_f32(t)?;
                        if v.len() != c {
                            return Err(format!(
                                "{} holds {} values, expected one per channel ({c})",
                                ["scale", "offset", "mean", "variance"][i - 1],
                                v.len()
                            ));
                        }
                        Ok(v)
                    })
                    .collect::<Result<_, String>>()?;
                let (scale, offset, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
                // TensorFlow's CPU kernel: x * (scale * rsqrt(var + eps)) + (offset - mean * that).
                let factor: Vec<f32> = scale
                    .iter()
                    .zip(var)
                    .map(|(s, v)| s / (v + epsilon).sqrt())
                    .collect();
                let shift: Vec<f32> = offset
                    .iter()
                    .zip(mean.iter().zip(&factor))
                    .map(|(o, (m, f))| o - m * f)
                    .collect();
                let mut out = host_f32(x)?;
                for row in out.chunks_exact_mut(c.max(1)) {
                    for ((v, f), s) in row.iter_mut().zip(&factor).zip(&shift) {
                        *v = v.mul_add(*f, *s);
                    }
                }
                let mut values = vec![to_value(out, x.dims().to_vec(), dtype, ctx.device)?];
                // batch_mean / batch_variance are the moving statistics at inference; the
                // reserve spaces are only read by the gradient op.
                for i in 1..*outputs {
                    values.push(get(if i % 2 == 1 { 3 } else { 4 })?.clone());
                }
                Ok(values)
            }
            NnKernel::Pad => {
                let (x, dtype) = float_tensor(get(0)?)?;
                let paddings = int_list_raw(get(1)?, "paddings")?;
                let constant = match inputs.get(2) {
                    Some(v) => {
                        let (t, _) = float_tensor(v)?;
                        let c = host_f32(t)?;
                        match c.as_slice() {
                            [v] => *v,
                            _ => return Err("constant_values must be a scalar".into()),
                        }
                    }
                    None => 0.0,
                };
                let dims = x.dims().to_vec();
                if paddings.len() != 2 * dims.len() || paddings.iter().any(|&p| p < 0) {
                    return Err(format!(
                        "paddings {paddings:?} must be [{}, 2] non-negative values for a rank-{} input",
                        dims.len(),
                        dims.len()
                    ));
                }
                let before: Vec<usize> = paddings.iter().step_by(2).map(|&p| p as usize).collect();
                let out_dims: Vec<usize> = dims
                    .iter()
                    .enumerate()
                    .map(|(d, &n)| n + paddings[2 * d] as usize + paddings[2 * d + 1] as usize)
                    .collect();
                let out = with_host_f32(x, |data| pad(data, &dims, &out_dims, &before, constant))?;
                Ok(vec![to_value(out, out_dims, dtype, ctx.device)?])
            }
        }
    }
}

/// Copies `data` (shape `dims`) into a `out_dims` tensor filled with `constant`, offset by `before`.
fn pad(
    data: &[f32],
    dims: &[usize],
    out_dims: &[usize],
    before: &[usize],
    constant: f32,
) -> Vec<f32> {
    let total: usize = out_dims.iter().product();
    let mut out = vec![constant; total];
    let Some(&inner) = dims.last() else {
        return data.to_vec();
    };
    if inner == 0 {
        return out;
    }
    let rank = dims.len();
    let mut out_strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        out_strides[d] = out_strides[d + 1] * out_dims[d + 1];
    }
    for (row, src) in data.chunks_exact(inner).enumerate() {
        // Index of this innermost row in every outer dimension.
        let mut rest = row;
        let mut at = before[rank - 1];
        for d in (0..rank - 1).rev() {
            let i = rest % dims[d];
            rest /= dims[d];
            at += (i + before[d]) * out_strides[d];
        }
        out[at..at + inner].copy_from_slice(src);
    }
    out
}

fn nhwc(dims: &[usize], what: &str) -> Result<(usize, usize, usize, usize), String> {
    match dims {
        [n, h, w, c] => Ok((*n, *h, *w, *c)),
        _ => Err(format!(
            "{what} must be a 4-D NHWC tensor, got shape {dims:?}"
        )),
    }
}

fn float_tensor(v: &Value) -> Result<(&Tensor, DataType), String> {
    match v {
        Value::Float { tensor, dtype } => Ok((tensor, *dtype)),
        other => Err(format!(
            "expected a floating-point tensor, got {}",
            other.dtype().tf_name()
        )),
    }
}

fn int_list_raw(v: &Value, what: &str) -> Result<Vec<i64>, String> {
    match v {
        Value::Host(h) => h
            .as_ints()
            .map(<[i64]>::to_vec)
            .ok_or_else(|| format!("{what} must be an integer tensor")),
        other => Err(format!(
            "{what} must be an integer tensor, got {}",
            other.dtype().tf_name()
        )),
    }
}

fn int_list(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    int_list_raw(v, what)?
        .into_iter()
        .map(|x| usize::try_from(x).map_err(|_| format!("{what} holds a negative value ({x})")))
        .collect()
}

/// A copy of a tensor's values in row-major order.
fn host_f32(t: &Tensor) -> Result<Vec<f32>, String> {
    with_host_f32(t, <[f32]>::to_vec)
}

/// Calls `f` with the tensor's values: in place for a contiguous f32 tensor on the CPU,
/// otherwise from a host copy.
pub(crate) fn with_host_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R, String> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets())
            && let Ok(all) = cpu.as_slice::<f32>()
            && let Some(data) = all.get(start..end)
        {
            return Ok(f(data));
        }
    }
    let copy = t
        .flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(candle_message)?;
    Ok(f(&copy))
}

fn to_value(
    data: Vec<f32>,
    shape: Vec<usize>,
    dtype: DataType,
    device: &Device,
) -> Result<Value, String> {
    let tensor = Tensor::from_vec(data, shape, device).map_err(candle_message)?;
    Ok(Value::float(tensor, dtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attrs of a hand-written node.
    #[derive(Default)]
    struct FakeAttrs {
        strings: Vec<(&'static str, &'static [u8])>,
        ints: Vec<(&'static str, Vec<i64>)>,
        bools: Vec<(&'static str, bool)>,
    }

    impl Attrs for FakeAttrs {
        fn attr_type(&self, _: &str) -> Option<Result<DataType, i32>> {
            Some(Ok(DataType::Float))
        }
        fn attr_bool(&self, name: &str) -> Option<bool> {
            self.bools.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
        fn attr_int(&self, _: &str) -> Option<i64> {
            None
        }
        fn attr_float(&self, _: &str) -> Option<f32> {
            None
        }
        fn attr_ints(&self, name: &str) -> Option<Vec<i64>> {
            self.ints
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        }
        fn attr_string(&self, name: &str) -> Option<Vec<u8>> {
            self.strings
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_vec())
        }
    }

    fn unsupported_message(op: &str, attrs: &FakeAttrs) -> String {
        match compile(op, attrs) {
            Some(Err(CompileError::Unsupported(what))) => what,
            Some(Err(CompileError::Invalid(what))) => panic!("invalid, not unsupported: {what}"),
            Some(Ok(k)) => panic!("{op} compiled: {k:?}"),
            None => panic!("{op} is not handled here"),
        }
    }

    #[test]
    fn nchw_and_training_batch_norm_are_refused_by_name() {
        let nchw = FakeAttrs {
            strings: vec![("data_format", b"NCHW"), ("padding", b"SAME")],
            ints: vec![("strides", vec![1, 1, 1, 1])],
            ..FakeAttrs::default()
        };
        let what = unsupported_message("Conv2D", &nchw);
        assert!(what.contains("Conv2D (data_format=NCHW"), "{what}");
        assert!(unsupported_message("MaxPool", &nchw).contains("NCHW"));
        let training = FakeAttrs {
            bools: vec![("is_training", true)],
            ..FakeAttrs::default()
        };
        let what = unsupported_message("FusedBatchNormV3", &training);
        assert!(what.contains("is_training=true"), "{what}");
        let batch_strides = FakeAttrs {
            strings: vec![("padding", b"VALID")],
            ints: vec![("strides", vec![2, 1, 1, 1])],
            ..FakeAttrs::default()
        };
        assert!(unsupported_message("Conv2D", &batch_strides).contains("strides=[2, 1, 1, 1]"));
        let explicit = FakeAttrs {
            strings: vec![("padding", b"EXPLICIT")],
            ints: vec![
                ("strides", vec![1, 1, 1, 1]),
                ("explicit_paddings", vec![1, 1, 0, 0, 0, 0, 0, 0]),
            ],
            ..FakeAttrs::default()
        };
        assert!(unsupported_message("Conv2D", &explicit).contains("explicit_paddings"));
    }

    #[test]
    fn pad_places_the_input_inside_the_constant() {
        let out = pad(&[1.0, 2.0, 3.0, 4.0], &[2, 2], &[3, 5], &[1, 2], 9.0);
        assert_eq!(
            out,
            [
                9.0, 9.0, 9.0, 9.0, 9.0, //
                9.0, 9.0, 1.0, 2.0, 9.0, //
                9.0, 9.0, 3.0, 4.0, 9.0
            ]
        );
    }
}
