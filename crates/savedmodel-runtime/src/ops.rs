//! What the runtime must know about op *signatures* (not their math): how a node's outputs are
//! laid out, so that a function body's `node:out_arg:i` can be turned into a flat output index,
//! and which attr defaults apply when an exporter stripped them (`stripped_default_attrs`).
//!
//! The model's own `meta_info_def.stripped_op_list` is the first source (TensorFlow writes every
//! op it uses there); a built-in table covers the ops this runtime executes, so graphs written
//! without an op list (for example by this project's own exporter) still work.

use std::collections::HashMap;

use savedmodel_format::proto::{AttrValue, OpDef};

/// How many tensors one output arg of an op produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgLen {
    One,
    /// `attr[name]` is an int (`N` of `Pack`, `Merge`, …).
    NumberAttr(String),
    /// `attr[name]` is a `list(type)` (`dtypes` of `RestoreV2`, `T` of `IdentityN`).
    TypeListAttr(String),
}

/// Output args of the ops the runtime knows, in TensorFlow's order and with TensorFlow's names
/// (from TF 2.21's op registry).
const BUILTIN_OUTPUTS: &[(&str, &[(&str, &str)])] = &[
    ("Placeholder", &[("output", "")]),
    ("PlaceholderWithDefault", &[("output", "")]),
    ("Const", &[("output", "")]),
    ("Identity", &[("output", "")]),
    ("IdentityN", &[("output", "T")]),
    ("Snapshot", &[("output", "")]),
    ("StopGradient", &[("output", "")]),
    ("PreventGradient", &[("output", "")]),
    ("NoOp", &[]),
    ("VarHandleOp", &[("resource", "")]),
    ("ReadVariableOp", &[("value", "")]),
    ("VariableV2", &[("ref", "")]),
    ("Variable", &[("ref", "")]),
    ("AssignVariableOp", &[]),
    ("Assign", &[("output_ref", "")]),
    ("RestoreV2", &[("tensors", "dtypes")]),
    ("Switch", &[("output_false", ""), ("output_true", "")]),
    ("RefSwitch", &[("output_false", ""), ("output_true", "")]),
    ("Merge", &[("output", ""), ("value_index", "")]),
    ("RefMerge", &[("output", ""), ("value_index", "")]),
    ("MatMul", &[("product", "")]),
    ("BatchMatMulV2", &[("output", "")]),
    ("BatchMatMulV3", &[("output", "")]),
    ("BiasAdd", &[("output", "")]),
    ("Add", &[("z", "")]),
    ("AddV2", &[("z", "")]),
    ("AddN", &[("sum", "")]),
    ("Sub", &[("z", "")]),
    ("Mul", &[("z", "")]),
    ("RealDiv", &[("z", "")]),
    ("Div", &[("z", "")]),
    ("Maximum", &[("z", "")]),
    ("Minimum", &[("z", "")]),
    ("SquaredDifference", &[("z", "")]),
    ("Pow", &[("z", "")]),
    ("Relu", &[("activations", "")]),
    ("Relu6", &[("activations", "")]),
    ("LeakyRelu", &[("activations", "")]),
    ("Elu", &[("activations", "")]),
    ("Selu", &[("activations", "")]),
    ("Softplus", &[("activations", "")]),
    ("Softsign", &[("activations", "")]),
    ("Sigmoid", &[("y", "")]),
    ("Tanh", &[("y", "")]),
    ("Exp", &[("y", "")]),
    ("Log", &[("y", "")]),
    ("Log1p", &[("y", "")]),
    ("Sqrt", &[("y", "")]),
    ("Rsqrt", &[("y", "")]),
    ("Square", &[("y", "")]),
    ("Neg", &[("y", "")]),
    ("Abs", &[("y", "")]),
    ("Erf", &[("y", "")]),
    ("Floor", &[("y", "")]),
    ("Reciprocal", &[("y", "")]),
    ("Inv", &[("y", "")]),
    ("RefIdentity", &[("output", "")]),
    ("Softmax", &[("softmax", "")]),
    ("LogSoftmax", &[("logsoftmax", "")]),
    ("ArgMax", &[("output", "")]),
    ("ArgMin", &[("output", "")]),
    ("Cast", &[("y", "")]),
    ("Reshape", &[("output", "")]),
    ("Shape", &[("output", "")]),
    ("Size", &[("output", "")]),
    ("Rank", &[("output", "")]),
    ("ExpandDims", &[("output", "")]),
    ("Squeeze", &[("output", "")]),
    ("StridedSlice", &[("output", "")]),
    ("Pack", &[("output", "")]),
    ("ConcatV2", &[("output", "")]),
    ("Sum", &[("output", "")]),
    ("Mean", &[("output", "")]),
    ("Max", &[("output", "")]),
    ("Min", &[("output", "")]),
    ("Prod", &[("output", "")]),
    ("Fill", &[("output", "")]),
    ("ZerosLike", &[("y", "")]),
    ("OnesLike", &[("y", "")]),
    ("Transpose", &[("y", "")]),
    ("ClipByValue", &[("output", "")]),
    ("LogicalNot", &[("y", "")]),
    ("StatefulPartitionedCall", &[("output", "Tout")]),
    ("PartitionedCall", &[("output", "Tout")]),
];

/// Ops whose second kind of length attr is a type list rather than a count.
fn builtin_len(op: &str, attr: &str) -> ArgLen {
    match (op, attr) {
        (_, "") => ArgLen::One,
        ("RestoreV2", _)
        | ("IdentityN", _)
        | ("StatefulPartitionedCall", _)
        | ("PartitionedCall", _) => ArgLen::TypeListAttr(attr.to_string()),
        _ => ArgLen::NumberAttr(attr.to_string()),
    }
}

/// Op signatures known for one meta graph.
pub(crate) struct OpRegistry<'a> {
    from_graph: HashMap<&'a str, &'a OpDef>,
}

impl<'a> OpRegistry<'a> {
    pub(crate) fn new(stripped_op_list: &'a [OpDef]) -> OpRegistry<'a> {
        OpRegistry {
            from_graph: stripped_op_list
                .iter()
                .map(|op| (op.name.as_str(), op))
                .collect(),
        }
    }

    /// The output args of `op` (name and length kind), or `None` for an op nobody described.
    pub(crate) fn outputs(&self, op: &str) -> Option<Vec<(String, ArgLen)>> {
        if let Some(def) = self.from_graph.get(op) {
            return Some(
                def.output_arg
                    .iter()
                    .map(|arg| {
                        let len = if !arg.number_attr.is_empty() {
                            ArgLen::NumberAttr(arg.number_attr.clone())
                        } else if !arg.type_list_attr.is_empty() {
                            ArgLen::TypeListAttr(arg.type_list_attr.clone())
                        } else {
                            ArgLen::One
                        };
                        (arg.name.clone(), len)
                    })
                    .collect(),
            );
        }
        BUILTIN_OUTPUTS
            .iter()
            .chain(crate::nn::OUTPUTS)
            .find(|(name, _)| *name == op)
            .map(|(_, args)| {
                args.iter()
                    .map(|(name, len)| (name.to_string(), builtin_len(op, len)))
                    .collect()
            })
    }

    /// The default value of `attr` of `op` as recorded in the model's op list.
    pub(crate) fn default_attr(&self, op: &str, attr: &str) -> Option<&'a AttrValue> {
        self.from_graph
            .get(op)
            .and_then(|def| def.attr.iter().find(|a| a.name == attr))
            .and_then(|a| a.default_value.as_ref())
    }
}

/// The number of tensors an arg of `len` produces, given the node's attrs.
pub(crate) fn arg_length<'b>(
    len: &ArgLen,
    attr: impl Fn(&str) -> Option<&'b AttrValue>,
) -> Option<usize> {
    match len {
        ArgLen::One => Some(1),
        ArgLen::NumberAttr(name) => attr(name)
            .and_then(|v| v.as_int())
            .and_then(|n| usize::try_from(n).ok()),
        ArgLen::TypeListAttr(name) => attr(name).and_then(|v| v.as_list().map(|l| l.r#type.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_op_has_a_builtin_output_layout() {
        // Graphs written without `stripped_op_list` (e.g. by this project's exporter) must still
        // resolve `node:out_arg:i` for every op the runtime can run.
        let registry = OpRegistry::new(&[]);
        for op in crate::kernels::SUPPORTED_OPS {
            assert!(
                registry.outputs(op).is_some(),
                "{op} has no built-in output layout"
            );
        }
    }

    #[test]
    fn list_lengths_come_from_attrs() {
        let registry = OpRegistry::new(&[]);
        let layout = registry.outputs("RestoreV2").unwrap();
        let dtypes = AttrValue::from_list(savedmodel_format::proto::attr_value::ListValue {
            r#type: vec![1, 1, 9],
            ..Default::default()
        });
        assert_eq!(
            arg_length(&layout[0].1, |name| (name == "dtypes").then_some(&dtypes)),
            Some(3)
        );
        let merge = registry.outputs("Merge").unwrap();
        assert_eq!(
            merge.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["output", "value_index"]
        );
    }
}
