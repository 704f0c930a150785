//! cpu-kernels: the f32 CPU kernels of the workspace, in one place.
//!
//! # Why this crate exists
//!
//! The trainer's engine (`mnist-model`) and the SavedModel runtime (`savedmodel-runtime`) both
//! spend their time in Dense layers (`x . W + b` and an activation). Hand-written kernels over
//! packed weights run the reference MLP several times faster than candle's generic matmul on a
//! small CPU, so both use these, and the project carries one GEMM stack instead of two. The
//! crate has no dependencies besides `thiserror`; `gemm`/candle were measured slower for these
//! shapes (see `BENCHMARKS.md`).
//!
//! # What is here
//!
//! * [`kernels`]: the three fused products of a training step (forward, input gradient, fused
//!   gradient + momentum update) over raw matrix views, with run-time ISA choice ([`Isa`]):
//!   AVX-512F where present, AVX2+FMA otherwise, portable Rust as the fallback.
//! * [`infer`]: inference Dense layers with packed weights ([`DenseLayer`]), tiled over rows,
//!   skipping zero inputs, run on a process-wide thread team whose size never depends on
//!   environment variables; the chunk count comes from the size of each call.
//!   [`forward_stack`] runs several layers (an MLP) block of rows by block of rows, so the
//!   activations between them stay in cache.
//! * [`conv`]: NHWC convolution as im2col + [`DenseLayer`], depthwise convolution, pooling.
//! * [`team`]: the fixed thread team both use (phases of chunks claimed through one counter).
//!
//! # Same bits on every ISA
//!
//! Each output element is one chain of fused multiply-adds in a fixed order, whatever tile,
//! thread or ISA computes it: the AVX-512 kernels use one 16-lane register where AVX2 uses two
//! 8-lane halves; the input gradient (a horizontal reduction) runs the AVX2 kernel under
//! AVX-512 too, and the portable kernels spell out the same lanes with `f32::mul_add`. Training
//! is therefore bit-identical across thread counts and across AVX2 / AVX-512 machines
//! (`mnist-model`'s `training_is_bit_identical_on_every_isa` test).
//!
//! # `unsafe`
//!
//! The raw kernels take pointers and leading dimensions, because the training engine lets
//! several threads write disjoint parts of one buffer; each is `unsafe fn` with its contract in
//! a `# Safety` section, and SIMD code runs only after [`Isa::available`] has checked the CPU.
//! [`DenseLayer`] and the [`conv`] functions are safe wrappers over slices that check every
//! shape first (errors: [`CpuKernelsError`]). Miri cannot run here (it needs a nightly toolchain, which the build machines
//! do not have); the portable kernels are what Miri would check.

mod avx2;
mod avx512;
pub mod conv;
mod error;
pub mod infer;
pub mod kernels;
pub mod team;

pub use error::CpuKernelsError;
pub use infer::{Activation, DenseLayer, forward_stack, forward_stack_with};
pub use kernels::{Forward, InputGrad, Isa, MatMut, MatRef, PANEL, Packed, WeightUpdate};
pub use team::{Team, share};
