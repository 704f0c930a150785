//! The memory budget of one model load, checked before the model's tensors are allocated.
//!
//! Each op is capped on its own (a `Fill` of at most 2^28 elements), but a 4 KB `saved_model.pb`
//! can still ask for many gigabytes in total: eight 1 GiB `Fill`s summed by an `AddN` drove a
//! server past 7 GB while it loaded and check-ran the model. So a load adds up, before allocating:
//! 1. **constants**: every `Const` node's size from its declared shape, before any is decoded
//!    (a short value list can expand to a large tensor) — [`check_constants`];
//! 2. **variables**: from their declared shapes, before the variables file is read;
//! 3. **intermediates**: every step output of a signature for the largest accepted batch
//!    (`-1` batch dimensions of the inputs become [`LoadLimits::max_batch`]), by shape inference
//!    over the compiled plan — [`check_plans`]; the largest signature counts.
//!
//! Over the budget, the load fails with an error naming the largest tensors. The sum is an upper
//! bound for the tensors it can follow (intermediates are in fact freed after their last use);
//! shapes the inference cannot follow (an op it does not model, a dimension only known at run
//! time) are left out rather than guessed. Floating-point tensors count 4 bytes an element (they
//! run as f32), integer and other tensors 8.

use cpu_kernels::conv::Placement;
use savedmodel_format::DataType;

use crate::error::RuntimeError;
use crate::graph::FlatGraph;
use crate::kernels::Kernel;
use crate::nn::{ConvSpec, DenseStack, Head, NnKernel};
use crate::plan::{Plan, Pool, Source, StepRule};
use crate::value::{HostVals, Value};

/// Default budget per model load: 4 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 4 << 30;

/// Default largest batch the budget is checked for (the server's default `--max-batch-size`).
pub const DEFAULT_MAX_BATCH: usize = 128;

/// Limits on loading one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    /// Most bytes the model's constants, variables and intermediates may need together.
    pub memory_budget: u64,
    /// The batch size the intermediates are sized for.
    pub max_batch: usize,
}

impl Default for LoadLimits {
    fn default() -> LoadLimits {
        LoadLimits {
            memory_budget: DEFAULT_MEMORY_BUDGET,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

/// One counted tensor.
#[derive(Debug, Clone)]
struct Counted {
    what: String,
    shape: Vec<usize>,
    bytes: u64,
}

/// The tensors of one kind (constants, variables, intermediates) and their total.
#[derive(Debug, Default, Clone)]
struct Tally {
    items: Vec<Counted>,
    total: u64,
}

impl Tally {
    fn add(&mut self, what: String, shape: &[usize], bytes_per_element: u64) {
        let bytes = elements(shape).saturating_mul(bytes_per_element);
        self.total = self.total.saturating_add(bytes);
        self.items.push(Counted {
            what,
            shape: shape.to_vec(),
            bytes,
        });
    }
}

fn elements(shape: &[usize]) -> u64 {
    shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .unwrap_or(u64::MAX)
}

fn bytes_per_element(dtype: Option<DataType>) -> u64 {
    match dtype {
        Some(DataType::Float | DataType::Double | DataType::Half) => 4,
        _ => 8,
    }
}

/// Step 1: the constants' total from their declared shapes, before any is decoded.
pub(crate) fn check_constants(
    graph: &FlatGraph<'_>,
    limits: &LoadLimits,
) -> Result<(), RuntimeError> {
    let mut constants = Tally::default();
    for (id, node) in graph.nodes.iter().enumerate() {
        if node.op() != "Const" {
            continue;
        }
        let Some(proto) = graph.attr(id, "value").and_then(|v| v.as_tensor()) else {
            continue;
        };
        let Some(dims) = proto.tensor_shape.as_ref().and_then(|s| s.dims()) else {
            continue;
        };
        let shape: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
        constants.add(
            node.name.clone(),
            &shape,
            bytes_per_element(DataType::from_tf(proto.dtype)),
        );
    }
    verdict(limits, &[("constants", &constants)])
}

/// Steps 2 and 3: variables from their declared shapes and each signature's intermediates, with
/// the constants as decoded, before the variables are read.
pub(crate) fn check_plans<'p>(
    graph: &FlatGraph<'_>,
    pool: &Pool,
    plans: impl IntoIterator<Item = &'p Plan>,
    limits: &LoadLimits,
) -> Result<(), RuntimeError> {
    let mut constants = Tally::default();
    for (index, value) in pool.consts.iter().enumerate() {
        constants.add(
            format!("constant #{index}"),
            &value.dims(),
            bytes_per_element(Some(value.dtype())),
        );
    }
    let mut variables = Tally::default();
    let mut variable_shapes = Vec::with_capacity(pool.variables.len());
    for var in &pool.variables {
        let shape = graph
            .attr(var.node, "shape")
            .and_then(|v| v.as_shape())
            .and_then(|s| s.dims())
            .filter(|dims| dims.iter().all(|&d| d >= 0))
            .map(|dims| dims.iter().map(|&d| d as usize).collect::<Vec<_>>());
        if let Some(shape) = &shape {
            variables.add(var.name.clone(), shape, bytes_per_element(var.dtype));
        }
        variable_shapes.push(shape);
    }
    let mut intermediates = Tally::default();
    for plan in plans {
        let tally = infer_plan(plan, pool, &variable_shapes, limits.max_batch);
        if tally.total > intermediates.total {
            intermediates = tally;
        }
    }
    verdict(
        limits,
        &[
            ("constants", &constants),
            ("variables", &variables),
            ("intermediates", &intermediates),
        ],
    )
}

fn verdict(limits: &LoadLimits, kinds: &[(&str, &Tally)]) -> Result<(), RuntimeError> {
    let total = kinds
        .iter()
        .fold(0u64, |sum, (_, t)| sum.saturating_add(t.total));
    if total <= limits.memory_budget {
        return Ok(());
    }
    let mut largest: Vec<&Counted> = kinds.iter().flat_map(|(_, t)| &t.items).collect();
    largest.sort_by_key(|c| std::cmp::Reverse(c.bytes));
    let largest = largest
        .iter()
        .take(3)
        .map(|c| format!("`{}` {:?} ({})", c.what, c.shape, human(c.bytes)))
        .collect::<Vec<_>>()
        .join(", ");
    let parts = kinds
        .iter()
        .map(|(kind, t)| format!("{kind} {}", human(t.total)))
        .collect::<Vec<_>>()
        .join(", ");
    Err(RuntimeError::MemoryBudget {
        needed: human(total),
        budget: human(limits.memory_budget),
        parts,
        batch: limits.max_batch,
        largest,
    })
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What shape inference knows about one tensor: its shape, and for small integer tensors (shapes,
/// axes) their values.
#[derive(Debug, Clone, Default)]
struct Known {
    shape: Option<Vec<usize>>,
    ints: Option<Vec<i64>>,
}

impl Known {
    fn shape(shape: Vec<usize>) -> Known {
        Known {
            shape: Some(shape),
            ints: None,
        }
    }
}

/// Integer values worth carrying through inference (shape vectors, axes).
const MAX_TRACKED_INTS: usize = 64;

fn known_value(value: &Value) -> Known {
    let ints = match value {
        Value::Host(host) => match &host.vals {
            HostVals::Ints(v) if v.len() <= MAX_TRACKED_INTS => Some(v.clone()),
            _ => None,
        },
        _ => None,
    };
    Known {
        shape: Some(value.dims()),
        ints,
    }
}

fn infer_plan(
    plan: &Plan,
    pool: &Pool,
    variable_shapes: &[Option<Vec<usize>>],
    max_batch: usize,
) -> Tally {
    let mut slots: Vec<Known> = vec![Known::default(); plan.num_slots()];
    let mut tally = Tally::default();
    for step in plan.step_rules() {
        let inputs: Vec<Known> = step
            .inputs
            .iter()
            .map(|source| match *source {
                Source::Slot(s) => slots.get(s).cloned().unwrap_or_default(),
                Source::Feed(f) => plan
                    .feeds
                    .get(f)
                    .and_then(|feed| feed.spec.shape.as_ref())
                    .and_then(|dims| {
                        dims.iter()
                            .enumerate()
                            .map(|(i, &d)| match d {
                                d if d >= 0 => Some(d as usize),
                                -1 if i == 0 => Some(max_batch),
                                _ => None,
                            })
                            .collect::<Option<Vec<usize>>>()
                    })
                    .map(Known::shape)
                    .unwrap_or_default(),
                Source::Const(c) => pool.consts.get(c).map(known_value).unwrap_or_default(),
                Source::Variable(v) => variable_shapes
                    .get(v)
                    .cloned()
                    .flatten()
                    .map(Known::shape)
                    .unwrap_or_default(),
                Source::AlwaysLive => Known::default(),
            })
            .collect();
        let (outputs, allocates) = match step.rule {
            StepRule::Kernel(kernel) => (infer_kernel(kernel, &inputs), !forwards(kernel)),
            StepRule::Forward => (
                vec![
                    inputs
                        .iter()
                        .find(|k| k.shape.is_some())
                        .cloned()
                        .unwrap_or_default();
                    step.num_outputs
                ],
                false,
            ),
            StepRule::Other => (Vec::new(), false),
        };
        if let StepRule::Kernel(Kernel::DenseStack(stack)) = step.rule {
            // The values between a stack's layers exist a block of rows at a time, but count
            // as whole tensors, as they did before stacking: the sum stays an upper bound, and
            // a huge hidden layer is refused before it is run.
            for (node, shape) in stack.hidden_nodes.iter().zip(stack_outputs(stack, &inputs)) {
                if let Some(shape) = shape {
                    tally.add(node.clone(), &shape, 4);
                }
            }
        }
        for (port, known) in outputs.into_iter().take(step.num_outputs).enumerate() {
            if allocates && let Some(shape) = &known.shape {
                let what = if port == 0 {
                    step.node.to_string()
                } else {
                    format!("{}:{port}", step.node)
                };
                tally.add(what, shape, 4);
            }
            if let Some(slot) = slots.get_mut(step.first_slot + port) {
                *slot = known;
            }
        }
    }
    tally
}

/// Kernels whose outputs are their inputs (no new memory).
fn forwards(kernel: &Kernel) -> bool {
    matches!(
        kernel,
        Kernel::Identity | Kernel::IdentityN | Kernel::ReadVariable | Kernel::Reshape
    )
}

fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| (i + s.len()).checked_sub(rank).map_or(1, |j| s[j]);
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// An axis in `-rank..rank` as an index.
fn axis_index(axis: i64, rank: usize) -> Option<usize> {
    let rank = rank as i64;
    let axis = if axis < 0 { axis + rank } else { axis };
    (0..rank).contains(&axis).then_some(axis as usize)
}

/// The output shapes of one kernel, as far as they follow from what is known of its inputs.
/// Output shape of a fused `MatMul`/`Conv2D` (+ `BiasAdd`, activation) chain: the bias and the
/// activation keep the head's shape. Conv2D is NHWC with an HWIO filter (`nn.rs`).
fn dense_output(head: &Head, x: &[usize], w: &[usize]) -> Option<Vec<usize>> {
    match head {
        Head::MatMul { transpose_b } => match (x, w) {
            (&[m, _], &[w0, w1]) => Some(vec![m, if *transpose_b { w0 } else { w1 }]),
            _ => None,
        },
        Head::Conv2D(spec) => match (x, w) {
            (&[n, h, width, _], &[kh, kw, _, out_channels]) => {
                let placed = Placement::new(spec.window(kh, kw), h, width, &spec.padding).ok()?;
                Some(vec![n, placed.out_h, placed.out_w, out_channels])
            }
            _ => None,
        },
    }
}

/// The output shape of each chain of a stack, in order.
fn stack_outputs(stack: &DenseStack, inputs: &[Known]) -> Vec<Option<Vec<usize>>> {
    let shape = |i: usize| inputs.get(i).and_then(|k| k.shape.clone());
    let mut x = shape(0);
    let mut outputs = Vec::with_capacity(stack.chains.len());
    for (chain, w, _) in stack.weight_inputs() {
        x = x
            .zip(shape(w))
            .and_then(|(x, w)| dense_output(&chain.head, &x, &w));
        outputs.push(x.clone());
    }
    outputs
}

fn infer_kernel(kernel: &Kernel, inputs: &[Known]) -> Vec<Known> {
    let shape = |i: usize| inputs.get(i).and_then(|k| k.shape.clone());
    let ints = |i: usize| inputs.get(i).and_then(|k| k.ints.clone());
    let same = || vec![inputs.first().cloned().unwrap_or_default()];
    let one = |s: Option<Vec<usize>>| {
        vec![Known {
            shape: s,
            ints: None,
        }]
    };
    match kernel {
        Kernel::Dense(chain) => one(shape(0)
            .zip(shape(1))
            .and_then(|(x, w)| dense_output(&chain.head, &x, &w))),
        Kernel::DenseStack(stack) => one(stack_outputs(stack, inputs).pop().flatten()),
        Kernel::Identity | Kernel::ReadVariable => same(),
        Kernel::IdentityN => inputs.to_vec(),
        Kernel::MatMul {
            transpose_a,
            transpose_b,
        } => one(shape(0).zip(shape(1)).and_then(|(a, b)| {
            let (&[a0, a1], &[b0, b1]) = (a.as_slice(), b.as_slice()) else {
                return None;
            };
            let m = if *transpose_a { a1 } else { a0 };
            let n = if *transpose_b { b0 } else { b1 };
            Some(vec![m, n])
        })),
        Kernel::Binary(_) => one(shape(0).zip(shape(1)).and_then(|(a, b)| broadcast(&a, &b))),
        Kernel::BiasAdd { .. }
        | Kernel::AddN
        | Kernel::Unary(_)
        | Kernel::LeakyRelu { .. }
        | Kernel::Softmax { .. }
        | Kernel::Cast { .. }
        | Kernel::ZerosLike
        | Kernel::OnesLike
        | Kernel::ClipByValue
        | Kernel::LogicalNot => one(shape(0)),
        Kernel::Shape { .. } => vec![Known {
            shape: shape(0).map(|s| vec![s.len()]),
            ints: shape(0).map(|s| s.iter().map(|&d| d as i64).collect()),
        }],
        Kernel::Size { .. } | Kernel::Rank => one(Some(Vec::new())),
        Kernel::Fill => one(ints(0).and_then(|dims| {
            dims.iter()
                .map(|&d| usize::try_from(d).ok())
                .collect::<Option<Vec<usize>>>()
        })),
        Kernel::Reshape => one(shape(0).zip(ints(1)).and_then(|(from, to)| {
            let count = elements(&from);
            let known: u64 = to.iter().filter(|&&d| d >= 0).map(|&d| d as u64).product();
            to.iter()
                .map(|&d| match d {
                    -1 if known > 0 => usize::try_from(count / known).ok(),
                    d => usize::try_from(d).ok(),
                })
                .collect()
        })),
        Kernel::ExpandDims => one(shape(0).zip(ints(1)).and_then(|(mut s, axis)| {
            let index = axis_index(*axis.first()?, s.len() + 1)?;
            s.insert(index, 1);
            Some(s)
        })),
        Kernel::Squeeze { dims } => one(shape(0).map(|s| {
            let rank = s.len();
            s.into_iter()
                .enumerate()
                .filter(|&(i, d)| {
                    if dims.is_empty() {
                        d != 1
                    } else {
                        !dims.iter().any(|&a| axis_index(a, rank) == Some(i))
                    }
                })
                .map(|(_, d)| d)
                .collect()
        })),
        Kernel::Pack { axis } => one(shape(0).and_then(|mut s| {
            let index = axis_index(*axis, s.len() + 1)?;
            s.insert(index, inputs.len());
            Some(s)
        })),
        Kernel::Concat => {
            let joined = inputs.split_last().and_then(|(axis_input, parts)| {
                let axis = axis_input.ints.as_ref()?;
                let shapes: Vec<Vec<usize>> = parts
                    .iter()
                    .map(|k| k.shape.clone())
                    .collect::<Option<_>>()?;
                let first = shapes.first()?.clone();
                let index = axis_index(*axis.first()?, first.len())?;
                let mut out = first;
                out[index] = shapes
                    .iter()
                    .map(|s| s.get(index).copied())
                    .sum::<Option<usize>>()?;
                Some(out)
            });
            one(joined)
        }
        Kernel::Reduce { keep_dims, .. } => one(shape(0).zip(ints(1)).and_then(|(s, axes)| {
            let rank = s.len();
            let reduced: Vec<usize> = axes
                .iter()
                .map(|&a| axis_index(a, rank))
                .collect::<Option<_>>()?;
            Some(
                s.into_iter()
                    .enumerate()
                    .filter_map(|(i, d)| match (reduced.contains(&i), keep_dims) {
                        (false, _) => Some(d),
                        (true, true) => Some(1),
                        (true, false) => None,
                    })
                    .collect(),
            )
        })),
        Kernel::ArgReduce { .. } => one(shape(0).zip(ints(1)).and_then(|(mut s, axis)| {
            let index = axis_index(*axis.first()?, s.len())?;
            s.remove(index);
            Some(s)
        })),
        Kernel::Transpose => one(shape(0).zip(ints(1)).and_then(|(s, perm)| {
            perm.iter()
                .map(|&p| usize::try_from(p).ok().and_then(|p| s.get(p).copied()))
                .collect()
        })),
        Kernel::Nn(nn) => infer_nn(nn, inputs),
        // Not modelled (slices, batched products, ops added later): left out of the sum.
        #[allow(unreachable_patterns)]
        _ => Vec::new(),
    }
}

/// Output shapes of the convolutional layer ops that are not fused (NHWC, as `nn.rs` runs them).
fn infer_nn(kernel: &NnKernel, inputs: &[Known]) -> Vec<Known> {
    let shape = |i: usize| inputs.get(i).and_then(|k| k.shape.clone());
    let ints = |i: usize| inputs.get(i).and_then(|k| k.ints.clone());
    let spatial = |spec: &ConvSpec, x: &[usize], kh: usize, kw: usize| {
        Placement::new(spec.window(kh, kw), x[1], x[2], &spec.padding)
            .ok()
            .map(|placed| (placed.out_h, placed.out_w))
    };
    let known = |shape: Option<Vec<usize>>| Known { shape, ints: None };
    match kernel {
        NnKernel::Depthwise(spec) => vec![known(shape(0).zip(shape(1)).and_then(|(x, f)| {
            let (&[n, _, _, c], &[kh, kw, _, multiplier]) = (x.as_slice(), f.as_slice()) else {
                return None;
            };
            let (out_h, out_w) = spatial(spec, &x, kh, kw)?;
            Some(vec![n, out_h, out_w, c.checked_mul(multiplier)?])
        }))],
        // The output's shape is the op's first input, `input_sizes`.
        NnKernel::ConvTranspose(_) => vec![known(ints(0).and_then(|dims| {
            dims.iter()
                .map(|&d| usize::try_from(d).ok())
                .collect::<Option<Vec<usize>>>()
        }))],
        NnKernel::Pool { ksize, spec, .. } => vec![known(shape(0).and_then(|x| {
            let &[n, _, _, c] = x.as_slice() else {
                return None;
            };
            let (out_h, out_w) = spatial(spec, &x, ksize[0], ksize[1])?;
            Some(vec![n, out_h, out_w, c])
        }))],
        // `y` has the input's shape; the batch statistics outputs are one value per channel.
        NnKernel::BatchNorm { outputs, .. } => {
            let channels = shape(0).and_then(|x| x.last().copied());
            let mut all = vec![known(shape(0))];
            all.extend((1..*outputs).map(|_| known(channels.map(|c| vec![c]))));
            all
        }
        // `paddings` is `[rank, 2]`: each dimension grows by its before and after counts.
        NnKernel::Pad => vec![known(shape(0).zip(ints(1)).and_then(|(x, paddings)| {
            if paddings.len() != 2 * x.len() {
                return None;
            }
            x.iter()
                .zip(paddings.chunks_exact(2))
                .map(|(&d, pair)| {
                    let before = usize::try_from(pair[0]).ok()?;
                    let after = usize::try_from(pair[1]).ok()?;
                    d.checked_add(before)?.checked_add(after)
                })
                .collect()
        }))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_and_sizes() {
        assert_eq!(broadcast(&[4, 1, 3], &[5, 1]), Some(vec![4, 5, 3]));
        assert_eq!(broadcast(&[2, 3], &[4, 3]), None);
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(elements(&[usize::MAX, 4]), u64::MAX);
    }

    #[test]
    fn layer_op_shapes() {
        let x = |s: &[usize]| Known::shape(s.to_vec());
        let ints = |v: &[i64]| Known {
            shape: Some(vec![v.len()]),
            ints: Some(v.to_vec()),
        };
        let same = ConvSpec {
            strides: [2, 2],
            dilations: [1, 1],
            padding: cpu_kernels::conv::Padding::Same,
        };
        let shapes = |out: Vec<Known>| out.into_iter().map(|k| k.shape).collect::<Vec<_>>();
        let pool = NnKernel::Pool {
            kind: cpu_kernels::conv::Pool::Max,
            ksize: [2, 2],
            spec: same.clone(),
        };
        assert_eq!(
            shapes(infer_nn(&pool, &[x(&[8, 28, 27, 16])])),
            [Some(vec![8, 14, 14, 16])]
        );
        let depthwise = NnKernel::Depthwise(same);
        assert_eq!(
            shapes(infer_nn(
                &depthwise,
                &[x(&[8, 28, 28, 16]), x(&[3, 3, 16, 2])]
            )),
            [Some(vec![8, 14, 14, 32])]
        );
        let batch_norm = NnKernel::BatchNorm {
            epsilon: 1e-3,
            outputs: 3,
        };
        assert_eq!(
            shapes(infer_nn(&batch_norm, &[x(&[8, 7, 7, 32])])),
            [Some(vec![8, 7, 7, 32]), Some(vec![32]), Some(vec![32])]
        );
        assert_eq!(
            shapes(infer_nn(
                &NnKernel::Pad,
                &[x(&[8, 28, 28, 1]), ints(&[0, 0, 2, 2, 1, 3, 0, 0])]
            )),
            [Some(vec![8, 32, 32, 1])]
        );
        // A paddings tensor that does not match the rank is left out, not guessed.
        assert_eq!(
            shapes(infer_nn(&NnKernel::Pad, &[x(&[8, 28]), ints(&[1, 1])])),
            [None]
        );
    }

    #[test]
    fn over_budget_names_the_largest_tensors() {
        let mut intermediates = Tally::default();
        intermediates.add("small".into(), &[10], 4);
        intermediates.add("fill_a".into(), &[16384, 16384], 4);
        intermediates.add("fill_b".into(), &[16384, 8192], 4);
        let limits = LoadLimits {
            memory_budget: 1 << 30,
            max_batch: 128,
        };
        let error = verdict(&limits, &[("intermediates", &intermediates)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`fill_a` [16384, 16384] (1.0 GiB), `fill_b`"),
            "{error}"
        );
        assert!(error.contains("1.5 GiB"), "{error}");
        let generous = LoadLimits {
            memory_budget: 2 << 30,
            max_batch: 128,
        };
        assert!(verdict(&generous, &[("intermediates", &intermediates)]).is_ok());
    }
}
