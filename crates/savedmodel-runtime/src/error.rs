//! The crate's single error type.

use std::fmt;

/// One unsupported node found while compiling a signature: enough to tell the user which op to
/// avoid and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedNode {
    /// The op type (`RandomUniform`), possibly with the attr that makes it unsupported
    /// (`Relu (T=DT_INT32)`).
    pub op: String,
    /// The node, path-qualified through inlined function calls
    /// (`StatefulPartitionedCall_1/StatefulPartitionedCall/Erfinv`).
    pub node: String,
    /// The signature that needs it.
    pub signature: String,
}

/// A list of unsupported nodes, one line per op type, each with one example node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOps(pub Vec<UnsupportedNode>);

impl UnsupportedOps {
    /// The distinct op types, sorted.
    pub fn op_types(&self) -> Vec<&str> {
        let mut ops: Vec<&str> = self.0.iter().map(|n| n.op.as_str()).collect();
        ops.sort_unstable();
        ops.dedup();
        ops
    }
}

impl fmt::Display for UnsupportedOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for op in self.op_types() {
            let nodes: Vec<&UnsupportedNode> = self.0.iter().filter(|n| n.op == op).collect();
            if !first {
                write!(f, "; ")?;
            }
            first = false;
            // One example is enough to find the op in the graph; the count says how common it is.
            let example = nodes[0];
            write!(
                f,
                "{op} (node `{}`, signature `{}`",
                example.node, example.signature
            )?;
            if nodes.len() > 1 {
                write!(f, ", and {} more node(s)", nodes.len() - 1)?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

fn format_shape(shape: &Option<Vec<i64>>) -> String {
    match shape {
        None => "<unknown rank>".to_string(),
        Some(dims) => format!("{dims:?}"),
    }
}

/// Everything that can go wrong while loading a SavedModel or running one of its signatures.
///
/// Messages name the file, signature, input/output key, node or variable at fault, because
/// they reach users unchanged (`predictor local`, HTTP 400 bodies).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The model would need more memory than the load's budget (`budget.rs`).
    #[error(
        "the model needs about {needed} for a batch of {batch} ({parts}), over the memory budget \
         of {budget}; largest tensors: {largest}"
    )]
    MemoryBudget {
        needed: String,
        budget: String,
        parts: String,
        batch: usize,
        largest: String,
    },
    /// Reading a file of the model failed (other than "not found" where that is allowed). The
    /// storage error names the location and the operation already.
    #[error("{source}")]
    Storage {
        location: String,
        // Boxed: StorageError is large and every Result in the crate would carry its size.
        #[source]
        source: Box<storage::StorageError>,
    },

    /// The directory holds neither `saved_model.pb` nor `saved_model.pbtxt`.
    #[error(
        "no SavedModel at {location}: found neither saved_model.pb nor saved_model.pbtxt \
         (does the directory exist, and is it the versioned export directory itself?)"
    )]
    NoSavedModel { location: String },

    /// Only the text form `saved_model.pbtxt` exists; this runtime reads the binary form.
    #[error(
        "{location} is a text-format SavedModel (saved_model.pbtxt); only binary saved_model.pb is \
         supported — convert it, e.g. with TensorFlow's text_format + SerializeToString"
    )]
    TextFormatUnsupported { location: String },

    /// `saved_model.pb` is not a valid SavedModel protobuf.
    #[error("{what} is not a valid SavedModel protobuf: {source}")]
    Decode {
        what: String,
        #[source]
        source: prost::DecodeError,
    },

    /// No meta graph has exactly the requested tag set.
    #[error(
        "no meta graph in the SavedModel has tags {requested:?}; available tag sets: {available:?}"
    )]
    MetaGraphNotFound {
        requested: Vec<String>,
        available: Vec<Vec<String>>,
    },

    /// The graph is malformed: a dangling input, a missing or ill-typed attr, a bad constant,
    /// a cycle, a function missing from the library, ….
    #[error("invalid graph at node `{node}`: {reason}")]
    InvalidGraph { node: String, reason: String },

    /// A signature is malformed or names a tensor the graph does not have.
    #[error("signature `{signature}`: {reason}")]
    InvalidSignature { signature: String, reason: String },

    /// The graph uses ops this runtime cannot execute (every one of them is listed).
    #[error("the model uses ops that this runtime does not support: {0}")]
    UnsupportedOps(UnsupportedOps),

    /// The graph has variables but `variables/variables.index` (or the data file) is missing.
    #[error(
        "{location} is missing, but the graph has {count} variable(s) (e.g. `{example}`) to restore"
    )]
    MissingVariables {
        location: String,
        count: usize,
        example: String,
    },

    /// The checkpoint bundle could not be read (bad index, crc mismatch, truncated data, …).
    #[error("cannot read variables from {location}: {reason}")]
    Checkpoint { location: String, reason: String },

    /// A variable that a signature reads has no value in the checkpoint.
    #[error(
        "variable `{variable}` is read by signature `{signature}` but the checkpoint has no tensor for it \
         (looked for {keys:?})"
    )]
    VariableNotRestored {
        variable: String,
        signature: String,
        keys: Vec<String>,
    },

    /// The checkpoint tensor's shape differs from the variable's shape in the graph.
    #[error(
        "variable `{variable}`: the graph declares shape {graph}, but checkpoint tensor `{key}` has shape {bundle:?}",
        graph = format_shape(graph_shape),
        bundle = bundle_shape
    )]
    VariableShapeMismatch {
        variable: String,
        key: String,
        graph_shape: Option<Vec<i64>>,
        bundle_shape: Vec<i64>,
    },

    /// The checkpoint tensor's dtype differs from the variable's dtype in the graph.
    #[error(
        "variable `{variable}`: the graph declares dtype {graph}, but checkpoint tensor `{key}` is {bundle}"
    )]
    VariableDtypeMismatch {
        variable: String,
        key: String,
        graph: String,
        bundle: String,
    },

    /// `signature(name)`/`run(name, …)` with a key the model does not have.
    #[error("no signature `{name}` in the model; available signatures: {available:?}")]
    SignatureNotFound {
        name: String,
        available: Vec<String>,
    },

    /// A request input key that the signature does not have.
    #[error("signature `{signature}` has no input `{key}`; its inputs are {expected:?}")]
    UnknownInput {
        signature: String,
        key: String,
        expected: Vec<String>,
    },

    /// A required input was not supplied.
    #[error(
        "signature `{signature}` needs input `{key}`, which was not supplied; its inputs are {expected:?}"
    )]
    MissingInput {
        signature: String,
        key: String,
        expected: Vec<String>,
    },

    /// An input's dtype differs from the signature's.
    #[error("input `{key}` of signature `{signature}` must be {expected}, got {found}")]
    InputDtype {
        signature: String,
        key: String,
        expected: String,
        found: String,
    },

    /// An input's shape is incompatible with the signature's.
    #[error(
        "input `{key}` of signature `{signature}` must have shape {expected} (-1 = any size), got {found:?}",
        expected = format_shape(expected)
    )]
    InputShape {
        signature: String,
        key: String,
        expected: Option<Vec<i64>>,
        found: Vec<usize>,
    },

    /// An op failed while running (e.g. a MatMul on incompatible shapes).
    #[error("running signature `{signature}`: node `{node}` ({op}) failed: {reason}")]
    Execution {
        signature: String,
        node: String,
        op: String,
        reason: String,
    },

    /// An output was not computed because it depends on a branch of a `Switch` that was not
    /// taken.
    #[error(
        "output `{key}` of signature `{signature}` was not computed: it lies on a conditional branch that was not taken"
    )]
    DeadOutput { signature: String, key: String },

    /// `run` was asked for an output key the signature does not have.
    #[error("signature `{signature}` has no output `{key}`; its outputs are {expected:?}")]
    UnknownOutput {
        signature: String,
        key: String,
        expected: Vec<String>,
    },
}
