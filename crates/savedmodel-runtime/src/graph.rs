//! One flat dataflow graph for a meta graph: the top-level `GraphDef` with every function call
//! (`StatefulPartitionedCall`, `PartitionedCall`, or a node whose op is a library function)
//! inlined, and every input string resolved to a `(node, flat output index)` pair.
//!
//! Why flatten: TF1 graphs (Switch/Merge, ref variables, a saver subgraph) and TF2 graphs
//! (nested `tf.function`s capturing resource variables) then look the same to everything
//! downstream — pruning, dead-branch analysis, variable restore mapping and the executor work on
//! one representation and never recurse into functions.
//!
//! Inlining keeps the call boundary visible with pass-through nodes: one `_Arg` node per function
//! input (forwarding the caller's tensor), one `_Retval` node per function output (forwarding the
//! body's tensor), and one `_CallDone` node that stands for "the call has finished" (the target
//! of `^call` control edges). Resolution happens after every scope is instantiated, so graphs
//! whose nodes are not in topological order need no special care.

use std::collections::HashMap;

use savedmodel_format::proto::{AttrValue, FunctionDef, GraphDef, NodeDef, attr_value};

use crate::error::RuntimeError;
use crate::ops::{OpRegistry, arg_length};

pub(crate) type NodeId = usize;

/// Function calls nested deeper than this are treated as runaway recursion.
const MAX_CALL_DEPTH: usize = 32;
/// Upper bound on the inlined graph, so a malicious library cannot make us allocate without end.
const MAX_FLAT_NODES: usize = 4_000_000;

/// One output of one flat node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TensorRef {
    pub node: NodeId,
    pub port: usize,
}

#[derive(Debug)]
pub(crate) enum NodeKind<'a> {
    /// A node of the graph or of a function body.
    Def(&'a NodeDef),
    /// A function argument: forwards the caller's input tensor.
    Arg,
    /// A function result: forwards the body's tensor.
    Ret,
    /// "The call has finished": target of control edges on a call node.
    CallDone,
}

#[derive(Debug)]
pub(crate) struct FlatNode<'a> {
    /// Path-qualified name: top-level names as they are, inlined nodes as
    /// `<call node path>/<body node name>`.
    pub name: String,
    pub kind: NodeKind<'a>,
    scope: usize,
    /// Data inputs in order.
    pub inputs: Vec<TensorRef>,
    /// Control inputs (`^node`).
    pub controls: Vec<NodeId>,
}

impl FlatNode<'_> {
    pub(crate) fn op(&self) -> &str {
        match self.kind {
            NodeKind::Def(def) => &def.op,
            NodeKind::Arg => "_Arg",
            NodeKind::Ret => "_Retval",
            NodeKind::CallDone => "_CallDone",
        }
    }
}

enum Local<'a> {
    Plain(NodeId),
    Call {
        rets: Vec<NodeId>,
        done: NodeId,
        function: &'a FunctionDef,
        via_call_op: bool,
    },
}

struct Scope<'a> {
    /// `None` for the top-level graph.
    function: Option<&'a FunctionDef>,
    /// Values for `placeholder` attrs inside the function body.
    bindings: HashMap<String, AttrValue>,
    locals: HashMap<&'a str, Local<'a>>,
    args: HashMap<&'a str, NodeId>,
}

enum RawInput<'a> {
    /// An input string as written in `scope` (`name`, `name:1`, `node:out:0`, `^name`).
    Text(usize, &'a str),
    /// A control edge to a known node.
    Control(NodeId),
}

pub(crate) struct FlatGraph<'a> {
    pub nodes: Vec<FlatNode<'a>>,
    scopes: Vec<Scope<'a>>,
    pub registry: OpRegistry<'a>,
    /// Call nodes whose function is not in the library, with the function's name.
    pub missing_functions: HashMap<NodeId, String>,
}

fn is_call_op(op: &str) -> bool {
    op == "StatefulPartitionedCall" || op == "PartitionedCall"
}

struct Builder<'a> {
    library: HashMap<&'a str, &'a FunctionDef>,
    nodes: Vec<FlatNode<'a>>,
    raw: Vec<Vec<RawInput<'a>>>,
    scopes: Vec<Scope<'a>>,
    missing_functions: HashMap<NodeId, String>,
}

impl<'a> Builder<'a> {
    fn add_node(
        &mut self,
        name: String,
        kind: NodeKind<'a>,
        scope: usize,
        raw: Vec<RawInput<'a>>,
    ) -> Result<NodeId, RuntimeError> {
        if self.nodes.len() >= MAX_FLAT_NODES {
            return Err(RuntimeError::InvalidGraph {
                node: name,
                reason: format!(
                    "the graph with its functions inlined exceeds {MAX_FLAT_NODES} nodes"
                ),
            });
        }
        self.nodes.push(FlatNode {
            name,
            kind,
            scope,
            inputs: Vec::new(),
            controls: Vec::new(),
        });
        self.raw.push(raw);
        Ok(self.nodes.len() - 1)
    }

    /// The library function a node calls, if it is a call.
    fn called_function(
        &self,
        def: &'a NodeDef,
        scope: usize,
    ) -> Option<Result<&'a FunctionDef, String>> {
        if is_call_op(&def.op) {
            let name = match def
                .attr
                .get("f")
                .map(|f| resolve_placeholder(f, &self.scopes[scope].bindings))
            {
                Some(Some(AttrValue {
                    value: Some(attr_value::Value::Func(f)),
                })) => f.name.clone(),
                _ => return Some(Err(String::new())),
            };
            return Some(self.library.get(name.as_str()).copied().ok_or(name));
        }
        self.library.get(def.op.as_str()).map(|f| Ok(*f))
    }

    fn instantiate_node(
        &mut self,
        scope: usize,
        prefix: &str,
        def: &'a NodeDef,
        depth: usize,
    ) -> Result<(), RuntimeError> {
        let name = format!("{prefix}{}", def.name);
        let local = match self.called_function(def, scope) {
            Some(Ok(function)) => self.instantiate_call(scope, &name, def, function, depth)?,
            Some(Err(missing)) => {
                let raw = def
                    .input
                    .iter()
                    .map(|i| RawInput::Text(scope, i.as_str()))
                    .collect();
                let id = self.add_node(name, NodeKind::Def(def), scope, raw)?;
                self.missing_functions.insert(id, missing);
                Local::Plain(id)
            }
            None => {
                let raw = def
                    .input
                    .iter()
                    .map(|i| RawInput::Text(scope, i.as_str()))
                    .collect();
                Local::Plain(self.add_node(name, NodeKind::Def(def), scope, raw)?)
            }
        };
        if self.scopes[scope]
            .locals
            .insert(def.name.as_str(), local)
            .is_some()
        {
            return Err(RuntimeError::InvalidGraph {
                node: format!("{prefix}{}", def.name),
                reason: "two nodes have this name".into(),
            });
        }
        Ok(())
    }

    fn instantiate_call(
        &mut self,
        caller: usize,
        call_name: &str,
        def: &'a NodeDef,
        function: &'a FunctionDef,
        depth: usize,
    ) -> Result<Local<'a>, RuntimeError> {
        let fname = function
            .signature
            .as_ref()
            .map(|s| s.name.as_str())
            .unwrap_or("");
        if depth >= MAX_CALL_DEPTH {
            return Err(RuntimeError::InvalidGraph {
                node: call_name.to_string(),
                reason: format!(
                    "function calls nest deeper than {MAX_CALL_DEPTH} levels (recursive function `{fname}`?)"
                ),
            });
        }
        let signature = function
            .signature
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidGraph {
                node: call_name.to_string(),
                reason: "the called function has no signature".into(),
            })?;
        // Attr values the body's `placeholder` attrs refer to.
        let call_attrs = if is_call_op(&def.op) {
            def.attr.get("f").and_then(|f| f.as_func()).map(|f| &f.attr)
        } else {
            Some(&def.attr)
        };
        let mut bindings = HashMap::new();
        if let Some(attrs) = call_attrs {
            for (key, value) in attrs {
                if let Some(bound) = resolve_placeholder(value, &self.scopes[caller].bindings) {
                    bindings.insert(key.clone(), bound.clone());
                }
            }
        }
        let data_inputs: Vec<&'a str> = def
            .input
            .iter()
            .filter(|i| !i.starts_with('^'))
            .map(|i| i.as_str())
            .collect();
        let control_inputs: Vec<&'a str> = def
            .input
            .iter()
            .filter(|i| i.starts_with('^'))
            .map(|i| i.as_str())
            .collect();
        if data_inputs.len() != signature.input_arg.len() {
            return Err(RuntimeError::InvalidGraph {
                node: call_name.to_string(),
                reason: format!(
                    "calls function `{fname}` with {} inputs, but it takes {}",
                    data_inputs.len(),
                    signature.input_arg.len()
                ),
            });
        }
        let scope = self.scopes.len();
        self.scopes.push(Scope {
            function: Some(function),
            bindings,
            locals: HashMap::new(),
            args: HashMap::new(),
        });
        let prefix = format!("{call_name}/");
        let mut arg_nodes = Vec::new();
        for (arg, input) in signature.input_arg.iter().zip(&data_inputs) {
            let mut raw = vec![RawInput::Text(caller, input)];
            raw.extend(control_inputs.iter().map(|c| RawInput::Text(caller, c)));
            let id = self.add_node(format!("{prefix}{}", arg.name), NodeKind::Arg, scope, raw)?;
            self.scopes[scope].args.insert(arg.name.as_str(), id);
            arg_nodes.push(id);
        }
        for body_node in &function.node_def {
            self.instantiate_node(scope, &prefix, body_node, depth + 1)?;
        }
        let mut rets = Vec::new();
        for arg in &signature.output_arg {
            let text = function.ret.get(&arg.name).ok_or_else(|| RuntimeError::InvalidGraph {
                node: call_name.to_string(),
                reason: format!("function `{fname}` does not say which tensor its output `{}` is (no `ret` entry)", arg.name),
            })?;
            let id = self.add_node(
                format!("{prefix}{}", arg.name),
                NodeKind::Ret,
                scope,
                vec![RawInput::Text(scope, text)],
            )?;
            rets.push(id);
        }
        // `control_ret` values are bare node names; every text input of a `_CallDone` node is
        // resolved as a control edge.
        let mut done_raw: Vec<RawInput<'a>> = rets
            .iter()
            .chain(&arg_nodes)
            .map(|&id| RawInput::Control(id))
            .collect();
        done_raw.extend(
            function
                .control_ret
                .values()
                .map(|node| RawInput::Text(scope, node.as_str())),
        );
        let done = self.add_node(
            format!("{call_name}:done"),
            NodeKind::CallDone,
            scope,
            done_raw,
        )?;
        Ok(Local::Call {
            rets,
            done,
            function,
            via_call_op: is_call_op(&def.op),
        })
    }
}

/// Follows a `placeholder` attr through the enclosing bindings.
fn resolve_placeholder<'v>(
    value: &'v AttrValue,
    bindings: &'v HashMap<String, AttrValue>,
) -> Option<&'v AttrValue> {
    match &value.value {
        Some(attr_value::Value::Placeholder(name)) => bindings.get(name),
        _ => Some(value),
    }
}

impl<'a> FlatGraph<'a> {
    /// Inlines every function call of `graph` and resolves all inputs.
    pub(crate) fn build(
        graph: &'a GraphDef,
        registry: OpRegistry<'a>,
    ) -> Result<FlatGraph<'a>, RuntimeError> {
        let library: HashMap<&'a str, &'a FunctionDef> = graph
            .library
            .iter()
            .flat_map(|lib| lib.function.iter())
            .filter_map(|f| f.signature.as_ref().map(|s| (s.name.as_str(), f)))
            .collect();
        let mut builder = Builder {
            library,
            nodes: Vec::new(),
            raw: Vec::new(),
            scopes: vec![Scope {
                function: None,
                bindings: HashMap::new(),
                locals: HashMap::new(),
                args: HashMap::new(),
            }],
            missing_functions: HashMap::new(),
        };
        for def in &graph.node {
            builder.instantiate_node(0, "", def, 0)?;
        }
        let Builder {
            nodes,
            raw,
            scopes,
            missing_functions,
            ..
        } = builder;
        let mut flat = FlatGraph {
            nodes,
            scopes,
            registry,
            missing_functions,
        };
        for (id, raw_inputs) in raw.into_iter().enumerate() {
            let is_call_done = matches!(flat.nodes[id].kind, NodeKind::CallDone);
            let mut inputs = Vec::new();
            let mut controls = Vec::new();
            for raw_input in raw_inputs {
                match raw_input {
                    RawInput::Control(target) => controls.push(target),
                    RawInput::Text(scope, text) => {
                        if let Some(name) = text.strip_prefix('^') {
                            controls.push(flat.resolve_control(scope, name, id)?);
                        } else if is_call_done {
                            // `control_ret` entries of a `_CallDone` node are node names.
                            controls.push(flat.resolve_control(scope, text, id)?);
                        } else {
                            inputs.push(flat.resolve_data(scope, text, id)?);
                        }
                    }
                }
            }
            flat.nodes[id].inputs = inputs;
            flat.nodes[id].controls = controls;
        }
        Ok(flat)
    }

    fn dangling(&self, consumer: NodeId, text: &str, why: &str) -> RuntimeError {
        RuntimeError::InvalidGraph {
            node: self.nodes[consumer].name.clone(),
            reason: format!("input `{text}` {why}"),
        }
    }

    fn resolve_control(
        &self,
        scope: usize,
        name: &str,
        consumer: NodeId,
    ) -> Result<NodeId, RuntimeError> {
        let sc = &self.scopes[scope];
        if let Some(&arg) = sc.args.get(name) {
            return Ok(arg);
        }
        match sc.locals.get(name) {
            Some(Local::Plain(id)) => Ok(*id),
            Some(Local::Call { done, .. }) => Ok(*done),
            None => Err(self.dangling(consumer, &format!("^{name}"), "names no node")),
        }
    }

    /// Resolves a data input: `name` / `name:k` at top level; `arg`, `node:out_arg:i` (or
    /// `node:k`) inside a function body.
    fn resolve_data(
        &self,
        scope: usize,
        text: &str,
        consumer: NodeId,
    ) -> Result<TensorRef, RuntimeError> {
        let sc = &self.scopes[scope];
        let in_function = sc.function.is_some();
        let (node_name, rest) = match text.split_once(':') {
            Some((n, r)) => (n, Some(r)),
            None => (text, None),
        };
        if in_function
            && rest.is_none()
            && let Some(&arg) = sc.args.get(node_name)
        {
            return Ok(TensorRef { node: arg, port: 0 });
        }
        let local = sc
            .locals
            .get(node_name)
            .ok_or_else(|| self.dangling(consumer, text, "names no node"))?;
        // (output arg name, index within it) or a plain flat index.
        let (out_arg, index): (Option<&str>, usize) = match rest {
            None => (None, 0),
            Some(r) => match r.split_once(':') {
                Some((arg, idx)) => (
                    Some(arg),
                    idx.parse()
                        .map_err(|_| self.dangling(consumer, text, "has a bad output index"))?,
                ),
                None => match r.parse::<usize>() {
                    Ok(k) => (None, k),
                    Err(_) => (Some(r), 0),
                },
            },
        };
        match local {
            Local::Plain(id) => {
                let port = match out_arg {
                    None => index,
                    Some(arg) => self.flat_port(*id, arg, index).unwrap_or(index),
                };
                if let Some(count) = self.num_outputs(*id)
                    && port >= count
                {
                    return Err(self.dangling(
                        consumer,
                        text,
                        &format!("refers to output {port}, but the node has {count}"),
                    ));
                }
                Ok(TensorRef { node: *id, port })
            }
            Local::Call {
                rets,
                function,
                via_call_op,
                ..
            } => {
                let position = match out_arg {
                    None => index,
                    Some(_) if *via_call_op => index,
                    Some(arg) => {
                        let outputs = function
                            .signature
                            .as_ref()
                            .map(|s| &s.output_arg[..])
                            .unwrap_or(&[]);
                        let p = outputs.iter().position(|o| o.name == arg).ok_or_else(|| {
                            self.dangling(
                                consumer,
                                text,
                                "names an output the function does not have",
                            )
                        })?;
                        p + index
                    }
                };
                let ret = rets.get(position).ok_or_else(|| {
                    self.dangling(
                        consumer,
                        text,
                        &format!(
                            "refers to output {position}, but the function has {}",
                            rets.len()
                        ),
                    )
                })?;
                Ok(TensorRef {
                    node: *ret,
                    port: 0,
                })
            }
        }
    }

    /// Flat output index of `out_arg[index]` of a node, from the op's output arg layout.
    fn flat_port(&self, node: NodeId, out_arg: &str, index: usize) -> Option<usize> {
        let layout = self.registry.outputs(self.nodes[node].op())?;
        let mut base = 0;
        for (name, len) in &layout {
            if name == out_arg {
                return Some(base + index);
            }
            base += arg_length(len, |a| self.attr(node, a))?;
        }
        None
    }

    /// The number of outputs of a node, when its op is known.
    pub(crate) fn num_outputs(&self, node: NodeId) -> Option<usize> {
        match self.nodes[node].kind {
            NodeKind::Arg | NodeKind::Ret => Some(1),
            NodeKind::CallDone => Some(0),
            NodeKind::Def(def) => {
                let layout = self.registry.outputs(&def.op)?;
                layout
                    .iter()
                    .map(|(_, len)| arg_length(len, |a| self.attr(node, a)))
                    .sum()
            }
        }
    }

    /// An attr of a node: its own value (with function `placeholder`s bound), else the op's
    /// default from the model's op list.
    pub(crate) fn attr(&self, node: NodeId, name: &str) -> Option<&AttrValue> {
        let NodeKind::Def(def) = self.nodes[node].kind else {
            return None;
        };
        match def.attr.get(name) {
            Some(value) => {
                resolve_placeholder(value, &self.scopes[self.nodes[node].scope].bindings)
            }
            None => self.registry.default_attr(&def.op, name),
        }
    }

    /// Resolves a signature's `TensorInfo.name` (`node:k`) against the top-level graph, looking
    /// through call nodes to the function result they stand for.
    pub(crate) fn resolve_tensor_name(&self, text: &str) -> Option<TensorRef> {
        let (node_name, port) = match text.split_once(':') {
            Some((n, k)) => (n, k.parse::<usize>().ok()?),
            None => (text, 0),
        };
        match self.scopes[0].locals.get(node_name)? {
            Local::Plain(id) => {
                if let Some(count) = self.num_outputs(*id)
                    && port >= count
                {
                    return None;
                }
                Some(TensorRef { node: *id, port })
            }
            Local::Call { rets, .. } => rets.get(port).map(|&node| TensorRef { node, port: 0 }),
        }
    }

    /// Resolves a top-level node name used as an op target (`saver_def.restore_op_name`).
    pub(crate) fn resolve_op_name(&self, name: &str) -> Option<NodeId> {
        match self.scopes[0].locals.get(name)? {
            Local::Plain(id) => Some(*id),
            Local::Call { done, .. } => Some(*done),
        }
    }

    /// Follows pass-through nodes (`Identity` and friends, function args and results) back to
    /// the tensor that produced a value.
    pub(crate) fn trace(&self, mut tensor: TensorRef) -> TensorRef {
        for _ in 0..self.nodes.len() {
            let node = &self.nodes[tensor.node];
            let passes_through = match node.kind {
                NodeKind::Arg | NodeKind::Ret => true,
                NodeKind::Def(def) => {
                    matches!(
                        def.op.as_str(),
                        "Identity" | "Snapshot" | "StopGradient" | "IdentityN"
                    )
                }
                NodeKind::CallDone => false,
            };
            if !passes_through {
                return tensor;
            }
            let port = if node.op() == "IdentityN" {
                tensor.port
            } else {
                0
            };
            match node.inputs.get(port) {
                Some(&input) => tensor = input,
                None => return tensor,
            }
        }
        tensor
    }
}
