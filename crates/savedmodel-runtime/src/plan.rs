//! Compiling a signature into an execution plan, and running plans.
//!
//! Compilation (once, at load time):
//! 1. resolve the signature's input and output tensor names in the flat graph;
//! 2. prune: walk back from the outputs to the inputs, marking nodes whose *values* are needed
//!    (data edges) and nodes whose *liveness* only is needed (control edges, see below);
//! 3. order the needed nodes topologically (a cycle — a TF1 while loop — is an error);
//! 4. dead-branch analysis: a `Switch` whose predicate is a constant in this signature (the
//!    `keras_learning_phase` PlaceholderWithDefault, not fed) sends its data down one branch only;
//!    every node that depends on the other branch is statically dead and dropped, so dropout's
//!    `RandomUniform` never needs to be supported, let alone run;
//! 5. prune again without the dead branches, check that every remaining op is supported (all
//!    unsupported ops of all signatures are reported together by the caller), and emit steps.
//!    Pass-through nodes (Identity, function args/results) become aliases, not steps.
//!
//! Execution follows TensorFlow's dead-tensor semantics: an op with a dead input (data or
//! control) does not run and its outputs are dead; `Switch` kills its untaken output; `Merge`
//! forwards its first live input. Conditions that are only known at run time (a `Switch` on a
//! fed predicate) are handled by the same mechanism.

use std::collections::{BTreeMap, HashMap, HashSet};

use candle_core::Device;
use savedmodel_format::DataType;
use savedmodel_format::proto::{AttrValue, SignatureDef, attr_value};

use crate::consts::decode_tensor_proto;
use crate::error::{RuntimeError, UnsupportedNode};
use crate::graph::{FlatGraph, NodeId, NodeKind, TensorRef};
use crate::kernels::{Attrs, CompileError, Kernel, KernelContext, UnaryOp, compile_kernel};
use crate::nn::Head;
use crate::value::{HostVals, HostValue, Value, VarId};
use crate::{SignatureInfo, TensorSpec};

/// Where a step's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// An output slot of an earlier step.
    Slot(usize),
    /// A signature input.
    Feed(usize),
    /// A constant of the model's pool.
    Const(usize),
    /// The current value of a (ref) variable.
    Variable(VarId),
    /// Only liveness is consumed, and it is statically known to be live.
    AlwaysLive,
}

/// The liveness a control edge waits for.
#[derive(Debug, Clone, Copy)]
enum Gate {
    Step(usize),
    Slot(usize),
    Feed(usize),
}

#[derive(Debug)]
enum StepKind {
    Kernel(Kernel),
    /// Data `Switch`: forwards input 0 to output `pred`, output `!pred` is dead.
    Switch,
    /// `Merge`: forwards the first live input; output 1 is its index.
    Merge,
    /// A signature input that has a default (`PlaceholderWithDefault`): the feed if given,
    /// else input 0.
    FeedOrDefault(usize),
    /// Only liveness matters (the node is reached through control edges).
    Liveness,
    /// Liveness-only `Switch`: liveness of input 0 goes to output `pred` (input 1's value).
    SwitchLiveness,
}

#[derive(Debug)]
struct Step {
    node: String,
    op: String,
    kind: StepKind,
    inputs: Vec<Source>,
    /// What gates this step through control edges.
    controls: Vec<Gate>,
    first_slot: usize,
    num_outputs: usize,
    /// Slots whose last reader is this step: released after it runs.
    release: Vec<usize>,
}

/// One signature input as the plan sees it.
#[derive(Debug)]
pub(crate) struct FeedSpec {
    pub key: String,
    pub spec: TensorSpec,
    /// The requested outputs depend on it and it has no default.
    pub required: bool,
    /// `SignatureDef.defaults`: the value used when the input is not supplied (pool index).
    pub default: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub signature: String,
    pub feeds: Vec<FeedSpec>,
    steps: Vec<Step>,
    num_slots: usize,
    outputs: Vec<(String, Source)>,
    /// For each output, the steps it needs (to run a subset of outputs).
    output_steps: Vec<Vec<usize>>,
}

/// A variable node the signatures read, identified like TensorFlow identifies resources.
#[derive(Debug, Clone)]
pub(crate) struct VariableInfo {
    /// `shared_name` (or node name when empty), what users recognise (`dense/kernel`).
    pub name: String,
    /// Container-qualified key used to merge nodes that denote the same variable.
    pub resource_key: String,
    pub node: NodeId,
    pub dtype: Option<DataType>,
    /// The first signature that reads it (for error messages).
    pub signature: String,
}

/// Everything shared by the plans of one model.
pub(crate) struct Pool {
    pub consts: Vec<Value>,
    const_of_node: HashMap<NodeId, usize>,
    pub variables: Vec<VariableInfo>,
    var_by_key: HashMap<String, VarId>,
}

impl Pool {
    pub(crate) fn new() -> Pool {
        Pool {
            consts: Vec::new(),
            const_of_node: HashMap::new(),
            variables: Vec::new(),
            var_by_key: HashMap::new(),
        }
    }
}

/// Variable identity: `(container, shared_name)`, with the node name standing in for an empty
/// shared name (TensorFlow's graph-mode rule).
pub(crate) fn variable_key(graph: &FlatGraph<'_>, node: NodeId) -> (String, String) {
    let text = |name: &str| {
        graph
            .attr(node, name)
            .and_then(|v| v.as_bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let container = text("container").unwrap_or_default();
    let shared = text("shared_name").filter(|s| !s.is_empty());
    let name = shared.unwrap_or_else(|| graph.nodes[node].name.clone());
    (format!("{container}/{name}"), name)
}

pub(crate) fn is_variable_op(op: &str) -> bool {
    matches!(op, "VarHandleOp" | "VariableV2" | "Variable")
}

fn is_switch(op: &str) -> bool {
    op == "Switch" || op == "RefSwitch"
}

fn is_merge(op: &str) -> bool {
    op == "Merge" || op == "RefMerge"
}

fn is_pass_through(op: &str) -> bool {
    matches!(
        op,
        "Identity"
            | "Snapshot"
            | "StopGradient"
            | "PreventGradient"
            | "_Arg"
            | "_Retval"
            | "RefIdentity"
    )
}

struct NodeAttrs<'g, 'a> {
    graph: &'g FlatGraph<'a>,
    node: NodeId,
}

impl Attrs for NodeAttrs<'_, '_> {
    fn attr_type(&self, name: &str) -> Option<Result<DataType, i32>> {
        let raw = self.graph.attr(self.node, name)?.as_type()?;
        Some(DataType::from_tf(raw).ok_or(raw))
    }
    fn attr_bool(&self, name: &str) -> Option<bool> {
        self.graph.attr(self.node, name)?.as_bool()
    }
    fn attr_int(&self, name: &str) -> Option<i64> {
        self.graph.attr(self.node, name)?.as_int()
    }
    fn attr_float(&self, name: &str) -> Option<f32> {
        self.graph.attr(self.node, name)?.as_float()
    }
    fn attr_ints(&self, name: &str) -> Option<Vec<i64>> {
        Some(self.graph.attr(self.node, name)?.as_list()?.i.clone())
    }
    fn attr_string(&self, name: &str) -> Option<Vec<u8>> {
        Some(self.graph.attr(self.node, name)?.as_bytes()?.to_vec())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Yes,
    No,
    Maybe,
}

fn combine(values: impl IntoIterator<Item = Live>) -> Live {
    let mut all_yes = true;
    for v in values {
        match v {
            Live::No => return Live::No,
            Live::Maybe => all_yes = false,
            Live::Yes => {}
        }
    }
    if all_yes { Live::Yes } else { Live::Maybe }
}

/// Dtype and shape of a signature tensor, falling back to the node's attrs.
fn tensor_spec(
    graph: &FlatGraph<'_>,
    info: &savedmodel_format::proto::TensorInfo,
    tensor: TensorRef,
    name: &str,
) -> Result<TensorSpec, String> {
    let dtype_raw = if info.dtype != 0 {
        info.dtype
    } else {
        graph
            .attr(tensor.node, "dtype")
            .or_else(|| graph.attr(tensor.node, "T"))
            .and_then(|v| v.as_type())
            .unwrap_or(0)
    };
    let dtype = DataType::from_tf(dtype_raw).ok_or_else(|| {
        format!("tensor `{name}` has dtype enum {dtype_raw}, which this runtime does not handle")
    })?;
    let shape = match &info.tensor_shape {
        Some(s) => s.dims(),
        None => graph
            .attr(tensor.node, "shape")
            .and_then(|v| v.as_shape())
            .and_then(|s| s.dims()),
    };
    Ok(TensorSpec {
        tensor_name: name.to_string(),
        dtype,
        shape,
    })
}

/// A constant value of a node if it is statically known in this signature (Const, Identity
/// chains, an unfed PlaceholderWithDefault, LogicalNot): used for Switch predicates.
fn static_bool(
    graph: &FlatGraph<'_>,
    mut tensor: TensorRef,
    fed: &HashMap<TensorRef, usize>,
    fed_defaults: &HashMap<NodeId, usize>,
) -> Option<bool> {
    let mut negate = false;
    for _ in 0..1000 {
        if fed.contains_key(&tensor) || fed_defaults.contains_key(&tensor.node) {
            return None;
        }
        let node = &graph.nodes[tensor.node];
        match node.op() {
            "Const" => {
                let NodeKind::Def(def) = node.kind else {
                    return None;
                };
                let value = def.attr.get("value")?.as_tensor()?;
                let decoded = decode_tensor_proto(value).ok()?;
                return match decoded.host.data() {
                    savedmodel_format::TensorData::Bool(v) if v.len() == 1 => Some(v[0] != negate),
                    _ => None,
                };
            }
            "LogicalNot" => negate = !negate,
            op if is_pass_through(op) || op == "PlaceholderWithDefault" => {}
            _ => return None,
        }
        if !node.controls.is_empty() && node.op() != "_Arg" {
            return None;
        }
        tensor = *node.inputs.first()?;
    }
    None
}

pub(crate) struct Compiler<'g, 'a> {
    pub graph: &'g FlatGraph<'a>,
    pub device: &'g Device,
    pub pool: &'g mut Pool,
}

/// Result of compiling one signature: a plan, or the unsupported nodes it needs.
pub(crate) enum Compiled {
    Plan(Plan, SignatureInfo),
    Unsupported(Vec<UnsupportedNode>),
}

impl Compiler<'_, '_> {
    fn invalid_sig(signature: &str, reason: String) -> RuntimeError {
        RuntimeError::InvalidSignature {
            signature: signature.to_string(),
            reason,
        }
    }

    pub(crate) fn compile(
        &mut self,
        key: &str,
        def: &SignatureDef,
    ) -> Result<Compiled, RuntimeError> {
        let graph = self.graph;
        // ---- 1. inputs and outputs
        let mut feeds = Vec::new();
        let mut fed: HashMap<TensorRef, usize> = HashMap::new();
        let mut fed_defaults: HashMap<NodeId, usize> = HashMap::new();
        let mut info_inputs = BTreeMap::new();
        for (index, (input_key, info)) in def.inputs.iter().enumerate() {
            let name = info.dense_name().ok_or_else(|| {
                Self::invalid_sig(key, format!("input `{input_key}` is a sparse or composite tensor, which is not supported"))
            })?;
            let tensor = graph.resolve_tensor_name(name).ok_or_else(|| {
                Self::invalid_sig(
                    key,
                    format!("input `{input_key}` names tensor `{name}`, which is not in the graph"),
                )
            })?;
            let spec = tensor_spec(graph, info, tensor, name)
                .map_err(|r| Self::invalid_sig(key, format!("input `{input_key}`: {r}")))?;
            info_inputs.insert(input_key.clone(), spec.clone());
            if graph.nodes[tensor.node].op() == "PlaceholderWithDefault" {
                fed_defaults.insert(tensor.node, index);
            } else if fed.insert(tensor, index).is_some() {
                return Err(Self::invalid_sig(
                    key,
                    format!("input `{input_key}` names the same tensor `{name}` as another input"),
                ));
            }
            let default = match def.defaults.get(input_key) {
                None => None,
                Some(proto) => {
                    let value = decode_tensor_proto(proto)
                        .and_then(|c| Value::from_const(&c, self.device))
                        .map_err(|r| {
                            Self::invalid_sig(key, format!("default of input `{input_key}`: {r}"))
                        })?;
                    self.pool.consts.push(value);
                    Some(self.pool.consts.len() - 1)
                }
            };
            feeds.push(FeedSpec {
                key: input_key.clone(),
                spec,
                required: false,
                default,
            });
        }
        let mut outputs = Vec::new();
        let mut info_outputs = BTreeMap::new();
        for (output_key, info) in &def.outputs {
            let name = info.dense_name().ok_or_else(|| {
                Self::invalid_sig(key, format!("output `{output_key}` is a sparse or composite tensor, which is not supported"))
            })?;
            let tensor = graph.resolve_tensor_name(name).ok_or_else(|| {
                Self::invalid_sig(
                    key,
                    format!(
                        "output `{output_key}` names tensor `{name}`, which is not in the graph"
                    ),
                )
            })?;
            let spec = tensor_spec(graph, info, tensor, name)
                .map_err(|r| Self::invalid_sig(key, format!("output `{output_key}`: {r}")))?;
            info_outputs.insert(output_key.clone(), spec);
            outputs.push((output_key.clone(), tensor));
        }
        let info = SignatureInfo {
            name: key.to_string(),
            method_name: def.method_name.clone(),
            inputs: info_inputs,
            outputs: info_outputs,
        };

        // ---- 2. first pruning pass (no static liveness yet)
        let no_static: HashMap<NodeId, Vec<Live>> = HashMap::new();
        let need = self.needed(&outputs, &fed, &no_static, &HashMap::new());

        // ---- 3. topological order
        let order = self.topological_order(&need, &fed)?;

        // ---- 4. static liveness
        let mut port_live: HashMap<NodeId, Vec<Live>> = HashMap::new();
        let mut node_live: HashMap<NodeId, Live> = HashMap::new();
        let live_of = |port_live: &HashMap<NodeId, Vec<Live>>, r: TensorRef| -> Live {
            if fed.contains_key(&r) {
                return Live::Yes;
            }
            port_live
                .get(&r.node)
                .and_then(|v| v.get(r.port).copied())
                .unwrap_or(Live::Maybe)
        };
        for &n in &order {
            let node = &graph.nodes[n];
            let controls = combine(
                node.controls
                    .iter()
                    .map(|c| node_live.get(c).copied().unwrap_or(Live::Maybe)),
            );
            let count = graph
                .num_outputs(n)
                .unwrap_or(1)
                .max(if is_merge(node.op()) { 2 } else { 0 });
            let (ports, whole) = if is_merge(node.op()) {
                let inputs: Vec<Live> = node
                    .inputs
                    .iter()
                    .map(|&r| live_of(&port_live, r))
                    .collect();
                let any = if inputs.contains(&Live::Yes) {
                    Live::Yes
                } else if inputs.iter().all(|&l| l == Live::No) {
                    Live::No
                } else {
                    Live::Maybe
                };
                let whole = combine([controls, any]);
                (vec![whole; count], whole)
            } else if is_switch(node.op()) {
                let whole = combine(
                    node.inputs
                        .iter()
                        .map(|&r| live_of(&port_live, r))
                        .chain([controls]),
                );
                let pred = node
                    .inputs
                    .get(1)
                    .and_then(|&p| static_bool(graph, p, &fed, &fed_defaults));
                let ports = match (whole, pred) {
                    (Live::No, _) => vec![Live::No, Live::No],
                    (_, Some(taken)) => {
                        let mut p = vec![Live::No, Live::No];
                        p[usize::from(taken)] = whole;
                        p
                    }
                    (_, None) => vec![Live::Maybe, Live::Maybe],
                };
                (ports, whole)
            } else {
                let whole = combine(
                    node.inputs
                        .iter()
                        .map(|&r| live_of(&port_live, r))
                        .chain([controls]),
                );
                (vec![whole; count], whole)
            };
            port_live.insert(n, ports);
            node_live.insert(n, whole);
        }
        for (output_key, tensor) in &outputs {
            if live_of(&port_live, *tensor) == Live::No {
                return Err(Self::invalid_sig(
                    key,
                    format!(
                        "output `{output_key}` can never be computed: it lies on a conditional branch that is never taken"
                    ),
                ));
            }
        }

        // ---- 5. second pruning pass with dead branches removed
        let need = self.needed(&outputs, &fed, &port_live, &node_live);
        let order: Vec<NodeId> = order.into_iter().filter(|n| need.contains_key(n)).collect();

        // ---- 6. steps
        let mut unsupported = Vec::new();
        let mut sources: HashMap<TensorRef, Source> =
            fed.iter().map(|(&r, &i)| (r, Source::Feed(i))).collect();
        let mut step_of_node: HashMap<NodeId, usize> = HashMap::new();
        let mut alias_of_node: HashMap<NodeId, Source> = HashMap::new();
        let mut steps: Vec<Step> = Vec::new();
        let mut num_slots = 0;
        let mut used_feeds: HashSet<usize> = HashSet::new();
        for &n in &order {
            let data = need[&n];
            let node = &graph.nodes[n];
            let op = node.op().to_string();
            let live_input = |r: &TensorRef| live_of(&port_live, *r) != Live::No;
            // Controls to statically live nodes carry no information; a control on an aliased
            // pass-through node means the liveness of what it forwards.
            let controls: Vec<Gate> = node
                .controls
                .iter()
                .filter(|c| node_live.get(c).copied() != Some(Live::Yes))
                .filter_map(|c| match (step_of_node.get(c), alias_of_node.get(c)) {
                    (Some(&step), _) => Some(Gate::Step(step)),
                    (None, Some(&Source::Slot(slot))) => Some(Gate::Slot(slot)),
                    (None, Some(&Source::Feed(feed))) => Some(Gate::Feed(feed)),
                    _ => None,
                })
                .collect();
            let source_of = |sources: &HashMap<TensorRef, Source>, r: &TensorRef| -> Source {
                sources.get(r).copied().unwrap_or(Source::AlwaysLive)
            };
            for r in &node.inputs {
                if let Some(&i) = fed.get(r) {
                    used_feeds.insert(i);
                }
            }
            // A node whose value is needed may take no step: sources and aliases. A liveness-only
            // node always gets one (below), for control edges to wait on.
            if data {
                // Sources: no step at all.
                match op.as_str() {
                    "Const" => {
                        let idx =
                            self.const_index(n)
                                .map_err(|reason| RuntimeError::InvalidGraph {
                                    node: node.name.clone(),
                                    reason,
                                })?;
                        sources.insert(TensorRef { node: n, port: 0 }, Source::Const(idx));
                        continue;
                    }
                    "Placeholder" => {
                        // A placeholder reached here is not a signature input (fed ones are
                        // cut off).
                        return Err(Self::invalid_sig(
                            key,
                            format!(
                                "its outputs depend on placeholder `{}`, which is not one of the signature's inputs",
                                node.name
                            ),
                        ));
                    }
                    "VarHandleOp" => {
                        let var = self.variable(n, key);
                        let idx = self.pool.consts.len();
                        self.pool.consts.push(Value::Resource(var));
                        sources.insert(TensorRef { node: n, port: 0 }, Source::Const(idx));
                        continue;
                    }
                    "VariableV2" | "Variable" => {
                        let var = self.variable(n, key);
                        sources.insert(TensorRef { node: n, port: 0 }, Source::Variable(var));
                        continue;
                    }
                    _ => {}
                }
                // Pass-through nodes without live-gating controls are aliases of their input.
                if controls.is_empty() && !fed_defaults.contains_key(&n) {
                    let forwards = is_pass_through(&op)
                        || (op == "PlaceholderWithDefault")
                        || (op == "IdentityN");
                    if forwards && !node.inputs.is_empty() {
                        let count = if op == "IdentityN" {
                            node.inputs.len()
                        } else {
                            1
                        };
                        for port in 0..count {
                            let s = source_of(&sources, &node.inputs[port]);
                            sources.insert(TensorRef { node: n, port }, s);
                        }
                        if count == 1 {
                            alias_of_node.insert(n, source_of(&sources, &node.inputs[0]));
                        }
                        continue;
                    }
                    // Reading a variable whose handle is known at compile time is just its value.
                    if op == "ReadVariableOp"
                        && let Some(Source::Const(c)) =
                            node.inputs.first().map(|r| source_of(&sources, r))
                        && let Some(Value::Resource(var)) = self.pool.consts.get(c)
                    {
                        sources.insert(TensorRef { node: n, port: 0 }, Source::Variable(*var));
                        alias_of_node.insert(n, Source::Variable(*var));
                        continue;
                    }
                }
            }
            let (kind, inputs) = if !data {
                // Liveness only: statically live nodes were skipped by `needed`.
                let kind = if is_switch(&op) {
                    StepKind::SwitchLiveness
                } else {
                    StepKind::Liveness
                };
                (
                    kind,
                    node.inputs.iter().map(|r| source_of(&sources, r)).collect(),
                )
            } else if let Some(&feed) = fed_defaults.get(&n) {
                used_feeds.insert(feed);
                (
                    StepKind::FeedOrDefault(feed),
                    node.inputs.iter().map(|r| source_of(&sources, r)).collect(),
                )
            } else if is_switch(&op) {
                (
                    StepKind::Switch,
                    node.inputs.iter().map(|r| source_of(&sources, r)).collect(),
                )
            } else if is_merge(&op) {
                // Statically dead inputs can never be the one Merge forwards.
                (
                    StepKind::Merge,
                    node.inputs
                        .iter()
                        .filter(|r| live_input(r))
                        .map(|r| source_of(&sources, r))
                        .collect(),
                )
            } else if is_pass_through(&op) {
                (
                    StepKind::Kernel(Kernel::Identity),
                    node.inputs.iter().map(|r| source_of(&sources, r)).collect(),
                )
            } else {
                let kernel = if let Some(function) = graph.missing_functions.get(&n) {
                    Err(CompileError::Unsupported(format!(
                        "{op} (function `{function}` is not in the library)"
                    )))
                } else {
                    compile_kernel(&op, &NodeAttrs { graph, node: n })
                };
                match kernel {
                    Ok(k) => (
                        StepKind::Kernel(k),
                        node.inputs.iter().map(|r| source_of(&sources, r)).collect(),
                    ),
                    Err(CompileError::Unsupported(what)) => {
                        unsupported.push(UnsupportedNode {
                            op: what,
                            node: node.name.clone(),
                            signature: key.to_string(),
                        });
                        continue;
                    }
                    Err(CompileError::Invalid(reason)) => {
                        return Err(RuntimeError::InvalidGraph {
                            node: node.name.clone(),
                            reason,
                        });
                    }
                }
            };
            // The op table may not know the op (liveness-only ops need not be supported): a
            // needed value still gets one slot, a liveness-only step none.
            let unknown_outputs = if data { 1 } else { 0 };
            let count = graph
                .num_outputs(n)
                .unwrap_or(unknown_outputs)
                .max(match kind {
                    StepKind::Switch | StepKind::SwitchLiveness | StepKind::Merge => 2,
                    _ => 0,
                });
            for port in 0..count {
                sources.insert(TensorRef { node: n, port }, Source::Slot(num_slots + port));
            }
            step_of_node.insert(n, steps.len());
            steps.push(Step {
                node: node.name.clone(),
                op,
                kind,
                inputs,
                controls,
                first_slot: num_slots,
                num_outputs: count,
                release: Vec::new(),
            });
            num_slots += count;
        }
        if !unsupported.is_empty() {
            return Ok(Compiled::Unsupported(unsupported));
        }
        for (index, feed) in feeds.iter_mut().enumerate() {
            feed.required = used_feeds.contains(&index)
                && !fed_defaults.values().any(|&i| i == index)
                && feed.default.is_none();
        }
        let outputs: Vec<(String, Source)> = outputs
            .into_iter()
            .map(|(k, r)| {
                let s = sources
                    .get(&r)
                    .copied()
                    .ok_or_else(|| RuntimeError::InvalidGraph {
                        node: graph.nodes[r.node].name.clone(),
                        reason: "output was not planned".into(),
                    })?;
                if let Source::Feed(i) = s {
                    feeds[i].required = feeds[i].default.is_none();
                }
                Ok((k, s))
            })
            .collect::<Result<_, RuntimeError>>()?;
        fuse_dense_chains(&mut steps, &outputs);
        stack_dense_chains(&mut steps, &outputs);
        let output_steps = outputs
            .iter()
            .map(|(_, s)| steps_needed(&steps, *s))
            .collect();
        // Release each slot after its last reader; outputs are kept.
        let mut last_reader: HashMap<usize, usize> = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
            for s in &step.inputs {
                if let Source::Slot(slot) = s {
                    last_reader.insert(*slot, i);
                }
            }
            for gate in &step.controls {
                if let Gate::Slot(slot) = gate {
                    last_reader.insert(*slot, i);
                }
            }
        }
        let kept: HashSet<usize> = outputs
            .iter()
            .filter_map(|(_, s)| {
                if let Source::Slot(x) = s {
                    Some(*x)
                } else {
                    None
                }
            })
            .collect();
        for (slot, reader) in last_reader {
            if !kept.contains(&slot) {
                steps[reader].release.push(slot);
            }
        }
        let plan = Plan {
            signature: key.to_string(),
            feeds,
            steps,
            num_slots,
            outputs,
            output_steps,
        };
        Ok(Compiled::Plan(plan, info))
    }

    /// Walks back from the outputs. Returns node → "its value is needed" (false: only its
    /// liveness). Statically dead inputs of a Merge are skipped, and statically live nodes
    /// needed for liveness only are left out.
    fn needed(
        &self,
        outputs: &[(String, TensorRef)],
        fed: &HashMap<TensorRef, usize>,
        port_live: &HashMap<NodeId, Vec<Live>>,
        node_live: &HashMap<NodeId, Live>,
    ) -> HashMap<NodeId, bool> {
        let graph = self.graph;
        let mut need: HashMap<NodeId, bool> = HashMap::new();
        let mut work: Vec<(NodeId, bool)> = outputs
            .iter()
            .filter(|(_, r)| !fed.contains_key(r))
            .map(|(_, r)| (r.node, true))
            .collect();
        while let Some((n, data)) = work.pop() {
            match need.get(&n) {
                Some(&have) if have || !data => continue,
                _ => {}
            }
            if !data && node_live.get(&n) == Some(&Live::Yes) {
                continue;
            }
            need.insert(n, data);
            let node = &graph.nodes[n];
            let op = node.op();
            for (i, r) in node.inputs.iter().enumerate() {
                if fed.contains_key(r) {
                    continue;
                }
                if is_merge(op)
                    && port_live.get(&r.node).and_then(|p| p.get(r.port)) == Some(&Live::No)
                {
                    continue;
                }
                let input_data = data || (is_switch(op) && i == 1);
                work.push((r.node, input_data));
            }
            for &c in &node.controls {
                work.push((c, false));
            }
        }
        need
    }

    fn topological_order(
        &self,
        need: &HashMap<NodeId, bool>,
        fed: &HashMap<TensorRef, usize>,
    ) -> Result<Vec<NodeId>, RuntimeError> {
        let graph = self.graph;
        let deps = |n: NodeId| -> Vec<NodeId> {
            let node = &graph.nodes[n];
            node.inputs
                .iter()
                .filter(|r| !fed.contains_key(r))
                .map(|r| r.node)
                .chain(node.controls.iter().copied())
                .filter(|d| need.contains_key(d))
                .collect()
        };
        let mut roots: Vec<NodeId> = need.keys().copied().collect();
        roots.sort_unstable();
        // 0 = unvisited, 1 = on the DFS stack, 2 = done.
        let mut state: HashMap<NodeId, u8> = HashMap::new();
        let mut order = Vec::with_capacity(need.len());
        for root in roots {
            if state.contains_key(&root) {
                continue;
            }
            let mut stack: Vec<(NodeId, Vec<NodeId>, usize)> = vec![(root, deps(root), 0)];
            state.insert(root, 1);
            while let Some((n, children, next)) = stack.last_mut() {
                if let Some(&child) = children.get(*next) {
                    *next += 1;
                    match state.get(&child) {
                        Some(1) => {
                            return Err(RuntimeError::InvalidGraph {
                                node: graph.nodes[child].name.clone(),
                                reason: "the graph has a cycle through this node (TF1 while loops are not supported)".into(),
                            });
                        }
                        Some(_) => {}
                        None => {
                            state.insert(child, 1);
                            let grandchildren = deps(child);
                            stack.push((child, grandchildren, 0));
                        }
                    }
                } else {
                    let n = *n;
                    state.insert(n, 2);
                    order.push(n);
                    stack.pop();
                }
            }
        }
        Ok(order)
    }

    fn const_index(&mut self, node: NodeId) -> Result<usize, String> {
        if let Some(&i) = self.pool.const_of_node.get(&node) {
            return Ok(i);
        }
        let value = match self.graph.attr(node, "value") {
            Some(AttrValue {
                value: Some(attr_value::Value::Tensor(t)),
            }) => t,
            _ => return Err("Const node has no tensor `value` attr".into()),
        };
        let decoded = decode_tensor_proto(value)?;
        let value = Value::from_const(&decoded, self.device)?;
        let index = self.pool.consts.len();
        self.pool.consts.push(value);
        self.pool.const_of_node.insert(node, index);
        Ok(index)
    }

    fn variable(&mut self, node: NodeId, signature: &str) -> VarId {
        let (resource_key, name) = variable_key(self.graph, node);
        if let Some(&id) = self.pool.var_by_key.get(&resource_key) {
            return id;
        }
        let dtype = self
            .graph
            .attr(node, "dtype")
            .and_then(|v| v.as_type())
            .and_then(DataType::from_tf);
        let id = self.pool.variables.len();
        self.pool.variables.push(VariableInfo {
            name,
            resource_key: resource_key.clone(),
            node,
            dtype,
            signature: signature.to_string(),
        });
        self.pool.var_by_key.insert(resource_key, id);
        id
    }
}

/// Steps an output depends on, transitively.
fn steps_needed(steps: &[Step], output: Source) -> Vec<usize> {
    let mut owner = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        owner.resize(step.first_slot + step.num_outputs, i);
    }
    let slot_owner = |slot: usize| owner.get(slot).copied();
    let mut needed = vec![false; steps.len()];
    let mut work: Vec<usize> = match output {
        Source::Slot(s) => slot_owner(s).into_iter().collect(),
        _ => Vec::new(),
    };
    while let Some(i) = work.pop() {
        if needed[i] {
            continue;
        }
        needed[i] = true;
        for s in &steps[i].inputs {
            if let Source::Slot(slot) = s {
                work.extend(slot_owner(*slot));
            }
        }
        for gate in &steps[i].controls {
            match gate {
                Gate::Step(s) => work.push(*s),
                Gate::Slot(slot) => work.extend(slot_owner(*slot)),
                Gate::Feed(_) => {}
            }
        }
    }
    needed
        .iter()
        .enumerate()
        .filter_map(|(i, &n)| n.then_some(i))
        .collect()
}

#[derive(Clone)]
enum Slot {
    Dead,
    /// Live; `None` for liveness-only steps.
    Live(Option<Value>),
}

/// How the memory budget (`budget.rs`) sees one step: its kernel, or that it forwards an input.
pub(crate) enum StepRule<'p> {
    Kernel(&'p Kernel),
    /// `Switch`, `Merge`, a fed-or-default input: outputs are (one of) the inputs.
    Forward,
    /// Liveness only.
    Other,
}

/// One step for the memory budget.
pub(crate) struct StepView<'p> {
    pub node: &'p str,
    pub rule: StepRule<'p>,
    pub inputs: &'p [Source],
    pub first_slot: usize,
    pub num_outputs: usize,
}

impl Plan {
    pub(crate) fn num_slots(&self) -> usize {
        self.num_slots
    }

    /// The steps in execution order, for the memory budget.
    pub(crate) fn step_rules(&self) -> impl Iterator<Item = StepView<'_>> {
        self.steps.iter().map(|step| StepView {
            node: &step.node,
            rule: match &step.kind {
                StepKind::Kernel(kernel) => StepRule::Kernel(kernel),
                StepKind::Switch | StepKind::Merge | StepKind::FeedOrDefault(_) => {
                    StepRule::Forward
                }
                StepKind::Liveness | StepKind::SwitchLiveness => StepRule::Other,
            },
            inputs: &step.inputs,
            first_slot: step.first_slot,
            num_outputs: step.num_outputs,
        })
    }
}

pub(crate) struct RunContext<'r> {
    pub device: &'r Device,
    pub consts: &'r [Value],
    pub variables: &'r [Option<Value>],
}

impl Plan {
    /// Runs the plan. `feeds[i]` is the value of `self.feeds[i]` (`None`: not supplied).
    /// `wanted`: indices into the plan's outputs, or `None` for all.
    pub(crate) fn run(
        &self,
        ctx: &RunContext<'_>,
        feeds: &[Option<Value>],
        wanted: Option<&[usize]>,
    ) -> Result<Vec<(String, Value)>, RuntimeError> {
        let mask: Option<Vec<bool>> = wanted.map(|outs| {
            let mut m = vec![false; self.steps.len()];
            for &o in outs {
                for &s in &self.output_steps[o] {
                    m[s] = true;
                }
            }
            m
        });
        let mut slots: Vec<Slot> = vec![Slot::Dead; self.num_slots];
        let mut step_live = vec![false; self.steps.len()];
        let kernel_ctx = KernelContext {
            device: ctx.device,
            variables: ctx.variables,
        };
        let fail = |step: &Step, reason: String| RuntimeError::Execution {
            signature: self.signature.clone(),
            node: step.node.clone(),
            op: step.op.clone(),
            reason,
        };
        for (i, step) in self.steps.iter().enumerate() {
            if let Some(m) = &mask
                && !m[i]
            {
                continue;
            }
            let controls_live = step.controls.iter().all(|gate| match gate {
                Gate::Step(s) => step_live[*s],
                Gate::Slot(slot) => matches!(slots[*slot], Slot::Live(_)),
                Gate::Feed(f) => feeds.get(*f).is_some_and(|v| v.is_some()),
            });
            let is_live = |s: &Source, slots: &[Slot]| match s {
                Source::Slot(x) => matches!(slots[*x], Slot::Live(_)),
                Source::Feed(f) => feeds.get(*f).is_some_and(|v| v.is_some()),
                _ => true,
            };
            let value_of = |s: &Source, slots: &'_ [Slot]| -> Option<Value> {
                match s {
                    Source::Slot(x) => match &slots[*x] {
                        Slot::Live(v) => v.clone(),
                        Slot::Dead => None,
                    },
                    Source::Feed(f) => feeds.get(*f).cloned().flatten(),
                    Source::Const(c) => ctx.consts.get(*c).cloned(),
                    Source::Variable(v) => ctx.variables.get(*v).cloned().flatten(),
                    Source::AlwaysLive => None,
                }
            };
            let outputs: Vec<Slot> = match &step.kind {
                StepKind::Merge => {
                    let chosen = step.inputs.iter().position(|s| is_live(s, &slots));
                    match (controls_live, chosen) {
                        (true, Some(k)) => {
                            let v = value_of(&step.inputs[k], &slots)
                                .ok_or_else(|| fail(step, "input has no value".into()))?;
                            let index = Value::host(HostValue::ints(
                                DataType::Int32,
                                vec![],
                                vec![k as i64],
                            ));
                            vec![Slot::Live(Some(v)), Slot::Live(Some(index))]
                        }
                        _ => vec![Slot::Dead; step.num_outputs],
                    }
                }
                kind => {
                    let inputs_live = step.inputs.iter().all(|s| is_live(s, &slots));
                    if !(controls_live && inputs_live) {
                        vec![Slot::Dead; step.num_outputs]
                    } else {
                        match kind {
                            StepKind::Liveness => vec![Slot::Live(None); step.num_outputs],
                            StepKind::Switch | StepKind::SwitchLiveness => {
                                let pred = step.inputs.get(1).and_then(|s| value_of(s, &slots));
                                let taken = match pred {
                                    Some(Value::Host(h)) => match &h.vals {
                                        HostVals::Bools(b) if b.len() == 1 => b[0],
                                        _ => {
                                            return Err(fail(
                                                step,
                                                "predicate must be a scalar bool".into(),
                                            ));
                                        }
                                    },
                                    _ => {
                                        return Err(fail(
                                            step,
                                            "predicate must be a scalar bool".into(),
                                        ));
                                    }
                                };
                                let forwarded =
                                    if matches!(kind, StepKind::Switch) {
                                        Some(value_of(&step.inputs[0], &slots).ok_or_else(
                                            || fail(step, "input has no value".into()),
                                        )?)
                                    } else {
                                        None
                                    };
                                let mut out = vec![Slot::Dead, Slot::Dead];
                                out[usize::from(taken)] = Slot::Live(forwarded);
                                out
                            }
                            StepKind::FeedOrDefault(f) => {
                                let v = match feeds.get(*f).cloned().flatten() {
                                    Some(v) => v,
                                    None => value_of(&step.inputs[0], &slots)
                                        .ok_or_else(|| fail(step, "default has no value".into()))?,
                                };
                                vec![Slot::Live(Some(v))]
                            }
                            StepKind::Kernel(kernel) => {
                                let values: Vec<Value> = step
                                    .inputs
                                    .iter()
                                    .map(|s| {
                                        value_of(s, &slots).ok_or_else(|| {
                                            fail(step, "an input has no value".into())
                                        })
                                    })
                                    .collect::<Result<_, _>>()?;
                                let refs: Vec<&Value> = values.iter().collect();
                                let produced =
                                    kernel.run(&refs, &kernel_ctx).map_err(|r| fail(step, r))?;
                                let mut out: Vec<Slot> =
                                    produced.into_iter().map(|v| Slot::Live(Some(v))).collect();
                                out.resize(step.num_outputs, Slot::Dead);
                                out
                            }
                            StepKind::Merge => unreachable_merge(),
                        }
                    }
                }
            };
            step_live[i] = outputs.iter().any(|s| matches!(s, Slot::Live(_)))
                || (step.num_outputs == 0
                    && controls_live
                    && step.inputs.iter().all(|s| is_live(s, &slots)));
            for (port, slot) in outputs.into_iter().enumerate().take(step.num_outputs) {
                slots[step.first_slot + port] = slot;
            }
            // Drop the value but keep the liveness: nothing reads it any more, but that is
            // cheaper to guarantee than to prove.
            for &r in &step.release {
                if matches!(slots[r], Slot::Live(_)) {
                    slots[r] = Slot::Live(None);
                }
            }
        }
        let mut result = Vec::new();
        let selected: Vec<usize> = match wanted {
            Some(w) => w.to_vec(),
            None => (0..self.outputs.len()).collect(),
        };
        for o in selected {
            let (key, source) = &self.outputs[o];
            let value = match source {
                Source::Slot(x) => match &slots[*x] {
                    Slot::Live(Some(v)) => v.clone(),
                    _ => {
                        return Err(RuntimeError::DeadOutput {
                            signature: self.signature.clone(),
                            key: key.clone(),
                        });
                    }
                },
                other => {
                    let v = match other {
                        Source::Feed(f) => feeds.get(*f).cloned().flatten(),
                        Source::Const(c) => ctx.consts.get(*c).cloned(),
                        Source::Variable(v) => ctx.variables.get(*v).cloned().flatten(),
                        _ => None,
                    };
                    v.ok_or_else(|| RuntimeError::DeadOutput {
                        signature: self.signature.clone(),
                        key: key.clone(),
                    })?
                }
            };
            result.push((key.clone(), value));
        }
        Ok(result)
    }

    pub(crate) fn output_keys(&self) -> Vec<&str> {
        self.outputs.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// Number of steps (for tests: pruning must keep plans small).
    pub(crate) fn num_steps(&self) -> usize {
        self.steps.len()
    }

    pub(crate) fn fused_chains(&self) -> Vec<String> {
        let mut labels = Vec::new();
        for step in &self.steps {
            let chains = match &step.kind {
                StepKind::Kernel(Kernel::Dense(chain)) => std::slice::from_ref(chain),
                StepKind::Kernel(Kernel::DenseStack(stack)) => stack.chains.as_slice(),
                _ => continue,
            };
            labels.extend(
                chains
                    .iter()
                    .filter(|c| !c.label().is_empty())
                    .map(|c| c.label().to_string()),
            );
        }
        labels
    }

    /// How many chains each stacked step runs (see [`stack_dense_chains`]).
    pub(crate) fn dense_stacks(&self) -> Vec<usize> {
        self.steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Kernel(Kernel::DenseStack(stack)) => Some(stack.chains.len()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn step_ops(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.op.as_str()).collect()
    }
}

/// Who reads each step's value, for the fusion passes: a step's value may be folded into the
/// next step only when that step is its one reader.
///
/// Liveness-only steps do not count as readers: they need to know whether a value exists, not
/// what it is, and a step folded into another becomes a liveness-only step itself, which
/// still passes liveness on. (The links absorbed by [`fuse_dense_chains`] keep reading the
/// previous chain's value for liveness; counted, they would keep MLP layers from stacking.)
struct Links {
    /// Slot -> the steps that read its value (as an input or through a control edge).
    readers: HashMap<usize, Vec<usize>>,
    /// Steps that another step waits on through a control edge.
    gated: HashSet<usize>,
    /// Slots that are signature outputs.
    kept: HashSet<usize>,
}

impl Links {
    fn new(steps: &[Step], outputs: &[(String, Source)]) -> Links {
        let mut readers: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut gated = HashSet::new();
        for (i, step) in steps.iter().enumerate() {
            if matches!(step.kind, StepKind::Liveness) {
                for gate in &step.controls {
                    if let Gate::Step(s) = gate {
                        gated.insert(*s);
                    }
                }
                continue;
            }
            for source in &step.inputs {
                if let Source::Slot(slot) = source {
                    readers.entry(*slot).or_default().push(i);
                }
            }
            for gate in &step.controls {
                match gate {
                    Gate::Slot(slot) => readers.entry(*slot).or_default().push(i),
                    Gate::Step(s) => {
                        gated.insert(*s);
                    }
                    Gate::Feed(_) => {}
                }
            }
        }
        let kept = outputs
            .iter()
            .filter_map(|(_, s)| match s {
                Source::Slot(x) => Some(*x),
                _ => None,
            })
            .collect();
        Links {
            readers,
            gated,
            kept,
        }
    }

    /// The step that alone reads `step`'s single output, as its first input, when that value
    /// is not a signature output and no step waits on `step` through a control edge.
    fn next(&self, steps: &[Step], step: usize) -> Option<usize> {
        let slot = steps[step].first_slot;
        if steps[step].num_outputs != 1 || self.kept.contains(&slot) || self.gated.contains(&step) {
            return None;
        }
        match self.readers.get(&slot).map(Vec::as_slice) {
            Some([only]) if steps[*only].inputs.first() == Some(&Source::Slot(slot)) => Some(*only),
            _ => None,
        }
    }
}

/// Joins runs of fused `MatMul` chains where each chain's value is read only by the next chain
/// (an MLP's layers) into one [`crate::nn::DenseStack`] step, which runs blocks of rows through
/// all of them while the activations stay in cache. Runs after [`fuse_dense_chains`], on the
/// chains it built.
///
/// As there, the stack runs at its last chain's step, which takes over the first chain's
/// inputs, every later chain's weights and biases, and every chain's control gates; the earlier
/// chains become liveness-only steps with their inputs, so step indices and liveness are
/// unchanged.
fn stack_dense_chains(steps: &mut [Step], outputs: &[(String, Source)]) {
    let flow = Links::new(steps, outputs);
    let matmul_chain = |step: &Step| match &step.kind {
        StepKind::Kernel(Kernel::Dense(chain)) if matches!(chain.head, Head::MatMul { .. }) => {
            Some(chain.clone())
        }
        _ => None,
    };
    // Steps are in topological order, so a chain's successors come after it: by the time the
    // loop reaches them they are no longer `Dense` steps and are skipped.
    for head in 0..steps.len() {
        let Some(first) = matmul_chain(&steps[head]) else {
            continue;
        };
        let mut members = vec![head];
        let mut chains = vec![first];
        while let Some(next) = flow.next(steps, members[members.len() - 1])
            && let Some(chain) = matmul_chain(&steps[next])
        {
            members.push(next);
            chains.push(chain);
        }
        let Some((&last, earlier)) = members.split_last() else {
            continue;
        };
        if earlier.is_empty() {
            continue;
        }
        let mut inputs = steps[head].inputs.clone();
        let mut controls = Vec::new();
        for &member in &members {
            if member != head {
                inputs.extend(steps[member].inputs.iter().skip(1).copied());
            }
            controls.extend(steps[member].controls.iter().copied());
        }
        let mut hidden_nodes = Vec::with_capacity(earlier.len());
        for &member in earlier {
            steps[member].kind = StepKind::Liveness;
            hidden_nodes.push(steps[member].node.clone());
        }
        let step = &mut steps[last];
        step.kind = StepKind::Kernel(Kernel::DenseStack(std::sync::Arc::new(
            crate::nn::DenseStack {
                chains,
                hidden_nodes,
            },
        )));
        step.inputs = inputs;
        step.controls = controls;
    }
}

/// Fuses `MatMul`/`Conv2D` -> `BiasAdd` -> `Relu`/`Relu6` chains into one step, so that bias
/// and activation run in the GEMM's epilogue (`nn.rs`).
///
/// A link is fused only when the previous step's value has exactly one reader (the next link),
/// is not a signature output, and no step waits on it through a control edge. The fused
/// computation runs at the chain's *last* step, which takes over the head's inputs, the bias
/// and every link's control gates; the earlier links become liveness-only steps with their
/// original inputs, so step indices, liveness and dead-tensor behaviour are unchanged.
fn fuse_dense_chains(steps: &mut [Step], outputs: &[(String, Source)]) {
    let flow = Links::new(steps, outputs);
    for head in 0..steps.len() {
        let StepKind::Kernel(Kernel::Dense(chain)) = &steps[head].kind else {
            continue;
        };
        if chain.bias || chain.activation != cpu_kernels::Activation::None {
            continue;
        }
        let chain = chain.clone();
        let mut links = vec![head];
        let mut bias = None;
        if let Some(next) = flow.next(steps, head)
            && let StepKind::Kernel(Kernel::BiasAdd {
                channels_first: false,
            }) = steps[next].kind
            && steps[next].inputs.len() == 2
        {
            bias = Some(steps[next].inputs[1]);
            links.push(next);
        }
        let mut activation = cpu_kernels::Activation::None;
        if let Some(&last) = links.last()
            && let Some(next) = flow.next(steps, last)
            && steps[next].inputs.len() == 1
        {
            activation = match steps[next].kind {
                StepKind::Kernel(Kernel::Unary(UnaryOp::Relu)) => cpu_kernels::Activation::Relu,
                StepKind::Kernel(Kernel::Unary(UnaryOp::Relu6)) => cpu_kernels::Activation::Relu6,
                _ => cpu_kernels::Activation::None,
            };
            if activation != cpu_kernels::Activation::None {
                links.push(next);
            }
        }
        let Some((&last, absorbed)) = links.split_last() else {
            continue;
        };
        if absorbed.is_empty() {
            continue;
        }
        let mut inputs = steps[head].inputs.clone();
        inputs.extend(bias);
        let mut controls = Vec::new();
        for &link in &links {
            controls.extend(steps[link].controls.iter().copied());
        }
        let label = links
            .iter()
            .map(|&l| format!("`{}` ({})", steps[l].node, steps[l].op))
            .collect::<Vec<_>>()
            .join(" + ");
        for &link in absorbed {
            steps[link].kind = StepKind::Liveness;
        }
        let fused = chain.extended(bias.is_some(), activation, label);
        let step = &mut steps[last];
        step.kind = StepKind::Kernel(Kernel::Dense(std::sync::Arc::new(fused)));
        step.inputs = inputs;
        step.controls = controls;
    }
}

/// Merge steps are handled before the generic branch.
fn unreachable_merge() -> Vec<Slot> {
    vec![Slot::Dead, Slot::Dead]
}
