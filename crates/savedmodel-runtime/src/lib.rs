//! savedmodel-runtime: runs the signatures of a TensorFlow SavedModel on candle tensors and
//! the `cpu-kernels` GEMM, without TensorFlow.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::BTreeMap;
//! use savedmodel_runtime::{HostTensor, LoadedModel, TensorData};
//!
//! let dir = storage::Location::parse("testdata/savedmodels/tf1-tutorial")?;
//! let model = LoadedModel::load_blocking(&dir, &["serve"], &candle_core::Device::Cpu)?;
//! let image = HostTensor::new(vec![1, 784], TensorData::F32(vec![0.0; 784]))?;
//! let outputs = model.run("serving_default", &BTreeMap::from([("image".to_string(), image)]))?;
//! println!("{:?}", outputs["class"]);
//! # Ok(())
//! # }
//! ```
//!
//! # Why a separate crate
//!
//! `savedmodel-format` reads and writes the files (protobuf messages, the variables bundle) and
//! has no numeric dependencies; the trainer's exporter uses it without pulling in an executor.
//! Evaluating a graph needs candle and an op library: that lives here, on top of the format
//! crate and `storage` (which fetches the files from a local path or `gs://`). The predictor
//! and the HTTP server depend on this crate only.
//!
//! # How a model is loaded
//!
//! 1. `saved_model.pb` is decoded and the meta graph whose tag set *equals* the requested one is
//!    selected (TensorFlow's rule).
//! 2. The graph is flattened (`graph.rs`): every function call (`StatefulPartitionedCall`,
//!    `PartitionedCall`, or a node whose op is a library function) is inlined, and every input
//!    string — `node:k` at top level, `node:out_arg:i` inside function bodies, `^node` control
//!    edges — is resolved to a `(node, flat output index)` pair using the op signatures in
//!    `meta_info_def.stripped_op_list` (or a built-in table). TF1 graphs and TF2 function graphs
//!    then look alike.
//! 3. Every signature (except `__saved_model_init_op`) is compiled into a plan (`plan.rs`): the
//!    graph is pruned from the signature's outputs back to its inputs; `Switch` predicates that
//!    are constant for the signature (the TF1 Keras `keras_learning_phase`
//!    PlaceholderWithDefault, not fed) are folded so that the untaken branch — dropout's
//!    `RandomUniform` — is dropped; pass-through nodes become aliases. Every op left must be
//!    supported: otherwise loading fails with **one** error listing every unsupported op type
//!    (with a node name for each) across all signatures. A model loads fully or not at all.
//! 4. Variables are restored (`variables.rs`): the restore subgraph named by
//!    `saver_def.restore_op_name` is walked (not run) to find which checkpoint key each
//!    `VariableV2`/`VarHandleOp` is assigned from, both for TF1 savers and TF2 restore functions;
//!    variables it does not mention fall back to a key equal to their name. Graph dtype and
//!    shape are checked against the bundle's, and each tensor's checksum is verified by the
//!    format crate. Only variables that some signature reads are loaded into memory.
//!
//! # How a signature runs
//!
//! Inputs are checked against the signature (unknown or missing keys, dtype, shape; each error
//! names the input key and what was expected). Inputs left out fall back to the signature's
//! `defaults` or the graph's `PlaceholderWithDefault`. [`LoadedModel::run_outputs`] computes a
//! subset of the outputs (TF Serving's `output_filter`) and runs only the steps they need.
//!
//! Steps run in topological order with TensorFlow's dead-tensor semantics (a `Switch` kills its
//! untaken output, ops with a dead input are skipped, `Merge` forwards its first live input).
//! Floating-point tensors live on the candle device and are computed in f32; integer, bool and
//! string tensors (shapes, axes, slice bounds, class ids) are computed on the host. Intermediate
//! values are dropped after their last use. A [`LoadedModel`] is immutable after loading, so it
//! is `Send + Sync` and `run` takes `&self`.
//!
//! # Supported ops
//!
//! [`SUPPORTED_OPS`]: graph structure (`Placeholder`, `PlaceholderWithDefault`, `Const`,
//! `Identity`, `IdentityN`, `Snapshot`, `StopGradient`, `NoOp`, control edges, function calls),
//! control flow (`Switch`, `RefSwitch`, `Merge`, `RefMerge`), variables (`VariableV2`,
//! `VarHandleOp`, `ReadVariableOp`, `RefIdentity`), dense math (`MatMul` with transposes,
//! `BatchMatMulV2/V3`, `BiasAdd`), element-wise ops (`Add`, `AddV2`, `AddN`, `Sub`, `Mul`, `RealDiv`, `Div`, `Maximum`, `Minimum`,
//! `SquaredDifference`, `Pow`, `ClipByValue`), activations (`Relu`, `Relu6`, `LeakyRelu`, `Elu`,
//! `Selu`, `Softplus`, `Softsign`, `Sigmoid`, `Tanh`, `Softmax`, `LogSoftmax`), math (`Exp`,
//! `Log`, `Log1p`, `Sqrt`, `Rsqrt`, `Square`, `Neg`, `Abs`, `Erf`, `Floor`, `Reciprocal`),
//! reductions (`Sum`, `Mean`, `Max`, `Min`, `Prod`, `ArgMax`, `ArgMin`), shapes (`Cast`,
//! `Reshape`, `Shape`, `Size`, `Rank`, `ExpandDims`, `Squeeze`, `StridedSlice`, `Pack`,
//! `ConcatV2`, `Transpose`, `Fill`, `ZerosLike`, `OnesLike`), `LogicalNot`, and NHWC layers
//! (`Conv2D` with VALID/SAME/EXPLICIT padding, strides and dilations; `DepthwiseConv2dNative`,
//! `Conv2DBackpropInput`, `MaxPool`, `AvgPool`, `FusedBatchNorm`/`V2`/`V3` in inference mode,
//! `Pad`, `PadV2`). `data_format = "NCHW"` and training-mode batch norm are refused at load.
//!
//! # Dense and convolution layers run on `cpu-kernels`
//!
//! `MatMul` and `Conv2D` run on the same hand-written kernels as the trainer (`cpu-kernels`,
//! AVX-512 / AVX2+FMA / portable chosen at run time), not on candle's matmul: the planner fuses
//! each `MatMul`/`Conv2D` -> `BiasAdd` -> `Relu`/`Relu6` chain into one step whose bias and
//! activation run in the GEMM's epilogue (`plan.rs`, `nn.rs`); weights are packed once, the
//! first time a weight tensor is seen. Consecutive `MatMul` chains whose values feed only the
//! next chain (an MLP's layers) then run as one step that takes each block of rows through
//! every layer while the activations are still in cache (`cpu_kernels::forward_stack`; same
//! bits as layer by layer). Convolutions are im2col + that GEMM. How many threads a
//! call uses follows from its size (one for a single MNIST image through the tutorial MLP, all
//! cores for large batches), never from `RAYON_NUM_THREADS`: see `cpu_kernels::infer`.
//!
//! Nodes reached only through control edges (`^node`) matter for their liveness, not their
//! value, so their ops need not be supported (TF2 functions gate outputs on a `NoOp` that
//! depends on every variable read). The init op (`__saved_model_init_op`, `legacy_init_op`) is
//! not run: for the models this runtime supports it is a `NoOp`.
//!
//! Not supported: TF1 while loops (cycles), functional control flow (`If`/`While`), sparse or
//! composite signature tensors, string processing, lookup tables, `saved_model.pbtxt` (the
//! text format), partitioned variables.

mod budget;
mod consts;
mod error;
mod graph;
mod kernels;
mod nn;
mod ops;
mod plan;
mod value;
mod variables;

use std::collections::BTreeMap;

use bytes::Bytes;
use candle_core::Device;
use prost::Message;
use savedmodel_format::bundle::{BundleIndex, VARIABLES_INDEX};
use savedmodel_format::proto::{MetaGraphDef, SavedModel};

pub use budget::{DEFAULT_MAX_BATCH, DEFAULT_MEMORY_BUDGET, LoadLimits};
pub use error::{RuntimeError, UnsupportedNode, UnsupportedOps};
pub use kernels::SUPPORTED_OPS;
pub use savedmodel_format::{
    DEFAULT_SIGNATURE, DataType, HostTensor, SignatureInfo, TensorData, TensorSpec,
};

use graph::FlatGraph;
use ops::OpRegistry;
use plan::{Compiled, Compiler, Plan, Pool, RunContext};
use value::Value;

/// The signature key TensorFlow reserves for the init op; it is not a callable signature.
const INIT_OP_SIGNATURE: &str = "__saved_model_init_op";

/// A SavedModel's meta graph, with its variables restored, ready to run signatures.
pub struct LoadedModel {
    signatures: BTreeMap<String, SignatureInfo>,
    plans: BTreeMap<String, Plan>,
    consts: Vec<Value>,
    variables: Vec<Option<Value>>,
    device: Device,
    tags: Vec<String>,
}

/// The variables bundle as handed to [`build`]: the parsed index and the bytes of each data shard.
struct CheckpointParts<'b> {
    location: String,
    index: BundleIndex,
    shards: Vec<Option<&'b [u8]>>,
}

fn storage_error(location: &storage::Location, source: storage::StorageError) -> RuntimeError {
    RuntimeError::Storage {
        location: location.to_string(),
        source: Box::new(source),
    }
}

fn parse_index(location: &str, bytes: &[u8]) -> Result<BundleIndex, RuntimeError> {
    BundleIndex::parse(VARIABLES_INDEX, bytes).map_err(|source| RuntimeError::Checkpoint {
        location: location.to_string(),
        reason: source.to_string(),
    })
}

/// The largest files a load reads. Each is checked from the file's metadata (file length, object
/// size) before it is read, so an oversized or sparse file is refused without costing memory.
#[derive(Debug, Clone, Copy)]
struct FileCaps {
    /// `saved_model.pb`: the memory budget, and never over protobuf's 2 GiB message limit.
    saved_model: u64,
    /// `variables/variables.index`: 256 MiB (a few hundred bytes per variable).
    index: u64,
    /// All variables data shards together: the memory budget.
    data: u64,
}

fn file_caps(limits: &LoadLimits) -> FileCaps {
    FileCaps {
        saved_model: limits.memory_budget.min((2 << 30) - 1),
        index: limits.memory_budget.min(256 << 20),
        data: limits.memory_budget,
    }
}

/// The files of a SavedModel directory as read from storage, before anything but the variables
/// index is parsed. Reading is one async function, [`ModelFiles::read`], which
/// [`LoadedModel::load`] awaits and [`LoadedModel::load_blocking`] runs through
/// [`storage::Location::block_on`]: both read the same files in the same order with the same
/// errors, and the CPU work (compiling, restoring variables) happens on the caller's thread.
struct ModelFiles {
    saved_model: Bytes,
    pb_location: String,
    index_location: String,
    variables_location: String,
    /// `None` when the model has no `variables/variables.index`.
    index: Option<BundleIndex>,
    /// The data shards the index names, in its order; `None` for one that does not exist.
    shards: Vec<Option<Bytes>>,
}

impl ModelFiles {
    /// Reads `saved_model.pb` (telling a text-format-only or empty directory apart),
    /// `variables/variables.index` if there is one, and every data shard that index names.
    /// Every file's size is checked from its metadata before it is read (see [`file_caps`]).
    async fn read(dir: storage::Location, limits: LoadLimits) -> Result<ModelFiles, RuntimeError> {
        let caps = file_caps(&limits);
        let pb_location = dir.join("saved_model.pb");
        let saved_model = match pb_location.read_at_most(caps.saved_model).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => {
                let text = dir.join("saved_model.pbtxt");
                return Err(match text.exists().await {
                    Ok(true) => RuntimeError::TextFormatUnsupported {
                        location: text.to_string(),
                    },
                    Ok(false) => RuntimeError::NoSavedModel {
                        location: dir.to_string(),
                    },
                    Err(e) => storage_error(&text, e),
                });
            }
            Err(e) => return Err(storage_error(&pb_location, e)),
        };
        let index_location = dir.join(VARIABLES_INDEX);
        let index_bytes = match index_location.read_at_most(caps.index).await {
            Ok(bytes) => Some(bytes),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(storage_error(&index_location, e)),
        };
        let mut shards = Vec::new();
        let mut index = None;
        if let Some(index_bytes) = &index_bytes {
            let parsed_index = parse_index(&index_location.to_string(), index_bytes)?;
            let mut data_left = caps.data;
            for name in parsed_index.data_file_names() {
                let location = dir.join(&name);
                shards.push(match location.read_at_most(data_left).await {
                    Ok(bytes) => {
                        data_left -= bytes.len() as u64;
                        Some(bytes)
                    }
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(storage_error(&location, e)),
                });
            }
            index = Some(parsed_index);
        }
        Ok(ModelFiles {
            saved_model,
            pb_location: pb_location.to_string(),
            index_location: index_location.to_string(),
            variables_location: dir.join("variables").to_string(),
            index,
            shards,
        })
    }

    fn build(
        self,
        tags: &[&str],
        device: &Device,
        limits: &LoadLimits,
    ) -> Result<LoadedModel, RuntimeError> {
        let checkpoint = self.index.map(|index| CheckpointParts {
            location: self.variables_location,
            index,
            shards: self.shards.iter().map(|b| b.as_deref()).collect(),
        });
        build(
            &self.saved_model,
            checkpoint,
            tags,
            device,
            &self.pb_location,
            &self.index_location,
            limits,
        )
    }
}

impl LoadedModel {
    /// Loads the SavedModel in `dir` (a local path or `gs://…`, see `storage`), selecting the
    /// meta graph whose tags equal `tags`, onto `device`, within the default [`LoadLimits`].
    pub async fn load(
        dir: &storage::Location,
        tags: &[&str],
        device: &Device,
    ) -> Result<LoadedModel, RuntimeError> {
        Self::load_with(dir, tags, device, &LoadLimits::default()).await
    }

    /// [`load`](Self::load) within `limits` (memory budget, file sizes).
    pub async fn load_with(
        dir: &storage::Location,
        tags: &[&str],
        device: &Device,
        limits: &LoadLimits,
    ) -> Result<LoadedModel, RuntimeError> {
        ModelFiles::read(dir.clone(), *limits)
            .await?
            .build(tags, device, limits)
    }

    /// Blocking twin of [`load`](Self::load), for code outside an async runtime (the
    /// predictor CLI, tests); callable from any thread, inside a tokio runtime too.
    pub fn load_blocking(
        dir: &storage::Location,
        tags: &[&str],
        device: &Device,
    ) -> Result<LoadedModel, RuntimeError> {
        Self::load_blocking_with(dir, tags, device, &LoadLimits::default())
    }

    /// Blocking twin of [`load_with`](Self::load_with).
    pub fn load_blocking_with(
        dir: &storage::Location,
        tags: &[&str],
        device: &Device,
        limits: &LoadLimits,
    ) -> Result<LoadedModel, RuntimeError> {
        let limits_copy = *limits;
        dir.block_on("read", move |dir| ModelFiles::read(dir, limits_copy))
            .map_err(|e| storage_error(dir, e))??
            .build(tags, device, limits)
    }

    /// Builds a model from file contents, without any I/O: `saved_model.pb`,
    /// `variables/variables.index` and `variables/variables.data-00000-of-00001` (`None` for
    /// files that do not exist).
    pub fn from_files(
        saved_model_pb: &[u8],
        variables_index: Option<&[u8]>,
        variables_data: Option<&[u8]>,
        tags: &[&str],
        device: &Device,
    ) -> Result<LoadedModel, RuntimeError> {
        Self::from_files_with(
            saved_model_pb,
            variables_index,
            variables_data,
            tags,
            device,
            &LoadLimits::default(),
        )
    }

    /// [`from_files`](Self::from_files) within `limits` (the memory budget).
    pub fn from_files_with(
        saved_model_pb: &[u8],
        variables_index: Option<&[u8]>,
        variables_data: Option<&[u8]>,
        tags: &[&str],
        device: &Device,
        limits: &LoadLimits,
    ) -> Result<LoadedModel, RuntimeError> {
        let checkpoint = match variables_index {
            None => None,
            Some(index) => {
                let index = parse_index(VARIABLES_INDEX, index)?;
                // Only single-shard bundles can be passed this way; other shards read as missing.
                let mut shards = vec![None; index.num_shards() as usize];
                if let Some(first) = shards.first_mut() {
                    *first = variables_data;
                }
                Some(CheckpointParts {
                    location: "variables".to_string(),
                    index,
                    shards,
                })
            }
        };
        build(
            saved_model_pb,
            checkpoint,
            tags,
            device,
            "saved_model.pb",
            VARIABLES_INDEX,
            limits,
        )
    }

    /// All signatures of the selected meta graph, by key (`serving_default`, …).
    pub fn signatures(&self) -> &BTreeMap<String, SignatureInfo> {
        &self.signatures
    }

    /// One signature; the error lists the available keys.
    pub fn signature(&self, name: &str) -> Result<&SignatureInfo, RuntimeError> {
        self.signatures
            .get(name)
            .ok_or_else(|| RuntimeError::SignatureNotFound {
                name: name.to_string(),
                available: self.signatures.keys().cloned().collect(),
            })
    }

    /// The tags of the selected meta graph.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The device the model computes on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs `signature` on `inputs` (keyed by the signature's input keys) and returns every
    /// output of the signature keyed by output key.
    pub fn run(
        &self,
        signature: &str,
        inputs: &BTreeMap<String, HostTensor>,
    ) -> Result<BTreeMap<String, HostTensor>, RuntimeError> {
        self.run_outputs(signature, inputs, None)
    }

    /// Like [`run`](Self::run), but computes only the outputs named in `output_keys` (all when
    /// `None`) — TF Serving's `output_filter`. Only the steps those outputs need are run.
    pub fn run_outputs(
        &self,
        signature: &str,
        inputs: &BTreeMap<String, HostTensor>,
        output_keys: Option<&[&str]>,
    ) -> Result<BTreeMap<String, HostTensor>, RuntimeError> {
        let plan = self
            .plans
            .get(signature)
            .ok_or_else(|| RuntimeError::SignatureNotFound {
                name: signature.to_string(),
                available: self.signatures.keys().cloned().collect(),
            })?;
        let expected: Vec<String> = plan.feeds.iter().map(|f| f.key.clone()).collect();
        for key in inputs.keys() {
            if !expected.contains(key) {
                return Err(RuntimeError::UnknownInput {
                    signature: signature.to_string(),
                    key: key.clone(),
                    expected,
                });
            }
        }
        let mut feeds = Vec::with_capacity(plan.feeds.len());
        for feed in &plan.feeds {
            let Some(tensor) = inputs.get(&feed.key) else {
                if feed.required {
                    return Err(RuntimeError::MissingInput {
                        signature: signature.to_string(),
                        key: feed.key.clone(),
                        expected: expected.clone(),
                    });
                }
                // The signature's default, if any; else the graph's PlaceholderWithDefault (or
                // nothing, when the requested outputs do not need this input).
                feeds.push(feed.default.and_then(|c| self.consts.get(c).cloned()));
                continue;
            };
            check_input(signature, &feed.key, &feed.spec, tensor)?;
            let value = Value::from_host_tensor(tensor, feed.spec.dtype, &self.device).map_err(
                |reason| RuntimeError::Execution {
                    signature: signature.to_string(),
                    node: feed.spec.tensor_name.clone(),
                    op: "feed".into(),
                    reason,
                },
            )?;
            feeds.push(Some(value));
        }
        let wanted: Option<Vec<usize>> = match output_keys {
            None => None,
            Some(keys) => {
                let all = plan.output_keys();
                let mut indices = Vec::new();
                for key in keys {
                    let index = all.iter().position(|k| k == key).ok_or_else(|| {
                        RuntimeError::UnknownOutput {
                            signature: signature.to_string(),
                            key: key.to_string(),
                            expected: all.iter().map(|k| k.to_string()).collect(),
                        }
                    })?;
                    indices.push(index);
                }
                Some(indices)
            }
        };
        let ctx = RunContext {
            device: &self.device,
            consts: &self.consts,
            variables: &self.variables,
        };
        let values = plan.run(&ctx, &feeds, wanted.as_deref())?;
        values
            .into_iter()
            .map(|(key, value)| {
                let tensor = value
                    .to_host_tensor()
                    .map_err(|reason| RuntimeError::Execution {
                        signature: signature.to_string(),
                        node: format!("output `{key}`"),
                        op: "fetch".into(),
                        reason,
                    })?;
                Ok((key, tensor))
            })
            .collect()
    }

    /// Number of steps each signature's plan runs (after pruning), for diagnostics.
    pub fn plan_size(&self, signature: &str) -> Option<usize> {
        self.plans.get(signature).map(|p| p.num_steps())
    }

    /// The chains of nodes fused into one step (`MatMul`/`Conv2D` + `BiasAdd` + `Relu`/`Relu6`),
    /// each described as its nodes and ops (diagnostics and tests).
    pub fn fused_chains(&self, signature: &str) -> Option<Vec<String>> {
        self.plans.get(signature).map(|p| p.fused_chains())
    }

    /// The number of `MatMul` chains in each step that runs a stack of them row block by row
    /// block (an MLP's layers; diagnostics and tests).
    pub fn dense_stacks(&self, signature: &str) -> Option<Vec<usize>> {
        self.plans.get(signature).map(|p| p.dense_stacks())
    }

    /// The op of every step a signature's plan runs, in order (diagnostics and tests).
    pub fn plan_ops(&self, signature: &str) -> Option<Vec<String>> {
        self.plans
            .get(signature)
            .map(|p| p.step_ops().into_iter().map(str::to_string).collect())
    }
}

fn check_input(
    signature: &str,
    key: &str,
    spec: &TensorSpec,
    tensor: &HostTensor,
) -> Result<(), RuntimeError> {
    // Host tensors cannot hold f16; half inputs are accepted as f32.
    let dtype_ok = tensor.dtype() == spec.dtype
        || (spec.dtype == DataType::Half && tensor.dtype() == DataType::Float);
    if !dtype_ok {
        return Err(RuntimeError::InputDtype {
            signature: signature.to_string(),
            key: key.to_string(),
            expected: spec.dtype.tf_name().to_string(),
            found: tensor.dtype().tf_name().to_string(),
        });
    }
    if let Some(dims) = &spec.shape {
        let found = tensor.shape();
        let fits = dims.len() == found.len()
            && dims
                .iter()
                .zip(found)
                .all(|(&d, &f)| d < 0 || d as u64 == f as u64);
        if !fits {
            return Err(RuntimeError::InputShape {
                signature: signature.to_string(),
                key: key.to_string(),
                expected: spec.shape.clone(),
                found: found.to_vec(),
            });
        }
    }
    Ok(())
}

/// Picks the meta graph whose tag set equals `tags` (any single meta graph when `tags` is empty).
fn select_meta_graph<'m>(
    model: &'m SavedModel,
    tags: &[&str],
) -> Result<&'m MetaGraphDef, RuntimeError> {
    let mut wanted: Vec<&str> = tags.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let tag_set = |mg: &MetaGraphDef| -> Vec<String> {
        let mut t: Vec<String> = mg
            .meta_info_def
            .as_ref()
            .map(|m| m.tags.clone())
            .unwrap_or_default();
        t.sort();
        t.dedup();
        t
    };
    if wanted.is_empty() && model.meta_graphs.len() == 1 {
        return Ok(&model.meta_graphs[0]);
    }
    model
        .meta_graphs
        .iter()
        .find(|mg| {
            tag_set(mg)
                .iter()
                .map(String::as_str)
                .eq(wanted.iter().copied())
        })
        .ok_or_else(|| RuntimeError::MetaGraphNotFound {
            requested: wanted.iter().map(|s| s.to_string()).collect(),
            available: model.meta_graphs.iter().map(tag_set).collect(),
        })
}

fn build(
    saved_model_pb: &[u8],
    checkpoint: Option<CheckpointParts<'_>>,
    tags: &[&str],
    device: &Device,
    pb_name: &str,
    index_name: &str,
    limits: &LoadLimits,
) -> Result<LoadedModel, RuntimeError> {
    let model = SavedModel::decode(saved_model_pb).map_err(|source| RuntimeError::Decode {
        what: pb_name.to_string(),
        source,
    })?;
    let meta_graph = select_meta_graph(&model, tags)?;
    let empty_graph = Default::default();
    let graph_def = meta_graph.graph_def.as_ref().unwrap_or(&empty_graph);
    let op_list = meta_graph
        .meta_info_def
        .as_ref()
        .and_then(|m| m.stripped_op_list.as_ref())
        .map(|l| &l.op[..])
        .unwrap_or(&[]);
    let flat = FlatGraph::build(graph_def, OpRegistry::new(op_list))?;
    budget::check_constants(&flat, limits)?;

    // Compile every signature; collect unsupported ops across all of them.
    let mut pool = Pool::new();
    let mut plans = BTreeMap::new();
    let mut signatures = BTreeMap::new();
    let mut unsupported = Vec::new();
    {
        let mut compiler = Compiler {
            graph: &flat,
            device,
            pool: &mut pool,
        };
        for (key, def) in &meta_graph.signature_def {
            if key == INIT_OP_SIGNATURE {
                continue;
            }
            match compiler.compile(key, def)? {
                Compiled::Plan(plan, info) => {
                    plans.insert(key.clone(), plan);
                    signatures.insert(key.clone(), info);
                }
                Compiled::Unsupported(nodes) => unsupported.extend(nodes),
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(RuntimeError::UnsupportedOps(UnsupportedOps(unsupported)));
    }

    budget::check_plans(&flat, &pool, plans.values(), limits)?;
    let variables = restore_variables(&flat, meta_graph, &pool, checkpoint, device, index_name)?;
    Ok(LoadedModel {
        signatures,
        plans,
        consts: pool.consts,
        variables,
        device: device.clone(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    })
}

/// Loads every variable a plan reads, after checking all mapped variables against the bundle.
fn restore_variables(
    flat: &FlatGraph<'_>,
    meta_graph: &MetaGraphDef,
    pool: &Pool,
    checkpoint: Option<CheckpointParts<'_>>,
    device: &Device,
    index_name: &str,
) -> Result<Vec<Option<Value>>, RuntimeError> {
    let variable_nodes = variables::variable_nodes(flat);
    let Some(checkpoint) = checkpoint else {
        if let Some(&node) = variable_nodes.first() {
            return Err(RuntimeError::MissingVariables {
                location: index_name.to_string(),
                count: variable_nodes.len(),
                example: plan::variable_key(flat, node).1,
            });
        }
        return Ok(Vec::new());
    };
    let mapping = variables::restore_mapping(flat, meta_graph.saver_def.as_ref());
    let checkpoint_error = |reason: String| RuntimeError::Checkpoint {
        location: checkpoint.location.clone(),
        reason,
    };

    // Every variable the restore op assigns must agree with the bundle, used or not: a
    // mismatch means the files do not belong together.
    for &node in &variable_nodes {
        let (resource_key, name) = plan::variable_key(flat, node);
        let Some(key) = mapping.get(&resource_key) else {
            continue;
        };
        let Ok(spec) = checkpoint.index.tensor_spec(key) else {
            continue;
        };
        check_variable(flat, node, &name, key, &spec)?;
    }

    let mut values = Vec::with_capacity(pool.variables.len());
    for var in &pool.variables {
        let node_name = flat.nodes[var.node].name.clone();
        let mut candidates: Vec<String> = mapping
            .get(&var.resource_key)
            .cloned()
            .into_iter()
            .collect();
        for fallback in [&var.name, &node_name] {
            if !candidates.contains(fallback) {
                candidates.push(fallback.clone());
            }
        }
        let key = candidates
            .iter()
            .find(|k| checkpoint.index.entry(k).is_some())
            .ok_or_else(|| RuntimeError::VariableNotRestored {
                variable: var.name.clone(),
                signature: var.signature.clone(),
                keys: candidates.clone(),
            })?;
        let spec = checkpoint
            .index
            .tensor_spec(key)
            .map_err(|e| checkpoint_error(e.to_string()))?;
        check_variable(flat, var.node, &var.name, key, &spec)?;
        let tensor = checkpoint
            .index
            .read_tensor(key, &checkpoint.shards)
            .map_err(|e| checkpoint_error(e.to_string()))?;
        let dtype = var.dtype.unwrap_or(spec.dtype);
        let value = Value::from_host_tensor(&tensor, dtype, device)
            .map_err(|e| checkpoint_error(format!("variable `{}`: {e}", var.name)))?;
        values.push(Some(value));
    }
    Ok(values)
}

fn check_variable(
    flat: &FlatGraph<'_>,
    node: graph::NodeId,
    name: &str,
    key: &str,
    spec: &savedmodel_format::bundle::TensorSpec,
) -> Result<(), RuntimeError> {
    let graph_dtype = flat
        .attr(node, "dtype")
        .and_then(|v| v.as_type())
        .and_then(DataType::from_tf);
    if let Some(dtype) = graph_dtype
        && dtype != spec.dtype
    {
        return Err(RuntimeError::VariableDtypeMismatch {
            variable: name.to_string(),
            key: key.to_string(),
            graph: variables::dtype_name(Some(dtype)),
            bundle: spec.dtype.tf_name().to_string(),
        });
    }
    let graph_shape = flat
        .attr(node, "shape")
        .and_then(|v| v.as_shape())
        .and_then(|s| s.dims());
    if !variables::shape_matches(&graph_shape, &spec.shape) {
        return Err(RuntimeError::VariableShapeMismatch {
            variable: name.to_string(),
            key: key.to_string(),
            graph_shape,
            bundle_shape: spec.shape.iter().map(|&d| d as i64).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod send_sync {
    #[test]
    fn loaded_model_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::LoadedModel>();
    }
}
