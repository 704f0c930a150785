//! Reading `saved_model.pb`: parsing, meta graph and signature selection, and the consistency
//! checks a runtime needs before it evaluates anything.
//!
//! Everything takes bytes (no I/O). Only the binary `saved_model.pb` is parsed: the text form
//! `saved_model.pbtxt` would need a protobuf text-format parser and no exporter we target writes
//! it by default.
//!
//! The checks mirror what TensorFlow's loaders do, with errors that say what is wrong:
//! * meta graphs are selected by tag-set *equality* (like `LoadSavedModel`);
//! * every tensor a signature names must exist (`node:index`, index within the node's outputs
//!   where the op's arity is known);
//! * the restore subgraph (`saver_def.restore_op_name`, TF1 `save/restore_all` or the TF2 restore
//!   function) is followed to find which checkpoint key feeds which variable, so that dtypes and
//!   shapes in the graph can be compared with the bundle before a restore.

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::bundle::{BundleIndex, VARIABLES_INDEX};
use crate::convert::dtype_name;
use crate::error::FormatError;
use crate::proto::{
    FunctionDef, MetaGraphDef, NodeDef, OpDef, SavedModel, SignatureDef, TensorInfo, tensor_info,
};
use crate::tensor::{DataType, HostTensor, TensorData};
use crate::writer::SAVED_MODEL_MARKER;

/// Decodes `saved_model.pb`.
pub fn parse_saved_model(bytes: &[u8]) -> Result<SavedModel, FormatError> {
    let model = SavedModel::decode(bytes)
        .map_err(|e| FormatError::decode(SAVED_MODEL_MARKER, "SavedModel", e))?;
    if model.meta_graphs.is_empty() {
        return Err(FormatError::graph("SavedModel", "contains no meta graphs"));
    }
    Ok(model)
}

/// The parsed metadata files of a SavedModel directory; tensor data is read on demand through
/// [`BundleIndex::read_tensor`].
#[derive(Debug, Clone)]
pub struct SavedModelFiles {
    pub saved_model: SavedModel,
    /// `None` when the SavedModel has no `variables/variables.index` (TF then restores nothing).
    pub variables: Option<BundleIndex>,
}

impl SavedModelFiles {
    /// Parses `saved_model.pb` and, if present, `variables/variables.index`.
    pub fn parse(
        saved_model_pb: &[u8],
        variables_index: Option<&[u8]>,
    ) -> Result<SavedModelFiles, FormatError> {
        let saved_model = parse_saved_model(saved_model_pb)?;
        let variables = variables_index
            .map(|bytes| BundleIndex::parse(VARIABLES_INDEX, bytes))
            .transpose()?;
        Ok(SavedModelFiles {
            saved_model,
            variables,
        })
    }

    /// See [`select_meta_graph`].
    pub fn meta_graph(&self, tags: &[&str]) -> Result<&MetaGraphDef, FormatError> {
        select_meta_graph(&self.saved_model, tags)
    }
}

/// Tags of a meta graph (empty if it has no `meta_info_def`).
pub fn meta_graph_tags(meta: &MetaGraphDef) -> Vec<String> {
    meta.meta_info_def
        .as_ref()
        .map(|m| m.tags.clone())
        .unwrap_or_default()
}

/// The meta graph whose tag *set* equals `tags` (order and duplicates ignored, as in TF).
pub fn select_meta_graph<'a>(
    model: &'a SavedModel,
    tags: &[&str],
) -> Result<&'a MetaGraphDef, FormatError> {
    let wanted: HashSet<&str> = tags.iter().copied().collect();
    model
        .meta_graphs
        .iter()
        .find(|meta| {
            let have = meta_graph_tags(meta);
            have.iter().map(String::as_str).collect::<HashSet<_>>() == wanted
        })
        .ok_or_else(|| FormatError::MetaGraphNotFound {
            requested: tags.iter().map(|t| t.to_string()).collect(),
            available: model.meta_graphs.iter().map(meta_graph_tags).collect(),
        })
}

/// Whether the meta graph is a TF2 object-based SavedModel (an `object_graph_def` is present).
pub fn is_object_based(meta: &MetaGraphDef) -> bool {
    meta.object_graph_def.is_some()
}

/// Signature keys, sorted.
pub fn signature_keys(meta: &MetaGraphDef) -> Vec<&str> {
    meta.signature_def.keys().map(String::as_str).collect()
}

/// The signature with the given key.
pub fn signature<'a>(meta: &'a MetaGraphDef, key: &str) -> Result<&'a SignatureDef, FormatError> {
    meta.signature_def
        .get(key)
        .ok_or_else(|| FormatError::SignatureNotFound {
            key: key.to_string(),
            available: meta.signature_def.keys().cloned().collect(),
        })
}

/// A reference to output `index` of node `node` (top-level graph syntax `node:index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorRef<'a> {
    pub node: &'a str,
    pub index: usize,
}

/// Parses `"node:index"`, or `"node"` (= output 0, as TensorFlow's `ParseTensorName` does).
/// Returns `None` for malformed names (empty node, non-numeric index, control input `^node`).
pub fn parse_tensor_name(name: &str) -> Option<TensorRef<'_>> {
    if name.starts_with('^') {
        return None;
    }
    let (node, index) = match name.rsplit_once(':') {
        Some((node, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
            (node, index.parse().ok()?)
        }
        Some(_) => return None,
        None => (name, 0),
    };
    if node.is_empty() {
        None
    } else {
        Some(TensorRef { node, index })
    }
}

/// Number of outputs of a node, when it can be determined: from the op's `OpDef` (the meta
/// graph's `stripped_op_list`), from a called function's signature, from `Tout` of call ops, or
/// for a few common ops. `None` when unknown.
pub fn output_count(meta: &MetaGraphDef, node: &NodeDef) -> Option<usize> {
    let library = meta.graph_def.as_ref().and_then(|g| g.library.as_ref());
    if let Some(function) = library.and_then(|l| {
        l.function
            .iter()
            .find(|f| f.signature.as_ref().is_some_and(|s| s.name == node.op))
    }) {
        return function.signature.as_ref().map(|s| s.output_arg.len());
    }
    if matches!(
        node.op.as_str(),
        "StatefulPartitionedCall" | "PartitionedCall"
    ) {
        return node
            .attr
            .get("Tout")
            .and_then(|t| t.as_list())
            .map(|l| l.r#type.len());
    }
    let op_def = meta
        .meta_info_def
        .as_ref()
        .and_then(|m| m.stripped_op_list.as_ref())
        .and_then(|list| list.op.iter().find(|op| op.name == node.op));
    if let Some(op_def) = op_def {
        return op_def_output_count(op_def, node);
    }
    match node.op.as_str() {
        "NoOp" | "AssignVariableOp" | "SaveV2" => Some(0),
        "Placeholder"
        | "PlaceholderWithDefault"
        | "Const"
        | "Identity"
        | "VarHandleOp"
        | "VariableV2"
        | "ReadVariableOp"
        | "MatMul"
        | "BiasAdd"
        | "Relu"
        | "Softmax"
        | "ArgMax"
        | "Reshape"
        | "Shape"
        | "Add"
        | "AddV2"
        | "Mul"
        | "Sigmoid"
        | "Tanh"
        | "Cast"
        | "Merge" => Some(if node.op == "Merge" { 2 } else { 1 }),
        "RestoreV2" => node
            .attr
            .get("dtypes")
            .and_then(|t| t.as_list())
            .map(|l| l.r#type.len()),
        _ => None,
    }
}

/// Flat output count of a node from its op's `OpDef` (an arg's length is 1, `number_attr`, or the
/// length of `type_list_attr`).
pub fn op_def_output_count(op_def: &OpDef, node: &NodeDef) -> Option<usize> {
    op_def.output_arg.iter().try_fold(0usize, |total, arg| {
        let len = if !arg.number_attr.is_empty() {
            usize::try_from(node.attr.get(&arg.number_attr)?.as_int()?).ok()?
        } else if !arg.type_list_attr.is_empty() {
            node.attr.get(&arg.type_list_attr)?.as_list()?.r#type.len()
        } else {
            1
        };
        total.checked_add(len)
    })
}

fn graph_nodes(meta: &MetaGraphDef) -> Result<HashMap<&str, &NodeDef>, FormatError> {
    let graph = meta
        .graph_def
        .as_ref()
        .ok_or_else(|| FormatError::graph("meta graph", "has no graph_def"))?;
    Ok(graph.node.iter().map(|n| (n.name.as_str(), n)).collect())
}

/// Checks that every tensor the signature names exists in the graph (with an output index in
/// range where the arity is known) and that dense inputs/outputs carry a known dtype.
pub fn validate_signature(meta: &MetaGraphDef, key: &str) -> Result<(), FormatError> {
    let signature = signature(meta, key)?;
    let nodes = graph_nodes(meta)?;
    for (direction, map) in [("input", &signature.inputs), ("output", &signature.outputs)] {
        for (tensor_key, info) in map {
            let error = |tensor: &str, reason: String| FormatError::SignatureTensor {
                signature: key.to_string(),
                direction,
                key: tensor_key.clone(),
                tensor: tensor.to_string(),
                reason,
            };
            for name in tensor_names(info) {
                let reference = parse_tensor_name(name).ok_or_else(|| {
                    error(name, "not a tensor name of the form 'node:index'".into())
                })?;
                let node = nodes.get(reference.node).ok_or_else(|| {
                    error(name, format!("the graph has no node '{}'", reference.node))
                })?;
                // `NoOp` targets (the init-op signature) are named without an index.
                let is_op_target = !name.contains(':') && output_count(meta, node) == Some(0);
                if let Some(count) = output_count(meta, node)
                    && !is_op_target
                    && reference.index >= count
                {
                    return Err(error(
                        name,
                        format!(
                            "node '{}' ({}) has {count} output(s), index {} is out of range",
                            node.name, node.op, reference.index
                        ),
                    ));
                }
            }
            if info.dense_name().is_some()
                && !is_op_target_info(info)
                && DataType::from_tf(info.dtype).is_none()
            {
                return Err(error(
                    info.dense_name().unwrap_or_default(),
                    format!(
                        "dtype {} ({}) is not supported",
                        info.dtype,
                        dtype_name(info.dtype)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Init-op style entries (`{name: "NoOp"}`) have no dtype.
fn is_op_target_info(info: &TensorInfo) -> bool {
    info.dtype == 0 && info.dense_name().is_some_and(|n| !n.contains(':'))
}

/// All tensor names a `TensorInfo` refers to (one for dense tensors, three for COO sparse, the
/// components of composite tensors).
pub fn tensor_names(info: &TensorInfo) -> Vec<&str> {
    match &info.encoding {
        Some(tensor_info::Encoding::Name(name)) => vec![name.as_str()],
        Some(tensor_info::Encoding::CooSparse(sparse)) => vec![
            sparse.values_tensor_name.as_str(),
            sparse.indices_tensor_name.as_str(),
            sparse.dense_shape_tensor_name.as_str(),
        ],
        Some(tensor_info::Encoding::CompositeTensor(composite)) => {
            composite.components.iter().flat_map(tensor_names).collect()
        }
        None => vec![""],
    }
}

// ---------------------------------------------------------------------------------------------
// variables: which checkpoint key restores which variable
// ---------------------------------------------------------------------------------------------

/// One variable assignment performed by the restore op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableRestore {
    /// Key in the bundle (`dense/kernel`, `layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE`).
    pub checkpoint_key: String,
    /// Top-level variable node (`VarHandleOp`, `VariableV2`, …) that receives the value.
    pub variable_node: String,
    /// The variable's `dtype` attr, when it has one this crate knows.
    pub dtype: Option<DataType>,
    /// The variable's `shape` attr (`-1` for unknown dims); `None` if absent or of unknown rank.
    pub shape: Option<Vec<i64>>,
}

/// Follows `saver_def.restore_op_name` and lists every (checkpoint key → variable) assignment.
///
/// Handles TF1 savers (a `NoOp` whose control inputs reach `Assign`/`AssignVariableOp` nodes fed
/// by `RestoreV2`, possibly through `Identity`) and TF2 restore functions (a
/// `StatefulPartitionedCall` whose body does the same on resource arguments bound to top-level
/// `VarHandleOp`s). Returns an empty list when the meta graph has no saver.
pub fn restore_plan(meta: &MetaGraphDef) -> Result<Vec<VariableRestore>, FormatError> {
    let Some(saver) = meta.saver_def.as_ref() else {
        return Ok(Vec::new());
    };
    let nodes = graph_nodes(meta)?;
    let restore_name = saver.restore_op_name.trim_start_matches('^');
    let restore_name = parse_tensor_name(restore_name).map_or(restore_name, |r| r.node);
    let context = format!("saver_def.restore_op_name '{}'", saver.restore_op_name);
    let restore_node = nodes
        .get(restore_name)
        .ok_or_else(|| FormatError::graph(&context, "no such node in the graph"))?;
    let library = meta.graph_def.as_ref().and_then(|g| g.library.as_ref());
    let find_function = |name: &str| -> Option<&FunctionDef> {
        library?
            .function
            .iter()
            .find(|f| f.signature.as_ref().is_some_and(|s| s.name == name))
    };

    let mut plan = Vec::new();
    let called = match restore_node.op.as_str() {
        "StatefulPartitionedCall" | "PartitionedCall" => restore_node
            .attr
            .get("f")
            .and_then(|f| f.as_func())
            .map(|f| f.name.as_str()),
        op => find_function(op).map(|_| op),
    };
    let assignments = if let Some(function_name) = called {
        let function = find_function(function_name).ok_or_else(|| {
            FormatError::graph(
                &context,
                format!("calls function '{function_name}' which is not in the library"),
            )
        })?;
        FunctionScope::new(function, restore_node).assignments(&context)?
    } else {
        collect_assignments(&GraphScope { nodes: &nodes }, restore_name, &context)?
    };
    for assignment in assignments {
        let variable = nodes.get(assignment.variable.as_str()).ok_or_else(|| {
            FormatError::graph(
                &context,
                format!(
                    "restores into '{}' which is not a graph node",
                    assignment.variable
                ),
            )
        })?;
        plan.push(variable_restore(assignment.key, variable));
    }
    plan.sort_by(|a, b| {
        a.checkpoint_key
            .cmp(&b.checkpoint_key)
            .then(a.variable_node.cmp(&b.variable_node))
    });
    plan.dedup();
    Ok(plan)
}

fn variable_restore(checkpoint_key: String, variable: &NodeDef) -> VariableRestore {
    VariableRestore {
        checkpoint_key,
        variable_node: variable.name.clone(),
        dtype: variable
            .attr
            .get("dtype")
            .and_then(|t| t.as_type())
            .and_then(DataType::from_tf),
        shape: variable
            .attr
            .get("shape")
            .and_then(|s| s.as_shape())
            .and_then(|s| s.dims()),
    }
}

/// Compares every variable the restore op assigns with the bundle: the key must exist, and the
/// dtype and (known) shape must match. Returns the plan on success.
pub fn check_variables(
    meta: &MetaGraphDef,
    bundle: &BundleIndex,
) -> Result<Vec<VariableRestore>, FormatError> {
    let plan = restore_plan(meta)?;
    for restore in &plan {
        let spec = bundle.tensor_spec(&restore.checkpoint_key)?;
        let mismatch = |graph: String, stored: String| FormatError::VariableMismatch {
            variable: restore.variable_node.clone(),
            checkpoint_key: restore.checkpoint_key.clone(),
            graph,
            bundle: stored,
        };
        if let Some(dtype) = restore.dtype
            && dtype != spec.dtype
        {
            return Err(mismatch(
                format!("dtype {}", dtype.tf_name()),
                format!("dtype {}", spec.dtype.tf_name()),
            ));
        }
        if let Some(shape) = &restore.shape {
            let compatible = shape.len() == spec.shape.len()
                && shape
                    .iter()
                    .zip(&spec.shape)
                    .all(|(&g, &b)| g < 0 || u64::try_from(g).ok() == Some(b as u64));
            if !compatible {
                return Err(mismatch(
                    format!("shape {shape:?}"),
                    format!("shape {:?}", spec.shape),
                ));
            }
        }
    }
    Ok(plan)
}

/// A (checkpoint key, variable) pair found in a restore subgraph, with the variable named in the
/// caller's namespace.
struct Assignment {
    key: String,
    variable: String,
}

/// Where node names are looked up and how input strings are resolved: the top-level graph, or a
/// function body.
trait Scope {
    fn node(&self, name: &str) -> Option<&NodeDef>;
    /// Resolves a data input to (producing node, flat output index), or `Arg(name)` for a
    /// function argument.
    fn resolve(&self, input: &str) -> Option<Source>;
    /// The variable an argument/handle input stands for, in the top-level graph.
    fn variable_for(&self, input: &str) -> Option<String>;
}

enum Source {
    Node(String, usize),
    Arg,
}

struct GraphScope<'g> {
    nodes: &'g HashMap<&'g str, &'g NodeDef>,
}

impl Scope for GraphScope<'_> {
    fn node(&self, name: &str) -> Option<&NodeDef> {
        self.nodes.get(name).copied()
    }
    fn resolve(&self, input: &str) -> Option<Source> {
        let r = parse_tensor_name(input)?;
        Some(Source::Node(r.node.to_string(), r.index))
    }
    fn variable_for(&self, input: &str) -> Option<String> {
        parse_tensor_name(input).map(|r| r.node.to_string())
    }
}

struct FunctionScope<'f> {
    nodes: HashMap<&'f str, &'f NodeDef>,
    /// Argument name -> the call node's input at that position.
    args: HashMap<&'f str, &'f str>,
}

impl<'f> FunctionScope<'f> {
    fn new(function: &'f FunctionDef, call: &'f NodeDef) -> FunctionScope<'f> {
        let data_inputs = call.input.iter().filter(|i| !i.starts_with('^'));
        let args = function
            .signature
            .iter()
            .flat_map(|s| s.input_arg.iter())
            .zip(data_inputs)
            .map(|(arg, input)| (arg.name.as_str(), input.as_str()))
            .collect();
        FunctionScope {
            nodes: function
                .node_def
                .iter()
                .map(|n| (n.name.as_str(), n))
                .collect(),
            args,
        }
    }

    /// Every assignment reachable from the function's control/data returns; a restore function
    /// returns the variables' final values, so simply scanning every assignment in the body is
    /// both simpler and complete.
    fn assignments(&self, context: &str) -> Result<Vec<Assignment>, FormatError> {
        let mut out = Vec::new();
        let mut names: Vec<&str> = self.nodes.keys().copied().collect();
        names.sort_unstable();
        for name in names {
            if let Some(assignment) = assignment_of(self, name, context)? {
                out.push(assignment);
            }
        }
        Ok(out)
    }
}

impl Scope for FunctionScope<'_> {
    fn node(&self, name: &str) -> Option<&NodeDef> {
        self.nodes.get(name).copied()
    }
    fn resolve(&self, input: &str) -> Option<Source> {
        let mut parts = input.split(':');
        let node = parts.next()?;
        match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) if self.args.contains_key(node) => Some(Source::Arg),
            (None, _, _) => Some(Source::Node(node.to_string(), 0)),
            // `node:out_arg:i`: the restore ops we follow (RestoreV2, Identity) have a single
            // output arg, so `i` is the flat index.
            (Some(_), Some(index), None) => {
                Some(Source::Node(node.to_string(), index.parse().ok()?))
            }
            (Some(index), None, _) => Some(Source::Node(node.to_string(), index.parse().ok()?)),
            _ => None,
        }
    }
    fn variable_for(&self, input: &str) -> Option<String> {
        let outer = self.args.get(input)?;
        parse_tensor_name(outer).map(|r| r.node.to_string())
    }
}

/// Walks back from `start` through data and control inputs and collects the assignments.
fn collect_assignments(
    scope: &GraphScope<'_>,
    start: &str,
    context: &str,
) -> Result<Vec<Assignment>, FormatError> {
    let mut out = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut stack = vec![start.to_string()];
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(node) = scope.node(&name) else {
            continue;
        };
        if let Some(assignment) = assignment_of(scope, &name, context)? {
            out.push(assignment);
            continue;
        }
        // Only walk through the plumbing of a restore subgraph (NoOps and Identities grouping
        // the assignments), not into the model's computation.
        if matches!(node.op.as_str(), "NoOp" | "Identity") {
            for input in &node.input {
                let input = input.trim_start_matches('^');
                if let Some(r) = parse_tensor_name(input) {
                    stack.push(r.node.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// If `name` is an assignment fed (through `Identity`s) by a `RestoreV2`/`Restore` output,
/// returns the checkpoint key and the assigned variable.
fn assignment_of(
    scope: &dyn Scope,
    name: &str,
    context: &str,
) -> Result<Option<Assignment>, FormatError> {
    let Some(node) = scope.node(name) else {
        return Ok(None);
    };
    if !matches!(node.op.as_str(), "AssignVariableOp" | "Assign") {
        return Ok(None);
    }
    let data_inputs: Vec<&str> = node
        .input
        .iter()
        .map(String::as_str)
        .filter(|i| !i.starts_with('^'))
        .collect();
    let [target, value] = data_inputs[..] else {
        return Err(FormatError::graph(
            context,
            format!(
                "assignment '{name}' ({}) does not have 2 data inputs",
                node.op
            ),
        ));
    };
    // Trace the value back through Identity nodes to the restore op.
    let mut source = scope.resolve(value);
    let mut hops = 0;
    let (restore_name, index) = loop {
        hops += 1;
        match source {
            Some(Source::Node(producer, index)) if hops < 64 => {
                let Some(producer_node) = scope.node(&producer) else {
                    return Ok(None);
                };
                match producer_node.op.as_str() {
                    "Identity" => {
                        source = producer_node.input.first().and_then(|i| scope.resolve(i))
                    }
                    "RestoreV2" | "Restore" | "RestoreSlice" => break (producer, index),
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        }
    };
    let restore = scope
        .node(&restore_name)
        .ok_or_else(|| FormatError::graph(context, format!("missing node '{restore_name}'")))?;
    let names_input = restore.input.get(1).ok_or_else(|| {
        FormatError::graph(
            context,
            format!("'{restore_name}' has no tensor_names input"),
        )
    })?;
    let keys = const_strings(scope, names_input, context)?;
    let key = keys.get(index).cloned().ok_or_else(|| {
        FormatError::graph(
            context,
            format!(
                "'{restore_name}' output {index} has no entry in its {} tensor names",
                keys.len()
            ),
        )
    })?;
    let variable = scope.variable_for(target).ok_or_else(|| {
        FormatError::graph(
            context,
            format!("cannot tell which variable '{name}' assigns ('{target}')"),
        )
    })?;
    Ok(Some(Assignment { key, variable }))
}

/// The string values of a `Const` (possibly behind `Identity`s) that feeds `input`.
fn const_strings(
    scope: &dyn Scope,
    input: &str,
    context: &str,
) -> Result<Vec<String>, FormatError> {
    let mut source = scope.resolve(input);
    for _ in 0..64 {
        let Some(Source::Node(name, _)) = source else {
            break;
        };
        let Some(node) = scope.node(&name) else { break };
        match node.op.as_str() {
            "Identity" => source = node.input.first().and_then(|i| scope.resolve(i)),
            "Const" => {
                let proto = node
                    .attr
                    .get("value")
                    .and_then(|v| v.as_tensor())
                    .ok_or_else(|| {
                        FormatError::graph(context, format!("Const '{name}' has no value attr"))
                    })?;
                let tensor = HostTensor::from_tensor_proto(proto, &format!("Const '{name}'"))?;
                let TensorData::Str(values) = tensor.into_data() else {
                    return Err(FormatError::graph(
                        context,
                        format!("Const '{name}' holding tensor names is not DT_STRING"),
                    ));
                };
                return values
                    .into_iter()
                    .map(|v| {
                        String::from_utf8(v).map_err(|_| {
                            FormatError::graph(
                                context,
                                format!("Const '{name}' has a non-UTF-8 tensor name"),
                            )
                        })
                    })
                    .collect();
            }
            _ => break,
        }
    }
    Err(FormatError::graph(
        context,
        format!("the tensor names of a restore op ('{input}') do not come from a Const"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::write_bundle;
    use crate::signature::SignatureInfo;
    use crate::writer::{Activation, DenseLayer, MlpExport, build_saved_model, export_mlp};

    fn tiny() -> MlpExport {
        MlpExport::new(vec![
            DenseLayer {
                kernel: vec![0.5; 6],
                bias: vec![0.0; 3],
                in_dim: 2,
                out_dim: 3,
                activation: Activation::Relu,
            },
            DenseLayer {
                kernel: vec![0.25; 6],
                bias: vec![0.1; 2],
                in_dim: 3,
                out_dim: 2,
                activation: Activation::Linear,
            },
        ])
    }

    #[test]
    fn tensor_names_parse_like_tensorflow() {
        assert_eq!(
            parse_tensor_name("x:0"),
            Some(TensorRef {
                node: "x",
                index: 0
            })
        );
        assert_eq!(
            parse_tensor_name("a/b:12"),
            Some(TensorRef {
                node: "a/b",
                index: 12
            })
        );
        assert_eq!(
            parse_tensor_name("NoOp"),
            Some(TensorRef {
                node: "NoOp",
                index: 0
            })
        );
        assert_eq!(parse_tensor_name("x:"), None);
        assert_eq!(parse_tensor_name("x:y"), None);
        assert_eq!(parse_tensor_name(":0"), None);
        assert_eq!(parse_tensor_name("^x"), None);
        assert_eq!(parse_tensor_name("x:99999999999999999999999"), None);
    }

    #[test]
    fn meta_graph_selection_uses_set_equality() {
        let mut model = build_saved_model(&tiny()).unwrap();
        let mut second = model.meta_graphs[0].clone();
        second.meta_info_def.as_mut().unwrap().tags = vec!["serve".into(), "gpu".into()];
        model.meta_graphs.push(second);
        assert!(select_meta_graph(&model, &["serve"]).is_ok());
        let gpu = select_meta_graph(&model, &["gpu", "serve", "gpu"]).unwrap();
        assert_eq!(meta_graph_tags(gpu), ["serve", "gpu"]);
        let err = select_meta_graph(&model, &["train"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[\"train\"]") && err.contains("[[\"serve\"], [\"serve\", \"gpu\"]]"),
            "{err}"
        );
    }

    #[test]
    fn signature_lookup_lists_available_keys() {
        let model = build_saved_model(&tiny()).unwrap();
        let meta = &model.meta_graphs[0];
        assert!(signature(meta, "serving_default").is_ok());
        let err = signature(meta, "predict").unwrap_err().to_string();
        assert!(
            err.contains("'predict'") && err.contains("serving_default"),
            "{err}"
        );
        validate_signature(meta, "serving_default").unwrap();
        let info = SignatureInfo::from_def(
            "serving_default",
            signature(meta, "serving_default").unwrap(),
        )
        .unwrap();
        let image = &info.inputs["image"];
        assert_eq!(
            (image.tensor_name.as_str(), image.dtype, image.shape.clone()),
            ("image:0", DataType::Float, Some(vec![-1, 2]))
        );
        let outputs: Vec<(&str, DataType)> = info
            .outputs
            .iter()
            .map(|(key, spec)| (key.as_str(), spec.dtype))
            .collect();
        assert_eq!(
            outputs,
            [
                ("class", DataType::Int64),
                ("probabilities", DataType::Float)
            ]
        );
    }

    #[test]
    fn signature_naming_a_missing_tensor_is_an_error() {
        let mut model = build_saved_model(&tiny()).unwrap();
        let meta = &mut model.meta_graphs[0];
        let signature = meta.signature_def.get_mut("serving_default").unwrap();
        signature.outputs.get_mut("class").unwrap().encoding =
            Some(tensor_info::Encoding::Name("classes:0".into()));
        let err = validate_signature(meta, "serving_default")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'serving_default'")
                && err.contains("output 'class'")
                && err.contains("'classes:0'")
                && err.contains("no node 'classes'"),
            "{err}"
        );
        let signature = meta.signature_def.get_mut("serving_default").unwrap();
        signature.outputs.get_mut("class").unwrap().encoding =
            Some(tensor_info::Encoding::Name("probabilities:1".into()));
        let err = validate_signature(meta, "serving_default")
            .unwrap_err()
            .to_string();
        assert!(err.contains("index 1 is out of range"), "{err}");
    }

    #[test]
    fn restore_plan_of_our_export() {
        let model = build_saved_model(&tiny()).unwrap();
        let plan = restore_plan(&model.meta_graphs[0]).unwrap();
        let keys: Vec<(&str, &str)> = plan
            .iter()
            .map(|r| (r.checkpoint_key.as_str(), r.variable_node.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dense/bias", "dense/bias"),
                ("dense/kernel", "dense/kernel"),
                ("dense_1/bias", "dense_1/bias"),
                ("dense_1/kernel", "dense_1/kernel")
            ]
        );
        assert_eq!(plan[1].shape, Some(vec![2, 3]));
        assert_eq!(plan[1].dtype, Some(DataType::Float));
    }

    #[test]
    fn variable_shapes_are_checked_against_the_bundle() {
        let files = export_mlp(&tiny()).unwrap();
        let parsed = SavedModelFiles::parse(&files[2].1, Some(&files[0].1)).unwrap();
        let meta = parsed.meta_graph(&["serve"]).unwrap();
        let bundle = parsed.variables.as_ref().unwrap();
        assert_eq!(check_variables(meta, bundle).unwrap().len(), 4);

        // A bundle whose dense/kernel has another shape.
        let wrong = HostTensor::new(vec![3, 2], TensorData::F32(vec![0.0; 6])).unwrap();
        let other = HostTensor::new(vec![3], TensorData::F32(vec![0.0; 3])).unwrap();
        let two = HostTensor::new(vec![2], TensorData::F32(vec![0.0; 2])).unwrap();
        let k1 = HostTensor::new(vec![3, 2], TensorData::F32(vec![0.0; 6])).unwrap();
        let bad = write_bundle([
            ("dense/bias", &other),
            ("dense/kernel", &wrong),
            ("dense_1/bias", &two),
            ("dense_1/kernel", &k1),
        ])
        .unwrap();
        let bad_index = BundleIndex::parse(VARIABLES_INDEX, &bad.index).unwrap();
        let err = check_variables(meta, &bad_index).unwrap_err().to_string();
        assert!(
            err.contains("'dense/kernel'") && err.contains("[2, 3]") && err.contains("[3, 2]"),
            "{err}"
        );

        // A bundle missing a variable.
        let partial = write_bundle([("dense/bias", &other)]).unwrap();
        let partial_index = BundleIndex::parse(VARIABLES_INDEX, &partial.index).unwrap();
        let err = check_variables(meta, &partial_index)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'dense/kernel' not found"), "{err}");

        // A dtype mismatch.
        let ints = HostTensor::new(vec![3], TensorData::I32(vec![0; 3])).unwrap();
        let typed = write_bundle([
            ("dense/bias", &ints),
            (
                "dense/kernel",
                &HostTensor::new(vec![2, 3], TensorData::F32(vec![0.0; 6])).unwrap(),
            ),
        ])
        .unwrap();
        let typed_index = BundleIndex::parse(VARIABLES_INDEX, &typed.index).unwrap();
        let err = check_variables(meta, &typed_index).unwrap_err().to_string();
        assert!(
            err.contains("DT_FLOAT") && err.contains("DT_INT32"),
            "{err}"
        );
    }

    #[test]
    fn empty_or_garbage_saved_model_is_an_error() {
        let err = parse_saved_model(&[]).unwrap_err().to_string();
        assert!(err.contains("no meta graphs"), "{err}");
        let err = parse_saved_model(&[0x12, 0x05, 0x01])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("saved_model.pb") && err.contains("cannot decode SavedModel"),
            "{err}"
        );
    }
}
