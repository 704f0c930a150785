//! Inference: a Dense layer `act(x . W + b)` with its weights packed once ([`DenseLayer`]),
//! run over any number of rows on the shared thread team ([`DenseLayer::forward`]).
//!
//! The weights are stored panel-major like the training engine's ([`crate::Packed`]), padded
//! with zero columns to a multiple of [`PANEL`]. Skipping a zero input changes nothing:
//! `acc + 0 * w == acc` exactly for finite `w` (the accumulator starts at +0 and can never
//! become -0), so every output is one ordered chain of fused multiply-adds over its row's
//! non-zero inputs, whatever skips what, and all paths below give the same bits; layers whose
//! weights are not all finite never skip. It matters: MNIST digits are 81% zeros, and the
//! reference MLP's first ReLU output is 63% zeros.
//!
//! # Tiles, and how tall
//!
//! A call runs its rows in blocks of [`ROW_BLOCK`] (96). A block is cut into tiles of a few
//! rows; a tile runs over the input columns that are non-zero in at least one of its rows (the
//! union), keeping `rows x panels` outputs in registers and reusing each weight load for every
//! row. Taller tiles reuse more but skip less: over the MNIST test images a row is 19% non-zero,
//! the union of 2 rows 29%, of 6 rows 42%, of 12 rows 49%; after the first ReLU 37%, 57%
//! (2 rows) and 85% (6 rows). So the height is chosen per block from the block's own zeros:
//! the estimated cost of each height is (union x rows) multiply-adds times that height's
//! measured cost per multiply-add ([`height_costs`]), and the cheapest wins. The costs come
//! from `examples/tile_heights.rs`, which times the reference MLP's two wide layers on the
//! 10,000 test images with each height forced (AMD EPYC Zen 4, 2 threads; ns per 1000
//! multiply-adds actually run, 784->512 / 512->256): AVX-512 1 row 30/35, 2 rows 15/17,
//! 3 rows 12/11, 4 rows 11/10.5, 6 rows 10.6/10.2; AVX2 1 row 33/35, 2 rows 18/17, 3 rows
//! 14/12, 4 rows 14/12, 6 rows 12.6/10.6. Per layer, the fastest height overall was 3 rows
//! with AVX-512 for both layers, 3 rows (first) and 6 rows (second) with AVX2.
//! One row is load-bound (a weight load per FMA, from L2) and never wins once a block has two
//! rows, so the SIMD tables start at 2; batch 1 runs one-row tiles. The 12-row tile of the
//! first version was both the worst skipper and spilled its 24 accumulators; the AVX2 3-row
//! tile, until it covered two panels at once, had 6 accumulators and cost 1.5x the 6-row
//! tile per multiply-add.
//!
//! Column groups of [`COLUMN_GROUP`] panels are the outer loop within a block: a group's
//! weights (400 KB for the first layer) stay in L2 while every tile of the block runs over
//! them, instead of the whole 1.6 MB matrix streaming from L3 once per tile. Tried and
//! dropped, as they measured no better or worse: blocking over the inputs as well (blocks of
//! 32-128 inputs so that a group's block stays in L1, the chains continued from partial sums:
//! 10-40% slower, the extra accumulator loads and stores cost more than the L2 hits they
//! save), software prefetch of the next listed inputs' weights (no change), and column groups
//! of 1, 2 or all panels and blocks of 384 rows (within the noise).
//!
//! # Threads
//!
//! Calls run on one process-wide [`Team`] with one member per available core
//! (`std::thread::available_parallelism`; `RAYON_NUM_THREADS` plays no part). How many chunks a
//! call is cut into follows from its work alone: one chunk per [`MACS_PER_CHUNK`]
//! multiply-adds, at most two per member (up to eight when the call has that many
//! [`ROW_BLOCK`]s: 10,000 rows run as 16 chunks on 2 cores), whole row tiles each. A call
//! below that (a single image through the reference MLP) runs on the calling thread and never
//! waits for another one. When another call already holds the team (concurrent requests in a server), the call
//! runs on its own thread instead of queueing. Results do not depend on any of this: each
//! output row is computed by one tile, whoever runs it.

use std::ops::Range;
use std::sync::OnceLock;

use crate::CpuKernelsError;
use crate::kernels::{Isa, PANEL};
use crate::team::{Team, share};

/// Multiply-adds worth handing to another thread (about 20-40 us of one core's work): the
/// hand-off costs a few microseconds when the members are spinning, more when they sleep.
pub const MACS_PER_CHUNK: usize = 1 << 20;

/// What follows the bias add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    /// `max(0, v)`; NaN passes through.
    Relu,
    /// `min(6, max(0, v))`.
    Relu6,
}

/// A Dense layer's weights, packed for the inference kernels.
#[derive(Debug, Clone)]
pub struct DenseLayer {
    k: usize,
    n: usize,
    np: usize,
    panel_stride: usize,
    /// Panel-major, `np / PANEL` panels of `panel_stride` floats.
    w: Vec<f32>,
    /// `np` entries, zero past `n`.
    bias: Vec<f32>,
    activation: Activation,
    /// Whether zero inputs may be skipped (all weights finite).
    skip_zeros: bool,
}

impl DenseLayer {
    /// `kernel` is `[k, n]` row-major (`transpose_b: false`) or `[n, k]` (`true`, as a
    /// `MatMul` with `transpose_b` stores it); `bias` is `[n]` or absent.
    pub fn new(
        kernel: &[f32],
        k: usize,
        n: usize,
        transposed: bool,
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<DenseLayer, CpuKernelsError> {
        if kernel.len() != k * n {
            return Err(CpuKernelsError::Weights {
                k,
                n,
                expected: k * n,
                found: kernel.len(),
            });
        }
        if let Some(b) = bias
            && b.len() != n
        {
            return Err(CpuKernelsError::Bias { n, found: b.len() });
        }
        let np = n.div_ceil(PANEL).max(1) * PANEL;
        // A spare cache line per panel keeps panels from being 4 KiB-aligned to each other.
        let panel_stride = k * PANEL + PANEL;
        let mut w = vec![0f32; panel_stride * (np / PANEL)];
        for r in 0..k {
            for c in 0..n {
                let v = if transposed {
                    kernel[c * k + r]
                } else {
                    kernel[r * n + c]
                };
                w[(c / PANEL) * panel_stride + r * PANEL + c % PANEL] = v;
            }
        }
        let mut padded_bias = vec![0f32; np];
        if let Some(b) = bias {
            padded_bias[..n].copy_from_slice(b);
        }
        Ok(DenseLayer {
            k,
            n,
            np,
            panel_stride,
            skip_zeros: kernel.iter().all(|v| v.is_finite()),
            w,
            bias: padded_bias,
            activation,
        })
    }

    /// Input width.
    pub fn rows_in(&self) -> usize {
        self.k
    }

    /// Output width.
    pub fn cols(&self) -> usize {
        self.n
    }

    pub(crate) fn panel_stride(&self) -> usize {
        self.panel_stride
    }

    pub fn activation(&self) -> Activation {
        self.activation
    }

    pub(crate) fn panel_ptr(&self, panel: usize) -> *const f32 {
        self.w[panel * self.panel_stride..].as_ptr()
    }

    pub(crate) fn bias_ptr(&self) -> *const f32 {
        self.bias.as_ptr()
    }

    /// Multiply-adds for `rows` rows (what the thread choice is based on).
    pub fn macs(&self, rows: usize) -> usize {
        rows.saturating_mul(self.k).saturating_mul(self.np)
    }

    /// `act(x . W + b)` for `x` `[rows, k]`, returned as `[rows, n]`, on the process-wide team
    /// with the detected ISA.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>, CpuKernelsError> {
        self.forward_with(Isa::detect(), x)
    }

    /// As [`DenseLayer::forward`], with a chosen ISA (which must be one of [`Isa::available`]).
    pub fn forward_with(&self, isa: Isa, x: &[f32]) -> Result<Vec<f32>, CpuKernelsError> {
        self.forward_tiled(isa, x, None)
    }

    /// As [`DenseLayer::forward_with`], with every tile `height` rows tall (1 to
    /// [`MAX_TILE_ROWS`]) instead of the height chosen per block: every height gives the same
    /// bits (tested), and `examples/tile_heights.rs` measures what each costs, which is where
    /// the table the choice uses comes from.
    pub fn forward_with_tile_height(
        &self,
        isa: Isa,
        x: &[f32],
        height: usize,
    ) -> Result<Vec<f32>, CpuKernelsError> {
        self.forward_tiled(isa, x, Some(height))
    }

    /// As [`DenseLayer::forward_with`]; `height` fixes the tile height instead of choosing it
    /// per block.
    fn forward_tiled(
        &self,
        isa: Isa,
        x: &[f32],
        height: Option<usize>,
    ) -> Result<Vec<f32>, CpuKernelsError> {
        run_stack(isa, &[self], x, height)
    }

    /// Runs one block of `rows` rows (at most [`ROW_BLOCK`]): chooses its tile height, lists
    /// each tile's non-zero inputs, then runs the tiles column group by column group (see the
    /// module docs).
    ///
    /// # Safety
    /// `x` holds at least `rows` rows of `k`; `out` points to at least `rows` rows of `n` floats
    /// that nobody else reads or writes during the call; `isa` is available.
    unsafe fn run_block(
        &self,
        isa: Isa,
        x: &[f32],
        out: *mut f32,
        rows: usize,
        fixed_height: Option<usize>,
    ) {
        debug_assert!(rows <= ROW_BLOCK);
        let panels = self.np / PANEL;
        let words = self.k.div_ceil(32);
        let mut union = vec![0u32; words];
        // The input columns each tile runs over, one list after another.
        let mut ks: Vec<u32> = Vec::new();
        let mut tiles: Vec<(Range<usize>, Range<usize>)> = Vec::new();
        let mut masks: Vec<u32> = Vec::new();
        let height = if self.skip_zeros {
            masks.reserve(rows * words);
            for r in 0..rows {
                nonzero_mask(isa, &x[r * self.k..(r + 1) * self.k], &mut masks);
            }
            if let Some(height) = fixed_height {
                height.clamp(1, MAX_TILE_ROWS)
            } else if panels < MIN_PANELS_FOR_SHORT_TILES {
                MAX_TILE_ROWS
            } else {
                cheapest_height(isa, &masks, words)
            }
        } else {
            fixed_height
                .unwrap_or(MAX_TILE_ROWS)
                .clamp(1, MAX_TILE_ROWS)
        };
        let mut t = 0;
        while t < rows {
            let tile = t..(t + height).min(rows);
            t = tile.end;
            let from = ks.len();
            if self.skip_zeros {
                union.fill(0);
                for i in tile.clone() {
                    for (u, m) in union.iter_mut().zip(&masks[i * words..(i + 1) * words]) {
                        *u |= m;
                    }
                }
                push_columns(isa, &union, &mut ks);
            } else {
                ks.extend(0..self.k as u32);
            }
            tiles.push((tile, from..ks.len()));
        }
        // Column groups outermost: a group's weights stay in L2 while every tile of the
        // block runs over them.
        let mut p = 0;
        while p < panels {
            let group = p..(p + COLUMN_GROUP).min(panels);
            p = group.end;
            for (tile_rows, list) in &tiles {
                let tile = InferTile {
                    layer: self,
                    x,
                    x_ld: self.k,
                    rows: tile_rows.clone(),
                    panels: group.clone(),
                    ks: &ks[list.clone()],
                    out,
                    out_ld: self.n,
                };
                // SAFETY: forwarded contract; the tile's rows are inside `0..rows`.
                unsafe { infer_tile(isa, &tile) };
            }
        }
    }
}

/// `layers[last](… layers[1](layers[0](x)))` for `x` `[rows, k]` of the first layer, returned
/// as `[rows, n]` of the last: the same bits as calling [`DenseLayer::forward`] layer after
/// layer, but each block of [`ROW_BLOCK`] rows goes through every layer before the next block
/// starts, so the intermediate activations (96 rows x 512 floats for the reference MLP, 196
/// KB) stay in the core's cache instead of being written to memory and read back for the
/// whole batch (20 MB per layer at 10,000 rows).
pub fn forward_stack(layers: &[&DenseLayer], x: &[f32]) -> Result<Vec<f32>, CpuKernelsError> {
    forward_stack_with(Isa::detect(), layers, x)
}

/// As [`forward_stack`], with a chosen ISA (which must be one of [`Isa::available`]).
pub fn forward_stack_with(
    isa: Isa,
    layers: &[&DenseLayer],
    x: &[f32],
) -> Result<Vec<f32>, CpuKernelsError> {
    run_stack(isa, layers, x, None)
}

/// [`forward_stack_with`], and with `height` every tile that tall instead of the height chosen
/// per block (a single layer is a stack of one: [`DenseLayer::forward_with`] runs here too).
fn run_stack(
    isa: Isa,
    layers: &[&DenseLayer],
    x: &[f32],
    height: Option<usize>,
) -> Result<Vec<f32>, CpuKernelsError> {
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
        return Err(CpuKernelsError::EmptyStack);
    };
    for (i, pair) in layers.windows(2).enumerate() {
        if pair[0].n != pair[1].k {
            return Err(CpuKernelsError::StackWidths {
                layer: i + 1,
                k: pair[1].k,
                previous_n: pair[0].n,
            });
        }
    }
    if first.k == 0 || !x.len().is_multiple_of(first.k) {
        return Err(CpuKernelsError::Input {
            k: first.k,
            found: x.len(),
        });
    }
    let rows = x.len() / first.k;
    let mut out = vec![0f32; rows * last.n];
    let macs = layers
        .iter()
        .map(|l| l.macs(rows))
        .fold(0, usize::saturating_add);
    let chunks = chunks_for(macs, rows, MAX_TILE_ROWS);
    let out_ptr = SendPtr(out.as_mut_ptr());
    // The last layer writes to `out`; only the ones before it need a buffer.
    let hidden_width = layers[..layers.len() - 1]
        .iter()
        .map(|l| l.n)
        .max()
        .unwrap_or(0);
    let run = |_: usize, chunk: usize, chunks: usize| {
        let mine = share(rows, MAX_TILE_ROWS, chunks, chunk);
        // Two block-sized buffers for the activations between layers, used in turn.
        let block_rows = ROW_BLOCK.min(mine.len());
        let mut buffers = [
            vec![0f32; block_rows * hidden_width],
            vec![0f32; block_rows * hidden_width],
        ];
        let mut start = mine.start;
        while start < mine.end {
            let block = start..(start + ROW_BLOCK).min(mine.end);
            start = block.end;
            let len = block.len();
            let x_block = &x[block.start * first.k..block.end * first.k];
            // Which buffer holds the previous layer's output (none: the input block).
            let mut previous: Option<usize> = None;
            for (i, layer) in layers.iter().enumerate() {
                let [b0, b1] = &mut buffers;
                let (input, output): (&[f32], &mut [f32]) = match previous {
                    None => (x_block, b0),
                    Some(0) => (b0, b1),
                    Some(_) => (b1, b0),
                };
                if i + 1 == layers.len() {
                    // SAFETY: `input` holds `len` rows of `layer.k`; `out` holds `rows` rows
                    // of `last.n` and this chunk is the only writer of rows `block`.
                    unsafe {
                        let out = out_ptr.get().add(block.start * last.n);
                        layer.run_block(isa, input, out, len, height)
                    };
                } else {
                    // SAFETY: `input` holds `len` rows of `layer.k`; `output` holds at least
                    // `len` rows of `layer.n` and is this chunk's own.
                    unsafe { layer.run_block(isa, input, output.as_mut_ptr(), len, height) };
                    previous = Some(usize::from(previous == Some(0)));
                }
            }
        }
    };
    if chunks <= 1 {
        run(0, 0, 1);
    } else {
        team().run_or_solo(&[chunks], run);
    }
    Ok(out)
}

/// Tile heights the kernels come in, and what a multiply-add costs in each, relative (measured,
/// see the module docs): a tile runs over the union of its rows' non-zero inputs, so taller
/// tiles reuse each weight load more but skip fewer zeros.
fn height_costs(isa: Isa) -> &'static [(usize, f64)] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => &[(2, 1.5), (3, 1.1), (4, 1.04), (6, 1.0)],
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => &[(2, 1.5), (3, 1.15), (4, 1.15), (6, 1.0)],
        Isa::Portable => &[(1, 1.0)],
    }
}

/// The tallest tile any kernel takes.
pub const MAX_TILE_ROWS: usize = 6;

/// The tile height with the least estimated cost for a block of rows with non-zero `masks`
/// (`words` per row).
fn cheapest_height(isa: Isa, masks: &[u32], words: usize) -> usize {
    let mut union = vec![0u32; words];
    let mut best = (f64::INFINITY, 1);
    for &(height, cost) in height_costs(isa) {
        let mut macs = 0usize;
        for tile in masks.chunks(words * height) {
            union.fill(0);
            for row in tile.chunks(words) {
                for (u, m) in union.iter_mut().zip(row) {
                    *u |= m;
                }
            }
            macs += count_ones(isa, &union) * (tile.len() / words);
        }
        let estimate = macs as f64 * cost;
        if estimate < best.0 {
            best = (estimate, height);
        }
    }
    best.1
}

/// Set bits in `words`: with the `popcnt` instruction where the CPU has it (every AVX2 CPU
/// does; the baseline x86-64 target counts with a dozen shifts and masks per word, which was
/// most of the height choice's cost).
fn count_ones(isa: Isa, words: &[u32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable && std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: popcnt was just detected.
        return unsafe { count_ones_popcnt(words) };
    }
    let _ = isa;
    words.iter().map(|w| w.count_ones() as usize).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn count_ones_popcnt(words: &[u32]) -> usize {
    words.iter().map(|w| w.count_ones() as usize).sum()
}

/// Rows handled together: each group of weight columns is loaded into L2 once per block
/// rather than once per tile, and the tile height is chosen per block.
pub const ROW_BLOCK: usize = 96;
/// Panels per column group: 8 x 16 columns of a 784-input layer are 400 KB, which stay in a
/// 1 MB L2 next to the block's inputs.
const COLUMN_GROUP: usize = 8;
/// Layers narrower than this run the tallest tiles: a short tile over one or two panels has
/// too few accumulators to hide the FMA latency.
const MIN_PANELS_FOR_SHORT_TILES: usize = 4;

/// Appends one bit per input of `row` (bit `j % 32` of word `j / 32`: set when non-zero,
/// NaN included).
fn nonzero_mask(isa: Isa, row: &[f32], masks: &mut Vec<u32>) {
    let whole = row.len() / 32 * 32;
    match isa {
        // SAFETY: AVX2 is checked by `Isa::available` (AVX-512 machines have it too).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma | Isa::Avx512 => unsafe { crate::avx2::nonzero_mask(&row[..whole], masks) },
        Isa::Portable => nonzero_mask_portable(&row[..whole], masks),
    }
    nonzero_mask_portable(&row[whole..], masks);
}

fn nonzero_mask_portable(row: &[f32], masks: &mut Vec<u32>) {
    for chunk in row.chunks(32) {
        let mut m = 0u32;
        for (j, v) in chunk.iter().enumerate() {
            m |= u32::from(*v != 0.0) << j;
        }
        masks.push(m);
    }
}

/// Appends the indices of the set bits of `mask`, ascending. Sized first and filled through
/// a local index: `Vec::push` kept the length in memory, one store-to-load chain per index.
fn push_columns(isa: Isa, mask: &[u32], ks: &mut Vec<u32>) {
    let start = ks.len();
    ks.resize(start + count_ones(isa, mask), 0);
    let out = &mut ks[start..];
    let mut i = 0;
    for (w, &m) in mask.iter().enumerate() {
        let mut m = m;
        while m != 0 {
            out[i] = w as u32 * 32 + m.trailing_zeros();
            i += 1;
            m &= m - 1;
        }
    }
}

/// One tile of an inference call (see [`DenseLayer::forward`]).
///
/// Contract of the kernels that take it: `x` holds rows `rows` of `x_ld >= layer.k` floats;
/// `ks` are ascending column indices `< layer.k`; `out` points to a buffer holding rows `rows`
/// of `out_ld >= layer.n` floats that only this tile writes; `rows.len()` is at most the ISA's
/// tile height.
pub(crate) struct InferTile<'a> {
    pub layer: &'a DenseLayer,
    pub x: &'a [f32],
    pub x_ld: usize,
    pub rows: Range<usize>,
    /// The panels (of [`PANEL`] output columns) to compute.
    pub panels: Range<usize>,
    pub ks: &'a [u32],
    pub out: *mut f32,
    pub out_ld: usize,
}

/// # Safety
/// See [`InferTile`]; `isa` must be available on this CPU.
unsafe fn infer_tile(isa: Isa, t: &InferTile<'_>) {
    match isa {
        // SAFETY: forwarded contract; AVX-512F checked by `Isa::available`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { crate::avx512::dense_infer(t) },
        // SAFETY: forwarded contract; AVX2 and FMA checked by `Isa::available`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { crate::avx2::dense_infer(t) },
        // SAFETY: forwarded contract.
        Isa::Portable => unsafe { portable_infer(t) },
    }
}

/// # Safety
/// See [`InferTile`].
unsafe fn portable_infer(t: &InferTile<'_>) {
    let layer = t.layer;
    for i in t.rows.clone() {
        for c in t.panels.start * PANEL..(t.panels.end * PANEL).min(layer.n) {
            let mut acc = 0f32;
            let panel = &layer.w[(c / PANEL) * layer.panel_stride..];
            for &kk in t.ks {
                let kk = kk as usize;
                acc = t.x[i * t.x_ld + kk].mul_add(panel[kk * PANEL + c % PANEL], acc);
            }
            let v = apply(layer.activation, acc + layer.bias[c]);
            // SAFETY: row i, column c < n is inside `out` (contract of `InferTile`).
            unsafe { *t.out.add(i * t.out_ld + c) = v };
        }
    }
}

/// The activation as the SIMD kernels compute it (`max(0, v)` lets NaN through).
pub(crate) fn apply(activation: Activation, v: f32) -> f32 {
    let relu = if v < 0.0 { 0.0 } else { v };
    match activation {
        Activation::None => v,
        Activation::Relu => relu,
        Activation::Relu6 => {
            if relu > 6.0 {
                6.0
            } else {
                relu
            }
        }
    }
}

/// Number of chunks for a call of `macs` multiply-adds over `rows` rows: see the module docs.
pub fn chunks_for(macs: usize, rows: usize, tile_rows: usize) -> usize {
    let threads = team_threads();
    let by_work = macs / MACS_PER_CHUNK;
    let by_rows = rows.div_ceil(tile_rows.max(1));
    // Two per member, or more for calls of many row blocks: a member that the OS delays then
    // costs the others a small chunk rather than a quarter of the call.
    let most = (2 * threads).max((rows / ROW_BLOCK).min(8 * threads));
    by_work.min(by_rows).min(most).max(1)
}

/// Threads of the process-wide team: one per available core, counted once. Asking the OS on
/// every call was the largest single cost of a batch-1 inference: `available_parallelism`
/// reads `/proc/self/cgroup` and the cgroup's `cpu.max` each time (tens of microseconds).
pub fn team_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process-wide team, started on first use.
pub(crate) fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        // A team that cannot start its members still runs everything on the caller.
        Team::new(team_threads()).unwrap_or_else(|_| Team::solo())
    })
}

/// A raw output pointer that the team's closures may share: each chunk writes its own rows.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: see `DenseLayer::forward_with`: the chunks write disjoint rows, and the team returns
// only after every chunk has finished.
unsafe impl Sync for SendPtr {}
// SAFETY: as above.
unsafe impl Send for SendPtr {}

impl SendPtr {
    /// Method access, so closures capture the `Sync` wrapper rather than its field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded values in [-1, 1), about one in `zeros_every` exactly zero (0: none).
    fn values(n: usize, seed: u64, zeros_every: usize) -> Vec<f32> {
        test_rng::signed_values(n, seed, zeros_every)
    }

    /// Straightforward f64 reference.
    fn reference(x: &[f32], w: &[f32], b: &[f32], k: usize, n: usize, act: Activation) -> Vec<f32> {
        let rows = x.len() / k;
        let mut out = vec![0f32; rows * n];
        for i in 0..rows {
            for c in 0..n {
                let mut s = b[c] as f64;
                for kk in 0..k {
                    s += x[i * k + kk] as f64 * w[kk * n + c] as f64;
                }
                out[i * n + c] = apply(act, s as f32);
            }
        }
        out
    }

    #[test]
    fn every_isa_matches_the_reference_and_each_other_bit_for_bit() {
        for (rows, k, n, act) in [
            (1, 784, 512, Activation::Relu),
            (13, 37, 10, Activation::None),
            (29, 64, 33, Activation::Relu6),
            (100, 5, 48, Activation::Relu),
        ] {
            let x: Vec<f32> = values(rows * k, 1, 3).iter().map(|v| v * 4.0).collect();
            let w = values(k * n, 2, 1000);
            let b = values(n, 3, 1000);
            let want = reference(&x, &w, &b, k, n, act);
            let layer = DenseLayer::new(&w, k, n, false, Some(&b), act).unwrap();
            let mut results = Vec::new();
            for isa in Isa::available() {
                let got = layer.forward_with(isa, &x).unwrap();
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (1.0 + g.abs().max(e.abs())) * (k as f32).sqrt();
                    assert!((g - e).abs() <= tol, "{isa:?} [{i}]: {g} vs {e}");
                }
                results.push((isa, got));
            }
            for (isa, got) in &results[1..] {
                assert!(
                    got.iter()
                        .zip(&results[0].1)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa:?} differs from the portable kernel"
                );
            }
        }
    }

    #[test]
    fn every_tile_height_gives_the_same_bits() {
        // Rows of different densities (images, ReLU outputs, dense rows) and widths that leave
        // partial column groups and panels.
        for (rows, k, n, zeros_every) in [(200, 784, 144, 5), (97, 70, 200, 2), (13, 33, 70, 1000)]
        {
            let x: Vec<f32> = values(rows * k, 11, 0)
                .iter()
                .zip(values(rows * k, 12, zeros_every))
                .map(|(v, keep)| if keep == 0.0 { 0.0 } else { *v })
                .map(|v| if v < 0.5 { 0.0 } else { v })
                .collect();
            let w = values(k * n, 13, 1000);
            let b = values(n, 14, 1000);
            let layer = DenseLayer::new(&w, k, n, false, Some(&b), Activation::Relu).unwrap();
            let want = layer.forward_tiled(Isa::Portable, &x, Some(1)).unwrap();
            for isa in Isa::available() {
                for height in 1..=MAX_TILE_ROWS {
                    let got = layer.forward_tiled(isa, &x, Some(height)).unwrap();
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa:?}, tiles of {height} rows, {rows}x{k}x{n}: differs"
                    );
                }
                assert_eq!(
                    layer.forward_with(isa, &x).unwrap(),
                    want,
                    "{isa:?} chosen heights"
                );
            }
        }
    }

    #[test]
    fn every_isa_finds_the_same_non_zeros() {
        let mut row: Vec<f32> = values(100, 15, 2);
        row[3] = f32::NAN;
        row[40] = -0.0;
        row[70] = f32::INFINITY;
        let mut want = Vec::new();
        nonzero_mask_portable(&row, &mut want);
        assert_eq!(want.len(), 4);
        assert_ne!(want[0] & (1 << 3), 0, "NaN is not zero");
        assert_eq!(want[1] & (1 << 8), 0, "-0 is zero");
        for isa in Isa::available() {
            let mut got = Vec::new();
            nonzero_mask(isa, &row, &mut got);
            assert_eq!(got, want, "{isa:?}");
        }
    }

    #[test]
    fn the_cheapest_height_follows_the_density() {
        let words = 784usize.div_ceil(32);
        // Sparse rows with no common non-zero: the union grows with the height, the shortest
        // tile wins.
        let mut masks = vec![0u32; 96 * words];
        for r in 0..96 {
            masks[r * words + r % words] = 1 << (r % 32);
        }
        for isa in Isa::available() {
            let shortest = height_costs(isa).iter().map(|h| h.0).min().unwrap();
            assert_eq!(cheapest_height(isa, &masks, words), shortest, "{isa:?}");
        }
        // Dense rows: every height runs the same multiply-adds, the tallest reuses most.
        let dense = vec![u32::MAX; 96 * words];
        #[cfg(target_arch = "x86_64")]
        for isa in [Isa::Avx2Fma, Isa::Avx512] {
            if Isa::available().contains(&isa) {
                assert_eq!(
                    cheapest_height(isa, &dense, words),
                    MAX_TILE_ROWS,
                    "{isa:?}"
                );
            }
        }
    }

    #[test]
    fn transposed_weights_give_the_same_layer() {
        let (k, n) = (9, 20);
        let w = values(k * n, 5, 1000);
        let mut wt = vec![0f32; k * n];
        for r in 0..k {
            for c in 0..n {
                wt[c * k + r] = w[r * n + c];
            }
        }
        let x = values(7 * k, 6, 4);
        let a = DenseLayer::new(&w, k, n, false, None, Activation::None).unwrap();
        let b = DenseLayer::new(&wt, k, n, true, None, Activation::None).unwrap();
        assert_eq!(a.forward(&x).unwrap(), b.forward(&x).unwrap());
    }

    #[test]
    fn non_finite_weights_are_not_skipped() {
        // 0 * inf is NaN in TensorFlow too: skipping the zero input would hide it.
        let w = [f32::INFINITY, 1.0];
        let layer = DenseLayer::new(&w, 2, 1, false, None, Activation::None).unwrap();
        let out = layer.forward(&[0.0, 1.0]).unwrap();
        assert!(out[0].is_nan());
    }

    #[test]
    fn bad_shapes_are_reported() {
        assert!(matches!(
            DenseLayer::new(&[0.0; 5], 2, 3, false, None, Activation::None),
            Err(CpuKernelsError::Weights {
                k: 2,
                n: 3,
                expected: 6,
                found: 5
            })
        ));
        let layer = DenseLayer::new(&[0.0; 6], 2, 3, false, None, Activation::None).unwrap();
        assert!(matches!(
            layer.forward(&[1.0; 3]),
            Err(CpuKernelsError::Input { k: 2, found: 3 })
        ));
        assert!(matches!(
            DenseLayer::new(&[0.0; 6], 2, 3, false, Some(&[0.0]), Activation::None),
            Err(CpuKernelsError::Bias { n: 3, found: 1 })
        ));
    }

    #[test]
    fn large_calls_are_split_and_give_the_same_rows() {
        let (k, n) = (300, 64);
        let w = values(k * n, 8, 1000);
        let x = values(500 * k, 9, 2);
        let layer = DenseLayer::new(&w, k, n, false, None, Activation::Relu).unwrap();
        assert!(chunks_for(layer.macs(500), 500, 12) > 1 || team_threads() == 1);
        let all = layer.forward(&x).unwrap();
        for r in [0, 17, 499] {
            let one = layer.forward(&x[r * k..(r + 1) * k]).unwrap();
            assert_eq!(one, all[r * n..(r + 1) * n]);
        }
    }

    #[test]
    fn a_stack_gives_the_bits_of_its_layers_one_by_one() {
        // Widths that leave partial panels, an activation of each kind, and row counts that
        // are a single row, not a whole block, several blocks, and enough to be split.
        let shapes = [
            (70, 200, Activation::Relu),
            (200, 33, Activation::Relu6),
            (33, 10, Activation::None),
        ];
        let layers: Vec<DenseLayer> = shapes
            .iter()
            .zip(1u64..)
            .map(|(&(k, n, act), seed)| {
                let w = values(k * n, 20 + seed, 1000);
                let b = values(n, 30 + seed, 1000);
                DenseLayer::new(&w, k, n, false, Some(&b), act).unwrap()
            })
            .collect();
        let stack: Vec<&DenseLayer> = layers.iter().collect();
        for rows in [0, 1, 95, 97, 500] {
            let x = values(rows * 70, 40 + rows as u64, 3);
            for isa in Isa::available() {
                let mut want = x.clone();
                for layer in &layers {
                    want = layer.forward_with(isa, &want).unwrap();
                }
                let got = forward_stack_with(isa, &stack, &x).unwrap();
                assert_eq!(got.len(), rows * 10);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa:?}, {rows} rows: the stack differs from its layers"
                );
            }
        }
        // One layer is a stack too.
        let x = values(40 * 70, 50, 3);
        assert_eq!(
            forward_stack(&stack[..1], &x).unwrap(),
            layers[0].forward(&x).unwrap()
        );
    }

    #[test]
    fn a_stack_that_does_not_fit_is_reported() {
        let a = DenseLayer::new(&[0.5; 6], 2, 3, false, None, Activation::None).unwrap();
        let b = DenseLayer::new(&[0.5; 8], 4, 2, false, None, Activation::None).unwrap();
        assert!(matches!(
            forward_stack(&[], &[1.0; 2]),
            Err(CpuKernelsError::EmptyStack)
        ));
        let err = forward_stack(&[&a, &a, &b], &[1.0; 4]).unwrap_err();
        assert!(
            matches!(
                err,
                CpuKernelsError::StackWidths {
                    layer: 1,
                    k: 2,
                    previous_n: 3
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "layer 1 of the stack takes 2 inputs, but the layer before it gives 3"
        );
        assert!(matches!(
            forward_stack(&[&a], &[1.0; 3]),
            Err(CpuKernelsError::Input { k: 2, found: 3 })
        ));
    }
}
