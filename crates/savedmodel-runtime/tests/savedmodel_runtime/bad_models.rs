//! Broken, mismatched and unsupported models fail with errors that name what is wrong, and
//! never panic. Broken models are made by editing the real fixtures with prost.

// Test helpers outside #[test] fns may unwrap too (clippy.toml allows it inside tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use crate::common::{expected, fixture_dir, location, read};
use candle_core::Device;
use prost::Message;
use savedmodel_format::bundle::{BundleIndex, VARIABLES_INDEX, write_bundle};
use savedmodel_format::proto::{AttrValue, NodeDef, SavedModel, TensorShapeProto, tensor_info};
use savedmodel_runtime::{DataType, HostTensor, LoadedModel, RuntimeError, TensorData};
use test_rng::TestRng;

fn decode(name: &str) -> SavedModel {
    SavedModel::decode(read(name, "saved_model.pb").as_slice()).unwrap()
}

/// Loads an edited `saved_model.pb` with the fixture's real variables.
fn load_edited(name: &str, model: &SavedModel) -> Result<LoadedModel, RuntimeError> {
    LoadedModel::from_files(
        &model.encode_to_vec(),
        Some(&read(name, "variables/variables.index")),
        Some(&read(name, "variables/variables.data-00000-of-00001")),
        &["serve"],
        &Device::Cpu,
    )
}

fn top_node<'m>(model: &'m mut SavedModel, name: &str) -> &'m mut NodeDef {
    let graph = model.meta_graphs[0].graph_def.as_mut().unwrap();
    graph
        .node
        .iter_mut()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

fn function_node<'m>(
    model: &'m mut SavedModel,
    function_prefix: &str,
    name: &str,
) -> &'m mut NodeDef {
    let graph = model.meta_graphs[0].graph_def.as_mut().unwrap();
    let library = graph.library.as_mut().unwrap();
    let function = library
        .function
        .iter_mut()
        .find(|f| {
            f.signature
                .as_ref()
                .unwrap()
                .name
                .starts_with(function_prefix)
        })
        .unwrap();
    function
        .node_def
        .iter_mut()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

#[test]
fn every_unsupported_op_is_listed_in_one_error() {
    let mut model = decode("tf1-tutorial");
    top_node(&mut model, "dense/Relu").op = "Mish".into();
    top_node(&mut model, "dense_1/Relu").op = "Erfinv".into();
    top_node(&mut model, "probabilities").op = "Erfinv".into();
    let err = load_edited("tf1-tutorial", &model)
        .err()
        .expect("must fail");
    let RuntimeError::UnsupportedOps(list) = &err else {
        panic!("wrong error: {err}")
    };
    assert_eq!(list.op_types(), ["Erfinv", "Mish"]);
    let message = err.to_string();
    assert!(
        message.contains("Mish (node `dense/Relu`, signature `serving_default`)"),
        "{message}"
    );
    assert!(message.contains("Erfinv (node `"), "{message}");
    assert!(message.contains("and 1 more node(s)"), "{message}");
    let mut nodes: Vec<&str> = list.0.iter().map(|n| n.node.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["dense/Relu", "dense_1/Relu", "probabilities"]);
}

#[test]
fn unsupported_ops_inside_functions_name_the_inlined_path() {
    let mut model = decode("keras3-export");
    function_node(
        &mut model,
        "__inference___call__",
        "sequential_1/dense_1/Relu",
    )
    .op = "Gelu".into();
    let err = load_edited("keras3-export", &model)
        .err()
        .expect("must fail");
    let RuntimeError::UnsupportedOps(list) = &err else {
        panic!("wrong error: {err}")
    };
    assert_eq!(list.op_types(), ["Gelu"]);
    // Both signatures (`serve`, `serving_default`) call the function.
    let mut signatures: Vec<&str> = list.0.iter().map(|n| n.signature.as_str()).collect();
    signatures.sort();
    assert_eq!(signatures, ["serve", "serving_default"]);
    assert!(
        list.0.iter().any(|n| n.node
            == "StatefulPartitionedCall_1/StatefulPartitionedCall/sequential_1/dense_1/Relu"),
        "{err}"
    );
}

#[test]
fn unsupported_dtype_of_a_supported_op_is_reported() {
    let mut model = decode("tf1-tutorial");
    top_node(&mut model, "dense/Relu")
        .attr
        .insert("T".into(), AttrValue::from_type(DataType::String));
    let err = load_edited("tf1-tutorial", &model)
        .err()
        .expect("must fail");
    assert!(
        err.to_string()
            .contains("Relu (T=DT_STRING) (node `dense/Relu`"),
        "{err}"
    );
}

#[test]
fn feeding_the_learning_phase_needs_the_dropout_ops() {
    // With keras_learning_phase as a signature input the Switch is no longer constant, so the
    // training branch (RandomUniform, GreaterEqual, SelectV2) is needed — and not supported.
    let mut model = decode("tf1-training-graph");
    let sig = model.meta_graphs[0]
        .signature_def
        .get_mut("serving_default")
        .unwrap();
    let mut info = sig.inputs["images"].clone();
    info.encoding = Some(tensor_info::Encoding::Name("keras_learning_phase:0".into()));
    info.dtype = DataType::Bool as i32;
    info.tensor_shape = Some(TensorShapeProto::from_dims(&[]));
    sig.inputs.insert("learning_phase".into(), info);
    let err = load_edited("tf1-training-graph", &model)
        .err()
        .expect("must fail");
    let RuntimeError::UnsupportedOps(list) = &err else {
        panic!("wrong error: {err}")
    };
    assert_eq!(
        list.op_types(),
        ["GreaterEqual", "RandomUniform", "SelectV2"],
        "{err}"
    );
}

#[test]
fn signature_naming_a_missing_tensor_is_an_error() {
    for (bad_name, why) in [
        ("no_such_node:0", "not in the graph"),
        ("probabilities:3", "not in the graph"),
    ] {
        let mut model = decode("tf1-tutorial");
        let sig = model.meta_graphs[0]
            .signature_def
            .get_mut("serving_default")
            .unwrap();
        sig.outputs.get_mut("class").unwrap().encoding =
            Some(tensor_info::Encoding::Name(bad_name.into()));
        let err = load_edited("tf1-tutorial", &model)
            .err()
            .expect("must fail");
        let message = err.to_string();
        assert!(
            matches!(err, RuntimeError::InvalidSignature { .. }),
            "{message}"
        );
        assert!(message.contains("signature `serving_default`"), "{message}");
        assert!(
            message.contains(&format!("output `class` names tensor `{bad_name}`")),
            "{message}"
        );
        assert!(message.contains(why), "{message}");
    }
    let mut model = decode("tf2-module");
    let sig = model.meta_graphs[0]
        .signature_def
        .get_mut("logits")
        .unwrap();
    sig.inputs.get_mut("pixels").unwrap().encoding =
        Some(tensor_info::Encoding::Name("gone:0".into()));
    let err = load_edited("tf2-module", &model).err().expect("must fail");
    assert!(
        err.to_string()
            .contains("signature `logits`: input `pixels` names tensor `gone:0`"),
        "{err}"
    );
}

#[test]
fn missing_variables_are_an_error_naming_the_file() {
    let pb = read("tf1-tutorial", "saved_model.pb");
    let err = LoadedModel::from_files(&pb, None, None, &["serve"], &Device::Cpu)
        .err()
        .expect("must fail");
    let message = err.to_string();
    assert!(
        matches!(err, RuntimeError::MissingVariables { .. }),
        "{message}"
    );
    assert!(
        message.contains("variables/variables.index is missing"),
        "{message}"
    );
    assert!(message.contains("6 variable(s)"), "{message}");

    // The same through storage: a copy of the model without its variables directory.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("saved_model.pb"), &pb).unwrap();
    let err = LoadedModel::load_blocking(&location(dir.path()), &["serve"], &Device::Cpu)
        .err()
        .expect("must fail");
    let message = err.to_string();
    assert!(
        message.contains(
            &dir.path()
                .join("variables/variables.index")
                .display()
                .to_string()
        ),
        "{message}"
    );

    // Index present, data file missing: the error names the data file and a tensor.
    std::fs::create_dir(dir.path().join("variables")).unwrap();
    std::fs::write(
        dir.path().join("variables/variables.index"),
        read("tf1-tutorial", "variables/variables.index"),
    )
    .unwrap();
    let err = LoadedModel::load_blocking(&location(dir.path()), &["serve"], &Device::Cpu)
        .err()
        .expect("must fail");
    let message = err.to_string();
    assert!(
        message.contains("variables.data-00000-of-00001"),
        "{message}"
    );
    assert!(message.contains("data file is missing"), "{message}");
}

#[test]
fn corrupted_variable_data_is_an_error_naming_the_tensor() {
    let mut data = read("tf1-tutorial", "variables/variables.data-00000-of-00001");
    data[100] ^= 0x40; // inside the first tensor in data order
    let err = LoadedModel::from_files(
        &read("tf1-tutorial", "saved_model.pb"),
        Some(&read("tf1-tutorial", "variables/variables.index")),
        Some(&data),
        &["serve"],
        &Device::Cpu,
    )
    .err()
    .expect("must fail");
    let message = err.to_string();
    assert!(message.contains("checksum mismatch"), "{message}");
    assert!(message.contains("tensor 'dense"), "{message}");
}

#[test]
fn variable_shape_in_graph_must_match_the_bundle() {
    // TF1 ref variable.
    let mut model = decode("tf1-training-graph");
    top_node(&mut model, "dense/kernel").attr.insert(
        "shape".into(),
        AttrValue::from_shape(TensorShapeProto::from_dims(&[784, 17])),
    );
    let err = load_edited("tf1-training-graph", &model)
        .err()
        .expect("must fail");
    let message = err.to_string();
    assert!(
        matches!(err, RuntimeError::VariableShapeMismatch { .. }),
        "{message}"
    );
    assert!(message.contains("variable `dense/kernel`"), "{message}");
    assert!(
        message.contains("[784, 17]") && message.contains("[784, 16]"),
        "{message}"
    );

    // TF2 resource variable, mapped through the restore function.
    let mut model = decode("tf2-module");
    top_node(&mut model, "kernel_2").attr.insert(
        "shape".into(),
        AttrValue::from_shape(TensorShapeProto::from_dims(&[784, 15])),
    );
    let err = load_edited("tf2-module", &model).err().expect("must fail");
    let message = err.to_string();
    assert!(message.contains("variable `kernel_2`"), "{message}");
    assert!(
        message.contains("hidden1/kernel/.ATTRIBUTES/VARIABLE_VALUE"),
        "{message}"
    );
    assert!(
        message.contains("[784, 15]") && message.contains("[784, 16]"),
        "{message}"
    );

    // An optimizer slot the signatures never read is checked too: the files must belong together.
    let mut model = decode("tf1-training-graph");
    top_node(&mut model, "dense_2/bias/Momentum").attr.insert(
        "shape".into(),
        AttrValue::from_shape(TensorShapeProto::from_dims(&[11])),
    );
    let err = load_edited("tf1-training-graph", &model)
        .err()
        .expect("must fail");
    assert!(
        err.to_string().contains("variable `dense_2/bias/Momentum`"),
        "{err}"
    );
}

#[test]
fn variable_dtype_in_graph_must_match_the_bundle() {
    let mut model = decode("tf1-tutorial");
    top_node(&mut model, "dense/bias")
        .attr
        .insert("dtype".into(), AttrValue::from_type(DataType::Double));
    let err = load_edited("tf1-tutorial", &model)
        .err()
        .expect("must fail");
    let message = err.to_string();
    assert!(
        matches!(err, RuntimeError::VariableDtypeMismatch { .. }),
        "{message}"
    );
    assert!(
        message.contains("`dense/bias`")
            && message.contains("DT_DOUBLE")
            && message.contains("DT_FLOAT"),
        "{message}"
    );
}

#[test]
fn variables_missing_from_the_bundle_are_named() {
    // A bundle with every tensor but `dense/kernel`.
    let index = BundleIndex::parse(
        VARIABLES_INDEX,
        &read("tf1-tutorial", "variables/variables.index"),
    )
    .unwrap();
    let data = read("tf1-tutorial", "variables/variables.data-00000-of-00001");
    let tensors: Vec<(String, HostTensor)> = index
        .read_all(&[Some(&data)])
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name != "dense/kernel")
        .collect();
    let files = write_bundle(tensors.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
    let err = LoadedModel::from_files(
        &read("tf1-tutorial", "saved_model.pb"),
        Some(&files.index),
        Some(&files.data),
        &["serve"],
        &Device::Cpu,
    )
    .err()
    .expect("must fail");
    let message = err.to_string();
    assert!(
        matches!(err, RuntimeError::VariableNotRestored { .. }),
        "{message}"
    );
    assert!(
        message.contains("variable `dense/kernel` is read by signature `serving_default`"),
        "{message}"
    );
    assert!(
        message.contains(r#"looked for ["dense/kernel"]"#),
        "{message}"
    );
}

#[test]
fn tags_must_match_a_meta_graph() {
    let err = LoadedModel::load_blocking(
        &location(&fixture_dir("tf1-tutorial")),
        &["serve", "gpu"],
        &Device::Cpu,
    )
    .err()
    .expect("must fail");
    let message = err.to_string();
    assert!(
        message.contains(r#"tags ["gpu", "serve"]"#) && message.contains(r#"[["serve"]]"#),
        "{message}"
    );
}

#[test]
fn missing_directory_and_text_format_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = LoadedModel::load_blocking(&location(&missing), &["serve"], &Device::Cpu)
        .err()
        .expect("must fail");
    let message = err.to_string();
    assert!(
        matches!(err, RuntimeError::NoSavedModel { .. }),
        "{message}"
    );
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("saved_model.pb"), "{message}");

    std::fs::write(
        dir.path().join("saved_model.pbtxt"),
        "saved_model_schema_version: 1",
    )
    .unwrap();
    let err = LoadedModel::load_blocking(&location(dir.path()), &["serve"], &Device::Cpu)
        .err()
        .expect("must fail");
    assert!(
        matches!(err, RuntimeError::TextFormatUnsupported { .. }),
        "{err}"
    );
}

#[test]
fn inputs_are_checked_against_the_signature() {
    let model = LoadedModel::load_blocking(
        &location(&fixture_dir("tf1-tutorial")),
        &["serve"],
        &Device::Cpu,
    )
    .unwrap();
    let run = |key: &str, tensor: HostTensor| {
        model.run(
            "serving_default",
            &BTreeMap::from([(key.to_string(), tensor)]),
        )
    };

    let err = run(
        "image",
        HostTensor::new(vec![1, 784], TensorData::I32(vec![0; 784])).unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "input `image` of signature `serving_default` must be DT_FLOAT, got DT_INT32"
    );

    let err = run(
        "image",
        HostTensor::new(vec![2, 783], TensorData::F32(vec![0.0; 2 * 783])).unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "input `image` of signature `serving_default` must have shape [-1, 784] (-1 = any size), got [2, 783]"
    );

    let err = run(
        "images",
        HostTensor::new(vec![1, 784], TensorData::F32(vec![0.0; 784])).unwrap(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("has no input `images`; its inputs are [\"image\"]"),
        "{err}"
    );

    let err = model.run("serving_default", &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, RuntimeError::MissingInput { .. }), "{err}");
    assert!(err.to_string().contains("needs input `image`"), "{err}");

    let err = model.run("predict", &BTreeMap::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no signature `predict` in the model; available signatures: [\"serving_default\"]"
    );
    assert!(model.signature("predict").is_err());

    // An empty batch is fine.
    let empty = run(
        "image",
        HostTensor::new(vec![0, 784], TensorData::F32(vec![])).unwrap(),
    )
    .unwrap();
    assert_eq!(empty["class"].shape(), &[0]);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = TestRng::new(0x5eed);
    for round in 0..400 {
        let len = rng.below(3000);
        let bytes = rng.bytes(len);
        // Almost always a decode error; anything else must still be an error, not a panic.
        let result = LoadedModel::from_files(&bytes, None, None, &["serve"], &Device::Cpu);
        assert!(
            result.is_err(),
            "round {round}: random bytes loaded as a model"
        );
        let index_len = rng.below(500);
        let index = rng.bytes(index_len);
        let result = LoadedModel::from_files(
            &read("tf1-tutorial", "saved_model.pb"),
            Some(&index),
            None,
            &["serve"],
            &Device::Cpu,
        );
        assert!(result.is_err(), "round {round}: random index accepted");
    }
}

#[test]
fn mutated_models_never_panic() {
    let exp = expected("tf1-training-graph");
    let index = read("tf1-training-graph", "variables/variables.index");
    let data = read(
        "tf1-training-graph",
        "variables/variables.data-00000-of-00001",
    );
    let original = read("tf1-training-graph", "saved_model.pb");
    let mut rng = TestRng::new(42);
    let mut loaded = 0;
    for _ in 0..300 {
        let mut bytes = original.clone();
        match rng.below(3) {
            0 => bytes.truncate(rng.below(bytes.len())),
            _ => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next_u64() as u8;
                }
            }
        }
        if let Ok(model) =
            LoadedModel::from_files(&bytes, Some(&index), Some(&data), &["serve"], &Device::Cpu)
        {
            loaded += 1;
            for name in model.signatures().keys() {
                let _ = model.run(name, &exp.inputs);
            }
        }
    }
    // Mutations of unused parts of the graph (gradients, saver) still load: the test did run
    // models, not just decode errors.
    assert!(loaded > 0);
}
