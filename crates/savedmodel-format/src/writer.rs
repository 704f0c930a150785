//! Writes a dense MLP as a TF1-style SavedModel (docs/reference/savedmodel.md §6, the verified recipe).
//!
//! Why TF1-style: a plain graph with a save/restore subgraph and a `SaverDef` is loaded by every
//! consumer we care about — `tf.saved_model.load` (as a "v1" model with `.signatures`), the TF1
//! Python loader, the C++ `LoadSavedModel` inside TF Serving and `gcloud ai-platform local
//! predict` — without an object graph, function library or op list, all of which would have to
//! imitate TF internals. `object_graph_def` is deliberately left unset: its mere presence makes
//! `tf.saved_model.load` switch to TF2 object loading.
//!
//! Graph, for layers `dense`, `dense_1`, … (Keras naming, kernels stored `[in, out]`):
//!
//! ```text
//! <input> Placeholder f32 [-1, in]
//!   → dense/MatMul(·, dense/kernel/Read/ReadVariableOp) → dense/BiasAdd(·, dense/bias/Read/…) → dense/Relu
//!   → … → dense_N/BiasAdd → <probabilities> Softmax
//!   → ArgMax(·, ArgMax/dimension = 1, output_type int64) → <class> Identity
//! save/Const ("model", fed with <dir>/variables/variables by loaders)
//!   → save/RestoreV2(save/SaveV2/tensor_names, save/SaveV2/shape_and_slices)
//!   → save/AssignVariableOp[_k] → save/restore_all (NoOp)
//! ```
//!
//! Variables are resource variables (`VarHandleOp` + `ReadVariableOp`); attrs that have defaults
//! and were added in later TF releases are omitted so older TF Serving builds accept the graph.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use crate::bundle::{VARIABLES_DATA, VARIABLES_INDEX, write_bundle};
use crate::error::FormatError;
use crate::proto::{
    AttrValue, GraphDef, MetaGraphDef, MetaInfoDef, NodeDef, SavedModel, SaverDef, SignatureDef,
    TensorInfo, TensorShapeProto, VersionDef, attr_value, tensor_info,
};
use crate::signature::DEFAULT_SIGNATURE;
use crate::tensor::{DataType, HostTensor, TensorData};

/// The file whose presence marks a complete SavedModel directory. [`export_mlp`] returns it
/// last: callers write the files in order, so a reader never sees a `saved_model.pb` whose
/// variables are still being written.
pub const SAVED_MODEL_MARKER: &str = "saved_model.pb";
/// The tag TF Serving, gcloud and Vertex AI load by default.
pub const SERVE_TAG: &str = "serve";
/// `signature_constants.PREDICT_METHOD_NAME`.
pub const PREDICT_METHOD_NAME: &str = "tensorflow/serving/predict";
/// GraphDef producer version written into the graph: new enough that `Placeholder` enforces its
/// shape (≥ 22), old enough for any TF 2.x consumer (docs/reference/savedmodel.md §4.7).
pub const GRAPH_PRODUCER: i32 = 1087;

/// Activation applied after a dense layer's bias add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Linear,
}

/// One dense layer: `activation(x · kernel + bias)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayer {
    /// `[in_dim, out_dim]`, row-major (Keras layout).
    pub kernel: Vec<f32>,
    /// `[out_dim]`.
    pub bias: Vec<f32>,
    pub in_dim: usize,
    pub out_dim: usize,
    pub activation: Activation,
}

/// What to export: the layers and the names the signature exposes.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpExport {
    /// Applied in order; the softmax is applied to the last layer's output.
    pub layers: Vec<DenseLayer>,
    /// Signature input key and placeholder node name (`image`).
    pub input_name: String,
    /// Signature output key and Softmax node name (`probabilities`).
    pub probabilities_name: String,
    /// Signature output key and node name of the int64 argmax (`class`).
    pub class_name: String,
}

impl MlpExport {
    /// An export with the project's standard names: input `image`, outputs `probabilities` and
    /// `class`.
    pub fn new(layers: Vec<DenseLayer>) -> MlpExport {
        MlpExport {
            layers,
            input_name: "image".into(),
            probabilities_name: "probabilities".into(),
            class_name: "class".into(),
        }
    }
}

/// Keras' name for the i-th dense layer: `dense`, `dense_1`, `dense_2`, …
pub fn keras_layer_name(index: usize) -> String {
    if index == 0 {
        "dense".to_string()
    } else {
        format!("dense_{index}")
    }
}

/// Builds the SavedModel and its variables. Returns `(relative path, contents)` for
/// `variables/variables.index`, `variables/variables.data-00000-of-00001` and, last,
/// [`SAVED_MODEL_MARKER`].
///
/// Non-finite weights are rejected: TensorFlow would load them, but a NaN/Inf weight means
/// training diverged and every prediction of the exported model would be garbage.
pub fn export_mlp(model: &MlpExport) -> Result<Vec<(String, Bytes)>, FormatError> {
    let variables = variables(model)?;
    let saved_model = build_saved_model(model)?;
    let bundle = write_bundle(
        variables
            .iter()
            .map(|(name, tensor)| (name.as_str(), tensor)),
    )?;
    Ok(vec![
        (VARIABLES_INDEX.to_string(), Bytes::from(bundle.index)),
        (VARIABLES_DATA.to_string(), Bytes::from(bundle.data)),
        (
            SAVED_MODEL_MARKER.to_string(),
            Bytes::from(saved_model.encode_to_vec()),
        ),
    ])
}

/// Validates the model and returns its variables keyed by checkpoint name, sorted.
fn variables(model: &MlpExport) -> Result<BTreeMap<String, HostTensor>, FormatError> {
    validate(model)?;
    let mut out = BTreeMap::new();
    for (index, layer) in model.layers.iter().enumerate() {
        let prefix = keras_layer_name(index);
        let kernel = HostTensor::new(
            vec![layer.in_dim, layer.out_dim],
            TensorData::F32(layer.kernel.clone()),
        )
        .map_err(|e| FormatError::InvalidExport(format!("{prefix}/kernel: {e}")))?;
        let bias = HostTensor::new(vec![layer.out_dim], TensorData::F32(layer.bias.clone()))
            .map_err(|e| FormatError::InvalidExport(format!("{prefix}/bias: {e}")))?;
        out.insert(format!("{prefix}/kernel"), kernel);
        out.insert(format!("{prefix}/bias"), bias);
    }
    Ok(out)
}

fn validate(model: &MlpExport) -> Result<(), FormatError> {
    let bad = |msg: String| Err(FormatError::InvalidExport(msg));
    if model.layers.is_empty() {
        return bad("the model has no layers".into());
    }
    for (index, layer) in model.layers.iter().enumerate() {
        let name = keras_layer_name(index);
        if layer.in_dim == 0 || layer.out_dim == 0 {
            return bad(format!(
                "{name}: dimensions must be positive, got [{}, {}]",
                layer.in_dim, layer.out_dim
            ));
        }
        if layer.in_dim.checked_mul(layer.out_dim) != Some(layer.kernel.len()) {
            return bad(format!(
                "{name}/kernel has {} values, expected {} x {}",
                layer.kernel.len(),
                layer.in_dim,
                layer.out_dim
            ));
        }
        if layer.bias.len() != layer.out_dim {
            return bad(format!(
                "{name}/bias has {} values, expected {}",
                layer.bias.len(),
                layer.out_dim
            ));
        }
        if index > 0 {
            let previous = model.layers[index - 1].out_dim;
            if layer.in_dim != previous {
                return bad(format!(
                    "{name} takes {} inputs but {} produces {previous}",
                    layer.in_dim,
                    keras_layer_name(index - 1)
                ));
            }
        }
        for (what, values) in [("kernel", &layer.kernel), ("bias", &layer.bias)] {
            if let Some(position) = values.iter().position(|v| !v.is_finite()) {
                return bad(format!(
                    "{name}/{what}[{position}] is {} (training diverged?)",
                    values[position]
                ));
            }
        }
    }
    for (what, name) in [
        ("input_name", &model.input_name),
        ("probabilities_name", &model.probabilities_name),
        ("class_name", &model.class_name),
    ] {
        if !is_valid_node_name(name) {
            return bad(format!(
                "{what} {name:?} is not a valid TensorFlow node name"
            ));
        }
    }
    Ok(())
}

/// TensorFlow's node name rule: `[A-Za-z0-9.][A-Za-z0-9_>./]*`.
fn is_valid_node_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '.' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '>' | '.' | '/'))
}

fn f32_type() -> AttrValue {
    AttrValue::from_type(DataType::Float)
}

fn node(name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> NodeDef {
    NodeDef {
        name: name.to_string(),
        op: op.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        ..Default::default()
    }
}

fn const_node(name: &str, value: &HostTensor) -> NodeDef {
    node(
        name,
        "Const",
        &[],
        vec![
            ("dtype", AttrValue::from_type(value.dtype())),
            ("value", AttrValue::from_tensor(value.to_tensor_proto())),
        ],
    )
}

fn string_tensor(values: Vec<Vec<u8>>, shape: Vec<usize>) -> Result<HostTensor, FormatError> {
    HostTensor::new(shape, TensorData::Str(values))
        .map_err(|e| FormatError::InvalidExport(e.to_string()))
}

fn tensor_info(name: &str, dtype: DataType, dims: &[i64]) -> TensorInfo {
    TensorInfo {
        encoding: Some(tensor_info::Encoding::Name(format!("{name}:0"))),
        dtype: dtype as i32,
        tensor_shape: Some(TensorShapeProto::from_dims(dims)),
    }
}

fn dim(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// Builds the `SavedModel` message (without variables). Exposed so tests and tools can inspect
/// the graph [`export_mlp`] writes.
pub fn build_saved_model(model: &MlpExport) -> Result<SavedModel, FormatError> {
    validate(model)?;
    let input_dim = model.layers[0].in_dim;
    let classes = model.layers[model.layers.len() - 1].out_dim;
    let mut nodes = vec![node(
        &model.input_name,
        "Placeholder",
        &[],
        vec![
            ("dtype", f32_type()),
            (
                "shape",
                AttrValue::from_shape(TensorShapeProto::from_dims(&[-1, dim(input_dim)])),
            ),
        ],
    )];

    // Checkpoint key -> (variable node, read node), sorted by key like TF's savers.
    let mut variables: BTreeMap<String, String> = BTreeMap::new();
    let mut current = model.input_name.clone();
    for (index, layer) in model.layers.iter().enumerate() {
        let prefix = keras_layer_name(index);
        for (what, shape) in [
            ("kernel", vec![dim(layer.in_dim), dim(layer.out_dim)]),
            ("bias", vec![dim(layer.out_dim)]),
        ] {
            let variable = format!("{prefix}/{what}");
            nodes.push(node(
                &variable,
                "VarHandleOp",
                &[],
                vec![
                    ("dtype", f32_type()),
                    (
                        "shape",
                        AttrValue::from_shape(TensorShapeProto::from_dims(&shape)),
                    ),
                    ("shared_name", AttrValue::from_string(variable.as_bytes())),
                ],
            ));
            let read = format!("{variable}/Read/ReadVariableOp");
            nodes.push(node(
                &read,
                "ReadVariableOp",
                &[&variable],
                vec![("dtype", f32_type())],
            ));
            variables.insert(variable.clone(), read);
        }
        let matmul = format!("{prefix}/MatMul");
        let kernel_read = format!("{prefix}/kernel/Read/ReadVariableOp");
        nodes.push(node(
            &matmul,
            "MatMul",
            &[&current, &kernel_read],
            vec![("T", f32_type())],
        ));
        let bias_add = format!("{prefix}/BiasAdd");
        let bias_read = format!("{prefix}/bias/Read/ReadVariableOp");
        nodes.push(node(
            &bias_add,
            "BiasAdd",
            &[&matmul, &bias_read],
            vec![("T", f32_type())],
        ));
        current = bias_add;
        if layer.activation == Activation::Relu {
            let relu = format!("{prefix}/Relu");
            nodes.push(node(&relu, "Relu", &[&current], vec![("T", f32_type())]));
            current = relu;
        }
    }
    nodes.push(node(
        &model.probabilities_name,
        "Softmax",
        &[&current],
        vec![("T", f32_type())],
    ));
    let dimension = HostTensor::new(vec![], TensorData::I32(vec![1]))
        .map_err(|e| FormatError::InvalidExport(e.to_string()))?;
    nodes.push(const_node("ArgMax/dimension", &dimension));
    nodes.push(node(
        "ArgMax",
        "ArgMax",
        &[&model.probabilities_name, "ArgMax/dimension"],
        vec![
            ("T", f32_type()),
            ("Tidx", AttrValue::from_type(DataType::Int32)),
            ("output_type", AttrValue::from_type(DataType::Int64)),
        ],
    ));
    nodes.push(node(
        &model.class_name,
        "Identity",
        &["ArgMax"],
        vec![("T", AttrValue::from_type(DataType::Int64))],
    ));

    nodes.extend(save_restore_nodes(&variables)?);

    let mut seen = std::collections::BTreeSet::new();
    for n in &nodes {
        if !seen.insert(n.name.as_str()) {
            return Err(FormatError::InvalidExport(format!(
                "node name '{}' is used twice (choose input/output names that differ from the generated nodes)",
                n.name
            )));
        }
    }

    let signature = SignatureDef {
        inputs: [(
            model.input_name.clone(),
            tensor_info(&model.input_name, DataType::Float, &[-1, dim(input_dim)]),
        )]
        .into_iter()
        .collect(),
        outputs: [
            (
                model.probabilities_name.clone(),
                tensor_info(
                    &model.probabilities_name,
                    DataType::Float,
                    &[-1, dim(classes)],
                ),
            ),
            (
                model.class_name.clone(),
                tensor_info(&model.class_name, DataType::Int64, &[-1]),
            ),
        ]
        .into_iter()
        .collect(),
        method_name: PREDICT_METHOD_NAME.to_string(),
        defaults: BTreeMap::new(),
    };
    if signature.outputs.len() != 2 {
        return Err(FormatError::InvalidExport(
            "probabilities_name and class_name must differ".into(),
        ));
    }

    let meta_graph = MetaGraphDef {
        meta_info_def: Some(MetaInfoDef {
            tags: vec![SERVE_TAG.to_string()],
            ..Default::default()
        }),
        graph_def: Some(GraphDef {
            node: nodes,
            versions: Some(VersionDef {
                producer: GRAPH_PRODUCER,
                min_consumer: 0,
                bad_consumers: vec![],
            }),
            ..Default::default()
        }),
        saver_def: Some(SaverDef {
            filename_tensor_name: "save/Const:0".into(),
            save_tensor_name: "save/control_dependency:0".into(),
            restore_op_name: "save/restore_all".into(),
            max_to_keep: 5,
            sharded: false,
            keep_checkpoint_every_n_hours: 10000.0,
            version: SaverDef::VERSION_V2,
        }),
        signature_def: [(DEFAULT_SIGNATURE.to_string(), signature)]
            .into_iter()
            .collect(),
        // Must stay None: see the module doc.
        object_graph_def: None,
        ..Default::default()
    };
    Ok(SavedModel {
        saved_model_schema_version: 1,
        meta_graphs: vec![meta_graph],
    })
}

/// The save/restore subgraph of a (non-sharded) V2 `Saver` over resource variables.
/// `variables` maps checkpoint key (= variable node name) to its read node.
fn save_restore_nodes(variables: &BTreeMap<String, String>) -> Result<Vec<NodeDef>, FormatError> {
    let keys: Vec<Vec<u8>> = variables.keys().map(|k| k.as_bytes().to_vec()).collect();
    let count = keys.len();
    let dtypes = AttrValue::from_list(attr_value::ListValue {
        r#type: vec![DataType::Float as i32; count],
        ..Default::default()
    });
    let filename = string_tensor(vec![b"model".to_vec()], vec![])?;
    let mut nodes = vec![
        const_node("save/Const", &filename),
        const_node(
            "save/SaveV2/tensor_names",
            &string_tensor(keys, vec![count])?,
        ),
        const_node(
            "save/SaveV2/shape_and_slices",
            &string_tensor(vec![Vec::new(); count], vec![count])?,
        ),
    ];
    let mut save_inputs = vec![
        "save/Const",
        "save/SaveV2/tensor_names",
        "save/SaveV2/shape_and_slices",
    ];
    save_inputs.extend(variables.values().map(String::as_str));
    nodes.push(node(
        "save/SaveV2",
        "SaveV2",
        &save_inputs,
        vec![("dtypes", dtypes.clone())],
    ));
    nodes.push(node(
        "save/control_dependency",
        "Identity",
        &["save/Const", "^save/SaveV2"],
        vec![("T", AttrValue::from_type(DataType::String))],
    ));
    nodes.push(node(
        "save/RestoreV2",
        "RestoreV2",
        &[
            "save/Const",
            "save/SaveV2/tensor_names",
            "save/SaveV2/shape_and_slices",
        ],
        vec![("dtypes", dtypes)],
    ));
    let mut assigns = Vec::with_capacity(count);
    for (k, variable) in variables.keys().enumerate() {
        let name = if k == 0 {
            "save/AssignVariableOp".to_string()
        } else {
            format!("save/AssignVariableOp_{k}")
        };
        let restored = if k == 0 {
            "save/RestoreV2".to_string()
        } else {
            format!("save/RestoreV2:{k}")
        };
        nodes.push(node(
            &name,
            "AssignVariableOp",
            &[variable, &restored],
            vec![("dtype", f32_type())],
        ));
        assigns.push(format!("^{name}"));
    }
    let assign_refs: Vec<&str> = assigns.iter().map(String::as_str).collect();
    nodes.push(node("save/restore_all", "NoOp", &assign_refs, vec![]));
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::BundleIndex;

    fn layer(in_dim: usize, out_dim: usize, activation: Activation) -> DenseLayer {
        DenseLayer {
            kernel: (0..in_dim * out_dim).map(|i| i as f32 * 0.01).collect(),
            bias: (0..out_dim).map(|i| i as f32).collect(),
            in_dim,
            out_dim,
            activation,
        }
    }

    fn mnist_like() -> MlpExport {
        MlpExport::new(vec![
            layer(784, 16, Activation::Relu),
            layer(16, 8, Activation::Relu),
            layer(8, 10, Activation::Linear),
        ])
    }

    #[test]
    fn files_come_in_marker_last_order() {
        let files = export_mlp(&mnist_like()).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [VARIABLES_INDEX, VARIABLES_DATA, SAVED_MODEL_MARKER]);
    }

    #[test]
    fn graph_follows_the_recipe() {
        let model = build_saved_model(&mnist_like()).unwrap();
        let meta = &model.meta_graphs[0];
        assert!(meta.object_graph_def.is_none());
        assert_eq!(meta.meta_info_def.as_ref().unwrap().tags, ["serve"]);
        let graph = meta.graph_def.as_ref().unwrap();
        let find = |name: &str| {
            graph
                .node
                .iter()
                .find(|n| n.name == name)
                .unwrap_or_else(|| panic!("no node {name}"))
        };
        assert_eq!(find("image").op, "Placeholder");
        assert_eq!(find("dense_2/kernel").op, "VarHandleOp");
        assert_eq!(
            find("dense_1/MatMul").input,
            ["dense/Relu", "dense_1/kernel/Read/ReadVariableOp"]
        );
        assert_eq!(
            find("probabilities").input,
            ["dense_2/BiasAdd"],
            "no relu on a linear last layer"
        );
        assert_eq!(find("class").input, ["ArgMax"]);
        let names = find("save/SaveV2/tensor_names").attr["value"]
            .as_tensor()
            .unwrap()
            .string_val
            .clone();
        let names: Vec<String> = names
            .into_iter()
            .map(|n| String::from_utf8(n).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "dense/bias",
                "dense/kernel",
                "dense_1/bias",
                "dense_1/kernel",
                "dense_2/bias",
                "dense_2/kernel"
            ]
        );
        assert_eq!(
            find("save/AssignVariableOp_5").input,
            ["dense_2/kernel", "save/RestoreV2:5"]
        );
        assert_eq!(find("save/restore_all").input.len(), 6);
        let signature = &meta.signature_def[DEFAULT_SIGNATURE];
        assert_eq!(signature.method_name, PREDICT_METHOD_NAME);
        assert_eq!(
            signature.inputs["image"]
                .tensor_shape
                .as_ref()
                .unwrap()
                .dims(),
            Some(vec![-1, 784])
        );
        assert_eq!(
            signature.outputs["probabilities"]
                .tensor_shape
                .as_ref()
                .unwrap()
                .dims(),
            Some(vec![-1, 10])
        );
        assert_eq!(signature.outputs["class"].dtype, DataType::Int64 as i32);
        assert_eq!(signature.outputs["class"].dense_name(), Some("class:0"));
    }

    #[test]
    fn bundle_holds_kernels_in_keras_layout() {
        let model = mnist_like();
        let files = export_mlp(&model).unwrap();
        let index = BundleIndex::parse(VARIABLES_INDEX, &files[0].1).unwrap();
        let shards = [Some(&files[1].1[..])];
        let kernel = index.read_tensor("dense_1/kernel", &shards).unwrap();
        assert_eq!(kernel.shape(), [16, 8]);
        assert_eq!(
            kernel.data(),
            &TensorData::F32(model.layers[1].kernel.clone())
        );
        assert_eq!(index.len(), 6);
    }

    #[test]
    fn inconsistent_models_are_rejected_with_the_layer_named() {
        let cases: Vec<(MlpExport, &str)> = vec![
            (MlpExport::new(vec![]), "no layers"),
            (
                MlpExport::new(vec![DenseLayer {
                    kernel: vec![0.0; 5],
                    ..layer(2, 3, Activation::Relu)
                }]),
                "dense/kernel has 5 values, expected 2 x 3",
            ),
            (
                MlpExport::new(vec![
                    layer(2, 3, Activation::Relu),
                    DenseLayer {
                        bias: vec![1.0],
                        ..layer(3, 2, Activation::Linear)
                    },
                ]),
                "dense_1/bias has 1 values",
            ),
            (
                MlpExport::new(vec![
                    layer(2, 3, Activation::Relu),
                    layer(4, 2, Activation::Linear),
                ]),
                "dense_1 takes 4 inputs but dense produces 3",
            ),
            (
                MlpExport::new(vec![DenseLayer {
                    bias: vec![0.0, f32::NAN, 0.0],
                    ..layer(2, 3, Activation::Relu)
                }]),
                "dense/bias[1] is NaN",
            ),
            (
                MlpExport::new(vec![layer(0, 3, Activation::Relu)]),
                "must be positive",
            ),
            (
                MlpExport {
                    input_name: "bad name".into(),
                    ..mnist_like()
                },
                "not a valid TensorFlow node name",
            ),
            (
                MlpExport {
                    input_name: "ArgMax".into(),
                    ..mnist_like()
                },
                "used twice",
            ),
            (
                MlpExport {
                    class_name: "probabilities".into(),
                    ..mnist_like()
                },
                "used twice",
            ),
        ];
        for (model, expected) in cases {
            let err = export_mlp(&model).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn export_is_deterministic() {
        assert_eq!(
            export_mlp(&mnist_like()).unwrap(),
            export_mlp(&mnist_like()).unwrap()
        );
    }
}
