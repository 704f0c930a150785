//! Which checkpoint tensor holds which variable, and restoring them.
//!
//! The mapping is read from the graph itself, the way TensorFlow's loader restores: it runs
//! `saver_def.restore_op_name`, whose subgraph is `RestoreV2(prefix, tensor_names,
//! shape_and_slices)` feeding `Assign` (ref variables) or `AssignVariableOp` (resource variables).
//! We do not run it; we walk it: for every assignment reachable from the restore op, the target
//! traced back (through Identity and inlined function arguments) to its `VariableV2` /
//! `VarHandleOp` node, and the value traced back to output `k` of a `RestoreV2` whose
//! `tensor_names` constant says which checkpoint key that is. This covers TF1 savers
//! (`save/restore_all` → `save/Assign_k`) and TF2 restore functions
//! (`StatefulPartitionedCall_2` → `__inference__traced_restore_…` whose resource arguments are
//! the captured variable handles, keys such as
//! `layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE`), without knowing either layout.
//!
//! Variables the restore op does not mention (or models without a saver) fall back to a
//! checkpoint key equal to the variable's shared name or node name.

use std::collections::HashMap;

use savedmodel_format::DataType;
use savedmodel_format::TensorData;
use savedmodel_format::proto::SaverDef;

use crate::consts::decode_tensor_proto;
use crate::graph::{FlatGraph, NodeId, NodeKind, TensorRef};
use crate::plan::{is_variable_op, variable_key};

/// Checkpoint key per variable resource key (`container/shared_name`).
pub(crate) fn restore_mapping(
    graph: &FlatGraph<'_>,
    saver: Option<&SaverDef>,
) -> HashMap<String, String> {
    let mut mapping = HashMap::new();
    let Some(saver) = saver else { return mapping };
    let op_name = saver.restore_op_name.split(':').next().unwrap_or("");
    let Some(root) = graph.resolve_op_name(op_name) else {
        return mapping;
    };
    let mut seen = vec![false; graph.nodes.len()];
    let mut work = vec![root];
    while let Some(n) = work.pop() {
        if std::mem::replace(&mut seen[n], true) {
            continue;
        }
        let node = &graph.nodes[n];
        work.extend(node.inputs.iter().map(|r| r.node));
        work.extend(node.controls.iter().copied());
        if !matches!(node.op(), "Assign" | "AssignVariableOp") || node.inputs.len() < 2 {
            continue;
        }
        let target = graph.trace(node.inputs[0]);
        if !is_variable_op(graph.nodes[target.node].op()) {
            continue;
        }
        if let Some(key) = restored_key(graph, graph.trace(node.inputs[1])) {
            mapping.insert(variable_key(graph, target.node).0, key);
        }
    }
    mapping
}

/// The checkpoint key of output `k` of a `RestoreV2` node (whole tensors only).
fn restored_key(graph: &FlatGraph<'_>, value: TensorRef) -> Option<String> {
    let restore = &graph.nodes[value.node];
    if restore.op() != "RestoreV2" {
        return None;
    }
    let names = string_constant(graph, graph.trace(*restore.inputs.get(1)?))?;
    let slices = string_constant(graph, graph.trace(*restore.inputs.get(2)?))?;
    if !slices.get(value.port)?.is_empty() {
        return None; // a slice of a partitioned variable
    }
    names
        .get(value.port)
        .map(|n| String::from_utf8_lossy(n).into_owned())
}

fn string_constant(graph: &FlatGraph<'_>, tensor: TensorRef) -> Option<Vec<Vec<u8>>> {
    let NodeKind::Def(def) = graph.nodes[tensor.node].kind else {
        return None;
    };
    if def.op != "Const" {
        return None;
    }
    match decode_tensor_proto(def.attr.get("value")?.as_tensor()?)
        .ok()?
        .host
        .into_data()
    {
        TensorData::Str(v) => Some(v),
        _ => None,
    }
}

/// Every variable node of the graph (top level and inside functions).
pub(crate) fn variable_nodes(graph: &FlatGraph<'_>) -> Vec<NodeId> {
    (0..graph.nodes.len())
        .filter(|&n| is_variable_op(graph.nodes[n].op()))
        .collect()
}

/// Is a checkpoint shape compatible with a graph shape (`-1` = any size, `None` = any rank)?
pub(crate) fn shape_matches(graph_shape: &Option<Vec<i64>>, bundle_shape: &[usize]) -> bool {
    match graph_shape {
        None => true,
        Some(dims) => {
            dims.len() == bundle_shape.len()
                && dims
                    .iter()
                    .zip(bundle_shape)
                    .all(|(&g, &b)| g < 0 || g as u64 == b as u64)
        }
    }
}

/// Checkpoints store float variables as DT_FLOAT etc.; this compares the graph's dtype to the
/// bundle's.
pub(crate) fn dtype_name(dtype: Option<DataType>) -> String {
    dtype
        .map(|d| d.tf_name().to_string())
        .unwrap_or_else(|| "<unknown>".into())
}
