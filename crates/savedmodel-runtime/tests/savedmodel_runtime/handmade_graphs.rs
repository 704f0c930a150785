//! Graph features the fixtures do not exercise, on small graphs built here: Switch/Merge with a
//! predicate known only at run time, PlaceholderWithDefault, functions called by op name with
//! `placeholder` attrs and `node:out_arg:i` inputs, nested PartitionedCalls, and malformed graphs.

// Test helpers outside #[test] fns may unwrap too (clippy.toml allows it inside tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use candle_core::Device;
use prost::Message;
use savedmodel_format::proto::{
    AttrValue, FunctionDef, FunctionDefLibrary, GraphDef, MetaGraphDef, MetaInfoDef, NameAttrList,
    NodeDef, OpDef, SavedModel, SignatureDef, TensorInfo, TensorProto, TensorShapeProto,
    attr_value, op_def::ArgDef, tensor_info,
};
use savedmodel_runtime::{DataType, HostTensor, LoadedModel, RuntimeError, TensorData};

fn node(name: &str, op: &str, inputs: &[&str], attrs: &[(&str, AttrValue)]) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

fn float() -> AttrValue {
    AttrValue::from_type(DataType::Float)
}

fn placeholder(name: &str, dtype: DataType, dims: &[i64]) -> NodeDef {
    node(
        name,
        "Placeholder",
        &[],
        &[
            ("dtype", AttrValue::from_type(dtype)),
            (
                "shape",
                AttrValue::from_shape(TensorShapeProto::from_dims(dims)),
            ),
        ],
    )
}

/// A `Const` node holding `tensor`; `inputs` are its control edges (`^node`), if any.
fn const_node(name: &str, tensor: TensorProto, inputs: &[&str]) -> NodeDef {
    let dtype = DataType::from_tf(tensor.dtype).unwrap();
    node(
        name,
        "Const",
        inputs,
        &[
            ("dtype", AttrValue::from_type(dtype)),
            ("value", AttrValue::from_tensor(tensor)),
        ],
    )
}

fn const_f32(name: &str, dims: &[i64], values: &[f32], inputs: &[&str]) -> NodeDef {
    let tensor = TensorProto {
        float_val: values.to_vec(),
        ..TensorProto::with_shape(DataType::Float, dims)
    };
    const_node(name, tensor, inputs)
}

fn const_i32(name: &str, dims: &[i64], values: &[i32]) -> NodeDef {
    let tensor = TensorProto {
        int_val: values.to_vec(),
        ..TensorProto::with_shape(DataType::Int32, dims)
    };
    const_node(name, tensor, &[])
}

fn info(name: &str, dtype: DataType, dims: &[i64]) -> TensorInfo {
    TensorInfo {
        encoding: Some(tensor_info::Encoding::Name(name.into())),
        dtype: dtype as i32,
        tensor_shape: Some(TensorShapeProto::from_dims(dims)),
    }
}

fn model(
    nodes: Vec<NodeDef>,
    functions: Vec<FunctionDef>,
    inputs: &[(&str, TensorInfo)],
    outputs: &[(&str, TensorInfo)],
) -> Vec<u8> {
    let signature = SignatureDef {
        inputs: inputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        outputs: outputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        method_name: "tensorflow/serving/predict".into(),
        ..Default::default()
    };
    let library = (!functions.is_empty()).then(|| FunctionDefLibrary {
        function: functions,
        ..Default::default()
    });
    SavedModel {
        saved_model_schema_version: 1,
        meta_graphs: vec![MetaGraphDef {
            meta_info_def: Some(MetaInfoDef {
                tags: vec!["serve".into()],
                ..Default::default()
            }),
            graph_def: Some(GraphDef {
                node: nodes,
                library,
                ..Default::default()
            }),
            signature_def: [("serving_default".to_string(), signature)]
                .into_iter()
                .collect(),
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn load(bytes: &[u8]) -> Result<LoadedModel, RuntimeError> {
    LoadedModel::from_files(bytes, None, None, &["serve"], &Device::Cpu)
}

fn f32_tensor(shape: Vec<usize>, values: Vec<f32>) -> HostTensor {
    HostTensor::new(shape, TensorData::F32(values)).unwrap()
}

fn bool_scalar(b: bool) -> HostTensor {
    HostTensor::new(vec![], TensorData::Bool(vec![b])).unwrap()
}

fn floats(t: &HostTensor) -> Vec<f32> {
    match t.data() {
        TensorData::F32(v) => v.clone(),
        other => panic!("not f32: {other:?}"),
    }
}

#[test]
fn switch_and_merge_follow_a_predicate_fed_at_run_time() {
    let nodes = vec![
        placeholder("x", DataType::Float, &[-1, 2]),
        placeholder("p", DataType::Bool, &[]),
        node("cond/Switch", "Switch", &["x", "p"], &[("T", float())]),
        node(
            "cond/switch_t",
            "Identity",
            &["cond/Switch:1"],
            &[("T", float())],
        ),
        // A constant of the true branch: dead when the predicate is false, through its control edge.
        const_f32("cond/ten", &[], &[10.0], &["^cond/switch_t"]),
        node(
            "cond/Mul",
            "Mul",
            &["cond/Switch:1", "cond/ten"],
            &[("T", float())],
        ),
        node("cond/Neg", "Neg", &["cond/Switch"], &[("T", float())]),
        node(
            "cond/Merge",
            "Merge",
            &["cond/Neg", "cond/Mul"],
            &[("T", float()), ("N", AttrValue::from_int(2))],
        ),
        node("y", "Identity", &["cond/Merge"], &[("T", float())]),
    ];
    let bytes = model(
        nodes,
        vec![],
        &[
            ("x", info("x:0", DataType::Float, &[-1, 2])),
            ("p", info("p:0", DataType::Bool, &[])),
        ],
        &[
            ("y", info("y:0", DataType::Float, &[-1, 2])),
            ("branch", info("cond/Merge:1", DataType::Int32, &[])),
        ],
    );
    let model = load(&bytes).unwrap();
    let x = f32_tensor(vec![1, 2], vec![1.5, -2.0]);
    for (pred, expected, branch) in [(true, vec![15.0, -20.0], 1), (false, vec![-1.5, 2.0], 0)] {
        let out = model
            .run(
                "serving_default",
                &BTreeMap::from([
                    ("x".to_string(), x.clone()),
                    ("p".to_string(), bool_scalar(pred)),
                ]),
            )
            .unwrap();
        assert_eq!(floats(&out["y"]), expected, "pred {pred}");
        assert_eq!(out["branch"].data(), &TensorData::I32(vec![branch]));
    }
}

#[test]
fn an_output_on_the_untaken_branch_is_an_error_not_a_partial_result() {
    let nodes = vec![
        placeholder("x", DataType::Float, &[2]),
        placeholder("p", DataType::Bool, &[]),
        node("s", "Switch", &["x", "p"], &[("T", float())]),
        node("only_true", "Neg", &["s:1"], &[("T", float())]),
    ];
    let bytes = model(
        nodes,
        vec![],
        &[
            ("x", info("x:0", DataType::Float, &[2])),
            ("p", info("p:0", DataType::Bool, &[])),
        ],
        &[("y", info("only_true:0", DataType::Float, &[2]))],
    );
    let model = load(&bytes).unwrap();
    let inputs = |p| {
        BTreeMap::from([
            ("x".to_string(), f32_tensor(vec![2], vec![1.0, 2.0])),
            ("p".to_string(), bool_scalar(p)),
        ])
    };
    assert_eq!(
        floats(&model.run("serving_default", &inputs(true)).unwrap()["y"]),
        vec![-1.0, -2.0]
    );
    let err = model.run("serving_default", &inputs(false)).unwrap_err();
    assert!(matches!(err, RuntimeError::DeadOutput { .. }), "{err}");
    assert!(err.to_string().contains("output `y`"), "{err}");
}

#[test]
fn placeholder_with_default_uses_the_default_unless_fed() {
    let nodes = vec![
        const_f32("default", &[1, 2], &[1.0, 2.0], &[]),
        node(
            "x",
            "PlaceholderWithDefault",
            &["default"],
            &[
                ("dtype", float()),
                (
                    "shape",
                    AttrValue::from_shape(TensorShapeProto::from_dims(&[-1, 2])),
                ),
            ],
        ),
        const_f32("three", &[], &[3.0], &[]),
        node("y", "Mul", &["x", "three"], &[("T", float())]),
    ];
    let bytes = model(
        nodes,
        vec![],
        &[("x", info("x:0", DataType::Float, &[-1, 2]))],
        &[("y", info("y:0", DataType::Float, &[-1, 2]))],
    );
    let model = load(&bytes).unwrap();
    assert_eq!(
        floats(&model.run("serving_default", &BTreeMap::new()).unwrap()["y"]),
        vec![3.0, 6.0]
    );
    let fed = BTreeMap::from([(
        "x".to_string(),
        f32_tensor(vec![2, 2], vec![1.0, 0.0, -1.0, 0.5]),
    )]);
    assert_eq!(
        floats(&model.run("serving_default", &fed).unwrap()["y"]),
        vec![3.0, 0.0, -3.0, 1.5]
    );
}

#[test]
fn signature_defaults_stand_in_for_missing_inputs() {
    let nodes = vec![
        placeholder("x", DataType::Float, &[-1, 2]),
        node("y", "Neg", &["x"], &[("T", float())]),
    ];
    let mut saved = SavedModel::decode(
        model(
            nodes,
            vec![],
            &[("x", info("x:0", DataType::Float, &[-1, 2]))],
            &[("y", info("y:0", DataType::Float, &[-1, 2]))],
        )
        .as_slice(),
    )
    .unwrap();
    let default = TensorProto {
        float_val: vec![5.0, 6.0],
        ..TensorProto::with_shape(DataType::Float, &[1, 2])
    };
    let signature = saved.meta_graphs[0]
        .signature_def
        .get_mut("serving_default")
        .unwrap();
    signature.defaults.insert("x".into(), default);
    let model = load(&saved.encode_to_vec()).unwrap();
    assert_eq!(
        floats(&model.run("serving_default", &BTreeMap::new()).unwrap()["y"]),
        vec![-5.0, -6.0]
    );
    let fed = BTreeMap::from([("x".to_string(), f32_tensor(vec![1, 2], vec![1.0, 2.0]))]);
    assert_eq!(
        floats(&model.run("serving_default", &fed).unwrap()["y"]),
        vec![-1.0, -2.0]
    );
}

#[test]
fn a_placeholder_outside_the_signature_is_an_error() {
    let nodes = vec![
        placeholder("x", DataType::Float, &[2]),
        placeholder("hidden", DataType::Float, &[2]),
        node("y", "AddV2", &["x", "hidden"], &[("T", float())]),
    ];
    let bytes = model(
        nodes,
        vec![],
        &[("x", info("x:0", DataType::Float, &[2]))],
        &[("y", info("y:0", DataType::Float, &[2]))],
    );
    let err = load(&bytes).err().expect("must fail");
    assert!(
        err.to_string()
            .contains("depend on placeholder `hidden`, which is not one of the signature's inputs"),
        "{err}"
    );
}

#[test]
fn cycles_are_rejected() {
    let nodes = vec![
        placeholder("x", DataType::Float, &[2]),
        node("a", "AddV2", &["x", "b"], &[("T", float())]),
        node("b", "Identity", &["a"], &[("T", float())]),
    ];
    let bytes = model(
        nodes,
        vec![],
        &[("x", info("x:0", DataType::Float, &[2]))],
        &[("y", info("b:0", DataType::Float, &[2]))],
    );
    let err = load(&bytes).err().expect("must fail");
    assert!(err.to_string().contains("cycle"), "{err}");
}

#[test]
fn dangling_inputs_are_rejected() {
    let nodes = vec![
        placeholder("x", DataType::Float, &[2]),
        node("y", "Neg", &["nowhere:0"], &[("T", float())]),
    ];
    let bytes = model(
        nodes,
        vec![],
        &[("x", info("x:0", DataType::Float, &[2]))],
        &[("y", info("y:0", DataType::Float, &[2]))],
    );
    let err = load(&bytes).err().expect("must fail");
    assert_eq!(
        err.to_string(),
        "invalid graph at node `y`: input `nowhere:0` names no node"
    );
}

fn arg(name: &str, type_attr: &str) -> ArgDef {
    ArgDef {
        name: name.into(),
        type_attr: type_attr.into(),
        ..Default::default()
    }
}

fn placeholder_attr(name: &str) -> AttrValue {
    AttrValue {
        value: Some(attr_value::Value::Placeholder(name.into())),
    }
}

/// `scale_and_negate(x, s) -> (y = x * s, z = -x)`, generic in `T`.
fn scale_and_negate() -> FunctionDef {
    FunctionDef {
        signature: Some(OpDef {
            name: "scale_and_negate".into(),
            input_arg: vec![arg("x", "T"), arg("s", "T")],
            output_arg: vec![arg("y", "T"), arg("z", "T")],
            ..Default::default()
        }),
        node_def: vec![
            node("mul", "Mul", &["x", "s"], &[("T", placeholder_attr("T"))]),
            node(
                "y_out",
                "Identity",
                &["mul:z:0"],
                &[("T", placeholder_attr("T"))],
            ),
            node("neg", "Neg", &["x"], &[("T", placeholder_attr("T"))]),
        ],
        ret: [
            ("y".to_string(), "y_out:output:0".to_string()),
            ("z".to_string(), "neg:y:0".to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// `outer(x) -> (w = scale_and_negate(x, 2).y + scale_and_negate(x, 2).z)`, calling the inner
/// function through a PartitionedCall.
fn outer() -> FunctionDef {
    let f = AttrValue {
        value: Some(attr_value::Value::Func(NameAttrList {
            name: "scale_and_negate".into(),
            attr: [("T".to_string(), float())].into_iter().collect(),
        })),
    };
    let types = AttrValue::from_list(attr_value::ListValue {
        r#type: vec![1, 1],
        ..Default::default()
    });
    FunctionDef {
        signature: Some(OpDef {
            name: "outer".into(),
            input_arg: vec![ArgDef {
                name: "x".into(),
                r#type: DataType::Float as i32,
                ..Default::default()
            }],
            output_arg: vec![ArgDef {
                name: "w".into(),
                r#type: DataType::Float as i32,
                ..Default::default()
            }],
            ..Default::default()
        }),
        node_def: vec![
            const_f32("two", &[], &[2.0], &[]),
            node(
                "call",
                "PartitionedCall",
                &["x", "two:output:0"],
                &[("f", f), ("Tin", types.clone()), ("Tout", types)],
            ),
            node(
                "sum",
                "AddV2",
                &["call:output:0", "call:output:1"],
                &[("T", float())],
            ),
        ],
        ret: [("w".to_string(), "sum:z:0".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

#[test]
fn functions_called_by_name_and_through_partitioned_calls_are_inlined() {
    let nodes = vec![
        placeholder("x", DataType::Float, &[-1]),
        const_f32("three", &[], &[3.0], &[]),
        // Called by op name, with the type bound by the node's attr.
        node(
            "direct",
            "scale_and_negate",
            &["x", "three"],
            &[("T", float())],
        ),
        node("nested", "outer", &["x"], &[]),
        node(
            "after",
            "Identity",
            &["direct:1", "^nested"],
            &[("T", float())],
        ),
    ];
    let bytes = model(
        nodes,
        vec![scale_and_negate(), outer()],
        &[("x", info("x:0", DataType::Float, &[-1]))],
        &[
            ("scaled", info("direct:0", DataType::Float, &[-1])),
            ("negated", info("after:0", DataType::Float, &[-1])),
            ("nested", info("nested:0", DataType::Float, &[-1])),
        ],
    );
    let model = load(&bytes).unwrap();
    let out = model
        .run(
            "serving_default",
            &BTreeMap::from([("x".to_string(), f32_tensor(vec![3], vec![1.0, -2.0, 0.5]))]),
        )
        .unwrap();
    assert_eq!(floats(&out["scaled"]), vec![3.0, -6.0, 1.5]);
    assert_eq!(floats(&out["negated"]), vec![-1.0, 2.0, -0.5]);
    // 2x + (-x) = x
    assert_eq!(floats(&out["nested"]), vec![1.0, -2.0, 0.5]);
    // Inlining leaves only the arithmetic to run.
    let mut ops = model.plan_ops("serving_default").unwrap();
    ops.sort();
    assert_eq!(ops, ["AddV2", "Mul", "Mul", "Neg", "Neg"]);
}

#[test]
fn recursive_functions_are_rejected() {
    let recursive = FunctionDef {
        signature: Some(OpDef {
            name: "forever".into(),
            input_arg: vec![ArgDef {
                name: "x".into(),
                r#type: 1,
                ..Default::default()
            }],
            output_arg: vec![ArgDef {
                name: "y".into(),
                r#type: 1,
                ..Default::default()
            }],
            ..Default::default()
        }),
        node_def: vec![node("again", "forever", &["x"], &[])],
        ret: [("y".to_string(), "again:y:0".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let nodes = vec![
        placeholder("x", DataType::Float, &[1]),
        node("call", "forever", &["x"], &[]),
    ];
    let bytes = model(
        nodes,
        vec![recursive],
        &[("x", info("x:0", DataType::Float, &[1]))],
        &[("y", info("call:0", DataType::Float, &[1]))],
    );
    let err = load(&bytes).err().expect("must fail");
    assert!(
        err.to_string().contains("recursive function `forever`"),
        "{err}"
    );
}

#[test]
fn calls_to_missing_functions_are_reported_as_unsupported() {
    let f = AttrValue {
        value: Some(attr_value::Value::Func(NameAttrList {
            name: "__inference_gone_1".into(),
            ..Default::default()
        })),
    };
    let nodes = vec![
        placeholder("x", DataType::Float, &[1]),
        node("call", "StatefulPartitionedCall", &["x"], &[("f", f)]),
    ];
    let bytes = model(
        nodes,
        vec![],
        &[("x", info("x:0", DataType::Float, &[1]))],
        &[("y", info("call:0", DataType::Float, &[1]))],
    );
    let err = load(&bytes).err().expect("must fail");
    assert!(
        err.to_string().contains(
            "StatefulPartitionedCall (function `__inference_gone_1` is not in the library)"
        ),
        "{err}"
    );
}

#[test]
fn shape_ops_compose_like_keras_flatten() {
    // reshape(x, [shape(x)[0], -1]) followed by a reduction and an int64 ArgMax.
    let int32 = AttrValue::from_type(DataType::Int32);
    let nodes = vec![
        placeholder("x", DataType::Float, &[-1, 2, 3]),
        node("shape", "Shape", &["x"], &[("T", float())]),
        const_i32("begin", &[1], &[0]),
        const_i32("end", &[1], &[1]),
        const_i32("stride", &[1], &[1]),
        node(
            "batch",
            "StridedSlice",
            &["shape", "begin", "end", "stride"],
            &[
                ("T", int32.clone()),
                ("Index", int32.clone()),
                ("shrink_axis_mask", AttrValue::from_int(1)),
            ],
        ),
        const_i32("minus_one", &[], &[-1]),
        node(
            "new_shape",
            "Pack",
            &["batch", "minus_one"],
            &[("T", int32.clone()), ("N", AttrValue::from_int(2))],
        ),
        node("flat", "Reshape", &["x", "new_shape"], &[("T", float())]),
        const_i32("axis", &[], &[1]),
        node(
            "total",
            "Sum",
            &["flat", "axis"],
            &[("T", float()), ("keep_dims", AttrValue::from_bool(true))],
        ),
        node("argmax", "ArgMax", &["flat", "axis"], &[("T", float())]),
    ];
    let bytes = model(
        nodes,
        vec![],
        &[("x", info("x:0", DataType::Float, &[-1, 2, 3]))],
        &[
            ("flat", info("flat:0", DataType::Float, &[-1, 6])),
            ("total", info("total:0", DataType::Float, &[-1, 1])),
            ("argmax", info("argmax:0", DataType::Int64, &[-1])),
        ],
    );
    let model = load(&bytes).unwrap();
    let x = f32_tensor(
        vec![2, 2, 3],
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
    );
    let out = model
        .run("serving_default", &BTreeMap::from([("x".to_string(), x)]))
        .unwrap();
    assert_eq!(out["flat"].shape(), &[2, 6]);
    assert_eq!(floats(&out["total"]), vec![21.0, 21.0]);
    assert_eq!(out["total"].shape(), &[2, 1]);
    assert_eq!(out["argmax"].data(), &TensorData::I64(vec![5, 0]));
}

/// x [-1, 4] -> MatMul [4, 5] + BiasAdd + Relu -> MatMul [5, 3] + BiasAdd + Relu6 -> MatMul
/// (`transpose_b`, stored [2, 3]) + BiasAdd, with `second_width` as the second layer's input
/// width (5 fits). Outputs are `(key, node)` pairs.
fn mlp(second_width: i64, outputs: &[(&str, &str)]) -> Vec<u8> {
    let bias_add = |name: &str, input: &str, bias: &str| {
        node(name, "BiasAdd", &[input, bias], &[("T", float())])
    };
    let matmul = |name: &str, inputs: &[&str], transpose_b: bool| {
        node(
            name,
            "MatMul",
            inputs,
            &[
                ("T", float()),
                ("transpose_b", AttrValue::from_bool(transpose_b)),
            ],
        )
    };
    let w2 = second_width as usize;
    let nodes = vec![
        placeholder("x", DataType::Float, &[-1, 4]),
        const_f32("w1", &[4, 5], &mlp_values(20, 0.1), &[]),
        const_f32("b1", &[5], &mlp_values(5, 0.2), &[]),
        const_f32("w2", &[second_width, 3], &mlp_values(w2 * 3, 0.3), &[]),
        const_f32("b2", &[3], &mlp_values(3, 0.4), &[]),
        const_f32("w3", &[2, 3], &mlp_values(6, 0.5), &[]),
        const_f32("b3", &[2], &mlp_values(2, 0.6), &[]),
        matmul("l1/MatMul", &["x", "w1"], false),
        bias_add("l1/BiasAdd", "l1/MatMul", "b1"),
        node("l1/Relu", "Relu", &["l1/BiasAdd"], &[("T", float())]),
        matmul("l2/MatMul", &["l1/Relu", "w2"], false),
        bias_add("l2/BiasAdd", "l2/MatMul", "b2"),
        node("l2/Relu6", "Relu6", &["l2/BiasAdd"], &[("T", float())]),
        matmul("l3/MatMul", &["l2/Relu6", "w3"], true),
        bias_add("l3/BiasAdd", "l3/MatMul", "b3"),
    ];
    let outputs: Vec<(&str, TensorInfo)> = outputs
        .iter()
        .map(|&(key, node)| (key, info(&format!("{node}:0"), DataType::Float, &[-1, -1])))
        .collect();
    model(
        nodes,
        vec![],
        &[("x", info("x:0", DataType::Float, &[-1, 4]))],
        &outputs,
    )
}

/// The weights and biases of [`mlp`]: `n` values in [-1.5, 1.5] that depend on `seed`.
fn mlp_values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.37 + seed).sin() * 1.5)
        .collect()
}

/// The same MLP computed here, in f64: (hidden after the first layer, output).
fn mlp_reference(x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let values = |n: usize, seed: f32| -> Vec<f64> {
        mlp_values(n, seed).into_iter().map(f64::from).collect()
    };
    let dense = |x: &[f64], w: &[f64], b: &[f64], k: usize, n: usize, transposed: bool| {
        let rows = x.len() / k;
        let mut out = Vec::with_capacity(rows * n);
        for r in 0..rows {
            for c in 0..n {
                let mut s = b[c];
                for i in 0..k {
                    let wv = if transposed {
                        w[c * k + i]
                    } else {
                        w[i * n + c]
                    };
                    s += x[r * k + i] * wv;
                }
                out.push(s);
            }
        }
        out
    };
    let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let h1: Vec<f64> = dense(&x, &values(20, 0.1), &values(5, 0.2), 4, 5, false)
        .into_iter()
        .map(|v| v.max(0.0))
        .collect();
    let h2: Vec<f64> = dense(&h1, &values(15, 0.3), &values(3, 0.4), 5, 3, false)
        .into_iter()
        .map(|v| v.clamp(0.0, 6.0))
        .collect();
    let out = dense(&h2, &values(6, 0.5), &values(2, 0.6), 3, 2, true);
    (h1, out)
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn mlp_layers_run_as_one_stack_unless_a_hidden_value_is_fetched() {
    let rows = 300;
    let x: Vec<f32> = (0..rows * 4)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
        .collect();
    let (hidden, want) = mlp_reference(&x);
    let feeds = BTreeMap::from([("x".to_string(), f32_tensor(vec![rows, 4], x))]);

    let whole = load(&mlp(5, &[("out", "l3/BiasAdd")])).unwrap();
    assert_eq!(whole.dense_stacks("serving_default").unwrap(), vec![3]);
    let stacked = whole.run("serving_default", &feeds).unwrap();
    assert_eq!(stacked["out"].shape(), &[rows, 2]);
    assert_close(&floats(&stacked["out"]), &want, "out");

    // The first layer's value is a signature output: it must exist, so only the last two
    // layers stack, and the results are the same bits.
    let split = load(&mlp(5, &[("out", "l3/BiasAdd"), ("hidden", "l1/Relu")])).unwrap();
    assert_eq!(split.dense_stacks("serving_default").unwrap(), vec![2]);
    let outputs = split.run("serving_default", &feeds).unwrap();
    assert_close(&floats(&outputs["hidden"]), &hidden, "hidden");
    assert_eq!(floats(&outputs["out"]), floats(&stacked["out"]));
    assert_eq!(
        split.fused_chains("serving_default").unwrap().len(),
        3,
        "every chain is still fused"
    );
}

#[test]
fn a_stacked_layer_that_does_not_fit_names_its_nodes() {
    // The second layer takes 6 inputs, the first gives 5.
    let model = load(&mlp(6, &[("out", "l3/BiasAdd")])).unwrap();
    let feeds = BTreeMap::from([("x".to_string(), f32_tensor(vec![2, 4], vec![1.0; 8]))]);
    let err = model
        .run("serving_default", &feeds)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 5] and [6, 3] do not fit"), "{err}");
    assert!(err.contains("`l2/MatMul` (MatMul)"), "{err}");
}
