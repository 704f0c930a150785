//! The CPU engine: an explicit forward and backward pass over preallocated buffers, with the
//! hand-written kernels of the `cpu-kernels` crate (AVX-512, AVX2+FMA or portable, chosen at
//! run time; the same bits on each), run by a small team of threads (`cpu_kernels::team`).
//!
//! Why not candle's autograd on the CPU: a batch-32 step of this network is ~38 M multiply-adds,
//! under a millisecond on two cores, while an autograd step allocates dozens of tensors and makes
//! a dozen separate passes over the weights (matmul, gradient, momentum, update); PyTorch is
//! faster than that, and the trainer must not be slower than PyTorch. Here every weight matrix
//! is touched three times per step (forward, input gradient, fused gradient + momentum update),
//! and all activation, gradient and mask buffers are allocated once and reused.
//!
//! A step is a list of phases (masks, each layer forward, loss, each layer backward), each cut
//! into chunks that any member of the team may run; see `cpu_kernels::team` for how they are
//! handed out and why the result does not depend on it.
//!
//! Layout: every layer's width is padded to a multiple of [`kernels::PANEL`] with zero weights
//! (which stay zero: their inputs or output gradients are zero); weights and momentum slots are
//! stored panel-major (see [`kernels::Packed`]); every row-major buffer gets 16 floats of slack
//! in its leading dimension so that rows do not all map to the same cache sets. Weights leave
//! the engine unpadded, in Keras's `[in, out]` layout.

mod state;

use cpu_kernels::kernels::{
    self, Forward, InputGrad, Isa, MatMut, MatRef, PANEL, Packed, WeightUpdate,
};
use cpu_kernels::team::{Team, share};

use crate::loss::cross_entropy_row;
use crate::metrics::BatchMetrics;
use crate::seeds::DropoutMasks;
use crate::{ModelError, SgdMomentum};

/// Rows processed per hand-off during inference: bounds scratch memory for large inputs.
const INFERENCE_CHUNK_ROWS: usize = 1024;

fn padded(units: usize) -> usize {
    units.div_ceil(PANEL) * PANEL
}

/// Leading dimension for a padded width: a little slack so consecutive rows land in different
/// cache sets (a 2 KiB row stride would map every row of a column panel to the same few sets).
fn leading_dim(padded_units: usize) -> usize {
    padded_units + PANEL
}

/// A zeroed float buffer whose start is aligned to a 64-byte cache line.
struct AlignedBuf {
    storage: Vec<f32>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    const LINE_FLOATS: usize = 16;

    fn zeroed(len: usize) -> Self {
        let storage = vec![0f32; len + Self::LINE_FLOATS];
        let offset = storage.as_ptr().align_offset(64).min(Self::LINE_FLOATS);
        AlignedBuf {
            storage,
            offset,
            len,
        }
    }

    fn as_slice(&self) -> &[f32] {
        &self.storage[self.offset..self.offset + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

/// One Dense layer: panel-major weights and momentum slots (see [`kernels::Packed`]).
struct Layer {
    /// Rows of `w`: the input width, including the previous layer's padding.
    k: usize,
    /// Real units.
    n: usize,
    /// Padded units (multiple of `PANEL`).
    np: usize,
    /// Floats between consecutive column panels of `w` and `accum`.
    panel_stride: usize,
    w: AlignedBuf,
    accum: AlignedBuf,
    bias: Vec<f32>,
    bias_accum: Vec<f32>,
}

impl Layer {
    fn packed(buf: &mut AlignedBuf, panel_stride: usize) -> Packed {
        Packed {
            ptr: buf.as_mut_slice().as_mut_ptr(),
            panel_stride,
        }
    }

    /// Index of element `(r, c)` in the panel-major buffers.
    fn index(&self, r: usize, c: usize) -> usize {
        (c / PANEL) * self.panel_stride + r * PANEL + c % PANEL
    }
}

/// Per-step buffers, sized for the largest batch seen so far.
#[derive(Default)]
struct Scratch {
    rows: usize,
    /// Layer outputs: hidden activations after ReLU and dropout, then the logits.
    acts: Vec<Vec<f32>>,
    /// Gradients of the layers' pre-activations.
    grads: Vec<Vec<f32>>,
    /// Dropout multipliers of the hidden layers.
    masks: Vec<Vec<f32>>,
    row_loss: Vec<f32>,
    row_class: Vec<u32>,
}

pub(crate) struct CpuEngine {
    isa: Isa,
    team: Team,
    input_dim: usize,
    layers: Vec<Layer>,
    dropout: Option<DropoutMasks>,
    scratch: Scratch,
}

/// Raw pointers into the engine, shared by the team for one step. Threads write disjoint
/// parts (rows, columns or weight rows, as each phase documents) and meet at barriers before
/// reading what others wrote.
#[derive(Clone, Copy)]
struct LayerView {
    k: usize,
    n: usize,
    np: usize,
    w: Packed,
    accum: Packed,
    bias: *mut f32,
    bias_accum: *mut f32,
    act: MatMut,
    grad: MatMut,
    mask: Option<MatMut>,
}

struct StepPlan<'a> {
    isa: Isa,
    x: MatRef,
    m: usize,
    labels: &'a [u8],
    layers: Vec<LayerView>,
    dropout: Option<DropoutMasks>,
    step: u64,
    optimizer: SgdMomentum,
    row_loss: *mut f32,
    row_class: *mut u32,
}

/// Lets the team share the plan's raw pointers; see [`LayerView`] for why that is sound.
struct SharedPlan<'a>(StepPlan<'a>);
// SAFETY: the pointers target buffers owned by the engine, which is mutably borrowed for the
// whole step; threads write disjoint regions and synchronise with barriers (acquire/release)
// before reading each other's output.
unsafe impl Sync for SharedPlan<'_> {}

impl<'a> SharedPlan<'a> {
    /// Method access, so closures capture the `Sync` wrapper rather than its field.
    fn plan(&self) -> &StepPlan<'a> {
        &self.0
    }
}

impl CpuEngine {
    /// `kernels[l]` is `[in, out]` row-major, `biases[l]` is `[out]`, for `dims[l] = (in, out)`.
    pub(crate) fn new(
        dims: &[(usize, usize)],
        kernels: &[Vec<f32>],
        biases: &[Vec<f32>],
        dropout: Option<DropoutMasks>,
        threads: usize,
        isa: Isa,
    ) -> Result<Self, ModelError> {
        let mut layers = Vec::with_capacity(dims.len());
        let mut k = dims.first().map_or(0, |d| d.0);
        let input_dim = k;
        for ((&(fan_in, n), kernel), bias) in dims.iter().zip(kernels).zip(biases) {
            let np = padded(n);
            // One spare cache line per panel keeps panels from being 4 KiB-aligned to each other.
            let panel_stride = k * PANEL + PANEL;
            let len = panel_stride * (np / PANEL);
            let mut b = vec![0f32; np];
            b[..n].copy_from_slice(bias);
            let mut layer = Layer {
                k,
                n,
                np,
                panel_stride,
                w: AlignedBuf::zeroed(len),
                accum: AlignedBuf::zeroed(len),
                bias: b,
                bias_accum: vec![0f32; np],
            };
            for (r, src) in kernel.chunks_exact(n).take(fan_in).enumerate() {
                for (c, &v) in src.iter().enumerate() {
                    let at = layer.index(r, c);
                    layer.w.as_mut_slice()[at] = v;
                }
            }
            layers.push(layer);
            k = np;
        }
        Ok(CpuEngine {
            isa,
            team: Team::new(threads).map_err(|e| match e {
                cpu_kernels::CpuKernelsError::ThreadPool { threads, source } => {
                    ModelError::ThreadPool { threads, source }
                }
                other => ModelError::ThreadPool {
                    threads,
                    source: std::io::Error::other(other.to_string()),
                },
            })?,
            input_dim,
            layers,
            dropout,
            scratch: Scratch::default(),
        })
    }

    pub(crate) fn threads(&self) -> usize {
        self.team.threads()
    }

    pub(crate) fn isa_name(&self) -> &'static str {
        self.isa.name()
    }

    fn grow_scratch(&mut self, rows: usize) {
        let s = &mut self.scratch;
        if s.rows >= rows {
            return;
        }
        let hidden = self.layers.len() - 1;
        s.acts = self
            .layers
            .iter()
            .map(|l| vec![0f32; rows * leading_dim(l.np)])
            .collect();
        s.grads = self
            .layers
            .iter()
            .map(|l| vec![0f32; rows * leading_dim(l.np)])
            .collect();
        s.masks = self.layers[..hidden]
            .iter()
            .map(|l| vec![0f32; rows * leading_dim(l.np)])
            .collect();
        s.row_loss = vec![0f32; rows];
        s.row_class = vec![0u32; rows];
        s.rows = rows;
    }

    /// One SGD step on `m` examples (already validated by the caller: `x` is `[m, input_dim]`,
    /// labels are `< num_classes`).
    pub(crate) fn train_step(
        &mut self,
        x: &[f32],
        labels: &[u8],
        optimizer: SgdMomentum,
        step: u64,
    ) -> BatchMetrics {
        let m = labels.len();
        self.grow_scratch(m);
        let hidden = self.layers.len() - 1;
        let scratch = &mut self.scratch;
        let layers: Vec<LayerView> = self
            .layers
            .iter_mut()
            .enumerate()
            .map(|(l, layer)| {
                let ld = leading_dim(layer.np);
                LayerView {
                    k: layer.k,
                    n: layer.n,
                    np: layer.np,
                    w: Layer::packed(&mut layer.w, layer.panel_stride),
                    accum: Layer::packed(&mut layer.accum, layer.panel_stride),
                    bias: layer.bias.as_mut_ptr(),
                    bias_accum: layer.bias_accum.as_mut_ptr(),
                    act: MatMut {
                        ptr: scratch.acts[l].as_mut_ptr(),
                        ld,
                    },
                    grad: MatMut {
                        ptr: scratch.grads[l].as_mut_ptr(),
                        ld,
                    },
                    mask: (l < hidden && self.dropout.is_some()).then(|| MatMut {
                        ptr: scratch.masks[l].as_mut_ptr(),
                        ld,
                    }),
                }
            })
            .collect();
        let plan = SharedPlan(StepPlan {
            isa: self.isa,
            x: MatRef {
                ptr: x.as_ptr(),
                ld: self.input_dim,
            },
            m,
            labels,
            layers,
            dropout: self.dropout,
            step,
            optimizer,
            row_loss: scratch.row_loss.as_mut_ptr(),
            row_class: scratch.row_class.as_mut_ptr(),
        });
        let phases = plan.plan().phases(self.team.threads());
        let chunks: Vec<usize> = phases.iter().map(|&(_, chunks)| chunks).collect();
        self.team.run(&chunks, |phase, chunk, chunks| {
            // SAFETY: see `SharedPlan`; buffers were sized for `m` rows above, and the team
            // runs the phases in order.
            unsafe { plan.plan().run_chunk(phases[phase].0, chunk, chunks) }
        });
        let mut metrics = BatchMetrics {
            examples: m,
            ..BatchMetrics::default()
        };
        for ((&loss, &class), &label) in scratch.row_loss[..m]
            .iter()
            .zip(&scratch.row_class[..m])
            .zip(labels)
        {
            metrics.loss_sum += f64::from(loss);
            metrics.correct += usize::from(class == u32::from(label));
        }
        metrics
    }

    /// Logits `[rows, num_classes]` (dropout off), computed in chunks with rows split across
    /// the team. `x` is `[rows, input_dim]`.
    pub(crate) fn logits(&self, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.input_dim.max(1);
        let classes = self.layers.last().map_or(0, |l| l.n);
        let mut out = Vec::with_capacity(rows * classes);
        let chunk_rows = rows.clamp(1, INFERENCE_CHUNK_ROWS);
        let mut acts: Vec<Vec<f32>> = self
            .layers
            .iter()
            .map(|l| vec![0f32; chunk_rows * leading_dim(l.np)])
            .collect();
        for chunk in x.chunks(chunk_rows * self.input_dim) {
            let m = chunk.len() / self.input_dim;
            let views: Vec<(MatMut, &Layer)> = acts
                .iter_mut()
                .zip(&self.layers)
                .map(|(a, l)| {
                    (
                        MatMut {
                            ptr: a.as_mut_ptr(),
                            ld: leading_dim(l.np),
                        },
                        l,
                    )
                })
                .collect();
            let shared = SharedViews {
                x: MatRef {
                    ptr: chunk.as_ptr(),
                    ld: self.input_dim,
                },
                layers: &views,
            };
            let isa = self.isa;
            let last = self.layers.len() - 1;
            // Rows are independent at inference: each chunk runs all layers on its own rows.
            let chunks = m.div_ceil(16).min(CHUNKS_PER_THREAD * self.team.threads());
            self.team.run(&[chunks], |_, chunk, chunks| {
                let my_rows = share(m, 1, chunks, chunk);
                let (x, layers) = shared.parts();
                let mut input = x;
                for (l, (out, layer)) in layers.iter().enumerate() {
                    let f = Forward {
                        x: input,
                        k: layer.k,
                        // Inference only reads the weights; `Packed` is shared with the update path.
                        w: Packed {
                            ptr: layer.w.as_slice().as_ptr().cast_mut(),
                            panel_stride: layer.panel_stride,
                        },
                        bias: layer.bias.as_ptr(),
                        out: *out,
                        relu: l < last,
                        mask: None,
                    };
                    // SAFETY: `out` has `chunk_rows >= m` rows; this chunk owns `my_rows`.
                    unsafe { kernels::dense_forward(isa, &f, my_rows.clone(), 0..layer.np) };
                    input = out.as_ref();
                }
            });
            let (logits_ld, logits) = (leading_dim(self.layers[last].np), &acts[last]);
            for r in 0..m {
                out.extend_from_slice(&logits[r * logits_ld..r * logits_ld + classes]);
            }
        }
        out
    }

    /// Weights in Keras layout: `([in, out] kernel, [out] bias)` per layer, padding removed.
    pub(crate) fn weights(&self) -> Vec<crate::LayerParams> {
        let mut fan_in = self.input_dim;
        self.layers
            .iter()
            .map(|l| {
                let w = l.w.as_slice();
                let mut kernel = Vec::with_capacity(fan_in * l.n);
                for r in 0..fan_in {
                    kernel.extend((0..l.n).map(|c| w[l.index(r, c)]));
                }
                fan_in = l.n;
                (kernel, l.bias[..l.n].to_vec())
            })
            .collect()
    }
}

struct SharedViews<'a> {
    x: MatRef,
    layers: &'a [(MatMut, &'a Layer)],
}
// SAFETY: during inference threads write disjoint rows of the activation buffers and only read
// the weights and the input.
unsafe impl Sync for SharedViews<'_> {}

impl<'a> SharedViews<'a> {
    fn parts(&self) -> (MatRef, &'a [(MatMut, &'a Layer)]) {
        (self.x, self.layers)
    }
}

/// One kind of phase of a training step; see [`StepPlan::phases`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Dropout masks of every hidden layer (rows split between chunks).
    Masks,
    /// Forward pass of hidden layer `l` (column panels split).
    Forward(usize),
    /// Output layer forward, softmax cross-entropy and its gradient (rows split).
    Output,
    /// Backward pass of layer `l`: the input gradient for the layer below (if any) and the
    /// fused gradient + momentum update of `W` (weight rows split), and of the bias (columns split).
    Backward(usize),
}

/// Chunks per phase and thread: a little more than one, so a member that loses its core for a
/// moment only delays a small piece of a phase.
const CHUNKS_PER_THREAD: usize = 2;

impl StepPlan<'_> {
    /// The step's phases in order, each with its number of chunks.
    fn phases(&self, threads: usize) -> Vec<(Phase, usize)> {
        let chunks = CHUNKS_PER_THREAD * threads;
        let last = self.layers.len() - 1;
        let mut phases = Vec::with_capacity(2 * self.layers.len() + 1);
        if self.dropout.is_some() && last > 0 {
            phases.push((Phase::Masks, chunks.min(self.m)));
        }
        for (l, layer) in self.layers[..last].iter().enumerate() {
            phases.push((Phase::Forward(l), chunks.min(layer.np / PANEL)));
        }
        phases.push((Phase::Output, chunks.min(self.m)));
        for l in (0..=last).rev() {
            phases.push((Phase::Backward(l), chunks.min(self.layers[l].k)));
        }
        phases
    }

    /// Runs chunk `chunk` of `chunks` of `phase`.
    ///
    /// # Safety
    /// The plan's pointers must be valid for `m` rows and owned by this step, every chunk of the
    /// earlier phases must have completed, and no other thread may run the same chunk.
    unsafe fn run_chunk(&self, phase: Phase, chunk: usize, chunks: usize) {
        let m = self.m;
        let isa = self.isa;
        let last = self.layers.len() - 1;
        match phase {
            Phase::Masks => {
                let Some(dropout) = &self.dropout else { return };
                for (l, layer) in self.layers[..last].iter().enumerate() {
                    let Some(mask) = layer.mask else { continue };
                    let rows = share(m, 1, chunks, chunk);
                    if rows.is_empty() {
                        continue;
                    }
                    // SAFETY: these rows of the mask buffer belong to this chunk; the buffer has
                    // `m` rows of `mask.ld` floats.
                    let block = unsafe {
                        std::slice::from_raw_parts_mut(mask.at(rows.start, 0), rows.len() * mask.ld)
                    };
                    dropout.fill_rows(l, self.step, rows.start, layer.n, block, mask.ld);
                }
            }
            Phase::Forward(l) => {
                let layer = &self.layers[l];
                let f = Forward {
                    x: self.input_of(l),
                    k: layer.k,
                    w: layer.w,
                    bias: layer.bias,
                    out: layer.act,
                    relu: true,
                    mask: layer.mask.map(MatMut::as_ref),
                };
                // SAFETY: this chunk owns its column panels of `act`; the input is complete.
                unsafe {
                    kernels::dense_forward(isa, &f, 0..m, share(layer.np, PANEL, chunks, chunk))
                };
            }
            Phase::Output => {
                let out = &self.layers[last];
                let rows = share(m, 1, chunks, chunk);
                let f = Forward {
                    x: self.input_of(last),
                    k: out.k,
                    w: out.w,
                    bias: out.bias,
                    out: out.act,
                    relu: false,
                    mask: None,
                };
                // SAFETY: this chunk owns `rows` of the logits and of the output gradient.
                unsafe { kernels::dense_forward(isa, &f, rows.clone(), 0..out.np) };
                let inv_m = 1.0 / m as f32;
                let mut probs = [0f32; crate::MAX_CLASSES];
                for r in rows {
                    // SAFETY: rows owned by this chunk; logits/grad rows hold `np >= n` values.
                    unsafe {
                        let logits = std::slice::from_raw_parts(out.act.at(r, 0), out.n);
                        let grad = std::slice::from_raw_parts_mut(out.grad.at(r, 0), out.np);
                        let label = usize::from(self.labels[r]);
                        let outcome =
                            cross_entropy_row(logits, label, &mut probs, Some((grad, inv_m)));
                        *self.row_loss.add(r) = outcome.loss;
                        *self.row_class.add(r) = outcome.class as u32;
                    }
                }
            }
            Phase::Backward(l) => {
                let layer = &self.layers[l];
                let opt = self.optimizer;
                let weight_rows = share(layer.k, 1, chunks, chunk);
                let layer_input = self.input_of(l);
                if l > 0 {
                    let g = InputGrad {
                        dy: layer.grad.as_ref(),
                        m,
                        n: layer.np,
                        w: layer.w,
                        act_prev: layer_input,
                        scale: self.dropout.map_or(1.0, |d| d.scale),
                        out: self.layers[l - 1].grad,
                    };
                    // SAFETY: this chunk owns columns `weight_rows` of the layer below's
                    // gradient and reads only its own rows of W, which nobody updates yet.
                    unsafe { kernels::dense_input_grad(isa, &g, weight_rows.clone()) };
                }
                let u = WeightUpdate {
                    x: layer_input,
                    m,
                    dy: layer.grad.as_ref(),
                    n: layer.np,
                    accum: layer.accum,
                    w: layer.w,
                    momentum: opt.momentum,
                    learning_rate: opt.learning_rate,
                };
                // SAFETY: this chunk owns rows `weight_rows` of W and of its accumulator, and
                // has already read them for the input gradient above.
                unsafe { kernels::dense_weight_update(isa, &u, weight_rows) };
                // SAFETY: this chunk owns its share of the bias columns and accumulators.
                unsafe {
                    kernels::bias_update(
                        layer.grad.as_ref(),
                        m,
                        share(layer.np, PANEL, chunks, chunk),
                        layer.bias_accum,
                        layer.bias,
                        opt.momentum,
                        opt.learning_rate,
                    )
                };
            }
        }
    }

    /// What layer `l` reads: the batch for the first layer, else the layer below's output.
    fn input_of(&self, l: usize) -> MatRef {
        if l == 0 {
            self.x
        } else {
            self.layers[l - 1].act.as_ref()
        }
    }
}
